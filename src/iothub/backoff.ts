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
