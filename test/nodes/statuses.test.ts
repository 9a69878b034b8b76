/**
 * What a flow author sees: every node's status follows its own link and its latest outcome and names
 * the cause in one translated vocabulary, also after a redeploy onto a broken hub and back; the codes
 * stay in the Catch msg.
 */
import { strict as assert } from 'node:assert';
import helper from 'node-red-node-test-helper';
import { bodyBytes } from '../../src/amqp/message-rules';
import connectionNode from '../../src/nodes/iothub-connection';
import c2dSendNode from '../../src/nodes/iothub-c2d-send';
import deviceInNode from '../../src/nodes/iothub-device-in';
import deviceOutNode from '../../src/nodes/iothub-device-out';
import telemetryInNode from '../../src/nodes/iothub-telemetry-in';
import type { SimulatedHub } from '../../src/simulator';
import { collect, inject, serverPerTest, statuses } from '../helpers/flow';
import { startTestHub, waitFor } from '../helpers/hub';

helper.init(require.resolve('node-red'));

const CONNECTED = 'node-red:common.status.connected';
const UNAUTHORIZED = 'iothub-common.status.unauthorized';
const HOST_NOT_FOUND = 'iothub-common.status.host-not-found';
const NODES = [connectionNode, deviceOutNode, deviceInNode, telemetryInNode, c2dSendNode];

function flow(nodes: object[]): object[] {
  return [
    { id: 'tab', type: 'tab', label: 'statuses' },
    // Retries kept short, and the operation timeout long: a cause must show without waiting one out.
    { id: 'conn1', type: 'iothub-connection', z: 'tab', mode: 'azure', transport: 'amqps', reconnectMin: 100, reconnectMax: 500 },
    ...nodes,
    { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'tab', wires: [] },
    { id: 'sent', type: 'helper', z: 'tab', wires: [] },
  ];
}

const deviceOut = { id: 'out1', type: 'iothub-device-out', z: 'tab', hub: 'conn1', deviceId: 'pump-1', deviceIdType: 'str', wires: [['sent']] };
const deviceIn = { id: 'in1', type: 'iothub-device-in', z: 'tab', hub: 'conn1', deviceId: 'pump-1', settle: 'auto', output: 'auto', wires: [[]] };
const telemetryIn = { id: 'tin', type: 'iothub-telemetry-in', z: 'tab', hub: 'conn1', startPosition: 'latest', output: 'auto', wires: [[]] };

const last = (id: string): string | undefined => statuses(id).at(-1);

