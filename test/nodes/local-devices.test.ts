/**
 * Local mode: the devices a flow's device nodes name exist in the in-process simulator from deploy,
 * as devices are registered on a real hub before a flow runs. A C2D message sent right after a deploy
 * finds its device even while that device's links are still on their way (here held up for good: the
 * hub refuses their connection), instead of failing with DeviceNotFound.
 */
import { strict as assert } from 'node:assert';
import helper from 'node-red-node-test-helper';
import c2dSendNode from '../../src/nodes/iothub-c2d-send';
import connectionNode from '../../src/nodes/iothub-connection';
import deviceInNode from '../../src/nodes/iothub-device-in';
import methodInNode from '../../src/nodes/iothub-method-in';
import twinNode from '../../src/nodes/iothub-twin';
import { acquireLocalHub } from '../../src/nodes/local-simulator';
import type { SimulatedHub } from '../../src/simulator';
import { collect, inject, serverPerTest } from '../helpers/flow';
import { freePort, waitFor } from '../helpers/hub';

helper.init(require.resolve('node-red'));

const NODES = [connectionNode, c2dSendNode, deviceInNode, methodInNode, twinNode];

function flow(port: number, withDevices: boolean): object[] {
  return [
    { id: 'tab', type: 'tab', label: 'local devices' },
    { id: 'conn1', type: 'iothub-connection', z: 'tab', mode: 'local', localPort: port, reconnectMin: 50, reconnectMax: 200 },
    { id: 'c2d', type: 'iothub-c2d-send', z: 'tab', hub: 'conn1', deviceId: 'deviceId', deviceIdType: 'msg', ack: 'none', wires: [['sent']] },
    { id: 'sent', type: 'helper', z: 'tab', wires: [] },
    { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'tab', wires: [] },
    ...(withDevices
      ? [
          // A config node of their own (the same local simulator, another connection), so the test can
          // keep their connection from ever opening while c2d-send's stays up.
          { id: 'conn2', type: 'iothub-connection', z: 'tab', mode: 'local', localPort: port, reconnectMin: 50, reconnectMax: 200 },
          { id: 'in1', type: 'iothub-device-in', z: 'tab', x: 100, y: 100, hub: 'conn2', deviceId: 'oven-1', settle: 'auto', output: 'auto', wires: [['got']] },
          { id: 'got', type: 'helper', z: 'tab', wires: [] },
          {
            id: 'm1',
            type: 'iothub-method-in',
            z: 'tab',
            x: 100,
            y: 200,
            hub: 'conn2',
            deviceId: 'oven-2, oven-3',
            deviceIdType: 'str',
            methods: '',
            wires: [[]],
          },
          { id: 't1', type: 'iothub-twin', z: 'tab', x: 100, y: 300, hub: 'conn2', deviceId: 'oven-4', deviceIdType: 'str', subscribe: true, wires: [[]] },
        ]
      : []),
  ];
}

describe('local mode: the devices a flow names', function () {
  this.timeout(60_000);
  serverPerTest();

  it('are registered at deploy, so a C2D message sent before their links are up is queued, not DeviceNotFound', async () => {
    const port = await freePort();
    await helper.load(NODES, flow(port, false));
    const sim = (await acquireLocalHub(port)).hub as SimulatedHub;
    const sent = collect('sent');
    const caught = collect('caught');
    // c2d-send's link is up (a message to a device that exists went through) before tokens stop being taken.
    sim.registry.addDevice('warm-up');
    inject('c2d', { deviceId: 'warm-up', payload: 'hello' });
    await waitFor(() => sent.length === 1, 'the first C2D message');

    // From now on the hub takes no new connection: the device nodes deployed next never get their links.
    sim.faults.refuseConnections(60_000);
    await helper.setFlows(flow(port, true), 'nodes');
    await waitFor(() => ['oven-1', 'oven-2', 'oven-3', 'oven-4'].every((id) => sim.registry.getDevice(id)), 'the named devices in the registry');
    assert.equal(sim.methods.isOnline('oven-2'), false, 'no method link is up: the registry has them from the deploy, not from their links');
    assert.equal(sim.twinLinks.isConnected('oven-4'), false, 'no twin link is up');

    inject('c2d', { deviceId: 'oven-1', payload: 'preheat' });
    await waitFor(() => sent.length === 2 || caught.length > 0, 'the C2D message to oven-1');
    assert.deepEqual(
      caught.map((m) => m.error?.code),
      [],
    );
    assert.equal(sim.c2d.depth('oven-1'), 1, 'queued for the device until its links are up');
    // A device no node names is still unknown, as on a real hub.
    inject('c2d', { deviceId: 'oven-9', payload: 'nobody' });
    await waitFor(() => caught.length === 1, 'the unknown device at Catch');
    assert.equal(caught[0].error?.code, 'DeviceNotFound');
  });
});
