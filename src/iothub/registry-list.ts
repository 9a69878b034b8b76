/**
 * The hub's device list over its service REST API, for the editor's device picker. IoT Hub serves the
 * registry over HTTPS only (Azure REST reference "Devices - Get Devices": `GET /devices?top=N`, at most
 * 1,000), authorised by a SAS token of a policy with RegistryRead, through ServiceApi. Only ids and states are kept: the answer also holds every
 * device's keys, which must never reach the editor.
 */
import type { GatewayIdentity, ServiceIdentity } from './connection-string';
import { HubError } from './errors';
import { ServiceApi } from './service-api';

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

export async function listDevices(identity: ServiceIdentity | GatewayIdentity, options: RegistryListOptions = {}): Promise<DeviceSummary[]> {
  const api = new ServiceApi({
    // The host's port, if the string has one, is the AMQPS port; the service API is on 443.
    host: identity.host.split(':')[0],
    ...(options.connectHost ? { connectHost: options.connectHost } : {}),
    port: options.port ?? 443,
    policy: identity.policy,
    key: identity.key,
    ...(options.ca ? { ca: options.ca } : {}),
    timeoutMs: options.timeoutMs ?? 20_000,
  });
  let body: unknown;
  try {
    body = await api.listDevices(REGISTRY_LIST_MAX);
  } catch (err) {
    // The right it lacks, named: a `service` policy reaches the hub but not its registry.
    if (err instanceof HubError && err.code === 'Unauthorized')
      throw new HubError(
        'Unauthorized',
        `the policy ${identity.policy} may not read the device registry: it needs the RegistryRead permission (iothubowner or registryRead have it)`,
      );
    throw err;
  }
  try {
    return summaries(body);
  } catch {
    throw new HubError('ServiceUnavailable', 'the registry answered with something that is not a device list');
  }
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