describe('statuses a flow author sees', function () {
  this.timeout(60_000);
  let hub: SimulatedHub | undefined;

  serverPerTest({
    after: async () => {
      await hub?.close();
      hub = undefined;
    },
  });

  it('device-out behind a policy without DeviceConnect turns from connected to unauthorized, as device-in beside it; Catch keeps the code', async () => {
    hub = await startTestHub();
    hub.registry.addDevice('pump-1');
    await helper.load(NODES, flow([deviceOut, deviceIn]), { conn1: { connectionString: hub.serviceConnectionString('service') } });
    const caught = collect('caught');
    await waitFor(() => last('in1') === UNAUTHORIZED, 'device-in to show the refusal');
    inject('out1', { payload: 'refused' });
    await waitFor(() => caught.length === 1, 'the msg to fail');
    assert.equal(caught[0].error?.code, 'Unauthorized');
    await waitFor(() => last('out1') === UNAUTHORIZED, 'device-out to show the refusal');
    assert.ok(
      statuses('out1').every((s) => s !== 'Unauthorized'),
      'no raw code in a status',
    );
  });

  it("device-out with another device's connection string shows the mismatch, and connected again once a msg goes through", async () => {
    hub = await startTestHub();
    await helper.load(NODES, flow([{ ...deviceOut, deviceId: '' }]), { conn1: { connectionString: hub.deviceConnectionString('fridge-8') } });
    const caught = collect('caught');
    const sent = collect('sent');
    await waitFor(() => last('out1') === CONNECTED, 'connected');
    inject('out1', { payload: 'for another', deviceId: 'other-device' });
    await waitFor(() => caught.length === 1, 'the msg to fail');
    assert.equal(caught[0].error?.code, 'IdentityMismatch');
    await waitFor(() => last('out1') === 'iothub-common.status.identity-mismatch', 'the mismatch in the status');
    inject('out1', { payload: 'as itself' });
    await waitFor(() => sent.length === 1, 'the good msg to be sent');
    await waitFor(() => last('out1') === CONNECTED, 'connected again after a success');
  });

  it('redeployed onto a host that does not resolve, every node says so at once (telemetry-in too); back on a good hub, all are connected', async () => {
    hub = await startTestHub();
    hub.registry.addDevice('pump-1');
    // Fresh each time: Node-RED takes the credentials object it is given for its own.
    const good = (): Record<string, Record<string, string>> => ({ conn1: { connectionString: (hub as SimulatedHub).serviceConnectionString() } });
    const nodes = flow([deviceOut, deviceIn, telemetryIn]);
    await helper.load(NODES, nodes, good());
    await waitFor(() => ['out1', 'in1', 'tin'].every((id) => last(id) === CONNECTED), 'all connected on the good hub', 20_000);

    const key = Buffer.alloc(32, 7).toString('base64');
    await helper.setFlows(nodes, 'full', {
      conn1: { connectionString: `HostName=no-such-hub.invalid;SharedAccessKeyName=iothubowner;SharedAccessKey=${key}` },
    });
    const caught = collect('caught');
    // Well inside the 30 s the redirect probe would wait: the cause comes from the connection itself.
    await waitFor(() => ['out1', 'in1', 'tin'].every((id) => last(id) === HOST_NOT_FOUND), 'host not found everywhere', 15_000);
    assert.ok(!statuses('tin').includes(CONNECTED), 'telemetry-in never kept the old hub green');
    assert.ok(!statuses('tin').includes('iothub-common.status.timeout'), 'not a timeout hiding the cause');
    assert.equal(caught.length, 0, 'a status, not a stream of errors');

    await helper.setFlows(nodes, 'full', good());
    await waitFor(() => ['out1', 'in1', 'tin'].every((id) => last(id) === CONNECTED), 'all connected again', 20_000).catch((e: Error) => {
      throw new Error(`${e.message}: ${JSON.stringify(['out1', 'in1', 'tin'].map((id) => statuses(id)))}`);
    });
    assert.ok(!statuses('tin').includes(HOST_NOT_FOUND), 'the new telemetry-in never showed the old error');
  });

  it('redeployed onto a policy without ServiceConnect, telemetry-in and c2d-send show unauthorized; back on a good one, connected', async () => {
    hub = await startTestHub();
    const send = { id: 'send1', type: 'iothub-c2d-send', z: 'tab', hub: 'conn1', deviceId: 'pump-1', deviceIdType: 'str', wires: [['sent']] };
    const nodes = flow([telemetryIn, send]);
    const good = (): Record<string, Record<string, string>> => ({ conn1: { connectionString: (hub as SimulatedHub).serviceConnectionString() } });
    await helper.load(NODES, nodes, good());
    await waitFor(() => last('tin') === CONNECTED && last('send1') === CONNECTED, 'connected', 20_000);

    await helper.setFlows(nodes, 'full', { conn1: { connectionString: hub.serviceConnectionString('device') } });
    await waitFor(() => last('tin') === UNAUTHORIZED && last('send1') === UNAUTHORIZED, 'unauthorized', 15_000);
    assert.ok(!statuses('tin').includes(CONNECTED), 'telemetry-in never claimed connected on the refused policy');

    await helper.setFlows(nodes, 'full', good());
    await waitFor(() => last('tin') === CONNECTED && last('send1') === CONNECTED, 'connected again', 20_000);
    assert.ok(!statuses('tin').includes(UNAUTHORIZED), 'the new telemetry-in never showed the old refusal');
  });

  it('a wrong key shows unauthorized on telemetry-in (from the connection), not a timeout', async () => {
    hub = await startTestHub();
    const wrong = Buffer.alloc(32, 3).toString('base64');
    await helper.load(NODES, flow([telemetryIn]), {
      conn1: { connectionString: `HostName=${hub.hostWithPort};SharedAccessKeyName=iothubowner;SharedAccessKey=${wrong}` },
    });
    await waitFor(() => last('tin') === UNAUTHORIZED, 'unauthorized', 15_000);
    assert.ok(!statuses('tin').includes(CONNECTED));
  });

  it('a numeric msg.deviceId is sent as its text by device-out and c2d-send', async () => {
    hub = await startTestHub();
    hub.registry.addDevice('4711');
    const send = { id: 'send1', type: 'iothub-c2d-send', z: 'tab', hub: 'conn1', deviceIdType: 'str', wires: [['sent']] };
    await helper.load(NODES, flow([{ ...deviceOut, deviceId: '' }, send]), { conn1: { connectionString: hub.serviceConnectionString() } });
    const caught = collect('caught');
    const sent = collect('sent');
    inject('out1', { payload: 'telemetry', deviceId: 4711 });
    inject('send1', { payload: 'command', deviceId: 4711 });
    await waitFor(() => sent.length + caught.length === 2, 'both msgs settled');
    assert.deepEqual(
      caught.map((m) => m.error?.code),
      [],
    );
    await waitFor(() => hub?.c2d.depth('4711') === 1, 'the command queued for device 4711');
    assert.deepEqual(
      [...hub.events()].map((e) => e.message.message_annotations?.['iothub-connection-device-id']),
      ['4711'],
    );
  });

  it('a msg without payload is sent (an empty message is legal) and warned about once per node', async () => {
    hub = await startTestHub();
    hub.registry.addDevice('pump-1');
    await helper.load(NODES, flow([deviceOut]), { conn1: { connectionString: hub.serviceConnectionString() } });
    const sent = collect('sent');
    const out = helper.getNode('out1') as unknown as { warn: { getCalls(): Array<{ args: unknown[] }> } };
    inject('out1', { payload: null });
    inject('out1', {});
    inject('out1', { payload: 'full' });
    await waitFor(() => sent.length === 3, 'all three sent');
    const warned = out.warn.getCalls().map((c) => String(c.args[0]));
    assert.equal(warned.filter((w) => /payload is missing/.test(w)).length, 1, warned.join(' | '));
    assert.deepEqual(
      [...hub.events()].map((e) => bodyBytes(e.message.body).length),
      [0, 0, 4],
    );
  });
});
