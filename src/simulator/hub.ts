/**
 * The simulated IoT Hub, as composition: it creates the parts (listeners, connection bookkeeping, link
 * routing, CBS and `$management` replies, D2C ingest, C2D intake, persistence, faults), wires rhea's
 * events to them, and keeps the surface tests, tools and the nodes use.
 */
import { EventEmitter } from 'node:events';
import rhea = require('rhea');
import { formatDeviceConnectionString, formatEventHubConnectionString, formatServiceConnectionString } from '../iothub/connection-string';
import { grantFromToken, type Grant, type TokenContext } from './auth';
import { C2dQueues } from './c2d';
import { C2dIntake } from './c2d-intake';
import { loadOrMakeCertificate, type Certificate } from './certificate';
import { Connections } from './connections';
import { D2cIngest, decode } from './d2c-ingest';
import { DirectMethods } from './direct-methods';
import { EventHubSurface } from './event-hub';
import { createFaults, type HubFaults } from './faults';
import { FeedbackQueue } from './feedback';
import { LinkRouter } from './link-router';
import { Listeners } from './listeners';
import { methodRoutes } from './method-routes';
import { RestApi } from './rest-api';
import { TwinLinks } from './twin-links';
import { twinRoutes } from './twin-routes';
import { TwinStore } from './twins';
import { ManagementReplies } from './management-replies';
import { resolveOptions, type SimulatorOptions, type SimulatorOptionsInput } from './options';
import { Partition, type StoredEvent } from './partitions';
import { Persistence } from './persistence';
import { Registry } from './registry';
import { setupSasl } from './sasl';
import { emptyStats, type HubStats } from './stats';
import { Throttle } from './throttle';
import { reason, simLog } from './log';

export type { HubStats } from './stats';
export type { D2cEvent } from './d2c-ingest';

export class SimulatedHub extends EventEmitter {
  readonly options: SimulatorOptions;
  readonly registry: Registry;
  readonly partitions: Partition[];
  readonly c2d: C2dQueues;
  readonly feedback: FeedbackQueue;
  readonly eventHub: EventHubSurface;
  readonly ports: { amqp?: number; amqps?: number; ws?: number; rest?: number } = {};
  /** Direct methods: the devices' method links and the calls waiting for answers. */
  readonly methods = new DirectMethods();
  /** Device and module twins, and the devices' twin links. */
  readonly twins = new TwinStore();
  readonly twinLinks = new TwinLinks(this.twins);
  certificate?: Certificate;
  readonly stats: HubStats = emptyStats();
  /** Faults for tests and tools to inject (see faults.ts). */
  readonly faults: HubFaults;

  private readonly container: rhea.Container;
  private readonly connections: Connections;
  /** The listening servers (not `listeners`: that is EventEmitter's). */
  private readonly endpoints: Listeners;
  private readonly router: LinkRouter;
  private readonly replies: ManagementReplies;
  private readonly throttle: Throttle;
  private readonly d2c: D2cIngest;
  private readonly c2dIntake: C2dIntake;
  /** The HTTPS service API (method calls, twins, registry). */
  private readonly rest: RestApi;
  private persistence: Persistence | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;

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
    this.registry.removalListeners.push((deviceId, moduleId) => this.twins.remove(deviceId, moduleId));
    this.registry.removalListeners.push((deviceId, moduleId) =>
      this.faults.detachLinks(
        (a) =>
          (a.kind === 'd2c' || a.kind === 'c2d' || a.kind === 'methods' || a.kind === 'twin') &&
          a.deviceId === deviceId &&
          (moduleId === undefined || a.moduleId === moduleId),
        {
          condition: 'amqp:not-found',
          description:
            moduleId === undefined
              ? `Device ${deviceId} at IotHub ${options.hubName} not registered`
              : `Module ${moduleId} on device ${deviceId} at IotHub ${options.hubName} not registered`,
        },
      ),
    );
    // After the links: a receiver detached first leaves no sender behind on a queue that goes.
    this.registry.removalListeners.push((deviceId, moduleId) => this.c2d.removeIdentity(deviceId, moduleId));

