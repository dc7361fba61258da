/**
 * A ReplaySource over a real capture, for the RTSP server tests: the RTP packets of one
 * UDP flow of a fixture pcap (read with CaptureFileReader + PacketDecoder + parseRtp),
 * served as ReplayPackets with continuous rewritten seq/timestamp/SSRC like the query
 * engine's, starting at the last keyframe (H.264 SPS or IDR) at or before the start.
 *
 * Not a mock of the server: real captured packets and SDP, a real protocol. Packet
 * buffers are reused as the iterator advances (as the query engine's are), so a server
 * that forgot to copy would send corrupt video.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { StreamRecord } from '../../../core/contracts/records.js';
import { CamtapError } from '../../../core/errors.js';
import type { ReplayPacket, ReplayPlan } from '../../../core/query/types.js';
import type { ReplaySource } from '../../../core/serve/rtsp-server.js';
import { CaptureFileReader } from '../../../core/wire/capture-file.js';
import { DecodeStatus, PacketDecoder, PacketMeta } from '../../../core/wire/packet.js';
import { RtpHeader, parseRtp, writeRtpHeader } from '../../../core/wire/rtp.js';

export const CAPTURES = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../../fixtures/captures');

export interface CapturedPacket {
  tsNs: bigint;
  seq: number;
  timestamp: number;
  marker: boolean;
  payloadType: number;
  payload: Buffer;
  keyframe: boolean;
}

export interface CapturedStream {
  packets: CapturedPacket[];
  sdp: string;
  startNs: bigint;
  endNs: bigint;
}

/** H.264 (RFC 6184 §5.2): the packet begins an SPS or IDR (single NAL, STAP-A first NAL, FU-A start). */
function h264Keyframe(p: Buffer): boolean {
  if (p.length < 2) return false;
  const t = p[0]! & 0x1f;
  if (t === 7 || t === 5) return true;
  if (t === 24 && p.length > 3) return ((p[3]! & 0x1f) === 7 || (p[3]! & 0x1f) === 5);
  if (t === 28) return (p[1]! & 0x80) !== 0 && (p[1]! & 0x1f) === 5;
  return false;
}

/** The manifest's DESCRIBE SDP (media + attributes as tshark gave them) as SDP text. */
export function manifestSdp(manifest: { rtsp_sessions: Array<{ sdp: { media: string[]; attributes: string[] } }> }): string {
  const sdp = manifest.rtsp_sessions[0]!.sdp;
  return ['v=0', 'o=- 1 1 IN IP4 127.0.0.1', 's=capture', 't=0 0', 'a=control:*', ...sdp.media.map((m) => `m=${m}`), ...sdp.attributes.map((a) => `a=${a}`), ''].join('\r\n');
}

/** Reads the RTP packets the flow from UDP source port `srcPort` carries, in capture order. */
export async function loadUdpStream(file: string, srcPort: number, sdp: string): Promise<CapturedStream> {
  const reader = await CaptureFileReader.open(file);
  const dec = new PacketDecoder();
  const meta = new PacketMeta();
  const rtp = new RtpHeader();
  const packets: CapturedPacket[] = [];
  try {
    await reader.scanFrom(reader.format === 'pcap' ? 24 : 0, (r) => {
      if (dec.decode(r, meta) !== DecodeStatus.OK || meta.protocol !== 17 || meta.sport !== srcPort) return;
      if (!parseRtp(meta.buf, meta.payloadOff, meta.payloadLen, rtp)) return;
      const payload = Buffer.from(meta.buf.subarray(rtp.payloadOff, rtp.payloadOff + rtp.payloadLen));
      packets.push({
        tsNs: BigInt(r.tsSec) * 1_000_000_000n + BigInt(r.tsNsec),
        seq: rtp.seq,
        timestamp: rtp.timestamp,
        marker: rtp.marker,
        payloadType: rtp.payloadType,
        payload,
        keyframe: h264Keyframe(payload),
      });
    });
  } finally {
    await reader.close();
  }
  return { packets, sdp, startNs: packets[0]!.tsNs, endNs: packets[packets.length - 1]!.tsNs };
}

/** The same stream `times` times in a row, capture times and RTP timestamps continuing (a long recording). */
export function repeatStream(s: CapturedStream, times: number): CapturedStream {
  const span = s.endNs - s.startNs + 40_000_000n;
  const first = s.packets[0]!;
  const last = s.packets[s.packets.length - 1]!;
  const tsSpan = ((last.timestamp - first.timestamp) >>> 0) + 3600;
  const out: CapturedPacket[] = [];
  for (let i = 0; i < times; i++) {
    for (const p of s.packets) out.push({ ...p, tsNs: p.tsNs + span * BigInt(i), timestamp: (p.timestamp + tsSpan * i) >>> 0, seq: (p.seq + s.packets.length * i) & 0xffff });
  }
  return { packets: out, sdp: s.sdp, startNs: s.startNs, endNs: out[out.length - 1]!.tsNs };
}

