/**
 * method-in and method-response against the simulator, called by the official service SDK
 * (azure-iothub Client.invokeDeviceMethod over the REST API): answers, the 404 for a method the node
 * does not handle, each bad answer failing alone, a gateway of 100 devices answering at once, and a
 * call cut by a reconnect.
 */
import { strict as assert } from 'node:assert';
import helper from 'node-red-node-test-helper';
import connectionNode from '../../src/nodes/iothub-connection';
import methodInNode from '../../src/nodes/iothub-method-in';
import methodResponseNode from '../../src/nodes/iothub-method-response';
import type { SimulatedHub } from '../../src/simulator';
import { collect, inject, serverPerTest, type FlowMsg } from '../helpers/flow';
import { startTestHub, waitFor } from '../helpers/hub';
import { serviceClient, serviceErrorCode } from '../helpers/service-rest';

helper.init(require.resolve('node-red'));

const NODES = [connectionNode, methodInNode, methodResponseNode];

function flow(methodIn: Record<string, unknown>): object[] {
  return [
    { id: 'tab', type: 'tab', label: 'methods' },
    { id: 'conn1', type: 'iothub-connection', z: 'tab', mode: 'azure', transport: 'amqps', reconnectMin: 50, reconnectMax: 200 },
    { id: 'in1', type: 'iothub-method-in', z: 'tab', hub: 'conn1', deviceIdType: 'str', ...methodIn, wires: [['calls']] },
    { id: 'calls', type: 'helper', z: 'tab', wires: [] },
    { id: 'resp1', type: 'iothub-method-response', z: 'tab', hub: 'conn1', statusCode: '200', wires: [] },
    { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'tab', wires: [] },
  ];
}

type Invoked = { result: { status: number; payload: unknown } };

/** The HTTP status and IoT Hub error code of a failed REST call. */
function failure(err: unknown): { status: number | undefined; errorCode: number | 'InvalidErrorCode' } {
  const e = err as { response?: { statusCode?: number; headers?: Record<string, unknown> }; responseBody?: string };
  return { status: e.response?.statusCode, errorCode: serviceErrorCode(e.responseBody, e.response?.headers?.['iothub-errorcode']).errorCode };
}

