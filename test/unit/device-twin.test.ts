/**
 * DeviceTwin without a hub: link events played by hand on a connection that is never opened, so a
 * request can be caught while it still waits for the twin sender, whatever the wire would do.
 */
import { strict as assert } from 'node:assert';
import type { EventEmitter } from 'node:events';
import { parseConnectionString } from '../../src/iothub/connection-string';
import { DeviceTwin } from '../../src/iothub/device-twin';
import { HubError } from '../../src/iothub/errors';
import { HubConnection } from '../../src/iothub/hub-connection';

const DEVICE = 'HostName=unit.azure-devices.net;DeviceId=dev-1;SharedAccessKey=' + Buffer.from('k'.repeat(32)).toString('base64');

interface TwinInside {
  receiver: EventEmitter & { isAttached: boolean };
  sender: { pending: number };
}

function inside(twin: DeviceTwin): TwinInside {
  return twin as unknown as TwinInside;
}

/** Makes the twin receiver look attached (the sender stays unattached). */
function receiverUp(twin: DeviceTwin): void {
  const { receiver } = inside(twin);
  Object.defineProperty(receiver, 'isAttached', { value: true, configurable: true });
  receiver.emit('attached');
}

function failure(p: Promise<unknown>): Promise<HubError> {
  return p.then(
    () => assert.fail('expected the request to fail'),
    (err: unknown) => {
      assert.ok(err instanceof HubError);
      return err;
    },
  );
}

describe('DeviceTwin', () => {
  let connection: HubConnection | undefined;

  afterEach(async () => {
    await connection?.close();
    connection = undefined;
  });

  function idle(operationTimeoutMs: number): HubConnection {
    connection = new HubConnection(parseConnectionString(DEVICE), { transport: 'amqp', port: 1, connectHost: '127.0.0.1', operationTimeoutMs });
    return connection;
  }

  it('a request still waiting for the sender when its time is up fails Timeout and is taken back, never to be sent', async () => {
    const twin = new DeviceTwin(idle(50), { deviceId: 'dev-1' });
    receiverUp(twin);
    const error = await failure(twin.patchReported({ late: true }));
    assert.equal(error.code, 'Timeout');
    assert.match(error.message, /not sent/);
    assert.equal(inside(twin).sender.pending, 0, 'nothing left to send when the sender attaches');
    await twin.close();
  });

  it('a request waiting when the receiver goes fails NotConnected and is taken back, never to be sent', async () => {
    const twin = new DeviceTwin(idle(60_000), { deviceId: 'dev-1' });
    receiverUp(twin);
    const patched = failure(twin.patchReported({ cut: true }));
    await new Promise((r) => setImmediate(r));
    assert.equal(inside(twin).sender.pending, 1);
    Object.defineProperty(inside(twin).receiver, 'isAttached', { value: false, configurable: true });
    inside(twin).receiver.emit('detached', new HubError('NotConnected', 'gone'));
    const error = await patched;
    assert.equal(error.code, 'NotConnected');
    assert.match(error.message, /not sent/);
    assert.equal(inside(twin).sender.pending, 0);
    await twin.close();
  });

  it('following: the first attach of the receiver puts the subscription (not only re-attaches)', async () => {
    const twin = new DeviceTwin(idle(60_000), { deviceId: 'dev-1' });
    twin.follow();
    assert.equal(inside(twin).sender.pending, 0, 'nothing sent before the links attach');
    receiverUp(twin);
    await new Promise((r) => setImmediate(r));
    assert.equal(inside(twin).sender.pending, 1, 'the PUT of the subscription waits for the sender');
    await twin.close();
  });
});
