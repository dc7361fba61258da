/**
 * A plan -> the stream's RTP packets in sequence order, rewritten to look like one
 * continuous new RTP session.
 *
 *   index: nearest preceding keyframe (core/query/start.ts)
 *   -> reads of the plan's segments (core/query/segment-scan.ts): of the stream's own
 *      records only where the index lists them (RTP over UDP, sealed segments), else
 *      sequential chunks
 *   -> decode each record, keep the stream's packets (UDP: endpoints + SSRC; TCP: the
 *      connection's camera -> client bytes reassembled, `$` frames of its channel + SSRC)
 *   -> start gate -> drop duplicates, wrap-aware reorder (bounded) -> access units
 *   -> rewrite seq / timestamp / SSRC -> out
 *
 * Rewriting (RFC 3550 §5.1):
 * - SSRC: `opts.ssrc`, else random (§8.1: chosen at random).
 * - Sequence numbers: start at `opts.seq` (else random, §5.1) and keep the captured
 *   differences: a packet missing from the capture stays missing, so the receiver
 *   counts it as lost, which is the truth; `gapBefore` says how many are missing.
 * - Timestamps: start at `opts.timestamp` (else random, §5.1) and keep the captured
 *   RTP-time differences (mod 2^32), so frame timing and B-frame order are untouched.
 * - Everything else (marker, payload type, CSRCs, extension, padding, payload) as captured.
 *
 * Output begins after the first chunk read that completes an access unit, long before
 * the range is read to its end; packets captured after `endNs` are not output, and the
 * read stops half a second of capture time past it (slack for taps merged slightly out
 * of time order).
 */
import { randomInt } from 'node:crypto';
import { inspectPayload } from '../wire/codecs.js';
import { DecodeStatus, PacketDecoder, PacketMeta } from '../wire/packet.js';
import { RtpHeader, parseRtp } from '../wire/rtp.js';
import type { CaptureRecord } from '../wire/capture-file.js';
import { InterleavedSource } from './interleaved.js';
import { AccessUnits, SeqExtender, SeqReorderer, StartGate, type StreamPacket } from './reorder.js';
import type { SegmentIndexReader } from '../index/segment-index.js';
import type { IndexedReadOptions } from './indexed-reads.js';
import { SegmentScanner, type ReplayDeps } from './segment-scan.js';
import { locateStart } from './start.js';
import { StreamMatcher } from './stream-match.js';
import type { ReplayPacket, ReplayPlan } from './types.js';

export type { ReplayDeps } from './segment-scan.js';

export interface ReplayOptions {
  /** Output SSRC; random when absent. */
  ssrc?: number;
  /** Sequence number of the first output packet; random when absent. */
  seq?: number;
  /** RTP timestamp of the first output packet; random when absent. */
  timestamp?: number;
  signal?: AbortSignal;
  /** Packets held to put reordered ones back in order. Default 64. */
  reorderWindow?: number;
  /** Capture time a missing packet is waited for before it counts as lost. Default 500 ms. */
  reorderMaxMs?: number;
  /** Bytes per sequential segment read. Default 1 MiB. */
  chunkBytes?: number;
  /** Read only the stream's records where the index lists them. Default true; false reads every segment sequentially. */
  useOffsets?: boolean;
  /** Tuning of those reads. */
  indexed?: IndexedReadOptions;
  /** Filled in as the replay reads (for benchmarks and tests). */
  stats?: ReplayStats;
}

/** What a replay read. */
export interface ReplayStats {
  /** Bytes read from segment files (index sidecars not counted). */
  bytesRead: number;
  /** Segments read by the stream's indexed offsets, and how many of them went sequential part way (a record that needed the ones around it). */
  indexedSegments: number;
  rescans: number;
}

const DEFAULT_WINDOW = 64;
const DEFAULT_HOLD_MS = 500;
/** Capture time read past `endNs` before stopping (records of two taps interleave slightly out of time order). */
export const STOP_SLACK_NS = 500_000_000n;
const NS = 1_000_000_000n;

