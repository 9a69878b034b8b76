/**
 * telemetry-in: reads device telemetry from the built-in endpoint. With an IoT Hub connection it
 * follows the hub's redirect to the Event Hubs-compatible endpoint (a second connection, owned here);
 * with an Event Hubs connection string it reads there directly. All partitions or a list, from a start
 * position, resuming after the last event handled (and, with a checkpoint store, across restarts).
 */
import type { Node, NodeAPI, NodeDef } from 'node-red';
import type { EventHubIdentity } from '../iothub/connection-string';
import { backoffDelay } from '../iothub/backoff';
import { checkpointKey, readCheckpoints, writeCheckpoints } from '../iothub/checkpoints';
import { HubError } from '../iothub/errors';
import {
  discoverEventHub,
  eventHubConnectionOptions,
  eventHubIdentity,
  PartitionReaders,
  readPartitionIds,
  type StartPosition,
  type TelemetryEvent,
} from '../iothub/event-hub';
import { HubConnection, type HubConnectionOptions, type HubState } from '../iothub/hub-connection';
import { fromAmqpMessage, type IncomingFields, type OutputMode } from '../iothub/message';
import { registerNode, useHub } from './adapter';
import { asError, positiveInt } from './common';
import { statusFor } from './status';

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
const CHECKPOINT_EVERY_MS = 1000;

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

