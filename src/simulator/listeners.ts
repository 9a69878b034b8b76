/**
 * The listeners: plain AMQP, AMQPS (TLS) and AMQP over WebSockets, with each accepted byte stream
 * watched by a FrameGuard before rhea reads it. Separate from the connection bookkeeping, which is the
 * same whatever the transport; this is the only part that knows sockets, TLS and WebSockets.
 */
import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import * as tls from 'node:tls';
import type * as http from 'node:http';
import type * as rhea from 'rhea';
import { WebSocketServer, type WebSocket } from 'ws';
import type { AmqpError } from './amqp';
import { loadOrMakeCertificate, type Certificate } from './certificate';
import type { ConnState, Transport } from './connections';
import { FrameGuard } from './guard';
import type { SimulatorOptions } from './options';
import { reason, simLog } from './log';

const FRAMING = (description: string): AmqpError => ({ condition: 'amqp:connection:framing-error', description: `The client sent ${description}.` });

/** What the listeners need of the connection bookkeeping. */
export interface ConnectionIntake {
  /** Refuses (destroying the transport) or counts and tracks a new connection. */
  admit(transport: Transport, destroy: () => void): ConnState | undefined;
  /** Lets rhea read and write the byte stream. */
  serve(state: ConnState, stream: unknown): void;
  dropAbusive(state: ConnState, error: AmqpError): void;
  onConnectionGone(connection: rhea.Connection): void;
}

export interface Ports {
  amqp?: number;
  amqps?: number;
  ws?: number;
}

export class Listeners {
  private readonly servers: Array<net.Server | WebSocketServer | http.Server> = [];

  /** `ports` is filled in as each listener binds. */
  constructor(
    private readonly options: SimulatorOptions,
    private readonly ports: Ports,
    private readonly intake: ConnectionIntake,
  ) {}

  /** Whether a server is still bound (close has not yet taken them). */
  get bound(): boolean {
    return this.servers.length > 0;
  }

  /** Binds every listener the options turn on; resolves with the TLS certificate, when one is in use. */
  async listen(): Promise<Certificate | undefined> {
    const o = this.options;
    let certificate: Certificate | undefined;
    if (o.amqpPort !== null) {
      const server = net.createServer((socket) => this.accept(socket, 'amqp', () => socket.destroy(new Error('connection dropped by the simulator'))));
      this.ports.amqp = await this.bind(server, o.amqpPort);
    }
    if (o.amqpsPort !== null || o.wsPort !== null) {
      certificate = o.tls ?? (await loadOrMakeCertificate(o.certDir, [o.hostName]));
    }
    if (o.amqpsPort !== null) {
      const { cert, key } = certificate as Certificate;
      const server = tls.createServer({ cert, key }, (socket) =>
        this.accept(socket, 'amqps', () => socket.destroy(new Error('connection dropped by the simulator'))),
      );
      // A client that fails the handshake is its own problem, not the hub's.
      server.on('tlsClientError', (err) => simLog.socket('AMQPS handshake failed: %s', reason(err)));
      this.ports.amqps = await this.bind(server, o.amqpsPort);
    }
    if (o.wsPort !== null) this.ports.ws = await this.listenWebSocket(o.wsPort, certificate as Certificate);
    return certificate;
  }

