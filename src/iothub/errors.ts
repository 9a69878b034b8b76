/**
 * AMQP error conditions mapped to errors a flow can branch on: a stable `code` and whether retrying
 * can help. Codes follow the names IoT Hub and its SDKs use, so users can search for them.
 */

export interface AmqpErrorLike {
  condition?: unknown;
  description?: unknown;
  info?: unknown;
}

export class HubError extends Error {
  readonly code: string;
  readonly retryable: boolean;
  readonly condition?: string;
  /** The AMQP error's info map (a redirect's host, port and address). */
  readonly info?: Record<string, unknown>;
  constructor(code: string, message: string, options: { retryable?: boolean; condition?: string; info?: Record<string, unknown> } = {}) {
    super(message);
    this.name = 'HubError';
    this.code = code;
    this.retryable = options.retryable ?? false;
    if (options.condition) this.condition = options.condition;
    if (options.info) this.info = options.info;
  }
}

interface Mapping {
  code: string;
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
