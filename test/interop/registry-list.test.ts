/**
 * The device list behind the editor's device picker, read over the simulator's service REST API as
 * from Azure: the same route azure-iothub's Registry.list calls, a SAS token of a policy with
 * RegistryRead, and nothing of the answer's keys kept.
 */
import { strict as assert } from 'node:assert';
import { parseConnectionString, type GatewayIdentity } from '../../src/iothub/connection-string';
import { HubError } from '../../src/iothub/errors';
import { listDevices } from '../../src/iothub/registry-list';
import type { SimulatedHub } from '../../src/simulator';
import { freePort, startTestHub } from '../helpers/hub';
import { closeQuietly, Message, openDevice } from '../helpers/sdk';
import { registryClient } from '../helpers/service-rest';

describe('registry list over the service REST API (device picker)', function () {
  this.timeout(30_000);
  let hub: SimulatedHub;

  before(async () => {
    hub = await startTestHub({ restPort: 0, autoRegister: false });
    hub.registry.addDevice('press-2');
    hub.registry.addDevice('press-10');
    hub.registry.addDevice('oven-1');
  });

  after(async () => {
    await hub?.close();
  });

  const identity = (policy = 'iothubowner'): GatewayIdentity =>
    parseConnectionString(hub.serviceConnectionString(policy), { gatewayPolicy: true }) as GatewayIdentity;
  const at = (): { connectHost: string; port: number } => ({ connectHost: '127.0.0.1', port: hub.ports.rest as number });

  it('lists every device by id with its state, sorted, and keeps none of the keys the hub sends', async () => {
    const device = await openDevice(hub, 'oven-1');
    try {
      // The simulator counts a device connected while it has a link open: a send attaches one.
      await device.sendEvent(new Message('on'));
      const devices = await listDevices(identity(), at());
      assert.deepEqual(
        devices.map((d) => d.deviceId),
        ['oven-1', 'press-10', 'press-2'],
      );
      for (const d of devices) assert.deepEqual(Object.keys(d).sort(), ['connectionState', 'deviceId', 'status'], JSON.stringify(d));
      assert.equal(devices.find((d) => d.deviceId === 'oven-1')?.connectionState, 'Connected');
      assert.equal(devices.find((d) => d.deviceId === 'press-2')?.connectionState, 'Disconnected');
      assert.ok(!JSON.stringify(devices).includes(hub.registry.getDevice('oven-1')?.primaryKey as string));
    } finally {
      await closeQuietly(device);
    }
  });

  it('answers the official Registry.list on the same route with the same devices', async () => {
    const registry = registryClient(hub);
    const listed = (await registry.list()).responseBody as Array<{ deviceId: string }>;
    assert.deepEqual(listed.map((d) => d.deviceId).sort(), (await listDevices(identity(), at())).map((d) => d.deviceId).sort());
  });

  it('says which right a policy lacks, and names a hub it cannot reach', async () => {
    await assert.rejects(listDevices(identity('service'), at()), (err: HubError) => {
      assert.equal(err.code, 'Unauthorized');
      assert.match(err.message, /policy service may not read the device registry: it needs the RegistryRead permission/);
      return true;
    });
    const closed = await freePort();
    await assert.rejects(listDevices(identity(), { connectHost: '127.0.0.1', port: closed }), (err: HubError) => {
      assert.equal(err.code, 'NotConnected');
      assert.equal(err.socketCode, 'ECONNREFUSED');
      return true;
    });
  });
});