  private bind(server: net.Server, port: number): Promise<number> {
    this.servers.push(server);
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        reject(
          new Error(err.code === 'EADDRINUSE' ? `port ${port} on ${this.options.host} is already in use` : `cannot listen on port ${port}: ${err.message}`),
        );
      };
      server.once('error', onError);
      server.listen(port, this.options.host, () => {
        server.off('error', onError);
        server.on('error', (err) => simLog.socket('listener on port %d: %s', port, reason(err)));
        resolve((server.address() as net.AddressInfo).port);
      });
    });
  }

  /** AMQP over WebSockets on TLS, path `/$iothub/websocket`, subprotocol AMQPWSB10. */
  private async listenWebSocket(port: number, certificate: Certificate): Promise<number> {
    const https = await import('node:https');
    const server = https.createServer({ cert: certificate.cert, key: certificate.key });
    server.on('tlsClientError', (err) => simLog.socket('WebSocket TLS handshake failed: %s', reason(err)));
    const wss = new WebSocketServer({
      server,
      handleProtocols: (protocols) => (protocols.has('AMQPWSB10') ? 'AMQPWSB10' : false),
      // rhea writes a frame per WebSocket message; more than a couple of frames' worth is not AMQP.
      maxPayload: 2 * this.options.maxFrameBytes + 1024,
      verifyClient: (info: { req: http.IncomingMessage }) =>
        /^\/\$iothub\/websocket\/?(\?.*)?$/i.test(info.req.url ?? '') || /^\/\$servicebus\/websocket\/?(\?.*)?$/i.test(info.req.url ?? ''),
    });
    wss.on('error', (err) => simLog.socket('WebSocket server: %s', reason(err)));
    wss.on('connection', (ws: WebSocket) => {
      ws.on('error', (err) => simLog.socket('WebSocket peer: %s', reason(err)));
      this.acceptWebSocket(ws);
    });
    this.servers.push(wss);
    return this.bind(server, port);
  }

  private acceptWebSocket(ws: WebSocket): void {
    const state = this.intake.admit('ws', () => ws.terminate());
    if (!state) return;
    const guard = new FrameGuard(this.options.maxFrameBytes);
    const stream = webSocketStream(ws, (chunk) => {
      const broken = guard.push(chunk);
      if (broken !== undefined) this.intake.dropAbusive(state, FRAMING(broken));
      return broken === undefined && !state.dropped;
    });
    ws.on('close', () => this.intake.onConnectionGone(state.connection));
    this.intake.serve(state, stream);
  }

  private accept(socket: net.Socket, transport: Transport, destroy: () => void): void {
    socket.on('error', (err) => simLog.socket('%s peer: %s', transport, reason(err)));
    const state = this.intake.admit(transport, destroy);
    if (!state) return;
    // Registered before rhea's own listener, so it sees each chunk first and can stop the stream
    // before rhea buffers what an oversized frame announces.
    const guard = new FrameGuard(this.options.maxFrameBytes);
    socket.on('data', (chunk: Buffer) => {
      const broken = guard.push(chunk);
      if (broken === undefined) return;
      socket.pause();
      this.intake.dropAbusive(state, FRAMING(broken));
    });
    // rhea hears only of a peer's end; a socket we destroy (fault) or one that just dies says 'close'.
    socket.on('close', () => this.intake.onConnectionGone(state.connection));
    this.intake.serve(state, socket);
  }

  /** Lets the process exit while the servers listen. */
  unref(): void {
    for (const server of this.servers) {
      if (!(server instanceof WebSocketServer)) (server as net.Server).unref();
    }
  }

  /** Closes every server, cutting the connections they still hold. */
  async close(): Promise<void> {
    const servers = this.servers.splice(0);
    await Promise.all(
      servers.map(
        (server) =>
          new Promise<void>((resolve) => {
            if (server instanceof WebSocketServer) {
              for (const client of server.clients) client.terminate();
              server.close(() => resolve());
              return;
            }
            (server as net.Server).close(() => resolve());
            (server as net.Server & { closeAllConnections?: () => void }).closeAllConnections?.();
          }),
      ),
    );
  }
}

/**
 * A WebSocket as the byte stream rhea reads and writes, with each incoming chunk passed through
 * `admit` first (a chunk it refuses never reaches rhea).
 */
function webSocketStream(ws: WebSocket, admit: (chunk: Buffer) => boolean): EventEmitter {
  const stream = new EventEmitter();
  ws.on('message', (data: Buffer | ArrayBuffer | Buffer[]) => {
    const chunk = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
    if (admit(chunk)) stream.emit('data', chunk);
  });
  ws.on('close', () => stream.emit('end'));
  ws.on('error', (err: Error) => stream.emit('error', err));
  Object.assign(stream, {
    write: (data: Buffer) => {
      if (ws.readyState === ws.OPEN) ws.send(data, { binary: true });
    },
    end: () => ws.close(),
    destroy: () => ws.terminate(),
    get_id_string: () => 'websocket',
  });
  return stream;
}
