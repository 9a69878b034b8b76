/**
 * Outcomes decided in the same tick for different messages must each reach the other side as decided.
 * rhea 3.0.5 merges the first two dispositions of a flush into one range whatever their outcomes; the
 * simulator (refusing one message and accepting the next) and HubReceiver (settling several messages
 * from a flow at once) both work around it. Without that, a refused message reads as stored, and an
 * abandoned one is completed and lost.
 */
import { strict as assert } from 'node:assert';
import rhea = require('rhea');
import type { Client as ServiceClient } from 'azure-iothub';
import { parseConnectionString } from '../../src/iothub/connection-string';
import { HubError } from '../../src/iothub/errors';
import { HubConnection, type HubConnectionOptions } from '../../src/iothub/hub-connection';
import { HubReceiver, HubSender, type Received, type Settlement } from '../../src/iothub/links';
import type { SimulatedHub } from '../../src/simulator';
import { startTestHub, waitFor, delay } from '../helpers/hub';
import { closeQuietly, collectFeedback, openService } from '../helpers/sdk';

function message(id: string, bytes = 10): rhea.Message {
  return { message_id: id, body: rhea.message.data_section(Buffer.alloc(bytes, 0x61)) } as rhea.Message;
}

function outcome(p: Promise<void>): Promise<string> {
  return p.then(
    () => 'accepted',
    (err: unknown) => (err instanceof HubError ? err.code : String(err)),
  );
}

describe('outcomes decided in the same tick', function () {
  this.timeout(30_000);
  let hub: SimulatedHub | undefined;
  let service: ServiceClient | undefined;
  const connections: HubConnection[] = [];

  afterEach(async () => {
    for (const c of connections.splice(0)) await c.close();
    await closeQuietly(service);
    service = undefined;
    await hub?.close();
    hub = undefined;
  });

  function deviceConnection(sim: SimulatedHub, deviceId: string, extra: HubConnectionOptions = {}): HubConnection {
    const connection = new HubConnection(parseConnectionString(sim.deviceConnectionString(deviceId)), {
      transport: 'amqp',
      port: sim.ports.amqp,
      connectHost: '127.0.0.1',
      reconnectMinMs: 50,
      reconnectMaxMs: 200,
      throttleMinMs: 50,
      throttleMaxMs: 200,
      ...extra,
    });
    connections.push(connection);
    return connection;
  }

  it('the simulator reports an accept and a refusal of the same tick as such, in either order', async () => {
    const sim = await startTestHub({ d2c: { maxMessageBytes: 100 } });
    hub = sim;
    const sender = new HubSender(deviceConnection(sim, 'mixed-1'), '/devices/mixed-1/messages/events', { deviceId: 'mixed-1' });
    await sender.send(message('warm-up'));
    const first = await Promise.all([outcome(sender.send(message('small-1'))), outcome(sender.send(message('big-1', 300)))]);
    const second = await Promise.all([outcome(sender.send(message('big-2', 300))), outcome(sender.send(message('small-2')))]);
    assert.deepEqual(first, ['accepted', 'MessageTooLarge']);
    assert.deepEqual(second, ['MessageTooLarge', 'accepted']);
    const stored = [...sim.events()].map((e) => String(e.message.message_id)).sort();
    assert.deepEqual(stored, ['small-1', 'small-2', 'warm-up']);
  });

  it('a throttled message and the accepted one after it are each stored once', async () => {
    const sim = await startTestHub();
    hub = sim;
    const sender = new HubSender(deviceConnection(sim, 'mixed-2'), '/devices/mixed-2/messages/events', { deviceId: 'mixed-2' });
    await sender.send(message('warm-up'));
    sim.faults.throttleNext(1);
    await Promise.all([sender.send(message('throttled')), sender.send(message('next'))]);
    const stored = [...sim.events()].map((e) => String(e.message.message_id)).sort();
    assert.deepEqual(stored, ['next', 'throttled', 'warm-up']);
  });

  it('after throttling, a sender pauses on the throttling schedule, not the reconnect one', async () => {
    const sim = await startTestHub();
    hub = sim;
    // Reconnects would retry after 50-200 ms; the throttling pause is at least 600 ms here (10 s by default).
    const sender = new HubSender(deviceConnection(sim, 'slow-down', { throttleMinMs: 600, throttleMaxMs: 1200 }), '/devices/slow-down/messages/events', {
      deviceId: 'slow-down',
    });
    await sender.send(message('warm-up'));
    const sends: number[] = [];
    sim.on('d2c', () => sends.push(Date.now()));
    sim.faults.throttleNext(1);
    const refusedAt = Date.now();
    await sender.send(message('throttled'));
    assert.equal(sim.stats.throttled, 1);
    assert.equal(sends.length, 1);
    assert.ok(sends[0] - refusedAt >= 600, `sent again ${sends[0] - refusedAt} ms after the refusal`);
  });

  it('HubReceiver settles complete, abandon, reject and complete from one tick each as asked', async () => {
    const sim = await startTestHub({ feedback: { flushIntervalMs: 50 } });
    hub = sim;
    service = await openService(sim);
    const feedback = await collectFeedback(service);
    const device = sim.registry.addDevice('mixed-3');
    const receiver = new HubReceiver(
      deviceConnection(sim, 'mixed-3'),
      '/devices/mixed-3/messages/devicebound',
      { deviceId: 'mixed-3' },
      { credit: 10, settle: 'manual' },
    );
    const got: Received[] = [];
    receiver.on('message', (r: Received) => got.push(r));
    const plan: Array<[string, Settlement]> = [
      ['a', 'complete'],
      ['b', 'abandon'],
      ['c', 'reject'],
      ['d', 'complete'],
    ];
    for (const [id] of plan) {
      const m = message(id);
      m.application_properties = { 'iothub-ack': 'full' };
      assert.equal(sim.c2d.enqueue('mixed-3', undefined, device.generationId, m), undefined);
    }
    await waitFor(() => got.length === 4, 'four messages');
    const byId = new Map(got.map((r) => [String(r.message.message_id), r]));
    const results = await Promise.all(plan.map(([id, how]) => outcome((byId.get(id) as Received).settle(how))));
    assert.deepEqual(results, ['accepted', 'accepted', 'accepted', 'accepted']);
    await waitFor(() => got.length === 5, 'the abandoned message again');
    assert.equal(String(got[4].message.message_id), 'b');
    assert.equal(Number(got[4].message.message_annotations?.['iothub-deliverycount']), 1);
    await waitFor(() => feedback.length === 3, 'three feedback records');
    await delay(100);
    assert.deepEqual(feedback.map((f) => `${f.originalMessageId}:${f.statusCode}`).sort(), ['a:Success', 'c:Rejected', 'd:Success']);
    await receiver.close();
  });
});
