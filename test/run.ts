/**
 * `npm test` runs this: it makes (or reuses) the simulator's test certificate, then runs mocha with
 * NODE_EXTRA_CA_CERTS pointing at it. The official service SDK has no CA option, and Node reads
 * NODE_EXTRA_CA_CERTS only when a process starts, so the test process must start with it set.
 */
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { loadOrMakeCertificate } from '../src/simulator/certificate';

async function main(): Promise<void> {
  const root = path.resolve(__dirname, '..', '..');
  const certDir = path.join(root, 'test-artifacts', 'certs');
  await loadOrMakeCertificate(certDir);
  const mocha = path.join(root, 'node_modules', 'mocha', 'bin', 'mocha.js');
  const args = process.argv.slice(2);
  const specs = args.filter((a) => !a.startsWith('-'));
  if (specs.length === 0) args.push('dist/test/**/*.test.js');
  const child = spawn(process.execPath, [mocha, ...args], {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, NODE_EXTRA_CA_CERTS: path.join(certDir, 'cert.pem'), IOTHUB_SIM_CERT_DIR: certDir },
  });
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
}

main().catch((err: unknown) => {
  process.stderr.write(`test runner: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
