/**
 * Recording of the HTTP/ONVIF proxy's two TCP legs through the inline tap
 * (core/contracts/inline.ts), so the capture pipeline turns them into configuration
 * transactions (core/sessions/http-exchange.ts) exactly as for tapped traffic.
 *
 * - camtap -> camera: byte-exact. Every upstream connection comes from
 *   {@link RecordingAgent}, which taps the socket: what node writes to it and what the
 *   camera sends back, in order, with the connection's real endpoints.
 * - VMS -> camtap: node's HTTP server hands the request bytes straight from the socket
 *   handle to its C++ parser (no JS 'data' events), and the server may be the lead's
 *   (fastify's) where camtap sees the request only once parsed. So the request is
 *   rebuilt from what was parsed (start line, raw header lines as sent, the body in the
 *   framing it came in), and the answer is taken byte-exact from the socket's writes while
 *   one of the proxy's responses owns the socket.
 */
import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Endpoint, InlineRecorder, TcpRecording } from '../contracts/inline.js';
import type { Logger } from '../contracts/logger.js';

/** `ip:port` of a socket side as the contract wants it (IPv4-mapped IPv6 shown as IPv4), or null when unknown. */
export function endpointOf(ip: string | undefined, port: number | undefined): Endpoint | null {
  if (!ip || port === undefined) return null;
  return { ip: ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip, port };
}

function toBuffer(chunk: unknown, encoding: unknown): Buffer | null {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (typeof chunk === 'string') return Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
  return null;
}

/** Calls `onWrite` with every chunk written to `socket`, before it goes out. */
function tapWrites(socket: Duplex, onWrite: (data: Buffer) => void): void {
  const write = socket.write;
  socket.write = function tappedWrite(this: Duplex, chunk: unknown, encoding?: unknown, cb?: unknown): boolean {
    const b = toBuffer(chunk, encoding);
    if (b && b.length > 0) onWrite(b);
    return (write as (...a: unknown[]) => boolean).call(this, chunk, encoding, cb);
  } as typeof socket.write;
}

/**
 * Taps one upstream socket: bytes written before the connection is up are held until its
 * local port is known, then the recording starts with the real endpoints. For TLS the
 * socket is the TLSSocket, so the plaintext HTTP is what gets recorded.
 */
function tapUpstream(socket: Duplex, recorder: InlineRecorder, log: Logger): void {
  let rec: TcpRecording | null = null;
  let held: Buffer[] | null = [];
  tapWrites(socket, (b) => {
    if (rec) rec.fromClient(b);
    else held?.push(Buffer.from(b)); // copy: node may reuse a written buffer
  });
  const s = socket as Socket;
  s.once('connect', () => {
    const client = endpointOf(s.localAddress, s.localPort);
    const server = endpointOf(s.remoteAddress, s.remotePort);
    if (!client || !server) {
      held = null;
      return;
    }
    try {
      rec = recorder.tcp(client, server);
      for (const b of held ?? []) rec.fromClient(b);
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'http proxy: inline recorder failed on an upstream connection');
      rec = null;
    }
    held = null;
  });
  s.on('data', (d: Buffer) => rec?.fromServer(d));
  s.once('close', () => {
    rec?.close();
    rec = null;
    held = null;
  });
}

/**
 * An http.Agent (or https.Agent) whose connections are recorded. No keep-alive: one TCP
 * connection per exchange, as small camera web servers handle best, with no stale pooled
 * socket to fail on reuse, and each exchange a connection of its own in the capture.
 */
export function recordingAgent(kind: 'http' | 'https', recorder: () => InlineRecorder | null, log: Logger, opts: { verifyTls: boolean; maxSockets: number }): http.Agent {
  const agent: http.Agent =
    kind === 'https'
      ? new https.Agent({ keepAlive: false, maxSockets: opts.maxSockets, rejectUnauthorized: opts.verifyTls })
      : new http.Agent({ keepAlive: false, maxSockets: opts.maxSockets });
  const create = agent.createConnection.bind(agent) as (o: unknown, cb?: unknown) => Duplex | null | undefined;
  (agent as { createConnection: unknown }).createConnection = (options: unknown, cb?: unknown) => {
    const socket = create(options, cb);
    const r = recorder();
    if (socket && r) tapUpstream(socket, r, log);
    return socket;
  };
  return agent;
}

