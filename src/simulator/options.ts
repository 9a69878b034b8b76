/**
 * Simulator settings: defaults, the JSON config file (devices, policies, consumer groups, like the
 * Event Hubs emulator's Config.json), and validation that names the bad field in one line.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { isValidId } from '../amqp/message-rules';
import { DEFAULT_POLICY_RIGHTS, type Right } from './registry';

export interface DeviceConfig {
  deviceId: string;
  primaryKey?: string;
  secondaryKey?: string;
  modules?: Array<{ moduleId: string; primaryKey?: string; secondaryKey?: string }>;
}

export interface PolicyConfig {
  name: string;
  primaryKey: string;
  secondaryKey?: string;
  rights: Right[];
}

export interface SimulatorOptions {
  /** Address to bind; 127.0.0.1 unless you mean to share the simulator. */
  host: string;
  /** Host name written into connection strings and accepted in token audiences. */
  hostName: string;
  /** IoT Hub name, also the Event Hubs-compatible entity name. */
  hubName: string;
  /** Plain AMQP port (0 = any free port, null = off). */
  amqpPort: number | null;
  /** AMQPS port (0 = any free port, null = off). */
  amqpsPort: number | null;
  /** AMQP over WebSockets port, path `/$iothub/websocket` (0 = any free port, null = off). */
  wsPort: number | null;
  /**
   * HTTPS port of the service REST API (direct methods, twins, registry; 0 = any free port, null = off).
   * The real hub serves it on 443; the service SDKs have no port option (see docs/METHODS-AND-TWINS.md).
   */
  restPort: number | null;
  /** TLS certificate and key (PEM); made and stored in `certDir` when absent. */
  tls?: { cert: string; key: string };
  /** Where a made certificate is kept so clients can trust it once. */
  certDir: string;
  partitionCount: number;
  consumerGroups: string[];
  devices: DeviceConfig[];
  /** Replaces the default policies when given. */
  policies?: PolicyConfig[];
  /** Register unknown devices that present a token signed with the default device key. */
  autoRegister: boolean;
  /** Time after a token's expiry before its links are detached. */
  tokenGraceMs: number;
  /** Idle timeout advertised in our open frame. */
  idleTimeoutMs: number;
  /** How often expiry (tokens, C2D TTL, retention) is checked. */
  sweepIntervalMs: number;
  c2d: { maxQueueDepth: number; lockMs: number; maxDeliveryCount: number; defaultTtlMs: number; maxMessageBytes: number };
  d2c: { maxMessageBytes: number; maxEventsPerPartition: number; retentionMs: number };
  feedback: { batchSize: number; flushIntervalMs: number; maxDeliveryCount: number; maxPendingMessages: number; ttlMs: number };
  /** Most tokens one connection may hold (a gateway holds one per device). */
  maxTokensPerConnection: number;
  /** Largest AMQP frame a client may send (advertised in our open); a bigger one drops the connection. */
  maxFrameBytes: number;
  /** A client that has not opened its AMQP connection this long after connecting is dropped. */
  openTimeoutMs: number;
  /**
   * Close a connection that has had no link but `$cbs` for this long (0 = never), as Event Hubs and
   * Service Bus do after 300,000 ms. Off by default: whether IoT Hub does the same is unverified.
   */
  linklessTimeoutMs: number;
  /** Folder that keeps the registry, C2D queues and partitions across restarts (in memory when absent). */
  location?: string;
}

export function defaultCertDir(): string {
  return path.join(os.homedir(), '.iothub-sim');
}

/**
 * How often the simulator flushes feedback when it serves a flow being tried out (the local mode of the
 * config node, and `npm start`): 2 s instead of the hub's 15 s, so feedback answers while one watches.
 * The help and the README say "about 2 s"; one constant keeps both simulators to it.
 */
export const LOCAL_FEEDBACK_FLUSH_MS = 2000;

