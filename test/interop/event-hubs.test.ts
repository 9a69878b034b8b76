/**
 * The built-in endpoint as the official Event Hubs SDK and a raw rhea-promise client see it: partition
 * ids through $management, reading every partition from each start position, and the redirect.
 */
import { strict as assert } from 'node:assert';
import {
  EventHubConsumerClient,
  earliestEventPosition,
  latestEventPosition,
  type EventPosition,
  type ReceivedEventData,
  type Subscription,
} from '@azure/event-hubs';
import { Connection } from 'rhea-promise';
import type { Client as DeviceClient } from 'azure-iot-device';
import type { SimulatedHub } from '../../src/simulator';
import { CbsChannel } from '../../src/iothub/cbs';
import { makeSasToken, expiryIn } from '../../src/iothub/sas';
import { partitionForDevice } from '../../src/simulator/partitions';
import { startTestHub, waitFor, delay } from '../helpers/hub';
import { closeQuietly, Message, openDevice } from '../helpers/sdk';

interface Seen {
  partitionId: string;
  event: ReceivedEventData;
}

/** Device ids that cover every partition of a 4-partition hub. */
function devicesForAllPartitions(): string[] {
  const chosen = new Map<number, string>();
  for (let i = 0; chosen.size < 4; i++) {
    const id = `meter-${i}`;
    const p = partitionForDevice(id, 4);
    if (!chosen.has(p)) chosen.set(p, id);
  }
  return [...chosen.values()];
}

function subscribe(client: EventHubConsumerClient, seen: Seen[], position: EventPosition | Record<string, EventPosition>, partitionId?: string): Subscription {
  const handlers = {
    processEvents: async (events: ReceivedEventData[], ctx: { partitionId: string }) => {
      for (const event of events) seen.push({ partitionId: ctx.partitionId, event });
    },
    processError: async () => undefined,
  };
  const options = { startPosition: position, maxWaitTimeInSeconds: 1 };
  return partitionId === undefined ? client.subscribe(handlers, options) : client.subscribe(partitionId, handlers, options);
}

