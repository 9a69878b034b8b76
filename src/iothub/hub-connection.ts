/**
 * One AMQP connection to IoT Hub (or its Event Hubs-compatible endpoint) that keeps itself alive:
 * connect, authenticate every scope in use over CBS, renew tokens before they expire, reconnect with
 * backoff, and re-attach every durable link after a reconnect. Links never hold a raw rhea link across
 * a reconnect; they are handed a fresh session each time the connection opens.
 *
 *   idle -> connecting -> authenticating -> open -> reconnecting -> connecting ... -> closed
 */
import { EventEmitter, setMaxListeners } from 'node:events';
import { Connection, ConnectionEvents, SessionEvents, type ConnectionOptions as RheaConnectionOptions, type EventContext, type Session } from 'rhea-promise';
import WebSocket from 'ws';
import { Backoff, reconnectSchedule, systemClock, type Clock, type Schedule } from './backoff';
import { CbsChannel } from './cbs';
import type { Identity } from './connection-string';
import { checkScope, makeToken, scopeKey, type Scope, type Token } from './credentials';
import { rheaConnectionOf } from '../amqp/rhea-internals';
import { HubError, toHubError } from './errors';
import { describeIdentity, log, reasonOf } from './log';

export type HubState = 'idle' | 'connecting' | 'authenticating' | 'open' | 'reconnecting' | 'closed';
export type Transport = 'amqps' | 'amqpws' | 'amqp';

export interface HubConnectionOptions {
  transport?: Transport;
  /** Connect here instead of the identity's host (the token audience keeps the identity's host). */
  connectHost?: string;
  port?: number;
  /** Extra CA certificate(s) to trust, PEM. */
  ca?: string | Buffer | Array<string | Buffer>;
  /** Lifetime of tokens made from keys, seconds. */
  tokenLifetimeSec?: number;
  /** Renew this long before expiry, seconds (kept between 10 % and 50 % of the lifetime). */
  tokenRenewMarginSec?: number;
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** Pause after the hub throttles a send, first and most, ms (the official SDK's 10 s and 60 s by default). */
  throttleMinMs?: number;
  throttleMaxMs?: number;
  /** AMQP idle timeout we ask of the peer, ms (rhea sends heartbeats at half the peer's). */
  idleTimeoutMs?: number;
  /** Bound on connect, put-token and attach, ms. */
  operationTimeoutMs?: number;
  /** close() gives up on a polite close after this long and drops the socket, ms. */
  closeTimeoutMs?: number;
  /** For tests: the jitter source. */
  random?: () => number;
  /** For tests: where every retry loop's waits come from (see backoff.ts). */
  clock?: Clock;
  /** WebSocket path; `/$iothub/websocket` for IoT Hub, `/$servicebus/websocket` for Event Hubs. */
  webSocketPath?: string;
}

type ResolvedOptions = Required<Omit<HubConnectionOptions, 'connectHost' | 'port' | 'ca' | 'random'>> &
  Pick<HubConnectionOptions, 'connectHost' | 'port' | 'ca' | 'random'>;

const DEFAULTS = {
  transport: 'amqps' as Transport,
  tokenLifetimeSec: 3600,
  tokenRenewMarginSec: 900,
  reconnectMinMs: 1000,
  reconnectMaxMs: 60_000,
  throttleMinMs: 10_000,
  throttleMaxMs: 60_000,
  idleTimeoutMs: 120_000,
  operationTimeoutMs: 30_000,
  closeTimeoutMs: 10_000,
  webSocketPath: '/$iothub/websocket',
  clock: systemClock,
};

/** What the connection asks of a durable link (see links.ts). */
export interface LinkOwner {
  readonly scope: Scope;
  /** The connection opened (again): attach on this session; `signal` aborts when it goes. */
  attach(session: Session, generation: number, signal: AbortSignal): void;
  /** The connection is gone: forget the rhea link, keep what must be resent. */
  down(): void;
  /** The connection is closing for good. */
  shutdown(error: HubError): void;
}

interface ScopeState {
  scope: Scope;
  users: number;
  token?: Token;
  /** The planned renewal, then its retries while the hub does not answer. */
  renewal: Backoff;
  /** Put-token in progress on this generation. */
  pending?: Promise<void>;
  generation: number;
  /** When the current token was accepted (ms since the epoch). */
  putAt?: number;
}

/** What a HubConnection tells its users, with the arguments each event carries. */
export interface HubConnectionEvents {
  /** The state changed; `error` says why when it is a loss or a rest after the hub closed it. */
  state: [state: HubState, error?: HubError];
  /** A reconnect is planned in `delayMs`. */
  retry: [delayMs: number, error: HubError];
  /** A scope's token was renewed. */
  renewed: [scope: Scope];
  /** The hub refused a scope for good: what waits for it should fail with `error`. */
  scopeError: [scope: Scope, error: HubError];
  error: [error: Error];
}

export class HubConnection extends EventEmitter<HubConnectionEvents> {
  readonly identity: Identity;
  readonly options: ResolvedOptions;
  private currentState: HubState = 'idle';
  private lastError: HubError | undefined;
  private readonly links = new Set<LinkOwner>();
  private readonly scopes = new Map<string, ScopeState>();
  private generation = 0;
  private connection: Connection | undefined;
  private cbs: CbsChannel | undefined;
  private session: Session | undefined;
  /** Aborts every open, create and attach still pending on the current connection. */
  private abort: AbortController | undefined;
  /** The waits of this connection's retry loops, and of its links' (re-attach, send pause): one schedule. */
  readonly retrySchedule: Schedule;
  /** Waits between connection attempts; counts attempts since the last open. */
  private readonly reconnect: Backoff;
  private closing: Promise<void> | undefined;

