/**
 * Daily coverage per camera: how much of one UTC day camtap recorded of each camera,
 * where the gaps are, and when a failover held the camera. As JSON (for programs), CSV
 * (one line per camera) and a standalone HTML page with an inline SVG plot (one bar row
 * per camera). `GET /api/reports/coverage` (core/api/report-routes.ts) and
 * `camtap report coverage` print it.
 *
 * What counts as recorded: a camera's streams (camera -> VMS; what a client sends toward
 * a camera is left out) over the day, merged. Inside a stream the segment index tells
 * where packets were (every keyframe start and every Nth packet, with each segment's
 * exact first and last packet time: core/index/segment-index.ts), so a stream that went
 * silent and resumed with the same SSRC shows its hole: a silence of more than `gapSec`
 * (default 10 s, beyond a keyframe interval and the index's sampling) between two known
 * packet times is a gap. The open segment has no index until it is sealed: there a
 * stream counts as recorded from the segment's start to its last packet (the catalog's
 * checkpoint, once a second).
 *
 * The day ends at "now" for the current day: the hours still to come are neither
 * covered nor gaps, and the percentage is of the part of the day that has passed.
 */
import type { Catalog } from '../catalog/catalog.js';
import type { Logger } from '../contracts/logger.js';
import type { SegmentRecord, StreamRecord } from '../contracts/records.js';
import { CamtapError, isCamtapError } from '../errors.js';
import { SegmentIndexReader } from '../index/segment-index.js';
import { isoFromNs } from '../query/time.js';
import { clipSpans, cmpNs, holes, isoNs, mergeSpans, nsOf, spansFromTimes, type NsSpan } from './spans.js';

export { clipSpans, holes, mergeSpans, spansFromTimes };

const NS = 1_000_000_000n;
const DAY_NS = 86_400n * NS;

/** Default silence (s) that makes a gap. */
export const DEFAULT_GAP_SEC = 10;

/** A failover period as the failover manager reports it (end null: still running). */
export interface FailoverPeriod {
  vms: string;
  cameras: string[];
  start: string;
  end: string | null;
}

export interface CoverageDeps {
  catalog: Pick<Catalog, 'listStreams' | 'listCameras' | 'segmentsInRange'>;
  /** The data dir's index folder. */
  indexDir: string;
  log?: Logger;
  /** Failover periods (core/failover); absent: none are shown and `failoverKnown` is false. */
  failoverPeriods?: () => Promise<FailoverPeriod[]>;
  /** Wall clock, ms (tests inject one). */
  now?: () => number;
}

export interface CoverageOptions {
  /** The UTC day, YYYY-MM-DD. */
  date: string;
  /** Seconds of silence that make a gap (default {@link DEFAULT_GAP_SEC}). */
  gapSec?: number;
  /** Only this camera (name or address). */
  camera?: string;
}

/** An interval in ns since the epoch. */
export type { NsSpan };

export interface Span {
  start: string;
  end: string;
  seconds: number;
}

export interface CameraCoverage {
  camera: string;
  address: string;
  coveredSeconds: number;
  gapSeconds: number;
  failoverSeconds: number;
  /** Covered share of the part of the day that has passed, 0-100. */
  coveragePercent: number;
  covered: Span[];
  gaps: Span[];
  failover: Array<Span & { vms: string }>;
}

export interface CoverageReport {
  date: string;
  /** The day: 00:00:00Z to 24:00:00Z. */
  start: string;
  end: string;
  /** Where the day's accounting stops: the day's end, or now on the current day. */
  until: string;
  /** Seconds of the day accounted for (start to `until`). */
  windowSeconds: number;
  gapSec: number;
  failoverKnown: boolean;
  cameras: CameraCoverage[];
}

/** `YYYY-MM-DD` -> the UTC day in ns. CAMTAP_ERR_USAGE for anything else. */
export function parseReportDate(date: string): NsSpan {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(date);
  const ms = m ? Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])) : Number.NaN;
  if (!m || Number.isNaN(ms) || new Date(ms).toISOString().slice(0, 10) !== date) {
    throw new CamtapError('CAMTAP_ERR_USAGE', { reason: `date ${JSON.stringify(date)}: expected a day as YYYY-MM-DD (UTC)` });
  }
  const start = BigInt(ms) * 1_000_000n;
  return { start, end: start + DAY_NS };
}

