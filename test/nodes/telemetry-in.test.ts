/** telemetry-in in a Node-RED runtime, fed by the official device SDK through the simulator. */
import { strict as assert } from 'node:assert';
import { EventHubConsumerClient, latestEventPosition } from '@azure/event-hubs';
import helper from 'node-red-node-test-helper';
import type { Client as DeviceClient } from 'azure-iot-device';
import connectionNode from '../../src/nodes/iothub-connection';
import telemetryInNode from '../../src/nodes/iothub-telemetry-in';
import { stopLocalHubs } from '../../src/nodes/local-simulator';
import { partitionForDevice } from '../../src/simulator/partitions';
import type { SimulatedHub } from '../../src/simulator';
import { delay, startTestHub, waitFor } from '../helpers/hub';
import { statuses } from '../helpers/flow';
import { closeQuietly, Message, openDevice } from '../helpers/sdk';

helper.init(require.resolve('node-red'));

interface Out {
  payload: unknown;
  topic?: string;
  deviceId?: string;
  messageId?: string;
  partitionId?: string;
  sequenceNumber?: number;
  offset?: string;
  enqueuedTime?: string;
  properties?: Record<string, unknown>;
  systemProperties?: Record<string, unknown>;
}

interface SpiedWarn {
  getCalls(): Array<{ args: unknown[] }>;
}

interface TestNode {
  on(event: 'input', listener: (msg: Out) => void): void;
}

function flow(settings: Record<string, unknown>, connection: Record<string, unknown> = { mode: 'azure', transport: 'amqps' }): object[] {
  return [
    { id: 'tab', type: 'tab', label: 'telemetry' },
    { id: 'conn1', type: 'iothub-connection', z: 'tab', reconnectMin: 50, reconnectMax: 300, ...connection },
    { id: 'tin', type: 'iothub-telemetry-in', z: 'tab', hub: 'conn1', wires: [['out']], ...settings },
    { id: 'out', type: 'helper', z: 'tab', wires: [] },
  ];
}

function collect(): Out[] {
  const seen: Out[] = [];
  (helper.getNode('out') as unknown as TestNode).on('input', (msg) => seen.push(msg));
  return seen;
}

/** Device ids that land in every one of 4 partitions. */
function spreadDevices(): string[] {
  const chosen = new Map<number, string>();
  for (let i = 0; chosen.size < 4; i++) if (!chosen.has(partitionForDevice(`tm-${i}`, 4))) chosen.set(partitionForDevice(`tm-${i}`, 4), `tm-${i}`);
  return [...chosen.values()];
}

