/**
 * One try at connecting as an identity, for a "test connection" button: connect, authenticate the
 * identity's own scope over CBS (what HubConnection does before anything else), then close. It reports
 * the first failure as it is instead of retrying it, and never says more about the identity than its
 * kind, policy or device id and its host.
 */
import type { Identity } from './connection-string';
import { HubError, type HubErrorCode } from './errors';
import { HubConnection, type HubConnectionOptions } from './hub-connection';
import { describeIdentity, redactSecrets } from './log';

export type CheckReport =
  | { ok: true; kind: Identity['kind']; host: string; identity: string; ms: number }
  | { ok: false; kind: Identity['kind']; host: string; identity: string; code: HubErrorCode; message: string; socketCode?: string; condition?: string };

/** Long enough for a TLS handshake and a put-token over a slow link; short enough for someone waiting at a button. */
export const CHECK_TIMEOUT_MS = 20_000;

export async function checkConnection(identity: Identity, options: HubConnectionOptions, timeoutMs = CHECK_TIMEOUT_MS): Promise<CheckReport> {
  const started = Date.now();
  const who = { kind: identity.kind, host: identity.host, identity: describeIdentity(identity) };
  // One attempt: the first failure is the answer, so the retry waits are made long enough never to run.
  const hub = new HubConnection(identity, {
    ...options,
    operationTimeoutMs: Math.min(options.operationTimeoutMs ?? timeoutMs, timeoutMs),
    reconnectMinMs: 3_600_000,
  });
  try {
    const outcome = await new Promise<HubError | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(new HubError('Timeout', `no answer within ${Math.round(timeoutMs / 1000)} s`)), timeoutMs);
      const finish = (error?: HubError): void => {
        clearTimeout(timer);
        resolve(error);
      };
      hub.on('state', (state, error) => {
        if (state === 'open') finish();
        else if ((state === 'reconnecting' || state === 'closed') && (error ?? hub.error)) finish(error ?? hub.error);
      });
      hub.on('scopeError', (_scope, error) => finish(error));
      // Errors are also told through the state; this keeps an 'error' event from being unhandled.
      hub.on('error', () => undefined);
      hub.open();
    });
    if (!outcome) return { ok: true, ...who, ms: Date.now() - started };
    return {
      ok: false,
      ...who,
      code: outcome.code,
      message: redactSecrets(outcome.message),
      ...(outcome.socketCode ? { socketCode: outcome.socketCode } : {}),
      ...(outcome.condition ? { condition: outcome.condition } : {}),
    };
  } finally {
    await hub.close().catch(() => undefined);
  }
}
