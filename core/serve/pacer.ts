/**
 * Plays one replay iterator into one output at the pace of capture time: packet `p` is
 * sent when `(p.tsNs - origin.tsNs) / speed` has elapsed since `origin.wall` (speed 1 =
 * as captured, 4 = four times faster, Infinity = as fast as the output takes it). Sends
 * RTCP sender reports (RFC 3550 §6.4.1) about every 5 s of wall time, mapping the
 * packet's capture time to NTP, and an SR + BYE (§6.6) at the end so clients see EOF.
 *
 * One loop per session: a slow or stopped client only ever stalls its own loop.
 */
import type { Logger } from '../contracts/logger.js';
import type { ReplayPacket } from '../query/types.js';
import { RtcpType, unixMsToNtp, writeSenderReport } from '../wire/rtcp.js';
import { SendSlab, type MediaOutput } from './rtp-output.js';
import { ONVIF_EXT_BYTES, OnvifFlag, writeWithOnvifExt } from './onvif-ext.js';

/** Wall time between sender reports (RFC 3550 §6.2 gives 5 s as the minimum interval). */
export const SR_INTERVAL_MS = 5000;
/** Sleeps shorter than this are not worth a timer: the packet goes now. */
const MIN_SLEEP_MS = 2;
/**
 * Over UDP the BYE waits this long after the last RTP packet: RTCP travels on its own
 * port, and a client that reads its RTCP socket first (ffmpeg's rtp_read: "first try
 * RTCP, then RTP") would stop on the BYE with the end of the stream still in its RTP
 * socket buffer.
 */
export const UDP_BYE_DELAY_MS = 1000;
/** Bounds on the access unit held back until its marker (see Player). */
const MAX_HELD_PACKETS = 2048;
const MAX_HELD_BYTES = 4 * 1024 * 1024;

export type PlayerEnd = 'eos' | 'stopped' | 'dropped' | 'error';

/**
 * ```
 * |V=2|P| SC=1 |  PT=SDES=202  |             length            |   RFC 3550 §6.5
 * |                          SSRC/CSRC_1                          |
 * |    CNAME=1    |     length    | user and domain name        ...
 * ```
 * Writes an SDES packet with one CNAME item (required in every compound, §6.1). Returns bytes written.
 */
export function writeSdesCname(buf: Buffer, off: number, ssrc: number, cname: Buffer): number {
  const items = 2 + cname.length + 1; // CNAME item, then the END item (a zero octet)
  const padded = (4 + items + 3) & ~3;
  const total = 4 + padded;
  buf.fill(0, off, off + total);
  buf[off] = 0x81;
  buf[off + 1] = RtcpType.SDES;
  buf.writeUInt16BE(total / 4 - 1, off + 2);
  buf.writeUInt32BE(ssrc >>> 0, off + 4);
  buf[off + 8] = 1;
  buf[off + 9] = cname.length;
  cname.copy(buf, off + 10);
  return total;
}

/**
 * ```
 * |V=2|P|   SC=1  |   PT=BYE=203  |             length            |   RFC 3550 §6.6
 * |                           SSRC/CSRC                           |
 * ```
 */
export function writeBye(buf: Buffer, off: number, ssrc: number): number {
  buf[off] = 0x81;
  buf[off + 1] = RtcpType.BYE;
  buf.writeUInt16BE(1, off + 2);
  buf.writeUInt32BE(ssrc >>> 0, off + 4);
  return 8;
}

/**
 * An RTCP compound about the last packet sent (RFC 3550 §6.1: SR first, then SDES with
 * the CNAME; BYE last when `bye`). The SR maps that packet's capture time (NTP) to its
 * RTP timestamp (§6.4.1). Returns bytes written into `buf` (at least 308 bytes).
 */
