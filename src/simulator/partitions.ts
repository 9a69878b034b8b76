/**
 * Device-to-cloud storage of the built-in endpoint: partitions of events with sequence numbers,
 * offsets and enqueued times, bounded by count and age. Events are encoded once on arrival, so that
 * any number of readers costs no re-encoding.
 */

export interface StoredEvent {
  sequenceNumber: number;
  /** Byte position in the partition, as Event Hubs reports it (sent as a string). */
  offset: number;
  enqueuedTime: number;
  /** The whole AMQP message as sent to readers, annotations included. */
  encoded: Buffer;
  deviceId: string;
}

export interface RetentionOptions {
  maxEvents: number;
  maxAgeMs: number;
}

export class Partition {
  private events: StoredEvent[] = [];
  private head = 0;
  private nextSequence = 0;
  private nextOffset = 0;
  private readonly listeners = new Set<() => void>();

  constructor(
    readonly id: string,
    private readonly retention: RetentionOptions,
  ) {}

  /** Adds an event; `encode` gets the numbers the event is stamped with and returns its bytes. */
  append(deviceId: string, now: number, encode: (stamp: { sequenceNumber: number; offset: number; enqueuedTime: number }) => Buffer): StoredEvent {
    // Enqueued times never go backwards within a partition, even if the clock does.
    const last = this.lastEvent();
    const enqueuedTime = last && last.enqueuedTime > now ? last.enqueuedTime : now;
    const stamp = { sequenceNumber: this.nextSequence, offset: this.nextOffset, enqueuedTime };
    const encoded = encode(stamp);
    const event: StoredEvent = { ...stamp, encoded, deviceId };
    this.events.push(event);
    this.nextSequence += 1;
    this.nextOffset += encoded.length;
    if (this.size > this.retention.maxEvents) this.dropOldest(this.size - this.retention.maxEvents);
    for (const listener of this.listeners) listener();
    return event;
  }

  /** Restores an event as it was (persistence); keeps numbering after it. */
  restore(event: StoredEvent): void {
    this.events.push(event);
    this.nextSequence = event.sequenceNumber + 1;
    this.nextOffset = event.offset + event.encoded.length;
  }

  /** After a restore: numbering goes on from here even if every event stored was trimmed since. */
  continueFrom(sequenceNumber: number, offset: number): void {
    this.nextSequence = Math.max(this.nextSequence, sequenceNumber);
    this.nextOffset = Math.max(this.nextOffset, offset);
  }

  /** Applies both retention limits now (after a restore, which does not). */
  enforceRetention(now: number): void {
    if (this.size > this.retention.maxEvents) this.dropOldest(this.size - this.retention.maxEvents);
    this.trimByAge(now);
  }

  /** Sequence number and offset the next event gets. */
  get next(): { sequenceNumber: number; offset: number } {
    return { sequenceNumber: this.nextSequence, offset: this.nextOffset };
  }

  get size(): number {
    return this.events.length - this.head;
  }

  /** Sequence number the next event will get. */
  get endSequence(): number {
    return this.nextSequence;
  }

  /** Sequence number of the oldest retained event (== endSequence when empty). */
  get beginSequence(): number {
    return this.size > 0 ? this.events[this.head].sequenceNumber : this.nextSequence;
  }

  lastEvent(): StoredEvent | undefined {
    return this.size > 0 ? this.events[this.events.length - 1] : undefined;
  }

  /** The event with this sequence number, if still retained. */
  at(sequenceNumber: number): StoredEvent | undefined {
    const index = this.head + (sequenceNumber - this.beginSequence);
    return index >= this.head && index < this.events.length ? this.events[index] : undefined;
  }

