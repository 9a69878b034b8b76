/**
 * How the simulator answers and settles as Azure's AMQP stack does: attach and begin answers, outcomes,
 * settlement of what it sends and receives, credit-bounded sends, tags. The rhea internals these touch
 * and the rules shared with the client live in src/amqp.
 */
import { randomBytes } from 'node:crypto';
import rhea = require('rhea');
import { applyDisposition } from '../amqp/dispositions';
import { bodyBytes } from '../amqp/message-rules';
import { creditLeft, forgetDelivery, localAttach, remoteAttach, setHandleMax } from '../amqp/rhea-internals';

export type Outcome = 'accepted' | 'rejected' | 'released' | 'modified';

export interface AmqpError {
  condition: string;
  description?: string;
  info?: Record<string, unknown>;
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
export function answerAttach(link: rhea.Sender | rhea.Receiver, maxMessageSize: number): void {
  const remote = remoteAttach(link);
  const local = localAttach(link);
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
  setHandleMax(session, HANDLE_MAX);
}

// rhea defines the outcome constructors at run time; its typings leave them out.
const outcomes = rhea.message as unknown as Record<Outcome, (fields?: object) => { described(): unknown }>;

export function outcomeState(outcome: Outcome, error?: AmqpError): unknown {
  return outcomes[outcome](outcome === 'rejected' ? { error } : {}).described();
}

/** Settles a delivery a client sent us (see src/amqp/dispositions.ts for why refusals wait a moment). */
export function settleIncoming(delivery: rhea.Delivery, outcome: 'accepted' | 'rejected' | 'released', error?: AmqpError): void {
  applyDisposition(outcome === 'accepted', () => {
    if (delivery.settled) return;
    if (outcome === 'accepted') delivery.accept();
    else if (outcome === 'rejected') delivery.reject(error as rhea.AmqpError);
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
  applyDisposition(outcome === 'accepted', apply);
}

const handed = new WeakMap<rhea.Sender, number>();

/**
 * Whether one more delivery fits the link's credit. rhea counts credit down only when a delivery goes on
 * the wire (on the next tick), so sendable() stays true for every send of one tick: count what was
 * handed to rhea against what it has transmitted.
 */
export function hasCredit(sender: rhea.Sender): boolean {
  return creditLeft(sender, handed.get(sender) ?? 0) > 0;
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

export function uuidFromTag(tag: Buffer): string {
  return rhea.uuid_to_string(tag);
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

/**
 * The receivers of one queue (our senders on their links), served in turn: each message goes to the
 * next one with credit, as the hub spreads a queue over its competing receivers.
 */
export class ReceiversInTurn {
  private readonly senders: rhea.Sender[] = [];
  private next = 0;

  get size(): number {
    return this.senders.length;
  }

  add(sender: rhea.Sender): void {
    this.senders.push(sender);
  }

  /** False when the sender was not one of them. */
  remove(sender: rhea.Sender): boolean {
    const index = this.senders.indexOf(sender);
    if (index < 0) return false;
    this.senders.splice(index, 1);
    return true;
  }

  has(sender: rhea.Sender): boolean {
    return this.senders.includes(sender);
  }

  /** The next receiver whose credit takes one more message, or undefined when none has credit. */
  nextWithCredit(): rhea.Sender | undefined {
    const count = this.senders.length;
    for (let i = 0; i < count; i++) {
      const sender = this.senders[(this.next + i) % count];
      if (hasCredit(sender)) {
        this.next = (this.next + i + 1) % count;
        return sender;
      }
    }
    return undefined;
  }
}
