/**
 * Device and module twins, hub side: the documents (tags, desired and reported properties with their
 * versions, the etag), the merge rules of a patch, and the desired-property notifications to the
 * devices that subscribed. Served to devices over their twin links (twin-links.ts) and to services
 * over REST (twin-routes.ts). Rules: Azure docs iot-hub-devguide-device-twins.md unless said otherwise.
 */
import { EventEmitter } from 'node:events';
import { isPlainObject, TWIN_SECTION_MAX_BYTES } from '../amqp/method-twin-wire';
import { ServiceError } from './service-errors';

export type Json = Record<string, unknown>;

/** A twin as the store keeps it (`--location`): everything a restart must give back, versions included. */
export interface TwinState {
  deviceId: string;
  moduleId?: string;
  tags: Json;
  desired: Json;
  reported: Json;
  desiredVersion: number;
  reportedVersion: number;
  /** The twin's own version: every change to any part counts ("version": iot-hub-devguide-device-twins.md). */
  version: number;
}

export const twinKey = (deviceId: string, moduleId?: string): string => (moduleId === undefined ? deviceId : `${deviceId}/${moduleId}`);

/**
 * Depth limit of twin JSON objects: "All JSON objects in device twin tags, desired, and reported
 * properties can have a maximum depth of 10" (iot-hub-devguide-device-twins.md, "Tags and properties format").
 */
const MAX_DEPTH = 10;

export interface TwinStoreEvents {
  /** A desired-property patch was applied: the patch as devices receive it (with $version). */
  desired: [key: string, patch: Json];
}

/** Hears every change to a twin's contents (persistence.ts journals them). */
export interface TwinObserver {
  changed(twin: Readonly<TwinState>): void;
}

export class TwinStore extends EventEmitter<TwinStoreEvents> {
  private readonly twins = new Map<string, TwinState>();
  observer: TwinObserver | undefined;

  /** A twin read back from the store at start (persistence.ts restores only those of registered identities). */
  restore(twin: TwinState): void {
    this.twins.set(twinKey(twin.deviceId, twin.moduleId), structuredClone(twin));
  }

  /** Every twin that was ever changed or read, as it is now. */
  snapshot(): TwinState[] {
    return [...this.twins.values()].map((t) => structuredClone(t));
  }

  private state(deviceId: string, moduleId?: string): TwinState {
    const key = twinKey(deviceId, moduleId);
    let twin = this.twins.get(key);
    if (!twin) {
      // A new twin starts at version 1 with empty sections at $version 1 (as a newly created device's twin reads).
      twin = { deviceId, tags: {}, desired: {}, reported: {}, desiredVersion: 1, reportedVersion: 1, version: 1 };
      if (moduleId !== undefined) twin.moduleId = moduleId;
      this.twins.set(key, twin);
    }
    return twin;
  }

  /** Drops a device's twins (its modules' too), or with a module id that module's twin only. */
  remove(deviceId: string, moduleId?: string): void {
    for (const [key, twin] of this.twins) {
      if (twin.deviceId === deviceId && (moduleId === undefined || twin.moduleId === moduleId)) this.twins.delete(key);
    }
  }

  /**
   * The etag of a twin: IoT Hub's are opaque quoted strings (azure-iothub twin.js sends them back in
   * If-Match, quoted by registry.js `_ensureQuoted`); here the base64 of the twin version, as the hub's
   * look ("AAAAAAAAAAE=").
   */
  etag(deviceId: string, moduleId?: string): string {
    const version = this.state(deviceId, moduleId).version;
    const bytes = Buffer.alloc(8);
    bytes.writeBigUInt64BE(BigInt(version));
    return bytes.toString('base64');
  }

  /** The properties as a device gets them over AMQP: `{ desired, reported }`, each with its $version (amqp_twin_client.js, twin.js `get`). */
  properties(deviceId: string, moduleId?: string): Json {
    const twin = this.state(deviceId, moduleId);
    return {
      desired: { ...twin.desired, $version: twin.desiredVersion },
      reported: { ...twin.reported, $version: twin.reportedVersion },
    };
  }

  /** The whole twin as the REST API returns it (GET /twins/{id}; azure-iothub twin.js reads these fields). */
  document(deviceId: string, moduleId: string | undefined, connected: boolean): Json {
    const twin = this.state(deviceId, moduleId);
    return {
      deviceId,
      ...(moduleId === undefined ? {} : { moduleId }),
      etag: this.etag(deviceId, moduleId),
      version: twin.version,
      status: 'enabled',
      connectionState: connected ? 'Connected' : 'Disconnected',
      tags: { ...twin.tags },
      properties: this.properties(deviceId, moduleId),
    };
  }