const seconds = (list: readonly NsSpan[]) => list.reduce((n, s) => n + Number(s.end - s.start), 0) / 1e9;
const span = (s: NsSpan): Span => ({ start: isoFromNs(s.start), end: isoFromNs(s.end), seconds: Number(s.end - s.start) / 1e9 });

/** Where one stream was recorded within the given segments (see the file comment). */
async function streamSpans(deps: CoverageDeps, stream: StreamRecord, segments: readonly SegmentRecord[], gapNs: bigint): Promise<NsSpan[]> {
  const sStart = nsOf(stream.startNs);
  const sEnd = nsOf(stream.endNs);
  if (sStart === null || sEnd === null) return [];
  const out: NsSpan[] = [];
  for (const seg of segments) {
    if (!seg.streams.includes(stream.id)) continue;
    let reader: SegmentIndexReader | null = null;
    try {
      reader = await SegmentIndexReader.open(deps.indexDir, seg.id);
    } catch (e) {
      if (!isCamtapError(e, 'CAMTAP_ERR_INDEX')) throw e;
      if (seg.sealed) deps.log?.warn({ segment: seg.id, err: (e as Error).message }, 'coverage: segment index unreadable; counting the segment span');
    }
    const summary = reader?.summary.streams.find((s) => s.streamId === stream.id);
    if (reader && summary) {
      const times = reader.entries(stream.id).map((e) => e.tsNs);
      times.push(summary.firstTsNs, summary.lastTsNs);
      times.sort(cmpNs);
      out.push(...spansFromTimes(times, gapNs));
      continue;
    }
    const a = nsOf(seg.startNs);
    const b = nsOf(seg.endNs);
    if (a === null || b === null) continue;
    const lo = a > sStart ? a : sStart;
    // The open segment's end is as old as the last checkpoint; the stream's last packet may be newer.
    const hi = seg.sealed ? (b < sEnd ? b : sEnd) : sEnd;
    if (hi >= lo) out.push({ start: lo, end: hi });
  }
  // A stream in no segment of the range's manifest (a catalog written before its segment): its own span.
  if (out.length === 0 && !segments.some((g) => g.streams.includes(stream.id))) out.push({ start: sStart, end: sEnd });
  return out;
}

