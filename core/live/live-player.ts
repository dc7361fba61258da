/**
 * Plays a live feed into one RTSP session's output: packets go out as they arrive, with
 * the session's SSRC, and sequence numbers and timestamps offset so the client sees one
 * continuous stream from a random start (RFC 3550 §5.1) whatever the camera used.
 *
 * A client starts at a keyframe: packets before the first one are not sent (a decoder
 * could not use them). A client that does not keep up is thinned, never waited for:
 * while its output is congested (TCP: the connection's send queue over its high-water
 * mark; UDP: the socket's send queue backed up), packets are dropped, and sending
 * resumes at the next keyframe once the queue has drained, so what it gets always
 * decodes. A client that stays congested for `maxThinMs` is dropped. Nothing here waits,
 * so one slow client never delays the feed or the other clients, and its memory is
 * bounded by its output's queue.
 */
import type { Logger } from '../contracts/logger.js';
import { codecKind } from '../wire/codecs.js';
import type { MediaOutput } from '../serve/rtp-output.js';
import { SR_INTERVAL_MS, writeSenderCompound, type PlayPosition, type PlayerEnd } from '../serve/pacer.js';
import type { LiveFeed, LivePacket, LiveSubscriber } from './channel.js';

export interface LivePlayerStats {
  sent: number;
  /** Packets not sent because the client was congested (thinning). */
  thinned: number;
  /** Packets not sent while waiting for the first keyframe. */
  waitedForKey: number;
  /** Times the client fell behind and was resumed at a keyframe. */
  thinEpisodes: number;
}

export class LivePlayer implements LiveSubscriber {
  readonly #feed: LiveFeed;
  readonly #out: MediaOutput;
  readonly #ssrc: number;
  readonly #cname: Buffer;
  readonly #log: Logger;
  readonly #onEnd: (why: PlayerEnd) => void;
  readonly #maxThinMs: number;
  /** Whether the codec marks keyframes (so a start or a resume can wait for one). */
  readonly #gated: boolean;
  readonly stats: LivePlayerStats = { sent: 0, thinned: 0, waitedForKey: 0, thinEpisodes: 0 };

  #unsubscribe: (() => void) | null = null;
  #ended: PlayerEnd | null = null;
  #paused = true;
  /** Drop until a keyframe (start, resume, after thinning). */
  #needKey = true;
  /** performance.now() when the current congestion began, or -1. */
  #thinSince = -1;
  /** Output sequence number of the next packet, and the offset to the feed's (null: set on the next packet). */
  #nextSeq: number;
  #seqOffset: number | null = null;
  /** Output timestamp = feed timestamp + this (set once, on the first packet: time keeps running while paused). */
  #tsOffset: number | null = null;
  readonly #tsBase: number;
  /** After a discontinuity: the output timestamp the new source's first packet gets. */
  #tsResume: number | null = null;
  #lastSent: { tsNs: bigint; timestamp: number } | null = null;
  #octets = 0;
  #lastSr = Number.NEGATIVE_INFINITY;
  readonly #scratch = Buffer.allocUnsafeSlow(65536);
  readonly #rtcpBuf = Buffer.allocUnsafeSlow(28 + 8 + 264 + 8);

  constructor(opts: {
    feed: LiveFeed;
    output: MediaOutput;
    ssrc: number;
    cname: string;
    log: Logger;
    onEnd: (why: PlayerEnd) => void;
    /** A client congested this long is dropped (default 10 s). */
    maxThinMs?: number;
    /** First output sequence number and timestamp (random by default, RFC 3550 §5.1). */
    initialSeq?: number;
    initialTimestamp?: number;
  }) {
    this.#feed = opts.feed;
    this.#out = opts.output;
    this.#ssrc = opts.ssrc >>> 0;
    this.#cname = Buffer.from(opts.cname.slice(0, 255), 'utf8').subarray(0, 255);
    this.#log = opts.log;
    this.#onEnd = opts.onEnd;
    this.#maxThinMs = opts.maxThinMs ?? 10_000;
    this.#nextSeq = (opts.initialSeq ?? Math.floor(Math.random() * 0x10000)) & 0xffff;
    this.#tsBase = (opts.initialTimestamp ?? Math.floor(Math.random() * 0x1_0000_0000)) >>> 0;
    this.#gated = codecKind(opts.feed.codec) !== 'other';
  }

  get ended(): PlayerEnd | null {
    return this.#ended;
  }
  get paused(): boolean {
    return this.#paused;
  }
  get packetsSent(): number {
    return this.stats.sent;
  }

