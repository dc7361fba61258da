/**
 * RTSP 1.0/2.0 (RFC 2326 §4-6, RFC 7826) and HTTP/1.x (RFC 9112) messages read from one
 * direction of a TCP connection, with RTSP interleaved binary frames (RFC 2326 §10.12)
 * mixed in. Incremental: bytes arrive in any split (as the reassembler delivers them),
 * and the parser keeps only what it must across pushes (a partial header, body or
 * frame). Interleaved frames that lie wholly inside one push are handed out as views.
 *
 * The input is hostile: every length is bounded by an option, malformed input is
 * reported through `onError` with its stream offset and the parser resyncs on the next
 * plausible `$` frame or request/status line instead of throwing.
 */
import type { StoreLocation } from '../contracts/frame.js';

export type { StoreLocation } from '../contracts/frame.js';

/** One RTSP or HTTP message, as received. */
export interface WireMessage {
  kind: 'request' | 'response';
  protocol: 'RTSP' | 'HTTP';
  /** `1.0`, `1.1`, `2.0`. */
  version: string;
  method: string | null;
  url: string | null;
  status: number | null;
  reason: string | null;
  /** In order, names as sent; folded continuation lines joined with one space. */
  headers: Array<[string, string]>;
  /** Value of the first header called `name` (case-insensitive), or null. */
  header(name: string): string | null;
  /** `CSeq` as a number, or null if missing or not a number. */
  cseq: number | null;
  /** The body (chunked transfer coding removed). Owned by the message. */
  body: Buffer;
  /** Store locations of the packets that carried this message (first to last, no duplicates). */
  locations: StoreLocation[];
  /** True when the body was over `maxBodyBytes` or its length was unusable: `body` holds what was kept (maybe nothing). */
  bodyTruncated?: boolean;
}

export interface MessageStreamHandlers {
  onMessage(msg: WireMessage): void;
  /**
   * RTSP interleaved binary frame: `$` channel len16 payload. `loc` is the location of
   * the packet holding the `$`. `payload` is a view valid during the call only.
   */
  onInterleaved(channel: number, payload: Buffer, loc: StoreLocation | null): void;
  /**
   * Malformed input: what was wrong and the byte offset in this direction's stream.
   * The parser then resyncs (scans for the next `$` with a plausible channel/length, or a
   * line that starts a request/status line) and goes on. One call per garbage run.
   */
  onError(reason: string, streamOffset: number): void;
}

export interface MessageStreamOptions {
  /** Start line plus header section. Default 64 KiB. */
  maxHeaderBytes?: number;
  /** Body bytes kept per message. Default 4 MiB. */
  maxBodyBytes?: number;
  /** Whole interleaved frame, `$` header included. Default 65535 + 4 (the most len16 can say). */
  maxInterleavedBytes?: number;
}

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const DOLLAR = 0x24;
const EMPTY = Buffer.alloc(0);
/** A chunk-size line longer than this is not HTTP (RFC 9112 §7.1 has no limit; servers use ~16 hex digits + extensions). */
const MAX_CHUNK_LINE = 1024;
/** Channels a resync accepts for a `$` found inside garbage: real servers number 0..2n-1 for n tracks. */
const RESYNC_MAX_CHANNEL = 63;

const ST_START = 0;
const ST_DOLLAR = 1; // collecting the 4-byte `$` header + first payload byte
const ST_FRAME = 2; // copying an interleaved payload that straddles pushes
const ST_HEADER = 3;
const ST_BODY = 4; // Content-Length body
const ST_SKIP = 5; // skipping bytes we will not keep
const ST_CHUNK_LINE = 6;
const ST_CHUNK_DATA = 7;
const ST_CHUNK_END = 8;
const ST_TRAILER = 9;
const ST_CLOSE_BODY = 10; // HTTP response body delimited by connection close
const ST_DISCARD = 11; // the rest of the stream until end()
const ST_GARBAGE = 12;

const STATE_NAMES = [
  'between messages',
  'interleaved frame header',
  'interleaved frame',
  'message header',
  'message body',
  'skipped body',
  'chunk size line',
  'chunk data',
  'chunk end',
  'chunked trailer',
  'body until close',
  'discarded body',
  'garbage',
];

class Message implements WireMessage {
  constructor(
    readonly kind: 'request' | 'response',
    readonly protocol: 'RTSP' | 'HTTP',
    readonly version: string,
    readonly method: string | null,
    readonly url: string | null,
    readonly status: number | null,
    readonly reason: string | null,
    readonly headers: Array<[string, string]>,
    readonly cseq: number | null,
    readonly body: Buffer,
    readonly locations: StoreLocation[],
    readonly bodyTruncated: boolean,
  ) {}

  header(name: string): string | null {
    return headerOf(this.headers, name);
  }
}

function headerOf(headers: Array<[string, string]>, name: string): string | null {
  const n = name.toLowerCase();
  for (const [k, v] of headers) if (k.toLowerCase() === n) return v;
  return null;
}

/** A parsed start line + header section waiting for its body. */
interface Head {
  kind: 'request' | 'response';
  protocol: 'RTSP' | 'HTTP';
  version: string;
  method: string | null;
  url: string | null;
  status: number | null;
  reason: string | null;
  headers: Array<[string, string]>;
  cseq: number | null;
}

