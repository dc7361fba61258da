/**
 * A bare RTSP client over a net.Socket for the server tests: sends requests (or any
 * bytes), reads answers and interleaved `$` frames with the project's
 * MessageStreamParser, so tests see exactly what went over the wire.
 */
import { connect, type Socket } from 'node:net';
import { MessageStreamParser, serializeMessage, type WireMessage } from '../../../core/wire/rtsp-message.js';

export interface Frame {
  channel: number;
  data: Buffer;
  /** Date.now() when it arrived. */
  at: number;
}

export class RawRtsp {
  readonly socket: Socket;
  readonly responses: WireMessage[] = [];
  readonly frames: Frame[] = [];
  parseErrors = 0;
  closed = false;
  readonly #parser: MessageStreamParser;
  #cseq = 0;
  #waiters: Array<() => void> = [];
  /** Keep only the first `keepFrames` frames (a long stream must not fill the test's memory). */
  keepFrames = 100_000;
  framesSeen = 0;

  private constructor(socket: Socket) {
    this.socket = socket;
    this.#parser = new MessageStreamParser({
      onMessage: (m) => {
        this.responses.push(m);
        this.#wake();
      },
      onInterleaved: (channel, payload) => {
        this.framesSeen++;
        if (this.frames.length < this.keepFrames) this.frames.push({ channel, data: Buffer.from(payload), at: Date.now() });
        this.#wake();
      },
      onError: () => {
        this.parseErrors++;
      },
    });
    socket.on('data', (d: Buffer) => this.#parser.push(d, null));
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      this.#wake();
    });
  }

  static connect(port: number, host = '127.0.0.1'): Promise<RawRtsp> {
    return new Promise((resolve, reject) => {
      const s = connect({ port, host }, () => {
        s.off('error', reject);
        resolve(new RawRtsp(s));
      });
      s.once('error', reject);
    });
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  /** Resolves when `pred()` holds, or false after `ms`. */
  async until(pred: () => boolean, ms = 10_000): Promise<boolean> {
    const end = Date.now() + ms;
    while (!pred()) {
      const left = end - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.min(left, 200));
        this.#waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    return true;
  }

  write(data: Buffer | string): void {
    this.socket.write(data);
  }

  /** Sends a request with the next CSeq and waits for its answer (null on close or timeout). */
  async request(method: string, url: string, headers: Record<string, string> = {}, ms = 10_000): Promise<WireMessage | null> {
    const cseq = ++this.#cseq;
    const h: Array<[string, string]> = [['CSeq', String(cseq)], ...Object.entries(headers)];
    const before = this.responses.length;
    this.write(serializeMessage({ kind: 'request', method, url, headers: h }));
    let found: WireMessage | null = null;
    await this.until(() => {
      found = this.responses.slice(before).find((r) => r.cseq === cseq) ?? null;
      return found !== null || this.closed;
    }, ms);
    return found;
  }

  /** The next answer after `index` responses (for raw requests), or null. */
  async responseAfter(index: number, ms = 10_000): Promise<WireMessage | null> {
    await this.until(() => this.responses.length > index || this.closed, ms);
    return this.responses[index] ?? null;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** `Session` header value without `;timeout=`. */
export function sessionOf(m: WireMessage | null): string {
  return (m?.header('Session') ?? '').split(';')[0]!.trim();
}
