/**
 * Direct methods, hub side: each device (or module) that attached its method link pair can be called;
 * a call goes to the device on the hub's sender and waits for the answer on the hub's receiver, matched
 * by correlation id. Calls come from the REST surface (rest-api.ts); what a call may take and what it
 * fails with follow IoT Hub's documented behaviour, cited at each rule.
 */
import { randomUUID } from 'node:crypto';
import rhea = require('rhea');
import { bodyBytes, idToString, messageSize } from '../amqp/message-rules';
import {
  LINK_API_VERSION,
  LINK_CHANNEL_CORRELATION_ID,
  METHOD_NAME_PROPERTY,
  METHOD_PAYLOAD_MAX_BYTES,
  METHOD_STATUS_PROPERTY,
} from '../amqp/method-twin-wire';
import { remoteAttach } from '../amqp/rhea-internals';
import { settleIncoming } from './amqp';
import { simLog } from './log';
import { ServiceError } from './service-errors';

export interface MethodCall {
  methodName: string;
  payload: unknown;
  /** Seconds to wait for the answer once the device has the call. */
  responseTimeoutInSeconds: number;
  /** Seconds to wait for an offline device to come online. */
  connectTimeoutInSeconds: number;
}

export interface MethodResult {
  status: number;
  payload: unknown;
}

interface Endpoint {
  requests?: rhea.Sender;
  responses?: rhea.Receiver;
  /**
   * The `com.microsoft:channel-correlation-id` the device attached with: kept, never checked. The SDKs
   * differ: 'methods:' and a fresh uuid on every attach in the Node SDK (amqp_device_method_client.js);
   * the device id or <device>/<module> in the C SDK as the issue-17 review reads iothubtransportamqp_methods.c
   * (not checked here). So no form, and no `methods:` prefix, is required.
   */
  channel?: string;
  /** Calls made while the device had no credit. */
  queue: Array<{ message: rhea.Message; call: PendingCall }>;
}

/** A call waiting for its device to come online. */
interface Waiter {
  /** The device's links attached: start the call if both are there. */
  arrived(): void;
  /** The hub closes: stop the connect timer and fail the call. */
  cancel(error: ServiceError): void;
}

interface PendingCall {
  key: string;
  correlationId: string;
  resolve: (result: MethodResult) => void;
  reject: (error: ServiceError) => void;
  timer?: NodeJS.Timeout;
}

const keyOf = (deviceId: string, moduleId?: string): string => (moduleId === undefined ? deviceId : `${deviceId}/${moduleId}`);

export class DirectMethods {
  private readonly endpoints = new Map<string, Endpoint>();
  private readonly pending = new Map<string, PendingCall>();
  /** Calls waiting for an offline device (connectTimeoutInSeconds > 0), by device key. */
  private readonly waitingForDevice = new Map<string, Set<Waiter>>();
  private closed = false;

  /** Counts for tests and the CLI. */
  get pendingCount(): number {
    return this.pending.size;
  }

  /** Calls waiting for their device to come online. */
  get awaitingDevice(): number {
    let n = 0;
    for (const waiters of this.waitingForDevice.values()) n += waiters.size;
    return n;
  }

  /** Whether the device (or module) has both method links attached: what "online for methods" means here. */
  isOnline(deviceId: string, moduleId?: string): boolean {
    const e = this.endpoints.get(keyOf(deviceId, moduleId));
    return e?.requests !== undefined && e.responses !== undefined && e.requests.is_open() && e.responses.is_open();
  }

  /** The hub's sender of method requests (the device's receiver) attached. */
  attachRequests(deviceId: string, moduleId: string | undefined, sender: rhea.Sender): void {
    noteApiVersion(keyOf(deviceId, moduleId), sender);
    const endpoint = this.endpoint(keyOf(deviceId, moduleId));
    endpoint.requests = sender;
    endpoint.channel = channelOf(sender);
    this.deviceArrived(keyOf(deviceId, moduleId));
  }

  /** The hub's receiver of method answers (the device's sender) attached. */
  attachResponses(deviceId: string, moduleId: string | undefined, receiver: rhea.Receiver): void {
    noteApiVersion(keyOf(deviceId, moduleId), receiver);
    const endpoint = this.endpoint(keyOf(deviceId, moduleId));
    endpoint.responses = receiver;
    this.deviceArrived(keyOf(deviceId, moduleId));
  }

  /**
   * A method link went away. The calls the device already had fail at once: the Node device SDK says
   * "Method Links were detached - the service already considers this method failed"
   * (amqp_device_method_client.js, sendMethodResponse while detached). The code the hub gives the caller
   * then is UNVERIFIED; DeviceNotOnline (404103) is what a caller would get a moment later anyway.
   */
  detach(link: rhea.Sender | rhea.Receiver): void {
    for (const [key, endpoint] of this.endpoints) {
      if (endpoint.requests !== link && endpoint.responses !== link) continue;
      if (endpoint.requests === link) endpoint.requests = undefined;
      if (endpoint.responses === link) endpoint.responses = undefined;
      endpoint.queue.length = 0;
      for (const call of [...this.pending.values()]) if (call.key === key) this.fail(call, deviceGone(key));
      if (!endpoint.requests && !endpoint.responses) this.endpoints.delete(key);
    }
  }

