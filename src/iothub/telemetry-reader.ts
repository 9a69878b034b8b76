/**
 * TelemetryReader: reads device telemetry from the built-in endpoint, from start to close. It follows an
 * IoT Hub's redirect to the Event Hubs-compatible endpoint (and owns the second connection that takes),
 * or reads an Event Hubs connection directly; lists the partitions, reads them with PartitionReaders,
 * tries a start that failed for a passing reason again, and keeps checkpoints in a store it is given.
 */
import { EventEmitter } from 'node:events';
import { Backoff, backoffDelay, systemClock, type BackoffOptions, type Clock, type ClockTimer } from './backoff';
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

/**
 * Where checkpoints are kept between runs. The value holds positions per endpoint and consumer group
 * (see checkpoints.ts); the reader replaces its own endpoint's and keeps the others as it found them.
 */
export interface CheckpointStore {
  /** The value saved last, or undefined when there is none. */
  load(): Promise<unknown>;
  save(checkpoints: StoredCheckpoints): Promise<void>;
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
  /** Positions are saved at most this often while events arrive (default 1 s), and on close. */
  checkpointEveryMs?: number;
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
  /** Checkpoints could not be loaded (reading starts from the start position) or saved. */
  checkpointError: [operation: 'load' | 'save', error: Error];
}

const DEFAULT_RETRY: BackoffOptions = { minMs: 1000, maxMs: 60_000 };
const DEFAULT_CHECKPOINT_EVERY_MS = 1000;

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
  private checkpointTimer: ClockTimer | undefined;

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

  /** The last sequence number handled per partition. */
  positions(): Positions {
    return this.readers?.positions() ?? {};
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
    const resumeAfter = await this.loadCheckpoints(this.endpointKey);
    if (this.closed) return;
    const readers = new PartitionReaders(connection, entityPath, {
      consumerGroup: this.options.consumerGroup,
      partitions,
      start: this.options.start,
      prefetch: this.options.prefetch,
      ownerLevel: this.options.ownerLevel,
      resumeAfter,
    });
    this.readers = readers;
    readers.on('event', (event) => {
      this.emit('event', event);
      this.saveSoon();
    });
    readers.on('partition', (partitionId, state, err) => this.onPartition(connection, partitionId, state, err));
    readers.on('reset', (partitionId, after, err) => {
      this.emit('reset', partitionId, after, err);
      this.saveCheckpoints();
    });
    if (connection.state === 'open') this.emit('status', { kind: 'connection', state: 'open' });
  }

  private onPartition(connection: HubConnection, partitionId: string, state: 'attached' | 'detached', err?: HubError): void {
    if (state === 'attached') {
      this.lastReason.delete(partitionId);
      if (this.crowded.delete(partitionId) && this.crowded.size === 0) this.emit('status', { kind: 'connection', state: connection.state });
    }
    if (state !== 'detached' || !err || err.code === 'NotConnected') return;
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

  private saveSoon(): void {
    if (!this.options.checkpoints || this.checkpointTimer) return;
    this.checkpointTimer = this.clock.setTimeout(() => {
      this.checkpointTimer = undefined;
      this.saveCheckpoints();
    }, this.options.checkpointEveryMs ?? DEFAULT_CHECKPOINT_EVERY_MS);
  }

  private saveCheckpoints(): void {
    const store = this.options.checkpoints;
    if (!store || !this.readers || this.endpointKey === undefined) return;
    const value = writeCheckpoints(this.stored, this.endpointKey, this.readers.positions());
    this.stored = value;
    store.save(value).catch((err: unknown) => this.emit('checkpointError', 'save', err instanceof Error ? err : new Error(String(err))));
  }

  /** Stops reading: saves the positions, closes the partition readers and the connection it made. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.backoff.cancel();
    if (this.checkpointTimer) this.clock.clearTimeout(this.checkpointTimer);
    this.checkpointTimer = undefined;
    this.saveCheckpoints();
    this.stopWatching();
    const closing = [this.readers?.close(), this.ownConnection?.close()];
    this.readers = undefined;
    this.ownConnection = undefined;
    await Promise.all(closing);
  }
}
