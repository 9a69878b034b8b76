/**
 * The official device and service SDKs (azure-iot-device + azure-iot-device-amqp, azure-iothub) against
 * the simulator over AMQPS: telemetry, cloud-to-device with every settlement, feedback, and the
 * service-side errors.
 */
import { strict as assert } from 'node:assert';
import type { Client as DeviceClient } from 'azure-iot-device';
import type { Client as ServiceClient } from 'azure-iothub';
import type { SimulatedHub } from '../../src/simulator';
import { partitionForDevice } from '../../src/simulator/partitions';
import { startTestHub, waitFor } from '../helpers/hub';
import { closeQuietly, collectFeedback, Message, openDevice, openService, type FeedbackRecordSeen } from '../helpers/sdk';

interface C2dSeen {
  messageId: string;
  data: string;
  props: Record<string, string>;
  message: InstanceType<typeof Message>;
}

function listen(device: DeviceClient): C2dSeen[] {
  const seen: C2dSeen[] = [];
  device.on('message', (msg: InstanceType<typeof Message>) => {
    const props: Record<string, string> = {};
    for (let i = 0; i < msg.properties.count(); i++) {
      const item = msg.properties.getItem(i);
      props[item.key] = String(item.value);
    }
    seen.push({ messageId: msg.messageId, data: String(msg.data), props, message: msg });
  });
  return seen;
}