const isLetter = (c: number) => (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
const isDigit = (c: number) => c >= 0x30 && c <= 0x39;
/** RFC 9110 tchar subset seen in methods (GET_PARAMETER, M-SEARCH). */
const isTokenByte = (c: number) => isLetter(c) || isDigit(c) || c === 0x5f || c === 0x2d || c === 0x2e || c === 0x21;
/** Anything but controls and space: URLs on the wire are sometimes raw UTF-8. */
const isUrlByte = (c: number) => (c > 0x20 && c < 0x7f) || c >= 0x80;
const isTextByte = (c: number) => (c >= 0x20 && c !== 0x7f) || c === 0x09;

/** `RTSP/` or `HTTP/` at b[i]: 5 = present, 0 = the bytes so far could still be, -1 = not. */
function protoPrefix(b: Buffer, i: number, n: number): number {
  const m = Math.min(5, n - i);
  let rtsp = true;
  let http = true;
  for (let k = 0; k < m; k++) {
    const c = b[i + k]!;
    if (c !== 'RTSP/'.charCodeAt(k)) rtsp = false;
    if (c !== 'HTTP/'.charCodeAt(k)) http = false;
  }
  if (!rtsp && !http) return -1;
  return m === 5 ? 5 : 0;
}

/** Checks `D.D` at b[i]: 3 = present, 0 = incomplete so far, -1 = not. */
function versionAt(b: Buffer, i: number, n: number): number {
  for (let k = 0; k < 3; k++) {
    if (i + k >= n) return 0;
    const c = b[i + k]!;
    if (k === 1 ? c !== 0x2e : !isDigit(c)) return -1;
  }
  return 3;
}

/**
 * Grammar check of a start line in b[0, n) (LF excluded), as far as it has arrived:
 * 1 = a request line `METHOD SP url SP (RTSP|HTTP)/D.D` or a status line
 * `(RTSP|HTTP)/D.D SP DDD [SP reason]`; 0 = could still become one; -1 = cannot.
 * Rejects as early as possible so that resync does not buffer garbage.
 */
function checkStartLine(b: Buffer, n: number, complete: boolean, statusOnly: boolean): number {
  // A final CR ends the line (complete) or may be followed by its LF (not yet).
  if (n > 0 && b[n - 1] === CR) n--;
  const more = complete ? -1 : 0;
  const p = protoPrefix(b, 0, n);
  if (p === 0) return more;
  if (p === 5) {
    const v = versionAt(b, 5, n);
    if (v <= 0) return v < 0 ? -1 : more;
    // SP DDD at 8..11
    for (let i = 8; i < 12; i++) {
      if (i >= n) return more;
      if (i === 8 ? b[i] !== SP : !isDigit(b[i]!)) return -1;
    }
    if (n === 12) return complete ? 1 : 0;
    if (b[12] !== SP) return -1;
    for (let i = 13; i < n; i++) if (!isTextByte(b[i]!)) return -1;
    return complete ? 1 : 0;
  }
  if (statusOnly) return -1;
  let i = 0;
  while (i < n && isTokenByte(b[i]!)) if (++i > 32) return -1;
  if (i === n) return more;
  if (i === 0 || b[i] !== SP) return -1;
  const urlStart = ++i;
  while (i < n && isUrlByte(b[i]!)) i++;
  if (i === n) return more;
  if (i === urlStart || b[i] !== SP) return -1;
  i++;
  const q = protoPrefix(b, i, n);
  if (q <= 0) return q < 0 ? -1 : more;
  i += 5;
  const v = versionAt(b, i, n);
  if (v <= 0) return v < 0 ? -1 : more;
  if (n > i + 3) return -1;
  return complete ? 1 : 0;
}

const STATUS_LINE = /^(RTSP|HTTP)\/(\d\.\d) (\d{3})(?: (.*))?$/;
const REQUEST_LINE = /^(\S+) (\S+) (RTSP|HTTP)\/(\d\.\d)$/;

/** One direction of one TCP connection. */
export class MessageStreamParser {
  readonly #h: MessageStreamHandlers;
  readonly #maxHeader: number;
  readonly #maxBody: number;
  readonly #maxFrame: number;

  #state = ST_START;
  /** Stream offset of the next byte to consume. */
  #off = 0;
  #messages = 0;
  #frames = 0;
  #errors = 0;
  /** Inside a garbage run that was already reported. */
  #garbage = false;
  /** Last byte scanned in garbage (for the line-start rule). */
  #prev = 0;

  // The unit being recognised (start line + headers, or a `$` header): bytes kept in #acc.
  #acc: Buffer = Buffer.allocUnsafeSlow(512); // long-lived: not from the shared pool
  #accLen = 0;
  /** Where in #acc each push's bytes begin, with its location (to rescan exactly). */
  #accSpans: Array<{ at: number; loc: StoreLocation | null }> = [];
  /** Bytes of #acc that came from earlier pushes than the current one. */
  #accBeforeCur = 0;
  /** Position in the current push's Buffer of its first byte in #acc. */
  #curFirst = 0;
  #unitStart = 0;
  /** The unit began inside garbage: its failure is part of that run, not a new error. */
  #speculative = false;
  /** Resync found `RTSP/`/`HTTP/` mid-line: only a status line may follow. */
  #statusOnly = false;
  #startLineDone = false;
  #lineStart = 0;

  // The message being read.
  #head: Head | null = null;
  #msgLocs: StoreLocation[] = [];
  #body: Buffer = EMPTY;
  #bodyLen = 0;
  #remaining = 0;
  #discardChunks = false;
  #lineLen = 0;
  #lastByte = 0;
  #trailerBytes = 0;

  // The interleaved frame being copied (only when it straddles pushes).
  #frame: Buffer | null = null;
  #frameLen = 0;
  #frameNeed = 0;
  #frameChannel = 0;
  #frameLoc: StoreLocation | null = null;

  constructor(handlers: MessageStreamHandlers, opts: MessageStreamOptions = {}) {
    this.#h = handlers;
    this.#maxHeader = opts.maxHeaderBytes ?? 64 * 1024;
    this.#maxBody = opts.maxBodyBytes ?? 4 * 1024 * 1024;
    this.#maxFrame = opts.maxInterleavedBytes ?? 65535 + 4;
  }

  /** Bytes consumed so far in this direction (pushed and gap bytes). */
  get streamOffset(): number {
    return this.#off;
  }
  get messages(): number {
    return this.#messages;
  }
  get interleavedFrames(): number {
    return this.#frames;
  }
  get errors(): number {
    return this.#errors;
  }
  /** Bytes of buffer this parser holds across pushes (header, body and frame buffers). */
  get buffered(): number {
    return this.#acc.length + this.#body.length + (this.#frame?.length ?? 0);
  }

  /**
   * The next bytes of the stream, in order. `loc` is where the packet carrying them is
   * stored (null for synthetic input). `data` is not kept: what must outlive the call
   * is copied.
   */
  push(data: Buffer, loc: StoreLocation | null): void {
    if (data.length > 0) this.#run(data, 0, data.length, loc);
  }

  /**
   * The connection closed (FIN/RST or end of capture): an HTTP response delimited by
   * close is delivered; a message or frame cut short is reported.
   */
  end(): void {
    const s = this.#state;
    if (s === ST_CLOSE_BODY) {
      this.#state = ST_START;
      this.#emit(this.#body.subarray(0, this.#bodyLen), false);
    } else if (s === ST_HEADER || s === ST_DOLLAR ? !this.#speculative : s !== ST_START && s !== ST_GARBAGE && s !== ST_DISCARD && s !== ST_SKIP) {
      this.#error(`stream ended inside ${STATE_NAMES[s]}`, this.#off);
    }
    this.#reset();
    this.#garbage = false;
  }

  /**
   * The reassembler skipped `bytes` it never saw. Inside an interleaved frame or a body
   * of known length the parser stays in step (the frame or message is dropped and the
   * rest of it skipped); elsewhere it resyncs on the bytes that follow.
   */
  gap(bytes: number): void {
    if (!(bytes > 0)) return;
    const at = this.#off;
    this.#off += bytes;
    const s = this.#state;
    const where = s === ST_START ? STATE_NAMES[s] : `inside ${STATE_NAMES[s]}`;
    const left = s === ST_FRAME ? this.#frameNeed - this.#frameLen : s === ST_BODY || s === ST_SKIP ? this.#remaining : -1;
    if (left >= 0) {
      if (s !== ST_SKIP || bytes > left) this.#error(`gap of ${bytes} bytes ${where}; ${bytes < left ? 'dropped' : 'resyncing'}`, at);
      this.#reset();
      if (bytes < left) {
        this.#remaining = left - bytes;
        this.#state = ST_SKIP;
      } else if (bytes > left) {
        this.#toGarbage(0); // the gap ran past the end: where the next unit starts is unknown
      }
      return;
    }
    if (s === ST_CLOSE_BODY || s === ST_DISCARD) {
      if (s === ST_CLOSE_BODY) this.#error(`gap of ${bytes} bytes ${where}; dropped`, at);
      this.#reset();
      this.#state = ST_DISCARD;
      return;
    }
    const quiet = s === ST_GARBAGE || ((s === ST_HEADER || s === ST_DOLLAR) && this.#speculative);
    if (!quiet) this.#error(`gap of ${bytes} bytes ${where}; resyncing`, at);
    this.#reset();
    this.#toGarbage(0);
  }

  // ---------------------------------------------------------------- the state machine

  #run(buf: Buffer, pos: number, end: number, loc: StoreLocation | null): void {
    this.#enterBuf(pos, loc);
    while (pos < end) {
      switch (this.#state) {
        case ST_START:
          pos = this.#start(buf, pos, end, loc);
          break;
        case ST_GARBAGE:
          pos = this.#scanGarbage(buf, pos, end, loc);
          break;
        case ST_DOLLAR:
          pos = this.#dollar(buf, pos, end, loc);
          break;
        case ST_FRAME:
          pos = this.#copyFrame(buf, pos, end);
          break;
        case ST_HEADER:
          pos = this.#header(buf, pos, end, loc);
          break;
        case ST_BODY:
          pos = this.#fixedBody(buf, pos, end);
          break;
        case ST_SKIP: {
          const n = Math.min(this.#remaining, end - pos);
          this.#remaining -= n;
          this.#off += n;
          pos += n;
          if (this.#remaining === 0) this.#reset();
          break;
        }
        case ST_CHUNK_LINE:
          pos = this.#chunkLine(buf, pos, end);
          break;
        case ST_CHUNK_DATA:
          pos = this.#chunkData(buf, pos, end);
          break;
        case ST_CHUNK_END:
          pos = this.#chunkEnd(buf, pos);
          break;
        case ST_TRAILER:
          pos = this.#trailer(buf, pos, end);
          break;
        case ST_CLOSE_BODY:
          pos = this.#closeBody(buf, pos, end);
          break;
        default: // ST_DISCARD
          this.#off += end - pos;
          pos = end;
          break;
      }
    }
  }

  /** Bookkeeping when a new Buffer (push or rescan) continues the current unit or message. */
  #enterBuf(pos: number, loc: StoreLocation | null): void {
    const s = this.#state;
    if (s === ST_HEADER || s === ST_DOLLAR) {
      this.#accBeforeCur = this.#accLen;
      this.#curFirst = pos;
      const last = this.#accSpans[this.#accSpans.length - 1];
      if (!last || last.at !== this.#accLen) this.#accSpans.push({ at: this.#accLen, loc });
    }
    if (loc && (s === ST_HEADER || s === ST_BODY || (s >= ST_CHUNK_LINE && s <= ST_CLOSE_BODY))) this.#addLoc(loc);
  }

  #addLoc(loc: StoreLocation): void {
    const locs = this.#msgLocs;
    const last = locs[locs.length - 1];
    if (last && last.segment === loc.segment && last.offset === loc.offset) return;
    locs.push({ segment: loc.segment, offset: loc.offset });
  }

  #beginUnit(state: number, pos: number, loc: StoreLocation | null, speculative: boolean, statusOnly: boolean): void {
    this.#state = state;
    this.#unitStart = this.#off;
    this.#accLen = 0;
    this.#accSpans = [{ at: 0, loc }];
    this.#accBeforeCur = 0;
    this.#curFirst = pos;
    this.#speculative = speculative;
    this.#statusOnly = statusOnly;
    this.#startLineDone = false;
    this.#lineStart = 0;
    this.#msgLocs = [];
    if (loc) this.#addLoc(loc);
  }

  #start(buf: Buffer, pos: number, end: number, loc: StoreLocation | null): number {
    const b = buf[pos]!;
    if (b === DOLLAR) {
      if (end - pos < 5) {
        this.#beginUnit(ST_DOLLAR, pos, loc, false, false);
        return pos;
      }
      // Fast path: the header is here; a frame wholly in this push goes out as a view.
      const ch = buf[pos + 1]!;
      const len = buf.readUInt16BE(pos + 2);
      const why = this.#badFrame(ch, len, buf[pos + 4]!, false);
      if (why) {
        this.#error(why, this.#off);
        this.#toGarbage(b);
        this.#off++;
        return pos + 1;
      }
      this.#garbage = false;
      if (end - pos >= 4 + len) {
        this.#off += 4 + len;
        this.#frames++;
        this.#h.onInterleaved(ch, buf.subarray(pos + 4, pos + 4 + len), loc);
        return pos + 4 + len;
      }
      this.#beginFrame(ch, len, loc);
      const n = end - pos - 4;
      buf.copy(this.#frame!, 0, pos + 4, end);
      this.#frameLen = n;
      this.#off += end - pos;
      return end;
    }
    if (isLetter(b)) {
      this.#beginUnit(ST_HEADER, pos, loc, false, false);
      return pos;
    }
    if (b === CR || b === LF) {
      // RFC 9112 §2.2: empty lines before a start line are ignored.
      this.#off++;
      return pos + 1;
    }
    this.#error(`unexpected byte 0x${b.toString(16).padStart(2, '0')} where a message or $ frame should start`, this.#off);
    this.#toGarbage(b);
    this.#off++;
    return pos + 1;
  }

  /** Why a `$` header is implausible, or null. `first` = first payload byte (RTP/RTCP version 2). */
  #badFrame(channel: number, len: number, first: number, resync: boolean): string | null {
    if (len < 4) return `interleaved frame of ${len} bytes is too short for RTP/RTCP`;
    if (len + 4 > this.#maxFrame) return `interleaved frame of ${len} bytes exceeds ${this.#maxFrame - 4}`;
    if (first >>> 6 !== 2) return `interleaved frame on channel ${channel} does not carry RTP/RTCP v2`;
    if (resync && channel > RESYNC_MAX_CHANNEL) return 'implausible channel';
    return null;
  }

  #beginFrame(channel: number, len: number, loc: StoreLocation | null): void {
    // Grown on demand: most frames are under the MTU, and there is one parser per TCP direction.
    if (!this.#frame || this.#frame.length < len) this.#frame = Buffer.allocUnsafeSlow(Math.max(len, 2048, Math.min((this.#frame?.length ?? 0) * 2, 65535)));
    this.#frameChannel = channel;
    this.#frameNeed = len;
    this.#frameLen = 0;
    this.#frameLoc = loc;
    this.#state = ST_FRAME;
  }

  #copyFrame(buf: Buffer, pos: number, end: number): number {
    const n = Math.min(this.#frameNeed - this.#frameLen, end - pos);
    buf.copy(this.#frame!, this.#frameLen, pos, pos + n);
    this.#frameLen += n;
    this.#off += n;
    if (this.#frameLen === this.#frameNeed) {
      this.#state = ST_START;
      this.#frames++;
      this.#h.onInterleaved(this.#frameChannel, this.#frame!.subarray(0, this.#frameNeed), this.#frameLoc);
    }
    return pos + n;
  }

  #dollar(buf: Buffer, pos: number, end: number, loc: StoreLocation | null): number {
    const n = Math.min(5 - this.#accLen, end - pos);
    buf.copy(this.#acc, this.#accLen, pos, pos + n);
    this.#accLen += n;
    this.#off += n;
    pos += n;
    if (this.#accLen < 5) return pos;
    const a = this.#acc;
    const ch = a[1]!;
    const len = a.readUInt16BE(2);
    const why = this.#badFrame(ch, len, a[4]!, this.#speculative);
    if (why) return this.#reject(this.#speculative ? null : why, loc);
    this.#garbage = false;
    this.#beginFrame(ch, len, this.#accSpans[0]!.loc);
    this.#frame![0] = a[4]!;
    this.#frameLen = 1;
    this.#accLen = 0;
    return pos;
  }

  #scanGarbage(buf: Buffer, pos: number, end: number, loc: StoreLocation | null): number {
    let prev = this.#prev;
    for (; pos < end; pos++) {
      const b = buf[pos]!;
      if (b === DOLLAR) {
        this.#prev = prev;
        this.#beginUnit(ST_DOLLAR, pos, loc, true, false);
        return pos;
      }
      if (isLetter(b)) {
        const lineStart = prev === LF;
        if (lineStart || b === 0x52 /* R */ || b === 0x48 /* H */) {
          this.#prev = prev;
          this.#beginUnit(ST_HEADER, pos, loc, true, !lineStart);
          return pos;
        }
      }
      prev = b;
      this.#off++;
    }
    this.#prev = prev;
    return pos;
  }

  #header(buf: Buffer, pos: number, end: number, loc: StoreLocation | null): number {
    while (pos < end) {
      const lf = buf.indexOf(LF, pos);
      const found = lf >= 0 && lf < end;
      let stop = found ? lf + 1 : end;
      // While the start line is unproven, take it in growing steps so garbage is rejected early.
      if (!this.#startLineDone) stop = Math.min(stop, pos + Math.max(64, this.#accLen));
      const n = stop - pos;
      const lineEnded = found && stop === lf + 1;
      if (this.#accLen + n > this.#maxHeader) {
        if (!this.#startLineDone && this.#speculative) return this.#reject(null, loc);
        this.#error(`header section exceeds ${this.#maxHeader} bytes`, this.#unitStart);
        const last = this.#accLen > 0 ? this.#acc[this.#accLen - 1]! : 0;
        this.#reset();
        this.#toGarbage(last);
        return pos;
      }
      this.#growAcc(this.#accLen + n);
      buf.copy(this.#acc, this.#accLen, pos, stop);
      this.#accLen += n;
      this.#off += n;
      pos = stop;
      if (!this.#startLineDone) {
        const r = checkStartLine(this.#acc, lineEnded ? this.#accLen - 1 : this.#accLen, lineEnded, this.#statusOnly);
        if (r < 0) return this.#reject(this.#speculative ? null : 'malformed start line', loc);
        if (r === 0) continue;
        this.#startLineDone = true;
        this.#speculative = false;
        this.#garbage = false;
        this.#lineStart = this.#accLen;
        continue;
      }
      if (lineEnded) {
        const lineLen = this.#accLen - this.#lineStart;
        if (lineLen === 1 || (lineLen === 2 && this.#acc[this.#accLen - 2] === CR)) {
          this.#finishHeader();
          return pos;
        }
        this.#lineStart = this.#accLen;
      }
    }
    return pos;
  }

  /** Grows #acc (keeping its bytes) to hold `n`, doubling but not past `cap`. */
  #growAcc(n: number, cap = this.#maxHeader): void {
    if (n <= this.#acc.length) return;
    const next = Buffer.allocUnsafeSlow(Math.max(n, Math.min(this.#acc.length * 2, cap)));
    this.#acc.copy(next, 0, 0, this.#accLen);
    this.#acc = next;
  }

  /**
   * The unit in #acc is not a message or frame after all: report it (unless it began in
   * an already reported garbage run) and rescan from its second byte. Bytes that came in
   * earlier pushes are rescanned from a copy; the current push resumes where its part began.
   */
  #reject(reason: string | null, loc: StoreLocation | null): number {
    if (reason !== null) this.#error(reason, this.#unitStart);
    const fromPrev = this.#accBeforeCur;
    const resume = fromPrev >= 1 ? this.#curFirst : this.#curFirst + 1;
    const copy = fromPrev > 1 ? Buffer.from(this.#acc.subarray(0, fromPrev)) : null;
    const spans = this.#accSpans;
    this.#off = this.#unitStart + 1;
    this.#toGarbage(this.#acc[0]!);
    this.#accLen = 0;
    if (copy) {
      for (let i = 0; i < spans.length; i++) {
        const s = Math.max(1, spans[i]!.at);
        const e = i + 1 < spans.length ? Math.min(spans[i + 1]!.at, fromPrev) : fromPrev;
        if (s < e) this.#run(copy, s, e, spans[i]!.loc);
      }
      this.#enterBuf(resume, loc);
    }
    return resume;
  }

  #finishHeader(): void {
    const text = this.#acc.toString('utf8', 0, this.#accLen);
    this.#accLen = 0;
    const lines = text.split(/\r?\n/);
    const startLine = lines[0]!.replace(/\r$/, '');
    let head: Head;
    const st = STATUS_LINE.exec(startLine);
    if (st) {
      head = {
        kind: 'response',
        protocol: st[1] as 'RTSP' | 'HTTP',
        version: st[2]!,
        method: null,
        url: null,
        status: Number(st[3]),
        reason: st[4] ?? '',
        headers: [],
        cseq: null,
      };
    } else {
      const rq = REQUEST_LINE.exec(startLine)!; // checkStartLine accepted it
      head = {
        kind: 'request',
        protocol: rq[3] as 'RTSP' | 'HTTP',
        version: rq[4]!,
        method: rq[1]!,
        url: rq[2]!,
        status: null,
        reason: null,
        headers: [],
        cseq: null,
      };
    }
    const headers = head.headers;
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      if (line === '' || line === '\r') break;
      if ((line[0] === ' ' || line[0] === '\t') && headers.length > 0) {
        // RFC 2326 §4.2 / RFC 2616 §2.2 line folding.
        const last = headers[headers.length - 1]!;
        last[1] = `${last[1]} ${line.trim()}`.trim();
        continue;
      }
      const colon = line.indexOf(':');
      if (colon <= 0) continue; // not a header line; tolerated
      headers.push([line.slice(0, colon).trim(), line.slice(colon + 1).trim()]);
    }
    const cseq = headerOf(headers, 'CSeq');
    head.cseq = cseq !== null && /^\d{1,10}$/.test(cseq) ? Number(cseq) : null;
    this.#head = head;
    this.#bodyFor(head);
  }

  /** Decides how the body is delimited (RFC 2326 §4.3, RFC 9112 §6.3) and goes there. */
  #bodyFor(head: Head): void {
    const at = this.#off;
    const te = head.protocol === 'HTTP' ? headerOf(head.headers, 'Transfer-Encoding') : null;
    if (te && /(?:^|,)\s*chunked\s*$/i.test(te)) {
      this.#body = EMPTY;
      this.#bodyLen = 0;
      this.#discardChunks = false;
      this.#accLen = 0;
      this.#state = ST_CHUNK_LINE;
      return;
    }
    const cl = headerOf(head.headers, 'Content-Length');
    if (cl !== null) {
      if (!/^\d{1,15}$/.test(cl)) {
        // Without a usable length the body cannot be found; what follows is scanned as garbage.
        this.#error(`bad Content-Length ${JSON.stringify(cl.slice(0, 40))}`, at);
        this.#state = ST_GARBAGE;
        this.#garbage = true;
        this.#prev = LF;
        this.#emit(EMPTY, true);
        return;
      }
      const len = Number(cl);
      if (len > this.#maxBody) {
        this.#error(`Content-Length ${len} exceeds ${this.#maxBody}; body skipped`, at);
        this.#remaining = len;
        this.#state = ST_SKIP;
        this.#emit(EMPTY, true);
        return;
      }
      if (len === 0) {
        this.#state = ST_START;
        this.#emit(EMPTY, false);
        return;
      }
      this.#body = Buffer.allocUnsafe(len);
      this.#bodyLen = 0;
      this.#remaining = len;
      this.#state = ST_BODY;
      return;
    }
    if (head.protocol === 'HTTP' && head.kind === 'response') {
      const s = head.status!;
      const ctype = headerOf(head.headers, 'Content-Type') ?? '';
      // 1xx/204/304 have no body; an RTSP-over-HTTP tunnel's GET answer is followed by raw RTSP.
      if (!((s >= 100 && s < 200) || s === 204 || s === 304 || /x-rtsp-tunnelled/i.test(ctype))) {
        this.#body = EMPTY;
        this.#bodyLen = 0;
        this.#state = ST_CLOSE_BODY;
        return;
      }
    }
    // RTSP without Content-Length, HTTP requests without a length: no body.
    this.#state = ST_START;
    this.#emit(EMPTY, false);
  }

  #emit(body: Buffer, truncated: boolean): void {
    const h = this.#head!;
    this.#head = null;
    const msg = new Message(h.kind, h.protocol, h.version, h.method, h.url, h.status, h.reason, h.headers, h.cseq, body, this.#msgLocs, truncated);
    this.#msgLocs = [];
    this.#body = EMPTY;
    this.#bodyLen = 0;
    this.#messages++;
    this.#h.onMessage(msg);
  }

  #fixedBody(buf: Buffer, pos: number, end: number): number {
    const n = Math.min(this.#remaining, end - pos);
    buf.copy(this.#body, this.#bodyLen, pos, pos + n);
    this.#bodyLen += n;
    this.#remaining -= n;
    this.#off += n;
    if (this.#remaining === 0) {
      this.#state = ST_START;
      this.#emit(this.#body, false);
    }
    return pos + n;
  }

  /** Appends to a growable body (chunked / until close); false when over maxBodyBytes. */
  #appendBody(buf: Buffer, pos: number, n: number): boolean {
    const need = this.#bodyLen + n;
    if (need > this.#maxBody) return false;
    if (need > this.#body.length) {
      const next = Buffer.allocUnsafe(Math.min(Math.max(need, this.#body.length * 2, 4096), this.#maxBody));
      this.#body.copy(next, 0, 0, this.#bodyLen);
      this.#body = next;
    }
    buf.copy(this.#body, this.#bodyLen, pos, pos + n);
    this.#bodyLen = need;
    return true;
  }

  #closeBody(buf: Buffer, pos: number, end: number): number {
    const n = end - pos;
    const room = this.#maxBody - this.#bodyLen;
    if (n <= room) {
      this.#appendBody(buf, pos, n);
      this.#off += n;
      return end;
    }
    // Keep the first maxBodyBytes (whatever the split), then skip the rest of the connection.
    this.#appendBody(buf, pos, room);
    this.#off += room;
    this.#error(`body without length exceeds ${this.#maxBody}; rest of the connection skipped`, this.#off);
    this.#off += n - room;
    this.#state = ST_DISCARD;
    this.#emit(this.#body.subarray(0, this.#bodyLen), true);
    return end;
  }

  #chunkLine(buf: Buffer, pos: number, end: number): number {
    const lf = buf.indexOf(LF, pos);
    const found = lf >= 0 && lf < end;
    const stop = found ? lf + 1 : end;
    const n = stop - pos;
    if (this.#accLen + n > MAX_CHUNK_LINE) {
      this.#dropMessage('chunk size line too long', 0);
      return pos;
    }
    this.#growAcc(this.#accLen + n, MAX_CHUNK_LINE);
    buf.copy(this.#acc, this.#accLen, pos, stop);
    this.#accLen += n;
    this.#off += n;
    if (!found) return stop;
    const line = this.#acc.toString('latin1', 0, this.#accLen).trim();
    this.#accLen = 0;
    if (line === '') return stop; // a stray CRLF between chunks
    const m = /^([0-9a-fA-F]{1,8})\s*(?:;.*)?$/.exec(line);
    if (!m) {
      this.#dropMessage(`bad chunk size line ${JSON.stringify(line.slice(0, 40))}`, LF);
      return stop;
    }
    const size = Number.parseInt(m[1]!, 16);
    if (size === 0) {
      this.#state = ST_TRAILER;
      this.#lineLen = 0;
      this.#trailerBytes = 0;
      return stop;
    }
    if (!this.#discardChunks && this.#bodyLen + size > this.#maxBody) {
      this.#error(`chunked body exceeds ${this.#maxBody}; rest skipped`, this.#off);
      const kept = Buffer.from(this.#body.subarray(0, this.#bodyLen));
      const head = this.#head!;
      this.#discardChunks = true;
      this.#emit(kept, true);
      this.#head = head; // keep decoding chunks to stay in step
    }
    this.#remaining = size;
    this.#state = ST_CHUNK_DATA;
    return stop;
  }

  #chunkData(buf: Buffer, pos: number, end: number): number {
    const n = Math.min(this.#remaining, end - pos);
    if (!this.#discardChunks) this.#appendBody(buf, pos, n);
    this.#remaining -= n;
    this.#off += n;
    if (this.#remaining === 0) {
      this.#state = ST_CHUNK_END;
      this.#lineLen = 0;
    }
    return pos + n;
  }

  #chunkEnd(buf: Buffer, pos: number): number {
    const b = buf[pos]!;
    if (b === CR && this.#lineLen === 0) {
      this.#lineLen = 1;
      this.#off++;
      return pos + 1;
    }
    if (b === LF) {
      this.#state = ST_CHUNK_LINE;
      this.#accLen = 0;
      this.#off++;
      return pos + 1;
    }
    this.#dropMessage('chunk data not followed by CRLF', 0);
    return pos;
  }

  #trailer(buf: Buffer, pos: number, end: number): number {
    const lf = buf.indexOf(LF, pos);
    const found = lf >= 0 && lf < end;
    const stop = found ? lf + 1 : end;
    const n = stop - pos;
    this.#trailerBytes += n;
    if (this.#trailerBytes > this.#maxHeader) {
      this.#dropMessage(`chunked trailer exceeds ${this.#maxHeader} bytes`, 0);
      return pos;
    }
    this.#off += n;
    if (!found) {
      this.#lineLen += n;
      this.#lastByte = buf[stop - 1]!;
      return stop;
    }
    const content = this.#lineLen + n - 1;
    const lastBeforeLf = n >= 2 ? buf[lf - 1]! : this.#lastByte;
    this.#lineLen = 0;
    if (content === 0 || (content === 1 && lastBeforeLf === CR)) {
      this.#state = ST_START;
      if (this.#discardChunks) {
        this.#head = null;
        this.#msgLocs = [];
        this.#body = EMPTY;
        this.#discardChunks = false;
      } else {
        this.#emit(this.#body.subarray(0, this.#bodyLen), false);
      }
    }
    return stop;
  }

  // ---------------------------------------------------------------- helpers

  #dropMessage(reason: string, prev: number): void {
    this.#error(reason, this.#off);
    this.#reset();
    this.#toGarbage(prev);
  }

  #error(reason: string, at: number): void {
    this.#errors++;
    this.#h.onError(reason, at);
  }

  #toGarbage(prev: number): void {
    this.#state = ST_GARBAGE;
    this.#garbage = true;
    this.#prev = prev;
  }

  /** Forgets any partial unit, message or frame. */
  #reset(): void {
    this.#state = ST_START;
    this.#accLen = 0;
    this.#head = null;
    this.#msgLocs = [];
    this.#body = EMPTY;
    this.#bodyLen = 0;
    this.#remaining = 0;
    this.#discardChunks = false;
    this.#frameLen = 0;
    this.#frameNeed = 0;
  }
}

const DEFAULT_REASON: Record<number, string> = {
  200: 'OK',
  201: 'Created',
  204: 'No Content',
  301: 'Moved Permanently',
  302: 'Moved Temporarily',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  454: 'Session Not Found',
  455: 'Method Not Valid in This State',
  459: 'Aggregate Operation Not Allowed',
  461: 'Unsupported Transport',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  503: 'Service Unavailable',
};

/**
 * Builds a message on the wire: start line, headers in the order given, a blank line,
 * the body. Adds `Content-Length` when there is a body (or it is an HTTP response,
 * which would otherwise be read until close) and no length header was given. Throws a
 * TypeError for a header name, value or reason with CR/LF (that would inject headers).
 */
export function serializeMessage(m: {
  kind: 'request' | 'response';
  protocol?: 'RTSP' | 'HTTP';
  version?: string;
  method?: string;
  url?: string;
  status?: number;
  reason?: string;
  headers: Array<[string, string]>;
  body?: Buffer;
}): Buffer {
  const protocol = m.protocol ?? 'RTSP';
  const version = m.version ?? (protocol === 'RTSP' ? '1.0' : '1.1');
  const body = m.body ?? EMPTY;
  let start: string;
  if (m.kind === 'request') {
    if (!m.method || !m.url || /[\s]/.test(m.method) || /[\s]/.test(m.url)) throw new TypeError('request needs a method and a URL without spaces');
    start = `${m.method} ${m.url} ${protocol}/${version}`;
  } else {
    const status = m.status ?? 200;
    if (!Number.isInteger(status) || status < 100 || status > 999) throw new TypeError(`bad status ${status}`);
    if (m.reason && /[\r\n]/.test(m.reason)) throw new TypeError('reason contains CR or LF');
    start = `${protocol}/${version} ${status} ${m.reason ?? DEFAULT_REASON[status] ?? ''}`;
  }
  const lines = [start];
  let hasLength = false;
  for (const [k, v] of m.headers) {
    if (/[\r\n:]/.test(k) || /[\r\n]/.test(v)) throw new TypeError(`header ${JSON.stringify(k)} contains CR, LF or ':'`);
    if (k.toLowerCase() === 'content-length' || k.toLowerCase() === 'transfer-encoding') hasLength = true;
    lines.push(`${k}: ${v}`);
  }
  // An HTTP response without a length would be read until the connection closes (RFC 9112 §6.3).
  const status = m.status ?? 200;
  const httpNeedsLength = protocol === 'HTTP' && m.kind === 'response' && status >= 200 && status !== 204 && status !== 304;
  if (!hasLength && (body.length > 0 || httpNeedsLength)) lines.push(`Content-Length: ${body.length}`);
  const head = Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'utf8');
  return body.length > 0 ? Buffer.concat([head, body]) : head;
}

const REDACTED = '<redacted>';
/** Digest parameters that are secrets or let a password be guessed offline (RFC 7616 §3.4). */
const DIGEST_SECRET = new Set(['response', 'nonce', 'cnonce']);

function redactCredentials(v: string): string {
  const m = /^\s*(\S+)\s*(.*)$/.exec(v);
  if (!m) return REDACTED;
  const scheme = m[1]!;
  if (scheme.toLowerCase() !== 'digest') return `${scheme} ${REDACTED}`;
  // Digest k=v, k="v", ... — keep who/where (username, realm, uri, algorithm, qop, nc), redact the proof.
  const params: string[] = [];
  const re = /([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)/g;
  for (let p = re.exec(m[2]!); p; p = re.exec(m[2]!)) {
    const key = p[1]!;
    params.push(DIGEST_SECRET.has(key.toLowerCase()) ? `${key}="${REDACTED}"` : `${key}=${p[2]}`);
  }
  return `${scheme} ${params.join(', ')}`;
}

function redactCookie(v: string): string {
  return v
    .split(';')
    .map((part) => {
      const eq = part.indexOf('=');
      return eq < 0 ? part.trim() : `${part.slice(0, eq).trim()}=${REDACTED}`;
    })
    .join('; ');
}

function redactSetCookie(v: string): string {
  const semi = v.indexOf(';');
  const first = semi < 0 ? v : v.slice(0, semi);
  const eq = first.indexOf('=');
  const name = eq < 0 ? first.trim() : first.slice(0, eq).trim();
  return `${name}=${REDACTED}${semi < 0 ? '' : v.slice(semi)}`;
}

/**
 * Headers as a record for the catalog, names lower-cased (repeated headers joined with
 * `, `), with credentials removed: `Authorization`/`Proxy-Authorization` keep the scheme
 * (Basic and others become `<scheme> <redacted>`; Digest keeps username, realm, uri and
 * the rest but redacts response, nonce and cnonce), `Cookie` and `Set-Cookie` values are
 * redacted. `WWW-Authenticate` challenges are kept: they hold no secret, and a later
 * redirect needs their realm.
 */
export function redactHeaders(headers: Array<[string, string]>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of headers) {
    const k = name.toLowerCase();
    let v = value;
    if (k === 'authorization' || k === 'proxy-authorization') v = redactCredentials(value);
    else if (k === 'cookie') v = redactCookie(value);
    else if (k === 'set-cookie') v = redactSetCookie(value);
    out[k] = Object.prototype.hasOwnProperty.call(out, k) ? `${out[k]}, ${v}` : v;
  }
  return out;
}
