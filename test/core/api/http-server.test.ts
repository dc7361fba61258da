/**
 * The HTTP API over the lab's multi-camera capture: listings match the tshark-made
 * manifest, errors are JSON with the catalog's codes and HTTP statuses, and a pcap
 * downloaded over a real socket holds exactly the stream's packets in capture order
 * plus its RTSP dialog (tshark is the judge).
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createHttpApi, startHttpApi } from '../../../core/api/http-server.js';
import { silentLogger } from '../../../core/logger.js';
import type { SessionRecord, StreamRecord } from '../../../core/contracts/records.js';
import { CAPTURES, epochNs, importCaptures, iso, manifest, mediaStreams, noTshark, recordOf, streamFilter, type ManifestStream } from '../query/fixture.js';

const MULTI = 'netns_multi.pcap';
const M = manifest(MULTI);
const MEDIA = mediaStreams(M);
const BASE = 'rtsp://camtap.test:8554';
const hostOf = (ep: string) => ep.slice(0, ep.lastIndexOf(':'));
const find = (pred: (s: ManifestStream) => boolean) => MEDIA.find(pred)!;
const CAM1 = find((s) => s.src === '10.77.0.11:47540' && s.dst === '10.77.0.101:14104'); // H.264 over UDP
const H265 = find((s) => s.transport === 'tcp'); // H.265 over RTSP/TCP interleaved
const JPEG = find((s) => s.decode?.codec === 'JPEG');

interface ErrorJson {
  error: string;
  message: string;
}

async function setup(t: { teardown(fn: () => unknown): void }) {
  const imp = await importCaptures(t, [MULTI]);
  const deps = { catalog: imp.catalog, indexDir: path.join(imp.dataDir, 'index'), log: silentLogger, rtspBase: () => BASE };
  const app = createHttpApi(deps);
  t.teardown(() => app.close());
  const idOf = (ms: ManifestStream) => recordOf(imp.streams, ms)!.id;
  return { imp, deps, app, idOf };
}

t.test('GET /api/health answers ok', async (t) => {
  const { app } = await setup(t);
  const r = await app.inject({ method: 'GET', url: '/api/health' });
  t.equal(r.statusCode, 200);
  t.same(r.json(), { status: 'ok' });
});

t.test('GET /api/streams lists every stream of the manifest with its packet count, and URLs for camera media', async (t) => {
  const { app } = await setup(t);
  const r = await app.inject({ method: 'GET', url: '/api/streams' });
  t.equal(r.statusCode, 200);
  t.match(r.headers['content-type'], /application\/json/);
  const list = r.json<Array<StreamRecord & { replayUrl?: string; liveUrl?: string }>>();
  t.equal(list.length, M.rtp_streams.length, 'one record per manifest stream (NAT-punch packets included, as `camtap streams`)');
  for (const ms of M.rtp_streams) {
    const s = list.find((x) => x.src === ms.src && x.dst === ms.dst && x.ssrc === parseInt(ms.ssrc, 16));
    t.ok(s, `${ms.src} -> ${ms.dst} ${ms.ssrc} listed`);
    if (!s) continue;
    t.equal(s.packets, ms.unique_packets, `${ms.src} -> ${ms.dst}: ${ms.unique_packets} packets (manifest)`);
    if (MEDIA.includes(ms)) {
      t.equal(s.replayUrl, `${BASE}/replay/${s.id}`, 'replayUrl from the RTSP base');
      t.equal(s.liveUrl, `${BASE}/live/${s.id}`, 'liveUrl from the RTSP base');
    } else {
      t.equal(s.replayUrl, undefined, 'no replayUrl for what a client sends toward a camera');
    }
  }
});

t.test('GET /api/streams filters by codec, ssrc, destination and time range', async (t) => {
  const { app, idOf } = await setup(t);
  const ids = async (q: string) => {
    const r = await app.inject({ method: 'GET', url: `/api/streams?${q}` });
    t.equal(r.statusCode, 200, q);
    return r.json<StreamRecord[]>().map((s) => s.id).sort();
  };
  t.same(await ids('codec=jpeg'), [idOf(JPEG)], 'codec, any case');
  t.same(await ids(`ssrc=${H265.ssrc}`), [idOf(H265)], 'ssrc in hex');
  t.same(await ids(`ssrc=${parseInt(H265.ssrc, 16)}`), [idOf(H265)], 'ssrc in decimal');
  const to102 = MEDIA.filter((s) => hostOf(s.dst) === '10.77.0.102');
  t.equal(to102.length, 2);
  t.same(await ids('dst=10.77.0.102'), to102.map(idOf).sort(), 'destination address');
  // Streams whose recording reaches past half a second after the JPEG stream's last packet.
  const after = JPEG.last_time + 0.5;
  const want = M.rtp_streams.filter((s) => s.last_time >= after);
  t.ok(want.length > 0 && want.length < M.rtp_streams.length, 'the window splits the streams');
  const startIso = new Date(after * 1000).toISOString();
  t.equal((await ids(`start=${encodeURIComponent(startIso)}`)).length, want.length, 'start keeps the streams that overlap the range');
  t.notOk((await ids(`start=${encodeURIComponent(startIso)}`)).includes(idOf(JPEG)), 'the JPEG stream ended before');
});

t.test('GET /api/streams/:id answers the record, 404 JSON for an unknown id', async (t) => {
  const { app, idOf } = await setup(t);
  const id = idOf(CAM1);
  const r = await app.inject({ method: 'GET', url: `/api/streams/${id}` });
  t.equal(r.statusCode, 200);
  const s = r.json<StreamRecord & { replayUrl: string }>();
  t.equal(s.src, CAM1.src);
  t.equal(s.dst, CAM1.dst);
  t.equal(s.packets, CAM1.unique_packets);
  t.equal(s.replayUrl, `${BASE}/replay/${id}`);
  const nf = await app.inject({ method: 'GET', url: '/api/streams/s000000000000' });
  t.equal(nf.statusCode, 404);
  t.same(nf.json<ErrorJson>(), { error: 'CAMTAP_ERR_NOT_FOUND', message: 'stream s000000000000 not found' });
});

t.test('bad queries are 400, ranges outside the recording 416, unknown things 404, all as JSON with a code', async (t) => {
  const { app, idOf } = await setup(t);
  const id = idOf(CAM1);
  const cases: Array<[string, number, string]> = [
    ['/api/streams?camra=10.77.0.11', 400, 'CAMTAP_ERR_USAGE'],
    ['/api/streams?ssrc=xyz', 400, 'CAMTAP_ERR_USAGE'],
    ['/api/streams?start=yesterday-ish', 400, 'CAMTAP_ERR_RANGE'],
    [`/api/streams/${id}/pcap?format=pcapx`, 400, 'CAMTAP_ERR_USAGE'],
    [`/api/streams/${id}/pcap?start=2026-11-23T21:07:00Z&end=2026-11-23T21:06:00Z`, 400, 'CAMTAP_ERR_RANGE'],
    [`/api/streams/${id}/pcap?start=2030-01-01T00:00:00Z`, 416, 'CAMTAP_ERR_RANGE'],
    [`/api/streams/${id}/mp4?end=2000-01-01T00:00:00Z`, 416, 'CAMTAP_ERR_RANGE'],
    ['/api/streams/s000000000000/pcap', 404, 'CAMTAP_ERR_NOT_FOUND'],
    ['/api/streams/s000000000000/mkv', 404, 'CAMTAP_ERR_NOT_FOUND'],
    ['/api/nothing-here', 404, 'CAMTAP_ERR_NOT_FOUND'],
  ];
  for (const [url, status, code] of cases) {
    const r = await app.inject({ method: 'GET', url });
    t.equal(r.statusCode, status, `${url}: ${status}`);
    t.match(r.headers['content-type'], /application\/json/, `${url}: JSON`);
    const body = r.json<ErrorJson>();
    t.equal(body.error, code, `${url}: ${code}`);
    t.type(body.message, 'string');
    t.ok(body.message.length > 0, `${url}: a message (${body.message})`);
  }
});

t.test('a stream that is not video, or no ffmpeg: a JSON error before any byte', async (t) => {
  // RTP pushed with no RTSP dialog: payload type 96 with no rtpmap, so the codec is unknown.
  const imp = await importCaptures(t, ['lo_push_rtp_h264.pcap']);
  const app = createHttpApi({ catalog: imp.catalog, indexDir: path.join(imp.dataDir, 'index'), log: silentLogger, rtspBase: () => BASE });
  t.teardown(() => app.close());
  const id = imp.streams[0]!.id;
  const r = await app.inject({ method: 'GET', url: `/api/streams/${id}/mp4` });
  t.equal(r.statusCode, 422);
  t.equal(r.json<ErrorJson>().error, 'CAMTAP_ERR_EXPORT_CODEC');
  t.match(r.json<ErrorJson>().message, /pcap/, 'the message points to the packet export');

  const { app: multi, idOf } = await setup(t);
  const saved = process.env.CAMTAP_FFMPEG;
  process.env.CAMTAP_FFMPEG = '/nonexistent/ffmpeg';
  t.teardown(() => {
    if (saved === undefined) delete process.env.CAMTAP_FFMPEG;
    else process.env.CAMTAP_FFMPEG = saved;
  });
  const m = await multi.inject({ method: 'GET', url: `/api/streams/${idOf(CAM1)}/mp4` });
  t.equal(m.statusCode, 503);
  const body = m.json<ErrorJson>();
  t.equal(body.error, 'CAMTAP_ERR_TOOL_MISSING');
  t.match(body.message, '/nonexistent/ffmpeg');
  t.match(body.message, 'apt install ffmpeg');
});

t.test('GET /api/sessions and /api/inventory show the manifest\'s dialogs, cameras and VMSs', async (t) => {
  const { app } = await setup(t);
  const r = await app.inject({ method: 'GET', url: '/api/sessions' });
  t.equal(r.statusCode, 200);
  const sessions = r.json<SessionRecord[]>();
  t.same(sessions.map((s) => s.sessionId).sort(), M.rtsp_sessions.map((s) => s.session_id).sort(), 'one per RTSP session id of the manifest');
  for (const ms of M.rtsp_sessions) {
    const s = sessions.find((x) => x.sessionId === ms.session_id)!;
    t.same(s.requests.map((x) => x.method), ms.requests.map((x) => x.method), `${ms.session_id}: the requests in order`);
  }
  const inv = await app.inject({ method: 'GET', url: '/api/inventory' });
  t.equal(inv.statusCode, 200);
  const { vms, cameras } = inv.json<{ vms: Array<{ address: string }>; cameras: Array<{ address: string }> }>();
  t.same(cameras.map((c) => c.address).sort(), [...new Set(M.rtsp_sessions.map((s) => hostOf(s.server)))].sort(), 'cameras: the RTSP servers');
  t.same(vms.map((v) => v.address).sort(), [...new Set(M.rtsp_sessions.map((s) => hostOf(s.client)))].sort(), 'VMSs: the RTSP clients');
});

// ------------------------------------------------------------------ pcap over a real socket

function tshark(file: string, filter: string, fields: string[]): string[] {
  const args = ['-r', file, '-o', 'rtp.heuristic_rtp:TRUE', '-Y', filter, '-T', 'fields', '-E', 'occurrence=a', '-E', 'aggregator=|'];
  for (const f of fields) args.push('-e', f);
  return execFileSync('tshark', args, { encoding: 'utf8', maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'ignore'] })
    .split('\n')
    .filter((l) => l !== '');
}

/** One row per RTP packet of `ms` (capture time, seq), in capture order, as tshark dissects `file`. */
function rtpRows(file: string, ms: ManifestStream): Array<{ time: string; seq: string }> {
  const ssrc = ms.ssrc.toLowerCase();
  const rows: Array<{ time: string; seq: string }> = [];
  for (const line of tshark(file, streamFilter(ms), ['frame.time_epoch', 'rtp.seq', 'rtp.ssrc'])) {
    const [time, seqs, ssrcs] = line.split('\t') as [string, string, string];
    const ss = ssrcs.split('|');
    seqs.split('|').forEach((q, i) => {
      if (ss[i]!.toLowerCase() === ssrc) rows.push({ time, seq: q });
    });
  }
  return rows;
}