export const DEFAULT_OPTIONS: SimulatorOptions = {
  host: '127.0.0.1',
  hostName: 'localhost',
  hubName: 'devhub',
  amqpPort: 5672,
  amqpsPort: 5671,
  wsPort: null,
  restPort: null,
  certDir: defaultCertDir(),
  partitionCount: 4,
  consumerGroups: ['$Default'],
  devices: [],
  autoRegister: true,
  tokenGraceMs: 0,
  idleTimeoutMs: 240_000,
  sweepIntervalMs: 1000,
  c2d: { maxQueueDepth: 50, lockMs: 60_000, maxDeliveryCount: 10, defaultTtlMs: 3_600_000, maxMessageBytes: 64 * 1024 },
  d2c: { maxMessageBytes: 256 * 1024, maxEventsPerPartition: 100_000, retentionMs: 24 * 3_600_000 },
  feedback: { batchSize: 64, flushIntervalMs: 15_000, maxDeliveryCount: 10, maxPendingMessages: 10_000, ttlMs: 3_600_000 },
  // IoT Hub's limit: "The maximum number of tokens per connection (1000) has been reached".
  maxTokensPerConnection: 1000,
  // The Azure AMQP stack's default frame size; senders split larger messages into frames.
  maxFrameBytes: 64 * 1024,
  openTimeoutMs: 30_000,
  linklessTimeoutMs: 0,
};

export type SimulatorOptionsInput = Partial<Omit<SimulatorOptions, 'c2d' | 'd2c' | 'feedback'>> & {
  c2d?: Partial<SimulatorOptions['c2d']>;
  d2c?: Partial<SimulatorOptions['d2c']>;
  feedback?: Partial<SimulatorOptions['feedback']>;
};

export class OptionsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OptionsError';
  }
}

export function resolveOptions(input: SimulatorOptionsInput = {}): SimulatorOptions {
  const options: SimulatorOptions = {
    ...DEFAULT_OPTIONS,
    ...stripUndefined(input),
    c2d: { ...DEFAULT_OPTIONS.c2d, ...stripUndefined(input.c2d ?? {}) },
    d2c: { ...DEFAULT_OPTIONS.d2c, ...stripUndefined(input.d2c ?? {}) },
    feedback: { ...DEFAULT_OPTIONS.feedback, ...stripUndefined(input.feedback ?? {}) },
  };
  validate(options);
  return options;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function checkPort(name: string, value: number | null): void {
  if (value === null) return;
  if (!Number.isInteger(value) || value < 0 || value > 65535) throw new OptionsError(`${name} must be a port number from 0 to 65535`);
}

function checkPositive(name: string, value: number, min = 1): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) throw new OptionsError(`${name} must be a number of at least ${min}`);
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

function checkKey(name: string, key: unknown): void {
  if (key === undefined) return;
  if (typeof key !== 'string' || !BASE64.test(key) || Buffer.from(key, 'base64').length < 16) {
    throw new OptionsError(`${name} must be a base64 key of at least 16 bytes`);
  }
}

