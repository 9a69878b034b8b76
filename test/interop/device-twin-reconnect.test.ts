/**
 * DeviceTwin against the simulator across a dropped connection: reported patches in flight when the
 * connection goes are applied at most once, and one reported failed is applied only if its error says
 * it may have been (it was written before the drop); none is sent again on the next connection.
 */
import { strict as assert } from 'node:assert';
import { parseConnectionString } from '../../src/iothub/connection-string';
import { DeviceTwin, type TwinProperties } from '../../src/iothub/device-twin';
import { HubError } from '../../src/iothub/errors';
import { HubConnection } from '../../src/iothub/hub-connection';
import type { SimulatedHub } from '../../src/simulator';
import { startTestHub, waitFor } from '../helpers/hub';

describe('device twin across a reconnect', function () {
  this.timeout(30_000);
  let hub: SimulatedHub | undefined;
  let connection: HubConnection | undefined;

  afterEach(async () => {
    await connection?.close();
    connection = undefined;
    await hub?.close();
    hub = undefined;
  });

  it('patches cut by a dropped connection: applied once and reported so, or reported failed; never sent again', async () => {
    const sim = await startTestHub();
    hub = sim;
    connection = new HubConnection(parseConnectionString(sim.deviceConnectionString('kiln-1')), {
      transport: 'amqp',
      port: sim.ports.amqp,
      connectHost: '127.0.0.1',
      reconnectMinMs: 50,
      reconnectMaxMs: 200,
    });
    connection.open();
    const twin = new DeviceTwin(connection, { deviceId: 'kiln-1' });
    const told: Array<{ twin: TwinProperties; resync: boolean }> = [];
    twin.on('twin', (t, resync) => told.push({ twin: t, resync }));
    twin.follow();
    await waitFor(() => told.length === 1 && sim.twinLinks.isSubscribed('kiln-1'), 'the first twin');

    // The drop comes one or two turns after the patches: after the first nothing has reached the wire
    // yet, after the second some have been answered and some not.
    for (const [round, turns] of [1, 2].entries()) {
      const before = (await twin.get()).reported.$version as number;
      const N = 20;
      const outcomes: Array<Promise<'ok' | HubError>> = [];
      for (let i = 0; i < N; i++) {
        outcomes.push(
          twin.patchReported({ [`r${round}k${i}`]: i }).then(
            () => 'ok' as const,
            (err: unknown) => {
              assert.ok(err instanceof HubError);
              return err;
            },
          ),
        );
      }
      for (let t = 0; t < turns; t++) await new Promise((r) => setImmediate(r));
      sim.faults.dropConnections();
      const results = await Promise.all(outcomes);
      await waitFor(() => told.filter((t) => t.resync).length === round + 1, 'the twin after the reconnect');
      const after = await twin.get();

      const present = new Set(Object.keys(after.reported).filter((k) => k.startsWith(`r${round}k`)));
      results.forEach((r, i) => {
        const key = `r${round}k${i}`;
        if (r === 'ok') assert.ok(present.has(key), `${key} reported done is applied`);
        else if (present.has(key)) assert.match(r.message, /may have been applied/, `${key} applied though reported failed: ${r.code} ${r.message}`);
        else assert.ok(r.code === 'NotConnected' || r.code === 'Timeout', `${key}: ${r.code}`);
      });
      // Each applied patch counts one reported version: none was applied twice.
      assert.equal((after.reported.$version as number) - before, present.size);
    }
    await twin.close();
  });
});
