/**
 * Debug logs of the simulator (`DEBUG=iothub-sim:*`): what a misbehaving peer did that the hub shrugs off
 * (a failed TLS handshake, a socket reset), so that someone chasing a client bug can see it. Tokens and
 * keys are never logged.
 */
import createDebug from 'debug';

export const simLog = {
  socket: createDebug('iothub-sim:socket'),
  amqp: createDebug('iothub-sim:amqp'),
};

/** The message of whatever was thrown or emitted. */
export function reason(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
