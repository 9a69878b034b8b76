/**
 * The simulated IoT Hub: listeners, SASL, CBS, per-attach authorisation, and the routing of every
 * link to the part that serves it (D2C partitions, C2D queues, feedback, the Event Hubs surface).
 */
import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import * as tls from 'node:tls';
import type * as http from 'node:http';
import rhea = require('rhea');
import { WebSocketServer, type WebSocket } from 'ws';
import {
  formatDeviceConnectionString,
  formatEventHubConnectionString,
  formatServiceConnectionString,
} from '../iothub/connection-string';
import { answerAttach, answerBegin, bodyBytes, CHANNEL_MAX, forgetDelivery, forgetLinkDeliveries, remoteAttach, wrapInt, type AmqpError, type Outcome } from './amqp';
import { parseAddress, type Address } from './addresses';
import { audienceMatches, AuthError, ConnectionAuth, grantFromToken, requirementFor, type Requirement } from './auth';
import { FrameGuard, limitTransfers } from './guard';
import { writeEveryField } from './frame-fields';
import { C2dQueues } from './c2d';
import { loadOrMakeCertificate, type Certificate } from './certificate';
import { EventHubSurface } from './event-hub';
import { FeedbackQueue } from './feedback';
import { resolveOptions, type SimulatorOptions, type SimulatorOptionsInput } from './options';
import { Partition, type StoredEvent } from './partitions';
import { Registry } from './registry';
import { negotiatedSasl, plainToken, setupSasl } from './sasl';
import { emptyStats, type HubStats } from './stats';
import { C2dIntake } from './c2d-intake';
import { D2cIngest, decode } from './d2c-ingest';
import { Persistence } from './persistence';
import { Throttle } from './throttle';

export type { HubStats } from './stats';
export type { D2cEvent } from './d2c-ingest';

type Transport = 'amqp' | 'amqps' | 'ws';
type Link = rhea.Sender | rhea.Receiver;

interface LinkState {
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

interface ConnState {
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

const UNAUTHORIZED = (description: string): AmqpError => ({ condition: 'amqp:unauthorized-access', description });
const FRAMING = (description: string): AmqpError => ({ condition: 'amqp:connection:framing-error', description: `The client sent ${description}.` });
/**
 * The Event Hubs-compatible endpoint takes CBS only over SASL (ANONYMOUS, or MSSBCBS): the Service Bus
 * and Event Hubs AMQP guide ("Claims-based authorization": "the client ... must use SASL ANONYMOUS"),
 * and every Event Hubs SDK negotiates it (@azure/core-amqp ConnectionContextBase sets a user name so
 * rhea sends ANONYMOUS; .NET and uAMQP use MSSBCBS). The real service refuses the bare AMQP header at
 * once; the simulator shares its listener with the IoT Hub surface, which accepts no SASL, so it refuses
 * the first Event Hubs link instead.
 */
const SASL_REQUIRED: AmqpError = {
  condition: 'amqp:unauthorized-access',
  description: 'The Event Hubs-compatible endpoint requires SASL (ANONYMOUS, MSSBCBS or PLAIN) before AMQP; this connection skipped it.',
};
interface AcceptingConnection {
  accept(socket: net.Socket | tls.TLSSocket | unknown): void;
}

export class SimulatedHub extends EventEmitter {
  readonly options: SimulatorOptions;
  readonly registry: Registry;
  readonly partitions: Partition[];
  readonly c2d: C2dQueues;
  readonly feedback: FeedbackQueue;
  readonly eventHub: EventHubSurface;
  readonly ports: { amqp?: number; amqps?: number; ws?: number } = {};
  certificate?: Certificate;
  readonly stats: HubStats = emptyStats();

  private readonly container: rhea.Container;
  private readonly conns = new Map<rhea.Connection, ConnState>();
  private readonly servers: Array<net.Server | WebSocketServer | http.Server> = [];
  private sweepTimer: NodeJS.Timeout | undefined;
  private nextConnId = 1;
  private readonly throttle: Throttle;
  private readonly d2c: D2cIngest;
  private readonly c2dIntake: C2dIntake;
  private refuseUntil = 0;
  private putTokenBlock: { until: number; answer: 'refuse' | 'ignore' } | undefined;
  private closing = false;
  private persistence: Persistence | undefined;

