/**
 * Per-stream second-level metadata: one RTP SSRC on one flow. Updated synchronously for
 * every packet with no allocation: counters, the extended sequence number (RFC 3550
 * A.1 unwrapping, the first packet given 65536 of headroom so a reordered predecessor
 * stays positive), a 64 Ki-bit window of seen sequence numbers for duplicate detection,
 * and frame/keyframe boundaries from the payload.
 */
import type { LiveChannel } from '../live/channel.js';
import { createHash } from 'node:crypto';
import type { StreamRecord } from '../contracts/records.js';

/** Frame flags as core/wire/codecs.ts reports them. */
export const FRAME_START = 1;
export const KEYFRAME = 2;

const NS = 1_000_000_000n;

export function isoFromParts(sec: number, nsec: number): string {
  const d = new Date(sec * 1000);
  const iso = d.toISOString(); // yyyy-mm-ddThh:mm:ss.mmmZ
  return `${iso.slice(0, 19)}.${String(nsec).padStart(9, '0')}Z`;
}

export function nsString(sec: number, nsec: number): string {
  return (BigInt(sec) * NS + BigInt(nsec)).toString();
}

export interface StreamIdentity {
  transport: 'udp' | 'tcp';
  src: string;
  dst: string;
  channel?: number;
  ssrc: number;
}

/** Stable id: the same stream gets the same id in every import, reindex and node. */
export function streamId(k: StreamIdentity): string {
  const h = createHash('sha1').update(`${k.transport}|${k.src}|${k.dst}|${k.channel ?? ''}|${k.ssrc}`).digest('hex');
  return `s${h.slice(0, 12)}`;
}

export class RtpStreamState {
  /** Small integer the index writer uses on the fast path. */
  readonly key: number;
  readonly id: string;
  readonly transport: 'udp' | 'tcp';
  readonly src: string;
  readonly dst: string;
  readonly channel: number | undefined;
  readonly ssrc: number;
  payloadType = -1;
  codec: string | null = null;
  clockRate: number | null = null;
  direction: StreamRecord['direction'] = 'unknown';
  session: string | null = null;
  url: string | null = null;
  camera: string;

  /** All packets incl. duplicates. */
  received = 0;
  unique = 0;
  duplicates = 0;
  outOfOrder = 0;
  firstSeq = -1;
  lastSeq = -1;
  maxExt = -1;
  minExt = -1;
  markers = 0;
  frames = 0;
  keyframes = 0;
  payloadBytes = 0;
  malformed = 0;
  firstSec = 0;
  firstNsec = 0;
  lastSec = 0;
  lastNsec = 0;
  srNtpMs: number | null = null;
  srRtpTs: number | null = null;
  tapMask = 0;
  /** Last RTP timestamp, to count access units (a new timestamp starts a new frame). */
  #lastTs = -1;
  #auKey = false;
  /** Seen extended sequence numbers within [maxExt-65535, maxExt], bit i = ext & 0xFFFF. */
  readonly #seen = new Uint32Array(2048);
  /** True when the stats changed since the last snapshot. */
  dirty = true;
  /** Dropped from the pipeline's memory (idle and persisted); a new state continues it. */
  evicted = false;
  /**
   * The live feed of this stream while someone watches it (core/live/live-source.ts sets
   * and clears it): the pipeline publishes every new packet into it.
   */
  live: LiveChannel | null = null;
  /** Segment whose index writer knows this stream (the pipeline registers it once per segment). */
  indexSeg = -1;
  /**
   * Interarrival jitter J of RFC 3550 §6.4.1 in RTP timestamp units, estimated as in
   * §A.8 over the unique packets in arrival order; stays 0 while the clock rate is
   * unknown (a stream no SDP described), since J is defined in that clock's units.
   */
  jitter = 0;
  /** Arrival (s since the stream's first packet) and RTP timestamp of the previous packet J looked at; NaN before one. */
  #jArrival = Number.NaN;
  #jTs = 0;

  constructor(key: number, ident: StreamIdentity, camera: string) {
    this.key = key;
    this.id = streamId(ident);
    this.transport = ident.transport;
    this.src = ident.src;
    this.dst = ident.dst;
    this.channel = ident.channel;
    this.ssrc = ident.ssrc;
    this.camera = camera;
  }

