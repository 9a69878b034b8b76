/**
 * The service nodes (method-invoke, twin-desired) on the local simulator, against the device nodes
 * (method-in and method-response, twin) on the same config node: the local mode's owner policy acts as
 * service and as gateway, the REST calls go to the in-process simulator's REST port.
 */
import { strict as assert } from 'node:assert';
import helper from 'node-red-node-test-helper';
import connectionNode from '../../src/nodes/iothub-connection';
import methodInNode from '../../src/nodes/iothub-method-in';
import methodInvokeNode from '../../src/nodes/iothub-method-invoke';
import methodResponseNode from '../../src/nodes/iothub-method-response';
import twinNode from '../../src/nodes/iothub-twin';
import twinDesiredNode from '../../src/nodes/iothub-twin-desired';
import { collect, inject, serverPerTest, type FlowMsg } from '../helpers/flow';
import * as path from 'node:path';
import { readFileSync } from 'node:fs';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { HubError } from '../../src/iothub/errors';
import { ServiceApi } from '../../src/iothub/service-api';
import type { Client as DeviceClient, Twin as DeviceTwin } from 'azure-iot-device';
import { freePort, startTestHub, testCertDir, waitFor } from '../helpers/hub';
import { closeQuietly, openDevice } from '../helpers/sdk';
import type { ConnectionNode } from '../../src/nodes/iothub-connection';

helper.init(require.resolve('node-red'));

const NODES = [connectionNode, methodInNode, methodResponseNode, methodInvokeNode, twinNode, twinDesiredNode];

function flow(port: number): object[] {
  return [
    { id: 'tab', type: 'tab', label: 'service' },
    { id: 'conn1', type: 'iothub-connection', z: 'tab', mode: 'local', localPort: port },
    {
      id: 'invoke',
      type: 'iothub-method-invoke',
      z: 'tab',
      hub: 'conn1',
      deviceId: 'machine-1',
      deviceIdType: 'str',
      methodName: 'start',
      responseTimeout: 10,
      wires: [['answers']],
    },
    { id: 'answers', type: 'helper', z: 'tab', wires: [] },
    { id: 'in1', type: 'iothub-method-in', z: 'tab', hub: 'conn1', deviceId: 'machine-1', deviceIdType: 'str', methods: '', wires: [['calls']] },
    { id: 'calls', type: 'helper', z: 'tab', wires: [] },
    { id: 'resp1', type: 'iothub-method-response', z: 'tab', hub: 'conn1', statusCode: 200, wires: [] },
    { id: 'desired', type: 'iothub-twin-desired', z: 'tab', hub: 'conn1', deviceId: 'machine-1', deviceIdType: 'str', action: 'update', wires: [['twins']] },
    { id: 'twins', type: 'helper', z: 'tab', wires: [] },
    {
      id: 'twin1',
      type: 'iothub-twin',
      z: 'tab',
      hub: 'conn1',
      deviceId: 'machine-1',
      deviceIdType: 'str',
      action: 'report',
      subscribe: true,
      wires: [['device']],
    },
    { id: 'device', type: 'helper', z: 'tab', wires: [] },
    { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'tab', wires: [] },
  ];
}

type Twin = { desired: Record<string, unknown>; reported: Record<string, unknown> };

