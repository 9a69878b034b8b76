/**
 * The REST routes that invoke a direct method on a device or a module:
 * `POST /twins/{id}/methods` and `POST /twins/{id}/modules/{mid}/methods` (azure-iothub
 * device_method.js `invokeOn`, `invokeOnModule`; Azure docs, iot-hub-devguide-direct-methods.md
 * "Invoke a direct method from a back-end app"). The body and its bounds are read here; the call itself
 * is DirectMethods'.
 */
import { isPlainObject, METHOD_PAYLOAD_MAX_BYTES } from '../amqp/method-twin-wire';
import type { DirectMethods, MethodCall } from './direct-methods';
import type { Registry } from './registry';
import type { RestRequest, RestResponse, Route } from './rest-api';
import { ServiceError } from './service-errors';

/**
 * Timeout bounds: responseTimeoutInSeconds from 5 to 300, default 30; connectTimeoutInSeconds from 0 to
 * 300, default 0 (iot-hub-devguide-direct-methods.md, "Method invocation"). Whether the hub refuses or
 * clamps a value outside them is UNVERIFIED; it is refused here with 400004 ArgumentInvalid.
 */
const RESPONSE_TIMEOUT = { min: 5, max: 300, fallback: 30 };
const CONNECT_TIMEOUT = { min: 0, max: 300, fallback: 0 };

const invalid = (message: string): ServiceError => new ServiceError(400, 400004, 'ArgumentInvalid', message);

export function methodRoutes(methods: DirectMethods, registry: Registry): Route[] {
  const handle = async (request: RestRequest): Promise<RestResponse> => {
    const [deviceId, moduleId] = request.params;
    const device = registry.getDevice(deviceId);
    if (!device) throw new ServiceError(404, 404001, 'DeviceNotFound', `Device ${deviceId.slice(0, 128)} not registered.`);
    if (moduleId !== undefined && !device.modules.has(moduleId)) {
      throw new ServiceError(404, 404010, 'ModuleNotFound', `Module ${moduleId.slice(0, 128)} on device ${deviceId.slice(0, 128)} not registered.`);
    }
    const result = await methods.invoke(deviceId, moduleId, readCall(request.body));
    return { status: 200, body: result };
  };
  return [
    { method: 'POST', pattern: ['twins', '*', 'methods'], right: 'ServiceConnect', handle },
    { method: 'POST', pattern: ['twins', '*', 'modules', '*', 'methods'], right: 'ServiceConnect', handle },
  ];
}

function readCall(body: unknown): MethodCall {
  if (!isPlainObject(body)) throw invalid('The request body must be a JSON object with methodName.');
  const { methodName, payload } = body;
  if (typeof methodName !== 'string' || methodName.trim() === '') throw invalid('methodName must be a non-empty string.');
  const size = Buffer.byteLength(JSON.stringify(payload ?? null));
  if (size > METHOD_PAYLOAD_MAX_BYTES) {
    // 413001 MessageTooLarge (IotHubServiceErrorCode.cs) for a payload past the 128 KB method limit.
    throw new ServiceError(413, 413001, 'MessageTooLarge', `The method payload is ${size} bytes; at most ${METHOD_PAYLOAD_MAX_BYTES} are allowed.`);
  }
  return {
    methodName,
    payload: payload ?? null,
    responseTimeoutInSeconds: seconds(body.responseTimeoutInSeconds, 'responseTimeoutInSeconds', RESPONSE_TIMEOUT),
    connectTimeoutInSeconds: seconds(body.connectTimeoutInSeconds, 'connectTimeoutInSeconds', CONNECT_TIMEOUT),
  };
}

function seconds(value: unknown, name: string, bounds: { min: number; max: number; fallback: number }): number {
  if (value === undefined || value === null) return bounds.fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < bounds.min || value > bounds.max) {
    throw invalid(`${name} must be a whole number of seconds from ${bounds.min} to ${bounds.max}.`);
  }
  return value;
}
