import { strict as assert } from 'node:assert';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { Partition, partitionForDevice, type StoredEvent } from '../../src/simulator/partitions';

// The package's exports map hides impl/, so load the file by its path next to the CommonJS entry.
const load = createRequire(__filename);
const ehEntry = load.resolve('@azure/event-hubs');
const { mapPartitionKeyToId } = load(path.join(path.dirname(ehEntry), 'impl', 'partitionKeyToIdMapper.js')) as {
  mapPartitionKeyToId: (key: string, count: number) => number;
};

/** Deterministic ids of every length 0..40 (all lookup3 tail lengths, several blocks) and charsets. */
function ids(): string[] {
  const out: string[] = ['', 'd1', 'device-1', 'MyDevice', 'ünïcødé-设备', 'emoji-🙂', 'a%41', "o'neil:x@y$"];
  let seed = 12345;
  const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._:@$ü设';
  for (let i = 0; i < 3000; i++) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    const len = i % 41;
    let id = '';
    for (let j = 0; j < len; j++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      id += alphabet[seed % alphabet.length];
    }
    out.push(id);
  }
  return out;
}

const bytes = (n: number): Buffer => Buffer.alloc(n, 0x61);

describe('partitions: partitionForDevice', () => {
  it('equals the Event Hubs SDK partition-key mapping for thousands of ids and 1..32 partitions', () => {
    const all = ids();
    let checked = 0;
    const seen = new Set<number>();
    for (let n = 1; n <= 32; n++) {
      for (const id of all) {
        const ours = partitionForDevice(id, n);
        assert.equal(ours, mapPartitionKeyToId(id, n), `id ${JSON.stringify(id)} n ${n}`);
        if (n === 32) seen.add(ours);
        checked++;
      }
    }
    assert.ok(checked > 90_000);
    // The mapping spreads: every one of 32 partitions gets some id.
    assert.equal(seen.size, 32);
  });
});

