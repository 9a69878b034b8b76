/** Small helpers every palette node adapter shares: reporting errors and reading editor fields. */
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
