/**
 * Second-level metadata persisted per segment: for every RTP stream with packets in a
 * segment, a sparse position table (every keyframe-start packet and every Nth packet),
 * the record offset of every one of its packets, and a summary. A query reads the small
 * summaries to skip whole segments by time and stream, then one stream's table to find
 * the nearest preceding keyframe, then that stream's offsets to read only its own
 * records (a segment of 60 interleaved cameras holds 1/60 of a stream). Everything here
 * is derivable from the segment (camtap reindex), so a corrupt sidecar is an error to
 * report, never data lost.
 *
 * Files in the index dir (normally `<dataDir>/index/`), both written atomically:
 * - `seg-00000001.idx`           binary, layout below
 * - `seg-00000001.summary.json`  time range, packets, streams present with their summaries
 *
 * `.idx` layout, version 2 (little-endian). The "core" (header, stream table, entries)
 * is what a query needs to plan; it is read and checked whole. The offsets sections
 * after it are read one stream at a time, each with its own CRC, so a request never
 * reads the other streams' offsets (2-3 bytes per packet: most of the file).
 * ```
 * header (24 bytes)
 *   0  char[4] magic "CTIX"
 *   4  u16     version (2; 1 is still read: no core size, no offsets)
 *   6  u16     header size (24)
 *   8  u32     segment id
 *  12  u32     stream count
 *  16  u32     sampling interval N (at most N packets from one entry to the next)
 *  20  u32     core size: bytes from 0 to the end of the core CRC (version 1: reserved 0)
 * stream table, per stream
 *      u16     id length L, then L bytes UTF-8 stream id, zero-padded to a multiple of 4 (2 + L + pad)
 *      u32     entry count
 *      u32     keyframes (keyframe-start packets seen)
 *      f64     packets
 *      u32 u32 earliest ts ns (high, low)
 *      u32 u32 latest ts ns (high, low)
 *      f64     min ext seq, max ext seq, first ext seq, last ext seq
 *      f64     file position of the stream's offsets section, 0 when it has none   (version 2)
 *      u32     bytes of the offsets section, 0 when none                         (version 2)
 *      u32     reserved (0)                                                       (version 2)
 * entry arrays, one per stream in table order, 20 bytes per entry
 *      u32 u32 ts ns (high, low)   exact 64-bit ns, no float rounding
 *      f64     byte offset of the packet's block in the segment file (external files may pass 4 GiB)
 *      u32     bit 31: keyframe start; bits 0-30: extended seq minus the stream's min ext seq
 *              (a segment holds far fewer than 2^31 packets of one stream)
 * u32          CRC-32 (IEEE) of every byte before it (end of the core)
 * offsets sections (version 2), one per stream that has one, in table order, each:
 *      u32     packets n (every packet of the stream in the segment, capture order)
 *      u32     checkpoints m = ceil(n / 256)
 *      u32     varint bytes V
 *      u32     reserved (0)
 *      m x     f64 record offset of packet 256k, u32 position in the varints where the
 *              varint of packet 256k + 1 starts, u32 reserved (0)
 *      V bytes for every packet but the checkpoints, in order: its record offset minus
 *              the previous packet's, unsigned LEB128 (7 bits a byte, low first, high
 *              bit set on all bytes but the last); zero-padded to a multiple of 4
 *      u32     CRC-32 (IEEE) of the section's bytes before it
 * ```
 * Offsets ascend within a stream. A camera's packets are 1-2 KiB apart inside a frame's
 * burst and a few hundred KiB apart between frames when 60 cameras interleave: 2 or 3
 * bytes a packet, about 0.2% of the capture; differences of any size are fine (in-place
 * external files may be larger than 4 GiB).
 * A stream has no offsets section when its offsets did not ascend (RTP interleaved in
 * TCP is located by the segment holding its `$`, which a retransmission can move back):
 * its reads stay sequential.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
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
const VERSION = 2;
const HEADER = 24;
/** Stream table bytes after the id: version 1, and version 2 with the offsets section's place. */
const STREAM_FIXED_V1 = 4 + 4 + 8 + 16 + 32;
const STREAM_FIXED = STREAM_FIXED_V1 + 16;
const ENTRY = 20;
/** Offsets section: packets, checkpoints, varint bytes, reserved; then 16 bytes per checkpoint; then the varints; then the CRC. */
const SECTION_HEAD = 16;
const CHECKPOINT = 16;
/** A checkpoint (an absolute offset) every this many packets: a lookup decodes at most this many varints. */
const CP_EVERY = 256;
const CP_MASK = CP_EVERY - 1;
const CP_SHIFT = 8;
/** Varint bytes per writer chunk: the first small (a short stream costs little), then doubling up to this. */
const VAR_CHUNK_MIN = 512;
const VAR_CHUNK_MAX = 65536;
const FLAG_KEYFRAME = 1;
const KEY_BIT = 0x80000000;
const SEQ_MASK = 0x7fffffff;
const TWO32 = 4294967296;
const U32_MAX = 0xffffffff;
const NS = 1_000_000_000;
/** First read of a sidecar: the whole core of any ordinary segment (the offsets sections are read per stream; copying what this reads of them costs less than a second read). */
const HEAD_READ = 1024 * 1024;

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
const nativeCrc32 = (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;

/** CRC-32 of buf[from, end), continuing from the CRC `prev` of the bytes before. */
function crc32(buf: Buffer, end: number, from = 0, prev = 0): number {
  if (nativeCrc32 !== undefined) return nativeCrc32(buf.subarray(from, end), prev) >>> 0;
  let c = (prev ^ 0xffffffff) >>> 0;
  for (let i = from; i < end; i++) c = CRC_TABLE[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
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

/** One stream's accumulating state. Entries and offsets live in growable typed arrays: no allocation per packet unless an array must grow. */
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
  /**
   * Every packet's record offset as an LEB128 varint of its distance from the previous
   * one (2 or 3 bytes for a camera's packets: a burst's neighbours are a packet apart, its
   * frames a few hundred KiB), in chunks that are never copied; every CP_EVERY-th packet
   * is a checkpoint with its absolute offset instead. Half the memory and file bytes of
   * u32 offsets: on the in-place import the pages first touched and the fsync at seal
   * were what per-packet offsets cost.
   */
  varChunks: Uint8Array[] = [];
  /** Bytes used of each chunk but the current one. */
  varUsed: number[] = [];
  cur = new Uint8Array(0);
  curPos = 0;
  /** Varint bytes, all chunks. */
  varBytes = 0;
  /** Offsets kept. */
  nOffs = 0;
  /** False once an offset did not ascend (then none are kept). */
  offsOk = true;
  lastOff = -1;
  /** Per checkpoint: the absolute offset, and where the varint of the packet after it starts. */
  cpOffsets: number[] = [];
  cpBytes: number[] = [];

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

  /**
   * Appends one packet's record offset where SegmentIndexWriter.add's inline path does
   * not: a checkpoint, a distance of 2 MiB or more, a full chunk, one out of order.
   */
  pushOffset(offset: number): void {
    if (!(offset > this.lastOff)) {
      // Not ascending (or not a number): this stream's reads stay sequential.
      this.offsOk = false;
      this.varChunks = [];
      this.varUsed = [];
      this.cur = new Uint8Array(0);
      this.curPos = 0;
      this.nOffs = 0;
      return;
    }
    if ((this.nOffs & CP_MASK) === 0) {
      this.cpOffsets.push(offset);
      this.cpBytes.push(this.varBytes);
    } else {
      if (this.curPos + 8 > this.cur.length) {
        if (this.cur.length > 0) this.varUsed.push(this.curPos);
        this.cur = new Uint8Array(Math.min(VAR_CHUNK_MAX, Math.max(VAR_CHUNK_MIN, 2 * this.cur.length)));
        this.varChunks.push(this.cur);
        this.curPos = 0;
      }
      // LEB128 by arithmetic: a distance may pass 2^32 in an external file.
      let d = offset - this.lastOff;
      const b = this.cur;
      let p = this.curPos;
      while (d >= 0x80) {
        b[p++] = (d % 0x80) | 0x80;
        d = Math.floor(d / 0x80);
      }
      b[p++] = d;
      this.varBytes += p - this.curPos;
      this.curPos = p;
    }
    this.nOffs++;
    this.lastOff = offset;
  }

  /** Bytes of the offsets section; 0 when the stream has none. */
  sectionBytes(): number {
    return this.offsOk && this.nOffs > 0 ? SECTION_HEAD + CHECKPOINT * this.cpOffsets.length + pad4(this.varBytes) + 4 : 0;
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
 * `add` for every RTP packet; every packet's record offset is kept, and a packet is also
 * kept as an entry when it starts a keyframe, is the stream's first in the segment, or
 * comes `every` packets after the last kept one (so no two consecutive entries are more
 * than `every` packets apart, and a keyframe resets the count: at low bitrates, where
 * keyframes come every few dozen packets, the table is little more than the keyframe
 * list). The rest only update the stream's counters. `write`/`writeSync` at seal.
 */
export class SegmentIndexWriter {
  readonly segmentId: number;
  readonly #every: number;
  /** Indexed by the pipeline's small stream key (several keys may share a table: a stream evicted and resumed gets a new key). */
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

  /**
   * Maps the pipeline's small integer key to the stream's stable id (may come before or
   * after its first `add`). A key registered under an id another key already has joins
   * that stream's table (one table per stream id: the pipeline gives a stream that
   * resumes after eviction a new key).
   */
  registerStream(streamKey: number, streamId: string): void {
    const t = this.#byKey[streamKey];
    if (t && t.packets > 0) {
      t.streamId = streamId;
      return;
    }
    const same = this.#byKey.find((x) => x !== undefined && x !== t && x.streamId === streamId);
    if (same) this.#byKey[streamKey] = same;
    else if (t) t.streamId = streamId;
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
    // Every packet's offset: the common case inline (ascending, same block, room left).
    if (t.offsOk) {
      const d = offset - t.lastOff;
      const p = t.curPos;
      if (d > 0 && d < 0x200000 && (t.nOffs & CP_MASK) !== 0 && p + 3 <= t.cur.length) {
        // 1 to 3 bytes of LEB128 (the distance from the stream's previous packet).
        const b = t.cur;
        let q = p;
        if (d < 0x80) b[q++] = d;
        else if (d < 0x4000) {
          b[q++] = (d & 0x7f) | 0x80;
          b[q++] = d >>> 7;
        } else {
          b[q++] = (d & 0x7f) | 0x80;
          b[q++] = ((d >>> 7) & 0x7f) | 0x80;
          b[q++] = d >>> 14;
        }
        t.varBytes += q - p;
        t.curPos = q;
        t.nOffs++;
        t.lastOff = offset;
      } else {
        t.pushOffset(offset);
      }
    }
    t.packets++;
    this.#packets++;
  }

  /** The tables with packets, in key order, each once. */
  #tables(): StreamTable[] {
    const out: StreamTable[] = [];
    const seen = new Set<StreamTable>();
    for (const t of this.#byKey) {
      if (t === undefined || t.packets === 0 || seen.has(t)) continue;
      seen.add(t);
      out.push(t);
    }
    return out;
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
    return Buffer.concat(this.#encodeParts());
  }

  /**
   * The `.idx` file as consecutive pieces: the core, then per offsets section its head,
   * its chunks of offsets (views of the writer's arrays, not copies) and its CRC.
   */
  #encodeParts(): Buffer[] {
    const tables = this.#tables();
    const ids = tables.map((t) => Buffer.from(t.streamId, 'utf8'));
    let core = HEADER + 4;
    for (let i = 0; i < tables.length; i++) {
      if (ids[i]!.length > 0xffff) throw new RangeError(`stream id longer than 65535 bytes: ${tables[i]!.streamId.slice(0, 40)}...`);
      core += pad4(2 + ids[i]!.length) + STREAM_FIXED + tables[i]!.count * ENTRY;
    }
    if (core > U32_MAX) throw new RangeError(`segment ${this.segmentId}: index core of ${core} bytes`);
    const b = Buffer.alloc(core);
    b.writeUInt32LE(MAGIC, 0);
    b.writeUInt16LE(VERSION, 4);
    b.writeUInt16LE(HEADER, 6);
    b.writeUInt32LE(this.segmentId, 8);
    b.writeUInt32LE(tables.length, 12);
    b.writeUInt32LE(this.#every, 16);
    b.writeUInt32LE(core, 20);
    let p = HEADER;
    let sectionAt = core;
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
      const bytes = t.sectionBytes();
      b.writeDoubleLE(bytes > 0 ? sectionAt : 0, p + 64);
      b.writeUInt32LE(bytes, p + 72);
      sectionAt += bytes;
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
    const parts: Buffer[] = [b];
    for (const t of tables) {
      if (t.sectionBytes() === 0) continue;
      const m = t.cpOffsets.length;
      const head = Buffer.alloc(SECTION_HEAD + CHECKPOINT * m);
      head.writeUInt32LE(t.nOffs, 0);
      head.writeUInt32LE(m, 4);
      head.writeUInt32LE(t.varBytes, 8);
      for (let k = 0; k < m; k++) {
        head.writeDoubleLE(t.cpOffsets[k]!, SECTION_HEAD + CHECKPOINT * k);
        head.writeUInt32LE(t.cpBytes[k]!, SECTION_HEAD + CHECKPOINT * k + 8);
      }
      parts.push(head);
      let crc = crc32(head, head.length);
      t.varChunks.forEach((c, k) => {
        const used = k < t.varUsed.length ? t.varUsed[k]! : t.curPos;
        const part = Buffer.from(c.buffer, c.byteOffset, used);
        crc = crc32(part, part.length, 0, crc);
        parts.push(part);
      });
      const pad = pad4(t.varBytes) - t.varBytes;
      const tail = Buffer.alloc(pad + 4);
      crc = crc32(tail, pad, 0, crc);
      tail.writeUInt32LE(crc, pad);
      parts.push(tail);
    }
    return parts;
  }

  /** Writes `.idx` and `.summary.json` into dir (created if needed), each atomically. */
  async write(dir: string): Promise<void> {
    const names = indexFileNames(this.segmentId);
    await fs.promises.mkdir(dir, { recursive: true });
    await writeAtomicAsync(path.join(dir, names.idx), this.#encodeParts());
    await writeAtomicAsync(path.join(dir, names.summary), summaryJson(this.summary()));
  }

  writeSync(dir: string): void {
    const names = indexFileNames(this.segmentId);
    fs.mkdirSync(dir, { recursive: true });
    writeAtomicSync(path.join(dir, names.idx), this.#encodeParts());
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
function writeAtomicSync(file: string, data: Buffer | string | Buffer[]): void {
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w');
  try {
    if (Array.isArray(data)) {
      for (const part of data) {
        for (let at = 0; at < part.length; ) at += fs.writeSync(fd, part, at, part.length - at);
      }
    } else {
      fs.writeFileSync(fd, data);
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

async function writeAtomicAsync(file: string, data: Buffer | string | Buffer[]): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  const fh = await fs.promises.open(tmp, 'w');
  try {
    if (Array.isArray(data)) {
      for (const part of data) {
        for (let at = 0; at < part.length; ) at += (await fh.write(part, at, part.length - at)).bytesWritten;
      }
    } else {
      await fh.writeFile(data);
    }
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

/**
 * Record offsets of every packet of one stream in one segment, in capture order (which
 * is file order: they ascend). Kept as the file has them (checkpoints and varints, see
 * the module comment): `at(i)` decodes from the checkpoint before `i`, or one varint on
 * from the previous call when the calls go in order, as a read of the stream does.
 */
export class StreamOffsets {
  /** Packets of the stream in the segment. */
  readonly count: number;
  readonly #cpOff: Float64Array;
  readonly #cpPos: Uint32Array;
  readonly #v: Uint8Array;
  /** The last lookup: packet index, its offset, where the next varint starts. */
  #i = -1;
  #off = 0;
  #pos = 0;

  /** @param cpOff, cpPos per checkpoint (packet k * 256): its offset and where the varint of the packet after it starts in `v`. */
  constructor(count: number, cpOff: Float64Array, cpPos: Uint32Array, v: Uint8Array) {
    this.count = count;
    this.#cpOff = cpOff;
    this.#cpPos = cpPos;
    this.#v = v;
  }

  /** Offsets as given (ascending; for tests and tools). */
  static of(offsets: readonly number[]): StreamOffsets {
    const t = new StreamTable('');
    for (const o of offsets) t.pushOffset(o);
    const v = new Uint8Array(t.varBytes);
    let at = 0;
    t.varChunks.forEach((c, k) => {
      const used = k < t.varUsed.length ? t.varUsed[k]! : t.curPos;
      v.set(c.subarray(0, used), at);
      at += used;
    });
    return new StreamOffsets(t.nOffs, Float64Array.from(t.cpOffsets), Uint32Array.from(t.cpBytes), v);
  }

  /** The same offsets with a cursor of their own (for one reader of the stream). */
  view(): StreamOffsets {
    return new StreamOffsets(this.count, this.#cpOff, this.#cpPos, this.#v);
  }

  /** Record offset of the stream's packet `i` (0 <= i < count). */
  at(i: number): number {
    if (i !== this.#i + 1 || (i & CP_MASK) === 0) {
      if (i === this.#i) return this.#off;
      // From the checkpoint at or before i.
      const k = i >>> CP_SHIFT;
      this.#i = k << CP_SHIFT;
      this.#off = this.#cpOff[k]!;
      this.#pos = this.#cpPos[k]!;
      while (this.#i < i) this.#step();
      return this.#off;
    }
    this.#step();
    return this.#off;
  }

  /** Decodes the next varint: #i + 1. */
  #step(): void {
    const v = this.#v;
    let p = this.#pos;
    let b = v[p++]!;
    let d = b & 0x7f;
    let mul = 0x80;
    while (b & 0x80) {
      b = v[p++]!;
      d += (b & 0x7f) * mul;
      mul *= 0x80;
    }
    this.#pos = p;
    this.#off += d;
    this.#i++;
  }

  /** Index of the first packet whose record starts at or after `offset` (count when none). */
  lowerBound(offset: number): number {
    const cp = this.#cpOff;
    if (this.count === 0 || offset <= cp[0]!) return 0;
    // Last checkpoint at or before offset, then on from it.
    let lo = 0;
    let hi = cp.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (cp[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    let i = lo << CP_SHIFT;
    const end = Math.min(this.count, i + CP_EVERY);
    while (i < end && this.at(i) < offset) i++;
    return i;
  }

  /** Index of the packet whose record starts at `offset`; -1 when no packet of the stream starts there. */
  indexOf(offset: number): number {
    const i = this.lowerBound(offset);
    return i < this.count && this.at(i) === offset ? i : -1;
  }
}

const EMPTY_OFFSETS = new StreamOffsets(0, new Float64Array(0), new Uint32Array(0), new Uint8Array(0));

/** One stream's decoded table in the reader. */
interface LoadedStream {
  ts: bigint[];
  seq: Float64Array;
  off: Float64Array;
  key: Uint8Array;
  /** Indices of keyframe entries sorted by (ts, offset), for binary search. */
  keyIdx: number[];
  /** Index of the earliest entry. */
  firstIdx: number;
}

/** One stream as the stream table describes it; entries and offsets are decoded on first use. */
interface StreamMeta {
  summary: StreamSummary;
  /** Position of the entries in the core buffer. */
  entriesAt: number;
  /** Offsets section in the file (0 bytes: none). */
  sectionAt: number;
  sectionBytes: number;
  loaded: LoadedStream | null;
  offsets: Promise<StreamOffsets | null> | null;
}

/** Which file a reader read, to tell whether the sidecar was replaced (camtap reindex renames a new one over it) before an offsets section is read. */
interface FileIdentity {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
}

function sameFile(a: FileIdentity | null, b: FileIdentity): boolean {
  return a !== null && a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs;
}

/** Readers by file, least recently used first (see SegmentIndexReader.open). */
const readerCache = new Map<string, SegmentIndexReader>();
const READER_CACHE_BYTES = 64 * 1024 * 1024;

function remember(file: string, reader: SegmentIndexReader): void {
  readerCache.delete(file);
  readerCache.set(file, reader);
  let total = 0;
  for (const r of readerCache.values()) total += r.retainedBytes;
  for (const [k, r] of readerCache) {
    if (total <= READER_CACHE_BYTES || readerCache.size <= 1) break;
    total -= r.retainedBytes;
    readerCache.delete(k);
  }
}

/** Forgets every kept reader (tests; a tool that rewrote sidecars in place). */
export function clearIndexReaderCache(): void {
  readerCache.clear();
}

async function readFully(fh: fs.promises.FileHandle, buf: Buffer, pos: number): Promise<number> {
  let got = 0;
  while (got < buf.length) {
    const { bytesRead } = await fh.read(buf, got, buf.length - got, pos + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got;
}

/** A buffer of its own (not a slice of the pool, which a section's offsets would then keep alive). */
function ownBuffer(n: number): Buffer {
  return Buffer.allocUnsafeSlow(n);
}

/**
 * Reads a segment's `.idx` (the summary is rebuilt from it, so the JSON is not needed
 * here). Opening reads and checks the core (header, stream table, entries); a stream's
 * entries are decoded when first asked for, and its offsets section is read (and its CRC
 * checked) by {@link offsets}.
 */
export class SegmentIndexReader {
  readonly segmentId: number;
  readonly summary: SegmentSummary;
  /** Format version of the file (1: no offsets). */
  readonly version: number;
  readonly #file: string;
  readonly #core: Buffer;
  /** The whole file when it was read whole; else the offsets sections are read from `#file`. */
  readonly #whole: Buffer | null;
  readonly #ident: FileIdentity | null;
  readonly #streams: Map<string, StreamMeta>;

  private constructor(
    segmentId: number,
    version: number,
    file: string,
    core: Buffer,
    whole: Buffer | null,
    ident: FileIdentity | null,
    streams: Map<string, StreamMeta>,
  ) {
    this.segmentId = segmentId;
    this.version = version;
    this.#file = file;
    this.#core = core;
    this.#whole = whole;
    this.#ident = ident;
    this.#streams = streams;
    let first: bigint | null = null;
    let last: bigint | null = null;
    let packets = 0;
    for (const s of streams.values()) {
      packets += s.summary.packets;
      if (first === null || s.summary.firstTsNs < first) first = s.summary.firstTsNs;
      if (last === null || s.summary.lastTsNs > last) last = s.summary.lastTsNs;
    }
    this.summary = { segment: segmentId, packets, firstTsNs: first, lastTsNs: last, streams: [...streams.values()].map((s) => s.summary) };
  }

  /**
   * Loads and checks `seg-N.idx` in dir (its core). With `offsetsOf`, that stream's
   * offsets section is read too while the file is open (a replay's first packet waits
   * for it). Readers are kept (up to 64 MiB, least recently used out) and handed out
   * again while the file is the same one (device, inode, size, mtime, ctime): a server
   * answering many requests on one segment reads and checks its index once, and every
   * first read of a large index faults in fresh pages. CAMTAP_ERR_INDEX naming the file
   * when missing, truncated or corrupt.
   */
  static async open(dir: string, segmentId: number, opts: { offsetsOf?: string } = {}): Promise<SegmentIndexReader> {
    const file = path.join(dir, indexFileNames(segmentId).idx);
    const cannot = (e: unknown) => indexError(file, `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, e);
    let fh: fs.promises.FileHandle;
    try {
      fh = await fs.promises.open(file, 'r');
    } catch (e) {
      throw cannot(e);
    }
    try {
      let st: fs.Stats;
      let head: Buffer;
      try {
        // Size and the first bytes at once: one wait on the thread pool instead of two.
        const buf = Buffer.allocUnsafe(HEAD_READ);
        const [stat, n] = await Promise.all([fh.stat(), readFully(fh, buf, 0)]);
        st = stat;
        head = buf.subarray(0, n);
      } catch (e) {
        throw cannot(e);
      }
      const ident: FileIdentity = { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs };
      let reader = readerCache.get(file);
      if (reader !== undefined && reader.segmentId === segmentId && sameFile(reader.#ident, ident)) {
        readerCache.delete(file);
        readerCache.set(file, reader);
      } else {
        reader = await SegmentIndexReader.#load(fh, file, segmentId, head, ident, cannot);
        remember(file, reader);
      }
      const want = opts.offsetsOf === undefined ? undefined : reader.#streams.get(opts.offsetsOf);
      if (want !== undefined && want.sectionBytes > 0 && want.offsets === null) {
        want.offsets = reader.#readSectionFrom(fh, want, reader.#whole ?? head);
        await want.offsets.catch(() => undefined);
      }
      return reader;
    } finally {
      // Nothing waits for the close.
      fh.close().catch(() => undefined);
    }
  }

  /** Reads and checks the core of an open sidecar whose first bytes are `head`. */
  static async #load(fh: fs.promises.FileHandle, file: string, segmentId: number, head: Buffer, ident: FileIdentity, cannot: (e: unknown) => CamtapError): Promise<SegmentIndexReader> {
    // A small file read whole: keep a copy of its size, not the read buffer.
    if (head.length === ident.size) return SegmentIndexReader.decode(Buffer.from(head), file, segmentId);
    if (head.length > ident.size) throw indexError(file, `changed while read (${ident.size} bytes, then ${head.length})`);
    checkHeader(head, file);
    const version = head.readUInt16LE(4);
    if (version === 1) {
      const whole = Buffer.allocUnsafe(ident.size);
      head.copy(whole);
      try {
        await readFully(fh, whole.subarray(head.length), head.length);
      } catch (e) {
        throw cannot(e);
      }
      return SegmentIndexReader.decode(whole, file, segmentId);
    }
    const coreSize = head.readUInt32LE(20);
    if (coreSize < HEADER + 4) throw indexError(file, `core size ${coreSize} is shorter than the ${HEADER + 4}-byte minimum`);
    if (coreSize > ident.size) throw indexError(file, `truncated: ${ident.size} bytes, the core needs ${coreSize}`);
    let core: Buffer;
    if (coreSize <= head.length) {
      core = Buffer.from(head.subarray(0, coreSize));
    } else {
      core = Buffer.allocUnsafe(coreSize);
      head.copy(core);
      try {
        await readFully(fh, core.subarray(head.length), head.length);
      } catch (e) {
        throw cannot(e);
      }
    }
    const streams = parseCore(core, coreSize, file, segmentId, version, ident.size);
    return new SegmentIndexReader(segmentId, version, file, core, null, ident, streams);
  }

  /** Bytes this reader keeps: its core (or whole file) and the offsets sections it read. */
  get retainedBytes(): number {
    let n = this.#whole?.length ?? this.#core.length;
    if (this.#whole === null) for (const s of this.#streams.values()) if (s.offsets !== null) n += s.sectionBytes;
    return n;
  }

  /** Decodes a whole `.idx` file's bytes; `file` only names the source in errors. */
  static decode(b: Buffer, file: string, segmentId: number): SegmentIndexReader {
    checkHeader(b, file);
    const version = b.readUInt16LE(4);
    const coreSize = version === 1 ? b.length : b.readUInt32LE(20);
    if (version !== 1 && coreSize < HEADER + 4) throw indexError(file, `core size ${coreSize} is shorter than the ${HEADER + 4}-byte minimum`);
    if (coreSize > b.length) throw indexError(file, `truncated: ${b.length} bytes, the core needs ${coreSize}`);
    const streams = parseCore(b, coreSize, file, segmentId, version, b.length);
    return new SegmentIndexReader(segmentId, version, file, b.subarray(0, coreSize), b, null, streams);
  }

  /** Stream ids with packets in this segment. */
  streams(): string[] {
    return [...this.#streams.keys()];
  }

  /** The stream's kept entries in capture order ([] when the stream is not in this segment). */
  entries(streamId: string): IndexEntry[] {
    const s = this.#loaded(streamId);
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
    const s = this.#loaded(streamId);
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

  /**
   * The first entry in capture order, at or after record offset `fromOffset`, captured
   * after `tsNs`: no packet of the stream captured after `tsNs` comes before it in the
   * file (so a read that must stop at the first packet past `tsNs` can stop at it). Null
   * when none is.
   */
  entryAfter(streamId: string, tsNs: bigint, fromOffset = 0): IndexEntry | null {
    const s = this.#loaded(streamId);
    if (!s) return null;
    for (let i = 0; i < s.ts.length; i++) if (s.off[i]! >= fromOffset && s.ts[i]! > tsNs) return entryAt(s, i);
    return null;
  }

  /** Whether the file keeps per-packet offsets (version 2): then a stream without an offsets section either has none here or was not recordable. */
  get hasOffsets(): boolean {
    return this.version >= 2;
  }

  /**
   * Record offsets of every packet of the stream in this segment, read from its offsets
   * section (once; later calls share it). An empty list when the stream has no packets
   * here; null when the file cannot tell (version 1, a stream whose offsets did not
   * ascend, or a sidecar replaced since it was opened): read the segment sequentially.
   * @throws CamtapError CAMTAP_ERR_INDEX when the section is truncated or fails its CRC.
   */
  offsets(streamId: string): Promise<StreamOffsets | null> {
    const s = this.#streams.get(streamId);
    if (!s) return Promise.resolve(this.version >= 2 ? EMPTY_OFFSETS : null);
    if (this.version < 2 || s.sectionBytes === 0) return Promise.resolve(null);
    s.offsets ??= this.#readSection(s);
    // Each caller gets its own cursor over the shared data.
    return s.offsets.then((o) => (o === null ? null : o.view()));
  }

  async #readSection(s: StreamMeta): Promise<StreamOffsets | null> {
    const file = this.#file;
    if (this.#whole !== null) return decodeSection(this.#whole.subarray(s.sectionAt, s.sectionAt + s.sectionBytes), file, s);
    let fh: fs.promises.FileHandle;
    try {
      fh = await fs.promises.open(file, 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw indexError(file, `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, e);
    }
    try {
      const st = await fh.stat();
      // Replaced since opened (camtap reindex): its sections may sit elsewhere. The segment is read sequentially instead.
      if (!sameFile(this.#ident, { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs })) return null;
      return await this.#readSectionFrom(fh, s, null);
    } finally {
      fh.close().catch(() => undefined);
    }
  }

  /** Reads and decodes a section from the open file (or from `head`, the file's first bytes, when they hold it). */
  async #readSectionFrom(fh: fs.promises.FileHandle, s: StreamMeta, head: Buffer | null): Promise<StreamOffsets> {
    const file = this.#file;
    const end = s.sectionAt + s.sectionBytes;
    // A copy out of the first read: the section must not keep that whole buffer alive.
    if (head !== null && end <= head.length) return decodeSection(Buffer.from(head.subarray(s.sectionAt, end)), file, s);
    const buf = ownBuffer(s.sectionBytes);
    let n: number;
    try {
      n = await readFully(fh, buf, s.sectionAt);
    } catch (e) {
      throw indexError(file, `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, e);
    }
    if (n !== s.sectionBytes) throw indexError(file, `offset ${s.sectionAt}: truncated offsets of stream ${s.summary.streamId}`);
    return decodeSection(buf, file, s);
  }

  #loaded(streamId: string): LoadedStream | null {
    const s = this.#streams.get(streamId);
    if (!s) return null;
    s.loaded ??= decodeEntries(this.#core, s);
    return s.loaded;
  }
}

/** Magic, version and the minimum size (the segment id is checked with the CRC, in parseCore). */
function checkHeader(b: Buffer, file: string): void {
  if (b.length < HEADER + 4) throw indexError(file, `${b.length} bytes, shorter than the ${HEADER + 4}-byte minimum`);
  if (b.readUInt32LE(0) !== MAGIC) throw indexError(file, `bad magic 0x${b.readUInt32BE(0).toString(16)} (expected "CTIX")`);
  const version = b.readUInt16LE(4);
  if (version !== 1 && version !== VERSION) throw indexError(file, `unsupported version ${version}`);
}

/** Checks the core's CRC and structure and reads its stream table; `fileSize` bounds the offsets sections. */
function parseCore(b: Buffer, coreSize: number, file: string, segmentId: number, version: number, fileSize: number): Map<string, StreamMeta> {
  const crcAt = coreSize - 4;
  const crc = crc32(b, crcAt);
  if (crc !== b.readUInt32LE(crcAt)) throw indexError(file, `checksum mismatch (stored 0x${b.readUInt32LE(crcAt).toString(16)}, computed 0x${crc.toString(16)})`);
  const headerSize = b.readUInt16LE(6);
  const id = b.readUInt32LE(8);
  if (id !== segmentId) throw indexError(file, `holds segment ${id}, expected ${segmentId}`);
  const nStreams = b.readUInt32LE(12);
  const fixed = version === 1 ? STREAM_FIXED_V1 : STREAM_FIXED;
  let p = headerSize;
  const need = (n: number, what: string): void => {
    if (p + n > crcAt) throw indexError(file, `offset ${p}: truncated ${what}`);
  };
  const metas: StreamMeta[] = [];
  for (let i = 0; i < nStreams; i++) {
    need(2, 'stream table');
    const idLen = b.readUInt16LE(p);
    need(pad4(2 + idLen) + fixed, 'stream table');
    const streamId = b.toString('utf8', p + 2, p + 2 + idLen);
    p += pad4(2 + idLen);
    const count = b.readUInt32LE(p);
    metas.push({
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
      entriesAt: 0,
      sectionAt: version === 1 ? 0 : b.readDoubleLE(p + 64),
      sectionBytes: version === 1 ? 0 : b.readUInt32LE(p + 72),
      loaded: null,
      offsets: null,
    });
    p += fixed;
  }
  const streams = new Map<string, StreamMeta>();
  let end = coreSize;
  for (const m of metas) {
    need(m.summary.entries * ENTRY, `entries of stream ${m.summary.streamId}`);
    m.entriesAt = p;
    p += m.summary.entries * ENTRY;
    if (m.sectionBytes > 0) {
      if (m.sectionAt !== end || m.sectionBytes % 4 !== 0) throw indexError(file, `offsets section of stream ${m.summary.streamId} at ${m.sectionAt} (${m.sectionBytes} bytes), expected at ${end}`);
      end += m.sectionBytes;
    }
    streams.set(m.summary.streamId, m);
  }
  if (p !== crcAt) throw indexError(file, `offset ${p}: ${crcAt - p} unexpected bytes before the checksum`);
  if (version >= 2 && end !== fileSize) {
    throw indexError(file, end > fileSize ? `truncated: ${fileSize} bytes, the offsets sections end at ${end}` : `${fileSize - end} unexpected bytes after the offsets sections`);
  }
  return streams;
}

function decodeEntries(b: Buffer, m: StreamMeta): LoadedStream {
  const count = m.summary.entries;
  const ts: bigint[] = new Array<bigint>(count);
  const seq = new Float64Array(count);
  const off = new Float64Array(count);
  const key = new Uint8Array(count);
  let p = m.entriesAt;
  for (let i = 0; i < count; i++) {
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
  for (let i = 0; i < count; i++) {
    if (key[i]) keyIdx.push(i);
    if (byTime(i, firstIdx) < 0) firstIdx = i;
  }
  keyIdx.sort(byTime);
  return { ts, seq, off, key, keyIdx, firstIdx };
}

/** Checks one offsets section (layout in the module comment) and wraps it (the varints stay as they are). */
function decodeSection(buf: Buffer, file: string, s: StreamMeta): StreamOffsets {
  const what = `offsets of stream ${s.summary.streamId} (at ${s.sectionAt})`;
  const ok = buf.length >= SECTION_HEAD + 4;
  const n = ok ? buf.readUInt32LE(0) : -1;
  const m = ok ? buf.readUInt32LE(4) : -1;
  const vBytes = ok ? buf.readUInt32LE(8) : -1;
  const vAt = SECTION_HEAD + CHECKPOINT * m;
  if (!ok || vAt + pad4(vBytes) + 4 !== buf.length) throw indexError(file, `${what}: ${buf.length} bytes do not hold ${m} checkpoints and ${vBytes} bytes of offsets`);
  const crcAt = buf.length - 4;
  const crc = crc32(buf, crcAt);
  if (crc !== buf.readUInt32LE(crcAt)) throw indexError(file, `${what}: checksum mismatch (stored 0x${buf.readUInt32LE(crcAt).toString(16)}, computed 0x${crc.toString(16)})`);
  if (n !== s.summary.packets) throw indexError(file, `${what}: ${n} offsets for ${s.summary.packets} packets`);
  if (m !== Math.ceil(n / CP_EVERY)) throw indexError(file, `${what}: ${m} checkpoints for ${n} offsets`);
  const cpOff = new Float64Array(m);
  const cpPos = new Uint32Array(m);
  for (let k = 0; k < m; k++) {
    cpOff[k] = buf.readDoubleLE(SECTION_HEAD + CHECKPOINT * k);
    cpPos[k] = buf.readUInt32LE(SECTION_HEAD + CHECKPOINT * k + 8);
    if (cpPos[k]! > vBytes || (k > 0 && (cpPos[k]! < cpPos[k - 1]! || !(cpOff[k]! > cpOff[k - 1]!)))) throw indexError(file, `${what}: checkpoint ${k} out of order`);
  }
  return new StreamOffsets(n, cpOff, cpPos, new Uint8Array(buf.buffer, buf.byteOffset + vAt, vBytes));
}

function entryAt(s: LoadedStream, i: number): IndexEntry {
  return { tsNs: s.ts[i]!, extSeq: s.seq[i]!, offset: s.off[i]!, keyframe: s.key[i] === FLAG_KEYFRAME };
}
