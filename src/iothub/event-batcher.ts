/**
 * EventBatcher: groups a partition's events into batches of up to N, as the SDKs' `subscribe` hands
 * out `processEvents(events, context)` per partition. A batch goes out when it is full, or `maxWaitMs`
 * after its first event, so a quiet partition still flushes. Batches never mix partitions: a batch's
 * last event is the partition's checkpoint once the flow has handled the batch.
 */
import { EventEmitter } from 'node:events';
import { systemClock, type Clock, type ClockTimer } from './backoff';
import type { TelemetryEvent } from './event-hub';

export interface EventBatcherEvents {
  batch: [partitionId: string, events: TelemetryEvent[]];
}

interface Pending {
  events: TelemetryEvent[];
  timer: ClockTimer | undefined;
}

export class EventBatcher extends EventEmitter<EventBatcherEvents> {
  private readonly pending = new Map<string, Pending>();
  private closed = false;

  constructor(
    private readonly maxEvents: number,
    private readonly maxWaitMs: number,
    private readonly clock: Clock = systemClock,
  ) {
    super();
  }

  /** Adds an event to its partition's batch; after close() events are dropped (never sent, so never checkpointed). */
  add(event: TelemetryEvent): void {
    if (this.closed) return;
    let open = this.pending.get(event.partitionId);
    if (!open) {
      open = { events: [], timer: undefined };
      this.pending.set(event.partitionId, open);
    }
    open.events.push(event);
    if (open.events.length >= this.maxEvents) this.flush(event.partitionId);
    else if (!open.timer) open.timer = this.clock.setTimeout(() => this.flush(event.partitionId), this.maxWaitMs);
  }

  /** Sends a partition's open batch now (or every partition's). */
  flush(partitionId?: string): void {
    for (const id of partitionId === undefined ? [...this.pending.keys()] : [partitionId]) {
      const open = this.pending.get(id);
      if (!open || open.events.length === 0) continue;
      if (open.timer) this.clock.clearTimeout(open.timer);
      open.timer = undefined;
      const events = open.events;
      open.events = [];
      this.emit('batch', id, events);
    }
  }

  /** Drops a partition's open batch unsent (another reader owns the partition now and reads it again). */
  drop(partitionId: string): void {
    const open = this.pending.get(partitionId);
    if (open?.timer) this.clock.clearTimeout(open.timer);
    this.pending.delete(partitionId);
  }

  /** Sends what is open and stops. */
  close(): void {
    this.flush();
    this.closed = true;
    this.pending.clear();
  }
}
