/**
 * Browser media (core/api/media-routes.ts): codec strings computed by hand from the
 * H.264 spec and checked against ffprobe, fMP4 answers judged by ffprobe against the
 * lab manifest (frames) and tshark (the keyframe a window starts at), H.265 re-encoded to
 * H.264 for the browser, errors before ffmpeg runs, ffmpeg killed when the client goes
 * away, and the bound on concurrent responses.
 */
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createHttpApi, startHttpApi } from '../../../core/api/http-server.js';
import { avcCodecFromSdp, avcCodecFromSps, browserFfmpegArgs, findInitSegment, needsTranscode } from '../../../core/api/media-routes.js';
import { silentLogger } from '../../../core/logger.js';
import { have } from '../../helpers/peers.js';
import { accessUnits, importCaptures, iso, manifest, mediaStreams, noTshark, recordOf, tsharkStream, uniqueInOrder, type ManifestStream } from '../query/fixture.js';

const FIXTURE = 'lo_udp_h264.pcap';
const M = manifest(FIXTURE);
const H264 = mediaStreams(M)[0]! as ManifestStream & { decode: { frames_decoded: number } };
const noFfmpeg = have('ffmpeg') && have('ffprobe') ? false : 'needs ffmpeg and ffprobe';

function tmp(t: { teardown(fn: () => void): void }): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'camtap-media-routes-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

function probe(file: string): { codec: string; profile: string; level: number; frames: number; tag: string } {
  const r = spawnSync('ffprobe', ['-v', 'error', '-count_frames', '-select_streams', 'v:0', '-show_entries', 'stream=codec_name,profile,level,nb_read_frames,codec_tag_string', '-of', 'json', file], { encoding: 'utf8' });
  const s = (JSON.parse(r.stdout) as { streams: Array<{ codec_name: string; profile: string; level: number; nb_read_frames: string; codec_tag_string: string }> }).streams[0]!;
  return { codec: s.codec_name, profile: s.profile, level: s.level, frames: Number(s.nb_read_frames), tag: s.codec_tag_string };
}

/** profile_idc of ffprobe's profile names (ITU-T H.264 Annex A.2). */
const PROFILE_IDC: Record<string, number> = { Baseline: 66, 'Constrained Baseline': 66, Main: 77, High: 100 };

/** ffmpeg child processes of this test process. */
function ffmpegChildren(): number[] {
  const r = spawnSync('ps', ['-o', 'pid=,comm=', '--ppid', String(process.pid)], { encoding: 'utf8' });
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f[1] === 'ffmpeg')
    .map((f) => Number(f[0]));
}

async function setup(t: { teardown(fn: () => unknown): void }, files = [FIXTURE], extra: { maxSessions?: number } = {}) {
  const imp = await importCaptures(t, files);
  const deps = { catalog: imp.catalog, indexDir: path.join(imp.dataDir, 'index'), log: silentLogger, rtspBase: () => 'rtsp://camtap.test:8554' };
  const app = createHttpApi(deps);
  t.teardown(() => app.close());
  return { imp, deps, app, ...extra };
}

t.test('avc1 codec string from an SPS: profile_idc, constraint flags, level_idc as hex (RFC 6381 §3.3)', async (t) => {
  // The lab camera's SPS from the fixture's SDP: base64 Z0LAHtoC... = 67 42 c0 1e da 02 ...
  t.equal(avcCodecFromSps(Buffer.from('Z0LAHtoCgL/lwFqDAwNSgAAAAwCAAAAZR4sXUA==', 'base64')), 'avc1.42c01e');
  t.equal(avcCodecFromSps(Buffer.from([0x67, 0x64, 0x00, 0x28])), 'avc1.640028', 'High 4.0');
  t.equal(avcCodecFromSps(Buffer.from([0x68, 0xce, 0x3c, 0x80])), null, 'a PPS is not an SPS');
  t.equal(avcCodecFromSps(Buffer.from([0x67, 0x42])), null, 'too short');
});

