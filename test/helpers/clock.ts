/**
 * A clock for retry loops under test: it records every wait asked of it, and lets it pass `scale`
 * times as fast in real time, so a test reads the waits a loop chose instead of counting attempts in
 * a wall-clock window.
 */
import type { Clock, ClockTimer } from '../../src/iothub/backoff';

export class RecordingClock implements Clock {
  /** Every wait asked for, in order, ms. */
  readonly waits: number[] = [];

  constructor(private readonly scale = 1) {}

  now(): number {
    return Date.now();
  }

  setTimeout(fn: () => void, ms: number): ClockTimer {
    this.waits.push(ms);
    const id = setTimeout(fn, Math.max(0, Math.round(ms * this.scale)));
    id.unref();
    return { id };
  }

  clearTimeout(timer: ClockTimer): void {
    clearTimeout(timer.id as NodeJS.Timeout);
  }
}
