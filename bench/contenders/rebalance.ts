/**
 * Rebalancing after a kill: two balanced telemetry readers (TelemetryReader with Blob checkpoints in
 * Azurite) share the 8 partitions of a hub, 4 each; one, a child process, is killed with SIGKILL. A
 * round is the time from the kill until the other owns all 8: the dead reader's claims lapse after the
 * ownership expiry, then the survivor claims one partition a balancing round, as the SDKs' balanced
 * strategy does. A container of its own each round.
 */
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { Azurite } from '../../test/helpers/azurite';
import { balancedReader, type PeerConfig } from '../balance-peer';
import type { BenchParams, HubInfo } from '../protocol';
import { within, type Contender } from '../runners';

/** Balancing every second, claims lapsing after 10 s: the SDKs' defaults (10 s, 60 s) scaled down six- to tenfold. */
export const REBALANCE_UPDATE_MS = 1000;
export const REBALANCE_EXPIRY_MS = 10_000;
const PARTITIONS = 8;

function waitFor(check: () => boolean, what: string, ms = 120_000): Promise<void> {
  return within(
    new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        if (!check()) return;
        clearInterval(timer);
        resolve();
      }, 20);
    }),
    ms,
    what,
  );
}

export function rebalanceAfterKill(hub: HubInfo, _params: BenchParams): Contender {
  let azurite: Azurite | undefined;
  return {
    async setup() {
      azurite = await Azurite.start();
      return {};
    },
    async round(index: number) {
      const config = (ownerId: string): PeerConfig => ({
        serviceConnectionString: hub.serviceConnectionString,
        certFile: hub.certFile,
        storage: (azurite as Azurite).connectionString,
        container: `rebalance-${index < 0 ? `w${-index}` : index}`,
        ownerId,
        updateMs: REBALANCE_UPDATE_MS,
        expiryMs: REBALANCE_EXPIRY_MS,
      });
      let victimOwned = 0;
      let survivorOwned = 0;
      const victim = spawn(process.execPath, [path.join(__dirname, '..', 'balance-peer.js')], {
        env: { ...process.env, BALANCE_PEER: JSON.stringify(config('victim')) },
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      victim.stdout.setEncoding('utf8').on('data', (text: string) => {
        for (const m of text.matchAll(/owned (\d+)/g)) victimOwned = Number(m[1]);
      });
      const exited = new Promise<void>((resolve) => victim.once('exit', () => resolve()));
      const survivor = balancedReader(config('survivor'), (owned) => (survivorOwned = owned));
      try {
        await waitFor(() => victimOwned === PARTITIONS / 2 && survivorOwned === PARTITIONS / 2, 'an even split');
        const start = performance.now();
        victim.kill('SIGKILL');
        await exited;
        await waitFor(() => survivorOwned === PARTITIONS, 'the survivor owning every partition');
        return { messages: PARTITIONS, ms: performance.now() - start };
      } finally {
        victim.kill('SIGKILL');
        await survivor.close();
      }
    },
    async close() {
      await azurite?.stop();
    },
  };
}