  constructor(identity: Identity, options: HubConnectionOptions = {}) {
    super();
    // Every node on a shared connection watches its state: a flow with many nodes is not a leak
    // (the redeploy tests count these listeners instead).
    this.setMaxListeners(0);
    this.identity = identity;
    const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
    this.options = { ...DEFAULTS, ...defined } as ResolvedOptions;
    if (identity.kind === 'eventhub' && options.webSocketPath === undefined) this.options.webSocketPath = '/$servicebus/websocket';
    this.retrySchedule = reconnectSchedule({ minMs: this.options.reconnectMinMs, maxMs: this.options.reconnectMaxMs, random: this.options.random });
    this.reconnect = new Backoff(this.retrySchedule, this.options.clock);
    // The identity's own scope is always authorised, so a wrong key shows at connect time rather
    // than at the first message; links add the scopes (devices) they speak for.
    const base: Scope =
      identity.kind === 'device' ? (identity.moduleId ? { deviceId: identity.deviceId, moduleId: identity.moduleId } : { deviceId: identity.deviceId }) : {};
    this.scopes.set(scopeKey(base), { scope: base, users: 1, generation: -1, renewal: new Backoff(this.retrySchedule, this.options.clock) });
  }

  get state(): HubState {
    return this.currentState;
  }

  /** The error behind the last move to reconnecting, if any. */
  get error(): HubError | undefined {
    return this.lastError;
  }

  /** How many scopes (hub or devices) hold a token now. */
  get scopeCount(): number {
    return this.scopes.size;
  }

  private setState(state: HubState, error?: HubError): void {
    if (state === this.currentState && error === undefined) return;
    this.currentState = state;
    if (error) this.lastError = error;
    else if (state === 'open') this.lastError = undefined;
    this.emit('state', state, error);
  }

  // ---- link registry ------------------------------------------------------------------------

  /** Adds a durable link; connects on the first one. Throws if the identity cannot act for its scope. */
  register(link: LinkOwner): void {
    if (this.currentState === 'closed') throw new HubError('Closed', 'the connection is closed');
    checkScope(this.identity, link.scope);
    this.links.add(link);
    const scope = this.tokenScope(link.scope);
    const key = scopeKey(scope);
    const existing = this.scopes.get(key);
    if (existing) existing.users += 1;
    else this.scopes.set(key, { scope, users: 1, generation: -1, renewal: new Backoff(this.retrySchedule, this.options.clock) });
    if (this.currentState === 'idle') this.connect();
    else if (this.currentState === 'open' && this.session && this.abort) this.attachWhenAuthorized(link, this.session, this.generation, this.abort.signal);
  }

