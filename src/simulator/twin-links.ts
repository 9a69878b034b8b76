/**
 * The device side of twins over AMQP: a device's twin link pair on `/devices/<id>/twin` (module:
 * `/devices/<id>/modules/<mid>/twin`), requests on the hub's receiver answered on the hub's sender of
 * the same pair, and desired-property patches pushed to the pairs that subscribed. Wire rules
 * (azure-iot-device-amqp amqp_twin_client.js; PROTOCOL.md §4.2; docs/METHODS-AND-TWINS.md §3):
 * - a request carries message annotations `operation` (GET, PATCH, PUT, DELETE) and `resource`, and a
 *   correlation id; its answer carries the same correlation id, annotations `status` (int, 2xx is
 *   success) and `version`, and a JSON body in a data section;
 * - a desired patch comes without a correlation id, its body the patch with `$version`.
 */
import rhea = require('rhea');
import { bodyBytes } from '../amqp/message-rules';
import {
  LINK_CHANNEL_CORRELATION_ID,
  TWIN_DESIRED_NOTIFICATIONS_RESOURCE,
  TWIN_OPERATION,
  TWIN_REPORTED_RESOURCE,
  TWIN_RESOURCE,
  TWIN_STATUS,
  TWIN_VERSION,
} from '../amqp/method-twin-wire';
import { remoteAttach } from '../amqp/rhea-internals';
import { settleIncoming } from './amqp';
import { ServiceError } from './service-errors';
import { twinKey, type Json, type TwinStore } from './twins';

interface TwinPair {
  key: string;
  deviceId: string;
  moduleId?: string;
  connection: rhea.Connection;
  channel: string | undefined;
  sender?: rhea.Sender;
  receiver?: rhea.Receiver;
  /** The device asked for desired-property notifications (PUT) on this pair. */
  subscribed: boolean;
  /** Answers and notifications waiting for the device's credit. */
  queue: rhea.Message[];
}

export class TwinLinks {
  private readonly pairs = new Set<TwinPair>();

  constructor(private readonly store: TwinStore) {
    store.on('desired', (key, patch) => this.notify(key, patch));
  }

  /** Devices (keys) with a twin pair attached, for tests. */
  isSubscribed(deviceId: string, moduleId?: string): boolean {
    const key = twinKey(deviceId, moduleId);
    return [...this.pairs].some((p) => p.key === key && p.subscribed && p.sender?.is_open() === true);
  }

  isConnected(deviceId: string, moduleId?: string): boolean {
    const key = twinKey(deviceId, moduleId);
    return [...this.pairs].some((p) => p.key === key && p.sender?.is_open() === true);
  }

  attach(deviceId: string, moduleId: string | undefined, link: rhea.Sender | rhea.Receiver): void {
    const pair = this.pairFor(deviceId, moduleId, link);
    if (link.is_sender()) pair.sender = link as rhea.Sender;
    else pair.receiver = link as rhea.Receiver;
  }

  detach(link: rhea.Sender | rhea.Receiver): void {
    for (const pair of this.pairs) {
      if (pair.sender === link) {
        pair.sender = undefined;
        pair.subscribed = false;
        pair.queue = [];
      }
      if (pair.receiver === link) pair.receiver = undefined;
      if (!pair.sender && !pair.receiver) this.pairs.delete(pair);
    }
  }

  onSendable(sender: rhea.Sender): void {
    for (const pair of this.pairs) if (pair.sender === sender) this.flush(pair);
  }

