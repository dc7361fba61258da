/**
 * The daily coverage report against tshark: captures imported through the real pipeline,
 * and per camera the recorded seconds compared with the spans of that camera's RTP
 * packets as tshark times them (a silence over the gap threshold splits a span), for a
 * capture as recorded and for one with a 30 s hole cut into the middle of a stream (same
 * SSRC on both sides: only the index can show it). Then the CSV, HTML and JSON forms over
 * the API, and `camtap report coverage` as a user runs it.
 */
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../../../core/config.js';
import { createCamtap, type Camtap } from '../../../core/container.js';
import { silentLogger } from '../../../core/logger.js';
import { createHttpApi } from '../../../core/api/http-server.js';
import { coverageCsv, coverageHtml, coverageReport, type CoverageReport } from '../../../core/reports/coverage.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const CAPTURES = path.join(ROOT, 'fixtures/captures');
const CLI = path.join(ROOT, 'dist/core/cli.js');
const have = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const skip = ['tshark', 'editcap', 'mergecap'].filter((c) => !have(c)).map((c) => `needs ${c}`)[0] ?? false;
const GAP = 10;

function tempDir(t: Tap.Test): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'camtap-coverage-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

async function imported(t: Tap.Test, files: string[], every?: number): Promise<Camtap> {
  const { config } = loadConfig({ file: null, dataDir: path.join(tempDir(t), 'data'), env: {} });
  if (every !== undefined) config.index.every = every;
  const c = await createCamtap(config, silentLogger, { mode: 'write' });
  const { ingest, pipeline, catalog } = c.cradle;
  const tapId = await catalog.tapId('import');
  for (const f of files) await ingest.ingestFile(f, { tapId, tapName: 'import', inPlace: false });
  pipeline.finish();
  // Closing seals the open segment: its index is written and the catalog updated.
  await c.close();
  const again = await createCamtap(config, silentLogger, { mode: 'read' });
  t.teardown(() => again.close());
  return again;
}

/**
 * Ground truth per camera: the times (s since the epoch, as exact decimals split into
 * integer and ns) of every RTP packet a camera sent, from tshark, grouped by the
 * sender's address; a stream of one packet (ffmpeg's NAT punch toward the camera) is
 * not camera media.
 */
function tsharkCameraTimes(file: string): Map<string, Array<[number, number]>> {
  const fields = ['frame.time_epoch', 'ip.src', 'ip.dst', 'udp.srcport', 'udp.dstport', 'tcp.srcport', 'tcp.dstport', 'rtp.ssrc'].flatMap((f) => ['-e', f]);
  const out = execFileSync('tshark', ['-r', file, '-o', 'rtp.heuristic_rtp:TRUE', '-Y', 'rtp and not icmp', '-T', 'fields', '-E', 'occurrence=f', ...fields], { encoding: 'utf8', maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'ignore'] });
  const byStream = new Map<string, { cam: string; times: Array<[number, number]> }>();
  for (const line of out.split('\n')) {
    if (!line) continue;
    const [time, src, dst, us, ud, ts, td, ssrc] = line.split('\t') as string[];
    const [s, f] = time!.split('.') as [string, string];
    const k = `${src}:${us || ts}|${dst}:${ud || td}|${ssrc}`;
    let e = byStream.get(k);
    if (!e) byStream.set(k, (e = { cam: src!, times: [] }));
    e.times.push([Number(s), Number(f.padEnd(9, '0'))]);
  }
  const cams = new Map<string, Array<[number, number]>>();
  for (const e of byStream.values()) {
    if (e.times.length < 2) continue;
    const l = cams.get(e.cam) ?? [];
    l.push(...e.times);
    cams.set(e.cam, l);
  }
  return cams;
}

/** Spans of sorted packet times where neighbours are at most GAP s apart; their total length in s. */
function truthSpans(times: Array<[number, number]>, base: number): Array<[number, number]> {
  const rel = times.map(([s, ns]) => s - base + ns / 1e9).sort((a, b) => a - b);
  const spans: Array<[number, number]> = [];
  for (const x of rel) {
    const last = spans[spans.length - 1];
    if (last && x - last[1] <= GAP) last[1] = Math.max(last[1], x);
    else spans.push([x, x]);
  }
  return spans;
}
const total = (spans: Array<[number, number]>) => spans.reduce((n, [a, b]) => n + (b - a), 0);

