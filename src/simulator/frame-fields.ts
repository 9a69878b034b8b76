/**
 * Frames as Azure's AMQP stack writes them: every field of every described list present, nulls
 * included.
 *
 * rhea leaves trailing fields out (legal AMQP), and a field in the middle it was never given is a
 * hole. Microsoft.Azure.Amqp, the stack behind IoT Hub and Event Hubs, writes each described list
 * with all its fields, and clients built against it read fields by position: pyamqp (azure-eventhub
 * 5.x, `_incoming_begin` reads frame[4], `_incoming_attach` frame[11]..frame[13], a transfer's
 * payload after its 11 fields) fails with IndexError on rhea's short lists. So every frame the
 * simulator writes goes through `completeFrame`, which pads the lists rhea built, using rhea's own
 * types; nothing is encoded by hand.
 */
import rhea = require('rhea');

/**
 * Field count of each described list the simulator writes, by descriptor code (AMQP 1.0 part 2
 * §2.7 performatives, §2.8.14 error; part 3 §3.4 delivery states, §3.5.3 source, §3.5.4 target;
 * part 5 §5.3.3 SASL frames). A unit test checks these against rhea's own frame definitions.
 */
export const LIST_FIELD_COUNTS: ReadonlyMap<number, number> = new Map([
  [0x10, 10], // open
  [0x11, 8], // begin
  [0x12, 14], // attach
  [0x13, 11], // flow
  [0x14, 11], // transfer
  [0x15, 6], // disposition
  [0x16, 3], // detach
  [0x17, 1], // end
  [0x18, 1], // close
  [0x1d, 3], // error
  [0x23, 2], // received
  [0x24, 0], // accepted
  [0x25, 1], // rejected
  [0x26, 0], // released
  [0x27, 3], // modified
  [0x28, 11], // source
  [0x29, 7], // target
  [0x40, 1], // sasl-mechanisms
  [0x41, 3], // sasl-init
  [0x42, 1], // sasl-challenge
  [0x43, 1], // sasl-response
  [0x44, 2], // sasl-outcome
]);

/** rhea's typed value (lib/types.js `Typed`): a list's `value` holds its typed items. */
interface Typed {
  type: { typecode: number };
  value: unknown;
  descriptor?: { value: unknown };
}

/** A performative as rhea queues it: a composite whose `described()` makes the typed list. */
interface Composite {
  described(): Typed;
}

interface QueuedFrame {
  performative?: Composite | Typed;
  [key: string]: unknown;
}

interface FrameQueue {
  encode(frame: QueuedFrame): void;
}

const LIST_CODES = new Set([0x45, 0xc0, 0xd0]);

const types = rhea.types as unknown as {
  Null(): Typed;
  List32(items: Typed[]): Typed;
};

function isTyped(value: unknown): value is Typed {
  return typeof value === 'object' && value !== null && 'type' in value && typeof (value as Typed).type === 'object';
}

/** A described list with all its fields, recursively for the described lists inside it. */
export function completeTyped(value: Typed): Typed {
  const code = value.descriptor ? Number(value.descriptor.value) : NaN;
  const count = LIST_FIELD_COUNTS.get(code);
  if (count === undefined || !LIST_CODES.has(value.type.typecode)) return value;
  const given = Array.isArray(value.value) ? (value.value as unknown[]) : [];
  const items: Typed[] = [];
  for (let i = 0; i < Math.max(count, given.length); i++) {
    const item = given[i];
    items.push(isTyped(item) ? completeTyped(item) : types.Null());
  }
  if (items.length === 0) return value;
  const list = types.List32(items);
  list.descriptor = value.descriptor;
  return list;
}

/** The frame with its performative as a complete typed list (the frame writer takes either form). */
export function completeFrame<F extends QueuedFrame>(frame: F): F {
  const p = frame.performative;
  if (!p) return frame;
  const typed = isTyped(p) ? p : p.described();
  return { ...frame, performative: completeTyped(typed) };
}

function completeQueue(queue: FrameQueue | undefined): void {
  if (!queue) return;
  const encode = queue.encode.bind(queue);
  queue.encode = (frame) => encode(completeFrame(frame));
}

/** rhea's per-connection frame queues: the AMQP one, and the SASL server's when it negotiates SASL. */
interface ConnectionQueues {
  amqp_transport?: FrameQueue;
  sasl_transport?: { transport?: FrameQueue; transports?: Record<number, { transport?: FrameQueue } | undefined> };
}

/**
 * Makes an accepted connection write complete frames from now on. Call it after rhea's `accept`: the
 * SASL layer exists only then. Its first frame, sasl-mechanisms, has a single mandatory field and so
 * is complete already.
 */
export function writeEveryField(connection: rhea.Connection): void {
  const queues = connection as unknown as ConnectionQueues;
  completeQueue(queues.amqp_transport);
  const sasl = queues.sasl_transport;
  completeQueue(sasl?.transport ?? sasl?.transports?.[3]?.transport);
}