  /**
   * What the PLAY answer's RTP-Info announces (RFC 2326 §12.33): the sequence number and
   * timestamp the next packet will carry. Before the first packet the timestamp is the
   * random base; afterwards it is the last one sent (the next one is later by the time
   * that passes, which RTP-Info does not need exactly: clients sync on RTCP SRs).
   */
  position(): PlayPosition {
    const nowNs = BigInt(Date.now()) * 1_000_000n;
    return { tsNs: nowNs, seq: this.#nextSeq, timestamp: this.#lastSent?.timestamp ?? this.#tsBase };
  }

  /** Starts (or resumes) receiving the feed. */
  start(): void {
    if (this.#ended || !this.#paused) return;
    this.#paused = false;
    this.#needKey = this.#gated;
    this.#seqOffset = null;
    this.#thinSince = -1;
    this.#unsubscribe = this.#feed.subscribe(this);
  }

  resume(): void {
    this.start();
  }

  /** Stops receiving (PAUSE); a later start() continues at the next keyframe. */
  pause(): void {
    if (this.#paused) return;
    this.#paused = true;
    this.#unsubscribe?.();
    this.#unsubscribe = null;
  }

  /** Speed does not apply to live: it plays at the rate the camera sends. */
  setSpeed(_speed: number): void {}

  stop(): void {
    this.#finish('stopped');
  }

  onPacket(p: LivePacket): void {
    if (this.#ended || this.#paused) return;
    const out = this.#out;
    if (out.closed) return this.#finish('dropped');
    const rtp = p.rtp;
    const len = rtp.length;
    if (len < 12) return;
    if (p.discontinuity) {
      // A new source behind the feed: continue our numbering from where it stopped, a
      // frame's worth of time later, from its first keyframe.
      this.#needKey = this.#gated;
      this.#seqOffset = null;
      this.#tsOffset = null;
      this.#tsResume = this.#lastSent ? (this.#lastSent.timestamp + 3000) >>> 0 : null;
    }
    if (out.congested()) {
      const now = performance.now();
      if (this.#thinSince < 0) {
        this.#thinSince = now;
        this.stats.thinEpisodes++;
        this.#log.debug('client behind: thinning until it drains');
      } else if (now - this.#thinSince > this.#maxThinMs) {
        this.#log.info({ thinned: this.stats.thinned }, 'client congested too long: dropped');
        return this.#finish('dropped');
      }
      this.stats.thinned++;
      this.#needKey = this.#gated;
      this.#seqOffset = null;
      return;
    }
    this.#thinSince = -1;
    if (this.#needKey) {
      if (!p.keyframe) {
        this.stats.waitedForKey++;
        return;
      }
      this.#needKey = false;
    }
    const inSeq = rtp.readUInt16BE(2);
    const inTs = rtp.readUInt32BE(4);
    // Offsets keep the feed's own order and gaps (real loss stays visible to the
    // client); a new offset after a pause or thinning makes the output continuous.
    if (this.#seqOffset === null) this.#seqOffset = (this.#nextSeq - inSeq) & 0xffff;
    if (this.#tsOffset === null) this.#tsOffset = ((this.#tsResume ?? this.#tsBase) - inTs) >>> 0;
    const seq = (inSeq + this.#seqOffset) & 0xffff;
    const ts = (inTs + this.#tsOffset) >>> 0;
    const b = this.#scratch;
    rtp.copy(b, 0, 0, len);
    b.writeUInt16BE(seq, 2);
    b.writeUInt32BE(ts, 4);
    b.writeUInt32BE(this.#ssrc, 8);
    if (!out.sendRtp(b.subarray(0, len))) return this.#finish('dropped');
    // Sequence numbers only advance: a late (reordered) packet does not move the next one back.
    if (((seq - this.#nextSeq) & 0xffff) < 0x8000) this.#nextSeq = (seq + 1) & 0xffff;
    this.stats.sent++;
    this.#octets += len - 12;
    this.#lastSent = { tsNs: p.tsNs, timestamp: ts };
    const now = performance.now();
    if (now - this.#lastSr >= SR_INTERVAL_MS && this.#sendRtcp(false)) this.#lastSr = now;
  }

  onEnd(reason: string): void {
    if (this.#ended) return;
    this.#log.info({ reason, sent: this.stats.sent }, 'live feed ended');
    this.#unsubscribe = null;
    this.#sendRtcp(true);
    this.#finish('eos');
  }

  /** SR (+ SDES CNAME) about the last packet sent (RFC 3550 §6.4.1), and BYE (§6.6) at the end. */
  #sendRtcp(bye: boolean): boolean {
    const last = this.#lastSent;
    if (!last || this.#out.closed) return false;
    const b = this.#rtcpBuf;
    const n = writeSenderCompound(b, { ssrc: this.#ssrc, tsNs: last.tsNs, timestamp: last.timestamp, packets: this.stats.sent, octets: this.#octets, cname: this.#cname, bye });
    return this.#out.sendRtcp(b.subarray(0, n));
  }

  #finish(why: PlayerEnd): void {
    if (this.#ended) return;
    this.#ended = why;
    this.#paused = true;
    this.#unsubscribe?.();
    this.#unsubscribe = null;
    this.#onEnd(why);
  }
}
