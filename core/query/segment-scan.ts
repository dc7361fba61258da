/**
 * Reads of a plan's segments, one step per {@link SegmentScanner.next} call, so a
 * consumer can hand out what a step produced before the next read (a replay's first
 * packet goes out after the first reads, not after the range). Only the segments given
 * are opened; nothing here scans an archive.
 *
 * Two ways to read a segment:
 * - Indexed: when the scan is for one RTP-over-UDP stream and the segment is sealed
 *   with an index that lists every packet's record offset (core/index/segment-index.ts),
 *   only the stream's records are read (core/query/indexed-reads.ts), from the start
 *   point to the first indexed packet captured after `stopNs`. Each record is checked to
 *   be the stream's whole packet (decoded, same endpoints and SSRC); one that is not (an
 *   IP fragment needs the fragments before it) hands the rest of that segment to a
 *   sequential read from the end of the last record delivered.
 * - Sequential: chunk by chunk (large positional reads, 1 MiB by default) from the start
 *   offset, or each later segment from its first record: the open segment (no index
 *   yet), sidecars without offsets (version 1: `camtap reindex` rebuilds them), RTP
 *   interleaved in TCP (its `$` frames span TCP segments the index does not list), and
 *   scans for everything in a range.
 * Both hand the handler the same records of the stream in the same (file) order.
 */
import { open, stat } from 'node:fs/promises';
import type { SegmentRecord, StreamRecord } from '../contracts/records.js';
import { CamtapError, isCamtapError } from '../errors.js';
import { SegmentIndexReader, type StreamOffsets } from '../index/segment-index.js';
import { CaptureFileReader, CaptureParser, type CaptureRecord } from '../wire/capture-file.js';
import { DecodeStatus, PacketDecoder, PacketMeta } from '../wire/packet.js';
import { RtpHeader, parseRtp } from '../wire/rtp.js';
import { IndexedRecordReader, type IndexedReadOptions } from './indexed-reads.js';
import { StreamMatcher } from './stream-match.js';

/** Where segment files and index sidecars are. */
export interface ReplayDeps {
  /** Folder of the per-segment index sidecars (`<dataDir>/index`). */
  indexDir: string;
  /** The current path of a segment (an open segment is renamed when sealed); undefined when it is gone (retention). */
  segments: (id: number) => { path: string } | undefined;
}

const DEFAULT_CHUNK = 1 << 20;
/** pcapng blocks can be up to 16 MiB (the parser's bound): a chunk that made no progress is retried larger, up to this. */
const MAX_CHUNK = 32 << 20;

/**
 * Offset of the first packet record of a capture file (after the pcap file header, or
 * the pcapng section header and the blocks before the first packet); the file's size
 * when it holds none.
 */
export async function firstRecordOffset(path: string): Promise<number> {
  const fh = await open(path, 'r');
  try {
    const parser = new CaptureParser({ file: path });
    const buf = Buffer.allocUnsafe(65536);
    let pos = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) return pos;
      if (parser.readHeaders(buf.subarray(0, bytesRead))) return parser.offset;
      pos += bytesRead;
    }
  } finally {
    await fh.close();
  }
}

export interface ScanOptions {
  signal?: AbortSignal;
  /** Bytes per sequential read. Default 1 MiB. */
  chunkBytes?: number;
  /**
   * The one stream the handler keeps: with it, sealed segments whose index lists the
   * stream's record offsets are read indexed (RTP over UDP only; see the file comment).
   * The handler must not need anything else from those segments.
   */
  stream?: StreamRecord;
  /**
   * Capture time past which the handler wants nothing (it returns false at the first
   * record captured after it): an indexed read of a segment ends at the first indexed
   * packet of the stream captured after it. Absent: to the segment's end.
   */
  stopNs?: bigint;
  /** Index readers already open, by position in `segments` (null: none for that one); the scanner adds those it opens. */
  indexReaders?: Map<number, SegmentIndexReader | null>;
  /** Folder of the index sidecars; default `deps.indexDir`. */
  indexDir?: string;
  /** Tuning of indexed reads. */
  indexed?: IndexedReadOptions;
  /** Set false to read every segment sequentially (comparisons, tests). Default true. */
  useOffsets?: boolean;
}

/** Called once per record, in file order; return false to end the whole scan. The record is valid during the call only. */
export type RecordHandler = (r: CaptureRecord, segmentId: number) => boolean | void;

/** Checks that a record read at an indexed offset is a whole RTP packet of the stream. */
class IndexedCheck {
  readonly #matcher: StreamMatcher;
  readonly #decoder = new PacketDecoder();
  readonly #meta = new PacketMeta();
  readonly #rtp = new RtpHeader();

  constructor(stream: StreamRecord) {
    this.#matcher = new StreamMatcher(stream);
  }

