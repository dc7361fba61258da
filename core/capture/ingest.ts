/**
 * Ingest: drives frames from taps and capture files through store -> pipeline -> catalog.
 *
 * Copy mode: every frame is appended to camtap's own pcapng segments and indexed there.
 * In-place mode (`import --in-place`): the capture file itself is registered as an
 * external segment and indexed where it lies (a hardware tap's network storage), so
 * locations are (that segment, the record's offset in the file).
 *
 * The packet path is synchronous; catalog writes are queued on one promise chain from
 * snapshots taken synchronously, so they never interleave and never block capture.
 */
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import type { StoreLocation, TapFrame } from '../contracts/frame.js';
import type { Logger } from '../contracts/logger.js';
import type { SegmentRecord } from '../contracts/records.js';
import type { Catalog } from '../catalog/catalog.js';
import type { SegmentInfo, SegmentStore } from '../store/segment-store.js';
import { CaptureParser, type CaptureRecord, type CaptureFormat } from '../wire/capture-file.js';
import { CamtapError } from '../errors.js';
import type { CapturePipeline } from './pipeline.js';
import { open as fsOpen } from 'node:fs/promises';

const CAPTURE_EXT = /\.(pcap|pcapng|cap|dmp|pcap\d+)(\.\d+)?$/i;

/** Files of a list of files and folders (folders walked recursively for capture names), sorted. */
export function expandCapturePaths(paths: string[]): string[] {
  const out: string[] = [];
  const walk = (p: string) => {
    let st;
    try {
      st = statSync(p);
    } catch (e) {
      throw new CamtapError('CAMTAP_ERR_CAPTURE_OPEN', { file: p, reason: (e as NodeJS.ErrnoException).code ?? (e as Error).message });
    }
    if (st.isDirectory()) {
      for (const n of readdirSync(p).sort()) {
        const q = path.join(p, n);
        if (statSync(q).isDirectory() || CAPTURE_EXT.test(n)) walk(q);
      }
    } else out.push(path.resolve(p));
  };
  for (const p of paths) walk(p);
  return out;
}

export interface FileResult {
  file: string;
  format: CaptureFormat | null;
  records: number;
  bytes: number;
  segment: number | null;
  errors: CamtapError[];
}

export interface IngestFileOptions {
  tapId: number;
  tapName: string;
  /** Index the file where it lies instead of copying it into the store. */
  inPlace: boolean;
  /** Reindex: the file is this existing segment (own or external); frames keep the tap their interface names. */
  segment?: SegmentInfo;
  tapIdOf?: (interfaceName: string | null) => number;
  signal?: AbortSignal;
  onChunk?: (bytesRead: number, records: number) => void;
}

function segmentRecord(seg: SegmentInfo, ids: string[]): SegmentRecord {
  return {
    id: seg.id,
    path: seg.path,
    format: seg.format,
    external: seg.external,
    sealed: seg.sealed,
    bytes: seg.bytes,
    packets: seg.packets,
    startNs: (seg.firstTsNs ?? 0n).toString(),
    endNs: (seg.lastTsNs ?? 0n).toString(),
    streams: ids,
  };
}

export interface IngestDeps {
  log: Logger;
  store: SegmentStore;
  catalog: Catalog;
  pipeline: CapturePipeline;
}

export interface Progress {
  file: string;
  fileIndex: number;
  files: number;
  bytesDone: number;
  bytesTotal: number;
  packets: number;
}

/**
 * One capture file indexed where it lies: registered as an external segment on its first
 * record, each record located at (that segment, its offset in the file), and on done()
 * its index written and its stats registered. Used by `import --in-place` and by file taps.
 */
export class InPlaceFile {
  readonly #d: IngestDeps;
  readonly #queue: (seg: SegmentInfo, ids: string[]) => void;
  readonly file: string;
  #seg: SegmentInfo | null = null;
  readonly #loc: StoreLocation = { segment: -1, offset: 0 };
  #packets = 0;
  #first: bigint | null = null;
  #lastSec = 0;
  #lastNsec = 0;

  constructor(deps: IngestDeps, file: string, queue: (seg: SegmentInfo, ids: string[]) => void) {
    this.#d = deps;
    this.file = file;
    this.#queue = queue;
  }

  get segment(): number | null {
    return this.#seg?.id ?? null;
  }

