/**
 * Bookkeeping for one direction of traffic: what was sent (per device, in order), what is still in
 * flight, what arrived and how often. A fault marks everything in flight at that moment as allowed to
 * arrive twice; anything else that repeats, anything that never arrives and any per-device reordering
 * is a problem. A message that has been answered and has arrived, and may not come again, is
 * forgotten, so that a soak of hours keeps only what is open.
 */

export interface LedgerReport {
  sent: number;
  failed: number;
  received: number;
  lost: string[];
  /** Arrivals of ids that may not arrive (again): repeats of messages not in flight at a fault, or never sent. */
  unexpected: string[];
  /** Arrivals beyond the first, allowed or not. */
  duplicates: number;
  /** Devices whose first arrivals are not in send order, with the first offending one. */
  reordered: string[];
  failures: string[];
}

interface SentRecord {
  deviceId: string;
  index: number;
  settled: boolean;
  arrivals: number;
}

const KEEP = 50;

export class Ledger {
  /** Ids not yet forgotten: in flight, not arrived, or allowed to repeat. */
  private readonly open = new Map<string, SentRecord>();
  private readonly pending = new Set<string>();
  private readonly mayRepeat = new Set<string>();
  private readonly perDevice = new Map<string, number>();
  /** Highest send index among first arrivals, per device. */
  private readonly highest = new Map<string, number>();
  private sentCount = 0;
  private arrivalCount = 0;
  private firstArrivalCount = 0;
  private duplicateCount = 0;
  private readonly failures: string[] = [];
  private failureCount = 0;
  private readonly unexpected: string[] = [];
  private readonly reordered = new Map<string, string>();

  constructor(readonly name: string) {}

  /** Records a send; returns the id's place in its device's order. */
  sending(id: string, deviceId: string): number {
    if (this.open.has(id)) throw new Error(`${this.name}: id ${id} sent twice by the test`);
    const index = this.perDevice.get(deviceId) ?? 0;
    this.perDevice.set(deviceId, index + 1);
    this.open.set(id, { deviceId, index, settled: false, arrivals: 0 });
    this.pending.add(id);
    this.sentCount++;
    return index;
  }

  settled(id: string, error?: unknown): void {
    const record = this.open.get(id);
    if (!record || record.settled) return;
    record.settled = true;
    this.pending.delete(id);
    if (error !== undefined) {
      this.failureCount++;
      const code = (error as { code?: unknown })?.code;
      if (this.failures.length < KEEP)
        this.failures.push(
          `${id}: ${typeof code === 'string' ? code : 'Error'}: ${error instanceof Error ? error.message : String((error as { message?: unknown })?.message ?? error)}`,
        );
    }
    this.forgetIfDone(id, record);
  }

  /** A fault happens now: whatever is in flight (plus `extra`, e.g. messages the hub holds locked) may repeat. */
  fault(extra: Iterable<string> = []): number {
    let n = 0;
    for (const id of this.pending) {
      if (this.mayRepeat.has(id)) continue;
      this.mayRepeat.add(id);
      n++;
    }
    for (const id of extra) {
      if (this.mayRepeat.has(id)) continue;
      // Already answered and arrived, yet still held by the hub (its settlement not in yet): it may
      // come again, so it is remembered again.
      if (!this.open.has(id)) this.open.set(id, { deviceId: '', index: -1, settled: true, arrivals: 1 });
      this.mayRepeat.add(id);
      n++;
    }
    return n;
  }

  received(id: string): void {
    this.arrivalCount++;
    const record = this.open.get(id);
    if (!record) {
      if (this.unexpected.length < KEEP) this.unexpected.push(id);
      else this.unexpected[KEEP - 1] = `... and more, the last ${id}`;
      return;
    }
    record.arrivals++;
    if (record.arrivals === 1) {
      this.firstArrivalCount++;
      const highest = this.highest.get(record.deviceId) ?? -1;
      if (record.index < highest) {
        if (!this.reordered.has(record.deviceId))
          this.reordered.set(record.deviceId, `${record.deviceId}: ${id} (sent as number ${record.index}) after number ${highest}`);
      } else this.highest.set(record.deviceId, record.index);
    } else {
      this.duplicateCount++;
      if (!this.mayRepeat.has(id) && this.unexpected.length < KEEP) this.unexpected.push(`${id} x${record.arrivals}`);
    }
    this.forgetIfDone(id, record);
  }

  private forgetIfDone(id: string, record: SentRecord): void {
    if (record.settled && record.arrivals > 0 && !this.mayRepeat.has(id)) this.open.delete(id);
  }

  get sentTotal(): number {
    return this.sentCount;
  }

  /** Sent and not arrived yet. */
  get outstanding(): number {
    return this.sentCount - this.firstArrivalCount;
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
    return [...this.open.entries()].filter(([, r]) => r.arrivals === 0).map(([id]) => id);
  }

  allSettled(): boolean {
    return this.pending.size === 0;
  }

  allArrived(): boolean {
    for (const r of this.open.values()) if (r.arrivals === 0) return false;
    return true;
  }

  report(): LedgerReport {
    return {
      sent: this.sentCount,
      failed: this.failureCount,
      received: this.arrivalCount,
      lost: this.missing(),
      unexpected: [...this.unexpected],
      duplicates: this.duplicateCount,
      reordered: [...this.reordered.values()],
      failures: [...this.failures],
    };
  }
}

/** The problems in a report, one line each (empty when all is well). */
export function problemsOf(name: string, report: LedgerReport, options: { order: boolean }): string[] {
  const problems: string[] = [];
  const few = (list: string[]): string => list.slice(0, 10).join(', ') + (list.length > 10 ? ` ... (${list.length})` : '');
  if (report.failed > 0) problems.push(`${name}: ${report.failed} sends failed: ${few(report.failures)}`);
  if (report.lost.length > 0) problems.push(`${name}: ${report.lost.length} never arrived: ${few(report.lost)}`);
  if (report.unexpected.length > 0) problems.push(`${name}: arrived although not in flight at a fault (a repeat) or never sent: ${few(report.unexpected)}`);
  if (options.order && report.reordered.length > 0) problems.push(`${name}: per-device order broken: ${few(report.reordered)}`);
  return problems;
}
