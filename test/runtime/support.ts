/** Shared pieces of the tests that run a real Node-RED process against a test simulator. */
import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import type { SimulatedHub } from '../../src/simulator';
import { DEFAULT_KEYS } from '../../src/simulator/registry';
import { testCertDir } from '../helpers/hub';
import { logProblems, type FlowNode, type NodeRedRuntime, type NodeStatus } from '../helpers/node-red-runtime';

/**
 * The config node in Azure mode pointing at a simulator the test owns: the simulator (and its stored
 * telemetry) outlives Node-RED restarts, and the test sees its connections.
 */
export function azureConnection(hub: SimulatedHub, id = 'hubconn'): FlowNode {
  return {
    id,
    type: 'iothub-connection',
    name: 'test hub',
    mode: 'azure',
    transport: 'amqps',
    caFile: path.join(testCertDir(), 'cert.pem'),
    reconnectMin: 100,
    reconnectMax: 1000,
    credentials: { connectionString: hub.serviceConnectionString() },
  };
}

export const isConnected = (status: NodeStatus): boolean => status.fill === 'green' && status.shape === 'dot';

/** The log has no errors, crashes, unhandled rejections or listener leaks, and no secret. */
export function assertCleanLog(log: string): void {
  assert.deepEqual(logProblems(log), [], 'problems in the Node-RED log');
  for (const key of Object.values(DEFAULT_KEYS)) assert.ok(!log.includes(key), 'a key appears in the Node-RED log');
  assert.ok(!/SharedAccessKey=|SharedAccessSignature /.test(log), 'a connection string or token appears in the Node-RED log');
}

/** For afterEach: when the test failed, show the end of the Node-RED log and the last statuses. */
export function reportRuntimeOnFailure(test: Mocha.Test | undefined, runtime: NodeRedRuntime | undefined): void {
  if (!runtime || test?.state !== 'failed') return;
  process.stdout.write(`--- Node-RED log (end) ---\n${runtime.log.slice(-6000)}\n--- last statuses ---\n${JSON.stringify(runtime.statusHistory.slice(-20))}\n`);
}
