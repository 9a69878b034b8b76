/**
 * The REST routes of twins and of the device registry, as azure-iothub's Registry calls them
 * (registry.js): `GET`/`PATCH /twins/{id}` and `/twins/{id}/modules/{mid}`, `PUT`/`GET`/`DELETE
 * /devices/{id}` and `/devices/{id}/modules/{mid}`, `GET /devices/{id}/modules`. The documents are TwinStore's and Registry's; this is their REST shape and the
 * registry's HTTP rules (If-Match, 409 on a second create).
 */
import { createHash } from 'node:crypto';
import { isPlainObject } from '../amqp/method-twin-wire';
import type { Registry, DeviceRecord, ModuleRecord } from './registry';
import type { RestRequest, Route } from './rest-api';
import { ServiceError } from './service-errors';
import type { TwinStore } from './twins';

export interface TwinRouteParts {
  registry: Registry;
  twins: TwinStore;
  /** Whether the device has a link open now (the twin's and the device's connectionState). */
  connected: (deviceId: string, moduleId?: string) => boolean;
}

const notFound = (deviceId: string, moduleId?: string): ServiceError =>
  moduleId === undefined
    ? new ServiceError(404, 404001, 'DeviceNotFound', `Device ${deviceId.slice(0, 128)} not registered.`)
    : new ServiceError(404, 404010, 'ModuleNotFound', `Module ${moduleId.slice(0, 128)} on device ${deviceId.slice(0, 128)} not registered.`);

