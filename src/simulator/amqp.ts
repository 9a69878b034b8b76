/**
 * Small typed helpers over rhea for the simulator: outcomes, tags, ids, and the internal link fields
 * a server needs to answer an attach faithfully.
 */
import { randomBytes } from 'node:crypto';
import rhea = require('rhea');

export type Outcome = 'accepted' | 'rejected' | 'released' | 'modified';

export interface AmqpError {
  condition: string;
  description?: string;
  info?: Record<string, unknown>;
}

/** rhea keeps the frames it will send in `local`; a server must answer the peer's attach there. */
interface LinkInternals {
  local: { attach: { source?: unknown; target?: unknown; snd_settle_mode?: number; rcv_settle_mode?: number; max_message_size?: number; properties?: Record<string, unknown> } };
  remote: { attach?: { source?: RemoteTerminus; target?: RemoteTerminus; snd_settle_mode?: number; rcv_settle_mode?: number; properties?: Record<string, unknown> } };
}

/** A terminus as rhea decoded it: a composite that writes itself back as the described list it came as. */
interface RemoteTerminus {
  address?: string;
  filter?: unknown;
  described(): unknown;
}

type AnyLink = rhea.Sender | rhea.Receiver;

function internals(link: AnyLink): LinkInternals {
  return link as unknown as LinkInternals;
}

export function remoteAttach(link: AnyLink): NonNullable<LinkInternals['remote']['attach']> {
  return internals(link).remote.attach ?? {};
}

const RCV_SETTLE_FIRST = 0;

/**
 * Answers the peer's attach as the hub does:
 * - source and target echoed as the described composites the peer sent (0x28, 0x29), filters included:
 *   the C# and Java stacks treat a missing terminus as a refusal, and azure-uamqp-c fails an attach whose
 *   terminus is a plain map ("Type is not described or composite", amqpvalue.c);
 * - max-message-size always present: azure-uamqp-c's link.c fails an attach without it ("Could not
 *   retrieve peer_max_message_size from attach frame");
 * - where the hub receives, it settles what it receives (rcv-settle-mode first whatever the peer asked):
 *   the service chooses its own settle type (Microsoft.Azure.Amqp `AmqpLink`: "the service side can
 *   override the settle type"), and azure-uamqp-c completes a send only on a settled disposition
 *   (link.c), which is why uAMQP's SendClient, asking for `second` by default, works against the hub.
 *   Where the hub sends (C2D to a device, feedback, events), the receiver's modes are honoured;
 * - the peer's link properties echoed, when it sent any: pyamqp (azure-eventhub 5.x, link.py
 *   `_incoming_attach`) merges the answer's properties into its own and fails the attach when they are
 *   null, so the service must answer a receiver that sent `com.microsoft:timeout` or an epoch with a map.
 *   What else the service puts there is UNVERIFIED; no SDK reads anything from it.
 */
export function answerAttach(link: AnyLink, maxMessageSize: number): void {
  const remote = remoteAttach(link);
  const local = internals(link).local.attach;
  if (remote.source) local.source = remote.source.described();
  if (remote.target) local.target = remote.target.described();
  if (remote.snd_settle_mode !== undefined) local.snd_settle_mode = remote.snd_settle_mode;
  if (link.is_receiver()) local.rcv_settle_mode = RCV_SETTLE_FIRST;
  else if (remote.rcv_settle_mode !== undefined) local.rcv_settle_mode = remote.rcv_settle_mode;
  local.max_message_size = maxMessageSize;
  if (remote.properties) local.properties = remote.properties;
}

/**
 * Azure's AMQP stack states the handle limit in every begin (Microsoft.Azure.Amqp `AmqpSessionSettings`:
 * HandleMax = DefaultMaxLinkHandles - 1, with DefaultMaxLinkHandles = 256 * 1024). rhea leaves it null,
 * which AMQP reads as 2^32 - 1 but pyamqp (azure-eventhub 5.x, `session.py`) compares as None and fails
 * to open any link.
 */
export const HANDLE_MAX = 256 * 1024 - 1;

/** Channels per connection the same stack states in open (DefaultMaxConcurrentChannels 8 * 1024, less one). */
export const CHANNEL_MAX = 8 * 1024 - 1;

