/**
 * 100 redeploys of a flow with both device nodes, full and changed-nodes-only (the connection stays):
 * no unhandled error (test/setup.ts fails the test on any), nothing left behind at the simulator, on
 * the shared connection or in the process, and the flow still works afterwards.
 */
import { strict as assert } from 'node:assert';
import helper from 'node-red-node-test-helper';
import rhea = require('rhea');
import type { HubConnection } from '../../src/iothub/hub-connection';
import connectionNode, { type ConnectionNode } from '../../src/nodes/iothub-connection';
import deviceInNode from '../../src/nodes/iothub-device-in';
import deviceOutNode from '../../src/nodes/iothub-device-out';
import { acquireLocalHub } from '../../src/nodes/local-simulator';
import type { SimulatedHub } from '../../src/simulator';
import { collect, inject, serverPerTest } from '../helpers/flow';
import { freePort, waitFor } from '../helpers/hub';

helper.init(require.resolve('node-red'));

function flow(port: number, round: number): object[] {
  return [
    { id: 'tab', type: 'tab', label: 'redeploy' },
    { id: 'conn1', type: 'iothub-connection', z: 'tab', mode: 'local', localPort: port, reconnectMin: 50, reconnectMax: 200 },
    {
      id: 'out1',
      type: 'iothub-device-out',
      z: 'tab',
      name: `out ${round}`,
      hub: 'conn1',
      deviceId: 'redeploy-dev',
      deviceIdType: 'str',
      maxPending: 100,
      wires: [['sent']],
    },
    { id: 'sent', type: 'helper', z: 'tab', wires: [] },
    {
      id: 'in1',
      type: 'iothub-device-in',
      z: 'tab',
      name: `in ${round}`,
      hub: 'conn1',
      deviceId: 'redeploy-dev',
      settle: 'manual',
      output: 'auto',
      prefetch: 5,
      wires: [['got']],
    },
    { id: 'got', type: 'helper', z: 'tab', wires: [] },
    // Never changed: on a changed-nodes deploy it keeps the shared connection open, so whatever the
    // redeployed nodes leave on it would pile up.
    {
      id: 'in2',
      type: 'iothub-device-in',
      z: 'tab',
      name: 'steady',
      hub: 'conn1',
      deviceId: 'redeploy-other',
      settle: 'auto',
      output: 'auto',
      prefetch: 5,
      wires: [[]],
    },
    { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'tab', wires: [] },
  ];
}

const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

describe('device nodes across redeploys', function () {
  this.timeout(180_000);

  serverPerTest();

  function connection(): Promise<HubConnection> {
    return (helper.getNode('conn1') as unknown as ConnectionNode).connection();
  }

  /** One message each way, the C2D one settled from the flow. */
  async function roundTrip(sim: SimulatedHub, tag: string): Promise<void> {
    const sent = collect('sent');
    const got = collect('got');
    const caught = collect('caught');
    inject('out1', { payload: tag, messageId: `d2c-${tag}` });
    await waitFor(() => sent.some((m) => m.messageId === `d2c-${tag}`), `the telemetry ${tag}`);
    const device = sim.registry.addDevice('redeploy-dev');
    sim.c2d.enqueue('redeploy-dev', undefined, device.generationId, {
      message_id: `c2d-${tag}`,
      body: rhea.message.data_section(Buffer.from(tag)),
    } as rhea.Message);
    await waitFor(() => got.length === 1, `the C2D message ${tag}`);
    inject('in1', { settle: 'complete', lockToken: got[0].lockToken });
    await waitFor(() => sim.c2d.depth('redeploy-dev') === 0, `the C2D message ${tag} completed`);
    assert.deepEqual(caught, []);
    assert.ok([...sim.events()].some((e) => e.message.message_id === `d2c-${tag}`));
  }

  it('leaves one connection, the same links and listeners, and a working flow after 100 redeploys', async () => {
    const port = await freePort();
    await helper.load([connectionNode, deviceOutNode, deviceInNode], flow(port, 0));
    const sim = (await acquireLocalHub(port)).hub as SimulatedHub;
    await roundTrip(sim, 'before');
    const linksBefore = sim.snapshot().links;
    const stateListeners = (await connection()).listenerCount('state');
    const scopeListeners = (await connection()).listenerCount('scopeError');
    const timersBefore = timers();
    let shared: HubConnection | undefined;

    for (let i = 1; i <= 100; i++) {
      // The first half redeploys everything; the second only the changed device nodes, so the
      // config node and its connection stay.
      await helper.setFlows(flow(port, i), i <= 50 ? 'full' : 'nodes');
      if (i === 51) shared = await connection();
      if (i % 10 === 0) {
        // A message in flight while the nodes go away must not break anything either.
        inject('out1', { payload: `mid-${i}` });
      }
    }

    await roundTrip(sim, 'after');
    await waitFor(
      () => sim.snapshot().connections === 1 && sim.snapshot().links === linksBefore,
      'the simulator back to one connection and the same links',
      15_000,
    );
    assert.equal(await connection(), shared, 'the changed-nodes deploys kept the connection');
    assert.equal((await connection()).listenerCount('state'), stateListeners, 'no state listener left behind on the shared connection');
    assert.equal((await connection()).listenerCount('scopeError'), scopeListeners, 'no scopeError listener left behind');
    // Timers of the runtime come and go; a leak of even one per redeploy would show as 50 or more.
    assert.ok(timers() < timersBefore + 20, `timers: ${timersBefore} before, ${timers()} after`);
  });
});
