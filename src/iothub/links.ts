/**
 * Links that outlive connections. A HubSender keeps every message until the hub has settled it:
 * sends are pipelined within the link credit, deliveries still unsettled when the connection drops are
 * sent again after the reconnect (at-least-once, in order), and throttling pauses the link instead of
 * failing the message. A HubReceiver re-attaches after every reconnect and bounds its credit.
 */
import { EventEmitter } from 'node:events';
import {
  ReceiverEvents,
  SenderEvents,
  type Delivery,
  type EventContext,
  type Message,
  type Receiver,
  type ReceiverOptions,
  type Sender,
  type Session,
} from 'rhea-promise';
import rhea = require('rhea');
import { applyDisposition } from '../amqp/dispositions';
import { creditLeft, forgetDelivery, rheaSenderOf } from '../amqp/rhea-internals';
import { backoffDelay, throttleDelay } from './backoff';
import type { Scope } from './credentials';
import { errorFromCondition, HubError, toHubError, type AmqpErrorLike, type ErrorContext } from './errors';
import type { HubConnection, LinkOwner } from './hub-connection';
import { log } from './log';

export type AmqpMessage = Message;

/** The longest delay Node's timers take as given. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** How many more deliveries the link's credit takes, counting those handed to rhea but not yet sent. */
function creditOf(link: Sender, handed: number): number {
  const inner = rheaSenderOf(link);
  return inner ? creditLeft(inner, handed) : link.sendable() ? 1 : 0;
}

/** A refusal with less than this left of a fresh token may be the token lapsing, not a missing right. */
const FRESH_MARGIN_MS = 1000;
/** How long a link must stay attached to count as taken by the hub. */
const STABLE_MS = 1000;

/** Link-level retry: a detach while the connection stays up (stolen, redirect, forced, token lapsed). */
abstract class DurableLink extends EventEmitter implements LinkOwner {
  protected generation = -1;
  private signal: AbortSignal | undefined;
  protected closed = false;
  private retries = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private attached = false;
  /** The generation whose link is being created (createLink has not resolved yet). */
  private creating: number | undefined;
  /**
   * A failure of the link being created. The hub answers some attaches with attach plus detach (a
   * redirect, a refusal), and the detach can be reported before createLink resolves and the link
   * becomes current; attach() acts on it once it has.
   */
  private early: { link: Sender | Receiver; error: HubError } | undefined;
  /**
   * When the token put again after an Unauthorized detach expires; a refusal of the next attach well
   * before then is not about a lapsed token.
   */
  private freshUntil: number | undefined;
  /** Attaches refused as Unauthorized in a row, each with a fresh token. */
  private freshRefusals = 0;
  private refusedWith: HubError | undefined;
  private attachedAt = 0;
  private stableTimer: NodeJS.Timeout | undefined;

  constructor(
    protected readonly hub: HubConnection,
    readonly address: string,
    readonly scope: Scope,
  ) {
    super();
  }

  /** The connection this link lives on. */
  get connection(): HubConnection {
    return this.hub;
  }

  /**
   * Why the hub refuses this link for want of a right (set after repeated Unauthorized refusals with
   * fresh tokens), until it attaches again.
   */
  get refusal(): HubError | undefined {
    return this.refusedWith;
  }

  /** True while a rhea link is attached on the current connection. */
  get isAttached(): boolean {
    return this.attached;
  }

  protected start(): void {
    this.hub.register(this);
  }

