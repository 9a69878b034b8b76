/**
 * The fault matrix: each fault the official IoT Hub end-to-end tests inject, done through the
 * simulator's fault API. `inject` acts at once and returns how many things it hit (a fault that hits
 * nothing proves nothing) and a promise that ends the fault, for faults that last a while.
 */
import type { SimulatedHub } from '../../src/simulator';

export const FAULTS = [
  'kill-tcp',
  'kill-amqp',
  'end-session',
  'detach-cbs',
  'detach-d2c',
  'detach-c2d',
  'detach-c2d-send',
  'detach-telemetry',
  'refuse-connections',
] as const;

export type Fault = (typeof FAULTS)[number];

/** Faults that take the whole connection down (clients show disconnected, then connected). */
export const CONNECTION_FAULTS: ReadonlySet<Fault> = new Set(['kill-tcp', 'kill-amqp', 'end-session', 'detach-cbs', 'refuse-connections']);

export interface Injected {
  hits: number;
  /** Resolves when the fault is over (at once for a single blow). */
  over: Promise<void>;
}

/** Polls `check` every 20 ms; rejects after `ms`, saying what it waited for. */
export async function until(check: () => boolean, what: () => string, ms = 30_000): Promise<void> {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export function inject(hub: SimulatedHub, fault: Fault): Injected {
  const done: Promise<void> = Promise.resolve();
  switch (fault) {
    case 'kill-tcp':
      return { hits: hub.faults.dropConnections(), over: done };
    case 'kill-amqp':
      return { hits: hub.faults.closeConnections(), over: done };
    case 'end-session':
      return { hits: hub.faults.endSessions(), over: done };
    case 'detach-cbs':
      return { hits: hub.faults.detachLinks((a) => a.kind === 'cbs'), over: done };
    case 'detach-d2c':
      return { hits: hub.faults.detachLinks((a) => a.kind === 'd2c'), over: done };
    case 'detach-c2d':
      return { hits: hub.faults.detachLinks((a) => a.kind === 'c2d'), over: done };
    case 'detach-c2d-send':
      return { hits: hub.faults.detachLinks((a) => a.kind === 'devicebound'), over: done };
    case 'detach-telemetry':
      return { hits: hub.faults.detachLinks((a) => a.kind === 'eh-partition'), over: done };
    case 'refuse-connections': {
      // Refuse until the clients have been turned away at least twice, then let them in: long
      // enough to matter, with no guess at how long that is on a busy machine.
      const refusedBefore = hub.stats.connectionsRefused;
      hub.faults.refuseConnections(10 * 60_000);
      const hits = hub.faults.dropConnections();
      const over = until(
        () => hub.stats.connectionsRefused >= refusedBefore + 2,
        () => 'reconnects to be refused',
      ).finally(() => hub.faults.refuseConnections(0));
      return { hits, over };
    }
  }
}
