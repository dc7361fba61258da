/**
 * Which packet is which, across a relay that rewrites RTP headers.
 *
 * The relay benchmark times every packet from the camera simulator's write to the
 * receiver's read. The send time cannot travel in the packet: the payload must stay valid
 * H.264, and ffmpeg's `-c copy -f rtp` depacketizes and packetizes again, so it keeps
 * neither an RTP header extension nor sequence numbers, timestamps or SSRC. What every
 * relay keeps is the payload bytes, provided the camera packetizes the way ffmpeg's
 * muxer does (bench/relay/h264-source.ts), so a packet is identified by its payload:
 * its length and its last 8 bytes (compressed slice data, effectively random). The
 * first byte is left out on purpose: it is a STAP-A's NRI, which packetizers set
 * differently. Identical payloads (the AUD, SPS and PPS of every access unit or GOP)
 * are told apart by order (bench/relay/latency-join.ts).
 */

/** Big-endian 32 bits ending `back - 4` bytes before the payload's end; bytes outside the payload read as 0. */
function tailWord(buf: Buffer, off: number, len: number, back: number): number {
  const end = off + len;
  const to = end - back + 4;
  let v = 0;
  for (let p = to - 4; p < to; p++) v = (v << 8) | (p >= off + 1 && p < end ? buf[p]! : 0);
  return v >>> 0;
}

/** First half of a payload's key: its length mixed with bytes [len-8, len-4). */
export function keyA(buf: Buffer, off: number, len: number): number {
  return (Math.imul(len, 0x9e3779b1) ^ tailWord(buf, off, len, 8)) >>> 0;
}

/** Second half: the last 4 bytes. */
export function keyB(buf: Buffer, off: number, len: number): number {
  return tailWord(buf, off, len, 4);
}

/** Both halves as one exact integer (53 bits) for Map keys. */
export function key53(a: number, b: number): number {
  return a * 0x200000 + (b >>> 11);
}

/** Where the payload of the RTP packet `buf[off, off+len)` starts (after CSRCs and the header extension, RFC 3550 §5.1/§5.3.1), or -1. */
export function rtpPayloadOffset(buf: Buffer, off: number, len: number): number {
  if (len < 12) return -1;
  const b0 = buf[off]!;
  let p = off + 12 + (b0 & 0x0f) * 4;
  if (b0 & 0x10) {
    if (p + 4 > off + len) return -1;
    p += 4 + buf.readUInt16BE(p + 2) * 4;
  }
  return p <= off + len ? p : -1;
}
