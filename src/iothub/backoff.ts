/**
 * Reconnect delays: exponential with full jitter between a floor and a cap, so that a plant full of
 * boxes that lost the same hub do not all come back in the same second.
 */
export interface BackoffOptions {
  minMs: number;
  maxMs: number;
  random?: () => number;
}

/**
 * The wait after the hub throttled a send (`com.microsoft:device-container-throttled`), on the official
 * Node device SDK's schedule as its code computes it (azure-iot-sdk-node common/core/src/retry_policy.ts,
 * throttled parameters cMin 10 s, c 5 s, cMax 60 s, jitter spread c·(jd − ju) = 1.25 s): the floor
 * first, then the floor plus a random part whose range doubles each time, never above the cap. The hub throttles for a minute or two; retrying sooner only prolongs it.
 */
export function throttleDelay(attempt: number, options: BackoffOptions): number {
  const random = options.random ?? Math.random;
  const spread = (2 ** Math.min(attempt, 30) - 1) * (options.minMs / 8);
  return Math.round(Math.min(options.minMs + random() * spread, options.maxMs));
}

/** Delay before attempt `attempt` (0 = the first retry). Never below minMs/2, never above maxMs. */
export function backoffDelay(attempt: number, options: BackoffOptions): number {
  const random = options.random ?? Math.random;
  const ceiling = Math.min(options.maxMs, options.minMs * 2 ** Math.min(attempt, 30));
  // Half fixed, half random: spreads clients out while keeping the growth visible.
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/**
 * Where waits come from. Retry loops take one so that tests can record and shorten the waits they
 * ask for instead of counting attempts in wall-clock windows.
 */
export interface Clock {
  now(): number;
  /** Arms a timer that does not keep the process alive on its own. */
  setTimeout(fn: () => void, ms: number): ClockTimer;
  clearTimeout(timer: ClockTimer): void;
}

export interface ClockTimer {
  readonly id: unknown;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const id = setTimeout(fn, Math.min(Math.max(0, ms), MAX_TIMER_MS));
    id.unref();
    return { id };
  },
  clearTimeout(timer) {
    clearTimeout(timer.id as NodeJS.Timeout);
  },
};

const MAX_TIMER_MS = 2 ** 31 - 1;

/** The delay before retry number `attempt` (0 = the first). */
export type Schedule = (attempt: number) => number;

/**
 * One retry loop's wait: counts the attempts since the last success, holds at most one armed timer,
 * and computes each wait from its schedule. Every retry loop of the client uses one, so a wait is
 * always cancellable, never doubled, and observable through the clock.
 */
export class Backoff {
  private attempts = 0;
  private timer: ClockTimer | undefined;

  constructor(
    private readonly schedule: Schedule,
    private readonly clock: Clock = systemClock,
  ) {}

  /** How many waits were armed since the last reset. */
  get attempt(): number {
    return this.attempts;
  }

  get waiting(): boolean {
    return this.timer !== undefined;
  }

  /**
   * Runs `fn` after the next wait, and counts an attempt. The wait comes from the schedule, or from
   * `override` when this failure calls for another (a throttle's own schedule, the cap at once); an
   * earlier wait is cancelled. Returns the wait.
   */
  after(fn: () => void, override?: Schedule): number {
    const wait = (override ?? this.schedule)(this.attempts++);
    this.cancel();
    const timer = this.clock.setTimeout(() => {
      if (this.timer !== timer) return;
      this.timer = undefined;
      fn();
    }, wait);
    this.timer = timer;
    return wait;
  }

  /** Drops the armed wait, if any; the attempt count stays. */
  cancel(): void {
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** A success: the next failure starts the schedule over. A wait still armed stays armed. */
  reset(): void {
    this.attempts = 0;
  }
}

/** The usual reconnect schedule: exponential with jitter between a floor and a cap. */
export function reconnectSchedule(options: BackoffOptions): Schedule {
  return (attempt) => backoffDelay(attempt, options);
}
