/**
 * The five benchmarks: which contenders run, what the simulator is set up with, and the targets the
 * project holds itself to (ratios measured in the same run).
 */
import rhea = require('rhea');
import type { SimulatedHub, SimulatorOptionsInput } from '../src/simulator';
import { partitionForDevice } from '../src/simulator/partitions';
import type { BenchmarkKey, Flags } from './args';
import { D2C_DEVICES, hasDeviceOut, ingestDevice } from './contenders/devices';
import type { BenchParams } from './protocol';
import { REBALANCE_EXPIRY_MS, REBALANCE_UPDATE_MS } from './contenders/rebalance';
import { EVENT_HUBS_DEFAULTS_SAMPLE } from './runners';

export interface ContenderSpec {
  name: string;
  label: string;
  baseline?: boolean;
  /** Devices whose connection strings the contender needs. */
  devices?: string[];
}

export interface ContenderResult {
  spec: ContenderSpec;
  /** msgs/s per timed round. */
  rates: number[];
  /** ms per timed round. */
  times: number[];
  /** CPU microseconds per message per timed round. */
  cpuPerMessage: number[];
  maxRssKb: number;
  notes: Record<string, number>;
}

export interface Target {
  text: string;
  /** The measured value as text and whether it meets the target; undefined when not measured. */
  check(results: Map<string, ContenderResult>): { value: string; met: boolean } | undefined;
}

export interface Benchmark {
  key: BenchmarkKey;
  title: string;
  describe(flags: Flags): string;
  simulator(flags: Flags): SimulatorOptionsInput;
  /** A round trip in ms the contenders reach the simulator over (through a relay), or loopback. */
  rttMs?(flags: Flags): number;
  contenders(flags: Flags): ContenderSpec[];
  /** Runs in the runner before the workers start; returns lines for the report. */
  prepare?(hub: SimulatedHub, params: BenchParams): string[];
  afterRound?(hub: SimulatedHub, params: BenchParams): void;
  targets: Target[];
  /** Each round measures a time (reported as such), not a rate. */
  timed?: boolean;
}

