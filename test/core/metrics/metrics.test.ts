/**
 * /metrics against ground truth: real captures fed through the real pipeline (a pcap-file
 * tap run by the TapRunner, as camtap serve runs it), scraped over the API, parsed by
 * Debian's prometheus_client (the reference Python parser), and compared with what tshark
 * counts in the same files: packets and bytes per tap, unique packets, duplicates and
 * loss per stream, RFC 3550 jitter recomputed from tshark's arrival times and RTP
 * timestamps, and the bitrate over a window from tshark's payload lengths.
 */
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../../../core/config.js';
import { createCamtap, type Camtap } from '../../../core/container.js';
import { silentLogger } from '../../../core/logger.js';
import { TapRunner, inventoryResolver } from '../../../core/capture/tap-runner.js';
import { createHttpApi } from '../../../core/api/http-server.js';
import { Credentials } from '../../../core/api/auth.js';
import { countLiveSessions, createMetrics, tapInfos, type Metrics } from '../../../core/metrics/metrics.js';
import { LiveChannel } from '../../../core/live/channel.js';
import { tsharkRtpStreams } from '../../helpers/tshark-truth.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const CAPTURES = path.join(ROOT, 'fixtures/captures');
const PY = '/usr/bin/python3';
const have = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const pyParser = existsSync(PY) && spawnSync(PY, ['-c', 'from prometheus_client.parser import text_string_to_metric_families']).status === 0;
const skip = !have('tshark') ? 'needs tshark' : !pyParser ? 'needs python3-prometheus-client (/usr/bin/python3)' : false;

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}
interface Family {
  name: string;
  type: string;
  samples: Sample[];
}

/** The exposition text through prometheus_client's parser: families and samples as JSON. */
function parseExposition(text: string): Family[] {
  const script = [
    'import sys, json',
    'from prometheus_client.parser import text_string_to_metric_families',
    'out = []',
    'for f in text_string_to_metric_families(sys.stdin.read()):',
    '    out.append({"name": f.name, "type": f.type, "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]})',
    'print(json.dumps(out))',
  ].join('\n');
  const r = spawnSync(PY, ['-c', script], { input: text, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`prometheus_client refused the exposition: ${r.stderr}`);
  return JSON.parse(r.stdout) as Family[];
}

function samples(fams: Family[], name: string): Sample[] {
  return fams.flatMap((f) => f.samples.filter((s) => s.name === name));
}

function tempDir(t: Tap.Test): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'camtap-metrics-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

async function open(t: Tap.Test): Promise<Camtap> {
  const { config } = loadConfig({ file: null, dataDir: tempDir(t), env: {} });
  const c = await createCamtap(config, silentLogger, { mode: 'write' });
  t.teardown(() => c.close());
  return c;
}

/** Per frame of a capture: count and captured bytes, as tshark reads them. */
function tsharkFrames(file: string): { packets: number; bytes: number } {
  const out = execFileSync('tshark', ['-r', file, '-T', 'fields', '-e', 'frame.cap_len'], { encoding: 'utf8', maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'ignore'] });
  const lens = out.split('\n').filter((l) => l !== '').map(Number);
  return { packets: lens.length, bytes: lens.reduce((a, b) => a + b, 0) };
}

interface RtpRow {
  sec: number;
  frac: number;
  key: string;
  ssrc: number;
  ts: number;
  seq: number;
  payload: number;
}

/** Every RTP packet (several per frame for TCP interleaving) with its frame's time, in capture order. */
function tsharkRtpRows(file: string): RtpRow[] {
  const out = execFileSync(
    'tshark',
    ['-r', file, '-o', 'rtp.heuristic_rtp:TRUE', '-o', 'rtcp.heuristic_rtcp:TRUE', '-Y', 'rtp and not icmp', '-T', 'fields', '-E', 'occurrence=a', '-E', 'aggregator=|',
      '-e', 'frame.time_epoch', '-e', 'ip.src', '-e', 'ip.dst', '-e', 'udp.srcport', '-e', 'udp.dstport', '-e', 'tcp.srcport', '-e', 'tcp.dstport', '-e', 'rtp.ssrc', '-e', 'rtp.timestamp', '-e', 'rtp.seq', '-e', 'rtp.payload'],
    { encoding: 'utf8', maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'ignore'] },
  );
  const rows: RtpRow[] = [];
  for (const line of out.split('\n')) {
    if (!line) continue;
    const [time, src, dst, us, ud, ts, td, ssrcs, stamps, seqs, payloads] = line.split('\t') as string[];
    const [sec, frac] = time!.split('.') as [string, string];
    const tcp = Boolean(ts);
    const key = `${tcp ? 'tcp' : 'udp'}|${src!.split('|')[0]}:${(tcp ? ts : us)!.split('|')[0]}|${dst!.split('|')[0]}:${(tcp ? td : ud)!.split('|')[0]}`;
    const ss = ssrcs!.split('|');
    const st = stamps!.split('|');
    const sq = seqs!.split('|');
    const pl = (payloads ?? '').split('|');
    ss.forEach((x, i) => rows.push({ sec: Number(sec), frac: Number(frac.padEnd(9, '0')), key, ssrc: parseInt(x, 16), ts: Number(st[i]), seq: Number(sq[i]), payload: (pl[i] ?? '').replace(/:/g, '').length / 2 }));
  }
  return rows;
}

