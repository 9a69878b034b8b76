/**
 * telemetry-in: reads device telemetry from the built-in endpoint through a TelemetryReader
 * (src/iothub/telemetry-reader.ts): all partitions or a list, from a start position, resuming after the
 * last event handled (and, with a checkpoint store, across restarts). This maps the node's settings to
 * the reader's options, its events to msgs, statuses and log lines, and keeps checkpoints in a Node-RED
 * context store.
 */
import type { Node, NodeAPI, NodeDef } from 'node-red';
import type { StoredCheckpoints } from '../iothub/checkpoints';
import { HubError } from '../iothub/errors';
import type { StartPosition } from '../iothub/event-hub';
import { fromTelemetryEvent, type OutputMode } from '../iothub/message';
import { TelemetryReader, type CheckpointStore, type TelemetryReaderStatus } from '../iothub/telemetry-reader';
import { registerNode, sendMsg, useHub } from './adapter';
import { asError, positiveInt } from './common';
import { errorStatus, statusFor, type Status } from './status';

interface TelemetryInDef extends NodeDef {
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
  function TelemetryInNode(this: Node, def: TelemetryInDef): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const hub = useHub(RED, node, def.hub, { roles: ['local', 'service', 'gateway', 'eventhub'], what: 'telemetry-in', connectionStatus: false });
    if (!hub) return;
    const { config } = hub;
    const output: OutputMode = def.output === 'string' || def.output === 'json' || def.output === 'buffer' ? def.output : 'auto';
    const store = (def.checkpointStore ?? '').trim();
    let start: StartPosition;
    try {
      start = startPositionFrom(def);
    } catch (err) {
      const error = asError(err);
      node.status(errorStatus(error));
      node.error(error);
      hub.onClose();
      return;
    }
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
      checkpoints: store ? contextCheckpoints(node, store) : undefined,
    });
    reader.on('event', (event) => sendMsg(node, fromTelemetryEvent(event, output)));
    // The reader tells its state on every retry; the editor needs to hear of changes only.
    let shown = '';
    reader.on('status', (status) => {
      const next = statusOf(status);
      const key = `${next.fill}/${next.shape}/${next.text}`;
      if (key === shown) return;
      shown = key;
      node.status(next);
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
    reader.on('checkpointError', (operation, err) =>
      node.warn(operation === 'load' ? `checkpoints not read: ${err.message}` : `checkpoint not saved: ${err.message}`),
    );
    reader.start();
    hub.onClose(() => reader.close());
  }

  registerNode(RED, 'iothub-telemetry-in', TelemetryInNode);
}

module.exports = register;
module.exports.default = register;
