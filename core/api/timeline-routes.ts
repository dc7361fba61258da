/**
 * What is recorded of each camera, and where it is not:
 *
 *   GET /api/timeline?camera=&start=&end=&gap=
 *
 * Per camera: the streams it sent (camera -> VMS; what a client sends toward a camera is
 * left out), their recorded intervals merged into `coverage`, the holes between them
 * (`gaps`) within the range, and the failover periods of the VMSs that use the camera.
 *
 * Coverage comes from the segment index, not from the streams' first and last packet
 * alone: a stream that stopped for an hour and resumed keeps its id (same endpoints and
 * SSRC), so its record spans the hole. Each segment's index lists the stream's packets
 * sparsely (every keyframe start and every Nth packet: core/index/segment-index.ts) with
 * the exact first and last capture time, so a silence longer than `gap` seconds between
 * two entries is a gap. The open segment has no index, nor its list of streams, until it
 * is sealed: a stream whose last packet is in it counts as recorded from the segment's
 * start (or the stream's, if later) to that last packet (the catalog's checkpoint, once a
 * second), so a gap inside the open segment shows once the segment is sealed.
 *
 * Bounded: only segments overlapping the range are looked at (catalog.segmentsInRange),
 * and a gap shorter than 1/{@link MAX_INTERVALS} of the range is not drawn anyway, so the
 * threshold grows with the range and the answer stays small; a sealed segment shorter
 * than the threshold cannot hold a gap and counts by its span, its index unread. A month
 * of one-minute segments is then a catalog read, not 43,000 index reads.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { Catalog } from '../catalog/catalog.js';
import type { CameraRecord, SegmentRecord, StreamRecord } from '../contracts/records.js';
import type { Logger } from '../contracts/logger.js';
import { CamtapError, isCamtapError } from '../errors.js';
import { SegmentIndexReader } from '../index/segment-index.js';
import { isoFromNs } from '../query/time.js';
import { clipSpans, cmpNs, holes, isoNs, mergeSpans, nsOf, spansFromTimes, type NsSpan } from '../reports/spans.js';
import { parseRange, rangeProperties, type RangeQuery } from './query-params.js';

/** A failover period as the failover manager reports it (end null: still running). */
export interface FailoverPeriod {
  vms: string;
  cameras: string[];
  start: string;
  end: string | null;
}

export interface TimelineRoutesOptions {
  catalog: Catalog;
  indexDir: string;
  log?: Logger;
  /** Failover periods (core/failover); none when failover is not wired. */
  failoverPeriods?: () => Promise<FailoverPeriod[]>;
}

/** An interval in ns since the epoch, both ends inclusive. */
export type NsInterval = NsSpan;

export interface TimelineInterval {
  start: string;
  end: string;
}

export interface CameraTimeline {
  camera: string;
  address: string;
  streams: Array<{ id: string; codec: string | null; dst: string; start: string; end: string }>;
  coverage: TimelineInterval[];
  gaps: TimelineInterval[];
  failover: Array<{ vms: string; start: string; end: string | null }>;
}

export interface Timeline {
  /** The range the answer covers (the request's, or the cameras' recordings when none was given). */
  start: string | null;
  end: string | null;
  /** The silence (seconds) that counts as a gap, after growing with the range. */
  gapSec: number;
  /** Whether failover periods are known (false: failover is not wired in this process). */
  failoverKnown: boolean;
  cameras: CameraTimeline[];
}

/** Silence shorter than this is not a gap (default `gap`): more than a camera's keyframe interval and the index's sampling. */
export const DEFAULT_GAP_SEC = 10;
/** A gap narrower than range / MAX_INTERVALS cannot be seen on a timeline: the threshold grows to it. */
export const MAX_INTERVALS = 2000;

const toIso = (iv: NsInterval): TimelineInterval => ({ start: isoFromNs(iv.start), end: isoFromNs(iv.end) });

/**
 * A stream's recorded intervals in the given segments (see the file comment): index
 * entries where the segment has an index, else the segment's span clipped to the stream.
 */
