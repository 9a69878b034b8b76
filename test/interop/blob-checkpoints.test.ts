/**
 * Blob checkpoints against real parts: Azurite as the Blob service, the simulator as the hub, and the
 * official @azure/eventhubs-checkpointstore-blob and EventHubConsumerClient on the same container.
 * The records telemetry-in writes are the official store's, and the official processor and
 * TelemetryReaders balance one consumer group between them.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { EventHubConsumerClient, earliestEventPosition, type Subscription } from '@azure/event-hubs';
import { BlobCheckpointStore } from '@azure/eventhubs-checkpointstore-blob';
import { ContainerClient } from '@azure/storage-blob';
import { bareEtag, BlobPartitionStore } from '../../src/iothub/blob-partition-store';
import { parseConnectionString } from '../../src/iothub/connection-string';
import type { TelemetryEvent } from '../../src/iothub/event-hub';
import { HubConnection, type HubConnectionOptions } from '../../src/iothub/hub-connection';
import type { PartitionScope } from '../../src/iothub/partition-store';
import { TelemetryReader } from '../../src/iothub/telemetry-reader';
import type { SimulatedHub } from '../../src/simulator';
import { partitionForDevice } from '../../src/simulator/partitions';
import { Azurite } from '../helpers/azurite';
import { startTestHub, testCertDir, waitFor } from '../helpers/hub';
import { PYTHON_DIR } from '../helpers/python-peers';

const UPDATE_MS = 300;
const EXPIRY_MS = 3000;

describe('Blob checkpoints with the official Event Hubs store and processor', function () {
  this.timeout(120_000);
  let azurite: Azurite;
  let hub: SimulatedHub | undefined;
  const closers: Array<() => Promise<unknown>> = [];

  before(async () => {
    azurite = await Azurite.start();
  });
  after(async () => {
    await azurite?.stop();
  });
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close().catch(() => undefined);
    await hub?.close();
    hub = undefined;
  });

  function container(name: string): ContainerClient {
    return new ContainerClient(azurite.connectionString, name);
  }

  it('writes the blob names and metadata the official store reads, and reads what it writes; of two first claims one wins', async () => {
    const ours = await BlobPartitionStore.open(azurite.connectionString, 'layout');
    await ours.prepare();
    const theirs = new BlobCheckpointStore(container('layout'));
    // Mixed case, as a hub's names may come: both stores lower-case them into the blob names.
    const scope: PartitionScope = { namespace: 'MyHub.Azure-Devices.net', eventHub: 'MyHub', consumerGroup: '$Default' };
    await ours.updateCheckpoint(scope, { partitionId: '3', sequenceNumber: 41, offset: '4096' });
    const seen = await theirs.listCheckpoints(scope.namespace, scope.eventHub, scope.consumerGroup);
    assert.deepEqual(
      seen.map((c) => [c.partitionId, c.sequenceNumber, c.offset]),
      [['3', 41, '4096']],
    );
    const names: string[] = [];
    for await (const blob of container('layout').listBlobsFlat()) names.push(blob.name);
    assert.deepEqual(names, ['myhub.azure-devices.net/myhub/$default/checkpoint/3']);

    await theirs.updateCheckpoint({
      ...{ fullyQualifiedNamespace: 'myhub.azure-devices.net', eventHubName: 'myhub', consumerGroup: '$default' },
      partitionId: '5',
      sequenceNumber: 7,
      offset: '700',
    });
    assert.deepEqual((await ours.listCheckpoints(scope)).map((c) => [c.partitionId, c.sequenceNumber, c.offset]).sort(), [
      ['3', 41, '4096'],
      ['5', 7, '700'],
    ]);

    const first = await Promise.all([ours.claim(scope, '0', 'node-red-a', undefined), ours.claim(scope, '0', 'node-red-b', undefined)]);
    assert.equal(first.filter((c) => c !== undefined).length, 1, 'one of two first claims wins');
    const winner = first.find((c) => c !== undefined);
    assert.ok(winner);
    const listed = await theirs.listOwnership(scope.namespace, scope.eventHub, scope.consumerGroup);
    assert.deepEqual(
      listed.map((o) => [o.partitionId, o.ownerId, bareEtag(o.etag)]),
      [['0', winner.ownerId, winner.etag]],
    );
    // The SDK takes it over with the version it listed; the claim ours still holds is stale now.
    const [taken] = await theirs.claimOwnership([{ ...listed[0], ownerId: 'sdk' }]);
    assert.ok(taken);
    assert.equal(await ours.claim(scope, '0', winner.ownerId, winner.etag), undefined, 'a renewal with a stale version loses');
    assert.deepEqual(
      (await ours.listOwnership(scope)).map((o) => [o.partitionId, o.ownerId]),
      [['0', 'sdk']],
    );
  });

  it('a missing container is made; a string that is not a storage connection string fails without repeating it', async () => {
    const store = await BlobPartitionStore.open(azurite.connectionString, 'made-on-start');
    await store.prepare();
    assert.ok(await container('made-on-start').exists());
    await assert.rejects(BlobPartitionStore.open('AccountKey=c2VjcmV0;nonsense', 'x'), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'InvalidConnectionString');
      assert.ok(!err.message.includes('c2VjcmV0'));
      return true;
    });
  });

  it('two TelemetryReaders and an EventHubConsumerClient split 8 partitions, each owned once; a reader that stops hands its partitions over and no event is missed', async () => {
    hub = await startTestHub({ partitionCount: 8 });
    const sim = hub;
    const devices: string[] = [];
    for (let i = 0; devices.length < 8; i++) if (partitionForDevice(`bal-${i}`, 8) === devices.length) devices.push(`bal-${i}`);
    let sent = 0;
    const send = (count: number): void => {
      for (let i = 0; i < count; i++, sent++) sim.ingest(devices[sent % 8], undefined, { message_id: `m-${sent}`, body: `event ${sent}` });
    };
    send(40);

    const options: HubConnectionOptions = { transport: 'amqp', port: sim.ports.amqp, connectHost: '127.0.0.1', reconnectMinMs: 200, reconnectMaxMs: 1000 };
    const seen = new Map<string, string[]>();
    const note = (who: string, id: string): void => {
      seen.set(id, [...(seen.get(id) ?? []), who]);
    };
    const startReader = (name: string): TelemetryReader => {
      const connection = new HubConnection(parseConnectionString(sim.serviceConnectionString()), options);
      connection.open();
      const reader = new TelemetryReader({
        connection: async () => connection,
        connectionOptions: async () => options,
        consumerGroup: '$Default',
        partitions: [],
        start: { kind: 'earliest' },
        prefetch: 50,
        balance: {
          store: () => BlobPartitionStore.open(azurite.connectionString, 'group'),
          ownerId: name,
          updateIntervalMs: UPDATE_MS,
          expiryMs: EXPIRY_MS,
        },
        checkpointPolicy: { everyMs: 200 },
      });
      reader.on('event', (e: TelemetryEvent) => note(name, String(e.message.message_id)));
      reader.start();
      closers.push(async () => {
        await reader.close();
        await connection.close();
      });
      return reader;
    };
    const a = startReader('reader-a');
    startReader('reader-b');

    const client = new EventHubConsumerClient('$Default', sim.eventHubConnectionString(), new BlobCheckpointStore(container('group')), {
      identifier: 'sdk',
      loadBalancingOptions: { strategy: 'balanced', updateIntervalInMs: UPDATE_MS, partitionOwnershipExpirationIntervalInMs: EXPIRY_MS },
    });
    const subscription: Subscription = client.subscribe(
      {
        processEvents: async (events, context) => {
          for (const e of events) note('sdk', String(e.messageId));
          if (events.length > 0) await context.updateCheckpoint(events[events.length - 1]);
        },
        processError: async () => undefined,
      },
      { startPosition: earliestEventPosition, maxBatchSize: 50, maxWaitTimeInSeconds: 0.2 },
    );
    closers.push(async () => {
      await subscription.close();
      await client.close();
    });

    const sdkStore = new BlobCheckpointStore(container('group'));
    const owners = async (): Promise<Map<string, string>> => {
      const list = await sdkStore.listOwnership(client.fullyQualifiedNamespace, client.eventHubName, '$Default');
      return new Map(list.filter((o) => o.ownerId !== '' && Date.now() - (o.lastModifiedTimeInMs ?? 0) < EXPIRY_MS).map((o) => [o.partitionId, o.ownerId]));
    };
    let last = '';
    const balanced = async (readers: string[]): Promise<boolean> => {
      const map = await owners();
      last = JSON.stringify([...map].sort());
      if (map.size !== 8) return false;
      const counts = readers.map((r) => [...map.values()].filter((o) => o === r).length);
      return counts.every((c) => c >= Math.floor(8 / readers.length) && c <= Math.ceil(8 / readers.length));
    };
    await waitUntil(() => balanced(['reader-a', 'reader-b', 'sdk']), 'every partition owned once, 2 or 3 each', 60_000).catch((err: Error) => {
      throw new Error(`${err.message}: ${last}`);
    });
    send(40);
    await waitFor(() => seen.size === sent, `all ${sent} events read (${seen.size})`, 30_000);

    // One reader stops: its partitions are given up and the others take them over.
    await a.close();
    send(40);
    await waitUntil(() => balanced(['reader-b', 'sdk']), 'the two left own 4 partitions each', 60_000);
    await waitFor(() => seen.size === sent, `all ${sent} events read after the handover (${seen.size})`, 30_000);
    const byReader = new Map<string, number>();
    for (const whos of seen.values()) for (const who of whos) byReader.set(who, (byReader.get(who) ?? 0) + 1);
    assert.ok((byReader.get('sdk') ?? 0) > 0 && (byReader.get('reader-b') ?? 0) > 0, JSON.stringify([...byReader]));
  });
});

async function waitUntil(check: () => Promise<boolean>, what: string, ms: number): Promise<void> {
  const start = Date.now();
  while (!(await check().catch(() => false))) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface PythonResult {
  namespace: string;
  eventhub: string;
  checkpoints: Array<{ partition: string; sequence_number: number; offset: string }>;
  ownership: Array<{ partition: string; owner: string | null }>;
  events: Array<{ partition: string; sequence_number: number; body: string }>;
  errors: string[];
}

/** Runs test/interop/python/blob_checkpoints.py with the system Python (Debian's python3-azure). */
function runPython(args: Record<string, string | number>): Promise<PythonResult> {
  const child = spawn('/usr/bin/python3', ['-u', 'blob_checkpoints.py', ...Object.entries(args).map(([k, v]) => `${k}=${v}`)], {
    cwd: PYTHON_DIR,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
    child.once('close', (code) => {
      clearTimeout(timer);
      const line = stdout.trim().split('\n').pop() ?? '';
      try {
        if (code !== 0) throw new Error(`exit ${code}`);
        resolve(JSON.parse(line) as PythonResult);
      } catch (err) {
        reject(new Error(`blob_checkpoints.py failed (${(err as Error).message}):\n${stderr.slice(-3000)}\n${stdout.slice(-1000)}`));
      }
    });
  });
}

