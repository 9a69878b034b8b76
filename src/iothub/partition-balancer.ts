/**
 * PartitionBalancer: takes this reader's share of a consumer group's partitions through a partition
 * store, the way the official SDKs' event processor does (@azure/event-hubs src/eventProcessor.ts
 * _runLoopWithLoadBalancing, _performLoadBalancing, abandonPartitionOwnerships): every round it lists
 * the claims, renews its own, claims at most one more (load-balancing.ts), and gives up what another
 * reader took. A claim it won is handed out with the partition's checkpoint; the reading is its user's.
 */
import { EventEmitter } from 'node:events';
import { Backoff, reconnectSchedule, systemClock, type Clock } from './backoff';
import { storeError } from './blob-partition-store';
import type { HubError } from './errors';
import { nextClaim } from './load-balancing';
import type { Checkpoint, Ownership, PartitionScope, PartitionStore } from './partition-store';

export interface PartitionBalancerOptions {
  store: PartitionStore;
  scope: PartitionScope;
  ownerId: string;
  partitionIds: string[];
  /** Time between rounds (the SDKs' `updateIntervalInMs`, default 10 s). */
  updateIntervalMs?: number;
  /** A claim not renewed for this long lapses (the SDKs' `partitionOwnershipExpirationIntervalInMs`, default 60 s). */
  expiryMs?: number;
  clock?: Clock;
  random?: () => number;
}

export interface PartitionBalancerEvents {
  /** This reader owns the partition now: read it after the checkpoint, if any. */
  claimed: [partitionId: string, checkpoint: Checkpoint | undefined];
  /** Another reader owns the partition now: stop reading it. */
  lost: [partitionId: string];
  /** The store failed; what is owned is read on, and the round is tried again later. */
  storeError: [error: HubError];
  /** A round succeeded after a failure. */
  storeOk: [];
}

export const DEFAULT_UPDATE_INTERVAL_MS = 10_000;
export const DEFAULT_OWNERSHIP_EXPIRY_MS = 60_000;
/** How long close() waits to give its partitions up before leaving them to lapse. */
const ABANDON_LIMIT_MS = 5000;

export class PartitionBalancer extends EventEmitter<PartitionBalancerEvents> {
  private readonly clock: Clock;
  private readonly backoff: Backoff;
  private readonly intervalMs: number;
  private readonly expiryMs: number;
  /** What this reader holds, with the version of each claim it wrote last. */
  private readonly owned = new Map<string, Ownership>();
  /** Owned, but its link was taken (release()): not read until the next round confirms the claim. */
  private readonly suspended = new Set<string>();
  private round: Promise<void> | undefined;
  private failing = false;
  private closed = false;
  private prepared = false;

  constructor(private readonly options: PartitionBalancerOptions) {
    super();
    this.clock = options.clock ?? systemClock;
    this.intervalMs = options.updateIntervalMs ?? DEFAULT_UPDATE_INTERVAL_MS;
    this.expiryMs = options.expiryMs ?? DEFAULT_OWNERSHIP_EXPIRY_MS;
    // After a failure the rounds back off up to a minute: a store that is down is not asked ten times a second.
    this.backoff = new Backoff(reconnectSchedule({ minMs: this.intervalMs, maxMs: Math.max(60_000, this.intervalMs) }), this.clock);
  }

  get ownerId(): string {
    return this.options.ownerId;
  }

  /** The partitions this reader holds and reads. */
  ownedPartitions(): string[] {
    return [...this.owned.keys()].filter((p) => !this.suspended.has(p));
  }

  start(): void {
    this.runRound();
  }

  /**
   * The partition's link was taken by a reader with the same owner level: usually one that claimed it
   * first, and the next round sees its claim and gives the partition up. But a reader whose connection
   * came back after its claim lapsed re-attaches too and takes the link from the one that took over
   * meanwhile: so the claim is checked at the next round, and while it is still this reader's, reading
   * resumes (`claimed` again, from the last checkpoint) instead of leaving the partition unread until the
   * claim lapses.
   */
  release(partitionId: string): void {
    if (this.owned.has(partitionId)) this.suspended.add(partitionId);
  }

