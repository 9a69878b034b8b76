/**
 * `npm run soak -- --minutes N`: the end-to-end example flow (examples/end-to-end.json) on the local
 * simulator under steady traffic both ways, with faults injected at random: every fault of the
 * matrix, throttling windows and tokens expired by the hub. Prints sent, received, lost, duplicated
 * and the memory trend; exits 1 if anything was lost, repeated unexpectedly, reordered or failed, or
 * if memory kept growing.
 *
 * Options: --minutes N (2), --rate N messages per second each way (40), --seed N (random),
 * --faults a,b,... (the kinds to draw from; all by default).
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import helper from 'node-red-node-test-helper';
import { startSimulator, type SimulatedHub } from '../../src/simulator';
import { freePort } from '../helpers/hub';
import { FAULTS, until, type Fault } from './faults';
import { Pipeline, type Roles } from './pipeline';

type FlowNode = Record<string, unknown> & { id: string; wires?: string[][] };
type SoakFault = Fault | 'throttle' | 'expire-tokens';

const DEVICE = 'demo-sensor';
const ROLES: Roles = { c2dSend: 'e2e-c2d', telemetryIn: 'e2e-telemetry', deviceOut: 'e2e-device-out', deviceIns: { [DEVICE]: 'e2e-device-in' } };
/** C2D waiting at the hub is bounded (50 per device): the driver keeps below that. */
const MAX_C2D_OUTSTANDING = 40;
const MAX_D2C_PENDING = 800;

/** A small seeded generator, so that a run can be repeated. */
function random(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 0x100000000;
  };
}

/**
 * The example flow, driven by the soak instead of its inject nodes. Its debug nodes become the test
 * runtime's sink nodes (the runtime has no editor for them to talk to), its comment goes.
 */
function exampleFlow(port: number): FlowNode[] {
  const file = path.resolve(__dirname, '..', '..', '..', 'examples', 'end-to-end.json');
  const flow = JSON.parse(readFileSync(file, 'utf8')) as FlowNode[];
  const drop = new Set(flow.filter((n) => n.type === 'inject' || n.type === 'function' || n.type === 'comment').map((n) => n.id));
  return flow
    .filter((n) => !drop.has(n.id))
    .map((n) => {
      if (n.type === 'debug') return { id: n.id, type: 'helper', z: n.z, wires: [] };
      // Reconnect within seconds: a soak that waits a minute per fault injects few of them.
      // Throttling windows here last 0.5-3 s, every few seconds: pauses of a second or more (not the hub's 10 s) keep the run about the faults.
      if (n.type === 'iothub-connection') return { ...n, localPort: port, reconnectMin: 200, reconnectMax: 3000, throttleMin: 1000, throttleMax: 3000 };
      return n;
    });
}

interface Sample {
  at: number;
  rss: number;
  heap: number;
}

const mb = (bytes: number): string => (bytes / 1048576).toFixed(1);

/**
 * The test runtime records every call of every node method (its spies) for assertions; a soak makes
 * millions. Forgetting them keeps the measurement about the nodes, not the recorder.
 */
function forgetRecordedCalls(): void {
  (helper as unknown as { _sandbox?: { resetHistory(): void } })._sandbox?.resetHistory();
}

function heapAfterGc(): number {
  forgetRecordedCalls();
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  return process.memoryUsage().heapUsed;
}