describe('method-in and method-response', function () {
  this.timeout(60_000);
  let hub: SimulatedHub | undefined;

  serverPerTest({
    after: async () => {
      await hub?.close();
      hub = undefined;
    },
  });

  async function load(sim: SimulatedHub, connectionString: string, methodIn: Record<string, unknown>): Promise<{ calls: FlowMsg[]; caught: FlowMsg[] }> {
    await helper.load(NODES, flow(methodIn), { conn1: { connectionString } });
    return { calls: collect('calls'), caught: collect('caught') };
  }

  it('a device connection: invokeDeviceMethod reaches the flow, and method-response answers it', async () => {
    const sim = await startTestHub({ restPort: 0 });
    hub = sim;
    const { calls } = await load(sim, sim.deviceConnectionString('press-1'), { deviceId: '', methods: '' });
    await waitFor(() => sim.methods.isOnline('press-1'), 'the method links of press-1');
    const service = serviceClient(sim);
    const invoked = service.invokeDeviceMethod('press-1', { methodName: 'setSpeed', payload: { rpm: 1200 } });
    await waitFor(() => calls.length === 1, 'the call in the flow');
    const call = calls[0];
    assert.equal(call.methodName, 'setSpeed');
    assert.deepEqual(call.payload, { rpm: 1200 });
    assert.equal(call.deviceId, 'press-1');
    assert.equal(call.topic, 'press-1');
    assert.match(String(call.requestId), /^[0-9a-f-]{36}$/);
    inject('resp1', { requestId: call.requestId, statusCode: 202, payload: { rpm: 1200, accepted: true } });
    const answer = (await invoked) as unknown as Invoked;
    assert.deepEqual(answer.result, { status: 202, payload: { rpm: 1200, accepted: true } });
  });

  it('a module connection: calls for the module reach method-in with its module id', async () => {
    const sim = await startTestHub({ restPort: 0 });
    hub = sim;
    const { calls } = await load(sim, sim.deviceConnectionString('edge-5', 'plc'), { deviceId: '', methods: '' });
    await waitFor(() => sim.methods.isOnline('edge-5', 'plc'), 'the module method links');
    const invoked = serviceClient(sim).invokeDeviceMethod('edge-5', 'plc', { methodName: 'reset', payload: 7 });
    await waitFor(() => calls.length === 1, 'the call');
    assert.equal(calls[0].moduleId, 'plc');
    assert.equal(calls[0].topic, 'edge-5/plc');
    inject('resp1', { requestId: calls[0].requestId, payload: 'reset done' });
    assert.deepEqual(((await invoked) as unknown as Invoked).result, { status: 200, payload: 'reset done' });
  });

  it('a method the node does not list is answered 404 by the node; listed ones reach the flow', async () => {
    const sim = await startTestHub({ restPort: 0 });
    hub = sim;
    const { calls } = await load(sim, sim.deviceConnectionString('press-2'), { deviceId: '', methods: 'start, stop' });
    await waitFor(() => sim.methods.isOnline('press-2'), 'the method links');
    const service = serviceClient(sim);
    const unknown = (await service.invokeDeviceMethod('press-2', { methodName: 'selfDestruct', payload: null })) as unknown as Invoked;
    assert.equal(unknown.result.status, 404);
    assert.match(JSON.stringify(unknown.result.payload), /selfDestruct/);
    const started = service.invokeDeviceMethod('press-2', { methodName: 'start', payload: 'line 3' });
    await waitFor(() => calls.length === 1, 'the listed call');
    assert.equal(calls[0].methodName, 'start');
    inject('resp1', { requestId: calls[0].requestId, payload: 'ok' });
    assert.deepEqual(((await started) as unknown as Invoked).result, { status: 200, payload: 'ok' });
  });

  it('bad answers fail alone with their codes; the call can still be answered after them', async () => {
    const sim = await startTestHub({ restPort: 0 });
    hub = sim;
    const { calls, caught } = await load(sim, sim.deviceConnectionString('press-3'), { deviceId: '', methods: '' });
    await waitFor(() => sim.methods.isOnline('press-3'), 'the method links');
    const invoked = serviceClient(sim).invokeDeviceMethod('press-3', { methodName: 'report', payload: null });
    await waitFor(() => calls.length === 1, 'the call');
    const requestId = calls[0].requestId;
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    inject('resp1', { requestId, payload: circular });
    inject('resp1', { requestId, payload: 'x'.repeat(130 * 1024) });
    inject('resp1', { requestId, statusCode: 'fine', payload: 1 });
    inject('resp1', { requestId: 'not-a-call', payload: 1 });
    await waitFor(() => caught.length === 4, 'four errors at the Catch node');
    const codes = caught.map((m) => m.error?.code).sort();
    assert.deepEqual(codes, ['ArgumentInvalid', 'InvalidPayload', 'MessageTooLarge', 'MethodCallLost']);
    inject('resp1', { requestId, statusCode: 200, payload: { rows: 3 } });
    assert.deepEqual(((await invoked) as unknown as Invoked).result, { status: 200, payload: { rows: 3 } });
    inject('resp1', { requestId, payload: 'twice' });
    await waitFor(() => caught.length === 5, 'the second answer refused');
    assert.equal(caught[4].error?.code, 'MethodCallLost');
  });

  it('a call for a device with no method-in fails with 404103 DeviceNotOnline', async () => {
    const sim = await startTestHub({ restPort: 0 });
    hub = sim;
    await load(sim, sim.serviceConnectionString('device'), { deviceId: 'online-1', methods: '' });
    await waitFor(() => sim.methods.isOnline('online-1'), 'the method links of online-1');
    sim.registry.addDevice('asleep-1');
    const err = await serviceClient(sim)
      .invokeDeviceMethod('asleep-1', { methodName: 'wake', payload: null })
      .then(
        () => assert.fail('nobody listens for asleep-1'),
        (e: unknown) => e,
      );
    assert.deepEqual(failure(err), { status: 404, errorCode: 404103 });
  });

  it('a gateway of 100 devices answers 100 concurrent calls over one connection', async () => {
    const sim = await startTestHub({ restPort: 0 });
    hub = sim;
    const devices = Array.from({ length: 100 }, (_, i) => `plc-${String(i).padStart(3, '0')}`);
    const { calls, caught } = await load(sim, sim.serviceConnectionString('device'), { deviceId: devices.join(', '), methods: '' });
    await waitFor(() => devices.every((d) => sim.methods.isOnline(d)), 'the method links of 100 devices', 30_000);
    assert.equal(sim.snapshot().connections, 1, 'one connection for every device');
    const service = serviceClient(sim);
    const invoked = devices.map((d, i) => service.invokeDeviceMethod(d, { methodName: 'readCounter', payload: { i } }));
    await waitFor(() => calls.length === 100, '100 calls in the flow', 30_000);
    // Answered out of order, each by its request id.
    for (const call of [...calls].reverse()) {
      inject('resp1', { requestId: call.requestId, payload: { device: call.deviceId, i: (call.payload as { i: number }).i } });
    }
    const answers = (await Promise.all(invoked)) as unknown as Invoked[];
    answers.forEach((a, i) => assert.deepEqual(a.result, { status: 200, payload: { device: devices[i], i } }));
    assert.equal(caught.length, 0);
  });

  it('a reconnect in the middle of a call: the hub fails it, the late answer is MethodCallLost, the next call works', async () => {
    const sim = await startTestHub({ restPort: 0 });
    hub = sim;
    const { calls, caught } = await load(sim, sim.deviceConnectionString('press-4'), { deviceId: '', methods: '' });
    await waitFor(() => sim.methods.isOnline('press-4'), 'the method links');
    const service = serviceClient(sim);
    const cut = service.invokeDeviceMethod('press-4', { methodName: 'slow', payload: null }).then(
      () => assert.fail('the device went away before it answered'),
      (e: unknown) => e,
    );
    await waitFor(() => calls.length === 1, 'the call');
    assert.equal(sim.faults.dropConnections(), 1);
    assert.deepEqual(failure(await cut), { status: 404, errorCode: 404103 });
    inject('resp1', { requestId: calls[0].requestId, payload: 'too late' });
    await waitFor(() => caught.length === 1, 'the late answer refused');
    assert.equal(caught[0].error?.code, 'MethodCallLost');
    await waitFor(() => sim.methods.isOnline('press-4'), 'the method links again');
    const again = service.invokeDeviceMethod('press-4', { methodName: 'slow', payload: null });
    await waitFor(() => calls.length === 2, 'the call after the reconnect');
    inject('resp1', { requestId: calls[1].requestId, payload: 'done' });
    assert.deepEqual(((await again) as unknown as Invoked).result, { status: 200, payload: 'done' });
  });

  it('two method-in nodes on one device, each for its own method: both are answered; only a method neither lists is 404', async () => {
    const sim = await startTestHub({ restPort: 0 });
    hub = sim;
    const nodes = [
      ...flow({ deviceId: '', methods: 'start' }),
      { id: 'in2', type: 'iothub-method-in', z: 'tab', hub: 'conn1', deviceIdType: 'str', deviceId: '', methods: 'stop', wires: [['calls2']] },
      { id: 'calls2', type: 'helper', z: 'tab', wires: [] },
    ];
    await helper.load(NODES, nodes, { conn1: { connectionString: sim.deviceConnectionString('press-6') } });
    const calls = collect('calls');
    const calls2 = collect('calls2');
    await waitFor(() => sim.methods.isOnline('press-6'), 'the method links');
    const service = serviceClient(sim);
    const started = service.invokeDeviceMethod('press-6', { methodName: 'start', payload: 1 });
    const stopped = service.invokeDeviceMethod('press-6', { methodName: 'stop', payload: 2 });
    await waitFor(() => calls.length === 1 && calls2.length === 1, 'each call at its node');
    assert.equal(calls[0].methodName, 'start');
    assert.equal(calls2[0].methodName, 'stop');
    inject('resp1', { requestId: calls[0].requestId, payload: 'started' });
    inject('resp1', { requestId: calls2[0].requestId, payload: 'stopped' });
    assert.deepEqual(((await started) as unknown as Invoked).result, { status: 200, payload: 'started' });
    assert.deepEqual(((await stopped) as unknown as Invoked).result, { status: 200, payload: 'stopped' });
    const other = (await service.invokeDeviceMethod('press-6', { methodName: 'pause', payload: null })) as unknown as Invoked;
    assert.equal(other.result.status, 404);
    assert.equal(calls.length + calls2.length, 2);
  });

  it('a second method-in node listing a method another already handles is warned that those calls go there', async () => {
    const sim = await startTestHub({ restPort: 0 });
    hub = sim;
    const nodes = [
      ...flow({ deviceId: '', methods: 'start' }),
      { id: 'in2', type: 'iothub-method-in', z: 'tab', hub: 'conn1', deviceIdType: 'str', deviceId: '', methods: 'start, stop', wires: [['calls2']] },
      { id: 'calls2', type: 'helper', z: 'tab', wires: [] },
    ];
    await helper.load(NODES, nodes, { conn1: { connectionString: sim.deviceConnectionString('press-8') } });
    await waitFor(() => sim.methods.isOnline('press-8'), 'the method links');
    const warnings = (): string[] =>
      (helper.getNode('in2') as unknown as { warn: { getCalls(): Array<{ args: unknown[] }> } }).warn.getCalls().map((c) => String(c.args[0]));
    await waitFor(() => warnings().length > 0, 'the warning');
    assert.deepEqual(warnings(), ['device press-8: another method-in node already handles start; those calls go there, not here']);
  });

  it('a call made before the device connects reaches the flow once its method links attach, and is answered', async () => {
    const sim = await startTestHub({ restPort: 0 });
    hub = sim;
    sim.registry.addDevice('press-7');
    // Made before the device connects: the hub sends it as soon as the device's receiver gives credit,
    // right after the attach (the order a call in the same read as the attach is pinned in
    // test/unit/method-inbox.test.ts).
    const invoked = serviceClient(sim).invokeDeviceMethod('press-7', { methodName: 'early', payload: null, connectTimeoutInSeconds: 30 });
    await waitFor(() => sim.methods.awaitingDevice === 1, 'the call waiting for the device');
    const { calls, caught } = await load(sim, sim.deviceConnectionString('press-7'), { deviceId: '', methods: '' });
    await waitFor(() => calls.length === 1, 'the call');
    inject('resp1', { requestId: calls[0].requestId, payload: 'answered' });
    assert.deepEqual(((await invoked) as unknown as Invoked).result, { status: 200, payload: 'answered' });
    assert.equal(caught.length, 0);
  });
});
