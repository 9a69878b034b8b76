/**
 * `npm start`: the local IoT Hub simulator plus Node-RED 4 (the devDependency) with this package and
 * the end-to-end demo flow, in a user directory of its own (.node-red/, ignored by git). The demo's connection is
 * in local mode, so Node-RED joins the simulator started here. Ctrl-C stops both.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { LOCAL_FEEDBACK_FLUSH_MS, startSimulator, type SimulatedHub, type SimulatorOptionsInput } from '../src/simulator';
import { deviceList } from '../src/nodes/method-twin-fields';
import { linkPackage, PACKAGE_ROOT, writeSettings } from './node-red-setup';

/** The flow the demo starts with (relative to the package root). */
export const DEMO_FLOW = 'examples/end-to-end.json';
/** The device whose connection string is printed for SDK clients (the demo flow's own device is another). */
export const SDK_DEVICE = 'device1';

const HELP = `Usage: npm start [-- options]

Starts the local IoT Hub simulator and Node-RED with this package and the demo flow.

Options:
  --port N          Node-RED editor port (default 1880)
  --user-dir DIR    Node-RED user directory (default .node-red in the package)
  --amqp-port N     simulator plain AMQP port (default 5672; the demo's connection uses it)
  --amqps-port N    simulator AMQPS port (default 5671)
  --rest-port N     simulator service REST API port (default: any free port, printed)
  --cert-dir DIR    where the simulator keeps its certificate (default ~/.iothub-sim)
  --reset           replace the user directory's flows with the demo flow
  -h, --help        show this help
`;

type FlowNode = Record<string, unknown> & { id: string; type: string };

/** The demo flow as a flows file: on a tab of its own, pointing at the chosen simulator port. */
export function demoFlows(file: string, amqpPort: number): FlowNode[] {
  const nodes = JSON.parse(readFileSync(file, 'utf8')) as FlowNode[];
  let tab = nodes.find((n) => n.type === 'tab');
  const out = nodes.map((n) => ({ ...n }));
  if (!tab) {
    tab = { id: 'demo-flow-tab', type: 'tab', label: 'Azure IoT Hub demo', disabled: false, info: '' };
    out.unshift(tab);
  }
  for (const n of out) {
    // Example files leave z out (import puts them on the current tab); a flows file needs it.
    const isConfig = n.type === 'iothub-connection' || n.type === 'tab' || n.type === 'subflow';
    if (!isConfig && !n.z) n.z = tab.id;
    if (n.type === 'iothub-connection' && n.mode !== 'azure') n.localPort = amqpPort;
  }
  return out;
}

/** Registers the devices the flows file names (flowDevices); a file it cannot read registers none. */
function registerFlowDevices(hub: SimulatedHub, flowsFile: string): void {
  let nodes: FlowNode[];
  try {
    nodes = JSON.parse(readFileSync(flowsFile, 'utf8')) as FlowNode[];
  } catch {
    // Node-RED reads the file next and says what is wrong with it.
    return;
  }
  if (!Array.isArray(nodes)) return;
  for (const id of flowDevices(nodes)) {
    try {
      hub.registry.ensure(id);
    } catch {
      // An id IoT Hub would refuse: the node that names it says so when it starts.
    }
  }
}

/** The node types whose Device setting names devices that act on the hub (and so must exist there). */
const DEVICE_NODE_TYPES = new Set(['iothub-device-in', 'iothub-method-in', 'iothub-twin']);

/**
 * The devices a flows file's device nodes name on a local-mode connection, to register in the simulator
 * before Node-RED starts, as devices are registered on a real hub before a flow runs (a config node that
 * runs the simulator in its own Node-RED does the same at deploy). Ids from msg or env are not known here.
 */
export function flowDevices(nodes: FlowNode[]): string[] {
  const local = new Set(nodes.filter((n) => n.type === 'iothub-connection' && n.mode !== 'azure').map((n) => n.id));
  const ids = nodes
    .filter((n) => DEVICE_NODE_TYPES.has(n.type) && local.has(String(n.hub)) && (n.deviceIdType === undefined || n.deviceIdType === 'str'))
    .flatMap((n) => deviceList(typeof n.deviceId === 'string' ? n.deviceId : ''))
    .filter((id) => id !== '' && !id.includes('${'));
  return [...new Set(ids)];
}

/** The simulator `npm start` runs: feedback as often as the config node's local simulator sends it. */
export function demoSimulatorOptions(amqpPort: number, amqpsPort: number, certDir?: string, restPort = 0): SimulatorOptionsInput {
  // The REST API (direct methods, twins, the device picker's list) on a free port unless chosen, told to Node-RED through localRestEnv.
  return { amqpPort, amqpsPort, restPort, feedback: { flushIntervalMs: LOCAL_FEEDBACK_FLUSH_MS }, ...(certDir ? { certDir } : {}) };
}

/**
 * What tells the Node-RED process where this process's simulator serves its REST API and which
 * certificate it uses: a local-mode config node that joins a simulator of another process reads these
 * (src/nodes/local-simulator.ts), since nothing on AMQP says it.
 */
export function localRestEnv(hub: SimulatedHub | undefined): Record<string, string> {
  if (!hub || hub.ports.rest === undefined) return {};
  const env: Record<string, string> = { IOTHUB_SIM_REST_PORT: String(hub.ports.rest) };
  if (!hub.options.tls) env.IOTHUB_SIM_REST_CA = path.join(hub.options.certDir, 'cert.pem');
  return env;
}

/** The file in the user directory that keeps the demo's credential key. */
export const CREDENTIAL_SECRET_FILE = '.iothub-demo-credential-secret';

