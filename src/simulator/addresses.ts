/**
 * Link addresses as the SDKs send them (relative or absolute, any casing, URL-encoded ids) reduced to
 * what they mean. Fixed words compare case-insensitively; device and module ids keep their case.
 */

export type Address =
  | { kind: 'cbs' }
  | { kind: 'd2c'; deviceId: string; moduleId?: string }
  | { kind: 'c2d'; deviceId: string; moduleId?: string }
  /** A device's or module's direct-method link pair (azure-iot-common endpoint.js deviceMethodPath). */
  | { kind: 'methods'; deviceId: string; moduleId?: string }
  /** A device's or module's twin link pair (azure-iot-common endpoint.js deviceTwinPath). */
  | { kind: 'twin'; deviceId: string; moduleId?: string }
  | { kind: 'devicebound' }
  | { kind: 'feedback' }
  | { kind: 'filenotifications' }
  | { kind: 'builtin-partition'; consumerGroup: string; partition: string }
  | { kind: 'builtin-management' }
  | { kind: 'eh-partition'; entity: string; consumerGroup: string; partition: string }
  | { kind: 'eh-management'; entity: string }
  | { kind: 'unknown'; path: string };

/** One URL-decoded path segment; a segment that is not valid encoding is taken as it stands. */
export function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** Strips `scheme://host[:port]` and splits into URL-decoded segments. */
export function addressSegments(address: string): string[] {
  let path = address.trim();
  const scheme = /^[a-z][a-z0-9+.-]*:\/\/[^/]*/i.exec(path);
  if (scheme) path = path.slice(scheme[0].length);
  return path
    .split('/')
    .filter((s) => s !== '')
    .map(decodeSegment);
}

const eq = (a: string | undefined, b: string): boolean => a !== undefined && a.toLowerCase() === b.toLowerCase();

export function parseAddress(address: string | undefined, entityName: string): Address {
  if (!address) return { kind: 'unknown', path: '' };
  const s = addressSegments(address);
  if (s.length === 1 && eq(s[0], '$cbs')) return { kind: 'cbs' };
  // Event Hubs clients attach their management links to a bare `$management`.
  if (s.length === 1 && eq(s[0], '$management')) return { kind: 'eh-management', entity: entityName };
  if (eq(s[0], 'devices') && s.length >= 3) {
    const deviceId = s[1];
    let rest = s.slice(2);
    let moduleId: string | undefined;
    if (eq(rest[0], 'modules') && rest.length >= 3) {
      moduleId = rest[1];
      rest = rest.slice(2);
    }
    const base = moduleId === undefined ? { deviceId } : { deviceId, moduleId };
    if (rest.length === 2 && eq(rest[0], 'methods') && eq(rest[1], 'devicebound')) return { kind: 'methods', ...base };
    if (rest.length === 1 && eq(rest[0], 'twin')) return { kind: 'twin', ...base };
    if (rest.length === 2 && eq(rest[0], 'messages')) {
      if (eq(rest[1], 'events')) return { kind: 'd2c', ...base };
      if (eq(rest[1], 'devicebound')) return { kind: 'c2d', ...base };
    }
  }
  if (eq(s[0], 'messages')) {
    if (s.length === 2 && eq(s[1], 'devicebound')) return { kind: 'devicebound' };
    if (s.length === 3 && eq(s[1], 'servicebound') && eq(s[2], 'feedback')) return { kind: 'feedback' };
    if (s.length === 3 && eq(s[1], 'servicebound') && eq(s[2], 'filenotifications')) return { kind: 'filenotifications' };
    if (eq(s[1], 'events')) {
      if (s.length === 3 && eq(s[2], '$management')) return { kind: 'builtin-management' };
      if (s.length === 6 && eq(s[2], 'consumergroups') && eq(s[4], 'partitions')) {
        return { kind: 'builtin-partition', consumerGroup: s[3], partition: s[5] };
      }
    }
  }
  if (eq(s[0], entityName)) {
    if (s.length === 2 && eq(s[1], '$management')) return { kind: 'eh-management', entity: s[0] };
    if (s.length === 5 && eq(s[1], 'consumergroups') && eq(s[3], 'partitions')) {
      return { kind: 'eh-partition', entity: s[0], consumerGroup: s[2], partition: s[4] };
    }
  }
  return { kind: 'unknown', path: s.join('/') };
}
