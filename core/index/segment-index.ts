/**
 * Second-level metadata persisted per segment: for every RTP stream with packets in a
 * segment, a sparse position table (every keyframe-start packet and every Nth packet)
 * and a summary. A query reads the small summaries to skip whole segments by time and
 * stream, then one stream's table to find the nearest preceding keyframe, then reads the
 * segment sequentially from that offset. Everything here is derivable from the segment
 * (camtap reindex), so a corrupt sidecar is an error to report, never data lost.
 *
 * Files in the index dir (normally `<dataDir>/index/`), both written atomically:
 * - `seg-00000001.idx`           binary, layout below
 * - `seg-00000001.summary.json`  time range, packets, streams present with their summaries
 *
 * `.idx` layout (little-endian):
 * ```
 * header (24 bytes)
 *   0  char[4] magic "CTIX"
 *   4  u16     version (1)
 *   6  u16     header size (24)
 *   8  u32     segment id
 *  12  u32     stream count
 *  16  u32     sampling interval N (at most N packets from one entry to the next)
 *  20  u32     reserved (0)
 * stream table, per stream
 *      u16     id length L, then L bytes UTF-8 stream id, zero-padded to a multiple of 4 (2 + L + pad)
 *      u32     entry count
 *      u32     keyframes (keyframe-start packets seen)
 *      f64     packets
 *      u32 u32 earliest ts ns (high, low)
 *      u32 u32 latest ts ns (high, low)
 *      f64     min ext seq, max ext seq, first ext seq, last ext seq
 * entry arrays, one per stream in table order, 20 bytes per entry
 *      u32 u32 ts ns (high, low)   exact 64-bit ns, no float rounding
 *      f64     byte offset of the packet's block in the segment file (external files may pass 4 GiB)
 *      u32     bit 31: keyframe start; bits 0-30: extended seq minus the stream's min ext seq
 *              (a segment holds far fewer than 2^31 packets of one stream)
 * trailer
 *      u32     CRC-32 (IEEE) of every byte before it
 * ```
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CamtapError } from '../errors.js';

export interface IndexEntry {
  tsNs: bigint;
  extSeq: number;
  offset: number;
  keyframe: boolean;
}

export interface StreamSummary {
  streamId: string;
  packets: number;
  /** Earliest and latest capture time of the stream's packets in this segment. */
  firstTsNs: bigint;
  lastTsNs: bigint;
  minExtSeq: number;
  maxExtSeq: number;
  /** Extended seq of the first and last packet in capture order. */
  firstExtSeq: number;
  lastExtSeq: number;
  keyframes: number;
  /** Entries kept in the position table. */
  entries: number;
}

export interface SegmentSummary {
  segment: number;
  packets: number;
  firstTsNs: bigint | null;
  lastTsNs: bigint | null;
  streams: StreamSummary[];
}

const MAGIC = 0x58495443; // "CTIX" read as u32 LE
const VERSION = 1;
const HEADER = 24;
const STREAM_FIXED = 4 + 4 + 8 + 16 + 32; // after the id
const ENTRY = 20;
const FLAG_KEYFRAME = 1;
const KEY_BIT = 0x80000000;
const SEQ_MASK = 0x7fffffff;
const TWO32 = 4294967296;
const NS = 1_000_000_000;

/** File names of a segment's sidecars. */
export function indexFileNames(segmentId: number): { idx: string; summary: string } {
  const base = `seg-${String(segmentId).padStart(8, '0')}`;
  return { idx: `${base}.idx`, summary: `${base}.summary.json` };
}

