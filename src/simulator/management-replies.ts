/**
 * The request/response nodes: CBS put-token (`$cbs`) and the Event Hubs `$management` node, and how a
 * reply finds the client's response link. Separate from the link routing, which only decides that a
 * link is one of these nodes; this part holds the put-token fault because it is what answers put-token.
 */
import type * as rhea from 'rhea';
import { bodyBytes } from '../amqp/message-rules';
import { responseFor } from '../amqp/request-response';
import { remoteAttach } from '../amqp/rhea-internals';
import type { Address } from './addresses';
import { audienceMatches, AuthError, type Grant } from './auth';
import type { ConnState, LinkState } from './connections';
import type { EventHubSurface } from './event-hub';
import type { HubStats } from './stats';

export interface ManagementRepliesParts {
  stats: HubStats;
  eventHub: Pick<EventHubSurface, 'management'>;
  /** The grant a SAS token gives; throws when the token is not valid. */
  grantFor: (token: string) => Grant;
}

export class ManagementReplies {
  private putTokenBlock: { until: number; answer: 'refuse' | 'ignore' } | undefined;

  constructor(private readonly parts: ManagementRepliesParts) {}

  /** The put-token fault: for `ms` (0 stops), `refuse` answers 401 and `ignore` never answers. */
  blockPutTokens(ms: number, answer: 'refuse' | 'ignore'): void {
    this.putTokenBlock = ms > 0 ? { until: Date.now() + ms, answer } : undefined;
  }

  onCbsRequest(conn: ConnState, state: LinkState, ctx: rhea.EventContext): void {
    const { stats, grantFor } = this.parts;
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
      stats.putTokensRefused++;
      return;
    } else if (blocked === 'refuse') {
      stats.putTokensRefused++;
      status = 401;
      description = 'Unauthorized: the token service is unavailable (simulated fault).';
    } else {
      const token = typeof message.body === 'string' ? message.body : bodyBytes(message.body).toString('utf8');
      try {
        if (!audienceMatches(props.name, token))
          throw new AuthError(`the put-token name '${String(props.name).slice(0, 200)}' does not name the resource the token is for`);
        const grant = grantFor(token);
        conn.auth.add(grant);
        stats.putTokens++;
      } catch (err) {
        stats.putTokensRefused++;
        status = err instanceof AuthError ? err.status : 401;
        description = !(err instanceof AuthError) ? 'Unauthorized.' : status === 401 ? `Unauthorized: ${err.message}.` : `${err.message}.`;
      }
    }
    this.reply(conn, state, message, 'cbs', status, description);
  }

  onManagementRequest(conn: ConnState, state: LinkState, ctx: rhea.EventContext): void {
    const message = ctx.message as rhea.Message;
    ctx.delivery?.accept();
    const answer = this.parts.eventHub.management(message);
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
    const response = responseFor(message, status, description, body);
    setImmediate(() => {
      if (!pick.closed && pick.link.is_open()) (pick.link as rhea.Sender).send(response);
    });
  }
}