function header(request: RestRequest, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * Which rights open twins. ServiceConnect is what the service SDKs' twin samples use; that RegistryRead
 * (read) and RegistryWrite (write) open them too follows the permission table of iot-hub-dev-guide-sas.md
 * as read here: UNVERIFIED, and more lenient than refusing.
 */
const TWIN_READ = ['ServiceConnect', 'RegistryRead'] as const;
const TWIN_WRITE = ['ServiceConnect', 'RegistryWrite'] as const;

export function twinRoutes({ registry, twins, connected }: TwinRouteParts): Route[] {
  const known = (deviceId: string, moduleId?: string): void => {
    const device = registry.getDevice(deviceId);
    if (!device || (moduleId !== undefined && !device.modules.has(moduleId))) throw notFound(deviceId, moduleId);
  };
  const getTwin = (request: RestRequest) => {
    const [deviceId, moduleId] = request.params;
    known(deviceId, moduleId);
    return { status: 200, body: twins.document(deviceId, moduleId, connected(deviceId, moduleId)) };
  };
  const patchTwin = (request: RestRequest) => {
    const [deviceId, moduleId] = request.params;
    known(deviceId, moduleId);
    twins.patchFromService(deviceId, moduleId, request.body, header(request, 'if-match'));
    return { status: 200, body: twins.document(deviceId, moduleId, connected(deviceId, moduleId)) };
  };
  return [
    { method: 'GET', pattern: ['twins', '*'], right: [...TWIN_READ], handle: getTwin },
    { method: 'GET', pattern: ['twins', '*', 'modules', '*'], right: [...TWIN_READ], handle: getTwin },
    { method: 'PATCH', pattern: ['twins', '*'], right: [...TWIN_WRITE], handle: patchTwin },
    { method: 'PATCH', pattern: ['twins', '*', 'modules', '*'], right: [...TWIN_WRITE], handle: patchTwin },
    ...deviceRoutes({ registry, connected }),
  ];
}

/**
 * A module as the registry API returns it ("Modules - Get Identity" in the IoT Hub REST reference:
 * moduleId, deviceId, managedBy, generationId, etag, connectionState, authentication).
 */
function moduleDocument(deviceId: string, module: ModuleRecord, connected: boolean): Record<string, unknown> {
  return {
    moduleId: module.moduleId,
    deviceId,
    managedBy: null,
    generationId: module.generationId,
    etag: etagOf(module),
    connectionState: connected ? 'Connected' : 'Disconnected',
    cloudToDeviceMessageCount: 0,
    authentication: {
      type: 'sas',
      symmetricKey: { primaryKey: module.primaryKey, secondaryKey: module.secondaryKey ?? null },
      x509Thumbprint: { primaryThumbprint: null, secondaryThumbprint: null },
    },
  };
}

type RegistryRecord = { generationId: string; primaryKey: string; secondaryKey?: string; updates?: number };

/**
 * A registry record's etag: opaque to clients (azure-iothub only sends it back in If-Match); here it
 * changes with every update, as the hub's does, so an update made on a stale read is refused. The
 * update count is not journaled: after a restart an etag moves with the keys only.
 */
function etagOf(record: RegistryRecord): string {
  const seed = `${record.generationId}/${record.primaryKey}/${record.secondaryKey ?? ''}/${record.updates ?? 0}`;
  return createHash('sha256').update(seed).digest('base64').slice(0, 12);
}

/** A stale If-Match on a registry record is 412 PreconditionFailed (412001), as for twins; `*` matches any. */
function checkIfMatch(request: RestRequest, record: RegistryRecord): void {
  const ifMatch = header(request, 'if-match');
  if (ifMatch === undefined) return;
  const wanted = ifMatch
    .trim()
    .replace(/^W\//, '')
    .replace(/^"(.*)"$/, '$1');
  if (wanted !== '*' && wanted !== etagOf(record))
    throw new ServiceError(412, 412001, 'PreconditionFailed', 'The etag in If-Match does not match: the identity changed since it was read.');
}

type Keys = ReturnType<typeof keysOf>;

/**
 * The registry's PUT of a device or module: without If-Match it creates, and one that exists is a
 * conflict (409); with If-Match it updates one that exists (a stale etag is 412) and never creates: one
 * that is not there is 404, as the C# service client's UpdateDeviceAsync reads it (DeviceNotFoundException;
 * UNVERIFIED for "*").
 */
function putIdentity<R extends RegistryRecord>(
  request: RestRequest,
  existing: R | undefined,
  how: { conflict: () => ServiceError; missing: () => ServiceError; update: (keys: Keys) => void; create: (keys: Keys) => R },
): R {
  const keys = keysOf(request.body as Record<string, unknown>);
  const updating = header(request, 'if-match') !== undefined;
  if (existing) {
    if (!updating) throw how.conflict();
    checkIfMatch(request, existing);
    how.update(keys);
    return existing;
  }
  if (updating) throw how.missing();
  try {
    return how.create(keys);
  } catch (err) {
    throw new ServiceError(400, 400004, 'ArgumentInvalid', (err as Error).message);
  }
}

/** A device as the registry API returns it (azure-iothub device.js reads these fields). */
function deviceDocument(device: DeviceRecord, connected: boolean): Record<string, unknown> {
  return {
    deviceId: device.deviceId,
    generationId: device.generationId,
    etag: etagOf(device),
    connectionState: connected ? 'Connected' : 'Disconnected',
    status: 'enabled',
    statusReason: null,
    cloudToDeviceMessageCount: 0,
    authentication: {
      type: 'sas',
      symmetricKey: { primaryKey: device.primaryKey, secondaryKey: device.secondaryKey ?? null },
      x509Thumbprint: { primaryThumbprint: null, secondaryThumbprint: null },
    },
    capabilities: { iotEdge: false },
  };
}

function keysOf(body: Record<string, unknown>): { primaryKey?: string; secondaryKey?: string } {
  const auth = body.authentication;
  const symmetric = isPlainObject(auth) && isPlainObject(auth.symmetricKey) ? auth.symmetricKey : {};
  const keys: { primaryKey?: string; secondaryKey?: string } = {};
  if (typeof symmetric.primaryKey === 'string' && symmetric.primaryKey !== '') keys.primaryKey = symmetric.primaryKey;
  if (typeof symmetric.secondaryKey === 'string' && symmetric.secondaryKey !== '') keys.secondaryKey = symmetric.secondaryKey;
  return keys;
}

/** Get Devices answers at most this many (Azure REST reference "Devices - Get Devices": top, maximum 1000). */
const DEVICE_LIST_MAX = 1000;

function deviceRoutes({ registry, connected }: Omit<TwinRouteParts, 'twins'>): Route[] {
  return [
    {
      // `GET /devices?top=N` (azure-iothub registry.js `list` sends `/devices/` without top): the
      // registry's devices, each as GET /devices/{id} returns it, keys included as the hub includes them.
      method: 'GET',
      pattern: ['devices'],
      right: 'RegistryRead',
      handle: (request) => {
        const asked = Number(request.query.get('top') ?? DEVICE_LIST_MAX);
        if (!Number.isInteger(asked) || asked < 1 || asked > DEVICE_LIST_MAX)
          throw new ServiceError(400, 400004, 'ArgumentInvalid', `top must be a whole number from 1 to ${DEVICE_LIST_MAX}.`);
        const devices = [...registry.devices.values()].slice(0, asked).map((device) => deviceDocument(device, connected(device.deviceId)));
        return { status: 200, body: devices };
      },
    },
    {
      method: 'GET',
      pattern: ['devices', '*'],
      right: 'RegistryRead',
      handle: (request) => {
        const [deviceId] = request.params;
        const device = registry.getDevice(deviceId);
        if (!device) throw notFound(deviceId);
        return { status: 200, body: deviceDocument(device, connected(deviceId)) };
      },
    },
    {
      method: 'PUT',
      pattern: ['devices', '*'],
      right: 'RegistryWrite',
      handle: (request) => {
        const [deviceId] = request.params;
        const body = request.body;
        if (!isPlainObject(body)) throw new ServiceError(400, 400006, 'IotHubFormatError', 'The device must be a JSON object.');
        if (body.deviceId !== undefined && body.deviceId !== deviceId)
          throw new ServiceError(400, 400004, 'ArgumentInvalid', 'The deviceId in the body does not match the path.');
        // Without If-Match a PUT creates, and a second create is 409 DeviceAlreadyExists (409001);
        // with If-Match it updates (registry.js `create` sends none, `update` sends "*").
        const device = putIdentity(request, registry.getDevice(deviceId), {
          conflict: () => new ServiceError(409, 409001, 'DeviceAlreadyExists', `A device with ID '${deviceId.slice(0, 128)}' is already registered.`),
          missing: () => notFound(deviceId),
          update: (keys) => registry.updateKeys(deviceId, undefined, keys),
          create: (keys) => registry.addDevice(deviceId, keys),
        });
        return { status: 200, body: deviceDocument(device, connected(deviceId)) };
      },
    },
    {
      method: 'DELETE',
      pattern: ['devices', '*'],
      right: 'RegistryWrite',
      handle: (request) => {
        const [deviceId] = request.params;
        const device = registry.getDevice(deviceId);
        if (!device) throw notFound(deviceId);
        checkIfMatch(request, device);
        // Its twin goes with it (the hub's removal listeners, hub.ts).
        registry.removeDevice(deviceId);
        return { status: 204 };
      },
    },
    ...moduleRoutes({ registry, connected }),
  ];
}

/**
 * The module identities of a device, as azure-iothub's Registry calls them (registry.js `addModule`,
 * `getModulesOnDevice`, `getModule`, `updateModule`, `removeModule`): `GET /devices/{id}/modules` and
 * `PUT`/`GET`/`DELETE /devices/{id}/modules/{mid}`, with the device registry's rights and If-Match rules.
 */
function moduleRoutes({ registry, connected }: Omit<TwinRouteParts, 'twins'>): Route[] {
  const deviceOf = (deviceId: string): DeviceRecord => {
    const device = registry.getDevice(deviceId);
    if (!device) throw notFound(deviceId);
    return device;
  };
  const moduleOf = (deviceId: string, moduleId: string): ModuleRecord => {
    const module = deviceOf(deviceId).modules.get(moduleId);
    if (!module) throw notFound(deviceId, moduleId);
    return module;
  };
  return [
    {
      method: 'GET',
      pattern: ['devices', '*', 'modules'],
      right: 'RegistryRead',
      handle: (request) => {
        const [deviceId] = request.params;
        const modules = [...deviceOf(deviceId).modules.values()].map((m) => moduleDocument(deviceId, m, connected(deviceId, m.moduleId)));
        return { status: 200, body: modules };
      },
    },
    {
      method: 'GET',
      pattern: ['devices', '*', 'modules', '*'],
      right: 'RegistryRead',
      handle: (request) => {
        const [deviceId, moduleId] = request.params;
        return { status: 200, body: moduleDocument(deviceId, moduleOf(deviceId, moduleId), connected(deviceId, moduleId)) };
      },
    },
    {
      method: 'PUT',
      pattern: ['devices', '*', 'modules', '*'],
      right: 'RegistryWrite',
      handle: (request) => {
        const [deviceId, moduleId] = request.params;
        const body = request.body;
        if (!isPlainObject(body)) throw new ServiceError(400, 400006, 'IotHubFormatError', 'The module must be a JSON object.');
        if ((body.deviceId !== undefined && body.deviceId !== deviceId) || (body.moduleId !== undefined && body.moduleId !== moduleId))
          throw new ServiceError(400, 400004, 'ArgumentInvalid', 'The deviceId or moduleId in the body does not match the path.');
        // A module is made on a device that exists: a missing one is 404001 DeviceNotFound.
        const device = deviceOf(deviceId);
        const module = putIdentity(request, device.modules.get(moduleId), {
          // "409301 ModuleAlreadyExistsOnDevice: The specified module already exists on the device" (troubleshoot-error-codes.md).
          conflict: () =>
            new ServiceError(
              409,
              409301,
              'ModuleAlreadyExistsOnDevice',
              `Device ${deviceId.slice(0, 128)} already contains a module with ID '${moduleId.slice(0, 128)}'.`,
            ),
          missing: () => notFound(deviceId, moduleId),
          update: (keys) => registry.updateKeys(deviceId, moduleId, keys),
          create: (keys) => registry.addModule(deviceId, moduleId, keys),
        });
        return { status: 200, body: moduleDocument(deviceId, module, connected(deviceId, moduleId)) };
      },
    },
    {
      method: 'DELETE',
      pattern: ['devices', '*', 'modules', '*'],
      right: 'RegistryWrite',
      handle: (request) => {
        const [deviceId, moduleId] = request.params;
        checkIfMatch(request, moduleOf(deviceId, moduleId));
        // Its twin and links go with it (the hub's removal listeners, hub.ts).
        registry.removeModule(deviceId, moduleId);
        return { status: 204 };
      },
    },
  ];
}
