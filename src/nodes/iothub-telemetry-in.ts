/**
 * telemetry-in: reads device telemetry from the built-in endpoint through a TelemetryReader
 * (src/iothub/telemetry-reader.ts): all partitions or a list, from a start position, resuming after the
 * last event handled (and, with a checkpoint store, across restarts). This maps the node's settings to
 * the reader's options, its events to msgs, statuses and log lines, and keeps checkpoints in a Node-RED
 * context store.
 */
import { randomUUID } from 'node:crypto';
import * as os from 'node:os';
import type { Node, NodeAPI, NodeDef } from 'node-red';
import { BlobPartitionStore } from '../iothub/blob-partition-store';
import type { StoredCheckpoints } from '../iothub/checkpoints';
import { HubError } from '../iothub/errors';
import { EventBatcher } from '../iothub/event-batcher';
import type { StartPosition } from '../iothub/event-hub';
import { fromTelemetryBatch, fromTelemetryEvent, type OutputMode } from '../iothub/message';
import { TelemetryReader, type BalancedReading, type CheckpointStore, type TelemetryReaderStatus } from '../iothub/telemetry-reader';
import { onInput, registerNode, sendMsg, useHub } from './adapter';
import { asError, positiveInt } from './common';
import { errorStatus, statusFor, type Status } from './status';
import { batchFrom, blobSettingsFrom, checkpointPolicyFrom, type TelemetrySettings } from './telemetry-settings';

interface TelemetryInDef extends NodeDef, TelemetrySettings {
  hub: string;
  consumerGroup?: string;
  partitions?: string;
  startPosition?: 'latest' | 'earliest' | 'enqueuedTime' | 'sequenceNumber';
  startValue?: string;
  checkpointStore?: string;
  output?: OutputMode;
  prefetch?: number | string;
  ownerLevel?: number | string;
}

export const CHECKPOINT_KEY = 'iothub-telemetry-in-checkpoints';

const RECEIVER_LIMIT: Status = { fill: 'red', shape: 'ring', text: 'iothub-telemetry-in.status.receiverLimit' };
/** Reading goes on from memory; checkpoints and ownership catch up when the store is back. */
const STORE_UNREACHABLE: Status = { fill: 'yellow', shape: 'dot', text: 'iothub-telemetry-in.status.store-unreachable' };
/** Balanced, and every partition is another reader's: this one stands by to take over. */
const STANDBY: Status = { fill: 'blue', shape: 'ring', text: 'iothub-telemetry-in.status.standby' };

interface TelemetryInCredentials {
  storageConnectionString?: string;
}

/** The checkpoint a msg names: as telemetry-in sent it (a single event or a batch's last), back from the flow. */
function checkpointOf(msg: Record<string, unknown>, needsOffset: boolean): { partitionId: string; sequenceNumber: number; offset: string } | undefined {
  const { partitionId, sequenceNumber, offset } = msg;
  if (typeof partitionId !== 'string' || typeof sequenceNumber !== 'number' || !Number.isInteger(sequenceNumber)) return undefined;
  // The SDKs resume a partition from a Blob checkpoint's offset: one without it would break their reading.
  if (needsOffset && (typeof offset !== 'string' || offset === '')) return undefined;
  return { partitionId, sequenceNumber, offset: typeof offset === 'string' ? offset : '' };
}

/** This reader's name in the ownership records: the machine, and unique per start. */
function ownerIdFor(node: Node): string {
  return `node-red-${os.hostname()}-${node.id}-${randomUUID().slice(0, 8)}`;
}

