/**
 * Rules about message content that the client and the simulator must read alike: what a body's bytes
 * are, how IoT Hub counts a message's size, how ids read as text, and which device and module ids the
 * hub allows. One definition, so the simulator cannot accept what the client would refuse, or the
 * other way round.
 */
import rhea = require('rhea');

/**
 * Device and module ids: up to 128 ASCII letters, digits and `- . + % _ # * ? ! ( ) , : = @ $ '`
 * (Azure docs, "Understand the identity registry": device identity properties).
 */
export const ID_PATTERN = /^[A-Za-z0-9\-.+%_#*?!(),:=@$']{1,128}$/;

export function isValidId(id: unknown): id is string {
  return typeof id === 'string' && ID_PATTERN.test(id);
}

/** Body bytes of a received message: data sections concatenated, strings as UTF-8, values as JSON. */
export function bodyBytes(body: unknown): Buffer {
  if (body === undefined || body === null) return Buffer.alloc(0);
  if (Buffer.isBuffer(body)) return body;
  if (typeof body === 'string') return Buffer.from(body, 'utf8');
  const section = body as { typecode?: number; content?: unknown; multiple?: boolean };
  if (section.typecode === 0x75) {
    if (section.multiple && Array.isArray(section.content)) return Buffer.concat(section.content.map((c) => bodyBytes(c)));
    return bodyBytes(section.content);
  }
  return Buffer.from(JSON.stringify(body), 'utf8');
}

const SYSTEM_PROPERTIES = [
  'message_id',
  'correlation_id',
  'user_id',
  'to',
  'subject',
  'reply_to',
  'content_type',
  'content_encoding',
  'group_id',
  'reply_to_group_id',
] as const;

/**
 * IoT Hub's size rule: body, system property values, application property names and values (Azure
 * docs, "Create and read IoT Hub messages": message size).
 */
export function messageSize(message: rhea.Message): number {
  let size = bodyBytes(message.body).length;
  const fields = message as unknown as Record<string, unknown>;
  for (const key of SYSTEM_PROPERTIES) {
    const value = fields[key];
    if (value !== undefined && value !== null) size += Buffer.isBuffer(value) ? value.length : Buffer.byteLength(String(value));
  }
  const props = message.application_properties as Record<string, unknown> | undefined;
  if (props) {
    for (const [k, v] of Object.entries(props)) size += Buffer.byteLength(k) + Buffer.byteLength(String(v));
  }
  return size;
}

/** Message and correlation ids as text: uuids in their usual form, numbers in decimal, binary in hex. */
export function idToString(id: unknown): string | undefined {
  if (id === undefined || id === null) return undefined;
  if (Buffer.isBuffer(id)) return id.length === 16 ? rhea.uuid_to_string(id) : id.toString('hex');
  return String(id);
}