/**
 * RFC 3550 §A.8 computed here, independently: unique packets (by extended sequence
 * number) in arrival order, J += (|D| - J) / 16 with D in timestamp units, in seconds.
 */
function rfcJitterSeconds(rows: RtpRow[], clockRate: number): number {
  const seen = new Set<number>();
  let max: number | null = null;
  let j = 0;
  let prev: { arr: number; ts: number } | null = null;
  const first = rows[0]!;
  for (const r of rows) {
    const ext = max === null ? r.seq + 0x10000 : (() => {
      const d = (r.seq - (max! & 0xffff)) & 0xffff;
      return d < 0x8000 ? max! + d : max! - (0x10000 - d);
    })();
    if (seen.has(ext)) continue;
    seen.add(ext);
    max = max === null ? ext : Math.max(max, ext);
    const arr = r.sec - first.sec + (r.frac - first.frac) / 1e9;
    if (prev) {
      let dts = r.ts - prev.ts;
      if (dts > 0x7fffffff) dts -= 0x100000000;
      if (dts < -0x80000000) dts += 0x100000000;
      const d = (arr - prev.arr) * clockRate - dts;
      j += (Math.abs(d) - j) / 16;
    }
    prev = { arr, ts: r.ts };
  }
  return j / clockRate;
}

for (const fixture of ['netns_multi.pcap', 'lo_udp_h264_impaired.pcap']) {
  t.test(`a scrape after ${fixture} went through a pcap-file tap: tap and stream counters equal tshark's`, { skip }, async (t) => {
    const file = path.join(CAPTURES, fixture);
    const c = await open(t);
    const { config, plugins, store, pipeline, ingest, catalog } = c.cradle;
    const runner = new TapRunner({ config, log: silentLogger, plugins, store, pipeline, ingest, resolve: inventoryResolver(config) });
    const ac = new AbortController();
    runner.start([{ id: await catalog.tapId('files'), name: 'files', driver: 'pcap-file', filter: {}, options: { paths: [file] } }], ac.signal);
    await runner.settled();
    pipeline.finish();
    const metrics = createMetrics({ taps: () => tapInfos(runner), streams: () => pipeline.activeStreams(), pipeline: () => pipeline.counters, dataDir: config.dataDir, bitrateWindowMs: 0 });
    t.teardown(() => metrics.close());
    const app = createHttpApi({ catalog, indexDir: c.cradle.indexDir, log: silentLogger, rtspBase: () => 'rtsp://127.0.0.1:8554', metrics });
    t.teardown(() => app.close());
    const res = await app.inject({ method: 'GET', url: '/metrics' });
    t.equal(res.statusCode, 200);
    t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/, 'Prometheus text format 0.0.4');
    const fams = parseExposition(res.body);

    const frames = tsharkFrames(file);
    t.same(samples(fams, 'camtap_tap_packets_total'), [{ name: 'camtap_tap_packets_total', labels: { tap: 'files' }, value: frames.packets }], 'tap packets = tshark frames');
    t.same(samples(fams, 'camtap_tap_bytes_total').map((s) => s.value), [frames.bytes], 'tap bytes = sum of tshark frame.cap_len');
    t.same(samples(fams, 'camtap_tap_drops_total'), [], 'a file tap reports no drops (not zero: unknown)');
    t.equal(samples(fams, 'camtap_pipeline_packets_total')[0]?.value, frames.packets, 'pipeline saw every frame');
    t.equal(fams.find((f) => f.name === 'camtap_tap_packets')?.type, 'counter', 'typed as a counter');

    const truth = tsharkRtpStreams(file).filter((s) => s.packets > 1); // ffmpeg's one-packet NAT punches go toward the camera
    const rows = tsharkRtpRows(file);
    const byId = new Map(pipeline.activeStreams().map((s) => [s.id, s]));
    const packets = samples(fams, 'camtap_stream_packets_total');
    t.equal(packets.length, truth.length, `one series per media stream (${truth.length})`);
    for (const tr of truth) {
      const st = [...byId.values()].find((s) => s.src === tr.src && s.dst === tr.dst && s.ssrc === tr.ssrc);
      t.ok(st, `stream ${tr.src} -> ${tr.dst} ssrc ${tr.ssrc} known`);
      if (!st) continue;
      const get = (name: string) => samples(fams, name).find((s) => s.labels.stream === st.id);
      t.equal(get('camtap_stream_packets_total')?.labels.camera, st.camera, 'labelled with its camera');
      t.same(
        { packets: get('camtap_stream_packets_total')?.value, duplicates: get('camtap_stream_duplicates_total')?.value, lost: get('camtap_stream_lost_total')?.value },
        { packets: tr.unique, duplicates: tr.duplicates, lost: tr.lost },
        `${tr.src} -> ${tr.dst}: packets, duplicates, lost equal tshark's`,
      );
      const mine = rows.filter((r) => r.key === `${tr.transport}|${tr.src}|${tr.dst}` && r.ssrc === tr.ssrc);
      const want = rfcJitterSeconds(mine, 90000);
      const got = get('camtap_stream_jitter_seconds')?.value;
      t.ok(got !== undefined && Math.abs(got - want) < 1e-7, `${tr.src} -> ${tr.dst}: jitter ${got} s = RFC 3550 A.8 over tshark's times ${want} s`);
      t.ok(want > 0, 'the jitter is not trivially zero');
    }
    await runner.stop();
  });
}

