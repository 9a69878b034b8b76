/** Small waits the contenders share. */
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
