/**
 * The packet store: every frame a tap delivers is appended raw to a pcapng segment
 * (Stenographer-style big sequential writes, files rotated by size and capture time and
 * published by rename). `append` is synchronous and returns where the packet lies at
 * once, because the writer tracks its own position; the bytes reach the file in batches.
 *
 * Writing does not wait for the disk on the packet path:
 * - Appends are copied into a write buffer. A full buffer is handed to libuv's thread
 *   pool as one positional write (pwrite) and appending goes on in a spare buffer from a
 *   small pool; only when every buffer is still being written does a full buffer get
 *   written synchronously (back-pressure with bounded memory). A partial buffer (flush,
 *   flush timer, rotation) is written in the background from where it lies, appending
 *   going on after it in the same buffer. Positional writes may finish in any order; a
 *   segment's *flushed* size is the end of the contiguous run of finished writes from
 *   its start, and that is what readers may read up to.
 * - While a segment fills, a background fdatasync every `writeBehindBytes` keeps the
 *   disk busy from the start instead of from the first seal.
 * - A rotated segment is sealed in the background (fsync on the thread pool, close,
 *   rename, meta cache, then `onSeal`), in batches, in id order, while appends go on in
 *   the next segment.
 *
 * On disk (`<dataDir>/segments/`):
 * - `seg-00000007.pcapng.open`  the segment being written (or being sealed); readable up to its flushed size
 * - `seg-00000007.pcapng`       sealed: fsynced, then renamed (so a sealed name is always whole)
 * - `seg-00000007.meta.json`    packets, size and time range, cached at seal (derivable from the pcapng; ignored unless its size matches)
 * - `next-id`                   lowest id never handed out (ids are never reused in a data dir)
 * and `<dataDir>/external.json`, the captures indexed where they lie (`import --in-place`).
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { StoreLocation, TapFrame } from '../contracts/frame.js';
import { CamtapError } from '../errors.js';
import { epbSize, idbSize, shbSize, writeEpb, writeIdb, writeShb } from '../wire/pcapng-writer.js';
import { cutTornTail, scanSegment } from './recovery.js';
import { selectForRetention } from './retention.js';
import {
  type ExternalEntry,
  OPEN_SUFFIX,
  SEGMENT_RE,
  fsyncDir,
  fsyncDirAsync,
  readExternal,
  readMeta,
  readNextId,
  segmentBase,
  writeExternal,
  writeMeta,
  writeMetaAsync,
  writeNextId,
} from './segment-files.js';

export interface SegmentInfo {
  id: number;
  path: string;
  format: 'pcap' | 'pcapng';
  /** A capture indexed where it lies: never written to, never deleted by retention. */
  external: boolean;
  sealed: boolean;
  bytes: number;
  packets: number;
  /** Earliest and latest capture time in the segment (ns since epoch); null without packets. */
  firstTsNs: bigint | null;
  lastTsNs: bigint | null;
}

export interface StoreAlert {
  kind: 'disk-full' | 'io-error' | 'retention';
  message: string;
  details: Record<string, unknown>;
}

interface StoreLog {
  info(o: object | string, m?: string): void;
  warn(o: object | string, m?: string): void;
  error(o: object | string, m?: string): void;
}

/** fs.write's shape: positional write of buffer[offset, offset+length) at `position`. */
export type AsyncWrite = (fd: number, buffer: Buffer, offset: number, length: number, position: number, cb: (err: NodeJS.ErrnoException | null, written: number) => void) => void;

export interface SegmentStoreOptions {
  /** Segments go to `<dataDir>/segments/`, the external registry to `<dataDir>/external.json`. */
  dataDir: string;
  /** Rotate before a packet would make the segment larger than this. Default 256 MiB. */
  maxSegmentBytes?: number;
  /**
   * Rotate before a packet would make the segment span more than this many seconds of
   * capture time (frame timestamps, not the wall clock, so an import reproduces the
   * capture's time layout). Default 300.
   */
  maxSegmentSeconds?: number;
  /** Total bytes of camtap's own segments to keep (oldest deleted first); external segments are never deleted. */
  retentionBytes?: number | null;
  /** Maximum age of a segment's latest packet against the wall clock. */
  retentionSeconds?: number | null;
  /** Appends are copied into a buffer of this size, written with one write when full (or on flush(), the flush timer, rotation). Default 4 MiB. */
  writeBufferBytes?: number;
  /**
   * Write buffers in the pool (the one being filled + those being written in the
   * background). When all are being written, a full buffer is written synchronously.
   * Default 4; 1 makes every write synchronous.
   */
  writeBuffers?: number;
  /**
   * Write-behind: every time this many more bytes of the open segment are in the file,
   * an fdatasync runs in the background (one at a time), so the disk writes while the
   * segment fills instead of all at once at its seal, and little unsynced data piles up
   * in the page cache. 0 = only the fsync at seal. Default 32 MiB.
   */
  writeBehindBytes?: number;
  /** The buffer is also written out this often so live data is readable within about this long; 0 = only when full/flush(). Default 1000. */
  flushIntervalMs?: number;
  /** IDB snap length; 0 = no limit (pcapng §4.2). Default 0. */
  snapLen?: number;
  log?: StoreLog;
  /**
   * Called synchronously when a segment stops taking appends (it rotated, the store is
   * closing, or a write error halted it), before any packet of the next segment is
   * appended: every packet of the segment has been appended, so its index can be
   * completed now. The info is the unsealed segment as appended (logical size). Its seal
   * (`onSeal`) follows later, in the background.
   */
  onRotate?: (seg: SegmentInfo) => void;
  /**
   * Called after a segment is sealed (fsynced, renamed to its final name, meta cached),
   * from the background seal work, in segment order. Not called for a segment a write
   * error left nothing of.
   */
  onSeal?: (seg: SegmentInfo) => void;
  /** Retention removed it (the callback removes what belongs to it elsewhere, e.g. index sidecars). */
  onDelete?: (seg: SegmentInfo) => void;
  onAlert?: (a: StoreAlert) => void;
  /** Test seam for synchronous write failures that cannot be provoked for real (EIO); disk full is tested on a real tmpfs. */
  writeSync?: (fd: number, buffer: Buffer, offset: number, length: number, position: number) => number;
  /** Test seam for background write failures, same contract as fs.write. */
  writeAsync?: AsyncWrite;
}

/** Bytes [off, off+len) of a write buffer handed to the segment file at offset `start`: written synchronously or on the thread pool. */
interface WriteJob {
  seg: OpenSegment;
  buf: Buffer;
  off: number;
  start: number;
  len: number;
  written: number;
  state: JobState;
  err: unknown;
  /** The segment's packets and time range once this job (and all before it) is in the file. */
  packets: number;
  minSec: number;
  minNsec: number;
  maxSec: number;
  maxNsec: number;
  settled: Promise<void>;
  resolve: () => void;
}