    const { registry, partitions, c2d, feedback, eventHub, stats, ports } = this;
    const grantFor = (token: string): Grant => grantFromToken(token, this.tokenContext());
    this.throttle = new Throttle(stats);
    this.d2c = new D2cIngest({
      options,
      registry,
      partitions,
      stats,
      throttle: this.throttle,
      events: this,
      journal: (record) => this.persistence?.event(record),
    });
    this.c2dIntake = new C2dIntake({ options, registry, c2d, stats, throttle: this.throttle });
    this.replies = new ManagementReplies({ stats, eventHub, grantFor });
    this.container = rhea.create_container({ id: options.hubName });
    this.connections = new Connections({ options, stats, container: this.container, grantFor });
    this.endpoints = new Listeners(options, ports, this.connections);
    this.router = new LinkRouter({
      options,
      registry,
      stats,
      ports,
      connections: this.connections,
      c2d,
      feedback,
      eventHub,
      d2c: this.d2c,
      c2dIntake: this.c2dIntake,
      replies: this.replies,
      methods: this.methods,
      twinLinks: this.twinLinks,
    });
    this.rest = new RestApi(() => this.tokenContext());
    this.rest.add(...methodRoutes(this.methods, registry));
    this.rest.add(
      ...twinRoutes({
        registry,
        twins: this.twins,
        connected: (deviceId, moduleId) => this.connections.hasDeviceLink(deviceId, moduleId),
      }),
    );
    this.faults = createFaults({ connections: this.connections, throttle: this.throttle, tokens: this.replies, options });
    setupSasl(this.container, grantFor);
    this.wireEvents();
    if (options.location !== undefined) this.persistence = Persistence.attach(options.location, { registry, partitions, c2d, twins: this.twins });
  }

  static async start(input: SimulatorOptionsInput = {}): Promise<SimulatedHub> {
    const hub = new SimulatedHub(resolveOptions(input));
    try {
      hub.certificate = await hub.endpoints.listen();
      const { restPort, host, certDir, hostName } = hub.options;
      if (restPort !== null) {
        hub.certificate ??= hub.options.tls ?? (await loadOrMakeCertificate(certDir, [hostName]));
        hub.ports.rest = await hub.rest.listen(host, restPort, hub.certificate);
      }
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

  /**
   * Where the service REST API listens, as `host:port` (the real hub's is the host name on 443: the
   * service SDKs cannot be given another port, see docs/METHODS-AND-TWINS.md).
   */
  get restHost(): string {
    const port = this.ports.rest;
    if (port === undefined) throw new Error('the REST listener is off (restPort)');
    return port === 443 ? this.options.hostName : `${this.options.hostName}:${port}`;
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

  // ---- wiring -------------------------------------------------------------------------------

  /** What a SAS token is checked against: this hub's registry, host names and entity. */
  private tokenContext(): TokenContext {
    return {
      registry: this.registry,
      hosts: Array.from(new Set([this.options.hostName.toLowerCase(), 'localhost', '127.0.0.1', this.options.host])),
      entityName: this.options.hubName,
      now: Date.now(),
    };
  }

  /** Connection and session events go to the connection bookkeeping, link events to the router. */
  private wireEvents(): void {
    const c = this.container;
    const conns = this.connections;
    const router = this.router;
    c.on('connection_open', (ctx: rhea.EventContext) => conns.onConnectionOpen(ctx));
    for (const name of ['connection_close', 'connection_error', 'disconnected']) {
      c.on(name, (ctx: rhea.EventContext) => conns.onConnectionGone(ctx.connection));
    }
    // rhea throws on an 'error' event nobody listens to; a broken peer must not take the hub down.
    c.on('error', (ctx: rhea.EventContext) => simLog.amqp('connection error: %s', reason(ctx.error ?? ctx)));
    c.on('protocol_error', (ctx: rhea.EventContext | Error) => {
      if (ctx && 'connection' in ctx && ctx.connection) conns.onConnectionGone(ctx.connection);
    });
    c.on('session_open', (ctx: rhea.EventContext) => conns.onSessionOpen(ctx));
    c.on('session_close', (ctx: rhea.EventContext) => conns.onSessionGone(ctx));
    c.on('session_error', (ctx: rhea.EventContext) => conns.onSessionGone(ctx));
    c.on('sender_open', (ctx: rhea.EventContext) => router.onLinkOpen(ctx, 'sender'));
    c.on('receiver_open', (ctx: rhea.EventContext) => router.onLinkOpen(ctx, 'receiver'));
    for (const name of ['sender_close', 'sender_error', 'receiver_close', 'receiver_error']) {
      c.on(name, (ctx: rhea.EventContext) => router.onLinkGone(ctx));
    }
    c.on('message', (ctx: rhea.EventContext) => router.onMessage(ctx));
    c.on('sendable', (ctx: rhea.EventContext) => router.onSendable(ctx));
    // 'modified' is also dispatched as 'released' (rhea's treat_modified_as_released).
    for (const outcome of ['accepted', 'rejected', 'released'] as const) {
      c.on(outcome, (ctx: rhea.EventContext) => router.onOutcome(ctx, outcome));
    }
  }

  /** Expiry: C2D messages, feedback, retained events, lapsed tokens, connections left linkless. */
  private sweep(): void {
    const now = Date.now();
    this.c2d.sweep();
    this.feedback.sweep();
    for (const p of this.partitions) p.trimByAge(now);
    this.connections.enforceTokens(now);
    this.connections.closeLinkless(now);
  }

  // ---- the surface for tests, tools and the nodes -------------------------------------------

  /** Stamps a device message as IoT Hub does and stores it in its partition. */
  ingest(deviceId: string, moduleId: string | undefined, message: rhea.Message): StoredEvent {
    return this.d2c.ingest(deviceId, moduleId, message);
  }

  /** Lets the process exit while the simulator listens (an embedded simulator serves, it does not hold). */
  unrefListeners(): void {
    this.endpoints.unref();
    this.rest.unref();
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
    this.methods.close();
    await Promise.all([this.endpoints.close(), this.rest.close()]);
    const persistence = this.persistence;
    this.persistence = undefined;
    persistence?.close();
    this.c2d.close();
    this.feedback.close();
    this.eventHub.close();
  }
}
