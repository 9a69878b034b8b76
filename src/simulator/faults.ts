/**
 * The fault API tests and tools drive (`hub.faults`): each fault acts on the part that owns what it
 * breaks (connections, links, tokens, the throttle, the token service, the listeners' refusal window).
 * Separate so that the hub's parts keep only their own state and the test-facing surface stays in one
 * place.
 */
import type * as rhea from 'rhea';
import type { AmqpError } from './amqp';
import type { Address } from './addresses';
import type { Connections, Transport } from './connections';
import type { SimulatorOptions } from './options';
import type { Throttle } from './throttle';

/** The put-token fault, held by whatever answers put-token. */
export interface PutTokenBlocker {
  blockPutTokens(ms: number, answer: 'refuse' | 'ignore'): void;
}

export interface FaultParts {
  connections: Connections;
  throttle: Throttle;
  tokens: PutTokenBlocker;
  options: SimulatorOptions;
}

/** The `faults` object; its members are plain functions, so they may be passed around unbound. */
export type HubFaults = ReturnType<typeof createFaults>;

export function createFaults({ connections, throttle, tokens, options }: FaultParts) {
  return {
    /** Kills the TCP connections (no AMQP close); returns how many. */
    dropConnections: (filter?: (info: { id: number; transport: Transport }) => boolean): number => {
      let n = 0;
      for (const conn of [...connections.values()]) {
        if (filter && !filter({ id: conn.id, transport: conn.transport })) continue;
        n++;
        conn.dropped = true;
        conn.destroy();
      }
      return n;
    },
    /** Closes the AMQP connections with an error (default `amqp:connection:forced`). */
    closeConnections: (error: AmqpError = { condition: 'amqp:connection:forced', description: 'Closed by the simulator (fault).' }): number => {
      const all = [...connections.values()];
      for (const conn of all) conn.connection.close(error as rhea.AmqpError);
      return all.length;
    },
    /** Ends every session with an error. */
    endSessions: (error: AmqpError = { condition: 'amqp:internal-error', description: 'Session ended by the simulator (fault).' }): number => {
      const sessions = new Set<rhea.Session>();
      for (const conn of connections.values()) for (const l of conn.links.values()) sessions.add(l.session);
      for (const s of sessions) s.close(error as rhea.AmqpError);
      return sessions.size;
    },
    /** Detaches the links whose address matches, e.g. `(a) => a.kind === 'd2c'`. */
    detachLinks: (
      match: (address: Address, text: string) => boolean,
      error: AmqpError = { condition: 'amqp:link:detach-forced', description: 'Link detached by the simulator (fault).' },
    ): number => {
      let n = 0;
      for (const conn of connections.values()) {
        for (const state of [...conn.links.values()]) {
          if (!match(state.address, state.addressText)) continue;
          n++;
          connections.closeLink(state, error);
        }
      }
      return n;
    },
    /** Makes every token on every connection lapse now; their links are detached at once. */
    expireTokens: (): void => {
      const now = Date.now();
      for (const conn of connections.values()) conn.auth.expireAll(now);
      connections.enforceTokens(now + options.tokenGraceMs + 1);
    },
    /** Answers the next `count` D2C and C2D sends with a throttling error. */
    throttleNext: (count: number): void => {
      throttle.next(count);
    },
    /** Answers every D2C and C2D send with a throttling error for `ms` (0 stops). */
    throttleFor: (ms: number): void => {
      throttle.for(ms);
    },
    /**
     * Blocks put-token for `ms` (0 stops): `refuse` answers 401, `ignore` never answers. Tokens already
     * put stay valid until they expire, so this is how a renewal that cannot happen is simulated.
     */
    blockPutTokens: (ms: number, answer: 'refuse' | 'ignore' = 'refuse'): void => {
      tokens.blockPutTokens(ms, answer);
    },
    /** Refuses new connections for `ms` (0 stops refusing). */
    refuseConnections: (ms: number): void => {
      connections.refuseFor(ms);
    },
  };
}
