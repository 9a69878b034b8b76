/**
 * Parses every connection string form a user may paste: IoT Hub service policy, device (key or SAS,
 * optional module and gateway), and the Event Hubs-compatible endpoint. Errors name the offending key
 * and never repeat a key or signature.
 */

export type ServiceIdentity = { kind: 'service'; host: string; policy: string; key: string };
export type GatewayIdentity = { kind: 'gateway'; host: string; policy: string; key: string };
export type DeviceIdentity = {
  kind: 'device';
  host: string;
  deviceId: string;
  moduleId?: string;
  key?: string;
  sas?: string;
  gatewayHost?: string;
};
export type EventHubIdentity = {
  kind: 'eventhub';
  /** Fully qualified namespace host, possibly with a port (`localhost:5672`). */
  host: string;
  entityPath: string;
  policy: string;
  key: string;
  /** `UseDevelopmentEmulator=true`: plain AMQP on 5672 unless a port is given. */
  emulator: boolean;
};
export type Identity = ServiceIdentity | GatewayIdentity | DeviceIdentity | EventHubIdentity;

export class ConnectionStringError extends Error {
  readonly code = 'InvalidConnectionString';
  constructor(message: string) {
    super(message);
    this.name = 'ConnectionStringError';
  }
}

const KNOWN_KEYS = new Set([
  'HostName',
  'SharedAccessKeyName',
  'SharedAccessKey',
  'SharedAccessSignature',
  'DeviceId',
  'ModuleId',
  'GatewayHostName',
  'Endpoint',
  'EntityPath',
  'UseDevelopmentEmulator',
  'x509',
]);

/** Splits `A=b;C=d` at the first `=` of each pair so base64 padding survives. */
export function splitConnectionString(text: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const part of text.trim().split(';')) {
    if (part.trim() === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) {
      // Only the text before '=' is safe to show; a part without '=' may be a pasted secret.
      throw new ConnectionStringError('connection string has a part that is not Key=Value');
    }
    const name = part.slice(0, eq).trim();
    if (!KNOWN_KEYS.has(name)) throw unexpectedKey(name);
    if (fields.has(name)) throw new ConnectionStringError(`connection string repeats the key "${name}"`);
    fields.set(name, part.slice(eq + 1).trim());
  }
  return fields;
}

/**
 * A pasted key split at its first '=' looks like a key name, so only a word that reads as a setting
 * is quoted back: a known key in the wrong case, or a short run of letters.
 */
function unexpectedKey(name: string): ConnectionStringError {
  const known = [...KNOWN_KEYS].find((k) => k.toLowerCase() === name.toLowerCase());
  if (known) return new ConnectionStringError(`connection string key "${name}" must be written "${known}"`);
  if (/^[A-Za-z]{1,20}$/.test(name)) return new ConnectionStringError(`connection string has an unexpected key "${name}"`);
  return new ConnectionStringError('connection string has an unexpected part (not shown, as it may be a secret)');
}

function need(fields: Map<string, string>, name: string, kind: string): string {
  const value = fields.get(name);
  if (value === undefined || value === '') {
    throw new ConnectionStringError(`${kind} connection string is missing "${name}"`);
  }
  return value;
}

function refuse(fields: Map<string, string>, names: string[], kind: string): void {
  for (const n of names) {
    if (fields.has(n)) throw new ConnectionStringError(`${kind} connection string must not have "${n}"`);
  }
}

/**
 * Parses a connection string. `gatewayPolicy` says how to read a hub policy string: a policy used to
 * speak for devices (DeviceConnect) is a gateway identity, otherwise a service identity.
 */
export function parseConnectionString(text: string, options: { gatewayPolicy?: boolean } = {}): Identity {
  if (typeof text !== 'string' || text.trim() === '') {
    throw new ConnectionStringError('connection string is empty');
  }
  const fields = splitConnectionString(text);
  if (fields.has('Endpoint')) return parseEventHub(fields);
  if (fields.has('DeviceId')) return parseDevice(fields);
  if (fields.has('SharedAccessKeyName')) {
    refuse(fields, ['SharedAccessSignature', 'ModuleId', 'GatewayHostName', 'EntityPath'], 'service');
    const host = need(fields, 'HostName', 'service');
    const policy = need(fields, 'SharedAccessKeyName', 'service');
    const key = need(fields, 'SharedAccessKey', 'service');
    checkHost(host);
    checkBase64Key(key, 'SharedAccessKey');
    return { kind: options.gatewayPolicy ? 'gateway' : 'service', host, policy, key };
  }
  if (!fields.has('HostName')) throw new ConnectionStringError('connection string is missing "HostName" (or "Endpoint")');
  throw new ConnectionStringError('connection string needs "DeviceId" (device) or "SharedAccessKeyName" (policy)');
}

