/** The runner's side of a worker process: one request at a time, answered over IPC. */
import { fork, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import type { BenchParams, FromWorker, HubInfo, RoundResult, ToWorker } from './protocol';

export interface WorkerOptions {
  /** Trusted by the SDK clients that have no CA option. */
  certFile: string;
  profileDir?: string;
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
    if (options.profileDir) execArgv.push('--cpu-prof', `--cpu-prof-dir=${options.profileDir}`, `--cpu-prof-name=${contender}.cpuprofile`);
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
    if (this.exited) return Promise.reject(new Error(`${this.contender}: the worker is gone`));
    if (this.waiting) return Promise.reject(new Error(`${this.contender}: a request is already waiting`));
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
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

  /** Ends the worker if it is still there (after finish it exits by itself). */
  kill(): void {
    if (!this.exited) this.child.kill();
  }
}
