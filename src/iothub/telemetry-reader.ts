/**
 * TelemetryReader: reads device telemetry from the built-in endpoint, from start to close. It follows an
 * IoT Hub's redirect to the Event Hubs-compatible endpoint (and owns the second connection that takes),
 * or reads an Event Hubs connection directly; lists the partitions, reads them with PartitionReaders,
 * tries a start that failed for a passing reason again, and keeps checkpoints in a store it is given.
 */
import { EventEmitter } from 'node:events';
import { Backoff, backoffDelay, systemClock, type BackoffOptions, type Clock } from './backoff';
import { Checkpointer, DEFAULT_CHECKPOINT_POLICY, type CheckpointPolicy, type Position } from './checkpointer';
import { checkpointKey, readCheckpoints, writeCheckpoints, type Positions, type StoredCheckpoints } from './checkpoints';
import type { EventHubIdentity } from './connection-string';
import { HubError, toHubError } from './errors';
import {
  discoverEventHub,
  eventHubConnectionOptions,
  eventHubIdentity,
  PartitionReaders,
  readPartitionIds,
  type StartPosition,
  type TelemetryEvent,
} from './event-hub';
import { HubConnection, type HubConnectionOptions, type HubState } from './hub-connection';
import { PartitionBalancer } from './partition-balancer';
import type { PartitionScope, PartitionStore } from './partition-store';

/**
 * Where checkpoints are kept between runs. The value holds positions per endpoint and consumer group
 * (see checkpoints.ts); the reader replaces its own endpoint's and keeps the others as it found them.
 */
export interface CheckpointStore {
  /** The value saved last, or undefined when there is none. */
  load(): Promise<unknown>;
  save(checkpoints: StoredCheckpoints): Promise<void>;
}

/**
 * Reading a share of the partitions, balanced with the other readers of the consumer group (other
 * telemetry-in nodes, the official SDKs' processors) through a store of ownership and checkpoints.
 */
export interface BalancedReading {
  /** Opened when reading starts: a connection string that is not one fails the start. */
  store: () => Promise<PartitionStore>;
  /** This reader's name in the ownership records: unique per reader. */
  ownerId: string;
  updateIntervalMs?: number;
  expiryMs?: number;
}

export interface TelemetryReaderOptions {
  /**
   * The connection to read through, shared and never closed here: an IoT Hub connection (a service or
   * gateway policy), whose redirect is followed, or an Event Hubs connection, read directly.
   */
  connection: () => Promise<HubConnection>;
  /** Options for the connection to the redirect's endpoint, and the floor and cap of start retries. */
  connectionOptions: () => Promise<HubConnectionOptions>;
  consumerGroup: string;
  /** Partition ids to read; empty reads every partition the endpoint has. */
  partitions: string[];
  start: StartPosition;
  prefetch: number;
  ownerLevel?: number;
  checkpoints?: CheckpointStore;
  /** Instead of `checkpoints`: partitions balanced with the group's other readers, checkpoints in their store. */
  balance?: BalancedReading;
  /** Positions are saved after every N events or T ms (default: 1 s), and on close. */
  checkpointPolicy?: Partial<CheckpointPolicy>;
  /** Positions are saved only as the flow confirms them (checkpoint()), not as events are handed out. */
  explicitCheckpoints?: boolean;
  /** Where retry and checkpoint waits come from (tests shorten and record them). */
  clock?: Clock;
}

/** What a status display shows of the reader. */
export type TelemetryReaderStatus =
  /** The state of the connection the events come through. */
  | { kind: 'connection'; state: HubState; error?: HubError }
  /** Connected, but a partition refuses this reader: five readers share its consumer group there already. */
  | { kind: 'receiverLimit' }
  /** Starting failed; `error.retryable` says whether it is tried again. */
  | { kind: 'failed'; error: HubError };

/** What a TelemetryReader tells its user. */
export interface TelemetryReaderEvents {
  event: [event: TelemetryEvent];
  status: [status: TelemetryReaderStatus];
  /** A partition's link failed for a reason not told since it last attached (it keeps retrying). */
  partitionError: [partitionId: string, error: HubError];
  /** A checkpoint the service refused (past the end of the partition) was dropped; that partition starts over. */
  reset: [partitionId: string, after: number, error: HubError];
  /** Starting failed for a passing reason; it is tried again in `delayMs` (`attempt` 0 is the first retry). */
  retrying: [error: HubError, attempt: number, delayMs: number];
  /** Starting failed for a reason retrying cannot cure; the reader has stopped. */
  failed: [error: HubError];
  /**
   * Checkpoints could not be loaded (reading starts from the start position) or saved, or partition
   * ownership could not be read or written (owned partitions are read on; it is tried again).
   */
  checkpointError: [operation: 'load' | 'save' | 'ownership', error: Error];
  /** The checkpoint store answers again after a checkpointError. */
  checkpointRecovered: [];
  /** Balanced reading: the partitions this reader owns now, of how many. */
  ownership: [owned: string[], total: number];
}