/** Least-squares slope of RSS over time, MB per minute. */
function trend(samples: Sample[]): number {
  if (samples.length < 2) return 0;
  const xs = samples.map((s) => s.at / 60_000);
  const ys = samples.map((s) => s.rss / 1048576);
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
  const my = ys.reduce((a, b) => a + b, 0) / ys.length;
  let num = 0;
  let den = 0;
  for (let i = 0; i < xs.length; i++) {
    num += (xs[i] - mx) * (ys[i] - my);
    den += (xs[i] - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

const ALL_FAULTS: SoakFault[] = [...FAULTS, 'throttle', 'expire-tokens'];

async function inject(pipeline: Pipeline, hub: SimulatedHub, fault: SoakFault, pick: () => number): Promise<SoakFault> {
  if (fault === 'throttle') {
    hub.faults.throttleFor(500 + Math.floor(pick() * 2500));
    return fault;
  }
  if (fault === 'expire-tokens') {
    pipeline.markFault();
    hub.faults.expireTokens();
    return fault;
  }
  await pipeline.fault(fault).over;
  return fault;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { minutes: { type: 'string', default: '2' }, rate: { type: 'string', default: '40' }, seed: { type: 'string' }, faults: { type: 'string' } },
    strict: true,
  });
  const minutes = Number(values.minutes);
  const rate = Number(values.rate);
  const seed = values.seed === undefined ? Math.floor(Math.random() * 1e9) : Number(values.seed);
  if (!(minutes > 0) || !(rate > 0) || !Number.isInteger(seed)) throw new Error('--minutes and --rate must be positive numbers, --seed a whole number');
  const kinds = values.faults === undefined ? ALL_FAULTS : (values.faults.split(',').map((f) => f.trim()) as SoakFault[]);
  const unknown = kinds.filter((k) => !ALL_FAULTS.includes(k));
  if (unknown.length > 0 || kinds.length === 0) throw new Error(`--faults takes some of ${ALL_FAULTS.join(', ')}`);
  const pick = random(seed);
  const log = (line: string): void => void process.stdout.write(`${line}\n`);

  const port = await freePort();
  // The simulator runs here, on the port the flow's config node uses; the node joins it (as it joins
  // one started by `npm start`). Retention is bounded so that memory can level off in a long soak.
  const hub = await startSimulator({ amqpPort: port, amqpsPort: null, wsPort: null, d2c: { maxEventsPerPartition: 10_000 } });
  const pipeline = await Pipeline.load(hub, exampleFlow(port), {}, ROLES, [DEVICE]);
  log(`soak: ${minutes} min, ${rate} msg/s each way, seed ${seed}, the end-to-end example on the local simulator (port ${port})`);
  await pipeline.waitReady(60_000);

  const started = Date.now();
  const samples: Sample[] = [];
  let baselineHeap = 0;
  const faults = new Map<SoakFault, number>();
  let stop = false;

  // Traffic: a steady rate each way, held back only by what the hub and the nodes can hold.
  let credit = 0;
  let last = Date.now();
  const traffic = setInterval(() => {
    const now = Date.now();
    credit = Math.min(credit + ((now - last) / 1000) * rate, rate);
    last = now;
    while (credit >= 1 && !stop) {
      credit -= 1;
      if (pipeline.d2c.pendingCount < MAX_D2C_PENDING) pipeline.sendD2c(DEVICE);
      if (pipeline.c2d.outstanding < MAX_C2D_OUTSTANDING) pipeline.sendC2d(DEVICE);
    }
  }, 25);

  const sampler = setInterval(() => {
    forgetRecordedCalls();
    const m = process.memoryUsage();
    samples.push({ at: Date.now() - started, rss: m.rss, heap: m.heapUsed });
    const d2c = pipeline.d2c.report();
    const c2d = pipeline.c2d.report();
    const total = [...faults.values()].reduce((a, b) => a + b, 0);
    log(
      `  ${String(Math.round((Date.now() - started) / 1000)).padStart(5)} s  D2C ${d2c.sent} sent ${d2c.received} stored  C2D ${c2d.sent} sent ${c2d.received} received  ` +
        `faults ${total}  RSS ${mb(m.rss)} MB  heap ${mb(m.heapUsed)} MB`,
    );
  }, 10_000);

  // Faults at random moments, one at a time, each given the time to heal before the next.
  const faulting = (async () => {
    await new Promise((r) => setTimeout(r, 5000));
    baselineHeap = heapAfterGc();
    while (!stop) {
      await new Promise((r) => setTimeout(r, 3000 + pick() * 9000));
      if (stop) break;
      const at = Date.now();
      const kind = kinds[Math.floor(pick() * kinds.length)];
      log(`  ${String(Math.round((at - started) / 1000)).padStart(5)} s  ${kind}`);
      const fault = await inject(pipeline, hub, kind, pick);
      faults.set(fault, (faults.get(fault) ?? 0) + 1);
      await pipeline.waitReady(120_000).catch((err: Error) => pipeline.unexpected.push(`no recovery after ${fault}: ${err.message}`));
      // Messages must flow again too, not only statuses: one round trip each way after the fault.
      const d2cBefore = pipeline.d2c.arrivals;
      const c2dBefore = pipeline.c2d.arrivals;
      await until(
        () => pipeline.d2c.arrivals > d2cBefore && pipeline.c2d.arrivals > c2dBefore,
        () => `traffic after ${fault}: ${pipeline.describeDrain()}`,
        120_000,
      ).catch((err: Error) => pipeline.unexpected.push(err.message));
      log(`  ${String(Math.round((Date.now() - started) / 1000)).padStart(5)} s  ${fault}: flowing again after ${((Date.now() - at) / 1000).toFixed(1)} s`);
    }
  })();

  await new Promise((r) => setTimeout(r, minutes * 60_000));
  stop = true;
  clearInterval(traffic);
  await faulting;
  hub.faults.throttleFor(0);
  let drained = true;
  await pipeline.drain(120_000).catch((err: Error) => {
    drained = false;
    log(`  not drained: ${err.message}`);
  });
  clearInterval(sampler);
  const endHeap = heapAfterGc();

  const d2c = pipeline.d2c.report();
  const tel = pipeline.telemetry.report();
  const c2d = pipeline.c2d.report();
  const lost = d2c.lost.length + tel.lost.length + c2d.lost.length;
  log('');
  log(`faults: ${[...faults].map(([f, n]) => `${f} ${n}`).join(', ') || 'none'}`);
  log(
    `D2C           sent ${d2c.sent}  stored ${d2c.received}  lost ${d2c.lost.length}  duplicated ${d2c.duplicates}  unexpected ${d2c.unexpected.length}  reordered ${d2c.reordered.length}  failed ${d2c.failed}`,
  );
  log(
    `telemetry-in  expected ${tel.sent}  read ${tel.received}  lost ${tel.lost.length}  duplicated ${tel.duplicates}  unexpected ${tel.unexpected.length}  reordered ${tel.reordered.length}`,
  );
  log(
    `C2D           sent ${c2d.sent}  received ${c2d.received}  lost ${c2d.lost.length}  duplicated ${c2d.duplicates}  unexpected ${c2d.unexpected.length}  failed ${c2d.failed}`,
  );
  const half = samples.filter((s) => s.at >= (minutes * 60_000) / 2);
  const slope = trend(half);
  log(
    `memory: RSS ${samples.length > 0 ? `${mb(samples[0].rss)} -> ${mb(samples[Math.floor(samples.length / 2)].rss)} -> ${mb(samples[samples.length - 1].rss)} MB` : 'no samples'}, ` +
      `trend over the second half ${slope >= 0 ? '+' : ''}${slope.toFixed(2)} MB/min; heap after GC ${mb(baselineHeap)} -> ${mb(endHeap)} MB`,
  );
  const problems = pipeline.problems();
  // Memory must level off: the heap after GC may not grow by half and by more than 30 MB.
  const grew = baselineHeap > 0 && endHeap > baselineHeap * 1.5 && endHeap - baselineHeap > 30 * 1048576;
  if (grew) problems.push(`the heap grew from ${mb(baselineHeap)} to ${mb(endHeap)} MB`);
  if (!drained) problems.push('not everything arrived within 2 minutes of the end');
  for (const p of problems) log(`PROBLEM: ${p}`);
  log(problems.length === 0 && lost === 0 ? 'soak: passed' : 'soak: FAILED');
  await pipeline.close();
  await hub.close();
  process.exit(problems.length === 0 && lost === 0 ? 0 : 1);
}

main().catch((err: unknown) => {
  process.stderr.write(`soak: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
