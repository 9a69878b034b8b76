/** Small waits and measures the contenders share. */
import { readFileSync } from 'node:fs';
import type { HubConnection, HubState } from '../../src/iothub/hub-connection';
import { within } from '../runners';

/** Resolves when the connection reaches `state`; fails if it reports an error first. */
export function waitForState(connection: HubConnection, state: HubState, ms = 30_000): Promise<void> {
  if (connection.state === state) return Promise.resolve();
  return within(
    new Promise<void>((resolve) => {
      const onState = (s: HubState): void => {
        if (s !== state) return;
        connection.off('state', onState);
        resolve();
      };
      connection.on('state', onState);
      connection.open();
    }),
    ms,
    `reaching ${state}`,
  );
}

/**
 * Peak RSS of this process, KB. Linux keeps the high-water mark per address space (VmHWM), so it
 * starts afresh at exec; getrusage's maxrss does not, and would report the runner's peak (with the
 * simulator's stored events) for every worker it forked.
 */
export function peakRssKb(): number {
  try {
    const hwm = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (hwm) return Number(hwm[1]);
  } catch {
    // not Linux: getrusage below
  }
  return process.resourceUsage().maxRSS;
}

/** RSS and live heap after a full GC, bytes; the lowest of a few samples, so a stray allocation does not count. */
export async function settledMemory(): Promise<{ rss: number; heap: number }> {
  const gc = (globalThis as { gc?: () => void }).gc;
  let rss = Infinity;
  let heap = Infinity;
  for (let i = 0; i < 3; i++) {
    gc?.();
    await new Promise((r) => setTimeout(r, 50));
    rss = Math.min(rss, process.memoryUsage.rss());
    heap = Math.min(heap, process.memoryUsage().heapUsed);
  }
  return { rss, heap };
}
