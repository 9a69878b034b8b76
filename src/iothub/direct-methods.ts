/**
 * Direct methods, device side: a method link pair per device (or module) on the shared connection,
 * calls handed to the user with their request id, and answers sent back on the same device's link.
 * A call is answerable only while the link that brought it is up: when it goes, the hub has already
 * failed the call (azure-iot-device-amqp amqp_device_method_client.js, "Method Links were detached -
 * the service already considers this method failed"), so a late answer fails here with MethodCallLost
 * instead of reaching a hub that would not know it. Wire details: docs/METHODS-AND-TWINS.md.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import rhea = require('rhea');
import { bodyBytes, idToString } from '../amqp/message-rules';
import {
  DEVICE_API_VERSION,
  LINK_API_VERSION,
  LINK_CHANNEL_CORRELATION_ID,
  METHOD_NAME_PROPERTY,
  METHOD_PAYLOAD_MAX_BYTES,
  METHOD_STATUS_PROPERTY,
  methodsAddress,
} from '../amqp/method-twin-wire';
import { scopeOf, targetName, type DeviceTarget } from './device';
import { HubError } from './errors';
import type { HubConnection } from './hub-connection';
import { HubReceiver, HubSender, type AmqpMessage, type Received } from './links';
import { log, reasonOf } from './log';

/** A call as the user sees it. */
export interface MethodCallFields {
  topic: string;
  methodName: string;
  /** The request payload: JSON parsed, or the text when it is not JSON. */
  payload: unknown;
  requestId: string;
  deviceId: string;
  moduleId?: string;
}

/**
 * Longest a call is kept for an answer: IoT Hub's largest responseTimeoutInSeconds, 300 s
 * (iot-hub-devguide-direct-methods.md). Past it the hub has surely failed the call.
 */
export const MAX_CALL_MS = 300_000;

interface PendingCall {
  fields: MethodCallFields;
  /** The request's correlation id as it came (a uuid Buffer or text), sent back as it came. */
  correlationId: unknown;
  endpoint: MethodEndpoint;
  generation: number;
  timer: NodeJS.Timeout;
}

/** Calls waiting for an answer, per connection: a method-response node answers by request id alone. */
const pendingByConnection = new WeakMap<HubConnection, Map<string, PendingCall>>();

function pendingOf(connection: HubConnection): Map<string, PendingCall> {
  let map = pendingByConnection.get(connection);
  if (!map) {
    map = new Map();
    pendingByConnection.set(connection, map);
  }
  return map;
}

/** One device's method links; `generation` counts receiver attaches, so calls from an old link are known. */
class MethodEndpoint {
  readonly receiver: HubReceiver;
  readonly sender: HubSender;
  generation = 0;

  constructor(
    connection: HubConnection,
    readonly target: DeviceTarget,
    onCall: (endpoint: MethodEndpoint, received: Received) => void,
    onDown: (endpoint: MethodEndpoint, error: HubError) => void,
  ) {
    const address = methodsAddress(target.deviceId, target.moduleId);
    const scope = scopeOf(target);
    // Both links carry the API version and one channel id (amqp_device_method_client.js); a fresh id
    // per attach is not needed: the SDK, too, keeps one per client.
    const properties = { [LINK_API_VERSION]: DEVICE_API_VERSION, [LINK_CHANNEL_CORRELATION_ID]: `methods:${randomUUID()}` };
    this.sender = new HubSender(connection, address, scope, { maxPending: 1000, attachProperties: properties });
    this.receiver = new HubReceiver(connection, address, scope, { credit: 100, settle: 'auto', attachOptions: () => ({ properties }) });
    this.receiver.on('message', (received: Received) => onCall(this, received));
    this.receiver.on('attached', () => {
      this.generation++;
    });
    this.receiver.on('detached', (error: HubError) => {
      this.generation++;
      onDown(this, error);
    });
  }