export function startPositionFrom(def: Pick<TelemetryInDef, 'startPosition' | 'startValue'>): StartPosition {
  switch (def.startPosition) {
    case 'earliest':
      return { kind: 'earliest' };
    case 'enqueuedTime': {
      const text = (def.startValue ?? '').trim();
      const ms = /^\d+$/.test(text) ? Number(text) : Date.parse(text);
      if (!Number.isFinite(ms)) throw new HubError('InvalidConfig', 'start position "enqueued time" needs an ISO date or epoch milliseconds');
      return { kind: 'enqueuedTime', value: ms };
    }
    case 'sequenceNumber': {
      const n = Number((def.startValue ?? '').trim());
      if (!Number.isInteger(n) || n < 0) throw new HubError('InvalidConfig', 'start position "sequence number" needs a whole number');
      return { kind: 'sequenceNumber', value: n };
    }
    default:
      return { kind: 'latest' };
  }
}

/** Checkpoints in the node's context, in the named context store. */
function contextCheckpoints(node: Node, store: string): CheckpointStore {
  return {
    load: () =>
      new Promise((resolve, reject) => {
        node.context().get(CHECKPOINT_KEY, store, (err: Error | undefined, value: unknown) => (err ? reject(err) : resolve(value)));
      }),
    save: (checkpoints: StoredCheckpoints) =>
      new Promise((resolve, reject) => {
        node.context().set(CHECKPOINT_KEY, checkpoints, store, (err?: Error) => (err ? reject(err) : resolve()));
      }),
  };
}

function statusOf(status: TelemetryReaderStatus): Status {
  switch (status.kind) {
    case 'connection':
      return statusFor(status.state, status.error);
    case 'receiverLimit':
      return RECEIVER_LIMIT;
    case 'failed':
      return errorStatus(status.error);
  }
}

