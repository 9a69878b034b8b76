/**
 * Reconnect delays: exponential with full jitter between a floor and a cap, so that a plant full of
 * boxes that lost the same hub do not all come back in the same second.
 */
export interface BackoffOptions {
  minMs: number;
  maxMs: number;
  random?: () => number;
}

/** Delay before attempt `attempt` (0 = the first retry). Never below minMs/2, never above maxMs. */
export function backoffDelay(attempt: number, options: BackoffOptions): number {
  const random = options.random ?? Math.random;
  const ceiling = Math.min(options.maxMs, options.minMs * 2 ** Math.min(attempt, 30));
  // Half fixed, half random: spreads clients out while keeping the growth visible.
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}
