/**
 * Stream requests -> a replay plan: which stream (from the catalog only, no packet is
 * read), which RTSP dialog set it up and the SDP to announce, the time range, and the
 * segments to read.
 *
 * Resolution rules:
 * - Only media a camera sends are candidates: streams whose direction is
 *   `server->client` or `unknown` (RTP pushed with no dialog). What clients send toward
 *   the camera (ffmpeg's NAT-punch packets, `client->server`) is never served.
 * - Every field the selector has must match (see {@link matchesSelector}).
 * - Several matches: the one with the most packets in the requested range, estimated
 *   from the catalog as `packets x overlap / duration` (packets are assumed evenly spread
 *   over a stream's life; the index is not read to plan). Ties go to the later stream,
 *   then the smaller id, so the answer is stable.
 * - No match: CAMTAP_ERR_NOT_FOUND `{what: 'stream', id: <selector as text>}`.
 * - Times that do not parse, an end not after the start, or a range that misses every
 *   matching stream's recording: CAMTAP_ERR_RANGE (RTSP 457 Invalid Range, RFC 2326
 *   §11.3.7).
 * - The range is clamped to the stream's first and last packet.
 * - Segments: those the catalog lists for the range whose manifest names the stream,
 *   plus those of the `keyframeLookbackMs` (default 60 s) before the range, so a replay
 *   can start at the keyframe that precedes the range even when it sits in an earlier
 *   segment; `lookbackSegments` says how many of the list lie wholly before the range.
 */
import type { Catalog } from '../catalog/catalog.js';
import type { SessionRecord, StreamRecord } from '../contracts/records.js';
import { CamtapError } from '../errors.js';
import { hostOf } from '../sessions/inventory.js';
import { buildSdp, reduceSdp } from './plan-sdp.js';
import { isoFromNs, parseIsoNs, parseTimeSpec } from './time.js';
import type { ReplayPlan, StreamSelector } from './types.js';

export interface PlanOptions {
  /** How far before the range to look for a segment holding the preceding keyframe. Default 60 000 ms. */
  keyframeLookbackMs?: number;
}

const DEFAULT_LOOKBACK_MS = 60_000;
const NS_PER_MS = 1_000_000n;

/** The selector as `key=value` pairs, for error messages and logs. */
export function describeSelector(sel: StreamSelector): string {
  const parts: string[] = [];
  for (const k of ['id', 'camera', 'dst', 'codec', 'url', 'ssrc', 'start', 'end'] as const) {
    const v = sel[k];
    if (v !== undefined && v !== '') parts.push(`${k}=${k === 'ssrc' ? `0x${(Number(v) >>> 0).toString(16).toUpperCase().padStart(8, '0')}` : String(v)}`);
  }
  return parts.length > 0 ? parts.join(' ') : '(any)';
}

function stripBrackets(h: string): string {
  return h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h;
}

/** `/path?query` of an RTSP URL, or null when it does not parse. */
function urlPath(u: string): string | null {
  try {
    const p = new URL(u);
    return `${p.pathname}${p.search}`;
  } catch {
    return null;
  }
}

/** Scheme, host and port lower-cased, credentials dropped, trailing slashes ignored. */
function normUrl(u: string): string {
  try {
    const p = new URL(u);
    return `${p.protocol.toLowerCase()}//${p.host.toLowerCase()}${p.pathname.replace(/\/+$/, '')}${p.search}`;
  } catch {
    return u.replace(/\/+$/, '');
  }
}

function urlMatches(streamUrl: string | null, want: string): boolean {
  if (streamUrl === null) return false;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(want)) return normUrl(streamUrl) === normUrl(want);
  const p = urlPath(streamUrl);
  if (p === null) return false;
  const norm = (x: string) => `/${x.replace(/^\/+/, '').replace(/\/+$/, '')}`;
  return norm(p) === norm(want) || norm(p.split('?')[0]!) === norm(want);
}

/** Inventory names resolved to addresses (only read when the selector names a camera or destination). */
export interface NameResolver {
  cameraAddresses(name: string): string[];
  vmsAddresses(name: string): string[];
}

