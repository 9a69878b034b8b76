/**
 * What a connection may do: the set of tokens it has presented (by CBS put-token or SASL PLAIN), each
 * a grant with a scope, rights and an expiry. Every link attach is checked against this set, and links
 * whose grant lapses are detached by the hub's sweep.
 */
import { parseSasToken, verifySasSignature, SasError, type KeyEncoding } from '../iothub/sas';
import { decodeSegment, type Address } from './addresses';
import type { Registry, Right } from './registry';

export interface Grant {
  /** Path segments below the host that the token covers (lower-cased fixed words, ids as given). */
  scope: string[];
  rights: Set<Right>;
  /** ms since the epoch. */
  expiresAt: number;
  /** Who signed it: a policy, or a device or module with its own key. */
  signer: { type: 'policy'; name: string } | { type: 'device'; deviceId: string; moduleId?: string };
  /** True for tokens on the Event Hubs-compatible surface (`sb://` audiences, key as text). */
  eventHub: boolean;
}

export class AuthError extends Error {
  /** The CBS status the hub answers with: 401 unless the refusal says otherwise. */
  constructor(
    message: string,
    readonly status = 401,
  ) {
    super(message);
    this.name = 'AuthError';
  }
}

/**
 * The real hub's answer to a put-token for a device it does not know: 404 with "Device <id> at
 * IotHub <hub> not registered." (azure-iot-sdk-c#1413, Azure/iotedge#5639).
 */
function notRegistered(deviceId: string, moduleId: string | undefined, hub: string): AuthError {
  const who = moduleId === undefined ? `Device ${deviceId}` : `Module ${moduleId} on device ${deviceId}`;
  return new AuthError(`${who} at IotHub ${hub} not registered`, 404);
}

export interface TokenContext {
  registry: Registry;
  /** Host names (without port) this hub answers to. */
  hosts: string[];
  /** Event Hubs-compatible entity name. */
  entityName: string;
  now: number;
}

/** Verifies a SAS token and returns the grant it gives. Throws AuthError with a reason otherwise. */
export function grantFromToken(token: string, ctx: TokenContext): Grant {
  let parsed;
  try {
    parsed = parseSasToken(token);
  } catch (err) {
    throw new AuthError(err instanceof SasError ? err.message : 'malformed token');
  }
  if (parsed.expiry * 1000 <= ctx.now) throw new AuthError('token expired');
  const isSb = /^sb:\/\//i.test(parsed.resource);
  const withoutScheme = stripScheme(parsed.resource);
  const hostPart = withoutScheme.split('/')[0].split(':')[0].toLowerCase();
  if (!ctx.hosts.includes(hostPart)) throw new AuthError('token is for another host');
  // `resource` is already URL-decoded: split it, never decode again (ids may contain '%').
  const segments = withoutScheme
    .split('/')
    .slice(1)
    .filter((part) => part !== '');
  const eventHub = isSb || (segments.length > 0 && segments[0].toLowerCase() === ctx.entityName.toLowerCase());
  const expiresAt = parsed.expiry * 1000;

  if (parsed.keyName) {
    const policy = ctx.registry.policies.get(parsed.keyName);
    if (!policy) throw new AuthError('unknown policy');
    const keys = policy.secondaryKey ? [policy.primaryKey, policy.secondaryKey] : [policy.primaryKey];
    // Event Hubs clients sign with the key as text; the IoT flavour of their token provider
    // decodes it first. Accept both on the Event Hubs surface, only base64 on the IoT Hub surface.
    const encodings: KeyEncoding[] = eventHub ? ['text', 'base64'] : ['base64'];
    if (!keys.some((k) => encodings.some((e) => verifySasSignature(parsed, k, e)))) {
      throw new AuthError('signature does not match');
    }
    const target = deviceOf(segments);
    // No keys: neither registered nor to be auto-registered (auto-registration off, or deleted).
    if (target && ctx.registry.keysFor(target.deviceId, target.moduleId).length === 0) {
      throw notRegistered(target.deviceId, target.moduleId, ctx.entityName);
    }
    return { scope: normaliseScope(segments), rights: policy.rights, expiresAt, signer: { type: 'policy', name: policy.name }, eventHub };
  }

  if (eventHub) throw new AuthError('Event Hubs tokens need a policy name (skn)');
  // A device or module key: sr must be devices/<id> or devices/<id>/modules/<mid>.
  const target = deviceOf(segments);
  if (!target) throw new AuthError('a token without a policy must be for devices/<id>');
  const { deviceId, moduleId } = target;
  const keys = ctx.registry.keysFor(deviceId, moduleId);
  if (keys.length === 0) throw notRegistered(deviceId, moduleId, ctx.entityName);
  if (!keys.some((k) => verifySasSignature(parsed, k, 'base64'))) throw new AuthError('signature does not match');
  ctx.registry.ensure(deviceId, moduleId);
  const signer = moduleId === undefined ? { type: 'device' as const, deviceId } : { type: 'device' as const, deviceId, moduleId };
  return { scope: normaliseScope(segments), rights: new Set<Right>(['DeviceConnect']), expiresAt, signer, eventHub };
}

