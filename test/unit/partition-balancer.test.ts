/**
 * PartitionBalancer's rounds over a store kept in memory (the Blob store itself is tested against Azurite
 * in test/interop/blob-checkpoints.test.ts): claims with versions, a link taken by a reader whose claim
 * had lapsed, a claim taken over, and giving up on close.
 */
import { strict as assert } from 'node:assert';
import { PartitionBalancer } from '../../src/iothub/partition-balancer';
import type { Checkpoint, Ownership, PartitionScope, PartitionStore } from '../../src/iothub/partition-store';
import { RecordingClock } from '../helpers/clock';
import { waitFor } from '../helpers/hub';

class MemoryStore implements PartitionStore {
  readonly records = new Map<string, Ownership>();
  readonly checkpoints = new Map<string, Checkpoint>();
  private version = 0;
  async prepare(): Promise<void> {}
  async listOwnership(_scope: PartitionScope): Promise<Ownership[]> {
    return [...this.records.values()].map((o) => ({ ...o }));
  }
  async claim(_scope: PartitionScope, partitionId: string, ownerId: string, etag: string | undefined): Promise<Ownership | undefined> {
    const current = this.records.get(partitionId);
    if (etag === undefined ? current !== undefined : current?.etag !== etag) return undefined;
    const record = { partitionId, ownerId, lastModifiedMs: Date.now(), etag: `v${++this.version}` };
    this.records.set(partitionId, record);
    return { ...record };
  }
  async listCheckpoints(_scope: PartitionScope): Promise<Checkpoint[]> {
    return [...this.checkpoints.values()];
  }
  async updateCheckpoint(_scope: PartitionScope, checkpoint: Checkpoint): Promise<void> {
    this.checkpoints.set(checkpoint.partitionId, checkpoint);
  }
}

const scope: PartitionScope = { namespace: 'hub.servicebus.windows.net', eventHub: 'hub', consumerGroup: '$default' };

describe('PartitionBalancer', () => {
  const balancers: PartitionBalancer[] = [];
  afterEach(async () => {
    for (const b of balancers.splice(0)) await b.close();
  });

  function balancer(store: MemoryStore, ownerId: string, partitions = 2): { b: PartitionBalancer; claimed: string[]; lost: string[] } {
    const b = new PartitionBalancer({
      store,
      scope,
      ownerId,
      partitionIds: Array.from({ length: partitions }, (_, i) => String(i)),
      updateIntervalMs: 20,
      expiryMs: 5000,
      clock: new RecordingClock(),
    });
    balancers.push(b);
    const claimed: string[] = [];
    const lost: string[] = [];
    b.on('claimed', (p) => claimed.push(p));
    b.on('lost', (p) => lost.push(p));
    return { b, claimed, lost };
  }

  it('alone it claims every partition, one a round, with the checkpoint of each', async () => {
    const store = new MemoryStore();
    store.checkpoints.set('1', { partitionId: '1', sequenceNumber: 7, offset: '700' });
    const { b } = balancer(store, 'me');
    const seen = new Map<string, Checkpoint | undefined>();
    b.on('claimed', (p, c) => seen.set(p, c));
    b.start();
    await waitFor(() => seen.size === 2, 'both claimed');
    assert.deepEqual(seen.get('1'), { partitionId: '1', sequenceNumber: 7, offset: '700' });
    assert.equal(seen.get('0'), undefined);
    assert.deepEqual(
      [...store.records.values()].map((o) => o.ownerId),
      ['me', 'me'],
    );
  });

  it('a link taken while the claim is still its own resumes at the next round; one taken with the claim is given up', async () => {
    const store = new MemoryStore();
    const { b, claimed, lost } = balancer(store, 'me');
    b.start();
    await waitFor(() => claimed.length === 2, 'both claimed');
    // A reader whose claim had lapsed came back and took the link: the claim is still ours.
    b.release('0');
    assert.deepEqual(b.ownedPartitions(), ['1']);
    await waitFor(() => claimed.length === 3, 'partition 0 resumed');
    assert.equal(claimed[2], '0');
    assert.equal(lost.length, 0);
    // Another reader claims partition 1 (with the version it listed) and takes its link.
    const record = store.records.get('1') as Ownership;
    assert.ok(await store.claim(scope, '1', 'other', record.etag));
    b.release('1');
    await waitFor(() => lost.includes('1'), 'partition 1 given up');
    assert.equal(claimed.length, 3, 'not claimed back from its new owner');
  });

  it('on close it gives its partitions up (an empty owner), as the SDKs do on stop', async () => {
    const store = new MemoryStore();
    const { b, claimed } = balancer(store, 'me');
    b.start();
    await waitFor(() => claimed.length === 2, 'both claimed');
    await b.close();
    assert.deepEqual(
      [...store.records.values()].map((o) => o.ownerId),
      ['', ''],
    );
  });
});
