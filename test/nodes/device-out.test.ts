/** device-out in a Node-RED runtime, read back with the official Event Hubs SDK through the simulator. */
import { strict as assert } from 'node:assert';
import helper from 'node-red-node-test-helper';
import connectionNode from '../../src/nodes/iothub-connection';
import deviceOutNode from '../../src/nodes/iothub-device-out';
import type { SimulatedHub } from '../../src/simulator';
import { collect, type FlowMsg, inject, readTelemetry, serverPerTest } from '../helpers/flow';
import { delay, startTestHub, waitFor } from '../helpers/hub';

helper.init(require.resolve('node-red'));

function flow(out: Record<string, unknown> = {}): object[] {
  return [
    { id: 'tab', type: 'tab', label: 'device-out' },
    {
      id: 'conn1',
      type: 'iothub-connection',
      z: 'tab',
      mode: 'azure',
      transport: 'amqps',
      reconnectMin: 50,
      reconnectMax: 200,
      throttleMin: 50,
      throttleMax: 200,
    },
    { id: 'out1', type: 'iothub-device-out', z: 'tab', hub: 'conn1', deviceId: '', deviceIdType: 'str', maxPending: 1000, wires: [['sent']], ...out },
    { id: 'sent', type: 'helper', z: 'tab', wires: [] },
    { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'tab', wires: [] },
  ];
}

/** Events the simulator stored for a device, oldest first, as it keeps them (user_id and all). */
function storedFor(hub: SimulatedHub, deviceId: string): Array<Record<string, unknown>> {
  return [...hub.events()]
    .filter((e) => e.message.message_annotations?.['iothub-connection-device-id'] === deviceId)
    .sort((a, b) => a.event.sequenceNumber - b.event.sequenceNumber)
    .map((e) => e.message as unknown as Record<string, unknown>);
}

