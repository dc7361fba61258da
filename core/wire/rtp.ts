/**
 * RTP fixed header (RFC 3550 §5.1), header extension (§5.3.1) and the wrap-aware
 * sequence/timestamp arithmetic every stream consumer needs (§A.1).
 *
 * Parsing fills a caller-owned {@link RtpHeader} (one per flow or per pipeline) so the
 * packet path allocates nothing; offsets point into the caller's Buffer.
 */

/**
 * ```
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |V=2|P|X|  CC   |M|     PT      |       sequence number         |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                           timestamp                           |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |           synchronization source (SSRC) identifier            |
 * +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
 * |            contributing source (CSRC) identifiers             |
 * |                             ....                              |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |      defined by profile       |           length              |  X=1 (§5.3.1)
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                  header extension (length words)              |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                     payload ...   | padding ... | pad count   |  P=1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * ```
 * All offsets are absolute positions in the Buffer that was parsed.
 */
export class RtpHeader {
  version = 0;
  padding = false;
  extension = false;
  csrcCount = 0;
  marker = false;
  payloadType = 0;
  seq = 0;
  timestamp = 0;
  ssrc = 0;
  /** First payload byte (after CSRCs and extension). */
  payloadOff = 0;
  /** Payload bytes, padding excluded. */
  payloadLen = 0;
  /** "defined by profile" 16 bits of the extension, -1 when X=0 (0xBEDE = RFC 8285 one-byte form). */
  extProfile = -1;
  /** First byte of the extension data (after its 4-byte header) and its length in bytes. */
  extOff = 0;
  extLen = 0;
}

const RTP_MIN = 12;

/**
 * Fills `out` from `buf[off, off + len)`. Returns false (and leaves `out` partly
 * written) if this is not a valid RTP v2 packet: shorter than the fixed header, CSRC
 * list or extension running past the end, or a padding count of 0 or larger than the
 * payload (§5.1: the last octet counts the padding including itself).
 * `payloadLen` excludes padding.
 */
export function parseRtp(buf: Buffer, off: number, len: number, out: RtpHeader): boolean {
  if (off < 0 || len < RTP_MIN || off + len > buf.length) return false;
  const b0 = buf[off]!;
  const b1 = buf[off + 1]!;
  const version = b0 >>> 6;
  if (version !== 2) return false;
  const cc = b0 & 0x0f;
  let p = off + RTP_MIN + cc * 4;
  const end = off + len;
  if (p > end) return false;
  out.version = version;
  out.padding = (b0 & 0x20) !== 0;
  out.extension = (b0 & 0x10) !== 0;
  out.csrcCount = cc;
  out.marker = (b1 & 0x80) !== 0;
  out.payloadType = b1 & 0x7f;
  out.seq = buf.readUInt16BE(off + 2);
  out.timestamp = buf.readUInt32BE(off + 4);
  out.ssrc = buf.readUInt32BE(off + 8);
  out.extProfile = -1;
  out.extOff = 0;
  out.extLen = 0;
  if (out.extension) {
    if (p + 4 > end) return false;
    const words = buf.readUInt16BE(p + 2);
    const extEnd = p + 4 + words * 4;
    if (extEnd > end) return false;
    out.extProfile = buf.readUInt16BE(p);
    out.extOff = p + 4;
    out.extLen = words * 4;
    p = extEnd;
  }
  let payloadEnd = end;
  if (out.padding) {
    if (payloadEnd <= p) return false;
    const pad = buf[payloadEnd - 1]!;
    if (pad === 0 || pad > payloadEnd - p) return false;
    payloadEnd -= pad;
  }
  out.payloadOff = p;
  out.payloadLen = payloadEnd - p;
  return true;
}

/**
 * Cheap heuristic for a UDP flow nobody announced: RTP v2, at least the fixed header,
 * CSRC list and extension inside the datagram, and a payload type outside 72..76 —
 * with the marker bit those are the second bytes 200..204 of RTCP SR/RR/SDES/BYE/APP
 * (RFC 5761 §4), so a datagram there is RTCP, not RTP.
 */
