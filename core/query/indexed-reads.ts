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
 * packet, whole?). One that is not (the last IP fragment of a datagram, whose other
 * fragments lie elsewhere in the file; a pcapng interface described after the file's
 * header; a sidecar that does not match the file) ends the indexed reads with 'rescan':
 * the caller reads sequentially instead, skipping the records already delivered
 * ({@link IndexedRecordReader.delivered}).
 */
import * as fs from 'node:fs';
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
  /**
   * Blocking reads, one per {@link IndexedRecordReader.next} call, instead of reads in
   * flight on the thread pool: from the page cache a blocking read costs a fraction of an
   * asynchronous one (8 µs against 35 µs per read in docs/BENCHMARKS.md's machine), but a
   * read from disk stalls the event loop: for one-shot commands (an export), not a server.
   */
  sync?: boolean;
}

/** What one {@link IndexedRecordReader.next} call ended with. */
export type IndexedStep =
  /** One read's records were delivered; more to come. */
  | 'more'
  /** Every listed record was delivered. */
  | 'end'
  /** The handler returned false. */
  | 'stop'
  /** A record could not be used alone (it was not delivered): read sequentially, skipping {@link IndexedRecordReader.delivered}. */
  | 'rescan';

const DEFAULT_GAP = 16 * 1024;
const DEFAULT_MAX_READ = 128 * 1024;
const DEFAULT_IN_FLIGHT = 4;
const DEFAULT_GUESS = 2048;
/** Smallest pooled buffer: most reads of an interleaved capture are a frame's burst, a few KiB. */
const MIN_BUFFER = 32 * 1024;
/** First read of a file's header: a pcap header is 24 bytes; a pcapng section header and interface descriptions a few hundred. */
const HEADER_READ = 16384;
/** Largest guess a long record makes later reads take (a pcap record is at most 256 KiB). */
const MAX_GUESS = 262144 + 64;
const DONE: Promise<void> = Promise.resolve();

interface PendingRead {
  /** First and past-the-last index into the offsets, and those offsets (the list decodes them in order only once). */
  from: number;
  to: number;
  at: number[];
  /** File offset of buf[0], and bytes to read. */
  base: number;
  len: number;
  buf: Buffer;
  /** Bytes read; set when done. */
  n: number;
  err: unknown;
  done: Promise<void>;
}

/**
 * Reads buf[0, len) from file position `pos` until full or the file ends. The callback
 * form of fs.read: on the machine of docs/BENCHMARKS.md it costs the main thread about
 * 35 µs per call against 55 µs for FileHandle.read (one of these runs per read).
 */
function readAt(fd: number, buf: Buffer, len: number, pos: number): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    let got = 0;
    const step = (): void => {
      fs.read(fd, buf, got, len - got, pos + got, (err, n) => {
        if (err) reject(err);
        else if (n === 0 || (got += n) >= len) resolve(got);
        else step();
      });
    };
    step();
  });
}

