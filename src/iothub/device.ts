/**
 * The device side of IoT Hub on one connection: which device (or module) a message is for, telemetry
 * senders per device under one bound on everything waiting, and a cloud-to-device inbox that settles
 * by lock token. A device identity speaks only for itself; a gateway (a policy with DeviceConnect, or
 * the local simulator's owner) speaks for any device, every one of them on the same connection.
 */
import { EventEmitter } from 'node:events';
import type { Identity } from './connection-string';
import { scopeKey, type Scope } from './credentials';
import { HubError } from './errors';
import { log, reasonOf } from './log';
import type { HubConnection } from './hub-connection';
import { HubReceiver, HubSender, type AmqpMessage, type Received, type SendOptions, type Settlement } from './links';
import { isValidId } from './message';

export interface DeviceTarget {
  deviceId: string;
  moduleId?: string;
}

const SETTLEMENTS: readonly Settlement[] = ['complete', 'reject', 'abandon'];

/**
 * IoT Hub holds a cloud-to-device lock for one minute (fixed); an unsettled message is handed back a
 * little after that, so the two clocks need not agree.
 */
export const HAND_BACK_MS = 65_000;

export function deviceAddress(target: DeviceTarget, kind: 'events' | 'devicebound'): string {
  // IoT Hub decodes each path segment; ids may hold characters such as '#', '?' and '%'.
  let path = `/devices/${encodeURIComponent(target.deviceId)}`;
  if (target.moduleId !== undefined) path += `/modules/${encodeURIComponent(target.moduleId)}`;
  return `${path}/messages/${kind}`;
}

export function scopeOf(target: DeviceTarget): Scope {
  return target.moduleId === undefined ? { deviceId: target.deviceId } : { deviceId: target.deviceId, moduleId: target.moduleId };
}

/** "<deviceId>" or "<deviceId>/<moduleId>", as msg.topic carries it. */
export function targetName(target: DeviceTarget): string {
  return target.moduleId === undefined ? target.deviceId : `${target.deviceId}/${target.moduleId}`;
}

function given(value: unknown): boolean {
  return value !== undefined && value !== null && value !== '';
}

/**
 * The device a message is for. A device identity is its own target: asking for another device (or
 * module) is an error, never a silent send as someone else. A gateway needs to be told the device.
 */
export interface TargetRequest {
  deviceId?: unknown;
  moduleId?: unknown;
}

/**
 * A device or module id as the hub reads it: a number (common from PLC data, `msg.deviceId = 4711`)
 * is its text; anything else is left for the checks to judge.
 */
export function idText(value: unknown): unknown {
  if ((typeof value === 'number' && Number.isFinite(value)) || typeof value === 'bigint') return String(value);
  return value;
}

/** How many characters of a refused id an error repeats: enough to spot it, not a whole payload. */
const SHOWN_ID_CHARS = 40;

/** A refused id as an error shows it: quoted and cut short, or what kind of value it was. */
export function shownId(value: unknown): string {
  if (typeof value !== 'string') return `a value of type ${value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value}`;
  return JSON.stringify(value.length > SHOWN_ID_CHARS ? `${value.slice(0, SHOWN_ID_CHARS)}…` : value);
}

const ALLOWED_ID = "up to 128 ASCII letters, digits and - . + % _ # * ? ! ( ) , : = @ $ '";

function normalized(requested: TargetRequest): TargetRequest {
  return { deviceId: idText(requested.deviceId), moduleId: idText(requested.moduleId) };
}

export function resolveTarget(identity: Identity, asked: TargetRequest): DeviceTarget {
  const requested = normalized(asked);
  if (identity.kind === 'device') {
    const own = identity.moduleId === undefined ? identity.deviceId : `${identity.deviceId}/${identity.moduleId}`;
    if (given(requested.deviceId) && requested.deviceId !== identity.deviceId) {
      throw new HubError('IdentityMismatch', `this connection is device ${own}; it cannot act for device "${String(requested.deviceId).slice(0, 128)}"`);
    }
    if (given(requested.moduleId) && requested.moduleId !== identity.moduleId) {
      throw new HubError(
        'IdentityMismatch',
        `this connection is ${identity.moduleId ? `module ${own}` : `device ${own}, not a module`}; it cannot act for module "${String(requested.moduleId).slice(0, 128)}"`,
      );
    }
    return identity.moduleId === undefined ? { deviceId: identity.deviceId } : { deviceId: identity.deviceId, moduleId: identity.moduleId };
  }
  if (identity.kind !== 'gateway') {
    throw new HubError('WrongRole', `a ${identity.kind === 'eventhub' ? 'Event Hubs' : 'service'} connection cannot act for a device`);
  }
  return namedTarget(requested);
}