async function streamCoverage(indexDir: string, stream: StreamRecord, segments: SegmentRecord[], gapNs: bigint, log: Logger | undefined): Promise<NsInterval[]> {
  const sStart = nsOf(stream.startNs);
  const sEnd = nsOf(stream.endNs);
  if (sStart === null || sEnd === null) return [];
  const out: NsInterval[] = [];
  for (const seg of segments) {
    // The open segment lists its streams only once it is sealed: there the times decide.
    if (seg.sealed ? !seg.streams.includes(stream.id) : sEnd < (nsOf(seg.startNs) ?? sEnd)) continue;
    const a = nsOf(seg.startNs);
    const b = nsOf(seg.endNs);
    if (a === null || b === null) continue;
    // A segment shorter than the gap threshold cannot hold a gap: its span will do, unread.
    const short = seg.sealed && b - a <= gapNs;
    let reader: SegmentIndexReader | null = null;
    if (!short) {
      try {
        reader = await SegmentIndexReader.open(indexDir, seg.id);
      } catch (e) {
        if (!isCamtapError(e, 'CAMTAP_ERR_INDEX')) throw e;
        // The open segment has no sidecar until it is sealed; a sealed one without a
        // readable index is reported and drawn by its span (camtap reindex repairs it).
        if (seg.sealed) log?.warn({ segment: seg.id, err: (e as Error).message }, 'timeline: segment index unreadable; using the segment span');
      }
    }
    const summary = reader?.summary.streams.find((x) => x.streamId === stream.id);
    if (reader && summary) {
      const times = reader.entries(stream.id).map((e) => e.tsNs);
      times.push(summary.firstTsNs, summary.lastTsNs);
      times.sort(cmpNs);
      out.push(...spansFromTimes(times, gapNs));
      continue;
    }
    const lo = a > sStart ? a : sStart;
    // The open segment's end is as old as the last checkpoint; the stream's last packet may be newer.
    const hi = seg.sealed ? (b < sEnd ? b : sEnd) : sEnd;
    if (hi >= lo) out.push({ start: lo, end: hi });
  }
  return out;
}

const TIMELINE_RESPONSE = {
  200: {
    type: 'object',
    properties: {
      start: { type: ['string', 'null'] },
      end: { type: ['string', 'null'] },
      gapSec: { type: 'number' },
      failoverKnown: { type: 'boolean' },
      cameras: {
        type: 'array',
        items: {
          type: 'object',
          properties: {
            camera: { type: 'string' },
            address: { type: 'string' },
            streams: {
              type: 'array',
              items: { type: 'object', properties: { id: { type: 'string' }, codec: { type: ['string', 'null'] }, dst: { type: 'string' }, start: { type: 'string' }, end: { type: 'string' } } },
            },
            coverage: { type: 'array', items: { type: 'object', properties: { start: { type: 'string' }, end: { type: 'string' } } } },
            gaps: { type: 'array', items: { type: 'object', properties: { start: { type: 'string' }, end: { type: 'string' } } } },
            failover: { type: 'array', items: { type: 'object', properties: { vms: { type: 'string' }, start: { type: 'string' }, end: { type: ['string', 'null'] } } } },
          },
        },
      },
    },
  },
} as const;

interface TimelineQuery extends RangeQuery {
  camera?: string;
  gap?: number;
}

