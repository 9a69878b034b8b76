/**
 * Limits on what a client may make the simulator hold in memory. rhea buffers whatever a frame header
 * announces (up to 4 GB) and whatever a multi-frame transfer adds, so a broken or hostile client could
 * exhaust the process. These guards watch the byte stream and the transfers and say when to stop.
 */
import type * as rhea from 'rhea';
import { watchTransfers } from '../amqp/rhea-internals';

const HEADER = Buffer.from('AMQP', 'ascii').readUInt32BE(0);

/**
 * Follows the frame boundaries of one client's byte stream (protocol headers included, the second one
 * after SASL too) and reports the first frame that announces more than `maxFrameBytes`, or fewer than
 * the 8 bytes any frame has.
 */
export class FrameGuard {
  /** Bytes still to skip before the next frame (or header) starts. */
  private skip = 8;
  private readonly size = Buffer.alloc(4);
  private sizeFill = 0;
  private broken: string | undefined;

  constructor(private readonly maxFrameBytes: number) {}

  /** Feeds received bytes; returns why the stream breaks the limits, once, or undefined. */
  push(chunk: Buffer): string | undefined {
    if (this.broken !== undefined) return undefined;
    let offset = 0;
    while (offset < chunk.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - offset);
        this.skip -= n;
        offset += n;
        continue;
      }
      const n = Math.min(4 - this.sizeFill, chunk.length - offset);
      chunk.copy(this.size, this.sizeFill, offset, offset + n);
      this.sizeFill += n;
      offset += n;
      if (this.sizeFill < 4) break;
      this.sizeFill = 0;
      const value = this.size.readUInt32BE(0);
      if (value === HEADER) {
        // A protocol header (the AMQP one after SASL): four more bytes to go.
        this.skip = 4;
      } else if (value > this.maxFrameBytes) {
        this.broken = `a frame of ${value} bytes, over the ${this.maxFrameBytes} this hub allows`;
        return this.broken;
      } else if (value < 8) {
        this.broken = `a frame of ${value} bytes (a frame has at least 8)`;
        return this.broken;
      } else {
        this.skip = value - 4;
      }
    }
    return undefined;
  }
}

/**
 * Calls `onExceeded` when a message sent in many frames grows past `maxBytes` before its last frame
 * (rhea would keep gathering it however large it gets). The part gathered is dropped at once; the
 * caller closes the connection.
 */
export function limitTransfers(session: rhea.Session, maxBytes: number, onExceeded: (bytes: number) => void): void {
  const gathered = new WeakMap<object, number>();
  watchTransfers(session, (frame, incomplete, drop) => {
    if (!incomplete) return;
    const total = (gathered.get(incomplete) ?? 0) + (frame.payload?.length ?? 0);
    gathered.set(incomplete, total);
    if (total > maxBytes) {
      drop();
      onExceeded(total);
    }
  });
}
