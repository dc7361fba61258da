/**
 * The ONVIF replay RTP header extension (ONVIF Streaming Specification §6.3, "RTP
 * header extension"): every packet of a replay a client asked for with
 * `Require: onvif-replay` carries the absolute time of its frame, so a client can place
 * recorded video on the wall clock whatever the RTP timestamps say.
 *
 * ```
 *  0                   1                   2                   3
 * |      0xABAC (profile)         |        length = 3             |   RFC 3550 §5.3.1
 * |                 NTP timestamp, seconds                        |
 * |                 NTP timestamp, fraction                       |
 * |C|E|D|T|  mbz  |    CSeq       |          padding              |
 * ```
 * C: clean point (the packet starts a frame a decoder can start from); E: the last
 * packet of a contiguous section; D: discontinuity (data before it is missing, or a new
 * PLAY position); T: the last packet of the replay. CSeq: low byte of the CSeq of the
 * PLAY that started the transmission.
 */
import { unixMsToNtp } from '../wire/rtcp.js';

export const ONVIF_EXT_PROFILE = 0xabac;
/** Bytes the extension adds (4 header + 12 data). */
export const ONVIF_EXT_BYTES = 16;

export const OnvifFlag = { CLEAN: 0x80, END: 0x40, DISCONTINUITY: 0x20, TERMINATION: 0x10 } as const;

/**
 * Writes `rtp` into `out` with the ONVIF extension (an extension the packet already had
 * is replaced: RFC 3550 allows one). Returns the length written, or -1 when `rtp` is
 * not a well-formed RTP packet or `out` is too small.
 */
export function writeWithOnvifExt(out: Buffer, rtp: Buffer, tsNs: bigint, flags: number, cseq: number): number {
  if (rtp.length < 12 || rtp[0]! >> 6 !== 2) return -1;
  const cc = rtp[0]! & 0x0f;
  const fixed = 12 + 4 * cc;
  let body = fixed;
  if (rtp[0]! & 0x10) {
    if (rtp.length < fixed + 4) return -1;
    body = fixed + 4 + 4 * rtp.readUInt16BE(fixed + 2);
  }
  if (body > rtp.length) return -1;
  const total = fixed + ONVIF_EXT_BYTES + (rtp.length - body);
  if (total > out.length) return -1;
  rtp.copy(out, 0, 0, fixed);
  out[0] = out[0]! | 0x10;
  out.writeUInt16BE(ONVIF_EXT_PROFILE, fixed);
  out.writeUInt16BE(3, fixed + 2);
  const ntp = unixMsToNtp(Number(tsNs / 1000n) / 1000);
  out.writeUInt32BE(ntp.ntpSec >>> 0, fixed + 4);
  out.writeUInt32BE(ntp.ntpFrac >>> 0, fixed + 8);
  out[fixed + 12] = flags & 0xf0;
  out[fixed + 13] = cseq & 0xff;
  out.writeUInt16BE(0, fixed + 14);
  rtp.copy(out, fixed + ONVIF_EXT_BYTES, body);
  return total;
}
