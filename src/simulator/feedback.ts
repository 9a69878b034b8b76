/**
 * The service-bound feedback queue: records batched into messages (at a batch size or after a flush
 * interval), delivered to feedback receivers, and redelivered until a receiver completes them.
 */
import rhea = require('rhea');
import { encodeFeedback } from '../amqp/feedback-codec';
import { newTag, ReceiversInTurn, sendCounted, settleOutgoing, tagKey, type Outcome } from './amqp';
import type { FeedbackRecord } from './c2d';

export interface FeedbackOptions {
  batchSize: number;
  flushIntervalMs: number;
  maxDeliveryCount: number;
  /** Messages kept while nobody reads them; the oldest go first past this. */
  maxPendingMessages: number;
  ttlMs: number;
}

interface FeedbackMessage {
  records: FeedbackRecord[];
  enqueuedTime: number;
  deliveryCount: number;
}

export const FEEDBACK_CONTENT_TYPE = 'application/vnd.microsoft.iothub.feedback.json';

export class FeedbackQueue {
  private records: FeedbackRecord[] = [];
  private timer: NodeJS.Timeout | undefined;
  private outbox: FeedbackMessage[] = [];
  private readonly receivers = new ReceiversInTurn();
  private readonly inflight = new Map<string, { sender: rhea.Sender; message: FeedbackMessage }>();

  constructor(
    private readonly options: FeedbackOptions,
    private readonly hubName: string,
    private readonly now: () => number = Date.now,
  ) {}

  add(record: FeedbackRecord): void {
    this.records.push(record);
    if (this.records.length >= this.options.batchSize) this.flush();
    else if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), this.options.flushIntervalMs);
      this.timer.unref();
    }
  }

  /** Makes a message of the records waiting now. */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    while (this.records.length > 0) {
      const records = this.records.splice(0, this.options.batchSize);
      this.outbox.push({ records, enqueuedTime: this.now(), deliveryCount: 0 });
    }
    if (this.outbox.length > this.options.maxPendingMessages) {
      this.outbox.splice(0, this.outbox.length - this.options.maxPendingMessages);
    }
    this.pump();
  }

  get pendingRecords(): number {
    return this.records.length + this.outbox.reduce((n, m) => n + m.records.length, 0);
  }

  attach(sender: rhea.Sender): void {
    this.receivers.add(sender);
    this.pump();
  }

  detach(sender: rhea.Sender): void {
    this.receivers.remove(sender);
    // Whatever that receiver had not completed goes back to the front, in order.
    const back: FeedbackMessage[] = [];
    for (const [key, held] of this.inflight) {
      if (held.sender === sender) {
        back.push(held.message);
        this.inflight.delete(key);
      }
    }
    this.outbox.unshift(...back.sort((a, b) => a.enqueuedTime - b.enqueuedTime));
    this.pump();
  }

  onSendable(): void {
    this.pump();
  }

  onOutcome(delivery: rhea.Delivery, outcome: Outcome): void {
    const key = tagKey(delivery.tag);
    const held = this.inflight.get(key);
    settleOutgoing(delivery, outcome === 'modified' ? 'released' : outcome);
    if (!held) return;
    this.inflight.delete(key);
    if (outcome === 'released' || outcome === 'modified') {
      held.message.deliveryCount += 1;
      if (held.message.deliveryCount < this.options.maxDeliveryCount) this.outbox.unshift(held.message);
    }
    this.pump();
  }

  sweep(): void {
    const oldest = this.now() - this.options.ttlMs;
    this.outbox = this.outbox.filter((m) => m.enqueuedTime > oldest);
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private pump(): void {
    while (this.outbox.length > 0) {
      const sender = this.receivers.nextWithCredit();
      if (!sender) return;
      const message = this.outbox.shift() as FeedbackMessage;
      const tag = newTag();
      this.inflight.set(tagKey(tag), { sender, message });
      const feedbackMessage = {
        content_type: FEEDBACK_CONTENT_TYPE,
        content_encoding: 'utf-8',
        user_id: Buffer.from(this.hubName, 'utf8'),
        message_annotations: { 'iothub-enqueuedtime': new Date(message.enqueuedTime) },
        body: rhea.message.data_section(encodeFeedback(message.records)),
      };
      // rhea's typings say user_id is a string; on the wire it is binary, which C# requires.
      sendCounted(sender, feedbackMessage as unknown as rhea.Message, tag);
    }
  }
}
