/**
 * What every palette node adapter does the same way: register its type with Node-RED, find and use its
 * config node, take input msgs with `send` and `done`, and close with `done`.
 */
import type { Node, NodeAPI, NodeDef, NodeMessage, NodeMessageInFlow } from 'node-red';
import { HubError } from '../iothub/errors';
import type { ConnectionNode, Role } from './iothub-connection';

export type Done = (err?: Error) => void;
/** A msg a node sends or reports an error with: Node-RED's fields and whatever the node adds. */
export type Msg = NodeMessage;
export type Send = (msg: Msg | Array<Msg | Msg[] | null>) => void;

type RegisterOptions = Parameters<NodeAPI['nodes']['registerType']>[2];

/** Registers a node type: the constructor's `this` is the node, its argument the node's settings. */
export function registerNode<N extends Node, D extends NodeDef>(
  RED: NodeAPI,
  type: string,
  constructor: (this: N, def: D) => void,
  options?: RegisterOptions,
): void {
  RED.nodes.registerType(type, constructor, options);
}

/** What a node sends: any object type, the client core's field interfaces included. */
export type OutMsg = { payload?: unknown; topic?: string };

/**
 * Sends a msg on the node's output. Node-RED's msg type has an index signature that interfaces (the
 * core's IncomingFields and its kin) cannot have; every msg is such an object all the same.
 */
export function sendMsg<M extends OutMsg>(node: Node, msg: M): void {
  node.send(msg as Msg);
}

/**
 * Handles the node's input msgs. The handler always takes (msg, send, done): Node-RED passes `done`
 * only to a listener that declares all three, and a msg without `done` is never reported complete.
 */
export function onInput(node: Node, handler: (msg: NodeMessageInFlow, send: Send, done: Done) => void): void {
  node.on('input', (msg: NodeMessageInFlow, send: Send, done: Done) => handler(msg, send, done));
}

/**
 * Calls `done` exactly once when the node closes: after `release` (the node's links) has finished,
 * failed or thrown. A release that fails must not leave Node-RED waiting out its close timeout.
 */
export function closeWith(node: Node, release: () => unknown): void {
  node.on('close', (_removed: boolean, done: () => void) => {
    let finished = false;
    const finish = (): void => {
      if (finished) return;
      finished = true;
      done();
    };
    let releasing: Promise<unknown>;
    try {
      releasing = Promise.resolve(release());
    } catch (err) {
      releasing = Promise.reject(err);
    }
    releasing.then(finish, finish);
  });
}

/** A palette node's use of its config node. */
export interface HubUse {
  readonly config: ConnectionNode;
  /** On close: `release` (the node's links), then the config node lets go of this node, then `done`, once. */
  onClose(release?: () => unknown): void;
}

export interface HubNeeds {
  /** The roles of connection this node works with. */
  roles: Role[];
  /** The node's name in error messages. */
  what: string;
  /** False for nodes that show a status of their own instead of the connection's. */
  connectionStatus?: boolean;
}

/**
 * Finds the node's config node and registers the node with it (the config node connects on its first
 * user). Without a usable one (none, or one of the wrong role) the node's status says why, every msg
 * fails with a NoConnection or WrongRole error, and this returns undefined: the node has nothing to set up.
 */
export function useHub(RED: NodeAPI, node: Node, hubId: string | undefined, needs: HubNeeds): HubUse | undefined {
  const found = hubId ? (RED.nodes.getNode(hubId) as ConnectionNode | null) : null;
  let error: HubError | undefined;
  if (!found) {
    node.status({ fill: 'red', shape: 'ring', text: 'iothub-common.status.no-connection' });
    error = new HubError('NoConnection', `${needs.what} has no IoT Hub connection configured`);
  } else if (found.role !== 'invalid' && !needs.roles.includes(found.role)) {
    node.status({ fill: 'red', shape: 'ring', text: 'iothub-common.status.wrong-role' });
    const wanted = needs.roles.filter((r) => r !== 'local').join(' or ');
    error = new HubError('WrongRole', `${needs.what} needs a ${wanted} connection, but its connection is a ${found.role} connection`);
  }
  if (!found || error) {
    const why = error;
    onInput(node, (_msg, _send, done) => done(why));
    closeWith(node, () => undefined);
    return undefined;
  }
  const config = found;
  config.register(node, needs.connectionStatus === false ? { status: false } : {});
  return {
    config,
    onClose(release = () => undefined) {
      const deregister = (): Promise<void> => new Promise<void>((resolve) => config.deregister(node, resolve));
      closeWith(node, () => {
        let releasing: unknown;
        try {
          releasing = release();
        } catch {
          releasing = undefined;
        }
        // In the same turn when there is nothing to wait for: the config node closes its connection
        // when its last user leaves, before Node-RED goes on to close the config node itself.
        return releasing instanceof Promise ? releasing.then(deregister, deregister) : deregister();
      });
    },
  };
}
