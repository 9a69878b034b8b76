/**
 * What a flow author reads in the Node-RED log: a lost connection (with its AMQP condition) and a device
 * the hub refuses, each told once per change, never with a key or a token in it.
 */
import { strict as assert } from 'node:assert';
import helper from 'node-red-node-test-helper';
import connectionNode from '../../src/nodes/iothub-connection';
import deviceInNode from '../../src/nodes/iothub-device-in';
import deviceOutNode from '../../src/nodes/iothub-device-out';
import { parseConnectionString } from '../../src/iothub/connection-string';
import { describeIdentity } from '../../src/iothub/log';
import type { SimulatedHub } from '../../src/simulator';
import { collect, inject, serverPerTest, statuses } from '../helpers/flow';
import { startTestHub, waitFor, delay } from '../helpers/hub';

helper.init(require.resolve('node-red'));

const CONNECTED = 'node-red:common.status.connected';

interface Spied {
  getCalls(): Array<{ thisValue: unknown; args: unknown[] }>;
}

/** The first argument of every call of `method` (log, warn, error) made by node `id`. */
function said(id: string, method: 'log' | 'warn' | 'error'): string[] {
  const node = helper.getNode(id);
  const spy = (node as unknown as Record<string, Spied>)[method];
  return spy
    .getCalls()
    .filter((c) => c.thisValue === node)
    .map((c) => String(c.args[0] instanceof Error ? c.args[0].message : c.args[0]));
}

function flow(nodes: object[]): object[] {
  return [
    { id: 'tab', type: 'tab', label: 'logs' },
    { id: 'conn1', type: 'iothub-connection', z: 'tab', mode: 'azure', transport: 'amqps', reconnectMin: 50, reconnectMax: 200 },
    ...nodes.map((n) => ({ z: 'tab', hub: 'conn1', ...n })),
    { id: 'sent', type: 'helper', z: 'tab', wires: [] },
    { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'tab', wires: [] },
  ];
}

/** Nothing any node of the flow said holds the key of `connectionString`. */
function assertNoSecrets(connectionString: string): void {
  const identity = parseConnectionString(connectionString, { gatewayPolicy: true });
  const key = 'key' in identity ? identity.key : undefined;
  assert.ok(key, 'the test string has a key');
  for (const id of ['conn1', 'out1', 'in1']) {
    if (!helper.getNode(id)) continue;
    for (const method of ['log', 'warn', 'error'] as const) {
      for (const line of said(id, method)) assert.ok(!line.includes(key) && !/sig=(?!\*)/.test(line), `${id} ${method}: "${line}" holds a secret`);
    }
  }
}

describe('log lines for flow authors', function () {
  this.timeout(60_000);
  let hub: SimulatedHub | undefined;

  serverPerTest({
    after: async () => {
      await hub?.close();
      hub = undefined;
    },
  });

  it('the config node warns once per loss, with the condition and who it is, and logs once when it is back', async () => {
    const sim = await startTestHub();
    hub = sim;
    const connectionString = sim.serviceConnectionString();
    await helper.load([connectionNode, deviceOutNode], flow([{ id: 'out1', type: 'iothub-device-out', deviceId: 'line-1', wires: [['sent']] }]), {
      conn1: { connectionString },
    });
    await waitFor(() => statuses('out1').includes(CONNECTED), 'connected');
    // A link in use: a connection with none rests when the hub closes it, instead of reconnecting.
    const sent = collect('sent');
    inject('out1', { payload: 'hello' });
    await waitFor(() => sent.length === 1, 'a message through');
    const who = describeIdentity(parseConnectionString(connectionString, { gatewayPolicy: true }));
    for (let loss = 1; loss <= 2; loss++) {
      sim.faults.refuseConnections(400);
      sim.faults.closeConnections();
      await waitFor(() => said('conn1', 'log').filter((l) => /reconnected/.test(l)).length === loss, `back after loss ${loss}`).catch((e: Error) => {
        throw new Error(`${e.message}: ${JSON.stringify({ warn: said('conn1', 'warn'), log: said('conn1', 'log'), st: statuses('out1') })}`);
      });
    }
    const lost = said('conn1', 'warn');
    assert.equal(lost.length, 2, `one warning per loss, not per retry: ${JSON.stringify(lost)}`);
    for (const line of lost) {
      assert.ok(line.startsWith(`iothub-connection.warn.disconnected: ${who}: `), line);
      assert.match(line, /\(amqp:connection:forced\)/);
    }
    assert.deepEqual(
      said('conn1', 'log').filter((l) => /reconnected/.test(l)),
      [`iothub-connection.log.reconnected: ${who}`, `iothub-connection.log.reconnected: ${who}`],
    );
    assertNoSecrets(connectionString);
  });

  it('device-out warns once when the hub refuses a device, however many messages fail, and logs when it accepts it again', async () => {
    const sim = await startTestHub({ autoRegister: false });
    hub = sim;
    const connectionString = sim.serviceConnectionString('device');
    await helper.load([connectionNode, deviceOutNode], flow([{ id: 'out1', type: 'iothub-device-out', wires: [['sent']] }]), { conn1: { connectionString } });
    const caught = collect('caught');
    const sent = collect('sent');
    for (let i = 1; i <= 3; i++) {
      inject('out1', { payload: `ghost ${i}`, deviceId: 'ghost-1' });
      await waitFor(() => caught.length === i, `failure ${i}`);
    }
    assert.deepEqual(
      caught.map((m) => m.error?.code),
      ['DeviceNotFound', 'DeviceNotFound', 'DeviceNotFound'],
    );
    const refused = said('out1', 'warn');
    assert.equal(refused.length, 1, `one warning for the device: ${JSON.stringify(refused)}`);
    assert.match(refused[0], /^device ghost-1: DeviceNotFound: /);
    sim.registry.addDevice('ghost-1');
    inject('out1', { payload: 'registered now', deviceId: 'ghost-1' });
    await waitFor(() => sent.length === 1, 'the send after registering');
    assert.deepEqual(said('out1', 'log'), ['device ghost-1: the hub accepts its messages again']);
    inject('out1', { payload: 'and again', deviceId: 'ghost-1' });
    await waitFor(() => sent.length === 2, 'one more send');
    assert.equal(said('out1', 'log').length, 1, 'said once');
    assertNoSecrets(connectionString);
  });

  it('device-in warns once while the hub refuses its device, and logs when it receives again', async () => {
    const sim = await startTestHub({ autoRegister: false });
    hub = sim;
    const connectionString = sim.serviceConnectionString('device');
    await helper.load([connectionNode, deviceInNode], flow([{ id: 'in1', type: 'iothub-device-in', deviceId: 'ghost-2', settle: 'auto', wires: [['sent']] }]), {
      conn1: { connectionString },
    });
    await waitFor(() => said('in1', 'warn').length === 1, 'the warning');
    // The link keeps trying (50 to 200 ms apart here): the same refusal is not told again.
    await delay(1000);
    const refused = said('in1', 'warn');
    assert.equal(refused.length, 1, JSON.stringify(refused));
    assert.match(refused[0], /^device ghost-2: DeviceNotFound: /);
    sim.registry.addDevice('ghost-2');
    await waitFor(() => statuses('in1').at(-1) === CONNECTED, 'attached once the device exists');
    await waitFor(() => said('in1', 'log').length === 1, 'the log line');
    assert.deepEqual(said('in1', 'log'), ['device ghost-2: receiving cloud-to-device messages again']);
    assertNoSecrets(connectionString);
  });
});
