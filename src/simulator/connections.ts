/**
 * Per-connection state and the timers that police it: the open deadline, the drop of an abusive client,
 * the close of a connection left with no link but `$cbs`, and the detach of links whose token lapsed.
 * Separate from the listeners (how bytes arrive) and the link routing (what a link is for): this is
 * what a connection holds and how long it may hold it, whatever the transport and the links.
 */
import type * as net from 'node:net';
import type * as tls from 'node:tls';
import type * as rhea from 'rhea';
import { forgetLinkDeliveries } from '../amqp/rhea-internals';
import { answerBegin, CHANNEL_MAX, type AmqpError, type Outcome } from './amqp';
import type { Address } from './addresses';
import { ConnectionAuth, type Grant, type Requirement } from './auth';
import { writeEveryField } from './frame-fields';
import { limitTransfers } from './guard';
import type { SimulatorOptions } from './options';
import { negotiatedSasl } from '../amqp/rhea-internals';
import { plainToken } from './sasl';
import type { HubStats } from './stats';

export type Transport = 'amqp' | 'amqps' | 'ws';
export type Link = rhea.Sender | rhea.Receiver;

export interface LinkState {
  link: Link;
  /** Our role: 'sender' when the client receives. */
  role: 'sender' | 'receiver';
  address: Address;
  addressText: string;
  session: rhea.Session;
  requirement?: Requirement;
  onMessage?: (context: rhea.EventContext) => void;
  onSendable?: () => void;
  onOutcome?: (delivery: rhea.Delivery, outcome: Outcome) => void;
  onClose?: () => void;
  closed?: boolean;
}

export interface ConnState {
  id: number;
  connection: rhea.Connection;
  transport: Transport;
  destroy: () => void;
  auth: ConnectionAuth;
  links: Map<Link, LinkState>;
  closed: boolean;
  /** The socket was dropped on purpose (fault or abuse); frames still buffered are not acted on. */
  dropped?: boolean;
  /** Drops a client that has not opened its AMQP connection in time. */
  openTimer?: NodeJS.Timeout;
  /** The client negotiated SASL (any mechanism) before AMQP. */
  sasl?: boolean;
  /** Since when the connection has had no link but `$cbs` (ms since the epoch); undefined while it has one. */
  linklessSince?: number;
}

export const UNAUTHORIZED = (description: string): AmqpError => ({ condition: 'amqp:unauthorized-access', description });

interface AcceptingConnection {
  accept(socket: net.Socket | tls.TLSSocket | unknown): void;
}

export interface ConnectionsParts {
  options: SimulatorOptions;
  stats: HubStats;
  container: rhea.Container;
  /** The grant a SAS token gives; throws when the token is not valid. */
  grantFor: (token: string) => Grant;
}

export class Connections {
  /** Set once the hub closes: nothing is accepted after. */
  closing = false;
  private readonly conns = new Map<rhea.Connection, ConnState>();
  private nextConnId = 1;
  private refuseUntil = 0;

  constructor(private readonly parts: ConnectionsParts) {}

  get size(): number {
    return this.conns.size;
  }

  values(): IterableIterator<ConnState> {
    return this.conns.values();
  }

  find(connection: rhea.Connection): ConnState | undefined {
    return this.conns.get(connection);
  }

  linkState(link: Link): LinkState | undefined {
    return this.conns.get(link.connection)?.links.get(link);
  }

  /** Refuses new connections for `ms` (0 stops refusing). */
  refuseFor(ms: number): void {
    this.refuseUntil = ms > 0 ? Date.now() + ms : 0;
  }

  private refusing(): boolean {
    return this.closing || Date.now() < this.refuseUntil;
  }

  /**
   * A transport connection just accepted: refused (and destroyed) while refusing, else counted and given
   * an AMQP connection, which `serve` starts once the caller has its byte guards in place.
   */
  admit(transport: Transport, destroy: () => void): ConnState | undefined {
    const { stats, container } = this.parts;
    if (this.refusing()) {
      stats.connectionsRefused++;
      destroy();
      return undefined;
    }
    stats.connectionsAccepted++;
    const connection = container.create_connection(this.connectionOptions());
    return this.track(connection, transport, destroy);
  }

