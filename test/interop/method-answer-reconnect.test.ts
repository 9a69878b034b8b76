/**
 * Method answers against the simulator across a dropped connection: an answer cut by the drop either
 * reached the hub (the caller gets it, the answer resolved) or fails MethodCallLost; it is never sent
 * again on the next connection, where the hub has long failed the call.
 */
import { strict as assert } from 'node:assert';
import { parseConnectionString } from '../../src/iothub/connection-string';
import { answerMethodCall, MethodInbox, type MethodCallFields } from '../../src/iothub/direct-methods';
import { HubError } from '../../src/iothub/errors';
import { HubConnection } from '../../src/iothub/hub-connection';
import type { SimulatedHub } from '../../src/simulator';
import { startTestHub, waitFor } from '../helpers/hub';
import { serviceClient } from '../helpers/service-rest';

type Invoked = { result: { status: number; payload: unknown } };

describe('method answers across a reconnect', function () {
  this.timeout(30_000);
  let hub: SimulatedHub | undefined;
  let connection: HubConnection | undefined;

  afterEach(async () => {
    await connection?.close();
    connection = undefined;
    await hub?.close();
    hub = undefined;
  });

  it('an answer cut by a dropped connection is delivered once or fails MethodCallLost, never sent again', async () => {
    const sim = await startTestHub({ restPort: 0 });
    hub = sim;
    connection = new HubConnection(parseConnectionString(sim.deviceConnectionString('lathe-1')), {
      transport: 'amqp',
      port: sim.ports.amqp,
      connectHost: '127.0.0.1',
      reconnectMinMs: 50,
      reconnectMaxMs: 200,
    });
    connection.open();
    const hubConnection = connection;
    const inbox = new MethodInbox(hubConnection, [{ deviceId: 'lathe-1' }]);
    const calls: MethodCallFields[] = [];
    inbox.on('call', (c) => calls.push(c));
    const service = serviceClient(sim);
    // The drop comes zero to three turns after the answers: before they reach rhea, in rhea's buffer,
    // on the wire.
    for (const turns of [0, 1, 2, 3]) {
      await waitFor(() => sim.methods.isOnline('lathe-1'), 'the method links');
      const seen = calls.length;
      const N = 10;
      const invoked = Array.from({ length: N }, (_, i) =>
        service.invokeDeviceMethod('lathe-1', { methodName: 'cut', payload: i }).then(
          (r) => (r as unknown as Invoked).result,
          () => 'failed' as const,
        ),
      );
      await waitFor(() => calls.length === seen + N, 'the calls');
      const answers = calls.slice(seen).map((c) =>
        answerMethodCall(hubConnection, c.requestId, 200, c.payload).then(
          () => 'ok' as const,
          (err: unknown) => {
            assert.ok(err instanceof HubError);
            return err;
          },
        ),
      );
      for (let t = 0; t < turns; t++) await new Promise((r) => setImmediate(r));
      sim.faults.dropConnections();
      const outcomes = await Promise.all(answers);
      const results = await Promise.all(invoked);
      outcomes.forEach((o, i) => {
        const payload = calls[seen + i].payload as number;
        const result = results[payload];
        if (o === 'ok') assert.deepEqual(result, { status: 200, payload }, `answer ${payload} resolved, so the caller has it`);
        else assert.equal(o.code, 'MethodCallLost', `answer ${payload}: ${o.code} ${o.message}`);
      });
    }
    await inbox.close();
  });
});
