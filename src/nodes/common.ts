/** Small helpers every palette node adapter shares: reporting errors and reading editor fields. */
import { HubError } from '../iothub/errors';

/** Errors as Catch nodes see them: always an Error with a code. */
export function asError(err: unknown): HubError {
  if (err instanceof HubError) return err;
  const code = (err as { code?: unknown })?.code;
  return new HubError(typeof code === 'string' ? code : 'Error', err instanceof Error ? err.message : String(err));
}

/** A positive whole number from an editor field, or the fallback. */
export function positiveInt(value: unknown, fallback: number): number {
  const n = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : NaN;
  return Number.isInteger(n) && n > 0 ? n : fallback;
}
