import { strict as assert } from 'node:assert';
import { Backoff, backoffDelay, reconnectSchedule, throttleDelay, type BackoffOptions } from '../../src/iothub/backoff';
import { RecordingClock } from '../helpers/clock';

/** A fixed jitter source. */
const fixed =
  (value: number): (() => number) =>
  () =>
    value;

/** A deterministic sequence in [0, 1) (a small LCG), so runs can be compared. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

/** The largest double below 1: the top of Math.random's range. */
const ALMOST_ONE = 1 - Number.EPSILON / 2;

describe('backoff: backoffDelay', () => {
  const options: BackoffOptions = { minMs: 1000, maxMs: 60_000 };

  it('the first retry is between half the floor and the floor', () => {
    assert.equal(backoffDelay(0, { ...options, random: fixed(0) }), 500);
    assert.equal(backoffDelay(0, { ...options, random: fixed(0.5) }), 750);
    assert.equal(backoffDelay(0, { ...options, random: fixed(ALMOST_ONE) }), 1000);
  });

  it('doubles the ceiling with every attempt until the cap', () => {
    const lows = Array.from({ length: 9 }, (_, attempt) => backoffDelay(attempt, { ...options, random: fixed(0) }));
    const highs = Array.from({ length: 9 }, (_, attempt) => backoffDelay(attempt, { ...options, random: fixed(ALMOST_ONE) }));
    assert.deepEqual(lows, [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]);
    assert.deepEqual(highs, [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000]);
    // Growth is visible at every jitter value until the cap is reached.
    for (const r of [0, 0.25, 0.5, 0.75, ALMOST_ONE]) {
      for (let attempt = 0; attempt < 5; attempt++) {
        const now = backoffDelay(attempt, { ...options, random: fixed(r) });
        const next = backoffDelay(attempt + 1, { ...options, random: fixed(r) });
        assert.ok(Math.abs(next - 2 * now) <= 1, `attempt ${attempt} -> ${attempt + 1} at r=${r}: ${now} -> ${next}`);
      }
    }
  });

  it('stays at the cap for any number of attempts, without overflowing', () => {
    for (const attempt of [6, 7, 30, 31, 64, 1000, 1_000_000, Number.MAX_SAFE_INTEGER]) {
      const low = backoffDelay(attempt, { ...options, random: fixed(0) });
      const high = backoffDelay(attempt, { ...options, random: fixed(ALMOST_ONE) });
      assert.equal(low, 30_000, `attempt ${attempt}`);
      assert.equal(high, 60_000, `attempt ${attempt}`);
    }
  });

  it('is never above maxMs nor below half the ceiling, for any attempt and any jitter', () => {
    const random = seeded(42);
    for (const { minMs, maxMs } of [
      { minMs: 1000, maxMs: 60_000 },
      { minMs: 50, maxMs: 400 },
      { minMs: 100, maxMs: 1000 },
      { minMs: 7, maxMs: 13 },
      { minMs: 1000, maxMs: 1000 },
    ]) {
      for (let attempt = 0; attempt < 40; attempt++) {
        const ceiling = Math.min(maxMs, minMs * 2 ** attempt);
        for (let i = 0; i < 50; i++) {
          const d = backoffDelay(attempt, { minMs, maxMs, random });
          assert.ok(Number.isInteger(d), `${d} is whole milliseconds`);
          assert.ok(d <= maxMs, `attempt ${attempt}: ${d} > max ${maxMs}`);
          assert.ok(d >= ceiling / 2 - 0.5, `attempt ${attempt}: ${d} < half the ceiling ${ceiling}`);
          assert.ok(d >= Math.min(minMs, maxMs) / 2 - 0.5, `attempt ${attempt}: ${d} < half the floor`);
        }
      }
    }
  });

  it('the bounds hold with the default Math.random too', () => {
    for (let attempt = 0; attempt < 12; attempt++) {
      const ceiling = Math.min(options.maxMs, options.minMs * 2 ** attempt);
      for (let i = 0; i < 200; i++) {
        const d = backoffDelay(attempt, options);
        assert.ok(d >= ceiling / 2 && d <= ceiling, `attempt ${attempt}: ${d} outside [${ceiling / 2}, ${ceiling}]`);
      }
    }
  });

  it('jitter spreads delays over the upper half of the ceiling', () => {
    const random = seeded(7);
    const delays = Array.from({ length: 400 }, () => backoffDelay(10, { ...options, random }));
    const low = delays.filter((d) => d < 45_000).length;
    const high = delays.length - low;
    // A uniform source puts about half on each side of the midpoint of [30 s, 60 s].
    assert.ok(low > 120 && high > 120, `${low} below and ${high} above 45 s`);
    assert.ok(new Set(delays).size > 300, 'delays differ from one another');
  });

  it('is deterministic with an injected random: the same sequence gives the same delays', () => {
    const run = (): number[] => {
      const random = seeded(1234);
      return Array.from({ length: 20 }, (_, attempt) => backoffDelay(attempt % 8, { ...options, random }));
    };
    const first = run();
    assert.deepEqual(run(), first);
    const other = seeded(99);
    assert.notDeepEqual(
      Array.from({ length: 20 }, (_, attempt) => backoffDelay(attempt % 8, { ...options, random: other })),
      first,
      'a different sequence gives different delays',
    );
  });

  it('asks the injected random exactly once per delay and never calls Math.random', () => {
    let calls = 0;
    const original = Math.random;
    Math.random = () => assert.fail('Math.random was used despite an injected random');
    try {
      const random = (): number => {
        calls++;
        return 0.3;
      };
      for (let attempt = 0; attempt < 10; attempt++) backoffDelay(attempt, { ...options, random });
    } finally {
      Math.random = original;
    }
    assert.equal(calls, 10);
  });

  it('follows the injected value linearly inside [ceiling/2, ceiling]', () => {
    // attempt 2: ceiling 4000, so the delay is 2000 + r * 2000.
    for (const r of [0, 0.1, 0.333, 0.5, 0.9]) {
      assert.equal(backoffDelay(2, { ...options, random: fixed(r) }), Math.round(2000 + r * 2000));
    }
  });
});

