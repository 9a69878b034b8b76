/**
 * A device's (or module's) twin over AMQP on the shared connection: get the twin, patch reported
 * properties, and follow desired-property patches. The twin link pair carries one channel id
 * (`twin:<uuid>`) so the hub pairs them; requests are answered by correlation id, patches come without
 * one (azure-iot-device-amqp amqp_twin_client.js; docs/METHODS-AND-TWINS.md §3).
 *
 * The hub does not keep desired patches for a device that is not listening: once following, every
 * attach of the twin receiver (the first included) puts the subscription and fetches the whole twin,
 * told as `twin` (resync after the first), as the official SDKs do on reconnect, so a patch missed while
 * offline is never lost to the flow, and a twin whose links could not attach for a long while (hub
 * unreachable, tokens refused) follows by itself once they do.
 *
 * Requests go on a sender attached pre-settled, as every official SDK attaches it (see HubSender
 * `presettled`): the answer on the receiver is the verdict. A request is never sent again: one that
 * still waits when its time is up is withdrawn, so a request reported failed was never applied unless
 * it had been written to the wire (then the report says it may have been).
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import rhea = require('rhea');
import { bodyBytes, idToString } from '../amqp/message-rules';
import {
  DEVICE_API_VERSION,
  isPlainObject,
  LINK_API_VERSION,
  LINK_CHANNEL_CORRELATION_ID,
  TWIN_DESIRED_NOTIFICATIONS_RESOURCE,
  TWIN_OPERATION,
  TWIN_REPORTED_RESOURCE,
  TWIN_RESOURCE,
  TWIN_SECTION_MAX_BYTES,
  TWIN_STATUS,
  TWIN_VERSION,
  twinAddress,
  type TwinOperation,
} from '../amqp/method-twin-wire';
import { Backoff } from './backoff';
import { scopeOf, type DeviceTarget } from './device';
import { HubError, type HubErrorCode } from './errors';
import type { HubConnection } from './hub-connection';
import { HubReceiver, HubSender, type AmqpMessage, type Received } from './links';
import { log, reasonOf } from './log';

export type TwinSection = Record<string, unknown> & { $version?: number };

export interface TwinProperties {
  desired: TwinSection;
  reported: TwinSection;
}

export interface DeviceTwinEvents {
  /** A desired-property patch as the hub sent it (with its $version). */
  desired: [patch: TwinSection];
  /**
   * The whole twin, after the subscription was put on an attach: the first time where the flow starts
   * from, after that a resync (patches may have been missed while the links were down).
   */
  twin: [twin: TwinProperties, resync: boolean];
  /** Putting the subscription or getting the twin failed; it is tried again (with backoff, and on every attach). */
  syncFailed: [error: HubError];
  attached: [];
  detached: [error: HubError];
}

interface Pending {
  resolve: (answer: { status: number; version?: number; body: unknown }) => void;
  reject: (error: HubError) => void;
  timer: NodeJS.Timeout;
  /** Withdraws the request while it waits for the sender. */
  withdraw: AbortController;
  /** Handed to the link: the hub may have it, whatever happens to its answer. */
  written: boolean;
  operation: TwinOperation;
}

/** The code of a twin answer's status (amqp_twin_client.js `_translateErrorResponse` maps the same ones). */
function codeOfStatus(status: number): HubErrorCode {
  switch (status) {
    case 400:
      return 'ArgumentInvalid';
    case 401:
      return 'Unauthorized';
    case 403:
      return 'InvalidOperation';
    case 404:
      return 'DeviceNotFound';
    case 412:
      return 'PreconditionFailed';
    case 413:
      return 'MessageTooLarge';
    case 429:
      return 'Throttled';
    case 500:
      return 'InternalServerError';
    case 503:
      return 'ServiceUnavailable';
    case 504:
      return 'Timeout';
    default:
      return 'Error';
  }
}

export class DeviceTwin extends EventEmitter<DeviceTwinEvents> {
  private readonly sender: HubSender;
  private readonly receiver: HubReceiver;
  private readonly pending = new Map<string, Pending>();
  private readonly timeoutMs: number;
  /** The user follows desired patches: every receiver attach puts the subscription and gets the twin. */
  private following = false;
  /** A twin was told once: the next ones are resyncs. */
  private toldOnce = false;
  /** A sync is running; `syncAgain` asks for another once it ends (an attach came meanwhile). */
  private syncing = false;
  private syncAgain = false;
  /** Waits between syncs that failed while the links stayed up. */
  private readonly syncRetry: Backoff;
  private closed = false;