  private runRound(): void {
    if (this.closed) return;
    this.round = this.balance().then(
      () => {
        if (this.failing) this.emit('storeOk');
        this.failing = false;
        this.backoff.reset();
        this.backoff.after(
          () => this.runRound(),
          () => this.intervalMs,
        );
      },
      (err: unknown) => {
        if (this.closed) return;
        this.failing = true;
        // The container may be what is missing: the next round makes sure of it first.
        this.prepared = false;
        this.emit('storeError', storeError(err, 'partition ownership could not be read or written'));
        this.backoff.after(() => this.runRound());
      },
    );
  }

  private async balance(): Promise<void> {
    const { store, scope, ownerId, partitionIds } = this.options;
    // Once: a missing container is made when the store is first reached, which may be after a start without it.
    if (!this.prepared) await store.prepare();
    this.prepared = true;
    const ownerships = await store.listOwnership(scope);
    if (this.closed) return;
    const records = new Map(ownerships.map((o) => [o.partitionId, o]));
    // Renew every claim still this reader's; one another reader wrote over (or that lapsed and was
    // taken) is given up. A renewal names the version this reader wrote: a takeover in between wins.
    const resumed: string[] = [];
    for (const [partitionId, mine] of [...this.owned]) {
      const record = records.get(partitionId);
      // A record that is gone (its container was made anew) is claimed afresh: If-None-Match lets only one reader have it.
      const renewable = record === undefined || (record.ownerId === ownerId && record.etag === mine.etag);
      const renewed = renewable ? await store.claim(scope, partitionId, ownerId, record?.etag) : undefined;
      if (this.closed) return;
      if (renewed) {
        this.owned.set(partitionId, renewed);
        records.set(partitionId, renewed);
        if (this.suspended.delete(partitionId)) resumed.push(partitionId);
      } else {
        this.suspended.delete(partitionId);
        this.lose(partitionId);
      }
    }
    if (resumed.length > 0) {
      const checkpoints = await store.listCheckpoints(scope);
      if (this.closed) return;
      for (const partitionId of resumed) {
        if (this.owned.has(partitionId))
          this.emit(
            'claimed',
            partitionId,
            checkpoints.find((c) => c.partitionId === partitionId),
          );
      }
    }
    const next = nextClaim({
      ownerId,
      partitionIds,
      ownerships: [...records.values()],
      expiryMs: this.expiryMs,
      nowMs: this.clock.now(),
      random: this.options.random,
    });
    if (next === undefined || this.owned.has(next)) return;
    const won = await store.claim(scope, next, ownerId, records.get(next)?.etag);
    if (!won || this.closed) return;
    this.owned.set(next, won);
    // Read after the claim: a checkpoint the last owner wrote before it lost the partition counts.
    const checkpoints = await store.listCheckpoints(scope);
    if (this.closed || !this.owned.has(next)) return;
    this.emit(
      'claimed',
      next,
      checkpoints.find((c) => c.partitionId === next),
    );
  }

  private lose(partitionId: string): void {
    if (!this.owned.delete(partitionId)) return;
    this.emit('lost', partitionId);
  }

  /**
   * Stops balancing and gives the partitions up (an empty owner, as the SDKs' stop() writes), so the
   * other readers take them at their next round instead of after the expiry. A store that does not
   * answer in time leaves them to lapse.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.backoff.cancel();
    await this.round?.catch(() => undefined);
    const { store, scope } = this.options;
    const mine = [...this.owned.values()];
    this.owned.clear();
    this.suspended.clear();
    if (mine.length === 0) return;
    const abandon = Promise.all(mine.map((o) => store.claim(scope, o.partitionId, '', o.etag).catch(() => undefined)));
    let timer: ReturnType<Clock['setTimeout']> | undefined;
    const limit = new Promise<void>((resolve) => {
      timer = this.clock.setTimeout(resolve, ABANDON_LIMIT_MS);
    });
    await Promise.race([abandon, limit]);
    if (timer) this.clock.clearTimeout(timer);
  }
}
