import { strict as assert } from 'node:assert';
import { HubError } from '../../src/iothub/errors';
import { RefusalJudge } from '../../src/iothub/refusal-judge';

describe('RefusalJudge: a missing right told from a lapsed token', () => {
  const now = 1_000_000;
  const unauthorized = new HubError('Unauthorized', 'no DeviceConnect', { condition: 'amqp:unauthorized-access' });

  it('Unauthorized twice in a row right after fresh tokens is a refusal, named with the address', () => {
    const judge = new RefusalJudge('/messages/devicebound');
    judge.freshToken(now + 60_000);
    assert.equal(judge.judge(unauthorized, true, now), undefined, 'once could be a token that lapsed');
    judge.freshToken(now + 60_000);
    const refusal = judge.judge(unauthorized, true, now);
    assert.equal(refusal?.code, 'Unauthorized');
    assert.match(String(refusal?.message), /refuses \/messages\/devicebound with these credentials: no DeviceConnect/);
    assert.equal(judge.refusal, refusal);
  });

  it('a token with less than a second left, or none put, does not count as fresh', () => {
    const judge = new RefusalJudge('a');
    judge.freshToken(now + 900);
    judge.judge(unauthorized, true, now);
    judge.freshToken(now + 900);
    assert.equal(judge.judge(unauthorized, true, now), undefined);
    judge.freshToken(undefined);
    judge.judge(unauthorized, true, now);
    assert.equal(judge.judge(unauthorized, true, now), undefined);
  });

  it('a link that stayed attached, or another error between, starts the count over', () => {
    const judge = new RefusalJudge('a');
    judge.freshToken(now + 60_000);
    judge.judge(unauthorized, true, now);
    judge.freshToken(now + 60_000);
    assert.equal(judge.judge(unauthorized, false, now), undefined, 'detached after it counted as taken');
    judge.freshToken(now + 60_000);
    judge.judge(new HubError('ServiceUnavailable', 'forced', { retryable: true }), true, now);
    judge.freshToken(now + 60_000);
    assert.equal(judge.judge(unauthorized, true, now), undefined);
  });

  it('an attach clears the refusal on record; stable() forgets the fresh-token count', () => {
    const judge = new RefusalJudge('a');
    for (let i = 0; i < 2; i++) {
      judge.freshToken(now + 60_000);
      judge.judge(unauthorized, true, now);
    }
    assert.ok(judge.refusal);
    judge.attached();
    assert.equal(judge.refusal, undefined);
    judge.freshToken(now + 60_000);
    judge.judge(unauthorized, true, now);
    judge.stable();
    judge.freshToken(now + 60_000);
    assert.equal(judge.judge(unauthorized, true, now), undefined, 'the count started over');
  });
});