export function medianOf(results: Map<string, ContenderResult>, name: string): number | undefined {
  const r = results.get(name);
  if (!r || r.rates.length === 0) return undefined;
  const sorted = [...r.rates].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function ratioTarget(text: string, contender: string, versus: string, atLeast: number): Target {
  return {
    text,
    check(results) {
      const a = medianOf(results, contender);
      const b = medianOf(results, versus);
      if (a === undefined || b === undefined || b === 0) return undefined;
      const ratio = a / b;
      return { value: `${ratio.toFixed(2)}x`, met: ratio >= atLeast };
    },
  };
}

function gatewayTarget(contender: string, who: string): Target {
  return {
    text: `${who}: the devices behind one gateway connection in < 100 MB extra RSS (all attached, after GC)`,
    check(results) {
      const notes = results.get(contender)?.notes;
      if (!notes || notes.idleExtraRssMb === undefined) return undefined;
      return {
        value: `${notes.idleExtraRssMb.toFixed(1)} MB for ${notes.devices} devices (peak while all send: ${notes.peakExtraRssMb.toFixed(1)} MB)`,
        met: notes.idleExtraRssMb < 100,
      };
    },
  };
}

/** Device ids that spread evenly over the partitions, `perPartition` for each. */
export function spreadDevices(prefix: string, partitions: number, perPartition: number): string[] {
  const byPartition: string[][] = Array.from({ length: partitions }, () => []);
  for (let i = 0; byPartition.some((list) => list.length < perPartition); i++) {
    const id = `${prefix}-${i}`;
    const list = byPartition[partitionForDevice(id, partitions)];
    if (list.length < perPartition) list.push(id);
  }
  const out: string[] = [];
  for (let k = 0; k < perPartition; k++) for (const list of byPartition) out.push(list[k]);
  return out;
}

/** A JSON telemetry body of about `size` bytes, as devices usually send. */
export function telemetryBody(deviceId: string, i: number, size: number): Buffer {
  const head = JSON.stringify({ deviceId, seq: i, temperature: 21.5, humidity: 40, data: '' });
  const pad = Math.max(0, size - head.length);
  return Buffer.from(JSON.stringify({ deviceId, seq: i, temperature: 21.5, humidity: 40, data: 'x'.repeat(pad) }), 'utf8');
}

const d2cSenders = (): ContenderSpec[] => [
  { name: 'd2c.raw', label: 'rhea-promise sender, filling its credit', baseline: true, devices: [D2C_DEVICES.raw] },
  ...(hasDeviceOut() ? [{ name: 'd2c.node', label: 'device-out in a Node-RED flow', devices: [D2C_DEVICES.node] }] : []),
];
const d2cCore = (): ContenderSpec => ({
  name: 'd2c.core',
  label: "HubSender + msg mapping (device-out's core, outside Node-RED)",
  devices: [D2C_DEVICES.core],
});
const d2cSdk = (): ContenderSpec[] => [
  { name: 'd2c.sdk-await', label: 'azure-iot-device AMQP, await each sendEvent', devices: [D2C_DEVICES.sdkAwait] },
  { name: 'd2c.sdk-many', label: 'azure-iot-device AMQP, sendEvent with many in flight', devices: [D2C_DEVICES.sdkConcurrent] },
];
const d2cTargets = (): Target[] =>
  hasDeviceOut()
    ? [
        ratioTarget('device-out >= 0.6x raw sender', 'd2c.node', 'd2c.raw', 0.6),
        ratioTarget('device-out >= 5x azure-iot-device awaiting each send', 'd2c.node', 'd2c.sdk-await', 5),
      ]
    : [
        ratioTarget('device-out >= 0.6x raw sender (measured on its core HubSender: device-out is not in this checkout)', 'd2c.core', 'd2c.raw', 0.6),
        ratioTarget('device-out >= 5x azure-iot-device awaiting each send (measured on its core HubSender)', 'd2c.core', 'd2c.sdk-await', 5),
      ];
const c2dContenders = (): ContenderSpec[] => [
  { name: 'c2d.raw', label: 'rhea-promise sender, filling its credit', baseline: true },
  { name: 'c2d.node', label: 'c2d-send in a Node-RED flow' },
  { name: 'c2d.sdk-await', label: 'azure-iothub Client.send, awaited' },
  { name: 'c2d.sdk-many', label: 'azure-iothub Client.send, many in flight' },
];
const c2dSetup = {
  prepare(hub: SimulatedHub, params: BenchParams): string[] {
    for (const id of params.c2dDevices) hub.registry.addDevice(id);
    return [];
  },
  afterRound(hub: SimulatedHub, params: BenchParams): void {
    for (const id of params.c2dDevices) hub.c2d.purge(id);
  },
};
const c2dTarget = (): Target => ratioTarget('c2d-send >= 5x azure-iothub awaiting each send', 'c2d.node', 'c2d.sdk-await', 5);

const duration = (f: Flags): string => `${f.rounds} round${f.rounds === 1 ? '' : 's'} of ${f.durationMs / 1000} s after ${f.warmup} warm-up`;
const D2C_RETENTION = 10_000;
const d2cDescription = (f: Flags): string => `${f.size}-byte payload, ${f.window} in flight where the client pipelines, ${duration(f)}`;
const c2dDescription = (f: Flags): string =>
  `${f.size}-byte payload to ${f.c2dDevices} devices in turn, ${f.window} in flight where the client pipelines, ${duration(f)}; queues purged after each round`;
const overRelay = (f: Flags): string =>
  `; every byte passes a relay that holds it ${f.rttMs / 2} ms each way: a ${f.rttMs} ms round trip (about what a nearby Azure region is from a factory), bandwidth not limited`;

export const BENCHMARKS: Benchmark[] = [
  {
    key: 'd2c',
    title: 'D2C: one device sends telemetry',
    describe: (f) => d2cDescription(f),
    simulator: () => ({ d2c: { maxEventsPerPartition: D2C_RETENTION } }),
    contenders: () => [...d2cSenders(), d2cCore(), ...d2cSdk()],
    targets: d2cTargets(),
  },
  {
    key: 'telemetry',
    title: 'Telemetry read: drain a pre-filled hub',
    describe: (f) =>
      `${f.messages.toLocaleString('en-US')} JSON events of about ${f.size} bytes in 4 partitions, read from the start each round, credit/prefetch ${f.prefetch}, ${f.rounds} timed round${f.rounds === 1 ? '' : 's'} after ${f.warmup} warm-up; time from first event to last`,
    simulator: (f) => ({ partitionCount: 4, d2c: { maxEventsPerPartition: Math.max(100_000, f.messages) } }),
    contenders: (f) => [
      { name: 'telemetry.raw', label: 'rhea-promise receivers, one per partition', baseline: true },
      { name: 'telemetry.node', label: 'telemetry-in in a Node-RED flow' },
      { name: 'telemetry.node-batch', label: 'telemetry-in, batches as large as the credit' },
      { name: 'telemetry.node-context', label: 'telemetry-in, context-store checkpoints (memory) every second' },
      { name: 'telemetry.node-blob', label: 'telemetry-in, Blob checkpoints (Azurite) every second, balanced' },
      { name: 'telemetry.sdk', label: '@azure/event-hubs subscribe, maxBatchSize = credit' },
      {
        name: 'telemetry.sdk-defaults',
        label: `@azure/event-hubs subscribe, default options (first ${Math.min(f.messages, EVENT_HUBS_DEFAULTS_SAMPLE).toLocaleString('en-US')} events)`,
      },
    ],
    prepare(hub, params) {
      const devices = spreadDevices('bench-tm', hub.partitions.length, 4);
      const start = performance.now();
      for (let i = 0; i < params.messages; i++) {
        const deviceId = devices[i % devices.length];
        hub.ingest(deviceId, undefined, {
          message_id: `tm-${i}`,
          content_type: 'application/json',
          content_encoding: 'utf-8',
          body: rhea.message.data_section(telemetryBody(deviceId, i, params.size)),
        } as rhea.Message);
      }
      const seconds = (performance.now() - start) / 1000;
      return [
        `Pre-filled with the simulator's ingest(): ${params.messages.toLocaleString('en-US')} events in ${seconds.toFixed(2)} s (${Math.round(params.messages / seconds).toLocaleString('en-US')} events/s).`,
      ];
    },
    targets: [
      ratioTarget('telemetry-in >= 0.6x raw receivers', 'telemetry.node', 'telemetry.raw', 0.6),
      ratioTarget('telemetry-in >= 1.5x @azure/event-hubs at its best (maxBatchSize = credit)', 'telemetry.node', 'telemetry.sdk', 1.5),
      ratioTarget('telemetry-in batches >= 1.2x @azure/event-hubs at its best (maxBatchSize = credit)', 'telemetry.node-batch', 'telemetry.sdk', 1.2),
      ratioTarget(
        'telemetry-in with Blob checkpoints every second >= 0.8x with context-store checkpoints',
        'telemetry.node-blob',
        'telemetry.node-context',
        0.8,
      ),
      ratioTarget(
        'telemetry-in >= 1.5x @azure/event-hubs as it comes (default options: batches of 1, prefetch 3)',
        'telemetry.node',
        'telemetry.sdk-defaults',
        1.5,
      ),
    ],
  },
  {
    key: 'rebalance',
    title: 'Rebalance: a balanced reader killed',
    describe: (f) =>
      `two TelemetryReaders with Blob checkpoints (Azurite) own 4 of 8 partitions each; one, a process of its own, is killed with SIGKILL; time from the kill until the other owns all 8 (balancing every ${REBALANCE_UPDATE_MS / 1000} s, claims lapse after ${REBALANCE_EXPIRY_MS / 1000} s: the lapse, then one claim a round, as the SDKs' balanced strategy); ${f.rounds} timed round${f.rounds === 1 ? '' : 's'} after ${f.warmup} warm-up`,
    simulator: () => ({ partitionCount: 8 }),
    contenders: () => [{ name: 'rebalance.kill', label: 'telemetry-in core (TelemetryReader), balanced through Blob', baseline: true }],
    targets: [],
    timed: true,
  },
  {
    key: 'c2d',
    title: 'C2D: the service sends to many devices',
    describe: (f) => c2dDescription(f),
    simulator: () => ({ c2d: { maxQueueDepth: 1_000_000 } }),
    contenders: c2dContenders,
    ...c2dSetup,
    targets: [c2dTarget()],
  },
  {
    key: 'gateway',
    title: 'Gateway scale: many devices on one connection',
    describe: (f) =>
      `${f.devices} devices through one connection with a DeviceConnect policy (a CBS token and a D2C link each), ${f.size}-byte payload, every device sending; ${duration(f)}`,
    simulator: () => ({ d2c: { maxEventsPerPartition: D2C_RETENTION } }),
    contenders: () => [
      { name: 'gateway.core', label: 'HubConnection + one HubSender per device', baseline: true },
      ...(hasDeviceOut() ? [{ name: 'gateway.node', label: 'device-out in a Node-RED flow, msg.deviceId per device' }] : []),
    ],
    targets: [gatewayTarget('gateway.core', 'core'), gatewayTarget('gateway.node', 'device-out')],
  },
  {
    key: 'ingest',
    title: "The simulator's own D2C ingest rate",
    describe: (f) => `raw senders, one device per connection, ${f.size}-byte payload, ${duration(f)}`,
    simulator: () => ({ d2c: { maxEventsPerPartition: D2C_RETENTION } }),
    contenders: (f) => [
      { name: 'ingest.raw-one', label: 'rhea-promise sender, 1 connection', baseline: true, devices: [ingestDevice(0)] },
      {
        name: 'ingest.raw-many',
        label: `rhea-promise senders, ${f.ingestConnections} connections`,
        devices: Array.from({ length: f.ingestConnections }, (_, i) => ingestDevice(i)),
      },
    ],
    targets: [],
  },
  {
    key: 'd2c-rtt',
    title: 'D2C over a network round trip',
    describe: (f) => d2cDescription(f) + overRelay(f),
    simulator: () => ({ d2c: { maxEventsPerPartition: D2C_RETENTION } }),
    rttMs: (f) => f.rttMs,
    // Without device-out in the checkout its targets are judged on the core sender, so that runs here too.
    contenders: () => [...d2cSenders(), ...(hasDeviceOut() ? [] : [d2cCore()]), ...d2cSdk()],
    targets: d2cTargets(),
  },
  {
    key: 'c2d-rtt',
    title: 'C2D over a network round trip',
    describe: (f) => c2dDescription(f) + overRelay(f),
    simulator: () => ({ c2d: { maxQueueDepth: 1_000_000 } }),
    rttMs: (f) => f.rttMs,
    contenders: c2dContenders,
    ...c2dSetup,
    targets: [c2dTarget()],
  },
];

export function paramsFor(flags: Flags): BenchParams {
  return {
    size: flags.size,
    durationMs: flags.durationMs,
    window: flags.window,
    messages: flags.messages,
    prefetch: flags.prefetch,
    c2dDevices: Array.from({ length: flags.c2dDevices }, (_, i) => `bench-c2d-${i}`),
    gatewayDevices: Array.from({ length: flags.devices }, (_, i) => `bench-gw-${i}`),
    ingestConnections: flags.ingestConnections,
  };
}