function dayOf(times: Map<string, Array<[number, number]>>): { date: string; base: number } {
  const first = Math.min(...[...times.values()].flatMap((l) => l.map(([s]) => s)));
  const date = new Date(first * 1000).toISOString().slice(0, 10);
  return { date, base: Date.parse(`${date}T00:00:00Z`) / 1000 };
}

t.test('netns_multi: covered seconds per camera equal the span of its RTP packets in tshark', { skip }, async (t) => {
  const file = path.join(CAPTURES, 'netns_multi.pcap');
  const c = await imported(t, [file]);
  const truth = tsharkCameraTimes(file);
  const { date, base } = dayOf(truth);
  const r = await coverageReport({ catalog: c.cradle.catalog, indexDir: c.cradle.indexDir, now: () => Date.now() }, { date });
  t.same(r.cameras.map((x) => x.camera).sort(), [...truth.keys()].sort(), 'one row per camera that sent media');
  t.equal(r.windowSeconds, 86400, 'a past day is accounted whole');
  for (const [cam, times] of truth) {
    const row = r.cameras.find((x) => x.camera === cam)!;
    const want = truthSpans(times, base);
    t.ok(Math.abs(row.coveredSeconds - total(want)) < 1e-6, `${cam}: covered ${row.coveredSeconds} s = tshark ${total(want)} s`);
    t.ok(Math.abs(row.gapSeconds - (86400 - total(want))) < 1e-6, `${cam}: the rest of the day is gap`);
    t.same(row.covered.map((s) => [Date.parse(s.start) / 1000 - base, Date.parse(s.end) / 1000 - base].map((x) => Math.floor(x))), want.map(([a, b]) => [Math.floor(a), Math.floor(b)]), `${cam}: spans where tshark has them`);
  }
  // 10.77.0.11 streamed to two VMSs at once: one merged span, not counted twice.
  t.equal(r.cameras.find((x) => x.camera === '10.77.0.11')!.covered.length, 1, 'overlapping streams of one camera merge');
});

/** lo_udp_h264 with its second half moved 30 s later: one stream, same SSRC and sequence, a 30 s hole. */
function withHole(t: Tap.Test): string {
  const dir = tempDir(t);
  const src = path.join(CAPTURES, 'lo_udp_h264.pcap');
  const n = Number(/Number of packets:\s+(\d+)/.exec(execFileSync('capinfos', ['-c', src], { encoding: 'utf8' }))![1]);
  const a = path.join(dir, 'a.pcap');
  const b = path.join(dir, 'b.pcap');
  const b2 = path.join(dir, 'b2.pcap');
  const out = path.join(dir, 'hole.pcap');
  execFileSync('editcap', ['-r', src, a, `1-${Math.floor(n / 2)}`]);
  execFileSync('editcap', ['-r', src, b, `${Math.floor(n / 2) + 1}-${n}`]);
  execFileSync('editcap', ['-t', '30', b, b2]);
  execFileSync('mergecap', ['-F', 'pcap', '-w', out, a, b2]);
  return out;
}

t.test('a 30 s silence inside one stream is a gap, found in the index (every packet indexed: exact)', { skip }, async (t) => {
  const file = withHole(t);
  const c = await imported(t, [file], 1);
  const truth = tsharkCameraTimes(file);
  t.equal(truth.size, 1, 'one camera');
  const [cam, times] = [...truth][0]!;
  const { date, base } = dayOf(truth);
  const want = truthSpans(times, base);
  t.equal(want.length, 2, 'tshark: two spans around the hole');
  const r = await coverageReport({ catalog: c.cradle.catalog, indexDir: c.cradle.indexDir }, { date, gapSec: GAP });
  // camtap names the camera by its RTSP URL's host (127.0.1.11), tshark's packets come from 127.0.0.1: one camera either way.
  t.equal(r.cameras.length, 1, `one camera row (${cam} in tshark)`);
  const row = r.cameras[0]!;
  t.equal((await c.cradle.catalog.listStreams()).filter((s) => s.direction !== 'client->server').length, 1, 'camtap: still one stream');
  t.equal(row.covered.length, 2, 'two covered spans');
  t.ok(Math.abs(row.coveredSeconds - total(want)) < 1e-6, `covered ${row.coveredSeconds} s = tshark ${total(want)} s`);
  t.equal(row.gaps.length, 3, 'gaps: before, inside, after');
  const inner = row.gaps[1]!;
  t.ok(Math.abs(inner.seconds - (want[1]![0] - want[0]![1])) < 1e-6, `the hole lasts ${inner.seconds} s as in tshark`);
});

