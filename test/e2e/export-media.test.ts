/**
 * `camtap export --format mp4|mkv` and the API's `/mp4`, `/mkv` downloads, judged by
 * ffprobe/ffmpeg against the lab's tshark-made manifest: every decodable stream of the
 * multi-camera capture (H.264 and MJPEG over UDP, H.265 over RTSP/TCP) comes out with
 * the manifest's decoded frame count, a duration matching the stream's capture span
 * within two frames, an index a player seeks with, and a window from the middle that
 * lasts the window plus the lead-in from the keyframe before it (found by tshark).
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CAPTURES, CLI, camtap, camtapJson, tempDir } from '../helpers/camtap.js';
import { have, run } from '../helpers/peers.js';
import { startHttpApi } from '../../core/api/http-server.js';
import { silentLogger } from '../../core/logger.js';
import type { StreamRecord } from '../../core/contracts/records.js';
import { accessUnits, importCaptures, iso, manifest, mediaStreams, noTshark, recordOf, tsharkStream, uniqueInOrder, type ManifestStream } from '../core/query/fixture.js';

const MULTI = 'netns_multi.pcap';
const M = manifest(MULTI);
type Decodable = ManifestStream & { access_units: number; decode: { codec: string; frames_decoded: number } };
const DECODABLE = mediaStreams(M).filter((s) => s.decode !== null) as Decodable[];
const skip = !have('ffmpeg') || !have('ffprobe') ? 'ffmpeg and ffprobe make and judge the exports (scripts/install-deps.sh installs them)' : noTshark;
const FFPROBE_CODEC: Record<string, string> = { H264: 'h264', H265: 'hevc', JPEG: 'mjpeg' };
/** Capture-time jitter allowed at each end of a span (packets of one frame leave over a few ms). */
const JITTER_S = 0.02;

interface Probe {
  codec: string;
  frames: number;
  duration: number;
}

async function probe(file: string): Promise<Probe> {
  const r = await run('ffprobe', ['-v', 'error', '-count_frames', '-select_streams', 'v:0', '-show_entries', 'stream=nb_read_frames,codec_name:format=duration', '-of', 'json', file], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`ffprobe ${file}: ${r.stderr}`);
  const j = JSON.parse(r.stdout) as { streams: Array<{ codec_name: string; nb_read_frames: string }>; format: { duration?: string } };
  return { codec: j.streams[0]!.codec_name, frames: Number(j.streams[0]!.nb_read_frames), duration: Number(j.format.duration ?? NaN) };
}

/** The stream's capture span (s) and frame interval (s), from the manifest (tshark). */
function spanOf(ms: Decodable): { span: number; interval: number } {
  const span = ms.last_time - ms.first_time;
  return { span, interval: span / (ms.access_units - 1) };
}

/** Where ffmpeg lands when asked to seek to `at` seconds: the first video packet it reads. */
async function seekLanding(file: string, at: number): Promise<{ code: number | null; stderr: string; pts: number }> {
  const dec = await run('ffmpeg', ['-nostdin', '-v', 'error', '-ss', at.toFixed(3), '-i', file, '-frames:v', '1', '-f', 'null', '-'], { timeoutMs: 60_000 });
  const p = await run('ffprobe', ['-v', 'error', '-select_streams', 'v:0', '-read_intervals', `${at.toFixed(3)}%+#1`, '-show_entries', 'packet=pts_time', '-of', 'csv=p=0', file], { timeoutMs: 60_000 });
  return { code: dec.code, stderr: dec.stderr, pts: Number(p.stdout.trim().split('\n')[0]) };
}

/** The capture time (ns) of the keyframe access unit at or before `atNs`, and the largest keyframe spacing (s), per tshark. */
function keyframes(ms: Decodable, atNs: bigint): { keyNs: bigint; maxGop: number; unitsFrom: (a: bigint, b: bigint) => number } {
  const units = accessUnits(ms.decode.codec, uniqueInOrder(tsharkStream(MULTI, ms)));
  const keys = units.filter((u) => u.keyframe).map((u) => u.packets.reduce((m, p) => (p.tsNs < m ? p.tsNs : m), u.packets[0]!.tsNs));
  let keyNs = keys[0]!;
  for (const k of keys) if (k <= atNs) keyNs = k;
  let maxGop = 0;
  for (let i = 1; i < keys.length; i++) maxGop = Math.max(maxGop, Number(keys[i]! - keys[i - 1]!) / 1e9);
  const unitsFrom = (a: bigint, b: bigint) => units.filter((u) => u.packets[0]!.tsNs >= a && u.packets[0]!.tsNs <= b).length;
  return { keyNs, maxGop, unitsFrom };
}