export default function register(RED: NodeAPI): void {
  function TelemetryInNode(this: Node<TelemetryInCredentials>, def: TelemetryInDef): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const hub = useHub(RED, node, def.hub, { roles: ['local', 'service', 'gateway', 'eventhub'], what: 'telemetry-in', connectionStatus: false });
    if (!hub) return;
    const { config } = hub;
    const output: OutputMode = def.output === 'string' || def.output === 'json' || def.output === 'buffer' ? def.output : 'auto';
    const store = (def.checkpointStore ?? '').trim();
    let start: StartPosition;
    let balance: BalancedReading | undefined;
    try {
      start = startPositionFrom(def);
      if (def.checkpointKind === 'blob') {
        const blob = blobSettingsFrom(def, node.credentials?.storageConnectionString, process.env);
        const ownerId = ownerIdFor(node);
        balance = {
          store: () => BlobPartitionStore.open(blob.connectionString, blob.container),
          ownerId,
          updateIntervalMs: blob.updateIntervalMs,
          expiryMs: blob.expiryMs,
        };
        // The name this reader has in the ownership blobs: how an operator tells the readers apart.
        node.log(`partitions balanced through Blob container "${blob.container}" as owner ${ownerId}`);
      }
    } catch (err) {
      const error = asError(err);
      node.status(errorStatus(error));
      node.error(error);
      hub.onClose();
      return;
    }
    const batch = batchFrom(def);
    const reader = new TelemetryReader({
      connection: () => config.connection(),
      connectionOptions: () => config.connectionOptions(),
      consumerGroup: (def.consumerGroup ?? '').trim() || '$Default',
      partitions: (def.partitions ?? '')
        .split(',')
        .map((p) => p.trim())
        .filter((p) => p !== ''),
      start,
      prefetch: positiveInt(def.prefetch, 300),
      ownerLevel: def.ownerLevel === undefined || def.ownerLevel === '' ? undefined : Number(def.ownerLevel),
      checkpoints: store && !balance ? contextCheckpoints(node, store) : undefined,
      balance,
      checkpointPolicy: checkpointPolicyFrom(def),
      // Batches are checkpointed as they are sent, not as their events arrive: an event still waiting
      // in an open batch when Node-RED dies must be read again.
      explicitCheckpoints: def.checkpointMode === 'msg' || batch.size > 1,
    });
    let batcher: EventBatcher | undefined;
    if (batch.size > 1) {
      const batches = new EventBatcher(batch.size, batch.waitMs);
      const auto = def.checkpointMode !== 'msg';
      batches.on('batch', (partitionId, events) => {
        const msg = fromTelemetryBatch(partitionId, events, output);
        sendMsg(node, msg);
        if (auto) reader.checkpoint(partitionId, msg.sequenceNumber, msg.offset ?? '');
      });
      reader.on('event', (event) => batches.add(event));
      batcher = batches;
    } else {
      reader.on('event', (event) => sendMsg(node, fromTelemetryEvent(event, output)));
    }
    // The reader tells its state on every retry; the editor needs to hear of changes only.
    let shown = '';
    let connection: Status = { fill: 'yellow', shape: 'ring', text: 'node-red:common.status.connecting' };
    let storeDown = false;
    let standby = false;
    const show = (): void => {
      const connected = connection.fill === 'green';
      const next = connected && storeDown ? STORE_UNREACHABLE : connected && standby ? STANDBY : connection;
      const key = `${next.fill}/${next.shape}/${next.text}`;
      if (key === shown) return;
      shown = key;
      node.status(next);
    };
    reader.on('status', (status) => {
      connection = statusOf(status);
      show();
    });
    reader.on('ownership', (owned) => {
      standby = owned.length === 0;
      show();
    });
    reader.on('checkpointRecovered', () => {
      if (!storeDown) return;
      storeDown = false;
      node.log('checkpoint store reachable again: checkpoints and ownership catch up');
      show();
    });
    reader.on('partitionError', (partitionId, err) => {
      let text = `partition ${partitionId}: ${err.code}: ${err.message}`;
      if (err.code === 'ReceiverLimitExceeded') {
        // Five readers share the consumer group here already (other flows, other programs).
        text += ' Give this node a consumer group of its own (Azure portal: IoT Hub > Built-in endpoints), or stop a reader that shares this one.';
      }
      node.warn(text);
    });
    reader.on('reset', (partitionId, after, err) => {
      node.warn(
        `partition ${partitionId}: the checkpoint (after sequence number ${after}) is past the end of the partition (${err.message}); the hub was recreated or the checkpoints are another hub's: reading starts over from the node's start position`,
      );
    });
    reader.on('retrying', (err, attempt) => {
      if (attempt === 0) node.warn(`${err.code}: ${err.message}; trying again`);
    });
    reader.on('failed', (err) => node.error(asError(err)));
    reader.on('checkpointError', (operation, err) => {
      if (balance) {
        // Told once until the store answers again: a store that is down fails every round.
        if (storeDown) return;
        storeDown = true;
        show();
        node.warn(`checkpoint store: ${err.message}; reading goes on from memory, checkpoints are written when it is back`);
        return;
      }
      node.warn(operation === 'load' ? `checkpoints not read: ${err.message}` : `checkpoint not saved: ${err.message}`);
    });
    // A msg back from the flow (the msg telemetry-in sent, or one with its partitionId, sequenceNumber and
    // offset) says the flow has handled everything up to that event: it is the partition's next checkpoint.
    onInput(node, (msg, _send, done) => {
      const checkpoint = checkpointOf(msg as unknown as Record<string, unknown>, balance !== undefined);
      if (!checkpoint) {
        const fields = balance ? 'msg.partitionId, msg.sequenceNumber and msg.offset' : 'msg.partitionId (text) and msg.sequenceNumber (a whole number)';
        done(new HubError('InvalidMessage', `a checkpoint msg needs ${fields}, as telemetry-in sent them`));
        return;
      }
      // A partition another reader took over meanwhile is not this one's to write: that reader reads
      // from the last checkpoint written, so the events since are repeated, never lost.
      reader.checkpoint(checkpoint.partitionId, checkpoint.sequenceNumber, checkpoint.offset);
      done();
    });
    reader.start();
    hub.onClose(async () => {
      batcher?.close();
      await reader.close();
    });
  }

  registerNode(RED, 'iothub-telemetry-in', TelemetryInNode, { credentials: { storageConnectionString: { type: 'password' } } });
}

module.exports = register;
module.exports.default = register;
