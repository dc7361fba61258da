/**
 * Times in stream requests: ISO 8601 (extended `2026-11-23T21:06:43.5Z` or basic
 * `20261123T210643.5Z`, as RTSP's `clock=` range uses, RFC 2326 §3.7), or relative to
 * now (`-10m`, `-30s`, `-2h`, `-1d`, `-250ms`, `now`). Kept as ns since the epoch in a
 * bigint so sub-millisecond digits are not rounded away (captures carry ns).
 */
import { CamtapError } from '../errors.js';

const NS_PER_MS = 1_000_000n;

/** Unit -> ns, for the relative form. */
const UNIT_NS: Record<string, bigint> = {
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
  d: 86_400_000_000_000n,
};

/** Extended (`-`/`:` separated) and basic ISO 8601 date-times; zone optional (none = local time, as ISO 8601 says). */
const ISO_EXT = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9})\d*)?)?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)?$/i;
const ISO_BASIC = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(?:(\d{2})(?:[.,](\d{1,9})\d*)?)?(Z|[+-]\d{2}(?:\d{2})?)?$/i;

/**
 * ns since the epoch of an absolute ISO 8601 time, or null when `s` is not one. A time
 * without a zone is local time (ISO 8601 §4.2.2.2; `Date` does the same).
 */
export function parseIsoNs(s: string): bigint | null {
  const m = ISO_EXT.exec(s) ?? ISO_BASIC.exec(s);
  if (m === null) return null;
  const [y, mo, d, h = 0, mi = 0, se = 0] = [m[1], m[2], m[3], m[4], m[5], m[6]].map((x) => (x === undefined ? undefined : Number(x))) as number[];
  if (mo! < 1 || mo! > 12 || d! < 1 || d! > 31 || h > 24 || mi > 59 || se > 60) return null;
  let ms: number;
  const zone = m[8];
  if (zone === undefined) {
    ms = new Date(y!, mo! - 1, d!, h, mi, se).getTime();
  } else {
    ms = Date.UTC(y!, mo! - 1, d!, h, mi, se);
    if (zone.toUpperCase() !== 'Z') {
      const zm = /^([+-])(\d{2}):?(\d{2})?$/.exec(zone)!;
      const off = (Number(zm[2]) * 60 + Number(zm[3] ?? 0)) * 60_000;
      ms += zm[1] === '+' ? -off : off;
    }
  }
  if (!Number.isFinite(ms)) return null;
  return BigInt(ms) * NS_PER_MS + BigInt((m[7] ?? '').padEnd(9, '0'));
}

/**
 * ns since the epoch of a request time: ISO 8601, `now`, or `-<n><unit>` (units ms, s,
 * m, h, d; n may have a fraction) before `now`.
 * @throws CamtapError CAMTAP_ERR_RANGE naming the text when it is neither.
 */
export function parseTimeSpec(text: string, now: Date): bigint {
  const s = text.trim();
  const nowNs = BigInt(now.getTime()) * NS_PER_MS;
  if (s.toLowerCase() === 'now') return nowNs;
  const rel = /^-\s*(\d+(?:\.\d{1,9})?)\s*(ms|s|m|h|d)$/i.exec(s);
  if (rel !== null) {
    const [whole, frac = ''] = rel[1]!.split('.') as [string, string?];
    const unit = UNIT_NS[rel[2]!.toLowerCase()]!;
    const fracNs = frac === '' ? 0n : (BigInt(frac) * unit) / 10n ** BigInt(frac.length);
    return nowNs - (BigInt(whole) * unit + fracNs);
  }
  const abs = parseIsoNs(s);
  if (abs !== null) return abs;
  throw new CamtapError('CAMTAP_ERR_RANGE', {
    range: JSON.stringify(text),
    reason: 'not an ISO 8601 time (2026-11-23T21:06:43Z) or a time before now (-10m, -30s, -2h, -1d)',
  });
}

/** ns since the epoch as ISO 8601 UTC with all nine fraction digits. */
export function isoFromNs(ns: bigint): string {
  const ms = ns / NS_PER_MS;
  const sub = ns - (ns / 1_000_000_000n) * 1_000_000_000n;
  return `${new Date(Number(ms)).toISOString().slice(0, 19)}.${sub.toString().padStart(9, '0')}Z`;
}