const enum JobState {
  InFlight,
  Done,
  Failed,
}

/** The writer state of a segment that takes appends (or did, until its seal). Times are kept as (sec, nsec) numbers so the packet path does no BigInt work. */
interface OpenSegment {
  id: number;
  openPath: string;
  finalPath: string;
  fd: number;
  fdClosed: boolean;
  /** Logical size: everything appended (submitted + buffered). */
  bytes: number;
  /** Bytes handed to writes so far (the write buffer holds [submitted, bytes)). */
  submitted: number;
  /** End of the contiguous run of finished writes from offset 0: readable up to here. */
  flushedBytes: number;
  packets: number;
  flushedPackets: number;
  minSec: number;
  minNsec: number;
  maxSec: number;
  maxNsec: number;
  /** Time range of the flushed packets (what current() reports). */
  fMinSec: number;
  fMinNsec: number;
  fMaxSec: number;
  fMaxNsec: number;
  /** (tapId, linkType) key -> interface id in this segment. */
  ifaces: Map<number, number>;
  /** Writes not yet part of the flushed run, in file order (in flight, failed, or done after one that is not). */
  jobs: WriteJob[];
  /** Renamed to its final name by the seal (which has not announced it yet). */
  renamed: boolean;
  /** Flushed size when the last write-behind fdatasync started. */
  syncedMark: number;
  /** The write-behind fdatasync in flight (the seal waits for it before closing the fd). */
  syncing: Promise<void> | null;
}

/** How #submit writes (see there). */
const enum Submit {
  Full,
  Tail,
  Sync,
}

const MiB = 1024 * 1024;
const USER_APPL = 'camtap';
const RESOLVED = Promise.resolve();
/** Most segments sealed together (each holds an fd until then). */
const SEAL_BATCH = 32;
const NOOP = (): void => {};

function toNs(sec: number, nsec: number): bigint {
  return BigInt(sec) * 1_000_000_000n + BigInt(nsec);
}

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}

function isDiskFull(e: unknown): boolean {
  const c = errno(e);
  return c === 'ENOSPC' || c === 'EDQUOT';
}

function fsyncFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fsync(fd, (e) => (e ? reject(e) : resolve())));
}

function closeFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.close(fd, (e) => (e ? reject(e) : resolve())));
}

/** Bytes of whole blocks at the start of a job that lie within its first `written` bytes (a job's blocks are whole and back to back). */
function wholeBlocks(job: WriteJob, written: number): number {
  let p = 0;
  while (p + 8 <= job.len) {
    const len = job.buf.readUInt32LE(job.off + p + 4);
    if (len < 12 || p + len > written) break;
    p += len;
  }
  return p;
}

export class SegmentStore {
  readonly #segDir: string;
  readonly #externalFile: string;
  readonly #nextIdFile: string;
  readonly #maxBytes: number;
  readonly #maxSpanNs: number;
  readonly #retentionBytes: number | null;
  readonly #retentionSeconds: number | null;
  readonly #flushIntervalMs: number;
  readonly #snapLen: number;
  readonly #opts: SegmentStoreOptions;
  readonly #write: (fd: number, buffer: Buffer, offset: number, length: number, position: number) => number;
  readonly #writeAsync: AsyncWrite;
  readonly #bufSize: number;
  readonly #bufCount: number;
  readonly #writeBehind: number;

  /**
   * The buffer appends go to. [#bufBase, #bufLen) are #cur's bytes [#cur.submitted,
   * #cur.bytes), not yet handed to a write; bytes before #bufBase may still be read by
   * a write in flight (the buffer is then pinned).
   */
  #buf: Buffer;
  #bufBase = 0;
  #bufLen = 0;
  /** Standard-size buffers no write uses, how many exist in all, and the in-flight writes reading from each pinned buffer. */
  readonly #free: Buffer[] = [];
  #bufAllocated = 1;
  readonly #pins = new Map<Buffer, number>();
  readonly #inflight = new Set<WriteJob>();
  /** Write-behind fdatasyncs in flight. */
  readonly #syncs = new Set<Promise<void>>();
  #cur: OpenSegment | null = null;
  /** Segments that stopped taking appends and are not sealed yet, in id order. */
  readonly #rotated: OpenSegment[] = [];
  #working = false;
  #worker: Promise<void> = RESOLVED;
  readonly #sealed = new Map<number, SegmentInfo>();
  readonly #external = new Map<number, ExternalEntry>();
  readonly #tapNames = new Map<number, string>();
  #nextId = 1;
  #opened = false;
  #closed = false;
  #closing: Promise<void> | null = null;
  /** Set when a write (or seal) fails: every later append throws it. */
  #halted: CamtapError | null = null;
  /** The error behind #halted and the file it concerned. */
  #failure: { e: unknown; file: string; segment: number | null } | null = null;
  /** The halt error was thrown to a caller (append, flush, seal, close); if not, close() throws it. */
  #haltReported = false;
  #timer: NodeJS.Timeout | null = null;
  /** The segment directory, open for its fsyncs after renames. */
  #dirFd: number | null = null;

  constructor(opts: SegmentStoreOptions) {
    this.#opts = opts;
    this.#segDir = path.join(opts.dataDir, 'segments');
    this.#externalFile = path.join(opts.dataDir, 'external.json');
    this.#nextIdFile = path.join(this.#segDir, 'next-id');
    this.#maxBytes = opts.maxSegmentBytes ?? 256 * MiB;
    this.#maxSpanNs = (opts.maxSegmentSeconds ?? 300) * 1e9;
    this.#retentionBytes = opts.retentionBytes ?? null;
    this.#retentionSeconds = opts.retentionSeconds ?? null;
    this.#flushIntervalMs = opts.flushIntervalMs ?? 1000;
    this.#snapLen = opts.snapLen ?? 0;
    this.#bufSize = Math.max(4096, opts.writeBufferBytes ?? 4 * MiB);
    this.#bufCount = Math.max(1, Math.floor(opts.writeBuffers ?? 4));
    this.#writeBehind = Math.max(0, opts.writeBehindBytes ?? 32 * MiB);
    this.#buf = Buffer.allocUnsafe(this.#bufSize);
    this.#write = opts.writeSync ?? ((fd, b, o, l, p) => fs.writeSync(fd, b, o, l, p));
    this.#writeAsync = opts.writeAsync ?? ((fd, b, o, l, p, cb) => fs.write(fd, b, o, l, p, cb));
  }

  /** True after a disk-full or I/O error: every later append throws without writing. */
  get halted(): boolean {
    return this.#halted !== null;
  }

