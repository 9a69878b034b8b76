/** What every node does alike through src/nodes/adapter.ts when its config node is missing or of the wrong role. */
import { strict as assert } from 'node:assert';
import helper from 'node-red-node-test-helper';
import connectionNode from '../../src/nodes/iothub-connection';
import c2dSendNode from '../../src/nodes/iothub-c2d-send';
import deviceOutNode from '../../src/nodes/iothub-device-out';
import feedbackInNode from '../../src/nodes/iothub-feedback-in';
import type { SimulatedHub } from '../../src/simulator';
import { collect, inject, serverPerTest, statuses } from '../helpers/flow';
import { startTestHub, waitFor } from '../helpers/hub';

helper.init(require.resolve('node-red'));

describe('node adapter: no usable config node', function () {
  this.timeout(30_000);
  let hub: SimulatedHub | undefined;

  serverPerTest({
    after: async () => {
      await hub?.close();
      hub = undefined;
    },
  });

  it('without a config node: the status says so, each msg fails with NoConnection, and the flow closes', async () => {
    await helper.load(
      [c2dSendNode, feedbackInNode],
      [
        { id: 'tab', type: 'tab', label: 'none' },
        { id: 'send1', type: 'iothub-c2d-send', z: 'tab', hub: '', deviceId: 'd1', wires: [[]] },
        { id: 'fb1', type: 'iothub-feedback-in', z: 'tab', hub: 'missing', wires: [[]] },
        { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
        { id: 'caught', type: 'helper', z: 'tab', wires: [] },
      ],
    );
    const caught = collect('caught');
    assert.deepEqual(statuses('send1'), ['iothub-common.status.no-connection']);
    assert.deepEqual(statuses('fb1'), ['iothub-common.status.no-connection']);
    inject('send1', { payload: 'x' });
    inject('send1', { payload: 'y' });
    await waitFor(() => caught.length === 2, 'both failures');
    assert.deepEqual(
      caught.map((m) => m.error?.code),
      ['NoConnection', 'NoConnection'],
    );
    assert.match(String(caught[0].error?.message), /c2d-send has no IoT Hub connection configured$/);
  });

  it('with a config node of the wrong role: the status says so, each msg fails with WrongRole, and the config node is not used', async () => {
    hub = await startTestHub();
    await helper.load(
      [connectionNode, deviceOutNode],
      [
        { id: 'tab', type: 'tab', label: 'wrong' },
        { id: 'conn1', type: 'iothub-connection', z: 'tab', mode: 'azure', transport: 'amqp' },
        { id: 'out1', type: 'iothub-device-out', z: 'tab', hub: 'conn1', wires: [[]] },
        { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
        { id: 'caught', type: 'helper', z: 'tab', wires: [] },
      ],
      { conn1: { connectionString: hub.eventHubConnectionString() } },
    );
    const caught = collect('caught');
    assert.deepEqual(statuses('out1'), ['iothub-common.status.wrong-role']);
    inject('out1', { payload: 'x', deviceId: 'd1' });
    await waitFor(() => caught.length === 1, 'the failure');
    assert.equal(caught[0].error?.code, 'WrongRole');
    assert.match(String(caught[0].error?.message), /device-out needs a device or gateway connection, but its connection is a eventhub connection$/);
    assert.equal(hub.snapshot().connections, 0, 'a node that cannot use its config node does not make it connect');
  });
});
