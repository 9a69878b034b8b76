/**
 * A gateway of 5,000 devices on one connection against the hub's real limits (at most 1,000 tokens per
 * connection): one hub-level token covers every device (grouped SAS, as the C# SDK's pooling does), so
 * every device's link attaches and sends, with no listener warning, at first and again after a drop.
 * With a token per device the 1,001st device would be refused.
 */
import { strict as assert } from 'node:assert';
import { parseConnectionString } from '../../src/iothub/connection-string';
import { HubConnection, type HubState } from '../../src/iothub/hub-connection';
import { HubSender } from '../../src/iothub/links';
import type { SimulatedHub } from '../../src/simulator';
import { startTestHub, waitFor } from '../helpers/hub';

const DEVICES = 5000;

describe('gateway at scale', function () {
  this.timeout(300_000);
  let hub: SimulatedHub | undefined;
  let connection: HubConnection | undefined;
  const warnings: string[] = [];
  const onWarning = (warning: Error): void => {
    warnings.push(`${warning.name}: ${warning.message}`);
  };

  beforeEach(() => {
    warnings.length = 0;
    process.on('warning', onWarning);
  });

  afterEach(async () => {
    process.off('warning', onWarning);
    await connection?.close();
    await hub?.close();
    connection = undefined;
    hub = undefined;
  });

  it(`attaches ${DEVICES} devices on one connection without a listener warning, and again after a drop`, async () => {
    hub = await startTestHub();
    connection = new HubConnection(parseConnectionString(hub.serviceConnectionString('device'), { gatewayPolicy: true }), {
      transport: 'amqps',
      ca: hub.certificate?.cert,
      connectHost: '127.0.0.1',
      reconnectMinMs: 50,
      reconnectMaxMs: 200,
    });
    const senders: HubSender[] = [];
    for (let i = 0; i < DEVICES; i++) senders.push(new HubSender(connection, `/devices/scale-${i}/messages/events`, { deviceId: `scale-${i}` }));
    await waitFor(() => senders.every((s) => s.isAttached), `${DEVICES} attached devices`, 120_000);
    assert.equal(hub.stats.openConnections, 1);
    assert.equal(hub.options.maxTokensPerConnection, 1000, 'the real limit is on');
    assert.equal(hub.snapshot().tokens, 1, 'one hub-level token for every device');
    await Promise.all(senders.map((s, i) => s.send({ body: `reading ${i}`, message_id: `scale-${i}` })));
    assert.equal(hub.stats.d2cAccepted, DEVICES);

    const states: HubState[] = [];
    connection.on('state', (state: HubState) => states.push(state));
    hub.faults.dropConnections();
    await waitFor(() => states.includes('reconnecting'), 'the drop to be noticed');
    await waitFor(() => connection?.state === 'open' && senders.every((s) => s.isAttached), `${DEVICES} devices attached again`, 120_000);
    // Warnings are emitted on the next tick.
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(warnings, []);
  });
});