t.test('with the default sparse index the hole is found to within the sampling', { skip }, async (t) => {
  const file = withHole(t);
  const c = await imported(t, [file]);
  const truth = tsharkCameraTimes(file);
  const [, times] = [...truth][0]!;
  const { date, base } = dayOf(truth);
  const want = truthSpans(times, base);
  const r = await coverageReport({ catalog: c.cradle.catalog, indexDir: c.cradle.indexDir }, { date, gapSec: GAP });
  t.equal(r.cameras.length, 1, 'one camera row');
  const row = r.cameras[0]!;
  t.equal(row.covered.length, 2, 'two covered spans');
  // Each side of the hole may stop at the last indexed packet: at most 64 packets early.
  const rel = times.map(([s, ns]) => s - base + ns / 1e9).sort((a, b) => a - b);
  const k = rel.findIndex((x, i) => i + 1 < rel.length && rel[i + 1]! - x > GAP);
  const slack = rel[k]! - rel[k - 63]! + (rel[k + 64]! - rel[k + 1]!);
  t.ok(row.coveredSeconds <= total(want) + 1e-6 && row.coveredSeconds >= total(want) - slack, `covered ${row.coveredSeconds} s within ${slack} s under tshark's ${total(want)} s`);
});

t.test('over the API: CSV, HTML and JSON of the same report, failover periods, errors', { skip }, async (t) => {
  const file = path.join(CAPTURES, 'netns_multi.pcap');
  const c = await imported(t, [file]);
  const { date } = dayOf(tsharkCameraTimes(file));
  const period = { vms: 'vms-a', cameras: ['10.77.0.12'], start: `${date}T21:06:50Z`, end: `${date}T21:07:00Z` };
  const failoverPeriods = async () => [period];
  const app = createHttpApi({ catalog: c.cradle.catalog, indexDir: c.cradle.indexDir, log: silentLogger, rtspBase: () => '', failoverPeriods });
  t.teardown(() => app.close());
  const direct = await coverageReport({ catalog: c.cradle.catalog, indexDir: c.cradle.indexDir, failoverPeriods }, { date });

  const json = await app.inject({ url: `/api/reports/coverage?date=${date}` });
  t.equal(json.statusCode, 200);
  const body = json.json() as CoverageReport;
  t.same(body.cameras.map((x) => [x.camera, x.coveredSeconds]), direct.cameras.map((x) => [x.camera, x.coveredSeconds]));
  t.same(body.cameras.find((x) => x.camera === '10.77.0.12')!.failover.map((f) => [f.vms, f.seconds]), [['vms-a', 10]], 'the failover period of the camera');
  t.equal(body.failoverKnown, true);

  const csv = await app.inject({ url: `/api/reports/coverage?date=${date}&format=csv` });
  t.match(csv.headers['content-type'], /^text\/csv/);
  t.match(csv.headers['content-disposition'], /attachment; filename="camtap-coverage-/);
  const lines = csv.body.trimEnd().split('\r\n');
  t.equal(lines[0], 'camera,date,covered_seconds,gap_seconds,coverage_percent,gaps');
  t.equal(lines.length, 1 + direct.cameras.length, 'one line per camera');
  const cam12 = direct.cameras.find((x) => x.camera === '10.77.0.12')!;
  const hms = (iso: string) => {
    const sec = Math.round((Date.parse(iso) - Date.parse(`${date}T00:00:00Z`)) / 1000);
    return [Math.floor(sec / 3600), Math.floor(sec / 60) % 60, sec % 60].map((n) => String(n).padStart(2, '0')).join(':');
  };
  const [from, to] = [hms(cam12.covered[0]!.start), hms(cam12.covered[0]!.end)];
  t.equal(lines.find((l) => l.startsWith('10.77.0.12,')), `10.77.0.12,${date},${Math.round(cam12.coveredSeconds * 1000) / 1000},${Math.round(cam12.gapSeconds * 1000) / 1000},${Math.round(cam12.coveragePercent * 100) / 100},00:00:00-${from} ${to}-24:00:00`, 'the camera line, its gaps as HH:MM:SS-HH:MM:SS');

  const html = await app.inject({ url: `/api/reports/coverage?date=${date}&format=html` });
  t.match(html.headers['content-type'], /^text\/html/);
  t.match(html.body, /<svg[^>]*role="img"/);
  for (const x of direct.cameras) t.match(html.body, new RegExp(`<text[^>]*>${x.camera.replace(/\./g, '\\.')}</text>`), `a row for ${x.camera}`);
  t.match(html.body, /fill="#ffb300"><title>failover from vms-a/, 'the failover period drawn');

  t.equal((await app.inject({ url: '/api/reports/coverage?date=2026-02-30' })).statusCode, 400, 'no such day');
  t.equal((await app.inject({ url: '/api/reports/coverage' })).statusCode, 400, 'date is required');
  t.equal((await app.inject({ url: `/api/reports/coverage?date=${date}&format=xml` })).statusCode, 400);
  const unknown = await app.inject({ url: `/api/reports/coverage?date=${date}&camera=nope` });
  t.equal(unknown.statusCode, 404);
  t.equal(unknown.json().error, 'CAMTAP_ERR_NOT_FOUND');
});

t.test('HTML and CSV escape what camera names carry', async (t) => {
  const r: CoverageReport = {
    date: '2026-01-02', start: '2026-01-02T00:00:00.000000000Z', end: '2026-01-03T00:00:00.000000000Z', until: '2026-01-03T00:00:00.000000000Z', windowSeconds: 86400, gapSec: 10, failoverKnown: false,
    cameras: [{ camera: '<b>"lobby", 2</b>', address: '10.0.0.1', coveredSeconds: 3600, gapSeconds: 82800, failoverSeconds: 0, coveragePercent: 100 / 24, covered: [{ start: '2026-01-02T01:00:00.000000000Z', end: '2026-01-02T02:00:00.000000000Z', seconds: 3600 }], gaps: [{ start: '2026-01-02T00:00:00.000000000Z', end: '2026-01-02T01:00:00.000000000Z', seconds: 3600 }, { start: '2026-01-02T02:00:00.000000000Z', end: '2026-01-03T00:00:00.000000000Z', seconds: 79200 }], failover: [] }],
  };
  t.equal(coverageCsv(r).split('\r\n')[1], '"<b>""lobby"", 2</b>",2026-01-02,3600,82800,4.17,00:00:00-01:00:00 02:00:00-24:00:00', 'RFC 4180 quoting');
  const html = coverageHtml(r);
  t.notMatch(html, /<b>/, 'no markup from a name');
  t.match(html, /&lt;b&gt;&quot;lobby&quot;, 2&lt;\/b&gt;/);
});

t.test('camtap report coverage writes the CSV and HTML a user asks for', { skip: skip || (!existsSync(CLI) && 'needs the build (npm run build)') }, async (t) => {
  const dir = tempDir(t);
  const data = path.join(dir, 'data');
  const file = path.join(CAPTURES, 'netns_multi.pcap');
  const run = (args: string[]) => spawnSync(process.execPath, [CLI, ...args, '--data', data], { encoding: 'utf8', env: { ...process.env, CAMTAP_LOG_LEVEL: 'warn' } });
  t.equal(run(['import', file]).status, 0);
  const { date, base } = dayOf(tsharkCameraTimes(file));
  const csvFile = path.join(dir, 'cov.csv');
  const r = run(['report', 'coverage', '--date', date, '--format', 'csv', '--out', csvFile]);
  t.equal(r.status, 0, r.stderr);
  const rows = readFileSync(csvFile, 'utf8').trimEnd().split('\r\n').slice(1).map((l) => l.split(','));
  const truth = tsharkCameraTimes(file);
  t.equal(rows.length, truth.size);
  for (const [cam, times] of truth) {
    const row = rows.find((x) => x[0] === cam);
    t.ok(row && Math.abs(Number(row[2]) - total(truthSpans(times, base))) < 0.001, `${cam}: covered_seconds ${row?.[2]} = tshark`);
  }
  const html = run(['report', 'coverage', '--date', date, '--format', 'html']);
  t.equal(html.status, 0);
  t.match(html.stdout, /^<!doctype html>/);
  const bad = run(['report', 'coverage', '--date', 'yesterday']);
  t.equal(bad.status, 64, 'a bad date is a usage error');
  t.match(bad.stderr, /CAMTAP_ERR_USAGE/);
});