/**
 * Whether a put-token's `name` names the resource its token is for. Each official SDK writes the name
 * its own way, and each is accepted:
 * - Node (azure-iot-device amqp.ts): the token's `sr` as it stands, URL-encoded whole
 *   (`host%2Fdevices%2Fa%23b`): decoded once, it is the resource;
 * - C# (DeviceIdentity): `host/devices/<url-encoded id>`, the service `amqps://host:5671/`, Python
 *   `https://host`: a URI, whose path segments are each decoded;
 * - C (iothubtransport_amqp_cbs_auth.c): `host/devices/<id>` raw, which reads the same way unless the
 *   id holds a `%` escape.
 * A name that reads as another resource (a raw id such as `line%41`, read `lineA`) is refused: a hub
 * that keys tokens by their audience would hold it for the wrong device. What the real hub does with
 * such a name is UNVERIFIED; every SDK's own form passes.
 */
export function audienceMatches(name: unknown, token: string): boolean {
  if (typeof name !== 'string' || name === '') return false;
  let resource: string;
  try {
    resource = parseSasToken(token).resource;
  } catch {
    return false;
  }
  const wholeEncoded = !name.includes('/');
  const path = wholeEncoded ? decodeSegment(name) : name;
  const readSegments = (text: string, decode: boolean): string[] => {
    const [host, ...rest] = stripScheme(text).split('/');
    const segments = rest.filter((s) => s !== '').map((s) => (decode ? decodeSegment(s) : s));
    return [host.split(':')[0].toLowerCase(), ...normaliseScope(segments)];
  };
  const wanted = readSegments(resource, false);
  const given = readSegments(path, !wholeEncoded);
  return wanted.length === given.length && wanted.every((s, i) => s === given[i]);
}

/** `host[:port]/path` of a URI or a bare resource (tokens and CBS names come both ways). */
function stripScheme(text: string): string {
  return text.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '');
}

/** The device or module a token's path names exactly (devices/<id> or devices/<id>/modules/<mid>). */
function deviceOf(segments: string[]): { deviceId: string; moduleId?: string } | undefined {
  if (segments[0]?.toLowerCase() !== 'devices') return undefined;
  if (segments.length === 2) return { deviceId: segments[1] };
  if (segments.length === 4 && segments[2].toLowerCase() === 'modules') return { deviceId: segments[1], moduleId: segments[3] };
  return undefined;
}

/**
 * Fixed words compare case-insensitively; under devices/ the ids (odd positions) keep their case,
 * because device ids are case-sensitive.
 */
export function normaliseScope(segments: string[]): string[] {
  const deviceScope = segments.length > 0 && segments[0].toLowerCase() === 'devices';
  return segments.map((s, i) => (deviceScope && i % 2 === 1 ? s : s.toLowerCase()));
}

function covers(scope: string[], path: string[]): boolean {
  return scope.length <= path.length && scope.every((s, i) => s === path[i]);
}

/** The scope path and right an attach to `address` needs, or undefined when no token can allow it. */
export interface Requirement {
  path: string[];
  right: Right;
  eventHub: boolean;
  /** For device paths: the exact device/module a device-signed token must be for. */
  device?: { deviceId: string; moduleId?: string };
}