export default function register(RED: NodeAPI): void {
  function TelemetryInNode(this: Node, def: TelemetryInDef): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const hub = useHub(RED, node, def.hub, { roles: ['local', 'service', 'gateway', 'eventhub'], what: 'telemetry-in', connectionStatus: false });
    const { config } = hub;
    const output: OutputMode = def.output === 'string' || def.output === 'json' || def.output === 'buffer' ? def.output : 'auto';
    const consumerGroup = (def.consumerGroup ?? '').trim() || '$Default';
    const wanted = (def.partitions ?? '').split(',').map((p) => p.trim()).filter((p) => p !== '');
    const prefetch = positiveInt(def.prefetch, 300);
    const ownerLevel = def.ownerLevel === undefined || def.ownerLevel === '' ? undefined : Number(def.ownerLevel);
    const store = (def.checkpointStore ?? '').trim();
    let ownConnection: HubConnection | undefined;
    let readers: PartitionReaders | undefined;
    let closed = false;
    let checkpointTimer: NodeJS.Timeout | undefined;
    // Listens on a connection this node may not own (an Event Hubs config's shared one): removed on close.
    let watched: HubConnection | undefined;
    // Partitions refused because five readers share them already: the status says so while any is.
    const crowded = new Set<string>();
    const RECEIVER_LIMIT = { fill: 'red', shape: 'ring', text: 'iothub-telemetry-in.status.receiverLimit' } as const;
    const onState = (state: HubState, error?: HubError): void => {
      if (!closed) node.status(state === 'open' && crowded.size > 0 ? RECEIVER_LIMIT : statusFor(state, error));
    };

    // The endpoint and consumer group being read: checkpoints are kept under it (see checkpoints.ts).
    let endpointKey: string | undefined;
    // What the store held when read: positions of other endpoints are written back untouched.
    let storedValue: unknown;

    const saveCheckpoints = (): void => {
      if (!store || !readers || endpointKey === undefined) return;
      storedValue = writeCheckpoints(storedValue, endpointKey, readers.positions());
      node.context().set(CHECKPOINT_KEY, storedValue, store, (err?: Error) => {
        if (err) node.warn(`checkpoint not saved: ${err.message}`);
      });
    };

    const loadCheckpoints = (key: string): Promise<Record<string, number>> =>
      new Promise((resolve) => {
        if (!store) {
          resolve({});
          return;
        }
        node.context().get(CHECKPOINT_KEY, store, (err: Error | undefined, value: unknown) => {
          if (err) node.warn(`checkpoints not read: ${err.message}`);
          storedValue = value;
          resolve(readCheckpoints(value, key));
        });
      });

    const emit = (event: TelemetryEvent): void => {
      const msg = fromAmqpMessage(event.message, output) as IncomingFields & Record<string, unknown>;
      const annotations = (event.message.message_annotations ?? {}) as Record<string, unknown>;
      const offset = annotations['x-opt-offset'];
      // systemProperties holds the enqueued time already made an ISO string.
      const enqueued = msg.systemProperties['x-opt-enqueued-time'];
      msg.partitionId = event.partitionId;
      msg.sequenceNumber = event.sequenceNumber;
      if (offset !== undefined) msg.offset = String(offset);
      if (typeof enqueued === 'string') msg.enqueuedTime = enqueued;
      node.send(msg);
      if (store && !checkpointTimer) {
        checkpointTimer = setTimeout(() => {
          checkpointTimer = undefined;
          saveCheckpoints();
        }, CHECKPOINT_EVERY_MS);
      }
    };

    const start = async (): Promise<void> => {
      if (!config) return;
      const position = startPositionFrom(def);
      const base = await config.connectionOptions();
      let connection: HubConnection;
      let entityPath: string;
      if (config.role === 'eventhub') {
        connection = await config.connection();
        if (closed) return;
        entityPath = (connection.identity as EventHubIdentity).entityPath;
      } else {
        const hubConnection = await config.connection();
        const redirect = await discoverEventHub(hubConnection, base.operationTimeoutMs);
        if (closed) return;
        ownConnection = new HubConnection(eventHubIdentity(hubConnection.identity, redirect), eventHubConnectionOptions(base, redirect));
        connection = ownConnection;
        entityPath = redirect.entityPath;
      }
      watched = connection;
      connection.on('state', onState);
      node.status(statusFor(connection.state === 'idle' ? 'connecting' : connection.state));
      const partitions = wanted.length > 0 ? wanted : await readPartitionIds(connection, entityPath, base.operationTimeoutMs);
      if (closed) return;
      endpointKey = checkpointKey(connection.identity.host, entityPath, consumerGroup);
      const resumeAfter = await loadCheckpoints(endpointKey);
      if (closed) return;
      readers = new PartitionReaders(connection, entityPath, { consumerGroup, partitions, start: position, prefetch, ownerLevel, resumeAfter });
      readers.on('event', emit);
      // One warning per partition for each new reason, not one for every retry of the same failure.
      const lastWarning = new Map<string, string>();
      readers.on('partition', (partitionId: string, state: string, err?: HubError) => {
        if (state === 'attached') {
          lastWarning.delete(partitionId);
          if (crowded.delete(partitionId) && crowded.size === 0) node.status(statusFor(connection.state));
        }
        if (state !== 'detached' || !err || err.code === 'NotConnected') return;
        let text = `partition ${partitionId}: ${err.code}: ${err.message}`;
        if (err.code === 'ReceiverLimitExceeded') {
          // Five readers share the consumer group here already (other flows, other programs): this one
          // keeps trying, and says what would let it in.
          crowded.add(partitionId);
          node.status(RECEIVER_LIMIT);
          text += ' Give this node a consumer group of its own (Azure portal: IoT Hub > Built-in endpoints), or stop a reader that shares this one.';
        }
        // The service's descriptions end with a tracking id and a time stamp that differ each time:
        // the same refusal is known by its code and condition.
        const reason = `${err.code}|${err.condition ?? ''}`;
        if (lastWarning.get(partitionId) === reason) return;
        lastWarning.set(partitionId, reason);
        node.warn(text);
      });
      readers.on('reset', (partitionId: string, after: number, err: HubError) => {
        node.warn(`partition ${partitionId}: the checkpoint (after sequence number ${after}) is past the end of the partition (${err.message}); the hub was recreated or the checkpoints are another hub's: reading starts over from the node's start position`);
        saveCheckpoints();
      });
      if (connection.state === 'open') node.status(statusFor('open'));
    };

    // A start that fails for a passing reason (the hub unreachable when the flow was deployed, an
    // answer that did not come in time) is tried again with backoff, as the connection itself is.
    let attempts = 0;
    let retryTimer: NodeJS.Timeout | undefined;
    const begin = (): void => {
      start().then(
        () => {
          attempts = 0;
        },
        (err: unknown) => {
          // Stopped while starting: whatever failed was this node's own close, not the user's problem.
          if (closed) return;
          const error = asError(err);
          node.status({ fill: 'red', shape: 'ring', text: error.code });
          watched?.removeListener('state', onState);
          watched = undefined;
          const partial = ownConnection;
          ownConnection = undefined;
          void partial?.close().catch(() => undefined);
          if (!error.retryable || !config) {
            node.error(error);
            return;
          }
          if (attempts === 0) node.warn(`${error.code}: ${error.message}; trying again`);
          const options: Promise<HubConnectionOptions> = config.connectionOptions().catch(() => ({}));
          void options.then((o) => {
            if (closed) return;
            retryTimer = setTimeout(() => {
              retryTimer = undefined;
              if (!closed) begin();
            }, backoffDelay(attempts++, { minMs: o.reconnectMinMs ?? 1000, maxMs: o.reconnectMaxMs ?? 60_000 }));
          });
        },
      );
    };

    if (config) begin();

    hub.onClose(() => {
      closed = true;
      if (retryTimer) clearTimeout(retryTimer);
      retryTimer = undefined;
      if (checkpointTimer) clearTimeout(checkpointTimer);
      checkpointTimer = undefined;
      saveCheckpoints();
      watched?.removeListener('state', onState);
      watched = undefined;
      const closing = [readers?.close(), ownConnection?.close()];
      readers = undefined;
      ownConnection = undefined;
      return Promise.all(closing);
    });
  }

  registerNode(RED, 'iothub-telemetry-in', TelemetryInNode);
}

module.exports = register;
module.exports.default = register;