/** The coverage of every camera (or one) over one UTC day. */
export async function coverageReport(deps: CoverageDeps, opts: CoverageOptions): Promise<CoverageReport> {
  const day = parseReportDate(opts.date);
  const gapSec = opts.gapSec ?? DEFAULT_GAP_SEC;
  if (!(gapSec > 0 && gapSec <= 86_400)) throw new CamtapError('CAMTAP_ERR_USAGE', { reason: `gap ${gapSec}: seconds in (0, 86400]` });
  const gapNs = BigInt(Math.round(gapSec * 1e9));
  const nowNs = BigInt(Math.floor((deps.now ?? Date.now)())) * 1_000_000n;

  const [streams, inventory] = await Promise.all([deps.catalog.listStreams(), deps.catalog.listCameras()]);
  const media = streams.filter((s) => {
    if (s.direction === 'client->server') return false;
    const a = nsOf(s.startNs);
    const b = nsOf(s.endNs);
    return a !== null && b !== null && b >= day.start && a < day.end;
  });
  const address = new Map(inventory.map((c) => [c.name, c.address]));
  let names = [...new Set([...inventory.map((c) => c.name), ...media.map((s) => s.camera)])].sort();
  if (opts.camera !== undefined) {
    names = names.filter((n) => n === opts.camera || address.get(n) === opts.camera);
    if (names.length === 0) throw new CamtapError('CAMTAP_ERR_NOT_FOUND', { what: 'camera', id: opts.camera });
  }
  const segments = media.length ? await deps.catalog.segmentsInRange(day.start, day.end - 1n) : [];
  const periods = deps.failoverPeriods ? await deps.failoverPeriods() : [];

  const perCamera = new Map<string, NsSpan[]>();
  let lastCovered = day.start;
  for (const name of names) {
    const parts: NsSpan[] = [];
    for (const s of media) if (s.camera === name) parts.push(...(await streamSpans(deps, s, segments, gapNs)));
    const covered = clipSpans(mergeSpans(parts), day.start, day.end);
    const tail = covered[covered.length - 1]?.end;
    if (tail !== undefined && tail > lastCovered) lastCovered = tail;
    perCamera.set(name, covered);
  }
  // The current day is accounted up to now (or to the newest packet, should the capture clock run ahead).
  let until = nowNs < day.end ? nowNs : day.end;
  if (until < lastCovered) until = lastCovered;
  if (until < day.start) until = day.start;
  const windowNs = until - day.start;

  const cameras: CameraCoverage[] = names.map((name) => {
    const covered = perCamera.get(name)!;
    const addr = address.get(name) ?? name;
    const gaps = holes(covered, day.start, until);
    const fo = periods
      .filter((p) => p.cameras.includes(name) || p.cameras.includes(addr))
      .flatMap((p) => {
        const a = isoNs(p.start);
        const b = p.end === null ? until : isoNs(p.end);
        if (a === null || b === null) return [];
        return clipSpans([{ start: a, end: b }], day.start, until).map((s) => ({ ...span(s), vms: p.vms }));
      });
    const coveredSeconds = seconds(covered);
    return {
      camera: name,
      address: addr,
      coveredSeconds,
      gapSeconds: seconds(gaps),
      failoverSeconds: seconds(mergeSpans(fo.map((f) => ({ start: isoNs(f.start)!, end: isoNs(f.end)! })))),
      coveragePercent: windowNs > 0n ? (coveredSeconds / (Number(windowNs) / 1e9)) * 100 : 0,
      covered: covered.map(span),
      gaps: gaps.map(span),
      failover: fo,
    };
  });
  return {
    date: opts.date,
    start: isoFromNs(day.start),
    end: isoFromNs(day.end),
    until: isoFromNs(until),
    windowSeconds: Number(windowNs) / 1e9,
    gapSec,
    failoverKnown: deps.failoverPeriods !== undefined,
    cameras,
  };
}

// ------------------------------------------------------------------ CSV

/** RFC 4180: a field with a comma, quote or line break is quoted, quotes doubled. */
function csvField(v: string | number): string {
  const s = String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** `HH:MM:SS` of a time within the report's day (24:00:00 for its end). */
function clock(iso: string, dayStart: string): string {
  const sec = Math.round((Date.parse(iso) - Date.parse(dayStart)) / 1000);
  const h = Math.floor(sec / 3600);
  const m = Math.floor((sec % 3600) / 60);
  const s = sec % 60;
  return `${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}`;
}

const round3 = (n: number) => Math.round(n * 1000) / 1000;

/**
 * `camera,date,covered_seconds,gap_seconds,coverage_percent,gaps`, one line per camera;
 * `gaps` lists the holes as `HH:MM:SS-HH:MM:SS` (UTC) separated by spaces.
 */
export function coverageCsv(r: CoverageReport): string {
  const lines = ['camera,date,covered_seconds,gap_seconds,coverage_percent,gaps'];
  for (const c of r.cameras) {
    const gaps = c.gaps.map((g) => `${clock(g.start, r.start)}-${clock(g.end, r.start)}`).join(' ');
    lines.push([c.camera, r.date, round3(c.coveredSeconds), round3(c.gapSeconds), Math.round(c.coveragePercent * 100) / 100, gaps].map(csvField).join(','));
  }
  return lines.join('\r\n') + '\r\n';
}

// ------------------------------------------------------------------ HTML

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[ch]!);
}

const COLORS = { covered: '#2e7d32', gap: '#e57373', failover: '#ffb300', pending: '#eeeeee' };

