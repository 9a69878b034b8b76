/** Times on outgoing messages: only what an AMQP timestamp (a Date) can hold goes on the wire. */
import { strict as assert } from 'node:assert';
import { HubError } from '../../src/iothub/errors';
import { toAmqpMessage } from '../../src/iothub/message';

const NOW = Date.parse('2030-01-01T00:00:00Z');

function code(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return err instanceof HubError ? err.code : 'not a HubError';
  }
}

describe('message times', () => {
  it('refuses a ttl or expiry beyond what a Date holds (rhea would write it as 1970, and the hub would drop it)', () => {
    assert.equal(
      code(() => toAmqpMessage({ payload: 'x', ttl: 1e82 }, 'c2d', NOW)),
      'InvalidMessage',
    );
    assert.equal(
      code(() => toAmqpMessage({ payload: 'x', ttl: 8.64e15 }, 'd2c', NOW)),
      'InvalidMessage',
    );
    assert.equal(
      code(() => toAmqpMessage({ payload: 'x', expiryTime: 1e17 }, 'c2d', NOW)),
      'InvalidMessage',
    );
    assert.equal(
      code(() => toAmqpMessage({ payload: 'x', creationTime: -1e17 }, 'd2c', NOW)),
      'InvalidMessage',
    );
  });

  it('refuses a ttl or ack that is not text or a number with InvalidMessage, not a TypeError', () => {
    for (const odd of [Object.create(null), Symbol('x'), [1], { valueOf: () => 5 }]) {
      assert.equal(
        code(() => toAmqpMessage({ payload: 'x', ttl: odd }, 'd2c', NOW)),
        'InvalidMessage',
      );
      assert.equal(
        code(() => toAmqpMessage({ payload: 'x', ack: odd }, 'c2d', NOW)),
        'InvalidMessage',
      );
    }
    assert.equal(toAmqpMessage({ payload: 'x', ttl: '1000' }, 'd2c', NOW).expiresAt, NOW + 1000);
  });

  it('keeps far but valid times exactly', () => {
    const far = Date.parse('2999-01-01T00:00:00Z');
    const out = toAmqpMessage({ payload: 'x', expiryTime: new Date(far), creationTime: 8.64e15 }, 'c2d', NOW);
    assert.equal(out.expiresAt, far);
    assert.equal((out.message.absolute_expiry_time as Date).getTime(), far);
    assert.equal((out.message.creation_time as Date).getTime(), 8.64e15);
    const ttl = toAmqpMessage({ payload: 'x', ttl: 30 * 24 * 3600_000 }, 'd2c', NOW);
    assert.equal(ttl.expiresAt, NOW + 30 * 24 * 3600_000);
  });
});
