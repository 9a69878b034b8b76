/**
 * HubReceiver against the simulator over real sockets: cloud-to-device in auto and manual settlement,
 * locks, bounded credit, re-attach after detaches and dropped connections, and an Event Hubs partition
 * reader that resumes after the last sequence number it saw.
 */
import { strict as assert } from 'node:assert';
import { decodeFeedback, type FeedbackRecord } from '../../src/amqp/feedback-codec';
import rhea = require('rhea');
import { parseConnectionString, type Identity } from '../../src/iothub/connection-string';
import { HubError } from '../../src/iothub/errors';
import { HubConnection, type HubConnectionOptions } from '../../src/iothub/hub-connection';
import { discoverEventHub } from '../../src/iothub/event-hub';
import { HubReceiver, HubSender, type HubReceiverOptions, type Received } from '../../src/iothub/links';
import type { Scope } from '../../src/iothub/credentials';
import type { SimulatedHub } from '../../src/simulator';
import { partitionForDevice } from '../../src/simulator/partitions';
import { delay, startTestHub, waitFor } from '../helpers/hub';

/** The described type of an Event Hubs selector filter (apache.org:selector-filter:string). */
const SELECTOR_DESCRIPTOR = 0x468c00000004;

function message(id: string, extra: Partial<rhea.Message> = {}): rhea.Message {
  return { message_id: id, body: rhea.message.data_section(Buffer.from(`body of ${id}`)), ...extra } as rhea.Message;
}

function idOf(received: Received): string {
  return String(received.message.message_id);
}

function bodyText(received: Received): string {
  const body: unknown = received.message.body;
  if (Buffer.isBuffer(body)) return body.toString('utf8');
  const content = (body as { content?: unknown } | undefined)?.content;
  if (Buffer.isBuffer(content)) return content.toString('utf8');
  return String(body);
}

function annotation(received: Received, name: string): unknown {
  return received.message.message_annotations?.[name];
}

/** Resolves to the HubError code a promise rejects with, or 'resolved'. */
function outcomeOf(promise: Promise<void>): Promise<string> {
  return promise.then(
    () => 'resolved',
    (err: unknown) => (err instanceof HubError ? err.code : `not a HubError: ${String(err)}`),
  );
}

interface Tracked {
  receiver: HubReceiver;
  messages: Received[];
  attaches: number;
  detaches: HubError[];
}