const DEFAULT_RETRY: BackoffOptions = { minMs: 1000, maxMs: 60_000 };
/** Balanced readers take over each other's links: one owner level for all, as the SDKs' processors use. */
const BALANCED_OWNER_LEVEL = 0;
/** How long close() waits for the last checkpoint write. */
const CLOSE_WRITE_LIMIT_MS = 5000;

export class TelemetryReader extends EventEmitter<TelemetryReaderEvents> {
  private readonly clock: Clock;
  private readonly backoff: Backoff;
  private retryLimits: BackoffOptions = DEFAULT_RETRY;
  private started = false;
  private closed = false;
  /** The second connection, to the redirect's endpoint, when this reader made one. */
  private ownConnection: HubConnection | undefined;
  /** The connection whose state is followed (it may be the shared one): let go of on close. */
  private watched: HubConnection | undefined;
  private readers: PartitionReaders | undefined;
  /** Partitions refused because five readers share them already: the status says so while any is. */
  private readonly crowded = new Set<string>();
  /** The last reason told per partition, so the same refusal repeating is told once. */
  private readonly lastReason = new Map<string, string>();
  /** `<host>/<entity>/<consumer group>` of the endpoint being read (see checkpoints.ts). */
  private endpointKey: string | undefined;
  /** What the store held when loaded: other endpoints' positions are saved back untouched. */
  private stored: unknown;
  private checkpointer: Checkpointer | undefined;
  private balancer: PartitionBalancer | undefined;
  /** How many partitions the endpoint has (balanced reading reads a share). */
  private partitionTotal = 0;

  /** The last reason starting failed, shown while the next attempt connects, cleared once reading. */
  private lastFailure: HubError | undefined;

  private readonly onState = (state: HubState, error?: HubError): void => {
    if (this.closed) return;
    this.emit('status', state === 'open' && this.crowded.size > 0 ? { kind: 'receiverLimit' } : { kind: 'connection', state, error });
  };

  /**
   * The shared IoT Hub connection while the redirect is asked for: open is not yet reading, so it is
   * still "connecting"; its failures are shown as they happen, not once the probe gives up.
   */
  private readonly onSharedState = (state: HubState, error?: HubError): void => {
    if (this.closed) return;
    this.emit('status', { kind: 'connection', state: state === 'open' ? 'connecting' : state, error: error ?? this.lastFailure });
  };

  constructor(private readonly options: TelemetryReaderOptions) {
    super();
    this.clock = options.clock ?? systemClock;
    // The limits are read when the reader starts: they come with the connection's options.
    this.backoff = new Backoff((attempt) => backoffDelay(attempt, this.retryLimits), this.clock);
  }

