/**
 * Real AMQP clients nobody here wrote (Python uAMQP on azure-uamqp-c, azure-eventhub on pyamqp, Qpid
 * Proton) against the simulator's command-line server, as a user would run them.
 *
 * uAMQP always dials port 5671 whatever the URI says, so the simulator listens on 5671 and 5672 inside
 * a private network namespace (`unshare --net`) where nothing else on the machine can clash with it.
 * The namespace also has a private mount table, in which the system CA bundle (the file uAMQP and the
 * Python SDKs trust through certifi) is replaced by a copy that adds the simulator's certificate: the
 * clients run with their default TLS settings, and the machine's own trust store is never touched.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { testCertDir } from './hub';

const PYTHON = '/usr/bin/python3';
const SYSTEM_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';
const ROOT = path.resolve(__dirname, '..', '..', '..');
export const PYTHON_DIR = path.join(ROOT, 'test', 'interop', 'python');
const CLI = path.join(ROOT, 'dist', 'src', 'simulator', 'cli.js');

/** Why the Python peers cannot run here, or undefined when they can. */
export function pythonPeersMissing(): string | undefined {
  const modules = spawnSync(PYTHON, ['-c', 'import uamqp, azure.eventhub, proton'], { encoding: 'utf8' });
  if (modules.status !== 0) {
    return `the Python peers are not installed (apt-get install -y python3-uamqp python3-azure python3-qpid-proton): ${(modules.stderr || String(modules.error)).trim().split('\n').pop()}`;
  }
  const ns = spawnSync('unshare', ['--net', '--mount', '--', 'ip', 'link', 'set', 'lo', 'up'], { encoding: 'utf8' });
  if (ns.status !== 0)
    return `a private network namespace cannot be made here (unshare and ip from util-linux and iproute2, as root): ${(ns.stderr || String(ns.error)).trim()}`;
  if (!existsSync(SYSTEM_BUNDLE)) return `${SYSTEM_BUNDLE} is missing (apt-get install -y ca-certificates)`;
  return undefined;
}

/** Skips with a message on a developer's machine; fails in CI, where every peer must run. */
export function requirePythonPeers(context: Mocha.Context): void {
  const missing = pythonPeersMissing();
  if (!missing) return;
  if (process.env.CI) throw new Error(missing);
  process.stdout.write(`      skipped: ${missing}\n`);
  context.skip();
}

export interface PeerResult {
  [key: string]: unknown;
}

export class NamespacedHub {
  /** The Event Hubs-compatible connection string the simulator printed. */
  eventHubString = '';
  readonly certFile = path.join(testCertDir(), 'cert.pem');
  private output = '';

  private constructor(
    private readonly child: ChildProcess,
    private readonly dir: string,
  ) {}

  /** Starts `iothub-sim` on 5671 and 5672 in a namespace of its own, with the suite's certificate. */
  static async start(config: object = {}, devices: string[] = []): Promise<NamespacedHub> {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'iothub-peers-'));
    const bundle = path.join(dir, 'ca-bundle.crt');
    const certDir = testCertDir();
    writeFileSync(bundle, readFileSync(SYSTEM_BUNDLE, 'utf8') + '\n' + readFileSync(path.join(certDir, 'cert.pem'), 'utf8'));
    const configFile = path.join(dir, 'config.json');
    writeFileSync(configFile, JSON.stringify(config));
    const args = ['--cert-dir', certDir, '--config', configFile, ...devices.flatMap((d) => ['--device', d])].map(quote).join(' ');
    const script = `ip link set lo up && mount --bind ${quote(bundle)} ${SYSTEM_BUNDLE} && exec ${quote(process.execPath)} ${quote(CLI)} ${args}`;
    // unshare execs bash, which execs node: the child's pid is the simulator's, inside the namespace.
    const child = spawn('unshare', ['--net', '--mount', '--propagation', 'private', '--', 'bash', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    const hub = new NamespacedHub(child, dir);
    child.stdout?.on('data', (chunk: Buffer) => (hub.output += chunk.toString('utf8')));
    child.stderr?.on('data', (chunk: Buffer) => (hub.output += chunk.toString('utf8')));
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`the simulator did not start in its namespace:\n${hub.output}`)), 20_000);
        const check = (): void => {
          if (/Press Ctrl-C to stop/.test(hub.output)) {
            clearTimeout(timer);
            resolve();
          }
        };
        child.stdout?.on('data', check);
        child.once('error', (err) => {
          clearTimeout(timer);
          reject(new Error(`unshare could not be started: ${err.message}`));
        });
        child.once('exit', (code) => {
          clearTimeout(timer);
          reject(new Error(`the simulator exited (${code}) in its namespace:\n${hub.output}`));
        });
      });
      const match = /Event Hubs-compatible connection string[^\n]*\n\s*(Endpoint=\S+)/.exec(hub.output);
      if (!match) throw new Error(`no Event Hubs connection string in the simulator's output:\n${hub.output}`);
      hub.eventHubString = match[1];
      return hub;
    } catch (err) {
      // Nothing may outlive a failed start: a live child would keep mocha (exit: false) running for ever.
      await hub.close();
      throw err;
    }
  }

  /** Runs a script of test/interop/python inside the namespace; resolves with the JSON line it printed. */
  run(script: string, args: Record<string, string | number>, timeoutMs = 60_000): Promise<PeerResult> {
    const argv = Object.entries(args).map(([k, v]) => `${k}=${v}`);
    const child = spawn('nsenter', ['--target', String(this.child.pid), '--net', '--mount', `--wd=${PYTHON_DIR}`, PYTHON, '-u', script, ...argv], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(new Error(`${script} could not be started (nsenter): ${err.message}`));
      });
      // 'close', not 'exit': the last line may still be in the pipe when the process has exited.
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        const line = stdout.trim().split('\n').pop() ?? '';
        const tail = stderr.trim().split('\n').slice(-25).join('\n');
        if (code !== 0) {
          reject(
            new Error(
              `${script} ${signal === 'SIGKILL' ? `did not finish within ${timeoutMs} ms` : `exited with ${code ?? signal}`}:\n${tail}\n${stdout.slice(-2000)}`,
            ),
          );
          return;
        }
        try {
          resolve(JSON.parse(line) as PeerResult);
        } catch {
          reject(new Error(`${script} printed no result line:\n${stdout.slice(-2000)}\n${tail}`));
        }
      });
    });
  }

  async close(): Promise<void> {
    if (this.child.pid !== undefined && this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((resolve) => this.child.once('exit', resolve));
      this.child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function quote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
