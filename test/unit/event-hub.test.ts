import { strict as assert } from 'node:assert';
import { parseSelector, selectorFor, type StartPosition } from '../../src/amqp/selector-filter';
import { startSequence } from '../../src/simulator/event-hub';
import { Partition } from '../../src/simulator/partitions';

describe('event-hub: parseSelector', () => {
  it('offset, quoted and unquoted, > and >=', () => {
    assert.deepEqual(parseSelector("amqp.annotation.x-opt-offset > '-1'"), { kind: 'offset', value: '-1', inclusive: false });
    assert.deepEqual(parseSelector('amqp.annotation.x-opt-offset >= 2995'), { kind: 'offset', value: '2995', inclusive: true });
    assert.deepEqual(parseSelector("amqp.annotation.x-opt-offset>'120'"), { kind: 'offset', value: '120', inclusive: false });
  });

  it('@latest', () => {
    assert.deepEqual(parseSelector("amqp.annotation.x-opt-offset > '@latest'"), { kind: 'offset', value: '@latest', inclusive: false });
  });

  it('sequence number', () => {
    assert.deepEqual(parseSelector("amqp.annotation.x-opt-sequence-number > '41'"), { kind: 'sequence', value: 41, inclusive: false });
    assert.deepEqual(parseSelector('amqp.annotation.x-opt-sequence-number >= 0'), { kind: 'sequence', value: 0, inclusive: true });
    assert.deepEqual(parseSelector("amqp.annotation.x-opt-sequence-number > '-1'"), { kind: 'sequence', value: -1, inclusive: false });
  });

  it('enqueued time in ms, with surrounding blanks and any case', () => {
    assert.deepEqual(parseSelector("  amqp.annotation.x-opt-enqueued-time > '1700000000123'  "), {
      kind: 'time',
      value: 1_700_000_000_123,
      inclusive: false,
    });
    assert.deepEqual(parseSelector('AMQP.ANNOTATION.X-OPT-ENQUEUED-TIME >= 5'), { kind: 'time', value: 5, inclusive: true });
  });

  it('junk gives undefined', () => {
    for (const junk of [
      '',
      'hello',
      "amqp.annotation.x-opt-offset = '5'",
      "amqp.annotation.x-opt-offset < '5'",
      "amqp.annotation.x-opt-partition-key > '5'",
      "amqp.annotation.x-opt-sequence-number > 'abc'",
      "amqp.annotation.x-opt-sequence-number > '1.5'",
      "amqp.annotation.x-opt-enqueued-time > '2024-01-01'",
      "amqp.annotation.x-opt-offset > '5' OR 1=1",
      "amqp.annotation.x-opt-offset > 'a'b'",
    ]) {
      assert.equal(parseSelector(junk), undefined, junk);
    }
  });
});

describe('event-hub: startSequence', () => {
  // 10 events of 10 bytes each: offsets 0,10,..,90; times 1000,1100,..,1900; sequences 0..9.
  function filled(maxEvents = 100): Partition {
    const p = new Partition('0', { maxEvents, maxAgeMs: 1e9 });
    for (let i = 0; i < 10; i++) p.append('d', 1000 + 100 * i, () => Buffer.alloc(10));
    return p;
  }
  const from = (p: Partition, expression: string): number => {
    const filter = parseSelector(expression);
    assert.ok(filter, expression);
    return startSequence(p, filter);
  };

  it('no filter starts at the oldest retained event', () => {
    assert.equal(startSequence(filled(), undefined), 0);
    assert.equal(startSequence(filled(4), undefined), 6);
  });

  it('offset filters', () => {
    const p = filled();
    assert.equal(from(p, "amqp.annotation.x-opt-offset > '-1'"), 0);
    assert.equal(from(p, "amqp.annotation.x-opt-offset >= '-1'"), 0);
    assert.equal(from(p, "amqp.annotation.x-opt-offset > '30'"), 4);
    assert.equal(from(p, "amqp.annotation.x-opt-offset >= '30'"), 3);
    assert.equal(from(p, 'amqp.annotation.x-opt-offset > 35'), 4);
    assert.equal(from(p, "amqp.annotation.x-opt-offset > '90'"), 10);
    assert.equal(from(p, "amqp.annotation.x-opt-offset > '@latest'"), 10);
    assert.equal(from(filled(4), "amqp.annotation.x-opt-offset > '10'"), 6);
  });

  it('sequence filters, clamped to what is retained', () => {
    const p = filled();
    assert.equal(from(p, "amqp.annotation.x-opt-sequence-number > '-1'"), 0);
    assert.equal(from(p, "amqp.annotation.x-opt-sequence-number > '4'"), 5);
    assert.equal(from(p, "amqp.annotation.x-opt-sequence-number >= '4'"), 4);
    assert.equal(from(p, "amqp.annotation.x-opt-sequence-number >= '99'"), 10);
    assert.equal(from(filled(4), "amqp.annotation.x-opt-sequence-number > '1'"), 6);
  });

  it('enqueued-time filters', () => {
    const p = filled();
    assert.equal(from(p, "amqp.annotation.x-opt-enqueued-time > '0'"), 0);
    assert.equal(from(p, "amqp.annotation.x-opt-enqueued-time > '1300'"), 4);
    assert.equal(from(p, "amqp.annotation.x-opt-enqueued-time >= '1300'"), 3);
    assert.equal(from(p, "amqp.annotation.x-opt-enqueued-time > '1350'"), 4);
    assert.equal(from(p, "amqp.annotation.x-opt-enqueued-time > '99999'"), 10);
  });

  it('unquoted numbers followed by blanks still parse', () => {
    assert.deepEqual(parseSelector('amqp.annotation.x-opt-sequence-number > 5 '), { kind: 'sequence', value: 5, inclusive: false });
    assert.deepEqual(parseSelector('amqp.annotation.x-opt-enqueued-time >= 7\t'), { kind: 'time', value: 7, inclusive: true });
  });
});

describe('selector filters: what the client writes is what the simulator reads', () => {
  it('every start position and the resume filter parse to the filter they mean', () => {
    const cases: Array<[StartPosition | { kind: 'after'; sequenceNumber: number }, unknown]> = [
      [{ kind: 'latest' }, { kind: 'offset', value: '@latest', inclusive: false }],
      [{ kind: 'earliest' }, { kind: 'offset', value: '-1', inclusive: false }],
      [
        { kind: 'sequenceNumber', value: 42 },
        { kind: 'sequence', value: 42, inclusive: true },
      ],
      [
        { kind: 'enqueuedTime', value: 1700000000123 },
        { kind: 'time', value: 1700000000123, inclusive: true },
      ],
      [
        { kind: 'after', sequenceNumber: 7 },
        { kind: 'sequence', value: 7, inclusive: false },
      ],
    ];
    for (const [position, filter] of cases) assert.deepEqual(parseSelector(selectorFor(position)), filter, JSON.stringify(position));
  });
});