  readonly sink = (r: CaptureRecord): void => {
    if (this.#seg === null) {
      this.#seg = this.#d.store.addExternal(this.file, 'pcap', 0);
      this.#loc.segment = this.#seg.id;
      this.#first = BigInt(r.tsSec) * 1_000_000_000n + BigInt(r.tsNsec);
    }
    this.#packets++;
    this.#lastSec = r.tsSec;
    this.#lastNsec = r.tsNsec;
    this.#loc.offset = r.fileOffset;
    this.#d.pipeline.process(r, this.#loc);
  };

  /** The file is read: write its index, register its format, size and packet stats. */
  done(format: CaptureFormat, bytes: number): void {
    if (this.#seg === null) return;
    const ids = this.#d.pipeline.sealSegment(this.#seg.id);
    const lastTsNs = BigInt(this.#lastSec) * 1_000_000_000n + BigInt(this.#lastNsec);
    this.#queue(this.#d.store.addExternal(this.file, format, bytes, { packets: this.#packets, firstTsNs: this.#first, lastTsNs }), ids);
  }
}

export class Ingest {
  readonly #d: IngestDeps;
  #chain: Promise<void> = Promise.resolve();
  #chainError: unknown = null;
  #inFlight = false;
  #due = false;
  #lastCheckpoint = 0;

  constructor(deps: IngestDeps) {
    this.#d = deps;
  }

  /** The sink a live tap feeds in copy mode. */
  readonly sink = (frame: TapFrame): void => {
    const loc = this.#d.store.append(frame);
    this.#d.pipeline.process(frame, loc);
  };

  /** Called by the store when it seals one of its segments. */
  onSeal(seg: SegmentInfo): void {
    // The store may seal a segment from inside append(), before the pipeline has indexed
    // the packet that append stored: the index is written once the current synchronous
    // batch is done, so no packet of the segment is left out of (or re-opens) its index.
    const info = { ...seg, sealed: true };
    queueMicrotask(() => {
      const ids = this.#d.pipeline.sealSegment(info.id);
      this.#queueSegment(info, ids);
    });
  }

  #queueSegment(seg: SegmentInfo, ids: string[]): void {
    const rec = segmentRecord(seg, ids);
    this.#enqueue(() => this.#d.catalog.putSegments([rec]));
  }

  #enqueue(fn: () => Promise<void>): void {
    this.#chain = this.#chain.then(fn).catch((e) => {
      this.#chainError ??= e;
      this.#d.log.error({ err: (e as Error).message }, 'catalog write failed');
    });
  }

  /** Indexes one capture file in place (see InPlaceFile). */
  inPlaceFile(file: string): InPlaceFile {
    return new InPlaceFile(this.#d, file, (seg, ids) => this.#queueSegment(seg, ids));
  }

  /**
   * Queues a catalog write of everything that changed since the last checkpoint. At most
   * one checkpoint is in flight: while one is being written, further calls only mark
   * that another is due, so a fast import never builds a backlog of snapshots (memory
   * would grow with the file) and the catalog costs the same per second, not per packet.
   */
  checkpoint(): void {
    if (this.#inFlight) {
      this.#due = true;
      return;
    }
    this.#inFlight = true;
    const snap = this.#d.pipeline.snapshot(true);
    // The open segment (and rotated ones not sealed yet) in the catalog, so a replay or
    // export of what was captured seconds ago finds it; its seal overwrites the record
    // later in this same queue.
    const cur = this.#d.store.current();
    const open = cur !== null && cur.firstTsNs !== null ? [cur] : [];
    const c = this.#d.catalog;
    this.#enqueue(async () => {
      try {
        for (const seg of open) await c.putSegments([segmentRecord(seg, [])]);
        if (snap.streams.length) await c.putStreams(snap.streams);
        if (snap.sessions.length) await c.putSessions(snap.sessions.map((s) => structuredClone(s)));
        if (snap.transactions.length) await c.putTransactions(snap.transactions);
        if (snap.cameras.length) await c.putCameras(snap.cameras);
        if (snap.vms.length) await c.putVms(snap.vms);
      } finally {
        this.#inFlight = false;
        if (this.#due) {
          this.#due = false;
          this.checkpoint();
        }
      }
    });
  }

  /** A checkpoint at most every `ms` of wall time (for the per-chunk path of imports). */
  maybeCheckpoint(ms = 1000): void {
    const now = Date.now();
    if (now - this.#lastCheckpoint < ms) return;
    this.#lastCheckpoint = now;
    this.checkpoint();
  }

  /** Waits for queued catalog writes; rethrows the first failure. */
  async drain(): Promise<void> {
    // A finishing checkpoint may queue the one that was due: wait until nothing is left.
    for (;;) {
      const chain = this.#chain;
      await chain;
      if (chain === this.#chain && !this.#inFlight && !this.#due) break;
    }
    if (this.#chainError) {
      const e = this.#chainError;
      this.#chainError = null;
      throw e;
    }
  }

  /**
   * Reads one capture file through the pipeline. Bad records do not stop the read: the
   * parser resyncs and every error (naming file and offset) is returned; every good
   * packet before and after is kept.
   */
  async ingestFile(file: string, opts: IngestFileOptions): Promise<FileResult> {
    const { store, pipeline } = this.#d;
    let fh;
    try {
      fh = await fsOpen(file, 'r');
    } catch (e) {
      throw new CamtapError('CAMTAP_ERR_CAPTURE_OPEN', { file, reason: (e as NodeJS.ErrnoException).code ?? (e as Error).message });
    }
    const size = (await fh.stat()).size;
    const parser = new CaptureParser({ file, tapId: opts.tapId, resync: true });
    const seg: SegmentInfo | null = opts.segment ?? null;
    const loc: StoreLocation = { segment: seg ? seg.id : -1, offset: 0 };
    const inPlace = !seg && opts.inPlace ? this.inPlaceFile(file) : null;
    let onRecord: (r: CaptureRecord) => void;
    if (seg && opts.tapIdOf) {
      const tapOf = opts.tapIdOf;
      const tapByIface: number[] = [];
      onRecord = (r) => {
        let t = tapByIface[r.interfaceId];
        if (t === undefined) t = tapByIface[r.interfaceId] = tapOf(parser.interfaces[r.interfaceId]?.name ?? null);
        r.tapId = t;
        loc.offset = r.fileOffset;
        pipeline.process(r, loc);
      };
    } else if (inPlace) {
      onRecord = inPlace.sink;
    } else {
      onRecord = (r) => pipeline.process(r, store.append(r, opts.tapName));
    }
    // Two buffers: the next chunk is read (in libuv's thread pool) while this one is
    // parsed, so disk/page-cache copies overlap the packet work.
    const CHUNK = 4 << 20;
    const bufs = [Buffer.allocUnsafe(CHUNK), Buffer.allocUnsafe(CHUNK)];
    let pos = 0;
    let fatal: CamtapError | null = null;
    const readAt = (i: number, at: number) => fh.read(bufs[i]!, 0, CHUNK, at);
    try {
      let which = 0;
      let pending = readAt(0, 0);
      for (;;) {
        if (opts.signal?.aborted) throw new CamtapError('CAMTAP_ERR_INTERRUPTED', { reason: `import of ${file} stopped at offset ${parser.offset}` });
        const { bytesRead } = await pending;
        if (bytesRead === 0) break;
        const chunk = bufs[which]!;
        pos += bytesRead;
        which ^= 1;
        pending = readAt(which, pos);
        // The parser's views into `chunk` are used synchronously only (it copies a record
        // that straddles two chunks), so the buffer is free again after push().
        parser.push(chunk.subarray(0, bytesRead), onRecord);
        opts.onChunk?.(pos, parser.records);
        if (!opts.inPlace) store.flush();
        this.maybeCheckpoint();
      }
      await pending.catch(() => undefined);
      parser.end();
    } catch (e) {
      if (e instanceof CamtapError && e.code !== 'CAMTAP_ERR_INTERRUPTED') fatal = e;
      else throw e;
    } finally {
      await fh.close();
    }
    const errors = [...parser.errors];
    if (fatal && !errors.includes(fatal)) errors.push(fatal);
    if (seg) this.#queueSegment(seg, pipeline.sealSegment(seg.id));
    else if (inPlace && parser.format) inPlace.done(parser.format, size);
    return { file, format: parser.format, records: parser.records, bytes: size, segment: seg?.id ?? inPlace?.segment ?? null, errors };
  }
}
