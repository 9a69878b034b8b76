/**
 * The `iothub-connection` config node's settings read into what its connection needs: the mode, the
 * identity from the connection string, the HubConnection options, and why the config cannot connect if
 * it cannot. A pure function of the editor's fields, the credentials, the environment and the files it
 * is given, so every rule about those fields is tested without Node-RED.
 */
import { parseConnectionString, type Identity } from '../iothub/connection-string';
import { HubError } from '../iothub/errors';
import type { HubConnectionOptions, Transport } from '../iothub/hub-connection';
import type { ServiceEndpoint } from '../iothub/service-api';
import type { LocalHub } from './local-simulator';

/** The editor's fields of the config node (strings when typed into the editor, numbers from a flow file). */
export interface ConnectionSettings {
  mode?: 'local' | 'azure';
  transport?: Transport;
  caFile?: string;
  localPort?: number | string;
  tokenLifetime?: number | string;
  tokenRenewMargin?: number | string;
  reconnectMin?: number | string;
  reconnectMax?: number | string;
  throttleMin?: number | string;
  throttleMax?: number | string;
  idleTimeout?: number | string;
}

export interface ConnectionCredentials {
  connectionString?: string;
}

/** What a config node is: the local simulator, an identity's kind, or a connection string it cannot read. */
export type Role = 'local' | Identity['kind'] | 'invalid';

export interface ConnectionConfig {
  mode: 'local' | 'azure';
  role: Role;
  /** Azure mode: who the connection string says this is. */
  identity?: Identity;
  /** Options of the shared connection; in local mode `localOptions` adds the simulator's address. */
  options: HubConnectionOptions;
  /** Local mode: the simulator's AMQP port. */
  localPort: number;
  /** Why this config cannot connect at all (no or a bad connection string, an unreadable CA file). */
  configError?: HubError;
}

/** What reading the settings may look at besides the settings. */
export interface ConnectionSources {
  /** For `${ENV_VAR}` connection strings. */
  env: Record<string, string | undefined>;
  /** For the CA file. */
  readFile: (path: string) => Buffer;
}

export const DEFAULT_LOCAL_PORT = 5672;

const ENV_REFERENCE = /^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$/;

/**
 * The text without one pair of surrounding double or single quotes: `az iot hub connection-string show`
 * prints the string as a JSON value, and a copy of it often takes the quotes along.
 */
export function unquote(text: string): string {
  const t = text.trim();
  return t.length >= 2 && (t[0] === '"' || t[0] === "'") && t[t.length - 1] === t[0] ? t.slice(1, -1) : text;
}

/** A number of at least `min` from an editor field; anything else (blank, not a number, too small) is the default. */
function num(value: unknown, fallback: number, min: number): number {
  // Number('  ') and Number(null) are 0: a blank field would otherwise turn the idle timeout off or pick a random port.
  const n = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : NaN;
  return Number.isFinite(n) && n >= min ? n : fallback;
}