t.test('the bitrate of a window is the payload bits that arrived in it, per tshark', { skip }, async (t) => {
  const dir = tempDir(t);
  const src = path.join(CAPTURES, 'lo_udp_h264.pcap');
  const total = tsharkFrames(src).packets;
  const half = Math.floor(total / 2);
  const a = path.join(dir, 'a.pcap');
  const b = path.join(dir, 'b.pcap');
  execFileSync('editcap', ['-r', src, a, `1-${half}`]);
  execFileSync('editcap', ['-r', src, b, `${half + 1}-${total}`]);
  const c = await open(t);
  const { pipeline, ingest, catalog } = c.cradle;
  let now = 1_000_000;
  const metrics = createMetrics({ streams: () => pipeline.activeStreams(), now: () => now, bitrateWindowMs: 0 });
  t.teardown(() => metrics.close());
  const tapId = await catalog.tapId('import');
  await ingest.ingestFile(a, { tapId, tapName: 'import', inPlace: false });
  metrics.sample(); // the window opens
  await ingest.ingestFile(b, { tapId, tapName: 'import', inPlace: false });
  now += 4000;
  metrics.sample(); // ...and closes 4 s later
  const fams = parseExposition(await metrics.text());
  const rows = tsharkRtpRows(b);
  const media = tsharkRtpStreams(src).filter((s) => s.packets > 1);
  t.equal(media.length, 1, 'one media stream in the capture');
  const st = pipeline.activeStreams().find((s) => s.ssrc === media[0]!.ssrc && s.src === media[0]!.src)!;
  const bytes = rows.filter((r) => r.ssrc === st.ssrc && r.key === `udp|${st.src}|${st.dst}`).reduce((n, r) => n + r.payload, 0);
  const got = samples(fams, 'camtap_stream_bitrate_bits').find((s) => s.labels.stream === st.id)?.value;
  t.equal(got, (bytes * 8) / 4, `bitrate = ${bytes} payload bytes * 8 / 4 s`);
});

t.test('storage gauges are the data dir file system as statvfs reports it', { skip }, async (t) => {
  const dir = tempDir(t);
  const metrics = createMetrics({ dataDir: dir, segmentBytes: () => 12345, bitrateWindowMs: 0 });
  t.teardown(() => metrics.close());
  const fams = parseExposition(await metrics.text());
  const py = spawnSync(PY, ['-c', `import os,json; s=os.statvfs(${JSON.stringify(dir)}); print(json.dumps([s.f_blocks*s.f_frsize, s.f_bavail*s.f_frsize, (s.f_blocks-s.f_bfree)*s.f_frsize]))`], { encoding: 'utf8' });
  const [size, free, used] = JSON.parse(py.stdout) as [number, number, number];
  const v = (n: string) => samples(fams, n)[0]?.value ?? NaN;
  t.equal(v('camtap_storage_size_bytes'), size, 'size');
  // Other processes write to the same file system meanwhile: within 1% of its size.
  t.ok(Math.abs(v('camtap_storage_free_bytes') - free) < size / 100, `free ${v('camtap_storage_free_bytes')} ~ ${free}`);
  t.ok(Math.abs(v('camtap_storage_used_bytes') - used) < size / 100, `used ${v('camtap_storage_used_bytes')} ~ ${used}`);
  t.equal(v('camtap_store_segment_bytes'), 12345, "camtap's own segments as the store reports them");
});

