/**
 * Keeps the simulator's state in a folder (`--location DIR`, as Azurite names it): the registry, the
 * C2D queues, the partitions and the twins. Every change is appended to a journal, one JSON line each, written
 * before the client hears "accepted", so a restart (or a killed process) loses no accepted message.
 * On start the journal is read back and rewritten as a compact snapshot of what is still live; a
 * journal that grows far past its snapshot is compacted the same way while running.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { C2dEntryRecord, C2dQueueOwner } from './c2d';
import type { DeviceRecord, ModuleRecord } from './registry';
import { twinKey, type TwinState } from './twins';

/** A device as the journal keeps it: the registry's record, its modules as a list. */
export interface StoredDevice extends Omit<DeviceRecord, 'modules'> {
  modules: ModuleRecord[];
}

export interface StoredEventRecord {
  partitionId: string;
  sequenceNumber: number;
  offset: number;
  enqueuedTime: number;
  deviceId: string;
  encoded: Buffer;
}

/** A queued cloud-to-device message as the journal keeps it: the queue's record, the message as bytes. */
export interface StoredC2d extends C2dQueueOwner, Omit<C2dEntryRecord, 'message'> {
  /** The whole message as AMQP bytes. */
  encoded: Buffer;
}

/** Everything the journal holds once read back. */
export interface StoredState {
  devices: Map<string, StoredDevice>;
  /** Per partition: events in order, and the numbers the next event gets. */
  partitions: Map<string, { events: StoredEventRecord[]; next?: { sequenceNumber: number; offset: number } }>;
  /** Per C2D target ("<device>" or "<device>/<module>"): messages by sequence number, and the next number. */
  c2d: Map<string, { messages: Map<number, StoredC2d>; nextSequence: number }>;
  /** Twins by "<device>" or "<device>/<module>", whole: a change rewrites the twin, as it is small (32 KB a section). */
  twins: Map<string, TwinState>;
}

type Line =
  | { t: 'device'; d: Omit<StoredDevice, 'modules'> }
  | { t: 'module'; deviceId: string; m: StoredDevice['modules'][number] }
  | { t: 'device-removed'; deviceId: string }
  | { t: 'module-removed'; deviceId: string; moduleId: string }
  | { t: 'event'; p: string; seq: number; off: number; time: number; dev: string; data: string }
  | { t: 'partition'; p: string; seq: number; off: number }
  | { t: 'c2d'; target: string; m: Omit<StoredC2d, 'encoded'>; data: string }
  | { t: 'c2d-count'; target: string; seq: number; count: number }
  | { t: 'c2d-done'; target: string; seq: number }
  | { t: 'c2d-next'; target: string; next: number }
  | { t: 'twin'; twin: TwinState };

const JOURNAL = 'iothub-sim.journal';
/** Compact while running once the journal passes this and twice the last snapshot. */
const COMPACT_AFTER_BYTES = 64 * 1024 * 1024;

export class StoreError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StoreError';
  }
}

function emptyState(): StoredState {
  return { devices: new Map(), partitions: new Map(), c2d: new Map(), twins: new Map() };
}

export class Store {
  private fd: number | undefined;
  private written = 0;
  private snapshotBytes = 0;
  /** Takes the live state when the journal is compacted while running. */
  snapshotSource: (() => StoredState) | undefined;

  private constructor(readonly dir: string) {}