/** Fills in what the hub states in its begin; call it on session_open, before rhea answers the begin. */
export function answerBegin(session: rhea.Session): void {
  (session as unknown as { local: { begin: { handle_max?: number } } }).local.begin.handle_max = HANDLE_MAX;
}

// rhea defines the outcome constructors at run time; its typings leave them out.
const outcomes = rhea.message as unknown as Record<Outcome, (fields?: object) => { described(): unknown }>;

export function outcomeState(outcome: Outcome, error?: AmqpError): unknown {
  return outcomes[outcome](outcome === 'rejected' ? { error } : {}).described();
}

/**
 * rhea (3.0.5) writes the dispositions gathered in one flush as ranges, and a range that starts with
 * a single delivery takes in the next one whatever its outcome: [accepted, rejected] goes out as two
 * accepted, so a client would believe a refused message was stored. Runs of accepted deliveries are
 * written correctly, so accepts go at once; any other outcome is applied alone, in a macrotask of its
 * own, and rhea flushes it by itself on the next tick before anything else can join it.
 */
const alone: Array<() => void> = [];
let draining = false;

function applyAlone(apply: () => void): void {
  alone.push(apply);
  if (!draining) {
    draining = true;
    setImmediate(drainOne);
  }
}

function drainOne(): void {
  const next = alone.shift();
  try {
    next?.();
  } catch {
    // The link or connection went away meanwhile: nobody is left to tell.
  }
  if (alone.length > 0) setImmediate(drainOne);
  else draining = false;
}

/** Settles a delivery a client sent us (see applyAlone for why refusals wait a moment). */
export function settleIncoming(delivery: rhea.Delivery, outcome: 'accepted' | 'rejected' | 'released', error?: AmqpError): void {
  if (outcome === 'accepted') {
    delivery.accept();
    return;
  }
  applyAlone(() => {
    if (delivery.settled) return;
    if (outcome === 'rejected') delivery.reject(error as rhea.AmqpError);
    else delivery.release();
  });
}

/**
 * Settles a delivery we sent once the receiver has decided. Receivers in rcv-settle-mode second send an
 * unsettled disposition and wait for us to settle; rhea's sender does not do that by itself.
 */
export function settleOutgoing(delivery: rhea.Delivery, outcome: Outcome, error?: AmqpError): void {
  const apply = (): void => {
    if (delivery.settled || delivery.remote_settled) return;
    delivery.update(true, outcomeState(outcome, error));
    // Our settlement ends the exchange: a receiver in rcv-settle-mode second sends nothing more, and
    // rhea would keep the delivery in the session's buffer waiting for it (see forgetDelivery).
    forgetDelivery(delivery);
  };
  if (outcome === 'accepted') apply();
  else applyAlone(apply);
}

/**
 * rhea's bookkeeping that decides whether a session can send. It frees a session's delivery slots (2048)
 * only in order, and only once a delivery is settled at both ends; and it transmits queued deliveries
 * in order across all the session's links, stopping at the first whose link has no credit. So a
 * delivery on a link that has gone, never to be settled, or queued beyond its link's credit, stops the
 * whole session for good: every other link on it, C2D, feedback and telemetry alike.
 */
interface DeliveryFlags {
  settled: boolean;
  remote_settled: boolean;
  link: unknown;
}

interface SessionBuffers {
  outgoing?: { deliveries?: { size: number; head: number; capacity: number; entries: Array<DeliveryFlags | undefined> } };
}

interface SenderCounts {
  credit: number;
  delivery_count: number;
}

/** Lets rhea reclaim a delivery nobody will settle any more (its link is gone), without a frame. */
export function forgetDelivery(delivery: rhea.Delivery): void {
  const flags = delivery as unknown as DeliveryFlags;
  flags.settled = true;
  flags.remote_settled = true;
}

/** Frees every delivery a gone link left in its session's buffer. */
export function forgetLinkDeliveries(link: rhea.Sender | rhea.Receiver, session: rhea.Session): void {
  const buffer = (session as unknown as SessionBuffers).outgoing?.deliveries;
  if (!buffer) return;
  for (let i = 0; i < buffer.size; i++) {
    const d = buffer.entries[(buffer.head + i) % buffer.capacity];
    if (d && d.link === link) {
      d.settled = true;
      d.remote_settled = true;
    }
  }
}

const handed = new WeakMap<rhea.Sender, number>();

