/**
 * In-process simulators for config nodes in local mode, one per port, shared by every config node in
 * the Node-RED process. A simulator outlives redeploys (its queues and telemetry are the user's test
 * data), and its listeners do not keep the process alive. If the port is already served by another
 * process (`npm start`, `iothub-sim`), the config node joins that one instead.
 */
import { DEFAULT_KEYS, LOCAL_FEEDBACK_FLUSH_MS, startSimulator, type SimulatedHub } from '../simulator';
import { readFileSync } from 'node:fs';
import type { Identity } from '../iothub/connection-string';
import { log, reasonOf } from '../iothub/log';

export interface LocalHub {
  /** The in-process simulator, or undefined when another process serves the port. */
  hub?: SimulatedHub;
  port: number;
  /** The owner policy: service side and gateway for any device, all on one connection. */
  identity: Identity;
  /** The REST API of a simulator in another process, when that process said where (joinedRest). */
  rest?: { port: number; ca?: string };
}

/**
 * Where the simulator of another process serves its REST API: `npm start` runs the simulator beside
 * Node-RED and says so in IOTHUB_SIM_REST_PORT and IOTHUB_SIM_REST_CA (scripts/start.ts localRestEnv).
 */
export function joinedRest(env: NodeJS.ProcessEnv, readFile: (file: string) => string): { port: number; ca?: string } | undefined {
  const port = Number(env.IOTHUB_SIM_REST_PORT);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) return undefined;
  let ca: string | undefined;
  try {
    ca = env.IOTHUB_SIM_REST_CA ? readFile(env.IOTHUB_SIM_REST_CA) : undefined;
  } catch (err) {
    log.node('the simulator certificate named by IOTHUB_SIM_REST_CA cannot be read: %s', reasonOf(err));
  }
  return ca === undefined ? { port } : { port, ca };
}

const running = new Map<number, Promise<LocalHub>>();

export const LOCAL_HOST = 'localhost';

export function localIdentity(): Identity {
  return { kind: 'gateway', host: LOCAL_HOST, policy: 'iothubowner', key: DEFAULT_KEYS.iothubowner };
}

export function acquireLocalHub(port: number): Promise<LocalHub> {
  let entry = running.get(port);
  if (!entry) {
    entry = start(port);
    running.set(port, entry);
    // A failed start is not cached: the next deploy tries again.
    entry.catch(() => running.delete(port));
  }
  return entry;
}

async function start(port: number): Promise<LocalHub> {
  try {
    // The REST API (methods, twins, registry) on any free port: the service nodes ask this hub for it.
    const hub = await startSimulator({ amqpPort: port, amqpsPort: null, wsPort: null, restPort: 0, feedback: { flushIntervalMs: LOCAL_FEEDBACK_FLUSH_MS } });
    hub.unrefListeners();
    return { hub, port: hub.ports.amqp as number, identity: localIdentity() };
  } catch (err) {
    if (/already in use/.test((err as Error).message)) {
      const rest = joinedRest(process.env, (file) => readFileSync(file, 'utf8'));
      return rest ? { port, identity: localIdentity(), rest } : { port, identity: localIdentity() };
    }
    throw err;
  }
}

/** Stops every in-process simulator (tests, and Node-RED shutting down). */
export async function stopLocalHubs(): Promise<void> {
  const all = [...running.values()];
  running.clear();
  for (const entry of all) {
    // One that never started has nothing to stop; its start already failed its users.
    const local = await entry.catch((err: unknown) => log.node('a local simulator that did not start: %s', reasonOf(err)));
    await local?.hub?.close();
  }
}
