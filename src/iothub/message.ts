/**
 * The one mapping between a Node-RED msg and an AMQP message, used by every node (the msg contract each node's help text states).
 * Outgoing: validate everything that can be known before the wire, so that a message that can never
 * be sent fails at once with a code. Incoming: decode the body as the node asks, and make every
 * property JSON-safe for the debug sidebar and for flows that serialise msgs.
 */
import { randomUUID } from 'node:crypto';
import rhea = require('rhea');
import type { Message } from 'rhea-promise';
import { idToString, isValidId, messageSize } from '../amqp/message-rules';
import { HubError, type HubErrorCode } from './errors';

export { isValidId };

export const D2C_MAX_BYTES = 256 * 1024;
export const C2D_MAX_BYTES = 64 * 1024;
const ACKS = ['none', 'positive', 'negative', 'full'] as const;
export type Ack = (typeof ACKS)[number];

export interface OutgoingInput {
  payload?: unknown;
  messageId?: unknown;
  correlationId?: unknown;
  contentType?: unknown;
  contentEncoding?: unknown;
  userId?: unknown;
  properties?: unknown;
  ack?: unknown;
  expiryTime?: unknown;
  ttl?: unknown;
  creationTime?: unknown;
  subject?: unknown;
  replyTo?: unknown;
  groupId?: unknown;
  groupSequence?: unknown;
  replyToGroupId?: unknown;
}

export interface Outgoing {
  message: Message;
  messageId: string;
  /** ms since the epoch, when the message carries an expiry. */
  expiresAt?: number;
  size: number;
}

function fail(code: HubErrorCode, message: string): never {
  throw new HubError(code, message);
}

function optionalString(value: unknown, name: string): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  return fail('InvalidMessage', `msg.${name} must be a string`);
}

/** The largest time a Date (and so an AMQP timestamp from rhea) can hold; rhea writes any other as 1970. */
const MAX_TIME_MS = 8.64e15;

function toTime(value: unknown, name: string): number | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  const ms = value instanceof Date ? value.getTime() : typeof value === 'number' ? value : typeof value === 'string' ? Date.parse(value) : NaN;
  if (!Number.isFinite(ms) || Math.abs(ms) > MAX_TIME_MS) fail('InvalidMessage', `msg.${name} must be an ISO date, a Date or epoch milliseconds`);
  return ms;
}

/** Body bytes and the content type/encoding a payload implies. */
export function encodePayload(payload: unknown): { body: Buffer; json: boolean } {
  if (payload === undefined || payload === null) return { body: Buffer.alloc(0), json: false };
  if (Buffer.isBuffer(payload)) return { body: payload, json: false };
  if (payload instanceof Uint8Array) return { body: Buffer.from(payload), json: false };
  if (typeof payload === 'string') return { body: Buffer.from(payload, 'utf8'), json: false };
  let text: string | undefined;
  try {
    text = JSON.stringify(payload);
  } catch {
    fail('InvalidMessage', 'msg.payload cannot be turned into JSON (it may hold a cycle or a BigInt)');
  }
  if (text === undefined) fail('InvalidMessage', 'msg.payload cannot be turned into JSON');
  return { body: Buffer.from(text, 'utf8'), json: true };
}

/**
 * Application properties go on the wire as strings: IoT Hub documents them as strings and the C# SDK
 * refuses other types on receive, so numbers and booleans are written as their text.
 */
export function encodeProperties(properties: unknown): Record<string, string> {
  if (properties === undefined || properties === null) return {};
  if (typeof properties !== 'object' || Array.isArray(properties) || Buffer.isBuffer(properties)) {
    return fail('InvalidProperty', 'msg.properties must be an object of string, number or boolean values');
  }
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(properties as Record<string, unknown>)) {
    if (!/^[\x21-\x7e]{1,128}$/.test(key) || /[()<>@,;:\\"/[\]?={}]/.test(key)) {
      fail('InvalidProperty', `property name "${key.slice(0, 40)}" must be 1-128 printable ASCII characters without separators`);
    }
    if (key.toLowerCase().startsWith('iothub-')) fail('InvalidProperty', `property "${key}" is reserved by IoT Hub`);
    if (typeof value === 'string') out[key] = value;
    else if (typeof value === 'number' && Number.isFinite(value)) out[key] = String(value);
    else if (typeof value === 'boolean') out[key] = String(value);
    else
      fail(
        'InvalidProperty',
        `property "${key}" must be a string, number or boolean, not ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value}`,
      );
  }
  return out;
}

/**
 * Builds the AMQP message for a msg. `kind` decides the size limit and whether `ack` applies; `to`
 * is set by the caller's address (C2D needs it per message).
 */