export function requirementFor(address: Address): Requirement | undefined {
  switch (address.kind) {
    case 'd2c':
    case 'c2d': {
      const path = ['devices', address.deviceId];
      if (address.moduleId !== undefined) path.push('modules', address.moduleId);
      path.push('messages', address.kind === 'd2c' ? 'events' : 'devicebound');
      const device = address.moduleId === undefined ? { deviceId: address.deviceId } : { deviceId: address.deviceId, moduleId: address.moduleId };
      return { path, right: 'DeviceConnect', eventHub: false, device };
    }
    case 'methods':
    case 'twin': {
      // The device side of methods and twins needs DeviceConnect like its messages (Azure docs,
      // iot-hub-dev-guide-sas.md: DeviceConnect "grants access to device-facing endpoints").
      const path = ['devices', address.deviceId];
      if (address.moduleId !== undefined) path.push('modules', address.moduleId);
      if (address.kind === 'methods') path.push('methods', 'devicebound');
      else path.push('twin');
      const device = address.moduleId === undefined ? { deviceId: address.deviceId } : { deviceId: address.deviceId, moduleId: address.moduleId };
      return { path, right: 'DeviceConnect', eventHub: false, device };
    }
    case 'devicebound':
      return { path: ['messages', 'devicebound'], right: 'ServiceConnect', eventHub: false };
    case 'feedback':
      return { path: ['messages', 'servicebound', 'feedback'], right: 'ServiceConnect', eventHub: false };
    case 'filenotifications':
      return { path: ['messages', 'servicebound', 'filenotifications'], right: 'ServiceConnect', eventHub: false };
    case 'builtin-partition':
      return {
        path: normaliseScope(['messages', 'events', 'consumergroups', address.consumerGroup, 'partitions', address.partition]),
        right: 'ServiceConnect',
        eventHub: false,
      };
    case 'builtin-management':
      return { path: ['messages', 'events', '$management'], right: 'ServiceConnect', eventHub: false };
    case 'eh-partition':
      return {
        path: normaliseScope([address.entity, 'consumergroups', address.consumerGroup, 'partitions', address.partition]),
        right: 'ServiceConnect',
        eventHub: true,
      };
    case 'eh-management':
      return { path: normaliseScope([address.entity, '$management']), right: 'ServiceConnect', eventHub: true };
    default:
      return undefined;
  }
}

function grantAllows(grant: Grant, req: Requirement, now: number): boolean {
  if (grant.expiresAt <= now || !grant.rights.has(req.right) || grant.eventHub !== req.eventHub) return false;
  if (grant.signer.type === 'device') {
    // A device key speaks only for that device, a module key only for that module.
    return req.device !== undefined && grant.signer.deviceId === req.device.deviceId && grant.signer.moduleId === req.device.moduleId;
  }
  return covers(grant.scope, req.path);
}

/** The grants of one connection. */
export class ConnectionAuth {
  private grants: Grant[] = [];
  constructor(private readonly maxGrants: number) {}

  add(grant: Grant): void {
    // A renewal replaces the grant for the same scope and signer, so renewals never pile up.
    const key = grantKey(grant);
    const index = this.grants.findIndex((g) => grantKey(g) === key);
    if (index >= 0) this.grants[index] = grant;
    else {
      // The hub's own words and limit (Azure/iotedge-lorawan-starterkit#1337; the C# SDK's pool notes
      // "IotHub allows up to 999 tokens per connection"); 403 as for IotHubMaxCbsTokenExceeded (403005).
      if (this.grants.length >= this.maxGrants) throw new AuthError(`The maximum number of tokens per connection (${this.maxGrants}) has been reached`, 403);
      this.grants.push(grant);
    }
  }

  allows(req: Requirement, now: number): boolean {
    return this.grants.some((g) => grantAllows(g, req, now));
  }

  /** Makes every grant lapse now (fault injection). */
  expireAll(now: number): void {
    for (const g of this.grants) g.expiresAt = Math.min(g.expiresAt, now);
  }

  get size(): number {
    return this.grants.length;
  }
}

function grantKey(g: Grant): string {
  const who = g.signer.type === 'policy' ? `p:${g.signer.name}` : `d:${g.signer.deviceId}/${g.signer.moduleId ?? ''}`;
  return `${g.eventHub ? 'eh' : 'iot'}|${who}|${g.scope.join('/')}`;
}