/**
 * Whether one more delivery fits the link's credit. rhea counts credit down only when a delivery goes on
 * the wire (on the next tick), so sendable() stays true for every send of one tick: count what was
 * handed to rhea against what it has transmitted.
 */
export function hasCredit(sender: rhea.Sender): boolean {
  if (!sender.sendable()) return false;
  const counts = sender as unknown as SenderCounts;
  return counts.credit - ((handed.get(sender) ?? 0) - counts.delivery_count) > 0;
}

/** Sends within the credit hasCredit() saw; returns the delivery. */
export function sendCounted(sender: rhea.Sender, message: rhea.Message | Buffer, tag?: Buffer, format?: number): rhea.Delivery {
  handed.set(sender, (handed.get(sender) ?? 0) + 1);
  return sender.send(message as rhea.Message, tag, format);
}

export function newTag(): Buffer {
  return randomBytes(16);
}

export function tagKey(tag: Buffer | string): string {
  return typeof tag === 'string' ? tag : tag.toString('hex');
}

/** Message and correlation ids as text: uuids in their usual form, numbers in decimal. */
export function idToString(id: unknown): string | undefined {
  if (id === undefined || id === null) return undefined;
  if (Buffer.isBuffer(id)) return id.length === 16 ? rhea.uuid_to_string(id) : id.toString('hex');
  return String(id);
}

export function uuidFromTag(tag: Buffer): string {
  return rhea.uuid_to_string(tag);
}

/** Body bytes of a received message: data sections concatenated, strings as UTF-8, values as JSON. */
export function bodyBytes(body: unknown): Buffer {
  if (body === undefined || body === null) return Buffer.alloc(0);
  if (Buffer.isBuffer(body)) return body;
  if (typeof body === 'string') return Buffer.from(body, 'utf8');
  const section = body as { typecode?: number; content?: unknown; multiple?: boolean };
  if (section.typecode === 0x75) {
    if (section.multiple && Array.isArray(section.content)) return Buffer.concat(section.content.map((c) => bodyBytes(c)));
    return bodyBytes(section.content);
  }
  return Buffer.from(JSON.stringify(body), 'utf8');
}

/**
 * IoT Hub's size rule: body, system property values, application property names and values.
 */
export function messageSize(message: rhea.Message): number {
  let size = bodyBytes(message.body).length;
  const system = ['message_id', 'correlation_id', 'user_id', 'to', 'subject', 'reply_to', 'content_type', 'content_encoding', 'group_id', 'reply_to_group_id'];
  const fields = message as unknown as Record<string, unknown>;
  for (const key of system) {
    const value = fields[key];
    if (value !== undefined && value !== null) size += Buffer.isBuffer(value) ? value.length : Buffer.byteLength(String(value));
  }
  const props = message.application_properties as Record<string, unknown> | undefined;
  if (props) {
    for (const [k, v] of Object.entries(props)) size += Buffer.byteLength(k) + Buffer.byteLength(String(v));
  }
  return size;
}

/** The fields of a message that travel on (header, properties, application properties, body). */
export const MESSAGE_FIELDS = [
  'durable',
  'priority',
  'ttl',
  'first_acquirer',
  'message_id',
  'user_id',
  'to',
  'subject',
  'reply_to',
  'correlation_id',
  'content_type',
  'content_encoding',
  'absolute_expiry_time',
  'creation_time',
  'group_id',
  'group_sequence',
  'reply_to_group_id',
  'application_properties',
] as const;

export function copyMessage(message: rhea.Message): rhea.Message {
  const from = message as unknown as Record<string, unknown>;
  const copy: Record<string, unknown> = {};
  for (const field of MESSAGE_FIELDS) {
    const value = from[field];
    if (value !== undefined && value !== null) copy[field] = value;
  }
  return copy as unknown as rhea.Message;
}

/** A data-section body, which every SDK can read (node devices cannot read amqp-value bodies). */
export function dataBody(body: unknown): unknown {
  return rhea.message.data_section(bodyBytes(body));
}

export const wrapInt = (n: number): unknown => rhea.types.wrap_int(n);
export const wrapLong = (n: number): unknown => rhea.types.wrap_long(n);
export const wrapUlong = (n: number): unknown => rhea.types.wrap_ulong(n);
export const wrapUbyte = (n: number): unknown => rhea.types.wrap_ubyte(n);