function parseDevice(fields: Map<string, string>): DeviceIdentity {
  refuse(fields, ['SharedAccessKeyName', 'EntityPath', 'UseDevelopmentEmulator'], 'device');
  const host = need(fields, 'HostName', 'device');
  checkHost(host);
  const deviceId = need(fields, 'DeviceId', 'device');
  const key = fields.get('SharedAccessKey');
  const sas = fields.get('SharedAccessSignature');
  if (fields.has('x509')) {
    throw new ConnectionStringError('device connection string uses "x509", which this package does not support yet');
  }
  if (key === undefined && sas === undefined) {
    throw new ConnectionStringError('device connection string is missing "SharedAccessKey" or "SharedAccessSignature"');
  }
  if (key !== undefined && sas !== undefined) {
    throw new ConnectionStringError('device connection string must have only one of "SharedAccessKey" and "SharedAccessSignature"');
  }
  if (key !== undefined) checkBase64Key(key, 'SharedAccessKey');
  if (sas !== undefined && !/^SharedAccessSignature\s/.test(sas)) {
    throw new ConnectionStringError('"SharedAccessSignature" must start with "SharedAccessSignature sr="');
  }
  const identity: DeviceIdentity = { kind: 'device', host, deviceId };
  const moduleId = fields.get('ModuleId');
  if (moduleId) identity.moduleId = moduleId;
  const gatewayHost = fields.get('GatewayHostName');
  if (gatewayHost) identity.gatewayHost = gatewayHost;
  if (key !== undefined) identity.key = key;
  if (sas !== undefined) identity.sas = sas;
  return identity;
}

function parseEventHub(fields: Map<string, string>): EventHubIdentity {
  refuse(fields, ['HostName', 'DeviceId', 'ModuleId', 'GatewayHostName', 'SharedAccessSignature'], 'Event Hubs');
  const endpoint = need(fields, 'Endpoint', 'Event Hubs');
  const match = /^sb:\/\/([^/]+)\/?$/i.exec(endpoint);
  if (!match) throw new ConnectionStringError('"Endpoint" must look like sb://<namespace host>/');
  const entityPath = need(fields, 'EntityPath', 'Event Hubs');
  const policy = need(fields, 'SharedAccessKeyName', 'Event Hubs');
  const key = need(fields, 'SharedAccessKey', 'Event Hubs');
  const emulatorText = fields.get('UseDevelopmentEmulator');
  if (emulatorText !== undefined && !/^(true|false)$/i.test(emulatorText)) {
    throw new ConnectionStringError('"UseDevelopmentEmulator" must be true or false');
  }
  return { kind: 'eventhub', host: match[1], entityPath, policy, key, emulator: /^true$/i.test(emulatorText ?? '') };
}

function checkHost(host: string): void {
  if (!/^[A-Za-z0-9.-]+(:\d{1,5})?$/.test(host)) {
    throw new ConnectionStringError('"HostName" must be a host name such as myhub.azure-devices.net');
  }
}

function checkBase64Key(key: string, name: string): void {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(key) || Buffer.from(key, 'base64').length === 0) {
    throw new ConnectionStringError(`"${name}" is not a base64 key`);
  }
}

/** The hub name is the first DNS label of the host (`myhub` of `myhub.azure-devices.net`). */
export function hubNameOf(host: string): string {
  return host.split(':')[0].split('.')[0];
}

/** A form safe for logs: keys and signatures replaced. */
export function redactConnectionString(text: string): string {
  return text.replace(/(SharedAccessKey|SharedAccessSignature)=[^;]*/g, '$1=***');
}

export function formatServiceConnectionString(host: string, policy: string, key: string): string {
  return `HostName=${host};SharedAccessKeyName=${policy};SharedAccessKey=${key}`;
}

export function formatDeviceConnectionString(host: string, deviceId: string, key: string, extra: { moduleId?: string; gatewayHost?: string } = {}): string {
  let text = `HostName=${host};DeviceId=${deviceId}`;
  if (extra.moduleId) text += `;ModuleId=${extra.moduleId}`;
  text += `;SharedAccessKey=${key}`;
  if (extra.gatewayHost) text += `;GatewayHostName=${extra.gatewayHost}`;
  return text;
}

export function formatEventHubConnectionString(host: string, entityPath: string, policy: string, key: string, emulator: boolean): string {
  return (
    `Endpoint=sb://${host}/;SharedAccessKeyName=${policy};SharedAccessKey=${key};EntityPath=${entityPath}` + (emulator ? ';UseDevelopmentEmulator=true' : '')
  );
}
