/**
 * The camera simulator's picture: a real H.264 RTP capture turned into a loop of access
 * units, packetized again exactly as ffmpeg's RTP muxer does it, and paced to a chosen
 * bitrate.
 *
 * - Source: the largest H.264 RTP stream of a capture (by default the lab's 720p template,
 *   x264, 25 fps, an IDR every 2 s), depacketized (RFC 6184 §5.6-5.8: single NAL, STAP-A,
 *   FU-A) into NAL units grouped by RTP timestamp. The loop runs from the first IDR access
 *   unit to just before the last one, so it closes on a GOP boundary and a decoder sees a
 *   clean IDR when it wraps.
 * - Packetization: the algorithm of libavformat/rtpenc_h264_hevc.c (FFmpeg 5.1, the one
 *   installed), with its default packet size of 1472 bytes (1460 payload bytes): NAL
 *   units that fit are gathered into a STAP-A while they fit with their 2-byte sizes (one
 *   alone goes out as a single NAL unit packet), larger ones are cut into FU-A fragments
 *   of 1458 data bytes. ffmpeg relaying with `-c copy -f rtp` rebuilds each access unit
 *   and packetizes it again; because the camera already packetizes the same way, every
 *   packet ffmpeg sends has the payload of one packet the camera sent, which is how the
 *   benchmark pairs them (bench/relay/packet-key.ts). camtap forwards packets unchanged.
 * - Pacing: the template carries about 2 Mbit/s; a 4 Mbit/s stream plays the same
 *   access units faster (the packet rate is scaled, nothing is padded: filler NAL units
 *   would make identical payloads and break the pairing). RTP timestamps are scaled with
 *   the send times, so a receiver sees timestamps that follow its wall clock (about 48
 *   pictures a second instead of 25).
 */
import { readCaptureFile } from '../../core/wire/capture-file.js';
import { DecodeStatus, PacketDecoder, PacketMeta } from '../../core/wire/packet.js';
import { RtpHeader, parseRtp } from '../../core/wire/rtp.js';
import { keyA, keyB } from './packet-key.js';

/** FFmpeg's default RTP packet size (udp `pkt_size` 1472) minus the 12-byte RTP header. */
export const FFMPEG_MAX_PAYLOAD = 1460;

export interface AccessUnit {
  /** Send time from the start of the loop at the paced rate, ms. */
  atMs: number;
  /** RTP timestamp from the start of the loop (90 kHz), consistent with `atMs`. */
  ticks: number;
  /** Holds an IDR picture (a client may start here). */
  idr: boolean;
  /** RTP payloads in send order; the last one carries the marker bit (RFC 6184 §5.1). */
  payloads: Buffer[];
  /** The payloads' keys (packet-key.ts). */
  keyA: Uint32Array;
  keyB: Uint32Array;
  /** RTP bytes (12-byte header + payload) of all its packets. */
  rtpBytes: number;
}

export interface H264Loop {
  aus: AccessUnit[];
  /** Length of one loop at the paced rate, ms, and in RTP ticks. */
  loopMs: number;
  loopTicks: number;
  /** Indexes of the IDR access units. */
  idrs: number[];
  sps: Buffer;
  pps: Buffer;
  /** Paced rate / captured rate. */
  speed: number;
  /** RTP bitrate (header + payload) at the paced rate, bit/s. */
  rtpBps: number;
  packetsPerLoop: number;
  /** Largest RTP packet (header + payload), bytes. */
  maxRtpBytes: number;
  source: { file: string; ssrc: number; rtpPackets: number; accessUnits: number; loopS: number; capturedRtpBps: number; capturedFps: number; pacedFps: number };
}

/** NAL units of one RTP timestamp. */
interface RawAu {
  ts: number;
  nals: Buffer[];
}

/** Reads the capture's largest dynamic-payload-type RTP stream over UDP. */
async function readRtp(file: string): Promise<{ ssrc: number; packets: Buffer[] }> {
  const dec = new PacketDecoder();
  const meta = new PacketMeta();
  const h = new RtpHeader();
  const bySsrc = new Map<number, Buffer[]>();
  await readCaptureFile(file, (rec) => {
    if (dec.decode(rec, meta) !== DecodeStatus.OK || meta.protocol !== 17) return;
    if (!parseRtp(meta.buf, meta.payloadOff, meta.payloadLen, h) || h.payloadType < 96 || h.payloadType > 127) return;
    let list = bySsrc.get(h.ssrc);
    if (!list) bySsrc.set(h.ssrc, (list = []));
    list.push(Buffer.from(meta.buf.subarray(meta.payloadOff, meta.payloadOff + meta.payloadLen)));
  });
  let best: [number, Buffer[]] | null = null;
  for (const e of bySsrc) if (!best || e[1].length > best[1].length) best = e;
  if (!best) throw new Error(`${file}: no RTP stream with a dynamic payload type`);
  return { ssrc: best[0], packets: best[1] };
}