export function connectionConfig(settings: ConnectionSettings, credentials: ConnectionCredentials | undefined, sources: ConnectionSources): ConnectionConfig {
  const mode: 'local' | 'azure' = settings.mode === 'azure' ? 'azure' : 'local';
  const options: HubConnectionOptions = {
    transport: settings.transport === 'amqpws' || settings.transport === 'amqp' ? settings.transport : 'amqps',
    tokenLifetimeSec: num(settings.tokenLifetime, 3600, 5),
    tokenRenewMarginSec: num(settings.tokenRenewMargin, 900, 1),
    reconnectMinMs: num(settings.reconnectMin, 1000, 10),
    reconnectMaxMs: num(settings.reconnectMax, 60_000, 100),
    throttleMinMs: num(settings.throttleMin, 10_000, 10),
    throttleMaxMs: num(settings.throttleMax, 60_000, 10),
    idleTimeoutMs: num(settings.idleTimeout, 120_000, 0),
  };
  // A cap below the floor is read as "no growth", not as an error that keeps the node from starting.
  if ((options.reconnectMaxMs as number) < (options.reconnectMinMs as number)) options.reconnectMaxMs = options.reconnectMinMs;
  if ((options.throttleMaxMs as number) < (options.throttleMinMs as number)) options.throttleMaxMs = options.throttleMinMs;
  const config: ConnectionConfig = { mode, role: 'local', options, localPort: num(settings.localPort, DEFAULT_LOCAL_PORT, 0) };
  if (mode === 'local') return config;

  let text = unquote(credentials?.connectionString ?? '');
  const env = ENV_REFERENCE.exec(text.trim());
  if (env) text = unquote(sources.env[env[1]] ?? '');
  try {
    // The variable's name helps whoever set up the deployment; its value (set or not) is never said.
    if (!text.trim())
      throw new HubError('InvalidConnectionString', env ? `the environment variable ${env[1]} is not set or empty` : 'no connection string is set');
    // A hub policy string speaks for devices too (gateway); service nodes use it at hub level.
    config.identity = parseConnectionString(text, { gatewayPolicy: true });
  } catch (err) {
    // The parser's messages never quote the string's values (see connection-string.ts).
    const said = (err as Error).message;
    // The parser's messages mostly name the connection string already: said once, not twice.
    const message = /connection string/i.test(said) ? said : `connection string: ${said}`;
    config.configError = new HubError(err instanceof HubError ? err.code : 'InvalidConnectionString', message);
  }
  // The Event Hubs emulator form of the string means plain AMQP, as the Event Hubs SDKs read it.
  if (config.identity?.kind === 'eventhub' && config.identity.emulator) options.transport = 'amqp';
  if (settings.caFile) {
    try {
      options.ca = sources.readFile(settings.caFile);
    } catch (err) {
      config.configError = new HubError('InvalidConfig', `cannot read the CA file (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }
  config.role = config.identity ? config.identity.kind : 'invalid';
  return config;
}

/** The options for the local simulator on `port`: plain AMQP on the loopback address, whatever the transport setting. */
export function localOptions(options: HubConnectionOptions, port: number): HubConnectionOptions {
  return { ...options, transport: 'amqp', connectHost: '127.0.0.1', port };
}

/** How long a REST call may take beyond what it waits for by design (ms). */
const REST_TIMEOUT_MS = 30_000;

/**
 * The service REST endpoint of a connection: IoT Hub serves it on 443 of the hub's host name (a port in
 * HostName is the AMQPS port and is not used here); the local simulator on its REST port, trusting its
 * certificate.
 */
export function serviceEndpointOf(identity: Identity, ca: HubConnectionOptions['ca'], local?: LocalHub): ServiceEndpoint {
  if (identity.kind !== 'service' && identity.kind !== 'gateway') {
    throw new HubError('WrongRole', `the service REST API needs a shared access policy connection string, not a ${identity.kind} one`);
  }
  if (local) {
    const port = local.hub?.ports.rest ?? local.rest?.port;
    if (port === undefined) {
      throw new HubError(
        'NotConnected',
        `the local simulator on port ${local.port} runs in another process that did not say where its REST API is (npm start does; with iothub-sim --rest-port N, set IOTHUB_SIM_REST_PORT=N and IOTHUB_SIM_REST_CA=<its cert.pem> for Node-RED)`,
      );
    }
    const trusted = local.hub?.certificate?.cert ?? local.rest?.ca;
    return {
      host: identity.host,
      connectHost: '127.0.0.1',
      port,
      policy: identity.policy,
      key: identity.key,
      ...(trusted === undefined ? {} : { ca: trusted }),
      timeoutMs: REST_TIMEOUT_MS,
    };
  }
  // A port in HostName is the AMQPS port (the connection uses it); the REST API stays on 443, as in
  // registry-list.ts (Azure docs, iot-hub-devguide-protocols.md "Port numbers": HTTPS 443).
  const host = identity.host.split(':')[0];
  return {
    host,
    port: 443,
    policy: identity.policy,
    key: identity.key,
    ...(ca === undefined ? {} : { ca }),
    timeoutMs: REST_TIMEOUT_MS,
  };
}