function readAtSync(fd: number, buf: Buffer, len: number, pos: number): number {
  let got = 0;
  while (got < len) {
    const n = fs.readSync(fd, buf, got, len - got, pos + got);
    if (n === 0) break;
    got += n;
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
  readonly #sync: boolean;
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
  /** The stream's record offsets in the file, and the index of the first one to read. */
  readonly offsets: StreamOffsets;
  readonly first: number;
  /** Index past the last record delivered: offs[first, delivered) went to the handler. */
  delivered: number;
  /** File offset past the last record delivered; -1 before any. */
  deliveredEnd = -1;
  /** Bytes read so far. */
  bytes = 0;
  /** Reads issued so far. */
  reads = 0;

  private constructor(fh: FileHandle, parser: CaptureParser, offs: StreamOffsets, from: number, to: number, accept: (r: CaptureRecord) => boolean, opts: IndexedReadOptions) {
    this.#fh = fh;
    this.#parser = parser;
    this.#offs = offs;
    this.#next = from;
    this.#end = Math.min(to, offs.count);
    this.#accept = accept;
    this.offsets = offs;
    this.first = from;
    this.delivered = from;
    this.#gap = Math.max(0, opts.gapBytes ?? DEFAULT_GAP);
    this.#guess = Math.max(64, opts.guessBytes ?? DEFAULT_GUESS);
    this.#maxRead = Math.max(this.#guess, opts.maxReadBytes ?? DEFAULT_MAX_READ);
    this.#inFlight = Math.max(1, Math.floor(opts.inFlight ?? DEFAULT_IN_FLIGHT));
    this.#sync = opts.sync === true;
  }

  /**
   * Opens `path` to read the records `offs[from, to)`, and learns the file's format and
   * interfaces from its header while the first reads are already under way. `accept`
   * says whether a record at a listed offset can be used as it is.
   * @throws CamtapError CAMTAP_ERR_CAPTURE_OPEN when the file cannot be opened; capture errors for a bad header.
   */
  static async open(
    path: string,
    offs: StreamOffsets,
    from: number,
    to: number,
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
    const reader = new IndexedRecordReader(fh, parser, offs, from, to, accept, opts);
    reader.#schedule();
    try {
      const buf = Buffer.allocUnsafe(HEADER_READ);
      let pos = 0;
      for (;;) {
        const n = await readAt(fh.fd, buf, buf.length, pos);
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
    let rd: PendingRead | undefined;
    if (this.#sync) {
      rd = this.#group();
      if (rd === undefined) return 'end';
      try {
        rd.n = readAtSync(this.#fh.fd, rd.buf, rd.len, rd.base);
      } catch (e) {
        rd.err = e;
      }
    } else {
      this.#schedule();
      rd = this.#queue.shift();
      if (rd === undefined) return 'end';
      await rd.done;
      // Keep the reads behind this one going while its records are handled.
      this.#schedule();
    }
    if (rd.err !== undefined) throw rd.err;
    this.bytes += rd.n;
    for (let i = rd.from; i < rd.to; i++) {
      const at = rd.at[i - rd.from]!;
      let r = this.#parse(rd.buf, at - rd.base, rd.n, at);
      if (r === 'more') r = await this.#readOne(at);
      if (r === null || !this.#accept(r)) {
        this.#release(rd.buf);
        return 'rescan';
      }
      const end = at + r.recordLen;
      const v = onRecord(r);
      this.delivered = i + 1;
      this.deliveredEnd = end;
      if (v === false) {
        this.#release(rd.buf);
        return 'stop';
      }
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

  /** The next group of records close together, with a buffer for its read; undefined when every listed record has had one. */
  #group(): PendingRead | undefined {
    if (this.#next >= this.#end) return undefined;
    const offs = this.#offs;
    const from = this.#next;
    const base = offs.at(from);
    const at = [base];
    let last = base;
    let to = from + 1;
    while (to < this.#end) {
      const o = offs.at(to);
      if (o - last > this.#gap || o + this.#guess - base > this.#maxRead) break;
      at.push(o);
      last = o;
      to++;
    }
    this.#next = to;
    this.reads++;
    const len = last + this.#guess - base;
    return { from, to, at, base, len, buf: this.#take(len), n: 0, err: undefined, done: DONE };
  }

  /** Issues reads until `inFlight` are pending or every listed record has one. */
  #schedule(): void {
    if (this.#sync) return;
    while (!this.#closed && this.#queue.length < this.#inFlight) {
      const rd = this.#group();
      if (rd === undefined) return;
      rd.done = readAt(this.#fh.fd, rd.buf, rd.len, rd.base).then(
        (n) => {
          rd.n = n;
        },
        (e: unknown) => {
          rd.err = e;
        },
      );
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

  /** A record longer than what its shared read covered: a read of its own (and a larger guess from now on). */
  async #readOne(at: number): Promise<CaptureRecord | null> {
    let len = Math.max(this.#guess * 2, 65536);
    for (;;) {
      const buf = Buffer.allocUnsafe(len);
      const n = this.#sync ? readAtSync(this.#fh.fd, buf, len, at) : await readAt(this.#fh.fd, buf, len, at);
      this.bytes += n;
      this.reads++;
      const r = this.#parse(buf, 0, n, at);
      if (r !== 'more') {
        if (r !== null && r.recordLen > this.#guess) this.#guess = Math.min(r.recordLen + 64, MAX_GUESS);
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
