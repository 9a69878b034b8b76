/**
 * device-out: sends each msg as device telemetry (device-to-cloud). With a device or module identity
 * it speaks as that identity; with a gateway identity (or the local simulator) msg.deviceId or the
 * node's Device setting picks the device, and every device shares the one connection. The msg goes on
 * (with `messageId` filled in) when the hub accepts it; while the connection is down messages wait, in
 * order per device, up to `maxPending`.
 */
import type { Node, NodeAPI, NodeDef, NodeMessageInFlow } from 'node-red';
import { DeviceSenders, targetName, type TargetRequest } from '../iothub/device';
import { log, reasonOf, redactSecrets } from '../iothub/log';
import { toAmqpMessage } from '../iothub/message';
import { onInput, registerNode, useHub } from './adapter';
import { asError, positiveInt, PayloadWarning } from './common';
import { LinkStatusWatch } from './link-status';

interface DeviceOutDef extends NodeDef {
  hub: string;
  deviceId?: string;
  deviceIdType?: 'str' | 'msg' | 'env';
  maxPending?: number | string;
}

type DeviceMsg = NodeMessageInFlow & Record<string, unknown>;

const DEFAULT_MAX_PENDING = 1000;

function given(value: unknown): boolean {
  return value !== undefined && value !== null && value !== '';
}

export default function register(RED: NodeAPI): void {
  function DeviceOutNode(this: Node, def: DeviceOutDef): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const hub = useHub(RED, node, def.hub, { roles: ['local', 'device', 'gateway'], what: 'device-out', connectionStatus: false });
    if (!hub) return;
    const { config } = hub;
    // The connection being open says nothing about whether the hub takes this node's messages (a
    // policy without DeviceConnect, a device string for another device): the latest outcome is shown too.
    const status = new LinkStatusWatch(node);
    const emptyPayload = new PayloadWarning(node);
    config.connection().then(
      (made) => status.watch(made),
      (err: unknown) => status.failed(asError(err)),
    );
    const maxPending = positiveInt(def.maxPending, DEFAULT_MAX_PENDING);
    const setting = (def.deviceId ?? '').trim();
    const settingType = def.deviceIdType === 'msg' || def.deviceIdType === 'env' ? def.deviceIdType : 'str';
    let senders: DeviceSenders | undefined;

    // Each device's messages fail with their error; the log says once that the hub refuses the device.
    const watchSenders = (made: DeviceSenders): DeviceSenders => {
      made.on('gaveUp', (target, error) =>
        node.warn(`device ${targetName(target)}: ${error.code}: ${redactSecrets(error.message)}; its messages fail until the hub accepts it`),
      );
      made.on('resumed', (target) => node.log(`device ${targetName(target)}: the hub accepts its messages again`));
      return made;
    };

    const request = (msg: DeviceMsg): TargetRequest => {
      let deviceId: unknown = msg.deviceId;
      if (!given(deviceId) && setting) deviceId = RED.util.evaluateNodeProperty(setting, settingType, node, msg);
      return { deviceId, moduleId: msg.moduleId };
    };

    onInput(node, (msg: DeviceMsg, send, done) => {
      let requested: TargetRequest;
      let outgoing: ReturnType<typeof toAmqpMessage>;
      try {
        requested = request(msg);
        outgoing = toAmqpMessage(msg, 'd2c');
      } catch (err) {
        const error = asError(err);
        status.outcome(error);
        done(error);
        return;
      }
      emptyPayload.check(msg.payload);
      msg.messageId = outgoing.messageId;
      senders ??= watchSenders(new DeviceSenders(config.connection(), { maxPending }));
      senders.send(requested, outgoing.message, outgoing.expiresAt === undefined ? {} : { expiresAt: outgoing.expiresAt }).then(
        () => {
          status.outcome(undefined);
          send(msg);
          done();
        },
        (err: unknown) => {
          const error = asError(err);
          status.outcome(error);
          done(error);
        },
      );
    });

    hub.onClose(() => {
      status.stop();
      const closing = senders;
      senders = undefined;
      void closing?.close().catch((err: unknown) => log.node('closing device-out senders: %s', reasonOf(err)));
    });
  }

  registerNode(RED, 'iothub-device-out', DeviceOutNode);
}

module.exports = register;
module.exports.default = register;
