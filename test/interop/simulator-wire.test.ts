/**
 * Wire details of the simulator that the SDK tests do not reach: SASL mechanisms, absolute addresses,
 * size limits, batches, rcv-settle-mode second and lock loss, the exact feedback message, its
 * redelivery, consumer groups, and the fault controls.
 */
import { strict as assert } from 'node:assert';
import { Client as DeviceClient } from 'azure-iot-device';
import rhea = require('rhea');
import { Connection, ReceiverEvents, type ConnectionOptions, type Delivery, type EventContext, type Receiver } from 'rhea-promise';
import type { SimulatedHub } from '../../src/simulator';
import { FEEDBACK_CONTENT_TYPE } from '../../src/simulator/feedback';
import { startTestHub, waitFor, delay } from '../helpers/hub';
import { asOwner, deviceToken, openRaw, type RawClient } from '../helpers/raw';
import { expiryIn, makeSasToken } from '../../src/iothub/sas';
import { closeQuietly, Message, openDevice, openService } from '../helpers/sdk';

interface FailedSend {
  innerError?: { condition?: string };
}

async function sendExpectingError(client: RawClient, address: string, message: rhea.Message, format?: number): Promise<string> {
  const sender = await client.connection.createAwaitableSender({ target: { address } });
  try {
    await sender.send(message, format === undefined ? {} : { format });
    return 'accepted';
  } catch (err) {
    return String((err as FailedSend).innerError?.condition);
  } finally {
    await sender.close().catch(() => undefined);
  }
}

