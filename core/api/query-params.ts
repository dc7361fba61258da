/**
 * Query parameters shared by the routes: their JSON schemas (fastify validates them and
 * an OpenAPI document can be generated from them) and their conversion into the query
 * engine's terms (StreamSelector, ns ranges). A malformed or empty range is a bad
 * request (400); a range that misses the recording is the planner's 416.
 */
import { CamtapError } from '../errors.js';
import { parseTimeSpec } from '../query/time.js';
import type { StreamSelector } from '../query/types.js';
import { withStatus } from './http-errors.js';

const TIME = { type: 'string', minLength: 1, maxLength: 64, description: 'ISO 8601 (2026-11-23T21:06:43Z) or relative to now (-10m, -30s, -2h, -1d)' } as const;
const SSRC = { type: 'string', pattern: '^(0[xX][0-9a-fA-F]{1,8}|[0-9]{1,10})$', description: 'RTP SSRC, decimal or 0x hex' } as const;

/** `?start=&end=` */
export const rangeProperties = { start: TIME, end: TIME } as const;

/** Selectors of StreamSelector (core/query/types.ts) except the id. */
export const selectorProperties = {
  camera: { type: 'string', minLength: 1, maxLength: 256, description: 'camera inventory name or address' },
  dst: { type: 'string', minLength: 1, maxLength: 256, description: 'destination (VMS/client) name, address or ip:port' },
  codec: { type: 'string', minLength: 1, maxLength: 32, description: 'codec as in the SDP (H264, H265, JPEG), any case' },
  url: { type: 'string', minLength: 1, maxLength: 2048, description: 'original RTSP URL of the stream, or its path' },
  ssrc: SSRC,
  ...rangeProperties,
} as const;

export interface RangeQuery {
  start?: string;
  end?: string;
}

export interface SelectorQuery extends RangeQuery {
  camera?: string;
  dst?: string;
  codec?: string;
  url?: string;
  ssrc?: string;
}

/**
 * Parses `start`/`end` (ns since the epoch, null when absent).
 * @throws CamtapError CAMTAP_ERR_RANGE marked 400 when a time does not parse or the end is not after the start.
 */
export function parseRange(q: RangeQuery, now: Date = new Date()): { startNs: bigint | null; endNs: bigint | null } {
  const parse = (v: string | undefined): bigint | null => {
    if (v === undefined || v === '') return null;
    try {
      return parseTimeSpec(v, now);
    } catch (e) {
      throw e instanceof Error ? withStatus(e, 400) : e;
    }
  };
  const startNs = parse(q.start);
  const endNs = parse(q.end);
  if (startNs !== null && endNs !== null && endNs <= startNs) {
    throw withStatus(new CamtapError('CAMTAP_ERR_RANGE', { range: `${q.start}..${q.end}`, reason: 'the end is not after the start' }), 400);
  }
  return { startNs, endNs };
}

/** The selector the query names (times as given: the planner reads them). */
export function selectorOf(q: SelectorQuery): StreamSelector {
  const sel: StreamSelector = {};
  if (q.camera !== undefined) sel.camera = q.camera;
  if (q.dst !== undefined) sel.dst = q.dst;
  if (q.codec !== undefined) sel.codec = q.codec;
  if (q.url !== undefined) sel.url = q.url;
  if (q.ssrc !== undefined) {
    const v = Number(q.ssrc);
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new CamtapError('CAMTAP_ERR_USAGE', { reason: `ssrc ${q.ssrc}: not a 32-bit number (decimal or 0x hex)` });
    sel.ssrc = v;
  }
  if (q.start !== undefined) sel.start = q.start;
  if (q.end !== undefined) sel.end = q.end;
  return sel;
}
