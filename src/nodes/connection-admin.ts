/**
 * The connection node's two editor endpoints: "test connection" (connect and authenticate as the
 * dialog's settings say, or report the exact failure) and the device list behind the Device fields'
 * picker. Both take the settings the dialog holds now, so a config node can be tried before it is
 * deployed; a stored connection string the editor never sees is read from the deployed node's
 * credentials by id. Answers carry codes, ids and host names, never a key or a token.
 */
import { readFileSync } from 'node:fs';
import type { NodeAPI } from 'node-red';
import { checkConnection, type CheckReport } from '../iothub/connection-check';
import type { GatewayIdentity } from '../iothub/connection-string';
import { HubError } from '../iothub/errors';
import { describeIdentity, log, reasonOf, redactSecrets } from '../iothub/log';
import { listDevices, type DeviceSummary } from '../iothub/registry-list';
import { connectionConfig, localOptions, serviceEndpointOf, type ConnectionCredentials, type ConnectionSettings } from './connection-options';
import { acquireLocalHub } from './local-simulator';

/** What the editor posts: the dialog's fields, and the config node's id for a stored string. */
export interface AdminRequest {
  id?: string;
  settings?: ConnectionSettings;
  /** Typed into the dialog; absent or `__PWRD__` when the string is the stored one. */
  connectionString?: string;
}

export type DevicesAnswer = { ok: true; source: 'local' | 'registry' | 'identity'; devices: DeviceSummary[] } | { ok: false; code: string; message: string };

export type CheckAnswer = (CheckReport & { where?: 'this Node-RED' | 'another process'; port?: number }) | { ok: false; code: string; message: string };

/** The editor's placeholder for a credential it holds but does not show. */
const STORED = '__PWRD__';

function settingsOf(
  request: AdminRequest,
  stored: (id: string) => ConnectionCredentials | undefined,
): { settings: ConnectionSettings; credentials: ConnectionCredentials } {
  const settings = request.settings ?? {};
  const typed = request.connectionString;
  const credentials = typed !== undefined && typed !== STORED ? { connectionString: typed } : request.id ? (stored(request.id) ?? {}) : {};
  return { settings, credentials };
}

function configOf(request: AdminRequest, stored: (id: string) => ConnectionCredentials | undefined): ReturnType<typeof connectionConfig> {
  const { settings, credentials } = settingsOf(request, stored);
  return connectionConfig(settings, credentials, { env: process.env, readFile: (path) => readFileSync(path) });
}

function failure(err: unknown): { ok: false; code: string; message: string } {
  return err instanceof HubError
    ? { ok: false, code: err.code, message: redactSecrets(err.message) }
    : { ok: false, code: 'Error', message: redactSecrets(reasonOf(err)) };
}

export async function checkFromEditor(request: AdminRequest, stored: (id: string) => ConnectionCredentials | undefined): Promise<CheckAnswer> {
  const config = configOf(request, stored);
  try {
    if (config.mode === 'local') {
      const local = await acquireLocalHub(config.localPort);
      const report = await checkConnection(local.identity, localOptions(config.options, local.port));
      return { ...report, where: local.hub ? 'this Node-RED' : 'another process', port: local.port };
    }
    if (config.configError) return failure(config.configError);
    if (!config.identity) return failure(new HubError('InvalidConnectionString', 'no connection string is set'));
    return await checkConnection(config.identity, config.options);
  } catch (err) {
    return failure(err);
  }
}

export async function devicesFromEditor(request: AdminRequest, stored: (id: string) => ConnectionCredentials | undefined): Promise<DevicesAnswer> {
  const config = configOf(request, stored);
  try {
    if (config.mode === 'local') {
      const local = await acquireLocalHub(config.localPort);
      if (local.hub) {
        const devices = [...local.hub.registry.devices.keys()].sort((a, b) => a.localeCompare(b)).map((deviceId) => ({ deviceId, status: 'enabled' }));
        return { ok: true, source: 'local', devices };
      }
      // Another process's simulator: its REST API where that process said (serviceEndpointOf says how, if it did not).
      const endpoint = serviceEndpointOf(local.identity, undefined, local);
      const devices = await listDevices(local.identity as GatewayIdentity, {
        ...(endpoint.connectHost ? { connectHost: endpoint.connectHost } : {}),
        port: endpoint.port,
        ...(endpoint.ca ? { ca: endpoint.ca } : {}),
      });
      return { ok: true, source: 'local', devices };
    }
    if (config.configError) return failure(config.configError);
    const identity = config.identity;
    if (!identity) return failure(new HubError('InvalidConnectionString', 'no connection string is set'));
    // A device or module string speaks for one device only: that is its whole list.
    if (identity.kind === 'device') return { ok: true, source: 'identity', devices: [{ deviceId: identity.deviceId }] };
    if (identity.kind === 'eventhub')
      return failure(new HubError('InvalidOperation', 'an Event Hubs-compatible connection string cannot read the IoT Hub device registry'));
    log.node('listing devices as %s', describeIdentity(identity));
    return { ok: true, source: 'registry', devices: await listDevices(identity, { ...(config.options.ca ? { ca: config.options.ca } : {}) }) };
  } catch (err) {
    return failure(err);
  }
}

/** Registers the endpoints on Node-RED's admin API (under its adminAuth, as every editor request). */
export function registerConnectionEndpoints(RED: NodeAPI): void {
  const stored = (id: string): ConnectionCredentials | undefined => RED.nodes.getCredentials(id) as ConnectionCredentials | undefined;
  const body = (raw: unknown): AdminRequest => (raw && typeof raw === 'object' ? (raw as AdminRequest) : {});
  // Both may put a stored credential to use, so both need the right to change flows, not only to read them.
  RED.httpAdmin.post('/iothub-connection/check', RED.auth.needsPermission('iothub-connection.write'), (req, res) => {
    void checkFromEditor(body(req.body), stored).then((answer) => res.json(answer));
  });
  RED.httpAdmin.post('/iothub-connection/devices', RED.auth.needsPermission('iothub-connection.write'), (req, res) => {
    void devicesFromEditor(body(req.body), stored).then((answer) => res.json(answer));
  });
}