export const timelineRoutes: FastifyPluginAsync<TimelineRoutesOptions> = async (app, opts) => {
  const { catalog, indexDir } = opts;

  app.get<{ Querystring: TimelineQuery }>(
    '/timeline',
    {
      config: { role: 'viewer' },
      schema: {
        tags: ['timeline'],
        description:
          'Per camera: the recorded intervals (merged over its streams, from the segment index), the gaps between them within the range, and the failover periods of its VMSs. Without start/end the range is the cameras\' whole recording.',
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            camera: { type: 'string', minLength: 1, maxLength: 256, description: 'camera inventory name or address (default: every camera)' },
            ...rangeProperties,
            gap: { type: 'number', minimum: 0.1, maximum: 86400, default: DEFAULT_GAP_SEC, description: 'seconds of silence that make a gap (grows to range/2000)' },
          },
        },
        response: TIMELINE_RESPONSE,
      },
    },
    async (req): Promise<Timeline> => {
      const { startNs: qStart, endNs: qEnd } = parseRange(req.query);
      const [streams, cameras] = await Promise.all([catalog.listStreams(), catalog.listCameras()]);
      const byName = new Map<string, CameraRecord>(cameras.map((c) => [c.name, c]));
      const media = streams.filter((s) => s.direction !== 'client->server' && nsOf(s.startNs) !== null && nsOf(s.endNs) !== null);
      // Cameras: the inventory's and any a stream names (a capture with no RTSP dialog).
      const names = [...new Set([...cameras.map((c) => c.name), ...media.map((s) => s.camera)])];
      const want = req.query.camera;
      const selected = names.filter((n) => want === undefined || n === want || byName.get(n)?.address === want);
      if (want !== undefined && selected.length === 0) throw new CamtapError('CAMTAP_ERR_NOT_FOUND', { what: 'camera', id: want });
      const mine = (n: string) => media.filter((s) => s.camera === n);

      // The range: as asked, else the selected cameras' recordings.
      let lo = qStart;
      let hi = qEnd;
      if (lo === null || hi === null) {
        let first: bigint | null = null;
        let last: bigint | null = null;
        for (const n of selected) {
          for (const s of mine(n)) {
            const a = nsOf(s.startNs)!;
            const b = nsOf(s.endNs)!;
            if (first === null || a < first) first = a;
            if (last === null || b > last) last = b;
          }
        }
        lo ??= first;
        hi ??= last;
      }
      const periods = opts.failoverPeriods ? await opts.failoverPeriods() : [];
      const gapNs0 = BigInt(Math.round((req.query.gap ?? DEFAULT_GAP_SEC) * 1e9));
      const spanNs = lo !== null && hi !== null && hi > lo ? hi - lo : 0n;
      const gapNs = spanNs / BigInt(MAX_INTERVALS) > gapNs0 ? spanNs / BigInt(MAX_INTERVALS) : gapNs0;
      const segments = lo !== null && hi !== null ? await catalog.segmentsInRange(lo, hi) : [];

      const out: CameraTimeline[] = [];
      for (const name of selected) {
        const address = byName.get(name)?.address ?? name;
        const own = mine(name).filter((s) => lo === null || hi === null || (nsOf(s.endNs)! >= lo && nsOf(s.startNs)! <= hi));
        const parts: NsInterval[] = [];
        for (const s of own) parts.push(...(await streamCoverage(indexDir, s, segments, gapNs, opts.log)));
        let coverage = mergeSpans(parts, gapNs);
        if (lo !== null && hi !== null) coverage = clipSpans(coverage, lo, hi, true);
        const gaps = lo !== null && hi !== null ? holes(coverage, lo, hi) : [];
        const failover = periods
          .filter((p) => p.cameras.includes(name) || p.cameras.includes(address))
          .filter((p) => {
            if (lo === null || hi === null) return true;
            const a = isoNs(p.start);
            const b = p.end === null ? null : isoNs(p.end);
            return (a === null || a <= hi) && (b === null || b >= lo);
          })
          .map((p) => ({ vms: p.vms, start: p.start, end: p.end }));
        out.push({
          camera: name,
          address,
          streams: own.map((s) => ({ id: s.id, codec: s.codec, dst: s.dst, start: s.start, end: s.end })),
          coverage: coverage.map(toIso),
          gaps: gaps.map(toIso),
          failover,
        });
      }
      return {
        start: lo === null ? null : isoFromNs(lo),
        end: hi === null ? null : isoFromNs(hi),
        gapSec: Number(gapNs) / 1e9,
        failoverKnown: opts.failoverPeriods !== undefined,
        cameras: out,
      };
    },
  );
};
