/**
 * A minimal RTSP/1.0 client over TCP for benchmarks (RFC 2326): sends requests with
 * CSeq, matches answers by CSeq, and hands every interleaved `$` frame (§10.12) to a
 * callback with the wall time its bytes arrived. Written to be cheap at hundreds of
 * connections: no per-frame copy unless a frame spans two reads, no header parsing on
 * the frame path, nothing decoded. Independent of camtap's own parser on purpose: the
 * benchmark judges the server from outside.
 */
import { connect, type Socket } from 'node:net';

export interface RtspResponse {
  status: number;
  /** Header names lower-cased. */
  headers: Map<string, string>;
  body: Buffer;
}

/** Called for each `$` frame; `buf[off..off+len)` is valid during the call only. `arrival` is performance.now() of the read that completed it. */
export type FrameHandler = (channel: number, buf: Buffer, off: number, len: number, arrival: number) => void;

const CRLF2 = Buffer.from('\r\n\r\n');
/** Largest RTSP answer accepted (an SDP is a few hundred bytes). */
const MAX_MESSAGE = 256 * 1024;

export class RtspClient {
  readonly socket: Socket;
  onFrame: FrameHandler | null = null;
  closed = false;
  /** Bytes received (frames and answers). */
  bytes = 0;
  #cseq = 0;
  readonly #waiting = new Map<number, { resolve: (r: RtspResponse) => void; reject: (e: Error) => void; timer: NodeJS.Timeout; onAnswer?: (r: RtspResponse) => void }>();
  /** An incomplete unit carried over to the next read. */
  #carry: Buffer | null = null;
  /** Size of the `$` frame being completed in #carry (0: size not known yet, carry is raw bytes). */
  #need = 0;
  #have = 0;
  #error: Error | null = null;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (e) => {
      this.#error = e;
    });
    socket.on('close', () => {
      this.closed = true;
      for (const [k, w] of this.#waiting) {
        clearTimeout(w.timer);
        w.reject(this.#error ?? new Error('connection closed'));
        this.#waiting.delete(k);
      }
    });
  }

  static connect(port: number, host = '127.0.0.1'): Promise<RtspClient> {
    return new Promise((resolve, reject) => {
      const s = connect({ port, host }, () => {
        s.off('error', reject);
        resolve(new RtspClient(s));
      });
      s.once('error', reject);
    });
  }

  /**
   * Sends a request; resolves with its answer, rejects on close or after `timeoutMs`.
   * `onSent` runs right after the bytes are handed to the socket; `onAnswer` runs
   * synchronously when the answer is parsed, before any `$` frame that follows it in the
   * same read (a PLAY answer and the first media often arrive together).
   */
  request(method: string, url: string, headers: Record<string, string> = {}, opts: { timeoutMs?: number; onSent?: () => void; onAnswer?: (r: RtspResponse) => void } = {}): Promise<RtspResponse> {
    if (this.closed) return Promise.reject(new Error('connection closed'));
    const cseq = ++this.#cseq;
    let text = `${method} ${url} RTSP/1.0\r\nCSeq: ${cseq}\r\nUser-Agent: camtap-bench\r\n`;
    for (const [k, v] of Object.entries(headers)) text += `${k}: ${v}\r\n`;
    text += '\r\n';
    const p = new Promise<RtspResponse>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(cseq);
        reject(new Error(`${method}: no answer in ${opts.timeoutMs ?? 30_000} ms`));
      }, opts.timeoutMs ?? 30_000);
      this.#waiting.set(cseq, { resolve, reject, timer, onAnswer: opts.onAnswer });
    });
    this.socket.write(text);
    opts.onSent?.();
    return p;
  }

  close(): void {
    this.socket.destroy();
  }

  #onData(chunk: Buffer): void {
    const arrival = performance.now();
    this.bytes += chunk.length;
    let data = chunk;
    let pos = 0;
    if (this.#carry !== null) {
      if (this.#need > 0) {
        const take = Math.min(this.#need - this.#have, chunk.length);
        chunk.copy(this.#carry, this.#have, 0, take);
        this.#have += take;
        pos = take;
        if (this.#have < this.#need) return;
        const f = this.#carry;
        this.#carry = null;
        this.#need = 0;
        this.onFrame?.(f[1]!, f, 4, f.length - 4, arrival);
      } else {
        data = Buffer.concat([this.#carry, chunk]);
        this.#carry = null;
      }
    }
    while (pos < data.length) {
      if (data[pos] === 0x24) {
        if (data.length - pos < 4) {
          this.#carry = Buffer.from(data.subarray(pos));
          return;
        }
        const total = 4 + data.readUInt16BE(pos + 2);
        if (data.length - pos >= total) {
          this.onFrame?.(data[pos + 1]!, data, pos + 4, total - 4, arrival);
          pos += total;
          continue;
        }
        this.#carry = Buffer.allocUnsafe(total);
        data.copy(this.#carry, 0, pos);
        this.#have = data.length - pos;
        this.#need = total;
        return;
      }
      const end = data.indexOf(CRLF2, pos);
      if (end < 0) {
        if (data.length - pos > MAX_MESSAGE) return this.#fail('answer header too large');
        this.#carry = Buffer.from(data.subarray(pos));
        return;
      }
      const head = data.toString('latin1', pos, end).split('\r\n');
      const m = /^RTSP\/\d\.\d (\d{3})/.exec(head[0] ?? '');
      if (!m) return this.#fail(`not an RTSP answer: ${JSON.stringify((head[0] ?? '').slice(0, 60))}`);
      const headers = new Map<string, string>();
      for (const line of head.slice(1)) {
        const i = line.indexOf(':');
        if (i > 0) headers.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
      }
      const bodyLen = Number(headers.get('content-length') ?? 0) || 0;
      if (data.length < end + 4 + bodyLen) {
        this.#carry = Buffer.from(data.subarray(pos));
        return;
      }
      const body = Buffer.from(data.subarray(end + 4, end + 4 + bodyLen));
      pos = end + 4 + bodyLen;
      const cseq = Number(headers.get('cseq'));
      const w = this.#waiting.get(cseq);
      if (w) {
        this.#waiting.delete(cseq);
        clearTimeout(w.timer);
        const r = { status: Number(m[1]), headers, body };
        w.onAnswer?.(r);
        w.resolve(r);
      }
    }
  }

  #fail(why: string): void {
    this.#error = new Error(why);
    this.socket.destroy();
  }
}

/** `Session` header value without its `;timeout=` parameter. */
export function sessionId(r: RtspResponse): string {
  return (r.headers.get('session') ?? '').split(';')[0]!.trim();
}

/** `interleaved=a-b` of a Transport header, or null. */
export function interleavedChannels(r: RtspResponse): [number, number] | null {
  const m = /interleaved=(\d+)-(\d+)/.exec(r.headers.get('transport') ?? '');
  return m ? [Number(m[1]), Number(m[2])] : null;
}

/** `seq` and `rtptime` of the RTP-Info header of a PLAY answer (RFC 2326 §12.33), or null. */
export function rtpInfo(r: RtspResponse): { seq: number; rtptime: number } | null {
  const h = r.headers.get('rtp-info') ?? '';
  const s = /seq=(\d+)/.exec(h);
  const t = /rtptime=(\d+)/.exec(h);
  return s && t ? { seq: Number(s[1]), rtptime: Number(t[1]) } : null;
}

/** RFC 2326 §3.7 utc-time (`20231114T221331.469Z`) of ns since the epoch, millisecond precision (truncated). */
export function clockTime(ns: bigint): string {
  const iso = new Date(Number(ns / 1_000_000n)).toISOString();
  return `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}T${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 23)}Z`;
}

/** ns since the epoch of a `Range: clock=a-b` answer's start, or null. */
export function rangeClockStartNs(r: RtspResponse): bigint | null {
  const m = /clock=(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(?:\.(\d{1,9}))?Z/.exec(r.headers.get('range') ?? '');
  if (!m) return null;
  const ms = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
  return BigInt(ms) * 1_000_000n + BigInt((m[7] ?? '').padEnd(9, '0'));
}

/**
 * The SETUP URL of a DESCRIBE answer's first media: its `a=control` (RFC 2326 §C.1.1;
 * the session-level `a=control:*` is the aggregate, not the track), absolute or resolved
 * against Content-Base; the request URL when there is none.
 */
export function mediaControlUrl(describe: RtspResponse, requestUrl: string): string {
  const sdp = describe.body.toString('utf8');
  const media = sdp.slice(Math.max(0, sdp.search(/^m=/m)));
  const ctl = /^a=control:(.+)$/m.exec(media)?.[1]?.trim();
  if (!ctl || ctl === '*') return requestUrl;
  if (/^rtsp[su]?:\/\//i.test(ctl)) return ctl;
  const base = describe.headers.get('content-base') ?? requestUrl;
  const q = base.indexOf('?');
  const dir = q < 0 ? base : base.slice(0, q);
  return (dir.endsWith('/') ? dir : dir + '/') + ctl + (q < 0 ? '' : base.slice(q));
}
