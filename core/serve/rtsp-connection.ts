/**
 * One RTSP control connection of the replay server: the socket, the incoming byte
 * stream split into requests and interleaved `$` frames (RFC 2326 §10.12) by
 * {@link MessageStreamParser}, and the outgoing queue that carries both answers and
 * interleaved media.
 *
 * The outgoing queue is bounded: a client that stops reading is dropped when
 * `maxQueueBytes` would be exceeded, so it never grows memory or holds up anyone else.
 * Requests are handled one at a time in arrival order (answers must come back in order,
 * and a DESCRIBE may wait on the catalog).
 */
import type { Socket } from 'node:net';
import type { TcpRecording } from '../contracts/inline.js';
import type { Logger } from '../contracts/logger.js';
import { MessageStreamParser, serializeMessage, type WireMessage } from '../wire/rtsp-message.js';
import type { InterleavedLink } from './rtp-output.js';

export interface ConnectionOptions {
  /** Outgoing bytes queued in user space before the client is dropped. */
  maxQueueBytes: number;
  /** A send queue over the high-water mark that does not drain for this long drops the client (default {@link MAX_STALL_MS}). */
  maxStallMs?: number;
  /** Unpaced senders wait for `drain` above this many queued bytes. */
  highWaterBytes: number;
  maxHeaderBytes: number;
  maxBodyBytes: number;
  /** Requests received but not yet answered; more is a flood and closes the connection. */
  maxPipelined: number;
  log: Logger;
  onRequest(conn: RtspConnection, msg: WireMessage): Promise<void>;
  onInterleaved(conn: RtspConnection, channel: number, payload: Buffer): void;
  onClose(conn: RtspConnection): void;
}

let nextId = 1;

/** Reason phrases of RFC 2326 §7.1.1 that serializeMessage does not know. */
/** How long a client may leave its send queue over the high-water mark before it is dropped. */
export const MAX_STALL_MS = 30_000;

const REASONS: Record<number, string> = {
  413: 'Request Entity Too Large',
  451: 'Parameter Not Understood',
  453: 'Not Enough Bandwidth',
  456: 'Header Field Not Valid for Resource',
  457: 'Invalid Range',
  505: 'RTSP Version Not Supported',
  551: 'Option not supported',
};

export class RtspConnection implements InterleavedLink {
  readonly id = nextId++;
  readonly socket: Socket;
  /** Peer and local addresses as the socket reports them (IPv4-mapped on a dual-stack listener). */
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;
  /** performance.now() of the last byte received. */
  lastActivity = performance.now();
  /** When set, the first request is answered with this status and the connection closed (over the client limit). */
  rejectWith: number | null = null;
  readonly log: Logger;
  readonly #opts: ConnectionOptions;
  readonly #parser: MessageStreamParser;
  #chain: Promise<void> = Promise.resolve();
  #pending = 0;
  #closed = false;
  /** No more input is read (a fatal parse error is being answered). */
  #deaf = false;
  #drain: Promise<void> | null = null;
  /** Bytes dropped for a full queue, for the log. */
  droppedForQueue = false;
  /** The inline tap's recording of this connection (a VMS talking to a proxied camera), once started. */
  #rec: TcpRecording | null = null;

