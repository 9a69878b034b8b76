/**
 * Direct methods through the simulator with the official SDKs on both sides: azure-iothub's
 * Client.invokeDeviceMethod over the REST API, azure-iot-device's onDeviceMethod over AMQP.
 */
import { strict as assert } from 'node:assert';
import * as https from 'node:https';
import { format } from 'node:util';
import createDebug from 'debug';
import type { Client as DeviceClient } from 'azure-iot-device';
import { expiryIn, makeSasToken } from '../../src/iothub/sas';
import { DEFAULT_KEYS, type SimulatedHub } from '../../src/simulator';
import type { ServiceError } from '../../src/simulator/service-errors';
import { startTestHub, waitFor } from '../helpers/hub';
import { asOwner, openRaw } from '../helpers/raw';
import { closeQuietly, openDevice } from '../helpers/sdk';
import { serviceClient, serviceErrorCode } from '../helpers/service-rest';

interface MethodRequestLike {
  methodName: string;
  requestId: string;
  payload: unknown;
}
interface MethodResponseLike {
  send(status: number, payload?: unknown): Promise<void>;
}

type Invoked = { result: { status: number; payload: unknown } };

/** Resolves once the device's method links are attached at the hub. */
async function answering(
  hub: SimulatedHub,
  device: DeviceClient,
  name: string,
  handler: (req: MethodRequestLike, res: MethodResponseLike) => void,
  deviceId: string,
  moduleId?: string,
): Promise<void> {
  device.onDeviceMethod(name, handler as never);
  await waitFor(() => hub.methods.isOnline(deviceId, moduleId), 'the method links of the device');
}

/**
 * The HTTP status of a failed REST call and the IoT Hub error code a C# service client would read from it
 * (the body's code, confirmed by the iothub-errorcode header; see serviceErrorCode).
 */
function failure(err: unknown): { status: number | undefined; errorCode: number | 'InvalidErrorCode'; header?: string } {
  const e = err as { response?: { statusCode?: number; headers?: Record<string, unknown> }; responseBody?: string };
  return { status: e.response?.statusCode, ...serviceErrorCode(e.responseBody, e.response?.headers?.['iothub-errorcode']) };
}

