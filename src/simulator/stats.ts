/**
 * The hub's counters. Separate so that every part that counts (listeners, connections, link routing,
 * CBS, the send paths) can take the one shared record without importing the hub that owns it.
 */

export interface HubStats {
  connectionsAccepted: number;
  connectionsRefused: number;
  /** Connections dropped for breaking the rules (oversized frames, never opened). */
  connectionsDropped: number;
  openConnections: number;
  linksAttached: number;
  linksRefused: number;
  putTokens: number;
  putTokensRefused: number;
  d2cAccepted: number;
  c2dAccepted: number;
  /** Sends answered with throttling (fault). */
  throttled: number;
}

export function emptyStats(): HubStats {
  return {
    connectionsAccepted: 0,
    connectionsRefused: 0,
    connectionsDropped: 0,
    openConnections: 0,
    linksAttached: 0,
    linksRefused: 0,
    putTokens: 0,
    putTokensRefused: 0,
    d2cAccepted: 0,
    c2dAccepted: 0,
    throttled: 0,
  };
}