t.test('camtap export --format mp4|mkv: frames, duration, index and seeking of every decodable stream', { skip }, async (t) => {
  const data = tempDir(t);
  t.equal((await camtap(['import', path.join(CAPTURES, MULTI)], { data })).code, 0);
  const streams = await camtapJson<StreamRecord[]>(['streams'], data);
  t.equal(DECODABLE.length, 5, 'the manifest decodes five streams');
  for (const ms of DECODABLE) {
    const rec = recordOf(streams, ms)!;
    t.ok(rec, `${ms.src} -> ${ms.dst} imported`);
    const { span, interval } = spanOf(ms);
    const label = `${ms.decode.codec} ${ms.src} -> ${ms.dst}`;
    const { maxGop } = keyframes(ms, 0n);
    for (const format of ['mp4', 'mkv'] as const) {
      const out = path.join(data, `${rec.id}.${format}`);
      const r = await camtap(['export', '--stream', rec.id, '--format', format, '--out', out], { data });
      t.equal(r.code, 0, `${label} ${format}: exit 0 ${r.stderr}`);
      const p = await probe(out);
      t.equal(p.codec, FFPROBE_CODEC[ms.decode.codec], `${label} ${format}: codec ${p.codec}`);
      t.equal(p.frames, ms.decode.frames_decoded, `${label} ${format}: ${ms.decode.frames_decoded} frames (manifest)`);
      t.ok(Math.abs(p.duration - span) <= 2 * interval + JITTER_S, `${label} ${format}: duration ${p.duration} s, capture span ${span.toFixed(3)} s (within two frames of ${interval.toFixed(3)} s)`);
      // An index a player seeks with: mp4's moov before mdat (faststart), mkv's Cues element (ID 0x1C53BB6B).
      const bytes = readFileSync(out);
      if (format === 'mp4') {
        const moov = bytes.indexOf('moov');
        const mdat = bytes.indexOf('mdat');
        t.ok(moov > 0 && mdat > 0 && moov < mdat, `${label} mp4: moov (index) before mdat (faststart)`);
      } else {
        t.ok(bytes.indexOf(Buffer.from([0x1c, 0x53, 0xbb, 0x6b])) > 0, `${label} mkv: has Cues`);
      }
      const mid = p.duration / 2;
      const s = await seekLanding(out, mid);
      t.equal(s.code, 0, `${label} ${format}: ffmpeg -ss ${mid.toFixed(1)} decodes a frame`);
      t.equal(s.stderr.trim(), '', `${label} ${format}: no errors after seeking`);
      t.ok(s.pts <= mid + interval && s.pts >= mid - maxGop - interval, `${label} ${format}: seeking to ${mid.toFixed(2)} s lands at ${s.pts} s (at most one GOP of ${maxGop.toFixed(2)} s before)`);
    }
  }
});

t.test('a 10 s window from the middle lasts 10 s plus the lead-in from the keyframe before it', { skip }, async (t) => {
  const data = tempDir(t);
  t.equal((await camtap(['import', path.join(CAPTURES, MULTI)], { data })).code, 0);
  const streams = await camtapJson<StreamRecord[]>(['streams'], data);
  for (const ms of DECODABLE) {
    const rec = recordOf(streams, ms)!;
    const { interval } = spanOf(ms);
    const label = `${ms.decode.codec} ${ms.src} -> ${ms.dst}`;
    const firstNs = BigInt(Math.round(ms.first_time * 1e6)) * 1000n;
    const lastNs = BigInt(Math.round(ms.last_time * 1e6)) * 1000n;
    const startNs = (firstNs + lastNs) / 2n - 5_000_000_000n;
    const endNs = startNs + 10_000_000_000n;
    const { keyNs, maxGop, unitsFrom } = keyframes(ms, startNs);
    const out = path.join(data, `${rec.id}-window.mp4`);
    const r = await camtap(['export', '--stream', rec.id, '--format', 'mp4', '--start', iso(startNs), '--end', iso(endNs), '--out', out], { data });
    t.equal(r.code, 0, `${label}: exit 0 ${r.stderr}`);
    const p = await probe(out);
    const leadIn = Number(startNs - keyNs) / 1e9;
    t.ok(leadIn >= 0 && leadIn <= maxGop, `${label}: tshark puts the keyframe before the window ${leadIn.toFixed(3)} s earlier`);
    const want = 10 + leadIn;
    t.ok(p.duration >= 10 - 2 * interval && p.duration <= 10 + maxGop + 2 * interval + JITTER_S, `${label}: ~10 s (${p.duration} s), at most one GOP (${maxGop.toFixed(2)} s) more`);
    t.ok(Math.abs(p.duration - want) <= 2 * interval + JITTER_S, `${label}: ${p.duration} s = window from the keyframe (${want.toFixed(3)} s) within two frames`);
    const units = unitsFrom(keyNs, endNs);
    t.ok(Math.abs(p.frames - units) <= 2, `${label}: ${p.frames} frames, tshark has ${units} access units from the keyframe to the end`);
  }
});

