/**
 * A loopback relay that keeps a copy of every byte the server sends, and a reader that splits those
 * bytes back into AMQP frames with rhea's own frame codec: what a client actually receives, field by
 * field, for conformance checks of the simulator's frames.
 */
import * as net from 'node:net';
import * as frames from 'rhea/lib/frames.js';

export interface WireTap {
  port: number;
  /** Everything the server has sent so far, across connections, in order per connection. */
  fromServer(): Buffer[];
  close(): Promise<void>;
}

export function startWireTap(targetPort: number): Promise<WireTap> {
  const chunks: Buffer[][] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const received: Buffer[] = [];
    chunks.push(received);
    const upstream = net.connect(targetPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    upstream.on('data', (chunk: Buffer) => received.push(chunk));
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({
        port: (server.address() as net.AddressInfo).port,
        fromServer: () => chunks.map((c) => Buffer.concat(c)),
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}

/** A decoded frame: the descriptor code and the raw typed fields exactly as they were on the wire. */
export interface WireFrame {
  code: number;
  fields: unknown[];
}

/** Splits a connection's bytes into frames, skipping the protocol headers (SASL, then AMQP). */
export function readFrames(bytes: Buffer): WireFrame[] {
  const out: WireFrame[] = [];
  let offset = 0;
  while (offset + 8 <= bytes.length) {
    if (bytes.toString('ascii', offset, offset + 4) === 'AMQP') {
      offset += 8;
      continue;
    }
    const size = bytes.readUInt32BE(offset);
    if (offset + size > bytes.length) break;
    const frame = frames.read_frame(bytes.subarray(offset, offset + size)) as {
      performative?: { value: unknown[]; constructor: { descriptor?: { numeric: number } } };
    } | null;
    offset += size;
    // An empty frame (a heartbeat) carries no performative.
    if (!frame?.performative) continue;
    out.push({ code: Number(frame.performative.constructor.descriptor?.numeric), fields: frame.performative.value });
  }
  return out;
}