describe('telemetry-in', function () {
  this.timeout(60_000);
  let hub: SimulatedHub;
  const devices: DeviceClient[] = [];

  beforeEach(async () => {
    await helper.startServer();
  });

  afterEach(async () => {
    await closeQuietly(...devices.splice(0));
    await helper.unload();
    await helper.stopServer();
    await stopLocalHubs();
    await hub?.close();
  });

  async function send(deviceId: string, count: number, tag: string): Promise<string[]> {
    const client = await openDevice(hub, deviceId);
    devices.push(client);
    const ids: string[] = [];
    for (let i = 0; i < count; i++) {
      const m = new Message(JSON.stringify({ tag, i }));
      m.messageId = `${tag}-${deviceId}-${i}`;
      m.contentType = 'application/json';
      m.contentEncoding = 'utf-8';
      m.properties.add('tag', tag);
      await client.sendEvent(m);
      ids.push(m.messageId);
    }
    return ids;
  }

  it('follows the redirect and emits each event once with device id, partition, sequence number and properties, across all partitions', async () => {
    hub = await startTestHub();
    const ids = spreadDevices();
    const sent: string[] = [];
    for (const id of ids) sent.push(...(await send(id, 3, 'all')));
    await helper.load([connectionNode, telemetryInNode], flow({ startPosition: 'earliest' }), { conn1: { connectionString: hub.serviceConnectionString() } });
    const out = collect();
    await waitFor(() => out.length >= sent.length, 'every event');
    await delay(300);
    assert.deepEqual(out.map((m) => m.messageId).sort(), [...sent].sort());
    assert.equal(new Set(out.map((m) => m.partitionId)).size, 4);
    for (const m of out) {
      assert.ok(m.deviceId && ids.includes(m.deviceId));
      assert.equal(m.topic, m.deviceId);
      assert.equal(m.partitionId, String(partitionForDevice(String(m.deviceId), 4)));
      assert.deepEqual(m.payload, { tag: 'all', i: Number(String(m.messageId).split('-').pop()) });
      assert.equal(m.properties?.tag, 'all');
      assert.equal(typeof m.sequenceNumber, 'number');
      assert.equal(typeof m.offset, 'string');
      assert.ok(!Number.isNaN(Date.parse(String(m.enqueuedTime))));
      assert.equal(m.systemProperties?.['iothub-connection-device-id'], m.deviceId);
    }
  });

  it('start positions each give the right first message', async () => {
    hub = await startTestHub();
    const [id] = spreadDevices();
    const partition = String(partitionForDevice(id, 4));
    await send(id, 4, 'old');
    await delay(30);
    const cut = Date.now();
    await delay(30);
    await send(id, 2, 'mid');
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ startPosition: 'earliest' }, `old-${id}-0`],
      [{ startPosition: 'sequenceNumber', startValue: '2' }, `old-${id}-2`],
      [{ startPosition: 'enqueuedTime', startValue: new Date(cut).toISOString() }, `mid-${id}-0`],
    ];
    for (const [settings, first] of cases) {
      await helper.load([connectionNode, telemetryInNode], flow({ ...settings, partitions: partition }), {
        conn1: { connectionString: hub.serviceConnectionString() },
      });
      const out = collect();
      await waitFor(() => out.length > 0, `the first message for ${JSON.stringify(settings)}`);
      assert.equal(out[0].messageId, first, JSON.stringify(settings));
      await helper.unload();
    }
    // latest: only what arrives after the reader attached.
    await helper.load([connectionNode, telemetryInNode], flow({ startPosition: 'latest', partitions: partition }), {
      conn1: { connectionString: hub.serviceConnectionString() },
    });
    const out = collect();
    await waitFor(() => hub.eventHub.readerCount === 1, 'the reader');
    await send(id, 1, 'new');
    await waitFor(() => out.length > 0, 'the new event');
    await delay(200);
    assert.deepEqual(
      out.map((m) => m.messageId),
      [`new-${id}-0`],
    );
  });

  it('works on the local simulator and with an Event Hubs connection string', async () => {
    hub = await startTestHub();
    const [id] = spreadDevices();
    await send(id, 2, 'eh');
    await helper.load([connectionNode, telemetryInNode], flow({ startPosition: 'earliest' }, { mode: 'azure', transport: 'amqp' }), {
      conn1: { connectionString: hub.eventHubConnectionString() },
    });
    const out = collect();
    await waitFor(() => out.length === 2, 'events through the Event Hubs string');
    assert.deepEqual(
      out.map((m) => m.messageId),
      [`eh-${id}-0`, `eh-${id}-1`],
    );
  });

  it('resumes after a dropped connection with no gap and no repeat', async () => {
    hub = await startTestHub();
    const [id] = spreadDevices();
    await helper.load([connectionNode, telemetryInNode], flow({ startPosition: 'earliest' }), { conn1: { connectionString: hub.serviceConnectionString() } });
    const out = collect();
    const first = await send(id, 5, 'before');
    await waitFor(() => out.length === 5, 'the first five');
    hub.faults.dropConnections();
    const second = await send(id, 5, 'after');
    await waitFor(() => out.length >= 10, 'the rest after the reconnect');
    await delay(300);
    assert.deepEqual(
      out.map((m) => m.messageId),
      [...first, ...second],
    );
  });

  it('reports a partition that is taken over and keeps reading the others', async () => {
    hub = await startTestHub();
    const ids = spreadDevices();
    await helper.load([connectionNode, telemetryInNode], flow({ startPosition: 'earliest', ownerLevel: 1 }), {
      conn1: { connectionString: hub.serviceConnectionString() },
    });
    const out = collect();
    await waitFor(() => hub.eventHub.readerCount === 4, 'four readers');
    hub.faults.detachLinks((a) => a.kind === 'eh-partition' && a.partition === '0');
    await send(ids[1], 1, 'others');
    await waitFor(() => out.some((m) => m.messageId === `others-${ids[1]}-0`), 'events from other partitions');
    await waitFor(() => hub.eventHub.readerCount === 4, 'partition 0 re-attached');
    const p0 = ids.find((d) => partitionForDevice(d, 4) === 0) as string;
    await send(p0, 1, 'p0');
    await waitFor(() => out.some((m) => m.messageId === `p0-${p0}-0`), 'partition 0 reads again');
  });

  it('a sixth reader of a partition in one consumer group: the status says what to do, and it reads once a place is free', async () => {
    hub = await startTestHub({ partitionCount: 1 });
    const others = Array.from({ length: 5 }, () => new EventHubConsumerClient('$Default', hub.eventHubConnectionString()));
    const subscriptions = others.map((c) =>
      c.subscribe({ processEvents: async () => undefined, processError: async () => undefined }, { startPosition: latestEventPosition }),
    );
    try {
      await waitFor(() => hub.eventHub.readerCount === 5, 'five readers of partition 0');
      await helper.load([connectionNode, telemetryInNode], flow({ startPosition: 'earliest' }), { conn1: { connectionString: hub.serviceConnectionString() } });
      const out = collect();
      await waitFor(() => statuses('tin').includes('iothub-telemetry-in.status.receiverLimit'), 'the receiver-limit status');
      const warnings = (helper.getNode('tin') as unknown as { warn: SpiedWarn }).warn.getCalls().map((c) => String(c.args[0]));
      const limit = warnings.filter((w) => /ReceiverLimitExceeded/.test(w));
      assert.equal(limit.length, 1, `one warning while the same refusal repeats: ${JSON.stringify(warnings)}`);
      assert.match(limit[0], /consumer group of its own/);
      await subscriptions[0].close();
      await others[0].close();
      await waitFor(() => statuses('tin').at(-1) === 'node-red:common.status.connected', 'connected once a place is free');
      await send('crowd-dev', 1, 'crowd');
      await waitFor(() => out.some((m) => m.messageId === 'crowd-crowd-dev-0'), 'the event');
    } finally {
      for (const s of subscriptions) await s.close().catch(() => undefined);
      for (const c of others) await c.close().catch(() => undefined);
    }
  });

  it('deployed while the hub is unreachable for longer than an operation may take, it keeps trying and reads once the hub is back', async function () {
    this.timeout(120_000);
    hub = await startTestHub();
    const [id] = spreadDevices();
    const sent = await send(id, 3, 'late');
    // Longer than the 30 s bound on finding the built-in endpoint: the first start fails with Timeout.
    hub.faults.refuseConnections(35_000);
    await helper.load([connectionNode, telemetryInNode], flow({ startPosition: 'earliest' }), { conn1: { connectionString: hub.serviceConnectionString() } });
    const out = collect();
    await waitFor(() => out.length >= sent.length, 'the events once the hub is back', 90_000);
    await delay(300);
    assert.deepEqual(
      out.map((m) => m.messageId),
      sent,
    );
  });
});