/**
 * The key Node-RED encrypts the demo's credentials with (flows_cred.json). Without one in settings.js
 * Node-RED makes its own and warns about it on every start. It is made once per user directory and kept
 * there (mode 0600), beside the file it protects: it guards whatever connection string someone types into
 * the demo, so it is not a fixed value anyone could read in this repository, and it is never printed.
 */
export function demoCredentialSecret(userDir: string): string {
  const file = path.join(userDir, CREDENTIAL_SECRET_FILE);
  if (existsSync(file)) {
    const kept = readFileSync(file, 'utf8').trim();
    if (kept) return kept;
  }
  mkdirSync(userDir, { recursive: true });
  const secret = randomBytes(32).toString('hex');
  writeFileSync(file, secret + '\n', { mode: 0o600 });
  return secret;
}

/** Fails with the way out when the editor port is taken (most often by an `npm start` still running). */
export async function checkEditorPort(editorPort: number): Promise<void> {
  const taken = await new Promise<boolean>((resolve, reject) => {
    const server = net.createServer();
    server.once('error', (err: NodeJS.ErrnoException) => (err.code === 'EADDRINUSE' ? resolve(true) : reject(err)));
    server.listen(editorPort, '127.0.0.1', () => server.close(() => resolve(false)));
  });
  if (taken) {
    const other = editorPort === 65535 ? 1881 : editorPort + 1;
    throw new Error(`port ${editorPort} is already in use (another npm start or Node-RED?); choose another with: npm start -- --port ${other}`);
  }
}

function port(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value)) throw new Error(`--${name} must be a port number`);
  return Number(value);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      'user-dir': { type: 'string' },
      'amqp-port': { type: 'string' },
      'amqps-port': { type: 'string' },
      'rest-port': { type: 'string' },
      'cert-dir': { type: 'string' },
      reset: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  const editorPort = port('port', values.port, 1880);
  const amqpPort = port('amqp-port', values['amqp-port'], 5672);
  const amqpsPort = port('amqps-port', values['amqps-port'], 5671);
  const restPort = port('rest-port', values['rest-port'], 0);
  const userDir = path.resolve(values['user-dir'] ?? path.join(PACKAGE_ROOT, '.node-red'));

  // Before the simulator starts, so a second npm start says what to do instead of half starting.
  await checkEditorPort(editorPort);
  let hub: SimulatedHub | undefined;
  try {
    hub = await startSimulator(demoSimulatorOptions(amqpPort, amqpsPort, values['cert-dir'], restPort));
  } catch (err) {
    if (!/already in use/.test((err as Error).message)) throw err;
    // Another simulator (iothub-sim, an earlier npm start) serves the port: the demo joins it.
    process.stdout.write(`Port ${amqpPort} is already in use; Node-RED joins the simulator listening there.\n`);
  }

  writeSettings(userDir, { port: editorPort, logLevel: 'info', credentialSecret: demoCredentialSecret(userDir) });
  linkPackage(userDir);
  const flowsFile = path.join(userDir, 'flows.json');
  if (values.reset || !existsSync(flowsFile)) {
    writeFileSync(flowsFile, JSON.stringify(demoFlows(path.join(PACKAGE_ROOT, DEMO_FLOW), amqpPort), null, 2) + '\n');
  }
  if (hub) registerFlowDevices(hub, flowsFile);

  const redJs = require.resolve('node-red/red.js', { paths: [PACKAGE_ROOT] });
  const child = spawn(process.execPath, [redJs, '--userDir', userDir, '--settings', path.join(userDir, 'settings.js')], {
    cwd: userDir,
    env: { ...process.env, ...localRestEnv(hub) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let announced = false;
  child.stdout?.setEncoding('utf8').on('data', (text: string) => {
    process.stdout.write(text);
    if (!announced && /Server now running at/.test(text)) {
      announced = true;
      process.stdout.write(banner(hub, editorPort, userDir, flowsFile));
    }
  });

  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    child.kill('SIGINT');
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  child.on('exit', (code) => {
    const closing = hub ? hub.close() : Promise.resolve();
    void closing.finally(() => process.exit(stopping ? 0 : (code ?? 1)));
  });
}

function banner(hub: SimulatedHub | undefined, editorPort: number, userDir: string, flowsFile: string): string {
  const lines = [
    '',
    '='.repeat(72),
    `Node-RED editor:  http://127.0.0.1:${editorPort}`,
    `User directory:   ${userDir} (flows: ${path.basename(flowsFile)}; --reset restores the demo)`,
  ];
  if (hub) {
    lines.push(
      '',
      `IoT Hub simulator "${hub.options.hubName}": AMQPS ${hub.options.host}:${hub.ports.amqps}, AMQP ${hub.options.host}:${hub.ports.amqp}` +
        (hub.ports.rest === undefined ? '' : `, service REST API https://${hub.options.host}:${hub.ports.rest}`),
      'Service connection string (iothubowner):',
      `  ${hub.serviceConnectionString()}`,
      `Device connection string (any device id works; it registers on first connect):`,
      `  ${hub.deviceConnectionString(SDK_DEVICE)}`,
      'Event Hubs-compatible connection string (built-in endpoint):',
      `  ${hub.eventHubConnectionString()}`,
    );
    if (hub.certificate) lines.push(`TLS certificate for the SDKs: ${hub.options.certDir}/cert.pem (NODE_EXTRA_CA_CERTS or the "ca" option)`);
  }
  lines.push('Ctrl-C stops Node-RED and the simulator.', '='.repeat(72), '');
  return lines.join('\n') + '\n';
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`npm start: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
