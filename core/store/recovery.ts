/**
 * Crash recovery for camtap's own segments: a small pcapng block walker over the format
 * core/wire/pcapng-writer.ts writes (SHB, IDB, EPB, little-endian). It is not a general
 * reader (core/wire/capture-file.ts is): it only finds where the last complete block
 * ends and counts packets and their time range, so a segment's info can always be
 * derived from the pcapng itself.
 */
import * as fs from 'node:fs';
import { BLOCK_EPB, BLOCK_IDB, BLOCK_SHB, BYTE_ORDER_MAGIC } from '../wire/pcapng-writer.js';

/** What a walk over a segment file found. */
export interface SegmentScan {
  /** File size at the time of the walk. */
  fileBytes: number;
  /** End of the last complete block: everything from here on is a torn tail. */
  validBytes: number;
  packets: number;
  /** Earliest and latest packet time (ns since epoch) among complete EPBs. */
  firstTsNs: bigint | null;
  lastTsNs: bigint | null;
  /** Why the walk stopped before the end of the file, when it did. */
  stopReason: string | null;
}

const READ_CHUNK = 1 << 20;
const OPT_IF_TSRESOL = 9;

/**
 * Sequential reader over a file that keeps one chunk in memory; `view(pos, n)` returns
 * the n bytes at pos (re-reading from pos when they are not in the chunk).
 */
class ChunkReader {
  readonly #fd: number;
  readonly #size: number;
  #buf: Buffer = Buffer.alloc(READ_CHUNK);
  #start = 0;
  #len = 0;

  constructor(fd: number, size: number) {
    this.#fd = fd;
    this.#size = size;
  }

  /** Bytes at [pos, pos+n), or null when the file ends first. */
  view(pos: number, n: number): Buffer | null {
    if (pos + n > this.#size) return null;
    if (pos < this.#start || pos + n > this.#start + this.#len) {
      if (n > this.#buf.length) this.#buf = Buffer.alloc(n);
      this.#start = pos;
      this.#len = 0;
      const want = Math.min(this.#buf.length, this.#size - pos);
      while (this.#len < want) {
        const got = fs.readSync(this.#fd, this.#buf, this.#len, want - this.#len, pos + this.#len);
        if (got === 0) break;
        this.#len += got;
      }
      if (this.#len < n) return null;
    }
    const o = pos - this.#start;
    return this.#buf.subarray(o, o + n);
  }
}

/** Units per second from an if_tsresol value (§4.2): MSB clear = 10^-n, set = 2^-n. */
function tsUnitsPerSecond(v: number): bigint {
  return v & 0x80 ? 1n << BigInt(v & 0x7f) : 10n ** BigInt(v);
}

/** if_tsresol of an IDB body (options start 16 bytes into the block); default 10^-6 (§4.2). */
function idbTsResolution(block: Buffer): bigint {
  let p = 16;
  const end = block.length - 4;
  while (p + 4 <= end) {
    const code = block.readUInt16LE(p);
    const len = block.readUInt16LE(p + 2);
    if (code === 0) break;
    if (code === OPT_IF_TSRESOL && len >= 1 && p + 5 <= end) return tsUnitsPerSecond(block[p + 4]!);
    p += 4 + ((len + 3) & ~3);
  }
  return 1_000_000n;
}

/**
 * Walks the blocks of a segment from the start and stops at the first one that is not
 * complete and consistent (header past the end of the file, length not a multiple of 4
 * or below the minimum, trailing length different from the leading one, EPB whose
 * captured length does not fit, unknown interface). A crash mid-write leaves exactly
 * such a tail; the walk never throws for bad content, only for I/O errors.
 */
export function scanSegment(path: string): SegmentScan {
  const fd = fs.openSync(path, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const r = new ChunkReader(fd, size);
    let pos = 0;
    let packets = 0;
    let first: bigint | null = null;
    let last: bigint | null = null;
    let stopReason: string | null = null;
    // Interface resolutions of the current section (interface ids restart at each SHB).
    let ifRes: bigint[] = [];
    while (pos < size) {
      const head = r.view(pos, 8);
      if (!head) {
        stopReason = 'block header cut short';
        break;
      }
      const type = head.readUInt32LE(0);
      const len = head.readUInt32LE(4);
      if (pos === 0 && type !== BLOCK_SHB) {
        stopReason = 'no section header block at offset 0';
        break;
      }
      if (len < 12 || len % 4 !== 0) {
        stopReason = `bad block length ${len}`;
        break;
      }
      if (pos + len > size) {
        stopReason = `block of ${len} bytes cut short`;
        break;
      }
      const block = r.view(pos, len);
      if (!block || block.readUInt32LE(len - 4) !== len) {
        stopReason = 'trailing block length differs';
        break;
      }
      if (type === BLOCK_SHB) {
        if (len < 28 || block.readUInt32LE(8) !== BYTE_ORDER_MAGIC) {
          stopReason = 'bad section header block';
          break;
        }
        ifRes = [];
      } else if (type === BLOCK_IDB) {
        if (len < 20) {
          stopReason = 'bad interface description block';
          break;
        }
        ifRes.push(idbTsResolution(block));
      } else if (type === BLOCK_EPB) {
        if (len < 32) {
          stopReason = 'bad enhanced packet block';
          break;
        }
        const ifId = block.readUInt32LE(8);
        const capLen = block.readUInt32LE(20);
        const res = ifRes[ifId];
        if (res === undefined || 28 + capLen > len - 4) {
          stopReason = res === undefined ? `packet on undeclared interface ${ifId}` : 'captured length exceeds block';
          break;
        }
        const units = (BigInt(block.readUInt32LE(12)) << 32n) | BigInt(block.readUInt32LE(16));
        const ns = res === 1_000_000_000n ? units : (units * 1_000_000_000n) / res;
        if (first === null || ns < first) first = ns;
        if (last === null || ns > last) last = ns;
        packets++;
      }
      // Other block types (our writer makes none) are kept as complete blocks.
      pos += len;
    }
    return { fileBytes: size, validBytes: pos, packets, firstTsNs: first, lastTsNs: last, stopReason };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Cuts a segment file back to its last complete block (truncate + fsync) and returns
 * the scan of what remains. `cutBytes` is what was removed.
 */
export function cutTornTail(path: string): SegmentScan & { cutBytes: number } {
  const scan = scanSegment(path);
  const cutBytes = scan.fileBytes - scan.validBytes;
  if (cutBytes > 0) {
    const fd = fs.openSync(path, 'r+');
    try {
      fs.ftruncateSync(fd, scan.validBytes);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }
  return { ...scan, fileBytes: scan.validBytes, cutBytes };
}