  /** The reported version after a device's patch (AMQP PATCH /properties/reported). */
  patchReported(deviceId: string, moduleId: string | undefined, patch: unknown): number {
    const twin = this.state(deviceId, moduleId);
    const merged = mergedSection(twin.reported, patch, 'reported properties');
    twin.reported = merged;
    twin.reportedVersion++;
    twin.version++;
    this.observer?.changed(twin);
    return twin.reportedVersion;
  }

  /**
   * A service's patch (REST PATCH /twins/{id}): `{ tags?, properties: { desired? } }`, with If-Match.
   * "If-Match" mismatch is 412 PreconditionFailed (412001, IotHubServiceErrorCode.cs); a `*` matches any.
   */
  patchFromService(deviceId: string, moduleId: string | undefined, body: unknown, ifMatch: string | undefined): void {
    this.checkEtag(deviceId, moduleId, ifMatch);
    if (!isPlainObject(body)) throw formatError('The twin patch must be a JSON object.');
    const twin = this.state(deviceId, moduleId);
    const properties = body.properties;
    if (properties !== undefined && !isPlainObject(properties)) throw formatError('properties must be a JSON object.');
    if (properties && 'reported' in properties) {
      // "The solution back end ... Can't write reported properties" (iot-hub-devguide-device-twins.md).
      throw new ServiceError(400, 400004, 'ArgumentInvalid', 'Reported properties are written by the device only.');
    }
    const desiredPatch = properties?.desired;
    const tags = body.tags === undefined ? undefined : mergedSection(twin.tags, body.tags, 'tags');
    const desired = desiredPatch === undefined ? undefined : mergedSection(twin.desired, desiredPatch, 'desired properties');
    if (tags) twin.tags = tags;
    if (desired) {
      twin.desired = desired;
      twin.desiredVersion++;
    }
    if (tags || desired) {
      twin.version++;
      this.observer?.changed(twin);
    }
    if (desired) this.emit('desired', twinKey(deviceId, moduleId), { ...(desiredPatch as Json), $version: twin.desiredVersion });
  }

  private checkEtag(deviceId: string, moduleId: string | undefined, ifMatch: string | undefined): void {
    if (ifMatch === undefined) return;
    const wanted = ifMatch
      .trim()
      .replace(/^W\//, '')
      .replace(/^"(.*)"$/, '$1');
    if (wanted === '*' || wanted === this.etag(deviceId, moduleId)) return;
    throw new ServiceError(412, 412001, 'PreconditionFailed', 'The etag in If-Match does not match the twin: it changed since it was read.');
  }
}

function formatError(message: string): ServiceError {
  return new ServiceError(400, 400006, 'IotHubFormatError', message);
}

/**
 * A section after a patch: a patch merges into the section; a null removes the property; nested
 * objects merge the same way ("replaces ... all properties with null removes them", iot-hub-devguide-
 * device-twins.md "Back-end operations"). Names starting with `$` are the hub's own ($version,
 * $metadata) and are refused, as are depth over 10 and a section over 32 KB.
 */
export function mergedSection(section: Json, patch: unknown, what: string): Json {
  if (!isPlainObject(patch)) throw formatError(`The ${what} patch must be a JSON object.`);
  const merged = merge(section, patch, what, 1);
  const size = Buffer.byteLength(JSON.stringify(merged));
  if (size > TWIN_SECTION_MAX_BYTES) {
    // "Each individual section ... is limited to 32 KB" (iot-hub-devguide-device-twins.md, "Device twin size");
    // the hub rejects such an update with 413 MessageTooLarge (code 413001, IotHubServiceErrorCode.cs; UNVERIFIED for twins).
    throw new ServiceError(413, 413001, 'MessageTooLarge', `The ${what} would be ${size} bytes; at most ${TWIN_SECTION_MAX_BYTES} are allowed.`);
  }
  return merged;
}

function merge(base: Json, patch: Json, what: string, depth: number): Json {
  if (depth > MAX_DEPTH) throw new ServiceError(400, 400004, 'ArgumentInvalid', `The ${what} are nested deeper than ${MAX_DEPTH} levels.`);
  const out: Json = { ...base };
  for (const [name, value] of Object.entries(patch)) {
    if (name.startsWith('$')) {
      // "$" prefixed names are reserved for metadata and versions (iot-hub-devguide-device-twins.md); a
      // $version in a patch is ignored rather than refused, since the SDKs pass a twin's own section back.
      if (name === '$version' || name === '$metadata') continue;
      throw new ServiceError(400, 400004, 'ArgumentInvalid', `Property names starting with $ are reserved (${name.slice(0, 40)}).`);
    }
    if (value === null) delete out[name];
    else if (isPlainObject(value)) out[name] = merge(isPlainObject(out[name]) ? (out[name] as Json) : {}, value, what, depth + 1);
    else out[name] = value;
  }
  return out;
}