  unregister(link: LinkOwner): void {
    if (!this.links.delete(link)) return;
    const key = scopeKey(this.tokenScope(link.scope));
    const state = this.scopes.get(key);
    if (state) {
      state.users -= 1;
      if (state.users <= 0) {
        state.renewal.cancel();
        this.scopes.delete(key);
      }
    }
  }

  /**
   * The scope whose token authorises a link. A gateway (a hub policy with DeviceConnect) puts one
   * hub-level token for the whole connection and opens device links under it without a token per
   * device, as the C# device SDK's grouped SAS does (azure-iot-sdk-csharp DeviceIdentity.CreateAudience
   * returns the host for `SasGrouped`; AmqpConnectionHolder puts one connection-wide token; AmqpUnit
   * puts per-device tokens only for `SasIndividual`). IoT Hub takes at most about 1,000 tokens per
   * connection (AmqpConnectionPoolSettings: "IotHub allows up to 999 tokens per connection"), so a
   * token per device would cap a gateway there; with one token a gateway of any size fits.
   */
  private tokenScope(scope: Scope): Scope {
    return this.identity.kind === 'gateway' ? {} : scope;
  }

  /** Starts connecting now (links also start it). */
  open(): void {
    if (this.currentState === 'idle') this.connect();
  }

  // ---- connecting ---------------------------------------------------------------------------

  private connect(): void {
    const generation = ++this.generation;
    this.setState('connecting');
    void this.runAttempt(generation);
  }

  private transportOptions(): RheaConnectionOptions {
    const o = this.options;
    const identityHost = (this.identity.kind === 'device' && this.identity.gatewayHost) || this.identity.host;
    const [hostName, hostPort] = identityHost.split(':');
    const host = o.connectHost ?? hostName;
    const defaultPort = o.transport === 'amqp' ? (this.identity.kind === 'eventhub' ? 5672 : 5672) : o.transport === 'amqpws' ? 443 : 5671;
    // A port in the host name is the endpoint's own (the simulator's, an emulator's); WebSockets use theirs.
    const port = o.port ?? (hostPort && o.transport !== 'amqpws' ? Number(hostPort) : defaultPort);
    const base = {
      reconnect: false,
      hostname: hostName,
      idle_time_out: o.idleTimeoutMs,
      tcp_no_delay: true,
      operationTimeoutInSeconds: Math.ceil(o.operationTimeoutMs / 1000),
      // Event Hubs (the built-in endpoint after the redirect) takes CBS only over SASL ANONYMOUS or
      // MSSBCBS; a bare AMQP header is refused. A user name without a password makes rhea negotiate
      // ANONYMOUS, as @azure/core-amqp does with the key name (ConnectionContextBase). IoT Hub itself
      // stays without SASL, as the official Node SDKs connect (azure-iot-common amqp.ts).
      ...(this.identity.kind === 'eventhub' ? { username: this.identity.policy } : {}),
    };
    if (o.transport === 'amqp') return { ...base, transport: 'tcp', host, port } as RheaConnectionOptions;
    if (o.transport === 'amqpws') {
      return {
        ...base,
        // rhea uses the WebSocket for the connection; transport and host only satisfy the types.
        transport: 'tls',
        host,
        port,
        webSocketOptions: {
          webSocket: WebSocket,
          url: `wss://${host}:${port}${o.webSocketPath}`,
          protocol: ['AMQPWSB10'],
          options: { ca: o.ca, servername: hostName },
        },
      } as RheaConnectionOptions;
    }
    return { ...base, transport: 'tls', host, port, servername: hostName, ca: o.ca } as RheaConnectionOptions;
  }

