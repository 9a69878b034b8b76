/** The iothub-connection config node in a real Node-RED runtime (node-red-node-test-helper). */
import { strict as assert } from 'node:assert';
import helper from 'node-red-node-test-helper';
import connectionNode from '../../src/nodes/iothub-connection';
import { acquireLocalHub } from '../../src/nodes/local-simulator';
import type { SimulatedHub } from '../../src/simulator';
import { freePort, startTestHub, waitFor } from '../helpers/hub';
import { testUserNode } from '../helpers/test-user-node';
import { serverPerTest } from '../helpers/flow';

helper.init(require.resolve('node-red'));

interface StatusCall {
  args: Array<{ fill?: string; shape?: string; text?: string }>;
}

interface SpiedNode {
  on(event: string, listener: (call: StatusCall) => void): void;
  receive(msg: object): void;
}

function tabFlow(config: Record<string, unknown>, deviceId = 'flow-device'): object[] {
  return [
    { id: 'tab', type: 'tab', label: 'test' },
    // Ids must not equal any property value in the flow: Node-RED takes such a value for a config reference.
    { id: 'conn1', type: 'iothub-connection', z: 'tab', name: 'test connection', ...config },
    { id: 'user', type: 'test-hub-user', z: 'tab', hub: 'conn1', deviceId, wires: [['out']] },
    { id: 'out', type: 'helper', z: 'tab', wires: [] },
    { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'tab', wires: [] },
  ];
}

function statuses(node: SpiedNode): string[] {
  const seen: string[] = [];
  node.on('call:status', (call) => seen.push(String(call.args[0]?.text)));
  return seen;
}

describe('iothub-connection config node', function () {
  this.timeout(60_000);
  let hub: SimulatedHub | undefined;

  serverPerTest({
    after: async () => {
      await hub?.close();
      hub = undefined;
    },
  });

  it('local mode starts the simulator, pushes status to its users and carries their messages', async () => {
    const port = await freePort();
    await helper.load([connectionNode, testUserNode], tabFlow({ mode: 'local', localPort: port }));
    const user = helper.getNode('user') as unknown as SpiedNode;
    const seen = statuses(user);
    const local = await acquireLocalHub(port);
    assert.ok(local.hub, 'the simulator runs in-process');
    await waitFor(() => seen.includes('node-red:common.status.connected'), 'connected status at the user');
    const out = helper.getNode('out') as unknown as SpiedNode;
    const arrived = new Promise<void>((resolve) => out.on('input', () => resolve()));
    user.receive({ payload: 'hello-local' });
    await arrived;
    const events = [...(local.hub as SimulatedHub).events()];
    assert.deepEqual(
      events.map((e) => e.message.message_id),
      ['hello-local'],
    );
    assert.equal(events[0].message.message_annotations?.['iothub-connection-device-id'], 'flow-device');
  });

  it('azure mode takes the connection string from credentials and connects over AMQPS', async () => {
    hub = await startTestHub();
    await helper.load([connectionNode, testUserNode], tabFlow({ mode: 'azure', transport: 'amqps' }), {
      conn1: { connectionString: hub.serviceConnectionString() },
    });
    const user = helper.getNode('user') as unknown as SpiedNode;
    const seen = statuses(user);
    await waitFor(() => seen.includes('node-red:common.status.connected'), 'connected status');
    const out = helper.getNode('out') as unknown as SpiedNode;
    const arrived = new Promise<void>((resolve) => out.on('input', () => resolve()));
    user.receive({ payload: 'hello-azure' });
    await arrived;
    assert.deepEqual(
      [...hub.events()].map((e) => e.message.message_id),
      ['hello-azure'],
    );
    const config = helper.getNode('conn1') as unknown as { role: string };
    assert.equal(config.role, 'gateway');
  });

  it('reads ${ENV_VAR} connection strings from the environment', async () => {
    hub = await startTestHub();
    process.env.IOTHUB_TEST_CONNECTION = hub.deviceConnectionString('env-device');
    try {
      await helper.load([connectionNode, testUserNode], tabFlow({ mode: 'azure' }, 'env-device'), { conn1: { connectionString: '${IOTHUB_TEST_CONNECTION}' } });
      const user = helper.getNode('user') as unknown as SpiedNode;
      const out = helper.getNode('out') as unknown as SpiedNode;
      const arrived = new Promise<void>((resolve) => out.on('input', () => resolve()));
      user.receive({ payload: 'from-env' });
      await arrived;
      assert.deepEqual(
        [...hub.events()].map((e) => e.message.message_id),
        ['from-env'],
      );
    } finally {
      delete process.env.IOTHUB_TEST_CONNECTION;
    }
  });

  it('a bad connection string gives an invalid status and a Catch-able error with no secret in it', async () => {
    const secret = 'c2VjcmV0LWtleS0xMjM0NTY3ODkwYWJjZGVmZ2hpams=';
    await helper.load([connectionNode, testUserNode], tabFlow({ mode: 'azure' }), {
      conn1: { connectionString: `HostName=x.azure-devices.net;SharedAccessKey=${secret}` },
    });
    const user = helper.getNode('user') as unknown as SpiedNode;
    const seen = statuses(user);
    const caught = helper.getNode('caught') as unknown as SpiedNode;
    const error = new Promise<{ message?: string; code?: string }>((resolve) =>
      caught.on('input', ((msg: { error: { message?: string; code?: string } }) => resolve(msg.error)) as unknown as (c: StatusCall) => void),
    );
    user.receive({ payload: 'x' });
    const err = await error;
    assert.match(String(err.message), /connection string/);
    assert.ok(!String(err.message).includes(secret.slice(0, 12)));
    assert.ok(seen.every((s) => !s.includes(secret.slice(0, 12))));
  });

  it('a wrong key shows unauthorized', async () => {
    hub = await startTestHub();
    const wrong = Buffer.alloc(32, 3).toString('base64');
    await helper.load([connectionNode, testUserNode], tabFlow({ mode: 'azure', reconnectMax: 60000 }), {
      conn1: { connectionString: `HostName=${hub.hostWithPort};SharedAccessKeyName=iothubowner;SharedAccessKey=${wrong}` },
    });
    const user = helper.getNode('user') as unknown as SpiedNode;
    const seen = statuses(user);
    await waitFor(() => seen.includes('iothub-common.status.unauthorized'), 'unauthorized status');
  });

  it('redeploying the flow 100 times leaves one connection at the simulator', async () => {
    const port = await freePort();
    const flow = tabFlow({ mode: 'local', localPort: port });
    await helper.load([connectionNode, testUserNode], flow);
    const local = await acquireLocalHub(port);
    const sim = local.hub as SimulatedHub;
    await waitFor(() => sim.snapshot().connections === 1, 'the first connection');
    for (let i = 0; i < 100; i++) await helper.setFlows(flow, 'full');
    await waitFor(() => sim.snapshot().connections === 1 && sim.snapshot().links <= 3, 'one connection after 100 redeploys', 15_000);
    assert.equal(sim.snapshot().connections, 1);
    const user = helper.getNode('user') as unknown as SpiedNode;
    const out = helper.getNode('out') as unknown as SpiedNode;
    const arrived = new Promise<void>((resolve) => out.on('input', () => resolve()));
    user.receive({ payload: 'after-redeploys' });
    await arrived;
    assert.ok([...sim.events()].some((e) => e.message.message_id === 'after-redeploys'));
  });
});
