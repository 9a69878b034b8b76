/**
 * Ownership and checkpoints in Azure Blob Storage, in the layout of the official stores
 * (@azure/eventhubs-checkpointstore-blob src/blobCheckpointStore.ts; azure-eventhub-checkpointstoreblob
 * _blobstoragecs.py), so telemetry-in and an EventHubConsumerClient with a BlobCheckpointStore share one
 * consumer group:
 *   `<namespace>/<event hub>/<consumer group>/ownership/<partition id>`, metadata `ownerid`;
 *   `<namespace>/<event hub>/<consumer group>/checkpoint/<partition id>`, metadata `sequencenumber`, `offset`;
 * all three names lower-cased (the service treats them case-insensitively, getBlobPrefix).
 *
 * Why not BlobCheckpointStore itself: it pins @azure/event-hubs 6.0.0 (with core-amqp, rhea and their
 * kin) as a runtime dependency, several MB for a palette install that never uses that client; the five
 * calls below over @azure/storage-blob are all of it. The JS store's first claim is an unconditional
 * write (two first claims can both "win"); the Python store's If-None-Match: * is used instead.
 */
import type { ContainerClient } from '@azure/storage-blob';
import { HubError } from './errors';
import type { Checkpoint, Ownership, PartitionScope, PartitionStore } from './partition-store';

type Kind = 'ownership' | 'checkpoint';

/** The folder of one kind of record of a consumer group (getBlobPrefix in both SDKs). */
export function blobPrefix(scope: PartitionScope, kind: Kind): string {
  return `${scope.namespace.toLowerCase()}/${scope.eventHub.toLowerCase()}/${scope.consumerGroup.toLowerCase()}/${kind}/`;
}

/** An error of the storage service or its transport: status code and the service's error code. */
interface RestErrorLike {
  statusCode?: number;
  code?: string;
  details?: { errorCode?: string };
  message?: string;
}

/**
 * An ETag as listings give it: Blob listings give it bare, the headers of a write quoted. One form, so a
 * version read from a listing and one a write returned compare equal (the SDKs send the listed one back
 * in If-Match, and the service takes it).
 */
export function bareEtag(etag: string | undefined): string {
  return (etag ?? '').replace(/^"(.*)"$/, '$1');
}

function restError(err: unknown): RestErrorLike {
  return err && typeof err === 'object' ? (err as RestErrorLike) : {};
}

/** The container went away (deleted, or a storage emulator restarted without its data). */
function containerMissing(err: unknown): boolean {
  const e = restError(err);
  return e.statusCode === 404 && (e.details?.errorCode ?? e.code) === 'ContainerNotFound';
}

/** A lost race for a record: another reader wrote it first (412), or created it first (409). */
function lostRace(err: unknown): boolean {
  const { statusCode } = restError(err);
  return statusCode === 412 || statusCode === 409;
}

/**
 * The storage failure as a HubError a status and a Catch node can use, never with the connection string
 * (the SDK's messages name the account and the URL, not the key).
 */
export function storeError(err: unknown, what: string): HubError {
  if (err instanceof HubError) return err;
  const e = restError(err);
  const detail = e.details?.errorCode ?? e.code ?? '';
  // A SAS connection string puts its signature in every URL: one quoted in a message loses it here.
  const text = (e.message ?? String(err))
    .split('\n')[0]
    .replace(/([?&](?:sig|se|sp|sv|ss|srt|st|spr|skoid|sktid)=)[^&\s]*/gi, '$1...')
    .replace(/AccountKey=[^;\s]*/gi, 'AccountKey=...')
    .slice(0, 200);
  const status = e.statusCode === undefined ? '' : ` (HTTP ${e.statusCode}${detail ? ` ${detail}` : ''})`;
  const unreachable = e.statusCode === undefined || e.statusCode >= 500 || e.statusCode === 408;
  return new HubError('CheckpointStoreError', `${what}${status}: ${text}`, { retryable: unreachable || e.statusCode === 429 });
}

/**
 * The storage client's own retries kept short: its default (4 tries, delays from 4 s up to 2 min) would
 * hold a failing call for minutes, and with it the status and warning an outage should give at once.
 * The balancer's rounds and the checkpointer retry on their own Backoff, and nothing is lost meanwhile.
 */
const STORAGE_RETRY = { maxTries: 2, retryDelayInMs: 200, maxRetryDelayInMs: 1000, tryTimeoutInMs: 10_000 };

export class BlobPartitionStore implements PartitionStore {
  private constructor(private readonly container: ContainerClient) {}