  private async runAttempt(generation: number): Promise<void> {
    const transport = this.transportOptions() as RheaConnectionOptions & { host?: string; port?: number };
    log.connection(
      'connecting to %s:%s over %s as %s (attempt %d)',
      transport.host,
      transport.port,
      this.options.transport,
      describeIdentity(this.identity),
      this.reconnect.attempt + 1,
    );
    const connection = new Connection(transport);
    // rhea-promise adds a listener to the rhea connection for every link being attached and caps
    // them at 1,000: a gateway re-attaching its devices after a reconnect passes that at once.
    rheaConnectionOf(connection)?.setMaxListeners(0);
    this.connection = connection;
    const abort = new AbortController();
    // Every link attach on this connection listens to the one signal; a gateway has hundreds.
    setMaxListeners(0, abort.signal);
    this.abort = abort;
    const signal = abort.signal;
    const onGone = (ctx: EventContext): void => {
      const err = ctx.connection?.error ?? ctx.error;
      this.lost(generation, toHubError(err, 'the connection to the hub was lost'));
    };
    connection.on(ConnectionEvents.disconnected, onGone);
    connection.on(ConnectionEvents.connectionClose, onGone);
    connection.on(ConnectionEvents.connectionError, onGone);
    connection.on(ConnectionEvents.protocolError, onGone);
    connection.on(ConnectionEvents.error, onGone);
    try {
      await withTimeout(connection.open({ abortSignal: signal }), this.options.operationTimeoutMs, 'connecting to the hub');
      if (generation !== this.generation) return;
      this.setState('authenticating');
      const cbs = new CbsChannel(connection, this.options.operationTimeoutMs, (reason) =>
        this.lost(generation, new HubError('NotConnected', `${reason}; reconnecting`, { retryable: true })),
      );
      this.cbs = cbs;
      await cbs.open(signal);
      if (generation !== this.generation) return;
      // Every scope in use is authorised before any link attaches, so no attach is refused for want of a token.
      await Promise.all([...this.scopes.values()].map((s) => this.authorizeOrRefuse(s, generation)));
      if (generation !== this.generation) return;
      const session = await connection.createSession({ abortSignal: signal });
      session.on(SessionEvents.sessionError, (ctx: EventContext) => this.lost(generation, toHubError(ctx.session?.error, 'the AMQP session failed')));
      session.on(SessionEvents.sessionClose, (ctx: EventContext) => this.lost(generation, toHubError(ctx.session?.error, 'the AMQP session was closed')));
      if (generation !== this.generation) return;
      this.session = session;
      this.reconnect.reset();
      log.connection('open: %s, %d scope(s) authorised, %d link(s) to attach', describeIdentity(this.identity), this.scopes.size, this.links.size);
      this.setState('open');
      for (const link of this.links) link.attach(session, generation, signal);
    } catch (err) {
      this.lost(generation, toHubError(err, 'could not connect to the hub'));
    }
  }

  /** Puts (or re-puts) the token for a scope on this generation's CBS channel, and plans its renewal. */
  /**
   * Puts a token for a scope unless a valid one is in place. `renew` puts a fresh one anyway; until it
   * is accepted the old one still holds, so links attach under it instead of waiting on the renewal.
   */
  private authorize(state: ScopeState, generation: number, renew = false): Promise<void> {
    if (!renew && state.generation === generation && state.token && state.token.expiresAt > Date.now()) return Promise.resolve();
    if (state.generation === generation && state.pending) return state.pending;
    state.generation = generation;
    const run = async (): Promise<void> => {
      const token = makeToken(this.identity, state.scope, this.options.tokenLifetimeSec);
      const cbs = this.cbs;
      if (!cbs || generation !== this.generation) throw new HubError('NotConnected', 'the connection closed while authenticating', { retryable: true });
      log.cbs('put-token %s%s', token.audience, renew ? ' (renewal)' : '');
      try {
        await cbs.putToken(token.audience, token.token);
      } catch (err) {
        const error = toHubError(err, 'put-token failed');
        log.cbs('put-token %s refused or unanswered: %s %s', token.audience, error.code, error.message);
        throw error;
      }
      state.token = token;
      state.putAt = Date.now();
      this.planRenewal(state, generation);
    };
    state.pending = run().finally(() => {
      state.pending = undefined;
    });
    return state.pending;
  }

  /**
   * Authorises a scope on connect. A refusal that waiting cannot cure (the device was deleted or never
   * registered) is also told to the scope's users, so what they hold fails with the hub's code instead
   * of waiting through every reconnect; the connection then starts over with backoff.
   */
  private async authorizeOrRefuse(state: ScopeState, generation: number): Promise<void> {
    try {
      await this.authorize(state, generation);
    } catch (err) {
      const error = toHubError(err, 'authorising failed');
      if (failsTraffic(error)) this.emit('scopeError', state.scope, error);
      throw error;
    }
  }

