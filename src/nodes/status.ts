/**
 * Every status a node shows: the colours and Node-RED common keys users know, and one translated word
 * for each cause (the `iothub-common.status.*` keys every node's catalog holds). Codes stay in the
 * Catch msg (`err.code`); a status is for a person glancing at the canvas.
 */
import type { HubState } from '../iothub/hub-connection';
import type { HubError, HubErrorCode } from '../iothub/errors';

export interface Status {
  fill: 'red' | 'green' | 'yellow' | 'blue' | 'grey';
  shape: 'ring' | 'dot';
  text: string;
}

export const CONNECTED = 'node-red:common.status.connected';
export const DISCONNECTED = 'node-red:common.status.disconnected';

/** Codes that share a word: a status names the cause, not every code the hub has for it. */
const CODE_KEYS: Partial<Record<HubErrorCode, string>> = {
  Unauthorized: 'iothub-common.status.unauthorized',
  AuthenticationFailed: 'iothub-common.status.unauthorized',
  InvalidToken: 'iothub-common.status.unauthorized',
  IdentityMismatch: 'iothub-common.status.identity-mismatch',
  DeviceNotFound: 'iothub-common.status.device-not-found',
  InvalidDeviceId: 'iothub-common.status.invalid-device-id',
  InvalidModuleId: 'iothub-common.status.invalid-device-id',
  MissingDeviceId: 'iothub-common.status.missing-device-id',
  InvalidConnectionString: 'iothub-common.status.invalid-connection-string',
  InvalidConfig: 'iothub-common.status.invalid-config',
  NoConnection: 'iothub-common.status.no-connection',
  WrongRole: 'iothub-common.status.wrong-role',
  Timeout: 'iothub-common.status.timeout',
  Throttled: 'iothub-common.status.throttled',
  IotHubQuotaExceeded: 'iothub-common.status.quota-exceeded',
  IotHubMaxCbsTokenExceeded: 'iothub-common.status.quota-exceeded',
  DeviceMaximumQueueDepthExceeded: 'iothub-common.status.queue-full',
  BufferFull: 'iothub-common.status.buffer-full',
  MessageTooLarge: 'iothub-common.status.too-large',
  InvalidMessage: 'iothub-common.status.invalid-message',
  InvalidPayload: 'iothub-common.status.invalid-message',
  InvalidProperty: 'iothub-common.status.invalid-message',
  Expired: 'iothub-common.status.expired',
  MessageLockLost: 'iothub-common.status.lock-lost',
  MethodCallLost: 'iothub-common.status.call-lost',
  DeviceNotOnline: 'iothub-common.status.device-offline',
  GatewayTimeout: 'iothub-common.status.timeout',
  PreconditionFailed: 'iothub-common.status.version-conflict',
  TlsError: 'iothub-common.status.tls-error',
  IotHubNotFound: 'iothub-common.status.hub-not-found',
  IotHubSuspended: 'iothub-common.status.hub-suspended',
  EntityDisabled: 'iothub-common.status.hub-suspended',
  ReceiverLimitExceeded: 'iothub-common.status.receiver-limit',
  CheckpointStoreError: 'iothub-common.status.checkpoint-store',
};

/** Socket failures behind a NotConnected: which one says what to fix (a name, a port, a route). */
const SOCKET_KEYS: Record<string, string> = {
  ENOTFOUND: 'iothub-common.status.host-not-found',
  EAI_AGAIN: 'iothub-common.status.host-not-found',
  ECONNREFUSED: 'iothub-common.status.refused',
  ETIMEDOUT: 'iothub-common.status.unreachable',
  EHOSTUNREACH: 'iothub-common.status.unreachable',
  ENETUNREACH: 'iothub-common.status.unreachable',
};

/** Codes that mean only "the connection went away": retried, and said as Node-RED says it. */
const DROPS: ReadonlySet<HubErrorCode> = new Set<HubErrorCode>(['NotConnected', 'ConnectionForced', 'ServiceUnavailable', 'SessionError', 'Closed']);

/** The status text (a catalog key) for an error: its cause in a few words. */
export function errorText(error: HubError): string {
  if (error.socketCode && SOCKET_KEYS[error.socketCode]) return SOCKET_KEYS[error.socketCode] as string;
  const key = CODE_KEYS[error.code];
  if (key) return key;
  return DROPS.has(error.code) ? DISCONNECTED : 'iothub-common.status.failed';
}

/** A red ring naming the error's cause. */
export function errorStatus(error: HubError): Status {
  return { fill: 'red', shape: 'ring', text: errorText(error) };
}

/** Whether an error names a cause worth keeping on show while the connection tries again. */
function namesCause(error: HubError | undefined): error is HubError {
  return error !== undefined && errorText(error) !== DISCONNECTED;
}

/**
 * The status for a connection state. `error` is the connection's last failure (HubConnection.error):
 * while it retries after a failure with a cause (a host that does not resolve, a refused key), the
 * cause stays on show instead of flickering to "connecting" between attempts.
 */
export function statusFor(state: HubState | 'invalid', error?: HubError): Status {
  switch (state) {
    case 'open':
      return { fill: 'green', shape: 'dot', text: CONNECTED };
    case 'connecting':
    case 'authenticating':
      if (namesCause(error)) return errorStatus(error);
      return { fill: 'yellow', shape: 'ring', text: 'node-red:common.status.connecting' };
    case 'reconnecting':
      return error ? errorStatus(error) : { fill: 'red', shape: 'ring', text: DISCONNECTED };
    case 'invalid':
      return error ? errorStatus(error) : { fill: 'red', shape: 'ring', text: 'iothub-common.status.invalid-config' };
    case 'closed':
    case 'idle':
      return { fill: 'grey', shape: 'ring', text: 'node-red:common.status.not-connected' };
  }
}
