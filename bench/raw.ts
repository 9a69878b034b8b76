/**
 * A plain rhea-promise connection over TLS with one token put on `$cbs`: the baselines are built on
 * this, with nothing of the package's client core on their hot path.
 */
import { readFileSync } from 'node:fs';
import { Connection, type ConnectionOptions } from 'rhea-promise';
import { CbsChannel } from '../src/iothub/cbs';
import { parseConnectionString, type Identity } from '../src/iothub/connection-string';
import { makeToken, type Scope } from '../src/iothub/credentials';
import type { HubInfo } from './protocol';

export interface RawConnection {
  connection: Connection;
  close(): Promise<void>;
}

/** Opens a TLS connection to the simulator and authorises `scope` for the identity in `connectionString`. */
export async function openRaw(hub: HubInfo, connectionString: string, scope: Scope = {}, identity?: Identity): Promise<RawConnection> {
  const who = identity ?? parseConnectionString(connectionString, { gatewayPolicy: true });
  const connection = new Connection({
    transport: 'tls',
    host: hub.host,
    hostname: hub.hostName,
    servername: hub.hostName,
    port: hub.amqpsPort,
    ca: readFileSync(hub.certFile),
    reconnect: false,
    // rhea turns Nagle off by itself only on connections with a receiver.
    tcp_no_delay: true,
    // The Event Hubs endpoint takes SASL clients only: a user name alone is ANONYMOUS, as the SDKs do.
    ...(who.kind === 'eventhub' ? { username: who.policy } : {}),
  } as ConnectionOptions);
  await connection.open();
  const cbs = new CbsChannel(connection);
  await cbs.open();
  const token = makeToken(who, scope, 3600);
  await cbs.putToken(token.audience, token.token);
  return {
    connection,
    async close() {
      await cbs.close();
      await connection.close().catch(() => undefined);
    },
  };
}
