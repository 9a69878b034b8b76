/** HubSender edge cases the reliability suite turned up. */
import { strict as assert } from 'node:assert';
import rhea = require('rhea');
import { parseConnectionString } from '../../src/iothub/connection-string';
import { HubConnection } from '../../src/iothub/hub-connection';
import { HubSender } from '../../src/iothub/links';
import type { SimulatedHub } from '../../src/simulator';
import { startTestHub } from '../helpers/hub';
import { until } from './faults';

describe('reliability: HubSender edge cases', function () {
  let hub: SimulatedHub | undefined;
  let connection: HubConnection | undefined;

  afterEach(async () => {
    await connection?.close();
    connection = undefined;
    await hub?.close();
    hub = undefined;
  });

  it('a message held while the hub is away keeps an expiry weeks ahead (longer than a Node timer takes)', async () => {
    hub = await startTestHub();
    const started = hub;
    connection = new HubConnection(parseConnectionString(started.deviceConnectionString('far-expiry')), {
      transport: 'amqps',
      connectHost: '127.0.0.1',
      ca: started.certificate?.cert,
      reconnectMinMs: 20,
      reconnectMaxMs: 100,
    });
    const sender = new HubSender(connection, '/devices/far-expiry/messages/events', { deviceId: 'far-expiry' });
    const message = (id: string): rhea.Message => ({ message_id: id, body: rhea.message.data_section(Buffer.from(id)) }) as rhea.Message;
    await sender.send(message('first'));
    const refused = started.stats.connectionsRefused;
    started.faults.refuseConnections(60_000);
    started.faults.dropConnections();
    const conn = connection;
    await until(
      () => conn.state !== 'open',
      () => 'the client to notice the drop',
    );
    let outcome = 'pending';
    sender.send(message('held'), { expiresAt: Date.now() + 30 * 24 * 3600_000 }).then(
      () => (outcome = 'accepted'),
      (err: { code?: string }) => (outcome = String(err.code)),
    );
    await until(
      () => started.stats.connectionsRefused >= refused + 2,
      () => 'reconnects to be refused',
    );
    assert.equal(outcome, 'pending', 'the held message stays held');
    started.faults.refuseConnections(0);
    await until(
      () => outcome !== 'pending',
      () => 'the held message',
    );
    assert.equal(outcome, 'accepted');
    assert.deepEqual(
      [...started.events()].map((e) => String(e.message.message_id)),
      ['first', 'held'],
    );
  });
});
