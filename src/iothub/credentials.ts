/**
 * Which token an identity puts for which scope, and when it runs out. Tokens made from keys are
 * renewed; a SAS given in a connection string cannot be, and its expiry is reported plainly.
 */
import type { Identity } from './connection-string';
import { HubError } from './errors';
import { makeSasToken, parseSasToken, SasError } from './sas';

/** What a link speaks for: the hub itself (service links) or one device or module. */
export interface Scope {
  deviceId?: string;
  moduleId?: string;
}

export interface Token {
  /** CBS `name`: the resource the token is for, with the device and module ids URL-encoded (see audienceFor). */
  audience: string;
  token: string;
  /** ms since the epoch. */
  expiresAt: number;
  /** False for a SAS supplied by the user: it cannot be renewed. */
  renewable: boolean;
}

export function scopeKey(scope: Scope): string {
  return scope.deviceId === undefined ? '' : `${scope.deviceId}/${scope.moduleId ?? ''}`;
}

/** Host part of an identity without any port. */
export function hostOf(identity: Identity): string {
  return identity.host.split(':')[0];
}

export function resourceFor(identity: Identity, scope: Scope): string {
  if (identity.kind === 'eventhub') return `sb://${identity.host}/${identity.entityPath}`;
  if (scope.deviceId === undefined) return identity.host;
  // The whole resource is percent-encoded once when the token is made (device ids cannot hold '/').
  let resource = `${identity.host}/devices/${scope.deviceId}`;
  if (scope.moduleId !== undefined) resource += `/modules/${scope.moduleId}`;
  return resource;
}

/**
 * The CBS `name` for a scope: the token's resource with each device and module id URL-encoded, as the
 * C# device SDK writes it (azure-iot-sdk-csharp DeviceIdentity: `{host}/devices/{WebUtility.UrlEncode(id)}`)
 * and as our link addresses carry the ids (deviceAddress). Raw, an id holding '#', '?', '%' or a space
 * would read as another resource to anything that parses the name as a URI.
 */
export function audienceFor(identity: Identity, scope: Scope): string {
  if (identity.kind === 'eventhub' || scope.deviceId === undefined) return resourceFor(identity, scope);
  let audience = `${identity.host}/devices/${encodeURIComponent(scope.deviceId)}`;
  if (scope.moduleId !== undefined) audience += `/modules/${encodeURIComponent(scope.moduleId)}`;
  return audience;
}

/** Checks that an identity may speak for a scope at all, before anything goes on the wire. */
export function checkScope(identity: Identity, scope: Scope): void {
  if (identity.kind === 'device') {
    if (scope.deviceId !== identity.deviceId || scope.moduleId !== identity.moduleId) {
      const who = identity.moduleId ? `${identity.deviceId}/${identity.moduleId}` : identity.deviceId;
      const asked = scope.deviceId === undefined ? 'the service side' : scope.moduleId ? `${scope.deviceId}/${scope.moduleId}` : scope.deviceId;
      throw new HubError('IdentityMismatch', `this connection is device ${who}; it cannot act for ${asked}`);
    }
  } else if (identity.kind === 'eventhub') {
    if (scope.deviceId !== undefined) throw new HubError('IdentityMismatch', 'an Event Hubs connection cannot act for a device');
  }
}

export function makeToken(identity: Identity, scope: Scope, lifetimeSeconds: number, now = Date.now()): Token {
  const audience = audienceFor(identity, scope);
  const resource = resourceFor(identity, scope);
  if (identity.kind === 'device' && identity.sas !== undefined) {
    let expiry: number;
    try {
      expiry = parseSasToken(identity.sas).expiry * 1000;
    } catch (err) {
      throw new HubError(
        'InvalidToken',
        `the SharedAccessSignature in the connection string is not valid: ${err instanceof SasError ? err.message : 'malformed'}`,
      );
    }
    return { audience, token: identity.sas, expiresAt: expiry, renewable: false };
  }
  const expiry = Math.floor(now / 1000) + Math.max(1, Math.floor(lifetimeSeconds));
  let token: string;
  if (identity.kind === 'eventhub') {
    token = makeSasToken({ resource, key: identity.key, keyName: identity.policy, expiry, encoding: 'text' });
  } else if (identity.kind === 'device') {
    if (identity.key === undefined) {
      throw new HubError('InvalidConnectionString', 'the device identity has neither a SharedAccessKey nor a SharedAccessSignature');
    }
    token = makeSasToken({ resource, key: identity.key, expiry });
  } else {
    token = makeSasToken({ resource, key: identity.key, keyName: identity.policy, expiry });
  }
  return { audience, token, expiresAt: expiry * 1000, renewable: true };
}
