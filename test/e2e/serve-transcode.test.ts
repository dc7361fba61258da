/**
 * `camtap serve` end to end beyond plain replay: an H.264-only client asks for the MJPEG
 * camera with `?codec=h264` and gets H.264 from one ffmpeg shared by every client of that
 * request, stopped when the last leaves; the HTTP API on `--http-port` lists the streams
 * and hands out a stream's pcap, which tshark reads back with exactly the manifest's packets.
 */
import t from 'tap';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CAPTURES, camtap, camtapJson, tempDir } from '../helpers/camtap.js';
import { startServe } from '../helpers/serve.js';
import { have, run } from '../helpers/peers.js';
import type { StreamRecord } from '../../core/contracts/records.js';

interface MS { src: string; dst: string; packets: number; decode: { codec: string; frames_decoded: number } | null }
const manifest = JSON.parse(readFileSync(path.join(CAPTURES, 'netns_multi.manifest.json'), 'utf8')) as { rtp_streams: MS[] };
const missing = ['ffmpeg', 'ffprobe', 'tshark'].filter((c) => !have(c));
const skip = missing.length ? `needs ${missing.join(', ')} (scripts/install-deps.sh installs them)` : false;

/** ffmpeg processes whose parent is `pid` (read from /proc: the transcoders camtap runs). */
function ffmpegChildren(pid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const m = /^\d+ \((.*)\) \S (\d+)/.exec(stat);
      if (m && m[1] === 'ffmpeg' && Number(m[2]) === pid) out.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

t.test('serve: ?codec=h264 transcodes through one shared ffmpeg; the HTTP API serves a stream pcap', { skip }, async (t) => {
  const data = tempDir(t);
  t.equal((await camtap(['import', path.join(CAPTURES, 'netns_multi.pcap')], { data })).code, 0);
  const streams = await camtapJson<StreamRecord[]>(['streams'], data);
  const mjpeg = manifest.rtp_streams.find((s) => s.decode?.codec === 'JPEG')!;
  const stream = streams.find((s) => s.src === mjpeg.src && s.dst === mjpeg.dst)!;
  t.equal(stream.codec, 'JPEG');

  const serve = await startServe(t, ['--data', data], { logLevel: 'warn' });
  const srv = serve.proc;
  const ports = { rtsp: serve.rtsp, http: serve.http! };

  // Two H.264-only clients of the same request at once: one transcoder.
  const url = `rtsp://127.0.0.1:${ports.rtsp}/replay/${stream.id}?codec=h264&speed=2`;
  const dir = tempDir(t);
  const pull = (name: string) => run('ffmpeg', ['-nostdin', '-v', 'error', '-rtsp_transport', 'tcp', '-i', url, '-c', 'copy', '-y', path.join(dir, `${name}.mkv`)], { timeoutMs: 90_000 });
  const a = pull('a');
  await sleep(1500);
  const b = pull('b');
  await sleep(1500);
  const during = ffmpegChildren(srv.pid!);
  t.equal(during.length, 1, `one transcoder for both clients (ffmpeg children of camtap: ${during.join(', ')})`);
  const [ra, rb] = await Promise.all([a, b]);
  for (const [name, r] of [['a', ra], ['b', rb]] as const) {
    t.equal(r.code, 0, `client ${name}: ffmpeg exits 0 ${r.stderr.slice(-300)}`);
    const probe = await run('ffprobe', ['-v', 'error', '-count_frames', '-select_streams', 'v:0', '-show_entries', 'stream=codec_name,nb_read_frames', '-of', 'json', path.join(dir, `${name}.mkv`)]);
    const st = (JSON.parse(probe.stdout) as { streams: Array<{ codec_name: string; nb_read_frames: string }> }).streams[0]!;
    t.equal(st.codec_name, 'h264', `client ${name} got H.264`);
    const dec = await run('ffmpeg', ['-nostdin', '-v', 'error', '-i', path.join(dir, `${name}.mkv`), '-f', 'null', '-']);
    t.equal(dec.stderr.trim(), '', `client ${name}: decodes with no error`);
    // Client a joined from the transcoder's start; b joined at a later keyframe (one a second).
    t.ok(Number(st.nb_read_frames) > 0 && Number(st.nb_read_frames) <= mjpeg.decode!.frames_decoded, `client ${name}: ${st.nb_read_frames} frames of the ${mjpeg.decode!.frames_decoded} recorded`);
  }
  let left = ffmpegChildren(srv.pid!);
  for (let i = 0; i < 50 && left.length > 0; i++) {
    await sleep(200);
    left = ffmpegChildren(srv.pid!);
  }
  t.same(left, [], 'the transcoder stops after the last client left');

  // The HTTP API of the same process.
  const api = `http://127.0.0.1:${ports.http}`;
  const list = (await (await fetch(`${api}/api/streams?codec=JPEG`)).json()) as Array<StreamRecord & { replayUrl: string; liveUrl: string }>;
  t.same(list.map((s) => s.id), [stream.id], 'GET /api/streams filters by codec');
  t.match(list[0]!.replayUrl, new RegExp(`/replay/${stream.id}$`));
  const res = await fetch(`${api}/api/streams/${stream.id}/pcap`);
  t.equal(res.status, 200);
  const file = path.join(dir, 'stream.pcap');
  writeFileSync(file, Buffer.from(await res.arrayBuffer()));
  const [srcIp, srcPort] = mjpeg.src.split(':');
  const count = await run('tshark', ['-r', file, '-Y', `ip.src==${srcIp} && udp.srcport==${srcPort}`, '-T', 'fields', '-e', 'frame.number']);
  t.equal(count.stdout.trim().split('\n').filter(Boolean).length, mjpeg.packets, 'the pcap holds the manifest\'s packets of the stream (tshark)');
  t.equal((await fetch(`${api}/api/streams/s000000000000/pcap`)).status, 404, 'an unknown stream is 404');
});