/**
 * The device (or module) a gateway acts for or the service sends to: whichever one is named, as long
 * as the ids are ones IoT Hub accepts, checked before anything goes on the wire.
 */
export function namedTarget(asked: TargetRequest): DeviceTarget {
  const requested = normalized(asked);
  if (!given(requested.deviceId)) throw new HubError('MissingDeviceId', "no device id: set msg.deviceId or the node's Device setting");
  if (!isValidId(requested.deviceId)) {
    throw new HubError('InvalidDeviceId', `the device id ${shownId(requested.deviceId)} is not a valid IoT Hub device id (${ALLOWED_ID})`);
  }
  if (!given(requested.moduleId)) return { deviceId: requested.deviceId };
  if (!isValidId(requested.moduleId)) {
    throw new HubError('InvalidModuleId', `the module id ${shownId(requested.moduleId)} is not a valid IoT Hub module id (${ALLOWED_ID})`);
  }
  return { deviceId: requested.deviceId, moduleId: requested.moduleId };
}

// ---- telemetry ------------------------------------------------------------------------------

export interface DeviceSendersOptions {
  /** Most messages waiting or in flight across every device; more fail at once with BufferFull. */
  maxPending: number;
  /**
   * A device's sender with nothing waiting is closed after this long without a message (default 10
   * minutes), and made again on its next one: a gateway that sees many device ids over months would
   * otherwise keep a link and a token for every one of them (IoT Hub takes about 1,000 per connection).
   */
  idleCloseMs?: number;
}

const DEFAULT_IDLE_CLOSE_MS = 10 * 60_000;

/** Devices given up on are remembered (to tell each once) up to this many; a gateway may see any number. */
const MAX_GIVEN_UP = 1000;

/** What DeviceSenders tell their user. */
export interface DeviceSendersEvents {
  /** The hub refused a device for good: its messages fail. Told once, until a message for it is accepted. */
  gaveUp: [target: DeviceTarget, error: HubError];
  /** A message for a device given up on was accepted. */
  resumed: [target: DeviceTarget];
}

function targetOfScope(scope: Scope): DeviceTarget {
  return scope.moduleId === undefined ? { deviceId: scope.deviceId ?? '' } : { deviceId: scope.deviceId ?? '', moduleId: scope.moduleId };
}

/**
 * One telemetry sender per device, made on the first message for it. Each keeps its messages in
 * order and re-sends after reconnects; this adds the one bound a node promises its users, and fails
 * the messages of a device the hub refuses for good (not registered, not allowed) instead of keeping
 * them forever.
 */
export class DeviceSenders extends EventEmitter<DeviceSendersEvents> {
  private readonly senders = new Map<string, HubSender>();
  /** The code each device was given up with, by scope key, oldest first. */
  private readonly givenUp = new Map<string, string>();
  /** When each device's sender was last given a message (Date.now()). */
  private readonly lastUsed = new Map<string, number>();
  private sweepTimer: NodeJS.Timeout | undefined;
  private readonly idleCloseMs: number;
  private waiting = 0;
  private closed = false;
  private connection: HubConnection | undefined;
  private readonly onScopeError = (scope: Scope, error: HubError): void => {
    const key = scopeKey(scope);
    const sender = this.senders.get(key);
    if (sender) this.retire(key, sender, { target: targetOfScope(scope), error });
  };

  constructor(
    private readonly ready: Promise<HubConnection>,
    private readonly options: DeviceSendersOptions,
  ) {
    super();
    this.idleCloseMs = options.idleCloseMs ?? DEFAULT_IDLE_CLOSE_MS;
    ready.then(
      (connection) => {
        if (this.closed) return;
        this.connection = connection;
        connection.on('scopeError', this.onScopeError);
      },
      // Whoever made the connection promise reports its failure; here it only means no scope errors to watch.
      (err: unknown) => log.link('device links without a connection: %s', reasonOf(err)),
    );
  }

  /** Messages handed over and not yet settled by the hub, across every device. */
  get pending(): number {
    return this.waiting;
  }

