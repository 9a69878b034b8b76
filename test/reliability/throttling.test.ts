/**
 * Throttling: the hub answers every send with `device-container-throttled` for a while. Senders
 * pause and try again (nothing fails at a Catch node), and when the hub takes messages again every one
 * arrives exactly once (a throttled send is refused, never stored, so nothing may repeat) and in
 * order per device: after a refusal a sender waits for the whole round's answers and then sends one
 * message alone until the hub takes one.
 */
import { strict as assert } from 'node:assert';
import rhea = require('rhea');
import { parseConnectionString } from '../../src/iothub/connection-string';
import { HubConnection } from '../../src/iothub/hub-connection';
import { HubSender } from '../../src/iothub/links';
import type { SimulatedHub } from '../../src/simulator';
import { startTestHub } from '../helpers/hub';
import { until } from './faults';
import { problemsOf } from './ledger';
import { Pipeline } from './pipeline';

const DEVICES = ['thr-a', 'thr-b', 'thr-c'];

describe('reliability: throttling', function () {
  this.timeout(120_000);
  let hub: SimulatedHub | undefined;
  let pipeline: Pipeline | undefined;
  let connection: HubConnection | undefined;

  afterEach(async () => {
    await pipeline?.close();
    pipeline = undefined;
    await connection?.close();
    connection = undefined;
    await hub?.close();
    hub = undefined;
  });

  it('c2d-send and device senders back off while throttled; afterwards every message arrives exactly once', async () => {
    hub = await startTestHub({ c2d: { maxQueueDepth: 10_000 } });
    const started = hub;
    pipeline = await Pipeline.start(started, { devices: DEVICES });
    await pipeline.waitReady();
    pipeline.burst(5);
    await pipeline.drain();
    started.faults.throttleFor(10 * 60_000);
    const perPhase = 6;
    pipeline.burst(perPhase);
    const held = DEVICES.length * perPhase * 2;
    // Every held message refused once, then each sender (one per device, and c2d-send's) tries again
    // a few times with one message, paced by its backoff.
    const wanted = held + 3 * (DEVICES.length + 1);
    await until(
      () => started.stats.throttled >= wanted,
      () => `throttled retries (${started.stats.throttled} of ${wanted})`,
    );
    assert.equal(pipeline.d2c.pendingCount + pipeline.c2d.pendingCount, held, 'nothing got through or failed while throttled');
    started.faults.throttleFor(0);
    pipeline.burst(perPhase);
    await pipeline.drain();
    const reports = [
      ...problemsOf('D2C', pipeline.d2c.report(), { order: true }),
      ...problemsOf('telemetry-in', pipeline.telemetry.report(), { order: true }),
      ...problemsOf('C2D', pipeline.c2d.report(), { order: false }),
      ...pipeline.unexpected,
    ];
    assert.deepEqual(reports, []);
    assert.equal(pipeline.d2c.report().duplicates, 0, 'a throttled message was stored');
    assert.equal(pipeline.c2d.report().duplicates, 0, 'a throttled C2D message was queued');
  });

  it('a refused burst is sent again in its order, one message alone until the hub takes one, never stalling between rounds', async () => {
    hub = await startTestHub();
    const started = hub;
    // Jitter that shrinks with every call: the last refusal of a round asks for the shortest pause.
    let r = 1;
    connection = new HubConnection(parseConnectionString(started.deviceConnectionString('thr-burst')), {
      transport: 'amqps',
      connectHost: '127.0.0.1',
      ca: started.certificate?.cert,
      reconnectMinMs: 20,
      reconnectMaxMs: 200,
      throttleMinMs: 20,
      throttleMaxMs: 200,
      random: () => (r = Math.max(0, r - 0.05)),
    });
    const sender = new HubSender(connection, '/devices/thr-burst/messages/events', { deviceId: 'thr-burst' });
    const message = (id: string): rhea.Message => ({ message_id: id, body: rhea.message.data_section(Buffer.from(id)) }) as rhea.Message;
    await sender.send(message('warm-up'));
    const ids = Array.from({ length: 10 }, (_, i) => `burst-${i}`);
    // The whole burst is refused, then the first message alone three times, then the hub takes them.
    started.faults.throttleNext(ids.length + 3);
    let settled = 0;
    const failures: string[] = [];
    for (const id of ids)
      sender.send(message(id)).then(
        () => settled++,
        (err: Error) => failures.push(err.message),
      );
    await until(
      () => settled + failures.length === ids.length,
      () => `the burst (${settled} accepted, ${started.stats.throttled} refusals so far)`,
    );
    assert.deepEqual(failures, []);
    assert.equal(started.stats.throttled, ids.length + 3);
    assert.deepEqual(
      [...started.events()].map((e) => String(e.message.message_id)),
      ['warm-up', ...ids],
    );
  });
});