  attach(session: Session, generation: number, signal: AbortSignal): void {
    if (this.closed) return;
    this.generation = generation;
    this.signal = signal;
    this.clearRetry();
    this.creating = generation;
    this.early = undefined;
    this.createLink(session, generation, signal).then(
      () => {
        const early = this.takeEarly(generation);
        if (generation !== this.generation || this.closed) return;
        if (early && early.link === this.currentLink()) {
          this.linkFailed(session, generation, early.error, early.link);
          return;
        }
        this.attached = true;
        this.attachedAt = Date.now();
        // A refusal on record must not outlive an attach: should the connection drop within the
        // second, sends would be refused instead of waiting for it. A new refusal sets it again.
        this.refusedWith = undefined;
        // The hub may answer an attach it refuses with attach and then detach: only a link that
        // stays attached a moment counts as taken (backoff and the refusal count start over).
        if (this.stableTimer) clearTimeout(this.stableTimer);
        this.stableTimer = setTimeout(() => {
          this.stableTimer = undefined;
          if (!this.attached || generation !== this.generation) return;
          this.retries = 0;
          this.freshUntil = undefined;
          this.freshRefusals = 0;
        }, STABLE_MS);
        this.stableTimer.unref();
        this.emit('attached');
      },
      (err: unknown) => {
        this.takeEarly(generation);
        this.linkFailed(session, generation, toHubError(err, `attaching ${this.address} failed`));
      },
    );
  }

  private takeEarly(generation: number): { link: Sender | Receiver; error: HubError } | undefined {
    if (this.creating !== generation) return undefined;
    const early = this.early;
    this.creating = undefined;
    this.early = undefined;
    return early;
  }

  down(): void {
    this.generation = -1;
    this.clearRetry();
    this.dropLink();
    if (this.attached) {
      this.attached = false;
      this.emit('detached', new HubError('NotConnected', 'the connection to the hub was lost', { retryable: true }));
    }
  }

  shutdown(error: HubError): void {
    if (this.closed) return;
    this.closed = true;
    this.clearRetry();
    this.attached = false;
    this.fail(error);
    // For whoever waits on this link (an attach, an answer): it will never come now.
    this.emit('closed', error);
    const link = this.dropLink();
    if (link) void link.close({ closeSession: false }).catch(() => undefined).finally(() => link.removeAllListeners());
  }

