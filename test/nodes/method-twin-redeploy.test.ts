/**
 * 100 redeploys of a flow with every method and twin node (method-in for two devices, method-response,
 * twin for the same two devices, method-invoke and twin-desired over the simulator's REST API), full and
 * changed-nodes-only: nothing left behind at the simulator (links, method and twin registrations), on
 * the shared connection (listeners) or in the process (timers, sockets), and the flow still works.
 */
import { strict as assert } from 'node:assert';
import helper from 'node-red-node-test-helper';
import type { HubConnection } from '../../src/iothub/hub-connection';
import connectionNode, { type ConnectionNode } from '../../src/nodes/iothub-connection';
import methodInNode from '../../src/nodes/iothub-method-in';
import methodInvokeNode from '../../src/nodes/iothub-method-invoke';
import methodResponseNode from '../../src/nodes/iothub-method-response';
import twinNode from '../../src/nodes/iothub-twin';
import twinDesiredNode from '../../src/nodes/iothub-twin-desired';
import { acquireLocalHub } from '../../src/nodes/local-simulator';
import type { SimulatedHub } from '../../src/simulator';
import { collect, inject, serverPerTest } from '../helpers/flow';
import { freePort, waitFor } from '../helpers/hub';

helper.init(require.resolve('node-red'));

const NODES = [connectionNode, methodInNode, methodResponseNode, methodInvokeNode, twinNode, twinDesiredNode];
const DEVICES = 'press-a, press-b';

function flow(port: number, round: number): object[] {
  return [
    { id: 'tab', type: 'tab', label: 'redeploy' },
    { id: 'conn1', type: 'iothub-connection', z: 'tab', mode: 'local', localPort: port, reconnectMin: 50, reconnectMax: 200 },
    {
      id: 'invoke',
      type: 'iothub-method-invoke',
      z: 'tab',
      name: `invoke ${round}`,
      hub: 'conn1',
      deviceId: 'press-b',
      deviceIdType: 'str',
      methodName: 'start',
      responseTimeout: 10,
      wires: [['answers']],
    },
    { id: 'answers', type: 'helper', z: 'tab', wires: [] },
    {
      id: 'in1',
      type: 'iothub-method-in',
      z: 'tab',
      name: `calls ${round}`,
      hub: 'conn1',
      deviceId: DEVICES,
      deviceIdType: 'str',
      methods: '',
      wires: [['calls']],
    },
    { id: 'calls', type: 'helper', z: 'tab', wires: [] },
    { id: 'resp1', type: 'iothub-method-response', z: 'tab', name: `answer ${round}`, hub: 'conn1', statusCode: 200, wires: [] },
    {
      id: 'desired',
      type: 'iothub-twin-desired',
      z: 'tab',
      name: `desired ${round}`,
      hub: 'conn1',
      deviceId: 'press-a',
      deviceIdType: 'str',
      action: 'update',
      wires: [[]],
    },
    {
      id: 'twin1',
      type: 'iothub-twin',
      z: 'tab',
      name: `twin ${round}`,
      hub: 'conn1',
      deviceId: DEVICES,
      deviceIdType: 'str',
      action: 'report',
      subscribe: true,
      wires: [['device']],
    },
    { id: 'device', type: 'helper', z: 'tab', wires: [] },
    // Never changed: on a changed-nodes deploy it keeps the shared connection open, so whatever the
    // redeployed nodes leave on it would pile up.
    {
      id: 'steady',
      type: 'iothub-twin',
      z: 'tab',
      x: 100,
      y: 100,
      name: 'steady',
      hub: 'conn1',
      deviceId: 'press-c',
      deviceIdType: 'str',
      subscribe: true,
      wires: [[]],
    },
    { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'tab', wires: [] },
  ];
}

const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
const sockets = (): number => process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap' || r === 'TLSSocketWrap').length;

describe('method and twin nodes across redeploys', function () {
  this.timeout(240_000);

  serverPerTest();

  function connection(): Promise<HubConnection> {
    return (helper.getNode('conn1') as unknown as ConnectionNode).connection();
  }

  /** A method call answered by the flow, a desired patch out of the twin node, a reported patch in. */
  async function roundTrip(sim: SimulatedHub, tag: string): Promise<void> {
    const answers = collect('answers');
    const calls = collect('calls');
    const device = collect('device');
    const caught = collect('caught');
    await waitFor(
      () => sim.methods.isOnline('press-b') && sim.twinLinks.isSubscribed('press-a') && sim.twinLinks.isSubscribed('press-b'),
      `the devices up (${tag})`,
    );
    inject('invoke', { payload: { tag } });
    await waitFor(() => calls.length === 1, `the call (${tag})`);
    assert.equal(calls[0].deviceId, 'press-b');
    inject('resp1', { requestId: calls[0].requestId, payload: { started: tag } });
    await waitFor(() => answers.length === 1, `the answer (${tag})`);
    assert.deepEqual(answers[0].payload, { started: tag });
    inject('desired', { payload: { mode: tag } });
    await waitFor(() => device.some((m) => m.topic === 'desired' && m.deviceId === 'press-a'), `the desired patch (${tag})`);
    inject('twin1', { deviceId: 'press-b', payload: { seen: tag } });
    await waitFor(() => (sim.twins.properties('press-b').reported as Record<string, unknown>).seen === tag, `the report (${tag})`);
    assert.deepEqual(caught, []);
  }

  it('leaves one connection, the same links, registrations and listeners, and a working flow after 100 redeploys', async () => {
    const port = await freePort();
    await helper.load(NODES, flow(port, 0));
    const sim = (await acquireLocalHub(port)).hub as SimulatedHub;
    await roundTrip(sim, 'before');
    const linksBefore = sim.snapshot().links;
    const listeners = async (): Promise<Record<string, number>> => {
      const c = await connection();
      return Object.fromEntries(c.eventNames().map((name) => [String(name), c.listenerCount(name)]));
    };
    const listenersBefore = await listeners();
    const timersBefore = timers();
    const socketsBefore = sockets();
    let shared: HubConnection | undefined;

    for (let i = 1; i <= 100; i++) {
      // The first half redeploys everything; the second only the changed nodes, so the config node
      // and its connection stay.
      await helper.setFlows(flow(port, i), i <= 50 ? 'full' : 'nodes');
      if (i === 51) shared = await connection();
      // A call in flight while the nodes go away must not break anything either.
      if (i % 10 === 0) inject('invoke', { payload: { mid: i } });
    }

    await roundTrip(sim, 'after');
    await waitFor(
      () => sim.snapshot().connections === 1 && sim.snapshot().links === linksBefore,
      `the simulator back to one connection and ${linksBefore} links (has ${JSON.stringify(sim.snapshot())})`,
      15_000,
    );
    assert.equal(await connection(), shared, 'the changed-nodes deploys kept the connection');
    assert.deepEqual(await listeners(), listenersBefore, 'no listener left behind on the shared connection');
    // Timers and sockets of the runtime come and go; a leak of one per redeploy would show as 50 or more.
    assert.ok(timers() < timersBefore + 20, `timers: ${timersBefore} before, ${timers()} after`);
    await waitFor(() => sockets() < socketsBefore + 10, `sockets back near ${socketsBefore} (have ${sockets()})`, 15_000);
  });
});
