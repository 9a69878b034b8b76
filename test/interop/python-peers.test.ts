/**
 * Clients built on AMQP stacks nobody here wrote, against `iothub-sim` as a user starts it: the Python
 * uAMQP flows of IoT Hub's AMQP guide (azure-uamqp-c, the C SDK's AMQP library), azure-eventhub 5.11 on
 * its pure-Python pyamqp stack, azure-uamqp-c on the Event Hubs endpoint, and a Qpid Proton device.
 * Each ran into a different wrong idea of the simulator's (short frames, map termini, a missing
 * max-message-size or handle-max, unsettled dispositions, a response before its request's disposition).
 */
import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { partitionForDevice } from '../../src/simulator/partitions';
import { DEFAULT_KEYS } from '../../src/simulator/registry';
import { NamespacedHub, requirePythonPeers, type PeerResult } from '../helpers/python-peers';

const HUB = { hub: 'devhub', host: 'localhost' };
const SERVICE = { ...HUB, policy: 'service', key: DEFAULT_KEYS.service };
const PARTITIONS = 4;

interface Received {
  body: string;
  to?: string;
  message_id: string;
  annotations: Record<string, unknown>;
  application_properties: Record<string, unknown>;
}

interface Feedback {
  originalMessageId: string;
  deviceId: string;
  statusCode: string;
  description: string;
}

interface HubEvent {
  partition: string;
  sequence_number: number;
  body: string;
  device: string;
  properties: Record<string, unknown>;
}

const device = (deviceId: string): Record<string, string> => ({ ...HUB, device: deviceId, key: DEFAULT_KEYS.deviceDefault });

