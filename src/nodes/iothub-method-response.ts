/**
 * method-response: answers a direct-method call that an iothub-method-in node on the same connection
 * emitted, by its msg.requestId, with msg.statusCode (or the node's setting) and msg.payload as JSON.
 * An answer that cannot be sent fails with a code for Catch nodes: MethodCallLost (answered already,
 * its link went down, or the hub gave up), InvalidPayload, MessageTooLarge, ArgumentInvalid.
 */
import type { Node, NodeAPI, NodeDef, NodeMessageInFlow } from 'node-red';
import { answerMethodCall } from '../iothub/direct-methods';
import { answerStatus } from './method-twin-fields';
import { onInput, registerNode, useHub } from './adapter';
import { asError } from './common';
import { errorStatus, statusFor } from './status';

interface MethodResponseDef extends NodeDef {
  hub: string;
  /** The status when msg.statusCode is not set. */
  statusCode?: number | string;
}

type AnswerMsg = NodeMessageInFlow & { requestId?: unknown; statusCode?: unknown };

export default function register(RED: NodeAPI): void {
  function MethodResponseNode(this: Node, def: MethodResponseDef): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const hub = useHub(RED, node, def.hub, { roles: ['local', 'device', 'gateway'], what: 'method-response', connectionStatus: false });
    if (!hub) return;
    const { config } = hub;
    let closed = false;

    onInput(node, (msg: AnswerMsg, _send, done) => {
      config
        .connection()
        .then((connection) => answerMethodCall(connection, msg.requestId, answerStatus(msg.statusCode, def.statusCode), msg.payload))
        .then(
          () => {
            if (!closed) node.status(statusFor('open'));
            done();
          },
          (err: unknown) => {
            const error = asError(err);
            if (!closed) node.status(errorStatus(error));
            done(error);
          },
        );
    });

    hub.onClose(() => {
      closed = true;
    });
  }

  registerNode(RED, 'iothub-method-response', MethodResponseNode);
}

module.exports = register;
module.exports.default = register;
