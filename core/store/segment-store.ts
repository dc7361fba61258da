/**
 * The packet store: every frame a tap delivers is appended raw to a pcapng segment
 * (Stenographer-style big sequential writes, files rotated by size and capture time and
 * published by rename). `append` is synchronous and returns where the packet lies at
 * once, because the writer tracks its own position; the bytes reach the file in batches.
 *
 * On disk (`<dataDir>/segments/`):
 * - `seg-00000007.pcapng.open`  the segment being written; readable up to the last flush
 * - `seg-00000007.pcapng`       sealed: fsynced, then renamed (so a sealed name is always whole)
 * - `seg-00000007.meta.json`    packets and time range, cached at seal (derivable from the pcapng)
 * - `next-id`                   lowest id never handed out (ids are never reused in a data dir)
 * and `<dataDir>/external.json`, the captures indexed where they lie (`import --in-place`).
 */
import * as fs from 'node:fs';
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
  readExternal,
  readMeta,
  readNextId,
  segmentBase,
  writeExternal,
  writeMeta,
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
  /** Appends are copied into a buffer of this size, written with one write when full or on flush(). Default 4 MiB. */
  writeBufferBytes?: number;
  /** The buffer is also written out this often so live data is readable within about this long; 0 = only when full/flush(). Default 1000. */
  flushIntervalMs?: number;
  /** IDB snap length; 0 = no limit (pcapng §4.2). Default 0. */
  snapLen?: number;
  log?: StoreLog;
  /** Called synchronously after a segment is sealed (fsynced, renamed to its final name). */
  onSeal?: (seg: SegmentInfo) => void;
  /** Retention removed it (the callback removes what belongs to it elsewhere, e.g. index sidecars). */
  onDelete?: (seg: SegmentInfo) => void;
  onAlert?: (a: StoreAlert) => void;
  /** Test seam for write failures that cannot be provoked for real (EIO); disk full is tested on a real tmpfs. */
  writeSync?: (fd: number, buffer: Buffer, offset: number, length: number, position: number) => number;
}

/** The open segment's writer state. Times are kept as (sec, nsec) numbers so the packet path does no BigInt work. */
interface OpenSegment {
  id: number;
  openPath: string;
  finalPath: string;
  fd: number;
  /** Logical size: flushed + buffered. */
  bytes: number;
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
}