describe('real AMQP clients from other stacks (Python uAMQP, azure-eventhub, Qpid Proton) against iothub-sim', function () {
  this.timeout(240_000);
  let hub: NamespacedHub | undefined;

  before(async function () {
    requirePythonPeers(this);
    // Feedback flushed every half second instead of the hub's 15 s, so the feedback flows finish quickly.
    hub = await NamespacedHub.start({ feedback: { flushIntervalMs: 500 }, partitionCount: PARTITIONS }, ['guide-dev', 'proton-dev']);
  });
  after(async () => {
    await hub?.close();
  });

  const peers = (): NamespacedHub => hub as NamespacedHub;

  async function sendTelemetry(deviceId: string, messageId: string, body: string, property: string): Promise<void> {
    const sent = await peers().run('guide_device_send.py', { ...device(deviceId), message_id: messageId, body, property });
    assert.deepEqual(sent.results, ['MessageState.SendComplete'], `${deviceId}'s telemetry was not completed`);
  }

  it("runs the five uAMQP flows of IoT Hub's AMQP guide: C2D with full ack, device receive, feedback, device send, telemetry through the redirect", async () => {
    const messageId = randomUUID();
    // 1. The service sends a C2D message with iothub-ack full (SASL PLAIN `service@sas.root.devhub`).
    const sent = await peers().run('guide_c2d_send.py', { ...SERVICE, device: 'guide-dev', message_id: messageId, body: 'start line 3' });
    assert.deepEqual(sent.results, ['MessageState.SendComplete']);

    // 2. The device receives it with every property (SASL PLAIN `guide-dev@sas.devhub`); uAMQP completes it.
    const received = (await peers().run('guide_device_receive.py', device('guide-dev'))).messages as Received[];
    assert.equal(received.length, 1);
    const c2d = received[0];
    assert.equal(c2d.body, 'start line 3');
    assert.equal(c2d.message_id, messageId);
    assert.equal(c2d.to, '/devices/guide-dev/messages/devicebound');
    assert.equal(c2d.application_properties['iothub-ack'], 'full');
    assert.equal(typeof c2d.annotations['x-opt-sequence-number'], 'number');
    assert.equal(typeof c2d.annotations['iothub-enqueuedtime'], 'number');
    assert.equal(c2d.annotations['iothub-deliverycount'], 0);

    // 3. The service reads the feedback: the device completed the message.
    const feedback = await peers().run('guide_feedback.py', SERVICE);
    assert.deepEqual(feedback.content_types, ['application/vnd.microsoft.iothub.feedback.json']);
    const record = (feedback.records as Feedback[]).find((r) => r.originalMessageId === messageId);
    assert.ok(record, `no feedback for ${messageId}: ${JSON.stringify(feedback)}`);
    assert.equal(record.statusCode, 'Success');
    assert.equal(record.deviceId, 'guide-dev');

    // 4. The device sends telemetry with an application property.
    const telemetryId = randomUUID();
    await sendTelemetry('guide-dev', telemetryId, '{"temperature":21.5}', 'line-3');

    // 5. The service reads its partition: redirected from the hub to the built-in endpoint, with a selector filter.
    const partition = partitionForDevice('guide-dev', PARTITIONS);
    const read = await peers().run('guide_telemetry.py', { ...SERVICE, partition, filter: 'amqp.annotation.x-opt-sequence-number > -1' });
    assert.equal(read.redirect, `amqps://localhost:5671/devhub/ConsumerGroups/$Default/Partitions/${partition}`);
    const events = read.events as Array<{
      body: string;
      message_id: string;
      annotations: Record<string, unknown>;
      application_properties: Record<string, unknown>;
    }>;
    const event = events.find((e) => e.message_id === telemetryId);
    assert.ok(event, `the telemetry was not read back: ${JSON.stringify(read)}`);
    assert.equal(event.body, '{"temperature":21.5}');
    assert.deepEqual(event.application_properties, { app_property_key: 'line-3' });
    assert.equal(event.annotations['iothub-connection-device-id'], 'guide-dev');
    assert.equal(typeof event.annotations['x-opt-sequence-number'], 'number');
    assert.equal(typeof event.annotations['x-opt-offset'], 'string');
  });

  /** Telemetry from devices on different partitions; returns what every reader must find. */
  async function seedTelemetry(prefix: string): Promise<Array<{ device: string; body: string }>> {
    const seeded: Array<{ device: string; body: string }> = [];
    for (let i = 0; i < 6; i++) {
      const deviceId = `${prefix}-${i}`;
      const body = `${prefix} reading ${i}`;
      await sendTelemetry(deviceId, randomUUID(), body, `p${i}`);
      seeded.push({ device: deviceId, body });
    }
    const partitions = new Set(seeded.map((s) => partitionForDevice(s.device, PARTITIONS)));
    assert.ok(partitions.size >= 2, 'the seeded devices span several partitions');
    return seeded;
  }

  function byPartition(events: HubEvent[]): Map<string, number[]> {
    const map = new Map<string, number[]>();
    for (const e of events) map.set(e.partition, [...(map.get(e.partition) ?? []), e.sequence_number]);
    return map;
  }

  it('azure-eventhub 5.11 (pyamqp) reads every partition with the string iothub-sim prints, from the earliest event and from a sequence number', async () => {
    const seeded = await seedTelemetry('eh-py');
    // How many events the hub holds now, counted by another stack: the earliest position must read them all.
    const total = ((await peers().run('uamqp_eventhub.py', { conn: peers().eventHubString, start: 0, count: 1000, seconds: 20 })).events as unknown[]).length;
    const earliest = await peers().run('eventhub_consumer.py', { conn: peers().eventHubString, verify: peers().certFile, start: -1, count: total });
    assert.deepEqual(earliest.partition_ids, ['0', '1', '2', '3']);
    assert.equal(earliest.eventhub_name, 'devhub');
    assert.deepEqual(earliest.errors, []);
    const all = earliest.events as HubEvent[];
    assert.equal(all.length, total, 'every stored event once');
    for (const s of seeded) {
      const e = all.find((x) => x.body === s.body);
      assert.ok(e, `${s.body} was not read`);
      assert.equal(e.device, s.device);
      assert.equal(e.partition, String(partitionForDevice(s.device, PARTITIONS)));
    }

    // From sequence number 1, inclusive: exactly the events at 1 and after, in every partition.
    const expected = all.filter((e) => e.sequence_number >= 1);
    assert.ok(expected.length > 0);
    const fromOne = await peers().run('eventhub_consumer.py', { conn: peers().eventHubString, verify: peers().certFile, start: 1, count: expected.length });
    assert.deepEqual(fromOne.errors, []);
    assert.deepEqual(sorted(byPartition(fromOne.events as HubEvent[])), sorted(byPartition(expected)));
  });

  it('azure-uamqp-c on the Event Hubs endpoint: $management READ, then every partition from a sequence number', async () => {
    const seeded = await seedTelemetry('eh-uamqp');
    const result: PeerResult = await peers().run('uamqp_eventhub.py', { conn: peers().eventHubString, start: 0, count: 1000, seconds: 20 });
    assert.equal(result.eventhub_name, 'devhub');
    assert.deepEqual(result.partition_ids, ['0', '1', '2', '3']);
    const events = result.events as HubEvent[];
    for (const s of seeded) {
      const e = events.find((x) => x.body === s.body);
      assert.ok(e, `${s.body} was not read`);
      assert.equal(e.device, s.device);
    }
    // Within a partition, sequence numbers arrive in order and without gaps from the filter's start.
    for (const [partition, numbers] of byPartition(events)) {
      assert.deepEqual(
        numbers,
        numbers.map((_, i) => i),
        `partition ${partition} from 0, in order`,
      );
    }
  });

  it('a Qpid Proton device: CBS put-token, telemetry with properties, C2D accepted and rejected, feedback for both', async () => {
    const ids: string[] = [randomUUID(), randomUUID()];
    for (const id of ids) {
      const sent = await peers().run('guide_c2d_send.py', { ...SERVICE, device: 'proton-dev', message_id: id, body: `command ${id}` });
      assert.deepEqual(sent.results, ['MessageState.SendComplete']);
    }
    const result = await peers().run('proton_device.py', { ...device('proton-dev'), send: 3, receive: 2, ca: peers().certFile, seconds: 30 });
    assert.equal(result.put_token, 200);
    assert.equal(result.timed_out, undefined, `the Proton device did not finish: ${JSON.stringify(result)}`);
    assert.deepEqual(result.telemetry, ['accepted', 'accepted', 'accepted']);
    const c2d = result.c2d as Received[];
    assert.deepEqual(
      c2d.map((m) => m.message_id),
      ids,
    );
    assert.equal(c2d[0].to, '/devices/proton-dev/messages/devicebound');

    const feedback = await peers().run('guide_feedback.py', { ...SERVICE, count: 2 });
    const statuses = Object.fromEntries(
      (feedback.records as Feedback[]).filter((r) => ids.includes(r.originalMessageId)).map((r) => [r.originalMessageId, r.statusCode]),
    );
    assert.deepEqual(statuses, { [ids[0]]: 'Success', [ids[1]]: 'Rejected' });

    // The Proton device's telemetry reached its partition with its properties.
    const read = await peers().run('uamqp_eventhub.py', { conn: peers().eventHubString, start: 0, count: 1000, seconds: 20 });
    const mine = (read.events as HubEvent[]).filter((e) => e.device === 'proton-dev');
    assert.deepEqual(
      mine.map((e) => e.body),
      ['reading 0', 'reading 1', 'reading 2'],
    );
    assert.deepEqual(mine[1].properties, { line: '3', sequence: 1 });
  });
});

function sorted(map: Map<string, number[]>): Array<[string, number[]]> {
  return [...map.entries()].map(([k, v]): [string, number[]] => [k, [...v].sort((a, b) => a - b)]).sort(([a], [b]) => a.localeCompare(b));
}
