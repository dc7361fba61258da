/**
 * Capture file reading: classic pcap (draft-ietf-opsawg-pcap) and pcapng
 * (draft-ietf-opsawg-pcapng), incremental and allocation-free per record.
 *
 * Three layers:
 * - {@link CaptureParser}: a synchronous push parser. Feed it chunks in file order; it
 *   calls back once per packet record with one reused {@link CaptureRecord} whose `buf`
 *   points into the chunk (or into the parser's carry-over buffer when a record
 *   straddled two chunks). Bad input gives a {@link CamtapError} naming the file and the
 *   byte offset; every good record before it has been delivered by then. With `resync`
 *   the parser skips the bad bytes to the next plausible record instead and keeps one
 *   error per skipped range.
 * - {@link readCaptureFile}: a whole file (or a byte range of it) in large positional
 *   reads into one reused buffer.
 * - {@link CaptureFileReader}: random access by record offset for the query engine.
 *
 * pcapng interface ids are numbered across the whole file (the first IDB of the second
 * section gets the id after the last IDB of the first section), as Wireshark does.
 */
import { open, type FileHandle } from 'node:fs/promises';
import type { TapFrame } from '../contracts/frame.js';
import { CamtapError } from '../errors.js';

/** One packet record of a capture file. Reused for every record: copy what must outlive the callback. */
export interface CaptureRecord extends TapFrame {
  /** Byte offset of this record (pcap record header / pcapng block start) in the file. */
  fileOffset: number;
  /** Total bytes of the record (pcap: 16 + caplen) or block (pcapng: block total length). */
  recordLen: number;
  /** pcapng interface id (file-wide numbering); 0 for pcap. */
  interfaceId: number;
}

/** An interface of a capture: the pcap file header, or one pcapng Interface Description Block. */
export interface CaptureInterface {
  id: number;
  linkType: number;
  /** Snap length; 0 means "no limit" (pcapng §4.2). */
  snapLen: number;
  /** Nanoseconds per timestamp tick as a float, e.g. 1000 for microseconds. */
  tsResolNs: number;
  /** pcapng if_name, null when absent (always null for pcap). */
  name: string | null;
}

export type CaptureFormat = 'pcap' | 'pcapng';

/** pcap file header magic (pcap §4): microsecond and nanosecond timestamps. */
const PCAP_MAGIC_US = 0xa1b2c3d4;
const PCAP_MAGIC_NS = 0xa1b23c4d;
const PCAP_FILE_HEADER = 24;
const PCAP_RECORD_HEADER = 16;

/** pcapng block types (pcapng §10.1). */
const BT_SHB = 0x0a0d0d0a;
const BT_IDB = 0x00000001;
const BT_PB = 0x00000002; // obsolete Packet Block (Appendix A)
const BT_SPB = 0x00000003;
const BT_NRB = 0x00000004;
const BT_ISB = 0x00000005;
const BT_EPB = 0x00000006;
const BT_JOURNAL = 0x00000009;
const BT_DSB = 0x0000000a;
const BT_CB = 0x00000bad;
const BT_CB_NOCOPY = 0x40000bad;
const BYTE_ORDER_MAGIC = 0x1a2b3c4d;
const BYTE_ORDER_MAGIC_SWAPPED = 0x4d3c2b1a;

/** IDB option codes (pcapng §4.2). */
const OPT_ENDOFOPT = 0;
const IF_NAME = 2;
const IF_TSRESOL = 9;
const IF_TSOFFSET = 14;

/**
 * Largest packet any capture tool writes by default (libpcap MAXIMUM_SNAPLEN). A record
 * claiming more than max(snaplen, this) is garbage, not a jumbo frame.
 */
const MAX_PACKET = 262144;
/** Largest block of any kind we buffer; beyond it the length field is garbage. */
const MAX_BLOCK = 16 * 1024 * 1024;
/** Plausible-record window for resync: timestamps within a day of the last good record. */
const RESYNC_TS_WINDOW_S = 86400;
/** In resync mode, grow the carry-over buffer by at least this much at a time. */
const RESYNC_STEP = 65536;

const TWO32 = 4294967296;
const NS_PER_S = 1_000_000_000;
const EMPTY = Buffer.alloc(0);

/** The flyweight record: one monomorphic object per parser. */
class FlyRecord implements CaptureRecord {
  tapId = 0;
  tsSec = 0;
  tsNsec = 0;
  linkType = 0;
  buf: Buffer = EMPTY;
  off = 0;
  capLen = 0;
  origLen = 0;
  fileOffset = 0;
  recordLen = 0;
  interfaceId = 0;
}

/** Per-interface state, with the timestamp conversion worked out once per IDB. */
interface Iface {
  pub: CaptureInterface;
  /** File offset of the IDB (-1 for pcap): an IDB met again after a seek is not added twice. */
  at: number;
  linkType: number;
  snapLen: number;
  maxCap: number;
  /** Ticks per second. */
  tps: number;
  /** nsec = remainder * nsMul when tps divides 1e9 (10^-k, k <= 9). */
  nsMul: number;
  /** Ticks per second as a BigInt when the float path cannot be exact (finer than 2^-23 s or 10^-9 s); 0n otherwise. */
  big: bigint;
  /** if_tsoffset (§4.2 option 14), whole seconds added to every timestamp. */
  tsOffset: number;
}

interface Section {
  start: number;
  le: boolean;
  ifaces: Iface[];
}

/** Thrown inside the parser when a mid-file start meets an IDB or SHB it cannot place; readers walk the prefix and retry. */
class NeedInterfaces extends Error {
  constructor(readonly at: number) {
    super(`interface descriptions needed before offset ${at}`);
  }
}