  /** Hands the byte stream to rhea, with the open deadline running. */
  serve(state: ConnState, stream: unknown): void {
    this.armOpenDeadline(state);
    (state.connection as unknown as AcceptingConnection).accept(stream);
    writeEveryField(state.connection);
  }

  /** Most bytes of one message gathered from many frames: well above the limits, which say the rest. */
  private maxGatheredBytes(): number {
    const { options } = this.parts;
    return 4 * Math.max(options.d2c.maxMessageBytes, options.c2d.maxMessageBytes);
  }

  private connectionOptions(): rhea.ConnectionOptions {
    const { options: o } = this.parts;
    const options = {
      container_id: o.hubName,
      idle_time_out: o.idleTimeoutMs,
      autoaccept: false,
      credit_window: 500,
      // rhea leaves Nagle on for connections it accepts. Dispositions and flow frames are small
      // writes: with Nagle they wait for the peer's delayed ACK, and every pipelining client stalls.
      tcp_no_delay: true,
      max_frame_size: o.maxFrameBytes,
      channel_max: CHANNEL_MAX,
    };
    // rhea's typings describe client options only; a server connection takes these.
    return options as unknown as rhea.ConnectionOptions;
  }

  /** A client must complete SASL and AMQP open in time; one that never does holds a socket for nothing. */
  private armOpenDeadline(state: ConnState): void {
    const { options } = this.parts;
    state.openTimer = setTimeout(() => {
      state.openTimer = undefined;
      this.dropAbusive(state, { condition: 'amqp:connection:forced', description: `The connection was not opened within ${options.openTimeoutMs} ms.` });
    }, options.openTimeoutMs);
    state.openTimer.unref();
  }

  /** Says why (an AMQP close, when the connection got that far), then drops the socket. */
  dropAbusive(state: ConnState, error: AmqpError): void {
    if (state.closed || state.dropped) return;
    state.dropped = true;
    this.parts.stats.connectionsDropped++;
    try {
      if (state.connection.is_open()) state.connection.close(error as rhea.AmqpError);
    } catch {
      // a connection in a state rhea cannot close politely: the drop below does it
    }
    setTimeout(() => state.destroy(), 100).unref();
  }

  private track(connection: rhea.Connection, transport: Transport, destroy: () => void): ConnState {
    const state: ConnState = {
      id: this.nextConnId++,
      connection,
      transport,
      destroy,
      auth: new ConnectionAuth(this.parts.options.maxTokensPerConnection),
      links: new Map(),
      closed: false,
      linklessSince: Date.now(),
    };
    this.conns.set(connection, state);
    this.parts.stats.openConnections = this.conns.size;
    return state;
  }

  stateOf(connection: rhea.Connection): ConnState {
    const known = this.conns.get(connection);
    if (known) return known;
    // Every connection is tracked when accepted; an event for another one is rhea's, not a client's.
    return this.track(connection, 'amqp', () => connection.close());
  }

  onConnectionOpen(ctx: rhea.EventContext): void {
    const state = this.stateOf(ctx.connection);
    if (state.openTimer) clearTimeout(state.openTimer);
    state.openTimer = undefined;
    state.sasl = negotiatedSasl(ctx.connection);
    const token = plainToken(ctx.connection);
    if (token) {
      try {
        state.auth.add(this.parts.grantFor(token));
      } catch {
        ctx.connection.close(UNAUTHORIZED('The SASL PLAIN token is not valid.'));
      }
    }
  }

  onConnectionGone(connection: rhea.Connection): void {
    const state = this.conns.get(connection);
    if (!state || state.closed) return;
    state.closed = true;
    if (state.openTimer) clearTimeout(state.openTimer);
    for (const link of [...state.links.values()]) this.linkGone(link);
    this.conns.delete(connection);
    this.parts.stats.openConnections = this.conns.size;
    // A closed AMQP connection may leave its socket half open; make sure it goes.
    if (!connection.is_closed() || connection.is_remote_open()) connection.close();
    setTimeout(() => state.destroy(), 100).unref();
  }

