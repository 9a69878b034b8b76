/**
 * Encoding a stored event: the simulator encodes every D2C message it accepts once, with the hub's
 * annotations, and that is most of its work per message. rhea's `message.encode` starts each message
 * in a fresh zero-filled 1 KB buffer and grows it by copying; here the sections rhea would write go
 * into one scratch buffer that is kept, and only the exact bytes are copied out.
 */
import rhea = require('rhea');

interface Described {
  described(): unknown;
}
interface Body {
  collect_sections?: (sections: unknown[]) => void;
}
interface Writer {
  buffer: Buffer;
  position: number;
  write(value: unknown): void;
}

const composites = rhea.message as unknown as { header(fields: object): Described; properties(fields: object): Described };
const types = rhea.types as unknown as {
  Writer: new (buffer?: Buffer) => Writer;
  described_nc(descriptor: unknown, value: unknown): unknown;
  described(descriptor: unknown, value: unknown): unknown;
  wrap(value: unknown): unknown;
  wrap_ulong(n: number): unknown;
  wrap_map(map: object): unknown;
  wrap_symbolic_map(map: object): unknown;
};

const MESSAGE_ANNOTATIONS = 0x72;
const APPLICATION_PROPERTIES = 0x74;
const AMQP_VALUE = 0x77;

let scratch: Buffer = Buffer.allocUnsafe(64 * 1024);

/** The AMQP encoding of a message, section for section what `rhea.message.encode` writes. */
export function encodeMessage(message: rhea.Message): Buffer {
  const sections: unknown[] = [composites.header(message).described()];
  if (message.message_annotations)
    sections.push(types.described_nc(types.wrap_ulong(MESSAGE_ANNOTATIONS), types.wrap_symbolic_map(message.message_annotations)));
  sections.push(composites.properties(message).described());
  if (message.application_properties)
    sections.push(types.described_nc(types.wrap_ulong(APPLICATION_PROPERTIES), types.wrap_map(message.application_properties)));
  const body = message.body as Body | undefined;
  if (body && typeof body.collect_sections === 'function') body.collect_sections(sections);
  else sections.push(types.described(types.wrap_ulong(AMQP_VALUE), types.wrap(message.body)));
  const writer = new types.Writer(scratch);
  for (const section of sections) writer.write(section);
  // A message larger than the scratch buffer grew the writer's; keep that one for the next.
  scratch = writer.buffer;
  return Buffer.from(scratch.subarray(0, writer.position));
}
