/**
 * Reads of one stream's records at the offsets its segment index lists (every packet of
 * the stream, core/index/segment-index.ts), instead of the whole segment: in a capture
 * of 60 interleaved cameras a stream is 1/60 of the bytes.
 *
 * Records close together in the file (a camera sends a frame's packets in a burst)
 * share one read: a record starting less than `gapBytes` after the previous one joins
 * its read, up to `maxReadBytes` per read. The length of a record is only known once
 * its header is read, so a read runs `guessBytes` past the last record's start (a
 * 1500-byte packet with its pcap/pcapng header fits); a longer record gets a read of
 * its own. A few reads are in flight at once (positional reads on the libuv thread
 * pool) into a small pool of reused buffers, and records are handed out read by read,
 * in file order, so a consumer can output what one read produced before the next one.
 *
 * Every record read this way is checked by the caller's `accept` (is it the stream's
 * packet, whole?). One that is not (an IP fragment whose other parts lie between the
 * stream's packets, a pcapng interface described after the file's header, a sidecar
 * that does not match the file) ends the indexed reads with {@link rescanFrom}: where a
 * sequential read must take over so the result is what a sequential scan gives.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { CamtapError } from '../errors.js';
import { CaptureParser, type CaptureInterface, type CaptureRecord } from '../wire/capture-file.js';
import type { StreamOffsets } from '../index/segment-index.js';

export interface IndexedReadOptions {
  /** A record starting less than this after the previous one shares its read. Default 16 KiB. */
  gapBytes?: number;
  /** Largest read. Default 128 KiB. */
  maxReadBytes?: number;
  /** Reads in flight. Default 4. */
  inFlight?: number;
  /** Bytes read past the start of a read's last record. Default 2048. */
  guessBytes?: number;
}

/** What one {@link IndexedRecordReader.next} call ended with. */
export type IndexedStep =
  /** One read's records were delivered; more to come. */
  | 'more'
  /** Every listed record was delivered. */
  | 'end'
  /** The handler returned false. */
  | 'stop'
  /** A record could not be used alone: read sequentially from {@link IndexedRecordReader.rescanFrom}. */
  | 'rescan';

const DEFAULT_GAP = 16 * 1024;
const DEFAULT_MAX_READ = 128 * 1024;
const DEFAULT_IN_FLIGHT = 4;
const DEFAULT_GUESS = 2048;
/** Smallest pooled buffer: most reads of an interleaved capture are a frame's burst, a few KiB. */
const MIN_BUFFER = 32 * 1024;
/** First read of a file's header: a pcap header is 24 bytes; a pcapng section header and interface descriptions a few hundred. */
const HEADER_READ = 16384;

interface PendingRead {
  /** First and past-the-last index into the offsets. */
  from: number;
  to: number;
  /** File offset of buf[0]. */
  base: number;
  buf: Buffer;
  /** Bytes read; set when done. */
  n: number;
  err: unknown;
  done: Promise<void>;
}

