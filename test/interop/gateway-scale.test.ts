/**
 * A gateway at the scale IoT Hub allows on one connection (about 1,000 devices): every device's
 * link attaches, with no listener warning, both at first and again after the connection drops.
 */
import { strict as assert } from 'node:assert';
import { parseConnectionString } from '../../src/iothub/connection-string';
import { HubConnection, type HubState } from '../../src/iothub/hub-connection';
import { HubSender } from '../../src/iothub/links';
import type { SimulatedHub } from '../../src/simulator';
import { startTestHub, waitFor } from '../helpers/hub';

const DEVICES = 1100;

describe('gateway at scale', function () {
  this.timeout(120_000);
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
    await waitFor(() => senders.every((s) => s.isAttached), `${DEVICES} attached devices`, 60_000);
    assert.equal(hub.stats.openConnections, 1);

    const states: HubState[] = [];
    connection.on('state', (state: HubState) => states.push(state));
    hub.faults.dropConnections();
    await waitFor(() => states.includes('reconnecting'), 'the drop to be noticed');
    await waitFor(() => connection?.state === 'open' && senders.every((s) => s.isAttached), `${DEVICES} devices attached again`, 60_000);
    // Warnings are emitted on the next tick.
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(warnings, []);
  });
});