// CRC-32 (IEEE 802.3, reflected 0xEDB88320): node:zlib.crc32 only exists from Node 20.15.
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(buf: Buffer, end: number): number {
  let c = 0xffffffff;
  for (let i = 0; i < end; i++) c = CRC_TABLE[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** 64-bit ns as (high, low) u32 halves, computed exactly from (sec, nsec) on 16-bit pieces of sec. */
function nsHiLo(sec: number, nsec: number, out: Uint32Array, at: number): void {
  const secHi = Math.floor(sec / 65536);
  const secLo = sec - secHi * 65536;
  const q = secHi * NS;
  const qHi = Math.floor(q / 65536);
  const r = (q - qHi * 65536) * 65536 + secLo * NS + nsec;
  const rHi = Math.floor(r / TWO32);
  out[at] = qHi + rHi;
  out[at + 1] = r - rHi * TWO32;
}

function hiLoToNs(hi: number, lo: number): bigint {
  return (BigInt(hi) << 32n) | BigInt(lo);
}

/** One stream's accumulating state. Entries live in growable typed arrays: no allocation per packet unless one is kept and the arrays must grow. */
class StreamTable {
  streamId: string;
  packets = 0;
  keyframes = 0;
  minSec = 0;
  minNsec = 0;
  maxSec = 0;
  maxNsec = 0;
  minExtSeq = 0;
  maxExtSeq = 0;
  firstExtSeq = 0;
  lastExtSeq = 0;
  count = 0;
  /** Packets since the last kept entry (that one included). */
  sinceKept = 0;
  /** ts as (hi, lo) pairs. */
  ts = new Uint32Array(32);
  seq = new Float64Array(16);
  off = new Float64Array(16);
  flags = new Uint8Array(16);

  constructor(streamId: string) {
    this.streamId = streamId;
  }

  push(sec: number, nsec: number, extSeq: number, offset: number, keyframe: boolean): void {
    if (this.count === this.seq.length) this.#grow();
    const i = this.count++;
    nsHiLo(sec, nsec, this.ts, 2 * i);
    this.seq[i] = extSeq;
    this.off[i] = offset;
    this.flags[i] = keyframe ? FLAG_KEYFRAME : 0;
  }

  #grow(): void {
    const n = this.seq.length * 2;
    const ts = new Uint32Array(2 * n);
    ts.set(this.ts);
    this.ts = ts;
    const seq = new Float64Array(n);
    seq.set(this.seq);
    this.seq = seq;
    const off = new Float64Array(n);
    off.set(this.off);
    this.off = off;
    const flags = new Uint8Array(n);
    flags.set(this.flags);
    this.flags = flags;
  }
}

function toNs(sec: number, nsec: number): bigint {
  return BigInt(sec) * 1_000_000_000n + BigInt(nsec);
}

/**
 * Collects one segment's index while the segment is written. The capture pipeline calls
 * `add` for every RTP packet; a packet is kept as an entry when it starts a keyframe, is
 * the stream's first in the segment, or comes `every` packets after the last kept one
 * (so no two consecutive entries are more than `every` packets apart, and a keyframe
 * resets the count: at low bitrates, where keyframes come every few dozen packets, the
 * table is little more than the keyframe list). The rest only update the stream's
 * counters. `write`/`writeSync` at seal.
 */
export class SegmentIndexWriter {
  readonly segmentId: number;
  readonly #every: number;
  /** Indexed by the pipeline's small stream key. */
  readonly #byKey: Array<StreamTable | undefined> = [];
  #packets = 0;

  constructor(segmentId: number, opts?: { every?: number }) {
    this.segmentId = segmentId;
    this.#every = Math.max(1, Math.floor(opts?.every ?? 64));
  }

  /** Total packets added, all streams. */
  get packets(): number {
    return this.#packets;
  }

  /** Maps the pipeline's small integer key to the stream's stable id (may come before or after its first `add`). */
  registerStream(streamKey: number, streamId: string): void {
    const t = this.#byKey[streamKey];
    if (t) t.streamId = streamId;
    else this.#byKey[streamKey] = new StreamTable(streamId);
  }

  /** One RTP packet of a stream: capture time, extended seq, offset of its block in the segment, keyframe start or not. */
  add(streamKey: number, tsSec: number, tsNsec: number, extSeq: number, offset: number, keyframe: boolean): void {
    let t = this.#byKey[streamKey];
    if (t === undefined) {
      t = new StreamTable(`key:${streamKey}`);
      this.#byKey[streamKey] = t;
    }
    if (t.packets === 0) {
      t.minSec = t.maxSec = tsSec;
      t.minNsec = t.maxNsec = tsNsec;
      t.minExtSeq = t.maxExtSeq = t.firstExtSeq = extSeq;
    } else {
      if (tsSec < t.minSec || (tsSec === t.minSec && tsNsec < t.minNsec)) {
        t.minSec = tsSec;
        t.minNsec = tsNsec;
      }
      if (tsSec > t.maxSec || (tsSec === t.maxSec && tsNsec > t.maxNsec)) {
        t.maxSec = tsSec;
        t.maxNsec = tsNsec;
      }
      if (extSeq < t.minExtSeq) t.minExtSeq = extSeq;
      if (extSeq > t.maxExtSeq) t.maxExtSeq = extSeq;
    }
    t.lastExtSeq = extSeq;
    if (keyframe) t.keyframes++;
    if (keyframe || t.sinceKept >= this.#every || t.packets === 0) {
      t.push(tsSec, tsNsec, extSeq, offset, keyframe);
      t.sinceKept = 1;
    } else {
      t.sinceKept++;
    }
    t.packets++;
    this.#packets++;
  }

  #tables(): StreamTable[] {
    return this.#byKey.filter((t): t is StreamTable => t !== undefined && t.packets > 0);
  }

  /** The segment's summary as it stands. */
  summary(): SegmentSummary {
    const streams = this.#tables().map(
      (t): StreamSummary => ({
        streamId: t.streamId,
        packets: t.packets,
        firstTsNs: toNs(t.minSec, t.minNsec),
        lastTsNs: toNs(t.maxSec, t.maxNsec),
        minExtSeq: t.minExtSeq,
        maxExtSeq: t.maxExtSeq,
        firstExtSeq: t.firstExtSeq,
        lastExtSeq: t.lastExtSeq,
        keyframes: t.keyframes,
        entries: t.count,
      }),
    );
    let first: bigint | null = null;
    let last: bigint | null = null;
    for (const s of streams) {
      if (first === null || s.firstTsNs < first) first = s.firstTsNs;
      if (last === null || s.lastTsNs > last) last = s.lastTsNs;
    }
    return { segment: this.segmentId, packets: this.#packets, firstTsNs: first, lastTsNs: last, streams };
  }

  /** The `.idx` file's bytes (layout in the module comment). */
  encode(): Buffer {
    const tables = this.#tables();
    const ids = tables.map((t) => Buffer.from(t.streamId, 'utf8'));
    let size = HEADER + 4;
    for (let i = 0; i < tables.length; i++) {
      if (ids[i]!.length > 0xffff) throw new RangeError(`stream id longer than 65535 bytes: ${tables[i]!.streamId.slice(0, 40)}...`);
      size += pad4(2 + ids[i]!.length) + STREAM_FIXED + tables[i]!.count * ENTRY;
    }
    const b = Buffer.alloc(size);
    b.writeUInt32LE(MAGIC, 0);
    b.writeUInt16LE(VERSION, 4);
    b.writeUInt16LE(HEADER, 6);
    b.writeUInt32LE(this.segmentId, 8);
    b.writeUInt32LE(tables.length, 12);
    b.writeUInt32LE(this.#every, 16);
    let p = HEADER;
    const hl = new Uint32Array(2);
    for (let i = 0; i < tables.length; i++) {
      const t = tables[i]!;
      const id = ids[i]!;
      b.writeUInt16LE(id.length, p);
      id.copy(b, p + 2);
      p += pad4(2 + id.length);
      b.writeUInt32LE(t.count, p);
      b.writeUInt32LE(t.keyframes, p + 4);
      b.writeDoubleLE(t.packets, p + 8);
      nsHiLo(t.minSec, t.minNsec, hl, 0);
      b.writeUInt32LE(hl[0]!, p + 16);
      b.writeUInt32LE(hl[1]!, p + 20);
      nsHiLo(t.maxSec, t.maxNsec, hl, 0);
      b.writeUInt32LE(hl[0]!, p + 24);
      b.writeUInt32LE(hl[1]!, p + 28);
      b.writeDoubleLE(t.minExtSeq, p + 32);
      b.writeDoubleLE(t.maxExtSeq, p + 40);
      b.writeDoubleLE(t.firstExtSeq, p + 48);
      b.writeDoubleLE(t.lastExtSeq, p + 56);
      p += STREAM_FIXED;
    }
    for (const t of tables) {
      for (let i = 0; i < t.count; i++) {
        const d = t.seq[i]! - t.minExtSeq;
        if (d > SEQ_MASK) throw new RangeError(`stream ${t.streamId}: ext seq range over 2^31 in one segment`);
        b.writeUInt32LE(t.ts[2 * i]!, p);
        b.writeUInt32LE(t.ts[2 * i + 1]!, p + 4);
        b.writeDoubleLE(t.off[i]!, p + 8);
        b.writeUInt32LE((d | (t.flags[i]! & FLAG_KEYFRAME ? KEY_BIT : 0)) >>> 0, p + 16);
        p += ENTRY;
      }
    }
    b.writeUInt32LE(crc32(b, p), p);
    return b;
  }

  /** Writes `.idx` and `.summary.json` into dir (created if needed), each atomically. */
  async write(dir: string): Promise<void> {
    const names = indexFileNames(this.segmentId);
    await fs.promises.mkdir(dir, { recursive: true });
    await writeAtomicAsync(path.join(dir, names.idx), this.encode());
    await writeAtomicAsync(path.join(dir, names.summary), summaryJson(this.summary()));
  }

  writeSync(dir: string): void {
    const names = indexFileNames(this.segmentId);
    fs.mkdirSync(dir, { recursive: true });
    writeAtomicSync(path.join(dir, names.idx), this.encode());
    writeAtomicSync(path.join(dir, names.summary), summaryJson(this.summary()));
  }
}

function pad4(n: number): number {
  return (n + 3) & ~3;
}

function summaryJson(s: SegmentSummary): string {
  return (
    JSON.stringify(
      {
        segment: s.segment,
        packets: s.packets,
        firstTsNs: s.firstTsNs === null ? null : s.firstTsNs.toString(),
        lastTsNs: s.lastTsNs === null ? null : s.lastTsNs.toString(),
        streams: s.streams.map((x) => ({ ...x, firstTsNs: x.firstTsNs.toString(), lastTsNs: x.lastTsNs.toString() })),
      }
    ) + '\n'
  );
}

/** Temp file in the same dir, fsync, rename: readers see the old file or the new one. */
function writeAtomicSync(file: string, data: Buffer | string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

async function writeAtomicAsync(file: string, data: Buffer | string): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  const fh = await fs.promises.open(tmp, 'w');
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fs.promises.rename(tmp, file);
}

/** Removes a segment's sidecars (retention deleted the segment). Missing files are fine. */
export async function removeIndexFiles(dir: string, segmentId: number): Promise<void> {
  const names = indexFileNames(segmentId);
  await fs.promises.rm(path.join(dir, names.idx), { force: true });
  await fs.promises.rm(path.join(dir, names.summary), { force: true });
}

function indexError(file: string, reason: string, cause?: unknown): CamtapError {
  return new CamtapError('CAMTAP_ERR_INDEX', { file, reason }, cause === undefined ? undefined : { cause });
}

function parseNs(v: unknown, file: string, field: string): bigint {
  if (typeof v !== 'string' || !/^\d+$/.test(v)) throw indexError(file, `${field} is not a decimal ns string`);
  return BigInt(v);
}

function parseNum(v: unknown, file: string, field: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw indexError(file, `${field} is not a number`);
  return v;
}

function parseSummary(text: string, file: string, segmentId: number): SegmentSummary {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw indexError(file, `not JSON: ${(e as Error).message}`, e);
  }
  if (typeof raw !== 'object' || raw === null) throw indexError(file, 'not a JSON object');
  const o = raw as Record<string, unknown>;
  if (o.segment !== segmentId) throw indexError(file, `segment ${String(o.segment)}, expected ${segmentId}`);
  if (!Array.isArray(o.streams)) throw indexError(file, 'no "streams" array');
  const streams = o.streams.map((x: unknown, i: number): StreamSummary => {
    const s = (x ?? {}) as Record<string, unknown>;
    const f = `streams[${i}]`;
    if (typeof s.streamId !== 'string') throw indexError(file, `${f}.streamId is not a string`);
    return {
      streamId: s.streamId,
      packets: parseNum(s.packets, file, `${f}.packets`),
      firstTsNs: parseNs(s.firstTsNs, file, `${f}.firstTsNs`),
      lastTsNs: parseNs(s.lastTsNs, file, `${f}.lastTsNs`),
      minExtSeq: parseNum(s.minExtSeq, file, `${f}.minExtSeq`),
      maxExtSeq: parseNum(s.maxExtSeq, file, `${f}.maxExtSeq`),
      firstExtSeq: parseNum(s.firstExtSeq, file, `${f}.firstExtSeq`),
      lastExtSeq: parseNum(s.lastExtSeq, file, `${f}.lastExtSeq`),
      keyframes: parseNum(s.keyframes, file, `${f}.keyframes`),
      entries: parseNum(s.entries, file, `${f}.entries`),
    };
  });
  return {
    segment: segmentId,
    packets: parseNum(o.packets, file, 'packets'),
    firstTsNs: o.firstTsNs === null ? null : parseNs(o.firstTsNs, file, 'firstTsNs'),
    lastTsNs: o.lastTsNs === null ? null : parseNs(o.lastTsNs, file, 'lastTsNs'),
    streams,
  };
}