  constructor(socket: Socket, opts: ConnectionOptions) {
    this.socket = socket;
    this.#opts = opts;
    this.remoteAddress = socket.remoteAddress ?? '';
    this.remotePort = socket.remotePort ?? 0;
    this.localAddress = socket.localAddress ?? '';
    this.localPort = socket.localPort ?? 0;
    this.log = opts.log.child({ conn: this.id, peer: `${this.remoteAddress}:${this.remotePort}` });
    this.#parser = new MessageStreamParser(
      {
        onMessage: (msg) => this.#onMessage(msg),
        onInterleaved: (ch, payload) => {
          if (!this.#deaf) opts.onInterleaved(this, ch, payload);
        },
        onError: (reason, at) => this.#onParseError(reason, at),
      },
      { maxHeaderBytes: opts.maxHeaderBytes, maxBodyBytes: opts.maxBodyBytes },
    );
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    socket.on('data', (chunk: Buffer) => {
      this.lastActivity = performance.now();
      this.#rec?.fromClient(chunk);
      if (!this.#deaf) this.#parser.push(chunk, null);
    });
    socket.on('error', (e) => this.log.debug({ err: e.message }, 'socket error'));
    socket.on('close', () => this.#onSocketClose());
    socket.on('end', () => socket.end());
  }

  get closed(): boolean {
    return this.#closed || this.socket.destroyed;
  }

  /** Bytes waiting in user space to be written. */
  get queued(): number {
    return this.socket.writableLength;
  }

  /** The send queue is over its high-water mark (live sessions thin instead of waiting). */
  get congested(): boolean {
    return this.socket.writableLength >= this.#opts.highWaterBytes;
  }

  /** Queues bytes unless that would pass the limit, in which case the client is dropped. */
  #write(data: Buffer): boolean {
    if (this.closed) return false;
    if (this.socket.writableLength + data.length > this.#opts.maxQueueBytes) {
      this.droppedForQueue = true;
      this.log.warn({ queued: this.socket.writableLength, limit: this.#opts.maxQueueBytes }, 'client not reading: send queue full, dropping it');
      this.destroy();
      return false;
    }
    this.socket.write(data);
    this.#rec?.fromServer(data);
    return true;
  }

  /** Whether the connection is being recorded (see {@link record}). */
  get recording(): boolean {
    return this.#rec !== null;
  }

  /**
   * Records the rest of the connection through the inline tap: from the request being
   * handled (`current`, re-serialized: its bytes were read before the recording began)
   * on, every byte each way.
   */
  record(rec: TcpRecording, current: WireMessage): void {
    if (this.#rec || this.#closed) return;
    this.#rec = rec;
    rec.fromClient(serializeMessage({ ...current, method: current.method ?? undefined, url: current.url ?? undefined, status: current.status ?? undefined, reason: current.reason ?? undefined }));
  }

  writeFrame(frame: Buffer): boolean {
    return this.#write(frame);
  }

  drained(): Promise<void> | null {
    if (this.closed || this.socket.writableLength < this.#opts.highWaterBytes) return null;
    this.#drain ??= new Promise<void>((resolve) => {
      // A client that stops reading at speed=max is held here by back-pressure, so its
      // queue never reaches maxQueueBytes; keepalives alone must not keep it forever.
      const stall = setTimeout(() => {
        this.droppedForQueue = true;
        this.log.warn({ queued: this.socket.writableLength, stallMs: this.#opts.maxStallMs ?? MAX_STALL_MS }, 'client not reading: no drain, dropping it');
        this.destroy();
      }, this.#opts.maxStallMs ?? MAX_STALL_MS);
      stall.unref();
      const done = () => {
        clearTimeout(stall);
        this.socket.off('drain', done);
        this.socket.off('close', done);
        this.#drain = null;
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
    return this.#drain;
  }

  /** Writes an RTSP answer. */
  respond(status: number, headers: Array<[string, string]>, body?: Buffer, reason?: string): boolean {
    return this.#write(serializeMessage({ kind: 'response', status, reason: reason ?? REASONS[status], headers, body }));
  }

  /** Answers (best effort) and closes once the answer is flushed; input after this is ignored. */
  failAndClose(status: number, reason: string, headers: Array<[string, string]> = []): void {
    if (this.#deaf) return;
    this.#deaf = true;
    this.log.debug({ status, reason }, 'closing connection');
    if (this.respond(status, headers, undefined, reason)) this.socket.end();
    // A client that does not read the answer must not keep the socket open.
    setTimeout(() => this.destroy(), 2000).unref();
  }

  destroy(): void {
    if (this.socket.destroyed) return;
    this.socket.destroy();
  }

  #onMessage(msg: WireMessage): void {
    if (this.#deaf) return;
    if (msg.kind !== 'request') return; // a client's answer to nothing we asked: ignore
    if (++this.#pending > this.#opts.maxPipelined) {
      this.failAndClose(503, 'Service Unavailable');
      return;
    }
    const run = async () => {
      try {
        if (!this.closed) await this.#opts.onRequest(this, msg);
      } catch (e) {
        this.log.error({ err: e instanceof Error ? e.message : String(e), method: msg.method }, 'request handler failed');
        const cseq = msg.header('CSeq');
        if (!this.closed) this.respond(500, cseq && /^\d{1,10}$/.test(cseq.trim()) ? [['CSeq', cseq.trim()]] : []);
      } finally {
        this.#pending--;
      }
    };
    this.#chain = this.#chain.then(run, run);
  }

  #onParseError(reason: string, at: number): void {
    if (this.#deaf) return;
    this.log.debug({ reason, at }, 'malformed input');
    // After garbage there is no telling where the next request starts: answer and close.
    this.failAndClose(400, 'Bad Request');
  }

  #onSocketClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#deaf = true;
    this.#rec?.close();
    this.#opts.onClose(this);
  }
}
