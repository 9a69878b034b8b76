/** device-in in a Node-RED runtime, with the official service SDK (azure-iothub) sending and taking feedback. */
import { strict as assert } from 'node:assert';
import helper from 'node-red-node-test-helper';
import rhea = require('rhea');
import type { Client as ServiceClient } from 'azure-iothub';
import connectionNode from '../../src/nodes/iothub-connection';
import deviceInNode from '../../src/nodes/iothub-device-in';
import type { SimulatedHub } from '../../src/simulator';
import { collect, type FlowMsg, inject, serverPerTest, statuses } from '../helpers/flow';
import { delay, startTestHub, waitFor } from '../helpers/hub';
import { closeQuietly, collectFeedback, Message, openService, type FeedbackRecordSeen } from '../helpers/sdk';

helper.init(require.resolve('node-red'));

const CONNECTED = 'node-red:common.status.connected';
const UNSETTLED = 'iothub-device-in.status.unsettled';

function flow(node: Record<string, unknown> = {}): object[] {
  return [
    { id: 'tab', type: 'tab', label: 'device-in' },
    { id: 'conn1', type: 'iothub-connection', z: 'tab', mode: 'azure', transport: 'amqps', reconnectMin: 50, reconnectMax: 200 },
    { id: 'in1', type: 'iothub-device-in', z: 'tab', hub: 'conn1', deviceId: '', settle: 'auto', output: 'auto', prefetch: 10, wires: [['got']], ...node },
    { id: 'got', type: 'helper', z: 'tab', wires: [] },
    { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'tab', wires: [] },
  ];
}

function c2d(
  body: string | object,
  id: string,
  extra: { ack?: string; props?: Record<string, string>; correlationId?: string } = {},
): InstanceType<typeof Message> {
  const m = new Message(typeof body === 'string' ? body : JSON.stringify(body));
  m.messageId = id;
  if (extra.ack) m.ack = extra.ack;
  if (extra.correlationId) m.correlationId = extra.correlationId;
  for (const [k, v] of Object.entries(extra.props ?? {})) m.properties.add(k, v);
  return m;
}

function settle(msg: FlowMsg, how: string): void {
  inject('in1', { settle: how, lockToken: msg.lockToken });
}

