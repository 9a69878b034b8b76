/**
 * HubConnection against the simulator over real sockets: every identity on every transport, token
 * renewal without re-attaching, reconnects without loss, backoff, hygiene, and gateways.
 */
import { strict as assert } from 'node:assert';
import * as net from 'node:net';
import rhea = require('rhea');
import { parseConnectionString, type Identity } from '../../src/iothub/connection-string';
import { HubConnection, type HubConnectionOptions, type HubState } from '../../src/iothub/hub-connection';
import { C2dInbox, deviceAddress, DeviceSenders, scopeOf } from '../../src/iothub/device';
import { HubSender } from '../../src/iothub/links';
import { expiryIn, makeSasToken } from '../../src/iothub/sas';
import type { SimulatedHub } from '../../src/simulator';
import { delay, startTestHub, waitFor } from '../helpers/hub';
import { RecordingClock } from '../helpers/clock';
import { deviceToken, openRaw } from '../helpers/raw';

type TransportName = 'amqp' | 'amqps' | 'amqpws';

function transportOptions(hub: SimulatedHub, transport: TransportName): HubConnectionOptions {
  if (transport === 'amqp') return { transport, port: hub.ports.amqp, connectHost: '127.0.0.1' };
  if (transport === 'amqpws') return { transport, port: hub.ports.ws, connectHost: '127.0.0.1', ca: hub.certificate?.cert };
  return { transport, ca: hub.certificate?.cert, connectHost: '127.0.0.1' };
}

function waitForState(connection: HubConnection, wanted: HubState, ms = 10_000): Promise<void> {
  if (connection.state === wanted) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`state stayed ${connection.state} (error ${connection.error?.code ?? 'none'}), wanted ${wanted}`)), ms);
    const onState = (state: HubState): void => {
      if (state !== wanted) return;
      clearTimeout(timer);
      connection.off('state', onState);
      resolve();
    };
    connection.on('state', onState);
  });
}

function body(text: string): rhea.Message {
  return { message_id: text, body: rhea.message.data_section(Buffer.from(text)) } as rhea.Message;
}

function arrivedIds(hub: SimulatedHub): string[] {
  return [...hub.events()].map((e) => String(e.message.message_id));
}

