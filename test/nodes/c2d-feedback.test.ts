/** c2d-send and feedback-in in a Node-RED runtime, with the official device SDK as the device. */
import { strict as assert } from 'node:assert';
import helper from 'node-red-node-test-helper';
import type { Client as DeviceClient } from 'azure-iot-device';
import connectionNode from '../../src/nodes/iothub-connection';
import c2dSendNode from '../../src/nodes/iothub-c2d-send';
import feedbackInNode from '../../src/nodes/iothub-feedback-in';
import type { SimulatedHub } from '../../src/simulator';
import { delay, startTestHub, waitFor } from '../helpers/hub';
import { serverPerTest, statuses } from '../helpers/flow';
import { closeQuietly, Message, openDevice } from '../helpers/sdk';

const CONNECTED = 'node-red:common.status.connected';
const UNAUTHORIZED = 'iothub-common.status.unauthorized';

helper.init(require.resolve('node-red'));

interface FlowMsg {
  payload?: unknown;
  messageId?: string;
  topic?: string;
  error?: { message: string; code?: string; source?: { id: string } };
  [key: string]: unknown;
}

interface TestNode {
  on(event: 'input', listener: (msg: FlowMsg) => void): void;
  receive(msg: FlowMsg): void;
}

function flow(extra: Record<string, unknown> = {}): object[] {
  return [
    { id: 'tab', type: 'tab', label: 'c2d' },
    { id: 'conn1', type: 'iothub-connection', z: 'tab', mode: 'azure', transport: 'amqps', reconnectMin: 50, reconnectMax: 200 },
    {
      id: 'send1',
      type: 'iothub-c2d-send',
      z: 'tab',
      hub: 'conn1',
      deviceId: 'fridge',
      deviceIdType: 'str',
      ack: 'full',
      maxPending: 5,
      wires: [['sent']],
      ...extra,
    },
    { id: 'sent', type: 'helper', z: 'tab', wires: [] },
    { id: 'fb1', type: 'iothub-feedback-in', z: 'tab', hub: 'conn1', wires: [['feedback']] },
    { id: 'feedback', type: 'helper', z: 'tab', wires: [] },
    { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'tab', wires: [] },
  ];
}

function collect(id: string): FlowMsg[] {
  const seen: FlowMsg[] = [];
  (helper.getNode(id) as unknown as TestNode).on('input', (msg) => seen.push(msg));
  return seen;
}

function input(msg: FlowMsg): void {
  (helper.getNode('send1') as unknown as TestNode).receive(msg);
}