async function readFully(fh: FileHandle, buf: Buffer, len: number, pos: number): Promise<number> {
  let got = 0;
  while (got < len) {
    const { bytesRead } = await fh.read(buf, got, len - got, pos + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got;
}

export class IndexedRecordReader {
  readonly #fh: FileHandle;
  readonly #parser: CaptureParser;
  readonly #offs: StreamOffsets;
  readonly #end: number;
  readonly #accept: (r: CaptureRecord) => boolean;
  readonly #gap: number;
  readonly #maxRead: number;
  readonly #inFlight: number;
  #guess: number;
  /** Next index to schedule a read for. */
  #next: number;
  readonly #queue: PendingRead[] = [];
  readonly #pool: Buffer[] = [];
  #got: CaptureRecord | null = null;
  readonly #onParsed = (r: CaptureRecord): void => {
    this.#got = r;
    this.#parser.stop();
  };
  #closed = false;
  /** End of the last record delivered (where a sequential read would continue); the start position before any. */
  rescanFrom: number | null;
  /** Bytes read so far. */
  bytes = 0;
  /** Reads issued so far. */
  reads = 0;

  private constructor(fh: FileHandle, parser: CaptureParser, offs: StreamOffsets, from: number, to: number, resumeAt: number | null, accept: (r: CaptureRecord) => boolean, opts: IndexedReadOptions) {
    this.#fh = fh;
    this.#parser = parser;
    this.#offs = offs;
    this.#next = from;
    this.#end = Math.min(to, offs.count);
    this.#accept = accept;
    this.rescanFrom = resumeAt;
    this.#gap = Math.max(0, opts.gapBytes ?? DEFAULT_GAP);
    this.#guess = Math.max(64, opts.guessBytes ?? DEFAULT_GUESS);
    this.#maxRead = Math.max(this.#guess, opts.maxReadBytes ?? DEFAULT_MAX_READ);
    this.#inFlight = Math.max(1, Math.floor(opts.inFlight ?? DEFAULT_IN_FLIGHT));
  }

  /**
   * Opens `path` to read the records `offs[from, to)`, and learns the file's format and
   * interfaces from its header while the first reads are already under way. `resumeAt`
   * is where a sequential read would have started (null: the file's first record):
   * {@link rescanFrom} until a record is delivered. `accept` says whether a record at a
   * listed offset can be used as it is.
   * @throws CamtapError CAMTAP_ERR_CAPTURE_OPEN when the file cannot be opened; capture errors for a bad header.
   */
  static async open(
    path: string,
    offs: StreamOffsets,
    from: number,
    to: number,
    resumeAt: number | null,
    accept: (r: CaptureRecord) => boolean,
    opts: IndexedReadOptions = {},
  ): Promise<IndexedRecordReader> {
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (e) {
      throw new CamtapError('CAMTAP_ERR_CAPTURE_OPEN', { file: path, reason: (e as Error).message }, { cause: e });
    }
    const parser = new CaptureParser({ file: path });
    const reader = new IndexedRecordReader(fh, parser, offs, from, to, resumeAt, accept, opts);
    reader.#schedule();
    try {
      const buf = Buffer.allocUnsafe(HEADER_READ);
      let pos = 0;
      for (;;) {
        const n = await readFully(fh, buf, buf.length, pos);
        if (n === 0) {
          parser.end(); // throws EMPTY for a 0-byte file, TRUNCATED inside the header
          break;
        }
        if (parser.readHeaders(buf.subarray(0, n))) break;
        pos += n;
      }
      return reader;
    } catch (e) {
      await reader.close();
      throw e;
    }
  }

  /** Interfaces of the file (from its header). */
  interfaces(): CaptureInterface[] {
    return this.#parser.interfaces;
  }

  /**
   * Waits for the next read and hands its records to `onRecord` in file order (each valid
   * during the call only). See {@link IndexedStep} for the outcome.
   * @throws read errors of the file as they come.
   */
  async next(onRecord: (r: CaptureRecord) => boolean | void): Promise<IndexedStep> {
    if (this.#closed) return 'end';
    this.#schedule();
    const rd = this.#queue.shift();
    if (rd === undefined) return 'end';
    await rd.done;
    // Keep the reads behind this one going while its records are handled.
    this.#schedule();
    if (rd.err !== undefined) throw rd.err;
    this.bytes += rd.n;
    const offs = this.#offs;
    for (let i = rd.from; i < rd.to; i++) {
      const at = offs.at(i);
      let r = this.#parse(rd.buf, at - rd.base, rd.n, at);
      if (r === 'more') r = await this.#readOne(at);
      if (r === null || !this.#accept(r)) {
        this.#release(rd.buf);
        return 'rescan';
      }
      const end = at + r.recordLen;
      if (onRecord(r) === false) {
        this.#release(rd.buf);
        return 'stop';
      }
      this.rescanFrom = end;
    }
    this.#release(rd.buf);
    return 'more';
  }

  /** Waits for the reads in flight and closes the file. Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const pending = this.#queue.splice(0);
    await Promise.all(pending.map((p) => p.done));
    await this.#fh.close();
  }

  /** Issues reads until `inFlight` are pending or every listed record has one. */
  #schedule(): void {
    const offs = this.#offs;
    while (!this.#closed && this.#queue.length < this.#inFlight && this.#next < this.#end) {
      const from = this.#next;
      const base = offs.at(from);
      let last = base;
      let to = from + 1;
      while (to < this.#end) {
        const o = offs.at(to);
        if (o - last > this.#gap || o + this.#guess - base > this.#maxRead) break;
        last = o;
        to++;
      }
      const len = last + this.#guess - base;
      const buf = this.#take(len);
      const rd: PendingRead = { from, to, base, buf, n: 0, err: undefined, done: Promise.resolve() };
      rd.done = readFully(this.#fh, buf, len, base).then(
        (n) => {
          rd.n = n;
        },
        (e: unknown) => {
          rd.err = e;
        },
      );
      this.reads++;
      this.#next = to;
      this.#queue.push(rd);
    }
  }

  /** The record at file offset `at`, from buf[rel, n); 'more' when it runs past the bytes read; null when none can be parsed there. */
  #parse(buf: Buffer, rel: number, n: number, at: number): CaptureRecord | null | 'more' {
    if (rel >= n) return 'more';
    const p = this.#parser;
    this.#got = null;
    try {
      p.seek(at);
      p.push(buf.subarray(rel, n), this.#onParsed);
    } catch {
      // A bad block, or (pcapng) an interface described after the header: the sequential read knows how.
      return null;
    }
    if (this.#got !== null) return this.#got;
    return p.needBytes > 0 ? 'more' : null;
  }

  /** A record longer than what its shared read covered: a read of its own. */
  async #readOne(at: number): Promise<CaptureRecord | null> {
    let len = Math.max(this.#guess * 2, 65536);
    for (;;) {
      const buf = Buffer.allocUnsafe(len);
      const n = await readFully(this.#fh, buf, len, at);
      this.bytes += n;
      this.reads++;
      const r = this.#parse(buf, 0, n, at);
      if (r !== 'more') {
        if (r !== null && r.recordLen > this.#guess) this.#guess = Math.min(r.recordLen + 64, 262144);
        return r;
      }
      if (n < len) return null; // the file ends inside the record
      len = Math.max(len * 2, this.#parser.needBytes + 64);
    }
  }

  #take(len: number): Buffer {
    const pool = this.#pool;
    for (let i = pool.length - 1; i >= 0; i--) {
      if (pool[i]!.length >= len) return pool.splice(i, 1)[0]!;
    }
    return Buffer.allocUnsafe(Math.max(len, MIN_BUFFER));
  }

  #release(buf: Buffer): void {
    if (this.#pool.length <= this.#inFlight) this.#pool.push(buf);
  }
}