  /** The device's receiver granted credit: send what waited for it. */
  onSendable(sender: rhea.Sender): void {
    for (const endpoint of this.endpoints.values()) {
      if (endpoint.requests === sender) this.flush(endpoint);
    }
  }

  /** An answer from the device: matched to its call by correlation id, as the SDKs set it. */
  onResponse(ctx: rhea.EventContext): void {
    const delivery = ctx.delivery as rhea.Delivery;
    const message = ctx.message as rhea.Message;
    // The Node device SDK answers with the request id as a string (amqp_device_method_client.js
    // sendMethodResponse), the C# SDK with a Guid (AmqpIotMessageConverter): both read as text here.
    const correlationId = idToString(message.correlation_id);
    const found = correlationId === undefined ? undefined : this.pending.get(correlationId);
    // Only the called device answers its call: the answer must come on that device's own link.
    const call = found && this.endpoints.get(found.key)?.responses === ctx.receiver ? found : undefined;
    if (!call) {
      // An answer after its call timed out or for a call that never was: the device hears it is unknown.
      settleIncoming(delivery, 'rejected', {
        condition: 'amqp:not-found',
        description: 'No method call is waiting for this correlation id (it may have timed out).',
      });
      return;
    }
    const size = messageSize(message);
    if (size > METHOD_PAYLOAD_MAX_BYTES) {
      // The call stays open: the device may still answer within the limit before the call times out.
      settleIncoming(delivery, 'rejected', {
        condition: 'amqp:link:message-size-exceeded',
        description: `The method answer is ${size} bytes; at most ${METHOD_PAYLOAD_MAX_BYTES} are allowed.`,
      });
      return;
    }
    const status = Number((message.application_properties as Record<string, unknown> | undefined)?.[METHOD_STATUS_PROPERTY]);
    if (!Number.isInteger(status)) {
      settleIncoming(delivery, 'rejected', {
        condition: 'com.microsoft:argument-error',
        description: `The answer has no integer ${METHOD_STATUS_PROPERTY} property.`,
      });
      return;
    }
    const bytes = bodyBytes(message.body);
    let payload: unknown = null;
    if (bytes.length > 0) {
      try {
        payload = JSON.parse(bytes.toString('utf8'));
      } catch {
        // "The payload for method requests and responses is a JSON document" (iot-hub-devguide-direct-methods.md).
        settleIncoming(delivery, 'rejected', { condition: 'com.microsoft:argument-error', description: 'The method answer is not JSON.' });
        return;
      }
    }
    settleIncoming(delivery, 'accepted');
    this.finish(call);
    call.resolve({ status, payload });
  }

  /**
   * Calls a method on a device, resolving with the device's status and payload. Fails as IoT Hub does
   * (Azure docs, iot-hub-devguide-direct-methods.md and troubleshoot-error-codes.md): a device that is not
   * online within connectTimeoutInSeconds with 404103 DeviceNotOnline, no answer within
   * responseTimeoutInSeconds with 504101 GatewayTimeout.
   */
  invoke(deviceId: string, moduleId: string | undefined, call: MethodCall): Promise<MethodResult> {
    const key = keyOf(deviceId, moduleId);
    return new Promise<MethodResult>((resolve, reject) => {
      if (this.closed) {
        reject(new ServiceError(503, 503001, 'ServiceUnavailable', 'The hub is shutting down.'));
        return;
      }
      const correlationId = randomUUID();
      const pending: PendingCall = { key, correlationId, resolve, reject };
      const start = (): void => {
        if (this.closed) return;
        this.pending.set(correlationId, pending);
        pending.timer = setTimeout(
          () =>
            this.fail(
              pending,
              new ServiceError(504, 504101, 'GatewayTimeout', 'Timed out waiting for the response from device.', {
                timeout: span(call.responseTimeoutInSeconds),
              }),
            ),
          call.responseTimeoutInSeconds * 1000,
        );
        pending.timer.unref();
        this.send(key, call, pending);
      };
      if (this.isOnline(deviceId, moduleId)) {
        start();
        return;
      }
      const offline = (): ServiceError =>
        new ServiceError(404, 404103, 'DeviceNotOnline', 'Timed out waiting for device to connect.', { timeout: span(call.connectTimeoutInSeconds) });
      if (call.connectTimeoutInSeconds <= 0) {
        reject(offline());
        return;
      }
      const waiters = this.waitingForDevice.get(key) ?? new Set<Waiter>();
      this.waitingForDevice.set(key, waiters);
      const leave = (): void => {
        clearTimeout(connectTimer);
        waiters.delete(waiter);
        if (waiters.size === 0 && this.waitingForDevice.get(key) === waiters) this.waitingForDevice.delete(key);
      };
      const waiter: Waiter = {
        arrived: () => {
          if (!this.isOnline(deviceId, moduleId)) return;
          leave();
          start();
        },
        cancel: (error) => {
          leave();
          reject(error);
        },
      };
      const connectTimer = setTimeout(() => {
        leave();
        reject(offline());
      }, call.connectTimeoutInSeconds * 1000);
      connectTimer.unref();
      waiters.add(waiter);
    });
  }

