/**
 * Time spans in nanoseconds, as coverage is computed from the catalog and the segment
 * index: shared by the daily coverage report (./coverage.ts) and the console's timeline
 * (core/api/timeline-routes.ts). Pure functions; inputs are never changed.
 */

export interface NsSpan {
  start: bigint;
  end: bigint;
}

const NS = 1_000_000_000n;

export const cmpNs = (a: bigint, b: bigint): number => (a < b ? -1 : a > b ? 1 : 0);

/** A catalog ns string (`startNs`, `endNs`) as a bigint, or null. */
export function nsOf(s: string | null | undefined): bigint | null {
  return s && /^\d{1,30}$/.test(s) ? BigInt(s) : null;
}

/** An ISO 8601 time as ns since the epoch, keeping sub-millisecond digits when it has them (camtap writes ns). */
export function isoNs(iso: string | null): bigint | null {
  if (iso === null) return null;
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) return null;
  const frac = /\.(\d+)Z$/.exec(iso)?.[1];
  if (frac !== undefined && frac.length > 3) return BigInt(Math.floor(ms / 1000)) * NS + BigInt(frac.padEnd(9, '0').slice(0, 9));
  return BigInt(ms) * 1_000_000n;
}

/** Sorted times -> spans, a new one wherever two neighbours are more than `gapNs` apart. */
export function spansFromTimes(sorted: readonly bigint[], gapNs: bigint): NsSpan[] {
  const out: NsSpan[] = [];
  for (const t of sorted) {
    const last = out[out.length - 1];
    if (last && t - last.end <= gapNs) {
      if (t > last.end) last.end = t;
    } else out.push({ start: t, end: t });
  }
  return out;
}

/** Sorts and merges spans that overlap, touch, or are at most `gapNs` apart. */
export function mergeSpans(list: readonly NsSpan[], gapNs = 0n): NsSpan[] {
  const sorted = [...list].sort((a, b) => cmpNs(a.start, b.start));
  const out: NsSpan[] = [];
  for (const s of sorted) {
    const last = out[out.length - 1];
    if (last && s.start - last.end <= gapNs) {
      if (s.end > last.end) last.end = s.end;
    } else out.push({ start: s.start, end: s.end });
  }
  return out;
}

/** Merged spans clipped to [start, end]. Empty results are dropped, unless `keepPoints` (a timeline draws a one-packet span). */
export function clipSpans(list: readonly NsSpan[], start: bigint, end: bigint, keepPoints = false): NsSpan[] {
  const out: NsSpan[] = [];
  for (const s of list) {
    if (s.end < start || s.start > end) continue;
    const a = s.start < start ? start : s.start;
    const b = s.end > end ? end : s.end;
    if (b > a || (keepPoints && b === a)) out.push({ start: a, end: b });
  }
  return out;
}

/** The holes of merged `covered` within [start, end] (head and tail included). */
export function holes(covered: readonly NsSpan[], start: bigint, end: bigint): NsSpan[] {
  const out: NsSpan[] = [];
  let at = start;
  for (const s of covered) {
    if (s.start > at) out.push({ start: at, end: s.start < end ? s.start : end });
    if (s.end > at) at = s.end;
    if (at >= end) break;
  }
  if (at < end) out.push({ start: at, end });
  return out.filter((h) => h.end > h.start);
}
