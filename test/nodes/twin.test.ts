/**
 * The twin node against the simulator, with azure-iothub's Registry as the service side: the twin as
 * it is on deploy, desired patches as they happen, reported patches, bad input failing alone, and a
 * reconnect in the middle of the subscription (a patch made while the device was away comes back as a
 * full twin).
 */
import { strict as assert } from 'node:assert';
import type { EventEmitter } from 'node:events';
import helper from 'node-red-node-test-helper';
import connectionNode from '../../src/nodes/iothub-connection';
import twinNode from '../../src/nodes/iothub-twin';
import type { SimulatedHub } from '../../src/simulator';
import { collect, inject, serverPerTest, statuses, type FlowMsg } from '../helpers/flow';
import { startTestHub, waitFor } from '../helpers/hub';
import { registryClient } from '../helpers/service-rest';

helper.init(require.resolve('node-red'));

function flow(twin: Record<string, unknown>): object[] {
  return [
    { id: 'tab', type: 'tab', label: 'twin' },
    { id: 'conn1', type: 'iothub-connection', z: 'tab', mode: 'azure', transport: 'amqps', reconnectMin: 50, reconnectMax: 200 },
    { id: 'twin1', type: 'iothub-twin', z: 'tab', hub: 'conn1', deviceIdType: 'str', action: 'report', subscribe: true, ...twin, wires: [['out']] },
    { id: 'out', type: 'helper', z: 'tab', wires: [] },
    { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'tab', wires: [] },
  ];
}

type Section = Record<string, unknown>;
const payloadOf = (m: FlowMsg): { desired: Section; reported: Section } => m.payload as { desired: Section; reported: Section };