  /** The hub detached this link (or refused the attach): re-attach with backoff on the same connection. */
  protected linkFailed(session: Session, generation: number, error: HubError, failed?: Sender | Receiver): void {
    if (generation !== this.generation || this.closed) return;
    // rhea reports a detach as an error and then a close: act once, and only for the current link.
    if (this.retryTimer) return;
    if (failed !== undefined && failed !== this.currentLink()) {
      if (this.currentLink() === undefined && this.creating === generation) this.early ??= { link: failed, error };
      return;
    }
    const wasAttached = this.attached;
    this.attached = false;
    if (this.stableTimer) clearTimeout(this.stableTimer);
    this.stableTimer = undefined;
    const old = this.dropLink();
    if (old) void old.close({ closeSession: false }).catch(() => undefined).finally(() => old.removeAllListeners());
    // Unauthorized again right after a fresh token was accepted, with a second of it left, and twice in
    // a row: the policy or device lacks the right (a DeviceConnect policy sending C2D, say), which no
    // retry cures until someone changes it. Once could be a token that lapsed on a stalled machine.
    const now = Date.now();
    const shortLived = !wasAttached || now - this.attachedAt < STABLE_MS;
    const fresh = error.code === 'Unauthorized' && shortLived && this.freshUntil !== undefined && now < this.freshUntil - FRESH_MARGIN_MS;
    this.freshUntil = undefined;
    this.freshRefusals = fresh ? this.freshRefusals + 1 : 0;
    let refusal: HubError | undefined;
    if (fresh && this.freshRefusals >= 2) {
      refusal = this.refusedWith ?? new HubError(error.code, `the hub refuses ${this.address} with these credentials: ${error.message}`);
      this.refusedWith = refusal;
    }
    this.emit('detached', error);
    // Every time, not only the first: what was taken while an attach looked good fails too.
    if (refusal) this.refused(refusal);
    const delay =
      error.code === 'Unauthorized' || !error.retryable && error.code !== 'ReceiverDisconnected'
        ? Math.max(backoffDelay(this.retries, { minMs: this.hub.options.reconnectMinMs, maxMs: this.hub.options.reconnectMaxMs }), this.hub.options.reconnectMinMs)
        : backoffDelay(this.retries, { minMs: this.hub.options.reconnectMinMs, maxMs: this.hub.options.reconnectMaxMs, random: this.hub.options.random });
    this.retries += 1;
    log.link('%s detached: %s %s; attaching again in %d ms%s', this.address, error.code, error.message, delay, refusal ? ' (refused for want of a right)' : '');
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (!this.hub.isCurrent(generation) || this.closed) return;
      // A lapsed or refused token is put again before the link comes back.
      const ready = error.code === 'Unauthorized' ? this.hub.reauthorize(this.scope, generation) : Promise.resolve();
      ready.then(
        () => {
          if (!this.hub.isCurrent(generation) || this.closed) return;
          this.freshUntil = error.code === 'Unauthorized' ? this.hub.tokenExpiresAt(this.scope) : undefined;
          if (this.signal) this.attach(session, generation, this.signal);
        },
        (err: unknown) => this.linkFailed(session, generation, toHubError(err, 'authorising again failed')),
      );
    }, delay);
    this.retryTimer.unref();
  }

  private clearRetry(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    if (this.stableTimer) clearTimeout(this.stableTimer);
    this.stableTimer = undefined;
  }

  protected abstract createLink(session: Session, generation: number, signal: AbortSignal): Promise<void>;
  /** Forgets the current rhea link (moving its unsettled work back) and returns it for closing. */
  protected abstract dropLink(): Sender | Receiver | undefined;
  protected abstract currentLink(): Sender | Receiver | undefined;
  /** Fails whatever waits on this link (it is closing for good). */
  protected abstract fail(error: HubError): void;

  /** The hub refuses this link for want of a right; it is still retried (slowly) in case that changes. */
  protected refused(_error: HubError): void {
    // Receivers just keep retrying: they hold nothing a caller waits on.
  }

  /** Closes for good; whatever still waits fails with `error` (by default `Closed`). */
  async close(error: HubError = new HubError('Closed', 'the link was closed')): Promise<void> {
    if (this.closed) return;
    this.hub.unregister(this);
    this.shutdown(error);
  }
}

// ---- sender ---------------------------------------------------------------------------------

/**
 * Sends made one by one from separate callbacks (a Node-RED flow delivers each msg in a callback of
 * its own) go to rhea together, once per loop turn, for every sender at once. rhea walks every link of
 * the connection each time it is handed work, so a gateway with a thousand device links would pay that
 * walk once per message instead of once per turn.
 */
const toPump = new Set<() => void>();
let pumpScheduled = false;

function schedulePump(pump: () => void): void {
  toPump.add(pump);
  if (pumpScheduled) return;
  pumpScheduled = true;
  setImmediate(() => {
    pumpScheduled = false;
    const batch = [...toPump];
    toPump.clear();
    for (const run of batch) run();
  });
}

export interface SendOptions {
  /** ms since the epoch after which the message is not worth sending. */
  expiresAt?: number;
}

interface Outgoing {
  /** Order of send(): messages that come back from the wire go back in this order. */
  seq: number;
  message: Message;
  resolve: () => void;
  reject: (err: HubError) => void;
  expiresAt?: number;
  expiryTimer?: NodeJS.Timeout;
}

export interface HubSenderOptions {
  /** Most messages waiting or in flight; more fail at once with BufferFull. */
  maxPending?: number;
  /** How conditions map to codes on this link (C2D queue full vs device quota). */
  errorContext?: ErrorContext;
}