  private constructor(options: SimulatorOptions) {
    super();
    this.options = options;
    this.registry = new Registry({ autoRegister: options.autoRegister, policies: options.policies });
    for (const d of options.devices) {
      this.registry.addDevice(d.deviceId, d);
      for (const m of d.modules ?? []) this.registry.addModule(d.deviceId, m.moduleId, m);
    }
    this.partitions = Array.from(
      { length: options.partitionCount },
      (_, i) => new Partition(String(i), { maxEvents: options.d2c.maxEventsPerPartition, maxAgeMs: options.d2c.retentionMs }),
    );
    this.feedback = new FeedbackQueue(options.feedback, options.hubName);
    this.c2d = new C2dQueues(options.c2d, (record) => this.feedback.add(record));
    const groups = new Set(['$default', ...options.consumerGroups.map((g) => g.toLowerCase())]);
    this.eventHub = new EventHubSurface(options.hubName, this.partitions, groups, new Date(), (sender, error) => {
      const state = this.linkState(sender);
      if (state) this.closeLink(state, error);
    });
    // A deleted device's links go at once, whatever token authorised them (a gateway's hub-level one
    // included): the device is no longer there to send as or to deliver to.
    this.registry.removalListeners.push((deviceId) =>
      this.faults.detachLinks((a) => (a.kind === 'd2c' || a.kind === 'c2d') && a.deviceId === deviceId, {
        condition: 'amqp:not-found',
        description: `Device ${deviceId} at IotHub ${options.hubName} not registered`,
      }),
    );
    this.throttle = new Throttle(this.stats);
    this.d2c = new D2cIngest({
      options,
      registry: this.registry,
      partitions: this.partitions,
      stats: this.stats,
      throttle: this.throttle,
      events: this,
      journal: (record) => this.persistence?.event(record),
    });
    this.c2dIntake = new C2dIntake({ options, registry: this.registry, c2d: this.c2d, stats: this.stats, throttle: this.throttle });
    this.container = rhea.create_container({ id: options.hubName });
    setupSasl(this.container, (token) => grantFromToken(token, this.tokenContext()));
    this.setupEvents();
    if (options.location !== undefined) {
      this.persistence = Persistence.attach(options.location, { registry: this.registry, partitions: this.partitions, c2d: this.c2d });
    }
  }

  static async start(input: SimulatorOptionsInput = {}): Promise<SimulatedHub> {
    const hub = new SimulatedHub(resolveOptions(input));
    try {
      await hub.listen();
    } catch (err) {
      await hub.close();
      throw err;
    }
    hub.sweepTimer = setInterval(() => hub.sweep(), hub.options.sweepIntervalMs);
    hub.sweepTimer.unref();
    return hub;
  }

  // ---- connection strings -------------------------------------------------------------------

  /** Host name as clients write it: with the TLS port unless it is the standard 5671. */
  get hostWithPort(): string {
    const port = this.ports.amqps;
    return port === undefined || port === 5671 ? this.options.hostName : `${this.options.hostName}:${port}`;
  }

  serviceConnectionString(policyName = 'iothubowner'): string {
    const policy = this.registry.policies.get(policyName);
    if (!policy) throw new Error(`no policy named ${policyName}`);
    return formatServiceConnectionString(this.hostWithPort, policy.name, policy.primaryKey);
  }

  /** A device's connection string; registers the device (and module) if needed. */
  deviceConnectionString(deviceId: string, moduleId?: string): string {
    const device = this.registry.addDevice(deviceId);
    const key = moduleId === undefined ? device.primaryKey : this.registry.addModule(deviceId, moduleId).primaryKey;
    return formatDeviceConnectionString(this.hostWithPort, deviceId, key, moduleId === undefined ? {} : { moduleId });
  }

  /**
   * The Event Hubs-compatible connection string. Plain AMQP with `UseDevelopmentEmulator=true` when
   * the plain port is on (the Event Hubs SDKs then skip TLS), else TLS on the AMQPS port.
   */
  eventHubConnectionString(policyName = 'iothubowner', transport: 'amqp' | 'amqps' = this.ports.amqp !== undefined ? 'amqp' : 'amqps'): string {
    const policy = this.registry.policies.get(policyName);
    if (!policy) throw new Error(`no policy named ${policyName}`);
    const port = transport === 'amqp' ? this.ports.amqp : this.ports.amqps;
    if (port === undefined) throw new Error(`the ${transport} listener is off`);
    return formatEventHubConnectionString(`${this.options.hostName}:${port}`, this.options.hubName, policy.name, policy.primaryKey, transport === 'amqp');
  }

  // ---- listeners ----------------------------------------------------------------------------

  private async listen(): Promise<void> {
    const o = this.options;
    if (o.amqpPort !== null) {
      const server = net.createServer((socket) => this.accept(socket, 'amqp', () => socket.destroy(new Error('connection dropped by the simulator'))));
      this.ports.amqp = await this.bind(server, o.amqpPort);
    }
    if (o.amqpsPort !== null || o.wsPort !== null) {
      this.certificate = o.tls ?? (await loadOrMakeCertificate(o.certDir, [o.hostName]));
    }
    if (o.amqpsPort !== null) {
      const certificate = this.certificate as Certificate;
      const server = tls.createServer({ cert: certificate.cert, key: certificate.key }, (socket) =>
        this.accept(socket, 'amqps', () => socket.destroy(new Error('connection dropped by the simulator'))),
      );
      // A client that fails the handshake is its own problem, not the hub's.
      server.on('tlsClientError', () => undefined);
      this.ports.amqps = await this.bind(server, o.amqpsPort);
    }
    if (o.wsPort !== null) this.ports.ws = await this.listenWebSocket(o.wsPort);
  }