  /**
   * Sends for the device asked for (checked against the connection's identity, see resolveTarget).
   * Resolves with the device when the hub accepts the message; rejects with a HubError otherwise.
   */
  send(requested: TargetRequest, message: AmqpMessage, options: SendOptions = {}): Promise<DeviceTarget> {
    if (this.closed) return Promise.reject(new HubError('Closed', 'the sender is closed'));
    if (this.waiting >= this.options.maxPending) {
      return Promise.reject(
        new HubError('BufferFull', `${this.waiting} messages are already waiting for the hub (the limit is ${this.options.maxPending})`, { retryable: true }),
      );
    }
    this.waiting += 1;
    // Callbacks on one promise run in the order they were added: order per device holds even
    // while the connection is still being made.
    const sent = this.ready.then(async (connection) => {
      const target = resolveTarget(connection.identity, requested);
      await this.senderFor(connection, target).send(message, options);
      this.accepted(target);
      return target;
    });
    return sent.finally(() => {
      this.waiting -= 1;
    });
  }

  private senderFor(connection: HubConnection, target: DeviceTarget): HubSender {
    if (this.closed) throw new HubError('Closed', 'the sender is closed');
    const scope = scopeOf(target);
    const key = scopeKey(scope);
    let sender = this.senders.get(key);
    if (!sender) {
      // The node's bound is the smaller one, so the sender's own never fires first.
      const made = new HubSender(connection, deviceAddress(target, 'events'), scope, { maxPending: this.options.maxPending + 1, errorContext: 'device' });
      made.on('detached', (error: HubError) => {
        // A lapsed token (Unauthorized) is put again by the link itself; a refusal that retrying
        // cannot cure fails what waits, and the next message tries afresh.
        if (!error.retryable && error.code !== 'Unauthorized') queueMicrotask(() => this.retire(key, made, { target, error }));
      });
      this.senders.set(key, made);
      sender = made;
      this.armSweep();
    }
    // The caller hands the message over in the same turn, so a sweep cannot fall in between.
    this.lastUsed.set(key, Date.now());
    return sender;
  }

  /** Closes a device's sender: idle, or (with `refusal`) refused for good, failing what waits. */
  private retire(key: string, sender: HubSender, refusal?: { target: DeviceTarget; error: HubError }): void {
    if (this.senders.get(key) !== sender) return;
    this.senders.delete(key);
    this.lastUsed.delete(key);
    void sender.close(refusal?.error);
    if (refusal && this.givenUp.get(key) !== refusal.error.code) {
      this.givenUp.delete(key);
      this.givenUp.set(key, refusal.error.code);
      if (this.givenUp.size > MAX_GIVEN_UP) this.givenUp.delete(this.givenUp.keys().next().value as string);
      this.emit('gaveUp', refusal.target, refusal.error);
    }
  }

  private accepted(target: DeviceTarget): void {
    if (this.givenUp.size > 0 && this.givenUp.delete(scopeKey(scopeOf(target)))) this.emit('resumed', target);
  }

  private armSweep(): void {
    if (this.sweepTimer || this.closed) return;
    this.sweepTimer = setTimeout(() => this.sweep(), Math.max(10, this.idleCloseMs / 2));
    this.sweepTimer.unref();
  }

  /** Closes the senders idle for idleCloseMs with nothing waiting; a sender still busy is kept. */
  private sweep(): void {
    this.sweepTimer = undefined;
    if (this.closed) return;
    const now = Date.now();
    for (const [key, sender] of [...this.senders]) {
      if (sender.pending === 0 && now - (this.lastUsed.get(key) ?? 0) >= this.idleCloseMs) this.retire(key, sender);
    }
    if (this.senders.size > 0) this.armSweep();
  }

  /** Devices with a sender now. */
  get devices(): number {
    return this.senders.size;
  }

  /** Fails whatever still waits with `Closed` and detaches every sender. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.sweepTimer) clearTimeout(this.sweepTimer);
    this.sweepTimer = undefined;
    this.lastUsed.clear();
    this.connection?.removeListener('scopeError', this.onScopeError);
    this.connection = undefined;
    const all = [...this.senders.values()];
    this.senders.clear();
    await Promise.all(all.map((s) => s.close()));
  }
}

// ---- cloud-to-device ------------------------------------------------------------------------

export interface C2dInboxOptions {
  settle: 'auto' | 'manual';
  /** Link credit: most messages delivered and not yet settled (manual) or prefetched (auto). */
  prefetch: number;
  /** An unsettled message is handed back (abandoned) after this long, once its lock is surely gone. */
  handBackMs?: number;
}