export class HubSender extends DurableLink {
  private link: Sender | undefined;
  private readonly waiting: Outgoing[] = [];
  private readonly inflight = new Map<number, Outgoing>();
  /** The rhea deliveries of what is in flight, by delivery id (to free them if the link goes). */
  private readonly deliveries = new Map<number, Delivery>();
  /** Deliveries handed to rhea on the current link (see creditLeft). */
  private handed = 0;
  private pausedUntil = 0;
  private pauseTimer: NodeJS.Timeout | undefined;
  private throttles = 0;
  private readonly pumpNow = (): void => this.pump();
  /** A retryable refusal came in; the round lasts until every message then in flight is answered. */
  private refusedRound = false;
  /** Refused lately: send one at a time until the hub takes one. */
  private probing = false;
  private nextSeq = 0;
  private readonly maxPending: number;
  private readonly errorContext: ErrorContext;

  constructor(hub: HubConnection, address: string, scope: Scope, options: HubSenderOptions = {}) {
    super(hub, address, scope);
    this.maxPending = options.maxPending ?? 1000;
    this.errorContext = options.errorContext ?? 'device';
    this.start();
  }

  protected override refused(error: HubError): void {
    this.fail(error);
  }

  /** Messages not yet settled by the hub (waiting plus in flight). */
  get pending(): number {
    return this.waiting.length + this.inflight.size;
  }

  /** Resolves when the hub accepts the message; rejects with a HubError otherwise. */
  send(message: Message, options: SendOptions = {}): Promise<void> {
    if (this.closed) return Promise.reject(new HubError('Closed', 'the sender is closed'));
    if (this.refusal && !this.isAttached) return Promise.reject(this.refusal);
    if (this.pending >= this.maxPending) {
      return Promise.reject(new HubError('BufferFull', `${this.pending} messages are already waiting for the hub (the limit is ${this.maxPending})`, { retryable: true }));
    }
    if (options.expiresAt !== undefined && options.expiresAt <= Date.now()) {
      return Promise.reject(new HubError('Expired', 'the message expired before it could be sent'));
    }
    return new Promise<void>((resolve, reject) => {
      const entry: Outgoing = { seq: this.nextSeq++, message, resolve, reject };
      if (options.expiresAt !== undefined) {
        entry.expiresAt = options.expiresAt;
        this.armExpiry(entry);
      }
      this.waiting.push(entry);
      schedulePump(this.pumpNow);
    });
  }

  private armExpiry(entry: Outgoing): void {
    if (entry.expiresAt === undefined) return;
    // Node fires a timeout longer than 2^31-1 ms at once: a far expiry is waited for in steps.
    entry.expiryTimer = setTimeout(() => this.expire(entry), Math.min(Math.max(0, entry.expiresAt - Date.now()), MAX_TIMER_MS));
    entry.expiryTimer.unref();
  }

  private expire(entry: Outgoing): void {
    entry.expiryTimer = undefined;
    if (entry.expiresAt !== undefined && entry.expiresAt > Date.now()) {
      this.armExpiry(entry);
      return;
    }
    const index = this.waiting.indexOf(entry);
    if (index < 0) return; // in flight: the hub decides
    this.waiting.splice(index, 1);
    entry.reject(new HubError('Expired', 'the message expired while waiting for the hub'));
  }

  protected async createLink(session: Session, generation: number, signal: AbortSignal): Promise<void> {
    const sender = await session.createSender({
      abortSignal: signal,
      target: { address: this.address },
      // The link an event came from, not whichever is current when it fires: a late close of an
      // old link must not drop its replacement.
      onError: (ctx: EventContext) => this.linkFailed(session, generation, toHubError(ctx.sender?.error, `the hub detached ${this.address}`), ctx.sender),
      onClose: (ctx: EventContext) => {
        if (!this.closed) this.linkFailed(session, generation, toHubError(ctx.sender?.error, `the hub closed ${this.address}`), ctx.sender);
      },
    });
    if (generation !== this.generation || this.closed) {
      void sender.close({ closeSession: false }).catch(() => undefined);
      return;
    }
    sender.on(SenderEvents.accepted, (ctx: EventContext) => this.settled(sender, ctx.delivery, 'accepted'));
    sender.on(SenderEvents.rejected, (ctx: EventContext) => this.settled(sender, ctx.delivery, 'rejected'));
    sender.on(SenderEvents.released, (ctx: EventContext) => this.settled(sender, ctx.delivery, 'released'));
    sender.on(SenderEvents.sendable, () => this.pump());
    this.link = sender;
    this.pump();
  }