/**
 * A segment's summary only (JSON, small): enough to skip the segment by time or stream
 * without loading its position tables. CAMTAP_ERR_INDEX naming the file when missing or bad.
 */
export async function readSummary(dir: string, segmentId: number): Promise<SegmentSummary> {
  const file = path.join(dir, indexFileNames(segmentId).summary);
  let text: string;
  try {
    text = await fs.promises.readFile(file, 'utf8');
  } catch (e) {
    throw indexError(file, `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, e);
  }
  return parseSummary(text, file, segmentId);
}

/** One stream's decoded table in the reader. */
interface LoadedStream {
  summary: StreamSummary;
  ts: bigint[];
  seq: Float64Array;
  off: Float64Array;
  key: Uint8Array;
  /** Indices of keyframe entries sorted by (ts, offset), for binary search. */
  keyIdx: number[];
  /** Index of the earliest entry. */
  firstIdx: number;
}

/** Reads a segment's `.idx` (the summary is rebuilt from it, so the JSON is not needed here). */
export class SegmentIndexReader {
  readonly segmentId: number;
  readonly summary: SegmentSummary;
  readonly #streams: Map<string, LoadedStream>;

  private constructor(segmentId: number, summary: SegmentSummary, streams: Map<string, LoadedStream>) {
    this.segmentId = segmentId;
    this.summary = summary;
    this.#streams = streams;
  }

  /** Loads and checks `seg-N.idx` in dir. CAMTAP_ERR_INDEX naming the file when missing, truncated or corrupt. */
  static async open(dir: string, segmentId: number): Promise<SegmentIndexReader> {
    const file = path.join(dir, indexFileNames(segmentId).idx);
    let b: Buffer;
    try {
      b = await fs.promises.readFile(file);
    } catch (e) {
      throw indexError(file, `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, e);
    }
    return SegmentIndexReader.decode(b, file, segmentId);
  }

  /** Decodes `.idx` bytes; `file` only names the source in errors. */
  static decode(b: Buffer, file: string, segmentId: number): SegmentIndexReader {
    if (b.length < HEADER + 4) throw indexError(file, `${b.length} bytes, shorter than the ${HEADER + 4}-byte minimum`);
    if (b.readUInt32LE(0) !== MAGIC) throw indexError(file, `bad magic 0x${b.readUInt32BE(0).toString(16)} (expected "CTIX")`);
    const version = b.readUInt16LE(4);
    if (version !== VERSION) throw indexError(file, `unsupported version ${version}`);
    const crcAt = b.length - 4;
    const crc = crc32(b, crcAt);
    if (crc !== b.readUInt32LE(crcAt)) throw indexError(file, `checksum mismatch (stored 0x${b.readUInt32LE(crcAt).toString(16)}, computed 0x${crc.toString(16)})`);
    const headerSize = b.readUInt16LE(6);
    const id = b.readUInt32LE(8);
    if (id !== segmentId) throw indexError(file, `holds segment ${id}, expected ${segmentId}`);
    const nStreams = b.readUInt32LE(12);
    let p = headerSize;
    const need = (n: number, what: string): void => {
      if (p + n > crcAt) throw indexError(file, `offset ${p}: truncated ${what}`);
    };
    const metas: Array<{ summary: StreamSummary; count: number }> = [];
    for (let i = 0; i < nStreams; i++) {
      need(2, 'stream table');
      const idLen = b.readUInt16LE(p);
      need(pad4(2 + idLen) + STREAM_FIXED, 'stream table');
      const streamId = b.toString('utf8', p + 2, p + 2 + idLen);
      p += pad4(2 + idLen);
      const count = b.readUInt32LE(p);
      metas.push({
        count,
        summary: {
          streamId,
          entries: count,
          keyframes: b.readUInt32LE(p + 4),
          packets: b.readDoubleLE(p + 8),
          firstTsNs: hiLoToNs(b.readUInt32LE(p + 16), b.readUInt32LE(p + 20)),
          lastTsNs: hiLoToNs(b.readUInt32LE(p + 24), b.readUInt32LE(p + 28)),
          minExtSeq: b.readDoubleLE(p + 32),
          maxExtSeq: b.readDoubleLE(p + 40),
          firstExtSeq: b.readDoubleLE(p + 48),
          lastExtSeq: b.readDoubleLE(p + 56),
        },
      });
      p += STREAM_FIXED;
    }
    const streams = new Map<string, LoadedStream>();
    for (const m of metas) {
      need(m.count * ENTRY, `entries of stream ${m.summary.streamId}`);
      const ts: bigint[] = new Array<bigint>(m.count);
      const seq = new Float64Array(m.count);
      const off = new Float64Array(m.count);
      const key = new Uint8Array(m.count);
      for (let i = 0; i < m.count; i++) {
        ts[i] = hiLoToNs(b.readUInt32LE(p), b.readUInt32LE(p + 4));
        off[i] = b.readDoubleLE(p + 8);
        const w = b.readUInt32LE(p + 16);
        seq[i] = m.summary.minExtSeq + (w & SEQ_MASK);
        key[i] = w & KEY_BIT ? FLAG_KEYFRAME : 0;
        p += ENTRY;
      }
      const byTime = (x: number, y: number): number => (ts[x]! < ts[y]! ? -1 : ts[x]! > ts[y]! ? 1 : off[x]! - off[y]!);
      const keyIdx: number[] = [];
      let firstIdx = 0;
      for (let i = 0; i < m.count; i++) {
        if (key[i]) keyIdx.push(i);
        if (byTime(i, firstIdx) < 0) firstIdx = i;
      }
      keyIdx.sort(byTime);
      streams.set(m.summary.streamId, { summary: m.summary, ts, seq, off, key, keyIdx, firstIdx });
    }
    if (p !== crcAt) throw indexError(file, `offset ${p}: ${crcAt - p} unexpected bytes before the checksum`);
    let first: bigint | null = null;
    let last: bigint | null = null;
    let packets = 0;
    for (const s of streams.values()) {
      packets += s.summary.packets;
      if (first === null || s.summary.firstTsNs < first) first = s.summary.firstTsNs;
      if (last === null || s.summary.lastTsNs > last) last = s.summary.lastTsNs;
    }
    const summary: SegmentSummary = { segment: segmentId, packets, firstTsNs: first, lastTsNs: last, streams: [...streams.values()].map((s) => s.summary) };
    return new SegmentIndexReader(segmentId, summary, streams);
  }

  /** Stream ids with packets in this segment. */
  streams(): string[] {
    return [...this.#streams.keys()];
  }

  /** The stream's kept entries in capture order ([] when the stream is not in this segment). */
  entries(streamId: string): IndexEntry[] {
    const s = this.#streams.get(streamId);
    if (!s) return [];
    const out: IndexEntry[] = new Array<IndexEntry>(s.ts.length);
    for (let i = 0; i < s.ts.length; i++) out[i] = entryAt(s, i);
    return out;
  }

  /**
   * The keyframe entry with the latest time at or before `tsNs` (a decoder can start
   * there and reach `tsNs`); the stream's earliest entry when no keyframe precedes
   * `tsNs` in this segment (the caller looks at the previous segment or starts there);
   * null when the stream has no packets here.
   */
  seekKeyframe(streamId: string, tsNs: bigint): IndexEntry | null {
    const s = this.#streams.get(streamId);
    if (!s || s.ts.length === 0) return null;
    // Last keyframe whose ts <= tsNs.
    let lo = 0;
    let hi = s.keyIdx.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (s.ts[s.keyIdx[mid]!]! <= tsNs) lo = mid + 1;
      else hi = mid;
    }
    return entryAt(s, lo > 0 ? s.keyIdx[lo - 1]! : s.firstIdx);
  }
}

function entryAt(s: LoadedStream, i: number): IndexEntry {
  return { tsNs: s.ts[i]!, extSeq: s.seq[i]!, offset: s.off[i]!, keyframe: s.key[i] === FLAG_KEYFRAME };
}
