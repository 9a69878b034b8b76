/**
 * The device-side core against the simulator: the C2D inbox hands back messages a flow never settles
 * (so they do not hold link credit for ever), and DeviceSenders keeps one bound over every device.
 */
import { strict as assert } from 'node:assert';
import rhea = require('rhea');
import { parseConnectionString } from '../../src/iothub/connection-string';
import { C2dInbox, DeviceSenders } from '../../src/iothub/device';
import { HubError } from '../../src/iothub/errors';
import { HubConnection } from '../../src/iothub/hub-connection';
import type { Received } from '../../src/iothub/links';
import type { SimulatedHub } from '../../src/simulator';
import { delay, startTestHub, waitFor } from '../helpers/hub';

function message(id: string): rhea.Message {
  return { message_id: id, body: rhea.message.data_section(Buffer.from(id)) } as rhea.Message;
}

function codeOf(p: Promise<unknown>): Promise<string> {
  return p.then(
    () => 'ok',
    (err: unknown) => (err instanceof HubError ? err.code : String(err)),
  );
}

describe('device links', function () {
  this.timeout(30_000);
  let hub: SimulatedHub | undefined;
  const connections: HubConnection[] = [];

  afterEach(async () => {
    for (const c of connections.splice(0)) await c.close();
    await hub?.close();
    hub = undefined;
  });

  function connect(sim: SimulatedHub, connectionString: string): HubConnection {
    const connection = new HubConnection(parseConnectionString(connectionString, { gatewayPolicy: true }), {
      transport: 'amqp',
      port: sim.ports.amqp,
      connectHost: '127.0.0.1',
      reconnectMinMs: 50,
      reconnectMaxMs: 200,
    });
    connections.push(connection);
    return connection;
  }

  it('a message the flow never settles is handed back after its lock, freeing the credit it held', async () => {
    // Locks long enough that the redelivered messages are completed within theirs on a busy machine.
    const sim = await startTestHub({ c2d: { lockMs: 1000 } });
    hub = sim;
    const device = sim.registry.addDevice('idle-1');
    const inbox = new C2dInbox(connect(sim, sim.deviceConnectionString('idle-1')), { deviceId: 'idle-1' }, { settle: 'manual', prefetch: 1, handBackMs: 1500 });
    const got: Received[] = [];
    const counts: number[] = [];
    inbox.on('message', (r: Received) => got.push(r));
    inbox.on('unsettled', (n: number) => counts.push(n));
    sim.c2d.enqueue('idle-1', undefined, device.generationId, message('first'));
    sim.c2d.enqueue('idle-1', undefined, device.generationId, message('second'));
    await waitFor(() => got.length === 1, 'the first message');
    // Handed back: the hub answers lock-lost, the credit returns, and the first comes again.
    await waitFor(() => got.length === 2, 'the first message again after the hand-back');
    assert.deepEqual(
      got.map((r) => String(r.message.message_id)),
      ['first', 'first'],
    );
    assert.notEqual(got[1].lockToken, got[0].lockToken);
    assert.equal(await codeOf(inbox.settle(got[0].lockToken, 'complete')), 'MessageLockLost');
    assert.equal(await codeOf(inbox.settle(got[1].lockToken, 'complete')), 'ok');
    await waitFor(() => got.length === 3, 'the second message once credit is back');
    assert.equal(String(got[2].message.message_id), 'second');
    assert.equal(await codeOf(inbox.settle(got[2].lockToken, 'complete')), 'ok');
    assert.deepEqual(counts.slice(0, 3), [1, 0, 1]);
    assert.equal(inbox.unsettled, 0);
    await inbox.close();
  });

  it('the simulator locks a C2D message when it goes out, not while it waits for the device to give credit', async () => {
    // Each message is held 1.2 s of its 2 s lock (room for a slow machine), 2.4 s in all: past the
    // second's queueing time plus the lock, within its own lock.
    const sim = await startTestHub({ c2d: { lockMs: 2000 } });
    hub = sim;
    const device = sim.registry.addDevice('credit-1');
    const inbox = new C2dInbox(connect(sim, sim.deviceConnectionString('credit-1')), { deviceId: 'credit-1' }, { settle: 'manual', prefetch: 1 });
    const got: Received[] = [];
    inbox.on('message', (r: Received) => got.push(r));
    sim.c2d.enqueue('credit-1', undefined, device.generationId, message('a'));
    sim.c2d.enqueue('credit-1', undefined, device.generationId, message('b'));
    await waitFor(() => got.length === 1, 'the first message');
    // Hold the first for most of its lock; the second waits for credit meanwhile.
    await delay(1200);
    assert.equal(got.length, 1, 'nothing past the credit of 1');
    assert.equal(await codeOf(inbox.settle(got[0].lockToken, 'complete')), 'ok');
    await waitFor(() => got.length === 2, 'the second message');
    // Within the second's own lock, though past the time it was queued plus the lock.
    await delay(1200);
    assert.equal(await codeOf(inbox.settle(got[1].lockToken, 'complete')), 'ok');
    assert.equal(sim.c2d.depth('credit-1'), 0);
    await inbox.close();
  });

  it('a dropped connection forgets every lock; their tokens fail with MessageLockLost and the messages come again', async () => {
    const sim = await startTestHub();
    hub = sim;
    const device = sim.registry.addDevice('drop-1');
    const inbox = new C2dInbox(connect(sim, sim.deviceConnectionString('drop-1')), { deviceId: 'drop-1' }, { settle: 'manual', prefetch: 5 });
    const got: Received[] = [];
    inbox.on('message', (r: Received) => got.push(r));
    sim.c2d.enqueue('drop-1', undefined, device.generationId, message('held'));
    await waitFor(() => got.length === 1, 'the message');
    assert.equal(inbox.unsettled, 1);
    sim.faults.dropConnections();
    await waitFor(() => got.length === 2, 'the message again after the reconnect');
    assert.equal(inbox.unsettled, 1, 'only the new delivery waits');
    assert.equal(await codeOf(inbox.settle(got[0].lockToken, 'complete')), 'MessageLockLost');
    assert.equal(await codeOf(inbox.settle(got[1].lockToken, 'complete')), 'ok');
    await waitFor(() => sim.c2d.depth('drop-1') === 0, 'completed');
    await inbox.close();
  });

  it('DeviceSenders bounds what waits across every device, keeps order per device, and fails what waits on close', async () => {
    const sim = await startTestHub();
    hub = sim;
    const connection = connect(sim, sim.serviceConnectionString('device'));
    const senders = new DeviceSenders(Promise.resolve(connection), { maxPending: 4 });
    await senders.send({ deviceId: 'x-1' }, message('warm'));
    sim.faults.refuseConnections(60_000);
    sim.faults.dropConnections();
    await delay(50);
    const results = ['a-0', 'b-0', 'a-1', 'b-1', 'a-2'].map((id) => codeOf(senders.send({ deviceId: id.startsWith('a') ? 'x-1' : 'x-2' }, message(id))));
    assert.equal(await results[4], 'BufferFull');
    assert.equal(senders.pending, 4);
    sim.faults.refuseConnections(0);
    assert.deepEqual(await Promise.all(results.slice(0, 4)), ['ok', 'ok', 'ok', 'ok']);
    assert.equal(senders.pending, 0);
    assert.equal(senders.devices, 2);
    const order = (deviceId: string): string[] =>
      [...sim.events()]
        .filter((e) => e.message.message_annotations?.['iothub-connection-device-id'] === deviceId)
        .sort((a, b) => a.event.sequenceNumber - b.event.sequenceNumber)
        .map((e) => String(e.message.message_id));
    assert.deepEqual(order('x-1'), ['warm', 'a-0', 'a-1']);
    assert.deepEqual(order('x-2'), ['b-0', 'b-1']);

    sim.faults.refuseConnections(60_000);
    sim.faults.dropConnections();
    await delay(50);
    const waiting = codeOf(senders.send({ deviceId: 'x-1' }, message('never')));
    await senders.close();
    assert.equal(await waiting, 'Closed');
    assert.equal(await codeOf(senders.send({ deviceId: 'x-1' }, message('after'))), 'Closed');
    assert.equal(connection.listenerCount('scopeError'), 0, 'no listener left on the shared connection');
  });

  it('DeviceSenders closes an idle device sender (its link) and makes it again on its next message; a busy one stays', async () => {
    const sim = await startTestHub();
    hub = sim;
    const connection = connect(sim, sim.serviceConnectionString('device'));
    const senders = new DeviceSenders(Promise.resolve(connection), { maxPending: 10, idleCloseMs: 1000 });
    connection.open();
    await waitFor(() => connection.state === 'open', 'the connection', 5000);
    const baseline = { links: sim.snapshot().links, scopes: connection.scopeCount };
    await senders.send({ deviceId: 'quiet' }, message('q-0'));
    await senders.send({ deviceId: 'busy' }, message('b-0'));
    assert.equal(senders.devices, 2);
    assert.equal(sim.snapshot().links, baseline.links + 2);
    assert.equal(connection.scopeCount, baseline.scopes, 'a gateway puts no token per device: its hub-level token covers them');
    // busy sends every 50 ms for three times the idle time (a loaded machine may stretch a gap, not to a second); quiet sends nothing.
    for (let i = 1; i <= 60; i++) {
      await senders.send({ deviceId: 'busy' }, message(`b-${i}`));
      await delay(50);
    }
    assert.equal(senders.devices, 1, 'the quiet sender is closed, the busy one kept');
    await waitFor(() => senders.devices === 0, 'the busy sender to close once it is idle too', 5000);
    await waitFor(() => sim.snapshot().links === baseline.links, 'both links detached at the hub', 5000);
    assert.equal(connection.scopeCount, baseline.scopes, 'still only the hub-level token');
    await senders.send({ deviceId: 'quiet' }, message('q-1'));
    assert.equal(senders.devices, 1);
    const ids = (deviceId: string): string[] =>
      [...sim.events()].filter((e) => e.message.message_annotations?.['iothub-connection-device-id'] === deviceId).map((e) => String(e.message.message_id));
    assert.deepEqual(ids('quiet'), ['q-0', 'q-1']);
    assert.equal(ids('busy').length, 61);
    await senders.close();
  });
});
