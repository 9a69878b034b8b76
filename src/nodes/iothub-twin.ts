/**
 * twin: the twins of a device (or module), or of a gateway's devices, over AMQP on the shared
 * connection. A msg with topic `get` fetches a whole twin; topic `report` (or the node's action)
 * patches reported properties with msg.payload, for msg.deviceId when the node serves several
 * devices; desired-property patches come out as they happen (topic `desired`), and after a reconnect
 * the whole twin comes out once (topic `twin`, resync true), since patches are not kept for a device
 * that was away.
 */
import type { Node, NodeAPI, NodeDef, NodeMessageInFlow } from 'node-red';
import { idText, resolveTarget, shownId, targetName, type DeviceTarget } from '../iothub/device';
import { DeviceTwin, type TwinProperties, type TwinSection } from '../iothub/device-twin';
import { HubError } from '../iothub/errors';
import type { HubConnection } from '../iothub/hub-connection';
import { redactSecrets } from '../iothub/log';
import { deviceList, twinAction } from './method-twin-fields';
import { onInput, registerNode, sendMsg, useHub, type Send } from './adapter';
import { asError } from './common';
import { LinkGroup, LinkStatusWatch, RefusalLog } from './link-status';

interface TwinDef extends NodeDef {
  hub: string;
  /** One device id, or several (comma or space separated) for a gateway; empty for a device connection. */
  deviceId?: string;
  deviceIdType?: 'str' | 'env';
  /** What a msg without topic get/report does. */
  action?: 'get' | 'report';
  /** Follow desired-property patches (on by default). */
  subscribe?: boolean;
}

type TwinMsg = NodeMessageInFlow & { topic?: string; deviceId?: unknown };

/** The twins of a node, by the id its Device setting lists ('' for a device connection's own). */
type Twins = Map<string, DeviceTwin>;

export default function register(RED: NodeAPI): void {
  function TwinNode(this: Node, def: TwinDef): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const hub = useHub(RED, node, def.hub, { roles: ['local', 'device', 'gateway'], what: 'twin', connectionStatus: false });
    if (!hub) return;
    const { config } = hub;
    const setting = def.deviceIdType === 'env' ? String(RED.util.evaluateNodeProperty(def.deviceId ?? '', 'env', node, {}) ?? '') : (def.deviceId ?? '');
    const listed = deviceList(setting);
    const follow = def.subscribe !== false;
    let twins: Twins | undefined;
    const refusals: RefusalLog[] = [];
    let closed = false;
    const status = new LinkStatusWatch(node);

    const makeOne = (connection: HubConnection, target: DeviceTarget): DeviceTwin => {
      const made = new DeviceTwin(connection, target);
      const who = { topic: '', deviceId: target.deviceId, ...(target.moduleId === undefined ? {} : { moduleId: target.moduleId }) };
      made.on('desired', (patch: TwinSection) => sendMsg(node, { ...who, topic: 'desired', payload: patch, version: patch.$version }));
      // The first is where the flow starts from (the twin as it is now); later ones follow a reconnect.
      made.on('twin', (full: TwinProperties, resync: boolean) => sendMsg(node, { ...who, topic: 'twin', payload: full, ...(resync ? { resync: true } : {}) }));
      made.on('syncFailed', (error: HubError) =>
        node.warn(`twin of ${targetName(target)}: subscribing to desired properties failed (tried again): ${error.code}: ${redactSecrets(error.message)}`),
      );
      refusals.push(
        new RefusalLog(made, {
          refused: (error) => node.warn(`twin of ${targetName(target)}: ${error.code}: ${redactSecrets(error.message)}`),
          taken: () => node.log(`twin of ${targetName(target)}: links taken again`),
        }),
      );
      // Subscribes and sends the twin as soon as the links attach, however long that takes, and again
      // after every reconnect (DeviceTwin.follow): nothing here waits on the wire.
      if (follow) made.follow();
      return made;
    };

    const make = async (): Promise<Twins> => {
      const connection = await config.connection();
      if (closed) throw new HubError('Closed', 'the node closed');
      // Every listed id is checked before any link is made: one bad id is a setting to fix, not a twin to skip.
      const targets = listed.map((id) => [id, resolveTarget(connection.identity, { deviceId: id.trim() })] as const);
      void config.devicesNamed(targets.map(([, target]) => target));
      const made: Twins = new Map();
      const group = new LinkGroup();
      for (const [id, target] of targets) {
        const twin = makeOne(connection, target);
        made.set(id, twin);
        group.add(twin);
      }
      twins = made;
      status.watch(connection, group);
      return made;
    };
    // A failure to make the twins is not kept: the next msg tries again (the connection may be fixed).
    let making: Promise<Twins> | undefined;
    const twinsNow = (): Promise<Twins> => {
      if (!making) {
        const attempt = make();
        making = attempt;
        attempt.catch(() => {
          if (making === attempt) making = undefined;
        });
      }
      return making;
    };
    twinsNow().catch((err: unknown) => {
      if (closed) return;
      const error = asError(err);
      status.failed(error);
      node.error(error, { payload: undefined, topic: setting });
    });

    /** The twin a msg is for: msg.deviceId picks one of the listed devices; one listed device is the default. */
    const twinFor = (all: Twins, msg: TwinMsg): DeviceTwin => {
      const asked = idText(msg.deviceId);
      if (asked === undefined || asked === null || asked === '') {
        if (all.size === 1) return [...all.values()][0];
        throw new HubError('MissingDeviceId', `this twin node serves ${listed.join(', ')}: set msg.deviceId to one of them`);
      }
      const twin = typeof asked === 'string' ? (all.get(asked) ?? [...all.values()].find((t) => t.target.deviceId === asked)) : undefined;
      if (!twin) {
        throw new HubError(
          'IdentityMismatch',
          `msg.deviceId ${shownId(asked)} is not a device of this twin node (${[...all.values()].map((t) => targetName(t.target)).join(', ')}); add it to its Device list`,
        );
      }
      return twin;
    };

    onInput(node, (msg: TwinMsg, send: Send, done) => {
      const action = twinAction(msg.topic, def.action);
      twinsNow()
        .then(async (all) => {
          const twin = twinFor(all, msg);
          msg.deviceId = twin.target.deviceId;
          if (twin.target.moduleId !== undefined) (msg as TwinMsg & { moduleId?: string }).moduleId = twin.target.moduleId;
          if (action === 'get') {
            msg.payload = await twin.get();
            msg.topic = 'twin';
          } else {
            const version = await twin.patchReported(msg.payload);
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

    hub.onClose(async () => {
      closed = true;
      status.stop();
      for (const r of refusals.splice(0)) r.stop();
      const closing = twins;
      twins = undefined;
      await Promise.all([...(closing?.values() ?? [])].map((t) => t.close()));
    });
  }

  registerNode(RED, 'iothub-twin', TwinNode);
}

module.exports = register;
module.exports.default = register;