interface Held {
  received: Received;
  timer: NodeJS.Timeout;
}

/** What a C2dInbox tells its user. */
export interface C2dInboxEvents {
  message: [received: Received];
  attached: [];
  detached: [error: HubError];
  /** Messages emitted and not settled yet (manual mode). */
  unsettled: [count: number];
}

/**
 * A device's cloud-to-device messages. In manual mode each message waits, by lock token, for the
 * flow to settle it; a token that is unknown, settled already or whose lock ran out fails with
 * MessageLockLost. A message the flow never settles is handed back once its lock is gone, so it does
 * not hold link credit forever.
 *
 * Events: `message` (Received), `attached`, `detached` (HubError), `unsettled` (count).
 */
export class C2dInbox extends EventEmitter<C2dInboxEvents> {
  private readonly receiver: HubReceiver;
  private readonly held = new Map<string, Held>();
  private readonly handBackMs: number;

  constructor(
    connection: HubConnection,
    readonly target: DeviceTarget,
    private readonly options: C2dInboxOptions,
  ) {
    super();
    this.handBackMs = options.handBackMs ?? HAND_BACK_MS;
    this.receiver = new HubReceiver(connection, deviceAddress(target, 'devicebound'), scopeOf(target), { credit: options.prefetch, settle: options.settle });
    this.receiver.on('message', (received: Received) => this.onMessage(received));
    this.receiver.on('attached', () => this.emit('attached'));
    this.receiver.on('detached', (error: HubError) => {
      // Locks die with the link: the hub delivers those messages again, with new tokens.
      this.forgetAll();
      this.emit('detached', error);
    });
  }

  get isAttached(): boolean {
    return this.receiver.isAttached;
  }

  /** Why the hub refuses this device's C2D link for want of a right, until it attaches again. */
  get refusal(): HubError | undefined {
    return this.receiver.refusal;
  }

  /** Messages emitted and not settled yet (manual mode). */
  get unsettled(): number {
    return this.held.size;
  }

  private onMessage(received: Received): void {
    if (this.options.settle === 'manual') {
      const timer = setTimeout(() => this.lapse(received.lockToken), this.handBackMs);
      timer.unref();
      this.held.set(received.lockToken, { received, timer });
    }
    this.emit('message', received);
    if (this.options.settle === 'manual') this.emit('unsettled', this.held.size);
  }

  /** Settles a message by its lock token; resolves when the hub confirms. */
  settle(lockToken: unknown, outcome: unknown): Promise<void> {
    if (this.options.settle !== 'manual') {
      return Promise.reject(new HubError('InvalidOperation', 'this node completes every message by itself; set Settle to manual to settle from the flow'));
    }
    if (typeof outcome !== 'string' || !(SETTLEMENTS as readonly string[]).includes(outcome)) {
      return Promise.reject(new HubError('InvalidMessage', `msg.settle must be one of ${SETTLEMENTS.join(', ')}`));
    }
    if (typeof lockToken !== 'string' || lockToken === '') {
      return Promise.reject(new HubError('InvalidMessage', 'msg.lockToken must be the lock token of a message this node sent'));
    }
    const held = this.held.get(lockToken);
    if (!held) {
      return Promise.reject(
        new HubError('MessageLockLost', 'no message with this lock token waits here: it was settled already, its lock expired, or the connection was lost'),
      );
    }
    this.forget(lockToken, held);
    return held.received.settle(outcome as Settlement);
  }

  private lapse(lockToken: string): void {
    const held = this.held.get(lockToken);
    if (!held) return;
    this.forget(lockToken, held);
    // The lock has gone: the hub answers lock-lost, and the link gets its credit back.
    held.received.settle('abandon').catch((err: unknown) => log.link('handing back %s after its lock lapsed: %s', lockToken, reasonOf(err)));
  }

  private forget(lockToken: string, held: Held): void {
    clearTimeout(held.timer);
    this.held.delete(lockToken);
    this.emit('unsettled', this.held.size);
  }

  private forgetAll(): void {
    if (this.held.size === 0) return;
    for (const held of this.held.values()) clearTimeout(held.timer);
    this.held.clear();
    this.emit('unsettled', 0);
  }

  async close(): Promise<void> {
    for (const held of this.held.values()) clearTimeout(held.timer);
    this.held.clear();
    await this.receiver.close();
    this.removeAllListeners();
  }
}
