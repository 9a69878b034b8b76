/**
 * `npm run bench`: starts the simulator on loopback (TLS for every contender), runs each benchmark's
 * contenders side by side in worker processes, rounds interleaved so that a change in machine load
 * falls on all of them alike, and prints one table per benchmark plus the targets.
 */
import { readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startSimulator, type SimulatedHub } from '../src/simulator';
import { BENCHMARKS as KEYS, parseFlags, USAGE, type Flags } from './args';
import { BENCHMARKS, medianOf, paramsFor, type Benchmark, type ContenderResult } from './benchmarks';
import type { BenchParams, HubInfo } from './protocol';
import { startLatencyProxy, type LatencyProxy } from './latency-proxy';
import { formatCount, formatFixed, median, table } from './stats';
import { WorkerHandle } from './worker-handle';

const repositoryRoot = path.resolve(__dirname, '..', '..');

function certDir(): string {
  return process.env.IOTHUB_SIM_CERT_DIR ?? path.join(repositoryRoot, 'test-artifacts', 'certs');
}

function out(text = ''): void {
  process.stdout.write(`${text}\n`);
}

function machine(): string {
  const cpuinfo = (() => {
    try {
      return readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      return '';
    }
  })();
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? os.cpus()[0]?.model ?? 'unknown CPU';
  return `${os.availableParallelism()} cores (${model}), ${Math.round(os.totalmem() / 2 ** 30)} GB, Node ${process.version}, ${os.platform()} ${os.release()}`;
}

function load(): string {
  return os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
}

/** How contenders reach the simulator; through the relay at `relayPort` when there is one. */
function hubInfo(hub: SimulatedHub, devices: string[], relayPort?: number): HubInfo {
  const port = hub.ports.amqps as number;
  // Tokens name the host without its port, so only the address changes.
  const via = (connectionString: string): string => {
    if (relayPort === undefined) return connectionString;
    const direct = `${hub.options.hostName}:${port}`;
    // A string without the port (the simulator leaves out 5671) would go round the relay unnoticed.
    if (!connectionString.includes(direct)) throw new Error(`cannot route "${hub.options.hostName}" through the relay: the connection string has no ${direct}`);
    return connectionString.replace(direct, `${hub.options.hostName}:${relayPort}`);
  };
  const connectionStrings: Record<string, string> = {};
  for (const id of devices) connectionStrings[id] = via(hub.deviceConnectionString(id));
  return {
    host: hub.options.host,
    hostName: hub.options.hostName,
    hubName: hub.options.hubName,
    amqpsPort: relayPort ?? port,
    amqpPort: hub.ports.amqp as number,
    certFile: path.join(certDir(), 'cert.pem'),
    serviceConnectionString: via(hub.serviceConnectionString('iothubowner')),
    gatewayConnectionString: via(hub.serviceConnectionString('device')),
    eventHubConnectionString: via(hub.eventHubConnectionString('iothubowner', 'amqps')),
    devices: connectionStrings,
  };
}

