/**
 * The hub's device list over its service REST API, for the editor's device picker. IoT Hub serves the
 * registry over HTTPS only (Azure REST reference "Devices - Get Devices": `GET /devices?top=N`, at most
 * 1,000, api-version 2021-04-12 as `azure-iothub` registry.js `list` sends it), authorised by a SAS
 * token of a policy with RegistryRead. Only ids and states are kept: the answer also holds every
 * device's keys, which must never reach the editor.
 */
import * as https from 'node:https';
import type { GatewayIdentity, ServiceIdentity } from './connection-string';
import { makeToken } from './credentials';
import { HubError } from './errors';

export const REGISTRY_API_VERSION = '2021-04-12';
/** The most the hub gives in one answer (Get Devices: "top ... maximum 1000"). */
export const REGISTRY_LIST_MAX = 1000;

export interface DeviceSummary {
  deviceId: string;
  /** 'enabled' or 'disabled'. */
  status?: string;
  /** 'Connected' or 'Disconnected'. */
  connectionState?: string;
}

export interface RegistryListOptions {
  /** Connect here instead of the identity's host (the simulator); the token audience and TLS name keep the identity's host. */
  connectHost?: string;
  port?: number;
  ca?: string | Buffer | Array<string | Buffer>;
  timeoutMs?: number;
}

export function listDevices(identity: ServiceIdentity | GatewayIdentity, options: RegistryListOptions = {}): Promise<DeviceSummary[]> {
  const token = makeToken(identity, {}, 300).token;
  // The host's port, if the string has one, is the AMQPS port; the service API is on 443.
  const host = identity.host.split(':')[0];
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: options.connectHost ?? host,
        port: options.port ?? 443,
        servername: host,
        path: `/devices?top=${REGISTRY_LIST_MAX}&api-version=${REGISTRY_API_VERSION}`,
        method: 'GET',
        headers: { Authorization: token, Accept: 'application/json' },
        ...(options.ca ? { ca: options.ca } : {}),
        timeout: options.timeoutMs ?? 20_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const status = res.statusCode ?? 0;
          if (status === 401 || status === 403)
            return reject(
              new HubError(
                'Unauthorized',
                `the policy ${identity.policy} may not read the device registry: it needs the RegistryRead permission (iothubowner or registryRead have it)`,
              ),
            );
          if (status < 200 || status >= 300)
            return reject(new HubError(status === 429 ? 'Throttled' : 'ServiceUnavailable', `the registry answered ${status}`));
          try {
            resolve(summaries(JSON.parse(text)));
          } catch {
            reject(new HubError('ServiceUnavailable', 'the registry answered with something that is not a device list'));
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new HubError('Timeout', 'the registry did not answer in time')));
    req.on('error', (err: NodeJS.ErrnoException) =>
      reject(
        err instanceof HubError ? err : new HubError('NotConnected', `the registry is not reachable (${err.code ?? err.message})`, { socketCode: err.code }),
      ),
    );
    req.end();
  });
}

function summaries(body: unknown): DeviceSummary[] {
  if (!Array.isArray(body)) throw new Error('not a list');
  const out: DeviceSummary[] = [];
  for (const item of body as Array<Record<string, unknown>>) {
    if (!item || typeof item.deviceId !== 'string') continue;
    out.push({
      deviceId: item.deviceId,
      ...(typeof item.status === 'string' ? { status: item.status } : {}),
      ...(typeof item.connectionState === 'string' ? { connectionState: item.connectionState } : {}),
    });
  }
  return out.sort((a, b) => a.deviceId.localeCompare(b.deviceId));
}
