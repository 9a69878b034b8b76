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

/** What a call the hub must refuse rejects with. */
function fail(call: Promise<unknown>): Promise<unknown> {
  return call.then(
    () => assert.fail('the hub took it'),
    (e: unknown) => e,
  );
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

  it("Registry updates: an etag moves with every update, a stale one is 412, an update of a device that is not there 404 (never a create); a deleted device's C2D queue goes with it", async () => {
    hub = await startTestHub({ restPort: 0, autoRegister: false });
    const sim = hub;
    const registry = registryClient(sim);
    await registry.create({ deviceId: 'upd-1' });
    // azure-iothub's update always sends If-Match "*" (registry.js `update`); its module update sends the etag read.
    const read = (await registry.get('upd-1')).responseBody;
    await registry.update(read);
    assert.notEqual((await registry.get('upd-1')).responseBody.etag, read.etag, 'an update without new keys moves the etag too');
    assert.deepEqual(statusOf(await fail(registry.update({ deviceId: 'ghost-1' }))), { name: 'DeviceNotFoundError', status: 404, errorCode: 404001 });
    assert.equal(sim.registry.getDevice('ghost-1'), undefined, 'an update created nothing');
    const module = (await registry.addModule({ deviceId: 'upd-1', moduleId: 'm' })).responseBody;
    await registry.updateModule(module, false);
    assert.deepEqual(statusOf(await fail(registry.updateModule(module, false))), { name: 'InvalidEtagError', status: 412, errorCode: 412001 });
    assert.deepEqual(statusOf(await fail(registry.updateModule({ deviceId: 'upd-1', moduleId: 'ghost' }, true))), {
      name: 'Error',
      status: 404,
      errorCode: 404010,
    });
    assert.equal(sim.registry.getDevice('upd-1')?.modules.has('ghost'), false);

    // Messages queued for a device go when it is deleted: created again, it starts with an empty queue.
    const device = sim.registry.getDevice('upd-1');
    for (const id of ['c1', 'c2']) sim.c2d.enqueue('upd-1', undefined, device?.generationId ?? '', { message_id: id, body: id });
    sim.c2d.enqueue('upd-1', 'm', sim.registry.getDevice('upd-1')?.modules.get('m')?.generationId ?? '', { message_id: 'c3', body: 'c3' });
    assert.deepEqual([sim.c2d.depth('upd-1'), sim.c2d.depth('upd-1', 'm')], [2, 1]);
    await registry.delete('upd-1');
    await registry.create({ deviceId: 'upd-1' });
    assert.deepEqual([sim.c2d.depth('upd-1'), sim.c2d.depth('upd-1', 'm')], [0, 0]);
  });

  it('a device deleted while its client is connected stays deleted: auto-registration does not let its retries bring it back', async () => {
    hub = await startTestHub({ restPort: 0 });
    const sim = hub;
    const registry = registryClient(sim);
    device = await openDevice(sim, 'gone-1');
    const client = device;
    // A C2D receiver: a link the deletion detaches and the client attaches again by itself.
    client.on('message', () => undefined);
    await waitFor(() => sim.snapshot().links > 1, 'the C2D link');
    assert.ok(sim.registry.getDevice('gone-1'), 'registered by its first token (auto-registration is on)');
    const refusedBefore = sim.stats.linksRefused + sim.stats.putTokensRefused;
    await registry.delete('gone-1');
    // The client retries on its own; each try is refused, none registers the device again.
    await waitFor(() => sim.stats.linksRefused + sim.stats.putTokensRefused > refusedBefore, "the client's retry refused", 20_000);
    assert.equal(sim.registry.getDevice('gone-1'), undefined);
    assert.deepEqual(statusOf(await fail(registry.get('gone-1'))), { name: 'DeviceNotFoundError', status: 404, errorCode: 404001 });
    // Created again through the API, it is a device once more.
    await registry.create({ deviceId: 'gone-1' });
    assert.equal(sim.registry.keysFor('gone-1').length, 1);
  });

  it('Registry adds, lists, reads, updates and removes modules; a second add is 409301, a stale etag 412, a module of a missing device 404; a removed module loses its links and its twin', async () => {
    hub = await startTestHub({ restPort: 0, autoRegister: false });
    const sim = hub;
    const registry = registryClient(sim);
    await registry.create({ deviceId: 'edge-1' });
    const added = (await registry.addModule({ deviceId: 'edge-1', moduleId: 'filter' })).responseBody;
    assert.deepEqual([added.deviceId, added.moduleId], ['edge-1', 'filter']);
    assert.ok(added.authentication?.symmetricKey?.primaryKey, 'keys come back');
    await registry.addModule({ deviceId: 'edge-1', moduleId: 'camera' });
    assert.deepEqual(statusOf(await fail(registry.addModule({ deviceId: 'edge-1', moduleId: 'filter' }))), {
      name: 'DeviceAlreadyExistsError',
      status: 409,
      errorCode: 409301,
    });
    assert.deepEqual(statusOf(await fail(registry.addModule({ deviceId: 'no-such-device', moduleId: 'm' }))), {
      name: 'DeviceNotFoundError',
      status: 404,
      errorCode: 404001,
    });
    const listed = (await registry.getModulesOnDevice('edge-1')).responseBody.map((m) => m.moduleId).sort();
    assert.deepEqual(listed, ['camera', 'filter']);

    // New keys with the etag just read; the same etag again is stale.
    const read = (await registry.getModule('edge-1', 'camera')).responseBody;
    const newKey = Buffer.alloc(32, 7).toString('base64');
    const updated = (await registry.updateModule({ ...read, authentication: { symmetricKey: { primaryKey: newKey, secondaryKey: newKey } } }, false))
      .responseBody;
    assert.equal(updated.authentication?.symmetricKey?.primaryKey, newKey);
    assert.equal(sim.registry.getDevice('edge-1')?.modules.get('camera')?.primaryKey, newKey);
    assert.notEqual(updated.etag, read.etag);
    assert.deepEqual(
      statusOf(await fail(registry.updateModule({ ...read, authentication: { symmetricKey: { primaryKey: newKey, secondaryKey: newKey } } }, false))),
      { name: 'InvalidEtagError', status: 412, errorCode: 412001 },
    );

    // A module device client with its twin open; removing the module takes its links and its twin.
    device = await openDevice(sim, 'edge-1', 'filter');
    const twin: DeviceTwin = await device.getTwin();
    await new Promise<void>((resolve, reject) => twin.properties.reported.update({ stage: 2 }, (err?: Error) => (err ? reject(err) : resolve())));
    assert.ok(sim.twinLinks.isConnected('edge-1', 'filter'));
    await registry.removeModule('edge-1', 'filter');
    await waitFor(() => !sim.twinLinks.isConnected('edge-1', 'filter'), "the removed module's twin links detached");
    // azure-iothub names only DeviceNotFound and IotHubNotFound 404s (rest_api_client.js translateError): a plain Error.
    assert.deepEqual(statusOf(await fail(registry.getModule('edge-1', 'filter'))), { name: 'Error', status: 404, errorCode: 404010 });
    assert.deepEqual(statusOf(await fail(registry.getModuleTwin('edge-1', 'filter'))), { name: 'Error', status: 404, errorCode: 404010 });
    assert.deepEqual(
      (await registry.getModulesOnDevice('edge-1')).responseBody.map((m) => m.moduleId),
      ['camera'],
    );
    // Made again, it starts with an empty twin.
    await registry.addModule({ deviceId: 'edge-1', moduleId: 'filter' });
    assert.deepEqual((await registry.getModuleTwin('edge-1', 'filter')).responseBody.properties.reported, { $version: 1 });
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
