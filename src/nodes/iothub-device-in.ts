/**
 * device-in: receives a device's cloud-to-device messages. In auto mode each message is completed
 * as it is emitted; in manual mode it waits for the flow to send back `settle` with its `lockToken`
 * (complete, reject or abandon), and the status counts the messages not settled yet. Link credit is
 * the prefetch setting, so a slow flow never pulls the device's whole queue into memory.
 */
import type { Node, NodeAPI, NodeDef, NodeMessageInFlow } from 'node-red';
import { C2dInbox, resolveTarget, targetName, type DeviceTarget } from '../iothub/device';
import { HubError } from '../iothub/errors';
import { log, reasonOf, redactSecrets } from '../iothub/log';
import type { Received } from '../iothub/links';
import { fromC2dMessage, type OutputMode } from '../iothub/message';
import { onInput, registerNode, sendMsg, useHub } from './adapter';
import { asError, positiveInt } from './common';
import { LinkStatusWatch, RefusalLog } from './link-status';
import { statusFor } from './status';

interface DeviceInDef extends NodeDef {
  hub: string;
  deviceId?: string;
  /** How `deviceId` is read; flows from before the field had a type have none, which means `str`. */
  deviceIdType?: 'str' | 'msg' | 'env';
  settle?: 'auto' | 'manual';
  output?: OutputMode;
  prefetch?: number | string;
}

type SettleMsg = NodeMessageInFlow & { lockToken?: unknown; settle?: unknown };

/** The device setting's type: anything but `msg` and `env` (a flow from before the type, or a typo) is `str`. */
export function deviceIdTypeOf(def: { deviceIdType?: unknown }): 'str' | 'msg' | 'env' {
  return def.deviceIdType === 'msg' || def.deviceIdType === 'env' ? def.deviceIdType : 'str';
}

const DEFAULT_PREFETCH = 10;

export default function register(RED: NodeAPI): void {
  function DeviceInNode(this: Node, def: DeviceInDef): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const hub = useHub(RED, node, def.hub, { roles: ['local', 'device', 'gateway'], what: 'device-in', connectionStatus: false });
    if (!hub) return;
    const { config } = hub;
    const manual = def.settle === 'manual';
    const output: OutputMode = def.output === 'string' || def.output === 'json' || def.output === 'buffer' ? def.output : 'auto';
    const prefetch = positiveInt(def.prefetch, DEFAULT_PREFETCH);
    const setting = (def.deviceId ?? '').trim();
    const settingType = deviceIdTypeOf(def);
    let inbox: C2dInbox | undefined;
    /** The device asked for by a msg (`msg` type): a receiver starts when a msg names it. */
    let requested: string | undefined;
    let refusals: RefusalLog | undefined;
    let startError: HubError | undefined;
    let closed = false;
    const status = new LinkStatusWatch(node, () =>
      manual && inbox && inbox.unsettled > 0
        ? { fill: 'green', shape: 'dot', text: `${inbox.unsettled} ${RED._('iothub-device-in.status.unsettled')}` }
        : statusFor('open'),
    );

    const emit = (target: DeviceTarget, received: Received): void => {
      const who = { deviceId: target.deviceId, ...(target.moduleId === undefined ? {} : { moduleId: target.moduleId }), topic: targetName(target) };
      let fields: ReturnType<typeof fromC2dMessage>;
      try {
        fields = fromC2dMessage(received.message, output);
      } catch (err) {
        // A body the output setting cannot decode: the flow gets it raw with the error, and a
        // message that can never be read is rejected rather than delivered again and again.
        const raw = { ...fromC2dMessage(received.message, 'buffer'), ...who, lockToken: received.lockToken };
        node.error(asError(err), raw);
        if (manual) inbox?.settle(received.lockToken, 'reject').catch((err: unknown) => log.node('rejecting an undecodable message: %s', reasonOf(err)));
        return;
      }
      sendMsg(node, { ...fields, ...who, lockToken: received.lockToken });
    };

    const start = async (deviceId: string): Promise<void> => {
      const made = await config.connection();
      if (closed || (settingType === 'msg' && deviceId !== requested)) return;
      const target = resolveTarget(made.identity, { deviceId });
      void config.devicesNamed([target]);
      const box = new C2dInbox(made, target, { settle: manual ? 'manual' : 'auto', prefetch });
      inbox = box;
      box.on('message', (received: Received) => emit(target, received));
      box.on('unsettled', status.updateSoon);
      refusals = new RefusalLog(box, {
        refused: (error) =>
          node.warn(`device ${targetName(target)}: ${error.code}: ${redactSecrets(error.message)}; no cloud-to-device messages until the hub accepts it`),
        taken: () => node.log(`device ${targetName(target)}: receiving cloud-to-device messages again`),
      });
      status.watch(made, box);
    };

    const begin = (deviceId: string): void => {
      startError = undefined;
      start(deviceId).catch((err: unknown) => {
        startError = asError(err);
        status.failed(startError);
        node.error(startError, { payload: undefined, topic: deviceId });
      });
    };

    if (settingType === 'env') begin(String(RED.util.evaluateNodeProperty(setting, 'env', node, {}) ?? '').trim());
    else if (settingType === 'str') begin(setting);

    /** A msg that names a device (`msg` type, no lock token): receive for that device from now on. */
    const switchTo = (msg: SettleMsg): boolean => {
      if (settingType !== 'msg' || msg.lockToken !== undefined || msg.settle !== undefined) return false;
      const named: unknown = RED.util.evaluateNodeProperty(setting, 'msg', node, msg);
      if (typeof named !== 'string' || named.trim() === '') throw new HubError('InvalidMessage', `msg.${setting} must name the device to receive for`);
      const deviceId = named.trim();
      if (deviceId === requested) return true;
      requested = deviceId;
      refusals?.stop();
      refusals = undefined;
      const previous = inbox;
      inbox = undefined;
      void (previous?.close() ?? Promise.resolve())
        .catch((err: unknown) => log.node('closing the previous device receiver: %s', reasonOf(err)))
        .then(() => begin(deviceId));
      return true;
    };

    onInput(node, (msg: SettleMsg, _send, done) => {
      try {
        if (switchTo(msg)) {
          done();
          return;
        }
      } catch (err) {
        done(asError(err));
        return;
      }
      if (!inbox) {
        done(startError ?? new HubError('MessageLockLost', 'no message with this lock token waits here: the node is not receiving yet'));
        return;
      }
      inbox.settle(msg.lockToken, msg.settle).then(
        () => done(),
        (err: unknown) => done(asError(err)),
      );
    });

    hub.onClose(() => {
      closed = true;
      status.stop();
      refusals?.stop();
      const closing = inbox;
      inbox = undefined;
      return closing?.close();
    });
  }

  registerNode(RED, 'iothub-device-in', DeviceInNode);
}

module.exports = register;
module.exports.default = register;
