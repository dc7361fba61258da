/**
 * Sequential reads of a plan's segments: from a start offset in one segment, chunk by
 * chunk (large positional reads, 1 MiB by default), then each later segment from its
 * first record, until the caller stops. One chunk per {@link SegmentScanner.next} call,
 * so a consumer can hand out what a chunk produced before the next read (a replay's
 * first packet goes out after one read, not after the range). Only the segments given
 * are opened; nothing here scans an archive.
 */
import { open, stat } from 'node:fs/promises';
import type { SegmentRecord } from '../contracts/records.js';
import { CamtapError, isCamtapError } from '../errors.js';
import { CaptureFileReader, CaptureParser, type CaptureRecord } from '../wire/capture-file.js';

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
  /** Bytes per read. Default 1 MiB. */
  chunkBytes?: number;
}

/** Called once per record, in file order; return false to end the whole scan. The record is valid during the call only. */
export type RecordHandler = (r: CaptureRecord, segmentId: number) => boolean | void;

export class SegmentScanner {
  readonly #deps: ReplayDeps;
  readonly #segs: SegmentRecord[];
  readonly #signal: AbortSignal | undefined;
  readonly #chunk: number;
  #i: number;
  /** Next offset in the current segment; null: its first record. */
  #pos: number | null;
  #reader: CaptureFileReader | null = null;
  #size = 0;
  #done = false;
  /** Segments skipped because their file is gone. */
  skipped = 0;
  /** Bytes read so far. */
  bytes = 0;

  /** Starts at `segments[index]`, at `offset` (a record start) or, when null, its first record. */
  constructor(deps: ReplayDeps, segments: SegmentRecord[], index: number, offset: number | null, opts: ScanOptions = {}) {
    this.#deps = deps;
    this.#segs = segments;
    this.#i = index;
    this.#pos = offset;
    this.#signal = opts.signal;
    this.#chunk = Math.max(4096, opts.chunkBytes ?? DEFAULT_CHUNK);
  }

  /**
   * Reads the next chunk and hands its records to `onRecord`. Returns false when the scan
   * is over (every segment read, or `onRecord` returned false); records delivered by this
   * call are still to be used.
   * @throws CamtapError CAMTAP_ERR_INTERRUPTED when the signal fired; reader errors (a corrupt segment) as they come.
   */
  async next(onRecord: RecordHandler): Promise<boolean> {
    while (!this.#done) {
      if (this.#signal?.aborted) {
        throw new CamtapError('CAMTAP_ERR_INTERRUPTED', { reason: 'stream read stopped' }, { cause: this.#signal.reason });
      }
      if (this.#reader === null && !(await this.#openNext())) {
        this.#done = true;
        return false;
      }
      const reader = this.#reader!;
      const seg = this.#segs[this.#i]!;
      const pos = this.#pos!;
      let stopped = false;
      let chunk = this.#chunk;
      let end = pos;
      for (;;) {
        const res = await reader.scanFrom(
          pos,
          (r) => {
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

  /** Opens the segment at #i (skipping ones whose file is gone); false when none is left. */
  async #openNext(): Promise<boolean> {
    while (this.#i < this.#segs.length) {
      const seg = this.#segs[this.#i]!;
      const loc = this.#deps.segments(seg.id);
      if (loc !== undefined) {
        try {
          this.#reader = await CaptureFileReader.open(loc.path);
          this.#size = (await stat(loc.path)).size;
          if (this.#pos === null) this.#pos = await firstRecordOffset(loc.path);
          return true;
        } catch (e) {
          if (!(isCamtapError(e, 'CAMTAP_ERR_CAPTURE_OPEN') || (e as NodeJS.ErrnoException).code === 'ENOENT')) throw e;
          await this.#closeReader();
        }
      }
      // Deleted by retention between plan and read: what it held is a gap in the output.
      this.skipped++;
      this.#i++;
      this.#pos = null;
    }
    return false;
  }

  async #closeReader(): Promise<void> {
    const r = this.#reader;
    this.#reader = null;
    if (r !== null) await r.close();
  }

  /** Name of interface `id` of the segment being read (pcapng if_name), else `if<id>`. */
  readonly interfaceName = (id: number): string => this.#reader?.interfaces()[id]?.name ?? `if${id}`;

  /** Closes the open file. Safe to call twice. */
  async close(): Promise<void> {
    this.#done = true;
    await this.#closeReader();
  }
}