/** RFC 6184 depacketization into access units (NAL units grouped by RTP timestamp), in sequence order. */
function depacketize(packets: Buffer[]): RawAu[] {
  const h = new RtpHeader();
  // Capture order is sequence order on loopback, but sort by extended sequence to be sure.
  const withSeq: Array<{ ext: number; p: Buffer }> = [];
  let last = -1;
  let ext = 0;
  for (const p of packets) {
    if (!parseRtp(p, 0, p.length, h)) continue;
    if (last < 0) ext = h.seq;
    else {
      const d = (h.seq - last) & 0xffff;
      ext += d < 0x8000 ? d : d - 0x10000;
    }
    last = h.seq;
    withSeq.push({ ext, p });
  }
  withSeq.sort((a, b) => a.ext - b.ext);
  const aus: RawAu[] = [];
  let cur: RawAu | null = null;
  let fu: Buffer[] | null = null;
  let prevExt = Number.NaN;
  for (const { ext: e, p } of withSeq) {
    if (e === prevExt) continue; // duplicate
    const lostBefore = !Number.isNaN(prevExt) && e !== prevExt + 1;
    prevExt = e;
    parseRtp(p, 0, p.length, h);
    if (!cur || cur.ts !== h.timestamp) {
      cur = { ts: h.timestamp, nals: [] };
      aus.push(cur);
      fu = null;
    }
    if (lostBefore) fu = null;
    const pl = p.subarray(h.payloadOff, h.payloadOff + h.payloadLen);
    if (pl.length < 1) continue;
    const type = pl[0]! & 0x1f;
    if (type >= 1 && type <= 23) cur.nals.push(pl);
    else if (type === 24) {
      for (let q = 1; q + 2 <= pl.length; ) {
        const size = pl.readUInt16BE(q);
        q += 2;
        if (size === 0 || q + size > pl.length) break;
        cur.nals.push(pl.subarray(q, q + size));
        q += size;
      }
    } else if (type === 28 && pl.length >= 2) {
      const fh = pl[1]!;
      if (fh & 0x80) fu = [Buffer.from([(pl[0]! & 0xe0) | (fh & 0x1f)])];
      if (fu) fu.push(pl.subarray(2));
      if (fu && fh & 0x40) {
        cur.nals.push(Buffer.concat(fu));
        fu = null;
      }
    }
  }
  return aus.filter((a) => a.nals.length > 0);
}

/**
 * One access unit as FFmpeg 5.1's `ff_rtp_send_h264_hevc` / `nal_send` / `flush_buffered`
 * packetize it (see the file comment); returns the payloads, the last one being the
 * access unit's last packet (marker).
 */
export function packetizeLikeFfmpeg(nals: Buffer[], maxPayload = FFMPEG_MAX_PAYLOAD): Buffer[] {
  const out: Buffer[] = [];
  let buffered: Buffer[] = [];
  /** Bytes in ffmpeg's aggregation buffer: the STAP-A indicator plus 2 + size per NAL unit. */
  let bufSize = 0;
  const flush = () => {
    if (buffered.length === 1) out.push(buffered[0]!);
    else if (buffered.length > 1) {
      // STAP-A (RFC 6184 §5.7.1). FFmpeg writes the indicator as plain 24 (F = 0, NRI = 0).
      const b = Buffer.allocUnsafe(bufSize);
      b[0] = 24;
      let p = 1;
      for (const n of buffered) {
        b.writeUInt16BE(n.length, p);
        n.copy(b, p + 2);
        p += 2 + n.length;
      }
      out.push(b);
    }
    buffered = [];
    bufSize = 0;
  };
  for (const nal of nals) {
    const size = nal.length;
    if (size <= maxPayload) {
      if (bufSize + 2 + size > maxPayload) flush();
      if (bufSize + 2 + 1 + size <= maxPayload) {
        if (bufSize === 0) bufSize = 1;
        buffered.push(nal);
        bufSize += 2 + size;
      } else {
        flush();
        out.push(nal);
      }
    } else {
      flush();
      // FU-A (RFC 6184 §5.8): indicator = NRI | 28, header = S/E | type, then the NAL unit without its header byte.
      const ind = (nal[0]! & 0x60) | 28;
      const type = nal[0]! & 0x1f;
      let data = nal.subarray(1);
      let start = true;
      while (data.length + 2 > maxPayload) {
        const chunk = maxPayload - 2;
        const b = Buffer.allocUnsafe(maxPayload);
        b[0] = ind;
        b[1] = (start ? 0x80 : 0) | type;
        data.copy(b, 2, 0, chunk);
        out.push(b);
        data = data.subarray(chunk);
        start = false;
      }
      const b = Buffer.allocUnsafe(data.length + 2);
      b[0] = ind;
      b[1] = 0x40 | (start ? 0x80 : 0) | type;
      data.copy(b, 2);
      out.push(b);
    }
  }
  flush();
  return out;
}

