/**
 * A TCP relay that holds every chunk for a fixed time in each direction, so that contenders reach the
 * simulator over a round trip like a real network's instead of loopback's few microseconds. It runs in
 * a process of its own: in the runner's event loop, busy with the simulator, its timers would fire late
 * and the round trip would stretch with the load.
 *
 * Bytes pass through untouched (TLS stays end to end). Order is kept per direction; the relay does not
 * limit bandwidth, so with enough in flight a client is bound by its CPU, as on a fast link.
 */
import { fork, type ChildProcess } from 'node:child_process';
import * as net from 'node:net';

export interface LatencyProxy {
  port: number;
  close(): Promise<void>;
}

/** Starts the relay in a child process: connections to the returned port reach `targetPort`. */
export function startLatencyProxy(targetHost: string, targetPort: number, rttMs: number): Promise<LatencyProxy> {
  const child: ChildProcess = fork(__filename, [targetHost, String(targetPort), String(rttMs / 2)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null): void => reject(new Error(`the latency relay exited (${code}) before listening`));
    const onError = (err: Error): void => reject(err);
    child.once('exit', onExit);
    child.once('error', onError);
    child.once('message', (message: { port: number }) => {
      child.off('exit', onExit);
      child.off('error', onError);
      resolve({
        port: message.port,
        close: () =>
          new Promise<void>((done) => {
            if (child.exitCode !== null || child.signalCode !== null) return done();
            child.once('exit', () => done());
            child.kill();
          }),
      });
    });
  });
}

/** Writes chunks to `out` `delayMs` after they arrived, in arrival order; an end goes the same way. */
class DelayLine {
  /** Chunks in arrival order; null stands for the end of the stream. */
  private readonly items: Array<Buffer | null> = [];
  private readonly due: number[] = [];
  private head = 0;
  private timer: NodeJS.Timeout | undefined;
  private ended = false;

  constructor(
    private readonly out: net.Socket,
    private readonly delayMs: number,
  ) {}

  push(chunk: Buffer): void {
    if (!this.ended) this.enqueue(chunk);
  }

  /** The sending side ended or closed: `out` ends once everything before it has gone. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.enqueue(null);
  }

  private enqueue(item: Buffer | null): void {
    this.items.push(item);
    this.due.push(performance.now() + this.delayMs);
    if (this.timer === undefined) this.schedule();
  }

  private schedule(): void {
    const wait = Math.max(0, this.due[this.head] - performance.now());
    this.timer = setTimeout(() => this.flush(), wait);
  }

  private flush(): void {
    this.timer = undefined;
    // Timers have millisecond resolution: a chunk due within the next half millisecond goes now.
    const now = performance.now() + 0.5;
    while (this.head < this.items.length && this.due[this.head] <= now) {
      const item = this.items[this.head++];
      if (this.out.destroyed || this.out.writableEnded) continue;
      if (item === null) this.out.end();
      else this.out.write(item);
    }
    if (this.head === this.items.length) {
      this.items.length = 0;
      this.due.length = 0;
      this.head = 0;
      return;
    }
    if (this.head > 1024) {
      this.items.splice(0, this.head);
      this.due.splice(0, this.head);
      this.head = 0;
    }
    this.schedule();
  }
}

function relay(targetHost: string, targetPort: number, oneWayMs: number): void {
  // Half-open allowed on both sides: a peer's FIN must travel as late as its last bytes, not cut them off.
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    const upstream = net.connect({ port: targetPort, host: targetHost, allowHalfOpen: true });
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const toHub = new DelayLine(upstream, oneWayMs);
    const toClient = new DelayLine(client, oneWayMs);
    client.on('data', (chunk: Buffer) => toHub.push(chunk));
    upstream.on('data', (chunk: Buffer) => toClient.push(chunk));
    // An error is followed by close; either way the other side ends after what was already under way.
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
    const afterwards = (other: net.Socket): void => {
      // A peer that never answers our FIN is cut off after a while.
      setTimeout(() => other.destroy(), oneWayMs + 2000).unref();
    };
    client.on('end', () => toHub.end());
    upstream.on('end', () => toClient.end());
    client.on('close', () => {
      toHub.end();
      afterwards(upstream);
    });
    upstream.on('close', () => {
      toClient.end();
      afterwards(client);
    });
  });
  server.listen(0, targetHost, () => {
    const address = server.address() as net.AddressInfo;
    process.send?.({ port: address.port });
  });
  process.on('disconnect', () => process.exit(0));
}

if (require.main === module) relay(process.argv[2], Number(process.argv[3]), Number(process.argv[4]));
