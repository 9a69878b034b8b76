/**
 * Bookkeeping for one direction of traffic: what was sent (per device, in order), what is still in
 * flight, what arrived and how often. A fault marks everything in flight at that moment as allowed to
 * arrive twice; anything else that repeats, anything that never arrives and any per-device reordering
 * is a problem.
 */

export interface LedgerReport {
  sent: number;
  settled: number;
  failed: number;
  received: number;
  lost: string[];
  /** Ids that arrived more than once although they were not in flight at a fault. */
  unexpectedDuplicates: string[];
  /** Arrivals beyond the first, allowed or not. */
  duplicates: number;
  /** Devices whose first arrivals are not in send order, with the first offending pair. */
  reordered: string[];
  /** Ids that arrived but were never sent. */
  strangers: string[];
  failures: string[];
}

interface SentRecord {
  deviceId: string;
  index: number;
  settled: boolean;
  error?: string;
}

export class Ledger {
  private readonly sent = new Map<string, SentRecord>();
  private readonly pending = new Set<string>();
  private readonly counts = new Map<string, number>();
  private readonly firstArrivals = new Map<string, string[]>();
  private readonly mayRepeat = new Set<string>();
  private readonly perDevice = new Map<string, number>();
  private readonly strangers = new Set<string>();
  private arrivalCount = 0;

  constructor(readonly name: string) {}

  /** Records a send; returns the id's place in its device's order. */
  sending(id: string, deviceId: string): number {
    if (this.sent.has(id)) throw new Error(`${this.name}: id ${id} sent twice by the test`);
    const index = this.perDevice.get(deviceId) ?? 0;
    this.perDevice.set(deviceId, index + 1);
    this.sent.set(id, { deviceId, index, settled: false });
    this.pending.add(id);
    return index;
  }

  settled(id: string, error?: unknown): void {
    const record = this.sent.get(id);
    if (!record) return;
    record.settled = true;
    if (error !== undefined) {
      const code = (error as { code?: unknown })?.code;
      record.error = `${typeof code === 'string' ? code : 'Error'}: ${error instanceof Error ? error.message : String(error)}`;
    }
    this.pending.delete(id);
  }

  /** A fault happens now: whatever is in flight (plus `extra`, e.g. messages the hub holds locked) may repeat. */
  fault(extra: Iterable<string> = []): number {
    let n = 0;
    for (const id of this.pending) {
      this.mayRepeat.add(id);
      n++;
    }
    for (const id of extra) {
      if (!this.sent.has(id)) continue;
      this.mayRepeat.add(id);
      n++;
    }
    return n;
  }

  received(id: string): void {
    const record = this.sent.get(id);
    if (!record) {
      this.strangers.add(id);
      return;
    }
    const count = (this.counts.get(id) ?? 0) + 1;
    this.counts.set(id, count);
    this.arrivalCount++;
    if (count === 1) {
      const list = this.firstArrivals.get(record.deviceId) ?? [];
      list.push(id);
      this.firstArrivals.set(record.deviceId, list);
    }
  }

  get sentCount(): number {
    return this.sent.size;
  }

  /** Arrivals so far, repeats included. */
  get arrivals(): number {
    return this.arrivalCount;
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  /** Sent ids that have not arrived yet. */
  missing(): string[] {
    return [...this.sent.keys()].filter((id) => !this.counts.has(id));
  }

  allSettled(): boolean {
    return this.pending.size === 0;
  }

  allArrived(): boolean {
    for (const id of this.sent.keys()) if (!this.counts.has(id)) return false;
    return true;
  }

  inFlight(): string[] {
    return [...this.pending];
  }

  report(): LedgerReport {
    const unexpectedDuplicates: string[] = [];
    let duplicates = 0;
    let received = 0;
    for (const [id, count] of this.counts) {
      received += count;
      if (count > 1) {
        duplicates += count - 1;
        if (!this.mayRepeat.has(id)) unexpectedDuplicates.push(`${id} x${count}`);
      }
    }
    const reordered: string[] = [];
    for (const [deviceId, ids] of this.firstArrivals) {
      for (let i = 1; i < ids.length; i++) {
        const a = this.sent.get(ids[i - 1]) as SentRecord;
        const b = this.sent.get(ids[i]) as SentRecord;
        if (b.index < a.index) {
          reordered.push(`${deviceId}: ${ids[i]} after ${ids[i - 1]}`);
          break;
        }
      }
    }
    const failures = [...this.sent.entries()].filter(([, r]) => r.error !== undefined).map(([id, r]) => `${id}: ${r.error}`);
    return {
      sent: this.sent.size,
      settled: [...this.sent.values()].filter((r) => r.settled).length,
      failed: failures.length,
      received,
      lost: this.missing(),
      unexpectedDuplicates,
      duplicates,
      reordered,
      strangers: [...this.strangers],
      failures,
    };
  }
}

/** The problems in a report, one line each (empty when all is well). */
export function problemsOf(name: string, report: LedgerReport, options: { order: boolean }): string[] {
  const problems: string[] = [];
  const few = (list: string[]): string => list.slice(0, 10).join(', ') + (list.length > 10 ? ` ... (${list.length})` : '');
  if (report.failures.length > 0) problems.push(`${name}: ${report.failures.length} sends failed: ${few(report.failures)}`);
  if (report.lost.length > 0) problems.push(`${name}: ${report.lost.length} never arrived: ${few(report.lost)}`);
  if (report.unexpectedDuplicates.length > 0) problems.push(`${name}: repeated although not in flight at a fault: ${few(report.unexpectedDuplicates)}`);
  if (report.strangers.length > 0) problems.push(`${name}: arrived but never sent: ${few(report.strangers)}`);
  if (options.order && report.reordered.length > 0) problems.push(`${name}: per-device order broken: ${few(report.reordered)}`);
  return problems;
}