const MiB = 1024 * 1024;
const USER_APPL = 'camtap';

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

  #buf: Buffer;
  #bufLen = 0;
  #cur: OpenSegment | null = null;
  readonly #sealed = new Map<number, SegmentInfo>();
  readonly #external = new Map<number, ExternalEntry>();
  readonly #tapNames = new Map<number, string>();
  #nextId = 1;
  #opened = false;
  #closed = false;
  #halted: CamtapError | null = null;
  #timer: NodeJS.Timeout | null = null;

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
    this.#buf = Buffer.allocUnsafe(Math.max(4096, opts.writeBufferBytes ?? 4 * MiB));
    this.#write = opts.writeSync ?? ((fd, b, o, l, p) => fs.writeSync(fd, b, o, l, p));
  }

  /** True after a disk-full or I/O error: every later append throws without writing. */
  get halted(): boolean {
    return this.#halted !== null;
  }

  /**
   * Loads the store. An unsealed segment left by a crash (`<name>.pcapng.open`) has its
   * torn tail cut at the last complete block, then it is sealed; one with not even a
   * complete section header is removed. Recovered segments are reported in the result,
   * not through `onSeal` (their index writers died with the crashed process: the caller
   * reindexes them). Sealed segments' info comes from their meta cache, or from walking
   * the pcapng when the cache is missing or stale.
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
   * is named `tapName` and described `camtap tap <tapId>`), and seals and rotates first
   * when this packet would take the segment past `maxSegmentBytes` or past
   * `maxSegmentSeconds` of capture time.
   *
   * On ENOSPC it throws CAMTAP_ERR_STORE_FULL once, raises one `disk-full` alert, cuts a
   * partially written batch back to its last whole block and seals the segment;
   * afterwards `halted` is true and every append throws the same code without writing.
   * Packets still in the buffer at that moment are lost (their locations were already
   * returned); every block on disk before them stays readable.
   */
  append(frame: TapFrame, tapName?: string): StoreLocation {
    if (this.#halted !== null) throw new CamtapError(this.#halted.code, this.#halted.details);
    if (!this.#opened || this.#closed) throw new Error(this.#closed ? 'SegmentStore is closed' : 'SegmentStore.open() has not been called');
    if (tapName !== undefined && this.#tapNames.get(frame.tapId) !== tapName) this.#tapNames.set(frame.tapId, tapName);

    const key = frame.tapId * 65536 + frame.linkType;
    const epb = epbSize(frame.capLen);
    let seg = this.#cur;
    if (seg !== null && seg.packets > 0) {
      const need = seg.ifaces.has(key) ? epb : epb + this.#idbBytes(frame.tapId);
      if (seg.bytes + need > this.#maxBytes || this.#spanWith(seg, frame.tsSec, frame.tsNsec) > this.#maxSpanNs) {
        this.seal();
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

  /** Makes room for n bytes in the write buffer (flushing; growing it once for a block larger than the buffer). */
  #reserve(n: number): void {
    if (this.#bufLen + n <= this.#buf.length) return;
    this.#flushBuffer();
    if (n > this.#buf.length) this.#buf = Buffer.allocUnsafe(n);
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
      throw this.#halt(e, file, null);
    }
    const seg: OpenSegment = {
      id,
      openPath: file,
      finalPath: file.slice(0, -OPEN_SUFFIX.length),
      fd,
      bytes: 0,
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
    };
    this.#cur = seg;
    const shb = shbSize({ userAppl: USER_APPL });
    this.#reserve(shb);
    this.#bufLen = writeShb(this.#buf, this.#bufLen, { userAppl: USER_APPL });
    seg.bytes = shb;
    return seg;
  }

  /**
   * Writes the buffer out (no fsync). Afterwards the open segment is readable by any
   * pcapng reader up to its last block. No-op when halted.
   */
  flush(): void {
    if (this.#halted !== null) return;
    this.#flushBuffer();
  }

  #timedFlush(): void {
    try {
      this.flush();
    } catch {
      // Already alerted and halted by #halt; the next append reports it to the pipeline.
    }
  }

  #flushBuffer(): void {
    const seg = this.#cur;
    if (seg === null || this.#bufLen === 0) return;
    let written = 0;
    try {
      while (written < this.#bufLen) {
        written += this.#write(seg.fd, this.#buf, written, this.#bufLen - written, seg.flushedBytes + written);
      }
    } catch (e) {
      throw this.#halt(e, seg.openPath, written);
    }
    seg.flushedBytes += this.#bufLen;
    this.#bufLen = 0;
    seg.flushedPackets = seg.packets;
    seg.fMinSec = seg.minSec;
    seg.fMinNsec = seg.minNsec;
    seg.fMaxSec = seg.maxSec;
    seg.fMaxNsec = seg.maxNsec;
  }

  /**
   * Stops the store after a write error. The open segment is cut back to the last whole
   * block of the batch that was being written (`written` bytes of it reached the file),
   * re-read to get its true packet count and time range, and sealed; then the error is
   * alerted once and returned for the caller to throw.
   */
  #halt(e: unknown, file: string, written: number | null): CamtapError {
    const full = isDiskFull(e);
    const seg = this.#cur;
    let kept: number | null = null;
    const logical = seg === null ? 0 : seg.flushedBytes + this.#bufLen;
    if (seg !== null) {
      try {
        let cut = seg.flushedBytes;
        if (written !== null) {
          // Blocks in the buffer are whole and back to back: walk their lengths.
          let p = 0;
          while (p + 8 <= this.#bufLen) {
            const len = this.#buf.readUInt32LE(p + 4);
            if (p + len > written) break;
            p += len;
          }
          cut += p;
        }
        fs.ftruncateSync(seg.fd, cut);
        this.#bufLen = 0;
        kept = cut;
      } catch (te) {
        this.#opts.log?.error({ file: seg.openPath, err: (te as Error).message }, 'cannot cut the segment back after a write error; it is recovered at the next open');
        this.#cur = null;
        this.#bufLen = 0;
        try {
          fs.closeSync(seg.fd);
        } catch {
          // already closed (seal got that far)
        }
      }
    }
    const details = full ? { dir: this.#segDir, bytes: this.#bytesOnDisk(seg, kept) } : { file, reason: (e as Error).message };
    const err = new CamtapError(full ? 'CAMTAP_ERR_STORE_FULL' : 'CAMTAP_ERR_STORE_IO', details, { cause: e });
    this.#halted = err;
    if (seg !== null && kept !== null) this.#sealAfterHalt(seg, kept);
    this.#opts.log?.error({ code: err.code, file, err: (e as Error).message }, full ? 'disk full: capture halted' : 'store write failed: capture halted');
    // lostBytes: blocks that were buffered or torn and are not in the file (their locations were already handed out).
    const lostBytes = seg !== null && kept !== null ? logical - kept : null;
    this.#alert({ kind: full ? 'disk-full' : 'io-error', message: err.message, details: { ...details, segment: seg?.id ?? null, keptBytes: kept, lostBytes, errno: errno(e) ?? null } });
    return err;
  }

  /** Bytes of own segments on disk, counting the open one at `kept` bytes. */
  #bytesOnDisk(seg: OpenSegment | null, kept: number | null): number {
    let total = 0;
    for (const s of this.#sealed.values()) total += s.bytes;
    if (seg !== null) total += kept ?? seg.flushedBytes;
    return total;
  }

  /** Seals what is left of the segment after a halt, or removes it when not even its SHB made it. */
  #sealAfterHalt(seg: OpenSegment, kept: number): void {
    this.#cur = null;
    try {
      fs.fsyncSync(seg.fd);
    } catch {
      // Best effort: the data is in the page cache and recovery handles a torn tail anyway.
    }
    fs.closeSync(seg.fd);
    if (kept === 0) {
      fs.rmSync(seg.openPath, { force: true });
      return;
    }
    try {
      const scan = scanSegment(seg.openPath);
      fs.renameSync(seg.openPath, seg.finalPath);
      fsyncDir(this.#segDir);
      this.#finishSeal({ id: seg.id, path: seg.finalPath, format: 'pcapng', external: false, sealed: true, bytes: scan.validBytes, packets: scan.packets, firstTsNs: scan.firstTsNs, lastTsNs: scan.lastTsNs });
    } catch (e) {
      this.#opts.log?.error({ file: seg.openPath, err: (e as Error).message }, 'cannot seal the segment after a write error; it is recovered at the next open');
    }
  }

  /**
   * Seals the open segment: flush, fsync, rename `<x>.pcapng.open` -> `<x>.pcapng`, then
   * `onSeal` and retention. No-op without an open segment.
   */
  seal(): void {
    const seg = this.#cur;
    if (seg === null) return;
    this.#flushBuffer();
    try {
      fs.fsyncSync(seg.fd);
      fs.closeSync(seg.fd);
      fs.renameSync(seg.openPath, seg.finalPath);
    } catch (e) {
      throw this.#halt(e, seg.openPath, null);
    }
    this.#cur = null;
    fsyncDir(this.#segDir);
    this.#finishSeal({
      id: seg.id,
      path: seg.finalPath,
      format: 'pcapng',
      external: false,
      sealed: true,
      bytes: seg.bytes,
      packets: seg.packets,
      firstTsNs: seg.packets > 0 ? toNs(seg.minSec, seg.minNsec) : null,
      lastTsNs: seg.packets > 0 ? toNs(seg.maxSec, seg.maxNsec) : null,
    });
  }

  #finishSeal(info: SegmentInfo): void {
    this.#sealed.set(info.id, info);
    this.#writeMetaQuiet(info);
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

  /** Seals the open segment and stops the flush timer. Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    if (this.#halted === null) this.seal();
  }

  /** Own and external segments, by id (the open one included, at its flushed size). */
  segments(): SegmentInfo[] {
    const all: SegmentInfo[] = [];
    for (const s of this.#sealed.values()) all.push({ ...s });
    for (const x of this.#external.values()) all.push(externalInfo(x));
    const cur = this.current();
    if (cur) all.push(cur);
    return all.sort((a, b) => a.id - b.id);
  }

  segment(id: number): SegmentInfo | undefined {
    const s = this.#sealed.get(id);
    if (s) return { ...s };
    const x = this.#external.get(id);
    if (x) return externalInfo(x);
    const cur = this.current();
    return cur && cur.id === id ? cur : undefined;
  }

  /** The open (unsealed) segment with what is flushed of it: size, packets, time range. */
  current(): SegmentInfo | null {
    const seg = this.#cur;
    if (seg === null) return null;
    const any = seg.flushedPackets > 0;
    return {
      id: seg.id,
      path: seg.openPath,
      format: 'pcapng',
      external: false,
      sealed: false,
      bytes: seg.flushedBytes,
      packets: seg.flushedPackets,
      firstTsNs: any ? toNs(seg.fMinSec, seg.fMinNsec) : null,
      lastTsNs: any ? toNs(seg.fMaxSec, seg.fMaxNsec) : null,
    };
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
   * or the budget cannot be met (only the open segment is left).
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

  /** Bytes of own segments on disk (sealed + the open one's flushed part). */
  totalBytes(): number {
    return this.#bytesOnDisk(this.#cur, null);
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

function externalInfo(x: ExternalEntry): SegmentInfo {
  return { id: x.id, path: x.path, format: x.format, external: true, sealed: true, bytes: x.bytes, packets: x.packets, firstTsNs: x.firstTsNs, lastTsNs: x.lastTsNs };
}
