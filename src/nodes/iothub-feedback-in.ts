/**
 * feedback-in: receives delivery feedback for cloud-to-device messages sent with an ack. One msg per
 * record (or one per batch), settled with the hub only after its records were sent on. A body that is
 * not a feedback batch is reported and rejected, never crashing the flow.
 */
import type { Node, NodeAPI, NodeDef } from 'node-red';
import { decodeFeedback, type FeedbackRecord } from '../amqp/feedback-codec';
import { HubError } from '../iothub/errors';
import { HubReceiver, type Received } from '../iothub/links';
import { bodyBuffer } from '../iothub/message';
import { registerNode, sendMsg, useHub } from './adapter';
import { asError } from './common';
import { LinkStatusWatch } from './link-status';
import { log, reasonOf } from '../iothub/log';

interface FeedbackInDef extends NodeDef {
  hub: string;
  batch?: boolean;
}

export default function register(RED: NodeAPI): void {
  function FeedbackInNode(this: Node, def: FeedbackInDef): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const hub = useHub(RED, node, def.hub, { roles: ['local', 'service', 'gateway'], what: 'feedback-in', connectionStatus: false });
    if (!hub) return;
    const { config } = hub;
    let receiver: HubReceiver | undefined;
    let closed = false;
    // The link's state, not only the connection's: a policy without ServiceConnect opens the
    // connection, and then the hub refuses the feedback link.
    const status = new LinkStatusWatch(node);

    const onMessage = (received: Received): void => {
      const body: unknown = received.message.body;
      let records: FeedbackRecord[];
      try {
        records = decodeFeedback(bodyBuffer(body) ?? (typeof body === 'string' ? body : undefined));
      } catch (err) {
        const error = new HubError('InvalidFeedback', (err as Error).message);
        node.warn(error.message);
        node.error(error, { payload: body, topic: 'feedback' });
        received.settle('reject').catch((err: unknown) => log.node('rejecting an undecodable feedback message: %s', reasonOf(err)));
        return;
      }
      if (def.batch) sendMsg(node, { payload: records, topic: 'feedback' });
      else for (const record of records) sendMsg(node, { payload: record, topic: record.deviceId });
      received.settle('complete').catch((err: unknown) => node.warn(`feedback not settled: ${asError(err).message}`));
    };

    config.connection().then(
      (made) => {
        if (closed) return;
        try {
          receiver = new HubReceiver(made, '/messages/serviceBound/feedback', {}, { credit: 10, settle: 'manual' });
        } catch (err) {
          // The connection closed under it (the last other user left at the same moment).
          status.failed(asError(err));
          return;
        }
        receiver.on('message', onMessage);
        status.watch(made, receiver);
      },
      (err: unknown) => {
        const error = asError(err);
        status.failed(error);
        node.error(error);
      },
    );

    hub.onClose(() => {
      closed = true;
      status.stop();
      void receiver?.close();
      receiver = undefined;
    });
  }

  registerNode(RED, 'iothub-feedback-in', FeedbackInNode);
}

module.exports = register;
module.exports.default = register;
