/**
 * RTCP compound packets (RFC 3550 §6.1) and the sender report (§6.4.1), which maps a
 * stream's RTP timestamps to wall-clock (NTP) time.
 */

/** The sender info of an SR: at NTP time `ntpSec.ntpFrac` the sender's RTP clock read `rtpTs`. */
export interface RtcpSenderReport {
  ssrc: number;
  ntpSec: number;
  ntpFrac: number;
  rtpTs: number;
  packetCount: number;
  octetCount: number;
}

/** RTCP packet types (RFC 3550 §12.1, RFC 4585 §6.1, RFC 3611). */
export const RtcpType = {
  SR: 200,
  RR: 201,
  SDES: 202,
  BYE: 203,
  APP: 204,
  RTPFB: 205,
  PSFB: 206,
  XR: 207,
} as const;

/**
 * ```
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |V=2|P|    RC   |      PT       |     length (words - 1)        |  one per sub-packet
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * ```
 * Walks a compound packet in `buf[off, off + len)`. The whole compound is checked
 * first (every header v2, every length inside `len`, the lengths adding up to `len`)
 * and nothing is reported unless it is consistent; then `onPacket(pt, count, off, len)`
 * runs for each sub-packet of type 200..207 (`off`/`len` cover its header too). Other
 * types inside a consistent compound are skipped. Returns false if malformed.
 */
export function walkRtcp(
  buf: Buffer,
  off: number,
  len: number,
  onPacket: (pt: number, count: number, off: number, len: number) => void,
): boolean {
  if (off < 0 || len < 4 || off + len > buf.length) return false;
  const end = off + len;
  let p = off;
  while (p < end) {
    if (p + 4 > end || buf[p]! >>> 6 !== 2) return false;
    p += (buf.readUInt16BE(p + 2) + 1) * 4;
  }
  if (p !== end) return false;
  for (p = off; p < end; ) {
    const n = (buf.readUInt16BE(p + 2) + 1) * 4;
    const pt = buf[p + 1]!;
    if (pt >= 200 && pt <= 207) onPacket(pt, buf[p]! & 0x1f, p, n);
    p += n;
  }
  return true;
}

/**
 * ```
 * |V=2|P|    RC   |   PT=SR=200   |             length            |
 * |                         SSRC of sender                        |
 * |              NTP timestamp, most significant word             |
 * |             NTP timestamp, least significant word             |
 * |                         RTP timestamp                         |
 * |                     sender's packet count                     |
 * |                      sender's octet count                     |
 * |                 report blocks (RC x 24 bytes) ...             |
 * ```
 * Reads the sender info of one SR sub-packet at `buf[off, off + len)` (as
 * {@link walkRtcp} reports it). False if it is not a v2 SR or shorter than 28 bytes.
 */
export function parseSenderReport(buf: Buffer, off: number, len: number, out: RtcpSenderReport): boolean {
  if (off < 0 || len < 28 || off + len > buf.length) return false;
  if (buf[off]! >>> 6 !== 2 || buf[off + 1] !== RtcpType.SR) return false;
  if ((buf.readUInt16BE(off + 2) + 1) * 4 < 28) return false;
  out.ssrc = buf.readUInt32BE(off + 4);
  out.ntpSec = buf.readUInt32BE(off + 8);
  out.ntpFrac = buf.readUInt32BE(off + 12);
  out.rtpTs = buf.readUInt32BE(off + 16);
  out.packetCount = buf.readUInt32BE(off + 20);
  out.octetCount = buf.readUInt32BE(off + 24);
  return true;
}

/** Seconds from the NTP epoch (1900-01-01) to the Unix epoch. */
const NTP_UNIX_OFFSET = 2_208_988_800;
const TWO_32 = 0x1_0000_0000;

/**
 * NTP 64-bit time to ms since the Unix epoch. NTP seconds wrap in February 2036; as
 * RFC 4330 §3 suggests, a seconds value with the top bit clear is taken to be in era
 * 1 (2036-2104), since no camera clock is set before 1968.
 */
export function ntpToUnixMs(ntpSec: number, ntpFrac: number): number {
  const sec = (ntpSec >>> 0) < 0x8000_0000 ? (ntpSec >>> 0) + TWO_32 : ntpSec >>> 0;
  return (sec - NTP_UNIX_OFFSET) * 1000 + ((ntpFrac >>> 0) / TWO_32) * 1000;
}

/** Inverse of {@link ntpToUnixMs}: ms since the Unix epoch to NTP seconds and fraction. */
export function unixMsToNtp(ms: number): { ntpSec: number; ntpFrac: number } {
  const totalSec = Math.floor(ms / 1000);
  const fracMs = ms - totalSec * 1000;
  let frac = Math.round((fracMs / 1000) * TWO_32);
  let sec = totalSec + NTP_UNIX_OFFSET;
  if (frac >= TWO_32) {
    frac -= TWO_32;
    sec += 1;
  }
  return { ntpSec: sec % TWO_32, ntpFrac: frac };
}

/**
 * Writes a 28-byte SR with no report blocks (replay announces its rewritten stream's
 * clock with it). Returns the bytes written, 28, or 0 if it does not fit.
 */
export function writeSenderReport(buf: Buffer, off: number, sr: RtcpSenderReport): number {
  if (off < 0 || off + 28 > buf.length) return 0;
  buf[off] = 0x80;
  buf[off + 1] = RtcpType.SR;
  buf.writeUInt16BE(6, off + 2); // 7 words - 1
  buf.writeUInt32BE(sr.ssrc >>> 0, off + 4);
  buf.writeUInt32BE(sr.ntpSec >>> 0, off + 8);
  buf.writeUInt32BE(sr.ntpFrac >>> 0, off + 12);
  buf.writeUInt32BE(sr.rtpTs >>> 0, off + 16);
  buf.writeUInt32BE(sr.packetCount >>> 0, off + 20);
  buf.writeUInt32BE(sr.octetCount >>> 0, off + 24);
  return 28;
}
