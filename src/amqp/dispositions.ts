/**
 * rhea (3.0.5) writes the dispositions gathered in one flush as ranges, and a range that starts with a
 * single delivery takes in the next one whatever its outcome: accepting A and rejecting or releasing B
 * in the same tick goes out as two accepts, so a refused message would pass for stored (the hub's side)
 * and an abandoned one would be lost (the device's side). Runs of accepts are written correctly. So
 * accepts are applied at once, and any other outcome alone, in a macrotask of its own, which rhea
 * flushes on the next tick before anything else can join it. Both ends of this package settle through
 * here.
 */
import createDebug from 'debug';

const log = createDebug('iothub:amqp');

const alone: Array<() => void> = [];
let draining = false;

/**
 * Applies a disposition (`apply` calls rhea's accept, reject, release or update): at once when it
 * accepts, otherwise alone on a later turn. `apply` may find the delivery settled or its link gone by
 * then and should check; if it throws, the link went away meanwhile and nobody is left to tell.
 */
export function applyDisposition(accepts: boolean, apply: () => void): void {
  if (accepts) {
    run(apply);
    return;
  }
  alone.push(apply);
  if (!draining) {
    draining = true;
    setImmediate(drainOne);
  }
}

function drainOne(): void {
  const next = alone.shift();
  if (next) run(next);
  if (alone.length > 0) setImmediate(drainOne);
  else draining = false;
}

function run(apply: () => void): void {
  try {
    apply();
  } catch (err) {
    // The link or connection went away meanwhile: the waiting side times out or was answered already.
    log('a disposition found its link gone: %s', err instanceof Error ? err.message : String(err));
  }
}