function hex32(v: number): string {
  return '0x' + (v >>> 0).toString(16).padStart(8, '0');
}

function knownBlockType(t: number): boolean {
  return (
    t === BT_EPB || t === BT_IDB || t === BT_SHB || t === BT_SPB || t === BT_PB || t === BT_NRB || t === BT_ISB ||
    t === BT_JOURNAL || t === BT_DSB || t === BT_CB || t === BT_CB_NOCOPY
  );
}

/**
 * Incremental parser: feed chunks, get records synchronously. ONE CaptureRecord object
 * is reused for every record (flyweight): its buf/off point into the chunk (or into an
 * internal carry-over buffer when a record straddled two chunks).
 */
export class CaptureParser {
  readonly #file: string;
  readonly #resync: boolean;
  readonly #rec = new FlyRecord();

  #format: CaptureFormat | null = null;
  #le = true;
  /** pcap: file header parsed. */
  #pcapHeader = false;
  #pcapIface: Iface | null = null;
  #pcapNsMul = 1000;
  #pcapFracLimit = 1_000_000;

  readonly #ifaces: Iface[] = [];
  readonly #pub: CaptureInterface[] = [];
  readonly #sections: Section[] = [];
  #section: Section | null = null;
  /** True while every IDB/SHB before the current position is known (false after a seek past what was walked). */
  #complete = true;
  /** Highest file offset up to which interface knowledge was complete when last recorded. */
  #knownTo = 0;

  /** File offset of the next byte pushed. */
  #inEnd: number;
  #pos: number;
  #carry: Buffer = EMPTY;
  #carryLen = 0;
  #carryBase = 0;
  /** Bytes needed from the stop position to make progress (set by #run when it stops short). */
  #need = 0;
  #pushed = 0;
  #seeked = false;

  #records = 0;
  readonly #errors: CamtapError[] = [];
  #failed: CamtapError | null = null;
  #cb: (r: CaptureRecord) => void = () => {};
  #stopped = false;
  #silent = false;
  #headersOnly = false;
  #headersDone = false;
  /** Largest plausible packet block: the largest snap length + EPB overhead + room for options. */
  #maxPacketBlock = MAX_PACKET + 32 + RESYNC_STEP;

  /** Resync state: scanning for a plausible record since #scanStart. */
  #scanning = false;
  #scanStart = 0;
  #scanWhat = '';
  #scanReason = '';
  #lastTs = -1;

  constructor(opts: { file: string; tapId?: number; resync?: boolean; baseOffset?: number }) {
    this.#file = opts.file;
    this.#resync = opts.resync ?? false;
    this.#rec.tapId = opts.tapId ?? 0;
    this.#inEnd = this.#pos = opts.baseOffset ?? 0;
  }

  get format(): CaptureFormat | null {
    return this.#format;
  }
  get interfaces(): CaptureInterface[] {
    return this.#pub;
  }
  /** File offset of the next unparsed byte. */
  get offset(): number {
    return this.#pos;
  }
  get records(): number {
    return this.#records;
  }
  get errors(): CamtapError[] {
    return this.#errors;
  }
  /** Bytes still needed to complete the header or record the parser is waiting on (0 when between records). */
  get needBytes(): number {
    return this.#carryLen > 0 ? Math.max(0, this.#need - this.#carryLen) : 0;
  }
  /** File offset up to which every interface description is known. */
  get interfacesKnownTo(): number {
    return this.#complete ? Math.max(this.#knownTo, this.#pos) : this.#knownTo;
  }

  /** Stops the current {@link push} after the record being delivered; {@link offset} is just past it. Resume with {@link seek}. */
  stop(): void {
    this.#stopped = true;
  }

