/**
 * What a partition balancer needs from a checkpoint store: the ownership and checkpoint records of one
 * consumer group, as the official Event Hubs SDKs keep them (@azure/event-hubs src/eventProcessor.ts,
 * `CheckpointStore`; azure-eventhub `CheckpointStore`). The Blob implementation is blob-partition-store.ts.
 */

/** The consumer group whose records are meant, named as an EventHubConsumerClient names it. */
export interface PartitionScope {
  /** The Event Hubs namespace host, without a port (the SDKs' `fullyQualifiedNamespace`). */
  namespace: string;
  eventHub: string;
  consumerGroup: string;
}

export interface Ownership {
  partitionId: string;
  /** Empty when the owner gave the partition up on close (the SDKs' "abandoned"). */
  ownerId: string;
  /** When the claim was last written (the store's clock): a claim not renewed within the expiry lapses. */
  lastModifiedMs: number;
  /** The record's version: a claim names it, so of two readers claiming at once only one wins. */
  etag: string;
}

export interface Checkpoint {
  partitionId: string;
  /** The last event handled: reading resumes after it. */
  sequenceNumber: number;
  offset: string;
}

export interface PartitionStore {
  /** Makes the store usable (creates a missing container); rejects when it cannot be reached or used. */
  prepare(): Promise<void>;
  listOwnership(scope: PartitionScope): Promise<Ownership[]>;
  /**
   * Claims (or renews, or with an empty owner gives up) one partition. `etag` is the version last seen,
   * undefined when there was no record: the claim is lost (resolves undefined) when another wrote first.
   */
  claim(scope: PartitionScope, partitionId: string, ownerId: string, etag: string | undefined): Promise<Ownership | undefined>;
  listCheckpoints(scope: PartitionScope): Promise<Checkpoint[]>;
  updateCheckpoint(scope: PartitionScope, checkpoint: Checkpoint): Promise<void>;
}
