/**
 * The relay of the *-rtt benchmarks: bytes arrive whole and in order, no sooner than the round trip it
 * claims (a lower bound, which load can only lengthen), and an end travels behind the last bytes.
 */
import { strict as assert } from 'node:assert';
import { once } from 'node:events';
import * as net from 'node:net';
import { startLatencyProxy, type LatencyProxy } from '../../bench/latency-proxy';

describe('bench latency relay', function () {
  this.timeout(30_000);
  let echo: net.Server;
  let relay: LatencyProxy | undefined;

  before(async () => {
    // Echoes everything, then ends when the client ends.
    echo = net.createServer({ allowHalfOpen: true }, (socket) => {
      socket.on('data', (chunk: Buffer) => socket.write(chunk));
      socket.on('end', () => socket.end());
    });
    echo.listen(0, '127.0.0.1');
    await once(echo, 'listening');
  });

  after(async () => {
    await relay?.close();
    echo.close();
  });

  it('holds bytes for the round trip, keeps their order and ends after the last of them', async () => {
    const rttMs = 60;
    relay = await startLatencyProxy('127.0.0.1', (echo.address() as net.AddressInfo).port, rttMs);
    const socket = net.connect({ port: relay.port, host: '127.0.0.1', allowHalfOpen: true });
    await once(socket, 'connect');
    const sent = Buffer.alloc(256 * 1024);
    for (let i = 0; i < sent.length; i++) sent[i] = (i * 7) & 0xff;
    const chunks: Buffer[] = [];
    let firstAt = 0;
    socket.on('data', (chunk: Buffer) => {
      if (chunks.length === 0) firstAt = performance.now();
      chunks.push(chunk);
    });
    const ended = once(socket, 'end');
    const start = performance.now();
    // In pieces, so the relay queues many chunks in each direction.
    for (let offset = 0; offset < sent.length; offset += 4096) socket.write(sent.subarray(offset, offset + 4096));
    socket.end();
    await ended;
    assert.ok(firstAt - start >= rttMs - 1, `the first byte came back after ${(firstAt - start).toFixed(1)} ms, sooner than the ${rttMs} ms round trip`);
    assert.ok(Buffer.concat(chunks).equals(sent), 'the bytes came back changed, reordered or cut short');
    socket.destroy();
  });
});
