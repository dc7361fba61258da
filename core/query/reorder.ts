/**
 * The in-order stages of a replay, after packets are read in capture order:
 *
 *   StartGate -> SeqReorderer (drop duplicates, wrap-aware reorder in a bounded window)
 *             -> AccessUnits (mark the first packet of each keyframe access unit)
 *
 * Sequence numbers are extended (RFC 3550 §A.1 unwrapping, core/wire/rtp.ts) before they
 * get here, so order and duplicates are plain number comparisons across wraps.
 */
import { FrameFlags } from '../wire/codecs.js';
import type { StartTarget } from './start.js';

/** One RTP packet of the stream, copied out of the segment read. */
export interface StreamPacket {
  tsNs: bigint;
  /** Extended sequence number. */
  ext: number;
  seq: number;
  timestamp: number;
  marker: boolean;
  payloadType: number;
  /** core/wire/codecs.ts FrameFlags of the payload. */
  flags: number;
  /** The whole RTP packet (a copy the replay owns). */
  data: Buffer;
}

/**
 * Extended sequence numbers for one stream, seeded with the index's value for the first
 * packet read so both agree (the capture pipeline gave the stream's first packet
 * `seq + 65536`; a read that starts mid-stream continues that numbering).
 */
export class SeqExtender {
  #max: number | null;

  constructor(seed: number | null) {
    this.#max = seed;
  }

  extend(seq: number): number {
    const max = this.#max;
    if (max === null) {
      this.#max = seq + 0x10000;
      return this.#max;
    }
    const d = (seq - max) & 0xffff;
    const ext = d < 0x8000 ? max + d : max - (0x10000 - d);
    if (ext > max) this.#max = ext;
    return ext;
  }
}

/** Most packets of one access unit held before the start is known (a 4K IDR is a few thousand). */
const MAX_AU_PACKETS = 8192;
/** An anchor packet not met this many packets past its seq is taken as gone: start at the next one. */
const ANCHOR_GIVE_UP = 512;

/**
 * Holds packets back until the first one to output is seen ({@link StartTarget}), then
 * hands it over together with the packets of its access unit that came before it (same
 * RTP timestamp, seen just before it in capture order): an access unit delimiter, SEI
 * and parameter sets lead a keyframe and carry no keyframe flag of their own.
 */
export class StartGate {
  readonly #target: StartTarget;
  #run: StreamPacket[] = [];

  constructor(target: StartTarget) {
    this.#target = target;
  }

  /** Null while the start is not reached; then the packets to output first (in capture order) and the extended seq output starts at. */
  offer(p: StreamPacket): { startExt: number; packets: StreamPacket[] } | null {
    const t = this.#target;
    let go: boolean;
    if (t.kind === 'ext') go = p.ext === t.ext || p.ext > t.ext + ANCHOR_GIVE_UP;
    else if (t.kind === 'keyframe') go = p.tsNs >= t.minTsNs && (p.flags & FrameFlags.KEYFRAME) !== 0;
    else go = p.tsNs >= t.minTsNs;
    const run = this.#run;
    if (!go) {
      if (run.length > 0 && run[run.length - 1]!.timestamp !== p.timestamp) run.length = 0;
      if (run.length >= MAX_AU_PACKETS) run.shift();
      run.push(p);
      return null;
    }
    const lead = t.kind === 'time' ? [] : run.filter((q) => q.timestamp === p.timestamp && q.ext < p.ext);
    this.#run = [];
    let startExt = p.ext;
    for (const q of lead) if (q.ext < startExt) startExt = q.ext;
    lead.push(p);
    return { startExt, packets: lead };
  }
}

/**
 * Duplicate removal and reordering by extended sequence number. A packet at or before
 * the last one output is dropped (a duplicate, e.g. one packet seen by two taps, or
 * too late); the rest are held sorted and released as soon as they are next in line, or
 * when the hold exceeds `window` packets or `maxHoldNs` of capture time (the missing
 * ones are then lost: the receiver sees the gap, RFC 3550 loss).
 */
export class SeqReorderer {
  readonly #window: number;
  readonly #maxHoldNs: bigint;
  readonly #emit: (p: StreamPacket) => void;
  readonly #held: StreamPacket[] = [];
  #last = -1;
  #newestNs = 0n;
  /** Packets dropped: duplicates, and packets that came after their place in the output had passed. */
  dropped = 0;

  constructor(window: number, maxHoldNs: bigint, emit: (p: StreamPacket) => void) {
    this.#window = Math.max(0, Math.floor(window));
    this.#maxHoldNs = maxHoldNs;
    this.#emit = emit;
  }

  /** Output starts at `ext`: anything before it is dropped. */
  start(ext: number): void {
    this.#last = ext - 1;
  }

  push(p: StreamPacket): void {
    if (p.tsNs > this.#newestNs) this.#newestNs = p.tsNs;
    if (p.ext <= this.#last) {
      this.dropped++;
      this.#release();
      return;
    }
    const held = this.#held;
    // Binary search for the insertion point (held is sorted by ext, short).
    let lo = 0;
    let hi = held.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (held[mid]!.ext < p.ext) lo = mid + 1;
      else hi = mid;
    }
    if (lo < held.length && held[lo]!.ext === p.ext) {
      this.dropped++;
      return;
    }
    held.splice(lo, 0, p);
    this.#release();
  }

  #release(): void {
    const held = this.#held;
    while (held.length > 0) {
      const first = held[0]!;
      if (first.ext !== this.#last + 1 && held.length <= this.#window && this.#newestNs - first.tsNs <= this.#maxHoldNs) return;
      held.shift();
      this.#last = first.ext;
      this.#emit(first);
    }
  }

  /** End of input: everything held goes out in order. */
  flush(): void {
    const held = this.#held;
    while (held.length > 0) {
      const p = held.shift()!;
      this.#last = p.ext;
      this.#emit(p);
    }
  }
}

/**
 * Groups packets (in sequence order) into access units: a run of one RTP timestamp,
 * closed by the marker bit (RFC 6184 §5.1, RFC 7798 §4.1, RFC 2435 §3: the last packet of
 * a frame) or by the next timestamp. The first packet of a unit that holds a keyframe is
 * output with `keyframe` true, so a consumer can start a decoder there. Holds at most one
 * unit (bounded); audio and unknown codecs never set the flag.
 */
export class AccessUnits {
  readonly #emit: (p: StreamPacket, keyframe: boolean) => void;
  #unit: StreamPacket[] = [];
  #key = false;

  constructor(emit: (p: StreamPacket, keyframe: boolean) => void) {
    this.#emit = emit;
  }

  push(p: StreamPacket): void {
    const unit = this.#unit;
    if (unit.length > 0 && (unit[0]!.timestamp !== p.timestamp || unit.length >= MAX_AU_PACKETS)) this.flush();
    this.#unit.push(p);
    if (p.flags & FrameFlags.KEYFRAME) this.#key = true;
    if (p.marker) this.flush();
  }

  /** Outputs the unit being collected. */
  flush(): void {
    const unit = this.#unit;
    if (unit.length === 0) return;
    this.#unit = [];
    const key = this.#key;
    this.#key = false;
    for (let i = 0; i < unit.length; i++) this.#emit(unit[i]!, key && i === 0);
  }
}