describe('partitions: Partition', () => {
  const retention = { maxEvents: 1000, maxAgeMs: 60_000 };

  it('numbers events: sequence from 0, offsets grow by encoded length', () => {
    const p = new Partition('0', retention);
    const stamps: Array<{ sequenceNumber: number; offset: number; enqueuedTime: number }> = [];
    for (const [i, len] of [3, 5, 7].entries()) {
      const e = p.append('d1', 1000 + i, (stamp) => {
        stamps.push(stamp);
        return bytes(len);
      });
      assert.equal(e.deviceId, 'd1');
      assert.equal(e.encoded.length, len);
    }
    assert.deepEqual(stamps, [
      { sequenceNumber: 0, offset: 0, enqueuedTime: 1000 },
      { sequenceNumber: 1, offset: 3, enqueuedTime: 1001 },
      { sequenceNumber: 2, offset: 8, enqueuedTime: 1002 },
    ]);
    assert.equal(p.size, 3);
    assert.equal(p.beginSequence, 0);
    assert.equal(p.endSequence, 3);
    assert.equal(p.lastEvent()?.offset, 8);
    assert.equal(p.append('d1', 2000, () => bytes(1)).offset, 15);
  });

  it('enqueued times never go backwards even if the clock does', () => {
    const p = new Partition('0', retention);
    const times = [5000, 4000, 6000, 5999].map((now) => p.append('d', now, () => bytes(1)).enqueuedTime);
    assert.deepEqual(times, [5000, 5000, 6000, 6000]);
  });

  it('an empty partition: begin == end == 0, no last event', () => {
    const p = new Partition('3', retention);
    assert.equal(p.id, '3');
    assert.equal(p.size, 0);
    assert.equal(p.beginSequence, 0);
    assert.equal(p.endSequence, 0);
    assert.equal(p.lastEvent(), undefined);
    assert.equal(p.at(0), undefined);
    assert.equal(
      p.firstWhere(() => true),
      0,
    );
  });

  it('retains at most maxEvents, dropping the oldest', () => {
    const p = new Partition('0', { maxEvents: 3, maxAgeMs: 60_000 });
    for (let i = 0; i < 5; i++) p.append('d', i, () => bytes(2));
    assert.equal(p.size, 3);
    assert.equal(p.beginSequence, 2);
    assert.equal(p.endSequence, 5);
    assert.equal(p.at(1), undefined);
    assert.equal(p.at(2)?.offset, 4);
    assert.equal(p.at(4)?.sequenceNumber, 4);
    assert.equal(p.at(5), undefined);
    assert.deepEqual(
      [...p.all()].map((e) => e.sequenceNumber),
      [2, 3, 4],
    );
  });

  it('keeps at() and firstWhere() right across internal compaction', () => {
    const p = new Partition('0', { maxEvents: 10, maxAgeMs: 1e9 });
    for (let i = 0; i < 3000; i++) p.append('d', i * 10, () => bytes(1 + (i % 3)));
    assert.equal(p.size, 10);
    assert.equal(p.beginSequence, 2990);
    for (let s = 2990; s < 3000; s++) {
      const e = p.at(s);
      assert.equal(e?.sequenceNumber, s);
      assert.equal(e?.enqueuedTime, s * 10);
    }
    assert.equal(p.at(2989), undefined);
    assert.equal(
      p.firstWhere((e) => e.enqueuedTime >= 29_955),
      2996,
    );
    assert.equal(
      p.firstWhere(() => true),
      2990,
    );
    assert.equal(
      p.firstWhere(() => false),
      3000,
    );
  });

  it('trims by age: events older than maxAgeMs go, the boundary stays', () => {
    const p = new Partition('0', { maxEvents: 100, maxAgeMs: 1000 });
    for (const t of [0, 500, 1500, 2000]) p.append('d', t, () => bytes(1));
    p.trimByAge(1600);
    assert.deepEqual(
      [...p.all()].map((e) => e.enqueuedTime),
      [1500, 2000],
    );
    p.trimByAge(2500);
    assert.deepEqual(
      [...p.all()].map((e) => e.enqueuedTime),
      [1500, 2000],
    );
    p.trimByAge(3001);
    assert.equal(p.size, 0);
    assert.equal(p.beginSequence, 4);
    assert.equal(p.endSequence, 4);
    assert.equal(p.append('d', 3001, () => bytes(1)).sequenceNumber, 4);
  });

  it('firstWhere finds the first event satisfying a monotone predicate', () => {
    const p = new Partition('0', retention);
    for (let i = 0; i < 20; i++) p.append('d', 100 * i, () => bytes(4));
    assert.equal(
      p.firstWhere((e) => e.offset > 30),
      8,
    );
    assert.equal(
      p.firstWhere((e) => e.offset >= 32),
      8,
    );
    assert.equal(
      p.firstWhere((e) => e.enqueuedTime > 1900),
      20,
    );
  });

  it('onAppend notifies each append until unsubscribed', () => {
    const p = new Partition('0', retention);
    let a = 0;
    let b = 0;
    const offA = p.onAppend(() => a++);
    p.onAppend(() => b++);
    p.append('d', 1, () => bytes(1));
    p.append('d', 2, () => bytes(1));
    offA();
    p.append('d', 3, () => bytes(1));
    assert.equal(a, 2);
    assert.equal(b, 3);
  });

  it('a listener sees the appended event already stored', () => {
    const p = new Partition('0', retention);
    const seen: Array<StoredEvent | undefined> = [];
    p.onAppend(() => seen.push(p.lastEvent()));
    const e = p.append('d7', 1, () => bytes(2));
    assert.deepEqual(seen, [e]);
  });

  it('restore keeps numbering after restored events', () => {
    const p = new Partition('0', retention);
    p.restore({ sequenceNumber: 41, offset: 900, enqueuedTime: 5, encoded: bytes(10), deviceId: 'd' });
    const e = p.append('d', 1, () => bytes(1));
    assert.equal(e.sequenceNumber, 42);
    assert.equal(e.offset, 910);
    assert.equal(e.enqueuedTime, 5);
    assert.equal(p.at(41)?.offset, 900);
  });
});
