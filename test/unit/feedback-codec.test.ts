/** The feedback record codec: what the simulator writes, the client reads back the same; bodies that are not feedback fail. */
import { strict as assert } from 'node:assert';
import { decodeFeedback, encodeFeedback, InvalidFeedbackError, type FeedbackRecord } from '../../src/amqp/feedback-codec';

const record: FeedbackRecord = {
  originalMessageId: 'cmd-1',
  deviceId: 'pump-1',
  statusCode: 'Rejected',
  description: 'Rejected',
  enqueuedTimeUtc: '2026-01-02T03:04:05.678Z',
  deviceGenerationId: '638000000000000000',
};

function failure(body: Buffer | string | undefined): string {
  try {
    decodeFeedback(body);
  } catch (err) {
    return err instanceof InvalidFeedbackError ? `${err.code}: ${err.message}` : `not an InvalidFeedbackError: ${String(err)}`;
  }
  return 'no error';
}

describe('feedback codec', () => {
  it('round-trips records, as bytes and as text', () => {
    const other: FeedbackRecord = { ...record, originalMessageId: 'cmd-2', statusCode: 'Success', description: 'Success' };
    const bytes = encodeFeedback([record, other]);
    assert.ok(Buffer.isBuffer(bytes));
    assert.deepEqual(decodeFeedback(bytes), [record, other]);
    assert.deepEqual(decodeFeedback(bytes.toString('utf8')), [record, other]);
    assert.deepEqual(decodeFeedback(encodeFeedback([])), []);
  });

  it('writes the JSON array the service writes, UTF-8, fields as given', () => {
    const text = encodeFeedback([{ ...record, deviceId: 'grüße' }]).toString('utf8');
    assert.deepEqual(JSON.parse(text), [{ ...record, deviceId: 'grüße' }]);
    assert.ok(text.startsWith('[{"originalMessageId":"cmd-1"'));
  });

  it('reads a missing or null field as empty text and other values as their text, and drops unknown fields', () => {
    const body = JSON.stringify([{ originalMessageId: 42, deviceId: null, statusCode: 'Expired', extra: 'x' }]);
    assert.deepEqual(decodeFeedback(body), [
      { originalMessageId: '42', deviceId: '', statusCode: 'Expired', description: '', enqueuedTimeUtc: '', deviceGenerationId: '' },
    ]);
  });

  it('a body that is not a JSON array of objects is InvalidFeedback', () => {
    const notArray = 'InvalidFeedback: a feedback message from the hub is not a JSON array of records';
    assert.equal(failure(undefined), notArray);
    assert.equal(failure('not json'), notArray);
    assert.equal(failure(Buffer.from('{"deviceId":"d"}')), notArray);
    assert.equal(failure('"a string"'), notArray);
    assert.equal(failure('[{"deviceId":"d"}, 3]'), 'InvalidFeedback: a feedback record is not an object');
    assert.equal(failure('[null]'), 'InvalidFeedback: a feedback record is not an object');
  });
});
