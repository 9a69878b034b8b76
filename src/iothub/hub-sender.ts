/**
 * HubSender keeps every message until the hub has settled it: sends are pipelined within the link
 * credit, deliveries still unsettled when the link or connection drops are sent again after it comes
 * back (at-least-once, in order), and a throttled or transiently refused send pauses the link instead
 * of failing the message.
 */
import { SenderEvents, type Delivery, type EventContext, type Message, type Session, type Sender } from 'rhea-promise';
import { creditLeft, forgetDelivery, rheaSenderOf } from '../amqp/rhea-internals';
import { Backoff, throttleDelay } from './backoff';
import type { Scope } from './credentials';
import { DurableLink, type DurableLinkEvents } from './durable-link';
import { errorFromCondition, HubError, toHubError, type AmqpErrorLike, type ErrorContext } from './errors';
import type { HubConnection } from './hub-connection';
import { log, reasonOf } from './log';

/** The error a message withdrawn by its caller's signal fails with. */
function withdrawnError(signal: AbortSignal): HubError {
  return signal.reason instanceof HubError ? signal.reason : new HubError('Expired', 'the message was withdrawn before it could be sent');
}

/** The longest delay Node's timers take as given. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** How many more deliveries the link's credit takes, counting those handed to rhea but not yet sent. */
function creditOf(link: Sender, handed: number): number {
  const inner = rheaSenderOf(link);
  return inner ? creditLeft(inner, handed) : link.sendable() ? 1 : 0;
}

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
  /**
   * Withdraws the message while it still waits (it then fails with the signal's reason, or Expired);
   * once handed to the link the abort changes nothing.
   */
  signal?: AbortSignal;
}

interface Outgoing {
  /** Order of send(): messages that come back from the wire go back in this order. */
  seq: number;
  message: Message;
  resolve: () => void;
  reject: (err: HubError) => void;
  expiresAt?: number;
  expiryTimer?: NodeJS.Timeout;
  /** Stops listening to the caller's abort signal. */
  unwatch?: () => void;
}

export interface HubSenderOptions {
  /** Most messages waiting or in flight; more fail at once with BufferFull. */
  maxPending?: number;
  /** How conditions map to codes on this link (C2D queue full vs device quota). */
  errorContext?: ErrorContext;
  /** Link properties sent in every attach (the API version and channel id of method and twin links). */
  attachProperties?: Record<string, string>;
  /**
   * What happens to a message the hub has not settled when the link goes: `resend` (the default, at
   * least once) sends it again on the next link; `fail` rejects it with the link's error and never sends
   * it again, for requests whose caller has been told they failed (twin requests, method answers).
   */
  onLinkLoss?: 'resend' | 'fail';
  /**
   * Attach with snd-settle-mode settled: a message counts as sent once handed to the link, and the hub
   * gives no verdict. The official SDKs attach the twin sender so (azure-iot-device-amqp
   * amqp_twin_client.js `_generateTwinLinkProperties` snd_settle_mode 1; C twin_messenger.c
   * sender_settle_mode_settled; C# AmqpIotSession.cs OpenTwinSenderLinkAsync SenderSettleMode.Settled):
   * the answer on the twin receiver is the verdict. Implies onLinkLoss `fail` (nothing is in flight).
   */
  presettled?: boolean;
}

export class HubSender extends DurableLink<DurableLinkEvents> {
  private link: Sender | undefined;
  private readonly waiting: Outgoing[] = [];
  private readonly inflight = new Map<number, Outgoing>();
  /** The rhea deliveries of what is in flight, by delivery id (to free them if the link goes). */
  private readonly deliveries = new Map<number, Delivery>();
  /** Deliveries handed to rhea on the current link (see creditLeft). */
  private handed = 0;
  private pausedUntil = 0;
  /** The pause after a refused send; counts refusals since the hub last took one. */
  private readonly pauseWait: Backoff;
  private readonly pumpNow = (): void => this.pump();
  /** A retryable refusal came in; the round lasts until every message then in flight is answered. */
  private refusedRound = false;
  /** Refused lately: send one at a time until the hub takes one. */
  private probing = false;
  private nextSeq = 0;
  private readonly maxPending: number;
  private readonly errorContext: ErrorContext;
  private readonly attachProperties: Record<string, string> | undefined;
  private readonly presettled: boolean;
  private readonly resendOnLinkLoss: boolean;

