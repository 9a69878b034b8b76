import { strict as assert } from 'node:assert';
import { errorFromCondition, HubError, toHubError } from '../../src/iothub/errors';

describe('errors: errorFromCondition', () => {
  const table: Array<[string, string, boolean]> = [
    ['amqp:unauthorized-access', 'Unauthorized', false],
    ['com.microsoft:auth-failed', 'Unauthorized', false],
    ['amqp:not-found', 'DeviceNotFound', false],
    ['com.microsoft:device-container-throttled', 'Throttled', true],
    ['com.microsoft:server-busy', 'Throttled', true],
    ['com.microsoft:timeout', 'Timeout', true],
    ['com.microsoft:message-lock-lost', 'MessageLockLost', false],
    ['amqp:link:message-size-exceeded', 'MessageTooLarge', false],
    ['amqp:link:detach-forced', 'ServiceUnavailable', true],
    ['com.microsoft:container-close', 'ServiceUnavailable', true],
    ['amqp:internal-error', 'InternalServerError', true],
    ['com.microsoft:argument-error', 'ArgumentInvalid', false],
    ['com.microsoft:argument-out-of-range', 'ArgumentOutOfRange', false],
    ['com.microsoft:quota-exceeded', 'IotHubQuotaExceeded', false],
    ['amqp:link:stolen', 'ReceiverDisconnected', true],
    ['amqp:link:redirect', 'LinkRedirect', true],
    ['amqp:connection:forced', 'ConnectionForced', true],
    ['com.microsoft:precondition-failed', 'PreconditionFailed', false],
    ['com.microsoft:entity-disabled', 'EntityDisabled', false],
  ];
  for (const [condition, code, retryable] of table) {
    it(`${condition} -> ${code}${retryable ? ' (retryable)' : ''}`, () => {
      const err = errorFromCondition({ condition, description: 'why it failed' });
      assert.ok(err instanceof HubError);
      assert.ok(err instanceof Error);
      assert.equal(err.name, 'HubError');
      assert.equal(err.code, code);
      assert.equal(err.retryable, retryable);
      assert.equal(err.condition, condition);
      assert.equal(err.message, 'why it failed');
    });
  }

  it('resource-limit-exceeded is a full device queue in the service context, a sixth reader on Event Hubs, a quota elsewhere', () => {
    const c = { condition: 'amqp:resource-limit-exceeded', description: 'queue full' };
    assert.equal(errorFromCondition(c, 'service').code, 'DeviceMaximumQueueDepthExceeded');
    assert.equal(errorFromCondition(c, 'service').retryable, false);
    assert.equal(errorFromCondition(c, 'device').code, 'IotHubQuotaExceeded');
    assert.equal(errorFromCondition(c, 'eventhub').code, 'ReceiverLimitExceeded');
    assert.equal(errorFromCondition(c).code, 'IotHubQuotaExceeded');
    // A reader's detach carries no context; Event Hubs' own words say what it is.
    const sixth = {
      condition: 'amqp:resource-limit-exceeded',
      description:
        'Exceeded the maximum number of allowed receivers per partition in a consumer group which is 5. List of connected receivers - a, b, c, d, e.',
    };
    assert.equal(errorFromCondition(sixth).code, 'ReceiverLimitExceeded');
    assert.equal(errorFromCondition(sixth).retryable, false);
  });

  it('an unknown condition is a non-retryable AmqpError that keeps the condition', () => {
    const err = errorFromCondition({ condition: 'com.example:something-new' });
    assert.equal(err.code, 'AmqpError');
    assert.equal(err.retryable, false);
    assert.equal(err.condition, 'com.example:something-new');
    assert.equal(err.message, 'com.example:something-new');
  });

  it('no error, or a condition that is not a string, counts as an internal error', () => {
    for (const input of [undefined, {}, { condition: 42, description: '' }]) {
      const err = errorFromCondition(input);
      assert.equal(err.code, 'InternalServerError');
      assert.equal(err.retryable, true);
      assert.equal(err.condition, 'amqp:internal-error');
      assert.equal(err.message, 'amqp:internal-error');
    }
  });

  it('HubError defaults to not retryable and no condition', () => {
    const err = new HubError('Error', 'm');
    assert.equal(err.retryable, false);
    assert.equal(err.condition, undefined);
  });
});

describe('errors: toHubError, the one translator', () => {
  it('returns a HubError as it is', () => {
    const original = new HubError('Throttled', 'slow down', { retryable: true });
    assert.equal(toHubError(original, 'sending'), original);
  });

  it('maps an AMQP error by its condition', () => {
    const err = toHubError({ condition: 'amqp:unauthorized-access', description: 'no right' }, 'attaching');
    assert.equal(err.code, 'Unauthorized');
    assert.equal(err.message, 'no right');
    assert.equal(err.condition, 'amqp:unauthorized-access');
  });

  it('names an unreachable hub NotConnected, retryable, with what was being done', () => {
    for (const code of ['ECONNREFUSED', 'ENOTFOUND', 'ETIMEDOUT', 'ECONNRESET', 'EHOSTUNREACH', 'EAI_AGAIN']) {
      const socketError = Object.assign(new Error(`getaddrinfo ${code} hub.example`), { code });
      const err = toHubError(socketError, 'connecting', 'Error');
      assert.equal(err.code, 'NotConnected', code);
      assert.equal(err.retryable, true);
      assert.equal(err.message, `connecting: getaddrinfo ${code} hub.example`);
    }
  });

  it('names a certificate failure TlsError', () => {
    const err = toHubError(Object.assign(new Error('self-signed certificate'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' }));
    assert.equal(err.code, 'TlsError');
    assert.equal(err.retryable, true);
  });

  it('falls back to NotConnected inside the client and to Error for a caller, never passing a foreign code', () => {
    const foreign = Object.assign(new Error('odd'), { code: 'ERR_SOMETHING' });
    assert.equal(toHubError(foreign).code, 'NotConnected');
    assert.equal(toHubError(foreign).retryable, true);
    const forCaller = toHubError(foreign, undefined, 'Error');
    assert.equal(forCaller.code, 'Error');
    assert.equal(forCaller.retryable, false);
    assert.equal(forCaller.message, 'odd');
    assert.equal(toHubError(undefined, 'the hub closed the link').message, 'the hub closed the link');
    assert.equal(toHubError('text', undefined, 'Error').message, 'text');
  });
});
