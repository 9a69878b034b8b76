/** Node status for a connection state: the colours and Node-RED common keys users know. */
import type { HubState } from '../iothub/hub-connection';
import type { HubError } from '../iothub/errors';

export interface Status {
  fill: 'red' | 'green' | 'yellow' | 'blue' | 'grey';
  shape: 'ring' | 'dot';
  text: string;
}

export function statusFor(state: HubState | 'invalid', error?: HubError): Status {
  switch (state) {
    case 'open':
      return { fill: 'green', shape: 'dot', text: 'node-red:common.status.connected' };
    case 'connecting':
    case 'authenticating':
      return { fill: 'yellow', shape: 'ring', text: 'node-red:common.status.connecting' };
    case 'reconnecting':
      if (error?.code === 'Unauthorized') return { fill: 'red', shape: 'ring', text: 'iothub-connection.status.unauthorized' };
      return { fill: 'red', shape: 'ring', text: 'node-red:common.status.disconnected' };
    case 'invalid':
      return { fill: 'red', shape: 'ring', text: 'iothub-connection.status.invalid' };
    case 'closed':
    case 'idle':
      return { fill: 'grey', shape: 'ring', text: 'node-red:common.status.not-connected' };
  }
}
