/**
 * An embedded Node-RED runtime (RED.init + RED.start, the real runtime with its editor and admin API
 * off) that loads this package from the repository as a user's install would, from its package.json
 * `node-red` section. Flows are deployed through the runtime API, credentials included.
 *
 * Load enters a flow through a core inject node (its `send()` routes through the runtime like any
 * node's output) and is counted at a core sink node wired after the node under test. A catch node
 * wired to a second sink turns any error into a failed round. Sinks are `link out` nodes linked to
 * nothing: junctions would do, but the runtime folds them into the wires they join.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** A runtime node instance as far as the benchmark touches it. */
export interface FlowNode {
  id: string;
  send(msg: object): void;
  on(event: 'input', listener: (msg: Record<string, unknown>) => void): void;
}

interface NodeRedApi {
  init(settings: Record<string, unknown>): void;
  start(): Promise<void>;
  stop(): Promise<void>;
  nodes: { getNode(id: string): FlowNode | null };
  events: NodeJS.EventEmitter;
  runtime: { flows: { setFlows(opts: { flows: { flows: object[]; credentials?: Record<string, object> }; deploymentType: 'full' }): Promise<unknown> } };
}

export interface EmbeddedNodeRed {
  deploy(flows: object[], credentials?: Record<string, object>): Promise<void>;
  node(id: string): FlowNode;
  stop(): Promise<void>;
}

const repositoryRoot = path.resolve(__dirname, '..', '..');

export async function startNodeRed(): Promise<EmbeddedNodeRed> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const RED = require('node-red') as NodeRedApi;
  const userDir = mkdtempSync(path.join(os.tmpdir(), 'iothub-bench-red-'));
  process.once('exit', () => rmSync(userDir, { recursive: true, force: true }));
  RED.init({
    userDir,
    flowFile: 'flows.json',
    credentialSecret: false,
    httpAdminRoot: false,
    httpNodeRoot: false,
    disableEditor: true,
    // The repository is a Node-RED module: its package.json lists the nodes, as in a user's install.
    nodesDir: [repositoryRoot],
    // Errors reach the flow's catch node and fail the round; the startup warnings are noise here.
    logging: { console: { level: 'error', metrics: false, audit: false } },
    telemetry: { enabled: false, updateNotification: false },
    // One memory store named as users name theirs, for telemetry-in's context-store checkpoints.
    contextStorage: { default: { module: 'memory' } },
    externalModules: { autoInstall: false, palette: { allowInstall: false } },
  });
  // RED.start resolves before the stored (empty) flows and credentials are loaded; a deploy before
  // that loses its credentials to the late load.
  const loaded = new Promise<void>((resolve) => {
    const onEvent = (event: { id?: string }): void => {
      if (event.id !== 'runtime-deploy') return;
      RED.events.off('runtime-event', onEvent);
      resolve();
    };
    RED.events.on('runtime-event', onEvent);
  });
  await RED.start();
  await loaded;
  const red: EmbeddedNodeRed = {
    async deploy(flows, credentials) {
      // setFlows resolves before the new flows have started; the runtime announces each revision
      // once started (the one it loaded at startup too, so the revision must match).
      const started = new Set<string>();
      let wake: (() => void) | undefined;
      const onEvent = (event: { id?: string; payload?: { revision?: string } }): void => {
        if (event.id !== 'runtime-deploy' || event.payload?.revision === undefined) return;
        started.add(event.payload.revision);
        wake?.();
      };
      RED.events.on('runtime-event', onEvent);
      try {
        const { rev } = (await RED.runtime.flows.setFlows({ flows: { flows, ...(credentials ? { credentials } : {}) }, deploymentType: 'full' })) as {
          rev: string;
        };
        while (!started.has(rev)) await new Promise<void>((resolve) => (wake = resolve));
      } finally {
        RED.events.off('runtime-event', onEvent);
      }
    },
    node(id) {
      const node = RED.nodes.getNode(id);
      if (!node) throw new Error(`node ${id} is not in the deployed flow`);
      return node;
    },
    async stop() {
      await red.deploy([]).catch(() => undefined);
      await RED.stop();
      rmSync(userDir, { recursive: true, force: true });
    },
  };
  return red;
}

/** The config node every bench flow uses: the simulator as an Azure hub, over TLS. */
export function connectionNode(id: string, certFile: string): object {
  return { id, type: 'iothub-connection', z: 'bench', name: 'bench hub', mode: 'azure', transport: 'amqps', caFile: certFile };
}

/** A node that ends the flow and can be listened to. */
export function sink(id: string): object {
  return { id, type: 'link out', z: 'bench', mode: 'link', links: [], wires: [] };
}

/** Tab, catch and the error sink every bench flow has; errors arrive at `errors`. */
export function benchFrame(): object[] {
  return [
    { id: 'bench', type: 'tab', label: 'benchmark' },
    { id: 'bench-catch', type: 'catch', z: 'bench', scope: null, uncaught: false, wires: [['errors']] },
    sink('errors'),
  ];
}

/**
 * The flow the sending benchmarks deploy: msgs enter at an inject node ('src', driven by FlowDriver),
 * pass `node` (wired to the sink 'sink') and are counted at the sink; `node` uses the connection 'hub'.
 */
export function sendingFlow(certFile: string, node: { id: string } & Record<string, unknown>): object[] {
  return [
    ...benchFrame(),
    connectionNode('hub', certFile),
    { id: 'src', type: 'inject', z: 'bench', props: [], repeat: '', once: false, wires: [[node.id]] },
    { z: 'bench', hub: 'hub', ...node, wires: [['sink']] },
    sink('sink'),
  ];
}