  /**
   * Continues at `offset` (a record/block start) with the format and interfaces learned
   * so far; the next pushed byte is the byte at `offset`. Drops any carried-over bytes.
   */
  seek(offset: number): void {
    if (this.#complete) this.#knownTo = Math.max(this.#knownTo, this.#pos);
    this.#complete = offset <= this.#knownTo;
    this.#inEnd = this.#pos = offset;
    this.#carryLen = 0;
    this.#need = 0;
    this.#stopped = false;
    this.#scanning = false;
    this.#failed = null;
    this.#headersDone = false;
    this.#seeked = true;
    if (this.#format === 'pcapng' && this.#sections.length > 0) {
      let s = this.#sections[0]!;
      for (const c of this.#sections) if (c.start <= offset) s = c;
      this.#section = s;
      this.#le = s.le;
    }
  }

  /**
   * Parses the file header (pcap) or the SHB and the blocks before the first packet
   * (pcapng) from `chunk`, the file's bytes from {@link offset}. Returns true once a
   * packet record is reached ({@link offset} then is its start and the rest of the chunk
   * is dropped), false when more bytes are needed.
   */
  readHeaders(chunk: Buffer): boolean {
    this.#headersOnly = true;
    this.#headersDone = false;
    try {
      this.push(chunk, () => {});
    } finally {
      this.#headersOnly = false;
    }
    return this.#headersDone;
  }

  /** Parses `chunk` learning interfaces only: records are neither delivered nor counted, resync errors not kept. */
  walk(chunk: Buffer): void {
    const cb = this.#cb;
    this.#silent = true;
    try {
      this.push(chunk, cb);
    } finally {
      this.#silent = false;
    }
  }

  /** Parses `chunk` (the file's next bytes); calls `onRecord` for each complete packet record. Throws CamtapError on bad input unless resync is on. */
  push(chunk: Buffer, onRecord: (r: CaptureRecord) => void): void {
    if (this.#failed) throw this.#failed;
    this.#cb = onRecord;
    this.#stopped = false;
    this.#headersDone = false;
    const n = chunk.length;
    if (n === 0) return;
    this.#pushed += n;
    const chunkBase = this.#inEnd;
    this.#inEnd += n;
    let c = 0;
    if (this.#carryLen > 0) {
      // Complete the record that straddles the boundary inside the carry buffer, then go
      // back to parsing in place in the chunk.
      for (;;) {
        let take = this.#need - this.#carryLen;
        if (this.#scanning) take = Math.max(take, RESYNC_STEP);
        take = Math.min(Math.max(take, 1), n - c);
        this.#appendCarry(chunk, c, take);
        c += take;
        if (this.#carryLen < this.#need && c === n) {
          this.#pos = this.#carryBase;
          return;
        }
        const stop = this.#run(this.#carry, 0, this.#carryLen, this.#carryBase, false);
        if (this.#stopped || this.#headersDone) {
          this.#pos = this.#carryBase + stop;
          this.#carryLen = 0;
          return;
        }
        if (stop === this.#carryLen) {
          this.#carryLen = 0;
          break;
        }
        this.#carry.copyWithin(0, stop, this.#carryLen);
        this.#carryBase += stop;
        this.#carryLen -= stop;
        if (c === n) {
          this.#pos = this.#carryBase;
          return;
        }
      }
    }
    const stop = this.#run(chunk, c, n, chunkBase, false);
    this.#pos = chunkBase + stop;
    if (this.#stopped || this.#headersDone) return;
    if (stop < n) {
      this.#carryBase = chunkBase + stop;
      this.#appendCarry(chunk, stop, n - stop);
    }
  }

  /**
   * Ends the input. Throws CAMTAP_ERR_CAPTURE_EMPTY when nothing was pushed, and
   * CAMTAP_ERR_CAPTURE_TRUNCATED (naming file and offset) when the input ended inside a
   * header or record; with resync on, a truncated tail is added to {@link errors} instead.
   * Records that were waiting on resync look-ahead are delivered to `onRecord` (default:
   * the callback of the last push).
   */
  end(onRecord?: (r: CaptureRecord) => void): void {
    if (this.#failed) return;
    if (this.#pushed === 0 && !this.#seeked) {
      throw this.#fail(new CamtapError('CAMTAP_ERR_CAPTURE_EMPTY', { file: this.#file, offset: 0 }));
    }
    if (onRecord) this.#cb = onRecord;
    let stop = 0;
    if (this.#carryLen > 0) {
      stop = this.#run(this.#carry, 0, this.#carryLen, this.#carryBase, true);
      this.#pos = this.#carryBase + stop;
    }
    if (this.#scanning) {
      // Garbage up to the end of the input.
      this.#resynced(this.#inEnd);
      this.#pos = this.#inEnd;
      this.#carryLen = 0;
      return;
    }
    const left = this.#carryLen - stop;
    this.#carryLen = 0;
    if (left > 0) {
      const inHeader = this.#format === null || (this.#format === 'pcap' ? !this.#pcapHeader : this.#section === null);
      const what = inHeader ? 'file header' : this.#format === 'pcap' ? (left < PCAP_RECORD_HEADER ? 'record header' : 'record') : 'block';
      const e = new CamtapError('CAMTAP_ERR_CAPTURE_TRUNCATED', {
        file: this.#file,
        offset: this.#pos,
        what,
        reason: `needs ${this.#need} bytes, ${left} left`,
      });
      // Without a file header nothing can be read, resync or not.
      if (this.#resync && !inHeader) this.#errors.push(e);
      else throw this.#fail(e);
    }
  }

  #fail(e: CamtapError): CamtapError {
    this.#failed = e;
    return e;
  }

  #appendCarry(src: Buffer, from: number, len: number): void {
    const need = this.#carryLen + len;
    if (need > this.#carry.length) {
      const next = Buffer.allocUnsafe(Math.max(need, this.#carry.length * 2, 65536));
      this.#carry.copy(next, 0, 0, this.#carryLen);
      this.#carry = next;
    }
    src.copy(this.#carry, this.#carryLen, from, from + len);
    this.#carryLen = need;
  }

  #u32(b: Buffer, o: number): number {
    return this.#le
      ? (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16)) + b[o + 3]! * 16777216
      : (b[o + 3]! | (b[o + 2]! << 8) | (b[o + 1]! << 16)) + b[o]! * 16777216;
  }

  #u16(b: Buffer, o: number): number {
    return this.#le ? b[o]! | (b[o + 1]! << 8) : (b[o]! << 8) | b[o + 1]!;
  }

  /**
   * A bad header at `p`. Without resync: throws (every record before was delivered).
   * With resync: starts scanning for the next plausible record; returns p + 1, where the scan begins.
   */
  #bad(p: number, base: number, what: string, reason: string): number {
    this.#pos = base + p;
    if (!this.#resync) {
      throw this.#fail(new CamtapError('CAMTAP_ERR_CAPTURE_RECORD', { file: this.#file, offset: base + p, what, reason }));
    }
    this.#scanning = true;
    this.#scanStart = base + p;
    this.#scanWhat = what;
    this.#scanReason = reason;
    return p + 1;
  }

  #resynced(at: number): void {
    this.#scanning = false;
    if (this.#silent) return;
    const length = at - this.#scanStart;
    const unit = this.#format === 'pcap' ? 'record' : 'block';
    this.#errors.push(
      new CamtapError('CAMTAP_ERR_CAPTURE_RECORD', {
        file: this.#file,
        offset: this.#scanStart,
        length,
        what: this.#scanWhat,
        reason: `${this.#scanReason}; skipped ${length} bytes to ${at < this.#inEnd ? `the next plausible ${unit} at offset ${at}` : 'the end of the input'}`,
      }),
    );
  }

  /**
   * Parses buf[p, end) whose byte i is at file offset base + i. Returns the index where it
   * stopped: `end`, or the start of an incomplete header/record (then #need says how many
   * bytes from there it needs), or after a record when stopped.
   */
  #run(buf: Buffer, p: number, end: number, base: number, eof: boolean): number {
    this.#need = 0;
    while (p < end) {
      if (this.#scanning) {
        p = this.#scan(buf, p, end, base, eof);
        if (this.#scanning) return p;
        continue;
      }
      if (this.#format === 'pcap' && this.#pcapHeader) {
        // pcap §5 record header: ts_sec, ts_usec|ts_nsec, caplen, len.
        if (this.#headersOnly) {
          this.#headersDone = true;
          return p;
        }
        if (end - p < PCAP_RECORD_HEADER) {
          this.#need = PCAP_RECORD_HEADER;
          return p;
        }
        const iface = this.#pcapIface!;
        const caplen = this.#u32(buf, p + 8);
        if (caplen > iface.maxCap) {
          p = this.#bad(p, base, 'record header', `captured length ${caplen} exceeds ${iface.maxCap}`);
          continue;
        }
        const total = PCAP_RECORD_HEADER + caplen;
        if (end - p < total) {
          this.#need = total;
          return p;
        }
        let sec = this.#u32(buf, p);
        let frac = this.#u32(buf, p + 4);
        if (frac >= this.#pcapFracLimit) {
          // Not something a writer should produce; carry instead of breaking the 0..1e9 contract.
          const carry = Math.floor(frac / this.#pcapFracLimit);
          sec += carry;
          frac -= carry * this.#pcapFracLimit;
        }
        const r = this.#rec;
        r.tsSec = sec;
        r.tsNsec = frac * this.#pcapNsMul;
        r.linkType = iface.linkType;
        r.buf = buf;
        r.off = p + PCAP_RECORD_HEADER;
        r.capLen = caplen;
        r.origLen = this.#u32(buf, p + 12);
        r.fileOffset = base + p;
        r.recordLen = total;
        r.interfaceId = 0;
        this.#lastTs = sec;
        p += total;
        if (!this.#silent) {
          this.#records++;
          this.#cb(r);
          if (this.#stopped) return p;
        }
        continue;
      }
      if (this.#format === 'pcapng') {
        const s = this.#block(buf, p, end, base);
        if (s < 0) return p;
        p = s;
        if (this.#stopped || this.#headersDone) return p;
        continue;
      }
      if (this.#format === null) {
        if (end - p < 4) {
          this.#need = 4;
          return p;
        }
        const le = buf.readUInt32LE(p);
        const be = buf.readUInt32BE(p);
        if (le === BT_SHB) {
          this.#format = 'pcapng';
          continue;
        }
        if (le === PCAP_MAGIC_US || le === PCAP_MAGIC_NS) this.#le = true;
        else if (be === PCAP_MAGIC_US || be === PCAP_MAGIC_NS) this.#le = false;
        else {
          this.#pos = base + p;
          throw this.#fail(new CamtapError('CAMTAP_ERR_CAPTURE_MAGIC', { file: this.#file, offset: base + p, magic: hex32(be) }));
        }
        this.#format = 'pcap';
        const nsec = (this.#le ? le : be) === PCAP_MAGIC_NS;
        this.#pcapNsMul = nsec ? 1 : 1000;
        this.#pcapFracLimit = nsec ? NS_PER_S : 1_000_000;
        continue;
      }
      // pcap file header (pcap §4): magic, major, minor, reserved1, reserved2, snaplen, linktype.
      if (end - p < PCAP_FILE_HEADER) {
        this.#need = PCAP_FILE_HEADER;
        return p;
      }
      const snapLen = this.#u32(buf, p + 16);
      // The upper bits of the link type field carry the FCS length (pcap §4, "LinkType and additional information").
      const linkType = this.#u32(buf, p + 20) & 0x03ffffff;
      const iface = makeIface(0, -1, linkType, snapLen, null, this.#pcapNsMul === 1 ? NS_PER_S : 1_000_000, 0);
      this.#pcapIface = iface;
      this.#ifaces.push(iface);
      this.#pub.push(iface.pub);
      this.#pcapHeader = true;
      p += PCAP_FILE_HEADER;
    }
    return p;
  }

  /**
   * One pcapng block at buf[p]. Returns the index after it; -1 when more bytes are
   * needed (#need set); p + 1 after a bad header with resync on (scanning from there).
   */
  #block(buf: Buffer, p: number, end: number, base: number): number {
    const avail = end - p;
    if (avail < 12) {
      this.#need = 12;
      return -1;
    }
    const type = this.#u32(buf, p);
    const packet = type === BT_EPB || type === BT_SPB || type === BT_PB;
    if (packet && this.#headersOnly) {
      this.#headersDone = true;
      return p;
    }
    let len: number;
    let le = this.#le;
    if (type === BT_SHB) {
      // §4.1: the byte-order magic decides how everything in the section is read, the SHB's own length included.
      const bom = buf.readUInt32LE(p + 8);
      if (bom === BYTE_ORDER_MAGIC) le = true;
      else if (bom === BYTE_ORDER_MAGIC_SWAPPED) le = false;
      else return this.#bad(p, base, 'section header', `byte-order magic ${hex32(buf.readUInt32BE(p + 8))}`);
      len = le ? buf.readUInt32LE(p + 4) : buf.readUInt32BE(p + 4);
    } else {
      len = this.#u32(buf, p + 4);
    }
    if (len < 12 || (len & 3) !== 0 || len > (packet ? this.#maxPacketBlock : MAX_BLOCK)) {
      return this.#bad(p, base, 'block', `block type ${hex32(type)} has total length ${len}`);
    }
    if (avail < len) {
      this.#need = len;
      return -1;
    }
    const trail = le ? buf.readUInt32LE(p + len - 4) : buf.readUInt32BE(p + len - 4);
    if (trail !== len) {
      return this.#bad(p, base, 'block', `block type ${hex32(type)}: trailing length ${trail} differs from leading length ${len}`);
    }
    if (packet) return this.#packetBlock(buf, p, len, type, base);
    const at = base + p;
    if (type === BT_SHB) {
      if (!this.#complete) throw new NeedInterfaces(at);
      if (len < 28) return this.#bad(p, base, 'section header', `section header of ${len} bytes`);
      const major = le ? buf.readUInt16LE(p + 12) : buf.readUInt16BE(p + 12);
      if (major !== 1) return this.#bad(p, base, 'section header', `version ${major} (only 1.x is defined)`);
      let s = this.#sections.find((x) => x.start === at);
      if (!s) {
        s = { start: at, le, ifaces: [] };
        this.#sections.push(s);
      }
      this.#section = s;
      this.#le = le;
    } else if (this.#section === null) {
      return this.#bad(p, base, 'block', `block type ${hex32(type)} before any section header`);
    } else if (type === BT_IDB) {
      if (!this.#complete) throw new NeedInterfaces(at);
      if (len < 20) return this.#bad(p, base, 'block', `interface description of ${len} bytes`);
      // Met again after a seek backwards: already known.
      if (!this.#ifaces.some((f) => f.at === at)) this.#addIdb(buf, p, len, at);
    }
    // NRB, ISB, DSB, custom and unknown blocks: skipped by their length (§3.1).
    return p + len;
  }

  #packetBlock(buf: Buffer, p: number, len: number, type: number, base: number): number {
    const section = this.#section!;
    let ifid: number;
    let caplen: number;
    let origLen: number;
    let hi = 0;
    let lo = 0;
    let dataOff: number;
    if (type === BT_EPB || type === BT_PB) {
      // §4.3 EPB: interface id (32), ts high, ts low, captured length, original length, data, options.
      // Appendix A, obsolete PB: interface id (16), drops count (16), then the same.
      if (len < 32) return this.#bad(p, base, 'block', `packet block of ${len} bytes`);
      ifid = type === BT_EPB ? this.#u32(buf, p + 8) : this.#u16(buf, p + 8);
      hi = this.#u32(buf, p + 12);
      lo = this.#u32(buf, p + 16);
      caplen = this.#u32(buf, p + 20);
      origLen = this.#u32(buf, p + 24);
      dataOff = p + 28;
      if (caplen > len - 32) return this.#bad(p, base, 'block', `captured length ${caplen} does not fit a ${len}-byte block`);
    } else {
      // §4.4 Simple Packet Block: original length only; interface 0, no timestamp, captured = min(len, snaplen, room).
      if (len < 16) return this.#bad(p, base, 'block', `simple packet block of ${len} bytes`);
      ifid = 0;
      origLen = this.#u32(buf, p + 8);
      caplen = Math.min(origLen, len - 16);
      dataOff = p + 12;
    }
    const iface = section.ifaces[ifid];
    if (iface === undefined) {
      if (!this.#complete) throw new NeedInterfaces(base + p);
      return this.#bad(p, base, 'block', `interface id ${ifid} is not described in this section (${section.ifaces.length} interfaces)`);
    }
    if (type === BT_SPB && iface.snapLen > 0 && caplen > iface.snapLen) caplen = iface.snapLen;
    if (caplen > iface.maxCap) return this.#bad(p, base, 'block', `captured length ${caplen} exceeds ${iface.maxCap}`);
    const r = this.#rec;
    if (type === BT_SPB) {
      r.tsSec = 0;
      r.tsNsec = 0;
    } else {
      ticksToTime(iface, hi, lo, r);
      this.#lastTs = r.tsSec;
    }
    r.linkType = iface.linkType;
    r.buf = buf;
    r.off = dataOff;
    r.capLen = caplen;
    r.origLen = origLen;
    r.fileOffset = base + p;
    r.recordLen = len;
    r.interfaceId = iface.pub.id;
    if (!this.#silent) {
      this.#records++;
      this.#cb(r);
    }
    return p + len;
  }

  /** §4.2 Interface Description Block: link type, reserved, snaplen, options. */
  #addIdb(buf: Buffer, p: number, len: number, at: number): void {
    const linkType = this.#u16(buf, p + 8);
    const snapLen = this.#u32(buf, p + 12);
    let name: string | null = null;
    let tps = 1_000_000; // §4.2 if_tsresol default: 10^-6
    let tsOffset = 0;
    const optEnd = p + len - 4;
    for (let o = p + 16; o + 4 <= optEnd; ) {
      const code = this.#u16(buf, o);
      const olen = this.#u16(buf, o + 2);
      const v = o + 4;
      if (code === OPT_ENDOFOPT || v + olen > optEnd) break;
      if (code === IF_NAME) name = buf.toString('utf8', v, v + olen).replace(/\0+$/, '');
      else if (code === IF_TSRESOL && olen >= 1) {
        const r = buf[v]!;
        // MSB set: negative power of 2; clear: negative power of 10.
        tps = r & 0x80 ? 2 ** (r & 0x7f) : 10 ** r;
      } else if (code === IF_TSOFFSET && olen >= 8) {
        const hi = this.#le ? buf.readInt32LE(v + 4) : buf.readInt32BE(v);
        const lo = this.#le ? buf.readUInt32LE(v) : buf.readUInt32BE(v + 4);
        tsOffset = hi * TWO32 + lo;
      }
      o = v + ((olen + 3) & ~3);
    }
    const iface = makeIface(this.#ifaces.length, at, linkType, snapLen, name, tps, tsOffset);
    this.#ifaces.push(iface);
    this.#pub.push(iface.pub);
    this.#section!.ifaces.push(iface);
    this.#maxPacketBlock = Math.max(this.#maxPacketBlock, iface.maxCap + 32 + RESYNC_STEP);
  }

  /** Resync: looks for the first plausible record at or after p. */
  #scan(buf: Buffer, p: number, end: number, base: number, eof: boolean): number {
    for (let q = p; q < end; q++) {
      const v = this.#format === 'pcap' ? this.#plausiblePcap(buf, q, end, eof) : this.#plausibleBlock(buf, q, end, eof);
      if (v > 0) {
        this.#resynced(base + q);
        return q;
      }
      if (v < 0) return q;
    }
    return end;
  }

  /** 1 plausible, 0 not, -1 needs #need bytes from q. The record after it must be plausible too (or the input must end). */
  #plausiblePcap(buf: Buffer, q: number, end: number, eof: boolean): number {
    if (end - q < PCAP_RECORD_HEADER) {
      if (eof) return 0;
      this.#need = PCAP_RECORD_HEADER;
      return -1;
    }
    if (!this.#pcapHeaderPlausible(buf, q)) return 0;
    const next = q + PCAP_RECORD_HEADER + this.#u32(buf, q + 8);
    if (end - next < PCAP_RECORD_HEADER) {
      if (eof) return next <= end ? 1 : 0;
      this.#need = next + PCAP_RECORD_HEADER - q;
      return -1;
    }
    return this.#pcapHeaderPlausible(buf, next) ? 1 : 0;
  }

  #pcapHeaderPlausible(buf: Buffer, q: number): boolean {
    const iface = this.#pcapIface!;
    const caplen = this.#u32(buf, q + 8);
    const orig = this.#u32(buf, q + 12);
    const snap = iface.snapLen > 0 ? iface.snapLen : iface.maxCap;
    if (caplen > snap || orig < caplen || orig > iface.maxCap) return false;
    if (this.#u32(buf, q + 4) >= this.#pcapFracLimit) return false;
    return this.#lastTs < 0 || Math.abs(this.#u32(buf, q) - this.#lastTs) <= RESYNC_TS_WINDOW_S;
  }

  /** pcapng candidate: a known block type whose trailing length equals its leading length. */
  #plausibleBlock(buf: Buffer, q: number, end: number, eof: boolean): number {
    if (end - q < 12) {
      if (eof) return 0;
      this.#need = 12;
      return -1;
    }
    const type = this.#u32(buf, q);
    if (!knownBlockType(type)) return 0;
    let le = this.#le;
    if (type === BT_SHB) {
      const bom = buf.readUInt32LE(q + 8);
      if (bom === BYTE_ORDER_MAGIC) le = true;
      else if (bom === BYTE_ORDER_MAGIC_SWAPPED) le = false;
      else return 0;
    }
    const len = le ? buf.readUInt32LE(q + 4) : buf.readUInt32BE(q + 4);
    let maxLen = MAX_PACKET;
    for (const f of this.#ifaces) if (f.maxCap > maxLen) maxLen = f.maxCap;
    if (len < 12 || (len & 3) !== 0 || len > maxLen + RESYNC_STEP) return 0;
    if (end - q < len) {
      if (eof) return 0;
      this.#need = len;
      return -1;
    }
    if ((le ? buf.readUInt32LE(q + len - 4) : buf.readUInt32BE(q + len - 4)) !== len) return 0;
    if (type === BT_EPB) {
      const n = this.#section ? this.#section.ifaces.length : 0;
      if (len < 32 || this.#u32(buf, q + 8) >= n || this.#u32(buf, q + 20) > len - 32) return 0;
      const f = this.#section!.ifaces[this.#u32(buf, q + 8)]!;
      if (this.#lastTs >= 0) {
        const t = { tsSec: 0, tsNsec: 0 };
        ticksToTime(f, this.#u32(buf, q + 12), this.#u32(buf, q + 16), t);
        if (Math.abs(t.tsSec - this.#lastTs) > RESYNC_TS_WINDOW_S) return 0;
      }
    }
    return 1;
  }
}

function makeIface(id: number, at: number, linkType: number, snapLen: number, name: string | null, tps: number, tsOffset: number): Iface {
  // tps is 10^k or 2^k (§4.2 if_tsresol). Every 10^k and 2^k with k <= 9 divides 1e9;
  // 2^k up to 2^23 keeps remainder * 1e9 below 2^53; anything finer takes the BigInt path.
  let nsMul = 0;
  let big = 0n;
  if (Number.isInteger(tps) && tps >= 1 && tps <= 8388608) {
    if (NS_PER_S % tps === 0) nsMul = NS_PER_S / tps;
  } else {
    big = BigInt(Math.round(tps));
  }
  return {
    pub: { id, linkType, snapLen, tsResolNs: NS_PER_S / tps, name },
    at,
    linkType,
    snapLen,
    maxCap: Math.max(snapLen, MAX_PACKET),
    tps,
    nsMul,
    big,
    tsOffset,
  };
}

/**
 * 64-bit tick count hi * 2^32 + lo -> seconds + nanoseconds, exactly. The count is above
 * 2^53 at nanosecond resolution, so it is divided by the ticks-per-second in three
 * steps on pieces (32 + 16 + 16 bits) where every intermediate stays below 2^48.
 */
function ticksToTime(f: Iface, hi: number, lo: number, out: { tsSec: number; tsNsec: number }): void {
  if (f.big !== 0n) {
    const t = (BigInt(hi) << 32n) | BigInt(lo);
    out.tsSec = Number(t / f.big) + f.tsOffset;
    out.tsNsec = Number(((t % f.big) * 1_000_000_000n) / f.big);
    return;
  }
  const d = f.tps;
  const q1 = Math.floor(hi / d);
  let r = hi - q1 * d;
  let v = r * 65536 + (lo >>> 16);
  const q2 = Math.floor(v / d);
  r = v - q2 * d;
  v = r * 65536 + (lo & 0xffff);
  const q3 = Math.floor(v / d);
  r = v - q3 * d;
  out.tsSec = q1 * TWO32 + q2 * 65536 + q3 + f.tsOffset;
  out.tsNsec = f.nsMul > 0 ? r * f.nsMul : Math.floor((r * NS_PER_S) / d);
}

const DEFAULT_CHUNK = 4 * 1024 * 1024;
const HEADER_CHUNK = 65536;

async function openCapture(path: string): Promise<FileHandle> {
  try {
    return await open(path, 'r');
  } catch (e) {
    throw new CamtapError('CAMTAP_ERR_CAPTURE_OPEN', { file: path, reason: (e as Error).message }, { cause: e });
  }
}

/** Reads into `buf` until it is full or the file ends; returns the bytes read. */
async function readFully(fh: FileHandle, buf: Buffer, len: number, pos: number): Promise<number> {
  let got = 0;
  while (got < len) {
    const { bytesRead } = await fh.read(buf, got, len - got, pos + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got;
}

/** Feeds the parser the file's header region from offset 0 (pcap file header; pcapng SHB + blocks before the first packet). */
async function primeHeaders(fh: FileHandle, parser: CaptureParser, buf: Buffer, limit: number): Promise<void> {
  let pos = 0;
  for (;;) {
    const want = Math.min(buf.length, limit - pos);
    const n = want > 0 ? await readFully(fh, buf, want, pos) : 0;
    if (n === 0) {
      parser.end(); // throws EMPTY for a 0-byte file, TRUNCATED inside the header
      return;
    }
    if (parser.readHeaders(buf.subarray(0, n))) return;
    pos += n;
  }
}

/** A block needs an interface description that walking the file before it did not find. */
function interfaceNotFound(file: string, at: number): CamtapError {
  return new CamtapError('CAMTAP_ERR_CAPTURE_RECORD', { file, offset: at, what: 'block', reason: 'no interface description for it in the file before it' });
}

/** Learns the IDBs/SHBs between what the parser knows and `target` by walking the blocks there. */
async function walkInterfaces(fh: FileHandle, parser: CaptureParser, buf: Buffer, target: number): Promise<void> {
  let pos = parser.interfacesKnownTo;
  parser.seek(pos);
  while (pos < target) {
    const n = await readFully(fh, buf, Math.min(buf.length, target - pos), pos);
    if (n === 0) break;
    parser.walk(buf.subarray(0, n));
    pos += n;
  }
  parser.seek(target);
}

/**
 * Reads a whole file (or [startOffset, endOffset)) in large chunks (default 4 MiB) with
 * positional reads into one reused buffer; never loads the whole file.
 *
 * With resync off, a fatal error is thrown after every good record before it was
 * delivered to `onRecord`. With resync on, errors are collected and returned and parsing
 * continues. `startOffset` must be a record/block start; the file header (pcap) or the
 * section header and interface descriptions (pcapng) are read from the start first.
 */
export async function readCaptureFile(
  path: string,
  onRecord: (r: CaptureRecord) => void,
  opts: {
    tapId?: number;
    resync?: boolean;
    startOffset?: number;
    endOffset?: number;
    chunkSize?: number;
    signal?: AbortSignal;
    onProgress?: (bytesRead: number, totalBytes: number) => void;
  } = {},
): Promise<{ format: CaptureFormat; records: number; bytes: number; endOffset: number; interfaces: CaptureInterface[]; errors: CamtapError[] }> {
  const fh = await openCapture(path);
  try {
    const size = (await fh.stat()).size;
    const start = opts.startOffset ?? 0;
    const end = Math.min(opts.endOffset ?? size, size);
    const buf = Buffer.allocUnsafe(Math.max(4096, opts.chunkSize ?? DEFAULT_CHUNK));
    const parser = new CaptureParser({ file: path, tapId: opts.tapId, resync: opts.resync });
    if (start > 0) {
      await primeHeaders(fh, parser, buf, size);
      parser.seek(start);
    }
    let pos = start;
    let lastNeed = -1;
    while (pos < end) {
      if (opts.signal?.aborted) {
        throw new CamtapError('CAMTAP_ERR_INTERRUPTED', { reason: `reading ${path} stopped at offset ${parser.offset}` }, { cause: opts.signal.reason });
      }
      const n = await readFully(fh, buf, Math.min(buf.length, end - pos), pos);
      if (n === 0) break;
      try {
        parser.push(buf.subarray(0, n), onRecord);
        pos += n;
      } catch (e) {
        if (!(e instanceof NeedInterfaces)) throw e;
        if (e.at === lastNeed) throw interfaceNotFound(path, e.at);
        lastNeed = e.at;
        // An IDB appeared after the file's header region and before `start`: learn it, resume there.
        await walkInterfaces(fh, parser, buf, e.at);
        pos = e.at;
      }
      opts.onProgress?.(pos - start, end - start);
    }
    parser.end(onRecord); // throws EMPTY for a 0-byte file, TRUNCATED for a torn tail
    const format = parser.format;
    if (format === null) throw new CamtapError('CAMTAP_ERR_CAPTURE_EMPTY', { file: path, offset: 0 });
    return { format, records: parser.records, bytes: pos - start, endOffset: parser.offset, interfaces: parser.interfaces, errors: parser.errors };
  } finally {
    await fh.close();
  }
}

/**
 * Random access for the query engine: learns a file's format and interfaces once, then
 * reads records at known offsets. Files camtap writes itself get a new IDB when a new tap
 * appears, so an IDB can sit anywhere; when a read meets one it cannot place (or a
 * packet of an interface it has not seen), the blocks before it are walked once and the
 * result is kept. Operations run one at a time.
 */
export class CaptureFileReader {
  readonly #fh: FileHandle;
  readonly #path: string;
  readonly #parser: CaptureParser;
  #buf: Buffer;
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;
  readonly format: CaptureFormat;

  private constructor(path: string, fh: FileHandle, parser: CaptureParser, buf: Buffer) {
    this.#path = path;
    this.#fh = fh;
    this.#parser = parser;
    this.#buf = buf;
    this.format = parser.format!;
  }

  static async open(path: string): Promise<CaptureFileReader> {
    const fh = await openCapture(path);
    try {
      const parser = new CaptureParser({ file: path });
      const buf = Buffer.allocUnsafe(HEADER_CHUNK);
      await primeHeaders(fh, parser, buf, Number.MAX_SAFE_INTEGER);
      return new CaptureFileReader(path, fh, parser, buf);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  /** Interfaces learned so far (all of them before the furthest offset read). */
  interfaces(): CaptureInterface[] {
    return this.#parser.interfaces;
  }

  /**
   * Reads the one record at `offset` (a record/block start). Returns null if there is no
   * complete record there (end of the data, a torn tail, or a non-packet block). The
   * record is valid until the next call on this reader.
   */
  readAt(offset: number): Promise<CaptureRecord | null> {
    return this.#serial(async () => {
      let lastNeed = -1;
      for (;;) {
        try {
          return await this.#readOne(offset);
        } catch (e) {
          if (!(e instanceof NeedInterfaces)) throw e;
          if (e.at === lastNeed) throw interfaceNotFound(this.#path, e.at);
          lastNeed = e.at;
          await walkInterfaces(this.#fh, this.#parser, this.#buf, e.at);
        }
      }
    });
  }

  async #readOne(offset: number): Promise<CaptureRecord | null> {
    const p = this.#parser;
    p.seek(offset);
    let got: CaptureRecord | null = null;
    const cb = (r: CaptureRecord): void => {
      got = r;
      p.stop();
    };
    let pos = offset;
    let want = 2048;
    for (;;) {
      if (want > this.#buf.length) this.#buf = Buffer.allocUnsafe(want);
      const n = await readFully(this.#fh, this.#buf, want, pos);
      if (n === 0) return null;
      p.push(this.#buf.subarray(0, n), cb);
      if (got) return got;
      if (p.offset > offset) return null; // a non-packet block was there
      pos += n;
      want = Math.max(2048, p.needBytes);
    }
  }

  /**
   * Sequentially delivers records from `offset` until onRecord returns false or the end
   * (or endOffset). Returns where it stopped: the offset of the record onRecord refused
   * (so a later scan from there sees it again), or the end of the last complete record.
   * A torn record at the end of the data (a segment being written) is not an error.
   */
  scanFrom(
    offset: number,
    onRecord: (r: CaptureRecord) => boolean | void,
    opts: { endOffset?: number; chunkSize?: number } = {},
  ): Promise<{ endOffset: number }> {
    return this.#serial(async () => {
      const p = this.#parser;
      const end = opts.endOffset ?? Number.MAX_SAFE_INTEGER;
      const chunk = Math.max(4096, opts.chunkSize ?? 1024 * 1024);
      if (this.#buf.length < chunk) this.#buf = Buffer.allocUnsafe(chunk);
      let refused = -1;
      const cb = (r: CaptureRecord): void => {
        if (onRecord(r) === false) {
          refused = r.fileOffset;
          p.stop();
        }
      };
      let pos = offset;
      let lastNeed = -1;
      p.seek(pos);
      while (pos < end) {
        const n = await readFully(this.#fh, this.#buf, Math.min(chunk, end - pos), pos);
        if (n === 0) break;
        try {
          p.push(this.#buf.subarray(0, n), cb);
          pos += n;
        } catch (e) {
          if (!(e instanceof NeedInterfaces)) throw e;
          if (e.at === lastNeed) throw interfaceNotFound(this.#path, e.at);
          lastNeed = e.at;
          await walkInterfaces(this.#fh, p, this.#buf, e.at);
          pos = e.at;
        }
        if (refused >= 0) return { endOffset: refused };
      }
      return { endOffset: p.offset };
    });
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    return this.#serial(() => this.#fh.close());
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => {});
    return run;
  }
}