/** The loop of `file`'s H.264 stream, paced so its RTP packets (header + payload) carry `targetBps`. */
export async function loadH264Loop(file: string, targetBps: number): Promise<H264Loop> {
  const { ssrc, packets } = await readRtp(file);
  const raw = depacketize(packets);
  const isIdr = (a: RawAu) => a.nals.some((n) => (n[0]! & 0x1f) === 5);
  const firstIdr = raw.findIndex(isIdr);
  let lastIdr = -1;
  for (let i = raw.length - 1; i > firstIdr; i--)
    if (isIdr(raw[i]!)) {
      lastIdr = i;
      break;
    }
  if (firstIdr < 0 || lastIdr < 0) throw new Error(`${file}: fewer than two IDR pictures in the H.264 stream (SSRC 0x${ssrc.toString(16)})`);
  const sel = raw.slice(firstIdr, lastIdr);
  const sps = sel[0]!.nals.find((n) => (n[0]! & 0x1f) === 7);
  const pps = sel[0]!.nals.find((n) => (n[0]! & 0x1f) === 8);
  if (!sps || !pps) throw new Error(`${file}: the first IDR access unit carries no SPS/PPS`);
  const t0 = sel[0]!.ts;
  const unwrap = (ts: number) => ((ts - t0) >>> 0) / 90; // ms of the capture
  const capturedLoopMs = unwrap(raw[lastIdr]!.ts);
  const payloads = sel.map((a) => packetizeLikeFfmpeg(a.nals));
  let rtpBytes = 0;
  let packetsPerLoop = 0;
  let maxRtpBytes = 0;
  for (const ps of payloads)
    for (const p of ps) {
      rtpBytes += 12 + p.length;
      packetsPerLoop++;
      maxRtpBytes = Math.max(maxRtpBytes, 12 + p.length);
    }
  const capturedBps = (rtpBytes * 8) / (capturedLoopMs / 1000);
  const speed = targetBps / capturedBps;
  const loopMs = capturedLoopMs / speed;
  const aus: AccessUnit[] = sel.map((a, i) => {
    const ps = payloads[i]!;
    const atMs = unwrap(a.ts) / speed;
    return {
      atMs,
      ticks: Math.round(atMs * 90),
      idr: isIdr(a),
      payloads: ps,
      keyA: Uint32Array.from(ps, (p) => keyA(p, 0, p.length)),
      keyB: Uint32Array.from(ps, (p) => keyB(p, 0, p.length)),
      rtpBytes: ps.reduce((s, p) => s + 12 + p.length, 0),
    };
  });
  const idrs = aus.flatMap((a, i) => (a.idr ? [i] : []));
  return {
    aus,
    loopMs,
    loopTicks: Math.round(loopMs * 90),
    idrs,
    sps,
    pps,
    speed,
    rtpBps: (rtpBytes * 8) / (loopMs / 1000),
    packetsPerLoop,
    maxRtpBytes,
    source: {
      file,
      ssrc,
      rtpPackets: packets.length,
      accessUnits: sel.length,
      loopS: capturedLoopMs / 1000,
      capturedRtpBps: capturedBps,
      capturedFps: sel.length / (capturedLoopMs / 1000),
      pacedFps: sel.length / (loopMs / 1000),
    },
  };
}

/** `profile-level-id` of an SPS (RFC 6184 §8.1: profile_idc, constraint flags, level_idc as hex). */
export function profileLevelId(sps: Buffer): string {
  return sps.subarray(1, 4).toString('hex').toUpperCase();
}