/**
 * Whether `s` satisfies every field of `sel` (times aside):
 * - `id`: exact;
 * - `camera`: the record's camera name, the sender's address or `ip:port`, or an
 *   inventory camera name whose address is the sender's;
 * - `dst`: the receiver's `ip:port` or address, or an inventory VMS name whose address it is;
 * - `codec`: case-insensitive;
 * - `url`: the whole URL (credentials, case of scheme/host and a trailing `/` ignored),
 *   or its path (`/stream1`, with or without the query);
 * - `ssrc`: exact.
 */
export function matchesSelector(s: StreamRecord, sel: StreamSelector, names: NameResolver): boolean {
  if (sel.id !== undefined && s.id !== sel.id) return false;
  if (sel.ssrc !== undefined && s.ssrc >>> 0 !== sel.ssrc >>> 0) return false;
  if (sel.codec !== undefined && (s.codec === null || s.codec.toUpperCase() !== sel.codec.toUpperCase())) return false;
  if (sel.url !== undefined && !urlMatches(s.url, sel.url)) return false;
  if (sel.camera !== undefined) {
    const v = sel.camera.trim();
    const srcHost = hostOf(s.src);
    const ok = s.camera === v || s.src === v || srcHost === stripBrackets(v) || names.cameraAddresses(v).includes(srcHost);
    if (!ok) return false;
  }
  if (sel.dst !== undefined) {
    const v = sel.dst.trim();
    const dstHost = hostOf(s.dst);
    const ok = s.dst === v || dstHost === stripBrackets(v) || names.vmsAddresses(v).includes(dstHost);
    if (!ok) return false;
  }
  return true;
}

function nsOf(s: string): bigint {
  return /^\d{1,30}$/.test(s) ? BigInt(s) : 0n;
}

/** Packets of `s` expected in [a, b], assuming they are spread evenly over its life. */
function packetsIn(s: StreamRecord, a: bigint, b: bigint): number {
  const s0 = nsOf(s.startNs);
  const s1 = nsOf(s.endNs);
  const lo = a > s0 ? a : s0;
  const hi = b < s1 ? b : s1;
  if (hi < lo) return 0;
  if (s1 === s0) return s.packets;
  return (s.packets * Number(hi - lo)) / Number(s1 - s0);
}

/**
 * The dialog that set `stream` up: same RTSP session id, and the client on the host the
 * stream goes to (SessionRecord.id is camtap's dialog id, not the RTSP session id). For
 * RTP over the RTSP connection, the dialog of that very connection wins. Among several
 * (a client that set up the same session id again), the last one that started at or
 * before the stream.
 */
export function findSession(stream: StreamRecord, sessions: SessionRecord[]): SessionRecord | null {
  if (stream.session === null) return null;
  const host = hostOf(stream.dst);
  let cands = sessions.filter((x) => x.sessionId === stream.session && hostOf(x.client) === host);
  if (stream.transport === 'tcp') {
    const same = cands.filter((x) => x.client === stream.dst && x.server === stream.src);
    if (same.length > 0) cands = same;
  }
  return latestBefore(cands, nsOf(stream.startNs));
}

function latestBefore(cands: SessionRecord[], t: bigint): SessionRecord | null {
  if (cands.length === 0) return null;
  const at = (x: SessionRecord) => parseIsoNs(x.start) ?? 0n;
  const sorted = [...cands].sort((a, b) => (at(a) < at(b) ? -1 : at(a) > at(b) ? 1 : a.id < b.id ? -1 : 1));
  let best: SessionRecord | null = null;
  for (const x of sorted) if (at(x) <= t) best = x;
  return best ?? sorted[0]!;
}

/** The SDP of the stream: its dialog's DESCRIBE, else a DESCRIBE of the same URL by the same client host (a client may DESCRIBE on another connection), else built from the record. */
export function planSdp(stream: StreamRecord, session: SessionRecord | null, sessions: SessionRecord[]): string {
  let text = session?.sdp ?? null;
  if (text === null && stream.url !== null) {
    const host = hostOf(stream.dst);
    const other = latestBefore(
      sessions.filter((x) => x.sdp !== null && hostOf(x.client) === host && normUrl(x.url) === normUrl(stream.url!)),
      nsOf(stream.startNs),
    );
    text = other?.sdp ?? null;
  }
  return (text !== null ? reduceSdp(text, stream, session) : null) ?? buildSdp(stream);
}

