/**
 * The Event Hubs-compatible surface of the built-in endpoint: partition readers with selector
 * filters and owner levels (epochs), and `$management` READ for the hub and its partitions.
 */
import { randomUUID } from 'node:crypto';
import type * as rhea from 'rhea';
import { remoteAttach } from '../amqp/rhea-internals';
import { parseSelector, selectorIn, type StartFilter } from '../amqp/selector-filter';
import { hasCredit, sendCounted, wrapInt, wrapLong, type AmqpError } from './amqp';
import type { Partition } from './partitions';

const MAX_NON_EPOCH_READERS = 5;

/** The selector expression from a receiver's source filter, if any. */
export function selectorOf(link: rhea.Sender): string | undefined {
  return selectorIn(remoteAttach(link).source?.filter);
}

/** First sequence number a reader with this filter gets. */
export function startSequence(partition: Partition, filter: StartFilter | undefined): number {
  if (!filter) return partition.beginSequence;
  switch (filter.kind) {
    case 'offset': {
      if (filter.value === '@latest') return partition.endSequence;
      const offset = Number(filter.value);
      if (!Number.isFinite(offset) || offset < 0) return partition.beginSequence;
      return partition.firstWhere((e) => (filter.inclusive ? e.offset >= offset : e.offset > offset));
    }
    case 'sequence': {
      const first = filter.inclusive ? filter.value : filter.value + 1;
      return Math.min(Math.max(first, partition.beginSequence), partition.endSequence);
    }
    case 'time':
      return partition.firstWhere((e) => (filter.inclusive ? e.enqueuedTime >= filter.value : e.enqueuedTime > filter.value));
  }
}

/**
 * A sequence-number filter past the end of the partition (a checkpoint from a recreated hub, or from
 * another hub) is refused as Event Hubs refuses it: "The supplied sequence number 'X' is invalid. The
 * last sequence number in the system is 'Y'" (Azure/azure-event-hubs-spark#315), with
 * `com.microsoft:argument-error` on the receiver's detach (the Java client of that report maps it from
 * ARGUMENT_ERROR in ExceptionUtil). Starting at the very next event (`>= last + 1`) is allowed.
 */
/**
 * Event Hubs ends its error descriptions with a tracking id and a time stamp, different every time
 * (the texts quoted in azure-sdk-for-java#38117 and azure-event-hubs-spark#315): a client must not take
 * two of the same refusal for two different ones.
 */
function tracking(entity: string): string {
  return ` TrackingId:${randomUUID()}, SystemTracker:${entity}, Timestamp:${new Date().toISOString()}`;
}

function pastTheEnd(partition: Partition, filter: StartFilter | undefined, entity: string): AmqpError | undefined {
  if (filter?.kind !== 'sequence') return undefined;
  const first = filter.inclusive ? filter.value : filter.value + 1;
  if (first <= partition.endSequence) return undefined;
  return {
    condition: 'com.microsoft:argument-error',
    description: `The supplied sequence number '${filter.value}' is invalid. The last sequence number in the system is '${partition.endSequence - 1}'${tracking(entity)}`,
  };
}

interface Reader {
  sender: rhea.Sender;
  partition: Partition;
  key: string;
  epoch?: number;
  cursor: number;
  unsubscribe: () => void;
}

export class EventHubSurface {
  private readonly readers = new Map<rhea.Sender, Reader>();
  private readonly byPartition = new Map<string, Set<Reader>>();

  constructor(
    readonly entityName: string,
    private readonly partitions: Partition[],
    private readonly consumerGroups: Set<string>,
    private readonly createdAt: Date,
    /** Detaches a link with an error (the hub owns link bookkeeping). */
    private readonly detach: (sender: rhea.Sender, error: AmqpError) => void,
  ) {}

  /** Readers attached now (for tests that must wait until a reader is in place). */
  get readerCount(): number {
    return this.readers.size;
  }

  /**
   * Readers attached to one partition of a consumer group now. A partition handed over between
   * balanced processors has two for a moment (the old owner's link until the new one's attach takes
   * it over): tests that count repeats wait until hand-overs are finished.
   */
  readersOf(consumerGroup: string, partitionId: string): number {
    return this.byPartition.get(`${consumerGroup.toLowerCase()}/${partitionId}`)?.size ?? 0;
  }

  hasConsumerGroup(name: string): boolean {
    return this.consumerGroups.has(name.toLowerCase());
  }

