/**
 * A gateway: one connection (a policy with DeviceConnect) speaks for 100 devices. device-out sends for
 * each, three device-in nodes each receive only their own device's messages from azure-iothub, and
 * the simulator sees one connection from the flow.
 */
import { strict as assert } from 'node:assert';
import helper from 'node-red-node-test-helper';
import type { Client as ServiceClient } from 'azure-iothub';
import connectionNode from '../../src/nodes/iothub-connection';
import deviceInNode from '../../src/nodes/iothub-device-in';
import deviceOutNode from '../../src/nodes/iothub-device-out';
import type { SimulatedHub } from '../../src/simulator';
import { collect, inject, readTelemetry, serverPerTest, statuses } from '../helpers/flow';
import { startTestHub, waitFor } from '../helpers/hub';
import { closeQuietly, Message, openService } from '../helpers/sdk';

helper.init(require.resolve('node-red'));

const DEVICES = Array.from({ length: 100 }, (_, i) => `gw-${String(i).padStart(3, '0')}`);
const LISTENERS: Record<string, string> = { 'in-a': 'gw-007', 'in-b': 'gw-042', 'in-c': 'gw-099' };

function flow(): object[] {
  return [
    { id: 'tab', type: 'tab', label: 'gateway' },
    { id: 'conn1', type: 'iothub-connection', z: 'tab', mode: 'azure', transport: 'amqps', reconnectMin: 50, reconnectMax: 200 },
    { id: 'out1', type: 'iothub-device-out', z: 'tab', hub: 'conn1', deviceId: 'deviceId', deviceIdType: 'msg', maxPending: 1000, wires: [['sent']] },
    { id: 'sent', type: 'helper', z: 'tab', wires: [] },
    ...Object.entries(LISTENERS).flatMap(([id, deviceId]) => [
      { id, type: 'iothub-device-in', z: 'tab', hub: 'conn1', deviceId, settle: 'auto', output: 'auto', prefetch: 10, wires: [[`got-${id}`]] },
      { id: `got-${id}`, type: 'helper', z: 'tab', wires: [] },
    ]),
    { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'tab', wires: [] },
  ];
}

describe('device nodes through a gateway', function () {
  this.timeout(90_000);
  let hub: SimulatedHub | undefined;
  let service: ServiceClient | undefined;

  serverPerTest({
    before: async () => {
      await closeQuietly(service);
      service = undefined;
    },
    after: async () => {
      await hub?.close();
      hub = undefined;
    },
  });

  it('100 devices send and three receive only their own messages, over one connection', async () => {
    const sim = await startTestHub();
    hub = sim;
    await helper.load([connectionNode, deviceOutNode, deviceInNode], flow(), { conn1: { connectionString: sim.serviceConnectionString('device') } });
    const sent = collect('sent');
    const caught = collect('caught');
    const got = Object.fromEntries(Object.keys(LISTENERS).map((id) => [id, collect(`got-${id}`)]));
    for (const id of Object.keys(LISTENERS)) {
      await waitFor(() => statuses(id).includes('node-red:common.status.connected'), `${id} to attach`);
    }

    for (const deviceId of DEVICES) inject('out1', { payload: { reading: deviceId }, deviceId, messageId: `t-${deviceId}` });
    await waitFor(() => sent.length + caught.length === DEVICES.length, 'every send settled', 30_000);
    assert.deepEqual(caught, []);
    assert.equal(sim.stats.connectionsAccepted, 1, 'the flow opened one connection');
    assert.equal(sim.snapshot().connections, 1);
    assert.equal(sim.snapshot().tokens, 1, 'one hub-level token covers every device on that connection');

    const events = await readTelemetry(sim, DEVICES.length, 30_000);
    assert.deepEqual(events.map((e) => String(e.systemProperties?.['iothub-connection-device-id'])).sort(), DEVICES);
    for (const e of events) assert.equal(e.messageId, `t-${String(e.systemProperties?.['iothub-connection-device-id'])}`);

    service = await openService(sim);
    const targets = [...Object.values(LISTENERS), 'gw-010'];
    for (const deviceId of targets) {
      for (let i = 0; i < 2; i++) {
        const m = new Message(`for ${deviceId} #${i}`);
        m.messageId = `c-${deviceId}-${i}`;
        await service.send(deviceId, m);
      }
    }
    for (const [id, deviceId] of Object.entries(LISTENERS)) {
      await waitFor(() => got[id].length === 2, `${id}'s two messages`);
      assert.deepEqual(
        got[id].map((m) => m.messageId),
        [`c-${deviceId}-0`, `c-${deviceId}-1`],
      );
      assert.deepEqual(
        got[id].map((m) => m.deviceId),
        [deviceId, deviceId],
      );
    }
    assert.equal(sim.c2d.depth('gw-010'), 2, 'a device with no listener keeps its messages');
    // One more connection each for the Event Hubs reader (closed) and the service SDK (open).
    assert.equal(sim.stats.connectionsAccepted, 3, 'the flow still on its one connection');
    assert.equal(sim.snapshot().connections, 2);
    assert.deepEqual(caught, []);
  });
});
