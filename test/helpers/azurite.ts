/**
 * Azurite's Blob service in a child process on a free loopback port, in memory, for the tests of Blob
 * checkpoints. Telemetry is always off (the test machines have no internet, and tests phone no one).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as net from 'node:net';
import * as path from 'node:path';
import { freePort } from './hub';

/** Azurite's well-known development account (documented by Microsoft; not a secret). */
export const AZURITE_ACCOUNT = 'devstoreaccount1';
export const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export class Azurite {
  private constructor(
    readonly port: number,
    private readonly child: ChildProcess,
  ) {}

  /**
   * Starts it and resolves once it accepts connections: in memory, or keeping its data in `location`
   * (for a test that stops and starts it again on the same port, as a storage outage would).
   */
  static async start(port?: number, location?: string): Promise<Azurite> {
    const chosen = port ?? (await freePort());
    const main = path.resolve(require.resolve('azurite/package.json'), '..', 'dist', 'src', 'blob', 'main.js');
    const storage = location === undefined ? ['--inMemoryPersistence'] : ['--location', location];
    const child = spawn(
      process.execPath,
      [main, '--blobHost', '127.0.0.1', '--blobPort', String(chosen), ...storage, '--disableTelemetry', '--skipApiVersionCheck', '--silent', '--loose'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    running.add(child);
    child.once('exit', () => running.delete(child));
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const azurite = new Azurite(chosen, child);
    const start = Date.now();
    while (!(await accepts(chosen))) {
      if (child.exitCode !== null || Date.now() - start > 30_000) {
        child.kill('SIGKILL');
        throw new Error(`Azurite did not start on port ${chosen}: ${stderr.slice(-500)}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    return azurite;
  }

  get connectionString(): string {
    return connectionStringFor(this.port);
  }

  /** Stops it (in memory: everything stored is gone). */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill('SIGKILL');
    await exited;
  }
}

/** The connection string of Azurite's development account on a port. */
export function connectionStringFor(port: number): string {
  return `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};BlobEndpoint=http://127.0.0.1:${port}/${AZURITE_ACCOUNT};`;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