export function toAmqpMessage(input: OutgoingInput, kind: 'c2d' | 'd2c', now = Date.now()): Outgoing {
  const { body, json } = encodePayload(input.payload);
  const messageId = optionalString(input.messageId, 'messageId') ?? randomUUID();
  if (messageId.length > 128) fail('InvalidMessage', 'msg.messageId must be at most 128 characters');
  const correlationId = optionalString(input.correlationId, 'correlationId');
  let contentType = optionalString(input.contentType, 'contentType');
  let contentEncoding = optionalString(input.contentEncoding, 'contentEncoding');
  if (json) {
    contentType ??= 'application/json';
    contentEncoding ??= 'utf-8';
  }
  // user_id is binary on the wire: a Buffer goes as is, text as UTF-8.
  const userIdText = Buffer.isBuffer(input.userId) ? undefined : optionalString(input.userId, 'userId');
  const userId = Buffer.isBuffer(input.userId) ? input.userId : userIdText === undefined ? undefined : Buffer.from(userIdText, 'utf8');
  const subject = optionalString(input.subject, 'subject');
  const replyTo = optionalString(input.replyTo, 'replyTo');
  const groupId = optionalString(input.groupId, 'groupId');
  const replyToGroupId = optionalString(input.replyToGroupId, 'replyToGroupId');
  let groupSequence: number | undefined;
  if (input.groupSequence !== undefined && input.groupSequence !== null && input.groupSequence !== '') {
    groupSequence = Number(input.groupSequence);
    if (!Number.isInteger(groupSequence) || groupSequence < 0 || groupSequence > 0xffffffff)
      fail('InvalidMessage', 'msg.groupSequence must be a whole number from 0 to 4294967295');
  }
  const properties = encodeProperties(input.properties);

  if (kind === 'c2d') {
    const ack = input.ack === undefined || input.ack === null || input.ack === '' ? 'none' : typeof input.ack === 'string' ? input.ack.toLowerCase() : '';
    if (!(ACKS as readonly string[]).includes(ack)) fail('InvalidMessage', `msg.ack must be one of ${ACKS.join(', ')}`);
    if (ack !== 'none') properties['iothub-ack'] = ack;
  } else if (input.ack !== undefined && input.ack !== null && input.ack !== '') {
    fail('InvalidMessage', 'msg.ack applies to cloud-to-device messages only');
  }

  let expiresAt = toTime(input.expiryTime, 'expiryTime');
  if (expiresAt === undefined && input.ttl !== undefined && input.ttl !== null && input.ttl !== '' && input.ttl !== 0) {
    const ttl = typeof input.ttl === 'number' ? input.ttl : typeof input.ttl === 'string' && input.ttl.trim() !== '' ? Number(input.ttl) : NaN;
    if (!Number.isFinite(ttl) || ttl < 0 || now + ttl > MAX_TIME_MS) fail('InvalidMessage', 'msg.ttl must be a number of milliseconds');
    expiresAt = now + ttl;
  }
  if (expiresAt !== undefined && expiresAt <= now) fail('Expired', 'the message expired before it was sent (msg.expiryTime or msg.ttl)');
  const creationTime = toTime(input.creationTime, 'creationTime');

  const message: Message = { message_id: messageId, body: rhea.message.data_section(body) } as Message;
  if (correlationId !== undefined) message.correlation_id = correlationId;
  if (contentType !== undefined) message.content_type = contentType;
  if (contentEncoding !== undefined) message.content_encoding = contentEncoding;
  if (userId !== undefined) (message as unknown as { user_id: Buffer }).user_id = userId;
  if (expiresAt !== undefined) message.absolute_expiry_time = new Date(expiresAt);
  if (creationTime !== undefined) message.creation_time = new Date(creationTime);
  if (subject !== undefined) message.subject = subject;
  if (replyTo !== undefined) message.reply_to = replyTo;
  if (groupId !== undefined) message.group_id = groupId;
  if (groupSequence !== undefined) message.group_sequence = groupSequence;
  if (replyToGroupId !== undefined) message.reply_to_group_id = replyToGroupId;
  if (Object.keys(properties).length > 0) message.application_properties = properties;
  // Counted on the message as built, by the rule the simulator applies to what it receives.
  const size = messageSize(message);
  const max = kind === 'c2d' ? C2D_MAX_BYTES : D2C_MAX_BYTES;
  if (size > max)
    fail('MessageTooLarge', `the message is ${size} bytes; IoT Hub takes at most ${max} (${kind === 'c2d' ? 'cloud-to-device' : 'device-to-cloud'})`);
  const out: Outgoing = { message, messageId, size };
  if (expiresAt !== undefined) out.expiresAt = expiresAt;
  return out;
}

// ---- incoming -------------------------------------------------------------------------------

export type OutputMode = 'auto' | 'string' | 'json' | 'buffer';