  /** First sequence number whose event satisfies `pred` (events are ordered by every key). */
  firstWhere(pred: (e: StoredEvent) => boolean): number {
    let lo = this.head;
    let hi = this.events.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (pred(this.events[mid])) hi = mid;
      else lo = mid + 1;
    }
    return lo < this.events.length ? this.events[lo].sequenceNumber : this.nextSequence;
  }

  trimByAge(now: number): void {
    let drop = 0;
    while (this.head + drop < this.events.length && now - this.events[this.head + drop].enqueuedTime > this.retention.maxAgeMs) drop++;
    if (drop > 0) this.dropOldest(drop);
  }

  private dropOldest(count: number): void {
    this.head += count;
    // Compact now and then rather than shifting the array on every drop.
    if (this.head > 1024 && this.head * 2 > this.events.length) {
      this.events = this.events.slice(this.head);
      this.head = 0;
    }
  }

  onAppend(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  *all(): IterableIterator<StoredEvent> {
    for (let i = this.head; i < this.events.length; i++) yield this.events[i];
  }
}

/**
 * Which partition a device's events go to. IoT Hub does not document its hash; this is the Event Hubs
 * partition-key rule (Jenkins lookup3 over the UTF-8 id, folded to 16 bits), stable across restarts.
 */
export function partitionForDevice(deviceId: string, partitionCount: number): number {
  const { b, c } = lookup3(Buffer.from(deviceId, 'utf8'));
  const folded = ((c ^ b) << 16) >> 16;
  return Math.abs(folded % partitionCount);
}

const rot = (x: number, k: number): number => ((x << k) | (x >>> (32 - k))) >>> 0;

/** Bob Jenkins' lookup3 `hashlittle2` with both seeds 0. */
export function lookup3(data: Buffer): { b: number; c: number } {
  let length = data.length;
  let a = (0xdeadbeef + length) >>> 0;
  let b = a;
  let c = a;
  let k = 0;
  const mix = (): void => {
    a = (a - c) >>> 0;
    a = (a ^ rot(c, 4)) >>> 0;
    c = (c + b) >>> 0;
    b = (b - a) >>> 0;
    b = (b ^ rot(a, 6)) >>> 0;
    a = (a + c) >>> 0;
    c = (c - b) >>> 0;
    c = (c ^ rot(b, 8)) >>> 0;
    b = (b + a) >>> 0;
    a = (a - c) >>> 0;
    a = (a ^ rot(c, 16)) >>> 0;
    c = (c + b) >>> 0;
    b = (b - a) >>> 0;
    b = (b ^ rot(a, 19)) >>> 0;
    a = (a + c) >>> 0;
    c = (c - b) >>> 0;
    c = (c ^ rot(b, 4)) >>> 0;
    b = (b + a) >>> 0;
  };
  while (length > 12) {
    a = (a + data.readUInt32LE(k)) >>> 0;
    b = (b + data.readUInt32LE(k + 4)) >>> 0;
    c = (c + data.readUInt32LE(k + 8)) >>> 0;
    mix();
    length -= 12;
    k += 12;
  }
  if (length === 0) return { b, c };
  const byte = (i: number, shift: number): number => (data[k + i] << shift) >>> 0;
  // Tail bytes, highest first, as in the reference implementation.
  const adds: Array<[number, 'a' | 'b' | 'c', number]> = [
    [11, 'c', 24],
    [10, 'c', 16],
    [9, 'c', 8],
    [8, 'c', 0],
    [7, 'b', 24],
    [6, 'b', 16],
    [5, 'b', 8],
    [4, 'b', 0],
    [3, 'a', 24],
    [2, 'a', 16],
    [1, 'a', 8],
    [0, 'a', 0],
  ];
  for (const [i, word, shift] of adds) {
    if (i >= length) continue;
    const v = byte(i, shift);
    if (word === 'a') a = (a + v) >>> 0;
    else if (word === 'b') b = (b + v) >>> 0;
    else c = (c + v) >>> 0;
  }
  c = (c ^ b) >>> 0;
  c = (c - rot(b, 14)) >>> 0;
  a = (a ^ c) >>> 0;
  a = (a - rot(c, 11)) >>> 0;
  b = (b ^ a) >>> 0;
  b = (b - rot(a, 25)) >>> 0;
  c = (c ^ b) >>> 0;
  c = (c - rot(b, 16)) >>> 0;
  a = (a ^ c) >>> 0;
  a = (a - rot(c, 4)) >>> 0;
  b = (b ^ a) >>> 0;
  b = (b - rot(a, 14)) >>> 0;
  c = (c ^ b) >>> 0;
  c = (c - rot(b, 24)) >>> 0;
  return { b, c };
}