describe('twin node', function () {
  this.timeout(60_000);
  let hub: SimulatedHub | undefined;

  serverPerTest({
    after: async () => {
      await hub?.close();
      hub = undefined;
    },
  });

  async function load(sim: SimulatedHub, connectionString: string, twin: Record<string, unknown>): Promise<{ out: FlowMsg[]; caught: FlowMsg[] }> {
    await helper.load([connectionNode, twinNode], flow(twin), { conn1: { connectionString } });
    return { out: collect('out'), caught: collect('caught') };
  }

  it('sends the twin on deploy, desired patches as they come, and reports what the flow sends', async () => {
    const sim = await startTestHub({ restPort: 0 });
    hub = sim;
    const registry = registryClient(sim);
    await registry.create({ deviceId: 'oven-1' });
    await registry.updateTwin('oven-1', { properties: { desired: { temperature: 180 } } }, '*');
    const { out, caught } = await load(sim, sim.deviceConnectionString('oven-1'), { deviceId: '' });
    await waitFor(() => out.length === 1, 'the twin on deploy');
    assert.equal(out[0].topic, 'twin');
    assert.equal(payloadOf(out[0]).desired.temperature, 180);
    assert.equal(out[0].deviceId, 'oven-1');

    await registry.updateTwin('oven-1', { properties: { desired: { temperature: 200 } } }, '*');
    await waitFor(() => out.length === 2, 'the desired patch');
    assert.equal(out[1].topic, 'desired');
    assert.deepEqual(out[1].payload, { temperature: 200, $version: 3 });
    assert.equal(out[1].version, 3);

    inject('twin1', { topic: 'report', payload: { temperature: 199.5, door: 'closed' } });
    await waitFor(() => out.length === 3, 'the report sent on');
    assert.equal(out[2].version, 2);
    const seen = (await registry.getTwin('oven-1')).responseBody;
    assert.equal((seen.properties.reported as Section).door, 'closed');

    inject('twin1', { topic: 'get' });
    await waitFor(() => out.length === 4, 'the twin on get');
    assert.equal(payloadOf(out[3]).reported.temperature, 199.5);
    assert.equal(caught.length, 0);
  });

  it('a patch that is not an object or is too large fails alone; the next report goes through', async () => {
    const sim = await startTestHub({ restPort: 0 });
    hub = sim;
    const { out, caught } = await load(sim, sim.serviceConnectionString('device'), { deviceId: 'oven-2', subscribe: false });
    inject('twin1', { payload: 'warm' });
    inject('twin1', { payload: [1, 2] });
    inject('twin1', { payload: { blob: 'x'.repeat(40 * 1024) } });
    await waitFor(() => caught.length === 3, 'three errors at Catch');
    assert.deepEqual(caught.map((m) => m.error?.code).sort(), ['InvalidPayload', 'InvalidPayload', 'MessageTooLarge']);
    inject('twin1', { payload: { ok: true } });
    await waitFor(() => out.length === 1, 'the good report');
    assert.equal(caught.length, 3);
    const seen = (await registryClient(sim).getTwin('oven-2')).responseBody;
    assert.equal((seen.properties.reported as Section).ok, true);
  });

  it("serves a gateway's devices: each one's twin and desired patches with its id; msg.deviceId picks the twin; a missing or unlisted one fails at Catch", async () => {
    const sim = await startTestHub({ restPort: 0 });
    hub = sim;
    const registry = registryClient(sim);
    for (const id of ['press-1', 'press-2', '4711']) await registry.create({ deviceId: id });
    await registry.updateTwin('press-2', { properties: { desired: { speed: 30 } } }, '*');
    const { out, caught } = await load(sim, sim.serviceConnectionString('device'), { deviceId: 'press-1, press-2 4711' });
    await waitFor(() => out.filter((m) => m.topic === 'twin').length === 3, 'the three twins on deploy');
    assert.deepEqual(out.map((m) => m.deviceId).sort(), ['4711', 'press-1', 'press-2']);
    assert.equal(payloadOf(out.find((m) => m.deviceId === 'press-2') as FlowMsg).desired.speed, 30);
    await waitFor(() => ['press-1', 'press-2', '4711'].every((id) => sim.twinLinks.isSubscribed(id)), 'three subscriptions');

    out.length = 0;
    await registry.updateTwin('press-1', { properties: { desired: { speed: 12 } } }, '*');
    await waitFor(() => out.length === 1, 'the desired patch of press-1');
    assert.deepEqual(
      { topic: out[0].topic, deviceId: out[0].deviceId, payload: out[0].payload },
      { topic: 'desired', deviceId: 'press-1', payload: { speed: 12, $version: 2 } },
    );

    // A numeric id, as PLC data carries it, picks the device named "4711".
    inject('twin1', { topic: 'report', deviceId: 4711, payload: { firmware: '2.0' } });
    inject('twin1', { topic: 'report', deviceId: 'press-2', payload: { speed: 29 } });
    await waitFor(() => out.length === 3, 'two reports sent on');
    assert.equal((sim.twins.properties('4711').reported as Section).firmware, '2.0');
    assert.equal((sim.twins.properties('press-2').reported as Section).speed, 29);
    assert.equal((sim.twins.properties('press-1').reported as Section).speed, undefined, 'nothing reported for press-1');
    assert.deepEqual(
      out
        .slice(1)
        .map((m) => m.deviceId)
        .sort(),
      ['4711', 'press-2'],
    );

    inject('twin1', { topic: 'report', payload: { speed: 1 } });
    inject('twin1', { topic: 'get', deviceId: 'press-9' });
    await waitFor(() => caught.length === 2, 'two errors at Catch');
    const codes = caught.map((m) => m.error?.code).sort();
    assert.deepEqual(codes, ['IdentityMismatch', 'MissingDeviceId']);
    assert.match(String(caught.find((m) => m.error?.code === 'IdentityMismatch')?.error?.message), /"press-9" is not a device of this twin node/);
    assert.equal((sim.twins.properties('press-9').reported as Section).$version, 1, 'nothing reached an unlisted device');
  });

  it("a gateway's twin node shows a device the hub refuses until it is registered, while the other device's twin works", async () => {
    const sim = await startTestHub({ restPort: 0, autoRegister: false });
    hub = sim;
    const registry = registryClient(sim);
    await registry.create({ deviceId: 'ok-1' });
    const { out } = await load(sim, sim.serviceConnectionString('device'), { deviceId: 'ok-1, missing-1' });
    await waitFor(() => out.some((m) => m.topic === 'twin' && m.deviceId === 'ok-1'), "ok-1's twin");
    await waitFor(() => statuses('twin1').includes('iothub-common.status.device-not-found'), 'the refused device on show');
    // ok-1 attaching again (a dropped link) must not hide missing-1's refusal behind "connecting".
    sim.faults.detachLinks((a) => a.kind === 'twin' && a.deviceId === 'ok-1');
    await waitFor(() => sim.twinLinks.isConnected('ok-1'), "ok-1's twin links back");
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(statuses('twin1').at(-1), 'iothub-common.status.device-not-found', `statuses: ${statuses('twin1').join(', ')}`);
    await registry.create({ deviceId: 'missing-1' });
    await waitFor(() => statuses('twin1').at(-1) === 'node-red:common.status.connected', 'connected once every device is', 20_000);
    await waitFor(() => out.some((m) => m.topic === 'twin' && m.deviceId === 'missing-1'), "missing-1's twin once registered");
  });

  it('a reconnect in the middle of the subscription: a patch made while away comes back as the whole twin', async () => {
    const sim = await startTestHub({ restPort: 0 });
    hub = sim;
    const registry = registryClient(sim);
    await registry.create({ deviceId: 'oven-3' });
    const { out } = await load(sim, sim.deviceConnectionString('oven-3'), { deviceId: '' });
    await waitFor(() => out.length === 1 && sim.twinLinks.isSubscribed('oven-3'), 'the twin on deploy and the subscription');
    sim.faults.blockPutTokens(1500, 'refuse');
    sim.faults.dropConnections();
    await waitFor(() => !sim.twinLinks.isConnected('oven-3'), 'the twin links gone');
    await registry.updateTwin('oven-3', { properties: { desired: { fan: 'high' } } }, '*');
    await waitFor(() => out.some((m) => m.resync === true), 'the whole twin after the reconnect', 20_000);
    const resync = out.find((m) => m.resync === true) as FlowMsg;
    assert.equal(resync.topic, 'twin');
    assert.equal(payloadOf(resync).desired.fan, 'high');
    assert.ok(!out.some((m) => m.topic === 'desired'), 'the patch itself was never delivered');
    await registry.updateTwin('oven-3', { properties: { desired: { fan: 'low' } } }, '*');
    await waitFor(() => out.some((m) => m.topic === 'desired'), 'patches flow again');
    assert.equal((out.find((m) => m.topic === 'desired') as FlowMsg & { payload: Section }).payload.fan, 'low');
  });

  it('deployed while put-tokens are refused for longer than the operation timeout: subscribes, sends the twin and follows patches once they are taken', async function () {
    this.timeout(120_000);
    const sim = await startTestHub({ restPort: 0 });
    hub = sim;
    const registry = registryClient(sim);
    await registry.create({ deviceId: 'oven-5' });
    await registry.updateTwin('oven-5', { properties: { desired: { mode: 'eco' } } }, '*');
    // Longer than operationTimeoutMs (30 s): a twin request made at deploy has given up by the end.
    sim.faults.blockPutTokens(33_000, 'refuse');
    const { out } = await load(sim, sim.deviceConnectionString('oven-5'), { deviceId: '' });
    await waitFor(() => out.length === 1, 'the twin once the links attach', 90_000);
    assert.equal(out[0].topic, 'twin');
    assert.equal(payloadOf(out[0]).desired.mode, 'eco');
    await waitFor(() => sim.twinLinks.isSubscribed('oven-5'), 'the subscription');
    await registry.updateTwin('oven-5', { properties: { desired: { mode: 'boost' } } }, '*');
    await waitFor(() => out.some((m) => m.topic === 'desired'), 'the desired patch');
    inject('twin1', { topic: 'get' });
    await waitFor(() => out.filter((m) => m.topic === 'twin').length === 2, 'the twin on get');
    assert.equal(payloadOf(out[out.length - 1]).desired.mode, 'boost');
  });

  it('attaches the twin sender with snd-settle-mode settled, as the official SDKs do', async () => {
    const sim = await startTestHub({ restPort: 0 });
    hub = sim;
    const modes: unknown[] = [];
    // The hub's receiver is the device's twin sender; what the device asked for is in its attach.
    (sim as unknown as { container: EventEmitter }).container.on(
      'receiver_open',
      (ctx: { receiver?: { source?: { address?: string }; remote?: { attach?: { snd_settle_mode?: unknown; target?: { address?: string } } } } }) => {
        const attach = ctx.receiver?.remote?.attach;
        if (attach?.target?.address?.endsWith('/twin')) modes.push(attach.snd_settle_mode);
      },
    );
    const { out } = await load(sim, sim.deviceConnectionString('oven-6'), { deviceId: '' });
    await waitFor(() => out.length === 1, 'the twin');
    assert.deepEqual(modes, [1]);
  });
});