export function looksLikeRtp(buf: Buffer, off: number, len: number): boolean {
  if (off < 0 || len < RTP_MIN || off + len > buf.length) return false;
  const b0 = buf[off]!;
  if (b0 >>> 6 !== 2) return false;
  const pt = buf[off + 1]! & 0x7f;
  if (pt >= 72 && pt <= 76) return false;
  let p = RTP_MIN + (b0 & 0x0f) * 4;
  if (p > len) return false;
  if (b0 & 0x10) {
    if (p + 4 > len) return false;
    p += 4 + buf.readUInt16BE(off + p + 2) * 4;
    if (p > len) return false;
  }
  if (b0 & 0x20) {
    const pad = buf[off + len - 1]!;
    if (pad === 0 || pad > len - p) return false;
  }
  return true;
}

/**
 * RTCP heuristic (RFC 3550 §A.2, loosened for cameras that send APP or XR first):
 * every sub-packet is v2 with a type 200..207, and the length words add up to
 * exactly `len`.
 */
export function looksLikeRtcp(buf: Buffer, off: number, len: number): boolean {
  if (off < 0 || len < 4 || off + len > buf.length) return false;
  const end = off + len;
  let p = off;
  while (p < end) {
    if (p + 4 > end) return false;
    if (buf[p]! >>> 6 !== 2) return false;
    const pt = buf[p + 1]!;
    if (pt < 200 || pt > 207) return false;
    p += (buf.readUInt16BE(p + 2) + 1) * 4;
  }
  return p === end;
}

/** True if 16-bit sequence number `a` is after `b` (less than half the space ahead). */
export function seqGt(a: number, b: number): boolean {
  const d = (a - b) & 0xffff;
  return d !== 0 && d < 0x8000;
}

/** Signed 16-bit distance `a - b` in [-32768, 32767]: how far `a` is ahead of `b`. */
export function seqDiff(a: number, b: number): number {
  return (((a - b) & 0xffff) << 16) >> 16;
}

/**
 * Extended sequence number (RFC 3550 §A.1 idea, camtap's rule): the first packet
 * gets `seq + 65536` so a reordered predecessor still extends to a positive number;
 * later packets unwrap relative to `highestExt` (the highest extended number so far):
 * within half the space ahead counts forward, otherwise backward.
 */
export function extendSeq(highestExt: number | null, seq: number): number {
  if (highestExt === null) return seq + 0x10000;
  const d = (seq - highestExt) & 0xffff;
  return d < 0x8000 ? highestExt + d : highestExt - (0x10000 - d);
}

const TS_SPACE = 0x1_0000_0000;

/**
 * The same unwrapping for 32-bit RTP timestamps, as a float64 (exact up to 2^53).
 * The first timestamp gets `ts + 2^32` of headroom, like {@link extendSeq}, so a
 * B-frame or reordered packet before it stays positive.
 */
export function extendTs(lastExt: number | null, ts: number): number {
  ts >>>= 0;
  if (lastExt === null) return ts + TS_SPACE;
  const low = lastExt % TS_SPACE;
  const d = (ts - low + TS_SPACE) % TS_SPACE;
  return d < 0x8000_0000 ? lastExt + d : lastExt - (TS_SPACE - d);
}

/**
 * Writes a 12-byte v2 header with no CSRC, extension or padding (used when replay
 * rewrites seq/timestamp/SSRC). Returns the bytes written, 12, or 0 if it does not fit.
 */
export function writeRtpHeader(
  buf: Buffer,
  off: number,
  h: { marker: boolean; payloadType: number; seq: number; timestamp: number; ssrc: number },
): number {
  if (off < 0 || off + RTP_MIN > buf.length) return 0;
  buf[off] = 0x80;
  buf[off + 1] = (h.marker ? 0x80 : 0) | (h.payloadType & 0x7f);
  buf.writeUInt16BE(h.seq & 0xffff, off + 2);
  buf.writeUInt32BE(h.timestamp >>> 0, off + 4);
  buf.writeUInt32BE(h.ssrc >>> 0, off + 8);
  return RTP_MIN;
}