  protected currentLink(): Sender | undefined {
    return this.link;
  }

  protected dropLink(): Sender | undefined {
    const link = this.link;
    this.link = undefined;
    // Unsettled deliveries go back in send order, to be sent again on the next link; rhea is told to
    // forget them on the old one.
    const unsettled = [...this.inflight.values()];
    this.inflight.clear();
    for (const delivery of this.deliveries.values()) forgetDelivery(delivery);
    this.deliveries.clear();
    this.handed = 0;
    this.requeue(...unsettled);
    return link;
  }

  protected fail(error: HubError): void {
    if (this.pauseTimer) clearTimeout(this.pauseTimer);
    // Without its timer a pause would hold the next link's messages until something else pumps.
    this.pauseTimer = undefined;
    this.pausedUntil = 0;
    for (const entry of [...this.inflight.values(), ...this.waiting]) {
      if (entry.expiryTimer) clearTimeout(entry.expiryTimer);
      entry.reject(error);
    }
    this.inflight.clear();
    for (const delivery of this.deliveries.values()) forgetDelivery(delivery);
    this.deliveries.clear();
    this.waiting.length = 0;
  }

  private pump(): void {
    const link = this.link;
    if (!link || this.closed) return;
    if (Date.now() < this.pausedUntil) return;
    if (this.refusedRound) {
      // Nothing new goes out until every message of a refused round has its answer: one sent now
      // could be taken while an older one is still being refused, and order would be lost.
      if (this.inflight.size > 0) return;
      this.refusedRound = false;
    }
    // After a refusal one message goes alone until the hub takes one again, for the same reason.
    while (this.waiting.length > 0 && creditOf(link, this.handed) > 0 && !(this.probing && this.inflight.size > 0)) {
      const entry = this.waiting.shift() as Outgoing;
      if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
        // Came back from the wire after its time (a fault while in flight): not worth sending again.
        if (entry.expiryTimer) clearTimeout(entry.expiryTimer);
        entry.reject(new HubError('Expired', 'the message expired while waiting for the hub'));
        continue;
      }
      let delivery: Delivery;
      try {
        delivery = link.send(entry.message);
      } catch {
        // The link broke under us; its error handler takes it from here.
        this.requeue(entry);
        return;
      }
      this.handed += 1;
      this.inflight.set(delivery.id, entry);
      this.deliveries.set(delivery.id, delivery);
    }
  }

  private settled(sender: Sender, delivery: Delivery | undefined, outcome: 'accepted' | 'rejected' | 'released'): void {
    // Delivery ids are per link: a late settlement from a dropped link must not touch the new one's.
    if (!delivery || sender !== this.link) return;
    const entry = this.inflight.get(delivery.id);
    if (!entry) return;
    this.inflight.delete(delivery.id);
    this.deliveries.delete(delivery.id);
    if (outcome === 'accepted') {
      if (entry.expiryTimer) clearTimeout(entry.expiryTimer);
      this.throttles = 0;
      this.probing = false;
      entry.resolve();
    } else if (outcome === 'released') {
      // The hub did not take it: send again, in its place.
      this.requeue(entry);
    } else {
      const error = errorFromCondition(delivery.remote_state?.error as AmqpErrorLike | undefined, this.errorContext);
      const expired = entry.expiresAt !== undefined && entry.expiresAt <= Date.now();
      if (error.retryable && !expired) {
        // Throttling and transient faults pause the link; the message waits in its place. A burst
        // refused together is one round: only its first refusal lengthens the pause.
        this.requeue(entry);
        this.probing = true;
        if (!this.refusedRound) {
          this.refusedRound = true;
          const o = this.hub.options;
          this.pause(
            error.code === 'Throttled'
              ? throttleDelay(this.throttles++, { minMs: o.throttleMinMs, maxMs: o.throttleMaxMs, random: o.random })
              : backoffDelay(this.throttles++, { minMs: o.reconnectMinMs, maxMs: o.reconnectMaxMs, random: o.random }),
          );
        }
      } else {
        if (entry.expiryTimer) clearTimeout(entry.expiryTimer);
        entry.reject(error);
      }
    }
    this.pump();
  }

  /** Puts messages that came back from the wire before every later one that is waiting. */
  private requeue(...entries: Outgoing[]): void {
    if (entries.length === 0) return;
    entries.sort((a, b) => a.seq - b.seq);
    // Only the waiting messages older than the last one returned need merging; the rest stay behind.
    const merged: Outgoing[] = [];
    let i = 0;
    let j = 0;
    while (i < entries.length) {
      if (j < this.waiting.length && this.waiting[j].seq < entries[i].seq) merged.push(this.waiting[j++]);
      else merged.push(entries[i++]);
    }
    this.waiting.splice(0, j, ...merged);
  }

  private pause(ms: number): void {
    log.link('%s paused for %d ms (the hub refused a send that may be retried)', this.address, ms);
    this.pausedUntil = Date.now() + ms;
    if (this.pauseTimer) clearTimeout(this.pauseTimer);
    // Timers may fire a millisecond before Date.now() says they should: the timer ends the pause it
    // was set for, whatever the clock reads.
    this.pauseTimer = setTimeout(() => {
      this.pauseTimer = undefined;
      this.pausedUntil = 0;
      this.pump();
    }, ms);
    this.pauseTimer.unref();
  }
}

