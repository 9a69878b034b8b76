/**
 * Direct methods, device side: a method link pair per device (or module) on the shared connection,
 * calls handed to the user with their request id, and answers sent back on the same device's link.
 * A call is answerable only while the link that brought it is up: when it goes, the hub has already
 * failed the call (azure-iot-device-amqp amqp_device_method_client.js, "Method Links were detached -
 * the service already considers this method failed"), so a late answer fails here with MethodCallLost
 * instead of reaching a hub that would not know it. Wire details: docs/METHODS-AND-TWINS.md.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter, setMaxListeners } from 'node:events';
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

/**
 * The answer to a call no inbox on the device handles: the 404 an HTTP API gives for an unknown route.
 */
export const METHOD_NOT_HANDLED_STATUS = 404;

/**
 * One device's method link pair on a connection, shared by every MethodInbox that serves the device
 * there: the hub sends each call to one pair only, so two pairs for one device would each see some of
 * the calls. Calls are routed by method name to the inboxes (see `route`).
 *
 * `generation` counts detaches of either link: a call is answerable while it is unchanged. It is not
 * counted on attach, because a call can come in the same read as the attach, before the attach is
 * reported, and would be taken for one of the old link's.
 */
class MethodEndpoint {
  readonly receiver: HubReceiver;
  readonly sender: HubSender;
  readonly inboxes = new Set<MethodInbox>();
  generation = 0;
  /** Aborted when a link goes: answers still waiting for the sender are taken back (the hub failed their calls). */
  linkLost = answersSignal();

  constructor(
    readonly connection: HubConnection,
    readonly target: DeviceTarget,
    readonly key: string,
  ) {
    const address = methodsAddress(target.deviceId, target.moduleId);
    const scope = scopeOf(target);
    // Both links carry the API version and a channel id. The Node SDK sends `methods:<uuid>` with a
    // fresh uuid on every attach (amqp_device_method_client.js, attaching), C# `methods:<guid>` per
    // open (AmqpUnit.cs), the C SDK the bare `<device>` or `<device>/<module>` (iothubtransportamqp_methods.c
    // create_correlation_id): the hub asks for no particular form. Ours is made once per pair, since
    // our two links re-attach one by one and should go on naming the same channel.
    const properties = { [LINK_API_VERSION]: DEVICE_API_VERSION, [LINK_CHANNEL_CORRELATION_ID]: `methods:${randomUUID()}` };
    // An answer is never sent twice nor after its call was reported lost: one unsettled when the link
    // goes fails (onLinkLoss `fail`); the hub has failed the call by then anyway.
    this.sender = new HubSender(connection, address, scope, { maxPending: MAX_ANSWERS, attachProperties: properties, onLinkLoss: 'fail' });
    this.receiver = new HubReceiver(connection, address, scope, { credit: 100, settle: 'auto', attachOptions: () => ({ properties }) });
    this.receiver.on('message', (received: Received) => onCall(this, received));
    // Told once both links are: whichever of the two attaches last says so.
    const pairUp = (): void => {
      if (this.isAttached) for (const inbox of this.inboxes) inbox.linkAttached(target);
    };
    this.receiver.on('attached', pairUp);
    this.sender.on('attached', pairUp);
    const down = (error: HubError): void => {
      this.generation++;
      this.linkLost.abort(new HubError('MethodCallLost', `the method link of ${targetName(target)} went down; the hub has failed its calls`));
      this.linkLost = answersSignal();
      dropCalls(this);
      for (const inbox of this.inboxes) inbox.linkDetached(error, target);
    };
    this.receiver.on('detached', down);
    this.sender.on('detached', down);
  }

  get isAttached(): boolean {
    return this.receiver.isAttached && this.sender.isAttached;
  }

  /**
   * The inbox for a method: one that lists the name, else one that takes every method; the first
   * opened wins among equals (as the first matching route of an HTTP server would).
   */
  route(methodName: string): MethodInbox | undefined {
    let any: MethodInbox | undefined;
    for (const inbox of this.inboxes) {
      if (inbox.methods.has(methodName)) return inbox;
      if (inbox.methods.size === 0) any ??= inbox;
    }
    return any;
  }

  async close(): Promise<void> {
    this.linkLost.abort(new HubError('MethodCallLost', `the method links of ${targetName(this.target)} were closed`));
    await Promise.all([this.receiver.close(), this.sender.close()]);
  }
}

/** What inboxes opened before take of `methods` (see MethodInbox.shadowed), if anything. */
function shadowedBy(earlier: Iterable<MethodInbox>, methods: ReadonlySet<string>): string[] | 'all' | undefined {
  const taken = new Set<string>();
  for (const inbox of earlier) {
    if (methods.size === 0 && inbox.methods.size === 0) return 'all';
    for (const name of methods) if (inbox.methods.has(name)) taken.add(name);
  }
  return taken.size > 0 ? [...taken] : undefined;
}

/** Most answers waiting on one method sender (its maxPending). */
const MAX_ANSWERS = 1000;

/** A controller every waiting answer of a device listens to: as many as the sender holds, without a leak warning. */
function answersSignal(): AbortController {
  const controller = new AbortController();
  setMaxListeners(MAX_ANSWERS + 1, controller.signal);
  return controller;
}

/** The shared endpoints of a connection, by device key. */
const endpointsByConnection = new WeakMap<HubConnection, Map<string, MethodEndpoint>>();

function endpointFor(connection: HubConnection, target: DeviceTarget): MethodEndpoint {
  let map = endpointsByConnection.get(connection);
  if (!map) {
    map = new Map();
    endpointsByConnection.set(connection, map);
  }
  const key = targetName(target);
  let endpoint = map.get(key);
  if (!endpoint) {
    endpoint = new MethodEndpoint(connection, target, key);
    map.set(key, endpoint);
  }
  return endpoint;
}