describe('device-out', function () {
  this.timeout(60_000);
  let hub: SimulatedHub | undefined;

  serverPerTest({
    after: async () => {
      await hub?.close();
      hub = undefined;
    },
  });

  async function load(connectionString: string, out: Record<string, unknown> = {}): Promise<void> {
    await helper.load([connectionNode, deviceOutNode], flow(out), { conn1: { connectionString } });
  }

  it('sends as the device with every property; @azure/event-hubs reads them and the device id', async () => {
    hub = await startTestHub();
    await load(hub.deviceConnectionString('thermo-1'));
    const sent = collect('sent');
    const caught = collect('caught');
    const created = '2024-05-01T10:00:00.000Z';
    const expiry = new Date(Date.now() + 3_600_000).toISOString();
    inject('out1', {
      payload: { t: 21.5 },
      messageId: 'm-1',
      correlationId: 'c-1',
      userId: 'operator-7',
      creationTime: created,
      expiryTime: expiry,
      subject: 'reading',
      replyTo: 'replies',
      groupId: 'g-1',
      groupSequence: 4,
      replyToGroupId: 'rg-1',
      properties: { unit: 'C', level: 3, alarm: false },
    });
    inject('out1', { payload: 'plain text', contentType: 'text/plain', contentEncoding: 'utf-8', deviceId: 'thermo-1' });
    inject('out1', { payload: Buffer.from([1, 2, 3]), userId: Buffer.from('raw-user') });
    await waitFor(() => sent.length + caught.length === 3, 'three sends settled');
    assert.deepEqual(caught, []);
    assert.equal(sent[0].messageId, 'm-1');
    assert.match(String(sent[1].messageId), /^[0-9a-f-]{36}$/, 'a UUID was made and written back');

    const events = await readTelemetry(hub, 3);
    const [first, second, third] = events;
    assert.equal(first.messageId, 'm-1');
    assert.equal(first.correlationId, 'c-1');
    assert.equal(first.contentType, 'application/json');
    assert.deepEqual(first.body, { t: 21.5 });
    assert.deepEqual(first.properties, { unit: 'C', level: '3', alarm: 'false' });
    assert.equal(first.systemProperties?.['iothub-connection-device-id'], 'thermo-1');
    assert.equal(first.systemProperties?.['iothub-connection-module-id'], undefined);
    const raw = first.getRawAmqpMessage().properties ?? {};
    assert.equal(raw.contentEncoding, 'utf-8');
    assert.equal(raw.creationTime, Date.parse(created));
    assert.equal(raw.absoluteExpiryTime, Date.parse(expiry));
    assert.equal(raw.subject, 'reading');
    assert.equal(raw.replyTo, 'replies');
    assert.equal(raw.groupId, 'g-1');
    assert.equal(raw.groupSequence, 4);
    assert.equal(raw.replyToGroupId, 'rg-1');

    assert.equal(second.messageId, sent[1].messageId);
    assert.equal(second.contentType, 'text/plain');
    assert.equal(second.getRawAmqpMessage().properties?.contentEncoding, 'utf-8');
    assert.equal(String(second.body), 'plain text');
    assert.deepEqual(Buffer.from(third.body as Uint8Array), Buffer.from([1, 2, 3]));
    assert.equal(third.contentType, undefined, 'a Buffer goes with no content type');

    // The Event Hubs SDK does not surface user_id; the hub keeps it as sent.
    const stored = storedFor(hub, 'thermo-1');
    assert.equal((stored[0].user_id as Buffer).toString('utf8'), 'operator-7');
    assert.equal((stored[2].user_id as Buffer).toString('utf8'), 'raw-user');
  });

  it('a module identity sends on the module path; the reader sees the device and module id', async () => {
    hub = await startTestHub();
    await load(hub.deviceConnectionString('press-2', 'vision'));
    const sent = collect('sent');
    const caught = collect('caught');
    inject('out1', { payload: { defect: true }, messageId: 'from-module' });
    inject('out1', { payload: 'x', moduleId: 'vision' });
    await waitFor(() => sent.length + caught.length === 2, 'both sends settled');
    assert.deepEqual(caught, []);
    const events = await readTelemetry(hub, 2);
    assert.equal(events[0].messageId, 'from-module');
    for (const e of events) {
      assert.equal(e.systemProperties?.['iothub-connection-device-id'], 'press-2');
      assert.equal(e.systemProperties?.['iothub-connection-module-id'], 'vision');
    }
  });

  it('with a gateway policy, msg.deviceId or the typed Device setting picks the device, all on one connection', async () => {
    hub = await startTestHub();
    process.env.IOTHUB_TEST_DEVICE = 'from-env';
    try {
      await load(hub.serviceConnectionString('device'), { deviceId: 'from-setting', deviceIdType: 'str' });
      let sent = collect('sent');
      inject('out1', { payload: 'a' });
      inject('out1', { payload: 'b', deviceId: 'from-msg' });
      inject('out1', { payload: 'c', deviceId: 'gw-module-dev', moduleId: 'edge' });
      await waitFor(() => sent.length === 3, 'three sends');
      await helper.unload();
      await load(hub.serviceConnectionString('device'), { deviceId: 'payload.device', deviceIdType: 'msg' });
      sent = collect('sent');
      inject('out1', { payload: { device: 'from-path' } });
      await waitFor(() => sent.length === 1, 'the msg-typed send');
      await helper.unload();
      await load(hub.serviceConnectionString('device'), { deviceId: 'IOTHUB_TEST_DEVICE', deviceIdType: 'env' });
      sent = collect('sent');
      inject('out1', { payload: 'e' });
      await waitFor(() => sent.length === 1, 'the env-typed send');
    } finally {
      delete process.env.IOTHUB_TEST_DEVICE;
    }
    const events = await readTelemetry(hub, 5);
    const who = events
      .map((e) => `${String(e.systemProperties?.['iothub-connection-device-id'])}/${String(e.systemProperties?.['iothub-connection-module-id'] ?? '')}`)
      .sort();
    assert.deepEqual(who, ['from-env/', 'from-msg/', 'from-path/', 'from-setting/', 'gw-module-dev/edge']);
  });

  it('bad input fails at a Catch node with a clear code, and nothing is sent', async () => {
    hub = await startTestHub();
    await load(hub.deviceConnectionString('strict-1'));
    const caught = collect('caught');
    const sent = collect('sent');
    const cases: Array<[FlowMsg, string]> = [
      [{ payload: Buffer.alloc(256 * 1024 + 1) }, 'MessageTooLarge'],
      [{ payload: 'x'.repeat(256 * 1024 - 10), properties: { padding: 'y'.repeat(100) } }, 'MessageTooLarge'],
      [{ payload: 'x', deviceId: 'someone-else' }, 'IdentityMismatch'],
      [{ payload: 'x', moduleId: 'not-mine' }, 'IdentityMismatch'],
      [{ payload: 'x', properties: { nested: { a: 1 } } }, 'InvalidProperty'],
      [{ payload: 'x', properties: { list: [1, 2] } }, 'InvalidProperty'],
      [{ payload: 'x', properties: { nothing: null } }, 'InvalidProperty'],
      [{ payload: 'x', properties: 'a=b' }, 'InvalidProperty'],
      [{ payload: 'x', properties: { 'iothub-ack': 'full' } }, 'InvalidProperty'],
      [{ payload: 'x', ack: 'full' }, 'InvalidMessage'],
      [{ payload: 'x', expiryTime: '2001-01-01T00:00:00Z' }, 'Expired'],
      [{ payload: 'x', groupSequence: -1 }, 'InvalidMessage'],
    ];
    for (const [msg] of cases) inject('out1', msg);
    await waitFor(() => caught.length === cases.length, 'every error at the Catch node');
    // Identity checks wait for the connection; the others fail at once: compare as sets.
    assert.deepEqual(caught.map((m) => m.error?.code).sort(), cases.map(([, code]) => code).sort());
    for (const m of caught) {
      assert.equal(m.error?.source?.id, 'out1');
      assert.ok(String(m.error?.message).length > 10, 'a message that says what is wrong');
    }
    assert.equal(sent.length, 0);
    assert.equal(hub.stats.d2cAccepted, 0, 'nothing reached the hub');
  });

  it('with a gateway, a device id that is missing or invalid fails at a Catch node', async () => {
    hub = await startTestHub();
    await load(hub.serviceConnectionString('device'));
    const caught = collect('caught');
    inject('out1', { payload: 'no device' });
    inject('out1', { payload: 'bad', deviceId: 'has space' });
    inject('out1', { payload: 'bad module', deviceId: 'ok-dev', moduleId: 'has/slash' });
    await waitFor(() => caught.length === 3, 'three errors');
    assert.deepEqual(
      caught.map((m) => m.error?.code),
      ['MissingDeviceId', 'InvalidDeviceId', 'InvalidModuleId'],
    );
    assert.equal(hub.stats.d2cAccepted, 0);
  });

  it('a device the hub does not know fails with DeviceNotFound instead of waiting forever', async () => {
    hub = await startTestHub({ autoRegister: false });
    hub.registry.addDevice('known-1');
    await load(hub.serviceConnectionString('device'));
    const caught = collect('caught');
    const sent = collect('sent');
    inject('out1', { payload: 'ghost', deviceId: 'ghost-1' });
    inject('out1', { payload: 'real', deviceId: 'known-1' });
    await waitFor(() => caught.length === 1 && sent.length === 1, 'one failure, one send');
    assert.equal(caught[0].error?.code, 'DeviceNotFound');
    // The next message for the unknown device tries again (it may have been registered meanwhile).
    hub.registry.addDevice('ghost-1');
    inject('out1', { payload: 'ghost again', deviceId: 'ghost-1', messageId: 'ghost-again' });
    await waitFor(() => sent.length === 2, 'the retry after registering');
    assert.deepEqual(
      storedFor(hub, 'ghost-1').map((m) => m.message_id),
      ['ghost-again'],
    );
  });

  it('buffers while the hub refuses connections, sends in order per device after it is back; overflow is BufferFull at Catch', async () => {
    const sim = await startTestHub();
    hub = sim;
    await load(sim.serviceConnectionString('device'), { maxPending: 6 });
    const sent = collect('sent');
    const caught = collect('caught');
    inject('out1', { payload: 'warm-up', deviceId: 'line-a' });
    await waitFor(() => sent.length === 1, 'the first send');
    hub.faults.refuseConnections(60_000);
    hub.faults.dropConnections();
    await delay(100);
    const refusedBefore = hub.stats.connectionsRefused;
    for (let i = 0; i < 4; i++) {
      inject('out1', { payload: `a${i}`, deviceId: 'line-a', messageId: `a-${i}` });
      inject('out1', { payload: `b${i}`, deviceId: 'line-b', messageId: `b-${i}` });
    }
    await waitFor(() => caught.length === 2, 'the overflow to fail');
    assert.deepEqual(
      caught.map((m) => m.error?.code),
      ['BufferFull', 'BufferFull'],
    );
    assert.deepEqual(
      caught.map((m) => m.messageId),
      ['a-3', 'b-3'],
      'the last two, past the bound of 6',
    );
    await waitFor(() => sim.stats.connectionsRefused > refusedBefore, 'the node to try (and be refused)');
    assert.equal(sent.length, 1, 'nothing went out while the hub refused');
    hub.faults.refuseConnections(0);
    await waitFor(() => sent.length === 7, 'the held messages after the hub came back');
    assert.deepEqual(
      storedFor(hub, 'line-a')
        .map((m) => m.message_id)
        .slice(1),
      ['a-0', 'a-1', 'a-2'],
    );
    assert.deepEqual(
      storedFor(hub, 'line-b').map((m) => m.message_id),
      ['b-0', 'b-1', 'b-2'],
    );
    const events = await readTelemetry(hub, 7);
    assert.deepEqual(
      events.filter((e) => e.systemProperties?.['iothub-connection-device-id'] === 'line-b').map((e) => e.messageId),
      ['b-0', 'b-1', 'b-2'],
    );
  });

  it('throttled sends are retried after a pause and each arrives once', async () => {
    hub = await startTestHub();
    await load(hub.deviceConnectionString('busy-1'));
    const sent = collect('sent');
    const caught = collect('caught');
    inject('out1', { payload: 'first', messageId: 't-0' });
    await waitFor(() => sent.length === 1, 'the first send');
    hub.faults.throttleNext(2);
    for (let i = 1; i <= 4; i++) inject('out1', { payload: `n${i}`, messageId: `t-${i}` });
    await waitFor(() => sent.length === 5, 'every send after the throttling');
    assert.deepEqual(caught, []);
    // Pipelined sends: those behind a throttled one may be accepted first, so only the set is fixed.
    assert.deepEqual(
      storedFor(hub, 'busy-1')
        .map((m) => m.message_id)
        .sort(),
      ['t-0', 't-1', 't-2', 't-3', 't-4'],
    );
    assert.equal(hub.stats.d2cAccepted, 5);
  });
});
