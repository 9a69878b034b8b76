/**
 * HubReceiver re-attaches after every reconnect and bounds its credit. Messages are settled by the hub's
 * rules: at once (auto), or by the caller (manual: complete, reject or abandon), with the hub's verdict.
 */
import { ReceiverEvents, type Delivery, type EventContext, type Message, type Receiver, type ReceiverOptions, type Session } from 'rhea-promise';
import rhea = require('rhea');
import { applyDisposition } from '../amqp/dispositions';
import { forgetDelivery } from '../amqp/rhea-internals';
import type { Scope } from './credentials';
import { DurableLink, type DurableLinkEvents } from './durable-link';
import { errorFromCondition, HubError, toHubError, type AmqpErrorLike } from './errors';
import type { HubConnection } from './hub-connection';
import { log } from './log';

export type Settlement = 'complete' | 'reject' | 'abandon';

export interface Received {
  message: Message;
  /** The delivery tag as a uuid (16-byte tags) or hex: what IoT Hub calls the lock token. */
  lockToken: string;
  /** Settles in manual mode; resolves when the hub confirms. Rejects MessageLockLost if it cannot. */
  settle(outcome: Settlement): Promise<void>;
}

/** The delivery tag as IoT Hub's lock token: a uuid for 16-byte tags, else hex. */
function lockTokenOf(delivery: Delivery): string {
  const tag = delivery.tag;
  return Buffer.isBuffer(tag) ? (tag.length === 16 ? rhea.uuid_to_string(tag) : tag.toString('hex')) : String(tag);
}

/** A message settled automatically: nothing to settle, the lock token made only when asked. */
class AutoReceived implements Received {
  constructor(
    readonly message: Message,
    private readonly delivery: Delivery,
  ) {}

  get lockToken(): string {
    return lockTokenOf(this.delivery);
  }

  settle(): Promise<void> {
    return Promise.resolve();
  }
}

export interface HubReceiverOptions {
  /** Most messages handed over and not yet settled (manual) or prefetched (auto). */
  credit: number;
  settle: 'auto' | 'manual';
  /** Extra attach options computed at each attach (filters that resume after the last message). */
  attachOptions?: () => Partial<ReceiverOptions>;
}

export type HubReceiverEvents = DurableLinkEvents & {
  message: [received: Received];
};

export class HubReceiver extends DurableLink<HubReceiverEvents> {
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
      void receiver.close({ closeSession: false }).catch((err: unknown) => log.link('closing a receiver attached too late failed: %s', String(err)));
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
    if (!manual) {
      // Settled automatically (telemetry readers, feedback): one small object a message, no closures,
      // since this runs for every event read.
      this.emit('message', new AutoReceived(message, delivery));
      return;
    }
    let settled = false;
    let lockToken: string | undefined;
    this.unsettled.add(delivery);
    const received: Received = {
      message,
      // Only manual settlement needs it; telemetry readers never ask, so it is made on demand.
      get lockToken(): string {
        lockToken ??= lockTokenOf(delivery);
        return lockToken;
      },
      settle: (outcome: Settlement) => {
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