  /** Starts a reader; returns the error to detach it with instead, if it may not read. */
  attachReader(sender: rhea.Sender, consumerGroup: string, partitionId: string): AmqpError | undefined {
    if (!this.hasConsumerGroup(consumerGroup)) {
      return { condition: 'amqp:not-found', description: `The consumer group '${consumerGroup}' does not exist.` };
    }
    const partition = this.partitions.find((p) => p.id === partitionId);
    if (!partition) {
      return { condition: 'amqp:not-found', description: `The partition '${partitionId}' does not exist.` };
    }
    const expression = selectorOf(sender);
    const filter = expression === undefined ? undefined : parseSelector(expression);
    if (expression !== undefined && !filter) {
      return { condition: 'com.microsoft:argument-error', description: `Unsupported filter expression: ${expression.slice(0, 100)}` };
    }
    const beyond = pastTheEnd(partition, filter, this.entityName);
    if (beyond) return beyond;
    const epochValue: unknown = remoteAttach(sender).properties?.['com.microsoft:epoch'];
    const epoch = typeof epochValue === 'number' ? epochValue : undefined;
    const key = `${consumerGroup.toLowerCase()}/${partitionId}`;
    const peers = this.byPartition.get(key) ?? new Set<Reader>();
    const epochs = [...peers].map((r) => r.epoch).filter((e): e is number => e !== undefined);
    const highest = epochs.length > 0 ? Math.max(...epochs) : undefined;
    if (epoch === undefined) {
      if (highest !== undefined) {
        return { condition: 'amqp:link:stolen', description: `A receiver with owner level ${highest} is reading this partition.` };
      }
      if (peers.size >= MAX_NON_EPOCH_READERS) {
        // Event Hubs' own words (azure-sdk-for-java#38117; event-hubs-quotas: 5 readers per partition and group).
        const names = [...peers].map((r) => r.sender.name).join(', ');
        return {
          condition: 'amqp:resource-limit-exceeded',
          description: `Exceeded the maximum number of allowed receivers per partition in a consumer group which is ${MAX_NON_EPOCH_READERS}. List of connected receivers - ${names}.${tracking(this.entityName)}`,
        };
      }
    } else {
      if (highest !== undefined && epoch < highest) {
        return { condition: 'amqp:link:stolen', description: `A receiver with a higher owner level (${highest}) is reading this partition.` };
      }
      // An equal owner level takes over too, as Event Hubs does ("New receiver with higher epoch of '0' is
      // created hence current receiver with epoch '0' is getting disconnected"): the SDKs' balanced
      // processors all attach with owner level 0 and rely on it to hand a partition over.
      for (const peer of peers) {
        if (peer.epoch === undefined || peer.epoch <= epoch) {
          this.detachReader(peer.sender);
          this.detach(peer.sender, {
            condition: 'amqp:link:stolen',
            description: `New receiver with owner level ${epoch} took over this partition.`,
          });
        }
      }
    }
    const reader: Reader = { sender, partition, key, cursor: startSequence(partition, filter), unsubscribe: () => undefined };
    if (epoch !== undefined) reader.epoch = epoch;
    reader.unsubscribe = partition.onAppend(() => this.pump(reader));
    this.readers.set(sender, reader);
    const set = this.byPartition.get(key) ?? new Set<Reader>();
    set.add(reader);
    this.byPartition.set(key, set);
    this.pump(reader);
    return undefined;
  }

  detachReader(sender: rhea.Sender): void {
    const reader = this.readers.get(sender);
    if (!reader) return;
    reader.unsubscribe();
    this.readers.delete(sender);
    const set = this.byPartition.get(reader.key);
    set?.delete(reader);
    if (set && set.size === 0) this.byPartition.delete(reader.key);
  }

  onSendable(sender: rhea.Sender): void {
    const reader = this.readers.get(sender);
    if (reader) this.pump(reader);
  }

  private pump(reader: Reader): void {
    const { sender, partition } = reader;
    if (reader.cursor < partition.beginSequence) reader.cursor = partition.beginSequence;
    while (reader.cursor < partition.endSequence && hasCredit(sender)) {
      const event = partition.at(reader.cursor);
      reader.cursor += 1;
      // Format 0 with a buffer: rhea sends the bytes encoded on arrival as they are.
      if (event) sendCounted(sender, event.encoded, undefined, 0);
    }
  }

  /** Answers a `$management` request; returns the response's application properties and body. */
  management(request: rhea.Message): { status: number; description: string; body?: Record<string, unknown> } {
    const props = (request.application_properties ?? {}) as Record<string, unknown>;
    if (props.operation !== 'READ') return { status: 400, description: `Unsupported operation '${String(props.operation)}'.` };
    if (typeof props.name !== 'string' || props.name.toLowerCase() !== this.entityName.toLowerCase()) {
      return { status: 404, description: `The messaging entity '${String(props.name)}' could not be found.` };
    }
    if (props.type === 'com.microsoft:eventhub') {
      return {
        status: 200,
        description: 'OK',
        body: {
          name: this.entityName,
          type: 'com.microsoft:eventhub',
          created_at: this.createdAt,
          partition_count: wrapInt(this.partitions.length),
          partition_ids: this.partitions.map((p) => p.id),
        },
      };
    }
    if (props.type === 'com.microsoft:partition') {
      const partition = this.partitions.find((p) => p.id === String(props.partition));
      if (!partition) return { status: 404, description: `The partition '${String(props.partition)}' does not exist.` };
      const last = partition.lastEvent();
      return {
        status: 200,
        description: 'OK',
        body: {
          name: this.entityName,
          type: 'com.microsoft:partition',
          partition: partition.id,
          begin_sequence_number: wrapLong(partition.beginSequence),
          last_enqueued_sequence_number: wrapLong(last ? last.sequenceNumber : -1),
          last_enqueued_offset: last ? String(last.offset) : '-1',
          last_enqueued_time_utc: new Date(last ? last.enqueuedTime : 0),
          is_partition_empty: partition.size === 0,
        },
      };
    }
    return { status: 400, description: `Unsupported type '${String(props.type)}'.` };
  }

  close(): void {
    for (const reader of this.readers.values()) reader.unsubscribe();
    this.readers.clear();
    this.byPartition.clear();
  }
}