  private planRenewal(state: ScopeState, generation: number): void {
    state.renewal.cancel();
    const token = state.token;
    if (!token || !token.renewable) return;
    const lifetimeMs = Math.max(1000, token.expiresAt - Date.now());
    const configured = this.options.tokenRenewMarginSec * 1000;
    const margin = Math.min(Math.max(configured, this.options.tokenLifetimeSec * 100), this.options.tokenLifetimeSec * 500);
    const wait = Math.max(0, Math.min(lifetimeMs - margin, lifetimeMs));
    log.cbs('renewal of %s in %d ms', token.audience, wait);
    state.renewal.after(
      () => {
        if (generation !== this.generation || !this.scopes.has(scopeKey(state.scope))) return;
        this.renew(state, generation);
      },
      () => wait,
    );
    // The planned wait is not a retry: should this renewal go unanswered, its retries start at the floor.
    state.renewal.reset();
  }

  /**
   * Puts a fresh token for a scope whose token is about to run out. A refusal means the key was
   * revoked or rotated, or the device was deleted: its users hear why, and the connection starts
   * over with backoff (Unauthorized straight to the cap). No answer is retried with backoff while the
   * old token still holds.
   */
  private renew(state: ScopeState, generation: number): void {
    this.authorize(state, generation, true).then(
      () => {
        this.emit('renewed', state.scope);
      },
      (err: unknown) => {
        const error = toHubError(err, 'token renewal failed');
        if (generation !== this.generation) return;
        if (isRefusal(error)) {
          if (failsTraffic(error)) this.emit('scopeError', state.scope, error);
          this.lost(generation, error);
          return;
        }
        const delay = state.renewal.after(() => {
          if (generation === this.generation && this.scopes.has(scopeKey(state.scope))) this.renew(state, generation);
        });
        log.cbs('renewal unanswered (%s); trying again in %d ms while the current token holds', error.code, delay);
      },
    );
  }

  /** For a link registered while open: authorise its scope, then attach. */
  private attachWhenAuthorized(link: LinkOwner, session: Session, generation: number, signal: AbortSignal): void {
    const state = this.scopes.get(scopeKey(this.tokenScope(link.scope)));
    if (!state) return;
    this.authorize(state, generation).then(
      () => {
        if (generation === this.generation && this.links.has(link)) link.attach(session, generation, signal);
      },
      (err: unknown) => {
        const error = toHubError(err, 'authorising a device failed');
        // A refusal no wait can cure fails that link's traffic; anything else (no answer, Unauthorized)
        // starts the connection over with backoff, nothing dropped, as on connect and renewal.
        if (failsTraffic(error)) this.emit('scopeError', link.scope, error);
        else this.lost(generation, error);
      },
    );
  }

  /** When the token now put for `scope` expires (ms since the epoch), if one is. */
  tokenExpiresAt(scope: Scope): number | undefined {
    return this.scopes.get(scopeKey(this.tokenScope(scope)))?.token?.expiresAt;
  }

  /** A link whose token lapsed or was refused asks for a fresh one before re-attaching. */
  async reauthorize(scope: Scope, generation: number): Promise<void> {
    const state = this.scopes.get(scopeKey(this.tokenScope(scope)));
    if (!state || generation !== this.generation) return;
    // A gateway's links share one token: when it lapses they all ask at once. One put serves them all,
    // and a token accepted moments ago is the fresh one they need.
    if (state.generation === generation && state.pending) return state.pending;
    if (state.generation === generation && state.putAt !== undefined && Date.now() - state.putAt < this.options.reconnectMinMs) return;
    state.token = undefined;
    state.generation = -1;
    await this.authorize(state, generation);
  }

  isCurrent(generation: number): boolean {
    return generation === this.generation && this.currentState === 'open';
  }