  constructor(hub: HubConnection, address: string, scope: Scope, options: HubSenderOptions = {}) {
    super(hub, address, scope);
    this.maxPending = options.maxPending ?? 1000;
    this.errorContext = options.errorContext ?? 'device';
    this.attachProperties = options.attachProperties;
    this.presettled = options.presettled === true;
    this.resendOnLinkLoss = !this.presettled && options.onLinkLoss !== 'fail';
    const o = hub.options;
    this.pauseWait = new Backoff(hub.retrySchedule, o.clock);
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
      return Promise.reject(
        new HubError('BufferFull', `${this.pending} messages are already waiting for the hub (the limit is ${this.maxPending})`, { retryable: true }),
      );
    }
    if (options.expiresAt !== undefined && options.expiresAt <= Date.now()) {
      return Promise.reject(new HubError('Expired', 'the message expired before it could be sent'));
    }
    const signal = options.signal;
    if (signal?.aborted) return Promise.reject(withdrawnError(signal));
    return new Promise<void>((resolve, reject) => {
      const entry: Outgoing = { seq: this.nextSeq++, message, resolve, reject };
      if (options.expiresAt !== undefined) {
        entry.expiresAt = options.expiresAt;
        this.armExpiry(entry);
      }
      if (signal) {
        const onAbort = (): void => this.withdraw(entry, withdrawnError(signal));
        signal.addEventListener('abort', onAbort, { once: true });
        entry.unwatch = () => signal.removeEventListener('abort', onAbort);
        // Whatever becomes of the message, the signal is let go of.
        entry.resolve = () => {
          entry.unwatch?.();
          resolve();
        };
        entry.reject = (err: HubError) => {
          entry.unwatch?.();
          reject(err);
        };
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

  /** Takes a message back while it still waits; one already handed to the link is left alone. */
  private withdraw(entry: Outgoing, error: HubError): void {
    const index = this.waiting.indexOf(entry);
    if (index < 0) return;
    this.waiting.splice(index, 1);
    if (entry.expiryTimer) clearTimeout(entry.expiryTimer);
    entry.reject(error);
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
      ...(this.attachProperties ? { properties: this.attachProperties } : {}),
      ...(this.presettled ? { snd_settle_mode: 1 } : {}),
      // The link an event came from, not whichever is current when it fires: a late close of an
      // old link must not drop its replacement.
      onError: (ctx: EventContext) => this.linkFailed(session, generation, toHubError(ctx.sender?.error, `the hub detached ${this.address}`), ctx.sender),
      onClose: (ctx: EventContext) => {
        if (!this.closed) this.linkFailed(session, generation, toHubError(ctx.sender?.error, `the hub closed ${this.address}`), ctx.sender);
      },
    });
    if (generation !== this.generation || this.closed) {
      void sender.close({ closeSession: false }).catch((err: unknown) => log.link('closing a sender attached too late failed: %s', String(err)));
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
    // Unsettled deliveries go back in send order, to be sent again on the next link (or fail, for a
    // sender whose callers must never see a request applied after it was reported failed); rhea is
    // told to forget them on the old one.
    const unsettled = [...this.inflight.values()];
    this.inflight.clear();
    for (const delivery of this.deliveries.values()) forgetDelivery(delivery);
    this.deliveries.clear();
    this.handed = 0;
    if (this.resendOnLinkLoss) this.requeue(...unsettled);
    else {
      const lost = new HubError('NotConnected', `the link ${this.address} went down before the hub settled the message; it is not sent again`, {
        retryable: true,
      });
      for (const entry of unsettled.sort((a, b) => a.seq - b.seq)) {
        if (entry.expiryTimer) clearTimeout(entry.expiryTimer);
        entry.reject(lost);
      }
    }
    return link;
  }

  protected fail(error: HubError): void {
    // Without its timer a pause would hold the next link's messages until something else pumps.
    this.pauseWait.cancel();
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
      } catch (err) {
        // The link broke under us; its error handler takes it from here.
        log.link('%s: send failed on a breaking link (%s); the message waits for the next one', this.address, reasonOf(err));
        this.requeue(entry);
        return;
      }
      this.handed += 1;
      if (this.presettled) {
        // Settled on sending: rhea frees it once written; the hub's answer (if any) is the verdict.
        if (entry.expiryTimer) clearTimeout(entry.expiryTimer);
        entry.resolve();
        continue;
      }
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
      this.pauseWait.reset();
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
          this.pause(error);
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

  /** Holds new sends back: the hub's throttling on the official SDK's schedule, other refusals on the reconnect one. */
  private pause(error: HubError): void {
    const o = this.hub.options;
    // The timer ends the pause it was set for, whatever the clock reads: timers may fire a millisecond
    // before Date.now() says they should.
    const ms = this.pauseWait.after(
      () => {
        this.pausedUntil = 0;
        this.pump();
      },
      error.code === 'Throttled' ? (attempt) => throttleDelay(attempt, { minMs: o.throttleMinMs, maxMs: o.throttleMaxMs, random: o.random }) : undefined,
    );
    this.pausedUntil = Date.now() + ms;
    log.link('%s paused for %d ms (the hub refused a send that may be retried: %s)', this.address, ms, error.code);
  }
}