/** Runs the CLI and keeps stdout as bytes (camtap() decodes it as text). */
function camtapBinary(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, CAMTAP_LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => out.push(d));
    p.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), 120_000);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out), stderr });
    });
  });
}

t.test('--out - streams mp4 and mkv to stdout; no ffmpeg is a clear error', { skip }, async (t) => {
  const data = tempDir(t);
  t.equal((await camtap(['import', path.join(CAPTURES, MULTI)], { data })).code, 0);
  const streams = await camtapJson<StreamRecord[]>(['streams'], data);
  const ms = DECODABLE.find((s) => s.transport === 'tcp')!;
  const rec = recordOf(streams, ms)!;
  const { span, interval } = spanOf(ms);
  for (const format of ['mp4', 'mkv'] as const) {
    const r = await camtapBinary(['export', '--stream', rec.id, '--format', format, '--out', '-', '--data', data]);
    t.equal(r.code, 0, `${format} to stdout: exit 0 ${r.stderr}`);
    const file = path.join(data, `stdout.${format}`);
    writeFileSync(file, r.stdout);
    const p = await probe(file);
    t.equal(p.frames, ms.decode.frames_decoded, `${format} to stdout: ${ms.decode.frames_decoded} frames (manifest)`);
    t.ok(Math.abs(p.duration - span) <= 2 * interval + JITTER_S, `${format} to stdout: duration ${p.duration} s (capture span ${span.toFixed(3)} s)`);
  }
  const missing = await camtap(['export', '--stream', rec.id, '--format', 'mp4', '--out', path.join(data, 'x.mp4')], { data, env: { CAMTAP_FFMPEG: '/nonexistent/ffmpeg' } });
  t.equal(missing.code, 69, 'exit 69 (EX_UNAVAILABLE)');
  t.match(missing.stderr, 'CAMTAP_ERR_TOOL_MISSING');
  t.match(missing.stderr, 'apt install ffmpeg', 'names the fix');
  const bad = await camtap(['export', '--stream', rec.id, '--format', 'avi', '--out', path.join(data, 'x.avi')], { data });
  t.equal(bad.code, 64);
  t.match(bad.stderr, 'pcap, pcapng, mp4 or mkv');
});

t.test('GET /api/streams/:id/mp4 and /mkv: the fetched video probes with the manifest frame count and duration', { skip }, async (t) => {
  const imp = await importCaptures(t, [MULTI]);
  const api = await startHttpApi({ catalog: imp.catalog, indexDir: path.join(imp.dataDir, 'index'), log: silentLogger, rtspBase: () => 'rtsp://127.0.0.1:8554', port: 0 });
  t.teardown(() => api.close());
  const dir = tempDir(t);
  for (const ms of DECODABLE) {
    const id = recordOf(imp.streams, ms)!.id;
    const { span, interval } = spanOf(ms);
    const label = `${ms.decode.codec} ${ms.src} -> ${ms.dst}`;
    const formats = ms === DECODABLE[0] ? (['mp4', 'mkv'] as const) : (['mp4'] as const);
    for (const format of formats) {
      const res = await fetch(`http://127.0.0.1:${api.port}/api/streams/${id}/${format}`);
      t.equal(res.status, 200, `${label} ${format}: 200`);
      t.equal(res.headers.get('content-type'), format === 'mp4' ? 'video/mp4' : 'video/x-matroska');
      t.match(res.headers.get('content-disposition') ?? '', `filename="camtap-${id}-`);
      const file = path.join(dir, `${id}.${format}`);
      writeFileSync(file, Buffer.from(await res.arrayBuffer()));
      const p = await probe(file);
      t.equal(p.codec, FFPROBE_CODEC[ms.decode.codec], `${label} ${format}: codec`);
      t.equal(p.frames, ms.decode.frames_decoded, `${label} ${format}: ${ms.decode.frames_decoded} frames (manifest)`);
      t.ok(Math.abs(p.duration - span) <= 2 * interval + JITTER_S, `${label} ${format}: duration ${p.duration} s (capture span ${span.toFixed(3)} s)`);
    }
  }
});