  /** Opens (or creates) the folder and reads back what it holds. Unreadable lines at the end are a write cut short. */
  static open(dir: string): { store: Store; state: StoredState } {
    try {
      fs.mkdirSync(dir, { recursive: true });
    } catch (err) {
      throw new StoreError(`cannot use the location ${dir}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    const store = new Store(dir);
    const state = store.read();
    return { store, state };
  }

  private get file(): string {
    return path.join(this.dir, JOURNAL);
  }

  private read(): StoredState {
    const state = emptyState();
    let text: string;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return state;
      throw new StoreError(`cannot read ${this.file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    const lines = text.split('\n');
    for (let i = 0; i < lines.length; i++) {
      if (lines[i] === '') continue;
      let line: Line;
      try {
        line = JSON.parse(lines[i]) as Line;
      } catch {
        // A process killed mid-write leaves half a last line; anything else is damage we will not guess at.
        if (lines.slice(i + 1).every((l) => l === '')) break;
        throw new StoreError(`${this.file} is damaged at line ${i + 1}`);
      }
      apply(state, line);
    }
    return state;
  }

  /** Rewrites the journal as the given state, atomically, and keeps appending to it. */
  compact(state: StoredState): void {
    const tmp = `${this.file}.tmp`;
    const fd = fs.openSync(tmp, 'w');
    let bytes = 0;
    try {
      const write = (line: Line): void => {
        const text = JSON.stringify(line) + '\n';
        bytes += Buffer.byteLength(text);
        fs.writeSync(fd, text);
      };
      for (const line of linesOf(state)) write(line);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    if (this.fd !== undefined) fs.closeSync(this.fd);
    fs.renameSync(tmp, this.file);
    this.fd = fs.openSync(this.file, 'a');
    this.written = bytes;
    this.snapshotBytes = bytes;
  }

  private append(line: Line): void {
    if (this.fd === undefined) return;
    const text = JSON.stringify(line) + '\n';
    // Synchronous on purpose: the line is in the file before the client is told "accepted".
    fs.writeSync(this.fd, text);
    this.written += text.length;
    if (this.written > COMPACT_AFTER_BYTES && this.written > 2 * this.snapshotBytes && this.snapshotSource) this.compact(this.snapshotSource());
  }

  device(d: Omit<StoredDevice, 'modules'>): void {
    this.append({ t: 'device', d: withoutUndefined(d) });
  }

  module(deviceId: string, m: StoredDevice['modules'][number]): void {
    this.append({ t: 'module', deviceId, m: withoutUndefined(m) });
  }

  deviceRemoved(deviceId: string): void {
    this.append({ t: 'device-removed', deviceId });
  }

  moduleRemoved(deviceId: string, moduleId: string): void {
    this.append({ t: 'module-removed', deviceId, moduleId });
  }

  event(e: StoredEventRecord): void {
    this.append({
      t: 'event',
      p: e.partitionId,
      seq: e.sequenceNumber,
      off: e.offset,
      time: e.enqueuedTime,
      dev: e.deviceId,
      data: e.encoded.toString('base64'),
    });
  }

  c2dAdded(target: string, m: StoredC2d): void {
    const { encoded, ...fields } = m;
    this.append({ t: 'c2d', target, m: withoutUndefined(fields), data: encoded.toString('base64') });
  }

  c2dCounted(target: string, sequenceNumber: number, deliveryCount: number): void {
    this.append({ t: 'c2d-count', target, seq: sequenceNumber, count: deliveryCount });
  }

  c2dDone(target: string, sequenceNumber: number): void {
    this.append({ t: 'c2d-done', target, seq: sequenceNumber });
  }

  twin(twin: TwinState): void {
    this.append({ t: 'twin', twin: withoutUndefined(twin) });
  }

  close(state?: StoredState): void {
    if (state && this.fd !== undefined) this.compact(state);
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }
}

function withoutUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

function apply(state: StoredState, line: Line): void {
  switch (line.t) {
    case 'device': {
      const existing = state.devices.get(line.d.deviceId);
      state.devices.set(line.d.deviceId, { ...line.d, modules: existing?.modules ?? [] });
      break;
    }
    case 'module': {
      const device = state.devices.get(line.deviceId);
      if (device) device.modules = [...device.modules.filter((m) => m.moduleId !== line.m.moduleId), line.m];
      break;
    }
    case 'device-removed':
      state.devices.delete(line.deviceId);
      // The hub drops a deleted device's twins with it (twins.ts `remove`).
      for (const [key, twin] of state.twins) if (twin.deviceId === line.deviceId) state.twins.delete(key);
      break;
    case 'module-removed': {
      const device = state.devices.get(line.deviceId);
      if (device) device.modules = device.modules.filter((m) => m.moduleId !== line.moduleId);
      state.twins.delete(twinKey(line.deviceId, line.moduleId));
      break;
    }
    case 'twin':
      state.twins.set(twinKey(line.twin.deviceId, line.twin.moduleId), line.twin);
      break;
    case 'event': {
      const partition = state.partitions.get(line.p) ?? { events: [] };
      partition.events.push({
        partitionId: line.p,
        sequenceNumber: line.seq,
        offset: line.off,
        enqueuedTime: line.time,
        deviceId: line.dev,
        encoded: Buffer.from(line.data, 'base64'),
      });
      state.partitions.set(line.p, partition);
      break;
    }
    case 'partition': {
      const partition = state.partitions.get(line.p) ?? { events: [] };
      partition.next = { sequenceNumber: line.seq, offset: line.off };
      state.partitions.set(line.p, partition);
      break;
    }
    case 'c2d': {
      const queue = queueOf(state, line.target);
      queue.messages.set(line.m.sequenceNumber, { ...line.m, encoded: Buffer.from(line.data, 'base64') });
      queue.nextSequence = Math.max(queue.nextSequence, line.m.sequenceNumber + 1);
      break;
    }
    case 'c2d-count': {
      const held = state.c2d.get(line.target)?.messages.get(line.seq);
      if (held) held.deliveryCount = line.count;
      break;
    }
    case 'c2d-done':
      state.c2d.get(line.target)?.messages.delete(line.seq);
      break;
    case 'c2d-next': {
      const queue = queueOf(state, line.target);
      queue.nextSequence = Math.max(queue.nextSequence, line.next);
      break;
    }
  }
}

function queueOf(state: StoredState, target: string): { messages: Map<number, StoredC2d>; nextSequence: number } {
  let queue = state.c2d.get(target);
  if (!queue) {
    queue = { messages: new Map(), nextSequence: 1 };
    state.c2d.set(target, queue);
  }
  return queue;
}

function* linesOf(state: StoredState): IterableIterator<Line> {
  for (const d of state.devices.values()) {
    const { modules, ...device } = d;
    yield { t: 'device', d: withoutUndefined(device) };
    for (const m of modules) yield { t: 'module', deviceId: d.deviceId, m: withoutUndefined(m) };
  }
  for (const [p, partition] of state.partitions) {
    if (partition.next) yield { t: 'partition', p, seq: partition.next.sequenceNumber, off: partition.next.offset };
    for (const e of partition.events) {
      yield { t: 'event', p, seq: e.sequenceNumber, off: e.offset, time: e.enqueuedTime, dev: e.deviceId, data: e.encoded.toString('base64') };
    }
  }
  for (const twin of state.twins.values()) yield { t: 'twin', twin: withoutUndefined(twin) };
  for (const [target, queue] of state.c2d) {
    yield { t: 'c2d-next', target, next: queue.nextSequence };
    for (const m of queue.messages.values()) {
      const { encoded, ...fields } = m;
      yield { t: 'c2d', target, m: withoutUndefined(fields), data: encoded.toString('base64') };
    }
  }
}
