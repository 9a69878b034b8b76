/**
 * `--location DIR`: the simulator keeps its registry, C2D queues, partitions and twins, so a restart (a clean
 * one, or a process killed outright) loses no message it accepted, and numbering goes on.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import rhea = require('rhea');
import { Connection, type EventContext } from 'rhea-promise';
import { CbsChannel } from '../../src/iothub/cbs';
import { expiryIn, makeSasToken } from '../../src/iothub/sas';
import { DEFAULT_KEYS, startSimulator, type SimulatedHub, type SimulatorOptionsInput } from '../../src/simulator';
import { testCertDir } from '../helpers/hub';
import { asOwner, openRaw, type RawClient } from '../helpers/raw';
import { registryClient } from '../helpers/service-rest';
import { until } from './faults';

const CLI = path.resolve(__dirname, '..', '..', 'src', 'simulator', 'cli.js');

function message(id: string, extra: Partial<rhea.Message> = {}): rhea.Message {
  return { message_id: id, body: rhea.message.data_section(Buffer.from(`body of ${id}`)), ...extra } as rhea.Message;
}

function eventsOf(hub: SimulatedHub): Array<{ partition: string; seq: number; offset: number; time: number; id: string; device: unknown }> {
  return [...hub.events()].map((e) => ({
    partition: e.partitionId,
    seq: e.event.sequenceNumber,
    offset: e.event.offset,
    time: e.event.enqueuedTime,
    id: String(e.message.message_id),
    device: e.message.message_annotations?.['iothub-connection-device-id'],
  }));
}

describe('reliability: the simulator keeps its state (--location)', function () {
  this.timeout(60_000);
  let dir: string;
  const hubs: SimulatedHub[] = [];
  const clients: RawClient[] = [];

  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'iothub-sim-location-'));
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) await c.close().catch(() => undefined);
    for (const h of hubs.splice(0)) await h.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  async function start(extra: SimulatorOptionsInput = {}): Promise<SimulatedHub> {
    const hub = await startSimulator({ amqpPort: 0, amqpsPort: null, location: dir, ...extra });
    hubs.push(hub);
    return hub;
  }

  /**
   * Checks a simulator started on a copy of the journal as it stands: what one killed now would read
   * back (a clean stop rewrites the journal as a snapshot, so only a copy shows the journal itself).
   */
  async function fromJournalNow(check: (hub: SimulatedHub) => void): Promise<void> {
    const crashed = await fs.mkdtemp(path.join(os.tmpdir(), 'iothub-sim-crashed-'));
    try {
      await fs.copyFile(path.join(dir, 'iothub-sim.journal'), path.join(crashed, 'iothub-sim.journal'));
      const hub = await startSimulator({ amqpPort: 0, amqpsPort: null, location: crashed });
      try {
        check(hub);
      } finally {
        await hub.close();
      }
    } finally {
      await fs.rm(crashed, { recursive: true, force: true });
    }
  }

  async function owner(hub: SimulatedHub): Promise<RawClient> {
    const client = await openRaw(hub);
    clients.push(client);
    await asOwner(hub, client);
    return client;
  }

  async function sendD2c(client: RawClient, deviceId: string, ids: string[]): Promise<void> {
    const sender = await client.connection.createAwaitableSender({ target: { address: `/devices/${deviceId}/messages/events` } });
    for (const id of ids) await sender.send(message(id));
    await sender.close();
  }

  async function sendC2d(client: RawClient, deviceId: string, ids: string[]): Promise<void> {
    const sender = await client.connection.createAwaitableSender({ target: { address: '/messages/devicebound' } });
    for (const id of ids) await sender.send(message(id, { to: `/devices/${deviceId}/messages/devicebound`, application_properties: { 'iothub-ack': 'full' } }));
    await sender.close();
  }

  /** Receives C2D for a device, settling each as `decide` says; returns what arrived with its delivery count. */
  async function receiveC2d(
    client: RawClient,
    deviceId: string,
    count: number,
    decide: (id: string) => 'accept' | 'release' | 'hold' = () => 'accept',
  ): Promise<Array<{ id: string; deliveryCount: number }>> {
    const got: Array<{ id: string; deliveryCount: number }> = [];
    const receiver = await client.connection.createReceiver({
      source: { address: `/devices/${deviceId}/messages/devicebound` },
      autoaccept: false,
      credit_window: 0,
      onMessage: (ctx: EventContext) => {
        const id = String(ctx.message?.message_id);
        got.push({ id, deliveryCount: Number(ctx.message?.message_annotations?.['iothub-deliverycount']) });
        const d = decide(id);
        if (d === 'accept') ctx.delivery?.accept();
        else if (d === 'release') ctx.delivery?.release();
        // One message at a time: rhea 3.0.5 merges the first two dispositions written in one tick into
        // one range with the first's outcome, so two messages settled differently together come out wrong.
        if (got.length < count) ctx.receiver?.addCredit(1);
      },
      onError: () => undefined,
    });
    receiver.addCredit(1);
    await until(
      () => got.length >= count,
      () => `${count} C2D messages for ${deviceId} (${got.length})`,
    );
    await receiver.close();
    return got;
  }

  it('a restart keeps devices, telemetry with its numbers, and C2D queues with their delivery counts', async () => {
    const first = await start({ devices: [{ deviceId: 'configured' }] });
    const auto = first.registry.addDevice('auto-1');
    first.registry.addModule('auto-1', 'mod-a');
    const client = await owner(first);
    await sendD2c(client, 'auto-1', ['e1', 'e2', 'e3']);
    await sendD2c(client, 'configured', ['e4']);
    await sendC2d(client, 'auto-1', ['c1', 'c2', 'c3', 'c4']);
    // c1 completed, c2 abandoned once (delivery count 1), c3 and c4 left waiting.
    await receiveC2d(client, 'auto-1', 2, (id) => (id === 'c1' ? 'accept' : 'release'));
    await until(
      () => first.c2d.depth('auto-1') === 3 && first.c2d.lockedMessageIds().length === 0,
      () => 'the settlements',
    );
    const before = eventsOf(first);
    const generation = auto.generationId;
    await first.close();
    hubs.splice(hubs.indexOf(first), 1);

    const second = await start({ devices: [{ deviceId: 'configured' }] });
    assert.equal(second.registry.getDevice('auto-1')?.generationId, generation);
    assert.ok(second.registry.getDevice('auto-1')?.modules.has('mod-a'));
    assert.deepEqual(eventsOf(second), before);
    assert.equal(second.c2d.depth('auto-1'), 3);
    const again = await owner(second);
    const got = await receiveC2d(again, 'auto-1', 3);
    assert.deepEqual(got, [
      { id: 'c2', deliveryCount: 1 },
      { id: 'c3', deliveryCount: 0 },
      { id: 'c4', deliveryCount: 0 },
    ]);
    // Numbering goes on where it stopped.
    await sendD2c(again, 'auto-1', ['e5']);
    const last = eventsOf(second).find((e) => e.id === 'e5');
    const previous = before.filter((e) => e.partition === last?.partition);
    assert.equal(last?.seq, previous[previous.length - 1].seq + 1);
    assert.ok((last?.offset ?? 0) > previous[previous.length - 1].offset);
  });

  it('a simulator killed outright loses nothing it accepted, and ignores a last line cut short', async () => {
    const child = spawn(process.execPath, [CLI, '--amqp-port', '0', '--amqps-port', 'off', '--location', dir, '--cert-dir', testCertDir()], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    try {
      await until(
        () => /AMQP\s+\S+:(\d+)/.test(out),
        () => `the simulator to start (${out})`,
      );
      const port = Number(/AMQP\s+\S+:(\d+)/.exec(out)?.[1]);
      const connection = new Connection({ transport: 'tcp', host: '127.0.0.1', port, reconnect: false });
      await connection.open();
      const cbs = new CbsChannel(connection);
      await cbs.open();
      const client: RawClient = {
        connection,
        cbs,
        close: async () => {
          await cbs.close();
          await connection.close().catch(() => undefined);
        },
      };
      clients.push(client);
      await cbs.putToken('localhost', makeSasToken({ resource: 'localhost', key: DEFAULT_KEYS.iothubowner, keyName: 'iothubowner', expiry: expiryIn(300) }));
      await sendD2c(client, 'crash-dev', ['k1', 'k2', 'k3']);
      await sendC2d(client, 'crash-dev', ['q1', 'q2']);
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
    await fs.appendFile(path.join(dir, 'iothub-sim.journal'), '{"t":"event","p":"0","se');
    const restarted = await start();
    assert.deepEqual(
      eventsOf(restarted).map((e) => e.id),
      ['k1', 'k2', 'k3'],
    );
    assert.equal(restarted.c2d.depth('crash-dev'), 2);
    assert.ok(restarted.registry.getDevice('crash-dev'));
  });

  it('keeps twins (tags, desired and reported properties, their versions and etag), journaled as they change; a deleted device takes its twin along', async () => {
    const first = await start({ restPort: 0, certDir: testCertDir() });
    const registry = registryClient(first);
    await registry.create({ deviceId: 'press-1' });
    await registry.create({ deviceId: 'press-2' });
    first.registry.addModule('press-1', 'vision');
    await registry.updateTwin('press-1', { tags: { hall: 4 }, properties: { desired: { setPoint: 21.5, fan: { mode: 'auto' } } } }, '*');
    first.twins.patchReported('press-1', undefined, { firmware: '1.4.2' });
    first.twins.patchReported('press-1', 'vision', { camera: 'ok' });
    await registry.updateTwin('press-2', { properties: { desired: { setPoint: 5 } } }, '*');
    first.c2d.enqueue('press-2', undefined, first.registry.getDevice('press-2')?.generationId ?? '', { message_id: 'old', body: 'old' });
    // Deleted and created again in one run: the journal must drop the old twin and queue, not only skip a device that is gone.
    await registry.delete('press-2');
    await registry.create({ deviceId: 'press-2' });
    const isFresh = (hub: SimulatedHub): void => {
      assert.deepEqual(hub.twins.properties('press-2').desired, { $version: 1 }, "press-2's old twin is gone");
      assert.equal(hub.c2d.depth('press-2'), 0, "press-2's old C2D queue is gone");
    };
    isFresh(first);
    const twinOf = (hub: SimulatedHub, deviceId: string, moduleId?: string): Record<string, unknown> => {
      const { connectionState: _state, ...rest } = hub.twins.document(deviceId, moduleId, false);
      return rest;
    };
    const before = { device: twinOf(first, 'press-1'), module: twinOf(first, 'press-1', 'vision') };
    assert.equal(before.device.version, 3, 'a service patch and a device patch counted');

    await fromJournalNow((hub) => {
      assert.deepEqual({ device: twinOf(hub, 'press-1'), module: twinOf(hub, 'press-1', 'vision') }, before);
      isFresh(hub);
    });

    await first.close();
    hubs.splice(hubs.indexOf(first), 1);
    const second = await start({ restPort: 0, certDir: testCertDir() });
    const again = registryClient(second);
    const twin = (await again.getTwin('press-1')).responseBody;
    assert.equal(twin.etag, before.device.etag, 'the etag a service read before the restart still matches');
    assert.deepEqual({ device: twinOf(second, 'press-1'), module: twinOf(second, 'press-1', 'vision') }, before);
    // Versions go on: the next desired patch is $version 3, as it would have been without the restart.
    await again.updateTwin('press-1', { properties: { desired: { setPoint: 19 } } }, twin.etag);
    assert.equal((second.twins.properties('press-1').desired as { $version: number }).$version, 3);
    isFresh(second);
  });

  it('keeps keys a service changed and modules it removed, in the journal as in the snapshot', async () => {
    const first = await start({ restPort: 0, certDir: testCertDir() });
    const registry = registryClient(first);
    await registry.create({ deviceId: 'gw-1' });
    await registry.addModule({ deviceId: 'gw-1', moduleId: 'keep' });
    await registry.addModule({ deviceId: 'gw-1', moduleId: 'drop' });
    first.twins.patchReported('gw-1', 'drop', { stage: 1 });
    const newKey = Buffer.alloc(32, 9).toString('base64');
    const device = (await registry.get('gw-1')).responseBody;
    await registry.update({ ...device, authentication: { symmetricKey: { primaryKey: newKey, secondaryKey: newKey } } });
    await registry.removeModule('gw-1', 'drop');
    const look = (hub: SimulatedHub): unknown => {
      const d = hub.registry.getDevice('gw-1');
      return { key: d?.primaryKey, modules: [...(d?.modules.keys() ?? [])], dropTwin: hub.twins.snapshot().some((t) => t.moduleId === 'drop') };
    };
    const expected = { key: newKey, modules: ['keep'], dropTwin: false };
    assert.deepEqual(look(first), expected);

    await fromJournalNow((hub) => assert.deepEqual(look(hub), expected, 'read back from the journal'));
    await first.close();
    hubs.splice(hubs.indexOf(first), 1);
    assert.deepEqual(look(await start()), expected, 'read back from the snapshot');
  });

  it('refuses a location it cannot use, in one line', async () => {
    const file = path.join(dir, 'a-file');
    await fs.writeFile(file, 'x');
    await assert.rejects(startSimulator({ amqpPort: 0, amqpsPort: null, location: path.join(file, 'below') }), /cannot use the location/);
  });
});