// ---- receiver -------------------------------------------------------------------------------

export type Settlement = 'complete' | 'reject' | 'abandon';

export interface Received {
  message: Message;
  /** The delivery tag as a uuid (16-byte tags) or hex: what IoT Hub calls the lock token. */
  lockToken: string;
  /** Settles in manual mode; resolves when the hub confirms. Rejects MessageLockLost if it cannot. */
  settle(outcome: Settlement): Promise<void>;
}

export interface HubReceiverOptions {
  /** Most messages handed over and not yet settled (manual) or prefetched (auto). */
  credit: number;
  settle: 'auto' | 'manual';
  /** Extra attach options computed at each attach (filters that resume after the last message). */
  attachOptions?: () => Partial<ReceiverOptions>;
}

export class HubReceiver extends DurableLink {
  private link: Receiver | undefined;
  private readonly settleTimeoutMs: number;
  /** Manual mode: deliveries handed over and not settled yet. */
  private readonly unsettled = new Set<Delivery>();

  constructor(
    hub: HubConnection,
    address: string,
    scope: Scope,
    private readonly receiverOptions: HubReceiverOptions,
  ) {
    super(hub, address, scope);
    this.settleTimeoutMs = hub.options.operationTimeoutMs;
    this.start();
  }

  protected async createLink(session: Session, generation: number, signal: AbortSignal): Promise<void> {
    const manual = this.receiverOptions.settle === 'manual';
    const extra = this.receiverOptions.attachOptions?.() ?? {};
    const receiver = await session.createReceiver({
      ...extra,
      abortSignal: signal,
      source: { ...(typeof extra.source === 'object' ? extra.source : {}), address: this.address },
      // Manual settlement waits for the hub's verdict (rcv-settle-mode second), which is how a
      // settle after the lock expired is told apart from one that worked.
      rcv_settle_mode: manual ? 1 : 0,
      autoaccept: !manual,
      credit_window: manual ? 0 : this.receiverOptions.credit,
      onMessage: (ctx: EventContext) => this.onMessage(ctx, generation),
      onError: (ctx: EventContext) => this.linkFailed(session, generation, toHubError(ctx.receiver?.error, `the hub detached ${this.address}`), ctx.receiver),
      onClose: (ctx: EventContext) => {
        if (!this.closed) this.linkFailed(session, generation, toHubError(ctx.receiver?.error, `the hub closed ${this.address}`), ctx.receiver);
      },
    });
    if (generation !== this.generation || this.closed) {
      void receiver.close({ closeSession: false }).catch(() => undefined);
      return;
    }
    this.link = receiver;
    if (manual) receiver.addCredit(this.receiverOptions.credit);
  }

