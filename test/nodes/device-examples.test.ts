/**
 * The device-out and device-in example flows, loaded as shipped (only the simulator port is moved to
 * a free one, so the test never meets another simulator): the inject buttons lead to the messages
 * the comments promise.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import helper from 'node-red-node-test-helper';
import injectNode = require('@node-red/nodes/core/common/20-inject.js');
import debugNode = require('@node-red/nodes/core/common/21-debug.js');
import commentNode = require('@node-red/nodes/core/common/90-comment.js');
import changeNode = require('@node-red/nodes/core/function/15-change.js');
import connectionNode from '../../src/nodes/iothub-connection';
import c2dSendNode from '../../src/nodes/iothub-c2d-send';
import deviceInNode from '../../src/nodes/iothub-device-in';
import deviceOutNode from '../../src/nodes/iothub-device-out';
import telemetryInNode from '../../src/nodes/iothub-telemetry-in';
import { acquireLocalHub } from '../../src/nodes/local-simulator';
import type { SimulatedHub } from '../../src/simulator';
import { collect, inject, serverPerTest, statuses } from '../helpers/flow';
import { freePort, waitFor } from '../helpers/hub';

helper.init(require.resolve('node-red'));

const CORE_NODES = [injectNode, debugNode, commentNode, changeNode];
const OUR_NODES = [connectionNode, deviceOutNode, deviceInNode, c2dSendNode, telemetryInNode];

interface FlowNode {
  id: string;
  type: string;
  name?: string;
  localPort?: number;
  [key: string]: unknown;
}

const EXAMPLES = path.resolve(__dirname, '..', '..', '..', 'examples');

function example(file: string): FlowNode[] {
  return JSON.parse(readFileSync(path.join(EXAMPLES, file), 'utf8')) as FlowNode[];
}

function byName(flow: FlowNode[], type: string, name?: string): string {
  const found = flow.filter((n) => n.type === type && (name === undefined || n.name === name));
  assert.equal(found.length, 1, `one ${type} ${name ?? ''}`);
  return found[0].id;
}

/** The example as a user imports it, on a free port; returns its simulator. */
async function loadExample(flow: FlowNode[]): Promise<SimulatedHub> {
  const port = await freePort();
  const config = flow.find((n) => n.type === 'iothub-connection');
  assert.ok(config, 'the example has its connection node');
  assert.equal(config.mode, 'local', 'local mode, so it runs as imported');
  const moved = flow.map((n) => (n === config ? { ...n, localPort: port } : n));
  await helper.load([...CORE_NODES, ...OUR_NODES], moved);
  const local = await acquireLocalHub(port);
  assert.ok(local.hub, 'the simulator runs in-process');
  return local.hub;
}

describe('device examples', function () {
  this.timeout(60_000);

  serverPerTest();

  for (const file of ['device-out.json', 'device-in.json']) {
    it(`${file} is an importable flow: a comment first, a local connection, no credentials`, () => {
      const flow = example(file);
      const [first, ...rest] = flow.filter((n) => n.type !== 'tab');
      assert.equal(first.type, 'comment');
      assert.ok(String(first.info).length > 200, 'the comment explains the flow');
      const ids = new Set(flow.map((n) => n.id));
      assert.equal(ids.size, flow.length, 'unique ids');
      for (const n of rest) {
        assert.ok(!('credentials' in n), `${n.id} carries no credentials`);
        for (const wire of ((n.wires as string[][] | undefined) ?? []).flat()) assert.ok(ids.has(wire), `${n.id} wires to a node in the flow`);
      }
      assert.ok(!JSON.stringify(flow).includes('SharedAccessKey'), 'no key anywhere');
    });
  }

  it('device-out.json: the inject sends a reading that the hub accepts and telemetry-in reads back', async () => {
    const flow = example('device-out.json');
    const sim = await loadExample(flow);
    const accepted = collect(byName(flow, 'debug', 'accepted by the hub'));
    const readBack = collect(byName(flow, 'debug', 'read back from the hub'));
    const reader = byName(flow, 'iothub-telemetry-in');
    await waitFor(() => statuses(reader).includes('node-red:common.status.connected'), 'telemetry-in to read', 20_000);
    // "latest" reads only what arrives after a partition's reader attached: every partition's, since the
    // reading goes to whichever one the device maps to (one attached reader is not enough).
    await waitFor(() => sim.eventHub.readerCount === sim.options.partitionCount, 'a reader on every partition');
    inject(byName(flow, 'inject'), {});
    await waitFor(() => accepted.length === 1 && readBack.length === 1, 'the reading, accepted and read back', 20_000);
    const reading = readBack[0].payload as { temperature: number; humidity: number };
    assert.equal(typeof reading.temperature, 'number');
    assert.equal(typeof reading.humidity, 'number');
    assert.equal(readBack[0].deviceId, 'example-sensor');
    assert.deepEqual(readBack[0].properties, { unit: 'C' });
    assert.equal(readBack[0].messageId, accepted[0].messageId);
  });

  it('device-in.json: both injects send C2D messages; one is completed by the node, one by the flow', async () => {
    const flow = example('device-in.json');
    const sim = await loadExample(flow);
    const auto = collect(byName(flow, 'debug', 'received (auto)'));
    const manual = collect(byName(flow, 'debug', 'received (manual)'));
    for (const id of flow.filter((n) => n.type === 'iothub-device-in').map((n) => n.id)) {
      await waitFor(() => statuses(id).includes('node-red:common.status.connected'), `device-in ${id} to attach`);
    }
    inject(byName(flow, 'inject', 'to example-device'), {});
    inject(byName(flow, 'inject', 'to example-manual'), {});
    await waitFor(() => auto.length === 1 && manual.length === 1, 'one message at each device-in');
    assert.equal(auto[0].deviceId, 'example-device');
    assert.equal((auto[0].payload as { command: string }).command, 'open valve');
    assert.deepEqual(auto[0].properties, { priority: 'high' });
    assert.equal(manual[0].deviceId, 'example-manual');
    assert.equal(manual[0].payload, 'reboot');
    assert.equal(typeof manual[0].lockToken, 'string');
    // The change node sends it back with settle = complete: both queues end empty.
    await waitFor(() => sim.c2d.depth('example-manual') === 0 && sim.c2d.depth('example-device') === 0, 'both messages completed');
  });
});