function streamRecord(id: string, s: CapturedStream): StreamRecord {
  const p0 = s.packets[0]!;
  return {
    id,
    camera: id,
    src: '127.0.0.1:54872',
    dst: '127.0.0.1:12260',
    transport: 'udp',
    ssrc: 0x28f14659,
    payloadType: p0.payloadType,
    codec: 'H264',
    clockRate: 90000,
    direction: 'server->client',
    session: null,
    url: null,
    packets: s.packets.length,
    duplicates: 0,
    outOfOrder: 0,
    firstSeq: p0.seq,
    lastSeq: s.packets[s.packets.length - 1]!.seq,
    minExtSeq: 0,
    maxExtSeq: 0,
    lost: 0,
    markers: 0,
    frames: 0,
    keyframes: 0,
    payloadBytes: 0,
    lastRtpTs: 0,
    start: new Date(Number(s.startNs / 1_000_000n)).toISOString(),
    end: new Date(Number(s.endNs / 1_000_000n)).toISOString(),
    startNs: String(s.startNs),
    endNs: String(s.endNs),
    taps: [0],
    malformed: 0,
  };
}

/** Serves `streams` by path (`/replay/test` -> streams.get('test')); `start=`/`end=` are ISO times. */
export class PcapReplaySource implements ReplaySource {
  readonly #streams: Map<string, CapturedStream>;
  /** Iterators currently open (to check the server closes them). */
  open = 0;

  constructor(streams: Map<string, CapturedStream>) {
    this.#streams = streams;
  }

  async plan(p: string, query: URLSearchParams, range: { startNs?: bigint; endNs?: bigint } | null): Promise<ReplayPlan> {
    const m = /^\/replay\/([^/]+)$/.exec(p);
    const s = m ? this.#streams.get(decodeURIComponent(m[1]!)) : undefined;
    if (!m || !s) throw new CamtapError('CAMTAP_ERR_NOT_FOUND', { what: 'stream', id: p });
    const iso = (v: string | null) => (v ? BigInt(Date.parse(v)) * 1_000_000n : undefined);
    let startNs = range?.startNs ?? iso(query.get('start')) ?? s.startNs;
    let endNs = range?.endNs ?? iso(query.get('end')) ?? s.endNs;
    if (startNs < s.startNs) startNs = s.startNs;
    if (endNs > s.endNs) endNs = s.endNs;
    if (startNs > endNs) throw new CamtapError('CAMTAP_ERR_RANGE', { range: `${startNs}-${endNs}`, reason: 'outside the recording' });
    return { stream: streamRecord(m[1]!, s), session: null, sdp: s.sdp, startNs, endNs, segments: [] };
  }

  async *packets(plan: ReplayPlan, opts: { ssrc: number; signal: AbortSignal }): AsyncIterable<ReplayPacket> {
    const s = this.#streams.get(plan.stream.id)!;
    let first = 0;
    for (let i = 0; i < s.packets.length && s.packets[i]!.tsNs <= plan.startNs; i++) if (s.packets[i]!.keyframe) first = i;
    // Back to the first packet of that access unit (AUD, SPS, PPS share the IDR's timestamp).
    while (first > 0 && s.packets[first - 1]!.timestamp === s.packets[first]!.timestamp) first--;
    const buf = Buffer.alloc(1600); // reused for every packet, as a real source would
    const seqBase = 1000;
    const tsBase = 0x10000000;
    const ts0 = s.packets[first]!.timestamp;
    const out: ReplayPacket = { tsNs: 0n, rtp: buf, seq: 0, timestamp: 0, marker: false, payloadType: 0, origExtSeq: 0, origTimestamp: 0, keyframe: false, gapBefore: 0 };
    this.open++;
    try {
      for (let i = first; i < s.packets.length; i++) {
        const p = s.packets[i]!;
        if (p.tsNs > plan.endNs) break;
        if (opts.signal.aborted) return;
        const seq = (seqBase + i - first) & 0xffff;
        const timestamp = (tsBase + p.timestamp - ts0) >>> 0;
        writeRtpHeader(buf, 0, { marker: p.marker, payloadType: p.payloadType, seq, timestamp, ssrc: opts.ssrc });
        p.payload.copy(buf, 12);
        out.tsNs = p.tsNs;
        out.rtp = buf.subarray(0, 12 + p.payload.length);
        out.seq = seq;
        out.timestamp = timestamp;
        out.marker = p.marker;
        out.payloadType = p.payloadType;
        out.origExtSeq = p.seq;
        out.origTimestamp = p.timestamp;
        out.keyframe = p.keyframe;
        yield out;
        // Scribble over the buffer once the consumer moved on: a server that kept a view sends garbage.
        buf.fill(0xee);
      }
    } finally {
      this.open--;
    }
  }
}

export function loadManifest(name: string): any {
  return JSON.parse(readFileSync(path.join(CAPTURES, name), 'utf8'));
}