  /** Starts reading (once); failures to start are told through `retrying` and `failed`. */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    this.attempt();
  }

  /** The last sequence number handed out per partition. */
  positions(): Positions {
    return this.readers?.positions() ?? {};
  }

  /**
   * The flow has handled everything up to this event of a partition: it is written at the next
   * checkpoint. False when this reader does not read that partition (any more).
   */
  checkpoint(partitionId: string, sequenceNumber: number, offset: string): boolean {
    if (!this.checkpointer || !this.readers?.partitionIds.includes(partitionId)) return false;
    this.checkpointer.mark(partitionId, { sequenceNumber, offset });
    return true;
  }

  private attempt(): void {
    this.begin().then(
      () => {
        this.backoff.reset();
        this.lastFailure = undefined;
      },
      (err: unknown) => {
        // Stopped while starting: whatever failed was the close itself.
        if (this.closed) return;
        // Errors of other kinds come from outside the client (a simulator that failed to start): not retried.
        const error = toHubError(err, undefined, 'Error');
        this.lastFailure = error;
        this.stopWatching();
        this.emit('status', { kind: 'failed', error });
        const partial = this.ownConnection;
        this.ownConnection = undefined;
        void partial?.close().catch(() => undefined);
        if (!error.retryable) {
          this.emit('failed', error);
          return;
        }
        const attempt = this.backoff.attempt;
        const delayMs = this.backoff.after(() => {
          if (!this.closed) this.attempt();
        });
        this.emit('retrying', error, attempt, delayMs);
      },
    );
  }

  private stopWatching(): void {
    this.watched?.removeListener('state', this.onState);
    this.watched?.removeListener('state', this.onSharedState);
    this.watched = undefined;
  }

  private async begin(): Promise<void> {
    // Said at once: a node redeployed onto another hub must not go on showing the last one's status.
    this.emit('status', { kind: 'connection', state: 'connecting', error: this.lastFailure });
    const base = await this.options.connectionOptions();
    this.retryLimits = { minMs: base.reconnectMinMs ?? DEFAULT_RETRY.minMs, maxMs: base.reconnectMaxMs ?? DEFAULT_RETRY.maxMs };
    const given = await this.options.connection();
    if (this.closed) return;
    let connection: HubConnection;
    let entityPath: string;
    if (given.identity.kind === 'eventhub') {
      connection = given;
      entityPath = (given.identity as EventHubIdentity).entityPath;
    } else {
      this.watched = given;
      given.on('state', this.onSharedState);
      this.onSharedState(given.state === 'idle' ? 'connecting' : given.state, given.error);
      const redirect = await discoverEventHub(given, base.operationTimeoutMs);
      this.stopWatching();
      if (this.closed) return;
      this.ownConnection = new HubConnection(eventHubIdentity(given.identity, redirect), eventHubConnectionOptions(base, redirect));
      connection = this.ownConnection;
      entityPath = redirect.entityPath;
    }
    this.watched = connection;
    connection.on('state', this.onState);
    this.emit('status', { kind: 'connection', state: connection.state === 'idle' ? 'connecting' : connection.state, error: this.lastFailure });
    const wanted = this.options.partitions;
    const partitions = wanted.length > 0 ? wanted : await readPartitionIds(connection, entityPath, base.operationTimeoutMs);
    if (this.closed) return;
    this.endpointKey = checkpointKey(connection.identity.host, entityPath, this.options.consumerGroup);
    if (this.options.balance) await this.beginBalanced(connection, entityPath, partitions, this.options.balance);
    else await this.beginAll(connection, entityPath, partitions, this.endpointKey);
    if (this.closed) return;
    if (connection.state === 'open') this.emit('status', { kind: 'connection', state: 'open' });
  }

  /** Every partition asked for, checkpoints in the given store (a Node-RED context). */
  private async beginAll(connection: HubConnection, entityPath: string, partitions: string[], key: string): Promise<void> {
    const resumeAfter = await this.loadCheckpoints(key);
    if (this.closed) return;
    const store = this.options.checkpoints;
    if (store) {
      this.checkpointer = this.makeCheckpointer(async (_changed, all) => {
        const positions = Object.fromEntries([...all].map(([p, pos]) => [p, pos.sequenceNumber]));
        const value = writeCheckpoints(this.stored, key, positions);
        this.stored = value;
        await store.save(value);
      });
      this.checkpointer.seed(Object.fromEntries(Object.entries(resumeAfter).map(([p, sequenceNumber]) => [p, { sequenceNumber, offset: '' }])));
    }
    const readers = new PartitionReaders(connection, entityPath, {
      consumerGroup: this.options.consumerGroup,
      partitions,
      start: this.options.start,
      prefetch: this.options.prefetch,
      ownerLevel: this.options.ownerLevel,
      resumeAfter,
    });
    this.wire(connection, readers);
  }

  /**
   * A share of the partitions, claimed through the balancer; each read after its checkpoint in the
   * store, or from the start position when it has none (the checkpoint wins, as in the SDKs).
   */
  private async beginBalanced(connection: HubConnection, entityPath: string, partitions: string[], balance: BalancedReading): Promise<void> {
    const store = await balance.store();
    if (this.closed) return;
    this.partitionTotal = partitions.length;
    // The names an EventHubConsumerClient on this endpoint uses: the namespace is the host without a
    // port (its fullyQualifiedNamespace), so both share one consumer group's records.
    const scope: PartitionScope = { namespace: connection.identity.host.split(':')[0], eventHub: entityPath, consumerGroup: this.options.consumerGroup };
    this.checkpointer = this.makeCheckpointer(async (changed) => {
      for (const [partitionId, pos] of changed) await store.updateCheckpoint(scope, { partitionId, ...pos });
    });
    const readers = new PartitionReaders(connection, entityPath, {
      consumerGroup: this.options.consumerGroup,
      partitions: [],
      start: this.options.start,
      prefetch: this.options.prefetch,
      ownerLevel: this.options.ownerLevel ?? BALANCED_OWNER_LEVEL,
    });
    this.wire(connection, readers);
    const balancer = new PartitionBalancer({
      store,
      scope,
      ownerId: balance.ownerId,
      partitionIds: partitions,
      updateIntervalMs: balance.updateIntervalMs,
      expiryMs: balance.expiryMs,
      clock: this.clock,
    });
    this.balancer = balancer;
    const tell = (): void => {
      this.emit('ownership', balancer.ownedPartitions(), partitions.length);
    };
    balancer.on('claimed', (partitionId, checkpoint) => {
      if (checkpoint) this.checkpointer?.seed({ [partitionId]: { sequenceNumber: checkpoint.sequenceNumber, offset: checkpoint.offset } });
      readers.add(partitionId, checkpoint?.sequenceNumber);
      tell();
    });
    balancer.on('lost', (partitionId) => {
      this.stopPartition(partitionId);
      tell();
    });
    balancer.on('storeError', (err) => this.emit('checkpointError', 'ownership', err));
    balancer.on('storeOk', () => this.emit('checkpointRecovered'));
    tell();
    balancer.start();
  }

  /** Stops reading a partition another reader owns now; what was not yet written for it is left to that reader. */
  private stopPartition(partitionId: string): void {
    this.checkpointer?.drop(partitionId);
    void this.readers?.remove(partitionId);
  }

  private makeCheckpointer(write: (changed: Map<string, Position>, all: Map<string, Position>) => Promise<void>): Checkpointer {
    const policy: CheckpointPolicy = { ...DEFAULT_CHECKPOINT_POLICY, ...this.options.checkpointPolicy };
    const checkpointer = new Checkpointer(write, policy, this.clock);
    checkpointer.on('writeFailed', (err) => this.emit('checkpointError', 'save', err instanceof Error ? err : new Error(String(err))));
    checkpointer.on('recovered', () => this.emit('checkpointRecovered'));
    return checkpointer;
  }

  private wire(connection: HubConnection, readers: PartitionReaders): void {
    this.readers = readers;
    const checkpointer = this.options.explicitCheckpoints ? undefined : this.checkpointer;
    readers.on('event', (event) => {
      this.emit('event', event);
      checkpointer?.mark(event.partitionId, { sequenceNumber: event.sequenceNumber, offset: event.offset });
    });
    readers.on('partition', (partitionId, state, err) => this.onPartition(connection, partitionId, state, err));
    readers.on('reset', (partitionId, after, err) => {
      this.emit('reset', partitionId, after, err);
      this.checkpointer?.drop(partitionId);
    });
  }

  private onPartition(connection: HubConnection, partitionId: string, state: 'attached' | 'detached', err?: HubError): void {
    if (state === 'attached') {
      this.lastReason.delete(partitionId);
      if (this.crowded.delete(partitionId) && this.crowded.size === 0) this.emit('status', { kind: 'connection', state: connection.state });
    }
    if (state !== 'detached' || !err || err.code === 'NotConnected') return;
    if (this.balancer && err.code === 'ReceiverDisconnected') {
      // Another reader of the group claimed the partition and attached with the same owner level: it
      // is theirs now, not a failure; the balancer claims it back only if the split calls for it.
      this.balancer.release(partitionId);
      this.stopPartition(partitionId);
      this.emit('ownership', this.balancer.ownedPartitions(), this.partitionTotal);
      return;
    }
    if (err.code === 'ReceiverLimitExceeded') {
      // It keeps trying; the status says what would let it in.
      this.crowded.add(partitionId);
      this.emit('status', { kind: 'receiverLimit' });
    }
    // The service's descriptions end with a tracking id and a time stamp that differ each time: the
    // same refusal is known by its code and condition.
    const reason = `${err.code}|${err.condition ?? ''}`;
    if (this.lastReason.get(partitionId) === reason) return;
    this.lastReason.set(partitionId, reason);
    this.emit('partitionError', partitionId, err);
  }

  private async loadCheckpoints(key: string): Promise<Positions> {
    const store = this.options.checkpoints;
    if (!store) return {};
    try {
      this.stored = await store.load();
    } catch (err) {
      this.stored = undefined;
      this.emit('checkpointError', 'load', err instanceof Error ? err : new Error(String(err)));
    }
    return readCheckpoints(this.stored, key);
  }

  private async within(work: Promise<void> | undefined, ms: number): Promise<void> {
    if (!work) return;
    let timer: ReturnType<Clock['setTimeout']> | undefined;
    const limit = new Promise<void>((resolve) => {
      timer = this.clock.setTimeout(resolve, ms);
    });
    await Promise.race([work.catch(() => undefined), limit]);
    if (timer) this.clock.clearTimeout(timer);
  }

  /** Stops reading: saves the positions, closes the partition readers and the connection it made. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.backoff.cancel();
    this.stopWatching();
    // Reading stops first, so the last checkpoint covers every event handed out; then the partitions
    // are given up, so the group's other readers take them at their next round.
    await this.readers?.close();
    this.readers = undefined;
    // A store that does not answer must not hold Node-RED's stop past its budget: what was not written
    // is read again by the next owner (at least once).
    await this.within(this.checkpointer?.close(), CLOSE_WRITE_LIMIT_MS);
    await this.balancer?.close();
    this.balancer = undefined;
    await this.ownConnection?.close();
    this.ownConnection = undefined;
  }
}
