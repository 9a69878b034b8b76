/**
 * Every example in examples/ loads in a Node-RED runtime as shipped and does what its comment says: the debug
 * nodes are swapped for test probes (same ids and places in the flow); everything else runs as a user imports it,
 * the config node in local mode starting the simulator inside the runtime.
 */
import { strict as assert } from 'node:assert';
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import helper from 'node-red-node-test-helper';
import injectNode = require('@node-red/nodes/core/common/20-inject.js');
import catchNode = require('@node-red/nodes/core/common/25-catch.js');
import commentNode = require('@node-red/nodes/core/common/90-comment.js');
import functionNode = require('@node-red/nodes/core/function/10-function.js');
import changeNode = require('@node-red/nodes/core/function/15-change.js');
import connectionNode from '../../src/nodes/iothub-connection';
import c2dSendNode from '../../src/nodes/iothub-c2d-send';
import feedbackInNode from '../../src/nodes/iothub-feedback-in';
import telemetryInNode from '../../src/nodes/iothub-telemetry-in';
import deviceOutNode from '../../src/nodes/iothub-device-out';
import deviceInNode from '../../src/nodes/iothub-device-in';
import methodInNode from '../../src/nodes/iothub-method-in';
import methodInvokeNode from '../../src/nodes/iothub-method-invoke';
import methodResponseNode from '../../src/nodes/iothub-method-response';
import twinNode from '../../src/nodes/iothub-twin';
import twinDesiredNode from '../../src/nodes/iothub-twin-desired';
import { stopLocalHubs } from '../../src/nodes/local-simulator';
import { collect } from '../helpers/flow';
import { ContainerClient } from '@azure/storage-blob';
import { Azurite } from '../helpers/azurite';
import { freePort, waitFor } from '../helpers/hub';

helper.init(require.resolve('node-red'));

const ROOT = path.resolve(__dirname, '../../..');
const EXAMPLES = path.join(ROOT, 'examples');
const CORE_NODES = [injectNode, catchNode, commentNode, functionNode, changeNode];
const OUR_NODES = [
  connectionNode,
  c2dSendNode,
  feedbackInNode,
  telemetryInNode,
  deviceOutNode,
  deviceInNode,
  methodInNode,
  methodResponseNode,
  methodInvokeNode,
  twinNode,
  twinDesiredNode,
];
/**
 * A port free when the file starts: a simulator already serving a fixed port (one someone runs, or the
 * tests of another checkout running at the same time) would be joined, and its queues mixed with ours.
 */
let testPort = 0;

interface FlowNode {
  id: string;
  type: string;
  z?: string;
  wires?: string[][];
  [key: string]: unknown;
}

interface Msg {
  payload?: unknown;
  deviceId?: string;
  messageId?: string;
  lockToken?: string;
  properties?: Record<string, unknown>;
  partitionId?: string;
  sequenceNumber?: number;
  error?: { code?: string; message?: string };
  [key: string]: unknown;
}

interface Injectable {
  receive(msg: object): void;
}

function load(file: string): FlowNode[] {
  return JSON.parse(readFileSync(path.join(EXAMPLES, file), 'utf8')) as FlowNode[];
}

/** The example as a user imports it, its debug nodes replaced by probes, on the test's port. */
function runnable(nodes: FlowNode[]): FlowNode[] {
  return nodes.map((n) => {
    if (n.type === 'debug') return { id: n.id, type: 'helper', z: n.z, wires: [] };
    if (n.type === 'iothub-connection') return { ...n, localPort: testPort };
    return n;
  });
}

/** Messages each probe (former debug node) receives, by its id. */
function probes(nodes: FlowNode[]): Map<string, Msg[]> {
  const seen = new Map<string, Msg[]>();
  for (const n of nodes.filter((x) => x.type === 'debug')) seen.set(n.id, collect(n.id) as Msg[]);
  return seen;
}

function at(seen: Map<string, Msg[]>, id: string): Msg[] {
  const list = seen.get(id);
  assert.ok(list, `the example has a debug node ${id}`);
  return list;
}