describe('direct methods: official SDKs against the simulator', function () {
  this.timeout(30_000);
  let hub: SimulatedHub;
  let device: DeviceClient | undefined;

  afterEach(async () => {
    await closeQuietly(device);
    device = undefined;
    await hub?.close();
  });

  it('invokeDeviceMethod reaches onDeviceMethod over AMQP; the status and JSON payload come back', async () => {
    hub = await startTestHub({ restPort: 0 });
    device = await openDevice(hub, 'press-7');
    const seen: MethodRequestLike[] = [];
    await answering(
      hub,
      device,
      'startLine',
      (req, res) => {
        seen.push(req);
        void res.send(201, { started: (req.payload as { line: number }).line, at: 'now' });
      },
      'press-7',
    );
    const service = serviceClient(hub);
    const answer = (await service.invokeDeviceMethod('press-7', { methodName: 'startLine', payload: { line: 3 } })) as unknown as Invoked;
    assert.deepEqual(answer.result, { status: 201, payload: { started: 3, at: 'now' } });
    assert.equal(seen.length, 1);
    assert.equal(seen[0].methodName, 'startLine');
    assert.deepEqual(seen[0].payload, { line: 3 });
    assert.match(seen[0].requestId, /^[0-9a-f-]{36}$/, 'the request id reaches the device as a uuid');
  });

  it('a module answers its own methods; a string payload and a null answer pass as JSON', async () => {
    hub = await startTestHub({ restPort: 0 });
    device = await openDevice(hub, 'edge-2', 'plc');
    await answering(hub, device, 'echo', (req, res) => void res.send(200, req.payload === 'ping' ? null : 'wrong'), 'edge-2', 'plc');
    const service = serviceClient(hub);
    const answer = (await service.invokeDeviceMethod('edge-2', 'plc', { methodName: 'echo', payload: 'ping' })) as unknown as Invoked;
    assert.deepEqual(answer.result, { status: 200, payload: null });
  });

  it('a device without method links is 404103 DeviceNotOnline; an unknown device is DeviceNotFound', async () => {
    hub = await startTestHub({ restPort: 0, autoRegister: false, devices: [{ deviceId: 'sleeper' }] });
    const service = serviceClient(hub);
    const offline = await service.invokeDeviceMethod('sleeper', { methodName: 'wake', payload: null }).then(
      () => assert.fail('an offline device cannot answer'),
      (err: unknown) => err,
    );
    assert.deepEqual(failure(offline), { status: 404, errorCode: 404103, header: 'DeviceNotOnline' });
    // azure-iothub makes DeviceNotFoundError only of a Message naming DeviceNotFound (rest_api_client.js translateError).
    assert.notEqual((offline as Error).name, 'DeviceNotFoundError', 'the Node SDK does not take an offline device for an unknown one');
    const unknown = await service.invokeDeviceMethod('nobody', { methodName: 'wake', payload: null }).then(
      () => assert.fail('an unknown device cannot answer'),
      (err: unknown) => err,
    );
    assert.equal((unknown as Error).name, 'DeviceNotFoundError');
    assert.deepEqual(failure(unknown), { status: 404, errorCode: 404001, header: 'DeviceNotFound' });
  });

  it('a device that connects within connectTimeoutInSeconds gets the call', async () => {
    hub = await startTestHub({ restPort: 0 });
    hub.registry.addDevice('late');
    const service = serviceClient(hub);
    const call = service.invokeDeviceMethod('late', { methodName: 'hello', payload: 1, connectTimeoutInSeconds: 30, responseTimeoutInSeconds: 30 });
    await waitFor(() => hub.methods.awaitingDevice === 1, 'the call waiting for its device');
    device = await openDevice(hub, 'late');
    await answering(hub, device, 'hello', (req, res) => void res.send(200, { got: req.payload }), 'late');
    const answer = (await call) as unknown as Invoked;
    assert.deepEqual(answer.result, { status: 200, payload: { got: 1 } });
  });

  it('a call nobody answers fails with 504101 GatewayTimeout and the links stay usable', async () => {
    hub = await startTestHub({ restPort: 0 });
    device = await openDevice(hub, 'mute');
    let answerNext = false;
    await answering(
      hub,
      device,
      'maybe',
      (_req, res) => {
        if (answerNext) void res.send(200, 'late but here');
      },
      'mute',
    );
    const service = serviceClient(hub);
    const timedOut = await service.invokeDeviceMethod('mute', { methodName: 'maybe', payload: null, responseTimeoutInSeconds: 5 }).then(
      () => assert.fail('nobody answered'),
      (err: unknown) => err,
    );
    assert.equal((timedOut as Error).name, 'GatewayTimeoutError');
    assert.deepEqual(failure(timedOut), { status: 504, errorCode: 504101, header: 'GatewayTimeout' });
    answerNext = true;
    const answer = (await service.invokeDeviceMethod('mute', { methodName: 'maybe', payload: null })) as unknown as Invoked;
    assert.deepEqual(answer.result, { status: 200, payload: 'late but here' });
  });

  it('REST calls need a policy with ServiceConnect: registryRead is refused with 401', async () => {
    hub = await startTestHub({ restPort: 0 });
    device = await openDevice(hub, 'guarded');
    await answering(hub, device, 'm', (_req, res) => void res.send(200, 'ok'), 'guarded');
    const answer = (await serviceClient(hub, 'service').invokeDeviceMethod('guarded', { methodName: 'm', payload: null })) as unknown as Invoked;
    assert.equal(answer.result.payload, 'ok');
    const refused = await serviceClient(hub, 'registryRead')
      .invokeDeviceMethod('guarded', { methodName: 'm', payload: null })
      .then(
        () => assert.fail('registryRead has no ServiceConnect'),
        (err: unknown) => err,
      );
    assert.equal((refused as Error).name, 'UnauthorizedError');
    assert.deepEqual(failure(refused), { status: 401, errorCode: 401002, header: 'IotHubUnauthorizedAccess' });
  });

  it('a body that is not JSON is 400006 and one without api-version 400001; the next call works', async () => {
    hub = await startTestHub({ restPort: 0 });
    device = await openDevice(hub, 'strict');
    await answering(hub, device, 'm', (_req, res) => void res.send(200, 'fine'), 'strict');
    const token = makeSasToken({ resource: 'localhost', key: DEFAULT_KEYS.iothubowner, keyName: 'iothubowner', expiry: expiryIn(600) });
    const post = (path: string, body: string): Promise<{ status: number; errorCode: number | 'InvalidErrorCode' }> =>
      new Promise((resolve, reject) => {
        const req = https.request(
          {
            host: '127.0.0.1',
            port: hub.ports.rest,
            servername: 'localhost',
            path,
            method: 'POST',
            headers: { Authorization: token, 'Content-Type': 'application/json' },
          },
          (res) => {
            let text = '';
            res.on('data', (c: Buffer) => (text += c.toString()));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, errorCode: serviceErrorCode(text, res.headers['iothub-errorcode']).errorCode }));
          },
        );
        req.on('error', reject);
        req.end(body);
      });
    assert.deepEqual(await post('/twins/strict/methods?api-version=2021-04-12', '{"methodName": "m", payload: oops}'), { status: 400, errorCode: 400006 });
    assert.deepEqual(await post('/twins/strict/methods', '{"methodName": "m"}'), { status: 400, errorCode: 400001 });
    const answer = (await serviceClient(hub).invokeDeviceMethod('strict', { methodName: 'm', payload: null })) as unknown as Invoked;
    assert.equal(answer.result.payload, 'fine');
  });

  it('a payload over 128 KB is refused with 413001 before it reaches the device', async () => {
    hub = await startTestHub({ restPort: 0 });
    device = await openDevice(hub, 'small');
    let calls = 0;
    await answering(
      hub,
      device,
      'big',
      (_req, res) => {
        calls++;
        void res.send(200, null);
      },
      'small',
    );
    const refused = await serviceClient(hub)
      .invokeDeviceMethod('small', { methodName: 'big', payload: 'x'.repeat(129 * 1024) })
      .then(
        () => assert.fail('too large'),
        (err: unknown) => err,
      );
    assert.deepEqual(failure(refused), { status: 413, errorCode: 413001, header: 'MessageTooLarge' });
    assert.equal(calls, 0);
  });

  it('a request body past 256 KB gets its 413001 answer, not a reset socket; the next call works', async () => {
    hub = await startTestHub({ restPort: 0 });
    device = await openDevice(hub, 'roomy');
    await answering(hub, device, 'm', (_req, res) => void res.send(200, 'still here'), 'roomy');
    const token = makeSasToken({ resource: 'localhost', key: DEFAULT_KEYS.iothubowner, keyName: 'iothubowner', expiry: expiryIn(600) });
    const body = JSON.stringify({ methodName: 'm', payload: 'x'.repeat(1024 * 1024) });
    const answer = await new Promise<{ status: number; errorCode: number | 'InvalidErrorCode' }>((resolve, reject) => {
      const req = https.request(
        {
          host: '127.0.0.1',
          port: hub.ports.rest,
          servername: 'localhost',
          path: '/twins/roomy/methods?api-version=2021-04-12',
          method: 'POST',
          ca: hub.certificate?.cert,
          headers: { Authorization: token, 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(body)) },
        },
        (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, errorCode: serviceErrorCode(text, res.headers['iothub-errorcode']).errorCode }));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
    assert.deepEqual(answer, { status: 413, errorCode: 413001 });
    const next = (await serviceClient(hub).invokeDeviceMethod('roomy', { methodName: 'm', payload: null })) as unknown as Invoked;
    assert.equal(next.result.payload, 'still here');
  });

  it('closing the hub fails a call waiting for its device at once with 503, not when its connect timeout ends', async () => {
    hub = await startTestHub({ restPort: 0 });
    hub.registry.addDevice('never');
    const started = Date.now();
    const call = hub.methods.invoke('never', undefined, { methodName: 'm', payload: null, responseTimeoutInSeconds: 30, connectTimeoutInSeconds: 60 }).then(
      () => assert.fail('nobody answered'),
      (err: unknown) => err as ServiceError,
    );
    await waitFor(() => hub.methods.awaitingDevice === 1, 'the call waiting for its device');
    hub.methods.close();
    const error = await call;
    assert.equal(error.errorCode, 503001);
    assert.ok(Date.now() - started < 5000, 'failed at close');
    assert.equal(hub.methods.awaitingDevice, 0);
  });

  it('a method link attached without com.microsoft:api-version is taken and said in the iothub-sim debug log', async () => {
    hub = await startTestHub();
    const lines: string[] = [];
    const wasEnabled = createDebug.disable();
    const originalLog = createDebug.log;
    createDebug.log = (...args: unknown[]) => void lines.push(format(...args));
    createDebug.enable('iothub-sim:amqp');
    const raw = await openRaw(hub);
    try {
      await asOwner(hub, raw);
      hub.registry.addDevice('bare');
      const address = '/devices/bare/methods/devicebound';
      const versioned = { 'com.microsoft:api-version': '2021-04-12', 'com.microsoft:channel-correlation-id': 'bare' };
      const receiver = await raw.connection.createReceiver({ source: { address }, properties: versioned });
      assert.equal(lines.filter((l) => l.includes('api-version')).length, 0, 'a link with the version is not logged');
      const sender = await raw.connection.createSender({ target: { address }, properties: { 'com.microsoft:channel-correlation-id': 'bare' } });
      await waitFor(() => hub.methods.isOnline('bare'), 'both method links taken');
      assert.equal(lines.filter((l) => /method link of bare attached without com\.microsoft:api-version/.test(l)).length, 1);
      await sender.close();
      await receiver.close();
    } finally {
      await raw.close();
      createDebug.disable();
      if (wasEnabled) createDebug.enable(wasEnabled);
      createDebug.log = originalLog;
    }
  });
});
