/**
 * c2d-send: sends each msg as a cloud-to-device message. The msg goes on (with `messageId` filled in)
 * when the hub accepts it; failures reach Catch nodes with a code. Sends are pipelined; while the
 * connection is down they wait, up to `maxPending`.
 */
import type { Node, NodeAPI, NodeDef, NodeMessageInFlow } from 'node-red';
import { deviceAddress, namedTarget } from '../iothub/device';
import { HubSender } from '../iothub/links';
import { toAmqpMessage } from '../iothub/message';
import { onInput, registerNode, useHub } from './adapter';
import { asError, PayloadWarning, positiveInt } from './common';
import { LinkStatusWatch } from './link-status';
import { log, reasonOf } from '../iothub/log';

interface C2dSendDef extends NodeDef {
  hub: string;
  deviceId?: string;
  deviceIdType?: 'str' | 'msg' | 'env';
  ack?: string;
  ttl?: number | string;
  maxPending?: number | string;
}

type C2dMsg = NodeMessageInFlow & Record<string, unknown>;

export default function register(RED: NodeAPI): void {
  function C2dSendNode(this: Node, def: C2dSendDef): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const hub = useHub(RED, node, def.hub, { roles: ['local', 'service', 'gateway'], what: 'c2d-send', connectionStatus: false });
    if (!hub) return;
    const { config } = hub;
    const maxPending = positiveInt(def.maxPending, 1000);
    const defaultTtl = Number(def.ttl) > 0 ? Number(def.ttl) : undefined;
    let sender: Promise<HubSender> | undefined;
    /** The sender once made: msgs then go straight to it, not through a promise each. */
    let made: HubSender | undefined;
    // The link's state, not only the connection's: a gateway policy (DeviceConnect) opens the
    // connection fine, and then the hub refuses the C2D link as Unauthorized.
    const status = new LinkStatusWatch(node);
    const emptyPayload = new PayloadWarning(node);

    const senderFor = (): Promise<HubSender> => {
      if (!sender) {
        const making = config.connection().then((c) => new HubSender(c, '/messages/devicebound', {}, { maxPending, errorContext: 'service' }));
        sender = making;
        making.then(
          (s) => {
            if (sender !== making) return;
            made = s;
            status.watch(s.connection, s);
          },
          (err: unknown) => {
            if (sender !== making) return;
            sender = undefined;
            status.failed(asError(err));
          },
        );
      }
      return sender;
    };

    // Attached at deploy, so the status tells at once whether the hub takes this node's messages.
    senderFor().catch((err: unknown) => log.node('c2d-send could not make its sender (the status says why): %s', reasonOf(err)));

    const deviceIdFor = (msg: C2dMsg): unknown => {
      if (msg.deviceId !== undefined && msg.deviceId !== null && msg.deviceId !== '') return msg.deviceId;
      const setting = def.deviceId ?? '';
      if (!setting) return undefined;
      if (def.deviceIdType === 'msg') return RED.util.getMessageProperty(msg, setting);
      if (def.deviceIdType === 'env') return RED.util.evaluateNodeProperty(setting, 'env', node, msg);
      return setting;
    };

    onInput(node, (msg: C2dMsg, send, done) => {
      let outgoing: ReturnType<typeof toAmqpMessage>;
      try {
        const target = namedTarget({ deviceId: deviceIdFor(msg), moduleId: msg.moduleId });
        outgoing = toAmqpMessage({ ...msg, ack: msg.ack ?? def.ack, ttl: msg.ttl ?? defaultTtl }, 'c2d');
        // The hub routes a C2D message by its `to`: the device's own C2D address.
        outgoing.message.to = deviceAddress(target, 'devicebound');
      } catch (err) {
        const error = asError(err);
        status.outcome(error);
        done(error);
        return;
      }
      emptyPayload.check(msg.payload);
      msg.messageId = outgoing.messageId;
      const accepted = (): void => {
        status.outcome(undefined);
        send(msg);
        done();
      };
      const failed = (err: unknown): void => {
        const error = asError(err);
        status.outcome(error);
        done(error);
      };
      const deliver = (s: HubSender): Promise<void> => s.send(outgoing.message, outgoing.expiresAt === undefined ? {} : { expiresAt: outgoing.expiresAt });
      if (made) deliver(made).then(accepted, failed);
      else senderFor().then(deliver).then(accepted, failed);
    });

    hub.onClose(() => {
      status.stop();
      const closing = sender;
      sender = undefined;
      made = undefined;
      void closing?.then((s) => s.close()).catch((err: unknown) => log.node('closing the c2d-send sender: %s', reasonOf(err)));
    });
  }

  registerNode(RED, 'iothub-c2d-send', C2dSendNode);
}

module.exports = register;
module.exports.default = register;
