/**
 * The one place that reads or writes fields rhea and rhea-promise keep to themselves. Their public APIs
 * say nothing about delivery slots, the credit still free once a tick's sends go out, the attach and
 * begin frames a server answers with, or the socket inside a connection; the client and the simulator
 * need all of them. package.json pins both libraries to the exact versions these were written for, and
 * test/unit/rhea-internals.test.ts fails the day an upgrade moves one.
 */
import type * as rhea from 'rhea';
import type { Connection, Sender as PromiseSender } from 'rhea-promise';

/**
 * rhea frees a session's delivery slots (2048) only in order, and only once a delivery is settled at
 * both ends; and it transmits queued deliveries in order across all the session's links, stopping at
 * the first whose link has no credit. So a delivery on a link that has gone, never to be settled, or
 * one queued beyond its link's credit, stops the whole session for good: every other link on it.
 */
interface DeliveryFlags {
  settled: boolean;
  remote_settled: boolean;
  link: unknown;
}

interface SessionBuffers {
  outgoing?: { deliveries?: { size: number; head: number; capacity: number; entries: Array<DeliveryFlags | undefined> } };
}

/** Lets rhea reclaim a delivery nobody will settle any more (its link is gone), without a frame. */
export function forgetDelivery(delivery: rhea.Delivery): void {
  const flags = delivery as unknown as DeliveryFlags;
  flags.settled = true;
  flags.remote_settled = true;
}

/** Frees every delivery a gone link left in its session's outgoing buffer. */
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

interface SenderCounts {
  credit: number;
  delivery_count: number;
}

/**
 * How many more deliveries a sender's credit takes, counting `handed` (deliveries given to rhea on this
 * link so far). rhea counts credit down only when a delivery goes on the wire, on the next tick, so
 * sendable() stays true for every send of one tick.
 */
export function creditLeft(sender: rhea.Sender, handed: number): number {
  if (!sender.sendable()) return 0;
  const counts = sender as unknown as SenderCounts;
  return counts.credit - (handed - counts.delivery_count);
}

/** The rhea sender inside a rhea-promise one (rhea-promise does not hand it out). */
export function rheaSenderOf(sender: PromiseSender): rhea.Sender | undefined {
  return (sender as unknown as { _link?: rhea.Sender })._link;
}

/** The rhea connection inside a rhea-promise one, with the socket rhea keeps in it. */
export function rheaConnectionOf(
  connection: Connection,
): (rhea.Connection & { socket?: { destroy?: (err?: Error) => void; end?: () => void; destroyed?: boolean } }) | undefined {
  return (connection as unknown as { _connection?: rhea.Connection & { socket?: { destroy?: (err?: Error) => void; end?: () => void; destroyed?: boolean } } })
    ._connection;
}

/** A terminus as rhea decoded it: a composite that writes itself back as the described list it came as. */
export interface RemoteTerminus {
  address?: string;
  filter?: unknown;
  described(): unknown;
}

/** The attach a peer sent, as rhea decoded it. */
export interface RemoteAttach {
  source?: RemoteTerminus;
  target?: RemoteTerminus;
  snd_settle_mode?: number;
  rcv_settle_mode?: number;
  properties?: Record<string, unknown>;
}

/** The attach rhea will answer with: a server fills it in before rhea writes it. */
export interface LocalAttach {
  source?: unknown;
  target?: unknown;
  snd_settle_mode?: number;
  rcv_settle_mode?: number;
  max_message_size?: number;
  properties?: Record<string, unknown>;
}

interface LinkFrames {
  local: { attach: LocalAttach };
  remote: { attach?: RemoteAttach };
}

export function remoteAttach(link: rhea.Sender | rhea.Receiver): RemoteAttach {
  return (link as unknown as LinkFrames).remote.attach ?? {};
}

export function localAttach(link: rhea.Sender | rhea.Receiver): LocalAttach {
  return (link as unknown as LinkFrames).local.attach;
}

/** Sets the handle-max rhea writes in its begin (it leaves it null otherwise); call before rhea answers. */
export function setHandleMax(session: rhea.Session, handleMax: number): void {
  (session as unknown as { local: { begin: { handle_max?: number } } }).local.begin.handle_max = handleMax;
}

/** rhea's session and link fields for a message arriving in many transfer frames. */
interface SessionTransferInternals {
  on_transfer(frame: TransferFrame): void;
  _get_link(frame: TransferFrame): { _incomplete?: object } | undefined;
}

export interface TransferFrame {
  payload?: Buffer;
}

/**
 * Calls `onFrame` after rhea handled each transfer frame of the session, with the part of a message
 * rhea is still gathering (undefined once complete) and a way to drop it.
 */
export function watchTransfers(session: rhea.Session, onFrame: (frame: TransferFrame, incomplete: object | undefined, drop: () => void) => void): void {
  const internals = session as unknown as SessionTransferInternals;
  const original = internals.on_transfer.bind(session);
  internals.on_transfer = (frame: TransferFrame): void => {
    original(frame);
    const link = internals._get_link(frame);
    onFrame(frame, link?._incomplete, () => {
      if (link) link._incomplete = undefined;
    });
  };
}

/** rhea keeps a server connection's SASL exchange inside it: the layer chosen and the mechanism object. */
interface SaslInternals {
  sasl_transport?: { mechanism?: object; transports?: Record<number, { mechanism?: object } | undefined>; selected?: unknown };
}

/** Whether the client spoke SASL first: rhea's selective server picks the SASL layer for protocol id 3. */
export function negotiatedSasl(connection: rhea.Connection): boolean {
  const sasl = (connection as unknown as SaslInternals).sasl_transport;
  if (!sasl) return false;
  return sasl.transports === undefined || (sasl.selected !== undefined && sasl.selected === sasl.transports[3]);
}

/** The mechanism object a server's SASL layer made for this connection (what its factory returned). */
export function saslMechanismOf(connection: rhea.Connection): object | undefined {
  const sasl = (connection as unknown as SaslInternals).sasl_transport;
  return sasl?.mechanism ?? sasl?.transports?.[3]?.mechanism;
}
