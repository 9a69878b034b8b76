/**
 * Reading telemetry from the built-in endpoint: follow IoT Hub's redirect to its Event Hubs-compatible
 * endpoint, list partitions through `$management`, and read each partition from a start position,
 * resuming after the last event handled whenever a link or the connection comes back.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import rhea = require('rhea');
import type { Message } from 'rhea-promise';
import type { EventHubIdentity, Identity } from './connection-string';
import { selectorFilter, selectorFor, type StartPosition } from '../amqp/selector-filter';
import { PendingRequests } from '../amqp/request-response';
import { HubError } from './errors';
import { HubConnection, type HubConnectionOptions, type HubState } from './hub-connection';
import { HubReceiver, HubSender, type Received } from './links';

/** AMQP sender-settle-mode `settled`. */
const SETTLED = 1;

export { selectorFor, type StartPosition };

export interface Redirect {
  /** Host to connect to, with a port when it is not the standard one. */
  host: string;
  entityPath: string;
  port?: number;
}

/** Reads a redirect's info map (string or symbol keys; the address names the entity). */
export function parseRedirect(info: Record<string, unknown> | undefined): Redirect {
  const address = typeof info?.address === 'string' ? info.address : '';
  const match = /^[a-z]+:\/\/([^/]+)\/([^/]+)/i.exec(address);
  if (!match) throw new HubError('LinkRedirect', 'the hub redirected to an address this client cannot read');
  const hostname = typeof info?.hostname === 'string' ? info.hostname : match[1];
  const port = typeof info?.port === 'number' ? info.port : Number(/:(\d+)$/.exec(match[1])?.[1] ?? NaN);
  const redirect: Redirect = { host: hostname, entityPath: decodeURIComponent(match[2]) };
  if (Number.isFinite(port)) redirect.port = port;
  return redirect;
}

/**
 * The connection's own failure as the probe's: retried like the connection retries it (a key refused
 * today may be put right in the portal without a redeploy), with its code and socket cause kept.
 */
function connectionFailure(error: HubError | undefined): HubError {
  if (!error) return new HubError('NotConnected', 'the connection to the hub could not be made', { retryable: true });
  const options: { retryable: boolean; condition?: string; socketCode?: string } = { retryable: true };
  if (error.condition) options.condition = error.condition;
  if (error.socketCode) options.socketCode = error.socketCode;
  return new HubError(error.code, error.message, options);
}

/**
 * Asks IoT Hub where its built-in endpoint lives: attach to `/messages/events/$management` and read
 * the `amqp:link:redirect` the hub answers with. When the connection itself fails (a host that does
 * not resolve, a key the hub refuses), that failure is the answer: waiting out the timeout would only
 * hide it behind a Timeout.
 */
export function discoverEventHub(connection: HubConnection, timeoutMs = 30_000): Promise<Redirect> {
  return new Promise<Redirect>((resolve, reject) => {
    if (connection.state === 'reconnecting') {
      reject(connectionFailure(connection.error));
      return;
    }
    const probe = new HubReceiver(connection, '/messages/events/$management', {}, { credit: 1, settle: 'auto' });
    const onState = (state: HubState, error?: HubError): void => {
      if (state === 'reconnecting') finish(connectionFailure(error ?? connection.error));
    };
    connection.on('state', onState);
    const finish = (err?: Error, redirect?: Redirect): void => {
      clearTimeout(timer);
      connection.removeListener('state', onState);
      probe.removeAllListeners();
      void probe.close();
      if (err) reject(err);
      else resolve(redirect as Redirect);
    };
    const timer = setTimeout(
      () => finish(new HubError('Timeout', 'the hub did not redirect to its built-in endpoint in time', { retryable: true })),
      timeoutMs,
    );
    probe.on('detached', (err: HubError) => {
      if (err.code === 'LinkRedirect') {
        try {
          finish(undefined, parseRedirect(err.info));
        } catch (e) {
          finish(e as Error);
        }
      } else if (err.code === 'Unauthorized') finish(err);
    });
    // The connection closed under the probe (the node using it is being stopped).
    probe.on('closed', (err: HubError) => finish(err));
  });
}