/** A standalone page: one SVG bar row per camera over the day, and the numbers as a table. */
export function coverageHtml(r: CoverageReport): string {
  const labelW = 200;
  const plotW = 960;
  const rowH = 24;
  const top = 28;
  const dayStart = Date.parse(r.start);
  const x = (iso: string) => labelW + ((Date.parse(iso) - dayStart) / 86_400_000) * plotW;
  const rows = r.cameras.map((c, i) => {
    const y = top + i * rowH;
    const bar = (iso1: string, iso2: string, color: string, title: string, h = rowH - 6, dy = 3) => {
      const x1 = x(iso1);
      const w = Math.max(x(iso2) - x1, 0.5);
      return `<rect x="${x1.toFixed(2)}" y="${y + dy}" width="${w.toFixed(2)}" height="${h}" fill="${color}"><title>${esc(title)}</title></rect>`;
    };
    const hms = (iso: string) => clock(iso, r.start);
    return [
      `<text x="${labelW - 8}" y="${y + rowH / 2 + 4}" text-anchor="end">${esc(c.camera)}</text>`,
      bar(r.until, r.end, COLORS.pending, 'not yet'),
      ...c.gaps.map((g) => bar(g.start, g.end, COLORS.gap, `gap ${hms(g.start)}-${hms(g.end)} (${Math.round(g.seconds)} s)`)),
      ...c.covered.map((s) => bar(s.start, s.end, COLORS.covered, `recorded ${hms(s.start)}-${hms(s.end)} (${Math.round(s.seconds)} s)`)),
      ...c.failover.map((f) => bar(f.start, f.end, COLORS.failover, `failover from ${f.vms} ${hms(f.start)}-${hms(f.end)}`, 6, rowH - 9)),
    ].join('');
  });
  const height = top + r.cameras.length * rowH + 8;
  const ticks: string[] = [];
  for (let h = 0; h <= 24; h += 2) {
    const tx = labelW + (h / 24) * plotW;
    ticks.push(`<line x1="${tx}" y1="${top - 4}" x2="${tx}" y2="${height - 8}" stroke="#bbb" stroke-width="0.5"/><text x="${tx}" y="${top - 8}" text-anchor="middle">${String(h).padStart(2, '0')}:00</text>`);
  }
  const table = r.cameras
    .map((c) => `<tr><td>${esc(c.camera)}</td><td>${esc(c.address)}</td><td>${round3(c.coveredSeconds)}</td><td>${round3(c.gapSeconds)}</td><td>${(Math.round(c.coveragePercent * 100) / 100).toFixed(2)}</td><td>${c.gaps.length}</td><td>${round3(c.failoverSeconds)}</td></tr>`)
    .join('\n');
  const legend = (color: string, text: string) => `<span class="key"><i style="background:${color}"></i>${text}</span>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>camtap coverage ${esc(r.date)}</title>
<style>
body{font:14px system-ui,sans-serif;margin:24px;color:#222}
svg text{font:12px system-ui,sans-serif;fill:#333}
table{border-collapse:collapse;margin-top:16px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,td:nth-child(2),th:first-child,th:nth-child(2){text-align:left}
.key{margin-right:16px}.key i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}
</style></head><body>
<h1>Recording coverage, ${esc(r.date)} (UTC)</h1>
<p>${legend(COLORS.covered, 'recorded')}${legend(COLORS.gap, `gap (silence over ${r.gapSec} s)`)}${legend(COLORS.failover, 'failover')}${legend(COLORS.pending, 'not yet')}</p>
<p>Accounted from ${esc(r.start)} to ${esc(r.until)} (${round3(r.windowSeconds)} s).${r.failoverKnown ? '' : ' Failover periods are not known to this process.'}</p>
<svg xmlns="http://www.w3.org/2000/svg" width="${labelW + plotW + 16}" height="${height}" role="img" aria-label="coverage per camera">
${ticks.join('\n')}
${rows.join('\n')}
</svg>
<table><thead><tr><th>camera</th><th>address</th><th>covered s</th><th>gap s</th><th>coverage %</th><th>gaps</th><th>failover s</th></tr></thead>
<tbody>
${table}
</tbody></table>
</body></html>
`;
}

/** The report as `format` (the API's and the CLI's outputs). */
export function renderCoverage(r: CoverageReport, format: 'csv' | 'html' | 'json'): string {
  if (format === 'csv') return coverageCsv(r);
  if (format === 'html') return coverageHtml(r);
  return JSON.stringify(r, null, 2) + '\n';
}
