/** Raw rhea-promise clients for wire-level tests of the simulator. */
import { Connection, type ConnectionOptions } from 'rhea-promise';
import { CbsChannel } from '../../src/iothub/cbs';
import { expiryIn, makeSasToken } from '../../src/iothub/sas';
import type { SimulatedHub } from '../../src/simulator';

export interface RawClient {
  connection: Connection;
  cbs: CbsChannel;
  close(): Promise<void>;
}

export async function openRaw(hub: SimulatedHub, extra: Partial<ConnectionOptions> = {}): Promise<RawClient> {
  const connection = new Connection({ transport: 'tcp', host: '127.0.0.1', port: Number(hub.ports.amqp), reconnect: false, ...extra } as ConnectionOptions);
  await connection.open();
  const cbs = new CbsChannel(connection);
  await cbs.open();
  return {
    connection,
    cbs,
    async close() {
      await cbs.close();
      await connection.close().catch(() => undefined);
    },
  };
}

export function serviceToken(hub: SimulatedHub, policyName = 'iothubowner', lifetime = 300): string {
  const policy = hub.registry.policies.get(policyName);
  if (!policy) throw new Error(`no policy ${policyName}`);
  return makeSasToken({ resource: hub.hostWithPort, key: policy.primaryKey, keyName: policy.name, expiry: expiryIn(lifetime) });
}

export function deviceToken(hub: SimulatedHub, deviceId: string, lifetime = 300): string {
  const record = hub.registry.addDevice(deviceId);
  return makeSasToken({ resource: `${hub.hostWithPort}/devices/${deviceId}`, key: record.primaryKey, expiry: expiryIn(lifetime) });
}

/** Authorises the raw client as the hub owner (service and every device). */
export async function asOwner(hub: SimulatedHub, client: RawClient): Promise<void> {
  await client.cbs.putToken(hub.hostWithPort, serviceToken(hub));
}
