/**
 * 100 full redeploys of a flow with c2d-send, feedback-in and telemetry-in sharing one config node,
 * in a real Node-RED: the hub sees only the connections the last deployment needs, the process's
 * handles and listeners return to where they were, its heap does not grow with the deploy count,
 * and the log stays clean. Counts are compared, never times.
 */
import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import type { Client as DeviceClient } from 'azure-iot-device';
import type { SimulatedHub } from '../../src/simulator';
import { startTestHub } from '../helpers/hub';
import { NodeRedRuntime, waitUntil, type FlowNode, type ProcessProbe } from '../helpers/node-red-runtime';
import { closeQuietly, openDevice } from '../helpers/sdk';
import { assertCleanLog, azureConnection, isConnected, reportRuntimeOnFailure } from './support';

const DEPLOYS = 100;
/** Deploys before the baseline is taken: lazy module loads and caches settle in the first few. */
const WARMUP = 10;
/** Retained heap allowed over the 90 measured deploys; one leaked connection per deploy is far more. */
const HEAP_SLACK = 6 * 1024 * 1024;
const SERVICE_NODES = ['c2d', 'feedback', 'telemetry'];

/** The package's own classes whose live instances the probe counts inside Node-RED. */
const src = path.resolve(__dirname, '..', '..', 'src');
const CLASSES = [
  { name: 'HubConnection', module: path.join(src, 'iothub', 'hub-connection.js'), export: 'HubConnection' },
  { name: 'HubSender', module: path.join(src, 'iothub', 'links.js'), export: 'HubSender' },
  { name: 'HubReceiver', module: path.join(src, 'iothub', 'links.js'), export: 'HubReceiver' },
  { name: 'PartitionReaders', module: path.join(src, 'iothub', 'event-hub.js'), export: 'PartitionReaders' },
];

function flow(hub: SimulatedHub, round: number): FlowNode[] {
  return [
    { id: 'tab1', type: 'tab', label: `redeploy ${round}` },
    azureConnection(hub),
    { id: 'c2d', type: 'iothub-c2d-send', z: 'tab1', hub: 'hubconn', deviceId: 'leak-device', deviceIdType: 'str', ack: 'none', wires: [['out']] },
    { id: 'feedback', type: 'iothub-feedback-in', z: 'tab1', hub: 'hubconn', wires: [['out']] },
    { id: 'telemetry', type: 'iothub-telemetry-in', z: 'tab1', hub: 'hubconn', startPosition: 'latest', wires: [['out']] },
    { id: 'out', type: 'debug', z: 'tab1', active: true, tosidebar: true, complete: 'false', wires: [] },
    {
      id: 'send',
      type: 'inject',
      z: 'tab1',
      props: [{ p: 'payload' }],
      payload: `round ${round}`,
      payloadType: 'str',
      repeat: '',
      once: false,
      wires: [['c2d']],
    },
  ];
}

const sum = (counts: Record<string, number>): number => Object.values(counts).reduce((a, b) => a + b, 0);