describe('device-in', function () {
  this.timeout(60_000);
  let hub: SimulatedHub | undefined;
  let service: ServiceClient | undefined;

  serverPerTest({
    before: async () => {
      await closeQuietly(service);
      service = undefined;
    },
    after: async () => {
      await hub?.close();
      hub = undefined;
    },
  });

  /** Loads the flow and waits for the receiver to attach. */
  async function load(connectionString: string, node: Record<string, unknown> = {}): Promise<{ got: FlowMsg[]; caught: FlowMsg[] }> {
    await helper.load([connectionNode, deviceInNode], flow(node), { conn1: { connectionString } });
    const got = collect('got');
    const caught = collect('caught');
    await waitFor(() => statuses('in1').includes(CONNECTED), 'the receiver to attach');
    return { got, caught };
  }

  const lastStatus = (): string | undefined => statuses('in1').at(-1);

  async function withService(sim: SimulatedHub): Promise<{ client: ServiceClient; feedback: FeedbackRecordSeen[] }> {
    service = await openService(sim);
    return { client: service, feedback: await collectFeedback(service) };
  }

  it('auto: emits a C2D message with its properties and completes it (Success feedback)', async () => {
    const sim = await startTestHub({ feedback: { flushIntervalMs: 50 } });
    hub = sim;
    const { got, caught } = await load(sim.deviceConnectionString('fridge-1'));
    const { client, feedback } = await withService(sim);
    const sentAt = Date.now();
    const m = c2d({ door: 'close' }, 'c2d-1', { ack: 'full', correlationId: 'corr-9', props: { reason: 'night', level: '2' } });
    m.contentType = 'application/json';
    m.contentEncoding = 'utf-8';
    // azure-iothub cannot encode a Date here; epoch ms go out as an AMQP timestamp.
    m.expiryTimeUtc = sentAt + 600_000;
    await client.send('fridge-1', m);
    await waitFor(() => got.length === 1, 'the message at the flow');
    const msg = got[0];
    assert.deepEqual(msg.payload, { door: 'close' });
    assert.equal(msg.messageId, 'c2d-1');
    assert.equal(msg.correlationId, 'corr-9');
    assert.equal(msg.contentType, 'application/json');
    assert.equal(msg.contentEncoding, 'utf-8');
    assert.equal(msg.deviceId, 'fridge-1');
    assert.equal(msg.topic, 'fridge-1');
    assert.equal(msg.moduleId, undefined);
    assert.equal(msg.to, '/devices/fridge-1/messages/devicebound');
    assert.equal(msg.expiryTime, new Date(sentAt + 600_000).toISOString());
    assert.deepEqual(msg.properties, { reason: 'night', level: '2', 'iothub-ack': 'full' });
    assert.equal(msg.deliveryCount, 0);
    assert.match(String(msg.lockToken), /^[0-9a-f-]{36}$/);
    assert.ok(Date.parse(String(msg.enqueuedTime)) >= sentAt - 1000, 'enqueuedTime is an ISO time near the send');
    const system = msg.systemProperties as Record<string, unknown>;
    assert.equal(system['iothub-enqueuedtime'], msg.enqueuedTime);
    assert.equal(typeof system['x-opt-sequence-number'], 'number');
    assert.doesNotThrow(() => JSON.stringify(msg), 'the msg is JSON-safe');
    await waitFor(() => feedback.length === 1, 'Success feedback');
    assert.deepEqual([feedback[0].originalMessageId, feedback[0].statusCode, feedback[0].deviceId], ['c2d-1', 'Success', 'fridge-1']);
    assert.deepEqual(caught, []);
    assert.equal(sim.c2d.depth('fridge-1'), 0);
  });

  it('manual: reject gives Rejected feedback; the status counts unsettled messages', async () => {
    const sim = await startTestHub({ feedback: { flushIntervalMs: 50 } });
    hub = sim;
    const { got, caught } = await load(sim.deviceConnectionString('fridge-2'), { settle: 'manual' });
    const { client, feedback } = await withService(sim);
    await client.send('fridge-2', c2d('one', 'r-1', { ack: 'full' }));
    await client.send('fridge-2', c2d('two', 'r-2', { ack: 'full' }));
    await waitFor(() => got.length === 2, 'both messages');
    await waitFor(() => lastStatus() === `2 ${UNSETTLED}`, 'the unsettled count');
    await delay(200);
    assert.equal(feedback.length, 0, 'nothing settled before the flow says so');
    settle(got[0], 'reject');
    await waitFor(() => lastStatus() === `1 ${UNSETTLED}`, 'one left unsettled');
    settle(got[1], 'complete');
    await waitFor(() => feedback.length === 2, 'two feedback records');
    assert.deepEqual(feedback.map((f) => `${f.originalMessageId}:${f.statusCode}`).sort(), ['r-1:Rejected', 'r-2:Success']);
    await waitFor(() => lastStatus() === CONNECTED, 'the count gone from the status');
    assert.deepEqual(caught, []);
    assert.equal(sim.c2d.depth('fridge-2'), 0);
  });

  it('manual: abandon delivers the message again with deliveryCount + 1', async () => {
    const sim = await startTestHub({ feedback: { flushIntervalMs: 50 } });
    hub = sim;
    const { got, caught } = await load(sim.deviceConnectionString('fridge-3'), { settle: 'manual' });
    const { client, feedback } = await withService(sim);
    await client.send('fridge-3', c2d('again', 'a-1', { ack: 'full' }));
    await waitFor(() => got.length === 1, 'the message');
    settle(got[0], 'abandon');
    await waitFor(() => got.length === 2, 'the message again');
    assert.equal(got[1].messageId, 'a-1');
    assert.equal(got[1].deliveryCount, 1);
    assert.notEqual(got[1].lockToken, got[0].lockToken);
    settle(got[1], 'abandon');
    await waitFor(() => got.length === 3, 'a third time');
    assert.equal(got[2].deliveryCount, 2);
    settle(got[2], 'complete');
    await waitFor(() => feedback.length === 1, 'Success feedback');
    assert.equal(feedback[0].statusCode, 'Success');
    assert.deepEqual(caught, []);
  });

  it('manual: settling after the lock expired, an unknown token or twice fails with MessageLockLost', async () => {
    const sim = await startTestHub({ c2d: { lockMs: 1000 } });
    hub = sim;
    const { got, caught } = await load(sim.deviceConnectionString('fridge-4'), { settle: 'manual' });
    const { client } = await withService(sim);
    await client.send('fridge-4', c2d('slow', 'slow-1'));
    await waitFor(() => got.length === 1, 'the message');
    // The lock runs out; the hub puts the message back and delivers it again with a new token.
    await waitFor(() => got.length === 2, 'the message again after its lock expired');
    // The second delivery's lock runs too: it is completed (twice) before anything else is awaited,
    // so a slow machine cannot let it lapse first (that would leave the message queued at the end).
    settle(got[1], 'complete');
    settle(got[1], 'complete');
    await waitFor(() => caught.length === 1, 'the second settle of one message');
    assert.equal(caught[0].error?.code, 'MessageLockLost');
    assert.equal(caught[0].error?.source?.id, 'in1');
    await waitFor(() => sim.c2d.depth('fridge-4') === 0, 'the message completed');
    settle(got[0], 'complete');
    await waitFor(() => caught.length === 2, 'the error at Catch for the expired lock');
    assert.equal(caught[1].error?.code, 'MessageLockLost');
    inject('in1', { settle: 'complete', lockToken: '00000000-0000-0000-0000-000000000000' });
    await waitFor(() => caught.length === 3, 'the unknown token');
    assert.equal(caught[2].error?.code, 'MessageLockLost');
    assert.equal(got.length, 2, 'completed within its lock: not delivered a third time');
  });

  it('manual: a settle msg without a valid settle or lockToken is InvalidMessage; auto mode refuses settles', async () => {
    const sim = await startTestHub();
    hub = sim;
    let { caught } = await load(sim.deviceConnectionString('fridge-5'), { settle: 'manual' });
    inject('in1', { settle: 'later', lockToken: 'x' });
    inject('in1', { settle: 'complete' });
    inject('in1', { payload: 'no settle at all' });
    await waitFor(() => caught.length === 3, 'three errors');
    assert.deepEqual(
      caught.map((m) => m.error?.code),
      ['InvalidMessage', 'InvalidMessage', 'InvalidMessage'],
    );
    await helper.unload();
    ({ caught } = await load(sim.deviceConnectionString('fridge-5')));
    inject('in1', { settle: 'complete', lockToken: 'x' });
    await waitFor(() => caught.length === 1, 'the error');
    assert.equal(caught[0].error?.code, 'InvalidOperation');
  });

  it('manual: credit is the prefetch setting, so a slow flow holds only that many', async () => {
    const sim = await startTestHub();
    hub = sim;
    const { got } = await load(sim.deviceConnectionString('fridge-6'), { settle: 'manual', prefetch: 2 });
    const { client } = await withService(sim);
    for (let i = 0; i < 5; i++) await client.send('fridge-6', c2d(`m${i}`, `p-${i}`));
    await waitFor(() => got.length === 2, 'the first two');
    await delay(300);
    assert.equal(got.length, 2, 'no more than the prefetch while none is settled');
    settle(got[0], 'complete');
    await waitFor(() => got.length === 3, 'one more after a settle');
    await delay(300);
    assert.equal(got.length, 3);
    assert.deepEqual(
      got.map((m) => m.messageId),
      ['p-0', 'p-1', 'p-2'],
    );
    for (const m of got.slice(1)) settle(m, 'complete');
    await waitFor(() => got.length === 5, 'the rest');
  });

  it('output settings decode the body; a body that is not JSON in json mode goes to Catch raw and is rejected', async () => {
    const sim = await startTestHub({ feedback: { flushIntervalMs: 50 } });
    hub = sim;
    const { client, feedback } = await withService(sim);
    let { got, caught } = await load(sim.deviceConnectionString('fridge-7'), { settle: 'manual', output: 'json' });
    await client.send('fridge-7', c2d('not json', 'bad-json', { ack: 'full' }));
    await client.send('fridge-7', c2d({ ok: 1 }, 'good-json'));
    await waitFor(() => caught.length === 1 && got.length === 1, 'one error and one message');
    assert.equal(caught[0].error?.code, 'InvalidPayload');
    assert.equal(caught[0].messageId, 'bad-json');
    assert.deepEqual(caught[0].payload, Buffer.from('not json'));
    assert.deepEqual(got[0].payload, { ok: 1 });
    await waitFor(() => feedback.length === 1, 'the rejection');
    assert.deepEqual([feedback[0].originalMessageId, feedback[0].statusCode], ['bad-json', 'Rejected']);
    settle(got[0], 'complete');
    await waitFor(() => sim.c2d.depth('fridge-7') === 0, 'the good one completed');

    for (const [output, expected] of [
      ['string', '{"x":1}'],
      ['buffer', Buffer.from('{"x":1}')],
      ['auto', { x: 1 }],
    ] as const) {
      await helper.unload();
      ({ got, caught } = await load(sim.deviceConnectionString('fridge-7'), { output }));
      await client.send('fridge-7', c2d({ x: 1 }, `out-${output}`));
      await waitFor(() => got.length === 1, `the ${output} message`);
      assert.deepEqual(got[0].payload, expected, output);
    }
  });

  it('a module identity receives on the module path, with the module in the msg', async () => {
    const sim = await startTestHub();
    hub = sim;
    const { got } = await load(sim.deviceConnectionString('press-9', 'vision'));
    const device = sim.registry.getDevice('press-9');
    assert.ok(device, 'registered by the token');
    sim.c2d.enqueue('press-9', 'vision', device.generationId, { message_id: 'to-module', body: rhea.message.data_section(Buffer.from('hi')) } as rhea.Message);
    await waitFor(() => got.length === 1, 'the module message');
    assert.deepEqual(
      [got[0].messageId, got[0].deviceId, got[0].moduleId, got[0].topic, got[0].payload],
      ['to-module', 'press-9', 'vision', 'press-9/vision', 'hi'],
    );
  });

  it('a device id that does not fit the identity, or none with a gateway, is an error at Catch and in the status', async () => {
    const sim = await startTestHub();
    hub = sim;
    for (const [connectionString, deviceId, code, text] of [
      [sim.deviceConnectionString('fridge-8'), 'other-device', 'IdentityMismatch', 'iothub-common.status.identity-mismatch'],
      [sim.serviceConnectionString('device'), '', 'MissingDeviceId', 'iothub-common.status.missing-device-id'],
      [sim.serviceConnectionString('device'), 'bad id', 'InvalidDeviceId', 'iothub-common.status.invalid-device-id'],
    ]) {
      await helper.load([connectionNode, deviceInNode], flow({ deviceId }), { conn1: { connectionString } });
      const caught = collect('caught');
      await waitFor(() => statuses('in1').includes(text), `${text} in the status`);
      // The start-up error went to Catch before this test could listen; a settle msg meets it again.
      inject('in1', { settle: 'complete', lockToken: 'x' });
      await waitFor(() => caught.length >= 1, `${code} at Catch`);
      assert.deepEqual([...new Set(caught.map((m) => m.error?.code))], [code]);
      await helper.unload();
    }
  });

  it('Device as env reads the device id at deploy; as msg a msg names the device and another name switches to it; no type is str', async () => {
    const sim = await startTestHub();
    hub = sim;
    const gateway = sim.serviceConnectionString('device');
    service = await openService(sim);
    const sendTo = async (deviceId: string, id: string): Promise<void> => {
      await (service as ServiceClient).send(deviceId, c2d(`for ${deviceId}`, id));
    };

    process.env.IOTHUB_DEVICE_IN_TEST = 'pump-env';
    try {
      const { got } = await load(gateway, { deviceId: 'IOTHUB_DEVICE_IN_TEST', deviceIdType: 'env' });
      await sendTo('pump-env', 'e-1');
      await waitFor(() => got.length === 1, 'the message for the env device');
      assert.equal(got[0].deviceId, 'pump-env');
    } finally {
      delete process.env.IOTHUB_DEVICE_IN_TEST;
    }
    await helper.unload();

    // A flow from before the type: deviceId is a plain string.
    const plain = await load(gateway, { deviceId: 'pump-str', deviceIdType: undefined });
    await sendTo('pump-str', 's-1');
    await waitFor(() => plain.got.length === 1, 'the message for the str device');
    assert.equal(plain.got[0].deviceId, 'pump-str');
    await helper.unload();

    await helper.load([connectionNode, deviceInNode], flow({ deviceId: 'device', deviceIdType: 'msg' }), { conn1: { connectionString: gateway } });
    const got = collect('got');
    const caught = collect('caught');
    inject('in1', { device: 'pump-a' });
    await waitFor(() => statuses('in1').includes(CONNECTED), 'the receiver for the device the msg named');
    await sendTo('pump-a', 'a-1');
    await waitFor(() => got.length === 1, 'the message for pump-a');
    assert.equal(got[0].deviceId, 'pump-a');
    const attached = statuses('in1').filter((s) => s === CONNECTED).length;
    inject('in1', { device: 'pump-b' });
    await waitFor(() => statuses('in1').filter((s) => s === CONNECTED).length > attached, 'the receiver for pump-b');
    await sendTo('pump-a', 'a-2');
    await sendTo('pump-b', 'b-1');
    await waitFor(() => got.length === 2, 'the message for pump-b');
    assert.equal(got[1].deviceId, 'pump-b');
    await delay(300);
    assert.equal(got.length, 2, 'pump-a is no longer received for');
    assert.equal(sim.c2d.depth('pump-a'), 1);
    inject('in1', { payload: 'no device' });
    await waitFor(() => caught.length === 1, 'a msg without a device at Catch');
    assert.equal(caught[0].error?.code, 'InvalidMessage');
  });
});
