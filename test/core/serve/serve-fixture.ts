/**
 * Shared set-up for the RTSP server tests: the lo_udp_h264 capture as a replay source,
 * a server on a free loopback port, and ground truth about the capture from tshark and
 * its manifest.
 */
import path from 'node:path';
import { createLogger } from '../../../core/logger.js';
import { RtspServer, type RtspServerOptions } from '../../../core/serve/rtsp-server.js';
import { run } from '../../helpers/peers.js';
import { CAPTURES, PcapReplaySource, loadManifest, loadUdpStream, manifestSdp, repeatStream, type CapturedStream } from './pcap-replay-source.js';

export const H264_PCAP = path.join(CAPTURES, 'lo_udp_h264.pcap');
/** The camera's RTP flow in the capture. */
export const CAMERA_PORT = 54872;
export const manifest = loadManifest('lo_udp_h264.manifest.json');
export const videoTruth = manifest.rtp_streams.find((s: { src: string }) => s.src.endsWith(`:${CAMERA_PORT}`));

let loaded: CapturedStream | null = null;
export async function h264Stream(): Promise<CapturedStream> {
  loaded ??= await loadUdpStream(H264_PCAP, CAMERA_PORT, manifestSdp(manifest));
  return loaded;
}

/** A server on 127.0.0.1 with `/replay/test` (the capture) and `/replay/loop` (the capture 80 times over). */
export async function startServer(
  t: { teardown(fn: () => unknown): void },
  opts: Partial<RtspServerOptions> = {},
): Promise<{ server: RtspServer; port: number; source: PcapReplaySource; base: string }> {
  const s = await h264Stream();
  const source = new PcapReplaySource(
    new Map([
      ['test', s],
      ['loop', repeatStream(s, 80)],
    ]),
  );
  // CAMTAP_TEST_RTSP_LOG=1 prints the server's debug log (which request, why a session ended).
  const log = process.env.CAMTAP_TEST_RTSP_LOG ? createLogger('debug') : undefined;
  const server = new RtspServer({ source, port: 0, host: '127.0.0.1', log, ...opts });
  const { port } = await server.listen();
  t.teardown(() => server.close());
  return { server, port, source, base: `rtsp://127.0.0.1:${port}` };
}

/** One row per RTP packet of the camera flow, from tshark (H.264 NAL header type per packet). */
export interface TsharkPacket {
  time: number;
  seq: number;
  timestamp: number;
  marker: boolean;
  nalHdr: number;
  payload: Buffer;
}

export async function tsharkPackets(): Promise<TsharkPacket[]> {
  const r = await run('tshark', [
    '-r', H264_PCAP,
    '-d', `udp.port==${CAMERA_PORT},rtp`,
    '-d', 'rtp.pt==96,h264',
    '-Y', `udp.srcport==${CAMERA_PORT} && rtp`,
    '-T', 'fields', '-E', 'separator=/t',
    '-e', 'frame.time_epoch', '-e', 'rtp.seq', '-e', 'rtp.timestamp', '-e', 'rtp.marker', '-e', 'h264.nal_unit_hdr', '-e', 'rtp.payload',
  ]);
  if (r.code !== 0) throw new Error(`tshark failed: ${r.stderr}`);
  return r.stdout
    .trim()
    .split('\n')
    .map((l) => l.split('\t'))
    .map(([time, seq, ts, m, hdr, payload]) => ({
      time: Number(time),
      seq: Number(seq),
      timestamp: Number(ts),
      marker: m === '1' || m === 'True',
      nalHdr: Number((hdr ?? '').split(',')[0] || -1),
      payload: Buffer.from((payload ?? '').replace(/:/g, ''), 'hex'),
    }));
}

/** ffmpeg as the RTSP client: decodes to framecrc; frames and error lines. */
/** Packets of access units that end with a marker packet (what a replay sends: see Player). */
export function completeAccessUnits(rows: TsharkPacket[]): TsharkPacket[] {
  const done = new Set(rows.filter((r) => r.marker).map((r) => r.timestamp));
  return rows.filter((r) => done.has(r.timestamp));
}

export async function ffmpegDecode(url: string, transport: 'udp' | 'tcp', timeoutMs = 120_000): Promise<{ code: number | null; frames: number; errors: string[] }> {
  const r = await run('ffmpeg', ['-nostdin', '-v', 'error', '-rtsp_transport', transport, '-i', url, '-map', '0:v', '-f', 'framecrc', '-'], { timeoutMs });
  return {
    code: r.code,
    frames: r.stdout.split('\n').filter((l) => /^0,/.test(l)).length,
    errors: r.stderr.split('\n').filter((l) => l.trim() !== ''),
  };
}