t.test('GET /api/streams/:id/pcap over HTTP: exactly the stream\'s packets in capture order, and its RTSP dialog', { skip: noTshark }, async (t) => {
  const { deps, idOf } = await setup(t);
  const api = await startHttpApi({ ...deps, port: 0 });
  t.teardown(() => api.close());
  const dir = mkdtempSync(path.join(os.tmpdir(), 'camtap-api-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const original = path.join(CAPTURES, MULTI);

  for (const ms of [CAM1, H265]) {
    const want = rtpRows(original, ms);
    t.equal(want.length, ms.packets, `tshark finds the manifest's ${ms.packets} packets in the original`);
    const session = M.rtsp_sessions.find((s) => s.session_id === ms.rtsp_session)!;
    for (const format of ['pcap', 'pcapng'] as const) {
      const id = idOf(ms);
      const res = await fetch(`http://127.0.0.1:${api.port}/api/streams/${id}/pcap?format=${format}`);
      t.equal(res.status, 200, `${ms.transport} ${format}: 200`);
      t.equal(res.headers.get('content-type'), format === 'pcap' ? 'application/vnd.tcpdump.pcap' : 'application/x-pcapng');
      t.match(res.headers.get('content-disposition') ?? '', new RegExp(`^attachment; filename="camtap-${id}-\\d{8}T\\d{6}Z\\.${format}"$`));
      const file = path.join(dir, `${id}.${format}`);
      writeFileSync(file, Buffer.from(await res.arrayBuffer()));
      t.same(rtpRows(file, ms), want, `${ms.transport} ${format}: the stream's packets, same capture times and seqs, same order`);
      const others = tshark(file, `!(rtp.ssrc==${ms.ssrc}) && !rtsp`, ['frame.number']);
      t.same(others, [], `${ms.transport} ${format}: no frame that is neither the stream nor RTSP`);
      const methods = tshark(file, 'rtsp.request', ['rtsp.method']).flatMap((l) => l.split('|'));
      t.same(methods, session.requests.map((r) => r.method), `${ms.transport} ${format}: the dialog's requests (${methods.join(' ')})`);
    }
  }

  // A window: the packets captured inside it, nothing before or after.
  const t0 = epochNs(String(CAM1.first_time)) + 5_000_000_000n;
  const t1 = t0 + 4_000_000_000n;
  const all = rtpRows(original, CAM1);
  const inWindow = all.filter((r) => epochNs(r.time) >= t0 && epochNs(r.time) <= t1);
  t.ok(inWindow.length > 0 && inWindow.length < all.length, 'the window holds part of the stream');
  const res = await fetch(`http://127.0.0.1:${api.port}/api/streams/${idOf(CAM1)}/pcap?start=${encodeURIComponent(iso(t0))}&end=${encodeURIComponent(iso(t1))}`);
  t.equal(res.status, 200);
  const file = path.join(dir, 'window.pcap');
  writeFileSync(file, Buffer.from(await res.arrayBuffer()));
  t.same(rtpRows(file, CAM1), inWindow, 'a window: exactly the packets captured in it');
});
