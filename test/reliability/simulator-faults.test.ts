/**
 * The simulator's fault controls that the reliability suite leans on: timed throttling, blocked
 * put-token, what the hub holds locked, and that nothing is taken on a link, session or connection the
 * hub has already closed (its outcome could never reach the client, which sends it again).
 */
import { strict as assert } from 'node:assert';
import rhea = require('rhea');
import type { EventContext } from 'rhea-promise';
import type { SimulatedHub } from '../../src/simulator';
import { HubError } from '../../src/iothub/errors';
import { startTestHub, waitFor } from '../helpers/hub';
import { asOwner, deviceToken, openRaw, serviceToken, type RawClient } from '../helpers/raw';

function message(id: string): rhea.Message {
  return { message_id: id, body: rhea.message.data_section(Buffer.from(id)) } as rhea.Message;
}

function storedIds(hub: SimulatedHub): string[] {
  return [...hub.events()].map((e) => String(e.message.message_id));
}

describe('reliability: simulator fault controls', function () {
  let hub: SimulatedHub;
  const clients: RawClient[] = [];

  afterEach(async () => {
    for (const c of clients.splice(0)) await c.close().catch(() => undefined);
    await hub?.close();
  });

  async function raw(): Promise<RawClient> {
    const client = await openRaw(hub);
    clients.push(client);
    await asOwner(hub, client);
    return client;
  }

  const closers: Array<[string, (h: SimulatedHub) => number]> = [
    ['closed the connection', (h) => h.faults.closeConnections()],
    ['ended the session', (h) => h.faults.endSessions()],
    ['detached the link', (h) => h.faults.detachLinks((a) => a.kind === 'd2c')],
    ['dropped the socket', (h) => h.faults.dropConnections()],
  ];
  for (const [what, close] of closers) {
    it(`takes no message that arrives after it ${what}`, async () => {
      hub = await startTestHub();
      const client = await raw();
      const session = await client.connection.createSession();
      const sender = await session.createAwaitableSender({ target: { address: '/devices/late/messages/events' } });
      await sender.send(message('before'));
      // The hub acts first; the client's transfer is already on its way and lands after that.
      assert.ok(close(hub) > 0);
      void sender.send(message('after')).catch(() => undefined);
      await waitFor(() => !sender.isOpen() || !client.connection.isOpen(), 'the client to hear of it');
      // A message sent on a fresh connection proves the hub read everything the first one sent.
      const other = await raw();
      const probe = await other.connection.createAwaitableSender({ target: { address: '/devices/late/messages/events' } });
      await probe.send(message('probe'));
      assert.deepEqual(storedIds(hub), ['before', 'probe']);
    });
  }

  it('throttleFor answers every send with throttling until it ends, then accepts', async () => {
    hub = await startTestHub();
    const client = await raw();
    const sender = await client.connection.createAwaitableSender({ target: { address: '/devices/slow/messages/events' } });
    hub.faults.throttleFor(60_000);
    for (const id of ['t1', 't2', 't3']) {
      await assert.rejects(sender.send(message(id)), (err: { innerError?: { condition?: string } }) => {
        assert.equal(err.innerError?.condition, 'com.microsoft:device-container-throttled');
        return true;
      });
    }
    hub.faults.throttleFor(0);
    await sender.send(message('t4'));
    assert.deepEqual(storedIds(hub), ['t4']);
  });

  it('blockPutTokens refuses with 401, or leaves put-token unanswered, until it ends', async () => {
    hub = await startTestHub();
    const client = await openRaw(hub);
    clients.push(client);
    hub.faults.blockPutTokens(60_000, 'refuse');
    await assert.rejects(client.cbs.putToken(hub.hostWithPort, serviceToken(hub)), (err: HubError) => err.code === 'Unauthorized');
    hub.faults.blockPutTokens(60_000, 'ignore');
    let answered = false;
    const unanswered = client.cbs.putToken(`${hub.hostWithPort}/devices/d1`, deviceToken(hub, 'd1')).then(
      () => (answered = true),
      () => (answered = true),
    );
    await waitFor(() => hub.stats.putTokensRefused === 2, 'the ignored put-token to reach the hub');
    hub.faults.blockPutTokens(0);
    // Answers come in order: once a later one is answered, the ignored one never will be.
    await client.cbs.putToken(hub.hostWithPort, serviceToken(hub));
    assert.equal(answered, false);
    void unanswered;
  });

  it('lockedMessageIds lists what a device holds unsettled, and forgets what it settles', async () => {
    hub = await startTestHub();
    const client = await raw();
    hub.registry.addDevice('holder');
    const c2d = await client.connection.createAwaitableSender({ target: { address: '/messages/devicebound' } });
    for (const id of ['m1', 'm2']) await c2d.send({ ...message(id), to: '/devices/holder/messages/devicebound' } as rhea.Message);
    const deliveries: rhea.Delivery[] = [];
    await client.connection.createReceiver({
      source: { address: '/devices/holder/messages/devicebound' },
      autoaccept: false,
      onMessage: (ctx: EventContext) => {
        if (ctx.delivery) deliveries.push(ctx.delivery as unknown as rhea.Delivery);
      },
      onError: () => undefined,
    });
    await waitFor(() => deliveries.length === 2, 'both deliveries');
    assert.deepEqual(hub.c2d.lockedMessageIds().sort(), ['m1', 'm2']);
    deliveries[0].accept();
    await waitFor(() => hub.c2d.lockedMessageIds().length === 1, 'the settlement');
    assert.deepEqual(hub.c2d.lockedMessageIds(), ['m2']);
  });
});
