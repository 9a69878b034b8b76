/**
 * The wire vocabulary of direct methods and device twins over AMQP, shared by the client and the
 * simulator so neither can drift from the other. Each name is as the official SDKs write it; the
 * sources are listed in docs/METHODS-AND-TWINS.md.
 */

/**
 * The API version the device SDKs put in every method and twin attach (azure-iot-common
 * endpoint.js `apiVersion`, the value azure-iot-device-amqp 1.14 sends).
 */
export const DEVICE_API_VERSION = '2021-04-12';

/** Link attach properties (azure-iot-device-amqp amqp_device_method_client.js, amqp_twin_client.js). */
export const LINK_API_VERSION = 'com.microsoft:api-version';
export const LINK_CHANNEL_CORRELATION_ID = 'com.microsoft:channel-correlation-id';

/** Application property naming the method in a request (amqp_device_method_client.js `methodMessagePropertyKeys`). */
export const METHOD_NAME_PROPERTY = 'IoThub-methodname';
/** Application property holding the device's status code in its answer (same file). */
export const METHOD_STATUS_PROPERTY = 'IoThub-status';

/**
 * Largest method payload, request or answer: "The payload for method requests and responses is a JSON
 * document up to 128 KB" (Azure docs, iot-hub-devguide-direct-methods.md, "Method lifecycle").
 */
export const METHOD_PAYLOAD_MAX_BYTES = 128 * 1024;

/** Message annotations of twin requests and responses (amqp_twin_client.js `_sendTwinRequest`, `_onResponseMessage`). */
export const TWIN_OPERATION = 'operation';
export const TWIN_RESOURCE = 'resource';
export const TWIN_STATUS = 'status';
export const TWIN_VERSION = 'version';

export type TwinOperation = 'GET' | 'PATCH' | 'PUT' | 'DELETE';
/** The resource of a reported-properties patch. */
export const TWIN_REPORTED_RESOURCE = '/properties/reported';
/** The resource a PUT subscribes to (and a DELETE unsubscribes from) desired-property notifications. */
export const TWIN_DESIRED_NOTIFICATIONS_RESOURCE = '/notifications/twin/properties/desired';

/**
 * Largest twin document section, tags, desired or reported: "Each individual section of tags, desired
 * properties and reported properties is limited to 32 KB" (Azure docs, iot-hub-devguide-device-twins.md,
 * "Device twin size").
 */
export const TWIN_SECTION_MAX_BYTES = 32 * 1024;

/** A method or twin address for a device or a module (azure-iot-common endpoint.js). */
export function methodsAddress(deviceId: string, moduleId?: string): string {
  return `${identityPath(deviceId, moduleId)}/methods/devicebound`;
}

export function twinAddress(deviceId: string, moduleId?: string): string {
  return `${identityPath(deviceId, moduleId)}/twin`;
}

function identityPath(deviceId: string, moduleId?: string): string {
  const device = `/devices/${encodeURIComponent(deviceId)}`;
  return moduleId === undefined ? device : `${device}/modules/${encodeURIComponent(moduleId)}`;
}

/** Whether a value is a JSON object (not an array, not null): what a twin patch must be. */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !Buffer.isBuffer(value);
}
