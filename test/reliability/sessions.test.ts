/**
 * A session must never stall. rhea frees a session's 2048 delivery slots only in order, once each
 * delivery is settled at both ends, and transmits queued deliveries in order across all of a session's
 * links: one delivery that nobody will settle (its link detached, or a receiver in rcv-settle-mode
 * second that sends nothing after the hub's settlement), or one queued beyond its link's credit when
 * the link detaches, would stop every link on that session for good. Each case runs past 2048.
 */
import { strict as assert } from 'node:assert';
import rhea = require('rhea');
import { ReceiverEvents, type EventContext, type Receiver } from 'rhea-promise';
import { parseConnectionString } from '../../src/iothub/connection-string';
import { HubConnection } from '../../src/iothub/hub-connection';
import { HubSender } from '../../src/iothub/links';
import type { SimulatedHub } from '../../src/simulator';
import { outcomeState } from '../../src/simulator/amqp';
import { startTestHub } from '../helpers/hub';
import { asOwner, openRaw, type RawClient } from '../helpers/raw';
import { until } from './faults';

/** Settles a delivery on this side only, sending nothing: what a client does once the other side is done. */
function settleLocally(delivery: unknown): void {
  (delivery as { settled: boolean }).settled = true;
}

function message(id: string): rhea.Message {
  return { message_id: id, body: rhea.message.data_section(Buffer.from(id)) } as rhea.Message;
}

describe('reliability: sessions never stall', function () {
  this.timeout(120_000);
  let hub: SimulatedHub | undefined;
  const clients: RawClient[] = [];
  let connection: HubConnection | undefined;

  afterEach(async () => {
    for (const c of clients.splice(0)) await c.close().catch(() => undefined);
    await connection?.close();
    connection = undefined;
    await hub?.close();
    hub = undefined;
  });

  async function owner(h: SimulatedHub): Promise<RawClient> {
    const client = await openRaw(h);
    clients.push(client);
    await asOwner(h, client);
    return client;
  }

  async function queueC2d(client: RawClient, deviceId: string, count: number): Promise<void> {
    const sender = await client.connection.createAwaitableSender({ target: { address: '/messages/devicebound' } });
    for (let i = 0; i < count; i += 200) {
      const chunk: Array<Promise<unknown>> = [];
      for (let j = i; j < Math.min(count, i + 200); j++)
        chunk.push(sender.send({ ...message(`c-${j}`), to: `/devices/${deviceId}/messages/devicebound` } as rhea.Message));
      await Promise.all(chunk);
    }
    await sender.close();
  }

  it('the simulator: a device in rcv-settle-mode second that sends nothing after the settlement keeps receiving past 2048', async () => {
    hub = await startTestHub({ c2d: { maxQueueDepth: 5000 } });
    hub.registry.addDevice('mode2');
    const client = await owner(hub);
    const total = 2300;
    await queueC2d(client, 'mode2', total);
    let got = 0;
    const receiver: Receiver = await client.connection.createReceiver({
      source: { address: '/devices/mode2/messages/devicebound' },
      rcv_settle_mode: 1,
      autoaccept: false,
      // Like a client that, once the hub has settled, sends no settlement of its own (none is required).
      autosettle: false,
      credit_window: 100,
      onMessage: (ctx: EventContext) => {
        got++;
        ctx.delivery?.update(false, outcomeState('accepted'));
      },
      onError: () => undefined,
    } as never);
    receiver.on(ReceiverEvents.settled, (ctx: EventContext) => settleLocally(ctx.delivery));
    await until(
      () => got === total,
      () => `every C2D message (${got} of ${total})`,
    );
    await receiver.close();
  });

  it('the simulator: C2D deliveries a detached device never settled do not hold the session', async () => {
    hub = await startTestHub({ c2d: { maxQueueDepth: 5000 } });
    const started = hub;
    started.registry.addDevice('holder');
    const client = await owner(started);
    await queueC2d(client, 'holder', 500);
    const session = await client.connection.createSession();
    // Each round takes 500 messages, settles none, and has its link detached by the hub: the same
    // messages come back to the next link. Five rounds leave 2500 deliveries nobody will settle.
    for (let round = 0; round < 6; round++) {
      const got: unknown[] = [];
      const receiver = await session.createReceiver({
        source: { address: '/devices/holder/messages/devicebound' },
        autoaccept: false,
        credit_window: 500,
        onMessage: (ctx: EventContext) => got.push(ctx.delivery),
        onError: () => undefined,
      });
      await until(
        () => got.length === 500,
        () => `round ${round}: 500 messages (${got.length})`,
      );
      assert.equal(
        started.faults.detachLinks((a) => a.kind === 'c2d'),
        1,
      );
      await until(
        () => !receiver.isOpen(),
        () => 'the detach',
      );
      // The client forgets them too (as HubReceiver does): this test is about the hub's side.
      got.forEach(settleLocally);
      receiver.removeAllListeners();
    }
  });

  it('the client: a sender whose link is detached mid-burst, again and again, keeps sending on its session', async () => {
    hub = await startTestHub();
    const started = hub;
    connection = new HubConnection(parseConnectionString(started.deviceConnectionString('burst')), {
      transport: 'amqps',
      connectHost: '127.0.0.1',
      ca: started.certificate?.cert,
      reconnectMinMs: 20,
      reconnectMaxMs: 100,
    });
    const conn = connection;
    const sender = new HubSender(conn, '/devices/burst/messages/events', { deviceId: 'burst' }, { maxPending: 100_000 });
    let stored = 0;
    let sent = 0;
    started.on('d2c', () => stored++);
    // Bursts larger than the hub's credit (500), each cut by a detach while most are in flight: the
    // deliveries the hub will never settle, and any queued past the credit, must not pile up.
    for (let round = 0; round < 6; round++) {
      const target = stored + 10;
      const detach = (): void => {
        if (stored < target) return;
        started.off('d2c', detach);
        started.faults.detachLinks((a) => a.kind === 'd2c');
      };
      started.on('d2c', detach);
      const all: Array<Promise<void>> = [];
      for (let i = 0; i < 1000; i++) all.push(sender.send(message(`b-${sent++}`)));
      const outcomes = Promise.allSettled(all);
      await until(
        () => sender.pending === 0,
        () => `round ${round}: the burst (${sender.pending} pending, ${stored} stored)`,
      );
      assert.deepEqual(
        (await outcomes).filter((o) => o.status === 'rejected'),
        [],
      );
      started.off('d2c', detach);
    }
    assert.equal(conn.state, 'open', 'link faults only: the connection stayed');
    const ids = new Set([...started.events()].map((e) => String(e.message.message_id)));
    assert.equal(ids.size, sent, 'every message arrived');
  });
});