  constructor(
    connection: HubConnection,
    readonly target: DeviceTarget,
  ) {
    super();
    this.timeoutMs = connection.options.operationTimeoutMs;
    const address = twinAddress(target.deviceId, target.moduleId);
    const scope = scopeOf(target);
    const properties = { [LINK_API_VERSION]: DEVICE_API_VERSION, [LINK_CHANNEL_CORRELATION_ID]: `twin:${randomUUID()}` };
    this.syncRetry = new Backoff(connection.retrySchedule, connection.options.clock);
    this.sender = new HubSender(connection, address, scope, { maxPending: 100, attachProperties: properties, presettled: true });
    this.receiver = new HubReceiver(connection, address, scope, { credit: 100, settle: 'auto', attachOptions: () => ({ properties }) });
    this.receiver.on('message', (received: Received) => this.onMessage(received.message));
    // 'attached' once both links are: whichever of the two comes last says so (a status shown at the
    // receiver's attach alone could stay "connecting" for good while the sender is still on its way).
    const pairUp = (): void => {
      if (this.isAttached) this.emit('attached');
    };
    this.sender.on('attached', pairUp);
    this.sender.on('detached', (error: HubError) => this.emit('detached', error));
    this.receiver.on('attached', () => {
      pairUp();
      // Every attach, the first too: a subscription the hub has not confirmed on this link is not there.
      if (this.following) this.sync();
    });
    this.receiver.on('detached', (error: HubError) => {
      // Answers come on this link only: what waits for one will not get it. The next attach syncs again.
      this.syncRetry.cancel();
      this.failPending(`the twin link of ${target.deviceId} went down before the hub answered`);
      this.emit('detached', error);
    });
  }

  get isAttached(): boolean {
    return this.receiver.isAttached && this.sender.isAttached;
  }

  get refusal(): HubError | undefined {
    return this.receiver.refusal ?? this.sender.refusal;
  }

  /** The whole twin: desired and reported properties with their versions. */
  async get(): Promise<TwinProperties> {
    const answer = await this.request('GET', undefined, ' ');
    const body = answer.body;
    if (!isPlainObject(body)) throw new HubError('InvalidMessage', 'the hub answered the twin get without a twin');
    return {
      desired: (isPlainObject(body.desired) ? body.desired : {}) as TwinSection,
      reported: (isPlainObject(body.reported) ? body.reported : {}) as TwinSection,
    };
  }

  /**
   * Patches the reported properties (a JSON object; null removes a property). Resolves with the new
   * reported version when the hub gives one. Fails before the wire with InvalidPayload or MessageTooLarge.
   */
  async patchReported(patch: unknown): Promise<number | undefined> {
    if (!isPlainObject(patch)) throw new HubError('InvalidPayload', 'a reported-properties patch must be a JSON object, e.g. {"firmware": "1.2"}');
    let json: string;
    try {
      json = JSON.stringify(patch);
    } catch (err) {
      throw new HubError('InvalidPayload', `the reported-properties patch cannot be written as JSON: ${reasonOf(err)}`);
    }
    const size = Buffer.byteLength(json);
    if (size > TWIN_SECTION_MAX_BYTES) {
      throw new HubError('MessageTooLarge', `the reported-properties patch is ${size} bytes; a twin section holds at most ${TWIN_SECTION_MAX_BYTES} (32 KB)`);
    }
    const answer = await this.request('PATCH', TWIN_REPORTED_RESOURCE, json);
    return answer.version;
  }

  /**
   * Follows desired-property patches from now on: the subscription is put and the whole twin told
   * (`twin`) as soon as the links are attached, and again after every re-attach. Never fails: a sync
   * that fails is told (`syncFailed`) and tried again.
   */
  follow(): void {
    if (this.following || this.closed) return;
    this.following = true;
    if (this.receiver.isAttached) this.sync();
  }

  /** Whether follow() was called (the subscription is wanted). */
  get isFollowing(): boolean {
    return this.following;
  }

  private sync(): void {
    if (this.closed) return;
    this.syncRetry.cancel();
    if (this.syncing) {
      this.syncAgain = true;
      return;
    }
    this.syncing = true;
    this.syncAgain = false;
    void this.syncOnce().finally(() => {
      this.syncing = false;
      if (this.syncAgain && !this.closed) this.sync();
    });
  }

  private async syncOnce(): Promise<void> {
    try {
      await this.request('PUT', TWIN_DESIRED_NOTIFICATIONS_RESOURCE, ' ');
      const twin = await this.get();
      if (this.closed) return;
      this.syncRetry.reset();
      const resync = this.toldOnce;
      this.toldOnce = true;
      this.emit('twin', twin, resync);
    } catch (err) {
      if (this.closed) return;
      const error = err instanceof HubError ? err : new HubError('Error', reasonOf(err));
      log.link('twin subscription of %s: %s', this.target.deviceId, error.message);
      this.emit('syncFailed', error);
      // Links still up (the hub refused or did not answer): try again after a while. Links down: the
      // next attach tries again.
      if (this.receiver.isAttached && !this.syncAgain) this.syncRetry.after(() => this.sync());
    }
  }