/** The Event Hubs identity for a redirect, signed with the service policy's key. */
export function eventHubIdentity(service: Identity, redirect: Redirect): EventHubIdentity {
  if (service.kind !== 'service' && service.kind !== 'gateway')
    throw new HubError('WrongRole', 'reading telemetry needs a service policy or an Event Hubs connection string');
  return { kind: 'eventhub', host: redirect.host, entityPath: redirect.entityPath, policy: service.policy, key: service.key, emulator: false };
}

/** `$management` READ of the hub: its partition ids. */
export async function readPartitionIds(connection: HubConnection, entityPath: string, timeoutMs = 30_000): Promise<string[]> {
  const replyTo = `mgmt-${randomUUID()}`;
  const receiver = new HubReceiver(
    connection,
    '$management',
    {},
    { credit: 10, settle: 'auto', attachOptions: () => ({ target: { address: replyTo }, name: replyTo }) },
  );
  const sender = new HubSender(connection, '$management', {}, { maxPending: 10 });
  const id = randomUUID();
  const pending = new PendingRequests(timeoutMs, () => new HubError('Timeout', '$management did not answer in time', { retryable: true }));
  try {
    // Every way the exchange can end settles this one request: nothing is left to reject later with
    // no one listening.
    const answer = pending.expect(id);
    const fail = (err: HubError): void => pending.fail(id, err);
    receiver.on('closed', fail);
    sender.on('closed', fail);
    receiver.on('message', (r: Received) => pending.answer(r.message));
    receiver.once('attached', () => {
      sender
        .send({
          message_id: id,
          reply_to: replyTo,
          body: rhea.message.data_section(Buffer.alloc(0)),
          application_properties: { operation: 'READ', name: entityPath, type: 'com.microsoft:eventhub' },
        } as Message)
        .catch(fail);
    });
    const { status, description, message: response } = await answer;
    if (status !== 200) throw new HubError('ManagementError', `$management READ failed: ${description}`);
    const ids = (response.body as { partition_ids?: unknown } | undefined)?.partition_ids;
    if (!Array.isArray(ids)) throw new HubError('ManagementError', '$management READ returned no partition ids');
    return ids.map(String);
  } finally {
    await receiver.close();
    await sender.close();
  }
}

export interface ReaderOptions {
  consumerGroup: string;
  partitions: string[];
  start: StartPosition;
  prefetch: number;
  ownerLevel?: number;
  /** Last sequence number already handled per partition (checkpoints): reading resumes after it. */
  resumeAfter?: Record<string, number>;
}

export interface TelemetryEvent {
  partitionId: string;
  message: Message;
  sequenceNumber: number;
  /** `x-opt-offset`: what the official SDKs resume from, so it goes into Blob checkpoints beside the sequence number. */
  offset: string;
}

/**
 * Event Hubs refuses a start position past the end of a partition with `com.microsoft:argument-error`
 * ("The supplied sequence number 'X' is invalid. The last sequence number in the system is 'Y'",
 * Azure/azure-event-hubs-spark#315), and an offset past the end likewise (Azure/azure-event-hubs-python#13).
 */
function isInvalidPosition(error: HubError): boolean {
  const argument = error.condition === 'com.microsoft:argument-error' || error.condition === 'com.microsoft:argument-out-of-range';
  // Both conditions also refuse other arguments (an unknown partition id, say): only a position counts.
  return argument && /sequence number|offset/i.test(error.message);
}

/** What PartitionReaders tell their user. */
export interface PartitionReadersEvents {
  event: [event: TelemetryEvent];
  partition: [partitionId: string, state: 'attached' | 'detached', error?: HubError];
  /** A resume position the service refused was dropped; the partition starts over from the start position. */
  reset: [partitionId: string, after: number, error: HubError];
}

/**
 * Reads partitions; emits 'event' (TelemetryEvent), 'partition' (id, 'attached' | 'detached', error?),
 * and 'reset' (id, the sequence number given up, error) when a resume position was refused.
 * A partition that fails re-attaches by itself and does not stop the others.
 */
export class PartitionReaders extends EventEmitter<PartitionReadersEvents> {
  private readonly receivers = new Map<string, HubReceiver>();
  private readonly last = new Map<string, number>();

