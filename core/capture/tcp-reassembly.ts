/**
 * TCP stream reassembly for one direction of one connection (RFC 9293 §3.4 sequence
 * space): payload comes out in sequence order exactly once, so the RTSP/HTTP parser
 * sees the byte stream the peer saw. In-order data (the usual case on a tap) is passed
 * through as a view with no copy; only segments that arrive ahead of a hole are
 * copied, bounded by `maxBufferedBytes` (and a segment count), after which the hole
 * is given up on.
 */
import type { StoreLocation } from '../contracts/frame.js';

/** TCP header flag bits (RFC 9293 §3.1). */
export const TcpFlags = {
  FIN: 0x01,
  SYN: 0x02,
  RST: 0x04,
  PSH: 0x08,
  ACK: 0x10,
} as const;

export interface ReassemblyHandlers {
  /**
   * The next bytes of the stream. `data` is only valid during the call (a view of the
   * caller's packet, or of a held copy); `loc` is where the packet that carried them is
   * stored.
   */
  onData(data: Buffer, loc: StoreLocation | null): void;
  /** `bytes` of the stream were never seen and are skipped; the data that follows is not contiguous with what came before. */
  onGap(bytes: number): void;
}

export interface ReassemblyOptions {
  /** Out-of-order bytes held before a hole is given up on. Default 1 MiB. */
  maxBufferedBytes?: number;
  /** Out-of-order segments held before a hole is given up on (tiny segments cost more than their bytes). Default 4096. */
  maxBufferedSegments?: number;
}

interface Held {
  seq: number;
  data: Buffer;
  loc: StoreLocation | null;
}

/** Signed distance `a - b` in 32-bit sequence space. */
const seqDelta = (a: number, b: number) => (a - b) | 0;

export class TcpReassembler {
  readonly #h: ReassemblyHandlers;
  readonly #max: number;
  readonly #maxSegments: number;
  /** Next expected sequence number (uint32), valid once #started. */
  #next = 0;
  #started = false;
  /** Out-of-order segments, sorted by sequence number relative to #next. */
  readonly #held: Held[] = [];
  #buffered = 0;
  #ended = false;
  #delivered = 0;
  #gaps = 0;
  #gapBytes = 0;
  #retransmitted = 0;

  constructor(handlers: ReassemblyHandlers, opts: ReassemblyOptions = {}) {
    this.#h = handlers;
    this.#max = opts.maxBufferedBytes ?? 1 << 20;
    this.#maxSegments = opts.maxBufferedSegments ?? 4096;
  }

  /** FIN or RST seen. */
  get ended(): boolean {
    return this.#ended;
  }
  /** Bytes delivered through onData. */
  get delivered(): number {
    return this.#delivered;
  }
  /** Holes skipped (onGap calls). */
  get gaps(): number {
    return this.#gaps;
  }
  /** Bytes skipped over all holes. */
  get gapBytes(): number {
    return this.#gapBytes;
  }
  /** Segments that carried bytes already delivered or already held (retransmissions, overlaps). */
  get retransmitted(): number {
    return this.#retransmitted;
  }
  /** Out-of-order bytes currently held. */
  get buffered(): number {
    return this.#buffered;
  }

  /**
   * One segment: `seq` and `flags` from its TCP header, payload `buf[off, off + len)`.
   * A SYN sets the stream start to seq + 1 (its own payload, TCP Fast Open, follows);
   * without a SYN the first segment with payload starts the stream.
   */
  push(seq: number, flags: number, buf: Buffer, off: number, len: number, loc: StoreLocation | null): void {
    seq >>>= 0;
    if (flags & TcpFlags.SYN) {
      if (!this.#started) {
        this.#started = true;
        this.#next = (seq + 1) >>> 0;
      }
      seq = (seq + 1) >>> 0; // the SYN occupies one sequence number
    }
    if (len > 0 && off >= 0 && off + len <= buf.length) {
      if (!this.#started) {
        this.#started = true;
        this.#next = seq;
      }
      this.#segment(seq, buf, off, len, loc);
    }
    if (flags & (TcpFlags.FIN | TcpFlags.RST)) this.#ended = true;
  }

  /** Gives up on every hole: delivers all held data in order, with onGap for each hole. */
  flush(): void {
    while (this.#held.length > 0) this.#skipToHeld();
  }

  #segment(seq: number, buf: Buffer, off: number, len: number, loc: StoreLocation | null): void {
    let rel = seqDelta(seq, this.#next);
    if (rel < 0) {
      // Starts before what was delivered: a retransmission, or one that overlaps the edge.
      this.#retransmitted++;
      if (rel + len <= 0) return;
      off -= rel;
      len += rel;
      rel = 0;
    }
    if (rel === 0) {
      this.#deliver(buf.subarray(off, off + len), loc);
      this.#drain();
      return;
    }
    this.#hold(seq, buf, off, len, loc);
  }

  #deliver(data: Buffer, loc: StoreLocation | null): void {
    this.#next = (this.#next + data.length) >>> 0;
    this.#delivered += data.length;
    this.#h.onData(data, loc);
  }

  /** Delivers held segments that became contiguous; drops those wholly behind #next. */
  #drain(): void {
    const held = this.#held;
    while (held.length > 0) {
      const first = held[0]!;
      const rel = seqDelta(first.seq, this.#next);
      if (rel > 0) return;
      held.shift();
      this.#buffered -= first.data.length;
      if (rel + first.data.length <= 0) continue; // already delivered by an overlapping segment
      this.#deliver(first.data.subarray(-rel), first.loc);
    }
  }

  #hold(seq: number, buf: Buffer, off: number, len: number, loc: StoreLocation | null): void {
    const rel = seqDelta(seq, this.#next);
    const held = this.#held;
    let i = 0;
    while (i < held.length && seqDelta(held[i]!.seq, this.#next) <= rel) i++;
    // Already held in full (a retransmission of an out-of-order segment)?
    for (const h of held) {
      const hr = seqDelta(h.seq, this.#next);
      if (hr <= rel && hr + h.data.length >= rel + len) {
        this.#retransmitted++;
        return;
      }
    }
    if (this.#buffered + len > this.#max || held.length >= this.#maxSegments) {
      // Out of room: give up on the first hole and try again with what that freed.
      if (held.length > 0) {
        this.#skipToHeld();
        this.#segment(seq, buf, off, len, loc);
        return;
      }
      // A single segment larger than the budget: skip straight to it.
      this.#gap(rel);
      this.#deliver(buf.subarray(off, off + len), loc);
      return;
    }
    held.splice(i, 0, { seq, data: Buffer.from(buf.subarray(off, off + len)), loc });
    this.#buffered += len;
  }

  /** Skips the hole before the first held segment, then delivers what is contiguous. */
  #skipToHeld(): void {
    const first = this.#held[0]!;
    const rel = seqDelta(first.seq, this.#next);
    if (rel > 0) this.#gap(rel);
    this.#drain();
  }

  #gap(bytes: number): void {
    this.#gaps++;
    this.#gapBytes += bytes;
    this.#next = (this.#next + bytes) >>> 0;
    this.#h.onGap(bytes);
  }
}
