/** The runner's side of a worker process: one request at a time, answered over IPC. */
import { fork, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import type { BenchParams, FromWorker, HubInfo, RoundResult, ToWorker } from './protocol';
import { ROUND_LIMIT_MS } from './runners';

export interface WorkerOptions {
  /** Trusted by the SDK clients that have no CA option. */
  certFile: string;
  profileDir?: string;
  /** File name of the profile, without .cpuprofile (default: the contender's name). */
  profileName?: string;
}

export class WorkerHandle {
  private readonly child: ChildProcess;
  private waiting: { resolve: (m: FromWorker) => void; reject: (e: Error) => void } | undefined;
  private exited = false;

  constructor(
    readonly contender: string,
    options: WorkerOptions,
  ) {
    const execArgv = ['--expose-gc'];
    if (options.profileDir)
      execArgv.push('--cpu-prof', `--cpu-prof-dir=${options.profileDir}`, `--cpu-prof-name=${options.profileName ?? contender}.cpuprofile`);
    this.child = fork(path.join(__dirname, 'worker.js'), [], {
      execArgv,
      env: { ...process.env, NODE_EXTRA_CA_CERTS: options.certFile },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    // The table owns stdout; whatever a worker prints goes to stderr, marked with its name.
    const relay = (chunk: Buffer): void => {
      for (const line of chunk.toString().split('\n')) if (line.trim()) process.stderr.write(`[${contender}] ${line}\n`);
    };
    this.child.stdout?.on('data', relay);
    this.child.stderr?.on('data', relay);
    this.child.on('message', (message: FromWorker) => this.onMessage(message));
    this.child.on('exit', (code, signal) => {
      this.exited = true;
      const waiting = this.waiting;
      this.waiting = undefined;
      waiting?.reject(new Error(`${contender}: the worker exited (${signal ?? code}) before answering`));
    });
  }

  private onMessage(message: FromWorker): void {
    const waiting = this.waiting;
    if (message.type === 'error') {
      if (waiting) {
        this.waiting = undefined;
        waiting.reject(new Error(`${this.contender}: ${message.message}`));
      } else process.stderr.write(`[${this.contender}] error between requests: ${message.message}\n`);
      return;
    }
    this.waiting = undefined;
    waiting?.resolve(message);
  }

  private request(message: ToWorker): Promise<FromWorker> {
    if (process.env.BENCH_TRACE) process.stderr.write(`[trace] ${new Date().toISOString()} ${this.contender} ${message.type}\n`);
    if (this.exited) return Promise.reject(new Error(`${this.contender}: the worker is gone`));
    if (this.waiting) return Promise.reject(new Error(`${this.contender}: a request is already waiting`));
    // A worker that never answers fails the run instead of hanging it (a round's own limit is shorter).
    const limitMs = message.type === 'round' ? ROUND_LIMIT_MS + 60_000 : 180_000;
    return new Promise<FromWorker>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = undefined;
        reject(new Error(`${this.contender}: no answer to ${message.type} within ${limitMs / 1000} s`));
      }, limitMs);
      const settle =
        <T>(fn: (value: T) => void) =>
        (value: T): void => {
          clearTimeout(timer);
          fn(value);
        };
      this.waiting = { resolve: settle(resolve), reject: settle(reject) };
      this.child.send(message);
    });
  }

  async setup(hub: HubInfo, params: BenchParams): Promise<Record<string, number>> {
    const answer = await this.request({ type: 'setup', contender: this.contender, hub, params });
    if (answer.type !== 'ready') throw new Error(`${this.contender}: unexpected answer ${answer.type} to setup`);
    return answer.notes;
  }

  async round(index: number): Promise<RoundResult> {
    const answer = await this.request({ type: 'round', index });
    if (answer.type !== 'result') throw new Error(`${this.contender}: unexpected answer ${answer.type} to a round`);
    return { messages: answer.messages, ms: answer.ms, cpuUs: answer.cpuUs };
  }

  async finish(): Promise<{ maxRssKb: number; notes: Record<string, number> }> {
    const answer = await this.request({ type: 'finish' });
    if (answer.type !== 'finished') throw new Error(`${this.contender}: unexpected answer ${answer.type} to finish`);
    return { maxRssKb: answer.maxRssKb, notes: answer.notes };
  }

  /**
   * Ends the worker. After finish it exits by itself: wait for that a while, since a killed
   * worker may not get to write its CPU profile.
   */
  async end(graceMs = 5000): Promise<void> {
    if (this.exited) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    const timer = setTimeout(() => this.child.kill(), graceMs);
    await exited;
    clearTimeout(timer);
  }

  /** Ends the worker at once (after a failure). */
  kill(): void {
    if (!this.exited) this.child.kill();
  }
}
