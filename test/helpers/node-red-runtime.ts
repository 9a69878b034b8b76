/**
 * A real Node-RED runtime in a child process, for the tests that the in-process test helper cannot
 * do: restarts, persistent context, packaging, many redeploys of a real flow engine. It talks to
 * Node-RED only as a user's tools do: the Admin HTTP API and the editor's comms websocket.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import WebSocket from 'ws';
import { freePort } from './hub';
import { linkPackage, writeSettings, type ProbeClass, type SettingsOptions } from '../../scripts/node-red-setup';

export interface RuntimeOptions {
  /** Node-RED's red.js; default: the devDependency (Node-RED 4.x). */
  redJs?: string;
  /** The node binary to run it with; default: this one. */
  nodeBinary?: string;
  nodeArgs?: string[];
  /** A user directory to use; default: a new temporary one, removed by dispose(). */
  userDir?: string;
  /** Link this package into the user directory (default true); false when a test installs it itself. */
  linkPackage?: boolean;
  logLevel?: SettingsOptions['logLevel'];
  credentialSecret?: string;
  /** Serve the process probe (default true), counting live instances of these classes. */
  probe?: boolean | { classes: ProbeClass[] };
  /** Extra environment; NODE_EXTRA_CA_CERTS of the test process is not passed on. */
  env?: Record<string, string>;
}

export interface NodeStatus {
  fill?: string;
  shape?: string;
  text?: string;
}

export interface DebugMessage {
  id: string;
  z?: string;
  name?: string;
  topic?: string;
  msg: string;
  format: string;
  property?: string;
}

export interface ProcessProbe {
  heapUsed: number;
  resources: Record<string, number>;
  listeners: Record<string, number>;
  /** Live instances of the classes passed as `probe.classes`. */
  instances: Record<string, number>;
}

export interface HttpResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

export type FlowNode = Record<string, unknown> & { id: string; type: string };