/** `sec`/`nsec` of an ns time, for comparisons on the per-record path without BigInt work. */
export function splitNs(ns: bigint): [number, number] {
  return [Number(ns / NS), Number(ns % NS)];
}

/** Writes the new seq/timestamp/SSRC into the packets and builds what is output. */
class Rewriter {
  readonly #ssrc: number;
  readonly #seqBase: number;
  readonly #tsBase: number;
  #firstExt = -1;
  #firstTs = 0;
  #prevExt = -1;
  #prevSrcTs = 0;
  #prevTsNs = 0n;
  #prevOutTs = 0;
  readonly #clockRate: number;
  /** RTP clock steps smoothed over (see make()). */
  discontinuities = 0;

  constructor(opts: ReplayOptions, clockRate: number) {
    this.#clockRate = clockRate;
    this.#ssrc = (opts.ssrc ?? randomInt(0, 0x1_0000_0000)) >>> 0;
    this.#seqBase = (opts.seq ?? randomInt(0, 0x10000)) & 0xffff;
    this.#tsBase = (opts.timestamp ?? randomInt(0, 0x1_0000_0000)) >>> 0;
  }

  make(p: StreamPacket, keyframe: boolean): ReplayPacket {
    if (this.#firstExt < 0) {
      this.#firstExt = p.ext;
      this.#firstTs = p.timestamp;
    } else if (p.timestamp !== this.#prevSrcTs) {
      // A discontinuity in the source's RTP clock (a camera whose shared pipeline restarted
      // when a second client joined stepped back 1.84 s in the lab capture): players drop
      // every frame until the clock passes the old point again. The output stays
      // continuous: across a step of over a second backward, or far ahead of the capture
      // time that elapsed, RTP time advances by the elapsed capture time instead.
      const delta = ((p.timestamp - this.#prevSrcTs) | 0);
      const elapsed = Math.round((Number(p.tsNs - this.#prevTsNs) / 1e9) * this.#clockRate);
      if (delta < -this.#clockRate || delta > elapsed + 2 * this.#clockRate) {
        const target = (this.#prevOutTs + Math.max(1, elapsed)) >>> 0;
        this.#firstTs = (p.timestamp - (target - this.#tsBase)) >>> 0;
        this.discontinuities++;
      }
    }
    this.#prevSrcTs = p.timestamp;
    this.#prevTsNs = p.tsNs;
    const seq = (this.#seqBase + (p.ext - this.#firstExt)) & 0xffff;
    const timestamp = (this.#tsBase + p.timestamp - this.#firstTs) >>> 0;
    this.#prevOutTs = timestamp;
    const gapBefore = this.#prevExt < 0 ? 0 : p.ext - this.#prevExt - 1;
    this.#prevExt = p.ext;
    const rtp = p.data;
    rtp.writeUInt16BE(seq, 2);
    rtp.writeUInt32BE(timestamp, 4);
    rtp.writeUInt32BE(this.#ssrc, 8);
    return {
      tsNs: p.tsNs,
      rtp,
      seq,
      timestamp,
      marker: p.marker,
      payloadType: p.payloadType,
      origExtSeq: p.ext,
      origTimestamp: p.timestamp,
      keyframe,
      gapBefore,
    };
  }
}

/**
 * The stream of `plan` as replay packets, in sequence order (see the file comment).
 * Only the plan's segments are opened, each from the start point the index gives.
 * Breaking out of the loop closes the files.
 * @throws CamtapError CAMTAP_ERR_INTERRUPTED when `signal` fires, CAMTAP_ERR_INDEX for a bad sidecar, capture errors for a corrupt segment.
 */
export async function* replayPackets(deps: ReplayDeps, plan: ReplayPlan, opts: ReplayOptions = {}): AsyncGenerator<ReplayPacket, void, undefined> {
  const readers = new Map<number, SegmentIndexReader | null>();
  const start = await locateStart(deps.indexDir, plan, 'keyframe', readers, { preloadOffsets: opts.useOffsets !== false && plan.stream.transport === 'udp' });
  if (start === null) return;
  const stream = plan.stream;
  const matcher = new StreamMatcher(stream);
  const codec = stream.codec;
  const [endSec, endNsec] = splitNs(plan.endNs);
  const [stopSec, stopNsec] = splitNs(plan.endNs + STOP_SLACK_NS);

  let out: ReplayPacket[] = [];
  const rewriter = new Rewriter(opts, plan.stream.clockRate ?? 90000);
  const units = new AccessUnits((p, key) => out.push(rewriter.make(p, key)));
  const reorder = new SeqReorderer(opts.reorderWindow ?? DEFAULT_WINDOW, BigInt(Math.round((opts.reorderMaxMs ?? DEFAULT_HOLD_MS) * 1e6)), (p) => units.push(p));
  const gate = new StartGate(start.target);
  const ext = new SeqExtender(start.seedExt);
  let started = false;
  const h = new RtpHeader();

  const onRtp = (buf: Buffer, off: number, len: number, tsNs: bigint): void => {
    if (!parseRtp(buf, off, len, h) || h.ssrc >>> 0 !== matcher.ssrc) return;
    const data = Buffer.allocUnsafe(len);
    buf.copy(data, 0, off, off + len);
    const p: StreamPacket = {
      tsNs,
      ext: ext.extend(h.seq),
      seq: h.seq,
      timestamp: h.timestamp,
      marker: h.marker,
      payloadType: h.payloadType,
      flags: codec === null ? 0 : inspectPayload(codec, buf, h.payloadOff, h.payloadLen),
      data,
    };
    if (started) {
      reorder.push(p);
      return;
    }
    const first = gate.offer(p);
    if (first === null) return;
    started = true;
    reorder.start(first.startExt);
    for (const q of first.packets) reorder.push(q);
  };

  const tcp = matcher.transport === 'tcp' ? new InterleavedSource(matcher.channel, matcher.ssrc, start.seedExt === null ? null : start.seedExt & 0xffff, (rtp, tsNs) => onRtp(rtp, 0, rtp.length, tsNs)) : null;
  const decoder = new PacketDecoder();
  const meta = new PacketMeta();

  const onRecord = (r: CaptureRecord): boolean => {
    const s = r.tsSec;
    if (s > stopSec || (s === stopSec && r.tsNsec > stopNsec)) return false;
    if (decoder.decode(r, meta) !== DecodeStatus.OK || !matcher.matches(meta)) return true;
    if (s > endSec || (s === endSec && r.tsNsec > endNsec)) return true;
    const tsNs = BigInt(s) * NS + BigInt(r.tsNsec);
    if (tcp !== null) tcp.push(meta, tsNs);
    else onRtp(meta.buf, meta.payloadOff, meta.payloadLen, tsNs);
    return true;
  };

  const scanner = new SegmentScanner(deps, plan.segments, start.index, start.offset, {
    signal: opts.signal,
    chunkBytes: opts.chunkBytes,
    stream: plan.stream,
    stopNs: plan.endNs + STOP_SLACK_NS,
    indexReaders: readers,
    useOffsets: opts.useOffsets,
    indexed: opts.indexed,
  });
  try {
    for (;;) {
      const more = await scanner.next(onRecord);
      if (!more) {
        tcp?.flush();
        reorder.flush();
        units.flush();
      }
      if (out.length > 0) {
        const batch = out;
        out = [];
        for (const p of batch) yield p;
      }
      if (!more) return;
    }
  } finally {
    await scanner.close();
    if (opts.stats) {
      opts.stats.bytesRead = scanner.bytes;
      opts.stats.indexedSegments = scanner.indexedSegments;
      opts.stats.rescans = scanner.rescans;
    }
  }
}