  private async request(operation: TwinOperation, resource: string | undefined, body: string): Promise<{ status: number; version?: number; body: unknown }> {
    if (this.closed) throw new HubError('Closed', 'the twin is closed');
    // Answers come on the receiver: a request sent before it is attached could be answered into nothing.
    if (!this.receiver.isAttached) await this.attachedOrTimeout();
    if (this.closed) throw new HubError('Closed', 'the twin is closed');
    const correlationId = randomUUID();
    const message: AmqpMessage = {
      correlation_id: correlationId,
      message_annotations: { [TWIN_OPERATION]: operation, ...(resource === undefined ? {} : { [TWIN_RESOURCE]: resource }) },
      body: rhea.message.data_section(Buffer.from(body, 'utf8')),
    };
    const withdraw = new AbortController();
    let entry: Pending | undefined;
    const answered = new Promise<{ status: number; version?: number; body: unknown }>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(correlationId);
        const made = entry as Pending;
        // Still waiting for the sender: taken back, so it is never applied after this report.
        withdraw.abort();
        reject(
          new HubError(
            'Timeout',
            made.written
              ? `the hub did not answer the twin ${operation} in time; it may have been applied`
              : `the twin ${operation} could not be sent in time (the twin link was not attached); it was not sent`,
            { retryable: true },
          ),
        );
      }, this.timeoutMs);
      timer.unref();
      entry = { resolve, reject, timer, withdraw, written: false, operation };
      this.pending.set(correlationId, entry);
    });
    const pending = entry as Pending;
    this.sender.send(message, { signal: withdraw.signal }).then(
      () => {
        pending.written = true;
      },
      (err: unknown) => {
        if (this.pending.get(correlationId) !== pending) return;
        clearTimeout(pending.timer);
        this.pending.delete(correlationId);
        pending.reject(err instanceof HubError ? err : new HubError('Error', reasonOf(err)));
      },
    );
    const answer = await answered;
    if (answer.status < 200 || answer.status >= 300) {
      const why = typeof answer.body === 'string' ? answer.body : `status ${answer.status}`;
      throw new HubError(codeOfStatus(answer.status), `the hub refused the twin ${operation}: ${why.slice(0, 200)}`);
    }
    return answer;
  }

  private attachedOrTimeout(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        this.receiver.removeListener('attached', done);
        resolve();
      };
      const timer = setTimeout(() => {
        this.receiver.removeListener('attached', done);
        reject(this.receiver.refusal ?? new HubError('NotConnected', 'the twin link is not attached', { retryable: true }));
      }, this.timeoutMs);
      timer.unref();
      this.receiver.on('attached', done);
    });
  }

  private onMessage(message: AmqpMessage): void {
    const correlationId = idToString(message.correlation_id);
    const bytes = bodyBytes(message.body);
    let body: unknown;
    try {
      body = bytes.length === 0 || bytes.toString('utf8').trim() === '' ? undefined : JSON.parse(bytes.toString('utf8'));
    } catch {
      body = bytes.toString('utf8');
    }
    if (correlationId === undefined) {
      // A desired-property patch: the only message without a correlation id (amqp_twin_client.js).
      if (isPlainObject(body)) this.emit('desired', body as TwinSection);
      return;
    }
    const entry = this.pending.get(correlationId);
    if (!entry) return;
    clearTimeout(entry.timer);
    this.pending.delete(correlationId);
    const annotations = (message.message_annotations ?? {}) as Record<string, unknown>;
    const status = Number(annotations[TWIN_STATUS] ?? 200);
    const version = annotations[TWIN_VERSION] === undefined || annotations[TWIN_VERSION] === null ? undefined : Number(annotations[TWIN_VERSION]);
    entry.resolve({ status, ...(version === undefined || Number.isNaN(version) ? {} : { version }), body });
  }

  /**
   * Fails every request waiting for an answer. One not yet written is withdrawn (never sent, so never
   * applied); one written may have reached the hub, and its error says so: it is never sent again.
   */
  private failPending(why: string, code: 'NotConnected' | 'Closed' = 'NotConnected'): void {
    const entries = [...this.pending.values()];
    this.pending.clear();
    for (const entry of entries) {
      clearTimeout(entry.timer);
      entry.withdraw.abort();
      const outcome = entry.written ? `; the twin ${entry.operation} may have been applied` : `; the twin ${entry.operation} was not sent`;
      entry.reject(new HubError(code, why + outcome, { retryable: code === 'NotConnected' }));
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.syncRetry.cancel();
    this.failPending('the twin is closed', 'Closed');
    await Promise.all([this.receiver.close(), this.sender.close()]);
    this.removeAllListeners();
  }
}