describe('Event Hubs-compatible endpoint', function () {
  let hub: SimulatedHub;
  let consumer: EventHubConsumerClient | undefined;
  let subscription: Subscription | undefined;
  const devices: DeviceClient[] = [];

  afterEach(async () => {
    await subscription?.close();
    await consumer?.close();
    subscription = undefined;
    consumer = undefined;
    await closeQuietly(...devices.splice(0));
    await hub?.close();
  });

  async function sendFromDevices(ids: string[], perDevice: number, tag: string): Promise<string[]> {
    const sent: string[] = [];
    for (const id of ids) {
      const client = await openDevice(hub, id);
      devices.push(client);
      for (let i = 0; i < perDevice; i++) {
        const m = new Message(`${tag}-${id}-${i}`);
        m.messageId = `${tag}-${id}-${i}`;
        m.properties.add('tag', tag);
        await client.sendEvent(m);
        sent.push(m.messageId);
      }
    }
    return sent;
  }

  it('lists partition ids and reads every event once from earliest, across all partitions', async () => {
    hub = await startTestHub();
    const ids = devicesForAllPartitions();
    const sent = await sendFromDevices(ids, 3, 'early');
    consumer = new EventHubConsumerClient('$Default', hub.eventHubConnectionString());
    assert.deepEqual(await consumer.getPartitionIds(), ['0', '1', '2', '3']);
    const props = await consumer.getEventHubProperties();
    assert.equal(props.name, 'devhub');
    const seen: Seen[] = [];
    subscription = subscribe(consumer, seen, earliestEventPosition);
    await waitFor(() => seen.length >= sent.length, 'all events');
    await delay(200);
    assert.deepEqual(seen.map((s) => s.event.messageId).sort(), [...sent].sort());
    assert.equal(new Set(seen.map((s) => s.partitionId)).size, 4, 'events came from all four partitions');
    for (const { partitionId, event } of seen) {
      const deviceId = String(event.systemProperties?.['iothub-connection-device-id']);
      assert.ok(ids.includes(deviceId));
      assert.equal(partitionId, String(partitionForDevice(deviceId, 4)));
      assert.equal(event.properties?.tag, 'early');
      assert.equal(String(event.body), event.messageId);
    }
  });

  it('starts from latest, a sequence number and an enqueued time', async () => {
    hub = await startTestHub();
    const [id] = devicesForAllPartitions();
    const partitionId = String(partitionForDevice(id, 4));
    await sendFromDevices([id], 4, 'old');
    consumer = new EventHubConsumerClient('$Default', hub.eventHubConnectionString());

    // From sequence number 2, inclusive, then exclusive.
    const fromSeq: Seen[] = [];
    subscription = subscribe(consumer, fromSeq, { sequenceNumber: 2, isInclusive: true }, partitionId);
    await waitFor(() => fromSeq.length >= 2, 'events from sequence 2');
    assert.deepEqual(
      fromSeq.map((s) => s.event.sequenceNumber),
      [2, 3],
    );
    await subscription.close();
    const afterSeq: Seen[] = [];
    subscription = subscribe(consumer, afterSeq, { sequenceNumber: 2 }, partitionId);
    await waitFor(() => afterSeq.length >= 1, 'events after sequence 2');
    assert.deepEqual(
      afterSeq.map((s) => s.event.sequenceNumber),
      [3],
    );
    await subscription.close();

    // From an enqueued time between the old events and new ones.
    await delay(30);
    const cut = new Date();
    await delay(30);
    await sendFromDevices([id], 2, 'new');
    const fromTime: Seen[] = [];
    subscription = subscribe(consumer, fromTime, { enqueuedOn: cut }, partitionId);
    await waitFor(() => fromTime.length >= 2, 'events after the cut');
    assert.deepEqual(
      fromTime.map((s) => s.event.messageId),
      [`new-${id}-0`, `new-${id}-1`],
    );
    await subscription.close();

    // From latest: only what arrives after the reader is attached.
    const fromLatest: Seen[] = [];
    subscription = subscribe(consumer, fromLatest, latestEventPosition, partitionId);
    await waitFor(() => hub.eventHub.readerCount === 1, 'the reader to attach');
    await sendFromDevices([id], 1, 'live');
    await waitFor(() => fromLatest.length >= 1, 'the live event');
    await delay(200);
    assert.deepEqual(
      fromLatest.map((s) => s.event.messageId),
      [`live-${id}-0`],
    );
  });

  it('a raw rhea-promise receiver on the IoT Hub endpoint gets the redirect, and its info map leads to a working Event Hubs connection', async () => {
    hub = await startTestHub();
    const [id] = devicesForAllPartitions();
    await sendFromDevices([id], 2, 'redir');
    const owner = hub.registry.policies.get('iothubowner');
    assert.ok(owner);
    const token = makeSasToken({ resource: hub.hostWithPort, key: owner.primaryKey, keyName: 'iothubowner', expiry: expiryIn(300) });
    const connection = new Connection({
      host: 'localhost',
      hostname: 'localhost',
      port: hub.ports.amqps,
      transport: 'tls',
      ca: hub.certificate?.cert,
      username: `iothubowner@sas.root.${hub.options.hubName}`,
      password: token,
      reconnect: false,
    });
    await connection.open();
    try {
      // As on the real hub, the attach is answered and then detached with the redirect, so the error
      // arrives as a receiver error event (the way Azure's own conversion sample listens for it).
      const error = await new Promise<{ condition?: string; info?: Record<string, unknown> }>((resolve, reject) => {
        connection
          .createReceiver({
            source: { address: '/messages/events/ConsumerGroups/$Default/Partitions/0' },
            onMessage: () => reject(new Error('a message arrived instead of a redirect')),
            onError: (ctx) => resolve((ctx.receiver?.error ?? {}) as { condition?: string; info?: Record<string, unknown> }),
          })
          .catch((err: unknown) => resolve(err as { condition?: string; info?: Record<string, unknown> }));
      });
      assert.equal(error.condition, 'amqp:link:redirect');
      const info = error.info ?? {};
      assert.equal(info.port, hub.ports.amqps);
      const match = /:\d+\/(.*)\/ConsumerGroups/i.exec(String(info.address));
      assert.ok(match, `address ${String(info.address)}`);
      const entity = match[1];
      assert.equal(entity, hub.options.hubName);
      const built = `Endpoint=sb://${String(info.hostname)}/;EntityPath=${entity};SharedAccessKeyName=iothubowner;SharedAccessKey=${owner.primaryKey}`;
      consumer = new EventHubConsumerClient('$Default', built);
      assert.deepEqual(await consumer.getPartitionIds(), ['0', '1', '2', '3']);
      const seen: Seen[] = [];
      subscription = subscribe(consumer, seen, earliestEventPosition);
      await waitFor(() => seen.length >= 2, 'events through the redirected endpoint');
      assert.deepEqual(
        seen.map((s) => s.event.messageId),
        [`redir-${id}-0`, `redir-${id}-1`],
      );
    } finally {
      await connection.close();
    }
  });

  it('the Event Hubs surface refuses a client that skipped SASL, and serves the same client with SASL ANONYMOUS', async () => {
    hub = await startTestHub();
    const owner = hub.registry.policies.get('iothubowner');
    assert.ok(owner);
    const audience = `sb://localhost:${hub.ports.amqp}/${hub.options.hubName}`;
    const token = makeSasToken({ resource: audience, key: owner.primaryKey, keyName: 'iothubowner', expiry: expiryIn(300), encoding: 'text' });
    const attach = async (sasl: boolean): Promise<string | undefined> => {
      // A user name without a password is how rhea (and @azure/core-amqp) ask for SASL ANONYMOUS.
      const connection = new Connection({
        host: '127.0.0.1',
        hostname: 'localhost',
        port: Number(hub.ports.amqp),
        transport: 'tcp',
        reconnect: false,
        ...(sasl ? { username: 'iothubowner' } : {}),
      });
      await connection.open();
      try {
        const cbs = new CbsChannel(connection);
        await cbs.open();
        await cbs.putToken(audience, token);
        return await new Promise<string | undefined>((resolve) => {
          connection
            .createReceiver({
              source: { address: `${hub.options.hubName}/ConsumerGroups/$Default/Partitions/0` },
              onMessage: () => undefined,
              onError: (ctx) => {
                const error = (ctx.receiver?.error ?? ctx.error) as { condition?: string; description?: string } | undefined;
                resolve(`${String(error?.condition)}: ${String(error?.description)}`);
              },
            })
            .then(
              (receiver) => setTimeout(() => resolve(receiver.isOpen() ? undefined : 'closed'), 300),
              (err: { condition?: string; description?: string }) => resolve(`${String(err.condition)}: ${String(err.description)}`),
            );
        });
      } finally {
        await connection.close().catch(() => undefined);
      }
    };
    const refused = await attach(false);
    assert.match(String(refused), /^amqp:unauthorized-access: .*requires SASL/);
    assert.equal(await attach(true), undefined, 'with SASL ANONYMOUS the partition attaches');
  });

  it('a plain-AMQP client is redirected to the plain port (local development), a TLS client to AMQPS', async () => {
    hub = await startTestHub();
    const h = hub;
    const owner = h.registry.policies.get('iothubowner');
    assert.ok(owner);
    const token = makeSasToken({ resource: h.hostWithPort, key: owner.primaryKey, keyName: 'iothubowner', expiry: expiryIn(300) });
    const redirectOf = async (plain: boolean): Promise<Record<string, unknown>> => {
      const common = {
        host: '127.0.0.1',
        hostname: 'localhost',
        username: `iothubowner@sas.root.${h.options.hubName}`,
        password: token,
        reconnect: false as const,
      };
      const connection = plain
        ? new Connection({ ...common, port: Number(h.ports.amqp), transport: 'tcp' })
        : new Connection({ ...common, port: h.ports.amqps, transport: 'tls', servername: 'localhost', ca: h.certificate?.cert });
      await connection.open();
      try {
        return await new Promise<Record<string, unknown>>((resolve, reject) => {
          connection
            .createReceiver({
              source: { address: '/messages/events/$management' },
              onMessage: () => reject(new Error('a message arrived instead of a redirect')),
              onError: (ctx) => resolve((ctx.receiver?.error as { info?: Record<string, unknown> } | undefined)?.info ?? {}),
            })
            .catch((err: unknown) => resolve((err as { info?: Record<string, unknown> }).info ?? {}));
        });
      } finally {
        await connection.close();
      }
    };
    const plain = await redirectOf(true);
    assert.equal(plain.port, h.ports.amqp);
    assert.match(String(plain.address), new RegExp(`^amqp://localhost:${h.ports.amqp}/`));
    const tls = await redirectOf(false);
    assert.equal(tls.port, h.ports.amqps);
    assert.match(String(tls.address), new RegExp(`^amqps://localhost:${h.ports.amqps}/`));
  });

  it('a higher owner level takes a partition over with amqp:link:stolen', async () => {
    hub = await startTestHub();
    consumer = new EventHubConsumerClient('$Default', hub.eventHubConnectionString());
    const errors: string[] = [];
    const first = consumer.subscribe(
      '0',
      {
        processEvents: async () => undefined,
        processError: async (err) => {
          errors.push((err as { code?: string }).code ?? err.name);
        },
      },
      { ownerLevel: 1 },
    );
    await waitFor(() => hub.eventHub.readerCount === 1, 'the first reader');
    const second = new EventHubConsumerClient('$Default', hub.eventHubConnectionString());
    const sub2 = second.subscribe('0', { processEvents: async () => undefined, processError: async () => undefined }, { ownerLevel: 2 });
    try {
      await waitFor(() => errors.length > 0, 'the first reader to be told it lost the partition');
      assert.ok(
        errors.some((e) => /ReceiverDisconnected|stolen/i.test(e)),
        errors.join(','),
      );
    } finally {
      await first.close();
      await sub2.close();
      await second.close();
    }
  });
});
