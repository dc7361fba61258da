/**
 * A data dir holding many distinct cameras whose expected counts come from tshark and
 * ffmpeg (the fixtures' manifests), not from camtap.
 *
 * The lab's 8-camera capture is imported as recorded and again as copies whose camera
 * subnet 10.77.1.0/24 is rewritten by `tcprewrite --srcipmap/--dstipmap` into
 * 10.77.2.0/24, 10.77.3.0/24, ...: every copy is a different set of cameras (other IP
 * addresses; same ports, SSRCs and times) with the same per-stream manifest, whose
 * addresses get the same rewrite. The multi-camera lab capture adds four more cameras
 * with H.264, H.265 (captured over TCP interleaved) and MJPEG.
 *
 * tcprewrite leaves the RTSP text alone (the URLs still name 10.77.1.x), so the copies'
 * dialogs name the original cameras; camtap names a stream's camera by its RTP source.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import type { StreamRecord } from '../../core/contracts/records.js';
import { CAPTURES, camtap, camtapJson } from './camtap.js';
import { readManifest, type ManifestStream } from './manifest.js';

/** One camera stream of the data dir and what the manifest says it holds. */
export interface CameraStream {
  /** camtap's stream id (the `/replay/<id>` path). */
  id: string;
  camera: string;
  codec: string;
  /** The manifest's row for it, addresses rewritten like the capture. */
  truth: ManifestStream & { access_units: number; complete_access_units: number; payload_bytes: number; decode: { codec: string; frames_decoded: number } };
  /** Which capture it came from, for messages. */
  origin: string;
}

const EIGHT = 'gen_8cam_360p.pcap';
const MULTI = 'netns_multi.pcap';

function rewrite(endpoint: string, copy: number): string {
  return copy === 1 ? endpoint : endpoint.replace(/^10\.77\.1\./, `10.77.${copy}.`);
}

function run(cmd: string, args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (d) => (stderr += d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stderr }));
  });
}

/**
 * Imports `copies` copies of the 8-camera capture (8 × copies cameras, copies ≤ 9) and
 * the multi-camera capture (4 more) into `data`, scratch files going to `work`. Returns
 * one stream per camera (for the camera recorded by two VMSs, the first), each decodable
 * per its manifest.
 */
export async function importManyCameras(data: string, work: string, copies: number): Promise<CameraStream[]> {
  if (copies < 1 || copies > 9) throw new Error('copies must be 1..9');
  const files = [path.join(CAPTURES, EIGHT)];
  for (let k = 2; k <= copies; k++) {
    const out = path.join(work, `gen_8cam_copy${k}.pcap`);
    const map = `10.77.1.0/24:10.77.${k}.0/24`;
    const r = await run('tcprewrite', [`--srcipmap=${map}`, `--dstipmap=${map}`, '-i', files[0]!, '-o', out]);
    if (r.code !== 0) throw new Error(`tcprewrite exited ${r.code}: ${r.stderr}`);
    files.push(out);
  }
  files.push(path.join(CAPTURES, MULTI));
  const imp = await camtap(['import', ...files], { data });
  if (imp.code !== 0) throw new Error(`camtap import exited ${imp.code}: ${imp.stderr}`);
  const streams = await camtapJson<StreamRecord[]>(['streams'], data);

  type Truth = CameraStream['truth'];
  const wanted: Array<{ truth: Truth; origin: string }> = [];
  const eight = readManifest(EIGHT).rtp_streams.filter((s) => s.decode) as Truth[];
  for (let k = 1; k <= copies; k++) {
    for (const s of eight) wanted.push({ truth: { ...s, src: rewrite(s.src, k), dst: rewrite(s.dst, k) }, origin: k === 1 ? EIGHT : `${EIGHT} as 10.77.${k}.0/24` });
  }
  const seen = new Set<string>();
  for (const s of readManifest(MULTI).rtp_streams.filter((x) => x.decode) as Truth[]) {
    const cam = s.src.split(':')[0]!;
    if (seen.has(cam)) continue;
    seen.add(cam);
    wanted.push({ truth: s, origin: MULTI });
  }
  return wanted.map(({ truth, origin }) => {
    const rec = streams.find((x) => x.src === truth.src && x.dst === truth.dst);
    if (!rec) throw new Error(`camtap has no stream ${truth.src} -> ${truth.dst} (${origin})`);
    return { id: rec.id, camera: rec.camera, codec: truth.decode.codec, truth, origin };
  });
}
