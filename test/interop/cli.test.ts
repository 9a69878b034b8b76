/** The `iothub-sim` command: starts, prints connection strings, stops on SIGINT, fails in one line. */
import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as https from 'node:https';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseConnectionString } from '../../src/iothub/connection-string';
import { testCertDir } from '../helpers/hub';

const CLI = path.resolve(__dirname, '..', '..', 'src', 'simulator', 'cli.js');

interface Run {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function run(args: string[]): Run {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return { child, stdout: () => out, stderr: () => err, exit };
}

async function until(check: () => boolean, ms = 15_000): Promise<void> {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > ms) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('iothub-sim CLI', function () {
  it('--rest-port serves the HTTPS service API and prints where', async () => {
    const r = run(['--amqp-port', '0', '--amqps-port', 'off', '--rest-port', '0', '--cert-dir', testCertDir()]);
    try {
      await until(() => r.stdout().includes('Press Ctrl-C'));
      const port = Number(/REST\s+https:\/\/127\.0\.0\.1:(\d+)/.exec(r.stdout())?.[1]);
      assert.ok(port > 0, r.stdout());
      // Unsigned: the API answers, and refuses (401002) as IoT Hub does.
      const status = await new Promise<number>((resolve, reject) => {
        const req = https.request(
          { host: '127.0.0.1', port, servername: 'localhost', path: '/twins/x/methods?api-version=2021-04-12', method: 'POST' },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        req.on('error', reject);
        req.end('{}');
      });
      assert.equal(status, 401);
    } finally {
      r.child.kill('SIGINT');
      await r.exit;
    }
  });

  it('prints service, device and Event Hubs connection strings, serves them, and exits cleanly on SIGINT', async () => {
    const r = run(['--amqp-port', '0', '--amqps-port', '0', '--cert-dir', testCertDir(), '--device', 'pump-1']);
    try {
      await until(() => r.stdout().includes('Press Ctrl-C'));
      const lines = r
        .stdout()
        .split('\n')
        .map((l) => l.trim());
      const service = lines.find((l) => l.startsWith('HostName=') && l.includes('SharedAccessKeyName=iothubowner'));
      const device = lines.find((l) => l.includes('DeviceId=pump-1'));
      const eventHub = lines.find((l) => l.startsWith('Endpoint=sb://'));
      assert.ok(service && device && eventHub, r.stdout());
      assert.equal(parseConnectionString(service).kind, 'service');
      assert.equal(parseConnectionString(device).kind, 'device');
      const eh = parseConnectionString(eventHub);
      assert.equal(eh.kind, 'eventhub');
      // The printed AMQPS port really listens.
      const port = Number(/HostName=localhost:(\d+)/.exec(service)?.[1]);
      await new Promise<void>((resolve, reject) => {
        const socket = net.connect(port, '127.0.0.1', () => {
          socket.destroy();
          resolve();
        });
        socket.on('error', reject);
      });
      r.child.kill('SIGINT');
      const { code, signal } = await r.exit;
      assert.equal(code, 0, `exit code ${code}, signal ${signal}, stderr: ${r.stderr()}`);
      assert.equal(r.stderr(), '');
    } finally {
      r.child.kill('SIGKILL');
    }
  });

  it('--help prints usage and exits 0', async () => {
    const r = run(['--help']);
    const { code } = await r.exit;
    assert.equal(code, 0);
    assert.match(r.stdout(), /Usage: iothub-sim/);
  });

  for (const [what, makeArgs, pattern] of [
    [
      'a broken config file',
      async (dir: string) => {
        const file = path.join(dir, 'broken.json');
        await fs.writeFile(file, '{ "devices": [ ');
        return ['--config', file];
      },
      /^iothub-sim: config file .* is not valid JSON/,
    ],
    [
      'a config file with a bad device',
      async (dir: string) => {
        const file = path.join(dir, 'bad-device.json');
        await fs.writeFile(file, JSON.stringify({ devices: [{ deviceId: 'has space' }] }));
        return ['--config', file, '--amqp-port', '0', '--amqps-port', '0'];
      },
      /^iothub-sim: devices\[0\]\.deviceId is missing or invalid/,
    ],
    ['an unknown option', async () => ['--bogus'], /^iothub-sim: .*bogus/],
    ['a bad port', async () => ['--amqp-port', 'seventy'], /^iothub-sim: --amqp-port must be a port number/],
  ] as const) {
    it(`ends with one line and exit code 1 on ${what}`, async () => {
      const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'iothub-sim-cli-'));
      const r = run(await makeArgs(dir));
      const { code } = await r.exit;
      assert.equal(code, 1);
      const err = r.stderr().trimEnd();
      assert.equal(err.split('\n').length, 1, err);
      assert.match(err, pattern);
      assert.doesNotMatch(err, /\n\s+at /);
    });
  }

  it('ends with one line and exit code 1 when the port is taken', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve()));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const r = run(['--amqp-port', String(port), '--amqps-port', '0', '--cert-dir', testCertDir()]);
      const { code } = await r.exit;
      assert.equal(code, 1);
      assert.equal(r.stderr().trimEnd(), `iothub-sim: port ${port} on 127.0.0.1 is already in use`);
    } finally {
      blocker.close();
    }
  });
});
