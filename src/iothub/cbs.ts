/**
 * Claims-based security: put-token requests over the `$cbs` node, each matched to its response by
 * correlation id and bounded by a timeout. One CbsChannel per connection serves every audience on it.
 */
import { randomUUID } from 'node:crypto';
import { SessionEvents, type Connection, type EventContext, type Receiver, type Sender, type Session } from 'rhea-promise';
import { HubError } from './errors';

export const SAS_TOKEN_TYPE = 'servicebus.windows.net:sastoken';

interface Pending {
  resolve: () => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export class CbsChannel {
  private session: Session | undefined;
  private sender: Sender | undefined;
  private receiver: Receiver | undefined;
  private readonly replyTo = `cbs-${randomUUID()}`;
  private readonly pending = new Map<string, Pending>();
  private closed = false;

  constructor(
    private readonly connection: Connection,
    private readonly timeoutMs = 30_000,
    /** Called once if a CBS link or its session fails while the channel is meant to be open. */
    private readonly onBroken: (reason: string) => void = () => undefined,
  ) {}

  async open(signal?: AbortSignal): Promise<void> {
    this.session = await this.connection.createSession({ abortSignal: signal });
    this.session.on(SessionEvents.sessionError, () => this.failAll('the CBS session failed'));
    this.receiver = await this.session.createReceiver({
      abortSignal: signal,
      name: this.replyTo,
      source: { address: '$cbs' },
      target: { address: this.replyTo },
      onMessage: (ctx: EventContext) => this.onResponse(ctx),
      onError: () => this.failAll('the CBS receiver failed'),
      onClose: () => this.failAll('the CBS receiver closed'),
    });
    this.sender = await this.session.createSender({
      abortSignal: signal,
      target: { address: '$cbs' },
      onError: () => this.failAll('the CBS sender failed'),
      onClose: () => this.failAll('the CBS sender closed'),
    });
  }

  /** Puts one token for one audience; resolves when the hub says 200 (or 202). */
  putToken(audience: string, token: string, type: string = SAS_TOKEN_TYPE): Promise<void> {
    const sender = this.sender;
    if (!sender || this.closed || !sender.isOpen()) {
      return Promise.reject(new HubError('NotConnected', 'the CBS link is not open', { retryable: true }));
    }
    const id = randomUUID();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new HubError('Timeout', `no answer to put-token within ${Math.round(this.timeoutMs / 1000)} s`, { retryable: true }));
      }, this.timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      try {
        // A send on a link that just dropped may throw; the promise then fails instead.
        sender.send({
          body: token,
          message_id: id,
          reply_to: this.replyTo,
          to: '$cbs',
          application_properties: { operation: 'put-token', type, name: audience },
        });
      } catch (err) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(new HubError('NotConnected', `put-token could not be sent: ${(err as Error).message}`, { retryable: true }));
      }
    });
  }

  private onResponse(ctx: EventContext): void {
    const message = ctx.message;
    if (!message) return;
    const id = String(message.correlation_id);
    const waiting = this.pending.get(id);
    if (!waiting) return;
    this.pending.delete(id);
    clearTimeout(waiting.timer);
    const props = (message.application_properties ?? {}) as Record<string, unknown>;
    const status = Number(props['status-code']);
    if (status === 200 || status === 202) {
      waiting.resolve();
      return;
    }
    const description = typeof props['status-description'] === 'string' ? props['status-description'] : `status ${status}`;
    // 404: the device is not registered; 403 with the token limit's words: IotHubMaxCbsTokenExceeded (403005).
    const tooMany = status === 403 && /maximum number of tokens/i.test(description);
    const code = tooMany ? 'IotHubMaxCbsTokenExceeded' : status === 401 || status === 403 ? 'Unauthorized' : status === 404 ? 'DeviceNotFound' : 'AuthenticationFailed';
    waiting.reject(new HubError(code, `put-token refused: ${description}`, { retryable: false }));
  }

  private failAll(reason: string): void {
    if (!this.closed) {
      this.closed = true;
      this.onBroken(reason);
    }
    for (const [id, waiting] of this.pending) {
      clearTimeout(waiting.timer);
      this.pending.delete(id);
      waiting.reject(new HubError('NotConnected', reason, { retryable: true }));
    }
  }

  async close(): Promise<void> {
    if (this.closed && !this.session) return;
    this.closed = true;
    this.failAll('the CBS channel was closed');
    const session = this.session;
    this.session = undefined;
    this.sender = undefined;
    this.receiver = undefined;
    // Closing the session ends both links; a connection that is already gone needs no close.
    if (session && !session.isClosed() && this.connection.isOpen()) {
      await session.close().catch(() => undefined);
    }
    session?.removeAllListeners();
  }
}
