/**
 * Cloud-to-device queues: one per device (or module), bounded depth, TTL, a lock per delivery, a
 * maximum delivery count, and feedback records for the outcomes the sender asked to hear about.
 */
import type * as rhea from 'rhea';
import {
  copyMessage,
  dataBody,
  newTag,
  ReceiversInTurn,
  sendCounted,
  settleOutgoing,
  tagKey,
  uuidFromTag,
  wrapUbyte,
  wrapUlong,
  type AmqpError,
  type Outcome,
} from './amqp';
import type { FeedbackRecord as WireFeedbackRecord, FeedbackStatus } from '../amqp/feedback-codec';
import { idToString } from '../amqp/message-rules';

export interface C2dOptions {
  maxQueueDepth: number;
  lockMs: number;
  maxDeliveryCount: number;
  defaultTtlMs: number;
}

/** A record the simulator makes: the codec's, with a status it knows. */
export type FeedbackRecord = WireFeedbackRecord & { statusCode: FeedbackStatus };

/** A queued message as it is kept and restored (C2dEntryRecord), with its lock while it is out. */
interface Entry extends C2dEntryRecord {
  lock?: { key: string; sender: rhea.Sender; timer: NodeJS.Timeout };
}

interface Queue {
  target: string;
  deviceId: string;
  moduleId?: string;
  generationId: string;
  entries: Entry[];
  receivers: ReceiversInTurn;
  nextSequence: number;
}

const WANTS: Record<string, FeedbackStatus[]> = {
  positive: ['Success'],
  negative: ['Expired', 'DeliveryCountExceeded', 'Rejected', 'Purged'],
  full: ['Success', 'Expired', 'DeliveryCountExceeded', 'Rejected', 'Purged'],
};

/** Told of every change to a queue (the store journals them). */
export interface C2dObserver {
  added(target: string, queue: C2dQueueOwner, entry: C2dEntryRecord): void;
  counted(target: string, sequenceNumber: number, deliveryCount: number): void;
  done(target: string, sequenceNumber: number): void;
}

/** A queued message as it is kept and restored. */
/** Whose queue: a device's, or a module's, of one registration (generation). */
export interface C2dQueueOwner {
  deviceId: string;
  moduleId?: string;
  generationId: string;
}

export interface C2dEntryRecord {
  sequenceNumber: number;
  message: rhea.Message;
  messageId: string;
  ack: string;
  enqueuedTime: number;
  expiresAt: number;
  deliveryCount: number;
}

const LOCK_LOST: AmqpError = {
  condition: 'com.microsoft:message-lock-lost',
  description: 'The lock supplied is invalid: it expired, or the message was already settled.',
};

export class C2dQueues {
  private readonly queues = new Map<string, Queue>();
  /** Which queue and entry a delivery we sent belongs to, by delivery tag. */
  private readonly locks = new Map<string, { queue: Queue; entry: Entry }>();
  observer: C2dObserver | undefined;

  constructor(
    private readonly options: C2dOptions,
    private readonly feedback: (record: FeedbackRecord) => void,
    private readonly now: () => number = Date.now,
  ) {}

  static targetKey(deviceId: string, moduleId?: string): string {
    return moduleId === undefined ? deviceId : `${deviceId}/${moduleId}`;
  }

  private queue(deviceId: string, moduleId: string | undefined, generationId: string): Queue {
    const target = C2dQueues.targetKey(deviceId, moduleId);
    let queue = this.queues.get(target);
    if (!queue) {
      queue = { target, deviceId, generationId, entries: [], receivers: new ReceiversInTurn(), nextSequence: 1 };
      if (moduleId !== undefined) queue.moduleId = moduleId;
      this.queues.set(target, queue);
    }
    return queue;
  }

  /** Puts back a queue as it was stored (before any receiver attaches). */
  restore(deviceId: string, moduleId: string | undefined, generationId: string, entries: C2dEntryRecord[], nextSequence: number): void {
    const queue = this.queue(deviceId, moduleId, generationId);
    queue.nextSequence = Math.max(queue.nextSequence, nextSequence);
    for (const record of [...entries].sort((a, b) => a.sequenceNumber - b.sequenceNumber)) {
      queue.entries.push({ ...record });
      queue.nextSequence = Math.max(queue.nextSequence, record.sequenceNumber + 1);
    }
  }