  onSessionOpen(ctx: rhea.EventContext): void {
    const state = this.conns.get(ctx.connection);
    if (!state || !ctx.session) return;
    answerBegin(ctx.session);
    limitTransfers(ctx.session, this.maxGatheredBytes(), (bytes) =>
      this.dropAbusive(state, { condition: 'amqp:link:message-size-exceeded', description: `A message grew past ${bytes} bytes before its last frame.` }),
    );
  }

  onSessionGone(ctx: rhea.EventContext): void {
    const state = this.conns.get(ctx.connection);
    if (!state) return;
    for (const link of [...state.links.values()]) if (link.session === ctx.session) this.linkGone(link);
  }

  /** Records an attached link; any link but `$cbs` ends the connection's linkless time. */
  addLink(conn: ConnState, state: LinkState): void {
    conn.links.set(state.link, state);
    if (state.address.kind !== 'cbs') conn.linklessSince = undefined;
  }

  /** Whether any open link on any connection is a device's (or module's) own: its connection state. */
  hasDeviceLink(deviceId: string, moduleId?: string): boolean {
    for (const conn of this.conns.values()) {
      for (const link of conn.links.values()) {
        const a = link.address;
        if ('deviceId' in a && a.deviceId === deviceId && a.moduleId === moduleId && !link.closed) return true;
      }
    }
    return false;
  }

  linkGone(state: LinkState): void {
    if (state.closed) return;
    state.closed = true;
    const conn = this.conns.get(state.link.connection);
    conn?.links.delete(state.link);
    if (conn && conn.linklessSince === undefined && [...conn.links.values()].every((l) => l.address.kind === 'cbs')) conn.linklessSince = Date.now();
    state.onClose?.();
    // What it had sent and nobody will settle now must not hold its session's buffer (see amqp.ts).
    forgetLinkDeliveries(state.link, state.session);
  }

  closeLink(state: LinkState, error: AmqpError): void {
    if (state.closed) return;
    this.linkGone(state);
    if (!state.link.is_closed()) state.link.close(error as rhea.AmqpError);
  }

  /**
   * Closes connections that have had no link but `$cbs` for `linklessTimeoutMs`, in the words Event
   * Hubs and Service Bus use ("AMQP errors in Azure Service Bus": amqp:connection:forced, "... did not
   * have any active links in the past 300000 milliseconds"); a `$cbs` link alone does not keep a
   * connection (azure-sdk-for-java#41535 shows it closed that way).
   */
  closeLinkless(now: number): void {
    const { options } = this.parts;
    const limit = options.linklessTimeoutMs;
    if (limit <= 0) return;
    for (const conn of [...this.conns.values()]) {
      if (conn.linklessSince === undefined || now - conn.linklessSince < limit || !conn.connection.is_open()) continue;
      conn.linklessSince = undefined;
      conn.connection.close({
        condition: 'amqp:connection:forced',
        description: `The connection was closed by container '${options.hubName}' because it did not have any active links in the past ${limit} milliseconds.`,
      } as rhea.AmqpError);
    }
  }

  /** Detaches every link whose token lapsed, as the hub does ("Token Invalid."). */
  enforceTokens(now: number): void {
    const cutoff = now - this.parts.options.tokenGraceMs;
    for (const conn of this.conns.values()) {
      for (const state of [...conn.links.values()]) {
        if (state.requirement && !conn.auth.allows(state.requirement, cutoff)) this.closeLink(state, UNAUTHORIZED('Token Invalid.'));
      }
    }
  }

  /** Counts of what is open now. */
  counts(): { connections: number; links: number; tokens: number } {
    let links = 0;
    let tokens = 0;
    for (const conn of this.conns.values()) {
      links += conn.links.size;
      tokens += conn.auth.size;
    }
    return { connections: this.conns.size, links, tokens };
  }

  /** Stops accepting and destroys every connection at once (the hub is closing). */
  destroyAll(): void {
    this.closing = true;
    for (const conn of [...this.conns.values()]) {
      conn.closed = true;
      conn.destroy();
    }
    this.conns.clear();
    this.parts.stats.openConnections = 0;
  }
}