describe('service nodes on the local simulator', function () {
  this.timeout(60_000);
  serverPerTest();

  async function load(): Promise<Record<string, FlowMsg[]>> {
    await helper.load(NODES, flow(await freePort()));
    return Object.fromEntries(['answers', 'calls', 'twins', 'device', 'caught'].map((id) => [id, collect(id)]));
  }

  it('method-invoke calls the device that method-in plays, and gets its answer', async () => {
    const seen = await load();
    await waitFor(() => seen.device.length === 1, 'the device twin on deploy (the device is up)');
    inject('invoke', { payload: { line: 3 } });
    await waitFor(() => seen.calls.length === 1, 'the call at method-in');
    assert.equal(seen.calls[0].methodName, 'start');
    assert.deepEqual(seen.calls[0].payload, { line: 3 });
    inject('resp1', { requestId: seen.calls[0].requestId, statusCode: 201, payload: { started: true } });
    await waitFor(() => seen.answers.length === 1, 'the answer out of method-invoke');
    assert.deepEqual(seen.answers[0].payload, { started: true });
    assert.equal(seen.answers[0].statusCode, 201);
  });

  it('an offline device is DeviceNotOnline, an unknown one DeviceNotFound, a blank method name ArgumentInvalid', async () => {
    const seen = await load();
    await waitFor(() => seen.device.length === 1, 'the flow up');
    const local = await (helper.getNode('conn1') as unknown as ConnectionNode).localHub();
    local?.hub?.registry.addDevice('sleeper');
    inject('invoke', { deviceId: 'sleeper', payload: null });
    await waitFor(() => seen.caught.length === 1, 'the offline device at Catch');
    inject('invoke', { deviceId: 'nobody-home', payload: null });
    await waitFor(() => seen.caught.length === 2, 'the unknown device at Catch');
    inject('invoke', { methodName: ' ', payload: null });
    await waitFor(() => seen.caught.length === 3, 'the blank method name at Catch');
    assert.deepEqual(
      seen.caught.map((m) => m.error?.code),
      ['DeviceNotOnline', 'DeviceNotFound', 'ArgumentInvalid'],
    );
    assert.match(String(seen.caught[0].error?.message), /\(404103\)/, "the hub's own code is in the message");
    assert.equal(seen.answers.length, 0);
    assert.equal(seen.calls.length, 0, 'nothing reached the device');
  });

  it('joining a simulator of another process: its REST API is found through IOTHUB_SIM_REST_PORT and IOTHUB_SIM_REST_CA', async () => {
    const port = await freePort();
    // Started here, but not by a config node: to the flow it is a simulator some other process runs (npm start).
    const other = await startTestHub({ amqpPort: port, amqpsPort: null, restPort: 0 });
    const saved = { port: process.env.IOTHUB_SIM_REST_PORT, ca: process.env.IOTHUB_SIM_REST_CA };
    process.env.IOTHUB_SIM_REST_PORT = String(other.ports.rest);
    process.env.IOTHUB_SIM_REST_CA = path.join(testCertDir(), 'cert.pem');
    try {
      await helper.load(NODES, flow(port));
      const seen = Object.fromEntries(['answers', 'calls', 'caught'].map((id) => [id, collect(id)]));
      await waitFor(() => other.methods.isOnline('machine-1'), 'method-in on the other simulator');
      inject('invoke', { payload: 1 });
      await waitFor(() => seen.calls.length === 1 || seen.caught.length > 0, 'the call');
      assert.deepEqual(
        seen.caught.map((m) => m.error?.message),
        [],
      );
      inject('resp1', { requestId: seen.calls[0].requestId, payload: 'from afar' });
      await waitFor(() => seen.answers.length === 1, 'the answer');
      assert.equal(seen.answers[0].payload, 'from afar');
      assert.equal(seen.caught.length, 0);
    } finally {
      if (saved.port === undefined) delete process.env.IOTHUB_SIM_REST_PORT;
      else process.env.IOTHUB_SIM_REST_PORT = saved.port;
      if (saved.ca === undefined) delete process.env.IOTHUB_SIM_REST_CA;
      else process.env.IOTHUB_SIM_REST_CA = saved.ca;
      await helper.unload();
      await other.close();
    }
  });

  it('the official device SDK (azure-iot-device over AMQP) answers method-invoke and follows twin-desired', async () => {
    const port = await freePort();
    const other = await startTestHub({ amqpPort: port, amqpsPort: 0, restPort: 0 });
    const saved = { port: process.env.IOTHUB_SIM_REST_PORT, ca: process.env.IOTHUB_SIM_REST_CA };
    process.env.IOTHUB_SIM_REST_PORT = String(other.ports.rest);
    process.env.IOTHUB_SIM_REST_CA = path.join(testCertDir(), 'cert.pem');
    let device: DeviceClient | undefined;
    try {
      device = await openDevice(other, 'sdk-machine');
      device.onDeviceMethod('start', (request, response) => {
        void response.send(200, { echo: request.payload as unknown });
      });
      const twin: DeviceTwin = await device.getTwin();
      const patches: Array<Record<string, unknown>> = [];
      twin.on('properties.desired', (patch: Record<string, unknown>) => patches.push(patch));
      await waitFor(() => other.methods.isOnline('sdk-machine') && other.twinLinks.isSubscribed('sdk-machine'), 'the SDK device online');
      patches.length = 0; // the twin replays what it has to its first listener

      // Only the service nodes of the flow: the device is the SDK's.
      const service = flow(port).filter((n) => !['in1', 'calls', 'resp1', 'twin1', 'device'].includes((n as { id: string }).id));
      await helper.load(NODES, service);
      const seen = Object.fromEntries(['answers', 'twins', 'caught'].map((id) => [id, collect(id)]));
      inject('invoke', { deviceId: 'sdk-machine', payload: { line: 9 } });
      await waitFor(() => seen.answers.length === 1 || seen.caught.length > 0, 'the SDK device answer');
      assert.deepEqual(seen.answers[0]?.payload, { echo: { line: 9 } });
      inject('desired', { deviceId: 'sdk-machine', payload: { mode: 'eco' } });
      await waitFor(() => patches.length === 1, 'the desired patch at the SDK device');
      assert.equal(patches[0].mode, 'eco');
      assert.equal(seen.caught.length, 0);
    } finally {
      if (saved.port === undefined) delete process.env.IOTHUB_SIM_REST_PORT;
      else process.env.IOTHUB_SIM_REST_PORT = saved.port;
      if (saved.ca === undefined) delete process.env.IOTHUB_SIM_REST_CA;
      else process.env.IOTHUB_SIM_REST_CA = saved.ca;
      await helper.unload();
      await closeQuietly(device);
      await other.close();
    }
  });

  it('twin-desired sets desired properties the device twin receives, reads what it reported, and refuses a stale etag', async () => {
    const seen = await load();
    await waitFor(() => seen.device.length === 1, 'the device twin on deploy');
    inject('desired', { payload: { speed: 40 } });
    await waitFor(() => seen.twins.length === 1 && seen.device.length === 2, 'the update answered and the patch at the device');
    assert.deepEqual(seen.device[1].payload, { speed: 40, $version: 2 });
    const etag = String(seen.twins[0].etag);
    inject('twin1', { payload: { speed: 40, state: 'running' } });
    await waitFor(() => seen.device.length === 3, 'the report');
    inject('desired', { topic: 'get' });
    await waitFor(() => seen.twins.length === 2, 'the twin read');
    assert.equal((seen.twins[1].payload as Twin).reported.state, 'running');
    inject('desired', { payload: { speed: 50 }, etag });
    inject('desired', { payload: 'fast' });
    await waitFor(() => seen.caught.length === 2, 'two refusals at Catch');
    assert.deepEqual(seen.caught.map((m) => m.error?.code).sort(), ['InvalidPayload', 'PreconditionFailed']);
  });

  it('closing the flow ends a method call still waiting for its device with done(Closed) at once', async () => {
    const seen = await load();
    await waitFor(() => seen.device.length === 1, 'the flow up');
    const invoke = helper.getNode('invoke') as unknown as {
      on(event: 'call:error', listener: (call: { args: unknown[] }) => void): void;
      close(removed: boolean): Promise<void>;
    };
    const errors: Array<{ code?: unknown }> = [];
    invoke.on('call:error', (call) => errors.push(call.args[0] as { code?: unknown }));
    inject('invoke', { payload: 'slow' });
    // method-in has the call; nobody answers it, so the REST request waits (responseTimeout 10 s).
    await waitFor(() => seen.calls.length === 1, 'the call at method-in');
    const closing = Date.now();
    await invoke.close(false);
    await waitFor(() => errors.length === 1, 'done(err) for the abandoned call', 3000);
    assert.equal(errors[0].code, 'Closed');
    assert.ok(Date.now() - closing < 3000);
    assert.equal(seen.answers.length, 0, 'nothing sent from a closed node');
  });

  it('ServiceApi: an aborted signal fails a waiting request at once with Closed, and sends no later one', async () => {
    const dir = testCertDir();
    let requests = 0;
    const silent = https.createServer({ cert: readFileSync(path.join(dir, 'cert.pem')), key: readFileSync(path.join(dir, 'key.pem')) }, () => {
      requests++; // never answers
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const aborter = new AbortController();
    const api = new ServiceApi(
      {
        host: 'localhost',
        connectHost: '127.0.0.1',
        port: (silent.address() as AddressInfo).port,
        policy: 'service',
        key: Buffer.from('k').toString('base64'),
        ca: readFileSync(path.join(dir, 'cert.pem')),
        timeoutMs: 30_000,
      },
      { signal: aborter.signal },
    );
    try {
      const waiting = api.getTwin({ deviceId: 'd1' }).then(
        () => assert.fail('nothing answers'),
        (err: unknown) => err as HubError,
      );
      await waitFor(() => requests === 1, 'the request at the server');
      aborter.abort();
      assert.equal((await waiting).code, 'Closed');
      const later = await api.updateDesired({ deviceId: 'd1' }, { a: 1 }).then(
        () => assert.fail('aborted'),
        (err: unknown) => err as HubError,
      );
      assert.equal(later.code, 'Closed');
      assert.equal(requests, 1, 'the later call was not sent');
    } finally {
      silent.closeAllConnections();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });
});
