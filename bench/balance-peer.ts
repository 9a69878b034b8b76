/**
 * One balanced telemetry reader for the rebalance benchmark: a TelemetryReader with Blob checkpoints,
 * reading the hub's partitions it owns. Run as a child process (the reader the benchmark kills), it
 * prints `owned <n>` whenever its share changes; the benchmark's own reader is made with the same function.
 */
import { readFileSync } from 'node:fs';
import { BlobPartitionStore } from '../src/iothub/blob-partition-store';
import { parseConnectionString } from '../src/iothub/connection-string';
import { HubConnection, type HubConnectionOptions } from '../src/iothub/hub-connection';
import { TelemetryReader } from '../src/iothub/telemetry-reader';

export interface PeerConfig {
  serviceConnectionString: string;
  certFile: string;
  storage: string;
  container: string;
  ownerId: string;
  updateMs: number;
  expiryMs: number;
}

export interface BalancedPeer {
  reader: TelemetryReader;
  close(): Promise<void>;
}

export function balancedReader(config: PeerConfig, onOwned: (owned: number) => void): BalancedPeer {
  const options: HubConnectionOptions = { transport: 'amqps', ca: readFileSync(config.certFile) };
  const connection = new HubConnection(parseConnectionString(config.serviceConnectionString), options);
  connection.open();
  const reader = new TelemetryReader({
    connection: async () => connection,
    connectionOptions: async () => options,
    consumerGroup: '$Default',
    partitions: [],
    start: { kind: 'latest' },
    prefetch: 300,
    balance: {
      store: () => BlobPartitionStore.open(config.storage, config.container),
      ownerId: config.ownerId,
      updateIntervalMs: config.updateMs,
      expiryMs: config.expiryMs,
    },
  });
  reader.on('ownership', (owned) => onOwned(owned.length));
  reader.start();
  return {
    reader,
    async close() {
      await reader.close();
      await connection.close();
    },
  };
}

if (require.main === module) {
  const config = JSON.parse(process.env.BALANCE_PEER ?? '{}') as PeerConfig;
  balancedReader(config, (owned) => process.stdout.write(`owned ${owned}\n`));
}