describe('Blob checkpoints telemetry-in wrote, read by the Python SDK (azure-eventhub with checkpointstoreblob)', function () {
  this.timeout(180_000);
  let azurite: Azurite | undefined;
  let hub: SimulatedHub | undefined;

  after(async () => {
    await azurite?.stop();
    await hub?.close();
  });

  it('a Python EventHubConsumerClient with a BlobCheckpointStore lists the checkpoints a TelemetryReader wrote and reads on right after them', async function () {
    const probe = spawn('/usr/bin/python3', ['-c', 'import azure.eventhub.extensions.checkpointstoreblob']);
    const importable = await new Promise<boolean>((resolve) => probe.once('close', (code) => resolve(code === 0)));
    if (!importable) {
      if (process.env.CI) throw new Error('azure-eventhub-checkpointstoreblob is missing (apt-get install -y python3-azure)');
      this.skip();
    }
    // The Python SDK dials 5671 whatever the string says, and names the blobs with the host as the
    // string gives it: the simulator listens on 5671, and the string names no port, as on Azure.
    try {
      hub = await startTestHub({ partitionCount: 4, amqpsPort: 5671 });
    } catch (err) {
      if (process.env.CI) throw err;
      process.stdout.write(`      skipped: port 5671 is not free here (${(err as Error).message})\n`);
      this.skip();
    }
    const sim = hub;
    azurite = await Azurite.start();
    const devices: string[] = [];
    for (let i = 0; devices.length < 4; i++) if (partitionForDevice(`py-${i}`, 4) === devices.length) devices.push(`py-${i}`);
    let sent = 0;
    const send = (perPartition: number, tag: string): void => {
      for (let i = 0; i < perPartition * 4; i++, sent++) sim.ingest(devices[i % 4], undefined, { message_id: `${tag}-${i}`, body: `${tag} ${i}` });
    };
    send(5, 'before');

    const options: HubConnectionOptions = { transport: 'amqp', port: sim.ports.amqp, connectHost: '127.0.0.1', reconnectMinMs: 200, reconnectMaxMs: 1000 };
    const connection = new HubConnection(parseConnectionString(sim.serviceConnectionString()), options);
    connection.open();
    const reader = new TelemetryReader({
      connection: async () => connection,
      connectionOptions: async () => options,
      consumerGroup: '$Default',
      partitions: [],
      start: { kind: 'earliest' },
      prefetch: 50,
      balance: {
        store: () => BlobPartitionStore.open((azurite as Azurite).connectionString, 'python'),
        ownerId: 'node-red-py',
        updateIntervalMs: 200,
        expiryMs: 3000,
      },
      checkpointPolicy: { everyMs: 100 },
    });
    let read = 0;
    reader.on('event', () => read++);
    reader.start();
    await waitFor(() => read === 20, 'telemetry-in read the 20 events', 30_000);
    // Stopping writes the last checkpoints and gives the partitions up.
    await reader.close();
    await connection.close();
    send(2, 'after');

    const eventHubString = sim.eventHubConnectionString('iothubowner', 'amqps').replace(':5671/', '/');
    const result = await runPython({
      conn: eventHubString,
      verify: path.join(testCertDir(), 'cert.pem'),
      storage: azurite.connectionString,
      container: 'python',
      count: 8,
      seconds: 30,
    });
    assert.equal(result.namespace, 'localhost');
    assert.deepEqual(
      result.checkpoints.map((c) => [c.partition, c.sequence_number]).sort(),
      [
        ['0', 4],
        ['1', 4],
        ['2', 4],
        ['3', 4],
      ],
      'the checkpoints telemetry-in wrote',
    );
    for (const c of result.checkpoints) assert.ok(c.offset !== null && c.offset !== '', 'each checkpoint has an offset');
    assert.ok(
      result.ownership.every((o) => !o.owner),
      `telemetry-in gave its partitions up on close (an empty owner, which Python reads as None): ${JSON.stringify(result.ownership)}`,
    );
    assert.deepEqual(result.errors, []);
    assert.deepEqual(
      result.events.map((e) => e.body).sort(),
      Array.from({ length: 8 }, (_, i) => `after ${i}`).sort(),
      'only the events after the checkpoints',
    );
  });
});