function validate(o: SimulatorOptions): void {
  checkPort('amqpPort', o.amqpPort);
  checkPort('amqpsPort', o.amqpsPort);
  checkPort('wsPort', o.wsPort);
  checkPort('restPort', o.restPort);
  if (o.amqpPort === null && o.amqpsPort === null && o.wsPort === null) throw new OptionsError('at least one of amqpPort, amqpsPort and wsPort must be on');
  if (!/^[A-Za-z0-9.-]+$/.test(o.hostName)) throw new OptionsError('hostName must be a host name');
  if (!/^[A-Za-z0-9][A-Za-z0-9-]{1,48}[A-Za-z0-9]$/.test(o.hubName)) throw new OptionsError('hubName must be 3 to 50 letters, digits or hyphens');
  if (!Number.isInteger(o.partitionCount) || o.partitionCount < 1 || o.partitionCount > 32) throw new OptionsError('partitionCount must be from 1 to 32');
  if (!Array.isArray(o.consumerGroups) || o.consumerGroups.some((g) => typeof g !== 'string' || g === '')) {
    throw new OptionsError('consumerGroups must be a list of names');
  }
  checkPositive('tokenGraceMs', o.tokenGraceMs, 0);
  checkPositive('idleTimeoutMs', o.idleTimeoutMs, 0);
  checkPositive('sweepIntervalMs', o.sweepIntervalMs, 10);
  // AMQP lets no peer ask for frames under 512 bytes.
  if (!Number.isInteger(o.maxFrameBytes) || o.maxFrameBytes < 512 || o.maxFrameBytes > 0xffffffff)
    throw new OptionsError('maxFrameBytes must be a whole number from 512 to 4294967295');
  checkPositive('openTimeoutMs', o.openTimeoutMs, 10);
  checkPositive('linklessTimeoutMs', o.linklessTimeoutMs, 0);
  if (o.location !== undefined && (typeof o.location !== 'string' || o.location.trim() === '')) throw new OptionsError('location must be a folder path');
  for (const [k, v] of Object.entries(o.c2d)) checkPositive(`c2d.${k}`, v);
  for (const [k, v] of Object.entries(o.d2c)) checkPositive(`d2c.${k}`, v);
  for (const [k, v] of Object.entries(o.feedback)) checkPositive(`feedback.${k}`, v);
  if (!Array.isArray(o.devices)) throw new OptionsError('devices must be a list');
  o.devices.forEach((d, i) => {
    if (!d || typeof d.deviceId !== 'string' || !isValidId(d.deviceId)) throw new OptionsError(`devices[${i}].deviceId is missing or invalid`);
    checkKey(`devices[${i}].primaryKey`, d.primaryKey);
    checkKey(`devices[${i}].secondaryKey`, d.secondaryKey);
    if (d.modules !== undefined && !Array.isArray(d.modules)) throw new OptionsError(`devices[${i}].modules must be a list`);
    (d.modules ?? []).forEach((m, j) => {
      if (!m || typeof m.moduleId !== 'string' || !isValidId(m.moduleId)) throw new OptionsError(`devices[${i}].modules[${j}].moduleId is missing or invalid`);
      checkKey(`devices[${i}].modules[${j}].primaryKey`, m.primaryKey);
    });
  });
  if (o.policies !== undefined) {
    if (!Array.isArray(o.policies) || o.policies.length === 0) throw new OptionsError('policies must be a non-empty list');
    const known = new Set(Object.values(DEFAULT_POLICY_RIGHTS).flat());
    o.policies.forEach((p, i) => {
      if (!p || typeof p.name !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(p.name)) throw new OptionsError(`policies[${i}].name is missing or invalid`);
      if (p.primaryKey === undefined) throw new OptionsError(`policies[${i}].primaryKey is missing`);
      checkKey(`policies[${i}].primaryKey`, p.primaryKey);
      checkKey(`policies[${i}].secondaryKey`, p.secondaryKey);
      if (!Array.isArray(p.rights) || p.rights.some((r) => !known.has(r))) {
        throw new OptionsError(`policies[${i}].rights must list some of ${[...known].join(', ')}`);
      }
    });
  }
}

/** Reads a JSON config file; errors say which file and what is wrong, in one line. */
export async function readConfigFile(file: string): Promise<SimulatorOptionsInput> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new OptionsError(`cannot read config file ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    // Node's parse errors quote the text around the fault, which may be a key: give the position only.
    const position = /position (\d+)/.exec((err as Error).message)?.[1];
    throw new OptionsError(`config file ${file} is not valid JSON${position === undefined ? '' : ` (at character ${position})`}`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new OptionsError(`config file ${file} must hold a JSON object`);
  const allowed = new Set([...Object.keys(DEFAULT_OPTIONS), 'tls', 'policies', 'location']);
  for (const key of Object.keys(parsed)) {
    if (!allowed.has(key)) throw new OptionsError(`config file ${file} has an unknown setting "${key.slice(0, 40)}"`);
  }
  return parsed as SimulatorOptionsInput;
}