/** A request as it was on the wire, rebuilt from node's parse (see the file comment). */
export function requestBytes(req: IncomingMessage, originalUrl: string, body: Buffer, chunked: boolean): Buffer {
  let head = `${req.method ?? 'GET'} ${originalUrl} HTTP/${req.httpVersion}\r\n`;
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) head += `${raw[i]}: ${raw[i + 1]}\r\n`;
  head += '\r\n';
  if (!chunked) return Buffer.concat([Buffer.from(head, 'latin1'), body]);
  // RFC 9112 §7.1: the body as one chunk, then the last chunk and the trailer section.
  let trailer = '';
  const rt = req.rawTrailers;
  for (let i = 0; i + 1 < rt.length; i += 2) trailer += `${rt[i]}: ${rt[i + 1]}\r\n`;
  const parts: Buffer[] = [Buffer.from(head, 'latin1')];
  if (body.length > 0) parts.push(Buffer.from(`${body.length.toString(16)}\r\n`, 'latin1'), body, Buffer.from('\r\n', 'latin1'));
  parts.push(Buffer.from(`0\r\n${trailer}\r\n`, 'latin1'));
  return Buffer.concat(parts);
}

interface DownstreamLeg {
  rec: TcpRecording;
  /** The proxy's response that currently owns the socket's output, if any. */
  active: ServerResponse | null;
}

/**
 * The VMS -> camtap leg: one recording per client connection, opened at the first proxied
 * request on it and closed with the socket. Other traffic on the same connection (the
 * lead's API on a shared port) is not recorded.
 */
export class DownstreamRecorder {
  readonly #legs = new WeakMap<Socket, DownstreamLeg>();
  readonly #recorder: () => InlineRecorder | null;
  readonly #log: Logger;

  constructor(recorder: () => InlineRecorder | null, log: Logger) {
    this.#recorder = recorder;
    this.#log = log;
  }

  /** Records `bytes` as the client's request, and the bytes of `res` as the answer. */
  exchange(req: IncomingMessage, res: ServerResponse, bytes: Buffer): void {
    const leg = this.#leg(req.socket);
    if (!leg) return;
    leg.rec.fromClient(bytes);
    const own = () => {
      leg.active = res;
    };
    const release = () => {
      if (leg.active === res) leg.active = null;
    };
    // Answers on one connection go out in request order (RFC 9112 §9.3.2): node gives a
    // pipelined response the socket only when the one before it has finished. Clearing
    // before node's own 'finish' handler hands the socket on keeps the next answer out.
    res.prependListener('finish', release);
    res.once('close', release);
    if (res.socket) own();
    else res.once('socket', own);
  }

  #leg(socket: Socket): DownstreamLeg | null {
    const known = this.#legs.get(socket);
    if (known) return known;
    const r = this.#recorder();
    const client = endpointOf(socket.remoteAddress, socket.remotePort);
    const server = endpointOf(socket.localAddress, socket.localPort);
    if (!r || !client || !server || socket.destroyed) return null;
    let rec: TcpRecording;
    try {
      rec = r.tcp(client, server);
    } catch (e) {
      this.#log.warn({ err: (e as Error).message }, 'http proxy: inline recorder failed on a client connection');
      return null;
    }
    const leg: DownstreamLeg = { rec, active: null };
    this.#legs.set(socket, leg);
    tapWrites(socket, (b) => {
      if (leg.active) leg.rec.fromServer(b);
    });
    socket.once('close', () => leg.rec.close());
    return leg;
  }
}