describe('a real Node-RED: 100 redeploys of the three service nodes', function () {
  this.timeout(600_000);
  let hub: SimulatedHub | undefined;
  let runtime: NodeRedRuntime | undefined;
  let device: DeviceClient | undefined;

  afterEach(function () {
    reportRuntimeOnFailure(this.currentTest, runtime);
  });

  after(async () => {
    await runtime?.dispose();
    await closeQuietly(device);
    await hub?.close();
  });

  it('leaks no connection, handle, listener or memory, and logs no error', async () => {
    hub = await startTestHub();
    const simulator = hub;
    device = await openDevice(simulator, 'leak-device');
    const deviceConnections = simulator.snapshot().connections;
    runtime = await NodeRedRuntime.create({ nodeArgs: ['--expose-gc'], probe: { classes: CLASSES } });
    const nodeRed = runtime;
    await nodeRed.start();
    const idle = await nodeRed.probe();

    // What one deployment holds: the shared hub connection and telemetry-in's Event Hubs connection.
    const steady = async (what: string): Promise<void> => {
      for (const id of SERVICE_NODES) await nodeRed.waitForStatus(id, isConnected, `connected (${what})`);
      await waitUntil(
        () => simulator.snapshot().connections === deviceConnections + 2 && simulator.eventHub.readerCount === 4,
        `two connections and four readers (${what}); have ${JSON.stringify(simulator.snapshot())}`,
      );
    };

    // A deployment that works sends a c2d message through to the device (and so holds its sender).
    const received: string[] = [];
    device.on('message', (m: { data: Buffer }) => received.push(m.data.toString()));
    const roundTrip = async (round: number): Promise<void> => {
      const inject = await nodeRed.request('POST', '/inject/send');
      assert.equal(inject.status, 200);
      await waitUntil(() => received.includes(`round ${round}`), `the c2d message of deploy ${round} at the device`);
    };

    let baseline: ProcessProbe | undefined;
    for (let round = 1; round <= DEPLOYS; round++) {
      nodeRed.statuses.clear();
      await nodeRed.deploy(flow(simulator, round));
      // Every other deploy lands while the previous one is still connecting; the rest wait until connected.
      if (round % 2 === 0 || round === WARMUP || round === DEPLOYS) await steady(`deploy ${round}`);
      if (round === WARMUP) {
        await roundTrip(round);
        baseline = await nodeRed.probe();
      }
    }
    await roundTrip(DEPLOYS);

    // Counts, compared once the runtime has settled (waited for, never slept for).
    const start = baseline as ProcessProbe;
    let last: ProcessProbe = start;
    const settled = (target: ProcessProbe, exact: boolean): boolean => {
      const same = (a: number, b: number): boolean => (exact ? a === b : a <= b);
      return (
        same(last.resources.TCPSocketWrap ?? 0, target.resources.TCPSocketWrap ?? 0) &&
        // Timers come and go with Node-RED's own work: fewer is fine, more is a leak.
        sum(last.resources) <= sum(target.resources) &&
        same(sum(last.listeners), sum(target.listeners)) &&
        CLASSES.every((c) => same(last.instances[c.name], target.instances[c.name]))
      );
    };
    await waitUntil(async () => {
      last = await nodeRed.probe();
      return settled(start, false);
    }, `live objects, handles and listeners back to the baseline after ${DEPLOYS} deploys`).catch((err: Error) => {
      throw new Error(`${err.message}\nafter ${WARMUP}: ${JSON.stringify(start)}\nafter ${DEPLOYS}: ${JSON.stringify(last)}`);
    });
    assert.equal(last.instances.HubConnection, 2, 'one deployment holds two connections');
    const growth = last.heapUsed - start.heapUsed;
    process.stdout.write(
      `      heap after ${WARMUP} deploys ${(start.heapUsed / 1048576).toFixed(1)} MB, after ${DEPLOYS} ${(last.heapUsed / 1048576).toFixed(1)} MB; live ${JSON.stringify(last.instances)}\n`,
    );
    assert.ok(growth < HEAP_SLACK, `heap grew by ${(growth / 1048576).toFixed(1)} MB over ${DEPLOYS - WARMUP} deploys`);

    // Nothing deployed: the hub sees no connection from Node-RED, none of the package's objects is
    // alive, and the process holds what it held before the first deploy.
    await nodeRed.deploy([]);
    await waitUntil(() => simulator.snapshot().connections === deviceConnections && simulator.eventHub.readerCount === 0, 'no connection from Node-RED');
    await waitUntil(async () => {
      last = await nodeRed.probe();
      return settled(idle, true);
    }, 'the live objects, handles and listeners of an idle Node-RED').catch((err: Error) => {
      throw new Error(`${err.message}\nidle: ${JSON.stringify(idle)}\nnow: ${JSON.stringify(last)}`);
    });
    await nodeRed.stop();
    assertCleanLog(nodeRed.log);
  });
});
