/**
 * telemetry-in's batches, checkpoint msgs and Blob checkpoint store in Node-RED (the test helper's
 * runtime), against the simulator and Azurite: the msgs a batch makes, a checkpoint the flow sends
 * back, a storage string that is not one or an unset ${VAR}, and a Blob service that goes away and
 * comes back while events flow.
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BlobCheckpointStore } from '@azure/eventhubs-checkpointstore-blob';
import { ContainerClient } from '@azure/storage-blob';
import helper from 'node-red-node-test-helper';
import connectionNode from '../../src/nodes/iothub-connection';
import telemetryInNode from '../../src/nodes/iothub-telemetry-in';
import { stopLocalHubs } from '../../src/nodes/local-simulator';
import { partitionForDevice } from '../../src/simulator/partitions';
import type { SimulatedHub } from '../../src/simulator';
import { Azurite } from '../helpers/azurite';
import { collect, inject, statuses, type FlowMsg } from '../helpers/flow';
import { startTestHub, waitFor } from '../helpers/hub';

helper.init(require.resolve('node-red'));

interface SpiedLog {
  getCalls(): Array<{ args: unknown[] }>;
}

function calls(id: string, method: 'warn' | 'error'): string[] {
  const node = helper.getNode(id) as unknown as Record<string, SpiedLog>;
  return node[method]
    .getCalls()
    .map((c) => (c.args[0] instanceof Error ? `${(c.args[0] as Error & { code?: string }).code}: ${c.args[0].message}` : String(c.args[0])));
}

function flow(settings: Record<string, unknown>): object[] {
  return [
    { id: 'tab', type: 'tab', label: 'telemetry' },
    { id: 'conn1', type: 'iothub-connection', z: 'tab', mode: 'azure', transport: 'amqps', reconnectMin: 50, reconnectMax: 300 },
    { id: 'tin', type: 'iothub-telemetry-in', z: 'tab', hub: 'conn1', startPosition: 'earliest', output: 'string', wires: [['out']], ...settings },
    { id: 'out', type: 'helper', z: 'tab', wires: [] },
  ];
}

describe('telemetry-in: batches, checkpoint msgs and Blob checkpoints', function () {
  this.timeout(90_000);
  let hub: SimulatedHub | undefined;
  let azurite: Azurite | undefined;
  let dir: string | undefined;

  beforeEach(async () => {
    await helper.startServer();
  });

  afterEach(async () => {
    await helper.unload();
    await helper.stopServer();
    await stopLocalHubs();
    await hub?.close();
    await azurite?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
    hub = undefined;
    azurite = undefined;
    dir = undefined;
  });

  function ingest(sim: SimulatedHub, perPartition: number, tag: string): void {
    const n = sim.options.partitionCount;
    const devices: string[] = [];
    for (let i = 0; devices.length < n; i++) if (partitionForDevice(`b-${i}`, n) === devices.length) devices.push(`b-${i}`);
    for (let i = 0; i < perPartition * n; i++) sim.ingest(devices[i % n], undefined, { message_id: `${tag}-${i}`, body: `${tag} ${i}` });
  }

  it('batches: up to N events of one partition a msg, payload the bodies, events their fields, the last one the checkpoint', async () => {
    hub = await startTestHub();
    ingest(hub, 12, 'batch');
    await helper.load([connectionNode, telemetryInNode], flow({ batchSize: 5, batchWait: 50 }), { conn1: { connectionString: hub.serviceConnectionString() } });
    const out = collect('out');
    await waitFor(() => out.reduce((n, m) => n + (m.payload as unknown[]).length, 0) === 48, 'all 48 events in batches');
    for (const msg of out) {
      const payload = msg.payload as string[];
      const events = msg.events as Array<{ partitionId: string; sequenceNumber: number; payload: string; messageId: string }>;
      assert.ok(payload.length >= 1 && payload.length <= 5, `a batch of ${payload.length}`);
      assert.equal(events.length, payload.length);
      assert.equal(msg.count, payload.length);
      assert.ok(
        events.every((e) => e.partitionId === msg.partitionId),
        'one partition a batch',
      );
      assert.deepEqual(
        events.map((e) => e.payload),
        payload,
      );
      assert.equal(msg.sequenceNumber, events[events.length - 1].sequenceNumber);
      assert.equal(typeof msg.offset, 'string');
    }
    // A partition's 12 events: batches of 5, 5 and 2 (the last sent by the wait), in order.
    for (const p of ['0', '1', '2', '3']) {
      const seqs = out.filter((m) => m.partitionId === p).flatMap((m) => (m.events as Array<{ sequenceNumber: number }>).map((e) => e.sequenceNumber));
      assert.deepEqual(
        seqs,
        Array.from({ length: 12 }, (_, i) => i),
      );
    }
  });

  it('a msg into telemetry-in that names no event fails to Catch as InvalidMessage; one it sent is taken as a checkpoint', async () => {
    hub = await startTestHub();
    ingest(hub, 1, 'one');
    await helper.load([connectionNode, telemetryInNode], flow({ checkpointMode: 'msg' }), { conn1: { connectionString: hub.serviceConnectionString() } });
    const out = collect('out');
    await waitFor(() => out.length === 4, 'four events');
    inject('tin', { payload: 'not an event' });
    await waitFor(() => calls('tin', 'error').length === 1, 'the error');
    assert.match(calls('tin', 'error')[0], /^InvalidMessage: a checkpoint msg needs msg.partitionId/);
    inject('tin', out[0]);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(calls('tin', 'error').length, 1, 'a msg telemetry-in sent is no error');
  });

  it('a storage string that is not one, or an unset ${VAR}, stops the node with a status and an error that never repeat it', async () => {
    hub = await startTestHub();
    const secret = 'AccountKey=bm90LWEta2V5;garbage';
    await helper.load([connectionNode, telemetryInNode], flow({ checkpointKind: 'blob' }), {
      conn1: { connectionString: hub.serviceConnectionString() },
      tin: { storageConnectionString: secret },
    });
    await waitFor(() => calls('tin', 'error').length > 0, 'an error');
    assert.match(calls('tin', 'error')[0], /^InvalidConnectionString: the storage connection string is not one/);
    assert.ok(!calls('tin', 'error')[0].includes('bm90LWEta2V5'));
    await waitFor(() => statuses('tin').includes('iothub-common.status.invalid-connection-string'), 'the status');
    await helper.unload();

    delete process.env.TELEMETRY_TEST_STORAGE;
    await helper.load([connectionNode, telemetryInNode], flow({ checkpointKind: 'blob' }), {
      conn1: { connectionString: hub.serviceConnectionString() },
      tin: { storageConnectionString: '${TELEMETRY_TEST_STORAGE}' },
    });
    await waitFor(() => calls('tin', 'error').length > 0, 'an error');
    assert.match(calls('tin', 'error')[0], /TELEMETRY_TEST_STORAGE \(storage connection string\) is not set/);
  });

  it('checkpoints as the flow sends msgs back; a Blob service that goes away: reading goes on, a status and one warning, and the checkpoints catch up when it is back', async () => {
    hub = await startTestHub({ partitionCount: 2 });
    dir = mkdtempSync(path.join(os.tmpdir(), 'azurite-'));
    azurite = await Azurite.start(undefined, dir);
    const port = azurite.port;
    process.env.TELEMETRY_TEST_STORAGE = azurite.connectionString;
    ingest(hub, 3, 'first');
    await helper.load(
      [connectionNode, telemetryInNode],
      flow({ checkpointKind: 'blob', container: 'node-test', checkpointMode: 'msg', checkpointSeconds: 0.1, updateInterval: 0.2, ownershipExpiry: 30 }),
      { conn1: { connectionString: hub.serviceConnectionString() }, tin: { storageConnectionString: '${TELEMETRY_TEST_STORAGE}' } },
    );
    const out = collect('out');
    await waitFor(() => out.length === 6, 'the first six events');
    const store = new BlobCheckpointStore(new ContainerClient(azurite.connectionString, 'node-test'));
    const checkpoints = async (): Promise<Record<string, number>> =>
      Object.fromEntries((await store.listCheckpoints('localhost', 'devhub', '$Default')).map((c) => [c.partitionId, c.sequenceNumber]));
    // Nothing written until the flow says it handled something: then exactly what it sent back.
    assert.deepEqual(await checkpoints(), {});
    const back = (msg: FlowMsg): void => inject('tin', msg);
    back(out.find((m) => m.partitionId === '0' && m.sequenceNumber === 1) as FlowMsg);
    await waitForAsync(async () => (await checkpoints())['0'] === 1, 'the checkpoint the flow sent back');

    await azurite.stop();
    ingest(hub, 2, 'during');
    await waitFor(() => out.length === 10, 'reading goes on while the store is away');
    for (const m of out.slice(6)) back(m);
    await waitFor(() => statuses('tin').includes('iothub-telemetry-in.status.store-unreachable'), 'the store status');
    await waitFor(() => calls('tin', 'warn').some((w) => /checkpoint store/.test(w)), 'a warning');

    azurite = await Azurite.start(port, dir);
    await waitForAsync(
      async () => {
        const c = await checkpoints().catch(() => ({}) as Record<string, number>);
        return c['0'] === 4 && c['1'] === 4;
      },
      'the checkpoints caught up',
      60_000,
    );
    await waitFor(() => statuses('tin').slice(-1)[0] === 'node-red:common.status.connected', 'connected again');
    assert.equal(calls('tin', 'warn').filter((w) => /checkpoint store/.test(w)).length, 1, 'told once');
    assert.ok(!calls('tin', 'warn').some((w) => w.includes('Eby8vdM02')), 'no key in a warning');
  });
});

async function waitForAsync(check: () => Promise<boolean>, what: string, ms = 20_000): Promise<void> {
  const start = Date.now();
  while (!(await check())) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