describe('HubConnection', function () {
  this.timeout(60_000);
  let hub: SimulatedHub;
  const connections: HubConnection[] = [];

  async function open(identity: Identity, options: HubConnectionOptions): Promise<HubConnection> {
    const connection = new HubConnection(identity, { reconnectMinMs: 100, reconnectMaxMs: 1000, ...options });
    connections.push(connection);
    return connection;
  }

  afterEach(async () => {
    for (const c of connections.splice(0)) await c.close();
    await hub?.close();
  });

  for (const transport of ['amqp', 'amqps', 'amqpws'] as const) {
    describe(`over ${transport}`, () => {
      beforeEach(async () => {
        hub = await startTestHub({ wsPort: 0 });
      });

      it('a device key connects, authenticates and sends', async () => {
        const identity = parseConnectionString(hub.deviceConnectionString('dev-key'));
        const connection = await open(identity, transportOptions(hub, transport));
        const sender = new HubSender(connection, '/devices/dev-key/messages/events', { deviceId: 'dev-key' });
        await sender.send(body(`${transport}-key`));
        assert.equal(connection.state, 'open');
        assert.deepEqual(arrivedIds(hub), [`${transport}-key`]);
      });

      it('a device SAS from the connection string connects and sends', async () => {
        const record = hub.registry.addDevice('dev-sas');
        const sas = makeSasToken({ resource: `${hub.hostWithPort}/devices/dev-sas`, key: record.primaryKey, expiry: expiryIn(600) });
        const identity = parseConnectionString(`HostName=${hub.hostWithPort};DeviceId=dev-sas;SharedAccessSignature=${sas}`);
        const connection = await open(identity, transportOptions(hub, transport));
        const sender = new HubSender(connection, '/devices/dev-sas/messages/events', { deviceId: 'dev-sas' });
        await sender.send(body(`${transport}-sas`));
        assert.deepEqual(arrivedIds(hub), [`${transport}-sas`]);
      });

      it('a module identity sends as its module', async () => {
        const identity = parseConnectionString(hub.deviceConnectionString('edge', 'vision'));
        const connection = await open(identity, transportOptions(hub, transport));
        const sender = new HubSender(connection, '/devices/edge/modules/vision/messages/events', { deviceId: 'edge', moduleId: 'vision' });
        await sender.send(body(`${transport}-module`));
        const [event] = [...hub.events()];
        assert.equal(event.message.message_annotations?.['iothub-connection-module-id'], 'vision');
      });

      it('a service policy sends cloud-to-device', async () => {
        hub.registry.addDevice('target');
        const identity = parseConnectionString(hub.serviceConnectionString('service'));
        const connection = await open(identity, transportOptions(hub, transport));
        const sender = new HubSender(connection, '/messages/devicebound', {}, { errorContext: 'service' });
        await sender.send({ ...body('c2d'), to: '/devices/target/messages/devicebound' } as rhea.Message);
        assert.equal(hub.c2d.depth('target'), 1);
      });

      it('a gateway policy speaks for several devices on one connection', async () => {
        const identity = parseConnectionString(hub.serviceConnectionString(), { gatewayPolicy: true });
        const connection = await open(identity, transportOptions(hub, transport));
        const senders = ['gw-a', 'gw-b', 'gw-c'].map((id) => new HubSender(connection, `/devices/${id}/messages/events`, { deviceId: id }));
        await Promise.all(senders.map((s, i) => s.send(body(`gw-${i}`))));
        assert.equal(hub.snapshot().connections, 1);
        const byDevice = [...hub.events()].map((e) => e.message.message_annotations?.['iothub-connection-device-id']).sort();
        assert.deepEqual(byDevice, ['gw-a', 'gw-b', 'gw-c']);
        assert.equal(connection.scopeCount, 1, 'one hub-level token covers every device (grouped SAS)');
        assert.equal(hub.snapshot().tokens, 1);
      });

      it('a wrong key is refused with Unauthorized and backs off to the cap', async () => {
        hub.registry.addDevice('victim');
        const wrong = Buffer.alloc(32, 9).toString('base64');
        const identity = parseConnectionString(`HostName=${hub.hostWithPort};DeviceId=victim;SharedAccessKey=${wrong}`);
        const connection = await open(identity, { ...transportOptions(hub, transport), reconnectMaxMs: 5000 });
        const retries: number[] = [];
        connection.on('retry', (ms: number) => retries.push(ms));
        const sender = new HubSender(connection, '/devices/victim/messages/events', { deviceId: 'victim' });
        const sent = sender.send(body('never'));
        sent.catch(() => undefined);
        await waitForState(connection, 'reconnecting');
        assert.equal(connection.error?.code, 'Unauthorized');
        assert.deepEqual(retries, [5000]);
        assert.equal(arrivedIds(hub).length, 0);
      });
    });
  }

  it('renews tokens for many lifetimes with sends flowing, no link re-attached and nothing lost', async function () {
    hub = await startTestHub({ sweepIntervalMs: 50 });
    const identity = parseConnectionString(hub.deviceConnectionString('renewer'));
    const connection = await open(identity, { ...transportOptions(hub, 'amqp'), tokenLifetimeSec: 2, tokenRenewMarginSec: 1 });
    let renewals = 0;
    connection.on('renewed', () => renewals++);
    const sender = new HubSender(connection, '/devices/renewer/messages/events', { deviceId: 'renewer' });
    await sender.send(body('first'));
    const attachedAfterFirst = hub.stats.linksAttached;
    const states: HubState[] = [];
    connection.on('state', (s: HubState) => states.push(s));
    const sends: Array<Promise<void>> = [];
    const until = Date.now() + 7000;
    let n = 0;
    while (Date.now() < until) {
      sends.push(sender.send(body(`m-${n++}`)));
      await delay(20);
    }
    await Promise.all(sends);
    assert.ok(renewals >= 4, `renewed ${renewals} times in 7 s with 2 s tokens`);
    assert.deepEqual(states, [], 'the connection never left open');
    assert.equal(hub.stats.linksAttached, attachedAfterFirst, 'no link was attached again');
    assert.equal(hub.stats.linksRefused, 0);
    const ids = arrivedIds(hub);
    assert.equal(ids.length, n + 1, 'every message arrived exactly once');
    assert.equal(new Set(ids).size, n + 1);
  });

  it('reconnects after the simulator drops the connection; every message arrives, duplicates only from those in flight', async () => {
    hub = await startTestHub();
    const identity = parseConnectionString(hub.deviceConnectionString('dropper'));
    const connection = await open(identity, transportOptions(hub, 'amqp'));
    const sender = new HubSender(connection, '/devices/dropper/messages/events', { deviceId: 'dropper' }, { maxPending: 10_000 });
    await sender.send(body('warm-up'));
    const sends: Array<Promise<void>> = [];
    let inFlightAtDrops = 0;
    for (let i = 0; i < 600; i++) {
      sends.push(sender.send(body(`r-${i}`)));
      if (i % 200 === 100) {
        await delay(5);
        inFlightAtDrops += sender.pending;
        hub.faults.dropConnections();
      }
      if (i % 50 === 0) await delay(1);
    }
    await Promise.all(sends);
    const ids = arrivedIds(hub);
    for (let i = 0; i < 600; i++) assert.ok(ids.includes(`r-${i}`), `r-${i} arrived`);
    const duplicates = ids.length - new Set(ids).size;
    assert.ok(duplicates <= inFlightAtDrops, `${duplicates} duplicates, at most ${inFlightAtDrops} were unsettled at the drops`);
    assert.equal(connection.state, 'open');
    // Order per device survives: first arrivals of each id are in send order.
    const firsts = ids.filter((id, i) => id.startsWith('r-') && ids.indexOf(id) === i).map((id) => Number(id.slice(2)));
    assert.deepEqual(
      firsts,
      [...firsts].sort((a, b) => a - b),
    );
  });

  it('holds messages sent while the hub refuses connections and delivers them when it is back', async () => {
    hub = await startTestHub();
    const identity = parseConnectionString(hub.deviceConnectionString('patient'));
    const connection = await open(identity, { ...transportOptions(hub, 'amqp'), reconnectMinMs: 50, reconnectMaxMs: 200 });
    const sender = new HubSender(connection, '/devices/patient/messages/events', { deviceId: 'patient' });
    await sender.send(body('before'));
    hub.faults.refuseConnections(60_000);
    hub.faults.dropConnections();
    await waitForState(connection, 'reconnecting');
    const during = [0, 1, 2, 3, 4].map((i) => sender.send(body(`during-${i}`)));
    // At least one attempt meets the refusal before the hub takes connections again.
    await waitFor(() => hub.stats.connectionsRefused >= 1, 'a refused reconnect');
    hub.faults.refuseConnections(0);
    await Promise.all(during);
    assert.deepEqual(arrivedIds(hub), ['before', 'during-0', 'during-1', 'during-2', 'during-3', 'during-4']);
  });

  it('backs off against a hub that refuses connections: each wait doubles up to the cap, one attempt per wait', async () => {
    hub = await startTestHub();
    hub.faults.refuseConnections(60_000);
    const identity = parseConnectionString(hub.deviceConnectionString('knocker'));
    const clock = new RecordingClock();
    // Jitter fixed at the middle: each wait is 3/4 of its ceiling (50, 100, 200, then the 400 cap).
    const connection = await open(identity, { ...transportOptions(hub, 'amqp'), reconnectMinMs: 50, reconnectMaxMs: 400, random: () => 0.5, clock });
    const delays: number[] = [];
    connection.on('retry', (ms: number) => delays.push(ms));
    new HubSender(connection, '/devices/knocker/messages/events', { deviceId: 'knocker' });
    await waitFor(() => delays.length >= 7, 'seven retries');
    assert.deepEqual(delays.slice(0, 7), [38, 75, 150, 300, 300, 300, 300]);
    for (const wait of delays.slice(0, 7)) assert.ok(clock.waits.includes(wait), `the wait of ${wait} ms went through the clock`);
    // Every retry is one refused connection: no tight loop behind the waits.
    const refused = hub.stats.connectionsRefused;
    assert.ok(refused >= delays.length && refused <= delays.length + 1, `${refused} connections refused for ${delays.length} retries`);
  });

  it('backs off against an unreachable hub too', async () => {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as net.AddressInfo).port;
    await new Promise<void>((r) => server.close(() => r()));
    const identity = parseConnectionString(`HostName=localhost;DeviceId=nobody;SharedAccessKey=${Buffer.alloc(32, 1).toString('base64')}`);
    const connection = await open(identity, { transport: 'amqp', port, connectHost: '127.0.0.1', reconnectMinMs: 50, reconnectMaxMs: 300, random: () => 0.5 });
    const delays: number[] = [];
    connection.on('retry', (ms: number) => delays.push(ms));
    connection.open();
    await waitFor(() => delays.length >= 5, 'five retries');
    assert.deepEqual(delays.slice(0, 5), [38, 75, 150, 225, 225]);
    assert.equal(connection.error?.code, 'NotConnected');
  });

  it('200 connect/close cycles leave no connections, listeners or timers behind', async function () {
    hub = await startTestHub();
    const identity = parseConnectionString(hub.deviceConnectionString('cycler'));
    const handlesBefore = process.getActiveResourcesInfo().filter((r) => r === 'Timeout' || r === 'TCPSocketWrap').length;
    for (let i = 0; i < 200; i++) {
      const connection = new HubConnection(identity, transportOptions(hub, 'amqp'));
      const sender = new HubSender(connection, '/devices/cycler/messages/events', { deviceId: 'cycler' });
      if (i % 20 === 0) await sender.send(body(`cycle-${i}`));
      else await waitForState(connection, 'open');
      await connection.close();
      assert.equal(connection.listenerCount('state'), 0);
    }
    await waitFor(() => hub.snapshot().connections === 0, 'every connection to close at the hub');
    await delay(200);
    const handlesAfter = process.getActiveResourcesInfo().filter((r) => r === 'Timeout' || r === 'TCPSocketWrap').length;
    assert.ok(handlesAfter <= handlesBefore + 2, `handles before ${handlesBefore}, after ${handlesAfter}`);
    assert.equal(arrivedIds(hub).length, 10);
  });

  it('close() returns promptly when the hub is gone', async () => {
    hub = await startTestHub();
    const identity = parseConnectionString(hub.deviceConnectionString('orphan'));
    const connection = new HubConnection(identity, { ...transportOptions(hub, 'amqp'), closeTimeoutMs: 2000 });
    const sender = new HubSender(connection, '/devices/orphan/messages/events', { deviceId: 'orphan' });
    await sender.send(body('one'));
    await hub.close();
    const pending = sender.send(body('lost')).then(
      () => 'sent',
      (err: Error & { code?: string }) => String(err.code),
    );
    const started = Date.now();
    await connection.close();
    assert.ok(Date.now() - started < 15_000);
    assert.equal(await pending, 'Closed', 'a message still waiting fails with Closed, it is not dropped silently');
  });

  it('a gateway of 100 devices shares exactly one AMQP connection, each message with its own device id', async () => {
    hub = await startTestHub();
    const identity = parseConnectionString(hub.serviceConnectionString(), { gatewayPolicy: true });
    const connection = await open(identity, transportOptions(hub, 'amqp'));
    const ids = Array.from({ length: 100 }, (_, i) => `line-${String(i).padStart(3, '0')}`);
    const senders = ids.map((id) => new HubSender(connection, `/devices/${id}/messages/events`, { deviceId: id }));
    await Promise.all(senders.map((s, i) => s.send(body(ids[i]))));
    assert.equal(hub.snapshot().connections, 1);
    assert.equal(hub.stats.connectionsAccepted, 1);
    assert.equal(hub.snapshot().tokens, 1, 'one hub-level token for the whole gateway');
    for (const { message } of hub.events()) {
      assert.equal(message.message_annotations?.['iothub-connection-device-id'], message.message_id);
    }
    assert.equal([...hub.events()].length, 100);
  });

  it('a device deleted while connected: its renewal is refused with 404, what it sends fails with DeviceNotFound, and retries back off', async () => {
    hub = await startTestHub({ autoRegister: false, devices: [{ deviceId: 'doomed' }] });
    const identity = parseConnectionString(hub.deviceConnectionString('doomed'));
    // 4 s tokens renewed 2 s before expiry (the smallest margin is 10 %, the largest 50 % of the lifetime).
    const connection = await open(identity, {
      ...transportOptions(hub, 'amqp'),
      tokenLifetimeSec: 4,
      tokenRenewMarginSec: 2,
      reconnectMinMs: 400,
      reconnectMaxMs: 5000,
      random: () => 0.5,
    });
    const delays: number[] = [];
    connection.on('retry', (ms: number) => delays.push(ms));
    const senders = new DeviceSenders(Promise.resolve(connection), { maxPending: 10 });
    await senders.send({}, body('before'));
    const refusedBefore = hub.stats.putTokensRefused;
    hub.registry.removeDevice('doomed');
    const states: Array<string | undefined> = [];
    connection.on('state', (state: HubState, error?: { code?: string }) => states.push(error?.code ?? state));
    await waitFor(() => states.includes('DeviceNotFound'), 'the refused renewal to show as DeviceNotFound', 10_000);
    const failed = await senders.send({}, body('after')).then(
      () => 'accepted',
      (err: { code?: string }) => String(err.code),
    );
    assert.equal(failed, 'DeviceNotFound', "a message for the deleted device fails with the hub's code instead of waiting for ever");
    // Retries back off as reconnects do, one refused put-token per retry: with the jitter fixed at the
    // middle, waits of 3/4 of 400, 800, 1600, 3200 ms.
    await waitFor(() => delays.length >= 4, 'four retries after the device was deleted', 15_000);
    assert.deepEqual(delays.slice(0, 4), [300, 600, 1200, 2400]);
    const refusedAfter = hub.stats.putTokensRefused - refusedBefore;
    assert.ok(refusedAfter >= 4 && refusedAfter <= 6, `${refusedAfter} put-tokens refused over ${delays.length} retries`);
    assert.ok(hub.stats.putTokensRefused > refusedBefore);
    await senders.close();
  });

  it('a gateway keeps going when one of its device ids is not registered: that device fails with DeviceNotFound, the others deliver on the same connection', async () => {
    hub = await startTestHub({ autoRegister: false, devices: [{ deviceId: 'known-1' }, { deviceId: 'known-2' }] });
    const identity = parseConnectionString(hub.serviceConnectionString('device'), { gatewayPolicy: true });
    const connection = await open(identity, transportOptions(hub, 'amqp'));
    const senders = new DeviceSenders(Promise.resolve(connection), { maxPending: 10 });
    const outcome = (deviceId: string): Promise<string> =>
      senders.send({ deviceId }, body(`from ${deviceId}`)).then(
        () => 'accepted',
        (err: { code?: string }) => String(err.code),
      );
    assert.deepEqual(await Promise.all(['known-1', 'typo-1', 'known-2'].map(outcome)), ['accepted', 'DeviceNotFound', 'accepted']);
    assert.deepEqual(await Promise.all(['known-2', 'typo-1', 'known-1'].map(outcome)), ['accepted', 'DeviceNotFound', 'accepted']);
    assert.equal(hub.stats.connectionsAccepted, 1, 'the connection never dropped');
    assert.equal(connection.state, 'open');
    await senders.close();
  });

  it('closed by the hub for holding no link (its senders all went idle): it rests until a link is needed, then connects again', async () => {
    // Longer than opening, putting the token and attaching the first link take on a busy machine: a
    // connection closed before its first link would reconnect and be counted twice.
    hub = await startTestHub({ linklessTimeoutMs: 1000, sweepIntervalMs: 50 });
    const sim = hub;
    const identity = parseConnectionString(sim.serviceConnectionString('device'), { gatewayPolicy: true });
    const connection = await open(identity, transportOptions(sim, 'amqp'));
    const senders = new DeviceSenders(Promise.resolve(connection), { maxPending: 10, idleCloseMs: 200 });
    await senders.send({ deviceId: 'now-and-then' }, body('first'));
    const states: string[] = [];
    connection.on('state', (state: HubState) => states.push(state));
    await waitFor(() => connection.state === 'idle', 'the connection to rest once the hub closed it', 5000);
    assert.deepEqual(states, ['idle'], 'no reconnect, no alarm: the hub only closed what nothing used');
    await delay(1000);
    assert.equal(sim.stats.connectionsAccepted, 1, 'not reconnected only to be closed again');
    await senders.send({ deviceId: 'now-and-then' }, body('second'));
    assert.equal(sim.stats.connectionsAccepted, 2);
    assert.deepEqual(arrivedIds(sim), ['first', 'second']);
    await senders.close();
  });

  it("the simulator closes a connection that holds only $cbs after linklessTimeoutMs, in Event Hubs' words, and keeps one with a link", async () => {
    hub = await startTestHub({ linklessTimeoutMs: 300, sweepIntervalMs: 50 });
    const sim = hub;
    const idle = await open(parseConnectionString(sim.serviceConnectionString('device'), { gatewayPolicy: true }), transportOptions(sim, 'amqp'));
    const busy = await open(parseConnectionString(sim.deviceConnectionString('busy-1')), transportOptions(sim, 'amqp'));
    const errors: Array<string | undefined> = [];
    idle.on('state', (_state: HubState, error?: { condition?: string; message: string }) =>
      errors.push(error && `${String(error.condition)}: ${error.message}`),
    );
    idle.open();
    const sender = new HubSender(busy, '/devices/busy-1/messages/events', { deviceId: 'busy-1' });
    await sender.send(body('keeps it open'));
    await waitFor(() => idle.state === 'idle' && errors.length > 1, 'the linkless connection closed', 5000);
    assert.match(
      String(errors.at(-1)),
      /^amqp:connection:forced: The connection was closed by container '\S+' because it did not have any active links in the past 300 milliseconds\.$/,
    );
    await delay(500);
    assert.equal(busy.state, 'open', 'a connection with a link stays');
  });

  it("a device whose id holds '#', '?' and a '%' escape authenticates, sends and receives: the CBS name carries the id URL-encoded, as the C# SDK writes it", async () => {
    hub = await startTestHub();
    const sim = hub;
    const id = 'line%41#3?x';
    const identity = parseConnectionString(sim.deviceConnectionString(id));
    const connection = await open(identity, transportOptions(sim, 'amqp'));
    const target = { deviceId: id };
    const sender = new HubSender(connection, deviceAddress(target, 'events'), scopeOf(target));
    await sender.send(body('from a strange id'));
    const stored = [...sim.events()];
    assert.equal(stored.length, 1);
    assert.equal(stored[0].message.message_annotations?.['iothub-connection-device-id'], id);
    const inbox = new C2dInbox(connection, target, { settle: 'auto', prefetch: 5 });
    const got: string[] = [];
    inbox.on('message', (r: { message: rhea.Message }) => got.push(String(r.message.message_id)));
    const device = sim.registry.getDevice(id);
    assert.ok(device);
    assert.equal(sim.c2d.enqueue(id, undefined, device.generationId, { message_id: 'to-strange', body: 'hi' } as rhea.Message), undefined);
    await waitFor(() => got.includes('to-strange'), 'the C2D message');
    await inbox.close();

    // The name as it was written before (the id raw) reads as device 'lineA#3?x' and is refused.
    const raw = await openRaw(sim);
    try {
      const token = deviceToken(sim, id);
      await assert.rejects(raw.cbs.putToken(`${sim.hostWithPort}/devices/${id}`, token), (err: { code?: string }) => err.code === 'Unauthorized');
      await raw.cbs.putToken(`${sim.hostWithPort}/devices/${encodeURIComponent(id)}`, token);
      // The Node SDK's form: the token's sr, encoded whole.
      await raw.cbs.putToken(encodeURIComponent(`${sim.hostWithPort}/devices/${id}`), token);
    } finally {
      await raw.close();
    }
  });

  it("when a gateway's one token lapses under 200 device links, they share one fresh put-token instead of one each", async () => {
    hub = await startTestHub();
    const sim = hub;
    const identity = parseConnectionString(sim.serviceConnectionString('device'), { gatewayPolicy: true });
    const connection = await open(identity, { ...transportOptions(sim, 'amqp'), reconnectMinMs: 200, reconnectMaxMs: 1000 });
    const ids = Array.from({ length: 200 }, (_, i) => `lapse-${i}`);
    const senders = ids.map((id) => new HubSender(connection, `/devices/${id}/messages/events`, { deviceId: id }));
    await Promise.all(senders.map((s, i) => s.send(body(`before-${i}`))));
    const putsBefore = sim.stats.putTokens;
    sim.faults.expireTokens();
    await Promise.all(senders.map((s, i) => s.send(body(`after-${i}`))));
    const puts = sim.stats.putTokens - putsBefore;
    assert.ok(puts >= 1 && puts <= 5, `${puts} put-tokens for one lapsed token`);
    assert.equal(arrivedIds(sim).length, 400);
  });

  it('a device deleted while a gateway speaks for it: its links go at once, its messages fail with DeviceNotFound, the others carry on', async () => {
    hub = await startTestHub({ autoRegister: false, devices: [{ deviceId: 'stays' }, { deviceId: 'goes' }] });
    const sim = hub;
    const identity = parseConnectionString(sim.serviceConnectionString('device'), { gatewayPolicy: true });
    const connection = await open(identity, transportOptions(sim, 'amqp'));
    const senders = new DeviceSenders(Promise.resolve(connection), { maxPending: 10 });
    const outcome = (deviceId: string, id: string): Promise<string> =>
      senders.send({ deviceId }, body(id)).then(
        () => 'accepted',
        (err: { code?: string }) => String(err.code),
      );
    assert.deepEqual(await Promise.all([outcome('stays', 's1'), outcome('goes', 'g1')]), ['accepted', 'accepted']);
    sim.registry.removeDevice('goes');
    assert.deepEqual(await Promise.all([outcome('stays', 's2'), outcome('goes', 'g2')]), ['accepted', 'DeviceNotFound']);
    assert.equal(sim.stats.connectionsAccepted, 1);
    await senders.close();
  });

  it('a device identity cannot open links for another device', async () => {
    hub = await startTestHub();
    const identity = parseConnectionString(hub.deviceConnectionString('me'));
    const connection = await open(identity, transportOptions(hub, 'amqp'));
    assert.throws(
      () => new HubSender(connection, '/devices/you/messages/events', { deviceId: 'you' }),
      (err: Error & { code?: string }) => err.code === 'IdentityMismatch',
    );
  });
});