describe('official IoT SDKs against the simulator', function () {
  let hub: SimulatedHub;
  let device: DeviceClient | undefined;
  let service: ServiceClient | undefined;

  afterEach(async () => {
    await closeQuietly(device, service);
    device = undefined;
    service = undefined;
    await hub?.close();
  });

  it('azure-iot-device sends events that land in the hashed partition with hub annotations and properties intact', async () => {
    hub = await startTestHub();
    device = await openDevice(hub, 'sensor-42');
    for (let i = 0; i < 3; i++) {
      const m = new Message(JSON.stringify({ temperature: 20 + i }));
      m.messageId = `event-${i}`;
      m.contentType = 'application/json';
      m.contentEncoding = 'utf-8';
      m.properties.add('line', 'A');
      m.properties.add('seq', String(i));
      await device.sendEvent(m);
    }
    const events = [...hub.events()];
    assert.equal(events.length, 3);
    const expectedPartition = String(partitionForDevice('sensor-42', 4));
    events.forEach((e, i) => {
      assert.equal(e.partitionId, expectedPartition);
      assert.equal(e.event.sequenceNumber, i);
      assert.equal(e.message.message_id, `event-${i}`);
      assert.equal(e.message.content_type, 'application/json');
      assert.equal(e.message.content_encoding, 'utf-8');
      assert.deepEqual(e.message.application_properties, { line: 'A', seq: String(i) });
      const a = e.message.message_annotations as Record<string, unknown>;
      assert.equal(a['iothub-connection-device-id'], 'sensor-42');
      assert.equal(a['iothub-message-source'], 'Telemetry');
      assert.ok(a['iothub-enqueuedtime'] instanceof Date);
      assert.equal(typeof a['iothub-connection-auth-generation-id'], 'string');
      assert.equal(JSON.parse(String(a['iothub-connection-auth-method'])).type, 'sas');
      const body = JSON.parse((e.message.body as { content: Buffer }).content.toString());
      assert.deepEqual(body, { temperature: 20 + i });
    });
  });

  it('a module identity sends with its module id stamped', async () => {
    hub = await startTestHub();
    device = await openDevice(hub, 'edge-1', 'filter');
    const m = new Message('from module');
    m.messageId = 'mod-1';
    await device.sendEvent(m);
    const [event] = [...hub.events()];
    const a = event.message.message_annotations as Record<string, unknown>;
    assert.equal(a['iothub-connection-device-id'], 'edge-1');
    assert.equal(a['iothub-connection-module-id'], 'filter');
  });

  it('azure-iothub sends C2D with every property; complete gives Success feedback with the original message id', async () => {
    hub = await startTestHub({ feedback: { flushIntervalMs: 50 } });
    device = await openDevice(hub, 'dev-c2d');
    const seen = listen(device);
    service = await openService(hub);
    const feedback = await collectFeedback(service);
    const m = new Message('turn on');
    m.messageId = 'cmd-1';
    m.correlationId = 'corr-9';
    m.ack = 'full';
    m.expiryTimeUtc = Date.now() + 60_000;
    m.properties.add('command', 'on');
    await service.send('dev-c2d', m);
    await waitFor(() => seen.length === 1, 'the C2D message at the device');
    const got = seen[0];
    assert.equal(got.messageId, 'cmd-1');
    assert.equal(got.data, 'turn on');
    assert.equal(got.message.correlationId, 'corr-9');
    assert.equal(got.props.command, 'on');
    assert.ok(got.message.expiryTimeUtc, 'expiry time reaches the device');
    await device.complete(got.message);
    await waitFor(() => feedback.length === 1, 'the Success feedback record');
    assert.equal(feedback[0].originalMessageId, 'cmd-1');
    assert.equal(feedback[0].statusCode, 'Success');
    assert.equal(feedback[0].deviceId, 'dev-c2d');
    assert.ok(!Number.isNaN(Date.parse(feedback[0].enqueuedTimeUtc)));
    assert.equal(hub.c2d.depth('dev-c2d'), 0);
  });

  it('reject gives Rejected; abandon past the max delivery count gives DeliveryCountExceeded', async () => {
    hub = await startTestHub({ feedback: { flushIntervalMs: 50 }, c2d: { maxDeliveryCount: 3 } });
    device = await openDevice(hub, 'dev-settle');
    const seen = listen(device);
    service = await openService(hub);
    const feedback = await collectFeedback(service);

    const rejectMe = new Message('no');
    rejectMe.messageId = 'reject-me';
    rejectMe.ack = 'negative';
    await service.send('dev-settle', rejectMe);
    await waitFor(() => seen.length === 1, 'the message to reject');
    await device.reject(seen[0].message);
    await waitFor(() => feedback.some((f) => f.originalMessageId === 'reject-me'), 'Rejected feedback');
    assert.equal(feedback.find((f) => f.originalMessageId === 'reject-me')?.statusCode, 'Rejected');

    const abandonMe = new Message('again');
    abandonMe.messageId = 'abandon-me';
    abandonMe.ack = 'full';
    await service.send('dev-settle', abandonMe);
    for (let attempt = 1; attempt <= 3; attempt++) {
      await waitFor(() => seen.filter((s) => s.messageId === 'abandon-me').length === attempt, `delivery ${attempt}`);
      const latest = seen.filter((s) => s.messageId === 'abandon-me')[attempt - 1];
      await device.abandon(latest.message);
    }
    await waitFor(() => feedback.some((f) => f.originalMessageId === 'abandon-me'), 'DeliveryCountExceeded feedback');
    const record = feedback.find((f) => f.originalMessageId === 'abandon-me') as FeedbackRecordSeen;
    assert.equal(record.statusCode, 'DeliveryCountExceeded');
    assert.equal(seen.filter((s) => s.messageId === 'abandon-me').length, 3, 'no fourth delivery');
    assert.equal(hub.c2d.depth('dev-settle'), 0);
  });

  it('a message whose TTL runs out before delivery gives Expired feedback', async () => {
    hub = await startTestHub({ feedback: { flushIntervalMs: 50 }, sweepIntervalMs: 50 });
    hub.registry.addDevice('offline-dev');
    service = await openService(hub);
    const feedback = await collectFeedback(service);
    const m = new Message('too late');
    m.messageId = 'short-lived';
    m.ack = 'negative';
    // Long enough to still be queued when send() resolves on a busy machine (the 50 ms sweep removes it once due).
    m.expiryTimeUtc = Date.now() + 1500;
    await service.send('offline-dev', m);
    assert.equal(hub.c2d.depth('offline-dev'), 1);
    await waitFor(() => feedback.length === 1, 'Expired feedback');
    assert.equal(feedback[0].originalMessageId, 'short-lived');
    assert.equal(feedback[0].statusCode, 'Expired');
    assert.equal(hub.c2d.depth('offline-dev'), 0);
  });

  it('azure-iothub gets DeviceNotFound for an unknown device and DeviceMaximumQueueDepthExceeded on the 51st pending message', async () => {
    hub = await startTestHub();
    hub.registry.addDevice('busy-dev');
    service = await openService(hub);
    await assert.rejects(service.send('no-such-device', new Message('x')), (err: Error) => {
      assert.equal(err.name, 'DeviceNotFoundError');
      return true;
    });
    for (let i = 0; i < 50; i++) await service.send('busy-dev', new Message(`m${i}`));
    assert.equal(hub.c2d.depth('busy-dev'), 50);
    await assert.rejects(service.send('busy-dev', new Message('one too many')), (err: Error) => {
      assert.equal(err.name, 'DeviceMaximumQueueDepthExceededError');
      return true;
    });
    assert.equal(hub.c2d.depth('busy-dev'), 50);
  });
});
