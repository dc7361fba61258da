/**
 * One RTSP/1.0 client connection to a camera (RFC 2326): requests go out one at a time
 * with `CSeq`, `User-Agent`, `Session` and credentials added, answers are matched by
 * `CSeq`, and interleaved `$` frames (§10.12) are handed to a callback as they arrive.
 * A 401 is answered with credentials (Basic or Digest, see ./auth.ts) once, and once
 * more when the camera only says the nonce went stale.
 *
 * Used by the upstream camera session (./upstream.ts) and, for failover, to replay
 * captured DESCRIBE/SETUP/PLAY toward cameras: the caller's headers are sent as given
 * (they override the ones added here, except CSeq), so a captured request goes out as
 * it was captured.
 *
 * Every byte from the camera is untrusted: answers are read by the bounded
 * {@link MessageStreamParser}; anything malformed (a bad start line, a header section or
 * body over its limit, a `$` frame that is not RTP/RTCP), or a flood of `$` frames
 * nobody set up, closes the connection with a CamtapError instead of resyncing.
 *
 * With a recorder, every byte written and read is reported as it went over the wire
 * (core/contracts/inline.ts), so the session is stored like a captured one.
 */
import { connect as netConnect, type Socket } from 'node:net';
import type { Endpoint, InlineRecorder, TcpRecording } from '../contracts/inline.js';
import type { Logger } from '../contracts/logger.js';
import { CamtapError } from '../errors.js';
import { silentLogger } from '../logger.js';
import { MessageStreamParser, serializeMessage, type WireMessage } from '../wire/rtsp-message.js';
import { plainAddress } from '../serve/rtp-output.js';
import { Authenticator, parseChallenges } from './auth.js';
import { parseRtspUrl, redactUrl, stripUserinfo } from './url.js';

/** An answer from the camera (a parsed RTSP response; `body` is owned by it). */
export type RtspResponse = WireMessage;

export interface RtspClientOptions {
  /** Connect timeout and per-request answer timeout (default 10 s). */
  timeoutMs?: number;
  log?: Logger;
  /** Credentials; the URL's userinfo is used when these are absent. */
  user?: string;
  password?: string;
  /** `User-Agent` of every request (default `camtap`). */
  userAgent?: string;
  /** Reports every byte of the connection (null: not recorded). */
  recorder?: InlineRecorder | null;
  /** Header section limit for answers (default 64 KiB). */
  maxHeaderBytes?: number;
  /** Body limit for answers (default 1 MiB: an SDP is a few KiB). */
  maxBodyBytes?: number;
}

/** The session the camera gave (RFC 2326 §12.37): its id and `timeout` (seconds; null when not given). */
export interface RtspSessionInfo {
  id: string;
  timeoutSec: number | null;
}

const DEFAULT_TIMEOUT_MS = 10_000;
/** `$` frames arriving while nobody listens for them (no SETUP yet): a camera that sends this many is broken or hostile. */
const MAX_STRAY_FRAMES = 64;
/** Answers to a request: the first, one with credentials, one after a stale nonce. */
const MAX_SENDS = 3;

