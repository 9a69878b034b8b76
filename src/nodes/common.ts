/** Small helpers every palette node adapter shares: reporting errors and reading editor fields. */
import type { Node } from 'node-red';
import { type HubError, toHubError } from '../iothub/errors';

/** Errors as Catch nodes see them: always a HubError with a code from the one translator. */
export function asError(err: unknown): HubError {
  return toHubError(err, undefined, 'Error');
}

/** A positive whole number from an editor field, or the fallback. */
export function positiveInt(value: unknown, fallback: number): number {
  const n = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : NaN;
  return Number.isInteger(n) && n > 0 ? n : fallback;
}

/**
 * Warns once per node when a msg without a payload is sent: an empty message is legal (and is sent),
 * but far more often it is a flow that lost its payload on the way, which nothing else would show.
 */
export class PayloadWarning {
  private warned = false;

  constructor(private readonly node: Pick<Node, 'warn'>) {}

  check(payload: unknown): void {
    if (this.warned || (payload !== undefined && payload !== null)) return;
    this.warned = true;
    this.node.warn('msg.payload is missing (null or undefined): an empty message is sent. Told once per node.');
  }
}