  private lost(generation: number, error: HubError): void {
    if (generation !== this.generation || this.currentState === 'closed') return;
    this.generation += 1;
    this.teardown();
    if (this.links.size === 0 && error.condition === 'amqp:connection:forced') {
      log.connection('closed by the hub with no link in use (%s); resting until a link needs it', error.message);
      // Closed for having no link (Event Hubs and Service Bus do that after five idle minutes, and a
      // config node whose senders all went idle holds none): nothing needs it now, so it rests until a
      // link registers instead of reconnecting only to be closed again.
      this.reconnect.reset();
      this.setState('idle', error);
      return;
    }
    for (const link of this.links) link.down();
    // Unauthorized goes straight to the cap: the key or policy must change before a retry can work.
    const delay = this.reconnect.after(
      () => {
        if (this.currentState === 'reconnecting') this.connect();
      },
      error.code === 'Unauthorized' ? () => this.options.reconnectMaxMs : undefined,
    );
    log.connection('lost: %s %s%s; reconnecting in %d ms', error.code, error.message, error.condition ? ` (${error.condition})` : '', delay);
    this.setState('reconnecting', error);
    this.emit('retry', delay, error);
  }

  /** Drops this generation's connection without waiting; listeners go with it. */
  private teardown(): void {
    for (const state of this.scopes.values()) {
      state.renewal.cancel();
      state.renewal.reset();
      state.token = undefined;
      state.putAt = undefined;
      state.generation = -1;
    }
    const connection = this.connection;
    const cbs = this.cbs;
    const session = this.session;
    this.abort?.abort();
    this.abort = undefined;
    this.connection = undefined;
    this.cbs = undefined;
    this.session = undefined;
    session?.removeAllListeners();
    if (cbs) void cbs.close();
    if (connection) void closeConnection(connection, this.options.closeTimeoutMs);
  }

  /** Closes every link and the connection; finishes within closeTimeoutMs even if the hub is gone. */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    log.connection('closing (%s)', describeIdentity(this.identity));
    this.closing = (async () => {
      this.generation += 1;
      this.reconnect.cancel();
      const error = new HubError('Closed', 'the connection was closed');
      for (const link of [...this.links]) link.shutdown(error);
      this.links.clear();
      for (const state of this.scopes.values()) state.renewal.cancel();
      this.scopes.clear();
      const connection = this.connection;
      const cbs = this.cbs;
      this.abort?.abort();
      this.abort = undefined;
      this.session?.removeAllListeners();
      this.connection = undefined;
      this.cbs = undefined;
      this.session = undefined;
      this.setState('closed');
      const polite = (async () => {
        await cbs?.close();
        if (connection) await closeConnection(connection, this.options.closeTimeoutMs);
      })();
      await withTimeout(polite, this.options.closeTimeoutMs + 500, 'closing').catch((err: unknown) =>
        log.connection('close did not finish cleanly: %s', reasonOf(err)),
      );
      this.removeAllListeners();
    })();
    return this.closing;
  }
}

/** Closes politely, then by force: a hub that is gone never answers the close. */
async function closeConnection(connection: Connection, timeoutMs: number): Promise<void> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    if (connection.isOpen()) await connection.close({ abortSignal: controller.signal });
  } catch (err) {
    // aborted or already broken: fall through to the hard stop
    log.connection('polite close did not finish (%s); dropping the socket', reasonOf(err));
  } finally {
    clearTimeout(timer);
    destroySocket(connection);
    connection.removeAllSessions();
    connection.removeAllListeners();
  }
}

/**
 * rhea keeps the socket inside its connection; a bounded close has to reach it. Destroying it with an
 * error makes rhea run its disconnect path, which clears its heartbeat timers: a plain destroy leaves
 * them running for minutes and keeps the process alive.
 */
function destroySocket(connection: Connection): void {
  const socket = rheaConnectionOf(connection)?.socket;
  if (socket?.destroy) {
    if (!socket.destroyed) socket.destroy(new Error('connection closed by this client'));
  } else socket?.end?.();
}

/** The hub answered and said no (as opposed to not answering, or the link or connection going). */
function isRefusal(error: HubError): boolean {
  return !error.retryable;
}

/**
 * A refusal that waiting cannot cure (the device is not registered, too many tokens): what waits for
 * that scope fails with the hub's code. Unauthorized is not among them: a token service that refuses
 * for a while (key rotation, clock skew) is waited out with backoff, and nothing is dropped meanwhile.
 */
function failsTraffic(error: HubError): boolean {
  return isRefusal(error) && error.code !== 'Unauthorized';
}

export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new HubError('Timeout', `${what} took longer than ${Math.round(ms / 1000)} s`, { retryable: true })), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