  close(): void {
    this.closed = true;
    for (const call of [...this.pending.values()]) this.fail(call, new ServiceError(503, 503001, 'ServiceUnavailable', 'The hub is shutting down.'));
    this.endpoints.clear();
    // Calls still waiting for their device fail now, not when their connect timer would have fired.
    for (const waiters of [...this.waitingForDevice.values()])
      for (const waiter of [...waiters]) waiter.cancel(new ServiceError(503, 503001, 'ServiceUnavailable', 'The hub is shutting down.'));
    this.waitingForDevice.clear();
  }

  private endpoint(key: string): Endpoint {
    let endpoint = this.endpoints.get(key);
    if (!endpoint) {
      endpoint = { queue: [] };
      this.endpoints.set(key, endpoint);
    }
    return endpoint;
  }

  private deviceArrived(key: string): void {
    for (const waiter of [...(this.waitingForDevice.get(key) ?? [])]) waiter.arrived();
  }

  private send(key: string, call: MethodCall, pending: PendingCall): void {
    const endpoint = this.endpoints.get(key);
    if (!endpoint) {
      this.fail(pending, deviceGone(key));
      return;
    }
    endpoint.queue.push({ message: methodRequest(pending.correlationId, call), call: pending });
    this.flush(endpoint);
  }

  private flush(endpoint: Endpoint): void {
    const sender = endpoint.requests;
    while (sender && sender.is_open() && sender.sendable() && endpoint.queue.length > 0) {
      const next = endpoint.queue.shift() as { message: rhea.Message; call: PendingCall };
      if (this.pending.has(next.call.correlationId)) sender.send(next.message);
    }
  }

  private finish(call: PendingCall): void {
    if (call.timer) clearTimeout(call.timer);
    this.pending.delete(call.correlationId);
  }

  private fail(call: PendingCall, error: ServiceError): void {
    if (!this.pending.has(call.correlationId)) return;
    this.finish(call);
    call.reject(error);
  }
}

/**
 * The hub's request of a call. The request id goes as an AMQP uuid: the Node SDK reads "an encoded uuid
 * (0x98) as a 16 byte buffer" and turns it back into text (amqp_device_method_client.js). rhea writes a
 * Buffer message id as a uuid (types.js `wrap_message_id`), so the id's 16 bytes are given as a Buffer.
 */
export function methodRequest(correlationId: string, call: Pick<MethodCall, 'methodName' | 'payload'>): rhea.Message {
  return {
    correlation_id: rhea.string_to_uuid(correlationId),
    application_properties: { [METHOD_NAME_PROPERTY]: call.methodName },
    body: rhea.message.data_section(Buffer.from(JSON.stringify(call.payload ?? null), 'utf8')),
  };
}

/**
 * The SDKs put com.microsoft:api-version on every method link (amqp_device_method_client.js link
 * properties; C# AmqpIotSession / ClientApiVersionHelper). Whether the hub refuses an attach without it is
 * UNVERIFIED, so the attach is taken and the missing version only logged (DEBUG=iothub-sim:amqp).
 */
function noteApiVersion(key: string, link: rhea.Sender | rhea.Receiver): void {
  const props = remoteAttach(link).properties as Record<string, unknown> | undefined;
  const version = props?.[LINK_API_VERSION];
  if (typeof version !== 'string' || version === '')
    simLog.amqp('method link of %s attached without %s (UNVERIFIED whether IoT Hub refuses that; taken)', key.slice(0, 160), LINK_API_VERSION);
}

function deviceGone(key: string): ServiceError {
  return new ServiceError(404, 404103, 'DeviceNotOnline', `The device ${key.slice(0, 80)} went offline before it answered.`);
}

/** A timeout as IoT Hub writes it in error info: a .NET TimeSpan, `hh:mm:ss` (troubleshoot-error-codes.md). */
function span(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const two = (n: number): string => String(n).padStart(2, '0');
  return `${two(Math.floor(s / 3600))}:${two(Math.floor((s % 3600) / 60))}:${two(s % 60)}`;
}

function channelOf(link: rhea.Sender | rhea.Receiver): string | undefined {
  const props = remoteAttach(link).properties as Record<string, unknown> | undefined;
  const channel = props?.[LINK_CHANNEL_CORRELATION_ID];
  return typeof channel === 'string' ? channel : undefined;
}
