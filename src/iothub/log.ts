/**
 * Debug logs of the client core, by namespace, with the `debug` package rhea itself logs through:
 * `DEBUG=iothub:*` shows every connect, token put and renewal, retry decision and refusal
 * (`DEBUG=iothub:*,rhea:events` adds rhea's own). Nothing logged here may hold a key or a token:
 * audiences, host names, device ids, codes and delays only.
 */
import createDebug from 'debug';
import type { Identity } from './connection-string';

export const log = {
  connection: createDebug('iothub:connection'),
  cbs: createDebug('iothub:cbs'),
  link: createDebug('iothub:link'),
};

/** Who an identity is, for logs and the Node-RED log: never its key. */
export function describeIdentity(identity: Identity): string {
  switch (identity.kind) {
    case 'device':
      return `device ${identity.deviceId}${identity.moduleId ? `/${identity.moduleId}` : ''} on ${identity.host}`;
    case 'eventhub':
      return `policy ${identity.policy} on Event Hubs ${identity.host}/${identity.entityPath}`;
    case 'gateway':
      return `gateway policy ${identity.policy} on ${identity.host}`;
    default:
      return `service policy ${identity.policy} on ${identity.host}`;
  }
}