t.test('sessions, failover state, alerts and ingest lag come from their getters', { skip }, async (t) => {
  let now = 1_800_000_000_000;
  const metrics = createMetrics({
    replaySessions: () => 3,
    liveSessions: () => 2,
    failover: () => [{ vms: 'vms-a', state: 'failed-over' }],
    alerts: () => [{ severity: 'critical' }, { severity: 'critical' }, { severity: 'warning' }],
    taps: () => [{ name: 'eth1', driver: 'tcpdump', state: 'running', packets: 10, bytes: 1000, drops: 2, live: true }],
    newestPacketNs: () => BigInt(now - 2500) * 1_000_000n,
    now: () => now,
    bitrateWindowMs: 0,
  });
  t.teardown(() => metrics.close());
  const fams = parseExposition(await metrics.text());
  const v = (n: string, labels: Record<string, string> = {}) => samples(fams, n).find((s) => Object.entries(labels).every(([k, x]) => s.labels[k] === x))?.value;
  t.equal(v('camtap_replay_sessions'), 3);
  t.equal(v('camtap_live_sessions'), 2);
  t.same(
    samples(fams, 'camtap_failover_state').map((s) => [s.labels.state, s.value]),
    [['healthy', 0], ['suspect', 0], ['failing-over', 0], ['failed-over', 1], ['restoring', 0]],
    'one series per state, 1 on the current one',
  );
  t.equal(v('camtap_alerts_active', { severity: 'critical' }), 2);
  t.equal(v('camtap_alerts_active', { severity: 'warning' }), 1);
  t.equal(v('camtap_alerts_active', { severity: 'info' }), 0);
  t.equal(v('camtap_tap_drops_total', { tap: 'eth1' }), 2);
  t.equal(v('camtap_tap_up', { tap: 'eth1', driver: 'tcpdump' }), 1);
  t.equal(v('camtap_ingest_lag_seconds'), 2.5, 'now minus the newest packet');
});

t.test('no ingest lag without a running live tap (an import has nothing to lag behind)', { skip }, async (t) => {
  const metrics = createMetrics({ taps: () => [{ name: 'files', driver: 'pcap-file', state: 'running', packets: 1, bytes: 1, drops: null, live: false }], newestPacketNs: () => 1n, bitrateWindowMs: 0 });
  t.teardown(() => metrics.close());
  t.same(samples(parseExposition(await metrics.text()), 'camtap_ingest_lag_seconds'), []);
});

t.test('live sessions count the subscribers of the feeds a live source handed out', async (t) => {
  const ch = new LiveChannel({ key: 's1', sdp: '', camera: 'cam', payloadType: 96, codec: 'H264', clockRate: 90000 });
  const src = { resolve: async () => ch, close: async () => {} };
  const counted = countLiveSessions(src);
  t.equal(counted.sessions(), 0);
  const feed = await counted.source.resolve('/live/cam', new URLSearchParams());
  t.equal(feed, ch, 'the feed passes through unchanged');
  const sub = { onPacket() {}, onEnd() {} };
  const off1 = ch.subscribe(sub);
  ch.subscribe({ onPacket() {}, onEnd() {} });
  t.equal(counted.sessions(), 2);
  off1();
  t.equal(counted.sessions(), 1);
  ch.end('gone');
  t.equal(counted.sessions(), 0, 'an ended feed counts nobody');
});

t.test('GET /metrics needs a viewer unless metrics.public', { skip }, async (t) => {
  const dir = tempDir(t);
  const { config } = loadConfig({ file: null, dataDir: dir, env: {} });
  const c = await createCamtap(config, silentLogger, { mode: 'read' });
  t.teardown(() => c.close());
  const auth = new Credentials({ users: [], tokens: [{ name: 'prom', token: 'viewer-token-0123456789', role: 'viewer' }], realm: 'camtap', rtspBasic: false, nonceTtlSec: 300 }, {});
  const metrics: Metrics = createMetrics({ replaySessions: () => 1, bitrateWindowMs: 0 });
  t.teardown(() => metrics.close());
  for (const pub of [false, true]) {
    const app = createHttpApi({ catalog: c.cradle.catalog, indexDir: c.cradle.indexDir, log: silentLogger, rtspBase: () => '', auth, metrics, metricsPublic: pub });
    t.teardown(() => app.close());
    const anon = await app.inject({ method: 'GET', url: '/metrics' });
    if (pub) t.equal(anon.statusCode, 200, 'public: scraped without a token');
    else {
      t.equal(anon.statusCode, 401, 'no token: 401');
      t.notMatch(anon.body, /camtap_/, 'and no data');
    }
    const bad = await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: 'Bearer wrong-token-0123456789' } });
    if (!pub) t.equal(bad.statusCode, 401, 'unknown token: 401');
    const ok = await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: 'Bearer viewer-token-0123456789' } });
    t.equal(ok.statusCode, 200, `viewer token: 200 (public ${pub})`);
    t.match(ok.body, /^camtap_replay_sessions 1$/m);
  }
});
