/**
 * Checkpointer: when telemetry-in writes down how far it got. Positions come in as events are handed
 * out (policy `auto`) or as the flow confirms them (`explicit`); they are written after every N
 * events or T ms, whichever comes first, and on close. A write that fails keeps its positions for the
 * next one, so checkpoints catch up once the store is back; nothing handed out is lost, only repeated
 * after a crash (the at-least-once contract in the README).
 */
import { EventEmitter } from 'node:events';
import { Backoff, reconnectSchedule, systemClock, type Clock, type ClockTimer } from './backoff';

export interface Position {
  sequenceNumber: number;
  offset: string;
}

export interface CheckpointPolicy {
  /** Write after this many new positions (0: by time only). */
  everyEvents: number;
  /** Write at most this long after a position came in. */
  everyMs: number;
}

/** Writes positions: `changed` are the partitions moved since the last write, `all` every one known. */
export type CheckpointWrite = (changed: Map<string, Position>, all: Map<string, Position>) => Promise<void>;

export interface CheckpointerEvents {
  /** A write failed; its positions are written again later. */
  writeFailed: [error: unknown];
  /** A write succeeded after one failed. */
  recovered: [];
}

export const DEFAULT_CHECKPOINT_POLICY: CheckpointPolicy = { everyEvents: 0, everyMs: 1000 };

export class Checkpointer extends EventEmitter<CheckpointerEvents> {
  private readonly all = new Map<string, Position>();
  private readonly changed = new Map<string, Position>();
  private readonly clock: Clock;
  private readonly retry: Backoff;
  private timer: ClockTimer | undefined;
  private writing: Promise<void> | undefined;
  private count = 0;
  private failing = false;

  constructor(
    private readonly write: CheckpointWrite,
    private readonly policy: CheckpointPolicy = DEFAULT_CHECKPOINT_POLICY,
    clock: Clock = systemClock,
  ) {
    super();
    this.clock = clock;
    this.retry = new Backoff(reconnectSchedule({ minMs: Math.max(policy.everyMs, 500), maxMs: 60_000 }), clock);
  }

  /** Positions known before reading started (loaded checkpoints): kept in the whole set, not written again. */
  seed(positions: Record<string, Position>): void {
    for (const [p, pos] of Object.entries(positions)) this.all.set(p, pos);
  }

  /** The last position handled in a partition; a position at or before the known one is ignored. */
  mark(partitionId: string, position: Position): void {
    const known = this.all.get(partitionId);
    if (known && known.sequenceNumber >= position.sequenceNumber) return;
    this.all.set(partitionId, position);
    this.changed.set(partitionId, position);
    this.count++;
    if (this.policy.everyEvents > 0 && this.count >= this.policy.everyEvents) this.flushSoon(0);
    else this.flushSoon(this.policy.everyMs);
  }

  /** Forgets a partition (another reader owns it now): what is pending for it is not written. */
  drop(partitionId: string): void {
    this.all.delete(partitionId);
    this.changed.delete(partitionId);
  }

  positions(): Map<string, Position> {
    return new Map(this.all);
  }

  private flushSoon(ms: number): void {
    if (this.retry.waiting) return;
    if (this.timer) {
      if (ms > 0) return;
      this.clock.clearTimeout(this.timer);
    }
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, ms);
  }

  /** Writes what changed now (one write at a time; a second waits for the first). */
  async flush(): Promise<void> {
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    while (this.writing) await this.writing;
    if (this.changed.size === 0) return;
    const batch = new Map(this.changed);
    this.changed.clear();
    this.count = 0;
    this.writing = this.write(batch, new Map(this.all)).then(
      () => {
        this.retry.reset();
        if (this.failing) this.emit('recovered');
        this.failing = false;
      },
      (err: unknown) => {
        // Put back what no newer position replaced, and try again on the retry schedule.
        for (const [p, pos] of batch) if (!this.changed.has(p) && this.all.get(p) === pos) this.changed.set(p, pos);
        this.failing = true;
        this.emit('writeFailed', err);
        this.retry.after(() => void this.flush());
      },
    );
    try {
      await this.writing;
    } finally {
      this.writing = undefined;
    }
  }

  /** Writes what is pending once more and stops. */
  async close(): Promise<void> {
    this.retry.cancel();
    await this.flush();
    this.retry.cancel();
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }
}