t.test('avc1 codec string from an SDP: the SPS in sprop-parameter-sets first, else profile-level-id', async (t) => {
  const sdp = (fmtp: string) => ['v=0', 'o=- 0 0 IN IP4 127.0.0.1', 's=x', 't=0 0', 'm=video 0 RTP/AVP 96', 'a=rtpmap:96 H264/90000', `a=fmtp:96 ${fmtp}`, ''].join('\r\n');
  const session = M.rtsp_sessions[0] as unknown as { sdp: { attributes: string[] } };
  const lab = session.sdp.attributes.find((a) => a.startsWith('fmtp:96'))!.slice('fmtp:96 '.length);
  t.equal(avcCodecFromSdp(sdp(lab)), 'avc1.42c01e', "the lab camera's SDP");
  t.equal(avcCodecFromSdp(sdp('packetization-mode=1;profile-level-id=4D401F')), 'avc1.4d401f', 'profile-level-id when no SPS is given');
  // A camera whose profile-level-id disagrees with its SPS: the SPS is what the decoder gets.
  t.equal(avcCodecFromSdp(sdp('profile-level-id=42e01f;sprop-parameter-sets=Z2QAKKw=,aO48gA==')), 'avc1.640028');
  t.equal(avcCodecFromSdp(sdp('packetization-mode=1')), null, 'neither');
  t.equal(avcCodecFromSdp(sdp('x').replace('H264', 'H265')), null, 'not H.264');
});

t.test('the init segment of ffmpeg fMP4: found once moov is complete, its codec string as ffprobe reads the stream', { skip: noFfmpeg }, async (t) => {
  const dir = tmp(t);
  for (const [profile, level] of [['baseline', '3.0'], ['main', '3.1'], ['high', '4.0']] as const) {
    const file = path.join(dir, `${profile}.mp4`);
    execFileSync('ffmpeg', ['-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc=size=320x240:rate=25', '-t', '2', '-c:v', 'libx264', '-profile:v', profile, '-level', level, '-pix_fmt', 'yuv420p', '-movflags', 'frag_keyframe+empty_moov+default_base_moof', '-f', 'mp4', file]);
    const buf = readFileSync(file);
    const p = probe(file);
    const init = findInitSegment(buf);
    t.ok(init && init.end > 0, `${profile}: init segment found`);
    if (!init) continue;
    t.equal(buf.toString('latin1', init.end + 4, init.end + 8), 'moof', `${profile}: the first fragment follows it`);
    const want = `${p.tag}.${PROFILE_IDC[p.profile]!.toString(16)}`;
    t.equal(init.codecs?.slice(0, want.length), want, `${profile}: sample entry and profile_idc as ffprobe says (${p.profile})`);
    t.equal(parseInt(init.codecs!.slice(-2), 16), p.level, `${profile}: level_idc ${p.level} as ffprobe says`);
    t.equal(findInitSegment(buf.subarray(0, init.end - 1)), null, `${profile}: one byte short of moov's end is not complete`);
  }
  t.same(findInitSegment(Buffer.from('this is not an mp4 file at all')), { end: -1, codecs: null }, 'not boxes');
  t.equal(findInitSegment(Buffer.alloc(4)), null, 'too little to tell');
});

t.test('which codecs are re-encoded for the browser', async (t) => {
  t.equal(needsTranscode('H264', 'auto', 's1'), false, 'H.264 is copied');
  t.equal(needsTranscode('H265', 'auto', 's1'), true, 'H.265 is re-encoded (no MSE decoder in chromium)');
  t.equal(needsTranscode('JPEG', 'auto', 's1'), true, 'MJPEG is re-encoded (no MSE codec)');
  t.equal(needsTranscode('H264', 'h264', 's1'), true, 'codec=h264 forces it');
  t.throws(() => needsTranscode('H265', 'copy', 's1'), { code: 'CAMTAP_ERR_EXPORT_CODEC' }, 'codec=copy refuses what the browser cannot play');
  t.throws(() => needsTranscode(null, 'auto', 's1'), { code: 'CAMTAP_ERR_EXPORT_CODEC' }, 'an unknown codec');
  const a = browserFfmpegArgs('rtsp://127.0.0.1:1/replay/s1', { transcode: false, live: false });
  t.ok(a.includes('-copyts') && a.join(' ').includes('-c copy'), 'a recording is copied with its RTP times');
  t.ok(a.join(' ').includes('-movflags frag_keyframe+empty_moov+default_base_moof'), 'fragmented MP4');
  t.equal(a[a.length - 1], 'pipe:1');
  const l = browserFfmpegArgs('rtsp://127.0.0.1:1/live/cam', { transcode: true, live: true });
  t.notOk(l.includes('-copyts'), 'live keeps ffmpeg’s zero-based times');
  t.ok(l.join(' ').includes('-c:v libx264'), 'transcode with libx264');
});

t.test('GET /api/streams/:id/media-info: codec and MSE type from the SDP; 404 for an unknown stream', async (t) => {
  const { app, imp } = await setup(t);
  const id = recordOf(imp.streams, H264)!.id;
  const r = await app.inject({ method: 'GET', url: `/api/streams/${id}/media-info` });
  t.equal(r.statusCode, 200);
  t.match(r.json(), { id, codec: 'H264', transcoded: false, mime: 'video/mp4; codecs="avc1.42c01e"', url: `/api/streams/${id}/fmp4` });
  const nf = await app.inject({ method: 'GET', url: '/api/streams/s000000000000/media-info' });
  t.equal(nf.statusCode, 404);
  t.equal(nf.json().error, 'CAMTAP_ERR_NOT_FOUND');
});

