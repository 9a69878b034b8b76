/** Starts simulators for tests on free loopback ports, sharing the suite's trusted certificate. */
import * as net from 'node:net';
import * as path from 'node:path';
import { startSimulator, type SimulatedHub, type SimulatorOptionsInput } from '../../src/simulator';

export function testCertDir(): string {
  return process.env.IOTHUB_SIM_CERT_DIR ?? path.resolve(__dirname, '..', '..', '..', 'test-artifacts', 'certs');
}

export function startTestHub(options: SimulatorOptionsInput = {}): Promise<SimulatedHub> {
  return startSimulator({ amqpPort: 0, amqpsPort: 0, certDir: testCertDir(), ...options });
}

/** Resolves when `check` holds, polling; rejects after `ms` with `what` in the message. */
export async function waitFor(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A free loopback TCP port (asked of the OS, then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}