/** The order of contenders in round `r`: rotated, so no contender always runs first. */
function rotated<T>(items: T[], r: number): T[] {
  const k = r % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

async function runBenchmark(bench: Benchmark, flags: Flags, params: BenchParams): Promise<Map<string, ContenderResult>> {
  const loadBefore = load();
  const hub = await startSimulator({ amqpPort: 0, amqpsPort: 0, wsPort: null, certDir: certDir(), ...bench.simulator(flags) });
  const results = new Map<string, ContenderResult>();
  const workers: WorkerHandle[] = [];
  let relay: LatencyProxy | undefined;
  try {
    const rtt = bench.rttMs?.(flags);
    if (rtt !== undefined) relay = await startLatencyProxy(hub.options.host, hub.ports.amqps as number, rtt);
    const prepared = bench.prepare?.(hub, params) ?? [];
    const specs = bench.contenders(flags);
    for (const spec of specs) {
      const worker = new WorkerHandle(spec.name, {
        certFile: path.join(certDir(), 'cert.pem'),
        profileDir: flags.profileDir,
        profileName: `${bench.key}.${spec.name}`,
      });
      workers.push(worker);
      const notes = await worker.setup(hubInfo(hub, spec.devices ?? [], relay?.port), params);
      results.set(spec.name, { spec, rates: [], times: [], cpuPerMessage: [], maxRssKb: 0, notes });
    }
    for (let w = 0; w < flags.warmup; w++) {
      for (const worker of rotated(workers, w)) {
        await worker.round(-1 - w);
        bench.afterRound?.(hub, params);
      }
    }
    for (let r = 0; r < flags.rounds; r++) {
      for (const worker of rotated(workers, r)) {
        const result = await worker.round(r);
        bench.afterRound?.(hub, params);
        const entry = results.get(worker.contender) as ContenderResult;
        entry.rates.push(result.messages / (result.ms / 1000));
        entry.times.push(result.ms);
        entry.cpuPerMessage.push(result.messages > 0 ? result.cpuUs / result.messages : NaN);
      }
    }
    for (const worker of workers) {
      const end = await worker.finish();
      const entry = results.get(worker.contender) as ContenderResult;
      entry.maxRssKb = end.maxRssKb;
      entry.notes = end.notes;
    }
    report(bench, flags, results, [...prepared, `Load average (1, 5, 15 min) before: ${loadBefore}; after: ${load()}.`]);
    await Promise.all(workers.map((worker) => worker.end()));
    return results;
  } finally {
    for (const worker of workers) worker.kill();
    await relay?.close();
    await hub.close();
  }
}

function report(bench: Benchmark, flags: Flags, results: Map<string, ContenderResult>, prepared: string[]): void {
  const all = [...results.values()];
  const baseline = all.find((r) => r.spec.baseline);
  const base = baseline ? medianOf(results, baseline.spec.name) : undefined;
  out(`### ${bench.title}`);
  out();
  out(bench.describe(flags) + '.');
  for (const line of prepared) out(line);
  out();
  if (bench.timed) {
    // A time per round (a takeover), not a rate: the median and range of the rounds' times.
    const timeRows = all.map((r) => [
      r.spec.label,
      `${formatFixed(median(r.times) / 1000, 2)} s`,
      r.times.length > 1 ? `${formatFixed(Math.min(...r.times) / 1000, 2)}-${formatFixed(Math.max(...r.times) / 1000, 2)} s` : '-',
      `${formatCount(r.maxRssKb / 1024)} MB`,
    ]);
    out(table(['contender', 'time (median)', 'range', 'peak RSS'], timeRows, [false, true, true, true]));
    out();
    return;
  }
  const rows = all.map((r) => {
    const m = median(r.rates);
    return [
      r.spec.label + (r.spec.baseline ? ' (baseline)' : ''),
      formatCount(m),
      r.rates.length > 1 ? `${formatCount(Math.min(...r.rates))}-${formatCount(Math.max(...r.rates))}` : '-',
      base ? `${formatFixed(m / base, m / base < 0.1 ? 3 : 2)}x` : '-',
      formatCount(median(r.cpuPerMessage)),
      `${formatCount(r.maxRssKb / 1024)} MB`,
    ];
  });
  out(table(['contender', 'msgs/s (median)', 'range', 'vs baseline', 'CPU us/msg', 'peak RSS'], rows, [false, true, true, true, true, true]));
  const scaled = all.filter((r) => r.notes.devices !== undefined);
  if (scaled.length > 0) {
    out();
    out(
      table(
        [
          'contender',
          'devices',
          'time to authenticate and attach all',
          'extra RSS, all attached, after GC',
          'RSS per device',
          'live heap per device',
          'extra peak RSS while all send',
        ],
        scaled.map((r) => [
          r.spec.label,
          formatCount(r.notes.devices),
          `${formatFixed(r.notes.authMs / 1000, 2)} s`,
          `${formatFixed(r.notes.idleExtraRssMb, 1)} MB`,
          `${formatFixed(r.notes.idleRssPerDeviceKb, 1)} KB`,
          `${formatFixed(r.notes.heapPerDeviceKb, 1)} KB`,
          `${formatFixed(r.notes.peakExtraRssMb, 1)} MB`,
        ]),
        [false, true, true, true, true, true, true],
      ),
    );
  }
  const checks = bench.targets.map((t) => ({ t, c: t.check(results) }));
  if (checks.length > 0) {
    out();
    for (const { t, c } of checks) if (c) out(`- ${t.text}: ${c.value} ${c.met ? 'met' : 'MISSED'}`);
  }
  out();
}

/** Benchmark 5's promise: the simulator ingests faster than any client sent. */
function ingestCheck(all: Map<string, Map<string, ContenderResult>>): string | undefined {
  const ingest = all.get('ingest');
  if (!ingest) return undefined;
  const ceiling = Math.max(...[...ingest.keys()].map((k) => medianOf(ingest, k) ?? 0));
  const clients: Array<[string, number]> = [];
  for (const key of ['d2c', 'gateway']) {
    const results = all.get(key);
    if (!results) continue;
    for (const [name, r] of results) clients.push([r.spec.label, medianOf(results, name) ?? 0]);
  }
  if (clients.length === 0) return undefined;
  const [label, best] = clients.reduce((a, b) => (b[1] > a[1] ? b : a));
  return `- simulator ingest ${formatCount(ceiling)} msgs/s above every D2C client figure (highest: ${label}, ${formatCount(best)} msgs/s): ${ceiling > best ? 'met' : 'MISSED'}`;
}

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  if (flags.help) {
    out(USAGE);
    return;
  }
  const params = paramsFor(flags);
  out(`## Benchmarks${flags.short ? ' (short mode: proves the benchmarks run; the numbers mean little)' : ''}`);
  out();
  out(`Machine: ${machine()}. Load average at start: ${load()}.`);
  out(
    'Simulator and every contender on loopback over TLS (AMQPS); the simulator runs in the runner process, each contender in a worker process of its own (the *-rtt benchmarks add a relay process that delays every byte).',
  );
  out();
  const all = new Map<string, Map<string, ContenderResult>>();
  for (const key of KEYS) {
    if (!flags.only.includes(key)) continue;
    const bench = BENCHMARKS.find((b) => b.key === key) as Benchmark;
    all.set(key, await runBenchmark(bench, flags, params));
  }
  const check = ingestCheck(all);
  if (check) {
    out('### Simulator headroom');
    out();
    out(check);
    out();
  }
  out(`Load average at end: ${load()}.`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
