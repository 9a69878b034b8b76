/**
 * `DEBUG=iothub:*` tells why a connection did what it did (connect, token put and renewal, loss and the
 * retry it chose, a link's detach and re-attach) and never prints a key or a token.
 */
import { strict as assert } from 'node:assert';
import { format } from 'node:util';
import createDebug from 'debug';
import rhea = require('rhea');
import { parseConnectionString } from '../../src/iothub/connection-string';
import { HubConnection } from '../../src/iothub/hub-connection';
import { HubSender } from '../../src/iothub/links';
import type { SimulatedHub } from '../../src/simulator';
import { startTestHub, waitFor } from '../helpers/hub';

describe('debug logs (DEBUG=iothub:*)', function () {
  let hub: SimulatedHub | undefined;
  let connection: HubConnection | undefined;
  const lines: string[] = [];
  const originalLog = createDebug.log;
  let wasEnabled = '';

  beforeEach(() => {
    lines.length = 0;
    wasEnabled = createDebug.disable();
    createDebug.log = (...args: unknown[]) => {
      lines.push(format(...args));
    };
    createDebug.enable('iothub:*');
  });

  afterEach(async () => {
    await connection?.close();
    await hub?.close();
    createDebug.disable();
    if (wasEnabled) createDebug.enable(wasEnabled);
    createDebug.log = originalLog;
  });

  it('logs connect, put-token, renewal, loss with the retry chosen, a detach and close, with no key or token in any line', async () => {
    hub = await startTestHub();
    const sim = hub;
    const text = sim.deviceConnectionString('logged');
    const identity = parseConnectionString(text);
    connection = new HubConnection(identity, {
      transport: 'amqp',
      port: sim.ports.amqp,
      connectHost: '127.0.0.1',
      tokenLifetimeSec: 4,
      tokenRenewMarginSec: 2,
      reconnectMinMs: 50,
      reconnectMaxMs: 200,
    });
    const sender = new HubSender(connection, '/devices/logged/messages/events', { deviceId: 'logged' });
    await sender.send({ message_id: 'one', body: rhea.message.data_section(Buffer.from('one')) } as rhea.Message);
    await waitFor(() => lines.some((l) => /put-token .* \(renewal\)/.test(l)), 'a renewal', 6000);
    sim.faults.detachLinks((a) => a.kind === 'd2c');
    await waitFor(
      () => lines.some((l) => /\/devices\/logged\/messages\/events detached: ServiceUnavailable .*attaching again in \d+ ms/.test(l)),
      'the detach',
    );
    sim.faults.dropConnections();
    await waitFor(() => lines.some((l) => /lost: \S+ .*reconnecting in \d+ ms/.test(l)), 'the loss');
    await waitFor(() => connection?.state === 'open', 'the reconnect');
    await connection.close();
    connection = undefined;
    const joined = lines.join('\n');
    for (const wanted of [
      /iothub:connection connecting to 127\.0\.0\.1:\d+ over amqp as device logged on localhost/,
      /iothub:cbs put-token localhost:\d+\/devices\/logged/,
      /iothub:cbs renewal of .* in \d+ ms/,
      /iothub:connection open: device logged/,
      /iothub:connection closing/,
    ]) {
      assert.match(joined, wanted);
    }
    const key = /SharedAccessKey=([^;]+)/.exec(text)?.[1] as string;
    assert.ok(!joined.includes(key), 'the device key appears in a log line');
    assert.ok(!/SharedAccessSignature|sig=/.test(joined), 'a token appears in a log line');
  });
});
