/** Small helpers every palette node adapter shares: finding its config node and reporting errors. */
import type { Node, NodeAPI, NodeMessage } from 'node-red';
import { HubError, toHubError } from '../iothub/errors';
import type { ConnectionNode, Role } from './iothub-connection';

export type Done = (err?: Error) => void;
export type Send = (msg: NodeMessage | Array<NodeMessage | NodeMessage[] | null>) => void;

/** The config node, or an error that says what is wrong with the node's setup. */
export function connectionFor(RED: NodeAPI, node: Node, hubId: string | undefined, roles: Role[], what: string): { config?: ConnectionNode; error?: HubError } {
  const config = hubId ? (RED.nodes.getNode(hubId) as ConnectionNode | null) : null;
  if (!config) {
    node.status({ fill: 'red', shape: 'ring', text: 'iothub-common.status.no-connection' });
    return { error: new HubError('NoConnection', `${what} has no IoT Hub connection configured`) };
  }
  if (config.role !== 'invalid' && !roles.includes(config.role)) {
    node.status({ fill: 'red', shape: 'ring', text: 'iothub-common.status.wrong-role' });
    return {
      config,
      error: new HubError('WrongRole', `${what} needs a ${roles.filter((r) => r !== 'local').join(' or ')} connection, but its connection is a ${config.role} connection`),
    };
  }
  return { config };
}

/** Errors as Catch nodes see them: always a HubError with a code from the one translator. */
export function asError(err: unknown): HubError {
  return toHubError(err, undefined, 'Error');
}

/** A positive whole number from an editor field, or the fallback. */
export function positiveInt(value: unknown, fallback: number): number {
  const n = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : NaN;
  return Number.isInteger(n) && n > 0 ? n : fallback;
}