  /** Every queue with what it holds (locks aside: a restart hands locked messages out again). */
  snapshot(): Array<C2dQueueOwner & { target: string; nextSequence: number; entries: C2dEntryRecord[] }> {
    return [...this.queues.values()].map((q) => ({
      target: q.target,
      deviceId: q.deviceId,
      ...(q.moduleId === undefined ? {} : { moduleId: q.moduleId }),
      generationId: q.generationId,
      nextSequence: q.nextSequence,
      entries: q.entries.map((e) => ({
        sequenceNumber: e.sequenceNumber,
        message: e.message,
        messageId: e.messageId,
        ack: e.ack,
        enqueuedTime: e.enqueuedTime,
        expiresAt: e.expiresAt,
        deliveryCount: e.deliveryCount,
      })),
    }));
  }

  depth(deviceId: string, moduleId?: string): number {
    return this.queues.get(C2dQueues.targetKey(deviceId, moduleId))?.entries.length ?? 0;
  }

  /**
   * Ids of messages delivered and not yet settled, in every queue: the ones a dropped link or
   * connection will deliver again (for tests and tools).
   */
  lockedMessageIds(): string[] {
    return [...this.locks.values()].map((held) => held.entry.messageId);
  }

  /** Queues a message; returns an error when the device's queue is full. */
  enqueue(deviceId: string, moduleId: string | undefined, generationId: string, message: rhea.Message): AmqpError | undefined {
    const queue = this.queue(deviceId, moduleId, generationId);
    this.expire(queue);
    if (queue.entries.length >= this.options.maxQueueDepth) {
      return {
        condition: 'amqp:resource-limit-exceeded',
        description: `Device ${deviceId} has ${queue.entries.length} messages pending, the maximum.`,
      };
    }
    const now = this.now();
    const expiry = message.absolute_expiry_time;
    const expiresAt = expiry instanceof Date ? expiry.getTime() : typeof expiry === 'number' ? expiry : now + this.options.defaultTtlMs;
    const ackValue: unknown = message.application_properties?.['iothub-ack'];
    const entry: Entry = {
      sequenceNumber: queue.nextSequence++,
      message,
      messageId: idToString(message.message_id) ?? '',
      ack: typeof ackValue === 'string' ? ackValue.toLowerCase() : 'none',
      enqueuedTime: now,
      expiresAt,
      deliveryCount: 0,
    };
    queue.entries.push(entry);
    this.observer?.added(queue.target, queue, entry);
    this.pump(queue);
    return undefined;
  }

  attachReceiver(deviceId: string, moduleId: string | undefined, generationId: string, sender: rhea.Sender): void {
    const queue = this.queue(deviceId, moduleId, generationId);
    queue.receivers.add(sender);
    this.pump(queue);
  }

  /** A receiver went away: its locked messages return to the queue at once. */
  detachReceiver(sender: rhea.Sender): void {
    for (const queue of this.queues.values()) {
      if (!queue.receivers.remove(sender)) continue;
      for (const entry of queue.entries) {
        if (entry.lock?.sender === sender) this.unlock(entry);
      }
      this.pump(queue);
    }
  }

  onSendable(sender: rhea.Sender): void {
    for (const queue of this.queues.values()) {
      if (queue.receivers.has(sender)) this.pump(queue);
    }
  }

  /** The device settled a delivery we sent. */
  onOutcome(delivery: rhea.Delivery, outcome: Outcome): void {
    const key = tagKey(delivery.tag);
    const held = this.locks.get(key);
    if (!held) {
      // Lock expired (or the message was settled already): the device learns so when it waits for
      // our settlement (rcv-settle-mode second), as IoT Hub reports lock loss on the disposition.
      settleOutgoing(delivery, 'rejected', LOCK_LOST);
      return;
    }
    const { queue, entry } = held;
    this.unlock(entry);
    settleOutgoing(delivery, outcome === 'modified' ? 'released' : outcome);
    if (outcome === 'accepted') {
      this.remove(queue, entry, 'Success');
    } else if (outcome === 'rejected') {
      this.remove(queue, entry, 'Rejected');
    } else {
      entry.deliveryCount += 1;
      if (entry.deliveryCount >= this.options.maxDeliveryCount) this.remove(queue, entry, 'DeliveryCountExceeded');
      else this.observer?.counted(queue.target, entry.sequenceNumber, entry.deliveryCount);
    }
    this.pump(queue);
  }

