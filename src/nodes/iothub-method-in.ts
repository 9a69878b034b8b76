/**
 * method-in: receives direct-method calls for a device, a module, or (through a gateway or the local
 * simulator) a list of devices, on the shared connection. Each call is a msg with methodName, payload
 * and requestId; an iothub-method-response node answers it, as http in and http response pair. Several
 * method-in nodes may serve one device, each for its methods: they share the device's one method link
 * pair (MethodInbox), a call goes to the node that lists its method, else to one listing none, and only
 * a call no node handles is answered 404.
 */
import type { Node, NodeAPI, NodeDef } from 'node-red';
import { resolveTarget, targetName, type DeviceTarget } from '../iothub/device';
import { METHOD_NOT_HANDLED_STATUS, MethodInbox, type MethodCallFields } from '../iothub/direct-methods';
import type { HubError } from '../iothub/errors';
import { redactSecrets } from '../iothub/log';
import { deviceList } from './method-twin-fields';
import { registerNode, sendMsg, useHub } from './adapter';
import { asError } from './common';
import { LinkStatusWatch, RefusalLog } from './link-status';

interface MethodInDef extends NodeDef {
  hub: string;
  /** One device id, or several (comma or space separated) for a gateway; empty for a device connection. */
  deviceId?: string;
  deviceIdType?: 'str' | 'env';
  /** Method names this node handles (comma separated); empty means every method. */
  methods?: string;
}

/** The answer to a call for a method no node handles: the 404 an HTTP API would give. */
export const NOT_HANDLED_STATUS = METHOD_NOT_HANDLED_STATUS;

export default function register(RED: NodeAPI): void {
  function MethodInNode(this: Node, def: MethodInDef): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const hub = useHub(RED, node, def.hub, { roles: ['local', 'device', 'gateway'], what: 'method-in', connectionStatus: false });
    if (!hub) return;
    const { config } = hub;
    const handled = new Set(
      (def.methods ?? '')
        .split(',')
        .map((m) => m.trim())
        .filter((m) => m !== ''),
    );
    const setting = def.deviceIdType === 'env' ? String(RED.util.evaluateNodeProperty(def.deviceId ?? '', 'env', node, {}) ?? '') : (def.deviceId ?? '');
    let inbox: MethodInbox | undefined;
    let refusals: RefusalLog | undefined;
    let closed = false;
    const status = new LinkStatusWatch(node);

    // Only the calls routed to this node come (MethodInbox answers the rest).
    const onCall = (call: MethodCallFields): void => sendMsg(node, { ...call });

    const start = async (): Promise<void> => {
      const made = await config.connection();
      if (closed) return;
      const targets: DeviceTarget[] = deviceList(setting).map((deviceId) => resolveTarget(made.identity, { deviceId }));
      void config.devicesNamed(targets);
      const box = new MethodInbox(made, targets, { methods: handled });
      inbox = box;
      box.on('call', onCall);
      for (const { target, methods } of box.shadowed)
        node.warn(
          methods === 'all'
            ? `device ${targetName(target)}: another method-in node already takes every method; this one gets none (list its methods in each node)`
            : `device ${targetName(target)}: another method-in node already handles ${methods.join(', ')}; those calls go there, not here`,
        );
      box.on('unreadable', (target: DeviceTarget, error: HubError) => node.warn(`device ${targetName(target)}: ${error.message}`));
      refusals = new RefusalLog(box, {
        refused: (error) => node.warn(`method links: ${error.code}: ${redactSecrets(error.message)}; no method calls until the hub accepts them`),
        taken: () => node.log('receiving method calls again'),
      });
      status.watch(made, box);
    };

    start().catch((err: unknown) => {
      const error = asError(err);
      status.failed(error);
      node.error(error, { payload: undefined, topic: setting });
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

  registerNode(RED, 'iothub-method-in', MethodInNode);
}

module.exports = register;
module.exports.default = register;
