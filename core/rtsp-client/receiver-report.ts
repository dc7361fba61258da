/**
 * What a receiver tells the camera about the stream it gets (RFC 3550 §6.4.2): a
 * receiver report with one report block (loss, highest sequence number, jitter, and
 * the last SR echoed so the camera can measure the round trip) plus an SDES CNAME
 * (§6.1: every compound packet carries one). Some cameras end a session that sends
 * no RTCP; the RTSP keepalive covers the others.
 *
 * Per-packet bookkeeping is a few integer operations on one object (no allocation).
 */
import { RtcpType, parseSenderReport, walkRtcp, type RtcpSenderReport } from '../wire/rtcp.js';
import { extendSeq } from '../wire/rtp.js';

/** Reception statistics of one source (RFC 3550 §A.1, §A.3, §A.8). */
export class ReceptionStats {
  /** SSRC of the source being reported on (the first one seen). */
  ssrc: number | null = null;
  received = 0;
  #baseExt = 0;
  #maxExt: number | null = null;
  #expectedPrior = 0;
  #receivedPrior = 0;
  /** Interarrival jitter in timestamp units, scaled by 16 (§A.8). */
  #jitter16 = 0;
  #transit: number | null = null;
  /** Middle 32 bits of the last SR's NTP time, and when it arrived (ms, performance.now()). */
  #lsr = 0;
  #lsrAt = -1;

  constructor(readonly clockRate: number) {}

  /** One RTP packet: its SSRC, sequence number and timestamp, and when it arrived (ms, performance.now()). */
  onRtp(ssrc: number, seq: number, timestamp: number, arrivalMs: number): void {
    if (this.ssrc === null) this.ssrc = ssrc;
    else if (ssrc !== this.ssrc) return;
    const ext = extendSeq(this.#maxExt, seq);
    if (this.#maxExt === null) this.#baseExt = ext;
    if (this.#maxExt === null || ext > this.#maxExt) this.#maxExt = ext;
    this.received++;
    // §A.8: J += (|D| - J) / 16, D the change in relative transit time.
    const arrival = Math.floor((arrivalMs * this.clockRate) / 1000);
    const transit = (arrival - timestamp) | 0;
    if (this.#transit !== null) {
      const d = Math.abs((transit - this.#transit) | 0);
      this.#jitter16 += d - ((this.#jitter16 + 8) >> 4);
    }
    this.#transit = transit;
  }

  /** An RTCP compound from the camera: the last SR's time is kept for LSR/DLSR. */
  onRtcp(buf: Buffer, nowMs: number): void {
    const sr: RtcpSenderReport = { ssrc: 0, ntpSec: 0, ntpFrac: 0, rtpTs: 0, packetCount: 0, octetCount: 0 };
    walkRtcp(buf, 0, buf.length, (pt, _count, off, len) => {
      if (pt !== RtcpType.SR || !parseSenderReport(buf, off, len, sr)) return;
      if (this.ssrc !== null && sr.ssrc !== this.ssrc) return;
      this.#lsr = (((sr.ntpSec & 0xffff) << 16) | (sr.ntpFrac >>> 16)) >>> 0;
      this.#lsrAt = nowMs;
    });
  }

  /**
   * Writes RR + SDES CNAME into `buf` at 0 and returns its length (0 when nothing was
   * received yet or it does not fit). `ssrc` is the receiver's own SSRC.
   */
  writeReport(buf: Buffer, ssrc: number, cname: Buffer, nowMs: number): number {
    if (this.#maxExt === null || this.ssrc === null) return 0;
    const cn = cname.subarray(0, 255);
    const sdesLen = 4 + 4 + 2 + cn.length; // header, SSRC, item type+length, text
    const sdesPadded = (sdesLen + 1 + 3) & ~3; // the item list ends with a null octet, padded to 32 bits (§6.5)
    const total = 32 + sdesPadded;
    if (buf.length < total) return 0;
    // §A.3: expected from the sequence space covered, lost = expected - received (clamped to 24 bits signed).
    const expected = this.#maxExt - this.#baseExt + 1;
    const lost = Math.max(-0x800000, Math.min(0x7fffff, expected - this.received));
    const expectedInterval = expected - this.#expectedPrior;
    const receivedInterval = this.received - this.#receivedPrior;
    this.#expectedPrior = expected;
    this.#receivedPrior = this.received;
    const lostInterval = expectedInterval - receivedInterval;
    const fraction = expectedInterval <= 0 || lostInterval <= 0 ? 0 : Math.min(255, Math.floor((lostInterval << 8) / expectedInterval));
    buf[0] = 0x81; // V=2, RC=1
    buf[1] = RtcpType.RR;
    buf.writeUInt16BE(7, 2); // 8 words - 1
    buf.writeUInt32BE(ssrc >>> 0, 4);
    buf.writeUInt32BE(this.ssrc >>> 0, 8);
    buf[12] = fraction;
    buf.writeIntBE(lost, 13, 3);
    // extendSeq starts at seq + 65536: the cycle count of §A.1 is the extension less that.
    buf.writeUInt32BE(Math.max(0, this.#maxExt - 0x10000) % 0x1_0000_0000 >>> 0, 16);
    buf.writeUInt32BE((this.#jitter16 >> 4) >>> 0, 20);
    buf.writeUInt32BE(this.#lsrAt < 0 ? 0 : this.#lsr, 24);
    // DLSR in 1/65536 s since that SR arrived.
    buf.writeUInt32BE(this.#lsrAt < 0 ? 0 : Math.min(0xffffffff, Math.floor(((nowMs - this.#lsrAt) / 1000) * 65536)) >>> 0, 28);
    const s = 32;
    buf[s] = 0x81; // V=2, SC=1
    buf[s + 1] = RtcpType.SDES;
    buf.writeUInt16BE(sdesPadded / 4 - 1, s + 2);
    buf.writeUInt32BE(ssrc >>> 0, s + 4);
    buf[s + 8] = 1; // CNAME
    buf[s + 9] = cn.length;
    cn.copy(buf, s + 10);
    buf.fill(0, s + 10 + cn.length, total);
    return total;
  }
}