export function bodyBuffer(body: unknown): Buffer | undefined {
  if (body === undefined || body === null) return undefined;
  const section = body as { typecode?: number; content?: unknown; multiple?: boolean };
  if (section.typecode === 0x75) {
    if (section.multiple && Array.isArray(section.content)) return Buffer.concat(section.content.map((c) => bodyBuffer(c) ?? Buffer.alloc(0)));
    return bodyBuffer(section.content);
  }
  if (Buffer.isBuffer(body)) return body;
  if (body instanceof Uint8Array) return Buffer.from(body);
  return undefined;
}

/** Decodes a body; throws HubError('InvalidPayload') when `json` is asked and it is not JSON. */
export function decodePayload(body: unknown, mode: OutputMode, contentType?: string): unknown {
  const bytes = bodyBuffer(body);
  if (bytes === undefined) {
    // An amqp-value body (string, number, map): already a value.
    if (mode === 'buffer') return Buffer.from(typeof body === 'string' ? body : JSON.stringify(jsonSafe(body)), 'utf8');
    if (mode === 'string') return typeof body === 'string' ? body : JSON.stringify(jsonSafe(body));
    return jsonSafe(body);
  }
  if (mode === 'buffer') return bytes;
  const text = bytes.toString('utf8');
  if (mode === 'string') return text;
  if (mode === 'json') {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new HubError('InvalidPayload', 'the message body is not JSON');
    }
  }
  // auto: JSON object or array when it parses, else text when it is valid UTF-8, else bytes.
  // A JSON content type is taken at its word; otherwise the text must look like an object or array.
  const looksJson = (contentType !== undefined && /json/i.test(contentType)) || /^\s*[[{]/.test(text);
  if (looksJson) {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      // not JSON after all
    }
  }
  return Buffer.from(text, 'utf8').equals(bytes) ? text : bytes;
}

/**
 * A received message carries its enqueued time twice (`iothub-enqueuedtime`, `x-opt-enqueued-time`),
 * and the messages of one burst share it: remembering the last conversion saves most of them.
 */
let lastTime = NaN;
let lastIso = '';
function isoOf(date: Date): string {
  const time = date.getTime();
  if (time !== lastTime) {
    lastIso = date.toISOString();
    lastTime = time;
  }
  return lastIso;
}

/** Dates as ISO strings, Buffers as base64 (uuids as text), numbers as numbers, nested as is. */
export function jsonSafe(value: unknown): unknown {
  // Every received message passes its annotations through here: the common kinds go first.
  switch (typeof value) {
    case 'string':
    case 'number':
    case 'boolean':
      return value;
    case 'bigint':
      return Number(value);
    case 'undefined':
      return null;
    case 'object':
      break;
    default:
      return value;
  }
  if (value === null) return null;
  if (value instanceof Date) return isoOf(value);
  if (Buffer.isBuffer(value)) return value.length === 16 ? rhea.uuid_to_string(value) : value.toString('base64');
  if (Array.isArray(value)) return value.map(jsonSafe);
  const typed = value as { type?: unknown; value?: unknown; typecode?: unknown };
  if ('value' in typed && 'type' in typed && Object.keys(typed).length <= 3) return jsonSafe(typed.value);
  const out: Record<string, unknown> = {};
  const map = value as Record<string, unknown>;
  // for...in over own keys: no array of keys made per map (annotations pass here for every event).
  for (const key in map) if (Object.prototype.hasOwnProperty.call(map, key)) out[key] = jsonSafe(map[key]);
  return out;
}

function iso(value: unknown): string | undefined {
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'number') return new Date(value).toISOString();
  return undefined;
}

/** The msg fields every received message carries (telemetry-in's and device-in's help list them). */
export interface IncomingFields {
  payload: unknown;
  topic?: string;
  deviceId?: string;
  moduleId?: string;
  messageId?: string;
  correlationId?: string;
  contentType?: string;
  contentEncoding?: string;
  userId?: string;
  to?: string;
  expiryTime?: string;
  creationTime?: string;
  subject?: string;
  replyTo?: string;
  groupId?: string;
  groupSequence?: number;
  replyToGroupId?: string;
  properties: Record<string, unknown>;
  systemProperties: Record<string, unknown>;
}

