/** The received-message half of the msg mapping: payload decoding, JSON-safe values, msg fields. */
import { strict as assert } from 'node:assert';
import rhea = require('rhea');
import type { Message } from 'rhea-promise';
import { decodePayload, fromAmqpMessage, jsonSafe } from '../../src/iothub/message';

const data = (text: string | Buffer): unknown => rhea.message.data_section(Buffer.isBuffer(text) ? text : Buffer.from(text, 'utf8'));

describe('message: jsonSafe', () => {
  it('keeps plain values and turns undefined into null', () => {
    assert.equal(jsonSafe('text'), 'text');
    assert.equal(jsonSafe(42), 42);
    assert.equal(jsonSafe(false), false);
    assert.equal(jsonSafe(null), null);
    assert.equal(jsonSafe(undefined), null);
    assert.equal(jsonSafe(7n), 7);
  });

  it('dates become ISO strings, each its own even when several are converted in a row', () => {
    const a = new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 6));
    const b = new Date(Date.UTC(2025, 6, 7, 8, 9, 10, 11));
    assert.deepEqual(jsonSafe({ first: a, again: new Date(a.getTime()), second: b, back: a }), {
      first: '2024-01-02T03:04:05.006Z',
      again: '2024-01-02T03:04:05.006Z',
      second: '2025-07-07T08:09:10.011Z',
      back: '2024-01-02T03:04:05.006Z',
    });
  });

  it('an invalid date still throws as Date#toISOString does', () => {
    assert.throws(() => jsonSafe(new Date(NaN)), RangeError);
  });

  it('buffers: 16 bytes as a uuid, others as base64; wrapped AMQP values unwrapped; nesting kept', () => {
    const uuid = rhea.string_to_uuid('0f8fad5b-d9cb-469f-a165-70867728950e');
    assert.deepEqual(jsonSafe({ id: uuid, raw: Buffer.from('hi'), seq: rhea.types.wrap_long(5), list: [1, { d: new Date(0) }] }), {
      id: '0f8fad5b-d9cb-469f-a165-70867728950e',
      raw: 'aGk=',
      seq: 5,
      list: [1, { d: '1970-01-01T00:00:00.000Z' }],
    });
  });
});

describe('message: decodePayload', () => {
  it('auto: JSON when the content type says so, even for a bare value', () => {
    assert.equal(decodePayload(data('42'), 'auto', 'application/json'), 42);
    assert.deepEqual(decodePayload(data('{"a":1}'), 'auto', 'application/json; charset=utf-8'), { a: 1 });
  });

  it('auto: JSON objects and arrays without a content type; other text stays text', () => {
    assert.deepEqual(decodePayload(data(' [1,2]'), 'auto'), [1, 2]);
    assert.equal(decodePayload(data('42'), 'auto'), '42');
    assert.equal(decodePayload(data('{not json'), 'auto'), '{not json');
    assert.equal(decodePayload(data('plain'), 'auto', 'application/json'), 'plain');
  });

  it('auto: bytes that are not UTF-8 stay a Buffer', () => {
    const bytes = Buffer.from([0xff, 0xfe, 0x00]);
    assert.deepEqual(decodePayload(data(bytes), 'auto'), bytes);
  });

  it('string, buffer and json modes', () => {
    assert.equal(decodePayload(data('{"a":1}'), 'string'), '{"a":1}');
    assert.deepEqual(decodePayload(data('{"a":1}'), 'buffer'), Buffer.from('{"a":1}'));
    assert.deepEqual(decodePayload(data('{"a":1}'), 'json'), { a: 1 });
    assert.throws(
      () => decodePayload(data('nope'), 'json'),
      (err: Error & { code?: string }) => err.code === 'InvalidPayload',
    );
  });
});

describe('message: fromAmqpMessage', () => {
  it('maps a telemetry event to the msg fields', () => {
    const enqueued = new Date(Date.UTC(2024, 4, 5, 6, 7, 8, 9));
    const message = {
      message_id: 'm-1',
      correlation_id: rhea.string_to_uuid('0f8fad5b-d9cb-469f-a165-70867728950e'),
      content_type: 'application/json',
      content_encoding: 'utf-8',
      user_id: Buffer.from('someone'),
      to: '/devices/d1/messages/events',
      creation_time: new Date(0),
      application_properties: { level: 'high', count: 3 },
      message_annotations: {
        'iothub-connection-device-id': 'd1',
        'iothub-connection-module-id': 'm1',
        'iothub-enqueuedtime': enqueued,
        'x-opt-sequence-number': 17,
        'x-opt-enqueued-time': enqueued,
      },
      body: data('{"t":21.5}'),
    } as unknown as Message;
    assert.deepEqual(fromAmqpMessage(message, 'auto'), {
      payload: { t: 21.5 },
      properties: { level: 'high', count: 3 },
      systemProperties: {
        'iothub-connection-device-id': 'd1',
        'iothub-connection-module-id': 'm1',
        'iothub-enqueuedtime': '2024-05-05T06:07:08.009Z',
        'x-opt-sequence-number': 17,
        'x-opt-enqueued-time': '2024-05-05T06:07:08.009Z',
      },
      deviceId: 'd1',
      moduleId: 'm1',
      topic: 'd1/m1',
      messageId: 'm-1',
      correlationId: '0f8fad5b-d9cb-469f-a165-70867728950e',
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      userId: 'someone',
      to: '/devices/d1/messages/events',
      creationTime: '1970-01-01T00:00:00.000Z',
    });
  });

  it('a bare message gets empty properties and no absent fields', () => {
    const fields = fromAmqpMessage({ body: 'hello' } as Message, 'auto');
    assert.deepEqual(fields, { payload: 'hello', properties: {}, systemProperties: {} });
  });
});