describe('c2d-send and feedback-in', function () {
  this.timeout(60_000);
  let hub: SimulatedHub;
  let device: DeviceClient | undefined;

  serverPerTest({
    before: async () => {
      await closeQuietly(device);
      device = undefined;
    },
    after: async () => {
      await hub?.close();
    },
  });

  async function load(extra: Record<string, unknown> = {}): Promise<void> {
    await helper.load([connectionNode, c2dSendNode, feedbackInNode], flow(extra), { conn1: { connectionString: hub.serviceConnectionString() } });
  }

  it('sends with every property; the device completes; feedback-in reports Success for the id c2d-send wrote back; reject gives Rejected', async () => {
    hub = await startTestHub({ feedback: { flushIntervalMs: 50 } });
    device = await openDevice(hub, 'fridge');
    const got: Array<InstanceType<typeof Message>> = [];
    device.on('message', (m: InstanceType<typeof Message>) => got.push(m));
    await load();
    const sent = collect('sent');
    const feedback = collect('feedback');
    input({ payload: { door: 'open' }, properties: { urgency: 3, reason: 'test', ok: true }, correlationId: 'corr-1' });
    await waitFor(() => sent.length === 1 && got.length === 1, 'the message sent and received');
    const messageId = String(sent[0].messageId);
    assert.match(messageId, /^[0-9a-f-]{36}$/, 'a UUID message id was made and written back');
    const m = got[0];
    assert.equal(m.messageId, messageId);
    assert.equal(m.correlationId, 'corr-1');
    assert.equal(m.contentType, 'application/json');
    assert.equal(m.contentEncoding, 'utf-8');
    assert.deepEqual(JSON.parse(String(m.data)), { door: 'open' });
    const props: Record<string, string> = {};
    for (let i = 0; i < m.properties.count(); i++) props[m.properties.getItem(i).key] = String(m.properties.getItem(i).value);
    assert.equal(props.urgency, '3');
    assert.equal(props.reason, 'test');
    assert.equal(props.ok, 'true');
    await device.complete(m);
    await waitFor(() => feedback.length === 1, 'Success feedback');
    assert.deepEqual(
      {
        id: (feedback[0].payload as { originalMessageId: string }).originalMessageId,
        status: (feedback[0].payload as { statusCode: string }).statusCode,
        topic: feedback[0].topic,
      },
      { id: messageId, status: 'Success', topic: 'fridge' },
    );

    input({ payload: 'reject me', messageId: 'to-reject' });
    await waitFor(() => got.length === 2, 'the second message');
    await device.reject(got[1]);
    await waitFor(() => feedback.length === 2, 'Rejected feedback');
    assert.equal((feedback[1].payload as { originalMessageId: string }).originalMessageId, 'to-reject');
    assert.equal((feedback[1].payload as { statusCode: string }).statusCode, 'Rejected');
  });

  it('every bad input fails with its code at a Catch node, nothing sent', async () => {
    hub = await startTestHub();
    hub.registry.addDevice('fridge');
    await load({ deviceId: '' });
    const caught = collect('caught');
    const sent = collect('sent');
    const cases: Array<[FlowMsg, string]> = [
      [{ payload: 'no device' }, 'MissingDeviceId'],
      [{ payload: 'bad id', deviceId: 'has space' }, 'InvalidDeviceId'],
      [{ payload: Buffer.alloc(64 * 1024 + 1), deviceId: 'fridge' }, 'MessageTooLarge'],
      [{ payload: 'x', deviceId: 'fridge', properties: { nested: { a: 1 } } }, 'InvalidProperty'],
      [{ payload: 'x', deviceId: 'fridge', ack: 'sometimes' }, 'InvalidMessage'],
      [{ payload: 'x', deviceId: 'fridge', expiryTime: '2001-01-01T00:00:00Z' }, 'Expired'],
      [{ payload: 'x', deviceId: 'nobody-home' }, 'DeviceNotFound'],
    ];
    for (const [msg] of cases) input(msg);
    await waitFor(() => caught.length === cases.length, 'every error at the Catch node');
    assert.deepEqual(caught.map((m) => m.error?.code).sort(), cases.map(([, code]) => code).sort());
    for (const m of caught) assert.equal(m.error?.source?.id, 'send1');
    assert.equal(sent.length, 0);
    assert.equal(hub.c2d.depth('fridge'), 0);
  });

  it('a full device queue gives DeviceMaximumQueueDepthExceeded', async () => {
    hub = await startTestHub();
    hub.registry.addDevice('fridge');
    await load({ maxPending: 100 });
    const caught = collect('caught');
    const sent = collect('sent');
    for (let i = 0; i < 51; i++) input({ payload: `m${i}` });
    await waitFor(() => sent.length + caught.length === 51, 'all 51 settled');
    assert.equal(sent.length, 50);
    assert.deepEqual(
      caught.map((m) => m.error?.code),
      ['DeviceMaximumQueueDepthExceeded'],
    );
  });

  it('holds messages while the hub refuses connections, delivers them when it is back, and fails the overflow with BufferFull', async () => {
    hub = await startTestHub();
    hub.registry.addDevice('fridge');
    await load({ maxPending: 5 });
    const sent = collect('sent');
    const caught = collect('caught');
    input({ payload: 'warm-up' });
    await waitFor(() => sent.length === 1, 'the first send');
    hub.faults.refuseConnections(60_000);
    hub.faults.dropConnections();
    await delay(100);
    for (let i = 0; i < 7; i++) input({ payload: `held-${i}`, messageId: `held-${i}` });
    await waitFor(() => caught.length === 2, 'the overflow to fail');
    assert.deepEqual(
      caught.map((m) => m.error?.code),
      ['BufferFull', 'BufferFull'],
    );
    assert.equal(sent.length, 1, 'nothing went out while the hub refused');
    hub.faults.refuseConnections(0);
    await waitFor(() => sent.length === 6, 'the held messages after the hub came back');
    assert.deepEqual(
      sent.slice(1).map((m) => m.messageId),
      ['held-0', 'held-1', 'held-2', 'held-3', 'held-4'],
    );
    assert.equal(hub.c2d.depth('fridge'), 6);
  });

  it('with a policy that lacks ServiceConnect, both nodes show Unauthorized (not connected) and each msg fails with Unauthorized', async () => {
    hub = await startTestHub();
    hub.registry.addDevice('fridge');
    // The hub's `device` policy has DeviceConnect only: the connection opens, the C2D and feedback links are refused.
    await helper.load([connectionNode, c2dSendNode, feedbackInNode], flow(), { conn1: { connectionString: hub.serviceConnectionString('device') } });
    const caught = collect('caught');
    const sent = collect('sent');
    await waitFor(() => statuses('send1').includes(UNAUTHORIZED) && statuses('fb1').includes(UNAUTHORIZED), 'both statuses to show the refusal');
    for (let i = 0; i < 3; i++) input({ payload: `m${i}` });
    await waitFor(() => caught.length === 3, 'every msg to fail');
    assert.deepEqual(
      caught.map((m) => m.error?.code),
      ['Unauthorized', 'Unauthorized', 'Unauthorized'],
    );
    assert.match(String(caught[0].error?.message), /refuses \/messages\/devicebound with these credentials/);
    assert.equal(sent.length, 0);
    assert.equal(hub.c2d.depth('fridge'), 0);
    assert.equal(statuses('send1').at(-1), UNAUTHORIZED, 'the status still tells the truth');
    assert.ok(!statuses('send1').slice(statuses('send1').indexOf(UNAUTHORIZED)).includes(CONNECTED), 'never claimed connected after the refusal');
  });

  it('a msg sent at deploy, while the link is still being refused, waits and then fails; nothing hangs', async () => {
    hub = await startTestHub();
    await helper.load([connectionNode, c2dSendNode, feedbackInNode], flow(), { conn1: { connectionString: hub.serviceConnectionString('device') } });
    const caught = collect('caught');
    input({ payload: 'early' });
    await waitFor(() => caught.length === 1, 'the early msg to fail');
    assert.equal(caught[0].error?.code, 'Unauthorized');
  });

  it('feedback-in reports a body that is not feedback to Catch and rejects it, and keeps running', async () => {
    hub = await startTestHub();
    await load();
    const caught = collect('caught');
    const feedback = collect('feedback');
    await waitFor(() => hub.snapshot().links >= 3, 'the feedback receiver to attach');
    // Inject a broken feedback message through the simulator's queue internals.
    const queue = hub.feedback as unknown as { outbox: Array<{ records: unknown; enqueuedTime: number; deliveryCount: number }>; onSendable(): void };
    queue.outbox.push({ records: 'not an array' as unknown, enqueuedTime: Date.now(), deliveryCount: 0 });
    queue.onSendable();
    await waitFor(() => caught.length === 1, 'the InvalidFeedback error');
    assert.equal(caught[0].error?.code, 'InvalidFeedback');
    assert.equal(feedback.length, 0);
    assert.equal(hub.feedback.pendingRecords, 0, 'the broken message was rejected, not left to come back');
  });
});
