/**
 * The simulated IoT Hub: listeners, SASL, CBS, per-attach authorisation, and the routing of every
 * link to the part that serves it (D2C partitions, C2D queues, feedback, the Event Hubs surface).
 */
import { EventEmitter } from 'node:events';
import rhea = require('rhea');
import {
  formatDeviceConnectionString,
  formatEventHubConnectionString,
  formatServiceConnectionString,
} from '../iothub/connection-string';
import { answerAttach, bodyBytes, forgetDelivery, remoteAttach, wrapInt, type AmqpError } from './amqp';
import { parseAddress, type Address } from './addresses';
import { audienceMatches, AuthError, grantFromToken, requirementFor } from './auth';
import { C2dQueues } from './c2d';
import type { Certificate } from './certificate';
import { Connections, UNAUTHORIZED, type ConnState, type LinkState, type Link, type Transport } from './connections';
import { EventHubSurface } from './event-hub';
import { FeedbackQueue } from './feedback';
import { resolveOptions, type SimulatorOptions, type SimulatorOptionsInput } from './options';
import { Partition, type StoredEvent } from './partitions';
import { Registry } from './registry';
import { setupSasl } from './sasl';
import { emptyStats, type HubStats } from './stats';
import { C2dIntake } from './c2d-intake';
import { D2cIngest, decode } from './d2c-ingest';
import { createFaults, type HubFaults } from './faults';
import { Listeners } from './listeners';
import { Persistence } from './persistence';
import { Throttle } from './throttle';

