/**
 * A link that outlives connections and detaches: it attaches on every connection the HubConnection
 * opens, and when the hub detaches it while the connection stays up (stolen, redirect, forced, token
 * lapsed, refused) it attaches again with backoff on the same connection. The sender and receiver build
 * on it; the judging of refusals is RefusalJudge's.
 */
import { EventEmitter } from 'node:events';
import type { Receiver, Sender, Session } from 'rhea-promise';
import { Backoff, type ClockTimer } from './backoff';
import type { Scope } from './credentials';
import { HubError, toHubError } from './errors';
import type { HubConnection, LinkOwner } from './hub-connection';
import { log } from './log';
import { RefusalJudge, STABLE_MS } from './refusal-judge';

/** What a durable link tells its users. */
export type DurableLinkEvents = {
  /** A rhea link is attached on the current connection. */
  attached: [];
  /** The link was detached (or its connection lost); it comes back by itself unless closed. */
  detached: [error: HubError];
  /** Closed for good: whoever waits on this link (an attach, an answer) will not get it now. */
  closed: [error: HubError];
};

/** Link-level retry: a detach while the connection stays up (stolen, redirect, forced, token lapsed). */
export abstract class DurableLink<Events extends DurableLinkEvents & Record<keyof Events, unknown[]> = DurableLinkEvents>
  extends EventEmitter<Events>
  implements LinkOwner
{
  protected generation = -1;
  private signal: AbortSignal | undefined;
  protected closed = false;
  /** Waits between attaches; counts the attaches since the link last stayed attached. */
  private readonly retry: Backoff;
  private attached = false;
  /** The generation whose link is being created (createLink has not resolved yet). */
  private creating: number | undefined;
  /**
   * A failure of the link being created. The hub answers some attaches with attach plus detach (a
   * redirect, a refusal), and the detach can be reported before createLink resolves and the link
   * becomes current; attach() acts on it once it has.
   */
  private early: { link: Sender | Receiver; error: HubError } | undefined;
  private readonly judge: RefusalJudge;
  private attachedAt = 0;
  private stableTimer: ClockTimer | undefined;

  constructor(
    protected readonly hub: HubConnection,
    readonly address: string,
    readonly scope: Scope,
  ) {
    super();
    this.judge = new RefusalJudge(address);
    const o = hub.options;
    this.retry = new Backoff(hub.retrySchedule, o.clock);
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
    return this.judge.refusal;
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
        // Should the connection drop within the second, sends must wait for it, not fail with an old refusal.
        this.judge.attached();
        // The hub may answer an attach it refuses with attach and then detach: only a link that
        // stays attached a moment counts as taken (backoff and the refusal count start over).
        this.clearStable();
        const clock = this.hub.options.clock;
        const stableTimer = clock.setTimeout(() => {
          if (this.stableTimer !== stableTimer) return;
          this.stableTimer = undefined;
          if (!this.attached || generation !== this.generation) return;
          this.retry.reset();
          this.judge.stable();
        }, STABLE_MS);
        this.stableTimer = stableTimer;
        this.emitLink('attached');
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
      this.emitLink('detached', new HubError('NotConnected', 'the connection to the hub was lost', { retryable: true }));
    }
  }

  shutdown(error: HubError): void {
    if (this.closed) return;
    this.closed = true;
    this.clearRetry();
    this.attached = false;
    this.fail(error);
    // For whoever waits on this link (an attach, an answer): it will never come now.
    this.emitLink('closed', error);
    const link = this.dropLink();
    if (link)
      void link
        .close({ closeSession: false })
        .catch((err: unknown) => log.link('closing %s failed: %s', this.address, String(err)))
        .finally(() => link.removeAllListeners());
  }

  /** The hub detached this link (or refused the attach): re-attach with backoff on the same connection. */
  protected linkFailed(session: Session, generation: number, error: HubError, failed?: Sender | Receiver): void {
    if (generation !== this.generation || this.closed) return;
    // rhea reports a detach as an error and then a close: act once, and only for the current link.
    if (this.retry.waiting) return;
    if (failed !== undefined && failed !== this.currentLink()) {
      if (this.currentLink() === undefined && this.creating === generation) this.early ??= { link: failed, error };
      return;
    }
    const wasAttached = this.attached;
    this.attached = false;
    this.clearStable();
    const old = this.dropLink();
    if (old)
      void old
        .close({ closeSession: false })
        .catch((err: unknown) => log.link('closing the detached %s failed: %s', this.address, String(err)))
        .finally(() => old.removeAllListeners());
    const now = Date.now();
    const refusal = this.judge.judge(error, !wasAttached || now - this.attachedAt < STABLE_MS, now);
    this.emitLink('detached', error);
    // Every time, not only the first: what was taken while an attach looked good fails too.
    if (refusal) this.refused(refusal);
    // A refusal that is not a hiccup waits at least the floor, whatever the jitter draws.
    const floor = this.hub.options.reconnectMinMs;
    const slow = error.code === 'Unauthorized' || (!error.retryable && error.code !== 'ReceiverDisconnected');
    const delay = this.retry.after(
      () => {
        if (!this.hub.isCurrent(generation) || this.closed) return;
        // A lapsed or refused token is put again before the link comes back.
        const ready = error.code === 'Unauthorized' ? this.hub.reauthorize(this.scope, generation) : Promise.resolve();
        ready.then(
          () => {
            if (!this.hub.isCurrent(generation) || this.closed) return;
            this.judge.freshToken(error.code === 'Unauthorized' ? this.hub.tokenExpiresAt(this.scope) : undefined);
            if (this.signal) this.attach(session, generation, this.signal);
          },
          (err: unknown) => this.linkFailed(session, generation, toHubError(err, 'authorising again failed')),
        );
      },
      slow ? (attempt) => Math.max(this.hub.retrySchedule(attempt), floor) : undefined,
    );
    log.link('%s detached: %s %s; attaching again in %d ms%s', this.address, error.code, error.message, delay, refusal ? ' (refused for want of a right)' : '');
  }

  private clearStable(): void {
    if (this.stableTimer) this.hub.options.clock.clearTimeout(this.stableTimer);
    this.stableTimer = undefined;
  }

  /** Emits one of the events every durable link has (the subclasses add their own). */
  protected emitLink<K extends keyof DurableLinkEvents>(event: K, ...args: DurableLinkEvents[K]): void {
    // The subclass's map includes these events; TypeScript cannot see that through the type parameter.
    (this as unknown as EventEmitter<DurableLinkEvents>).emit<K>(event, ...(args as never));
  }

  private clearRetry(): void {
    this.retry.cancel();
    this.clearStable();
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
