/**
 * twin: a device's (or module's) twin over AMQP on the shared connection. A msg with topic `get`
 * fetches the whole twin; topic `report` (or the node's action) patches reported properties with
 * msg.payload; desired-property patches come out as they happen (topic `desired`), and after a
 * reconnect the whole twin comes out once (topic `twin`, resync true), since patches are not kept for
 * a device that was away.
 */
import type { Node, NodeAPI, NodeDef, NodeMessageInFlow } from 'node-red';
import { resolveTarget, targetName } from '../iothub/device';
import { DeviceTwin, type TwinProperties, type TwinSection } from '../iothub/device-twin';
import { HubError } from '../iothub/errors';
import { redactSecrets } from '../iothub/log';
import { twinAction } from './method-twin-fields';
import { onInput, registerNode, sendMsg, useHub, type Send } from './adapter';
import { asError } from './common';
import { LinkStatusWatch, RefusalLog } from './link-status';

interface TwinDef extends NodeDef {
  hub: string;
  deviceId?: string;
  deviceIdType?: 'str' | 'env';
  /** What a msg without topic get/report does. */
  action?: 'get' | 'report';
  /** Follow desired-property patches (on by default). */
  subscribe?: boolean;
}

type TwinMsg = NodeMessageInFlow & { topic?: string };

export default function register(RED: NodeAPI): void {
  function TwinNode(this: Node, def: TwinDef): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const hub = useHub(RED, node, def.hub, { roles: ['local', 'device', 'gateway'], what: 'twin', connectionStatus: false });
    if (!hub) return;
    const { config } = hub;
    const setting = def.deviceIdType === 'env' ? String(RED.util.evaluateNodeProperty(def.deviceId ?? '', 'env', node, {}) ?? '') : (def.deviceId ?? '');
    const follow = def.subscribe !== false;
    let twin: DeviceTwin | undefined;
    let refusals: RefusalLog | undefined;
    let closed = false;
    const status = new LinkStatusWatch(node);
    const make = async (): Promise<DeviceTwin> => {
      const connection = await config.connection();
      if (closed) throw new HubError('Closed', 'the node closed');
      const target = resolveTarget(connection.identity, { deviceId: setting.trim() });
      const made = new DeviceTwin(connection, target);
      twin = made;
      const who = { topic: '', deviceId: target.deviceId, ...(target.moduleId === undefined ? {} : { moduleId: target.moduleId }) };
      made.on('desired', (patch: TwinSection) => sendMsg(node, { ...who, topic: 'desired', payload: patch, version: patch.$version }));
      // The first is where the flow starts from (the twin as it is now); later ones follow a reconnect.
      made.on('twin', (full: TwinProperties, resync: boolean) => sendMsg(node, { ...who, topic: 'twin', payload: full, ...(resync ? { resync: true } : {}) }));
      made.on('syncFailed', (error: HubError) =>
        node.warn(`twin of ${targetName(target)}: subscribing to desired properties failed (tried again): ${error.code}: ${redactSecrets(error.message)}`),
      );
      refusals = new RefusalLog(made, {
        refused: (error) => node.warn(`twin of ${targetName(target)}: ${error.code}: ${redactSecrets(error.message)}`),
        taken: () => node.log(`twin of ${targetName(target)}: links taken again`),
      });
      status.watch(connection, made);
      // Subscribes and sends the twin as soon as the links attach, however long that takes, and again
      // after every reconnect (DeviceTwin.follow): nothing here waits on the wire.
      if (follow) made.follow();
      return made;
    };
    // A failure to make the twin is not kept: the next msg tries again (the connection may be fixed).
    let making: Promise<DeviceTwin> | undefined;
    const twinNow = (): Promise<DeviceTwin> => {
      if (!making) {
        const attempt = make();
        making = attempt;
        attempt.catch(() => {
          if (making === attempt) making = undefined;
        });
      }
      return making;
    };
    twinNow().catch((err: unknown) => {
      if (closed) return;
      const error = asError(err);
      status.failed(error);
      node.error(error, { payload: undefined, topic: setting });
    });

    onInput(node, (msg: TwinMsg, send: Send, done) => {
      const action = twinAction(msg.topic, def.action);
      twinNow()
        .then(async (t) => {
          if (action === 'get') {
            msg.payload = await t.get();
            msg.topic = 'twin';
          } else {
            const version = await t.patchReported(msg.payload);
            (msg as TwinMsg & { version?: number }).version = version;
          }
          status.outcome(undefined);
          send(msg);
          done();
        })
        .catch((err: unknown) => {
          const error = asError(err);
          status.outcome(error);
          done(error);
        });
    });

    hub.onClose(() => {
      closed = true;
      status.stop();
      refusals?.stop();
      const closing = twin;
      twin = undefined;
      return closing?.close();
    });
  }

  registerNode(RED, 'iothub-twin', TwinNode);
}

module.exports = register;
module.exports.default = register;