const running = new Set<ChildProcess>();
// A failing test must not leave a Node-RED behind; mocha's own exit ends here too.
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** Polls an async condition until it holds; rejects after `ms` naming `what` and the last reason. */
export async function waitUntil(check: () => Promise<boolean> | boolean, what: string, ms = 30_000): Promise<void> {
  const start = Date.now();
  let lastError: unknown;
  for (;;) {
    try {
      if (await check()) return;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() - start > ms) {
      const reason = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
      throw new Error(`timed out waiting for ${what}${reason}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Lines of a Node-RED log that no healthy run has. */
export function logProblems(log: string): string[] {
  return log
    .split('\n')
    .filter((line) =>
      /\[error\]|Waiting for missing types|Cannot find module|Uncaught Exception|UnhandledPromiseRejection|unhandledRejection|MaxListenersExceededWarning|\bWarning: .*leak/i.test(
        line,
      ),
    );
}

export class NodeRedRuntime {
  readonly userDir: string;
  readonly port: number;
  /** Node status and debug messages, as the editor sees them. */
  readonly comms = new CommsClient();
  private readonly ownsUserDir: boolean;
  private readonly options: RuntimeOptions;
  private child?: ChildProcess;
  private exited?: Promise<void>;
  private output = '';

  private constructor(options: RuntimeOptions, userDir: string, ownsUserDir: boolean, port: number) {
    this.options = options;
    this.userDir = userDir;
    this.ownsUserDir = ownsUserDir;
    this.port = port;
  }

  /** Makes the user directory and settings; start() runs the process. */
  static async create(options: RuntimeOptions = {}): Promise<NodeRedRuntime> {
    const ownsUserDir = !options.userDir;
    const userDir = options.userDir ?? mkdtempSync(path.join(os.tmpdir(), 'iothub-node-red-'));
    const runtime = new NodeRedRuntime(options, userDir, ownsUserDir, await freePort());
    writeSettings(userDir, {
      port: runtime.port,
      logLevel: options.logLevel ?? 'debug',
      credentialSecret: options.credentialSecret ?? 'runtime-tests',
      probe: options.probe ?? true,
    });
    if (options.linkPackage !== false) linkPackage(userDir);
    return runtime;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Everything the process wrote to stdout and stderr, across restarts. */
  get log(): string {
    return this.output;
  }

  /** A position in the log, for logSince(). */
  mark(): number {
    return this.output.length;
  }

  logSince(mark: number): string {
    return this.output.slice(mark);
  }

  /** Starts Node-RED and resolves when its HTTP server answers and the flows have started. */
  async start(): Promise<void> {
    if (this.running) throw new Error('Node-RED is already running');
    const redJs = this.options.redJs ?? require.resolve('node-red/red.js');
    const env: NodeJS.ProcessEnv = { ...process.env, ...this.options.env };
    delete env.NODE_EXTRA_CA_CERTS;
    delete env.NODE_OPTIONS;
    const from = this.mark();
    const child = spawn(
      this.options.nodeBinary ?? process.execPath,
      [...(this.options.nodeArgs ?? []), redJs, '--userDir', this.userDir, '--settings', path.join(this.userDir, 'settings.js')],
      {
        cwd: this.userDir,
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    running.add(child);
    this.child = child;
    this.exited = new Promise<void>((resolve) => {
      child.on('exit', () => {
        running.delete(child);
        resolve();
      });
    });
    child.stdout?.setEncoding('utf8').on('data', (text: string) => (this.output += text));
    child.stderr?.setEncoding('utf8').on('data', (text: string) => (this.output += text));
    this.comms.statuses.clear();
    await this.waitForLog(/Started flows|Stopped flows|No flows/i, from, 60_000).catch((err: Error) => {
      throw new Error(`${err.message}\n--- Node-RED log ---\n${this.logSince(from).slice(-4000)}`);
    });
    await waitUntil(async () => (await this.request('GET', '/settings')).status === 200, 'the Admin API');
    await this.comms.connect(this.port);
  }

  /** Stops Node-RED as Ctrl-C does (flows closed, context flushed); kills it if that takes over 30 s. */
  async stop(): Promise<void> {
    this.comms.close();
    const child = this.child;
    if (!child || !this.running) return;
    child.kill('SIGINT');
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    await this.exited;
    clearTimeout(timer);
    if (child.signalCode === 'SIGKILL') throw new Error('Node-RED did not stop within 30 s of SIGINT');
  }

  /** Kills the process with SIGKILL, as a crash or a power cut ends it: nothing is closed or flushed. */
  async kill(): Promise<void> {
    this.comms.close();
    const child = this.child;
    if (!child || !this.running) return;
    child.kill('SIGKILL');
    await this.exited;
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  /** Stops the process (if running) and removes a temporary user directory. Safe to call twice. */
  async dispose(): Promise<void> {
    try {
      await this.stop();
    } finally {
      if (this.child && this.running) this.child.kill('SIGKILL');
      if (this.ownsUserDir) rmSync(this.userDir, { recursive: true, force: true });
    }
  }

  /** One request on its own connection, closed after it, so the runtime's handle counts stay comparable. */
  request(method: string, urlPath: string, body?: unknown, headers: Record<string, string> = {}): Promise<HttpResult> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port: this.port,
          method,
          path: urlPath,
          agent: false,
          headers: { connection: 'close', ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}), ...headers },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  }

  async getJson<T>(urlPath: string): Promise<T> {
    const result = await this.request('GET', urlPath, undefined, { accept: 'application/json' });
    if (result.status !== 200) throw new Error(`GET ${urlPath}: HTTP ${result.status}: ${result.text.slice(0, 300)}`);
    return JSON.parse(result.text) as T;
  }

  /** A full deploy, as the editor's Deploy button does; credentials ride on the nodes (`credentials`). */
  async deploy(flows: FlowNode[]): Promise<string> {
    const result = await this.request('POST', '/flows', { flows }, { 'Node-RED-API-Version': 'v2', 'Node-RED-Deployment-Type': 'full' });
    if (result.status !== 200) throw new Error(`deploy failed: HTTP ${result.status}: ${result.text.slice(0, 500)}`);
    return (JSON.parse(result.text) as { rev: string }).rev;
  }

  /** GET /flows (v2: the revision and the nodes). */
  async flows(): Promise<{ rev: string; flows: FlowNode[] }> {
    const result = await this.request('GET', '/flows', undefined, { 'Node-RED-API-Version': 'v2', accept: 'application/json' });
    if (result.status !== 200) throw new Error(`GET /flows: HTTP ${result.status}`);
    return JSON.parse(result.text) as { rev: string; flows: FlowNode[] };
  }

  /** The node sets the runtime loaded (GET /nodes). */
  async nodeSets(): Promise<Array<{ id: string; module: string; types: string[]; enabled: boolean; loaded: boolean; err?: string }>> {
    return this.getJson('/nodes');
  }

  /** Heap, handles and process listeners of the Node-RED process (needs `probe`). */
  async probe(): Promise<ProcessProbe> {
    return this.getJson<ProcessProbe>('/_probe/process');
  }

  async waitForLog(pattern: RegExp, since = 0, ms = 30_000): Promise<void> {
    await waitUntil(
      () => {
        if (pattern.test(this.logSince(since))) return true;
        if (!this.running) throw new Error('Node-RED exited');
        return false;
      },
      `Node-RED log to match ${pattern}`,
      ms,
    );
  }

  async waitForStatus(nodeId: string, check: (status: NodeStatus) => boolean, what: string, ms = 30_000): Promise<void> {
    await this.comms.waitForStatus(nodeId, check, what, ms, () => {
      if (!this.running) throw new Error('Node-RED exited');
    });
  }

  get statuses(): Map<string, NodeStatus> {
    return this.comms.statuses;
  }

  get statusHistory(): Array<{ id: string; status: NodeStatus }> {
    return this.comms.statusHistory;
  }

  get debug(): DebugMessage[] {
    return this.comms.debug;
  }
}

/** The editor's websocket: node status (retained, so current statuses arrive at once) and debug. */
export class CommsClient {
  readonly statuses = new Map<string, NodeStatus>();
  /** Every status event in order, for messages when a wait fails. */
  readonly statusHistory: Array<{ id: string; status: NodeStatus }> = [];
  readonly debug: DebugMessage[] = [];
  private ws?: WebSocket;

  connect(port: number): Promise<void> {
    this.close();
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/comms`);
      this.ws = ws;
      ws.on('error', (err) => reject(err));
      ws.on('open', () => {
        ws.send(JSON.stringify({ subscribe: 'status/#' }));
        ws.send(JSON.stringify({ subscribe: 'debug' }));
        resolve();
      });
      ws.on('message', (data: WebSocket.RawData) => {
        const parsed = JSON.parse(data.toString()) as Array<{ topic: string; data: unknown }> | { topic: string; data: unknown };
        for (const event of Array.isArray(parsed) ? parsed : [parsed]) {
          if (event.topic.startsWith('status/')) {
            const id = event.topic.slice('status/'.length);
            const status = (event.data ?? {}) as NodeStatus;
            this.statuses.set(id, status);
            this.statusHistory.push({ id, status });
          } else if (event.topic === 'debug') this.debug.push(event.data as DebugMessage);
        }
      });
    });
  }

  close(): void {
    this.ws?.terminate();
    this.ws = undefined;
  }

  /** `alive` throws when waiting makes no more sense (the process died). */
  async waitForStatus(nodeId: string, check: (status: NodeStatus) => boolean, what: string, ms = 30_000, alive: () => void = () => undefined): Promise<void> {
    await waitUntil(
      () => {
        alive();
        const status = this.statuses.get(nodeId);
        return status !== undefined && check(status);
      },
      `${nodeId} status: ${what} (last: ${JSON.stringify(this.statuses.get(nodeId) ?? null)})`,
      ms,
    );
  }
}
export { freePort };
