/**
 * The SASL mechanisms the hub offers (ANONYMOUS, PLAIN carrying a SAS token, MSSBCBS) and what the
 * connection's SASL layer tells afterwards (which layer was chosen, the PLAIN token). Separate because
 * this is rhea's SASL layer as the hub sees it: the mechanism objects rhea calls and the internals it
 * keeps the exchange in, apart from the connection bookkeeping that uses the answers.
 */
import type * as rhea from 'rhea';
import { saslMechanismOf } from '../amqp/rhea-internals';
import type { Grant } from './auth';

class TokenPlain {
  outcome: boolean | undefined = undefined;
  username: string | undefined = undefined;
  token: string | undefined = undefined;
  constructor(private readonly check: (token: string) => boolean) {}
  start(response: Buffer | undefined): void {
    const parts = (response ?? Buffer.alloc(0)).toString('utf8').split('\u0000');
    if (parts.length !== 3) {
      this.outcome = false;
      return;
    }
    this.username = parts[1];
    this.token = parts[2];
    this.outcome = this.check(parts[2]);
  }
}

class AcceptAll {
  outcome: boolean | undefined = undefined;
  username = 'anonymous';
  start(): void {
    this.outcome = true;
  }
}

/** Offers the mechanisms on the container; PLAIN passes when `grantFor` (which throws on a bad token) does. */
export function setupSasl(container: rhea.Container, grantFor: (token: string) => Grant): void {
  const mechanisms = container.sasl_server_mechanisms as Record<string, unknown> & { enable_anonymous(): void };
  mechanisms.enable_anonymous();
  mechanisms.PLAIN = () =>
    new TokenPlain((token) => {
      try {
        grantFor(token);
        return true;
      } catch {
        return false;
      }
    });
  mechanisms.MSSBCBS = () => new AcceptAll();
}

/** The SAS token a PLAIN client sent, kept by the mechanism object rhea made for the connection. */
export function plainToken(connection: rhea.Connection): string | undefined {
  const mechanism = saslMechanismOf(connection);
  return mechanism instanceof TokenPlain ? mechanism.token : undefined;
}
