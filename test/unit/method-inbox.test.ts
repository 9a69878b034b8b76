/**
 * MethodInbox without a hub: the link events are played by hand on a connection that is never opened,
 * to pin orders the wire makes rare (a call reported before its link's attach) and the sharing of one
 * link pair by every inbox of a device.
 */
import { strict as assert } from 'node:assert';
import type { EventEmitter } from 'node:events';
import rhea = require('rhea');
import { METHOD_NAME_PROPERTY } from '../../src/amqp/method-twin-wire';
import { parseConnectionString } from '../../src/iothub/connection-string';
import { answerMethodCall, MethodInbox, type MethodCallFields } from '../../src/iothub/direct-methods';
import { HubError } from '../../src/iothub/errors';
import { HubConnection } from '../../src/iothub/hub-connection';
import type { Received } from '../../src/iothub/links';

const DEVICE = 'HostName=unit.azure-devices.net;DeviceId=dev-1;SharedAccessKey=' + Buffer.from('k'.repeat(32)).toString('base64');

interface EndpointInside {
  receiver: EventEmitter;
  sender: EventEmitter;
}

function endpointOf(inbox: MethodInbox): EndpointInside {
  return (inbox as unknown as { endpoints: EndpointInside[] }).endpoints[0];
}

function call(methodName: string, requestId: string): Received {
  return {
    message: { correlation_id: requestId, application_properties: { [METHOD_NAME_PROPERTY]: methodName }, body: rhea.message.data_section(Buffer.from('1')) },
    lockToken: '',
    settle: () => Promise.resolve(),
  };
}

/** 'pending' while the promise has not settled by the next turn; else its outcome. */
async function stateOf(p: Promise<unknown>): Promise<string> {
  let state = 'pending';
  p.then(
    () => (state = 'ok'),
    (err: unknown) => (state = err instanceof HubError ? err.code : String(err)),
  );
  await new Promise((r) => setImmediate(r));
  return state;
}

describe('MethodInbox', () => {
  let connection: HubConnection | undefined;

  afterEach(async () => {
    await connection?.close();
    connection = undefined;
  });

  function idle(): HubConnection {
    connection = new HubConnection(parseConnectionString(DEVICE), { transport: 'amqp', port: 1, connectHost: '127.0.0.1' });
    return connection;
  }

  it('a call reported before the attach of its link (same read) is still answerable after the attach', async () => {
    const hub = idle();
    const inbox = new MethodInbox(hub, [{ deviceId: 'dev-1' }]);
    const calls: MethodCallFields[] = [];
    inbox.on('call', (c) => calls.push(c));
    const { receiver } = endpointOf(inbox);
    receiver.emit('message', call('early', 'req-1'));
    receiver.emit('attached');
    assert.equal(calls.length, 1);
    const answered = answerMethodCall(hub, 'req-1', 200, 'ok');
    // Not refused as a call of an older link: it waits for the sender like any answer.
    assert.equal(await stateOf(answered), 'pending');
    // A link going down afterwards does lose it: the hub has failed the call.
    receiver.emit('detached', new HubError('NotConnected', 'gone'));
    assert.equal(await stateOf(answered), 'MethodCallLost');
    await inbox.close();
  });

  it('two inboxes of one device share its link pair; a call goes to the one listing its method, 404 only when none does', async () => {
    const hub = idle();
    const starts = new MethodInbox(hub, [{ deviceId: 'dev-1' }], { methods: ['start'] });
    const rest = new MethodInbox(hub, [{ deviceId: 'dev-1' }]);
    const stops = new MethodInbox(hub, [{ deviceId: 'dev-1' }], { methods: ['stop'] });
    assert.equal(endpointOf(starts), endpointOf(stops), 'one link pair for the device');
    // None of these takes what another opened before it takes.
    assert.deepEqual([starts.shadowed, rest.shadowed, stops.shadowed], [[], [], []]);
    // One that lists a method already taken, and a second catch-all, are told what they will not get.
    const doubled = new MethodInbox(hub, [{ deviceId: 'dev-1' }], { methods: ['stop', 'pause'] });
    const anyAgain = new MethodInbox(hub, [{ deviceId: 'dev-1' }]);
    assert.deepEqual(doubled.shadowed, [{ target: { deviceId: 'dev-1' }, methods: ['stop'] }]);
    assert.deepEqual(anyAgain.shadowed, [{ target: { deviceId: 'dev-1' }, methods: 'all' }]);
    await Promise.all([doubled.close(), anyAgain.close()]);
    assert.equal(endpointOf(starts), endpointOf(rest));
    const got: string[] = [];
    starts.on('call', (c) => got.push(`starts:${c.methodName}`));
    rest.on('call', (c) => got.push(`rest:${c.methodName}`));
    stops.on('call', (c) => got.push(`stops:${c.methodName}`));
    const { receiver } = endpointOf(starts);
    receiver.emit('message', call('stop', 'a'));
    receiver.emit('message', call('start', 'b'));
    receiver.emit('message', call('other', 'c'));
    assert.deepEqual(got, ['stops:stop', 'starts:start', 'rest:other']);
    await rest.close();
    receiver.emit('message', call('other', 'd'));
    assert.equal(got.length, 3, 'nobody handles it now: answered 404 by the inbox');
    await starts.close();
    await stops.close();
    // The last inbox closed the pair: a new inbox gets a new one.
    const again = new MethodInbox(hub, [{ deviceId: 'dev-1' }]);
    assert.notEqual(endpointOf(again), endpointOf(starts));
    await again.close();
  });

  it('many answers waiting for one device sender raise no listener-leak warning, and fail MethodCallLost when its link goes', async () => {
    const hub = idle();
    const inbox = new MethodInbox(hub, [{ deviceId: 'dev-1' }]);
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => {
      warnings.push(w);
    };
    process.on('warning', onWarning);
    try {
      const { receiver, sender } = endpointOf(inbox);
      receiver.emit('attached');
      const answers: Array<Promise<string>> = [];
      for (let i = 0; i < 50; i++) {
        receiver.emit('message', call('m', `r-${i}`));
        answers.push(stateOf(answerMethodCall(hub, `r-${i}`, 200, i)));
      }
      assert.deepEqual(new Set(await Promise.all(answers)), new Set(['pending']));
      const settled = Array.from({ length: 50 }, (_, i) =>
        answerMethodCall(hub, `r-${i}`, 200, i).catch((e: unknown) => (e instanceof HubError ? e.code : '')),
      );
      assert.deepEqual(new Set(await Promise.all(settled)), new Set(['MethodCallLost']), 'answered already');
      sender.emit('detached', new HubError('NotConnected', 'gone'));
      await new Promise((r) => setImmediate(r));
      assert.equal(warnings.filter((w) => w.name === 'MaxListenersExceededWarning').length, 0);
    } finally {
      process.removeListener('warning', onWarning);
      await inbox.close();
    }
  });
});