export function writeSenderCompound(
  buf: Buffer,
  sr: { ssrc: number; tsNs: bigint; timestamp: number; packets: number; octets: number; cname: Buffer; bye: boolean },
): number {
  const ntp = unixMsToNtp(Number(sr.tsNs / 1000n) / 1000);
  let n = writeSenderReport(buf, 0, { ssrc: sr.ssrc, ntpSec: ntp.ntpSec, ntpFrac: ntp.ntpFrac, rtpTs: sr.timestamp, packetCount: sr.packets, octetCount: sr.octets });
  n += writeSdesCname(buf, n, sr.ssrc, sr.cname);
  if (sr.bye) n += writeBye(buf, n, sr.ssrc);
  return n;
}

/** The current pending packet's position, for RTP-Info and Range in a PLAY answer. */
export interface PlayPosition {
  tsNs: bigint;
  seq: number;
  timestamp: number;
}

/**
 * The packets of an access unit are held back until the packet with the marker bit
 * (RFC 3550 §5.1; RFC 6184 §5.1, RFC 7798 §4.1, RFC 2435 §3: last packet of a frame)
 * or the first packet of the next one (a new RTP timestamp, for senders that never set
 * the marker), then sent together. So a replay ends on a whole frame: when the range or
 * the recording cuts an access unit, its packets are not sent, and players do not
 * report a truncated last picture. Pacing is unchanged within a frame's few ms.
 */
export class Player {
  readonly #it: AsyncIterator<ReplayPacket>;
  readonly #out: MediaOutput;
  readonly #ssrc: number;
  readonly #cname: Buffer;
  readonly #log: Logger;
  readonly #onEnd: (why: PlayerEnd) => void;
  #speed: number;

  /** Next packet to send (already pulled from the iterator), null before prime / after the end. */
  #pending: ReplayPacket | null = null;
  #started = false;
  #paused = false;
  #stopped = false;
  #ended: PlayerEnd | null = null;
  /** Pacing origin: `wall` (performance.now ms) when the packet with capture time `tsNs` was due. */
  #origin: { wall: number; tsNs: bigint } | null = null;
  #wake: (() => void) | null = null;
  #lastSr = Number.NEGATIVE_INFINITY;
  #lastSent: { tsNs: bigint; timestamp: number } | null = null;
  #packets = 0;
  #octets = 0;
  readonly #rtcpBuf = Buffer.allocUnsafeSlow(28 + 8 + 264 + 8);
  /** Copies of the held packets of the access unit in progress (see the class comment). */
  #held: Buffer[] = [];
  #heldBytes = 0;
  #heldTs = 0;
  #heldLast: { tsNs: bigint; timestamp: number } | null = null;
  #heldFirst: PlayPosition | null = null;
  readonly #heldSlab = new SendSlab(64 * 1024);
  /** ONVIF flags (see onvif-ext.ts) of the held packets, in order. */
  #heldFlags: number[] = [];
  readonly #onvif: { cseq: number } | null;
  #onvifBuf: Buffer | null = null;
  /** The next packet sent is the first since a PLAY: ONVIF's D bit. */
  #discontinuity = true;

  constructor(opts: {
    iterator: AsyncIterator<ReplayPacket>;
    output: MediaOutput;
    ssrc: number;
    speed: number;
    cname: string;
    log: Logger;
    onEnd: (why: PlayerEnd) => void;
    /** ONVIF replay (`Require: onvif-replay`): add the 0xABAC extension; `cseq` is the PLAY's. */
    onvif?: { cseq: number } | null;
  }) {
    this.#onvif = opts.onvif ?? null;
    this.#it = opts.iterator;
    this.#out = opts.output;
    this.#ssrc = opts.ssrc;
    this.#speed = opts.speed;
    this.#cname = Buffer.from(opts.cname.slice(0, 255), 'utf8').subarray(0, 255);
    this.#log = opts.log;
    this.#onEnd = opts.onEnd;
  }

  get speed(): number {
    return this.#speed;
  }
  get packetsSent(): number {
    return this.#packets;
  }
  get ended(): PlayerEnd | null {
    return this.#ended;
  }
  get paused(): boolean {
    return this.#paused;
  }