  /** A request from the device on the hub's receiver. */
  onRequest(ctx: rhea.EventContext): void {
    const delivery = ctx.delivery as rhea.Delivery;
    const message = ctx.message as rhea.Message;
    const pair = [...this.pairs].find((p) => p.receiver === ctx.receiver);
    if (!pair) {
      settleIncoming(delivery, 'released');
      return;
    }
    const correlationId = message.correlation_id;
    if (correlationId === undefined || correlationId === null) {
      // Nothing to answer to (amqp_twin_client.js sends every request with one).
      settleIncoming(delivery, 'rejected', { condition: 'com.microsoft:argument-error', description: 'A twin request needs a correlation id.' });
      return;
    }
    settleIncoming(delivery, 'accepted');
    const annotations = (message.message_annotations ?? {}) as Record<string, unknown>;
    const operation = String(annotations[TWIN_OPERATION] ?? '').toUpperCase();
    const resource = typeof annotations[TWIN_RESOURCE] === 'string' ? (annotations[TWIN_RESOURCE] as string) : undefined;
    const answer = (status: number, body: unknown, version?: number): void =>
      this.send(pair, {
        correlation_id: correlationId,
        message_annotations: {
          [TWIN_STATUS]: rhea.types.wrap_int(status),
          ...(version === undefined ? {} : { [TWIN_VERSION]: rhea.types.wrap_long(version) }),
        },
        body: rhea.message.data_section(Buffer.from(body === undefined ? '' : JSON.stringify(body), 'utf8')),
      });
    try {
      if (operation === 'GET' && (resource === undefined || resource === '' || resource === '/')) {
        const properties = this.store.properties(pair.deviceId, pair.moduleId);
        answer(200, properties, (properties.desired as Json).$version as number);
      } else if (operation === 'PATCH' && resource === TWIN_REPORTED_RESOURCE) {
        let patch: unknown;
        try {
          patch = JSON.parse(bodyBytes(message.body).toString('utf8'));
        } catch {
          throw new ServiceError(400, 400006, 'IotHubFormatError', 'The reported properties patch is not JSON.');
        }
        // 204 with the new reported version, as the hub answers a reported patch over MQTT
        // (iot-hub-mqtt-support.md "Update device twin's reported properties"); over AMQP the SDKs take any 2xx.
        answer(204, undefined, this.store.patchReported(pair.deviceId, pair.moduleId, patch));
      } else if ((operation === 'PUT' || operation === 'DELETE') && resource === TWIN_DESIRED_NOTIFICATIONS_RESOURCE) {
        pair.subscribed = operation === 'PUT';
        answer(200, undefined);
      } else {
        throw new ServiceError(400, 400004, 'ArgumentInvalid', `Unknown twin operation ${operation.slice(0, 20)} on ${String(resource).slice(0, 80)}.`);
      }
    } catch (err) {
      if (!(err instanceof ServiceError)) throw err;
      // The body is the reason as a JSON string: amqp_twin_client.js `_translateErrorResponse` parses the
      // body and hands it to the error as its message. What the real hub writes there is UNVERIFIED.
      answer(err.httpStatus, err.message);
    }
  }

  private pairFor(deviceId: string, moduleId: string | undefined, link: rhea.Sender | rhea.Receiver): TwinPair {
    const key = twinKey(deviceId, moduleId);
    const props = remoteAttach(link).properties as Record<string, unknown> | undefined;
    const channel = typeof props?.[LINK_CHANNEL_CORRELATION_ID] === 'string' ? (props[LINK_CHANNEL_CORRELATION_ID] as string) : undefined;
    const connection = link.connection;
    const side = link.is_sender() ? 'sender' : 'receiver';
    // Pairs are made by the channel id both links carry (amqp_twin_client.js `twin:<uuid>`); a client
    // that sends none is paired with its other twin link for the device on the same connection.
    const found = [...this.pairs].find(
      (p) =>
        p.key === key && p.connection === connection && p[side] === undefined && (channel === undefined || p.channel === undefined || p.channel === channel),
    );
    if (found) {
      found.channel ??= channel;
      return found;
    }
    const pair: TwinPair = { key, deviceId, connection, channel, subscribed: false, queue: [] };
    if (moduleId !== undefined) pair.moduleId = moduleId;
    this.pairs.add(pair);
    return pair;
  }

  private notify(key: string, patch: Json): void {
    for (const pair of this.pairs) {
      if (pair.key !== key || !pair.subscribed) continue;
      this.send(pair, { body: rhea.message.data_section(Buffer.from(JSON.stringify(patch), 'utf8')) });
    }
  }

  private send(pair: TwinPair, message: rhea.Message): void {
    pair.queue.push(message);
    this.flush(pair);
  }

  private flush(pair: TwinPair): void {
    const sender = pair.sender;
    while (sender && sender.is_open() && sender.sendable() && pair.queue.length > 0) sender.send(pair.queue.shift() as rhea.Message);
  }
}
