/**
 * A clock that two processes on this host can subtract: CLOCK_MONOTONIC in milliseconds.
 *
 * `performance.now()` counts from a per-process origin, and `Date.now()` (CLOCK_REALTIME)
 * can be stepped or slewed by NTP between two readings. libuv's hrtime is CLOCK_MONOTONIC,
 * one clock for the whole machine, and `performance.now()` is that same hrtime minus a
 * constant, so `performance.now() + offset` is cheap (no BigInt, no array) and comparable
 * across processes. The offset is taken as the closest of a few back-to-back readings,
 * so its error is well under a microsecond.
 */

function measureOffset(): number {
  let best = Number.POSITIVE_INFINITY;
  let offset = 0;
  for (let i = 0; i < 9; i++) {
    const a = performance.now();
    const mono = Number(process.hrtime.bigint()) / 1e6;
    const b = performance.now();
    if (b - a < best) {
      best = b - a;
      offset = mono - (a + b) / 2;
    }
  }
  return offset;
}

const OFFSET_MS = measureOffset();

/** CLOCK_MONOTONIC now, ms (fractional). */
export function monoMs(): number {
  return performance.now() + OFFSET_MS;
}

/** The constant to add to a `performance.now()` reading of this process to get {@link monoMs}. */
export function monoOffsetMs(): number {
  return OFFSET_MS;
}
