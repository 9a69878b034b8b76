/**
 * Tells a link the hub refuses for want of a right from one whose token merely lapsed. Both detach as
 * Unauthorized; what differs is the history: a refusal right after a fresh token was accepted, with
 * more than a second of it left, twice in a row, is a missing right (a DeviceConnect policy sending
 * C2D, say) that no retry cures until someone changes it. Once could be a token that lapsed on a
 * stalled machine. Kept apart from the link so the rule reads, and is tested, on its own.
 */
import { HubError } from './errors';

/** A refusal with less than this left of a fresh token may be the token lapsing, not a missing right. */
const FRESH_MARGIN_MS = 1000;
/** How long a link must stay attached to count as taken by the hub. */
export const STABLE_MS = 1000;

export class RefusalJudge {
  /** When the token put again after an Unauthorized detach expires; undefined when none was. */
  private freshUntil: number | undefined;
  /** Attaches refused as Unauthorized in a row, each with a fresh token. */
  private freshRefusals = 0;
  private refusedWith: HubError | undefined;

  constructor(private readonly address: string) {}

  /** The refusal on record, until the link attaches again. */
  get refusal(): HubError | undefined {
    return this.refusedWith;
  }

  /** The link attached: a refusal on record must not outlive it (sends would fail instead of waiting). */
  attached(): void {
    this.refusedWith = undefined;
  }

  /** The link stayed attached long enough to count as taken: the count starts over. */
  stable(): void {
    this.freshUntil = undefined;
    this.freshRefusals = 0;
  }

  /** A fresh token was put before the next attach; it expires at `expiresAt`. */
  freshToken(expiresAt: number | undefined): void {
    this.freshUntil = expiresAt;
  }

  /**
   * Judges one detach. `shortLived` says the link was detached before it counted as taken. Returns the
   * refusal to fail waiting work with, when the hub refuses for want of a right.
   */
  judge(error: HubError, shortLived: boolean, now: number): HubError | undefined {
    const fresh = error.code === 'Unauthorized' && shortLived && this.freshUntil !== undefined && now < this.freshUntil - FRESH_MARGIN_MS;
    this.freshUntil = undefined;
    this.freshRefusals = fresh ? this.freshRefusals + 1 : 0;
    if (!fresh || this.freshRefusals < 2) return undefined;
    this.refusedWith ??= new HubError(error.code, `the hub refuses ${this.address} with these credentials: ${error.message}`);
    return this.refusedWith;
  }
}