describe('HubReceiver', function () {
  this.timeout(30_000);
  let hub: SimulatedHub | undefined;
  const connections: HubConnection[] = [];

  afterEach(async () => {
    for (const c of connections.splice(0)) await c.close();
    await hub?.close();
    hub = undefined;
  });

  function started(): SimulatedHub {
    assert.ok(hub, 'hub started');
    return hub;
  }

  function connect(identity: Identity, extra: HubConnectionOptions = {}): HubConnection {
    const h = started();
    const connection = new HubConnection(identity, {
      transport: 'amqp',
      port: h.ports.amqp,
      connectHost: '127.0.0.1',
      reconnectMinMs: 50,
      reconnectMaxMs: 500,
      ...extra,
    });
    connections.push(connection);
    return connection;
  }

  function receive(connection: HubConnection, address: string, scope: Scope, options: HubReceiverOptions): Tracked {
    const receiver = new HubReceiver(connection, address, scope, options);
    const tracked: Tracked = { receiver, messages: [], attaches: 0, detaches: [] };
    receiver.on('message', (m: Received) => tracked.messages.push(m));
    receiver.on('attached', () => tracked.attaches++);
    receiver.on('detached', (err: HubError) => tracked.detaches.push(err));
    return tracked;
  }

  function deviceReceiver(deviceId: string, options: HubReceiverOptions): Tracked {
    const connection = connect(parseConnectionString(started().deviceConnectionString(deviceId)));
    return receive(connection, `/devices/${deviceId}/messages/devicebound`, { deviceId }, options);
  }

  function serviceSender(): HubSender {
    const connection = connect(parseConnectionString(started().serviceConnectionString('service')));
    return new HubSender(connection, '/messages/devicebound', {}, { errorContext: 'service' });
  }

  /** Queues a C2D message straight into the simulator's queue. */
  function enqueue(deviceId: string, m: rhea.Message): void {
    const h = started();
    const device = h.registry.addDevice(deviceId);
    const error = h.c2d.enqueue(deviceId, undefined, device.generationId, m);
    assert.equal(error, undefined, 'queued');
  }

  /** C2D links the simulator holds open now (one per attached device receiver). */
  function c2dLinks(): number {
    let n = 0;
    // A match that never matches visits every link and detaches none.
    started().faults.detachLinks((a) => {
      if (a.kind === 'c2d') n++;
      return false;
    });
    return n;
  }

  describe('cloud-to-device, auto settlement', () => {
    it('messages sent by the service arrive in order with their properties and are completed', async () => {
      hub = await startTestHub();
      const device = deviceReceiver('auto-1', { credit: 10, settle: 'auto' });
      await waitFor(() => device.attaches === 1, 'the device receiver to attach');
      const sender = serviceSender();
      const sent = [0, 1, 2].map((i) =>
        sender.send(
          message(`auto-${i}`, {
            to: '/devices/auto-1/messages/devicebound',
            correlation_id: `corr-${i}`,
            content_type: 'application/json',
            content_encoding: 'utf-8',
            application_properties: { line: 'L7', index: i },
          }),
        ),
      );
      await Promise.all(sent);
      await waitFor(() => device.messages.length === 3, 'three messages');
      assert.deepEqual(device.messages.map(idOf), ['auto-0', 'auto-1', 'auto-2']);
      device.messages.forEach((m, i) => {
        assert.equal(m.message.correlation_id, `corr-${i}`);
        assert.equal(m.message.content_type, 'application/json');
        assert.equal(m.message.content_encoding, 'utf-8');
        assert.deepEqual(m.message.application_properties, { line: 'L7', index: i });
        assert.equal(bodyText(m), `body of auto-${i}`);
        assert.equal(m.message.to, '/devices/auto-1/messages/devicebound');
        assert.equal(Number(annotation(m, 'iothub-deliverycount')), 0);
        assert.match(m.lockToken, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
        assert.equal(m.lockToken, annotation(m, 'x-opt-lock-token'), 'the lock token is the one the hub announced');
      });
      assert.equal(new Set(device.messages.map((m) => m.lockToken)).size, 3);
      await waitFor(() => started().c2d.depth('auto-1') === 0, 'the queue to empty (messages completed)');
      // settle() is a no-op in auto mode.
      assert.equal(await outcomeOf(device.messages[0].settle('reject')), 'resolved');
      await delay(200);
      assert.equal(device.messages.length, 3, 'nothing was delivered twice');
    });

    it('messages queued before the receiver attaches are delivered when it does', async () => {
      hub = await startTestHub();
      for (let i = 0; i < 5; i++) enqueue('early', message(`early-${i}`));
      assert.equal(started().c2d.depth('early'), 5);
      const device = deviceReceiver('early', { credit: 3, settle: 'auto' });
      await waitFor(() => device.messages.length === 5, 'all five messages');
      assert.deepEqual(device.messages.map(idOf), ['early-0', 'early-1', 'early-2', 'early-3', 'early-4']);
      await waitFor(() => started().c2d.depth('early') === 0, 'the queue to empty');
    });

    it('a closed receiver takes no more messages: they stay queued', async () => {
      hub = await startTestHub();
      const device = deviceReceiver('closer', { credit: 5, settle: 'auto' });
      enqueue('closer', message('before-close'));
      await waitFor(() => device.messages.length === 1, 'the first message');
      await device.receiver.close();
      await waitFor(() => c2dLinks() === 0, 'the link to go at the hub');
      enqueue('closer', message('after-close'));
      await delay(200);
      assert.equal(device.messages.length, 1);
      assert.equal(started().c2d.depth('closer'), 1);
    });
  });

  describe('cloud-to-device, manual settlement', () => {
    it('complete: the message stays locked in the queue until completed, then leaves with Success feedback', async () => {
      hub = await startTestHub();
      const device = deviceReceiver('man-c', { credit: 5, settle: 'manual' });
      enqueue('man-c', message('to-complete', { application_properties: { 'iothub-ack': 'full' } }));
      await waitFor(() => device.messages.length === 1, 'the message');
      await delay(100);
      assert.equal(started().c2d.depth('man-c'), 1, 'not completed before settle');
      assert.equal(started().feedback.pendingRecords, 0);
      await device.messages[0].settle('complete');
      assert.equal(started().c2d.depth('man-c'), 0, 'completed once settle resolves');
      await waitFor(() => started().feedback.pendingRecords === 1, 'a feedback record');
      await delay(150);
      assert.equal(device.messages.length, 1, 'not redelivered');
    });

    it('reject: the message leaves the queue for good, with Rejected feedback', async () => {
      hub = await startTestHub();
      const device = deviceReceiver('man-r', { credit: 5, settle: 'manual' });
      enqueue('man-r', message('to-reject', { application_properties: { 'iothub-ack': 'negative' } }));
      await waitFor(() => device.messages.length === 1, 'the message');
      await device.messages[0].settle('reject');
      assert.equal(started().c2d.depth('man-r'), 0);
      assert.equal(started().feedback.pendingRecords, 1, 'negative feedback for a rejection');
      enqueue('man-r', message('fence'));
      await waitFor(() => device.messages.length === 2, 'the fence message');
      assert.equal(idOf(device.messages[1]), 'fence', 'the rejected message did not come back');
    });

    it('abandon: the message comes back with its delivery count raised, and is dead-lettered at the maximum', async () => {
      hub = await startTestHub({ c2d: { maxDeliveryCount: 3 } });
      const device = deviceReceiver('man-a', { credit: 5, settle: 'manual' });
      enqueue('man-a', message('to-abandon', { application_properties: { 'iothub-ack': 'negative' } }));
      await waitFor(() => device.messages.length === 1, 'the first delivery');
      await device.messages[0].settle('abandon');
      await waitFor(() => device.messages.length === 2, 'the second delivery');
      assert.equal(idOf(device.messages[1]), 'to-abandon');
      assert.equal(Number(annotation(device.messages[1], 'iothub-deliverycount')), 1);
      assert.notEqual(device.messages[1].lockToken, device.messages[0].lockToken, 'a new lock for the new delivery');
      assert.equal(started().c2d.depth('man-a'), 1);
      assert.equal(started().feedback.pendingRecords, 0);
      await device.messages[1].settle('abandon');
      await waitFor(() => device.messages.length === 3, 'the third delivery');
      assert.equal(Number(annotation(device.messages[2], 'iothub-deliverycount')), 2);
      await device.messages[2].settle('abandon');
      // Third abandon reaches maxDeliveryCount 3: gone, with DeliveryCountExceeded feedback.
      assert.equal(started().c2d.depth('man-a'), 0);
      assert.equal(started().feedback.pendingRecords, 1);
      await delay(150);
      assert.equal(device.messages.length, 3);
    });

    it('a service feedback receiver reads Success and Rejected for completed and rejected messages', async () => {
      hub = await startTestHub({ feedback: { flushIntervalMs: 50 } });
      const device = deviceReceiver('fb-dev', { credit: 5, settle: 'manual' });
      const serviceConnection = connect(parseConnectionString(started().serviceConnectionString('service')));
      const feedback = receive(serviceConnection, '/messages/serviceBound/feedback', {}, { credit: 5, settle: 'auto' });
      enqueue('fb-dev', message('fb-ok', { application_properties: { 'iothub-ack': 'full' } }));
      enqueue('fb-dev', message('fb-no', { application_properties: { 'iothub-ack': 'full' } }));
      await waitFor(() => device.messages.length === 2, 'both messages');
      const byId = new Map(device.messages.map((m) => [idOf(m), m]));
      await byId.get('fb-ok')?.settle('complete');
      await byId.get('fb-no')?.settle('reject');
      const records = (): FeedbackRecord[] => feedback.messages.flatMap((m) => decodeFeedback(bodyText(m)));
      await waitFor(() => records().length === 2, 'two feedback records');
      const statuses = Object.fromEntries(records().map((r) => [r.originalMessageId, r.statusCode]));
      assert.deepEqual(statuses, { 'fb-ok': 'Success', 'fb-no': 'Rejected' });
      assert.ok(records().every((r) => r.deviceId === 'fb-dev'));
      assert.equal(started().feedback.pendingRecords, 0, 'the auto receiver completed the feedback message');
    });
  });

  describe('locks', () => {
    it('settling after the lock expired rejects with MessageLockLost and the message comes again', async () => {
      // Long enough that the last delivery is completed within its lock on a busy machine.
      hub = await startTestHub({ c2d: { lockMs: 1000 } });
      const device = deviceReceiver('locky', { credit: 1, settle: 'manual' });
      enqueue('locky', message('slow'));
      await waitFor(() => device.messages.length === 1, 'the message');
      const outcomes = ['complete', 'reject', 'abandon'] as const;
      for (let i = 0; i < outcomes.length; i++) {
        // Each failed settle gives the credit back, so the message comes again; let its lock run out too.
        await waitFor(() => device.messages.length === i + 1, `delivery ${i + 1}`);
        await delay(1500);
        assert.equal(await outcomeOf(device.messages[i].settle(outcomes[i])), 'MessageLockLost', `${outcomes[i]} after the lock expired`);
        assert.equal(started().c2d.depth('locky'), 1, `the message is still queued after a late ${outcomes[i]}`);
      }
      // The credit spent on the lost message came back: it is delivered again and can be completed in time.
      await waitFor(() => device.messages.length === 4, 'the fourth delivery');
      const again = device.messages[3];
      assert.equal(idOf(again), 'slow');
      await again.settle('complete');
      assert.equal(started().c2d.depth('locky'), 0);
    });

    it('settling twice rejects the second time with MessageLockLost, whatever the outcomes', async () => {
      // The default lock (a minute): no lock may lapse between the settles, or a lost lock would pass for a second settle.
      hub = await startTestHub();
      const device = deviceReceiver('twice', { credit: 5, settle: 'manual' });
      for (let i = 0; i < 3; i++) enqueue('twice', message(`twice-${i}`));
      await waitFor(() => device.messages.length === 3, 'three messages');
      const [a, b, c] = device.messages;
      await a.settle('complete');
      assert.equal(await outcomeOf(a.settle('complete')), 'MessageLockLost');
      assert.equal(await outcomeOf(a.settle('abandon')), 'MessageLockLost');
      // Both at once: the first wins, the second is refused.
      const [first, second] = await Promise.all([outcomeOf(b.settle('reject')), outcomeOf(b.settle('complete'))]);
      assert.deepEqual([first, second], ['resolved', 'MessageLockLost']);
      await c.settle('abandon');
      assert.equal(await outcomeOf(c.settle('complete')), 'MessageLockLost');
      // The abandoned one comes back; nothing else does.
      await waitFor(() => device.messages.length === 4, 'the abandoned message again');
      assert.equal(idOf(device.messages[3]), 'twice-2');
      await device.messages[3].settle('complete');
      assert.equal(started().c2d.depth('twice'), 0);
    });
  });

  describe('credit', () => {
    it('manual mode with credit 2 holds at 2 unsettled messages and takes one more per settlement', async () => {
      hub = await startTestHub();
      for (let i = 0; i < 10; i++) enqueue('credit', message(`c-${i}`));
      const device = deviceReceiver('credit', { credit: 2, settle: 'manual' });
      await waitFor(() => device.messages.length === 2, 'two messages');
      await delay(300);
      assert.equal(device.messages.length, 2, 'no more than the credit');
      await device.messages[0].settle('complete');
      await waitFor(() => device.messages.length === 3, 'a third message');
      await delay(300);
      assert.equal(device.messages.length, 3, 'exactly one more per settlement');
      // Settling the rest one at a time drains the queue, never more than 2 outstanding.
      let settled = 1;
      while (settled < 10) {
        await waitFor(() => device.messages.length > settled, `message ${settled + 1}`);
        assert.ok(device.messages.length - settled <= 2, `${device.messages.length - settled} outstanding`);
        await device.messages[settled].settle('complete');
        settled++;
      }
      assert.deepEqual(
        device.messages.map(idOf),
        Array.from({ length: 10 }, (_, i) => `c-${i}`),
      );
      assert.equal(started().c2d.depth('credit'), 0);
    });

    it('a settlement that fails (lock lost) still gives its credit back', async () => {
      hub = await startTestHub({ c2d: { lockMs: 200 } });
      for (let i = 0; i < 3; i++) enqueue('credit-lost', message(`cl-${i}`));
      const device = deviceReceiver('credit-lost', { credit: 1, settle: 'manual' });
      await waitFor(() => device.messages.length === 1, 'one message');
      await delay(400);
      assert.equal(await outcomeOf(device.messages[0].settle('complete')), 'MessageLockLost');
      await waitFor(() => device.messages.length === 2, 'the next delivery');
      await delay(150);
      assert.equal(device.messages.length, 2, 'still only one at a time');
    });
  });

  describe('re-attach', () => {
    it('re-attaches after the simulator detaches its link and keeps receiving', async () => {
      hub = await startTestHub();
      const device = deviceReceiver('detached', { credit: 5, settle: 'auto' });
      enqueue('detached', message('d-before'));
      await waitFor(() => device.messages.length === 1, 'the first message');
      assert.equal(device.attaches, 1);
      assert.equal(
        started().faults.detachLinks((a) => a.kind === 'c2d'),
        1,
      );
      await waitFor(() => device.attaches >= 2, 'the receiver to attach again');
      assert.equal(device.detaches[0]?.code, 'ServiceUnavailable');
      assert.ok(device.receiver.isAttached);
      for (let i = 0; i < 5; i++) enqueue('detached', message(`d-after-${i}`));
      await waitFor(() => device.messages.length === 6, 'the messages after the detach');
      assert.deepEqual(device.messages.map(idOf), ['d-before', 'd-after-0', 'd-after-1', 'd-after-2', 'd-after-3', 'd-after-4']);
      await waitFor(() => started().c2d.depth('detached') === 0, 'the queue to empty');
    });

    it('re-attaches after every one of several detaches in a row', async () => {
      hub = await startTestHub();
      const device = deviceReceiver('detached-n', { credit: 5, settle: 'auto' });
      await waitFor(() => device.attaches === 1, 'the first attach');
      for (let round = 0; round < 4; round++) {
        const attaches = device.attaches;
        started().faults.detachLinks((a) => a.kind === 'c2d');
        await waitFor(() => device.attaches > attaches, `the attach after detach ${round}`);
        enqueue('detached-n', message(`round-${round}`));
        await waitFor(() => device.messages.length === round + 1, `the message of round ${round}`);
      }
      assert.deepEqual(device.messages.map(idOf), ['round-0', 'round-1', 'round-2', 'round-3']);
      await waitFor(() => started().c2d.depth('detached-n') === 0, 'the queue to empty');
    });

    // Regression: rhea reports a detach with an error as receiver_error and then receiver_close; acting on
    // both once attached two links per detach (orphans piled up at the hub).
    it('one detach gives exactly one new link: no orphan links pile up at the hub', async () => {
      hub = await startTestHub();
      const device = deviceReceiver('orphans', { credit: 5, settle: 'auto' });
      await waitFor(() => device.attaches === 1 && c2dLinks() === 1, 'the first attach');
      const attachedBefore = started().stats.linksAttached;
      started().faults.detachLinks((a) => a.kind === 'c2d');
      await waitFor(() => device.attaches === 2, 'the receiver to attach again');
      await delay(600);
      assert.equal(device.detaches.length, 1, 'one detach reported once');
      assert.equal(device.attaches, 2);
      assert.equal(started().stats.linksAttached - attachedBefore, 1, 'one new link, not two');
      for (let round = 0; round < 3; round++) {
        // Each detach meets an attached link: the re-attach waits grow with each detach in a row.
        const attaches = device.attaches;
        assert.equal(
          started().faults.detachLinks((a) => a.kind === 'c2d'),
          1,
        );
        await waitFor(() => device.attaches > attaches, `the attach after detach ${round + 2}`);
      }
      // Time for an orphan (a second attach for one detach) to show up at the hub.
      await delay(600);
      assert.equal(device.attaches, 5);
      assert.equal(started().stats.linksAttached - attachedBefore, 4, 'one new link per detach');
      assert.equal(c2dLinks(), 1, 'exactly one C2D link at the hub after four detaches');
    });

    // Regression: messages the hub sent on an orphan link were settled against the current link and
    // timed out.
    it('after a detach every message in manual mode settles (none times out on an orphan link)', async () => {
      hub = await startTestHub();
      const connection = connect(parseConnectionString(started().deviceConnectionString('orphan-settle')), { operationTimeoutMs: 1500 });
      const device = receive(connection, '/devices/orphan-settle/messages/devicebound', { deviceId: 'orphan-settle' }, { credit: 5, settle: 'manual' });
      await waitFor(() => device.attaches === 1, 'the first attach');
      started().faults.detachLinks((a) => a.kind === 'c2d');
      await waitFor(() => device.attaches >= 2, 'the receiver to attach again');
      await delay(600);
      // Within the credit of 5: the hub spreads them over every C2D link it holds.
      for (let i = 0; i < 4; i++) enqueue('orphan-settle', message(`os-${i}`));
      await waitFor(() => device.messages.length === 4, 'four messages');
      const outcomes = await Promise.all(device.messages.map((m) => outcomeOf(m.settle('complete'))));
      assert.deepEqual(outcomes, ['resolved', 'resolved', 'resolved', 'resolved']);
      assert.equal(started().c2d.depth('orphan-settle'), 0);
    });

    it('re-attaches after the connection drops and keeps receiving', async () => {
      hub = await startTestHub();
      const device = deviceReceiver('dropped', { credit: 5, settle: 'auto' });
      enqueue('dropped', message('x-before'));
      await waitFor(() => device.messages.length === 1, 'the first message');
      const accepted = started().stats.connectionsAccepted;
      assert.ok(started().faults.dropConnections() >= 1);
      await waitFor(() => device.attaches === 2, 'the receiver to attach on the new connection');
      assert.equal(device.detaches[0]?.code, 'NotConnected');
      assert.ok(started().stats.connectionsAccepted > accepted, 'a new connection');
      for (let i = 0; i < 3; i++) enqueue('dropped', message(`x-after-${i}`));
      await waitFor(() => device.messages.length === 4, 'the messages after the drop');
      assert.deepEqual(device.messages.map(idOf), ['x-before', 'x-after-0', 'x-after-1', 'x-after-2']);
      await waitFor(() => started().c2d.depth('dropped') === 0, 'the queue to empty');
      assert.equal(c2dLinks(), 1);
    });

    it('a message delivered before a drop and settled after it rejects with MessageLockLost and is delivered again', async () => {
      hub = await startTestHub();
      const device = deviceReceiver('lost-lock', { credit: 5, settle: 'manual' });
      enqueue('lost-lock', message('held'));
      await waitFor(() => device.messages.length === 1, 'the message');
      const held = device.messages[0];
      started().faults.dropConnections();
      await waitFor(() => device.attaches === 2, 'the receiver to attach again');
      assert.equal(await outcomeOf(held.settle('complete')), 'MessageLockLost');
      await waitFor(() => device.messages.length === 2, 'the redelivery');
      const again = device.messages[1];
      assert.equal(idOf(again), 'held');
      assert.notEqual(again.lockToken, held.lockToken);
      assert.equal(started().c2d.depth('lost-lock'), 1, 'the lost settle did not complete it');
      await again.settle('complete');
      assert.equal(started().c2d.depth('lost-lock'), 0);
      await delay(150);
      assert.equal(device.messages.length, 2);
    });

    // A socket destroyed without an error emits only 'close'; rhea would then keep its heartbeat timer armed.
    it('dropping a connection leaves no timer running once the hub and the connection are closed', async () => {
      const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
      // Mocha arms this test's own timeout after the first await: count from there.
      await delay(1);
      const before = timers();
      hub = await startTestHub();
      const device = deviceReceiver('no-leak', { credit: 5, settle: 'auto' });
      await waitFor(() => device.attaches === 1, 'the first attach');
      started().faults.dropConnections();
      await waitFor(() => device.attaches === 2, 'the receiver to attach again');
      for (const c of connections.splice(0)) await c.close();
      await started().close();
      hub = undefined;
      await delay(500);
      assert.ok(timers() <= before, `timers before ${before}, after ${timers()}`);
    });

    it('a settle attempted while the connection is down rejects with MessageLockLost at once', async () => {
      hub = await startTestHub();
      const device = deviceReceiver('down-settle', { credit: 5, settle: 'manual' });
      enqueue('down-settle', message('in-hand'));
      await waitFor(() => device.messages.length === 1, 'the message');
      hub.faults.refuseConnections(60_000);
      started().faults.dropConnections();
      await waitFor(() => device.detaches.length === 1, 'the receiver to notice the drop');
      assert.equal(await outcomeOf(device.messages[0].settle('complete')), 'MessageLockLost');
      started().faults.refuseConnections(0);
      await waitFor(() => device.messages.length === 2, 'the redelivery after reconnecting');
      await device.messages[1].settle('complete');
      assert.equal(started().c2d.depth('down-settle'), 0);
    });
  });

  describe('Event Hubs partition reader', () => {
    function partitionZeroDevice(h: SimulatedHub): string {
      for (let i = 0; i < 1000; i++) {
        const id = `eh-dev-${i}`;
        if (partitionForDevice(id, h.partitions.length) === 0) return id;
      }
      throw new Error('no device id maps to partition 0');
    }

    function sequenceOf(received: Received): number {
      return Number(annotation(received, 'x-opt-sequence-number'));
    }

    it('receives stored events from a sequence number and resumes after the last one seen across drops', async () => {
      hub = await startTestHub();
      const h = started();
      const deviceId = partitionZeroDevice(h);
      // Events before the start point must not be read.
      for (let i = 0; i < 3; i++) h.ingest(deviceId, undefined, message(`old-${i}`));
      const startAfter = 2;

      const identity = parseConnectionString(h.eventHubConnectionString());
      assert.equal(identity.kind, 'eventhub');
      const connection = connect(identity);
      let lastSeen = startAfter;
      const selectors: string[] = [];
      const reader = receive(
        connection,
        `${h.options.hubName}/ConsumerGroups/$Default/Partitions/0`,
        {},
        {
          credit: 10,
          settle: 'auto',
          attachOptions: () => {
            const expression = `amqp.annotation.x-opt-sequence-number > '${lastSeen}'`;
            selectors.push(expression);
            return {
              source: {
                address: `${h.options.hubName}/ConsumerGroups/$Default/Partitions/0`,
                filter: { 'apache.org:selector-filter:string': rhea.types.wrap_described(expression, SELECTOR_DESCRIPTOR) },
              },
            };
          },
        },
      );
      reader.receiver.on('message', (m: Received) => {
        lastSeen = sequenceOf(m);
      });

      for (let i = 0; i < 5; i++) h.ingest(deviceId, undefined, message(`e-${i}`, { application_properties: { i } }));
      await waitFor(() => reader.messages.length === 5, 'five events');
      assert.deepEqual(reader.messages.map(idOf), ['e-0', 'e-1', 'e-2', 'e-3', 'e-4']);
      assert.deepEqual(reader.messages.map(sequenceOf), [3, 4, 5, 6, 7]);
      const first = reader.messages[0];
      assert.equal(first.message.message_annotations?.['iothub-connection-device-id'], deviceId);
      assert.deepEqual(first.message.application_properties, { i: 0 });
      assert.equal(bodyText(first), 'body of e-0');

      for (let round = 0; round < 3; round++) {
        const before = reader.messages.length;
        const attaches = reader.attaches;
        h.faults.dropConnections();
        // Some events arrive while the reader is away, some after it is back.
        for (let i = 0; i < 3; i++) h.ingest(deviceId, undefined, message(`r${round}-away-${i}`));
        await waitFor(() => reader.attaches === attaches + 1, `the reader to attach again (round ${round})`);
        for (let i = 0; i < 2; i++) h.ingest(deviceId, undefined, message(`r${round}-back-${i}`));
        await waitFor(() => reader.messages.length === before + 5, `the events of round ${round}`);
      }
      await delay(200);
      const sequences = reader.messages.map(sequenceOf);
      const expected = Array.from({ length: 5 + 15 }, (_, i) => i + 3);
      assert.deepEqual(sequences, expected, 'no gap and no repeat');
      assert.equal(selectors.length, 4);
      assert.equal(selectors[0], "amqp.annotation.x-opt-sequence-number > '2'");
      assert.equal(selectors[1], "amqp.annotation.x-opt-sequence-number > '7'", 'the second attach resumes after the last event seen');
      assert.equal(h.eventHub.readerCount, 1);
    });

    it('without a filter it reads the partition from the start, and only partition 0', async () => {
      hub = await startTestHub();
      const h = started();
      const zero = partitionZeroDevice(h);
      let other = '';
      for (let i = 0; other === ''; i++) if (partitionForDevice(`other-${i}`, h.partitions.length) !== 0) other = `other-${i}`;
      h.ingest(zero, undefined, message('p0-a'));
      h.ingest(other, undefined, message('elsewhere'));
      h.ingest(zero, undefined, message('p0-b'));
      const connection = connect(parseConnectionString(h.eventHubConnectionString()));
      const reader = receive(connection, `${h.options.hubName}/ConsumerGroups/$Default/Partitions/0`, {}, { credit: 5, settle: 'auto' });
      await waitFor(() => reader.messages.length === 2, 'the two events of partition 0');
      await delay(200);
      assert.deepEqual(reader.messages.map(idOf), ['p0-a', 'p0-b']);
    });
  });

  // The hub answers some attaches with attach plus detach. When other links attach on the same
  // connection at the same moment, both frames are read together and the detach is reported before
  // the link's creation resolves; it used to be dropped, so the redirect was never seen.
  describe('a detach that comes with the attach', () => {
    it('discoverEventHub sees the redirect while another receiver attaches on the same connection', async () => {
      hub = await startTestHub();
      for (let round = 0; round < 5; round++) {
        const connection = connect(parseConnectionString(started().serviceConnectionString()), { operationTimeoutMs: 5000 });
        receive(connection, '/messages/serviceBound/feedback', {}, { credit: 10, settle: 'manual' });
        const redirect = await discoverEventHub(connection, 5000);
        assert.equal(redirect.entityPath, started().options.hubName);
      }
    });

    it('a refused attach is reported as a detach, and the link tries again, when another link attaches with it', async () => {
      hub = await startTestHub();
      const connection = connect(parseConnectionString(started().serviceConnectionString()));
      receive(connection, '/messages/serviceBound/feedback', {}, { credit: 10, settle: 'manual' });
      const refused = receive(connection, '/messages/no-such-address', {}, { credit: 1, settle: 'auto' });
      await waitFor(() => refused.detaches.length >= 2, 'the refusal reported, and again after a retry');
      assert.equal(refused.detaches[0].condition, 'amqp:not-found');
    });
  });
});
