/**
 * What the simulator refuses: wrong keys, expired tokens, a device reaching for another device's links,
 * a device token on a service link. Each must be `amqp:unauthorized-access`, and nothing delivered.
 */
import { strict as assert } from 'node:assert';
import { Client as DeviceClient } from 'azure-iot-device';
import { Amqp as DeviceAmqp } from 'azure-iot-device-amqp';
import { Connection } from 'rhea-promise';
import type { SimulatedHub } from '../../src/simulator';
import { CbsChannel } from '../../src/iothub/cbs';
import { expiryIn, makeSasToken } from '../../src/iothub/sas';
import { startTestHub, waitFor } from '../helpers/hub';
import { Message } from '../helpers/sdk';

async function rawConnection(hub: SimulatedHub): Promise<Connection> {
  const connection = new Connection({ transport: 'tcp', host: '127.0.0.1', port: Number(hub.ports.amqp), reconnect: false });
  await connection.open();
  return connection;
}

function deviceToken(hub: SimulatedHub, deviceId: string, key?: string, lifetime = 300): string {
  const record = hub.registry.addDevice(deviceId);
  return makeSasToken({ resource: `${hub.hostWithPort}/devices/${deviceId}`, key: key ?? record.primaryKey, expiry: expiryIn(lifetime) });
}

/** Attaches a sender and reports the condition it was refused with, or 'attached'. */
async function attachSender(connection: Connection, address: string): Promise<string> {
  return new Promise<string>((resolve) => {
    connection
      .createSender({
        target: { address },
        onError: (ctx) => resolve(String(ctx.sender?.error && (ctx.sender.error as { condition?: string }).condition)),
      })
      .then(
        (sender) => {
          // The hub answers an attach it refuses with attach + detach; give the detach a moment.
          setTimeout(() => resolve(sender.isOpen() ? 'attached' : 'closed'), 200);
        },
        (err: { condition?: string }) => resolve(String(err.condition)),
      );
  });
}

describe('simulator refusals', function () {
  let hub: SimulatedHub;
  afterEach(async () => hub?.close());

  it('refuses a device with the wrong key, and nothing arrives', async () => {
    hub = await startTestHub({ autoRegister: false, devices: [{ deviceId: 'locked' }] });
    const wrongKey = Buffer.alloc(32, 7).toString('base64');
    const client = DeviceClient.fromConnectionString(`HostName=${hub.hostWithPort};DeviceId=locked;SharedAccessKey=${wrongKey}`, DeviceAmqp);
    client.on('error', () => undefined);
    await client.setOptions({ ca: hub.certificate?.cert });
    await assert.rejects(client.open(), (err: Error) => {
      assert.equal(err.name, 'UnauthorizedError');
      return true;
    });
    await client.close().catch(() => undefined);
    assert.equal(hub.stats.putTokensRefused, 1);
    assert.equal([...hub.events()].length, 0);
  });

  it('refuses an expired device token', async () => {
    hub = await startTestHub();
    const record = hub.registry.addDevice('late');
    const expired = makeSasToken({ resource: `${hub.hostWithPort}/devices/late`, key: record.primaryKey, expiry: Math.floor(Date.now() / 1000) - 60 });
    const client = DeviceClient.fromConnectionString(`HostName=${hub.hostWithPort};DeviceId=late;SharedAccessSignature=${expired}`, DeviceAmqp);
    client.on('error', () => undefined);
    await client.setOptions({ ca: hub.certificate?.cert });
    await assert.rejects(client.open(), (err: Error) => {
      assert.equal(err.name, 'UnauthorizedError');
      return true;
    });
    await client.close().catch(() => undefined);
    assert.equal([...hub.events()].length, 0);
  });

  it("refuses device A on device B's links and on service links; A's own link works", async () => {
    hub = await startTestHub();
    const connection = await rawConnection(hub);
    try {
      const cbs = new CbsChannel(connection);
      await cbs.open();
      await cbs.putToken(`${hub.hostWithPort}/devices/device-a`, deviceToken(hub, 'device-a'));
      hub.registry.addDevice('device-b');
      assert.equal(await attachSender(connection, '/devices/device-b/messages/events'), 'amqp:unauthorized-access');
      assert.equal(await attachSender(connection, '/messages/devicebound'), 'amqp:unauthorized-access');
      assert.equal(await attachSender(connection, '/devices/device-a/modules/m1/messages/events'), 'amqp:unauthorized-access');
      assert.equal(await attachSender(connection, '/devices/device-a/messages/events'), 'attached');
      await cbs.close();
    } finally {
      await connection.close();
    }
    assert.equal([...hub.events()].length, 0);
    assert.equal(hub.c2d.depth('device-b'), 0);
  });

  it('refuses a service policy without DeviceConnect on device links, and no token at all everywhere', async () => {
    hub = await startTestHub();
    const connection = await rawConnection(hub);
    try {
      assert.equal(await attachSender(connection, '/devices/x/messages/events'), 'amqp:unauthorized-access');
      assert.equal(await attachSender(connection, '/messages/devicebound'), 'amqp:unauthorized-access');
      const cbs = new CbsChannel(connection);
      await cbs.open();
      const service = hub.registry.policies.get('service');
      assert.ok(service);
      await cbs.putToken(hub.hostWithPort, makeSasToken({ resource: hub.hostWithPort, key: service.primaryKey, keyName: 'service', expiry: expiryIn(300) }));
      assert.equal(await attachSender(connection, '/devices/x/messages/events'), 'amqp:unauthorized-access');
      assert.equal(await attachSender(connection, '/messages/devicebound'), 'attached');
      await assert.rejects(cbs.putToken(hub.hostWithPort, 'SharedAccessSignature sr=nope&sig=bad&se=1'), /put-token refused/);
      await cbs.close();
    } finally {
      await connection.close();
    }
  });

  it('detaches links when their token expires on a live connection', async () => {
    hub = await startTestHub({ sweepIntervalMs: 50 });
    const connection = await rawConnection(hub);
    try {
      const cbs = new CbsChannel(connection);
      await cbs.open();
      // Expiry is in whole seconds: a 1 s token can lapse before the attach on a busy machine. Three leave room.
      await cbs.putToken(`${hub.hostWithPort}/devices/short`, deviceToken(hub, 'short', undefined, 3));
      let condition = '';
      const sender = await connection.createSender({
        target: { address: '/devices/short/messages/events' },
        onError: (ctx) => {
          condition = String((ctx.sender?.error as { condition?: string } | undefined)?.condition);
        },
      });
      assert.ok(sender.isOpen());
      await waitFor(() => condition !== '', 'the detach at expiry', 10_000);
      assert.equal(condition, 'amqp:unauthorized-access');
      await cbs.close();
    } finally {
      await connection.close();
    }
  });

  it('lets a device with the right key in (the refusals above are not a closed door)', async () => {
    hub = await startTestHub();
    const device = DeviceClient.fromConnectionString(hub.deviceConnectionString('honest'), DeviceAmqp);
    device.on('error', () => undefined);
    await device.setOptions({ ca: hub.certificate?.cert });
    await device.open();
    await device.sendEvent(new Message('ok'));
    await device.close();
    assert.equal([...hub.events()].length, 1);
  });
});
