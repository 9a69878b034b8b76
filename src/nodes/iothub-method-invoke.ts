/**
 * method-invoke: calls a direct method on a device (or module) through IoT Hub's service REST API and
 * sends the device's answer on: msg.payload its payload, msg.statusCode its status. A device that is
 * offline (DeviceNotOnline, 404103) or does not answer in time (GatewayTimeout, 504101) fails the msg
 * for Catch nodes with the hub's code; IoT Hub's six-digit one is in msg.error.message.
 */
import type { Node, NodeAPI, NodeDef, NodeMessageInFlow } from 'node-red';
import { ServiceApi } from '../iothub/service-api';
import { onInput, registerNode, useHub, type Send } from './adapter';
import { asError, positiveInt } from './common';
import { errorStatus } from './status';

interface MethodInvokeDef extends NodeDef {
  hub: string;
  deviceId?: string;
  deviceIdType?: 'str' | 'msg' | 'env';
  methodName?: string;
  /** Seconds the device has to answer (IoT Hub: 5 to 300, 30 by default). */
  responseTimeout?: number | string;
  /** Seconds to wait for an offline device to connect (0 to 300, 0 by default). */
  connectTimeout?: number | string;
}

type InvokeMsg = NodeMessageInFlow & {
  deviceId?: unknown;
  moduleId?: unknown;
  methodName?: unknown;
  responseTimeoutInSeconds?: unknown;
  connectTimeoutInSeconds?: unknown;
  statusCode?: number;
};

const seconds = (value: unknown): number | undefined => (typeof value === 'number' && Number.isInteger(value) && value >= 0 ? value : undefined);

export default function register(RED: NodeAPI): void {
  function MethodInvokeNode(this: Node, def: MethodInvokeDef): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const hub = useHub(RED, node, def.hub, { roles: ['local', 'service', 'gateway'], what: 'method-invoke', connectionStatus: false });
    if (!hub) return;
    const { config } = hub;
    const responseTimeout = positiveInt(def.responseTimeout, 30);
    const connectTimeout = def.connectTimeout === undefined || def.connectTimeout === '' ? 0 : Number(def.connectTimeout) || 0;
    let pending = 0;
    let closed = false;
    // Closing the flow abandons the REST calls still waiting: each msg then finishes with done(Closed)
    // at once instead of after the hub's answer (a method call can take up to 600 s).
    const aborter = new AbortController();
    const show = (): void => {
      if (!closed) node.status(pending > 0 ? { fill: 'blue', shape: 'dot', text: `${pending}` } : {});
    };

    onInput(node, (msg: InvokeMsg, send: Send, done) => {
      const deviceId =
        msg.deviceId !== undefined && msg.deviceId !== ''
          ? msg.deviceId
          : RED.util.evaluateNodeProperty(def.deviceId ?? '', def.deviceIdType ?? 'str', node, msg);
      const methodName = typeof msg.methodName === 'string' && msg.methodName !== '' ? msg.methodName : (def.methodName ?? '');
      pending++;
      show();
      config
        .serviceEndpoint()
        .then((endpoint) =>
          new ServiceApi(endpoint, { signal: aborter.signal }).invokeMethod(
            { deviceId, moduleId: msg.moduleId },
            {
              methodName,
              payload: msg.payload,
              responseTimeoutInSeconds: seconds(msg.responseTimeoutInSeconds) ?? responseTimeout,
              connectTimeoutInSeconds: seconds(msg.connectTimeoutInSeconds) ?? connectTimeout,
            },
          ),
        )
        .then(
          (result) => {
            pending--;
            show();
            msg.payload = result.payload;
            msg.statusCode = result.status;
            msg.methodName = methodName;
            send(msg);
            done();
          },
          (err: unknown) => {
            pending--;
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

  registerNode(RED, 'iothub-method-invoke', MethodInvokeNode);
}

module.exports = register;
module.exports.default = register;
