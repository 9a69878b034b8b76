/**
 * The connection node's "test connection" and device-list endpoints in a real Node-RED process, as
 * the editor calls them: with a dialog's settings before any deploy, with a stored connection string
 * read by id, and with the mistakes people make. Each answer must name the identity and host or the
 * exact failure, and never hold a key.
 */
import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import type { SimulatedHub } from '../../src/simulator';
import { DEFAULT_KEYS } from '../../src/simulator/registry';
import { startTestHub, testCertDir } from '../helpers/hub';
import { freePort, NodeRedRuntime, type FlowNode } from '../helpers/node-red-runtime';
import { assertCleanLog, azureConnection, reportRuntimeOnFailure } from './support';

interface Answer {
  ok: boolean;
  code?: string;
  message?: string;
  socketCode?: string;
  kind?: string;
  host?: string;
  identity?: string;
  where?: string;
  port?: number;
  source?: string;
  devices?: Array<{ deviceId: string; status?: string }>;
}

describe('connection node: test connection and device list endpoints (real Node-RED)', function () {
  this.timeout(120_000);
  let hub: SimulatedHub;
  let runtime: NodeRedRuntime;
  const ca = path.join(testCertDir(), 'cert.pem');
  const azure = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({ mode: 'azure', transport: 'amqps', caFile: ca, ...extra });

  async function post(endpoint: 'check' | 'devices', body: unknown): Promise<Answer> {
    const result = await runtime.request('POST', `/iothub-connection/${endpoint}`, body);
    assert.equal(result.status, 200, result.text);
    // No key of the simulator's, typed or stored, comes back in any answer.
    for (const key of Object.values(DEFAULT_KEYS)) assert.ok(!result.text.includes(key), `a key in the answer: ${result.text}`);
    assert.ok(!/SharedAccessKey=|SharedAccessSignature /.test(result.text), result.text);
    return JSON.parse(result.text) as Answer;
  }

  before(async () => {
    hub = await startTestHub();
    runtime = await NodeRedRuntime.create({ probe: false });
    await runtime.start();
  });

  afterEach(function () {
    reportRuntimeOnFailure(this.currentTest, runtime);
  });

  after(async () => {
    await runtime?.dispose().catch(() => undefined);
    await hub?.close();
  });

  it('connects and authenticates with the settings a dialog holds before any deploy, and names who and where', async () => {
    const service = await post('check', { settings: azure(), connectionString: hub.serviceConnectionString() });
    assert.equal(service.ok, true, JSON.stringify(service));
    assert.equal(service.kind, 'gateway', 'a hub policy string is read as service side and gateway');
    assert.equal(service.host, hub.hostWithPort);
    assert.match(service.identity ?? '', /policy iothubowner on /);

    const device = await post('check', { settings: azure(), connectionString: hub.deviceConnectionString('check-device') });
    assert.equal(device.ok, true, JSON.stringify(device));
    assert.equal(device.kind, 'device');
    assert.match(device.identity ?? '', /device check-device on /);
  });

  it('reports the exact failure: a wrong key, a host that does not resolve, a string that is not one, an unset variable', async () => {
    const wrongKey = hub.serviceConnectionString().replace(/SharedAccessKey=[^;]+/, `SharedAccessKey=${Buffer.alloc(32, 7).toString('base64')}`);
    const refused = await post('check', { settings: azure(), connectionString: wrongKey });
    assert.equal(refused.ok, false);
    assert.equal(refused.code, 'Unauthorized', JSON.stringify(refused));

    const unknownDevice = hub
      .deviceConnectionString('check-device')
      .replace(/SharedAccessKey=[^;]+/, `SharedAccessKey=${Buffer.alloc(32, 9).toString('base64')}`);
    const deviceRefused = await post('check', { settings: azure(), connectionString: unknownDevice });
    assert.equal(deviceRefused.ok, false);
    assert.equal(deviceRefused.code, 'Unauthorized', JSON.stringify(deviceRefused));

    const nowhere = await post('check', {
      settings: azure(),
      connectionString: `HostName=no-such-hub.invalid;SharedAccessKeyName=iothubowner;SharedAccessKey=${DEFAULT_KEYS.iothubowner}`,
    });
    assert.equal(nowhere.ok, false);
    assert.equal(nowhere.code, 'NotConnected', JSON.stringify(nowhere));
    // A name that cannot resolve: ENOTFOUND, or EAI_AGAIN where the machine has no DNS server to ask (both the same status word).
    assert.ok(['ENOTFOUND', 'EAI_AGAIN'].includes(String(nowhere.socketCode)), JSON.stringify(nowhere));

    const garbage = await post('check', { settings: azure(), connectionString: 'not a connection string' });
    assert.equal(garbage.ok, false);
    assert.equal(garbage.code, 'InvalidConnectionString');

    const unset = await post('check', { settings: azure(), connectionString: '${IOTHUB_CHECK_NOT_SET}' });
    assert.equal(unset.ok, false);
    assert.match(unset.message ?? '', /IOTHUB_CHECK_NOT_SET is not set/);
  });

  it('uses the stored connection string of a deployed config node when the dialog shows it hidden', async () => {
    const config = azureConnection(hub, 'stored-hub');
    await runtime.deploy([{ id: 'tab', type: 'tab', label: 'check' }, config] as FlowNode[]);
    const stored = await post('check', { id: 'stored-hub', settings: azure(), connectionString: '__PWRD__' });
    assert.equal(stored.ok, true, JSON.stringify(stored));
    assert.equal(stored.host, hub.hostWithPort);
    // Without an id there is nothing stored to use: said, not guessed.
    const none = await post('check', { settings: azure(), connectionString: '__PWRD__' });
    assert.equal(none.ok, false);
    assert.equal(none.code, 'InvalidConnectionString');
  });

  it('in local mode starts or joins the simulator on the port and lists its devices', async () => {
    const port = await freePort();
    const local = await post('check', { settings: { mode: 'local', localPort: port } });
    assert.equal(local.ok, true, JSON.stringify(local));
    assert.equal(local.where, 'this Node-RED');
    assert.equal(local.port, port);

    // A device joins that simulator (the local owner policy registers it on first use), then shows in the list.
    const deviceFlow: FlowNode[] = [
      { id: 'tab', type: 'tab', label: 'local' },
      { id: 'local-hub', type: 'iothub-connection', mode: 'local', localPort: port },
      { id: 'dout', type: 'iothub-device-out', z: 'tab', hub: 'local-hub', deviceId: 'press-7', deviceIdType: 'str', x: 300, y: 100, wires: [[]] },
      {
        id: 'inject',
        type: 'inject',
        z: 'tab',
        props: [{ p: 'payload' }],
        once: true,
        onceDelay: 0.1,
        payload: '1',
        payloadType: 'num',
        repeat: '',
        topic: '',
        x: 100,
        y: 100,
        wires: [['dout']],
      },
    ];
    await runtime.deploy(deviceFlow);
    let listed: Answer | undefined;
    for (let i = 0; i < 100; i++) {
      listed = await post('devices', { id: 'local-hub', settings: { mode: 'local', localPort: port } });
      if (listed.devices?.some((d) => d.deviceId === 'press-7')) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(listed?.ok, true, JSON.stringify(listed));
    assert.equal(listed?.source, 'local');
    assert.ok(
      listed?.devices?.some((d) => d.deviceId === 'press-7'),
      JSON.stringify(listed),
    );
  });

  it('lists a device string as that one device, and refuses an Event Hubs string with a reason', async () => {
    const device = await post('devices', { settings: azure(), connectionString: hub.deviceConnectionString('only-me') });
    assert.deepEqual(device.devices, [{ deviceId: 'only-me' }]);
    assert.equal(device.source, 'identity');
    const eventHub = await post('devices', { settings: azure(), connectionString: hub.eventHubConnectionString() });
    assert.equal(eventHub.ok, false);
    assert.equal(eventHub.code, 'InvalidOperation');
  });

  it('left nothing in the log that should not be there', () => {
    assertCleanLog(runtime.log);
  });
});