  /**
   * A store on one container of the account a storage connection string names. Azurite's
   * `UseDevelopmentStorage=true` works as in the Azure tools. Throws InvalidConnectionString without
   * repeating the string.
   */
  static async open(connectionString: string, containerName: string): Promise<BlobPartitionStore> {
    // Loaded on first use: a Node-RED that never uses Blob checkpoints does not pay for the client.
    const { BlobServiceClient } = await import('@azure/storage-blob');
    let container: ContainerClient;
    try {
      container = BlobServiceClient.fromConnectionString(connectionString.trim(), { retryOptions: STORAGE_RETRY }).getContainerClient(containerName);
    } catch {
      throw new HubError(
        'InvalidConnectionString',
        'the storage connection string is not one (Azure portal: Storage account > Access keys > Connection string; Azurite: UseDevelopmentStorage=true)',
      );
    }
    return new BlobPartitionStore(container);
  }

  async prepare(): Promise<void> {
    try {
      // A missing container is made, as `az storage container create` would; an existing one is used as is.
      await this.container.createIfNotExists();
    } catch (err) {
      throw storeError(err, `the checkpoint container "${this.container.containerName}" could not be used`);
    }
  }

  async listOwnership(scope: PartitionScope): Promise<Ownership[]> {
    const list: Ownership[] = [];
    const prefix = blobPrefix(scope, 'ownership');
    for await (const blob of this.container.listBlobsFlat({ prefix, includeMetadata: true })) {
      const ownerId = blob.metadata?.ownerid;
      // The SDKs refuse such a record; here it counts as unowned, so one bad blob does not stop the group.
      if (ownerId === undefined) continue;
      list.push({
        partitionId: blob.name.slice(prefix.length),
        ownerId,
        lastModifiedMs: blob.properties.lastModified.getTime(),
        etag: bareEtag(blob.properties.etag),
      });
    }
    return list;
  }

  /** Runs a write; when the container is gone it is made again once and the write repeated. */
  private async inContainer<T>(write: () => Promise<T>): Promise<T> {
    try {
      return await write();
    } catch (err) {
      if (!containerMissing(err)) throw err;
      await this.container.createIfNotExists();
      return write();
    }
  }

  async claim(scope: PartitionScope, partitionId: string, ownerId: string, etag: string | undefined): Promise<Ownership | undefined> {
    return this.inContainer(() => this.claimOnce(scope, partitionId, ownerId, etag));
  }

  private async claimOnce(scope: PartitionScope, partitionId: string, ownerId: string, etag: string | undefined): Promise<Ownership | undefined> {
    const blob = this.container.getBlockBlobClient(blobPrefix(scope, 'ownership') + partitionId);
    const metadata = { ownerid: ownerId };
    try {
      // With a version: If-Match, so a claim on a record another changed since it was read fails.
      // Without: If-None-Match: *, so of two first claims only one creates it (_blobstoragecs.py _upload_ownership).
      const written = etag
        ? await blob.setMetadata(metadata, { conditions: { ifMatch: etag } })
        : await blob.upload('', 0, { metadata, conditions: { ifNoneMatch: '*' } });
      return { partitionId, ownerId, lastModifiedMs: written.lastModified?.getTime() ?? Date.now(), etag: bareEtag(written.etag) };
    } catch (err) {
      if (lostRace(err)) return undefined;
      throw err;
    }
  }

  async listCheckpoints(scope: PartitionScope): Promise<Checkpoint[]> {
    const list: Checkpoint[] = [];
    const prefix = blobPrefix(scope, 'checkpoint');
    for await (const blob of this.container.listBlobsFlat({ prefix, includeMetadata: true })) {
      const sequenceNumber = Number.parseInt(blob.metadata?.sequencenumber ?? '', 10);
      const offset = blob.metadata?.offset;
      if (!Number.isInteger(sequenceNumber) || offset === undefined) continue;
      list.push({ partitionId: blob.name.slice(prefix.length), sequenceNumber, offset });
    }
    return list;
  }

  async updateCheckpoint(scope: PartitionScope, checkpoint: Checkpoint): Promise<void> {
    const blob = this.container.getBlockBlobClient(blobPrefix(scope, 'checkpoint') + checkpoint.partitionId);
    const metadata = { sequencenumber: String(checkpoint.sequenceNumber), offset: checkpoint.offset };
    await this.inContainer(() => this.writeCheckpoint(blob, metadata));
  }

  private async writeCheckpoint(blob: ReturnType<ContainerClient['getBlockBlobClient']>, metadata: Record<string, string>): Promise<void> {
    try {
      // Metadata first, the blob made only when missing: an upload on every checkpoint is slow on accounts
      // with soft delete or versioning (blobCheckpointStore.ts _setBlobMetadata, azure-sdk-for-js#10132).
      await blob.setMetadata(metadata);
    } catch (err) {
      if (restError(err).statusCode !== 404) throw err;
      await blob.upload('', 0, { metadata });
    }
  }
}