describe('simulator wire behaviour', function () {
  let hub: SimulatedHub;
  const clients: RawClient[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.close();
    await hub?.close();
  });

  async function raw(extra: Partial<ConnectionOptions> = {}): Promise<RawClient> {
    const c = await openRaw(hub, extra);
    clients.push(c);
    return c;
  }

  it('accepts SASL PLAIN with a device token as `<device>@sas.<hub>` and MSSBCBS with no initial response', async () => {
    hub = await startTestHub();
    const token = deviceToken(hub, 'plain-dev');
    const plain = await raw({ username: `plain-dev@sas.${hub.options.hubName}`, password: token });
    assert.equal(await sendExpectingError(plain, '/devices/plain-dev/messages/events', { body: 'via plain' }), 'accepted');

    const mssbcbs = {
      MSSBCBS: () => ({ start: (callback: (err: unknown, response: Buffer) => void) => callback(undefined, Buffer.alloc(0)) }),
    };
    const viaCbs = await raw({ sasl_mechanisms: mssbcbs } as unknown as Partial<ConnectionOptions>);
    await viaCbs.cbs.putToken(`${hub.hostWithPort}/devices/cbs-dev`, deviceToken(hub, 'cbs-dev'));
    assert.equal(await sendExpectingError(viaCbs, '/devices/cbs-dev/messages/events', { body: 'via mssbcbs' }), 'accepted');
    assert.deepEqual([...hub.events()].map((e) => e.message.message_annotations?.['iothub-connection-device-id']).sort(), ['cbs-dev', 'plain-dev']);
  });

  it('refuses SASL PLAIN with a bad token at the SASL layer', async () => {
    hub = await startTestHub();
    const connection = new Connection({
      transport: 'tcp',
      host: '127.0.0.1',
      port: Number(hub.ports.amqp),
      reconnect: false,
      username: `iothubowner@sas.root.${hub.options.hubName}`,
      password: 'SharedAccessSignature sr=localhost&sig=AAAA&se=9999999999&skn=iothubowner',
    });
    await assert.rejects(connection.open());
    await connection.close().catch(() => undefined);
    assert.equal(hub.snapshot().links, 0);
  });

  it('normalises absolute addresses with ports, odd casing and URL-encoded ids', async () => {
    hub = await startTestHub();
    const client = await raw();
    await asOwner(hub, client);
    hub.registry.addDevice('dev#1');
    const address = `amqps://${hub.options.hostName}:5671/devices/dev%231/messages/Events`;
    assert.equal(await sendExpectingError(client, address, { body: 'absolute' }), 'accepted');
    assert.equal([...hub.events()][0].message.message_annotations?.['iothub-connection-device-id'], 'dev#1');
    const c2d = `amqps://${hub.options.hostName}:5671/messages/deviceBound`;
    assert.equal(await sendExpectingError(client, c2d, { to: '/devices/dev%231/messages/deviceBound', body: 'x' }), 'accepted');
    assert.equal(hub.c2d.depth('dev#1'), 1);
  });

  it('refuses D2C over 256 KB and C2D over 64 KB with amqp:link:message-size-exceeded', async () => {
    hub = await startTestHub();
    const client = await raw();
    await asOwner(hub, client);
    hub.registry.addDevice('big');
    const d2c = await sendExpectingError(client, '/devices/big/messages/events', { body: rhea.message.data_section(Buffer.alloc(256 * 1024 + 1)) });
    assert.equal(d2c, 'amqp:link:message-size-exceeded');
    assert.equal(await sendExpectingError(client, '/devices/big/messages/events', { body: rhea.message.data_section(Buffer.alloc(200 * 1024)) }), 'accepted');
    const c2d = await sendExpectingError(client, '/messages/devicebound', {
      to: '/devices/big/messages/devicebound',
      body: rhea.message.data_section(Buffer.alloc(64 * 1024 + 1)),
    });
    assert.equal(c2d, 'amqp:link:message-size-exceeded');
    assert.equal(hub.c2d.depth('big'), 0);
    assert.equal([...hub.events()].length, 1);
  });

  it('unpacks batched D2C messages (format 0x80013700) into separate events', async () => {
    hub = await startTestHub();
    const client = await raw();
    await client.cbs.putToken(`${hub.hostWithPort}/devices/batcher`, deviceToken(hub, 'batcher'));
    const parts = [0, 1, 2].map((i) =>
      rhea.message.encode({ message_id: `b${i}`, application_properties: { i }, body: rhea.message.data_section(Buffer.from(`part ${i}`)) }),
    );
    const batch = rhea.message.encode({ body: rhea.message.data_sections(parts) });
    assert.equal(await sendExpectingError(client, '/devices/batcher/messages/events', batch as unknown as rhea.Message, 0x80013700), 'accepted');
    const events = [...hub.events()];
    assert.deepEqual(
      events.map((e) => e.message.message_id),
      ['b0', 'b1', 'b2'],
    );
    assert.deepEqual(
      events.map((e) => e.event.sequenceNumber),
      [0, 1, 2],
    );
  });

  it('settles back to receivers in rcv-settle-mode second, and answers a settle after the lock expired with message-lock-lost', async () => {
    // The first delivery must be accepted within its lock after a poll and a round trip: 1 s leaves a busy machine room.
    hub = await startTestHub({ c2d: { lockMs: 1000 } });
    const client = await raw();
    await client.cbs.putToken(`${hub.hostWithPort}/devices/second`, deviceToken(hub, 'second'));
    const service = await raw();
    await asOwner(hub, service);
    for (const id of ['one', 'two']) {
      assert.equal(
        await sendExpectingError(service, '/messages/devicebound', { message_id: id, to: '/devices/second/messages/devicebound', body: id }),
        'accepted',
      );
    }
    const received: Array<{ id: string; delivery: Delivery; tag: Buffer }> = [];
    const receiver: Receiver = await client.connection.createReceiver({
      source: { address: '/devices/second/messages/devicebound' },
      rcv_settle_mode: 1,
      autoaccept: false,
      credit_window: 10,
      onMessage: (ctx: EventContext) => {
        const delivery = ctx.delivery as Delivery;
        received.push({ id: String(ctx.message?.message_id), delivery, tag: delivery.tag as Buffer });
      },
      onError: () => undefined,
    });
    await waitFor(() => received.length === 2, 'two deliveries');
    assert.equal(received[0].tag.length, 16, 'delivery tags are 16 bytes (C# reads them as the lock token)');
    // Complete the first in time: the hub settles it back as accepted.
    const settledBack = new Promise<string>((resolve) => {
      receiver.on(ReceiverEvents.settled, (ctx: EventContext) => {
        const state = ctx.delivery?.remote_state as { constructor?: { composite_type?: string }; error?: { condition?: string } } | undefined;
        resolve(state?.error?.condition ?? String(ctx.delivery?.remote_settled));
      });
    });
    received[0].delivery.accept();
    assert.equal(await settledBack, 'true');
    assert.equal(hub.c2d.depth('second'), 1);
    // Let the second lock lapse, then try to complete it.
    receiver.removeAllListeners(ReceiverEvents.settled);
    await waitFor(() => received.length === 3, 'redelivery after the lock lapsed', 5000);
    const lost = new Promise<string>((resolve) => {
      receiver.on(ReceiverEvents.settled, (ctx: EventContext) => {
        if (ctx.delivery !== received[1].delivery) return;
        const state = ctx.delivery?.remote_state as { error?: { condition?: string } } | undefined;
        resolve(String(state?.error?.condition));
      });
    });
    received[1].delivery.accept();
    assert.equal(await lost, 'com.microsoft:message-lock-lost');
    assert.equal(received[2].id, 'two');
    assert.equal(hub.c2d.depth('second'), 1, 'the redelivered message is still pending');
  });

  it('sends feedback exactly as the hub does and redelivers what a receiver releases', async () => {
    hub = await startTestHub({ feedback: { flushIntervalMs: 50 } });
    const service = await raw();
    await asOwner(hub, service);
    hub.registry.addDevice('fb-dev');
    const device = await openDevice(hub, 'fb-dev');
    try {
      device.on('message', (msg: InstanceType<typeof Message>) => void device.complete(msg));
      await sendExpectingError(service, '/messages/devicebound', {
        message_id: 'fb-1',
        to: '/devices/fb-dev/messages/devicebound',
        application_properties: { 'iothub-ack': 'positive' },
        body: 'x',
      });
      const seen: Array<{ message: rhea.Message; delivery: Delivery }> = [];
      await service.connection.createReceiver({
        source: { address: '/messages/serviceBound/feedback' },
        autoaccept: false,
        onMessage: (ctx: EventContext) => seen.push({ message: ctx.message as rhea.Message, delivery: ctx.delivery as Delivery }),
        onError: () => undefined,
      });
      await waitFor(() => seen.length === 1, 'the feedback message');
      const { message, delivery } = seen[0];
      assert.equal(message.content_type, FEEDBACK_CONTENT_TYPE);
      assert.ok(message.message_annotations?.['iothub-enqueuedtime'] instanceof Date);
      assert.deepEqual(message.user_id, Buffer.from(hub.options.hubName));
      assert.equal((delivery.tag as Buffer).length, 16);
      const body = message.body as { typecode: number; content: Buffer };
      assert.equal(body.typecode, 0x75, 'the body is a data section');
      const records = JSON.parse(body.content.toString()) as Array<Record<string, string>>;
      assert.equal(records.length, 1);
      assert.deepEqual(Object.keys(records[0]).sort(), ['description', 'deviceGenerationId', 'deviceId', 'enqueuedTimeUtc', 'originalMessageId', 'statusCode']);
      assert.equal(records[0].originalMessageId, 'fb-1');
      assert.equal(records[0].deviceGenerationId, hub.registry.getDevice('fb-dev')?.generationId);
      delivery.release();
      await waitFor(() => seen.length === 2, 'the released feedback again');
      assert.equal(JSON.parse((seen[1].message.body as { content: Buffer }).content.toString())[0].originalMessageId, 'fb-1');
      seen[1].delivery.accept();
      await delay(150);
      assert.equal(seen.length, 2, 'an accepted feedback message is not sent again');
    } finally {
      await closeQuietly(device);
    }
  });

  it('serves configured consumer groups and refuses unknown ones', async () => {
    hub = await startTestHub({ consumerGroups: ['dashboard'] });
    // The Event Hubs surface takes SASL clients only: a user name without a password is ANONYMOUS.
    const client = await raw({ username: 'iothubowner' });
    await client.cbs.putToken(`sb://${hub.options.hostName}:${hub.ports.amqp}/${hub.options.hubName}`, eventHubToken(hub));
    const attach = (cg: string): Promise<string> =>
      new Promise((resolve) => {
        client.connection
          .createReceiver({
            source: { address: `${hub.options.hubName}/ConsumerGroups/${cg}/Partitions/0` },
            onMessage: () => undefined,
            onError: (ctx) => resolve(String((ctx.receiver?.error as { condition?: string } | undefined)?.condition)),
          })
          .then(
            () => setTimeout(() => resolve('attached'), 150),
            () => resolve('refused'),
          );
      });
    assert.equal(await attach('dashboard'), 'attached');
    assert.equal(await attach('$default'), 'attached');
    assert.equal(await attach('nobody'), 'amqp:not-found');
  });

  it('fault controls: throttling, detaching links, dropping and refusing connections', async () => {
    hub = await startTestHub();
    const client = await raw();
    await client.cbs.putToken(`${hub.hostWithPort}/devices/f1`, deviceToken(hub, 'f1'));
    hub.faults.throttleNext(2);
    assert.equal(await sendExpectingError(client, '/devices/f1/messages/events', { body: 'a' }), 'com.microsoft:device-container-throttled');
    assert.equal(await sendExpectingError(client, '/devices/f1/messages/events', { body: 'b' }), 'com.microsoft:device-container-throttled');
    assert.equal(await sendExpectingError(client, '/devices/f1/messages/events', { body: 'c' }), 'accepted');

    let detached = '';
    await client.connection.createSender({
      target: { address: '/devices/f1/messages/events' },
      onError: (ctx) => (detached = String((ctx.sender?.error as { condition?: string } | undefined)?.condition)),
    });
    assert.equal(
      hub.faults.detachLinks((a) => a.kind === 'd2c'),
      1,
    );
    await waitFor(() => detached !== '', 'the forced detach');
    assert.equal(detached, 'amqp:link:detach-forced');

    const disconnected = new Promise<void>((resolve) => client.connection.once('disconnected', () => resolve()));
    assert.equal(hub.faults.dropConnections(), 1);
    await disconnected;
    await waitFor(() => hub.snapshot().connections === 0, 'the hub to forget the connection');

    hub.faults.refuseConnections(60_000);
    const refused = new Connection({ transport: 'tcp', host: '127.0.0.1', port: Number(hub.ports.amqp), reconnect: false });
    await assert.rejects(refused.open());
    await refused.close().catch(() => undefined);
    assert.equal(hub.stats.connectionsRefused, 1);
    hub.faults.refuseConnections(0);
    const again = await raw();
    assert.ok(again.connection.isOpen());
  });

  it('the official service SDK sends again after the simulator drops its connection', async () => {
    hub = await startTestHub();
    const service = await openService(hub);
    let device: DeviceClient | undefined;
    try {
      hub.registry.addDevice('after-drop');
      await service.send('after-drop', new Message('before'));
      hub.faults.dropConnections();
      await waitFor(() => hub.snapshot().connections === 0, 'the drop');
      await service.send('after-drop', new Message('after'));
      assert.equal(hub.c2d.depth('after-drop'), 2);
      device = await openDevice(hub, 'after-drop');
      const got: string[] = [];
      device.on('message', (msg: InstanceType<typeof Message>) => {
        got.push(String(msg.data));
        void device?.complete(msg);
      });
      await waitFor(() => got.length === 2, 'both messages at the device');
      assert.deepEqual(got, ['before', 'after']);
    } finally {
      await closeQuietly(device, service);
    }
  });
});

function eventHubToken(hub: SimulatedHub): string {
  const policy = hub.registry.policies.get('iothubowner');
  if (!policy) throw new Error('no owner policy');
  // Event Hubs signs with the key as text.
  return makeSasToken({
    resource: `sb://${hub.options.hostName}:${hub.ports.amqp}/${hub.options.hubName}`,
    key: policy.primaryKey,
    keyName: policy.name,
    expiry: expiryIn(300),
    encoding: 'text',
  });
}