  readonly accept = (r: CaptureRecord): boolean => {
    const m = this.#meta;
    if (this.#decoder.decode(r, m) !== DecodeStatus.OK || !this.#matcher.matches(m)) return false;
    return parseRtp(m.buf, m.payloadOff, m.payloadLen, this.#rtp) && this.#rtp.ssrc >>> 0 === this.#matcher.ssrc;
  };
}

export class SegmentScanner {
  readonly #deps: ReplayDeps;
  readonly #segs: SegmentRecord[];
  readonly #signal: AbortSignal | undefined;
  readonly #chunk: number;
  readonly #stream: StreamRecord | null;
  readonly #stopNs: bigint | undefined;
  readonly #readers: Map<number, SegmentIndexReader | null>;
  readonly #indexDir: string;
  readonly #indexedOpts: IndexedReadOptions;
  #i: number;
  /** Next offset in the current segment; null: its first record. */
  #pos: number | null;
  #reader: CaptureFileReader | null = null;
  #indexed: IndexedRecordReader | null = null;
  /** Where the indexed read of the current segment began (a record offset; null: its first record). */
  #indexedFrom: number | null = null;
  /** After a rescan: the records the indexed read delivered, skipped by the sequential read (the ones before `until` at offsets[from, to)). */
  #skip: { offs: StreamOffsets; from: number; to: number; until: number } | null = null;
  #size = 0;
  #done = false;
  /** Segments skipped because their file is gone. */
  skipped = 0;
  /** Bytes read so far (segment files; not the index). */
  bytes = 0;
  /** Segments read indexed, and those of them handed over to a sequential read part way. */
  indexedSegments = 0;
  rescans = 0;

  /** Starts at `segments[index]`, at `offset` (a record start) or, when null, its first record. */
  constructor(deps: ReplayDeps, segments: SegmentRecord[], index: number, offset: number | null, opts: ScanOptions = {}) {
    this.#deps = deps;
    this.#segs = segments;
    this.#i = index;
    this.#pos = offset;
    this.#signal = opts.signal;
    this.#chunk = Math.max(4096, opts.chunkBytes ?? DEFAULT_CHUNK);
    this.#stream = opts.useOffsets !== false && opts.stream?.transport === 'udp' ? opts.stream : null;
    this.#stopNs = opts.stopNs;
    this.#readers = opts.indexReaders ?? new Map();
    this.#indexDir = opts.indexDir ?? deps.indexDir;
    this.#indexedOpts = opts.indexed ?? {};
  }

  /**
   * Reads the next chunk (sequential) or the next batch of the stream's records
   * (indexed) and hands its records to `onRecord`. Returns false when the scan is over
   * (every segment read, or `onRecord` returned false); records delivered by this call
   * are still to be used.
   * @throws CamtapError CAMTAP_ERR_INTERRUPTED when the signal fired; reader errors (a corrupt segment) as they come.
   */
  async next(onRecord: RecordHandler): Promise<boolean> {
    while (!this.#done) {
      if (this.#signal?.aborted) {
        throw new CamtapError('CAMTAP_ERR_INTERRUPTED', { reason: 'stream read stopped' }, { cause: this.#signal.reason });
      }
      if (this.#reader === null && this.#indexed === null && !(await this.#openNext())) {
        this.#done = true;
        return false;
      }
      const seg = this.#segs[this.#i]!;
      const indexed = this.#indexed;
      if (indexed !== null) {
        const before = indexed.bytes;
        const step = await indexed.next((r) => onRecord(r, seg.id));
        this.bytes += indexed.bytes - before;
        if (step === 'more') return true;
        if (step === 'stop') {
          this.#done = true;
          await this.close();
          return false;
        }
        this.#indexed = null;
        await indexed.close();
        if (step === 'end') {
          this.#i++;
          this.#pos = null;
        } else {
          // A record the index points at cannot be used alone (an IP fragment needs the ones
          // before it): the segment sequentially from where its indexed read began, without
          // the records already delivered.
          this.rescans++;
          this.#pos = this.#indexedFrom;
          if (indexed.delivered > indexed.first) this.#skip = { offs: indexed.offsets, from: indexed.first, to: indexed.delivered, until: indexed.deliveredEnd };
          if (!(await this.#openSequential(seg))) {
            this.#skip = null;
            this.#i++;
            this.#pos = null;
          }
        }
        continue;
      }
      const reader = this.#reader!;
      const pos = this.#pos!;
      let stopped = false;
      let chunk = this.#chunk;
      let end = pos;
      const skip = this.#skip;
      for (;;) {
        const res = await reader.scanFrom(
          pos,
          (r) => {
            if (skip !== null && r.fileOffset < skip.until) {
              const k = skip.offs.indexOf(r.fileOffset);
              if (k >= skip.from && k < skip.to) return true;
            }
            if (onRecord(r, seg.id) === false) {
              stopped = true;
              return false;
            }
            return true;
          },
          { endOffset: pos + chunk, chunkSize: chunk },
        );
        end = res.endOffset;
        // No whole record fit: a block larger than the chunk, unless the data ends here.
        if (end > pos || stopped || pos + chunk >= this.#size || chunk >= MAX_CHUNK) break;
        chunk *= 2;
      }
      this.bytes += end - pos;
      if (stopped) {
        this.#done = true;
        await this.close();
        return false;
      }
      if (end <= pos) {
        // End of this segment's data (or a torn tail being written): on to the next one.
        this.#skip = null;
        await this.#closeReader();
        this.#i++;
        this.#pos = null;
        continue;
      }
      this.#pos = end;
      return true;
    }
    return false;
  }

  /** Opens the segment at #i (skipping ones whose file is gone or that hold nothing to read); false when none is left. */
  async #openNext(): Promise<boolean> {
    while (this.#i < this.#segs.length) {
      const seg = this.#segs[this.#i]!;
      const loc = this.#deps.segments(seg.id);
      if (loc !== undefined) {
        const plan = this.#stream !== null && seg.sealed ? await this.#indexedPlan(this.#i, seg) : null;
        if (plan === 'empty') {
          this.#i++;
          this.#pos = null;
          continue;
        }
        if (plan !== null) {
          try {
            this.#indexed = await IndexedRecordReader.open(loc.path, plan.offsets, plan.from, plan.to, new IndexedCheck(this.#stream!).accept, this.#indexedOpts);
            this.#indexedFrom = this.#pos;
            this.indexedSegments++;
            return true;
          } catch (e) {
            if (!(isCamtapError(e, 'CAMTAP_ERR_CAPTURE_OPEN') || (e as NodeJS.ErrnoException).code === 'ENOENT')) throw e;
          }
        } else if (await this.#openSequential(seg)) {
          return true;
        }
      }
      // Deleted by retention between plan and read: what it held is a gap in the output.
      this.skipped++;
      this.#i++;
      this.#pos = null;
    }
    return false;
  }

  /** Opens the segment for sequential reads from #pos (null: its first record); false when its file is gone. */
  async #openSequential(seg: SegmentRecord): Promise<boolean> {
    const loc = this.#deps.segments(seg.id);
    if (loc === undefined) return false;
    try {
      this.#reader = await CaptureFileReader.open(loc.path);
      this.#size = (await stat(loc.path)).size;
      if (this.#pos === null) this.#pos = await firstRecordOffset(loc.path);
      return true;
    } catch (e) {
      if (!(isCamtapError(e, 'CAMTAP_ERR_CAPTURE_OPEN') || (e as NodeJS.ErrnoException).code === 'ENOENT')) throw e;
      await this.#closeReader();
      return false;
    }
  }

  /**
   * Which of the stream's records to read from segment `i`: from the one at #pos (or its
   * first) to the first indexed one captured after `stopNs`. 'empty' when the index says
   * the stream has none there; null when the index cannot say (no sidecar, an old one,
   * #pos not one of the stream's records): read sequentially.
   */
  async #indexedPlan(i: number, seg: SegmentRecord): Promise<{ offsets: StreamOffsets; from: number; to: number } | 'empty' | null> {
    const stream = this.#stream!;
    try {
      let reader = this.#readers.get(i);
      if (reader === undefined) {
        reader = await SegmentIndexReader.open(this.#indexDir, seg.id, { offsetsOf: stream.id });
        this.#readers.set(i, reader);
      }
      if (reader === null) return null;
      const offsets = await reader.offsets(stream.id);
      if (offsets === null) return null;
      if (offsets.count === 0) return 'empty';
      const from = this.#pos === null ? 0 : offsets.indexOf(this.#pos);
      if (from < 0) return null;
      let to = offsets.count;
      if (this.#stopNs !== undefined) {
        const e = reader.entryAfter(stream.id, this.#stopNs, offsets.at(from));
        const k = e === null ? -1 : offsets.indexOf(e.offset);
        if (k >= 0) to = k + 1;
      }
      return from < to ? { offsets, from, to } : 'empty';
    } catch (e) {
      // No usable sidecar (a corrupt offsets section, one missing): the segment is still read, sequentially.
      if (isCamtapError(e, 'CAMTAP_ERR_INDEX')) return null;
      throw e;
    }
  }

  async #closeReader(): Promise<void> {
    const r = this.#reader;
    this.#reader = null;
    if (r !== null) await r.close();
    const x = this.#indexed;
    this.#indexed = null;
    if (x !== null) await x.close();
  }

  /** Name of interface `id` of the segment being read (pcapng if_name), else `if<id>`. */
  readonly interfaceName = (id: number): string => (this.#indexed?.interfaces() ?? this.#reader?.interfaces())?.[id]?.name ?? `if${id}`;

  /** Closes the open file. Safe to call twice. */
  async close(): Promise<void> {
    this.#done = true;
    await this.#closeReader();
  }
}
