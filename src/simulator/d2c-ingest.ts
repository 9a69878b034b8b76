/**
 * Device-to-cloud intake: a device's transfer (single message or batch) checked against the limits and
 * the throttling fault, then stamped as IoT Hub stamps it and appended to the device's partition.
 * Separate from the link routing, which only decides that a link is a D2C link.
 */
import type { EventEmitter } from 'node:events';
import rhea = require('rhea');
import { messageSize } from '../amqp/message-rules';
import { copyMessage, settleIncoming, wrapLong } from './amqp';
import { encodeMessage } from './encode';
import type { SimulatorOptions } from './options';
import { partitionForDevice, type Partition, type StoredEvent } from './partitions';
import type { Registry } from './registry';
import type { HubStats } from './stats';
import type { StoredEventRecord } from './store';
import { THROTTLED, type Throttle } from './throttle';

export interface D2cEvent {
  deviceId: string;
  moduleId?: string;
  partitionId: string;
  event: StoredEvent;
  message: rhea.Message;
}

/** The auth-method annotation of a message from a device that authenticated with a SAS token. */
const SAS_AUTH_METHOD = JSON.stringify({ scope: 'device', type: 'sas', issuer: 'iothub', acceptingIpFilterRule: null });

export interface D2cIngestParts {
  options: SimulatorOptions;
  registry: Registry;
  partitions: Partition[];
  stats: HubStats;
  throttle: Throttle;
  /** Where 'd2c' events go (the hub), told only when someone listens. */
  events: Pick<EventEmitter, 'listenerCount' | 'emit'>;
  /** Journals a stored event (persistence), when there is a journal. */
  journal: (record: StoredEventRecord) => void;
}

export class D2cIngest {
  constructor(private readonly parts: D2cIngestParts) {}

  /** A transfer on a device's D2C link: settled here, accepted once every message in it is stored. */
  onTransfer(deviceId: string, moduleId: string | undefined, ctx: rhea.EventContext): void {
    const { options, throttle } = this.parts;
    const delivery = ctx.delivery as rhea.Delivery;
    let messages: rhea.Message[];
    const format = (ctx as unknown as { format?: number }).format;
    try {
      messages = format === 0x80013700 ? unpackBatch(ctx.message as unknown as Buffer) : [ctx.message as rhea.Message];
    } catch {
      settleIncoming(delivery, 'rejected', { condition: 'amqp:decode-error', description: 'The batch could not be decoded.' });
      return;
    }
    if (throttle.take()) {
      settleIncoming(delivery, 'rejected', THROTTLED);
      return;
    }
    const total = messages.reduce((n, m) => n + messageSize(m), 0);
    if (total > options.d2c.maxMessageBytes) {
      settleIncoming(delivery, 'rejected', {
        condition: 'amqp:link:message-size-exceeded',
        description: `The message is ${total} bytes; at most ${options.d2c.maxMessageBytes} are allowed.`,
      });
      return;
    }
    for (const message of messages) this.ingest(deviceId, moduleId, message);
    delivery.accept();
  }

  /** Stamps a device message as IoT Hub does and stores it in its partition. */
  ingest(deviceId: string, moduleId: string | undefined, message: rhea.Message): StoredEvent {
    const { registry, partitions, stats, events } = this.parts;
    const now = Date.now();
    const device = registry.getDevice(deviceId);
    const partition = partitions[partitionForDevice(deviceId, partitions.length)];
    const out = copyMessage(message);
    out.body = message.body ?? null;
    const event = partition.append(deviceId, now, (stamp) => {
      // Anti-spoofing: the identity annotations always come from the connection, never the device.
      const annotations: Record<string, unknown> = {
        ...(message.message_annotations ?? {}),
        'iothub-connection-device-id': deviceId,
        'iothub-connection-auth-method': SAS_AUTH_METHOD,
        'iothub-connection-auth-generation-id': device?.generationId ?? '',
        'iothub-enqueuedtime': new Date(stamp.enqueuedTime),
        'iothub-message-source': 'Telemetry',
        'x-opt-sequence-number': wrapLong(stamp.sequenceNumber),
        'x-opt-offset': String(stamp.offset),
        'x-opt-enqueued-time': new Date(stamp.enqueuedTime),
      };
      if (moduleId !== undefined) annotations['iothub-connection-module-id'] = moduleId;
      else delete annotations['iothub-connection-module-id'];
      out.message_annotations = annotations;
      return encodeMessage(out);
    });
    // Journaled before the delivery is accepted: what the client hears as accepted survives a restart.
    this.parts.journal({ partitionId: partition.id, ...event });
    stats.d2cAccepted++;
    if (events.listenerCount('d2c') > 0) {
      const info: D2cEvent = { deviceId, partitionId: partition.id, event, message: out };
      if (moduleId !== undefined) info.moduleId = moduleId;
      events.emit('d2c', info);
    }
    return event;
  }
}

/** A batch (message format 0x80013700): data sections, each a whole encoded message. */
function unpackBatch(payload: Buffer): rhea.Message[] {
  const outer = decode(payload);
  const body = outer.body as { typecode?: number; content?: unknown; multiple?: boolean } | undefined;
  if (!body || body.typecode !== 0x75) throw new Error('batch body is not data sections');
  const parts = body.multiple && Array.isArray(body.content) ? body.content : [body.content];
  return parts.map((part) => decode(part as Buffer));
}

/** One encoded message back to a message: a batch's parts, and the stored events and C2D entries. */
export function decode(bytes: Buffer): rhea.Message {
  return rhea.message.decode(bytes) as unknown as rhea.Message;
}
