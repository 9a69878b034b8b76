/** The balanced strategy's rules (load-balancing.ts), and telemetry-in's checkpoint and batch settings. */
import { strict as assert } from 'node:assert';
import { activeOwnerships, claimable, nextClaim } from '../../src/iothub/load-balancing';
import type { Ownership } from '../../src/iothub/partition-store';
import { batchFrom, blobSettingsFrom, checkpointPolicyFrom } from '../../src/nodes/telemetry-settings';

const NOW = 1_000_000;
const EXPIRY = 60_000;
const ids = (n: number): string[] => Array.from({ length: n }, (_, i) => String(i));

function owned(map: Record<string, string>, ageMs = 0): Ownership[] {
  return Object.entries(map).map(([partitionId, ownerId]) => ({ partitionId, ownerId, lastModifiedMs: NOW - ageMs, etag: `e-${partitionId}` }));
}

const input = (ownerships: Ownership[], partitions = 8, ownerId = 'me') => ({
  ownerId,
  partitionIds: ids(partitions),
  ownerships,
  expiryMs: EXPIRY,
  nowMs: NOW,
});

describe('load balancing (the SDKs\u2019 balanced strategy)', () => {
  it('alone, with nothing claimed: every partition may be claimed, one a round', () => {
    assert.deepEqual(claimable(input([])).sort(), ids(8));
    assert.ok(ids(8).includes(nextClaim(input([])) as string));
  });

  it('claims count only while fresh and owned: lapsed and given-up claims are free', () => {
    const list = [...owned({ '0': 'a' }, EXPIRY + 1), ...owned({ '1': '' }), ...owned({ '2': 'b' })];
    assert.deepEqual([...activeOwnerships(list, EXPIRY, NOW).keys()], ['2']);
  });

  it('balanced splits claim nothing: 8 over 3 readers is 3, 3, 2', () => {
    const map = { '0': 'me', '1': 'me', '2': 'me', '3': 'a', '4': 'a', '5': 'a', '6': 'b', '7': 'b' };
    assert.deepEqual(claimable(input(owned(map))), []);
    assert.deepEqual(claimable(input(owned(map), 8, 'b')), []);
  });

  it('a newcomer takes unowned partitions first, then steals from whoever holds more than its share', () => {
    // a holds 6, b 2; me (new) should reach 2 of 8/3 -> floor 2, two readers with 3.
    const map = { '0': 'a', '1': 'a', '2': 'a', '3': 'a', '4': 'a', '5': 'a', '6': 'b', '7': 'b' };
    const options = claimable(input(owned(map)));
    assert.ok(options.length >= 1);
    assert.ok(
      options.every((p) => map[p as keyof typeof map] === 'a'),
      `steals only from a: ${options}`,
    );
    // With an unowned one, that one comes first.
    const withFree = claimable(input(owned({ '0': 'a', '1': 'a', '2': 'a', '3': 'a', '4': 'a', '5': 'a', '6': 'b' })));
    assert.equal(withFree[0], '7');
  });

  it('a reader at its share claims no more, even when others are short', () => {
    const map = { '0': 'me', '1': 'me', '2': 'me', '3': 'a', '4': 'a', '5': 'a' };
    // 8 over 2 readers: 4 each; me has 3 and two are free.
    assert.equal(claimable(input(owned(map))).length, 1);
    assert.deepEqual(claimable(input(owned({ ...map, '6': 'me' }))), []);
  });
});

describe('telemetry-in settings', () => {
  it('checkpoint policy: every N events (blank: by time only) or T seconds (default 1)', () => {
    assert.deepEqual(checkpointPolicyFrom({}), { everyEvents: 0, everyMs: 1000 });
    assert.deepEqual(checkpointPolicyFrom({ checkpointEvents: '100', checkpointSeconds: '5' }), { everyEvents: 100, everyMs: 5000 });
    assert.deepEqual(checkpointPolicyFrom({ checkpointEvents: 'x', checkpointSeconds: '-1' }), { everyEvents: 0, everyMs: 1000 });
  });

  it('batches: size 1 is a msg per event; the wait defaults to 250 ms', () => {
    assert.deepEqual(batchFrom({}), { size: 1, waitMs: 250 });
    assert.deepEqual(batchFrom({ batchSize: '50', batchWait: 20 }), { size: 50, waitMs: 20 });
  });

  it('Blob settings: ${VAR} from the environment, the variable named and its value never, container names checked, a claim outlives two rounds', () => {
    const env = { STORE: '"UseDevelopmentStorage=true"' };
    const s = blobSettingsFrom({ container: '', updateInterval: 10, ownershipExpiry: 5 }, '${STORE}', env);
    assert.equal(s.connectionString, 'UseDevelopmentStorage=true');
    assert.equal(s.container, 'telemetry-checkpoints');
    assert.equal(s.expiryMs, 20_000);
    assert.throws(
      () => blobSettingsFrom({}, '${MISSING}', env),
      (err: Error & { code?: string }) => err.code === 'InvalidConnectionString' && /MISSING/.test(err.message),
    );
    assert.throws(
      () => blobSettingsFrom({}, '', env),
      (err: Error & { code?: string }) => err.code === 'InvalidConnectionString',
    );
    assert.throws(
      () => blobSettingsFrom({ container: 'Bad_Name' }, 'UseDevelopmentStorage=true', env),
      (err: Error & { code?: string }) => err.code === 'InvalidConfig',
    );
  });
});