  /**
   * Loads the store. Every unsealed segment left by a crash (`<name>.pcapng.open`; with
   * background seals there can be several) has its torn tail cut at the last complete
   * block, then it is sealed; one with not even a complete section header is removed.
   * Recovered segments are reported in the result, not through `onSeal` (their index
   * writers died with the crashed process: the caller reindexes them). Sealed segments'
   * info comes from their meta cache, or from walking the pcapng when the cache is
   * missing or stale.
   */
  async open(): Promise<{ recovered: Array<{ segment: number; path: string; cutBytes: number; packets: number }> }> {
    if (this.#opened) throw new Error('SegmentStore.open() called twice');
    fs.mkdirSync(this.#segDir, { recursive: true });
    let external: ExternalEntry[];
    try {
      external = readExternal(this.#externalFile);
    } catch (e) {
      throw new CamtapError('CAMTAP_ERR_STORE_CORRUPT', { file: this.#externalFile, offset: 0, reason: `unreadable external-segment registry: ${(e as Error).message}` }, { cause: e });
    }
    let maxId = 0;
    for (const x of external) {
      this.#external.set(x.id, x);
      maxId = Math.max(maxId, x.id);
    }

    const recovered: Array<{ segment: number; path: string; cutBytes: number; packets: number }> = [];
    const names = fs.readdirSync(this.#segDir).sort();
    for (const name of names) {
      if (name.includes('.tmp-')) {
        fs.rmSync(path.join(this.#segDir, name), { force: true }); // an atomic write the crash interrupted
        continue;
      }
      const m = SEGMENT_RE.exec(name);
      if (!m) continue;
      const id = Number(m[1]);
      maxId = Math.max(maxId, id);
      const file = path.join(this.#segDir, name);
      if (m[2] === OPEN_SUFFIX) {
        recovered.push(this.#recover(id, file));
      } else {
        this.#sealed.set(id, this.#loadSealed(id, file));
      }
    }
    this.#nextId = Math.max(readNextId(this.#nextIdFile), maxId + 1, 1);
    try {
      this.#dirFd = fs.openSync(this.#segDir, 'r');
    } catch {
      this.#dirFd = null; // fsyncDirAsync opens it each time
    }
    this.#opened = true;
    if (this.#flushIntervalMs > 0) {
      this.#timer = setInterval(() => this.#timedFlush(), this.#flushIntervalMs);
      this.#timer.unref();
    }
    return { recovered };
  }

  #recover(id: number, openPath: string): { segment: number; path: string; cutBytes: number; packets: number } {
    const scan = cutTornTail(openPath);
    if (scan.validBytes === 0) {
      fs.rmSync(openPath, { force: true });
      this.#opts.log?.warn({ segment: id, file: openPath, cutBytes: scan.cutBytes }, 'removed a crashed segment without a complete section header');
      return { segment: id, path: openPath, cutBytes: scan.cutBytes, packets: 0 };
    }
    const finalPath = openPath.slice(0, -OPEN_SUFFIX.length);
    fs.renameSync(openPath, finalPath);
    fsyncDir(this.#segDir);
    const info: SegmentInfo = { id, path: finalPath, format: 'pcapng', external: false, sealed: true, bytes: scan.validBytes, packets: scan.packets, firstTsNs: scan.firstTsNs, lastTsNs: scan.lastTsNs };
    this.#writeMetaQuiet(info);
    this.#sealed.set(id, info);
    this.#opts.log?.warn({ segment: id, file: finalPath, cutBytes: scan.cutBytes, packets: scan.packets, reason: scan.stopReason }, 'recovered a segment left open by a crash');
    return { segment: id, path: finalPath, cutBytes: scan.cutBytes, packets: scan.packets };
  }

  #loadSealed(id: number, file: string): SegmentInfo {
    const size = fs.statSync(file).size;
    const meta = readMeta(this.#metaPath(id));
    if (meta && meta.id === id && meta.bytes === size) {
      return { id, path: file, format: 'pcapng', external: false, sealed: true, bytes: size, packets: meta.packets, firstTsNs: meta.firstTsNs, lastTsNs: meta.lastTsNs };
    }
    // No cache (or the file changed under it): the pcapng is the truth.
    const scan = scanSegment(file);
    const info: SegmentInfo = { id, path: file, format: 'pcapng', external: false, sealed: true, bytes: size, packets: scan.packets, firstTsNs: scan.firstTsNs, lastTsNs: scan.lastTsNs };
    if (scan.stopReason !== null) this.#opts.log?.warn({ segment: id, file, offset: scan.validBytes, reason: scan.stopReason }, 'sealed segment has unreadable blocks after this offset');
    this.#writeMetaQuiet(info);
    return info;
  }

  #metaPath(id: number): string {
    return path.join(this.#segDir, `${segmentBase(id)}.meta.json`);
  }

  /** The meta file is a cache: failing to write it (e.g. disk full) costs a re-scan at the next open, nothing else. */
  #writeMetaQuiet(info: SegmentInfo): void {
    try {
      writeMeta(this.#metaPath(info.id), info);
    } catch (e) {
      this.#opts.log?.warn({ segment: info.id, err: (e as Error).message }, 'cannot write segment meta cache');
    }
  }

  #allocId(): number {
    const id = this.#nextId;
    writeNextId(this.#nextIdFile, id + 1); // before the id is used, so a crash cannot hand it out twice
    this.#nextId = id + 1;
    return id;
  }

  /**
   * Appends one frame and returns where its EPB starts: {segment id, byte offset in the
   * segment file}. Synchronous; the returned object is the caller's to keep.
   *
   * Creates the segment lazily (SHB first), writes an IDB the first time a
   * (tapId, linkType) pair appears in a segment (interface ids are per segment; the IDB
   * is named `tapName` and described `camtap tap <tapId>`), and rotates first when this
   * packet would take the segment past `maxSegmentBytes` or past `maxSegmentSeconds` of
   * capture time (the old segment is sealed in the background).
   *
   * On ENOSPC (or another write error) the store halts: it raises one `disk-full` (or
   * `io-error`) alert, cuts the segment back to the last whole block before the first
   * byte that did not reach the file, seals it, and removes any later segment (so what is
   * kept is exactly a prefix of what was appended); afterwards `halted` is true and every
   * append throws CAMTAP_ERR_STORE_FULL (CAMTAP_ERR_STORE_IO) without writing.
   * - A failed synchronous write (the pool was busy) throws from the append that made it.
   * - A failed background write is noticed when it completes, so it is the *next* append
   *   after that which throws; the appends in between returned locations that are lost,
   *   like the packets still in the write buffer. If no append follows, `close()` throws.
   * - The alert comes once every write in flight has settled (the cut needs them all),
   *   at once when none is; `flushAsync()` and `close()` wait for it.
   * - Writes in flight race for the last free blocks, so a later one may succeed where an
   *   earlier one failed; the later bytes are dropped with the earlier (a prefix is kept),
   *   so up to about `writeBuffers` buffers fewer than a strictly sequential writer would
   *   have kept. The alert's `keptBytes` and `lostBytes` say what was kept and lost.
   */
  append(frame: TapFrame, tapName?: string): StoreLocation {
    if (this.#halted !== null) {
      this.#haltReported = true;
      throw new CamtapError(this.#halted.code, this.#halted.details, { cause: this.#halted.cause });
    }
    if (!this.#opened || this.#closed) throw new Error(this.#closed ? 'SegmentStore is closed' : 'SegmentStore.open() has not been called');
    if (tapName !== undefined && this.#tapNames.get(frame.tapId) !== tapName) this.#tapNames.set(frame.tapId, tapName);

    const key = frame.tapId * 65536 + frame.linkType;
    const epb = epbSize(frame.capLen);
    let seg = this.#cur;
    if (seg !== null && seg.packets > 0) {
      const need = seg.ifaces.has(key) ? epb : epb + this.#idbBytes(frame.tapId);
      if (seg.bytes + need > this.#maxBytes || this.#spanWith(seg, frame.tsSec, frame.tsNsec) > this.#maxSpanNs) {
        this.#rotate();
        seg = null;
      }
    }
    if (seg === null) seg = this.#create();

    let ifId = seg.ifaces.get(key);
    if (ifId === undefined) {
      ifId = seg.ifaces.size;
      const name = this.#tapName(frame.tapId);
      const description = `camtap tap ${frame.tapId}`;
      this.#reserve(idbSize(name, description));
      this.#bufLen = writeIdb(this.#buf, this.#bufLen, frame.linkType, this.#snapLen, name, description);
      seg.bytes += idbSize(name, description);
      seg.ifaces.set(key, ifId);
    }

    this.#reserve(epb);
    const offset = seg.bytes;
    this.#bufLen = writeEpb(this.#buf, this.#bufLen, ifId, frame.tsSec, frame.tsNsec, frame.buf, frame.off, frame.capLen, frame.origLen);
    seg.bytes += epb;
    const s = frame.tsSec;
    const ns = frame.tsNsec;
    if (seg.packets === 0) {
      seg.minSec = seg.maxSec = s;
      seg.minNsec = seg.maxNsec = ns;
    } else {
      if (s < seg.minSec || (s === seg.minSec && ns < seg.minNsec)) {
        seg.minSec = s;
        seg.minNsec = ns;
      }
      if (s > seg.maxSec || (s === seg.maxSec && ns > seg.maxNsec)) {
        seg.maxSec = s;
        seg.maxNsec = ns;
      }
    }
    seg.packets++;
    return { segment: seg.id, offset };
  }

  /** Capture-time span (ns) of the segment if a packet at (s, ns) joined it. Exact below 2^53 ns (104 days). */
  #spanWith(seg: OpenSegment, s: number, ns: number): number {
    let loS = seg.minSec;
    let loN = seg.minNsec;
    let hiS = seg.maxSec;
    let hiN = seg.maxNsec;
    if (s < loS || (s === loS && ns < loN)) {
      loS = s;
      loN = ns;
    }
    if (s > hiS || (s === hiS && ns > hiN)) {
      hiS = s;
      hiN = ns;
    }
    return (hiS - loS) * 1e9 + (hiN - loN);
  }

  #tapName(tapId: number): string {
    return this.#tapNames.get(tapId) ?? `tap${tapId}`;
  }

  #idbBytes(tapId: number): number {
    return idbSize(this.#tapName(tapId), `camtap tap ${tapId}`);
  }

  /** Makes room for n bytes in the write buffer: submits what it holds and, when that leaves no room, continues in another buffer. */
  #reserve(n: number): void {
    if (this.#bufLen + n <= this.#buf.length) return;
    this.#submit(Submit.Full);
    if (this.#bufLen + n <= this.#buf.length) return;
    if (n > this.#bufSize) {
      this.#replaceBuf(Buffer.allocUnsafe(n)); // a block larger than a buffer: a buffer of its own, dropped after its write
      return;
    }
    // The buffer was written synchronously but a tail write still reads from it (see Submit.Tail):
    // one buffer beyond the pool, given up again when a write releases one.
    let b = this.#spare();
    if (b === null) {
      this.#bufAllocated++;
      b = Buffer.allocUnsafe(this.#bufSize);
    }
    this.#replaceBuf(b);
  }

  #create(): OpenSegment {
    let id = 0;
    let fd: number;
    let file = this.#nextIdFile;
    try {
      id = this.#allocId();
      file = path.join(this.#segDir, `${segmentBase(id)}.pcapng${OPEN_SUFFIX}`);
      fd = fs.openSync(file, 'wx');
    } catch (e) {
      this.#fail(e, null, file);
      throw this.#reportHalt();
    }
    const seg: OpenSegment = {
      id,
      openPath: file,
      finalPath: file.slice(0, -OPEN_SUFFIX.length),
      fd,
      fdClosed: false,
      bytes: 0,
      submitted: 0,
      flushedBytes: 0,
      packets: 0,
      flushedPackets: 0,
      minSec: 0,
      minNsec: 0,
      maxSec: 0,
      maxNsec: 0,
      fMinSec: 0,
      fMinNsec: 0,
      fMaxSec: 0,
      fMaxNsec: 0,
      ifaces: new Map(),
      jobs: [],
      renamed: false,
      syncedMark: 0,
      syncing: null,
    };
    this.#cur = seg;
    const shb = shbSize({ userAppl: USER_APPL });
    this.#reserve(shb);
    this.#bufLen = writeShb(this.#buf, this.#bufLen, { userAppl: USER_APPL });
    seg.bytes = shb;
    return seg;
  }

  /**
   * Hands every buffered byte to the file (no fsync). When no background write of the
   * open segment is running (live capture at a modest rate, `writeBuffers: 1`, or after
   * `flushAsync()`), the tail is written synchronously and the segment is readable by
   * any pcapng reader up to its last block when this returns. When background writes
   * (full buffers) are running, readers cannot read past them until they finish anyway,
   * so the tail joins them in the background instead of blocking the caller: everything
   * is readable within milliseconds, `current()` reports the flushed part as it grows,
   * and `flushAsync()` resolves when all of it is there. No-op when halted; throws the
   * halt error when a synchronous write fails.
   */
  flush(): void {
    if (this.#halted !== null) return;
    const seg = this.#cur;
    if (seg === null) return;
    this.#submit(seg.jobs.some((j) => j.state === JobState.InFlight) && this.#tailAllowed() ? Submit.Tail : Submit.Sync);
  }

  /**
   * Resolves when everything appended so far is in the file (page cache, not fsynced):
   * the buffered tail is written (in the background when it may be) and every write in
   * flight has finished. After a write error it resolves once the halt is complete
   * (segment cut and sealed, alert raised); check `halted`.
   */
  async flushAsync(): Promise<void> {
    if (this.#halted === null) {
      try {
        this.#submit(this.#tailAllowed() ? Submit.Tail : Submit.Sync);
      } catch {
        // Halted: waited for below; close() reports it.
      }
    }
    await this.#allSettled();
    if (this.#halted !== null) await this.#idle();
  }

  #timedFlush(): void {
    if (this.#halted !== null || !this.#tailAllowed()) return; // with every buffer being written, data is moving anyway
    this.#submit(Submit.Tail);
  }

  /**
   * A tail write pins the current buffer until it completes; allowing one only while
   * fewer buffers than the pool holds are pinned keeps the buffers in use bounded (at
   * most one beyond the pool, see #reserve).
   */
  #tailAllowed(): boolean {
    return this.#bufCount > 1 && this.#pins.size < this.#bufCount;
  }

  /** A standard buffer that no write is using, or null when the pool is exhausted. */
  #spare(): Buffer | null {
    const b = this.#free.pop();
    if (b !== undefined) return b;
    if (this.#bufAllocated >= this.#bufCount) return null;
    this.#bufAllocated++;
    return Buffer.allocUnsafe(this.#bufSize);
  }

  /** Makes `b` the (empty) write buffer; the old one is recycled now, or when the writes reading from it finish. */
  #replaceBuf(b: Buffer): void {
    const old = this.#buf;
    this.#buf = b;
    this.#bufBase = 0;
    this.#bufLen = 0;
    if (!this.#pins.has(old)) this.#recycle(old);
  }

  /** Returns a buffer no write uses any more to the pool (or drops it: oversized, or beyond the pool size). */
  #recycle(b: Buffer): void {
    if (b.length !== this.#bufSize) return;
    if (this.#bufAllocated > this.#bufCount) {
      this.#bufAllocated--;
      return;
    }
    this.#free.push(b);
  }

  #pin(b: Buffer): void {
    this.#pins.set(b, (this.#pins.get(b) ?? 0) + 1);
  }

  #unpin(b: Buffer): void {
    const n = this.#pins.get(b)! - 1;
    if (n > 0) {
      this.#pins.set(b, n);
      return;
    }
    this.#pins.delete(b);
    if (b !== this.#buf) this.#recycle(b);
    else if (this.#bufBase === this.#bufLen) this.#bufBase = this.#bufLen = 0; // nothing pending: fill it from the start again
  }

  /**
   * Hands the bytes appended since the last submit, [#bufBase, #bufLen) of the write
   * buffer, to the open segment's file at their position:
   * - Full (the buffer cannot take the next block): in the background when a spare
   *   buffer is free, appending continuing in the spare; else synchronously.
   * - Tail (flush, timer, rotation): in the background from where the bytes lie;
   *   appending continues after them in the same buffer, which the write pins.
   * - Sync: synchronously.
   * A failed synchronous write halts the store and throws.
   */
  #submit(mode: Submit): void {
    const seg = this.#cur;
    if (seg === null || this.#bufLen === this.#bufBase) return;
    const job: WriteJob = {
      seg,
      buf: this.#buf,
      off: this.#bufBase,
      start: seg.submitted,
      len: this.#bufLen - this.#bufBase,
      written: 0,
      state: JobState.InFlight,
      err: null,
      packets: seg.packets,
      minSec: seg.minSec,
      minNsec: seg.minNsec,
      maxSec: seg.maxSec,
      maxNsec: seg.maxNsec,
      settled: RESOLVED,
      resolve: NOOP,
    };
    seg.submitted += job.len;
    seg.jobs.push(job);
    this.#bufBase = this.#bufLen;
    if (mode === Submit.Tail) {
      this.#startAsync(job);
      return;
    }
    if (mode === Submit.Full) {
      const spare = this.#spare();
      if (spare !== null) {
        this.#startAsync(job);
        this.#replaceBuf(spare);
        return;
      }
    }
    try {
      while (job.written < job.len) {
        const n = this.#write(seg.fd, job.buf, job.off + job.written, job.len - job.written, job.start + job.written);
        if (n <= 0) throw Object.assign(new Error('write made no progress'), { code: 'EIO' });
        job.written += n;
      }
      job.state = JobState.Done;
    } catch (e) {
      job.state = JobState.Failed;
      job.err = e;
      // The failed bytes stay in the buffer for the cut: the halted store appends nothing more.
      this.#fail(e, seg, seg.openPath);
      throw this.#reportHalt();
    }
    if (!this.#pins.has(this.#buf)) this.#bufBase = this.#bufLen = 0;
    this.#advance(seg);
  }

  #startAsync(job: WriteJob): void {
    job.settled = new Promise<void>((r) => (job.resolve = r));
    this.#inflight.add(job);
    this.#pin(job.buf);
    this.#issue(job);
  }

  /** Starts (or continues, after a short write) a background write. */
  #issue(job: WriteJob): void {
    try {
      this.#writeAsync(job.seg.fd, job.buf, job.off + job.written, job.len - job.written, job.start + job.written, (err, n) => this.#written(job, err, n));
    } catch (e) {
      process.nextTick(() => this.#written(job, e as NodeJS.ErrnoException, 0));
    }
  }

  #written(job: WriteJob, err: NodeJS.ErrnoException | null, n: number): void {
    if (err === null && n > 0) {
      job.written += n;
      if (job.written < job.len) {
        this.#issue(job);
        return;
      }
      job.state = JobState.Done;
    } else {
      job.state = JobState.Failed;
      job.err = err ?? Object.assign(new Error('write made no progress'), { code: 'EIO' });
    }
    this.#inflight.delete(job);
    if (job.state === JobState.Done) {
      this.#unpin(job.buf);
      this.#advance(job.seg);
    } else {
      // The buffer stays pinned: the cut reads the failed job's block lengths from it.
      this.#fail(job.err, job.seg, job.seg.openPath);
    }
    job.resolve();
  }

  /** Moves the segment's flushed mark over the finished writes at the head of its queue. */
  #advance(seg: OpenSegment): void {
    const jobs = seg.jobs;
    let last: WriteJob | null = null;
    while (jobs.length > 0 && jobs[0]!.state === JobState.Done) last = jobs.shift()!;
    if (last === null) return;
    seg.flushedBytes = last.start + last.len;
    seg.flushedPackets = last.packets;
    seg.fMinSec = last.minSec;
    seg.fMinNsec = last.minNsec;
    seg.fMaxSec = last.maxSec;
    seg.fMaxNsec = last.maxNsec;
    if (this.#writeBehind > 0 && seg.syncing === null && seg === this.#cur && seg.flushedBytes - seg.syncedMark >= this.#writeBehind) this.#syncBehind(seg);
  }

  /** Starts a background fdatasync of the open segment (see `writeBehindBytes`); a failure halts the store like a failed write. */
  #syncBehind(seg: OpenSegment): void {
    seg.syncedMark = seg.flushedBytes;
    const p = new Promise<void>((resolve) => {
      fs.fdatasync(seg.fd, (e) => {
        seg.syncing = null;
        this.#syncs.delete(p);
        resolve();
        if (e) this.#fail(e, seg, seg.openPath);
      });
    });
    seg.syncing = p;
    this.#syncs.add(p);
  }

  /** Waits until no background write (and, with `syncs`, no write-behind fdatasync) is in flight. */
  async #allSettled(syncs = false): Promise<void> {
    while (this.#inflight.size > 0 || (syncs && this.#syncs.size > 0)) {
      await Promise.all([...Array.from(this.#inflight, (j) => j.settled), ...(syncs ? this.#syncs : [])]);
    }
  }

  /** Waits until every write of `seg`, and its write-behind fdatasync, has settled. */
  async #segSettled(seg: OpenSegment): Promise<void> {
    for (;;) {
      const pending: Array<Promise<void>> = seg.jobs.filter((j) => j.state === JobState.InFlight).map((j) => j.settled);
      if (seg.syncing !== null) pending.push(seg.syncing);
      if (pending.length === 0) return;
      await Promise.all(pending);
    }
  }

  /** Waits until background seals (and a halt's cut-and-seal) are done. */
  async #idle(): Promise<void> {
    while (this.#working) await this.#worker;
  }

  /** Stops appending to the open segment and queues it for sealing. Throws the halt error if writing its tail fails. */
  #rotate(): void {
    const seg = this.#cur;
    if (seg === null) return;
    this.#submit(this.#tailAllowed() ? Submit.Tail : Submit.Full);
    this.#cur = null;
    this.#rotated.push(seg);
    this.#notifyRotate(seg);
    this.#kick();
  }

  #notifyRotate(seg: OpenSegment): void {
    if (!this.#opts.onRotate) return;
    const any = seg.packets > 0;
    const info: SegmentInfo = {
      id: seg.id,
      path: seg.openPath,
      format: 'pcapng',
      external: false,
      sealed: false,
      bytes: seg.bytes,
      packets: seg.packets,
      firstTsNs: any ? toNs(seg.minSec, seg.minNsec) : null,
      lastTsNs: any ? toNs(seg.maxSec, seg.maxNsec) : null,
    };
    try {
      this.#opts.onRotate(info);
    } catch (e) {
      this.#opts.log?.error({ segment: seg.id, err: (e as Error).message }, 'onRotate handler failed');
    }
  }

  /** Starts the background seal work unless it is running. */
  #kick(): void {
    if (this.#working) return;
    this.#working = true;
    this.#worker = this.#work();
  }

  /** Seals the rotated segments in batches, in order; after a failure, completes the halt. Never rejects. */
  async #work(): Promise<void> {
    try {
      for (;;) {
        if (this.#failure !== null) {
          await this.#allSettled(true); // the cut closes fds: nothing may still use them
          this.#finishHalt();
          return;
        }
        if (this.#rotated.length === 0) return;
        await this.#sealBatch(this.#rotated.slice(0, SEAL_BATCH));
      }
    } catch (e) {
      // Not an I/O error of a segment (those halt through #fail): a bug. Keep the process up; the segments are recovered at the next open.
      this.#opts.log?.error({ err: (e as Error).stack ?? String(e) }, 'background seal failed');
    } finally {
      this.#working = false;
    }
  }

  /**
   * The seal of the oldest rotated segments, off the packet path: once their writes have
   * settled, each segment is fsynced, closed and renamed `.pcapng.open` -> `.pcapng`, all
   * in parallel and beside their meta caches; one directory fsync makes the renames
   * durable; then `onSeal` and retention for each, in order. Every step is a round trip
   * through the thread pool that waits for the packet path's next turn of the event loop,
   * so a batch takes the same few turns as one segment and the seals keep up even when
   * small segments rotate fast.
   */
  async #sealBatch(batch: OpenSegment[]): Promise<void> {
    await Promise.all(batch.map((seg) => this.#segSettled(seg)));
    if (this.#failure !== null) return; // the halt seals them (with the cut, if writes failed)
    // The meta cache may exist before the seal: it is checked against the segment's size when read,
    // and rewritten by a halt's cut or by recovery. No fsync of its own: the directory fsync publishes it.
    const metas = batch.map((seg) =>
      writeMetaAsync(this.#metaPath(seg.id), sealedInfo(seg), false).catch((e: unknown) => {
        this.#opts.log?.warn({ segment: seg.id, err: (e as Error).message }, 'cannot write segment meta cache');
      }),
    );
    const steps = await Promise.allSettled(
      batch.map(async (seg) => {
        await fsyncFd(seg.fd);
        seg.fdClosed = true;
        await closeFd(seg.fd);
        await fsp.rename(seg.openPath, seg.finalPath);
        seg.renamed = true;
      }),
    );
    await Promise.all(metas);
    await this.#syncDir();
    for (const [i, r] of steps.entries()) {
      const seg = batch[i]!;
      if (r.status === 'rejected') {
        this.#fail(r.reason, seg, seg.openPath); // the halt seals this one and publishes the renamed ones after it
        return;
      }
      // Only now sealed for segments() and retention, so a segment is never deleted before its onSeal.
      this.#rotated.shift();
      this.#publishSeal(sealedInfo(seg));
    }
  }

  /** fsync of the segment directory through the fd kept open for it (one thread-pool round trip); errors ignored as in fsyncDir. */
  #syncDir(): Promise<void> {
    const fd = this.#dirFd;
    if (fd === null) return fsyncDirAsync(this.#segDir);
    return new Promise((resolve) => fs.fsync(fd, () => resolve()));
  }

  /**
   * Halts the store after a write, fsync, close, rename or create error: from now on
   * appends throw. The open segment stops taking appends (its buffered bytes are lost)
   * and joins the segments waiting for their seal; once every write in flight has
   * settled, #finishHalt cuts and seals them and raises the alert (at once when nothing
   * is in flight). Later errors (consequences of the first) are ignored.
   */
  #fail(e: unknown, seg: OpenSegment | null, file: string): void {
    if (this.#halted !== null) return;
    const full = isDiskFull(e);
    this.#failure = { e, file, segment: seg?.id ?? null };
    this.#halted = this.#haltError(e);
    this.#opts.log?.error({ code: this.#halted.code, file, err: (e as Error).message }, full ? 'disk full: capture halted' : 'store write failed: capture halted');
    const cur = this.#cur;
    if (cur !== null) {
      this.#cur = null;
      this.#bufLen = this.#bufBase; // the unsubmitted bytes are lost (their locations were handed out)
      this.#rotated.push(cur);
      this.#notifyRotate(cur);
    }
    if (this.#working) return; // the worker sees #failure after its current step
    if (this.#inflight.size === 0 && this.#syncs.size === 0) {
      this.#finishHalt();
    } else {
      this.#kick();
    }
  }

  #haltError(e: unknown): CamtapError {
    const f = this.#failure!;
    return isDiskFull(e)
      ? new CamtapError('CAMTAP_ERR_STORE_FULL', { dir: this.#segDir, bytes: this.#bytesOnDisk() }, { cause: e })
      : new CamtapError('CAMTAP_ERR_STORE_IO', { file: f.file, reason: (e as Error).message }, { cause: e });
  }

  /** The halt error, marked as delivered to a caller. */
  #reportHalt(): CamtapError {
    this.#haltReported = true;
    return this.#halted!;
  }

  /**
   * Completes a halt once no write is in flight. Walks the unsealed segments in order:
   * each is cut back to the end of its flushed run, or, in the one whose write failed, to
   * the last whole block before the first byte that is not in the file; it is re-read
   * for its true packet count and time range and sealed. Segments after a failed write
   * are removed, so what is kept is exactly a prefix of what was appended. Then the one
   * alert.
   */
  #finishHalt(): void {
    const f = this.#failure!;
    const full = isDiskFull(f.e);
    let gap = false;
    let segment = f.segment;
    let keptBytes: number | null = null;
    let lostBytes: number | null = 0;
    for (const seg of this.#rotated) {
      if (seg.renamed) {
        // Sealed whole by the batch the failure interrupted (fsynced, renamed): announce it.
        const info = sealedInfo(seg);
        this.#writeMetaQuiet(info);
        this.#publishSeal(info);
        continue;
      }
      if (gap) {
        this.#discard(seg);
        if (lostBytes !== null) lostBytes += seg.bytes;
        continue;
      }
      let cut = seg.flushedBytes;
      const head = seg.jobs[0];
      if (head !== undefined) {
        // After settling, the first job not in the flushed run is one that failed.
        cut = head.start + wholeBlocks(head, head.written);
        gap = true;
        segment = seg.id;
      }
      const kept = this.#sealAfterHalt(seg, cut);
      if (seg.id === segment) keptBytes = kept;
      lostBytes = kept === null || lostBytes === null ? null : lostBytes + seg.bytes - kept;
    }
    this.#rotated.length = 0;
    // Exact now that the cut is made (the error thrown before this estimated it).
    this.#halted = this.#haltError(f.e);
    const details = this.#halted.details as Record<string, unknown>;
    this.#alert({ kind: full ? 'disk-full' : 'io-error', message: this.#halted.message, details: { ...details, segment, keptBytes, lostBytes, errno: errno(f.e) ?? null } });
  }

  /** Closes and removes a segment that lies after a failed write. */
  #discard(seg: OpenSegment): void {
    this.#closeQuiet(seg);
    try {
      fs.rmSync(seg.openPath, { force: true });
      fs.rmSync(this.#metaPath(seg.id), { force: true });
    } catch (e) {
      this.#opts.log?.error({ file: seg.openPath, err: (e as Error).message }, 'cannot remove a segment written after a failed write; it is recovered at the next open');
    }
  }

  #closeQuiet(seg: OpenSegment): void {
    if (seg.fdClosed) return;
    seg.fdClosed = true;
    try {
      fs.closeSync(seg.fd);
    } catch {
      // Closed or not, the fd is released.
    }
  }

  /**
   * Cuts a segment to `cut` bytes and seals it, or removes it when not even its SHB made
   * it. Returns the bytes kept, or null when the cut failed (the segment is left for
   * recovery at the next open).
   */
  #sealAfterHalt(seg: OpenSegment, cut: number): number | null {
    try {
      if (seg.fdClosed) fs.truncateSync(seg.openPath, cut);
      else fs.ftruncateSync(seg.fd, cut);
    } catch (te) {
      this.#opts.log?.error({ file: seg.openPath, err: (te as Error).message }, 'cannot cut the segment back after a write error; it is recovered at the next open');
      this.#closeQuiet(seg);
      return null;
    }
    if (!seg.fdClosed) {
      try {
        fs.fsyncSync(seg.fd);
      } catch {
        // Best effort: the data is in the page cache and recovery handles a torn tail anyway.
      }
    }
    this.#closeQuiet(seg);
    if (cut === 0) {
      fs.rmSync(seg.openPath, { force: true });
      fs.rmSync(this.#metaPath(seg.id), { force: true });
      return 0;
    }
    try {
      const scan = scanSegment(seg.openPath);
      fs.renameSync(seg.openPath, seg.finalPath);
      fsyncDir(this.#segDir);
      const info: SegmentInfo = { id: seg.id, path: seg.finalPath, format: 'pcapng', external: false, sealed: true, bytes: scan.validBytes, packets: scan.packets, firstTsNs: scan.firstTsNs, lastTsNs: scan.lastTsNs };
      this.#sealed.set(info.id, info);
      this.#writeMetaQuiet(info);
      this.#publishSeal(info);
    } catch (e) {
      this.#opts.log?.error({ file: seg.openPath, err: (e as Error).message }, 'cannot seal the segment after a write error; it is recovered at the next open');
    }
    return cut;
  }

  /** Bytes of own segments in files: sealed, and the flushed part of the unsealed ones. */
  #bytesOnDisk(): number {
    let total = 0;
    for (const s of this.#sealed.values()) total += s.bytes;
    for (const s of this.#rotated) total += s.flushedBytes;
    if (this.#cur !== null) total += this.#cur.flushedBytes;
    return total;
  }

  /**
   * Seals the open segment: it stops taking appends (the next append starts a new one)
   * and the promise resolves once it, and every segment rotated before it, is fsynced,
   * renamed `<x>.pcapng.open` -> `<x>.pcapng` and announced through `onSeal`.
   * Resolves at once without an open segment. Rejects with the halt error when writing
   * its tail fails synchronously.
   */
  async seal(): Promise<void> {
    if (this.#halted === null && this.#cur !== null) this.#rotate();
    await this.#idle();
  }

  #publishSeal(info: SegmentInfo): void {
    this.#sealed.set(info.id, info);
    this.#opts.log?.info({ segment: info.id, bytes: info.bytes, packets: info.packets }, 'segment sealed');
    if (this.#opts.onSeal) {
      try {
        this.#opts.onSeal({ ...info });
      } catch (e) {
        this.#opts.log?.error({ segment: info.id, err: (e as Error).message }, 'onSeal handler failed');
      }
    }
    this.enforceRetention();
  }

  /**
   * Stops the flush timer, seals the open segment and waits for every background write
   * and seal. Rejects with the halt error when a write failed and no append, flush or
   * seal has thrown it yet (e.g. the last buffers of an import hit a full disk), so a
   * caller never takes an incomplete store for a complete one. Safe to call twice.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    if (this.#halted === null) {
      try {
        this.#rotate();
      } catch {
        // Halted: reported below once the halt is complete.
      }
    }
    await this.#allSettled(true);
    await this.#idle();
    if (this.#dirFd !== null) {
      const fd = this.#dirFd;
      this.#dirFd = null;
      fs.closeSync(fd);
    }
    if (this.#halted !== null && !this.#haltReported) throw this.#reportHalt();
  }

  /** Own and external segments, by id (unsealed ones included, at their flushed size). */
  segments(): SegmentInfo[] {
    const all: SegmentInfo[] = [];
    for (const s of this.#sealed.values()) all.push({ ...s });
    for (const x of this.#external.values()) all.push(externalInfo(x));
    for (const r of this.#rotated) all.push(flushedInfo(r));
    const cur = this.current();
    if (cur) all.push(cur);
    return all.sort((a, b) => a.id - b.id);
  }

  segment(id: number): SegmentInfo | undefined {
    const s = this.#sealed.get(id);
    if (s) return { ...s };
    const x = this.#external.get(id);
    if (x) return externalInfo(x);
    const r = this.#rotated.find((x) => x.id === id);
    if (r) return flushedInfo(r);
    const cur = this.current();
    return cur && cur.id === id ? cur : undefined;
  }

  /** The open (unsealed) segment with what is flushed of it: size, packets, time range. */
  current(): SegmentInfo | null {
    const seg = this.#cur;
    return seg === null ? null : flushedInfo(seg);
  }

  /**
   * Registers a capture file indexed where it lies (`import --in-place`) and persists the
   * registry (`external.json`, atomic write). The same path (after resolving) gets the
   * same id; registering it again updates its size and, when given, its packet stats.
   */
  addExternal(file: string, format: 'pcap' | 'pcapng', bytes: number, stats?: { packets: number; firstTsNs: bigint | null; lastTsNs: bigint | null }): SegmentInfo {
    if (!this.#opened) throw new Error('SegmentStore.open() has not been called');
    const abs = path.resolve(file);
    let entry = [...this.#external.values()].find((x) => x.path === abs);
    if (entry) {
      entry.format = format;
      entry.bytes = bytes;
      if (stats) Object.assign(entry, stats);
    } else {
      entry = { id: this.#allocId(), path: abs, format, bytes, packets: stats?.packets ?? 0, firstTsNs: stats?.firstTsNs ?? null, lastTsNs: stats?.lastTsNs ?? null };
      this.#external.set(entry.id, entry);
    }
    writeExternal(this.#externalFile, [...this.#external.values()].sort((a, b) => a.id - b.id));
    return externalInfo(entry);
  }

  /**
   * Deletes camtap's own sealed segments until the store is within `retentionBytes` and
   * no segment's latest packet is older than `retentionSeconds` (see retention.ts for
   * the order). Called after each seal. Raises a `retention` alert when a deletion fails
   * or the budget cannot be met (only unsealed segments are left).
   */
  enforceRetention(nowMs: number = Date.now()): SegmentInfo[] {
    if (this.#retentionBytes === null && this.#retentionSeconds === null) return [];
    const victims = selectForRetention([...this.#sealed.values()], this.totalBytes(), {
      retentionBytes: this.#retentionBytes,
      retentionSeconds: this.#retentionSeconds,
      nowMs,
    });
    const deleted: SegmentInfo[] = [];
    for (const v of victims) {
      try {
        fs.rmSync(v.path, { force: true });
      } catch (e) {
        this.#alert({ kind: 'retention', message: `cannot delete ${v.path}: ${(e as Error).message}`, details: { segment: v.id, file: v.path } });
        continue;
      }
      fs.rmSync(this.#metaPath(v.id), { force: true });
      this.#sealed.delete(v.id);
      deleted.push({ ...v });
      this.#opts.log?.info({ segment: v.id, bytes: v.bytes }, 'retention deleted segment');
      if (this.#opts.onDelete) {
        try {
          this.#opts.onDelete({ ...v });
        } catch (e) {
          this.#opts.log?.error({ segment: v.id, err: (e as Error).message }, 'onDelete handler failed');
        }
      }
    }
    const total = this.totalBytes();
    if (this.#retentionBytes !== null && total > this.#retentionBytes) {
      this.#alert({
        kind: 'retention',
        message: `store uses ${total} bytes, over the ${this.#retentionBytes}-byte retention budget after deleting what it could`,
        details: { bytes: total, retentionBytes: this.#retentionBytes },
      });
    }
    return deleted;
  }

  /** Bytes of own segments on disk (sealed + the flushed part of unsealed ones). */
  totalBytes(): number {
    return this.#bytesOnDisk();
  }

  #alert(a: StoreAlert): void {
    if (!this.#opts.onAlert) return;
    try {
      this.#opts.onAlert(a);
    } catch (e) {
      this.#opts.log?.error({ err: (e as Error).message }, 'onAlert handler failed');
    }
  }
}

/** A segment whose writes all succeeded, as sealed. */
function sealedInfo(seg: OpenSegment): SegmentInfo {
  const any = seg.packets > 0;
  return {
    id: seg.id,
    path: seg.finalPath,
    format: 'pcapng',
    external: false,
    sealed: true,
    bytes: seg.bytes,
    packets: seg.packets,
    firstTsNs: any ? toNs(seg.minSec, seg.minNsec) : null,
    lastTsNs: any ? toNs(seg.maxSec, seg.maxNsec) : null,
  };
}

/** An unsealed segment as readers may see it: its flushed run. */
function flushedInfo(seg: OpenSegment): SegmentInfo {
  const any = seg.flushedPackets > 0;
  return {
    id: seg.id,
    path: seg.renamed ? seg.finalPath : seg.openPath,
    format: 'pcapng',
    external: false,
    sealed: false,
    bytes: seg.flushedBytes,
    packets: seg.flushedPackets,
    firstTsNs: any ? toNs(seg.fMinSec, seg.fMinNsec) : null,
    lastTsNs: any ? toNs(seg.fMaxSec, seg.fMaxNsec) : null,
  };
}

function externalInfo(x: ExternalEntry): SegmentInfo {
  return { id: x.id, path: x.path, format: x.format, external: true, sealed: true, bytes: x.bytes, packets: x.packets, firstTsNs: x.firstTsNs, lastTsNs: x.lastTsNs };
}
