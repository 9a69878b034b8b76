// rhea's frame codec (lib/frames.js) has no typings; the abuse tests use it to write raw frames.
declare module 'rhea/lib/frames.js' {
  interface Performative {
    described(): unknown;
  }
  type Fields = Record<string, unknown>;
  export function write_frame(frame: unknown): Buffer;
  export function read_frame(buffer: Buffer): unknown;
  export function amqp_frame(channel: number, performative: unknown, payload?: Buffer): unknown;
  export function sasl_frame(performative: unknown): unknown;
  export function open(fields: Fields): Performative;
  export function begin(fields: Fields): Performative;
  export function attach(fields: Fields): Performative;
  export function flow(fields: Fields): Performative;
  export function transfer(fields: Fields): Performative;
  export function disposition(fields: Fields): Performative;
  export function detach(fields: Fields): Performative;
  export function end(fields: Fields): Performative;
  export function close(fields: Fields): Performative;
  export function sasl_init(fields: Fields): Performative;
}

// rhea's terminus definitions (lib/terminus.js): the composites `link.set_source` / `set_target` write.
declare module 'rhea/lib/terminus.js' {
  export function source(fields: Record<string, unknown>): object;
  export function target(fields: Record<string, unknown>): object;
}