interface Pending {
  cseq: number;
  resolve: (m: RtspResponse) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export class RtspClientConnection {
  /** The URL connected to, without userinfo. */
  readonly url: string;
  /** The URL as logs and errors show it. */
  readonly redactedUrl: string;
  readonly localAddress: string;
  readonly localPort: number;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** Bytes written to and read from the camera. */
  bytesSent = 0;
  bytesReceived = 0;
  /** `$` frames received with no listener, and answers that matched no request. */
  strayFrames = 0;
  strayResponses = 0;

  readonly #sock: Socket;
  readonly #log: Logger;
  readonly #timeoutMs: number;
  readonly #userAgent: string;
  readonly #auth: Authenticator | null;
  readonly #rec: TcpRecording | null;
  readonly #parser: MessageStreamParser;
  #cseq = 0;
  #pending: Pending | null = null;
  /** Requests go out one at a time: each waits for the previous one's answer. */
  #chain: Promise<unknown> = Promise.resolve();
  #session: RtspSessionInfo | null = null;
  #onFrame: ((channel: number, payload: Buffer) => void) | null = null;
  readonly #onClose: Array<(err: CamtapError | null) => void> = [];
  #closed = false;
  #closeError: CamtapError | null = null;

  private constructor(sock: Socket, url: string, opts: RtspClientOptions, creds: { user: string; password: string } | null) {
    this.#sock = sock;
    this.url = url;
    this.redactedUrl = redactUrl(url);
    this.#log = (opts.log ?? silentLogger).child({ component: 'rtsp-client', camera: this.redactedUrl });
    this.#timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#userAgent = opts.userAgent ?? 'camtap';
    this.#auth = creds ? new Authenticator(creds.user, creds.password) : null;
    this.localAddress = plainAddress(sock.localAddress ?? '');
    this.localPort = sock.localPort ?? 0;
    this.remoteAddress = plainAddress(sock.remoteAddress ?? '');
    this.remotePort = sock.remotePort ?? 0;
    const local: Endpoint = { ip: this.localAddress, port: this.localPort };
    const remote: Endpoint = { ip: this.remoteAddress, port: this.remotePort };
    this.#rec = opts.recorder ? opts.recorder.tcp(local, remote) : null;
    this.#parser = new MessageStreamParser(
      {
        onMessage: (m) => this.#onMessage(m),
        onInterleaved: (ch, payload) => this.#onInterleaved(ch, payload),
        onError: (reason, offset) => this.#fail(`malformed data from the camera at byte ${offset}: ${reason}`),
      },
      { maxHeaderBytes: opts.maxHeaderBytes ?? 64 * 1024, maxBodyBytes: opts.maxBodyBytes ?? 1024 * 1024 },
    );
    sock.on('data', (chunk: Buffer) => {
      if (this.#closed) return;
      this.bytesReceived += chunk.length;
      this.#rec?.fromServer(chunk);
      this.#parser.push(chunk, null);
    });
    sock.on('error', (e: NodeJS.ErrnoException) => this.#fail(`connection error: ${e.code ?? e.message}`));
    sock.on('end', () => this.#fail('connection closed by the camera'));
    sock.on('close', () => this.#fail('connection closed'));
  }

  /**
   * Opens the TCP connection to the camera of `url` (`rtsp://[user[:password]@]host[:port]/...`).
   * Rejects with CAMTAP_ERR_UPSTREAM (the URL without credentials, and why) when the URL
   * is not RTSP or the camera cannot be reached within `timeoutMs`.
   */
  static connect(url: string, opts: RtspClientOptions = {}): Promise<RtspClientConnection> {
    const target = parseRtspUrl(url);
    const shown = redactUrl(url);
    if (target === null) return Promise.reject(new CamtapError('CAMTAP_ERR_UPSTREAM', { url: shown, reason: 'not an rtsp:// URL with a host' }));
    const user = opts.user ?? target.user;
    const password = opts.password ?? target.password ?? '';
    const creds = user !== null && user !== undefined ? { user, password } : null;
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    return new Promise((resolve, reject) => {
      const sock = netConnect({ host: target.host, port: target.port });
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new CamtapError('CAMTAP_ERR_UPSTREAM', { url: shown, reason: `no connection within ${timeoutMs / 1000} s` }));
      }, timeoutMs);
      const onError = (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        sock.destroy();
        reject(new CamtapError('CAMTAP_ERR_UPSTREAM', { url: shown, reason: `cannot connect: ${e.code ?? e.message}` }));
      };
      sock.once('error', onError);
      sock.once('connect', () => {
        clearTimeout(timer);
        sock.off('error', onError);
        sock.setNoDelay(true);
        resolve(new RtspClientConnection(sock, target.url, opts, creds));
      });
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Why the connection closed (null while open, or when close() was called). */
  get closeError(): CamtapError | null {
    return this.#closeError;
  }

  /** The session of the last answer that carried a `Session` header. */
  get session(): RtspSessionInfo | null {
    return this.#session;
  }

  /** The auth scheme in use after a 401 (`basic`, `digest`), or null. */
  get authScheme(): 'basic' | 'digest' | null {
    return this.#auth?.scheme ?? null;
  }

  /**
   * Sends one request and resolves with its answer, whatever its status (a 4xx/5xx is
   * for the caller to judge). Adds `CSeq`, and unless `headers` has them `User-Agent`,
   * `Session` (once the camera gave one) and `Authorization` (once challenged). `url`
   * may carry userinfo: it is removed. Rejects with CAMTAP_ERR_UPSTREAM when the
   * connection closes or no answer comes within the timeout.
   */
  request(method: string, url: string, headers: Record<string, string> = {}, body?: Buffer): Promise<RtspResponse> {
    const run = this.#chain.then(() => this.#exchange(method, stripUserinfo(url), headers, body));
    this.#chain = run.catch(() => {});
    return run;
  }

  /** Receives the interleaved frames (channel, payload view valid during the call). */
  onInterleaved(fn: (channel: number, payload: Buffer) => void): void {
    this.#onFrame = fn;
  }

  /** Called once when the connection closes: with the error, or null after close(). */
  onClose(fn: (err: CamtapError | null) => void): void {
    if (this.#closed) queueMicrotask(() => fn(this.#closeError));
    else this.#onClose.push(fn);
  }

  /** Sends an interleaved frame (RTCP receiver reports over TCP, RFC 2326 §10.12). False when closed or the payload cannot be framed. */
  sendInterleaved(channel: number, payload: Buffer): boolean {
    if (this.#closed || payload.length > 0xffff || channel < 0 || channel > 255) return false;
    const frame = Buffer.allocUnsafe(4 + payload.length);
    frame[0] = 0x24;
    frame[1] = channel;
    frame.writeUInt16BE(payload.length, 2);
    payload.copy(frame, 4);
    this.#write(frame);
    return true;
  }

  /** Closes the connection (no TEARDOWN: that is the caller's request to make). Idempotent. */
  close(): void {
    this.#shutdown(null);
  }

  // ------------------------------------------------------------------ internals

  async #exchange(method: string, url: string, given: Record<string, string>, body: Buffer | undefined): Promise<RtspResponse> {
    const has = (name: string) => Object.keys(given).some((k) => k.toLowerCase() === name);
    // A caller's own Authorization (a captured request being replayed) goes out first;
    // once the camera refuses it, this connection's credentials take over.
    let own = !has('authorization');
    let staleRetried = false;
    for (let send = 0; ; send++) {
      if (this.#closed) throw this.#closedError();
      const cseq = ++this.#cseq;
      const headers: Array<[string, string]> = [['CSeq', String(cseq)]];
      for (const [k, v] of Object.entries(given)) {
        const lk = k.toLowerCase();
        if (lk === 'cseq' || (own && lk === 'authorization')) continue;
        headers.push([k, v]);
      }
      if (!has('user-agent')) headers.push(['User-Agent', this.#userAgent]);
      if (!has('session') && this.#session !== null) headers.push(['Session', this.#session.id]);
      let ownSent = false;
      if (own && this.#auth !== null) {
        const a = this.#auth.authorization(method, url, body);
        if (a !== null) {
          headers.push(['Authorization', a]);
          ownSent = true;
        }
      }
      let wire: Buffer;
      try {
        wire = serializeMessage({ kind: 'request', method, url, headers, body });
      } catch (e) {
        throw new CamtapError('CAMTAP_ERR_UPSTREAM', { url: this.redactedUrl, reason: `cannot send ${method}: ${e instanceof Error ? e.message : String(e)}` });
      }
      const answer = this.#await(cseq, method);
      this.#write(wire);
      const res = await answer;
      this.#log.debug({ method, url: redactUrl(url), status: res.status }, 'rtsp answer');
      if (res.status !== 401 || this.#auth === null || send + 1 >= MAX_SENDS) return res;
      const challenges = parseChallenges(res.headers.filter(([k]) => k.toLowerCase() === 'www-authenticate').map(([, v]) => v));
      if (this.#auth.challenge(challenges, ownSent, staleRetried) !== 'retry') return res;
      if (ownSent) staleRetried = true;
      own = true;
    }
  }

  #await(cseq: number, method: string): Promise<RtspResponse> {
    return new Promise<RtspResponse>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.#pending?.cseq !== cseq) return;
        this.#pending = null;
        reject(new CamtapError('CAMTAP_ERR_UPSTREAM', { url: this.redactedUrl, reason: `no answer to ${method} within ${this.#timeoutMs / 1000} s` }));
      }, this.#timeoutMs);
      this.#pending = { cseq, resolve, reject, timer };
    });
  }

  #write(buf: Buffer): void {
    if (this.#closed) return;
    this.bytesSent += buf.length;
    this.#rec?.fromClient(buf);
    this.#sock.write(buf);
  }

  #onMessage(m: WireMessage): void {
    if (this.#closed) return;
    if (m.kind === 'request') return this.#answerServerRequest(m);
    if (m.protocol !== 'RTSP') return this.#fail(`answered with ${m.protocol}/${m.version}, not RTSP`);
    if (m.bodyTruncated) return this.#fail('answer body over the size limit');
    const p = this.#pending;
    // Some cameras leave CSeq out of answers: one request is outstanding at a time, so it is that one's.
    if (p === null || (m.cseq !== null && m.cseq !== p.cseq)) {
      this.strayResponses++;
      this.#log.debug({ cseq: m.cseq, status: m.status }, 'answer to no outstanding request: ignored');
      return;
    }
    this.#pending = null;
    clearTimeout(p.timer);
    const s = m.header('Session');
    if (s !== null) {
      // Session: id[;timeout=n] (RFC 2326 §12.37). The id is opaque: kept as sent, bounded.
      const [id, ...params] = s.split(';');
      const t = params.map((x) => /^\s*timeout\s*=\s*(\d{1,6})\s*$/i.exec(x)).find(Boolean);
      const trimmed = (id ?? '').trim();
      // Cameras repeat the id without the timeout on later answers: the SETUP answer's timeout stands.
      const kept = this.#session?.id === trimmed ? this.#session.timeoutSec : null;
      if (trimmed && trimmed.length <= 256 && !/[\s;]/.test(trimmed)) this.#session = { id: trimmed, timeoutSec: t ? Number(t[1]) : kept };
    }
    p.resolve(m);
  }

  /** A camera may send requests too (RFC 2326 §10: OPTIONS as keepalive, ANNOUNCE, SET_PARAMETER): answered so it does not wait. */
  #answerServerRequest(m: WireMessage): void {
    const ok = m.method === 'OPTIONS' || m.method === 'GET_PARAMETER';
    const headers: Array<[string, string]> = [];
    if (m.cseq !== null) headers.push(['CSeq', String(m.cseq)]);
    if (m.method === 'OPTIONS') headers.push(['Public', 'OPTIONS, GET_PARAMETER']);
    this.#write(serializeMessage({ kind: 'response', status: ok ? 200 : 501, headers }));
  }

  #onInterleaved(channel: number, payload: Buffer): void {
    if (this.#closed) return;
    const fn = this.#onFrame;
    if (fn === null) {
      if (++this.strayFrames > MAX_STRAY_FRAMES) this.#fail(`sent ${this.strayFrames} interleaved frames on channels never set up`);
      return;
    }
    try {
      fn(channel, payload);
    } catch (e) {
      this.#log.error({ err: e instanceof Error ? e.message : String(e) }, 'interleaved frame handler threw');
      this.#fail('internal error handling an interleaved frame');
    }
  }

  #closedError(): CamtapError {
    return this.#closeError ?? new CamtapError('CAMTAP_ERR_UPSTREAM', { url: this.redactedUrl, reason: 'connection closed' });
  }

  #fail(reason: string): void {
    if (this.#closed) return;
    this.#log.warn({ reason }, 'camera connection failed');
    this.#shutdown(new CamtapError('CAMTAP_ERR_UPSTREAM', { url: this.redactedUrl, reason }));
  }

  #shutdown(err: CamtapError | null): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closeError = err;
    this.#sock.destroy();
    this.#rec?.close();
    const p = this.#pending;
    this.#pending = null;
    if (p) {
      clearTimeout(p.timer);
      p.reject(this.#closedError());
    }
    for (const fn of this.#onClose.splice(0)) {
      try {
        fn(err);
      } catch (e) {
        this.#log.error({ err: e instanceof Error ? e.message : String(e) }, 'close handler threw');
      }
    }
  }
}