  constructor(
    private readonly connection: HubConnection,
    private readonly entityPath: string,
    private readonly options: ReaderOptions,
  ) {
    super();
    for (const [p, seq] of Object.entries(options.resumeAfter ?? {})) this.last.set(p, seq);
    for (const partitionId of options.partitions) this.open(partitionId);
  }

  /** The partitions being read. */
  get partitionIds(): string[] {
    return [...this.receivers.keys()];
  }

  /**
   * Starts reading one more partition (a balancer claimed it), after `after` when a checkpoint names
   * it, else from the start position. Reading it already: nothing changes.
   */
  add(partitionId: string, after?: number): void {
    if (this.receivers.has(partitionId)) return;
    if (after === undefined) this.last.delete(partitionId);
    else this.last.set(partitionId, after);
    this.open(partitionId);
  }

  /** Stops reading a partition (another reader owns it now); its position is forgotten. */
  async remove(partitionId: string): Promise<void> {
    const receiver = this.receivers.get(partitionId);
    this.receivers.delete(partitionId);
    this.last.delete(partitionId);
    await receiver?.close();
  }

  /** Sequence number of the last event emitted per partition. */
  positions(): Record<string, number> {
    return Object.fromEntries(this.last);
  }

  private open(partitionId: string): void {
    const address = `${this.entityPath}/ConsumerGroups/${this.options.consumerGroup}/Partitions/${partitionId}`;
    const receiver = new HubReceiver(
      this.connection,
      address,
      {},
      {
        credit: this.options.prefetch,
        settle: 'auto',
        attachOptions: () => {
          const after = this.last.get(partitionId);
          const expression = selectorFor(after === undefined ? this.options.start : { kind: 'after', sequenceNumber: after });
          const extra: Record<string, unknown> = {
            source: { filter: selectorFilter(expression) },
            // Settled on send, as Azure's .NET Event Hubs clients attach: a reader has nothing to settle
            // (it resumes by sequence number), so no disposition goes back for each event.
            snd_settle_mode: SETTLED,
          };
          if (this.options.ownerLevel !== undefined) extra.properties = { 'com.microsoft:epoch': rhea.types.wrap_long(this.options.ownerLevel) };
          return extra;
        },
      },
    );
    receiver.on('message', (r: Received) => {
      const annotations = (r.message.message_annotations ?? {}) as Record<string, unknown>;
      const sequenceNumber = Number(annotations['x-opt-sequence-number']);
      const previous = this.last.get(partitionId);
      // After a re-attach the filter starts after the last one seen; anything older is a repeat.
      if (previous !== undefined && sequenceNumber <= previous) return;
      this.last.set(partitionId, sequenceNumber);
      this.emit('event', { partitionId, message: r.message, sequenceNumber, offset: String(annotations['x-opt-offset']) } satisfies TelemetryEvent);
    });
    receiver.on('attached', () => this.emit('partition', partitionId, 'attached'));
    // A receiver removed while its detach was on the way is not this reader's any more.
    const current = (): boolean => this.receivers.get(partitionId) === receiver;
    receiver.on('detached', (err: HubError) => {
      if (!current()) return;
      // A position the service calls invalid (a checkpoint past the end of the partition: the hub was
      // recreated, or the checkpoints came from another hub) is dropped before the link re-attaches,
      // so the partition starts over from the start position instead of failing the same way for ever.
      const after = this.last.get(partitionId);
      if (after !== undefined && isInvalidPosition(err)) {
        this.last.delete(partitionId);
        this.emit('reset', partitionId, after, err);
        return;
      }
      this.emit('partition', partitionId, 'detached', err);
    });
    this.receivers.set(partitionId, receiver);
  }

  async close(): Promise<void> {
    const all = [...this.receivers.values()];
    this.receivers.clear();
    await Promise.all(all.map((r) => r.close()));
  }
}

/**
 * Connection options for the Event Hubs endpoint a redirect named: the same transport as the IoT Hub
 * connection, on the redirect's port (WebSockets stay on 443, on the Event Hubs path).
 */
export function eventHubConnectionOptions(base: HubConnectionOptions, redirect: Redirect): HubConnectionOptions {
  const options: HubConnectionOptions = { ...base };
  if (base.transport === 'amqpws') options.webSocketPath = '/$servicebus/websocket';
  else if (redirect.port !== undefined) options.port = redirect.port;
  return options;
}