  /** Where play (re)starts: the packet that goes out next (a held one first), or null at the end. */
  position(): PlayPosition | null {
    if (this.#heldFirst) return { ...this.#heldFirst };
    const p = this.#pending;
    return p ? { tsNs: p.tsNs, seq: p.seq, timestamp: p.timestamp } : null;
  }

  /** Pulls the first packet (for RTP-Info) without sending it. Null when the range holds no packet. */
  async prime(): Promise<PlayPosition | null> {
    const r = await this.#it.next();
    if (r.done) {
      this.#pending = null;
      return null;
    }
    this.#pending = r.value;
    return this.position();
  }

  /** Starts sending (after the PLAY answer went out). */
  start(): void {
    if (this.#started || this.#stopped) return;
    this.#started = true;
    this.#origin = null;
    void this.#run().catch((e: unknown) => {
      // A stop aborts the source's signal; its iterator may then throw: that is no failure.
      if (this.#stopped) return this.#finish('stopped');
      this.#log.error({ err: e instanceof Error ? e.message : String(e) }, 'replay failed');
      this.#sendRtcp(true);
      this.#finish('error');
    });
  }

  pause(): void {
    if (this.#paused || this.#stopped) return;
    this.#paused = true;
    this.#kick();
  }

  /** Continues from the pending packet; pacing restarts from now. */
  resume(speed?: number): void {
    if (this.#stopped) return;
    if (speed !== undefined) this.#speed = speed;
    this.#paused = false;
    this.#origin = null;
    this.#kick();
  }

  /** Changes the pace while playing (PLAY with a new Scale). */
  setSpeed(speed: number): void {
    if (speed === this.#speed) return;
    this.#speed = speed;
    this.#origin = null;
    this.#kick();
  }

  /** Stops for good; the iterator is closed. Idempotent. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#kick();
    if (!this.#started) this.#finish('stopped');
  }

  #kick(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  /** Waits `ms` (or forever when Infinity) unless kicked. */
  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | null = null;
      const done = () => {
        if (timer) clearTimeout(timer);
        if (this.#wake === done) this.#wake = null;
        resolve();
      };
      this.#wake = done;
      if (Number.isFinite(ms)) timer = setTimeout(done, ms);
    });
  }

  async #run(): Promise<void> {
    const out = this.#out;
    for (;;) {
      if (this.#stopped) return this.#finish('stopped');
      if (out.closed) return this.#finish('dropped');
      if (this.#paused) {
        await this.#sleep(Number.POSITIVE_INFINITY);
        continue;
      }
      const pkt = this.#pending;
      if (!pkt) return this.#endOfStream();
      if (Number.isFinite(this.#speed)) {
        const now = performance.now();
        if (!this.#origin) this.#origin = { wall: now, tsNs: pkt.tsNs };
        const due = this.#origin.wall + Number(pkt.tsNs - this.#origin.tsNs) / 1e6 / this.#speed;
        if (due - now >= MIN_SLEEP_MS) {
          await this.#sleep(due - now);
          continue; // re-check stop/pause/speed before sending
        }
      }
      if (this.#held.length > 0 && pkt.timestamp !== this.#heldTs && !this.#flushHeld()) return this.#finish('dropped');
      if (pkt.marker) {
        if (!this.#flushHeld() || !this.#send(pkt.rtp, pkt.tsNs, pkt.timestamp, this.#flagsOf(pkt))) return this.#finish('dropped');
      } else {
        this.#hold(pkt);
        if ((this.#held.length >= MAX_HELD_PACKETS || this.#heldBytes >= MAX_HELD_BYTES) && !this.#flushHeld()) return this.#finish('dropped');
      }
      const now = performance.now();
      if (now - this.#lastSr >= SR_INTERVAL_MS && this.#sendRtcp(false)) this.#lastSr = now;
      if (!Number.isFinite(this.#speed)) {
        const wait = out.backpressure();
        // A client that never drains must not pin the loop once the session is stopped.
        if (wait) {
          await Promise.race([wait, this.#sleep(Number.POSITIVE_INFINITY)]);
          this.#wake = null;
        }
      }
      if (this.#stopped) return this.#finish('stopped');
      const r = await this.#it.next();
      this.#pending = r.done ? null : r.value;
    }
  }

  /** ONVIF extension flags of a packet (0 without ONVIF): C on a keyframe's packets, D after a gap or a new start. */
  #flagsOf(pkt: ReplayPacket): number {
    if (!this.#onvif) return 0;
    let f = pkt.keyframe ? OnvifFlag.CLEAN : 0;
    if (pkt.gapBefore > 0 || this.#discontinuity) f |= OnvifFlag.DISCONTINUITY;
    this.#discontinuity = false;
    return f;
  }

  #send(rtp: Buffer, tsNs: bigint, timestamp: number, onvifFlags = 0): boolean {
    if (this.#onvif) {
      const b = (this.#onvifBuf ??= Buffer.allocUnsafeSlow(65536 + ONVIF_EXT_BYTES));
      const n = writeWithOnvifExt(b, rtp, tsNs, onvifFlags, this.#onvif.cseq);
      if (n > 0) rtp = b.subarray(0, n);
    }
    if (!this.#out.sendRtp(rtp)) return false;
    this.#packets++;
    this.#octets += Math.max(0, rtp.length - 12);
    this.#lastSent = { tsNs, timestamp };
    return true;
  }

  #hold(pkt: ReplayPacket): void {
    if (this.#held.length === 0) this.#heldFirst = { tsNs: pkt.tsNs, seq: pkt.seq, timestamp: pkt.timestamp };
    const copy = this.#heldSlab.take(pkt.rtp.length);
    pkt.rtp.copy(copy);
    this.#held.push(copy);
    this.#heldFlags.push(this.#flagsOf(pkt));
    this.#heldBytes += copy.length;
    this.#heldTs = pkt.timestamp;
    this.#heldLast = { tsNs: pkt.tsNs, timestamp: pkt.timestamp };
  }

  #flushHeld(): boolean {
    const held = this.#held;
    if (held.length === 0) return true;
    const last = this.#heldLast!;
    const flags = this.#heldFlags;
    this.#heldFlags = [];
    this.#held = [];
    this.#heldBytes = 0;
    this.#heldFirst = null;
    // ONVIF's C bit is about the access unit: all its packets carry it when any begins a keyframe.
    let clean = 0;
    for (const f of flags) clean |= f & OnvifFlag.CLEAN;
    for (let i = 0; i < held.length; i++) if (!this.#send(held[i]!, last.tsNs, last.timestamp, flags[i]! | clean)) return false;
    return true;
  }

  async #endOfStream(): Promise<void> {
    if (this.#held.length > 0) {
      this.#log.debug({ packets: this.#held.length }, 'last access unit incomplete: not sent');
      this.#held = [];
      this.#heldFlags = [];
      this.#heldBytes = 0;
      this.#heldFirst = null;
    }
    if (this.#out.kind === 'udp' && this.#lastSent) {
      await this.#sleep(UDP_BYE_DELAY_MS);
      if (this.#stopped) return this.#finish('stopped');
    }
    this.#sendRtcp(true);
    this.#finish('eos');
  }

  /** SR (+ SDES CNAME) about the last packet sent, and BYE at the end. */
  #sendRtcp(bye: boolean): boolean {
    const last = this.#lastSent;
    if (!last) return false;
    const b = this.#rtcpBuf;
    const n = writeSenderCompound(b, { ssrc: this.#ssrc, tsNs: last.tsNs, timestamp: last.timestamp, packets: this.#packets, octets: this.#octets, cname: this.#cname, bye });
    return this.#out.sendRtcp(b.subarray(0, n));
  }

  #finish(why: PlayerEnd): void {
    if (this.#ended) return;
    this.#ended = why;
    this.#stopped = true;
    this.#pending = null;
    // Closing a suspended async generator runs its finally blocks (file handles).
    void Promise.resolve()
      .then(() => this.#it.return?.())
      .catch(() => {});
    this.#onEnd(why);
  }
}