  protected currentLink(): Receiver | undefined {
    return this.link;
  }

  protected dropLink(): Receiver | undefined {
    const link = this.link;
    this.link = undefined;
    this.forgetUnsettled();
    return link;
  }

  protected fail(): void {
    // Nothing waits on a receiver; unsettled messages are the hub's to redeliver.
    this.forgetUnsettled();
  }

  /** Messages never settled on a link that is gone: rhea must not keep their slots (see forgetDelivery). */
  private forgetUnsettled(): void {
    for (const delivery of this.unsettled) forgetDelivery(delivery);
    this.unsettled.clear();
  }

  private onMessage(ctx: EventContext, generation: number): void {
    const message = ctx.message;
    const delivery = ctx.delivery;
    const link = ctx.receiver;
    // Messages can arrive in the same chunk as the attach, before createReceiver resolves and
    // this.link is set: those belong to the current generation and must not be dropped.
    if (!message || !delivery || !link || generation !== this.generation || this.closed) return;
    if (this.link !== undefined && this.link !== link) return;
    const manual = this.receiverOptions.settle === 'manual';
    let settled = !manual;
    let lockToken: string | undefined;
    if (manual) this.unsettled.add(delivery);
    const received: Received = {
      message,
      // Only manual settlement needs it; telemetry readers never ask, so it is made on demand.
      get lockToken(): string {
        const tag = delivery.tag;
        lockToken ??= Buffer.isBuffer(tag) ? (tag.length === 16 ? rhea.uuid_to_string(tag) : tag.toString('hex')) : String(tag);
        return lockToken;
      },
      settle: (outcome: Settlement) => {
        if (!manual) return Promise.resolve();
        if (settled) return Promise.reject(new HubError('MessageLockLost', 'this message was already settled'));
        if (this.link !== link || generation !== this.generation || !link.isOpen()) {
          settled = true;
          return Promise.reject(new HubError('MessageLockLost', 'the link that delivered this message is gone; the hub will deliver it again'));
        }
        settled = true;
        return this.settleDelivery(link, delivery, outcome);
      },
    };
    this.emit('message', received);
  }

  private settleDelivery(link: Receiver, delivery: Delivery, outcome: Settlement): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const done = (err?: HubError): void => {
        clearTimeout(timer);
        this.unsettled.delete(delivery);
        link.removeListener(ReceiverEvents.settled, onSettled);
        if (link === this.link && !this.closed) link.addCredit(1);
        if (err) reject(err);
        else resolve();
      };
      const onSettled = (ctx: EventContext): void => {
        if (ctx.delivery !== delivery) return;
        const state = delivery.remote_state as { error?: AmqpErrorLike } | undefined;
        if (state?.error) {
          const error = errorFromCondition(state.error);
          done(error.code === 'DeviceNotFound' ? new HubError('MessageLockLost', error.message, { condition: error.condition }) : error);
        } else done();
      };
      const timer = setTimeout(() => {
        // Given up on: rhea must not keep its slot waiting for an answer either.
        forgetDelivery(delivery);
        done(new HubError('Timeout', 'the hub did not confirm the settlement in time', { retryable: true }));
      }, this.settleTimeoutMs);
      link.on(ReceiverEvents.settled, onSettled);
      applyDisposition(outcome === 'complete', () => {
        if (delivery.settled) return;
        if (outcome === 'complete') delivery.accept();
        else if (outcome === 'reject') delivery.reject();
        else delivery.release();
      });
    });
  }
}
