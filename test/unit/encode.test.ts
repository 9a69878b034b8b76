/** The simulator's message encoder writes what rhea's does, so every reader decodes the same message. */
import { strict as assert } from 'node:assert';
import rhea = require('rhea');
import { encodeMessage } from '../../src/simulator/encode';

const decode = (bytes: Buffer): unknown => JSON.parse(JSON.stringify(rhea.message.decode(bytes)));

describe('simulator: encodeMessage', () => {
  const cases: Array<[string, rhea.Message]> = [
    ['a bare string body', { body: 'hello' } as rhea.Message],
    ['no body at all', {} as rhea.Message],
    [
      'a data section with every property and annotations',
      {
        durable: true,
        priority: 7,
        ttl: 5000,
        message_id: 'm-1',
        user_id: Buffer.from('u'),
        to: '/devices/d1/messages/events',
        subject: 's',
        reply_to: 'r',
        correlation_id: rhea.string_to_uuid('0f8fad5b-d9cb-469f-a165-70867728950e'),
        content_type: 'application/json',
        content_encoding: 'utf-8',
        absolute_expiry_time: new Date(1_700_000_000_000),
        creation_time: new Date(1_600_000_000_000),
        group_id: 'g',
        group_sequence: 3,
        reply_to_group_id: 'rg',
        application_properties: { level: 'high', n: 3 },
        message_annotations: {
          'iothub-connection-device-id': 'd1',
          'x-opt-sequence-number': rhea.types.wrap_long(12),
          'x-opt-offset': '4096',
          'x-opt-enqueued-time': new Date(1_700_000_000_123),
        },
        body: rhea.message.data_section(Buffer.from('{"t":1}')),
      } as unknown as rhea.Message,
    ],
    ['several data sections', { body: rhea.message.data_sections([Buffer.from('a'), Buffer.from('b')]) } as rhea.Message],
    ['a map body (amqp-value)', { body: { a: 1, b: 'two' } } as unknown as rhea.Message],
  ];

  for (const [name, message] of cases) {
    it(name, () => {
      assert.deepEqual(decode(encodeMessage(message)), decode(rhea.message.encode(message)));
    });
  }

  it('a message larger than the scratch buffer, and a small one after it, both whole', () => {
    const big = { message_id: 'big', body: rhea.message.data_section(Buffer.alloc(200 * 1024, 7)) } as rhea.Message;
    const small = { message_id: 'small', body: rhea.message.data_section(Buffer.from('x')) } as rhea.Message;
    const bigBytes = encodeMessage(big);
    const smallBytes = encodeMessage(small);
    assert.deepEqual(bigBytes, rhea.message.encode(big));
    assert.deepEqual(smallBytes, rhea.message.encode(small));
    // The first result is not a view of a buffer the second call wrote into.
    assert.deepEqual(decode(bigBytes), decode(rhea.message.encode(big)));
  });
});