describe("throttleDelay: the official Node SDK's throttling schedule", () => {
  const sdk = { minMs: 10_000, maxMs: 60_000 };

  it('waits the floor (10 s) first, whatever the jitter', () => {
    assert.equal(throttleDelay(0, { ...sdk, random: () => 0 }), 10_000);
    assert.equal(throttleDelay(0, { ...sdk, random: () => 0.999 }), 10_000);
  });

  it('then grows by a random part that doubles each time (1.25 s, 3.75 s, 8.75 s at most), never past the cap', () => {
    assert.equal(throttleDelay(1, { ...sdk, random: () => 1 }), 11_250);
    assert.equal(throttleDelay(2, { ...sdk, random: () => 1 }), 13_750);
    assert.equal(throttleDelay(3, { ...sdk, random: () => 1 }), 18_750);
    assert.equal(throttleDelay(3, { ...sdk, random: () => 0 }), 10_000);
    assert.equal(throttleDelay(6, { ...sdk, random: () => 1 }), 60_000);
    assert.equal(throttleDelay(60, { ...sdk, random: () => 1 }), 60_000);
  });
});

describe('backoff: the Backoff retry wait', () => {
  const schedule = (attempt: number): number => 100 * 2 ** attempt;

  it('waits on the schedule, one attempt more each time, until a success starts it over', async () => {
    const clock = new RecordingClock(0);
    const retry = new Backoff(schedule, clock);
    let runs = 0;
    for (let i = 0; i < 3; i++) {
      retry.after(() => runs++);
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.deepEqual(clock.waits, [100, 200, 400]);
    assert.equal(runs, 3);
    assert.equal(retry.attempt, 3);
    retry.reset();
    retry.after(() => runs++);
    assert.deepEqual(clock.waits, [100, 200, 400, 100]);
  });

  it('holds one wait at most: arming again cancels the earlier one, cancel drops it', async () => {
    const clock = new RecordingClock(0);
    const retry = new Backoff(schedule, clock);
    const ran: string[] = [];
    retry.after(() => ran.push('first'));
    retry.after(() => ran.push('second'));
    assert.equal(retry.waiting, true);
    await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(ran, ['second']);
    assert.equal(retry.waiting, false);
    retry.after(() => ran.push('third'));
    retry.cancel();
    await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(ran, ['second']);
    assert.equal(retry.attempt, 3, 'a cancelled wait still counted as an attempt');
  });

  it('an override schedule gets the attempt number and counts it', () => {
    const clock = new RecordingClock(0);
    const retry = new Backoff(schedule, clock);
    retry.after(() => undefined);
    assert.equal(
      retry.after(
        () => undefined,
        (attempt) => attempt * 7,
      ),
      7,
    );
    assert.equal(
      retry.after(() => undefined),
      400,
    );
    retry.cancel();
  });

  it('reset keeps an armed wait: a success elsewhere does not cut a pause short', async () => {
    const clock = new RecordingClock(0);
    const retry = new Backoff(schedule, clock);
    let ran = false;
    retry.after(() => (ran = true));
    retry.reset();
    assert.equal(retry.waiting, true);
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(ran, true);
  });

  it('reconnectSchedule is backoffDelay with the given options', () => {
    const s = reconnectSchedule({ minMs: 1000, maxMs: 60_000, random: fixed(0.5) });
    assert.deepEqual([0, 1, 2, 10].map(s), [750, 1500, 3000, 45_000]);
  });
});
