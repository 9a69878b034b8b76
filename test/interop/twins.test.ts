/**
 * Twins and the registry through the simulator with the official SDKs on both sides: azure-iothub's
 * Registry (REST: devices, twins with etags) and azure-iot-device's getTwin over AMQP (get, reported
 * patches, desired-property updates).
 */
import { strict as assert } from 'node:assert';
import type { Client as DeviceClient, Twin as DeviceTwin } from 'azure-iot-device';
import type { SimulatedHub } from '../../src/simulator';
import { startTestHub, waitFor } from '../helpers/hub';
import { closeQuietly, openDevice } from '../helpers/sdk';
import { registryClient, serviceErrorCode } from '../helpers/service-rest';

type Props = Record<string, unknown> & { $version?: number };

/** The SDK's error name, the HTTP status and the code a C# service client would read (serviceErrorCode). */
function statusOf(err: unknown): { name: string; status: number | undefined; errorCode: number | 'InvalidErrorCode' } {
  const e = err as Error & { response?: { statusCode?: number; headers?: Record<string, unknown> }; responseBody?: string };
  return { name: e.name, status: e.response?.statusCode, errorCode: serviceErrorCode(e.responseBody, e.response?.headers?.['iothub-errorcode']).errorCode };
}

describe('twins and registry: official SDKs against the simulator', function () {
  this.timeout(30_000);
  let hub: SimulatedHub;
  let device: DeviceClient | undefined;

  afterEach(async () => {
    await closeQuietly(device);
    device = undefined;
    await hub?.close();
  });

  it('Registry creates, reads and deletes devices; a second create is 409, a deleted device 404', async () => {
    hub = await startTestHub({ restPort: 0, autoRegister: false });
    const registry = registryClient(hub);
    const created = await registry.create({ deviceId: 'reg-1' });
    assert.equal(created.responseBody.deviceId, 'reg-1');
    assert.ok(created.responseBody.authentication?.symmetricKey?.primaryKey, 'keys come back');
    const again = await registry.create({ deviceId: 'reg-1' }).then(
      () => assert.fail('already exists'),
      (e: unknown) => e,
    );
    assert.deepEqual(statusOf(again), { name: 'DeviceAlreadyExistsError', status: 409, errorCode: 409001 });
    const read = await registry.get('reg-1');
    assert.equal(read.responseBody.connectionState, 'Disconnected');
    await registry.delete('reg-1');
    const gone = await registry.get('reg-1').then(
      () => assert.fail('deleted'),
      (e: unknown) => e,
    );
    assert.deepEqual(statusOf(gone), { name: 'DeviceNotFoundError', status: 404, errorCode: 404001 });
  });

  it('desired properties set through Registry reach the device twin over AMQP; reported ones come back', async () => {
    hub = await startTestHub({ restPort: 0 });
    const registry = registryClient(hub);
    await registry.create({ deviceId: 'twin-1' });
    const serviceTwin = (await registry.getTwin('twin-1')).responseBody;
    await serviceTwin.update({ tags: { site: 'hall 4' }, properties: { desired: { setPoint: 21.5, mode: { fan: 'auto' } } } });

    device = await openDevice(hub, 'twin-1');
    const twin: DeviceTwin = await device.getTwin();
    const desired = twin.properties.desired as Props;
    assert.equal(desired.setPoint, 21.5);
    assert.deepEqual(desired.mode, { fan: 'auto' });
    assert.equal(desired.$version, 2);

    const seen: Props[] = [];
    twin.on('properties.desired', (patch: Props) => seen.push(patch));
    await waitFor(() => hub.twinLinks.isSubscribed('twin-1'), 'the desired-property subscription');
    seen.length = 0; // the twin replays what it has on the first listener
    const fresh = (await registry.getTwin('twin-1')).responseBody;
    await registry.updateTwin('twin-1', { properties: { desired: { setPoint: 19, mode: { fan: null } } } }, fresh.etag);
    await waitFor(() => seen.length === 1, 'the desired patch at the device');
    assert.deepEqual(seen[0], { setPoint: 19, mode: { fan: null }, $version: 3 });
    assert.deepEqual((twin.properties.desired as Props).mode, {}, 'null removed the property');

    await new Promise<void>((resolve, reject) =>
      twin.properties.reported.update({ firmware: '1.4.2', setPoint: 19 }, (err?: Error) => (err ? reject(err) : resolve())),
    );
    const after = (await registry.getTwin('twin-1')).responseBody;
    assert.equal((after.properties.reported as Props).firmware, '1.4.2');
    assert.equal((after.properties.reported as Props).$version, 2);
    assert.deepEqual(after.tags, { site: 'hall 4' });
    assert.equal((after as unknown as { connectionState: string }).connectionState, 'Connected');
  });

  it('a stale etag is 412 PreconditionFailed; the current one and * are taken', async () => {
    hub = await startTestHub({ restPort: 0 });
    const registry = registryClient(hub);
    await registry.create({ deviceId: 'twin-2' });
    const first = (await registry.getTwin('twin-2')).responseBody;
    await registry.updateTwin('twin-2', { properties: { desired: { a: 1 } } }, first.etag);
    const stale = await registry.updateTwin('twin-2', { properties: { desired: { a: 2 } } }, first.etag).then(
      () => assert.fail('the etag is stale'),
      (e: unknown) => e,
    );
    assert.deepEqual(statusOf(stale), { name: 'InvalidEtagError', status: 412, errorCode: 412001 });
    const updated = await registry.updateTwin('twin-2', { properties: { desired: { a: 3 } } }, '*');
    assert.equal((updated.responseBody.properties.desired as Props).a, 3);
  });

  it('a module twin over AMQP, and a reported patch that is not an object fails alone', async () => {
    hub = await startTestHub({ restPort: 0 });
    device = await openDevice(hub, 'edge-9', 'filter');
    const twin: DeviceTwin = await device.getTwin();
    const bad = await new Promise<Error | undefined>((resolve) =>
      twin.properties.reported.update('just text' as unknown as object, (err?: Error) => resolve(err)),
    );
    assert.equal((bad as (Error & { amqpError?: Error }) | undefined)?.amqpError?.constructor.name, 'FormatError', String(bad));
    await new Promise<void>((resolve, reject) => twin.properties.reported.update({ ok: true }, (err?: Error) => (err ? reject(err) : resolve())));
    const moduleTwin = (await registryClient(hub).getModuleTwin('edge-9', 'filter')).responseBody;
    assert.equal((moduleTwin.properties.reported as Props).ok, true);
    assert.equal(moduleTwin.moduleId, 'filter');
  });
});
