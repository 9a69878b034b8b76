/**
 * Persistence wiring (`--location`): what the store holds read back into the registry, the partitions,
 * the C2D queues and the twins at start, and every later change journaled through their observers. Separate
 * because the hub runs the same with or without it; the store itself (file format) is store.ts.
 */
import rhea = require('rhea');
import type { C2dEntryRecord, C2dQueueOwner, C2dQueues } from './c2d';
import { decode } from './d2c-ingest';
import type { Partition } from './partitions';
import type { Registry } from './registry';
import { Store, type StoredC2d, type StoredEventRecord, type StoredState } from './store';
import { twinKey, type TwinStore } from './twins';

export interface PersistedParts {
  registry: Registry;
  partitions: Partition[];
  c2d: C2dQueues;
  twins: TwinStore;
}

/** A queued C2D message as the store keeps it: the queue's identity, the entry, the message as bytes. */
function storedC2d(queue: C2dQueueOwner, e: C2dEntryRecord): StoredC2d {
  return {
    deviceId: queue.deviceId,
    moduleId: queue.moduleId,
    generationId: queue.generationId,
    sequenceNumber: e.sequenceNumber,
    messageId: e.messageId,
    ack: e.ack,
    enqueuedTime: e.enqueuedTime,
    expiresAt: e.expiresAt,
    deliveryCount: e.deliveryCount,
    encoded: rhea.message.encode(e.message),
  };
}

/** Whether the device (and module) a twin belongs to is still in the registry. */
function registered(registry: Registry, twin: { deviceId: string; moduleId?: string }): boolean {
  const device = registry.getDevice(twin.deviceId);
  return device !== undefined && (twin.moduleId === undefined || device.modules.has(twin.moduleId));
}

export class Persistence {
  private constructor(
    private readonly store: Store,
    private readonly parts: PersistedParts,
  ) {}

  /** Reads back what the folder holds, rewrites it compactly, and journals every change from now on. */
  static attach(dir: string, parts: PersistedParts): Persistence {
    const { registry, partitions, c2d, twins } = parts;
    const { store, state } = Store.open(dir);
    for (const device of state.devices.values()) registry.restoreDevice(device);
    const now = Date.now();
    for (const [id, stored] of state.partitions) {
      // A partition the options no longer have cannot be read from: its events go.
      const partition = partitions.find((p) => p.id === id);
      if (!partition) continue;
      for (const e of stored.events) {
        partition.restore({ sequenceNumber: e.sequenceNumber, offset: e.offset, enqueuedTime: e.enqueuedTime, encoded: e.encoded, deviceId: e.deviceId });
      }
      if (stored.next) partition.continueFrom(stored.next.sequenceNumber, stored.next.offset);
      partition.enforceRetention(now);
    }
    for (const [target, queue] of state.c2d) {
      // Device and module ids cannot hold '/', so the target splits back unambiguously.
      const [deviceId, moduleId] = target.split('/');
      const entries = [...queue.messages.values()].map((m) => ({
        sequenceNumber: m.sequenceNumber,
        message: decode(m.encoded),
        messageId: m.messageId,
        ack: m.ack,
        enqueuedTime: m.enqueuedTime,
        expiresAt: m.expiresAt,
        deliveryCount: m.deliveryCount,
      }));
      const generationId = registry.getDevice(deviceId)?.generationId ?? [...queue.messages.values()][0]?.generationId ?? '';
      c2d.restore(deviceId, moduleId, generationId, entries, queue.nextSequence);
    }
    for (const twin of state.twins.values()) {
      // A real hub keeps twins as long as the device exists (iot-hub-devguide-device-twins.md: created and
      // deleted with the device identity); one of a device no longer registered is not brought back.
      if (registered(registry, twin)) twins.restore(twin);
    }
    const persistence = new Persistence(store, parts);
    store.compact(persistence.storedState());
    store.snapshotSource = () => persistence.storedState();
    registry.observer = {
      deviceAdded: (d) => store.device({ deviceId: d.deviceId, primaryKey: d.primaryKey, secondaryKey: d.secondaryKey, generationId: d.generationId }),
      moduleAdded: (deviceId, m) =>
        store.module(deviceId, { moduleId: m.moduleId, primaryKey: m.primaryKey, secondaryKey: m.secondaryKey, generationId: m.generationId }),
      deviceRemoved: (deviceId) => store.deviceRemoved(deviceId),
      moduleRemoved: (deviceId, moduleId) => store.moduleRemoved(deviceId, moduleId),
    };
    twins.observer = { changed: (twin) => store.twin(twin) };
    c2d.observer = {
      added: (target, queue, e) => store.c2dAdded(target, storedC2d(queue, e)),
      counted: (target, seq, count) => store.c2dCounted(target, seq, count),
      done: (target, seq) => store.c2dDone(target, seq),
    };
    return persistence;
  }

  /** Journals a stored D2C event. */
  event(record: StoredEventRecord): void {
    this.store.event(record);
  }

  /** Closes the store with the state as it is now. */
  close(): void {
    this.store.close(this.storedState());
  }

  /** The state the store keeps, as it is now. */
  private storedState(): StoredState {
    const { registry, partitions, c2d, twins } = this.parts;
    const state: StoredState = { devices: new Map(), partitions: new Map(), c2d: new Map(), twins: new Map() };
    for (const d of registry.devices.values()) {
      state.devices.set(d.deviceId, {
        deviceId: d.deviceId,
        primaryKey: d.primaryKey,
        secondaryKey: d.secondaryKey,
        generationId: d.generationId,
        modules: [...d.modules.values()].map((m) => ({
          moduleId: m.moduleId,
          primaryKey: m.primaryKey,
          secondaryKey: m.secondaryKey,
          generationId: m.generationId,
        })),
      });
    }
    for (const p of partitions) {
      state.partitions.set(p.id, { events: [...p.all()].map((e) => ({ partitionId: p.id, ...e })), next: p.next });
    }
    for (const q of c2d.snapshot()) {
      const messages = new Map(q.entries.map((e) => [e.sequenceNumber, storedC2d(q, e)]));
      state.c2d.set(q.target, { messages, nextSequence: q.nextSequence });
    }
    for (const twin of twins.snapshot()) {
      if (registered(registry, twin)) state.twins.set(twinKey(twin.deviceId, twin.moduleId), twin);
    }
    return state;
  }
}