export function fromAmqpMessage(message: Message, mode: OutputMode): IncomingFields {
  const annotations = (message.message_annotations ?? {}) as Record<string, unknown>;
  const contentType = typeof message.content_type === 'string' ? message.content_type : undefined;
  const applicationProperties = message.application_properties;
  const fields: IncomingFields = {
    payload: decodePayload(message.body, mode, contentType),
    properties: applicationProperties ? (jsonSafe(applicationProperties) as Record<string, unknown>) : {},
    systemProperties: jsonSafe(annotations) as Record<string, unknown>,
  };
  const deviceId = annotations['iothub-connection-device-id'];
  const moduleId = annotations['iothub-connection-module-id'];
  if (typeof deviceId === 'string') {
    fields.deviceId = deviceId;
    fields.topic = typeof moduleId === 'string' ? `${deviceId}/${moduleId}` : deviceId;
  }
  if (typeof moduleId === 'string') fields.moduleId = moduleId;
  // Plain ifs, not a setter closure: this runs for every event telemetry-in reads, and a closure made per
  // message was garbage the collector had to take back each time.
  const messageId = idToString(message.message_id);
  if (messageId !== undefined) fields.messageId = messageId;
  const correlationId = idToString(message.correlation_id);
  if (correlationId !== undefined) fields.correlationId = correlationId;
  if (contentType !== undefined) fields.contentType = contentType;
  if (typeof message.content_encoding === 'string') fields.contentEncoding = message.content_encoding;
  const userId: unknown = message.user_id;
  if (Buffer.isBuffer(userId)) fields.userId = userId.toString('utf8');
  else if (typeof userId === 'string') fields.userId = userId;
  if (typeof message.to === 'string') fields.to = message.to;
  const expiryTime = iso(message.absolute_expiry_time);
  if (expiryTime !== undefined) fields.expiryTime = expiryTime;
  const creationTime = iso(message.creation_time);
  if (creationTime !== undefined) fields.creationTime = creationTime;
  if (typeof message.subject === 'string') fields.subject = message.subject;
  if (typeof message.reply_to === 'string') fields.replyTo = message.reply_to;
  if (typeof message.group_id === 'string') fields.groupId = message.group_id;
  if (typeof message.group_sequence === 'number') fields.groupSequence = message.group_sequence;
  if (typeof message.reply_to_group_id === 'string') fields.replyToGroupId = message.reply_to_group_id;
  return fields;
}

/** What a cloud-to-device message carries besides the common fields (device-in's help lists them). */
export interface C2dFields extends IncomingFields {
  deliveryCount?: number;
  enqueuedTime?: string;
}

export function fromC2dMessage(message: Message, mode: OutputMode): C2dFields {
  const fields: C2dFields = fromAmqpMessage(message, mode);
  const annotations = (message.message_annotations ?? {}) as Record<string, unknown>;
  const count = jsonSafe(annotations['iothub-deliverycount']);
  if (typeof count === 'number') fields.deliveryCount = count;
  const enqueued = iso(annotations['iothub-enqueuedtime']);
  if (enqueued !== undefined) fields.enqueuedTime = enqueued;
  return fields;
}

/** What an event read from the built-in endpoint carries besides the common fields (telemetry-in's help lists them). */
export interface TelemetryFields extends IncomingFields {
  partitionId: string;
  sequenceNumber: number;
  offset?: string;
  enqueuedTime?: string;
}

export function fromTelemetryEvent(event: { message: Message; partitionId: string; sequenceNumber: number }, mode: OutputMode): TelemetryFields {
  // Filled in place, not spread into a new object: this runs for every event read, and a spread copy
  // of every field cost telemetry-in a fifth of its rate (npm run bench, telemetry).
  const fields = fromAmqpMessage(event.message, mode) as TelemetryFields;
  fields.partitionId = event.partitionId;
  fields.sequenceNumber = event.sequenceNumber;
  const annotations = (event.message.message_annotations ?? {}) as Record<string, unknown>;
  const offset = annotations['x-opt-offset'];
  if (offset !== undefined) fields.offset = String(offset);
  // systemProperties holds the enqueued time already made an ISO string.
  const enqueued = fields.systemProperties['x-opt-enqueued-time'];
  if (typeof enqueued === 'string') fields.enqueuedTime = enqueued;
  return fields;
}

/**
 * One msg for a batch of a partition's events (telemetry-in's batch output): `payload` the bodies in
 * order, `events` each event's fields as a per-event msg has them, and the partition with the last
 * event's sequence number and offset, which is the batch's checkpoint once the flow has handled it.
 */
export interface TelemetryBatchFields {
  payload: unknown[];
  events: TelemetryFields[];
  partitionId: string;
  sequenceNumber: number;
  offset?: string;
  count: number;
}

export function fromTelemetryBatch(
  partitionId: string,
  events: Array<{ message: Message; partitionId: string; sequenceNumber: number }>,
  mode: OutputMode,
): TelemetryBatchFields {
  const payload: unknown[] = new Array(events.length);
  const fields: TelemetryFields[] = new Array(events.length);
  for (let i = 0; i < events.length; i++) {
    const f = fromTelemetryEvent(events[i], mode);
    fields[i] = f;
    payload[i] = f.payload;
  }
  const last = fields[fields.length - 1];
  const batch: TelemetryBatchFields = { payload, events: fields, partitionId, sequenceNumber: last.sequenceNumber, count: events.length };
  if (last.offset !== undefined) batch.offset = last.offset;
  return batch;
}
