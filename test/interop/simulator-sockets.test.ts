/**
 * The simulator's sockets: Nagle is off on every connection it accepts. Its dispositions and flow
 * frames are small writes; with Nagle on they wait for the client's delayed ACK, and every client that
 * pipelines sends stalls (the benchmarks found C2D and D2C senders held to a fraction of their pace).
 */
import { strict as assert } from 'node:assert';
import * as net from 'node:net';
import type { SimulatedHub } from '../../src/simulator';
import { startTestHub } from '../helpers/hub';
import { asOwner, openRaw, type RawClient } from '../helpers/raw';

describe('simulator sockets', function () {
  let hub: SimulatedHub | undefined;
  let client: RawClient | undefined;
  const original = net.Socket.prototype.setNoDelay;
  const noDelayOn: Array<{ localPort?: number; on: boolean }> = [];

  beforeEach(() => {
    noDelayOn.length = 0;
    net.Socket.prototype.setNoDelay = function (this: net.Socket, noDelay?: boolean) {
      noDelayOn.push({ localPort: this.localPort, on: noDelay !== false });
      return original.call(this, noDelay);
    };
  });

  afterEach(async () => {
    net.Socket.prototype.setNoDelay = original;
    await client?.close();
    await hub?.close();
    client = undefined;
    hub = undefined;
  });

  it('turns Nagle off on the connections it accepts, plain and TLS', async () => {
    hub = await startTestHub();
    client = await openRaw(hub);
    await asOwner(hub, client);
    const plainPort = hub.ports.amqp;
    assert.ok(
      noDelayOn.some((c) => c.localPort === plainPort && c.on),
      `no setNoDelay(true) on the simulator's side of a plain connection: ${JSON.stringify(noDelayOn)}`,
    );
    await client.close();
    client = undefined;

    noDelayOn.length = 0;
    const tlsPort = hub.ports.amqps;
    const { Connection } = await import('rhea-promise');
    const tls = new Connection({
      transport: 'tls',
      host: '127.0.0.1',
      port: Number(tlsPort),
      servername: 'localhost',
      ca: hub.certificate?.cert,
      reconnect: false,
    } as ConstructorParameters<typeof Connection>[0]);
    await tls.open();
    await tls.close();
    assert.ok(
      noDelayOn.some((c) => c.localPort === tlsPort && c.on),
      `no setNoDelay(true) on the simulator's side of a TLS connection: ${JSON.stringify(noDelayOn)}`,
    );
  });
});
