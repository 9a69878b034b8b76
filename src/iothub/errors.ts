/**
 * AMQP error conditions mapped to errors a flow can branch on: a stable `code` and whether retrying
 * can help. Codes follow the names IoT Hub and its SDKs use, so users can search for them.
 */

export interface AmqpErrorLike {
  condition?: unknown;
  description?: unknown;
  info?: unknown;
}

/**
 * Every code a HubError can carry. The hub's own (mapped from AMQP conditions below) use the names IoT
 * Hub and its SDKs use; the rest name what this client found before or instead of an answer.
 */
export type HubErrorCode =
  // from AMQP conditions and CBS answers
  | 'AmqpError'
  | 'ArgumentInvalid'
  | 'ArgumentOutOfRange'
  | 'AuthenticationFailed'
  | 'ConnectionForced'
  | 'ConnectionRedirect'
  | 'DeviceAlreadyExists'
  | 'DeviceMaximumQueueDepthExceeded'
  | 'DeviceNotFound'
  | 'EntityDisabled'
  | 'InternalServerError'
  | 'InvalidOperation'
  | 'IotHubMaxCbsTokenExceeded'
  | 'IotHubNotFound'
  | 'IotHubQuotaExceeded'
  | 'IotHubSuspended'
  | 'LinkRedirect'
  | 'MessageLockLost'
  | 'DeviceNotOnline'
  | 'GatewayTimeout'
  | 'MessageTooLarge'
  | 'NotImplemented'
  | 'OperationCancelled'
  | 'PreconditionFailed'
  | 'ReceiverDisconnected'
  | 'ReceiverLimitExceeded'
  | 'ResourceLocked'
  | 'ServiceUnavailable'
  | 'SessionError'
  | 'Throttled'
  | 'Timeout'
  | 'TransferLimitExceeded'
  | 'Unauthorized'
  // found by this client
  | 'BufferFull'
  | 'CheckpointStoreError'
  | 'Closed'
  | 'Error'
  | 'Expired'
  | 'IdentityMismatch'
  | 'InvalidConfig'
  | 'InvalidConnectionString'
  | 'InvalidDeviceId'
  | 'InvalidFeedback'
  | 'InvalidMessage'
  | 'InvalidModuleId'
  | 'InvalidPayload'
  | 'InvalidProperty'
  | 'InvalidToken'
  | 'ManagementError'
  | 'MethodCallLost'
  | 'MissingDeviceId'
  | 'NoConnection'
  | 'NotConnected'
  | 'TlsError'
  | 'WrongRole';

export class HubError extends Error {
  readonly code: HubErrorCode;
  readonly retryable: boolean;
  readonly condition?: string;
  /** The AMQP error's info map (a redirect's host, port and address). */
  readonly info?: Record<string, unknown>;
  /**
   * The socket's error code (`ENOTFOUND`, `ECONNREFUSED`, ...) behind a NotConnected: the code a flow
   * branches on stays NotConnected, while a status can still name the cause.
   */
  readonly socketCode?: string;
  constructor(
    code: HubErrorCode,
    message: string,
    options: { retryable?: boolean; condition?: string; info?: Record<string, unknown>; socketCode?: string } = {},
  ) {
    super(message);
    this.name = 'HubError';
    this.code = code;
    this.retryable = options.retryable ?? false;
    if (options.condition) this.condition = options.condition;
    if (options.info) this.info = options.info;
    if (options.socketCode) this.socketCode = options.socketCode;
  }
}

interface Mapping {
  code: HubErrorCode;
  retryable: boolean;
}

/** Service-side C2D meanings of conditions that mean something else on the device side. */
export type ErrorContext = 'device' | 'service' | 'eventhub';

