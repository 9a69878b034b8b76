/**
 * The throttling fault: D2C and C2D sends are both answered with the same throttling error while it
 * lasts, so the one count and deadline live here rather than in either send path.
 */
import type { AmqpError } from './amqp';
import type { HubStats } from './stats';

export const THROTTLED: AmqpError = {
  condition: 'com.microsoft:device-container-throttled',
  description: 'The request was throttled (simulated fault).',
};

export class Throttle {
  private count = 0;
  private until = 0;

  constructor(private readonly stats: HubStats) {}

  /** Throttles the next `count` sends. */
  next(count: number): void {
    this.count = Math.max(0, count);
  }

  /** Throttles every send for `ms` (0 stops). */
  for(ms: number): void {
    this.until = ms > 0 ? Date.now() + ms : 0;
  }

  /** Whether this send is throttled; counts it if so. */
  take(): boolean {
    if (Date.now() >= this.until) {
      if (this.count <= 0) return false;
      this.count--;
    }
    this.stats.throttled++;
    return true;
  }
}
