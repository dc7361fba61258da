/**
 * GET /api/timeline (core/api/timeline-routes.ts): interval arithmetic on hand-made
 * cases, and coverage of real captures judged by tshark: the lab capture whole (one
 * interval from its first to its last packet), and the same capture with seconds cut
 * out of its middle by editcap (a gap where tshark sees no packet of the stream). Also
 * the camera filter, range clipping, failover periods, and the fallback when a
 * segment has no index.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Fastify from 'fastify';
import { timelineRoutes, type FailoverPeriod, type Timeline } from '../../../core/api/timeline-routes.js';
import { clipSpans, holes, mergeSpans, spansFromTimes } from '../../../core/reports/spans.js';
import { installErrorHandling } from '../../../core/api/http-errors.js';
import { clearIndexReaderCache, indexFileNames } from '../../../core/index/segment-index.js';
import { silentLogger } from '../../../core/logger.js';
import { CAPTURES, importCaptures, iso, manifest, mediaStreams, noTshark, tsharkStream, type Imported } from '../query/fixture.js';
import { have } from '../../helpers/peers.js';

const FIXTURE = 'lo_udp_h264.pcap';
const M = manifest(FIXTURE);
const H264 = mediaStreams(M)[0]!;
const CAMERA = '127.0.1.11'; // the camera the fixture's RTSP dialog names (rtsp://127.0.1.11:8554/stream1)
const noEditcap = have('editcap') ? noTshark : 'needs editcap';

const iv = (a: number, b: number) => ({ start: BigInt(a), end: BigInt(b) });
const ns = (isoText: string) => {
  const m = /^(.*)\.(\d+)Z$/.exec(isoText)!;
  return BigInt(Date.parse(`${m[1]}Z`) / 1000) * 1_000_000_000n + BigInt(m[2]!.padEnd(9, '0').slice(0, 9));
};

async function api(t: { teardown(fn: () => unknown): void }, imp: Imported, failoverPeriods?: () => Promise<FailoverPeriod[]>) {
  const app = Fastify({ ajv: { customOptions: { removeAdditional: false } } }); // as createHttpApi: unknown parameters are refused
  installErrorHandling(app, silentLogger);
  app.register(timelineRoutes, { prefix: '/api', catalog: imp.catalog, indexDir: path.join(imp.dataDir, 'index'), ...(failoverPeriods ? { failoverPeriods } : {}) });
  t.teardown(() => app.close());
  return async (q: string) => {
    const r = await app.inject({ method: 'GET', url: `/api/timeline${q}` });
    return { status: r.statusCode, body: r.json() as Timeline & { error?: string } };
  };
}

t.test('interval arithmetic: split at silences, merge, clip, and the gaps in between', async (t) => {
  t.same(spansFromTimes([1n, 2n, 3n, 10n, 11n, 30n], 5n), [iv(1, 3), iv(10, 11), iv(30, 30)]);
  t.same(spansFromTimes([], 5n), []);
  t.same(mergeSpans([iv(10, 20), iv(0, 5), iv(18, 30), iv(33, 40)], 2n), [iv(0, 5), iv(10, 30), iv(33, 40)], 'overlaps merge; 3 apart is a gap at threshold 2');
  t.same(mergeSpans([iv(10, 20), iv(0, 5), iv(18, 30), iv(33, 40)], 3n), [iv(0, 5), iv(10, 40)], '3 apart merges at threshold 3');
  t.same(clipSpans([iv(0, 5), iv(10, 40)], 3n, 12n, true), [iv(3, 5), iv(10, 12)]);
  t.same(holes([iv(3, 5), iv(10, 12)], 0n, 20n), [iv(0, 3), iv(5, 10), iv(12, 20)], 'head, middle and tail');
  t.same(holes([], 0n, 20n), [iv(0, 20)], 'nothing recorded: all gap');
  t.same(holes([iv(0, 20)], 0n, 20n), [], 'all recorded: no gap');
});

t.test('the lab capture: one camera, one interval from its first to its last RTP packet (manifest), no gaps', async (t) => {
  const imp = await importCaptures(t, [FIXTURE]);
  const get = await api(t, imp);
  const { status, body } = await get('');
  t.equal(status, 200);
  t.equal(body.cameras.length, 1, 'one camera');
  const cam = body.cameras[0]!;
  t.equal(cam.camera, CAMERA);
  t.equal(cam.streams.length, 1, 'its one media stream (the NAT-punch packet toward the camera is left out)');
  t.same(cam.coverage, [{ start: iso(ns(cam.coverage[0]!.start)), end: cam.coverage[0]!.end }]);
  const first = BigInt(Math.round(H264.first_time * 1e6)) * 1000n;
  const last = BigInt(Math.round(H264.last_time * 1e6)) * 1000n;
  t.equal(ns(cam.coverage[0]!.start), first, `coverage starts at the first packet (${iso(first)})`);
  t.equal(ns(cam.coverage[0]!.end), last, `and ends at the last (${iso(last)})`);
  t.same(cam.gaps, [], 'no gaps');
  t.same(cam.failover, []);
  t.equal(body.failoverKnown, false, 'failover not wired');
  t.equal(body.start, cam.coverage[0]!.start, 'the range defaults to the recording');

  // A wider range: head and tail are gaps; a narrower one clips the coverage.
  const wide = await get(`?start=${iso(first - 60_000_000_000n)}&end=${iso(last + 60_000_000_000n)}`);
  t.same(wide.body.cameras[0]!.gaps, [
    { start: iso(first - 60_000_000_000n), end: iso(first) },
    { start: iso(last), end: iso(last + 60_000_000_000n) },
  ]);
  const narrow = await get(`?start=${iso(first + 2_000_000_000n)}&end=${iso(first + 4_000_000_000n)}`);
  t.same(narrow.body.cameras[0]!.coverage, [{ start: iso(first + 2_000_000_000n), end: iso(first + 4_000_000_000n) }]);
});

t.test('the camera filter takes the name or the address; an unknown camera is 404; bad parameters 400', async (t) => {
  const imp = await importCaptures(t, [FIXTURE]);
  const get = await api(t, imp);
  t.equal((await get(`?camera=${CAMERA}`)).body.cameras.length, 1);
  const nf = await get('?camera=nosuch');
  t.equal(nf.status, 404);
  t.equal(nf.body.error, 'CAMTAP_ERR_NOT_FOUND');
  t.equal((await get('?gap=0')).status, 400, 'gap below 0.1 s');
  t.equal((await get('?camra=x')).status, 400, 'unknown parameter');
  t.equal((await get('?start=2026-01-02T00:00:00Z&end=2026-01-01T00:00:00Z')).status, 400, 'end before start');
});

t.test('failover periods of the camera are listed (a running one has no end); other cameras’ and ones outside the range are not', async (t) => {
  const imp = await importCaptures(t, [FIXTURE]);
  const first = iso(BigInt(Math.round(H264.first_time * 1e6)) * 1000n);
  const mid = new Date(H264.first_time * 1000 + 4000).toISOString();
  const periods: FailoverPeriod[] = [
    { vms: 'vms-a', cameras: [CAMERA], start: first, end: mid },
    { vms: 'vms-b', cameras: ['other-cam'], start: first, end: null },
    { vms: 'vms-c', cameras: [CAMERA], start: mid, end: null },
    { vms: 'vms-d', cameras: [CAMERA], start: '2020-01-01T00:00:00Z', end: '2020-01-01T01:00:00Z' },
  ];
  const get = await api(t, imp, async () => periods);
  const { body } = await get('');
  t.equal(body.failoverKnown, true);
  t.same(body.cameras[0]!.failover, [
    { vms: 'vms-a', start: first, end: mid },
    { vms: 'vms-c', start: mid, end: null },
  ]);
});

t.test('seconds cut out of the middle by editcap are a gap: where tshark sees no packet, within the index sampling', { skip: noEditcap }, async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'camtap-timeline-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const cut = path.join(dir, 'cut.pcap');
  // Frames 300-699 (about 4.7 s of video) removed.
  execFileSync('editcap', ['-r', path.join(CAPTURES, FIXTURE), cut, '1-299', '700-100000']);
  const pkts = tsharkStream(cut, H264);
  let at = 1;
  for (let i = 1; i < pkts.length; i++) if (pkts[i]!.tsNs - pkts[i - 1]!.tsNs > pkts[at]!.tsNs - pkts[at - 1]!.tsNs) at = i;
  const before = pkts[at - 1]!.tsNs;
  const after = pkts[at]!.tsNs;
  t.ok(after - before > 4_000_000_000n, `tshark: no packet of the stream from ${iso(before)} to ${iso(after)}`);
  const imp = await importCaptures(t, [path.relative(CAPTURES, cut)]);
  const get = await api(t, imp);
  const { body } = await get('?gap=2');
  const cam = body.cameras[0]!;
  t.equal(cam.coverage.length, 2, `two recorded intervals (${JSON.stringify(cam.coverage)})`);
  t.equal(cam.gaps.length, 1, 'one gap');
  const g = cam.gaps[0]!;
  // The index keeps every keyframe and every 64th packet: the gap's ends are exact to within 64 packets.
  const sampling = 64;
  t.ok(ns(g.start) <= before && ns(g.start) >= pkts[Math.max(0, at - 1 - sampling)]!.tsNs, `the gap starts at or up to ${sampling} packets before tshark's last packet before it (${g.start})`);
  t.ok(ns(g.end) >= after && ns(g.end) <= pkts[Math.min(pkts.length - 1, at + sampling)]!.tsNs, `and ends at or up to ${sampling} packets after tshark's first packet after it (${g.end})`);
  t.equal(ns(cam.coverage[0]!.start), pkts[0]!.tsNs, 'coverage starts at the first packet');
  t.equal(ns(cam.coverage[1]!.end), pkts[pkts.length - 1]!.tsNs, 'and ends at the last');

  // A threshold above the silence: no gap.
  t.equal((await get('?gap=10')).body.cameras[0]!.gaps.length, 0, 'gap=10 s: the 4.7 s silence is not a gap');

  // Without the segment's index the segment counts whole (reported in the log, repaired by camtap reindex).
  rmSync(path.join(imp.dataDir, 'index', indexFileNames(imp.segments[0]!.id).idx));
  clearIndexReaderCache();
  const noIndex = await get('?gap=2');
  t.same(noIndex.body.cameras[0]!.coverage.length, 1, 'no index: the segment span, one interval');
});