/**
 * Resolves `selector` to one stream and the plan to replay it (rules in the file
 * comment). `now` anchors relative times (`-10m`).
 * @throws CamtapError CAMTAP_ERR_NOT_FOUND when no stream matches, CAMTAP_ERR_RANGE for a bad or empty range.
 */
export async function planReplay(catalog: Catalog, selector: StreamSelector, now: Date = new Date(), opts: PlanOptions = {}): Promise<ReplayPlan> {
  const reqStart = selector.start !== undefined && selector.start !== '' ? parseTimeSpec(selector.start, now) : null;
  const reqEnd = selector.end !== undefined && selector.end !== '' ? parseTimeSpec(selector.end, now) : null;
  const rangeText = `${selector.start ?? ''}..${selector.end ?? ''}`;
  if (reqStart !== null && reqEnd !== null && reqEnd <= reqStart) {
    throw new CamtapError('CAMTAP_ERR_RANGE', { range: rangeText, reason: `the end (${isoFromNs(reqEnd)}) is not after the start (${isoFromNs(reqStart)})` });
  }

  const cameras = selector.camera !== undefined ? await catalog.listCameras() : [];
  const vms = selector.dst !== undefined ? await catalog.listVms() : [];
  const names: NameResolver = {
    cameraAddresses: (n) => cameras.filter((c) => c.name === n).map((c) => c.address),
    vmsAddresses: (n) => vms.filter((v) => v.name === n).map((v) => v.address),
  };
  // A stream id names at most one record: read that one, not the whole list (a request by id is what a replay URL makes).
  const all = selector.id !== undefined ? [await catalog.getStream(selector.id)].filter((s): s is StreamRecord => s !== undefined) : await catalog.listStreams();
  const cands = all.filter((s) => s.direction !== 'client->server' && matchesSelector(s, selector, names));
  if (cands.length === 0) throw new CamtapError('CAMTAP_ERR_NOT_FOUND', { what: 'stream', id: describeSelector(selector) });

  let best: StreamRecord | null = null;
  let bestN = -1;
  for (const s of cands) {
    const n = packetsIn(s, reqStart ?? nsOf(s.startNs), reqEnd ?? nsOf(s.endNs));
    const better =
      n > bestN ||
      (n === bestN && best !== null && (nsOf(s.startNs) > nsOf(best.startNs) || (nsOf(s.startNs) === nsOf(best.startNs) && s.id < best.id)));
    if (better) {
      best = s;
      bestN = n;
    }
  }
  const stream = best!;
  const s0 = nsOf(stream.startNs);
  const s1 = nsOf(stream.endNs);
  const startNs = reqStart !== null && reqStart > s0 ? reqStart : s0;
  const endNs = reqEnd !== null && reqEnd < s1 ? reqEnd : s1;
  if (startNs > endNs || (reqStart !== null && reqStart > s1) || (reqEnd !== null && reqEnd < s0)) {
    throw new CamtapError('CAMTAP_ERR_RANGE', {
      range: rangeText,
      reason: `outside the recording of stream ${stream.id} (${stream.start} .. ${stream.end})`,
    });
  }

  const lookbackNs = BigInt(Math.max(0, Math.round(opts.keyframeLookbackMs ?? DEFAULT_LOOKBACK_MS))) * NS_PER_MS;
  // Both catalog reads at once: the sessions (every dialog, with its requests) are the larger one.
  const [sessions, inRange] = await Promise.all([
    stream.session !== null || stream.url !== null ? catalog.listSessions() : Promise.resolve([]),
    catalog.segmentsInRange(startNs - lookbackNs, endNs),
  ]);
  const session = findSession(stream, sessions);
  const sdp = planSdp(stream, session, sessions);

  // An open segment lists its streams only when sealed: it may hold this one.
  const segments = inRange.filter((g) => !g.sealed || g.streams.includes(stream.id));
  let lookbackSegments = 0;
  while (lookbackSegments < segments.length) {
    const g = segments[lookbackSegments]!;
    if (!g.sealed || nsOf(g.endNs) >= startNs) break;
    lookbackSegments++;
  }
  return {
    stream,
    session,
    sdp,
    startNs,
    endNs,
    segments,
    lookbackSegments,
    openEnd: reqEnd === null || reqEnd > s1,
  };
}