  get isAttached(): boolean {
    return this.receiver.isAttached && this.sender.isAttached;
  }

  async close(): Promise<void> {
    await Promise.all([this.receiver.close(), this.sender.close()]);
  }
}

export interface MethodInboxEvents {
  call: [call: MethodCallFields];
  /** A device's link pair attached (the status watches these, see WatchedLink in src/nodes/link-status.ts). */
  attached: [target: DeviceTarget];
  detached: [error: HubError, target: DeviceTarget];
  /** A call came that cannot be read (no method name): it was answered 400 at once. */
  unreadable: [target: DeviceTarget, error: HubError];
}

/**
 * The method calls of one or more devices (a gateway's), each on its own link pair on the one
 * connection. Calls are emitted; answers go through `answerMethodCall` by request id.
 */
export class MethodInbox extends EventEmitter<MethodInboxEvents> {
  private readonly endpoints: MethodEndpoint[];

  constructor(
    private readonly connection: HubConnection,
    targets: DeviceTarget[],
  ) {
    super();
    this.endpoints = targets.map((target) => {
      const endpoint = new MethodEndpoint(
        connection,
        target,
        (e, received) => this.onCall(e, received),
        (e, error) => this.onDown(e, error),
      );
      endpoint.receiver.on('attached', () => this.emit('attached', target));
      return endpoint;
    });
  }

  /** Devices whose both method links are attached now. */
  get attachedCount(): number {
    return this.endpoints.filter((e) => e.isAttached).length;
  }

  /** Every device's method links are attached. */
  get isAttached(): boolean {
    return this.endpoints.every((e) => e.isAttached);
  }

  get targets(): DeviceTarget[] {
    return this.endpoints.map((e) => e.target);
  }

  /** The first refusal of a link for want of a right, if any. */
  get refusal(): HubError | undefined {
    for (const e of this.endpoints) {
      const refusal = e.receiver.refusal ?? e.sender.refusal;
      if (refusal) return refusal;
    }
    return undefined;
  }

  private onCall(endpoint: MethodEndpoint, received: Received): void {
    const message = received.message;
    const properties = (message.application_properties ?? {}) as Record<string, unknown>;
    const methodName = properties[METHOD_NAME_PROPERTY];
    const correlationId = message.correlation_id;
    const requestId = idToString(correlationId);
    const { target } = endpoint;
    if (requestId === undefined) {
      // Without a request id there is nothing to answer to: the hub times the call out.
      this.emit('unreadable', target, new HubError('InvalidMessage', `a method call for ${targetName(target)} came without a request id`));
      return;
    }
    const fields: MethodCallFields = {
      topic: targetName(target),
      methodName: typeof methodName === 'string' ? methodName : '',
      payload: parsePayload(bodyBytes(message.body)),
      requestId,
      deviceId: target.deviceId,
      ...(target.moduleId === undefined ? {} : { moduleId: target.moduleId }),
    };
    const pending = pendingOf(this.connection);
    const timer = setTimeout(() => pending.delete(requestId), MAX_CALL_MS);
    timer.unref();
    pending.set(requestId, { fields, correlationId, endpoint, generation: endpoint.generation, timer });
    if (fields.methodName === '') {
      void this.answer(requestId, 400, { message: `the call has no ${METHOD_NAME_PROPERTY} property` });
      this.emit('unreadable', target, new HubError('InvalidMessage', `a method call for ${targetName(target)} came without a method name`));
      return;
    }
    this.emit('call', fields);
  }

  /** The link that brought calls is gone: the hub has failed them; they can no longer be answered. */
  private onDown(endpoint: MethodEndpoint, error: HubError): void {
    const pending = pendingOf(this.connection);
    for (const [requestId, call] of pending) {
      if (call.endpoint !== endpoint) continue;
      clearTimeout(call.timer);
      pending.delete(requestId);
    }
    this.emit('detached', error, endpoint.target);
  }