describe('examples', function () {
  this.timeout(60_000);

  before(async () => {
    testPort = await freePort();
  });

  beforeEach(async () => {
    await helper.startServer();
  });

  afterEach(async () => {
    await helper.unload();
    await stopLocalHubs();
    await helper.stopServer();
  });

  it('each example is a flow with a tab, an explaining comment first, and a local-mode connection without credentials', () => {
    const files = readdirSync(EXAMPLES).filter((f) => f.endsWith('.json'));
    assert.ok(files.length >= 6, `examples: ${files.join(', ')}`);
    for (const file of files) {
      const nodes = load(file);
      const tabs = nodes.filter((n) => n.type === 'tab');
      assert.equal(tabs.length, 1, `${file}: one tab`);
      const first = nodes.find((n) => n.type !== 'tab');
      assert.equal(first?.type, 'comment', `${file}: the first node is a comment`);
      assert.ok(String(first?.info ?? '').length > 80, `${file}: the comment explains the flow`);
      const configs = nodes.filter((n) => n.type === 'iothub-connection');
      assert.equal(configs.length, 1, `${file}: one connection node`);
      assert.equal(configs[0]?.mode, 'local', `${file}: local mode`);
      for (const n of nodes) {
        assert.equal(n.credentials, undefined, `${file}: ${n.id} carries no credentials`);
        if (n.type !== 'tab' && n.type !== 'iothub-connection') assert.equal(n.z, tabs[0]?.id, `${file}: ${n.id} is on the tab`);
      }
      assert.doesNotMatch(JSON.stringify(nodes), /SharedAccessKey|SharedAccessSignature/, `${file}: no secrets`);
    }
  });

  it('every example has the same simulator connection node (id, name, settings), so importing another reuses it', () => {
    const files = readdirSync(EXAMPLES).filter((f) => f.endsWith('.json'));
    const configs = files.map((file) => ({ file, config: load(file).find((n) => n.type === 'iothub-connection') as FlowNode }));
    const [first] = configs;
    assert.equal(first?.config.name, 'local IoT Hub simulator');
    // Node-RED's import keeps an existing config node with the same id ("Import copy" reuses it) instead of adding one.
    for (const { file, config } of configs) assert.deepEqual(config, first?.config, `${file}: the shared connection node`);
    for (const file of files) {
      for (const n of load(file).filter((x) => typeof x.hub === 'string')) assert.equal(n.hub, first?.config.id, `${file}: ${n.id} uses the shared connection`);
    }
  });

  it("feedback-in's first comment says that a hub has one feedback queue, split between feedback-in nodes", () => {
    const comment = load('feedback-in.json').find((n) => n.type === 'comment');
    const info = String(comment?.info ?? '');
    assert.match(info.split('\n\n')[0] ?? '', /one feedback queue/);
    assert.match(info, /split the records/);
  });

  it('end-to-end: telemetry goes round trip, the command reaches the device and its feedback says Success', async () => {
    const nodes = load('end-to-end.json');
    await helper.load([...OUR_NODES, ...CORE_NODES], runnable(nodes));
    const seen = probes(nodes);
    await waitFor(() => at(seen, 'e2e-telemetry-debug').length > 0, 'telemetry from demo-sensor');
    const reading = at(seen, 'e2e-telemetry-debug')[0] as Msg;
    assert.equal(reading.deviceId, 'demo-sensor');
    assert.equal(typeof (reading.payload as { temperature?: unknown }).temperature, 'number');
    assert.equal(reading.properties?.unit, 'celsius');
    await waitFor(() => at(seen, 'e2e-command-debug').length > 0, 'the command at the device');
    assert.deepEqual(at(seen, 'e2e-command-debug')[0]?.payload, { command: 'blink', seconds: 3 });
    await waitFor(() => at(seen, 'e2e-feedback-debug').length > 0, 'feedback for the command');
    const sent = at(seen, 'e2e-accepted-debug')[0] as Msg;
    const record = at(seen, 'e2e-feedback-debug')[0]?.payload as { statusCode: string; originalMessageId: string; deviceId: string };
    assert.equal(record.statusCode, 'Success');
    assert.equal(record.originalMessageId, sent.messageId);
    assert.equal(record.deviceId, 'demo-sensor');
    assert.equal(at(seen, 'e2e-error-debug').length, 0, JSON.stringify(at(seen, 'e2e-error-debug')[0]?.error));
  });

  it('c2d-send: the command arrives with its property; a send to an unknown device reaches Catch as DeviceNotFound', async () => {
    const nodes = load('c2d-send.json');
    await helper.load([...OUR_NODES, ...CORE_NODES], runnable(nodes));
    const seen = probes(nodes);
    await waitFor(() => at(seen, 'c2d-device-debug').length > 0, 'the command at the device');
    const arrived = at(seen, 'c2d-device-debug')[0] as Msg;
    assert.deepEqual(arrived.payload, { setSpeed: 1200 });
    assert.equal(arrived.properties?.priority, 'high');
    await waitFor(() => at(seen, 'c2d-sent-debug').length > 0, 'the accepted send');
    assert.equal(at(seen, 'c2d-sent-debug')[0]?.messageId, arrived.messageId);
    assert.equal(at(seen, 'c2d-error-debug').length, 0);
    (helper.getNode('c2d-unknown') as unknown as Injectable).receive({});
    await waitFor(() => at(seen, 'c2d-error-debug').length > 0, 'the error for the unknown device');
    assert.equal(at(seen, 'c2d-error-debug')[0]?.error?.code, 'DeviceNotFound');
  });

  it('direct methods: the call fired on deploy is answered by the flow that plays the device; an unknown method is 404', async () => {
    const nodes = load('direct-methods.json');
    await helper.load([...OUR_NODES, ...CORE_NODES], runnable(nodes));
    const seen = probes(nodes);
    await waitFor(() => at(seen, 'meth-answer-debug').length > 0, 'the answer to the call made on deploy', 30_000);
    const answer = at(seen, 'meth-answer-debug')[0] as Msg;
    assert.equal(answer.statusCode, 200);
    assert.equal((answer.payload as { started: number }).started, 3);
    (helper.getNode('meth-unknown') as unknown as Injectable).receive({ payload: {}, methodName: 'selfDestruct' });
    await waitFor(() => at(seen, 'meth-answer-debug').length > 1, 'the answer for the unknown method');
    assert.equal(at(seen, 'meth-answer-debug')[1]?.statusCode, 404);
    assert.equal(at(seen, 'meth-error-debug').length, 0, JSON.stringify(at(seen, 'meth-error-debug')[0]?.error));
  });

  it('device twin: a set point from the inject reaches the device, which reports it back', async () => {
    const nodes = load('device-twin.json');
    await helper.load([...OUR_NODES, ...CORE_NODES], runnable(nodes));
    const seen = probes(nodes);
    await waitFor(() => at(seen, 'twin-device-debug').length > 0, 'the twin on deploy');
    (helper.getNode('twin-set-220') as unknown as Injectable).receive({ topic: 'update', payload: { setPoint: 220 } });
    await waitFor(() => at(seen, 'twin-device-debug').some((m) => m.topic === 'report'), 'the report of the new set point');
    (helper.getNode('twin-read') as unknown as Injectable).receive({ topic: 'get' });
    await waitFor(() => at(seen, 'twin-service-debug').length > 1, 'the twin read by the service');
    const twin = at(seen, 'twin-service-debug')[1]?.payload as { desired: { setPoint: number }; reported: { setPoint: number; heating: boolean } };
    assert.equal(twin.desired.setPoint, 220);
    assert.deepEqual({ setPoint: twin.reported.setPoint, heating: twin.reported.heating }, { setPoint: 220, heating: true });
    assert.equal(at(seen, 'twin-error-debug').length, 0, JSON.stringify(at(seen, 'twin-error-debug')[0]?.error));
  });

  it('feedback-in: the first job is rejected by the device and feedback-in says Rejected for its message id', async () => {
    const nodes = load('feedback-in.json');
    await helper.load([...OUR_NODES, ...CORE_NODES], runnable(nodes));
    const seen = probes(nodes);
    await waitFor(() => at(seen, 'fb-feedback-debug').length > 0, 'feedback for the first job');
    const first = at(seen, 'fb-device-debug')[0] as Msg;
    assert.deepEqual(first.payload, { job: 1 });
    assert.equal(typeof first.lockToken, 'string');
    const record = at(seen, 'fb-feedback-debug')[0]?.payload as { statusCode: string; originalMessageId: string };
    assert.equal(record.statusCode, 'Rejected');
    assert.equal(record.originalMessageId, at(seen, 'fb-sent-debug')[0]?.messageId);
    assert.equal(at(seen, 'fb-error-debug').length, 0, JSON.stringify(at(seen, 'fb-error-debug')[0]?.error));
  });

  it('telemetry-in: readings from both lines arrive with partition and sequence number', async () => {
    const nodes = load('telemetry-in.json');
    await helper.load([...OUR_NODES, ...CORE_NODES], runnable(nodes));
    const seen = probes(nodes);
    const from = (device: string): Msg[] => at(seen, 'tel-debug').filter((m) => m.deviceId === device);
    await waitFor(() => from('line-1').length > 0 && from('line-2').length > 0, 'readings from line-1 and line-2');
    for (const msg of [from('line-1')[0], from('line-2')[0]] as Msg[]) {
      assert.equal(typeof (msg.payload as { temperature?: unknown }).temperature, 'number');
      assert.match(String(msg.partitionId), /^[0-3]$/);
      assert.equal(typeof msg.sequenceNumber, 'number');
    }
    assert.equal(at(seen, 'tel-error-debug').length, 0, JSON.stringify(at(seen, 'tel-error-debug')[0]?.error));
  });

  it('telemetry-in across instances: with Azurite as the Blob store, readings of every line arrive, each back into telemetry-in as its checkpoint', async () => {
    const nodes = load('telemetry-in-instances.json');
    const azurite = await Azurite.start();
    try {
      // What the comment tells the user to type into Storage, on the port this test's Azurite has.
      // Balancing every half second instead of 10 s: a lone reader claims one partition a round.
      const flow = runnable(nodes).map((n) => (n.id === 'multi-in' ? { ...n, updateInterval: 0.5 } : n));
      await helper.load([...OUR_NODES, ...CORE_NODES], flow, { 'multi-in': { storageConnectionString: azurite.connectionString } });
      const seen = probes(nodes);
      // Start position "latest": the lines' readings after telemetry-in has claimed the partitions.
      await waitFor(() => new Set(at(seen, 'multi-debug').map((m) => m.partitionId)).size === 4, 'readings from all 4 partitions', 30_000);
      for (const msg of at(seen, 'multi-debug').slice(0, 4)) {
        assert.match(String(msg.deviceId), /^line-[1-8]$/);
        assert.equal(typeof (msg.payload as { temperature?: unknown }).temperature, 'number');
        assert.equal(msg.readBy, 'this Node-RED');
      }
      assert.equal(at(seen, 'multi-error-debug').length, 0, JSON.stringify(at(seen, 'multi-error-debug')[0]?.error));
      // The msgs that came back are the checkpoints, in the SDKs' layout.
      const container = new ContainerClient(azurite.connectionString, 'telemetry-checkpoints');
      const checkpointBlobs: string[] = [];
      for (let i = 0; i < 50 && checkpointBlobs.length === 0; i++) {
        for await (const blob of container.listBlobsFlat()) if (blob.name.includes('/$default/checkpoint/')) checkpointBlobs.push(blob.name);
        if (checkpointBlobs.length === 0) await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(checkpointBlobs.length > 0, 'checkpoints written for the msgs sent back');
    } finally {
      await helper.unload();
      await azurite.stop();
    }
  });
});