  private bind(server: net.Server, port: number): Promise<number> {
    this.servers.push(server);
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        reject(new Error(err.code === 'EADDRINUSE' ? `port ${port} on ${this.options.host} is already in use` : `cannot listen on port ${port}: ${err.message}`));
      };
      server.once('error', onError);
      server.listen(port, this.options.host, () => {
        server.off('error', onError);
        server.on('error', () => undefined);
        resolve((server.address() as net.AddressInfo).port);
      });
    });
  }

  /** AMQP over WebSockets on TLS, path `/$iothub/websocket`, subprotocol AMQPWSB10. */
  private async listenWebSocket(port: number): Promise<number> {
    const https = await import('node:https');
    const certificate = this.certificate as Certificate;
    const server = https.createServer({ cert: certificate.cert, key: certificate.key });
    server.on('tlsClientError', () => undefined);
    const wss = new WebSocketServer({
      server,
      handleProtocols: (protocols) => (protocols.has('AMQPWSB10') ? 'AMQPWSB10' : false),
      // rhea writes a frame per WebSocket message; more than a couple of frames' worth is not AMQP.
      maxPayload: 2 * this.options.maxFrameBytes + 1024,
      verifyClient: (info: { req: http.IncomingMessage }) => /^\/\$iothub\/websocket\/?(\?.*)?$/i.test(info.req.url ?? '') || /^\/\$servicebus\/websocket\/?(\?.*)?$/i.test(info.req.url ?? ''),
    });
    wss.on('error', () => undefined);
    wss.on('connection', (ws: WebSocket) => {
      ws.on('error', () => undefined);
      this.acceptWebSocket(ws);
    });
    this.servers.push(wss);
    return this.bind(server, port);
  }

  private acceptWebSocket(ws: WebSocket): void {
    if (this.refusing()) {
      this.stats.connectionsRefused++;
      ws.terminate();
      return;
    }
    this.stats.connectionsAccepted++;
    const connection = this.container.create_connection(this.connectionOptions());
    const state = this.track(connection, 'ws', () => ws.terminate());
    const guard = new FrameGuard(this.options.maxFrameBytes);
    const stream = webSocketStream(ws, (chunk) => {
      const broken = guard.push(chunk);
      if (broken !== undefined) this.dropAbusive(state, FRAMING(broken));
      return broken === undefined && !state.dropped;
    });
    ws.on('close', () => this.onConnectionGone(connection));
    this.armOpenDeadline(state);
    (connection as unknown as AcceptingConnection).accept(stream);
    writeEveryField(connection);
  }

  /** Most bytes of one message gathered from many frames: well above the limits, which say the rest. */
  private maxGatheredBytes(): number {
    return 4 * Math.max(this.options.d2c.maxMessageBytes, this.options.c2d.maxMessageBytes);
  }

  private refusing(): boolean {
    return this.closing || Date.now() < this.refuseUntil;
  }

  private connectionOptions(): rhea.ConnectionOptions {
    const options = {
      container_id: this.options.hubName,
      idle_time_out: this.options.idleTimeoutMs,
      autoaccept: false,
      credit_window: 500,
      // rhea leaves Nagle on for connections it accepts. Dispositions and flow frames are small
      // writes: with Nagle they wait for the peer's delayed ACK, and every pipelining client stalls.
      tcp_no_delay: true,
      max_frame_size: this.options.maxFrameBytes,
      channel_max: CHANNEL_MAX,
    };
    // rhea's typings describe client options only; a server connection takes these.
    return options as unknown as rhea.ConnectionOptions;
  }

  private accept(socket: net.Socket, transport: Transport, destroy: () => void): void {
    socket.on('error', () => undefined);
    if (this.refusing()) {
      this.stats.connectionsRefused++;
      destroy();
      return;
    }
    this.stats.connectionsAccepted++;
    const connection = this.container.create_connection(this.connectionOptions());
    const state = this.track(connection, transport, destroy);
    // Registered before rhea's own listener, so it sees each chunk first and can stop the stream
    // before rhea buffers what an oversized frame announces.
    const guard = new FrameGuard(this.options.maxFrameBytes);
    socket.on('data', (chunk: Buffer) => {
      const broken = guard.push(chunk);
      if (broken === undefined) return;
      socket.pause();
      this.dropAbusive(state, FRAMING(broken));
    });
    // rhea hears only of a peer's end; a socket we destroy (fault) or one that just dies says 'close'.
    socket.on('close', () => this.onConnectionGone(connection));
    this.armOpenDeadline(state);
    (connection as unknown as AcceptingConnection).accept(socket);
    writeEveryField(connection);
  }

  /** A client must complete SASL and AMQP open in time; one that never does holds a socket for nothing. */
  private armOpenDeadline(state: ConnState): void {
    state.openTimer = setTimeout(() => {
      state.openTimer = undefined;
      this.dropAbusive(state, { condition: 'amqp:connection:forced', description: `The connection was not opened within ${this.options.openTimeoutMs} ms.` });
    }, this.options.openTimeoutMs);
    state.openTimer.unref();
  }

  /** Says why (an AMQP close, when the connection got that far), then drops the socket. */
  private dropAbusive(state: ConnState, error: AmqpError): void {
    if (state.closed || state.dropped) return;
    state.dropped = true;
    this.stats.connectionsDropped++;
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
      auth: new ConnectionAuth(this.options.maxTokensPerConnection),
      links: new Map(),
      closed: false,
      linklessSince: Date.now(),
    };
    this.conns.set(connection, state);
    this.stats.openConnections = this.conns.size;
    return state;
  }

  private stateOf(connection: rhea.Connection): ConnState {
    const known = this.conns.get(connection);
    if (known) return known;
    // Every connection is tracked when accepted; an event for another one is rhea's, not a client's.
    return this.track(connection, 'amqp', () => connection.close());
  }

  // ---- SASL and events ----------------------------------------------------------------------

  private tokenContext(): Parameters<typeof grantFromToken>[1] {
    return {
      registry: this.registry,
      hosts: Array.from(new Set([this.options.hostName.toLowerCase(), 'localhost', '127.0.0.1', this.options.host])),
      entityName: this.options.hubName,
      now: Date.now(),
    };
  }

  private setupEvents(): void {
    const c = this.container;
    c.on('connection_open', (ctx: rhea.EventContext) => this.onConnectionOpen(ctx));
    for (const name of ['connection_close', 'connection_error', 'disconnected']) {
      c.on(name, (ctx: rhea.EventContext) => this.onConnectionGone(ctx.connection));
    }
    // rhea throws on an 'error' event nobody listens to; a broken peer must not take the hub down.
    c.on('error', () => undefined);
    c.on('protocol_error', (ctx: rhea.EventContext | Error) => {
      if (ctx && 'connection' in ctx && ctx.connection) this.onConnectionGone(ctx.connection);
    });
    c.on('session_open', (ctx: rhea.EventContext) => {
      const state = this.conns.get(ctx.connection);
      if (!state || !ctx.session) return;
      answerBegin(ctx.session);
      limitTransfers(ctx.session, this.maxGatheredBytes(), (bytes) =>
        this.dropAbusive(state, { condition: 'amqp:link:message-size-exceeded', description: `A message grew past ${bytes} bytes before its last frame.` }),
      );
    });
    c.on('session_close', (ctx: rhea.EventContext) => this.onSessionGone(ctx));
    c.on('session_error', (ctx: rhea.EventContext) => this.onSessionGone(ctx));
    c.on('sender_open', (ctx: rhea.EventContext) => this.onLinkOpen(ctx, 'sender'));
    c.on('receiver_open', (ctx: rhea.EventContext) => this.onLinkOpen(ctx, 'receiver'));
    for (const name of ['sender_close', 'sender_error', 'receiver_close', 'receiver_error']) {
      c.on(name, (ctx: rhea.EventContext) => {
        const link = ctx.sender ?? ctx.receiver;
        const state = link && this.linkState(link);
        if (state) this.linkGone(state);
      });
    }
    c.on('message', (ctx: rhea.EventContext) => {
      const state = ctx.receiver && this.linkState(ctx.receiver);
      // What arrives after we closed the link, its session or the connection (or dropped the socket)
      // is not taken: its outcome could never reach the client, which will send it again.
      const live = state?.onMessage && !this.conns.get(ctx.connection)?.dropped && ctx.connection.is_open() && (ctx.session as rhea.Session).is_open() && state.link.is_open();
      if (!live) {
        // Not settled on the wire (nobody is there to hear it), but not left to fill the session's buffer.
        if (ctx.delivery) forgetDelivery(ctx.delivery);
        return;
      }
      (state.onMessage as (c: rhea.EventContext) => void)(ctx);
    });
    c.on('sendable', (ctx: rhea.EventContext) => {
      const state = ctx.sender && this.linkState(ctx.sender);
      state?.onSendable?.();
    });
    // 'modified' is also dispatched as 'released' (rhea's treat_modified_as_released).
    for (const outcome of ['accepted', 'rejected', 'released'] as const) {
      c.on(outcome, (ctx: rhea.EventContext) => {
        const state = ctx.sender && this.linkState(ctx.sender);
        if (state?.onOutcome && ctx.delivery) state.onOutcome(ctx.delivery, outcome);
      });
    }
  }

  private linkState(link: Link): LinkState | undefined {
    return this.conns.get(link.connection)?.links.get(link);
  }

  private onConnectionOpen(ctx: rhea.EventContext): void {
    const state = this.stateOf(ctx.connection);
    if (state.openTimer) clearTimeout(state.openTimer);
    state.openTimer = undefined;
    state.sasl = negotiatedSasl(ctx.connection);
    const token = plainToken(ctx.connection);
    if (token) {
      try {
        state.auth.add(grantFromToken(token, this.tokenContext()));
      } catch {
        ctx.connection.close(UNAUTHORIZED('The SASL PLAIN token is not valid.'));
      }
    }
  }

  private onConnectionGone(connection: rhea.Connection): void {
    const state = this.conns.get(connection);
    if (!state || state.closed) return;
    state.closed = true;
    if (state.openTimer) clearTimeout(state.openTimer);
    for (const link of [...state.links.values()]) this.linkGone(link);
    this.conns.delete(connection);
    this.stats.openConnections = this.conns.size;
    // A closed AMQP connection may leave its socket half open; make sure it goes.
    if (!connection.is_closed() || connection.is_remote_open()) connection.close();
    setTimeout(() => state.destroy(), 100).unref();
  }

  private onSessionGone(ctx: rhea.EventContext): void {
    const state = this.conns.get(ctx.connection);
    if (!state) return;
    for (const link of [...state.links.values()]) if (link.session === ctx.session) this.linkGone(link);
  }

  private linkGone(state: LinkState): void {
    if (state.closed) return;
    state.closed = true;
    const conn = this.conns.get(state.link.connection);
    conn?.links.delete(state.link);
    if (conn && conn.linklessSince === undefined && [...conn.links.values()].every((l) => l.address.kind === 'cbs')) conn.linklessSince = Date.now();
    state.onClose?.();
    // What it had sent and nobody will settle now must not hold its session's buffer (see amqp.ts).
    forgetLinkDeliveries(state.link, state.session);
  }

  private closeLink(state: LinkState, error: AmqpError): void {
    if (state.closed) return;
    this.linkGone(state);
    if (!state.link.is_closed()) state.link.close(error as rhea.AmqpError);
  }

  // ---- link attach --------------------------------------------------------------------------

  private onLinkOpen(ctx: rhea.EventContext, role: 'sender' | 'receiver'): void {
    const link = (role === 'sender' ? ctx.sender : ctx.receiver) as Link;
    const conn = this.stateOf(ctx.connection);
    const remote = remoteAttach(link);
    const addressText = (role === 'sender' ? remote.source?.address : remote.target?.address) ?? '';
    const address = parseAddress(addressText, this.options.hubName);
    answerAttach(link, this.maxMessageBytes(address));
    const state: LinkState = { link, role, address, addressText, session: ctx.session as rhea.Session };
    conn.links.set(link, state);
    if (address.kind !== 'cbs') conn.linklessSince = undefined;

    if (address.kind === 'cbs') {
      if (role === 'receiver') state.onMessage = (c) => this.onCbsRequest(conn, state, c);
      this.stats.linksAttached++;
      return;
    }
    const requirement = requirementFor(address);
    if (!requirement) {
      this.stats.linksRefused++;
      this.closeLink(state, { condition: 'amqp:not-found', description: `The address '${addressText.slice(0, 200)}' does not exist on this hub.` });
      return;
    }
    if (!conn.auth.allows(requirement, Date.now())) {
      this.stats.linksRefused++;
      this.closeLink(state, UNAUTHORIZED(`No valid token on this connection allows access to '${addressText.slice(0, 200)}'.`));
      return;
    }
    state.requirement = requirement;
    const refusal = this.serveLink(conn, state);
    if (refusal) {
      this.stats.linksRefused++;
      this.closeLink(state, refusal);
      return;
    }
    this.stats.linksAttached++;
  }

  /**
   * The max-message-size the hub answers an attach with. IoT Hub's documented limits: 256 KB device to
   * cloud, 64 KB cloud to device (MicrosoftDocs iot-hub-devguide-quotas-throttling.md). The Event Hubs
   * surface and the request/response nodes ($cbs, $management) answer with Event Hubs Standard's 1 MB
   * event limit (event-hubs-quotas.md); the value the hub itself sends there is UNVERIFIED, and the
   * official clients only need one to be present.
   */
  private maxMessageBytes(address: Address): number {
    switch (address.kind) {
      case 'd2c':
        return this.options.d2c.maxMessageBytes;
      case 'c2d':
      case 'devicebound':
      case 'feedback':
      case 'filenotifications':
        return this.options.c2d.maxMessageBytes;
      default:
        return 1024 * 1024;
    }
  }

  /** Wires an authorised link to what serves it, or returns why it cannot be served. */
  private serveLink(conn: ConnState, state: LinkState): AmqpError | undefined {
    const { address, role } = state;
    const wrongRole = (): AmqpError => ({ condition: 'amqp:not-allowed', description: `The address '${state.addressText.slice(0, 200)}' cannot be used in this direction.` });
    switch (address.kind) {
      case 'd2c': {
        if (role !== 'receiver') return wrongRole();
        const missing = this.ensureDevice(address.deviceId, address.moduleId);
        if (missing) return missing;
        state.onMessage = (c) => this.d2c.onTransfer(address.deviceId, address.moduleId, c);
        return undefined;
      }
      case 'c2d': {
        if (role !== 'sender') return wrongRole();
        const missing = this.ensureDevice(address.deviceId, address.moduleId);
        if (missing) return missing;
        const sender = state.link as rhea.Sender;
        const device = this.registry.getDevice(address.deviceId);
        this.c2d.attachReceiver(address.deviceId, address.moduleId, device?.generationId ?? '', sender);
        state.onSendable = () => this.c2d.onSendable(sender);
        state.onOutcome = (delivery, outcome) => this.c2d.onOutcome(delivery, outcome);
        state.onClose = () => this.c2d.detachReceiver(sender);
        return undefined;
      }
      case 'devicebound':
        if (role !== 'receiver') return wrongRole();
        state.onMessage = (c) => this.c2dIntake.onSend(c);
        return undefined;
      case 'feedback': {
        if (role !== 'sender') return wrongRole();
        const sender = state.link as rhea.Sender;
        this.feedback.attach(sender);
        state.onSendable = () => this.feedback.onSendable();
        state.onOutcome = (delivery, outcome) => this.feedback.onOutcome(delivery, outcome);
        state.onClose = () => this.feedback.detach(sender);
        return undefined;
      }
      case 'filenotifications':
        // File uploads are out of scope: the link stays open and idle, as on a hub with no uploads.
        return role === 'sender' ? undefined : wrongRole();
      case 'builtin-partition':
      case 'builtin-management':
        return this.redirectFor(address, conn.transport);
      case 'eh-partition': {
        if (!conn.sasl) return SASL_REQUIRED;
        if (role !== 'sender') return wrongRole();
        const sender = state.link as rhea.Sender;
        const error = this.eventHub.attachReader(sender, address.consumerGroup, address.partition);
        if (error) return error;
        state.onSendable = () => this.eventHub.onSendable(sender);
        state.onClose = () => this.eventHub.detachReader(sender);
        return undefined;
      }
      case 'eh-management':
        if (!conn.sasl) return SASL_REQUIRED;
        if (role === 'receiver') state.onMessage = (c) => this.onManagementRequest(conn, state, c);
        return undefined;
      default:
        return { condition: 'amqp:not-found', description: 'Unknown address.' };
    }
  }

  private ensureDevice(deviceId: string, moduleId?: string): AmqpError | undefined {
    const device = this.registry.getDevice(deviceId);
    if (device && (moduleId === undefined || device.modules.has(moduleId))) return undefined;
    if (this.registry.autoRegister) {
      this.registry.ensure(deviceId, moduleId);
      return undefined;
    }
    return { condition: 'amqp:not-found', description: `The device '${deviceId}' is not registered.` };
  }

  /**
   * The built-in endpoint answers with a redirect to its Event Hubs-compatible surface, which this
   * simulator serves on the same listeners. The address keeps the literal `:<port>/<name>/$management`
   * form the Azure samples parse. Info keys are strings (rhea encodes error info maps that way);
   * clients read them by name either way.
   */
  private redirectFor(address: Address, transport: Transport): AmqpError {
    // The Event Hubs surface is this same server: a plain-AMQP client (local development only; the
    // real hub has no plain port) is sent to the plain port, everyone else to AMQPS as on Azure.
    const plain = transport === 'amqp' && this.ports.amqp !== undefined;
    const port = plain ? (this.ports.amqp as number) : (this.ports.amqps ?? this.ports.amqp ?? 5671);
    const scheme = plain || this.ports.amqps === undefined ? 'amqp' : 'amqps';
    const host = this.options.hostName;
    const path =
      address.kind === 'builtin-partition'
        ? `${this.options.hubName}/ConsumerGroups/${address.consumerGroup}/Partitions/${address.partition}`
        : `${this.options.hubName}/$management`;
    return {
      condition: 'amqp:link:redirect',
      description: "An AMQP error occurred (condition='amqp:link:redirect').",
      info: {
        hostname: port === 5671 ? host : `${host}:${port}`,
        'network-host': host,
        port: wrapInt(port),
        address: `${scheme}://${host}:${port}/${path}`,
      },
    };
  }

  // ---- message handlers ---------------------------------------------------------------------

  private onCbsRequest(conn: ConnState, state: LinkState, ctx: rhea.EventContext): void {
    const message = ctx.message as rhea.Message;
    ctx.delivery?.accept();
    const props = (message.application_properties ?? {}) as Record<string, unknown>;
    let status = 200;
    let description = 'OK';
    const blocked = this.putTokenBlock && Date.now() < this.putTokenBlock.until ? this.putTokenBlock.answer : undefined;
    if (props.operation !== 'put-token') {
      status = 400;
      description = `Unsupported operation '${String(props.operation)}'.`;
    } else if (blocked === 'ignore') {
      this.stats.putTokensRefused++;
      return;
    } else if (blocked === 'refuse') {
      this.stats.putTokensRefused++;
      status = 401;
      description = 'Unauthorized: the token service is unavailable (simulated fault).';
    } else {
      const token = typeof message.body === 'string' ? message.body : bodyBytes(message.body).toString('utf8');
      try {
        if (!audienceMatches(props.name, token)) throw new AuthError(`the put-token name '${String(props.name).slice(0, 200)}' does not name the resource the token is for`);
        const grant = grantFromToken(token, this.tokenContext());
        conn.auth.add(grant);
        this.stats.putTokens++;
      } catch (err) {
        this.stats.putTokensRefused++;
        status = err instanceof AuthError ? err.status : 401;
        description = !(err instanceof AuthError) ? 'Unauthorized.' : status === 401 ? `Unauthorized: ${err.message}.` : `${err.message}.`;
      }
    }
    this.reply(conn, state, message, 'cbs', status, description);
  }

  private onManagementRequest(conn: ConnState, state: LinkState, ctx: rhea.EventContext): void {
    const message = ctx.message as rhea.Message;
    ctx.delivery?.accept();
    const answer = this.eventHub.management(message);
    this.reply(conn, state, message, 'eh-management', answer.status, answer.description, answer.body);
  }

  /**
   * Sends a response on the sender whose target is the request's reply-to, same session first.
   * The request's accept goes on the wire first: azure-uamqp-c drops a response that arrives before
   * its request's disposition ("Did not receive send confirmation for pending operation",
   * amqp_management.c), and rhea writes a tick's transfers before its dispositions, so the response
   * waits for the next turn of the event loop, after rhea has flushed the accept.
   */
  private reply(conn: ConnState, request: LinkState, message: rhea.Message, kind: Address['kind'], status: number, description: string, body?: unknown): void {
    const replyTo = typeof message.reply_to === 'string' ? message.reply_to : undefined;
    const candidates = [...conn.links.values()].filter((l) => l.role === 'sender' && l.address.kind === kind && !l.closed);
    const targetOf = (l: LinkState): string | undefined => remoteAttach(l.link).target?.address;
    const pick =
      candidates.find((l) => replyTo !== undefined && targetOf(l) === replyTo && l.session === request.session) ??
      candidates.find((l) => replyTo !== undefined && targetOf(l) === replyTo) ??
      candidates.find((l) => l.session === request.session) ??
      candidates[0];
    if (!pick) return;
    const response: rhea.Message = {
      correlation_id: message.message_id,
      application_properties: { 'status-code': wrapInt(status), 'status-description': description },
      body: body ?? null,
    } as rhea.Message;
    if (replyTo !== undefined) response.to = replyTo;
    setImmediate(() => {
      if (!pick.closed && pick.link.is_open()) (pick.link as rhea.Sender).send(response);
    });
  }

  /** Stamps a device message as IoT Hub does and stores it in its partition. */
  ingest(deviceId: string, moduleId: string | undefined, message: rhea.Message): StoredEvent {
    return this.d2c.ingest(deviceId, moduleId, message);
  }

  // ---- expiry sweep -------------------------------------------------------------------------

  private sweep(): void {
    const now = Date.now();
    this.c2d.sweep();
    this.feedback.sweep();
    for (const p of this.partitions) p.trimByAge(now);
    this.enforceTokens(now);
    this.closeLinkless(now);
  }

  /**
   * Closes connections that have had no link but `$cbs` for `linklessTimeoutMs`, in the words Event
   * Hubs and Service Bus use ("AMQP errors in Azure Service Bus": amqp:connection:forced, "... did not
   * have any active links in the past 300000 milliseconds"); a `$cbs` link alone does not keep a
   * connection (azure-sdk-for-java#41535 shows it closed that way).
   */
  private closeLinkless(now: number): void {
    const limit = this.options.linklessTimeoutMs;
    if (limit <= 0) return;
    for (const conn of [...this.conns.values()]) {
      if (conn.linklessSince === undefined || now - conn.linklessSince < limit || !conn.connection.is_open()) continue;
      conn.linklessSince = undefined;
      conn.connection.close({
        condition: 'amqp:connection:forced',
        description: `The connection was closed by container '${this.options.hubName}' because it did not have any active links in the past ${limit} milliseconds.`,
      } as rhea.AmqpError);
    }
  }

  /** Detaches every link whose token lapsed, as the hub does ("Token Invalid."). */
  private enforceTokens(now: number): void {
    const cutoff = now - this.options.tokenGraceMs;
    for (const conn of this.conns.values()) {
      for (const state of [...conn.links.values()]) {
        if (state.requirement && !conn.auth.allows(state.requirement, cutoff)) this.closeLink(state, UNAUTHORIZED('Token Invalid.'));
      }
    }
  }

  // ---- faults -------------------------------------------------------------------------------

  readonly faults = {
    /** Kills the TCP connections (no AMQP close); returns how many. */
    dropConnections: (filter?: (info: { id: number; transport: Transport }) => boolean): number => {
      let n = 0;
      for (const conn of [...this.conns.values()]) {
        if (filter && !filter({ id: conn.id, transport: conn.transport })) continue;
        n++;
        conn.dropped = true;
        conn.destroy();
      }
      return n;
    },
    /** Closes the AMQP connections with an error (default `amqp:connection:forced`). */
    closeConnections: (error: AmqpError = { condition: 'amqp:connection:forced', description: 'Closed by the simulator (fault).' }): number => {
      const all = [...this.conns.values()];
      for (const conn of all) conn.connection.close(error as rhea.AmqpError);
      return all.length;
    },
    /** Ends every session with an error. */
    endSessions: (error: AmqpError = { condition: 'amqp:internal-error', description: 'Session ended by the simulator (fault).' }): number => {
      const sessions = new Set<rhea.Session>();
      for (const conn of this.conns.values()) for (const l of conn.links.values()) sessions.add(l.session);
      for (const s of sessions) s.close(error as rhea.AmqpError);
      return sessions.size;
    },
    /** Detaches the links whose address matches, e.g. `(a) => a.kind === 'd2c'`. */
    detachLinks: (
      match: (address: Address, text: string) => boolean,
      error: AmqpError = { condition: 'amqp:link:detach-forced', description: 'Link detached by the simulator (fault).' },
    ): number => {
      let n = 0;
      for (const conn of this.conns.values()) {
        for (const state of [...conn.links.values()]) {
          if (!match(state.address, state.addressText)) continue;
          n++;
          this.closeLink(state, error);
        }
      }
      return n;
    },
    /** Makes every token on every connection lapse now; their links are detached at once. */
    expireTokens: (): void => {
      const now = Date.now();
      for (const conn of this.conns.values()) conn.auth.expireAll(now);
      this.enforceTokens(now + this.options.tokenGraceMs + 1);
    },
    /** Answers the next `count` D2C and C2D sends with a throttling error. */
    throttleNext: (count: number): void => {
      this.throttle.next(count);
    },
    /** Answers every D2C and C2D send with a throttling error for `ms` (0 stops). */
    throttleFor: (ms: number): void => {
      this.throttle.for(ms);
    },
    /**
     * Blocks put-token for `ms` (0 stops): `refuse` answers 401, `ignore` never answers. Tokens already
     * put stay valid until they expire, so this is how a renewal that cannot happen is simulated.
     */
    blockPutTokens: (ms: number, answer: 'refuse' | 'ignore' = 'refuse'): void => {
      this.putTokenBlock = ms > 0 ? { until: Date.now() + ms, answer } : undefined;
    },
    /** Refuses new connections for `ms` (0 stops refusing). */
    refuseConnections: (ms: number): void => {
      this.refuseUntil = ms > 0 ? Date.now() + ms : 0;
    },
  };

  /** Lets the process exit while the simulator listens (an embedded simulator serves, it does not hold). */
  unrefListeners(): void {
    for (const server of this.servers) {
      if (!(server instanceof WebSocketServer)) (server as net.Server).unref();
    }
  }

  /** Counts of what is open now, for tests and the CLI. */
  snapshot(): { connections: number; links: number; tokens: number } {
    let links = 0;
    let tokens = 0;
    for (const conn of this.conns.values()) {
      links += conn.links.size;
      tokens += conn.auth.size;
    }
    return { connections: this.conns.size, links, tokens };
  }

  /** All retained D2C events, across partitions, decoded (for tests and tools). */
  *events(): IterableIterator<{ partitionId: string; event: StoredEvent; message: rhea.Message }> {
    for (const p of this.partitions) for (const event of p.all()) yield { partitionId: p.id, event, message: decode(event.encoded) };
  }

  async close(): Promise<void> {
    if (this.closing && this.servers.length === 0) return;
    this.closing = true;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    for (const conn of [...this.conns.values()]) {
      conn.closed = true;
      conn.destroy();
    }
    this.conns.clear();
    this.stats.openConnections = 0;
    const servers = this.servers.splice(0);
    await Promise.all(
      servers.map(
        (server) =>
          new Promise<void>((resolve) => {
            if (server instanceof WebSocketServer) {
              for (const client of server.clients) client.terminate();
              server.close(() => resolve());
              return;
            }
            (server as net.Server).close(() => resolve());
            (server as net.Server & { closeAllConnections?: () => void }).closeAllConnections?.();
          }),
      ),
    );
    const persistence = this.persistence;
    this.persistence = undefined;
    persistence?.close();
    this.c2d.close();
    this.feedback.close();
    this.eventHub.close();
  }
}

/**
 * A WebSocket as the byte stream rhea reads and writes, with each incoming chunk passed through
 * `admit` first (a chunk it refuses never reaches rhea).
 */
function webSocketStream(ws: WebSocket, admit: (chunk: Buffer) => boolean): EventEmitter {
  const stream = new EventEmitter();
  ws.on('message', (data: Buffer | ArrayBuffer | Buffer[]) => {
    const chunk = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
    if (admit(chunk)) stream.emit('data', chunk);
  });
  ws.on('close', () => stream.emit('end'));
  ws.on('error', (err: Error) => stream.emit('error', err));
  Object.assign(stream, {
    write: (data: Buffer) => {
      if (ws.readyState === ws.OPEN) ws.send(data, { binary: true });
    },
    end: () => ws.close(),
    destroy: () => ws.terminate(),
    get_id_string: () => 'websocket',
  });
  return stream;
}