t.test('GET /api/streams/:id/fmp4 at speed=max: the whole recording as fMP4 with the exact codec string, every frame of the manifest', { skip: noFfmpeg }, async (t) => {
  const { app, imp } = await setup(t);
  const rec = recordOf(imp.streams, H264)!;
  const r = await app.inject({ method: 'GET', url: `/api/streams/${rec.id}/fmp4?speed=max` });
  t.equal(r.statusCode, 200, r.statusCode === 200 ? '' : r.body);
  t.equal(r.headers['content-type'], 'video/mp4; codecs="avc1.42c01e"', 'the codec string of the init segment');
  t.equal(r.headers['x-camtap-transcoded'], 'false');
  t.equal(r.headers['x-camtap-start'], rec.start, 'media time 0 is the first packet of the recording');
  const file = path.join(tmp(t), 'all.mp4');
  writeFileSync(file, r.rawPayload);
  const p = probe(file);
  t.equal(p.codec, 'h264');
  t.equal(p.frames, H264.decode.frames_decoded, `${H264.decode.frames_decoded} frames (manifest)`);
  t.equal(r.rawPayload.toString('latin1', 4, 8), 'ftyp');
  t.ok(r.rawPayload.includes(Buffer.from('moof')), 'fragments (moof) follow');
});

t.test('GET /api/streams/:id/fmp4?start= starts at the keyframe tshark finds at or before start, and says when', { skip: noFfmpeg || noTshark }, async (t) => {
  const { app, imp } = await setup(t);
  const rec = recordOf(imp.streams, H264)!;
  const units = accessUnits('H264', uniqueInOrder(tsharkStream(FIXTURE, H264)));
  const firstNs = units[0]!.packets[0]!.tsNs;
  const startNs = firstNs + 5_300_000_000n;
  const keys = units.filter((u) => u.keyframe).map((u) => u.packets.reduce((m, p) => (p.tsNs < m ? p.tsNs : m), u.packets[0]!.tsNs));
  const keyNs = keys.filter((k) => k <= startNs).pop()!;
  t.ok(keyNs > firstNs, 'a keyframe inside the recording precedes the window (the window is not the whole)');
  const r = await app.inject({ method: 'GET', url: `/api/streams/${rec.id}/fmp4?speed=max&start=${encodeURIComponent(iso(startNs))}` });
  t.equal(r.statusCode, 200, r.statusCode === 200 ? '' : r.body);
  t.equal(r.headers['x-camtap-start'], iso(keyNs), `X-Camtap-Start is the keyframe's capture time (${iso(keyNs)})`);
  const file = path.join(tmp(t), 'window.mp4');
  writeFileSync(file, r.rawPayload);
  const want = units.filter((u) => u.packets[0]!.tsNs >= keyNs).length;
  const got = probe(file).frames;
  t.ok(Math.abs(got - want) <= 1, `${got} frames: tshark has ${want} access units from that keyframe on`);
});

t.test('H.265 is re-encoded to H.264 the browser decodes; codec=copy refuses it', { skip: noFfmpeg }, async (t) => {
  const { app, imp } = await setup(t, ['lo_udp_h265.pcap']);
  const rec = imp.streams.find((s) => s.codec === 'H265')!;
  const info = await app.inject({ method: 'GET', url: `/api/streams/${rec.id}/media-info` });
  t.match(info.json(), { codec: 'H265', transcoded: true, mime: /avc1\./ });
  const r = await app.inject({ method: 'GET', url: `/api/streams/${rec.id}/fmp4?speed=max` });
  t.equal(r.statusCode, 200, r.statusCode === 200 ? '' : r.body);
  t.match(r.headers['content-type'], /^video\/mp4; codecs="avc1\.4d[0-9a-f]{4}"$/, 'main-profile H.264');
  t.equal(r.headers['x-camtap-transcoded'], 'true');
  const file = path.join(tmp(t), 'h265.mp4');
  writeFileSync(file, r.rawPayload);
  const p = probe(file);
  t.equal(p.codec, 'h264', 'ffprobe reads H.264');
  const ms = mediaStreams(manifest('lo_udp_h265.pcap'))[0]! as ManifestStream & { decode: { frames_decoded: number } };
  t.ok(Math.abs(p.frames - ms.decode.frames_decoded) <= 2, `${p.frames} frames, the manifest decodes ${ms.decode.frames_decoded}`);
  const copy = await app.inject({ method: 'GET', url: `/api/streams/${rec.id}/fmp4?codec=copy` });
  t.equal(copy.statusCode, 422);
  t.equal(copy.json().error, 'CAMTAP_ERR_EXPORT_CODEC');
});