/** Forgets the calls an endpoint brought: its link went, or it closed. */
function dropCalls(endpoint: MethodEndpoint): void {
  const pending = pendingOf(endpoint.connection);
  for (const [requestId, call] of pending) {
    if (call.endpoint !== endpoint) continue;
    clearTimeout(call.timer);
    pending.delete(requestId);
  }
}

function onCall(endpoint: MethodEndpoint, received: Received): void {
  const message = received.message;
  const properties = (message.application_properties ?? {}) as Record<string, unknown>;
  const methodName = properties[METHOD_NAME_PROPERTY];
  const correlationId = message.correlation_id;
  const requestId = idToString(correlationId);
  const { target, connection } = endpoint;
  const first = endpoint.inboxes.values().next().value;
  if (requestId === undefined) {
    // Without a request id there is nothing to answer to: the hub times the call out.
    first?.emit('unreadable', target, new HubError('InvalidMessage', `a method call for ${targetName(target)} came without a request id`));
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
  const pending = pendingOf(connection);
  const timer = setTimeout(() => pending.delete(requestId), MAX_CALL_MS);
  timer.unref();
  pending.set(requestId, { fields, correlationId, endpoint, generation: endpoint.generation, timer });
  const fail = (status: number, why: string): void => {
    answerMethodCall(connection, requestId, status, { message: why }).catch((err: unknown) =>
      log.link('answering method call %s: %s', requestId, reasonOf(err)),
    );
  };
  if (fields.methodName === '') {
    fail(400, `the call has no ${METHOD_NAME_PROPERTY} property`);
    first?.emit('unreadable', target, new HubError('InvalidMessage', `a method call for ${targetName(target)} came without a method name`));
    return;
  }
  const inbox = endpoint.route(fields.methodName);
  if (!inbox) {
    fail(METHOD_NOT_HANDLED_STATUS, `method '${fields.methodName.slice(0, 100)}' is not handled by this device`);
    return;
  }
  inbox.emit('call', fields);
}

export interface MethodInboxEvents {
  call: [call: MethodCallFields];
  /** A device's link pair attached (the status watches these, see WatchedLink in src/nodes/link-status.ts). */
  attached: [target: DeviceTarget];
  detached: [error: HubError, target: DeviceTarget];
  /** A call came that cannot be read (no method name): it was answered 400 at once. */
  unreadable: [target: DeviceTarget, error: HubError];
}

export interface MethodInboxOptions {
  /** The method names this inbox handles; none means every method no other inbox of the device lists. */
  methods?: Iterable<string>;
}

/**
 * The method calls of one or more devices (a gateway's), for one user (a flow node). Every inbox of a
 * device on a connection shares that device's one link pair; a call goes to the inbox that lists its
 * method, else to one that takes every method, else it is answered 404 (METHOD_NOT_HANDLED_STATUS).
 * Calls are emitted; answers go through `answerMethodCall` by request id.
 */
export class MethodInbox extends EventEmitter<MethodInboxEvents> {
  private readonly endpoints: MethodEndpoint[];
  readonly methods: ReadonlySet<string>;
  /**
   * Per device, what this inbox will not get because an inbox opened before it already takes it: the
   * methods both list, or every method when both list none. Routing stays first-opened-wins; this is
   * for saying so instead of a node that silently never fires.
   */
  readonly shadowed: Array<{ target: DeviceTarget; methods: string[] | 'all' }> = [];
  private closed = false;

  constructor(
    private readonly connection: HubConnection,
    targets: DeviceTarget[],
    options: MethodInboxOptions = {},
  ) {
    super();
    this.methods = new Set(options.methods ?? []);
    this.endpoints = targets.map((target) => {
      const endpoint = endpointFor(connection, target);
      const taken = shadowedBy(endpoint.inboxes, this.methods);
      if (taken) this.shadowed.push({ target, methods: taken });
      endpoint.inboxes.add(this);
      return endpoint;
    });
  }

  /** @internal Both links of the endpoint are attached. */
  linkAttached(target: DeviceTarget): void {
    this.emit('attached', target);
  }

  /** @internal A link of the endpoint went down. */
  linkDetached(error: HubError, target: DeviceTarget): void {
    this.emit('detached', error, target);
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

  /** Answers a call of this inbox's devices. */
  answer(requestId: string, status: number, payload: unknown): Promise<void> {
    return answerMethodCall(this.connection, requestId, status, payload);
  }

  /** Leaves the devices' link pairs; the last inbox of a device closes its pair (and its calls go). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.removeAllListeners();
    const map = endpointsByConnection.get(this.connection);
    const closing: MethodEndpoint[] = [];
    for (const endpoint of this.endpoints) {
      endpoint.inboxes.delete(this);
      if (endpoint.inboxes.size > 0) continue;
      if (map?.get(endpoint.key) === endpoint) map.delete(endpoint.key);
      dropCalls(endpoint);
      closing.push(endpoint);
    }
    await Promise.all(closing.map((e) => e.close()));
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
  const { endpoint } = call;
  return endpoint.sender.send(message, { signal: endpoint.linkLost.signal }).catch((err: unknown) => {
    log.link('answering method call %s: %s', requestId, reasonOf(err));
    // Lost with its link: withdrawn before the wire (never sent), or unsettled when the link went (it
    // may have reached the hub, which fails the call when the link goes; it is not sent again).
    if (err instanceof HubError && err.code === 'NotConnected') {
      throw new HubError('MethodCallLost', `the method link of ${call.fields.topic} went down while the answer was on its way; the hub fails the call then`);
    }
    throw err;
  });
}