export type { HubStats } from './stats';
export type { D2cEvent } from './d2c-ingest';

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
  private readonly connections: Connections;
  private readonly endpoints: Listeners;
  private sweepTimer: NodeJS.Timeout | undefined;
  private readonly throttle: Throttle;
  private readonly d2c: D2cIngest;
  private readonly c2dIntake: C2dIntake;
  private putTokenBlock: { until: number; answer: 'refuse' | 'ignore' } | undefined;
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
      const state = this.connections.linkState(sender);
      if (state) this.connections.closeLink(state, error);
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
    this.connections = new Connections({ options, stats: this.stats, container: this.container, grantFor: (token) => grantFromToken(token, this.tokenContext()) });
    this.endpoints = new Listeners(options, this.ports, this.connections);
    this.faults = createFaults({
      connections: this.connections,
      throttle: this.throttle,
      tokens: {
        blockPutTokens: (ms, answer) => {
          this.putTokenBlock = ms > 0 ? { until: Date.now() + ms, answer } : undefined;
        },
      },
      options,
    });
    setupSasl(this.container, (token) => grantFromToken(token, this.tokenContext()));
    this.setupEvents();
    if (options.location !== undefined) {
      this.persistence = Persistence.attach(options.location, { registry: this.registry, partitions: this.partitions, c2d: this.c2d });
    }
  }

  static async start(input: SimulatorOptionsInput = {}): Promise<SimulatedHub> {
    const hub = new SimulatedHub(resolveOptions(input));
    try {
      hub.certificate = await hub.endpoints.listen();
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
    const conns = this.connections;
    c.on('connection_open', (ctx: rhea.EventContext) => conns.onConnectionOpen(ctx));
    for (const name of ['connection_close', 'connection_error', 'disconnected']) {
      c.on(name, (ctx: rhea.EventContext) => conns.onConnectionGone(ctx.connection));
    }
    // rhea throws on an 'error' event nobody listens to; a broken peer must not take the hub down.
    c.on('error', () => undefined);
    c.on('protocol_error', (ctx: rhea.EventContext | Error) => {
      if (ctx && 'connection' in ctx && ctx.connection) conns.onConnectionGone(ctx.connection);
    });
    c.on('session_open', (ctx: rhea.EventContext) => conns.onSessionOpen(ctx));
    c.on('session_close', (ctx: rhea.EventContext) => conns.onSessionGone(ctx));
    c.on('session_error', (ctx: rhea.EventContext) => conns.onSessionGone(ctx));
    c.on('sender_open', (ctx: rhea.EventContext) => this.onLinkOpen(ctx, 'sender'));
    c.on('receiver_open', (ctx: rhea.EventContext) => this.onLinkOpen(ctx, 'receiver'));
    for (const name of ['sender_close', 'sender_error', 'receiver_close', 'receiver_error']) {
      c.on(name, (ctx: rhea.EventContext) => {
        const link = ctx.sender ?? ctx.receiver;
        const state = link && this.connections.linkState(link);
        if (state) conns.linkGone(state);
      });
    }
    c.on('message', (ctx: rhea.EventContext) => {
      const state = ctx.receiver && this.connections.linkState(ctx.receiver);
      // What arrives after we closed the link, its session or the connection (or dropped the socket)
      // is not taken: its outcome could never reach the client, which will send it again.
      const live = state?.onMessage && !conns.find(ctx.connection)?.dropped && ctx.connection.is_open() && (ctx.session as rhea.Session).is_open() && state.link.is_open();
      if (!live) {
        // Not settled on the wire (nobody is there to hear it), but not left to fill the session's buffer.
        if (ctx.delivery) forgetDelivery(ctx.delivery);
        return;
      }
      (state.onMessage as (c: rhea.EventContext) => void)(ctx);
    });
    c.on('sendable', (ctx: rhea.EventContext) => {
      const state = ctx.sender && this.connections.linkState(ctx.sender);
      state?.onSendable?.();
    });
    // 'modified' is also dispatched as 'released' (rhea's treat_modified_as_released).
    for (const outcome of ['accepted', 'rejected', 'released'] as const) {
      c.on(outcome, (ctx: rhea.EventContext) => {
        const state = ctx.sender && this.connections.linkState(ctx.sender);
        if (state?.onOutcome && ctx.delivery) state.onOutcome(ctx.delivery, outcome);
      });
    }
  }

  // ---- link attach --------------------------------------------------------------------------

  private onLinkOpen(ctx: rhea.EventContext, role: 'sender' | 'receiver'): void {
    const link = (role === 'sender' ? ctx.sender : ctx.receiver) as Link;
    const conn = this.connections.stateOf(ctx.connection);
    const remote = remoteAttach(link);
    const addressText = (role === 'sender' ? remote.source?.address : remote.target?.address) ?? '';
    const address = parseAddress(addressText, this.options.hubName);
    answerAttach(link, this.maxMessageBytes(address));
    const state: LinkState = { link, role, address, addressText, session: ctx.session as rhea.Session };
    this.connections.addLink(conn, state);

    if (address.kind === 'cbs') {
      if (role === 'receiver') state.onMessage = (c) => this.onCbsRequest(conn, state, c);
      this.stats.linksAttached++;
      return;
    }
    const requirement = requirementFor(address);
    if (!requirement) {
      this.stats.linksRefused++;
      this.connections.closeLink(state, { condition: 'amqp:not-found', description: `The address '${addressText.slice(0, 200)}' does not exist on this hub.` });
      return;
    }
    if (!conn.auth.allows(requirement, Date.now())) {
      this.stats.linksRefused++;
      this.connections.closeLink(state, UNAUTHORIZED(`No valid token on this connection allows access to '${addressText.slice(0, 200)}'.`));
      return;
    }
    state.requirement = requirement;
    const refusal = this.serveLink(conn, state);
    if (refusal) {
      this.stats.linksRefused++;
      this.connections.closeLink(state, refusal);
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
    this.connections.enforceTokens(now);
    this.connections.closeLinkless(now);
  }

  // ---- faults -------------------------------------------------------------------------------

  readonly faults: HubFaults;

  /** Lets the process exit while the simulator listens (an embedded simulator serves, it does not hold). */
  unrefListeners(): void {
    this.endpoints.unref();
  }

  /** Counts of what is open now, for tests and the CLI. */
  snapshot(): { connections: number; links: number; tokens: number } {
    return this.connections.counts();
  }

  /** All retained D2C events, across partitions, decoded (for tests and tools). */
  *events(): IterableIterator<{ partitionId: string; event: StoredEvent; message: rhea.Message }> {
    for (const p of this.partitions) for (const event of p.all()) yield { partitionId: p.id, event, message: decode(event.encoded) };
  }

  async close(): Promise<void> {
    if (this.connections.closing && !this.endpoints.bound) return;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    this.connections.destroyAll();
    await this.endpoints.close();
    const persistence = this.persistence;
    this.persistence = undefined;
    persistence?.close();
    this.c2d.close();
    this.feedback.close();
    this.eventHub.close();
  }
}