const CONDITIONS: Record<string, Mapping> = {
  'amqp:unauthorized-access': { code: 'Unauthorized', retryable: false },
  'amqp:not-found': { code: 'DeviceNotFound', retryable: false },
  'amqp:resource-limit-exceeded': { code: 'IotHubQuotaExceeded', retryable: false },
  'com.microsoft:device-container-throttled': { code: 'Throttled', retryable: true },
  'com.microsoft:server-busy': { code: 'Throttled', retryable: true },
  'com.microsoft:message-lock-lost': { code: 'MessageLockLost', retryable: false },
  'amqp:link:detach-forced': { code: 'ServiceUnavailable', retryable: true },
  'com.microsoft:timeout': { code: 'Timeout', retryable: true },
  'amqp:internal-error': { code: 'InternalServerError', retryable: true },
  'amqp:link:message-size-exceeded': { code: 'MessageTooLarge', retryable: false },
  'amqp:not-allowed': { code: 'InvalidOperation', retryable: false },
  'amqp:not-implemented': { code: 'NotImplemented', retryable: false },
  'com.microsoft:argument-error': { code: 'ArgumentInvalid', retryable: false },
  'com.microsoft:argument-out-of-range': { code: 'ArgumentOutOfRange', retryable: false },
  'com.microsoft:iot-hub-suspended': { code: 'IotHubSuspended', retryable: false },
  'com.microsoft:iot-hub-not-found-error': { code: 'IotHubNotFound', retryable: false },
  'com.microsoft:quota-exceeded': { code: 'IotHubQuotaExceeded', retryable: false },
  'com.microsoft:precondition-failed': { code: 'PreconditionFailed', retryable: false },
  'com.microsoft:device-already-exists': { code: 'DeviceAlreadyExists', retryable: false },
  'amqp:link:stolen': { code: 'ReceiverDisconnected', retryable: true },
  'amqp:link:redirect': { code: 'LinkRedirect', retryable: true },
  'amqp:connection:forced': { code: 'ConnectionForced', retryable: true },
  'amqp:connection:redirect': { code: 'ConnectionRedirect', retryable: true },
  'amqp:resource-locked': { code: 'ResourceLocked', retryable: true },
  'amqp:session:window-violation': { code: 'SessionError', retryable: true },
  'amqp:session:errant-link': { code: 'SessionError', retryable: true },
  'amqp:session:handle-in-use': { code: 'SessionError', retryable: true },
  'amqp:session:unattached-handle': { code: 'SessionError', retryable: true },
  'amqp:link:transfer-limit-exceeded': { code: 'TransferLimitExceeded', retryable: true },
  'com.microsoft:container-close': { code: 'ServiceUnavailable', retryable: true },
  'com.microsoft:operation-cancelled': { code: 'OperationCancelled', retryable: true },
  'com.microsoft:entity-disabled': { code: 'EntityDisabled', retryable: false },
  'com.microsoft:auth-failed': { code: 'Unauthorized', retryable: false },
};

/** Maps an AMQP error (from an outcome or a detach) to a HubError. */
export function errorFromCondition(error: AmqpErrorLike | undefined, context: ErrorContext = 'device'): HubError {
  const condition = typeof error?.condition === 'string' ? error.condition : 'amqp:internal-error';
  const description = typeof error?.description === 'string' && error.description ? error.description : condition;
  let mapping = CONDITIONS[condition] ?? { code: 'AmqpError', retryable: false };
  // On the C2D send path IoT Hub uses resource-limit-exceeded for a full device queue.
  if (condition === 'amqp:resource-limit-exceeded' && context === 'service') {
    mapping = { code: 'DeviceMaximumQueueDepthExceeded', retryable: false };
  }
  // Event Hubs uses it for a sixth reader on a partition of a consumer group ("Exceeded the maximum
  // number of allowed receivers per partition in a consumer group which is 5", azure-sdk-for-java#38117;
  // @azure/core-amqp names it QuotaExceededError): named for what it is, so the fix is plain.
  if (condition === 'amqp:resource-limit-exceeded' && (context === 'eventhub' || /receivers per partition/i.test(description))) {
    mapping = { code: 'ReceiverLimitExceeded', retryable: false };
  }
  const info = error?.info && typeof error.info === 'object' ? (error.info as Record<string, unknown>) : undefined;
  return new HubError(mapping.code, description, info ? { retryable: mapping.retryable, condition, info } : { retryable: mapping.retryable, condition });
}

/** Socket errors that mean the hub could not be reached (or went away): retried like a drop. */
const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'ETIMEDOUT', 'ECONNRESET', 'EHOSTUNREACH', 'EAI_AGAIN', 'ENETUNREACH', 'EPIPE']);

/**
 * The one translator from whatever failed to a HubError: a HubError as it is, an AMQP error by its
 * condition, a socket error as NotConnected, a TLS failure as TlsError, and anything else as
 * `otherwise` (NotConnected inside the client, where an unknown failure ends a connection attempt;
 * 'Error' where a caller's own mistake may surface). `what` prefixes the message with what was being done.
 */
export function toHubError(err: unknown, what?: string, otherwise: 'NotConnected' | 'Error' = 'NotConnected'): HubError {
  if (err instanceof HubError) return err;
  const amqp = err as (AmqpErrorLike & { code?: unknown }) | undefined;
  if (amqp && typeof amqp.condition === 'string') return errorFromCondition(amqp);
  const text = err instanceof Error ? err.message : err === undefined || err === null ? '' : String(err);
  const message = what ? (text ? `${what}: ${text}` : what) : text || 'unknown error';
  const code = typeof amqp?.code === 'string' ? amqp.code : '';
  if (UNREACHABLE.has(code)) return new HubError('NotConnected', message, { retryable: true, socketCode: code });
  if (err instanceof Error && /certificate|self.signed|CERT_/i.test(err.message + code)) return new HubError('TlsError', message, { retryable: true });
  return new HubError(otherwise, message, { retryable: otherwise === 'NotConnected' });
}
