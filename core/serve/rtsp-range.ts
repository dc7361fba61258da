/**
 * The RTSP `Range` (RFC 2326 §12.29, §3.6 npt, §3.7 clock; RFC 7826 §18.40, §4.4),
 * `Scale` (RFC 2326 §12.34) and ONVIF `Rate-Control` headers, and the `speed=` URL
 * parameter, as the replay server reads and answers them. Pure functions: no I/O.
 */

/** A parsed `Range` value. npt times are seconds from the start of the presentation. */
export type RangeSpec =
  | { kind: 'npt'; start: number; end: number | null }
  | { kind: 'npt-now' }
  | { kind: 'clock'; startNs: bigint; endNs: bigint | null };

/** npt-time (RFC 2326 §3.6): `123.45` or `h:mm:ss[.frac]`; NaN if neither. */
function nptTime(s: string): number {
  let m = /^(\d{1,12})(?:\.(\d{0,9}))?$/.exec(s);
  if (m) return Number(`${m[1]}.${m[2] || '0'}`);
  m = /^(\d{1,9}):([0-5]\d):([0-5]\d)(?:\.(\d{0,9}))?$/.exec(s);
  if (m) return Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(`${m[3]}.${m[4] || '0'}`);
  return Number.NaN;
}

/** utc-time (RFC 2326 §3.7): `YYYYMMDDThhmmss[.frac]Z` -> ns since the epoch, or null. */
function clockTime(s: string): bigint | null {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(?:\.(\d{1,9}))?Z$/.exec(s);
  if (!m) return null;
  const [y, mo, d, h, mi, se] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60) return null;
  const ms = Date.UTC(y, mo - 1, d, h, mi, se);
  if (!Number.isFinite(ms)) return null;
  const frac = BigInt((m[7] ?? '').padEnd(9, '0'));
  return BigInt(ms) * 1_000_000n + frac;
}

/**
 * Parses a `Range` header value. Accepts `npt=a-[b]`, `npt=-b` (from 0), `npt=now-`
 * (reported as `npt-now`: live, which the replay server does not serve) and
 * `clock=a-[b]`; a trailing `;time=` parameter (RFC 2326 §12.29: when to act) is
 * ignored, the request acts at once. SMPTE ranges, reversed or malformed ranges are null.
 */
export function parseRange(value: string): RangeSpec | null {
  const v = value.split(';')[0]!.trim();
  const eq = v.indexOf('=');
  if (eq < 0) return null;
  const unit = v.slice(0, eq).trim().toLowerCase();
  const spec = v.slice(eq + 1).trim();
  const dash = spec.indexOf('-');
  if (dash < 0) return null;
  const a = spec.slice(0, dash).trim();
  const b = spec.slice(dash + 1).trim();
  if (unit === 'npt') {
    if (a === 'now') return b === '' ? { kind: 'npt-now' } : null;
    const start = a === '' ? 0 : nptTime(a);
    const end = b === '' ? null : nptTime(b);
    if (Number.isNaN(start) || (end !== null && Number.isNaN(end))) return null;
    if (a === '' && end === null) return null;
    if (end !== null && end < start) return null;
    return { kind: 'npt', start, end };
  }
  if (unit === 'clock') {
    const startNs = clockTime(a);
    const endNs = b === '' ? null : clockTime(b);
    if (startNs === null || (b !== '' && endNs === null)) return null;
    if (endNs !== null && endNs < startNs) return null;
    return { kind: 'clock', startNs, endNs };
  }
  return null;
}

/** npt seconds with millisecond precision, as answers carry them (`12.345`). */
export function formatNpt(sec: number): string {
  return Math.max(0, sec).toFixed(3);
}

/** ns since the epoch as an RFC 2326 §3.7 utc-time with milliseconds (`20261123T210519.675Z`). */
export function formatClock(ns: bigint): string {
  const ms = Number(ns / 1_000_000n);
  const iso = new Date(ms).toISOString(); // 2026-11-23T21:05:19.675Z
  return `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}T${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 23)}Z`;
}

/** The fastest finite pace accepted; faster asks are `max`. */
export const MAX_FINITE_SPEED = 1000;

/**
 * `speed=` URL parameter: `max` (as fast as the client takes it) is `Infinity`, a
 * positive number up to {@link MAX_FINITE_SPEED} is a pace multiplier; absent is null.
 * Anything else is NaN (the caller answers 400).
 */
export function parseSpeedParam(v: string | null): number | null {
  if (v === null) return null;
  const s = v.trim().toLowerCase();
  if (s === 'max') return Number.POSITIVE_INFINITY;
  if (!/^\d+(\.\d+)?$|^\.\d+$/.test(s)) return Number.NaN;
  const n = Number(s);
  return n > 0 && n <= MAX_FINITE_SPEED ? n : Number.NaN;
}

/**
 * `Scale` (RFC 2326 §12.34): a positive number is the pace multiplier. Negative values
 * ask for reverse play, which a packet replay cannot do: NaN (the caller answers 456).
 */
export function parseScale(v: string): number {
  const s = v.trim();
  if (!/^[+-]?(\d+(\.\d*)?|\.\d+)$/.test(s)) return Number.NaN;
  const n = Number(s);
  return n > 0 && n <= MAX_FINITE_SPEED ? n : Number.NaN;
}

/**
 * ONVIF Streaming Specification §6.4 (replay): `Rate-Control: no` asks for the stream
 * as fast as the client reads it, with no pacing by the server.
 */
export function rateControlOff(v: string | null): boolean {
  return v !== null && v.trim().toLowerCase() === 'no';
}
