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
  /** The Node-RED adapters: failures already shown in a status or a Catch msg, told again for debugging. */
  node: createDebug('iothub:node'),
};

/** The message of whatever failed, for a log line. */
export function reasonOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

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

/**
 * Text from the hub or from an error, made safe for a log: whatever in it looks like a key, a
 * signature or a token is replaced. The client never puts secrets in its own messages; this guards
 * against peers and libraries that echo what they were given.
 */
export function redactSecrets(text: string): string {
  return text
    .replace(/(SharedAccessKey|SharedAccessSignature)=[^;]*/gi, '$1=***')
    .replace(/SharedAccessSignature\s+[^;\s]*/gi, 'SharedAccessSignature ***')
    .replace(/\bsig=[^&;\s]*/gi, 'sig=***');
}
