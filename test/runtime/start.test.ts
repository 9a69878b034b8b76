/**
 * `npm start` (dist/scripts/start.js): the simulator and Node-RED come up with the demo flow, the
 * printed connection strings work with the official device SDK, the demo's nodes connect and carry a
 * message each way, and Ctrl-C stops everything.
 */
import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client as DeviceClient, Message } from 'azure-iot-device';
import { Amqp as DeviceAmqp } from 'azure-iot-device-amqp';
import { CREDENTIAL_SECRET_FILE, DEMO_FLOW, SDK_DEVICE } from '../../scripts/start';
import { PACKAGE_ROOT } from '../../scripts/node-red-setup';
import { testCertDir } from '../helpers/hub';
import { CommsClient, freePort, logProblems, waitUntil, type FlowNode } from '../helpers/node-red-runtime';
import { closeQuietly } from '../helpers/sdk';
import { isConnected } from './support';

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.on('error', () => resolve(true));
  });
}

describe('npm start', function () {
  this.timeout(120_000);
  let child: ChildProcess | undefined;
  let output = '';
  let userDir: string | undefined;
  const comms = new CommsClient();
  let device: DeviceClient | undefined;

  after(async () => {
    comms.close();
    await closeQuietly(device);
    if (child && child.exitCode === null && child.signalCode === null) {
      // The script runs Node-RED as its own child: end the whole process group.
      process.kill(-(child.pid as number), 'SIGKILL');
    }
    if (userDir) rmSync(userDir, { recursive: true, force: true });
  });

  it('runs the simulator and Node-RED with the demo flow, prints working connection strings, and stops on Ctrl-C', async () => {
    const [editorPort, amqpPort, amqpsPort] = [await freePort(), await freePort(), await freePort()];
    userDir = mkdtempSync(path.join(os.tmpdir(), 'iothub-start-'));
    const args = [
      '--port',
      String(editorPort),
      '--amqp-port',
      String(amqpPort),
      '--amqps-port',
      String(amqpsPort),
      '--user-dir',
      userDir,
      '--cert-dir',
      testCertDir(),
    ];
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.NODE_EXTRA_CA_CERTS;
    const started = spawn(process.execPath, [path.join(PACKAGE_ROOT, 'dist', 'scripts', 'start.js'), ...args], {
      env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = started;
    started.stdout?.setEncoding('utf8').on('data', (t: string) => (output += t));
    started.stderr?.setEncoding('utf8').on('data', (t: string) => (output += t));
    const exited = new Promise<number | null>((resolve) => started.on('exit', (code) => resolve(code)));

    await waitUntil(() => output.includes('Ctrl-C stops Node-RED and the simulator.'), 'the banner').catch((err: Error) => {
      throw new Error(`${err.message}\n${output.slice(-3000)}`);
    });
    assert.ok(output.includes(`Node-RED editor:  http://127.0.0.1:${editorPort}`));
    const line = (after: string): string => {
      const lines = output.split('\n');
      return lines[lines.findIndex((l) => l.startsWith(after)) + 1].trim();
    };
    const deviceString = line('Device connection string');
    assert.match(line('Service connection string'), new RegExp(`^HostName=localhost:${amqpsPort};SharedAccessKeyName=iothubowner;SharedAccessKey=`));
    assert.match(deviceString, new RegExp(`^HostName=localhost:${amqpsPort};DeviceId=${SDK_DEVICE};SharedAccessKey=`));
    assert.match(line('Event Hubs-compatible connection string'), new RegExp(`^Endpoint=sb://localhost:${amqpPort}/;`));

    // The demo flow is what runs, and every IoT Hub node in it connects to the simulator started here.
    const demo = JSON.parse(readFileSync(path.join(PACKAGE_ROOT, DEMO_FLOW), 'utf8')) as FlowNode[];
    const ofType = (type: string): FlowNode => demo.find((n) => n.type === type) as FlowNode;
    await comms.connect(editorPort);
    for (const node of demo.filter((n) => n.type.startsWith('iothub-') && n.type !== 'iothub-connection')) {
      await comms.waitForStatus(node.id, isConnected, `${node.type} connected`);
    }
    const debugFrom = (type: string): string[] => {
      const sink = (ofType(type).wires as string[][])[0][0];
      return comms.debug.filter((d) => d.id === sink).map((d) => d.msg);
    };

    // The demo's own loops: device-out -> telemetry-in on its timer; a command -> device-in, feedback.
    await waitUntil(() => debugFrom('iothub-telemetry-in').length > 0, "the demo device's telemetry in the debug sidebar");
    const command = demo.find((n) => n.type === 'inject' && (n.wires as string[][])[0].includes(ofType('iothub-c2d-send').id)) as FlowNode;
    const inject = await fetch(`http://127.0.0.1:${editorPort}/inject/${command.id}`, { method: 'POST' });
    assert.equal(inject.status, 200);
    await waitUntil(() => debugFrom('iothub-device-in').some((m) => m.includes('blink')), 'the command at the demo device');
    await waitUntil(() => debugFrom('iothub-feedback-in').some((m) => m.includes('"Success"')), 'Success feedback in the debug sidebar');

    // The device picker of the demo's Node-RED reads this simulator's registry over its REST API (npm start says where).
    const demoDevice = String(ofType('iothub-device-out').deviceId);
    const picked = await fetch(`http://127.0.0.1:${editorPort}/iothub-connection/devices`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: ofType('iothub-connection').id, settings: { mode: 'local', localPort: amqpPort } }),
    });
    const list = (await picked.json()) as { ok: boolean; source?: string; devices?: Array<{ deviceId: string }> };
    assert.equal(list.ok, true, JSON.stringify(list));
    assert.equal(list.source, 'local');
    assert.ok(
      list.devices?.some((d) => d.deviceId === demoDevice),
      JSON.stringify(list),
    );
    assert.match(output, /service REST API https:\/\/[^:]+:\d+/);

    // The printed device string works with the official SDK, and telemetry-in sees that device too.
    device = DeviceClient.fromConnectionString(deviceString, DeviceAmqp);
    const client = device;
    client.on('error', () => undefined);
    await client.setOptions({ ca: readFileSync(path.join(testCertDir(), 'cert.pem'), 'utf8') });
    await client.open();
    const marker = `sdk-${Date.now()}`;
    const m = new Message(JSON.stringify({ marker }));
    m.contentType = 'application/json';
    m.contentEncoding = 'utf-8';
    await client.sendEvent(m);
    await waitUntil(() => debugFrom('iothub-telemetry-in').some((d) => d.includes(marker)), 'the SDK device telemetry in the debug sidebar');

    process.kill(started.pid as number, 'SIGINT');
    assert.equal(await exited, 0);
    assert.ok(await refused(amqpPort), 'the simulator has stopped');
    assert.ok(await refused(editorPort), 'Node-RED has stopped');
    assert.deepEqual(logProblems(output), [], 'problems in the output of npm start');
    // settings.js has a credentialSecret of its own, kept in the user directory, so Node-RED does not warn about its key.
    assert.ok(!output.includes('encrypted using a system-generated key'), 'Node-RED warned about its credentials key');
    const secret = readFileSync(path.join(userDir, CREDENTIAL_SECRET_FILE), 'utf8').trim();
    assert.match(secret, /^[0-9a-f]{64}$/);
    assert.ok(!output.includes(secret), 'npm start printed the credential key');
    assert.ok(readFileSync(path.join(userDir, 'settings.js'), 'utf8').includes(secret));
  });

  it('a second npm start on a taken editor port says how to choose another (--port) and starts nothing', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const editorPort = (taken.address() as net.AddressInfo).port;
    const amqpPort = await freePort();
    const dir = mkdtempSync(path.join(os.tmpdir(), 'iothub-start-port-'));
    try {
      const second = spawn(
        process.execPath,
        [
          path.join(PACKAGE_ROOT, 'dist', 'scripts', 'start.js'),
          '--port',
          String(editorPort),
          '--amqp-port',
          String(amqpPort),
          '--amqps-port',
          String(await freePort()),
          '--user-dir',
          dir,
          '--cert-dir',
          testCertDir(),
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let text = '';
      second.stdout?.setEncoding('utf8').on('data', (t: string) => (text += t));
      second.stderr?.setEncoding('utf8').on('data', (t: string) => (text += t));
      const code = await new Promise<number | null>((resolve) => second.on('exit', (c) => resolve(c)));
      assert.equal(code, 1, text);
      assert.match(text, new RegExp(`port ${editorPort} is already in use`));
      assert.match(text, new RegExp(`npm start -- --port ${editorPort + 1}`));
      assert.ok(await refused(amqpPort), 'the simulator did not start');
    } finally {
      await new Promise<void>((resolve) => taken.close(() => resolve()));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