  /** Answers a call of this inbox (used for the calls the user does not handle). */
  answer(requestId: string, status: number, payload: unknown): Promise<void> {
    return answerMethodCall(this.connection, requestId, status, payload);
  }

  async close(): Promise<void> {
    const pending = pendingOf(this.connection);
    for (const [requestId, call] of pending) {
      if (!this.endpoints.includes(call.endpoint)) continue;
      clearTimeout(call.timer);
      pending.delete(requestId);
    }
    await Promise.all(this.endpoints.map((e) => e.close()));
    this.removeAllListeners();
  }
}

function parsePayload(bytes: Buffer): unknown {
  if (bytes.length === 0) return null;
  const text = bytes.toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/**
 * Sends the answer to a call by its request id: `status` an integer, `payload` anything JSON can
 * carry (undefined is sent as null). Resolves when the hub takes it. Fails before the wire with
 * MethodCallLost (no such call waits: answered already, its link went down, or it is older than the
 * hub waits), InvalidPayload (not JSON), MessageTooLarge (over the hub's 128 KB) or ArgumentInvalid.
 */
export function answerMethodCall(connection: HubConnection, requestId: unknown, status: unknown, payload: unknown): Promise<void> {
  if (typeof requestId !== 'string' || requestId === '') {
    return Promise.reject(new HubError('InvalidMessage', 'msg.requestId must be the request id of a method call'));
  }
  if (typeof status !== 'number' || !Number.isInteger(status) || status < -0x80000000 || status > 0x7fffffff) {
    return Promise.reject(new HubError('ArgumentInvalid', 'the method status must be a whole number (as an HTTP status, e.g. 200)'));
  }
  let json: string;
  try {
    json = JSON.stringify(payload === undefined ? null : payload);
  } catch (err) {
    return Promise.reject(new HubError('InvalidPayload', `the method answer cannot be written as JSON: ${reasonOf(err)}`));
  }
  if (json === undefined) return Promise.reject(new HubError('InvalidPayload', 'the method answer cannot be written as JSON (a function or symbol)'));
  const body = Buffer.from(json, 'utf8');
  // The size rule counts the body and the status property (src/amqp/message-rules.ts messageSize).
  const size = body.length + METHOD_STATUS_PROPERTY.length + String(status).length + requestId.length;
  if (size > METHOD_PAYLOAD_MAX_BYTES) {
    return Promise.reject(new HubError('MessageTooLarge', `the method answer is ${size} bytes; IoT Hub takes at most ${METHOD_PAYLOAD_MAX_BYTES} (128 KB)`));
  }
  const pending = pendingOf(connection);
  const call = pending.get(requestId);
  if (!call) {
    return Promise.reject(
      new HubError(
        'MethodCallLost',
        `no method call ${requestId.slice(0, 40)} waits for an answer: it was answered already, its link went down, or the hub gave up on it`,
      ),
    );
  }
  clearTimeout(call.timer);
  pending.delete(requestId);
  if (call.generation !== call.endpoint.generation) {
    return Promise.reject(new HubError('MethodCallLost', `the method link of ${call.fields.topic} went down after the call came; the hub has failed it`));
  }
  const message: AmqpMessage = {
    // Sent back as it came: a uuid stays a uuid (the C SDK and the hub type it so; PROTOCOL.md §4.2).
    correlation_id: (Buffer.isBuffer(call.correlationId) && call.correlationId.length === 16
      ? rhea.types.wrap_uuid(call.correlationId)
      : call.correlationId) as AmqpMessage['correlation_id'],
    application_properties: { [METHOD_STATUS_PROPERTY]: rhea.types.wrap_int(status) },
    body: rhea.message.data_section(body),
  };
  return call.endpoint.sender.send(message).catch((err: unknown) => {
    log.link('answering method call %s: %s', requestId, reasonOf(err));
    throw err;
  });
}