  /**
   * Accounts one packet. Returns the extended sequence number, or -1 for a duplicate
   * (which the caller neither indexes nor forwards as new).
   */
  update(seq: number, rtpTs: number, marker: boolean, payloadType: number, payloadLen: number, frameFlags: number, sec: number, nsec: number, tapId: number): number {
    this.received++;
    this.dirty = true;
    this.tapMask |= 1 << (tapId & 31);
    if (this.firstSeq < 0) {
      this.firstSeq = seq;
      this.firstSec = sec;
      this.firstNsec = nsec;
      this.payloadType = payloadType;
    }
    this.lastSeq = seq;
    this.lastSec = sec;
    this.lastNsec = nsec;
    this.payloadBytes += payloadLen;
    let ext: number;
    const seen = this.#seen;
    if (this.maxExt < 0) {
      ext = seq + 0x10000;
      this.maxExt = ext;
      this.minExt = ext;
    } else {
      const last = this.maxExt & 0xffff;
      const d = (seq - last) & 0xffff;
      ext = d < 0x8000 ? this.maxExt + d : this.maxExt - (0x10000 - d);
      if (ext > this.maxExt) {
        // Clear the window slots the new range reuses.
        const adv = ext - this.maxExt;
        if (adv >= 0x10000) seen.fill(0);
        else for (let e = this.maxExt + 1; e <= ext; e++) seen[(e & 0xffff) >>> 5]! &= ~(1 << (e & 31));
        this.maxExt = ext;
      } else if (ext < this.maxExt) {
        this.outOfOrder++;
      }
      if (ext < this.minExt) this.minExt = ext;
    }
    // Older than the window: cannot be checked, taken as new (64 Ki packets late is not a duplicate in practice).
    if (ext > this.maxExt - 0x10000) {
      const slot = (ext & 0xffff) >>> 5;
      const bit = 1 << (ext & 31);
      if (seen[slot]! & bit) {
        this.duplicates++;
        return -1;
      }
      seen[slot]! |= bit;
    }
    this.unique++;
    if (this.clockRate !== null) this.#jitterStep(rtpTs, sec, nsec, this.clockRate);
    if (marker) this.markers++;
    if (rtpTs !== this.#lastTs) {
      this.frames++;
      this.#lastTs = rtpTs;
      this.#auKey = false;
    }
    if (frameFlags & KEYFRAME && !this.#auKey) {
      this.#auKey = true;
      this.keyframes++;
    }
    return ext;
  }

  /**
   * One step of RFC 3550 §A.8: D(i-1,i) = (R_i - R_(i-1)) - (S_i - S_(i-1)) in timestamp
   * units, J += (|D| - J) / 16. Arrival times are taken relative to the first packet so
   * the clock-unit product keeps its precision; the timestamp difference is taken modulo
   * 2^32 as a signed value, so a timestamp wrap is a small step, not a 2^32 jump.
   */
  #jitterStep(rtpTs: number, sec: number, nsec: number, rate: number): void {
    const arrival = sec - this.firstSec + (nsec - this.firstNsec) / 1e9;
    if (!Number.isNaN(this.#jArrival)) {
      const d = (arrival - this.#jArrival) * rate - ((rtpTs - this.#jTs) | 0);
      this.jitter += ((d < 0 ? -d : d) - this.jitter) / 16;
    }
    this.#jArrival = arrival;
    this.#jTs = rtpTs;
  }

  /**
   * Continues from a record an earlier run stored (a later import of the same capture's
   * next file). The duplicate window starts empty: a duplicate across the boundary of two
   * runs is counted as a packet.
   */
  restore(r: StreamRecord): void {
    // What the earlier run learned from the dialog (this run may start after the SETUP).
    this.codec ??= r.codec;
    this.clockRate ??= r.clockRate;
    if (this.direction === 'unknown') this.direction = r.direction;
    this.session ??= r.session;
    this.url ??= r.url;
    if (this.session === r.session) this.camera = r.camera;
    this.#lastTs = r.lastRtpTs ?? -1;
    this.received = r.packets + r.duplicates;
    this.unique = r.packets;
    this.duplicates = r.duplicates;
    this.outOfOrder = r.outOfOrder;
    this.firstSeq = r.firstSeq;
    this.lastSeq = r.lastSeq;
    this.maxExt = r.maxExtSeq;
    this.minExt = r.minExtSeq;
    this.markers = r.markers;
    this.frames = r.frames;
    this.keyframes = r.keyframes;
    this.payloadBytes = r.payloadBytes;
    this.malformed = r.malformed;
    this.payloadType = r.payloadType;
    const ns = (v: string): [number, number] => {
      const b = BigInt(v);
      return [Number(b / NS), Number(b % NS)];
    };
    [this.firstSec, this.firstNsec] = ns(r.startNs);
    [this.lastSec, this.lastNsec] = ns(r.endNs);
    this.srNtpMs = r.srNtpMs ?? null;
    this.srRtpTs = r.srRtpTs ?? null;
    for (const t of r.taps) this.tapMask |= 1 << (t & 31);
  }

  toRecord(tapIds: (mask: number) => number[]): StreamRecord {
    return {
      id: this.id,
      camera: this.camera,
      src: this.src,
      dst: this.dst,
      transport: this.transport,
      ...(this.channel !== undefined ? { channel: this.channel } : {}),
      ssrc: this.ssrc,
      payloadType: this.payloadType,
      codec: this.codec,
      clockRate: this.clockRate,
      direction: this.direction,
      session: this.session,
      url: this.url,
      packets: this.unique,
      duplicates: this.duplicates,
      outOfOrder: this.outOfOrder,
      firstSeq: this.firstSeq,
      lastSeq: this.lastSeq,
      minExtSeq: this.minExt,
      maxExtSeq: this.maxExt,
      lost: this.maxExt < 0 ? 0 : this.maxExt - this.minExt + 1 - this.unique,
      markers: this.markers,
      frames: this.frames,
      keyframes: this.keyframes,
      payloadBytes: this.payloadBytes,
      start: isoFromParts(this.firstSec, this.firstNsec),
      end: isoFromParts(this.lastSec, this.lastNsec),
      startNs: nsString(this.firstSec, this.firstNsec),
      endNs: nsString(this.lastSec, this.lastNsec),
      lastRtpTs: this.#lastTs,
      srNtpMs: this.srNtpMs,
      srRtpTs: this.srRtpTs,
      taps: tapIds(this.tapMask),
      malformed: this.malformed,
    };
  }
}
