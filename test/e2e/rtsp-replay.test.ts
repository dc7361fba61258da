/**
 * End to end: a multi-camera capture imported with the CLI is served back over RTSP by
 * the catalog-backed ReplaySource (query engine: planReplay + replayPackets), and ffmpeg
 * plays every camera's stream (H.264 over UDP, H.265 captured over TCP interleaved,
 * MJPEG) over UDP and TCP with no decoder error and the frame count the manifest's
 * ground truth gives (the capture decoded on its own with GStreamer + ffmpeg).
 */
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Catalog } from '../../core/catalog/catalog.js';
import type { StreamRecord } from '../../core/contracts/records.js';
import { CatalogReplaySource } from '../../core/serve/replay-source.js';
import { RtspServer } from '../../core/serve/rtsp-server.js';
import { CAPTURES, CLI, camtap, camtapJson, tempDir } from '../helpers/camtap.js';
import { have, run } from '../helpers/peers.js';

interface ManifestStream {
  transport: 'udp' | 'tcp';
  src: string;
  dst: string;
  ssrc: string;
  packets: number;
  direction: string | null;
  decode: { codec: string; frames_decoded: number; width: number; height: number } | null;
}

const skip = !have('ffmpeg') ? 'ffmpeg is not installed' : !existsSync(CLI) ? `${CLI} is not built (npx tsc -p .)` : false;
const manifest = JSON.parse(readFileSync(path.join(CAPTURES, 'netns_multi.manifest.json'), 'utf8')) as { rtp_streams: ManifestStream[] };
const FFMPEG_CODEC: Record<string, string> = { H264: 'h264', H265: 'hevc', JPEG: 'mjpeg' };

async function decode(url: string, transport: 'udp' | 'tcp') {
  const r = await run('ffmpeg', ['-nostdin', '-v', 'error', '-rtsp_transport', transport, '-i', url, '-map', '0:v', '-f', 'framecrc', '-'], { timeoutMs: 120_000 });
  return { code: r.code, frames: r.stdout.split('\n').filter((l) => /^0,/.test(l)).length, errors: r.stderr.split('\n').filter((l) => l.trim()) };
}

t.test('every camera of netns_multi, imported with the CLI, plays back over RTSP with the manifest frame counts', { skip }, async (t) => {
  const data = tempDir(t);
  const imp = await camtap(['import', path.join(CAPTURES, 'netns_multi.pcap')], { data });
  t.equal(imp.code, 0, imp.code === 0 ? 'camtap import' : imp.stderr);
  const streams = await camtapJson<StreamRecord[]>(['streams'], data);
  const catalog = await Catalog.open({ url: `sqlite://${data}/catalog.sqlite` });
  t.teardown(() => catalog.close());
  const server = new RtspServer({ source: new CatalogReplaySource({ catalog, indexDir: path.join(data, 'index') }), port: 0, host: '127.0.0.1' });
  const { port } = await server.listen();
  t.teardown(() => server.close());
  const base = `rtsp://127.0.0.1:${port}`;

  const video = manifest.rtp_streams.filter((s) => s.decode !== null);
  t.ok(video.length >= 4, 'the manifest has the camera streams');
  const byCamera = new Map<string, { rec: StreamRecord; truth: ManifestStream }>();
  for (const truth of video) {
    const rec = streams.find((s) => s.src === truth.src && s.dst === truth.dst && s.ssrc === parseInt(truth.ssrc, 16));
    if (!t.ok(rec, `catalog has ${truth.src} -> ${truth.dst}`) || !rec) continue;
    // /replay/<camera> plays that camera's stream with the most data.
    const prev = byCamera.get(rec.camera);
    if (!prev || truth.packets > prev.truth.packets) byCamera.set(rec.camera, { rec, truth });

    for (const transport of ['udp', 'tcp'] as const) {
      // UDP at 4x: without back-pressure a busy ffmpeg loses datagrams at max (8x) in its socket buffer.
      const r = await decode(`${base}/replay/${rec.id}?speed=${transport === 'udp' ? 4 : 'max'}`, transport);
      const what = `${truth.decode!.codec} ${truth.transport}-captured ${truth.src} -> ${truth.dst} over ${transport}`;
      t.equal(r.code, 0, `${what}: ffmpeg exits 0`);
      t.same(r.errors, [], `${what}: no decoder error`);
      t.equal(r.frames, truth.decode!.frames_decoded, `${what}: ${truth.decode!.frames_decoded} frames`);
    }
  }
  t.ok(byCamera.size >= 4, 'four cameras');
  for (const [camera, { rec, truth }] of byCamera) {
    const r = await decode(`${base}/replay/${encodeURIComponent(camera)}?speed=max`, 'tcp');
    t.same([r.code, r.errors, r.frames], [0, [], truth.decode!.frames_decoded], `/replay/${camera} plays ${rec.id} (${truth.decode!.codec}) whole`);
    const probe = await run('ffprobe', ['-v', 'error', '-rtsp_transport', 'tcp', '-select_streams', 'v:0', '-show_entries', 'stream=codec_name,width,height', '-of', 'json', `${base}/replay/${encodeURIComponent(camera)}`], { timeoutMs: 60_000 });
    const s = (JSON.parse(probe.stdout || '{"streams":[]}') as { streams: Array<{ codec_name: string; width: number; height: number }> }).streams[0];
    t.same([s?.codec_name, s?.width, s?.height], [FFMPEG_CODEC[truth.decode!.codec], truth.decode!.width, truth.decode!.height], `/replay/${camera}: ffprobe codec and size`);
  }
  t.equal((await decode(`${base}/replay/no-such-camera`, 'tcp')).code !== 0, true, 'an unknown camera is refused (404)');
});
