/**
 * Claims-based security: put-token requests over the `$cbs` node, each matched to its response by
 * correlation id and bounded by a timeout. One CbsChannel per connection serves every audience on it.
 */
import { randomUUID } from 'node:crypto';
import { SessionEvents, type Connection, type EventContext, type Receiver, type Sender, type Session } from 'rhea-promise';
import { PendingRequests } from '../amqp/request-response';
import { HubError } from './errors';
import { log, reasonOf } from './log';

export const SAS_TOKEN_TYPE = 'servicebus.windows.net:sastoken';

export class CbsChannel {
  private session: Session | undefined;
  private sender: Sender | undefined;
  private receiver: Receiver | undefined;
  private readonly replyTo = `cbs-${randomUUID()}`;
  private readonly pending: PendingRequests;
  private closed = false;

  constructor(
    private readonly connection: Connection,
    timeoutMs = 30_000,
    /** Called once if a CBS link or its session fails while the channel is meant to be open. */
    private readonly onBroken: (reason: string) => void = () => undefined,
  ) {
    this.pending = new PendingRequests(
      timeoutMs,
      () => new HubError('Timeout', `no answer to put-token within ${Math.round(timeoutMs / 1000)} s`, { retryable: true }),
    );
  }

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
  async putToken(audience: string, token: string, type: string = SAS_TOKEN_TYPE): Promise<void> {
    const sender = this.sender;
    if (!sender || this.closed || !sender.isOpen()) {
      throw new HubError('NotConnected', 'the CBS link is not open', { retryable: true });
    }
    const id = randomUUID();
    const answer = this.pending.expect(id);
    try {
      // A send on a link that just dropped may throw; the put then fails instead.
      sender.send({
        body: token,
        message_id: id,
        reply_to: this.replyTo,
        to: '$cbs',
        application_properties: { operation: 'put-token', type, name: audience },
      });
    } catch (err) {
      this.pending.fail(id, new HubError('NotConnected', `put-token could not be sent: ${(err as Error).message}`, { retryable: true }));
    }
    const { status, description } = await answer;
    if (status === 200 || status === 202) return;
    // 404: the device is not registered; 403 with the token limit's words: IotHubMaxCbsTokenExceeded (403005).
    const tooMany = status === 403 && /maximum number of tokens/i.test(description);
    const code = tooMany
      ? 'IotHubMaxCbsTokenExceeded'
      : status === 401 || status === 403
        ? 'Unauthorized'
        : status === 404
          ? 'DeviceNotFound'
          : 'AuthenticationFailed';
    throw new HubError(code, `put-token refused: ${description}`, { retryable: false });
  }

  private onResponse(ctx: EventContext): void {
    if (ctx.message) this.pending.answer(ctx.message);
  }

  private failAll(reason: string): void {
    if (!this.closed) {
      this.closed = true;
      this.onBroken(reason);
    }
    this.pending.failAll(new HubError('NotConnected', reason, { retryable: true }));
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
      await session.close().catch((err: unknown) => log.cbs('closing the CBS session: %s', reasonOf(err)));
    }
    session?.removeAllListeners();
  }
}
