/**
 * Minute buckets: how the catalog finds segments for a time range on a key/value store
 * that has no range queries. A segment is listed under every minute its [startNs, endNs]
 * touches (bucket n covers [n·60 s, (n+1)·60 s) since the Unix epoch), so a range query
 * reads the few bucket keys of its own minutes instead of every segment.
 *
 * Pure functions; times are ns since the epoch as bigint (records carry them as decimal
 * strings because JSON has no 64-bit integers).
 */

/** One bucket is one minute. */
export const NS_PER_BUCKET = 60_000_000_000n;

/**
 * A segment spanning more buckets than this (a day) goes on one "wide" list instead of
 * into each bucket: an in-place capture covering months, or one with a bogus 1970
 * timestamp, would otherwise write hundreds of thousands of bucket keys. Range queries
 * always read the wide list too. camtap's own segments rotate far sooner than a day.
 */
export const MAX_SEGMENT_BUCKETS = 1440n;

/**
 * A range wider than this (a week of buckets) is answered by filtering the segment
 * manifest instead: past this point one manifest read is cheaper than the bucket keys.
 */
export const MAX_RANGE_BUCKETS = 10_080n;

/** Bucket number of a time: floor(ns / 60 s), also for times before the epoch. */
export function bucketOf(ns: bigint): bigint {
  const q = ns / NS_PER_BUCKET;
  return ns < 0n && q * NS_PER_BUCKET !== ns ? q - 1n : q;
}

/** Parses a decimal ns string from a record; `what` names the field for the error. */
export function parseNs(s: string, what: string): bigint {
  if (typeof s !== 'string' || !/^-?\d{1,30}$/.test(s)) {
    throw new TypeError(`${what}: not a decimal ns time: ${JSON.stringify(s)}`);
  }
  return BigInt(s);
}

/** Inclusive bucket range of a segment, or 'wide' when it spans more than {@link MAX_SEGMENT_BUCKETS}. */
export type BucketSpan = { first: bigint; last: bigint } | 'wide';

/** Buckets a segment from `startNs` to `endNs` is listed under (the ends may come in either order). */
export function segmentSpan(startNs: bigint, endNs: bigint): BucketSpan {
  const lo = startNs <= endNs ? startNs : endNs;
  const hi = startNs <= endNs ? endNs : startNs;
  const first = bucketOf(lo);
  const last = bucketOf(hi);
  return last - first + 1n > MAX_SEGMENT_BUCKETS ? 'wide' : { first, last };
}

/** Buckets in `a` that are not in `b` (both inclusive ranges; 'wide' and null hold none). */
export function bucketsNotIn(a: BucketSpan | null, b: BucketSpan | null): bigint[] {
  if (a === null || a === 'wide') return [];
  const out: bigint[] = [];
  for (let m = a.first; m <= a.last; m++) {
    if (b === null || b === 'wide' || m < b.first || m > b.last) out.push(m);
  }
  return out;
}
