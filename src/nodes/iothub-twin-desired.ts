/**
 * twin-desired: the service side of a device's twin through IoT Hub's REST API: reads the twin, or
 * patches its desired properties with msg.payload (with msg.etag, only if the twin has not changed
 * since; a changed one fails with PreconditionFailed, 412). The twin comes out as msg.payload
 * ({ desired, reported, tags }) with msg.etag and msg.version.
 */
import type { Node, NodeAPI, NodeDef, NodeMessageInFlow } from 'node-red';
import { ServiceApi } from '../iothub/service-api';
import { desiredAction } from './method-twin-fields';
import { onInput, registerNode, useHub, type Send } from './adapter';
import { asError } from './common';
import { errorStatus, statusFor } from './status';

interface TwinDesiredDef extends NodeDef {
  hub: string;
  deviceId?: string;
  deviceIdType?: 'str' | 'msg' | 'env';
  /** What a msg without topic get/update does. */
  action?: 'get' | 'update';
}

type DesiredMsg = NodeMessageInFlow & { deviceId?: unknown; moduleId?: unknown; etag?: unknown; version?: number };

export default function register(RED: NodeAPI): void {
  function TwinDesiredNode(this: Node, def: TwinDesiredDef): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const hub = useHub(RED, node, def.hub, { roles: ['local', 'service', 'gateway'], what: 'twin-desired', connectionStatus: false });
    if (!hub) return;
    const { config } = hub;
    let closed = false;
    // Closing the flow abandons the REST calls still waiting: each msg then finishes with done(Closed)
    // at once instead of when the hub answers or the REST timeout ends.
    const aborter = new AbortController();

    onInput(node, (msg: DesiredMsg, send: Send, done) => {
      const deviceId =
        msg.deviceId !== undefined && msg.deviceId !== ''
          ? msg.deviceId
          : RED.util.evaluateNodeProperty(def.deviceId ?? '', def.deviceIdType ?? 'str', node, msg);
      const action = desiredAction(msg.topic, def.action);
      const target = { deviceId, moduleId: msg.moduleId };
      config
        .serviceEndpoint()
        .then((endpoint) => {
          const api = new ServiceApi(endpoint, { signal: aborter.signal });
          return action === 'get' ? api.getTwin(target) : api.updateDesired(target, msg.payload, typeof msg.etag === 'string' ? msg.etag : undefined);
        })
        .then(
          (twin) => {
            if (!closed) node.status(statusFor('open'));
            msg.payload = { desired: twin.desired, reported: twin.reported, tags: twin.tags };
            msg.etag = twin.etag;
            if (twin.version !== undefined) msg.version = twin.version;
            send(msg);
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
      aborter.abort();
    });
  }

  registerNode(RED, 'iothub-twin-desired', TwinDesiredNode);
}

module.exports = register;
module.exports.default = register;
