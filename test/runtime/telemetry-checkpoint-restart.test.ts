/**
 * telemetry-in with a persistent checkpoint store in a real Node-RED: after a restart it resumes
 * right after the last event it handled, with no gap and no repeat. Devices send with the official
 * SDK through a simulator the test owns, so the telemetry outlives the Node-RED process.
 */
import { strict as assert } from 'node:assert';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import type { Client as DeviceClient } from 'azure-iot-device';
import type { SimulatedHub } from '../../src/simulator';
import { partitionForDevice } from '../../src/simulator/partitions';
import { startTestHub } from '../helpers/hub';
import { NodeRedRuntime, waitUntil, type FlowNode } from '../helpers/node-red-runtime';
import { closeQuietly, Message, openDevice } from '../helpers/sdk';
import { assertCleanLog, azureConnection, isConnected, reportRuntimeOnFailure } from './support';

interface Line {
  deviceId: string;
  partitionId: string;
  sequenceNumber: number;
  tag: string;
  i: number;
}

const CHECKPOINT_KEY = 'iothub-telemetry-in-checkpoints';

/** One device id per partition of 4. */
function spreadDevices(): string[] {
  const chosen = new Map<number, string>();
  for (let i = 0; chosen.size < 4; i++) {
    const partition = partitionForDevice(`restart-${i}`, 4);
    if (!chosen.has(partition)) chosen.set(partition, `restart-${i}`);
  }
  return [...chosen.values()];
}

function flow(hub: SimulatedHub, outFile: string): FlowNode[] {
  return [
    { id: 'tab1', type: 'tab', label: 'checkpoint restart' },
    azureConnection(hub),
    { id: 'tin', type: 'iothub-telemetry-in', z: 'tab1', hub: 'hubconn', startPosition: 'latest', checkpointStore: 'file', output: 'json', wires: [['shape']] },
    {
      id: 'shape',
      type: 'function',
      z: 'tab1',
      func: 'msg.payload = JSON.stringify({ deviceId: msg.deviceId, partitionId: msg.partitionId, sequenceNumber: msg.sequenceNumber, tag: msg.payload.tag, i: msg.payload.i });\nreturn msg;',
      outputs: 1,
      wires: [['sink']],
    },
    // The file node keeps what was handled across the restart; the comms websocket would lose what
    // arrives before the test reconnects.
    {
      id: 'sink',
      type: 'file',
      z: 'tab1',
      filename: outFile,
      filenameType: 'str',
      appendNewline: true,
      createDir: true,
      overwriteFile: 'false',
      encoding: 'utf8',
      wires: [[]],
    },
  ];
}

function readLines(file: string): Line[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Line);
}

/** The checkpoints the localfilesystem context store holds for the node, read from its files. */
function storedCheckpoints(userDir: string): Record<string, number> | undefined {
  const root = path.join(userDir, 'context');
  const files: string[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const full = path.join(dir, name);
      if (statSync(full).isDirectory()) walk(full);
      else if (name.endsWith('.json')) files.push(full);
    }
  };
  if (existsSync(root)) walk(root);
  for (const file of files) {
    const content = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    // Kept per endpoint and consumer group: one entry here, for the simulator's built-in endpoint.
    const stored = content[CHECKPOINT_KEY] as Record<string, Record<string, number>> | undefined;
    if (stored) {
      assert.deepEqual(Object.keys(stored), ['localhost/devhub/$default']);
      return stored['localhost/devhub/$default'];
    }
  }
  return undefined;
}

describe('telemetry-in in a real Node-RED: checkpoints across a restart', function () {
  this.timeout(180_000);
  let hub: SimulatedHub | undefined;
  let runtime: NodeRedRuntime | undefined;
  const devices: DeviceClient[] = [];

  afterEach(function () {
    reportRuntimeOnFailure(this.currentTest, runtime);
  });

  after(async () => {
    await runtime?.dispose();
    await closeQuietly(...devices.splice(0));
    await hub?.close();
  });

  it('resumes right after the last event handled before the restart: no gap, no repeat', async () => {
    hub = await startTestHub();
    const simulator = hub;
    const ids = spreadDevices();
    for (const id of ids) devices.push(await openDevice(simulator, id));
    const send = async (tag: string, count: number): Promise<void> => {
      for (let i = 0; i < count; i++) {
        for (const [n, device] of devices.entries()) {
          const m = new Message(JSON.stringify({ tag, i }));
          m.messageId = `${tag}-${ids[n]}-${i}`;
          m.contentType = 'application/json';
          m.contentEncoding = 'utf-8';
          await device.sendEvent(m);
        }
      }
    };

    runtime = await NodeRedRuntime.create();
    const nodeRed = runtime;
    const outFile = path.join(nodeRed.userDir, 'handled.jsonl');
    await nodeRed.start();
    await nodeRed.deploy(flow(simulator, outFile));
    await nodeRed.waitForStatus('tin', isConnected, 'connected');
    // "latest" means after the reader attached: send only once all four are.
    await waitUntil(() => simulator.eventHub.readerCount === 4, 'four partition readers');

    await send('before', 5);
    await waitUntil(() => readLines(outFile).length >= 20, 'the events sent before the restart');
    // Stop at once: the periodic checkpoint may not have run, the one on close must.
    await nodeRed.stop();
    const handled = readLines(outFile);
    assert.equal(handled.length, 20);
    const lastPerPartition: Record<string, number> = {};
    for (const l of handled) lastPerPartition[l.partitionId] = Math.max(lastPerPartition[l.partitionId] ?? -1, l.sequenceNumber);
    assert.deepEqual(storedCheckpoints(nodeRed.userDir), lastPerPartition, 'the file store holds the last sequence number handled per partition');

    // Sent while Node-RED is down: only the checkpoint can bring these (the start position is "latest").
    await send('down', 5);
    await nodeRed.start();
    await nodeRed.waitForStatus('tin', isConnected, 'connected after the restart');
    await waitUntil(() => simulator.eventHub.readerCount === 4, 'four partition readers after the restart');
    await send('after', 5);

    const expected = new Set(['before', 'down', 'after'].flatMap((tag) => ids.flatMap((id) => [0, 1, 2, 3, 4].map((i) => `${tag}/${id}/${i}`))));
    await waitUntil(() => {
      const seen = new Set(readLines(outFile).map((l) => `${l.tag}/${l.deviceId}/${l.i}`));
      return [...expected].every((k) => seen.has(k));
    }, 'every event, before, during and after the restart');
    await nodeRed.stop();

    const lines = readLines(outFile);
    assert.equal(lines.length, expected.size, 'each event handled exactly once');
    // No gap: per partition, what was handled is exactly what the hub stored, in order.
    const stored = new Map<string, number[]>();
    for (const { partitionId, event } of simulator.events()) stored.set(partitionId, [...(stored.get(partitionId) ?? []), event.sequenceNumber]);
    for (const [partitionId, sequenceNumbers] of stored) {
      assert.deepEqual(
        lines.filter((l) => l.partitionId === partitionId).map((l) => l.sequenceNumber),
        sequenceNumbers,
        `partition ${partitionId}`,
      );
    }
    assert.equal(stored.size, 4);
    assertCleanLog(nodeRed.log);
  });
});
