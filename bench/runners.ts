/**
 * The two ways a contender drives load: a window of promises kept full (every client that hands back
 * a promise per message), and raw AMQP sending within link credit (the baseline). Both run for a fixed
 * time, then stop starting new sends and wait for the ones in flight, which count.
 */
import { SenderEvents, type EventContext, type Message, type Sender } from 'rhea-promise';
import type { BenchParams, HubInfo } from './protocol';

export interface Contender {
  /** Connect and get ready; returns numbers worth reporting (setup times). */
  setup(): Promise<Record<string, number>>;
  /**
   * One timed round: messages done and the ms they took; `cpuUs` when the contender times a window
   * of its own (reads: first event to last), else the worker counts the whole round.
   */
  round(index: number): Promise<{ messages: number; ms: number; cpuUs?: number }>;
  /** Numbers known only at the end (memory after the rounds). */
  notes?(): Record<string, number>;
  close(): Promise<void>;
}

export type ContenderFactory = (hub: HubInfo, params: BenchParams) => Contender;

/**
 * Keeps `window` calls of `sendOne` in flight for `durationMs`, then lets them finish. `sendOne(i)`
 * gets a running number. A window of 1 is "await each send".
 */
export function runWindowed(durationMs: number, window: number, sendOne: (i: number) => Promise<unknown>): Promise<{ messages: number; ms: number }> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    let inFlight = 0;
    let done = 0;
    let next = 0;
    let stopped = false;
    let failed = false;
    const timer = setTimeout(() => {
      stopped = true;
      if (inFlight === 0) finish();
    }, durationMs);
    const finish = (): void => resolve({ messages: done, ms: performance.now() - start });
    const fill = (): void => {
      while (!stopped && !failed && inFlight < window) {
        inFlight += 1;
        let promise: Promise<unknown>;
        try {
          promise = sendOne(next++);
        } catch (err) {
          promise = Promise.reject(err);
        }
        promise.then(
          () => {
            inFlight -= 1;
            done += 1;
            if (stopped) {
              if (inFlight === 0) finish();
            } else fill();
          },
          (err: unknown) => {
            if (failed) return;
            failed = true;
            clearTimeout(timer);
            reject(err instanceof Error ? err : new Error(String(err)));
          },
        );
      }
    };
    fill();
  });
}

/**
 * Sends on raw rhea-promise senders whenever they have credit, for `durationMs`, then waits until
 * every delivery is settled. Only accepted deliveries count; anything else fails the round.
 */
export function runCredit(senders: Sender[], durationMs: number, makeMessage: (i: number) => Message): Promise<{ messages: number; ms: number }> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    let sent = 0;
    let accepted = 0;
    let stopped = false;
    let over = false;
    const cleanups: Array<() => void> = [];
    const end = (err?: Error): void => {
      if (over) return;
      over = true;
      clearTimeout(timer);
      for (const c of cleanups) c();
      if (err) reject(err);
      else resolve({ messages: accepted, ms: performance.now() - start });
    };
    const pump = (sender: Sender): void => {
      while (!stopped && sender.sendable()) {
        sender.send(makeMessage(sent));
        sent += 1;
      }
    };
    for (const sender of senders) {
      const onAccepted = (): void => {
        accepted += 1;
        if (stopped && accepted === sent) end();
      };
      const onFailed = (ctx: EventContext): void => end(new Error(`a delivery was not accepted: ${JSON.stringify(ctx.delivery?.remote_state ?? {})}`));
      const onSendable = (): void => pump(sender);
      sender.on(SenderEvents.accepted, onAccepted);
      sender.on(SenderEvents.rejected, onFailed);
      sender.on(SenderEvents.released, onFailed);
      sender.on(SenderEvents.sendable, onSendable);
      cleanups.push(() => {
        sender.removeListener(SenderEvents.accepted, onAccepted);
        sender.removeListener(SenderEvents.rejected, onFailed);
        sender.removeListener(SenderEvents.released, onFailed);
        sender.removeListener(SenderEvents.sendable, onSendable);
      });
    }
    const timer = setTimeout(() => {
      stopped = true;
      if (accepted === sent) end();
    }, durationMs);
    for (const sender of senders) pump(sender);
  });
}

/** Counts arrivals up to `total`; the round's time (and CPU) runs from the first arrival to the last. */
export class ArrivalClock {
  private first = 0;
  private firstCpu: NodeJS.CpuUsage | undefined;
  private count = 0;
  private resolveDone: (() => void) | undefined;
  readonly done: Promise<{ messages: number; ms: number; cpuUs: number }>;

  constructor(readonly total: number) {
    this.done = new Promise((resolve) => {
      this.resolveDone = () => {
        const cpu = process.cpuUsage(this.firstCpu);
        resolve({ messages: this.count, ms: performance.now() - this.first, cpuUs: cpu.user + cpu.system });
      };
    });
  }

  arrived(n = 1): void {
    if (this.count === 0) {
      this.first = performance.now();
      this.firstCpu = process.cpuUsage();
    }
    this.count += n;
    if (this.count >= this.total && this.resolveDone) {
      const r = this.resolveDone;
      this.resolveDone = undefined;
      r();
    }
  }

  get seen(): number {
    return this.count;
  }
}

/**
 * Events @azure/event-hubs with its default options reads per round: it polls its queue every 20 ms
 * and hands over one event per call, a few hundred a second, so a full drain would take minutes.
 */
export const EVENT_HUBS_DEFAULTS_SAMPLE = 5000;

/** Generous: a drain that stalls fails instead of hanging the run. */
export const ROUND_LIMIT_MS = 600_000;

/** A payload of `size` bytes, the same for every contender. */
export function payloadOf(size: number): Buffer {
  return Buffer.alloc(size, 'x');
}

/** Rejects after `ms` unless the promise settles first. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} took longer than ${Math.round(ms / 1000)} s`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
