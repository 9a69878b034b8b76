/**
 * The SASL mechanisms the hub offers (ANONYMOUS, PLAIN carrying a SAS token, MSSBCBS) and what the
 * connection's SASL layer tells afterwards (which layer was chosen, the PLAIN token). Separate because
 * this is rhea's SASL layer as the hub sees it: the mechanism objects rhea calls and the internals it
 * keeps the exchange in, apart from the connection bookkeeping that uses the answers.
 */
import type * as rhea from 'rhea';
import type { Grant } from './auth';

/** rhea keeps the SASL exchange inside the connection; the token a PLAIN client sent lives there. */
interface SaslInternals {
  sasl_transport?: { mechanism?: { token?: string }; transports?: Record<number, { mechanism?: { token?: string } } | undefined>; selected?: unknown };
}

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

/** Whether the client spoke SASL first: rhea's selective server picks the SASL layer for protocol id 3. */
export function negotiatedSasl(connection: rhea.Connection): boolean {
  const sasl = (connection as unknown as SaslInternals).sasl_transport;
  if (!sasl) return false;
  return sasl.transports === undefined || (sasl.selected !== undefined && sasl.selected === sasl.transports[3]);
}

export function plainToken(connection: rhea.Connection): string | undefined {
  const sasl = (connection as unknown as SaslInternals).sasl_transport;
  if (!sasl) return undefined;
  return sasl.mechanism?.token ?? sasl.transports?.[3]?.mechanism?.token;
}