  /** Dead-letters expired messages everywhere; called by the hub's sweep. */
  sweep(): void {
    for (const queue of this.queues.values()) {
      this.expire(queue);
      if (queue.entries.length === 0 && queue.receivers.size === 0) this.queues.delete(queue.target);
    }
  }

  purge(deviceId: string, moduleId?: string): number {
    const queue = this.queues.get(C2dQueues.targetKey(deviceId, moduleId));
    if (!queue) return 0;
    const entries = [...queue.entries];
    for (const entry of entries) this.remove(queue, entry, 'Purged');
    return entries.length;
  }

  /**
   * Drops the queues of a deleted device (its modules' too), or with a module id that module's queue.
   * IoT Hub keeps cloud-to-device messages in per-device queues (iot-hub-devguide-messages-c2d.md); a
   * device created again under the same id is a new identity with a new generationId, and that the old
   * one's messages are not handed to it is UNVERIFIED but the only safe reading. No feedback is sent for
   * what was dropped; each drop is journaled as done.
   */
  removeIdentity(deviceId: string, moduleId?: string): void {
    for (const queue of [...this.queues.values()]) {
      if (queue.deviceId !== deviceId || (moduleId !== undefined && queue.moduleId !== moduleId)) continue;
      for (const entry of [...queue.entries]) {
        queue.entries.splice(queue.entries.indexOf(entry), 1);
        this.unlock(entry);
        this.observer?.done(queue.target, entry.sequenceNumber);
      }
      this.queues.delete(queue.target);
    }
  }

  close(): void {
    for (const queue of this.queues.values()) {
      for (const entry of queue.entries) if (entry.lock) clearTimeout(entry.lock.timer);
    }
    this.locks.clear();
    this.queues.clear();
  }

  private expire(queue: Queue): void {
    const now = this.now();
    for (const entry of [...queue.entries]) {
      if (entry.expiresAt <= now && !entry.lock) this.remove(queue, entry, 'Expired');
    }
  }

  private remove(queue: Queue, entry: Entry, status: FeedbackStatus): void {
    const index = queue.entries.indexOf(entry);
    if (index < 0) return;
    queue.entries.splice(index, 1);
    this.observer?.done(queue.target, entry.sequenceNumber);
    if (entry.lock) this.unlock(entry);
    if (WANTS[entry.ack]?.includes(status)) {
      this.feedback({
        originalMessageId: entry.messageId,
        deviceGenerationId: queue.generationId,
        deviceId: queue.deviceId,
        description: status,
        enqueuedTimeUtc: new Date(this.now()).toISOString(),
        statusCode: status,
      });
    }
  }

  private unlock(entry: Entry): void {
    if (!entry.lock) return;
    clearTimeout(entry.lock.timer);
    this.locks.delete(entry.lock.key);
    entry.lock = undefined;
  }

  private pump(queue: Queue): void {
    if (queue.receivers.size === 0) return;
    const now = this.now();
    for (const entry of queue.entries) {
      if (entry.lock) continue;
      if (entry.expiresAt <= now) continue;
      const sender = queue.receivers.nextWithCredit();
      if (!sender) return;
      this.deliver(queue, entry, sender);
    }
    this.expire(queue);
  }

  private deliver(queue: Queue, entry: Entry, sender: rhea.Sender): void {
    const tag = newTag();
    const key = tagKey(tag);
    const out = copyMessage(entry.message);
    out.body = dataBody(entry.message.body);
    out.message_annotations = {
      'x-opt-sequence-number': wrapUlong(entry.sequenceNumber),
      'iothub-enqueuedtime': new Date(entry.enqueuedTime),
      // The C# device reads the delivery count as a byte.
      'iothub-deliverycount': wrapUbyte(Math.min(entry.deliveryCount, 255)),
      'x-opt-lock-token': uuidFromTag(tag),
    };
    const timer = setTimeout(() => {
      // Lock expired: back to the queue without counting a delivery, as IoT Hub does.
      this.unlock(entry);
      this.pump(queue);
    }, this.options.lockMs);
    timer.unref();
    entry.lock = { key, sender, timer };
    this.locks.set(key, { queue, entry });
    sendCounted(sender, out, tag);
  }
}
