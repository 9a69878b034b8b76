/** Small pieces the node tests share: collecting what reaches a node, and reading telemetry back. */
import { EventHubConsumerClient, earliestEventPosition, type ReceivedEventData } from '@azure/event-hubs';
import helper from 'node-red-node-test-helper';
import { stopLocalHubs } from '../../src/nodes/local-simulator';
import type { SimulatedHub } from '../../src/simulator';
import { waitFor } from './hub';

export interface FlowMsg {
  payload?: unknown;
  messageId?: string;
  topic?: string;
  error?: { message: string; code?: string; source?: { id: string } };
  [key: string]: unknown;
}

interface TestNode {
  on(event: 'input', listener: (msg: FlowMsg) => void): void;
  receive(msg: FlowMsg): void;
}

/** Every msg that reaches node `id` from now on. */
export function collect(id: string): FlowMsg[] {
  const seen: FlowMsg[] = [];
  (helper.getNode(id) as unknown as TestNode).on('input', (msg) => seen.push(msg));
  return seen;
}

interface SpiedStatus {
  getCalls(): Array<{ thisValue: unknown; args: Array<{ text?: string } | undefined> }>;
}

/**
 * Every status text node `id` has shown since the flow was loaded, read from the helper's spy, so a
 * status set while the flow starts is not missed. Call it again for later statuses.
 */
export function statuses(id: string): string[] {
  const node = helper.getNode(id);
  const spy = (node as unknown as { status: SpiedStatus }).status;
  return spy
    .getCalls()
    .filter((call) => call.thisValue === node)
    .map((call) => String(call.args[0]?.text));
}

export function inject(id: string, msg: FlowMsg): void {
  (helper.getNode(id) as unknown as TestNode).receive(msg);
}

/** Reads the built-in endpoint from the start with the official Event Hubs SDK until `count` events came. */
export async function readTelemetry(hub: SimulatedHub, count: number, ms = 15_000): Promise<ReceivedEventData[]> {
  const consumer = new EventHubConsumerClient('$Default', hub.eventHubConnectionString());
  const seen: ReceivedEventData[] = [];
  const subscription = consumer.subscribe(
    {
      processEvents: async (events: ReceivedEventData[]) => {
        seen.push(...events);
      },
      processError: async () => undefined,
    },
    { startPosition: earliestEventPosition, maxWaitTimeInSeconds: 1 },
  );
  try {
    await waitFor(() => seen.length >= count, `${count} events at the Event Hubs reader`, ms);
  } finally {
    await subscription.close();
    await consumer.close();
  }
  return seen;
}

/**
 * The lifecycle every node test file shares: a Node-RED test server per test; afterwards `before` (the
 * file's own peers: a device, a service client), then the flows unloaded, the server stopped, the
 * in-process simulators stopped, and `after` (the test's hub).
 */
export function serverPerTest(hooks: { before?: () => Promise<void>; after?: () => Promise<void> } = {}): void {
  beforeEach(async () => {
    await helper.startServer();
  });
  afterEach(async () => {
    await hooks.before?.();
    await helper.unload();
    await helper.stopServer();
    await stopLocalHubs();
    await hooks.after?.();
  });
}