t.test('errors before ffmpeg runs: unknown stream 404, range outside 416, bad parameters 400; live without a live source 404', async (t) => {
  const { app, imp } = await setup(t);
  const id = recordOf(imp.streams, H264)!.id;
  const cases: Array<[string, number, string]> = [
    ['/api/streams/s000000000000/fmp4', 404, 'CAMTAP_ERR_NOT_FOUND'],
    [`/api/streams/${id}/fmp4?start=2035-01-01T00:00:00Z`, 416, 'CAMTAP_ERR_RANGE'],
    [`/api/streams/${id}/fmp4?start=soonish`, 400, 'CAMTAP_ERR_RANGE'],
    [`/api/streams/${id}/fmp4?speed=fast`, 400, 'CAMTAP_ERR_USAGE'],
    [`/api/streams/${id}/fmp4?codec=vp9`, 400, 'CAMTAP_ERR_USAGE'],
    [`/api/streams/${id}/fmp4?sped=1`, 400, 'CAMTAP_ERR_USAGE'],
    ['/api/live/cam1/fmp4', 404, 'CAMTAP_ERR_NOT_FOUND'],
    ['/api/live/cam1/media-info', 404, 'CAMTAP_ERR_NOT_FOUND'],
  ];
  for (const [url, status, code] of cases) {
    const r = await app.inject({ method: 'GET', url });
    t.equal(r.statusCode, status, `${url}: ${status}`);
    t.equal(r.json().error, code, `${url}: ${code}`);
  }
  const head = await app.inject({ method: 'HEAD', url: `/api/streams/${id}/fmp4` });
  t.equal(head.statusCode, 404, 'no HEAD (it would run ffmpeg for nothing)');
  t.same(ffmpegChildren(), [], 'no ffmpeg was started');
});

t.test('a client that goes away stops ffmpeg; more than maxSessions at once are 503', { skip: noFfmpeg }, async (t) => {
  const imp = await importCaptures(t, [FIXTURE]);
  const api = await startHttpApi({ catalog: imp.catalog, indexDir: path.join(imp.dataDir, 'index'), log: silentLogger, rtspBase: () => 'rtsp://camtap.test:8554', port: 0 });
  t.teardown(() => api.close());
  const id = recordOf(imp.streams, H264)!.id;
  const base = `http://127.0.0.1:${api.port}`;
  const ac = new AbortController();
  // Real time: the 10 s recording is still being sent when the client leaves.
  const res = await fetch(`${base}/api/streams/${id}/fmp4`, { signal: ac.signal });
  t.equal(res.status, 200);
  const reader = res.body!.getReader();
  const first = await reader.read();
  t.ok(first.value && first.value.length > 0, 'video arrives');
  t.equal(ffmpegChildren().length, 1, 'one ffmpeg runs for the response');
  ac.abort();
  await reader.cancel().catch(() => undefined);
  for (let i = 0; i < 200 && ffmpegChildren().length > 0; i++) await sleep(100);
  t.same(ffmpegChildren(), [], 'ffmpeg is gone once the client is');

  // The bound, with a second API whose limit is 1.
  const { mediaRoutes } = await import('../../../core/api/media-routes.js');
  const Fastify = (await import('fastify')).default;
  const small = Fastify({ forceCloseConnections: true });
  const { installErrorHandling } = await import('../../../core/api/http-errors.js');
  installErrorHandling(small, silentLogger);
  small.register(mediaRoutes, { prefix: '/api', catalog: imp.catalog, indexDir: path.join(imp.dataDir, 'index'), log: silentLogger, maxSessions: 1 });
  await small.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(() => small.close());
  const addr = small.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  const ac2 = new AbortController();
  const one = await fetch(`http://127.0.0.1:${port}/api/streams/${id}/fmp4`, { signal: ac2.signal });
  t.equal(one.status, 200, 'the first response runs');
  const two = await fetch(`http://127.0.0.1:${port}/api/streams/${id}/fmp4`);
  t.equal(two.status, 503, 'the second is refused while the first runs');
  t.equal(((await two.json()) as { error: string }).error, 'CAMTAP_ERR_BUSY');
  ac2.abort();
  await one.body?.cancel().catch(() => undefined);
  for (let i = 0; i < 200 && ffmpegChildren().length > 0; i++) await sleep(100);
  t.same(ffmpegChildren(), [], 'and its ffmpeg ends with it');
});
