/**
 * The inline gateway's HTTP/ONVIF proxy: a VMS talks to a camera's HTTP API (ONVIF SOAP,
 * VAPIX-style CGI, ISAPI-style REST) through camtap at `/cam/<alias>/...`; camtap relays
 * each exchange, records both TCP legs through the inline tap (so the capture pipeline
 * makes configuration transactions of them, credentials redacted, as for tapped
 * traffic), and rewrites the camera's own addresses in its answers to camtap's, so that a
 * VMS that adopts the camera through ONVIF (GetCapabilities/GetServices XAddrs,
 * GetStreamUri, GetSnapshotUri) keeps talking to camtap and streams through camtap's RTSP
 * server (`${rtspBase}/<alias>/<camera path>`).
 *
 * Forwarding is http-proxy's (connection to the camera, header copy, `changeOrigin` Host,
 * abort propagation). What it does not do, and this file adds around it:
 * - request checks before anything reaches the camera (http-guard.ts): request smuggling
 *   patterns, absolute-form targets naming other hosts (no open proxy), dot segments;
 * - the request body read whole under a size limit (413) and handed to http-proxy as its
 *   `buffer` stream, so the camera gets one request with a Content-Length it can trust;
 * - hop-by-hop fields removed both ways (http-proxy copies them), `Accept-Encoding:
 *   identity` upstream;
 * - `selfHandleResponse`: answers with rewritable text bodies are buffered (bounded),
 *   decompressed if the camera compressed anyway, rewritten, and sent with a new
 *   Content-Length; other answers (snapshots, MJPEG streams) stream through;
 * - an upstream timeout answered 504 (http-proxy's `proxyTimeout` only aborts), errors
 *   answered as JSON `{error, message}` with catalog codes like the API's;
 * - recording of both legs (http-record.ts).
 *
 * camtap does not terminate the camera's authentication: `Authorization` and WS-Security
 * headers pass through untouched, and nothing that can carry a credential (headers,
 * bodies, query strings) is logged.
 */
import http from 'node:http';
import { Readable } from 'node:stream';
import zlib from 'node:zlib';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import httpProxy from 'http-proxy';
import type { InlineRecorder } from '../contracts/inline.js';
import type { Logger } from '../contracts/logger.js';
import { CamtapError } from '../errors.js';
import { checkFraming, routeRequest, type ProxyRoute } from './http-guard.js';
import { DownstreamRecorder, recordingAgent, requestBytes } from './http-record.js';
import { downstreamResponseHeaders, isRewritableType, makeRewriter, rewriteBody, upstreamRequestHeaders, type Rewriter } from './http-rewrite.js';

/** A camera reachable through the proxy. */
export interface ProxiedCamera {
  /** Name in camtap's URLs: `/cam/<alias>/...` (HTTP) and `rtsp://camtap/<alias>/...` (RTSP). */
  alias: string;
  /** Base URL of the camera's HTTP API, e.g. `http://10.0.0.11:80` (https: works too; the certificate is not checked unless `verifyTls`). */
  http: string;
  /** Path of the camera's configured RTSP URL. Not used by the HTTP proxy: every RTSP URI on the camera's host keeps its own path under `/<alias>/`. */
  rtspPath?: string;
}

export interface HttpCameraProxyOptions {
  /** The cameras, looked up on each request (config reloads apply at once). */
  cameras: () => ProxiedCamera[];
  /** camtap's RTSP base as the VMS reaches it, e.g. `rtsp://camtap.example:8554`. */
  rtspBase: () => string;
  /** camtap's HTTP base as the VMS reaches it (where `/cam/<alias>/` is served), e.g. `http://camtap.example:8080`. */
  httpBase: () => string;
  /** Records the camera leg of every proxied exchange as if captured (the inline tap). */
  recorder?: InlineRecorder | null;
  /**
   * Records the VMS leg too (default false: each exchange would then become two
   * configuration transactions; the camera leg is what the camera saw, which failover
   * replays).
   */
  recordVmsLeg?: boolean;
  log?: Logger;
  /** Largest request body relayed; larger gets 413 and the camera sees nothing. Default 1 MiB. */
  maxBodyBytes?: number;
  /** Largest answer body camtap buffers to rewrite (XML, JSON, text); larger gets 502. Default 16 MiB. Other answers stream. */
  maxResponseBytes?: number;
  /** Silence from the camera (connecting, or waiting for/reading its answer) before 504. Default 30 s. */
  timeoutMs?: number;
  /** Check https cameras' certificates. Default false: cameras mostly have self-signed ones. */
  verifyTls?: boolean;
  /** Concurrent connections to one camera. Default 8: camera web servers are small. */
  maxSocketsPerCamera?: number;
}

/** A standalone listener of the proxy. */
export interface HttpProxyListener {
  port: number;
  close(): Promise<void>;
}

/** How a server routes paths: `/cam/<alias>/...`, or one camera at the root of a dedicated port. */
interface Mount {
  dedicatedAlias: string | null;
  /** The dedicated port's public base (dedicated mounts), computed once listening. */
  publicBase: string | null;
}

/** Per-request state shared with http-proxy's events. */
interface Exchange {
  camera: ProxiedCamera;
  cameraUrl: string;
  path: string;
  rewrite: Rewriter;
  timedOut: boolean;
  /** The request to the camera, once http-proxy made it. */
  upstream: http.ClientRequest | null;
}

const NOOP_LOG: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return NOOP_LOG;
  },
};

const PREFIX_MOUNT: Mount = { dedicatedAlias: null, publicBase: null };

/** The path of a target without its query (queries may carry credentials: `?user=..&pwd=..`). */
function pathOnly(url: string): string {
  const q = url.search(/[?#]/);
  return q < 0 ? url : url.slice(0, q);
}

/** A base URL without userinfo, query or trailing slash (for messages and rewritten URIs). */
function cleanBase(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, '')}`;
  } catch {
    return url.replace(/\/+$/, '');
  }
}

function peerOf(req: IncomingMessage): string {
  const s = req.socket;
  return `${s.remoteAddress ?? '?'}:${s.remotePort ?? '?'}`;
}

/** `host:port` spellings (lower-case) of a base URL's authority, the default port also without it. */
function authoritiesOf(base: string): string[] {
  try {
    const u = new URL(base);
    const out = [u.host.toLowerCase()];
    const def = u.protocol === 'https:' ? '443' : '80';
    if (!u.port) out.push(`${u.hostname.toLowerCase()}:${def}`);
    return out;
  } catch {
    return [];
  }
}

export class HttpCameraProxy {
  readonly #opts: HttpCameraProxyOptions;
  readonly #log: Logger;
  readonly #maxBody: number;
  readonly #maxResponse: number;
  readonly #timeoutMs: number;
  readonly #proxy: httpProxy;
  readonly #agents: { http: http.Agent; https: http.Agent };
  readonly #exchanges = new WeakMap<IncomingMessage, Exchange>();
  readonly #downstream: DownstreamRecorder;
  readonly #servers = new Set<http.Server>();
  /** Responses in progress per client socket, to answer a parse error that comes mid-body. */
  readonly #inflight = new WeakMap<Socket, ServerResponse>();

  constructor(opts: HttpCameraProxyOptions) {
    this.#opts = opts;
    this.#log = opts.log ?? NOOP_LOG;
    this.#maxBody = opts.maxBodyBytes ?? 1024 * 1024;
    this.#maxResponse = opts.maxResponseBytes ?? 16 * 1024 * 1024;
    this.#timeoutMs = opts.timeoutMs ?? 30_000;
    const recorder = () => this.#opts.recorder ?? null;
    const agentOpts = { verifyTls: opts.verifyTls ?? false, maxSockets: opts.maxSocketsPerCamera ?? 8 };
    this.#agents = { http: recordingAgent('http', recorder, this.#log, agentOpts), https: recordingAgent('https', recorder, this.#log, agentOpts) };
    this.#downstream = new DownstreamRecorder(recorder, this.#log);
    this.#proxy = httpProxy.createProxyServer({ selfHandleResponse: true, changeOrigin: true, xfwd: false, secure: opts.verifyTls ?? false });
    // http-proxy's own 'error' default rethrows when nobody listens; errors come to web()'s callback.
    this.#proxy.on('error', () => {});
    this.#proxy.on('proxyReq', (proxyReq, req) => {
      const x = this.#exchanges.get(req);
      if (!x) return;
      x.upstream = proxyReq;
      proxyReq.setTimeout(this.#timeoutMs, () => {
        x.timedOut = true;
        proxyReq.destroy(new Error(`no answer within ${this.#timeoutMs} ms`));
      });
    });
    this.#proxy.on('proxyRes', (proxyRes, req, res) => {
      const x = this.#exchanges.get(req);
      if (!x) {
        proxyRes.resume();
        return;
      }
      try {
        this.#respond(proxyRes, req, res, x);
      } catch (e) {
        this.#internal(res, e);
      }
    });
  }

  /**
   * Handles a request whose path is `/cam/<alias>/...` (also refuses, with 400, any
   * absolute-form request naming another host); returns false for anything else, which
   * the caller's server answers. Never throws.
   */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    return this.#handle(req, res, PREFIX_MOUNT);
  }

  /**
   * A standalone server of the proxy on `port` (0: any free port). With `opts.alias` the
   * port is that one camera's, paths unchanged (`/onvif/device_service`): for VMSs that
   * only take a camera's host and port, and for HTTP Digest, whose response covers the
   * request path; its rewritten HTTP base is `httpBase` with this port.
   */
  async listen(port: number, host = '0.0.0.0', opts: { alias?: string } = {}): Promise<HttpProxyListener> {
    const mount: Mount = { dedicatedAlias: opts.alias ?? null, publicBase: null };
    const server = http.createServer({ requireHostHeader: true }, (req, res) => {
      if (this.#handle(req, res, mount)) return;
      this.#fail(req, res, 404, new CamtapError('CAMTAP_ERR_NOT_FOUND', { what: 'path', id: pathOnly(req.url ?? '') }), false);
    });
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => this.#clientError(err, socket));
    // CONNECT is a forward proxy's method: camtap is not one (RFC 9110 §9.3.6).
    server.on('connect', (_req: IncomingMessage, socket: Socket) => {
      socket.on('error', () => {});
      socket.end(rawAnswer(405, 'Method Not Allowed', 'CAMTAP_ERR_HTTP_REQUEST', 'CONNECT: camtap is not a forward proxy'));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const bound = (server.address() as { port: number }).port;
    if (mount.dedicatedAlias !== null) mount.publicBase = withPort(this.#opts.httpBase(), bound);
    this.#servers.add(server);
    let closed: Promise<void> | null = null;
    return {
      port: bound,
      close: () => {
        closed ??= new Promise<void>((resolve) => {
          this.#servers.delete(server);
          server.close(() => resolve());
          server.closeAllConnections();
        });
        return closed;
      },
    };
  }

  /** Stops the standalone servers and drops connections to cameras. Idempotent. */
  async close(): Promise<void> {
    const servers = [...this.#servers];
    this.#servers.clear();
    await Promise.all(
      servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            s.close(() => resolve());
            s.closeAllConnections();
          }),
      ),
    );
    this.#agents.http.destroy();
    this.#agents.https.destroy();
    this.#proxy.close();
  }

  #handle(req: IncomingMessage, res: ServerResponse, mount: Mount): boolean {
    const url = req.url ?? '';
    const ours = mount.dedicatedAlias !== null ? authoritiesOf(mount.publicBase ?? '') : authoritiesOf(this.#opts.httpBase());
    let route: ProxyRoute;
    try {
      route = routeRequest(url, ours, mount.dedicatedAlias);
    } catch (e) {
      this.#internal(res, e);
      return true;
    }
    if (route.kind === 'not-ours') return false;
    try {
      this.#start(req, res, route, mount, url);
    } catch (e) {
      this.#internal(res, e);
    }
    return true;
  }

  #start(req: IncomingMessage, res: ServerResponse, route: Exclude<ProxyRoute, { kind: 'not-ours' }>, mount: Mount, originalUrl: string): void {
    const peer = peerOf(req);
    if (route.kind === 'bad') {
      const err =
        route.status === 404
          ? new CamtapError('CAMTAP_ERR_NOT_FOUND', { what: 'camera', id: '(none)' })
          : new CamtapError('CAMTAP_ERR_HTTP_REQUEST', { peer, reason: route.reason });
      this.#fail(req, res, route.status, err, route.status === 400);
      return;
    }
    const framing = checkFraming(req.rawHeaders, req.httpVersion, this.#maxBody);
    if (!framing.ok) {
      const err =
        framing.status === 413
          ? new CamtapError('CAMTAP_ERR_HTTP_TOO_LARGE', { peer, what: 'request body', reason: framing.reason })
          : new CamtapError('CAMTAP_ERR_HTTP_REQUEST', { peer, reason: framing.reason });
      this.#fail(req, res, framing.status, err, true);
      return;
    }
    const camera = this.#opts.cameras().find((c) => c.alias === route.alias);
    if (!camera) {
      this.#fail(req, res, 404, new CamtapError('CAMTAP_ERR_NOT_FOUND', { what: 'camera', id: route.alias }), false);
      return;
    }
    let cameraUrl: string;
    try {
      const u = new URL(camera.http);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`scheme ${u.protocol}`);
      cameraUrl = cleanBase(camera.http);
    } catch (e) {
      this.#fail(req, res, 502, new CamtapError('CAMTAP_ERR_UPSTREAM', { url: camera.alias, reason: `http base is not an http(s) URL (${(e as Error).message})` }), false);
      return;
    }
    const httpPublic = mount.publicBase ?? `${this.#opts.httpBase().replace(/\/+$/, '')}/cam/${encodeURIComponent(camera.alias)}`;
    const x: Exchange = {
      camera,
      cameraUrl,
      path: pathOnly(route.target),
      rewrite: makeRewriter({ cameraHttp: camera.http, httpPublic, rtspPublic: `${this.#opts.rtspBase().replace(/\/+$/, '')}/${encodeURIComponent(camera.alias)}` }),
      timedOut: false,
      upstream: null,
    };
    this.#inflight.set(req.socket, res);
    res.once('close', () => {
      if (this.#inflight.get(req.socket) === res) this.#inflight.delete(req.socket);
    });
    this.#readBody(req, res, peer, (body) => this.#forward(req, res, x, route.target, originalUrl, body, framing.chunked));
  }

  /** Reads the whole body under the limit; `done` runs only when all of it arrived. */
  #readBody(req: IncomingMessage, res: ServerResponse, peer: string, done: (body: Buffer) => void): void {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    let finished = false;
    req.on('data', (c: Buffer) => {
      if (over) return;
      size += c.length;
      if (size > this.#maxBody) {
        over = true;
        chunks.length = 0;
        this.#fail(req, res, 413, new CamtapError('CAMTAP_ERR_HTTP_TOO_LARGE', { peer, what: 'request body', reason: `over the limit of ${this.#maxBody} bytes` }), true);
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (over || finished) return;
      finished = true;
      done(Buffer.concat(chunks, size));
    });
    // A body cut short (client gone, malformed chunk): nothing is forwarded.
    req.on('error', () => {
      if (over || finished) return;
      finished = true;
      this.#fail(req, res, 400, new CamtapError('CAMTAP_ERR_HTTP_REQUEST', { peer, reason: 'request body incomplete or malformed' }), true);
    });
  }

  #forward(req: IncomingMessage, res: ServerResponse, x: Exchange, target: string, originalUrl: string, body: Buffer, chunked: boolean): void {
    if (res.writableEnded || req.socket.destroyed) return;
    if (this.#opts.recorder && this.#opts.recordVmsLeg) this.#downstream.exchange(req, res, requestBytes(req, originalUrl, body, chunked));
    const method = req.method ?? 'GET';
    // http-proxy builds the upstream request from req.url and req.headers.
    req.headers = upstreamRequestHeaders(req.rawHeaders, body.length, method) as http.IncomingHttpHeaders;
    req.url = target;
    this.#exchanges.set(req, x);
    // The VMS left before its answer was out (closed a stream it was watching): stop asking
    // the camera. http-proxy aborts only while the request itself is still arriving.
    res.once('close', () => {
      if (!res.writableFinished) x.upstream?.destroy();
    });
    const agent = x.cameraUrl.startsWith('https:') ? this.#agents.https : this.#agents.http;
    this.#log.debug({ camera: x.camera.alias, method, path: x.path }, 'http proxy: relaying');
    this.#proxy.web(req, res, { target: x.cameraUrl, agent, buffer: Readable.from(body.length ? [body] : []) }, (err: Error) => {
      const e = err as NodeJS.ErrnoException;
      const cause = e.code ?? e.message;
      if (x.timedOut) {
        this.#log.warn({ camera: x.camera.alias, method, path: x.path, ms: this.#timeoutMs }, 'http proxy: camera timed out');
        this.#fail(req, res, 504, new CamtapError('CAMTAP_ERR_UPSTREAM_TIMEOUT', { url: x.cameraUrl, ms: this.#timeoutMs }), false);
      } else if (req.socket.destroyed) {
        // The VMS went away: http-proxy aborted the upstream request; nobody to answer.
      } else {
        this.#log.warn({ camera: x.camera.alias, method, path: x.path, err: cause }, 'http proxy: camera request failed');
        this.#fail(req, res, 502, new CamtapError('CAMTAP_ERR_UPSTREAM', { url: x.cameraUrl, reason: cause }), false);
      }
    });
  }

  /** Sends the camera's answer on: rewritten when it is text, streamed otherwise. */
  #respond(proxyRes: IncomingMessage, req: IncomingMessage, res: ServerResponse, x: Exchange): void {
    const status = proxyRes.statusCode ?? 502;
    const method = req.method ?? 'GET';
    const h = proxyRes.headers;
    const done = () => this.#log.debug({ camera: x.camera.alias, method, path: x.path, status }, 'http proxy: relayed');
    // RFC 9110 §6.4.1: HEAD, 1xx, 204 and 304 answers have no body, whatever Content-Length says.
    if (method === 'HEAD' || status === 204 || status === 304 || status < 200) {
      proxyRes.resume();
      res.writeHead(status, proxyRes.statusMessage, downstreamResponseHeaders(proxyRes.rawHeaders, x.rewrite, false));
      res.end();
      done();
      return;
    }
    const encoding = (h['content-encoding'] ?? 'identity').trim().toLowerCase();
    const decodable = ['identity', 'gzip', 'x-gzip', 'deflate', 'br'].includes(encoding);
    if (!decodable || !isRewritableType(h['content-type'], h['content-length'] !== undefined)) {
      res.writeHead(status, proxyRes.statusMessage, downstreamResponseHeaders(proxyRes.rawHeaders, x.rewrite, false));
      proxyRes.pipe(res);
      proxyRes.on('error', () => res.destroy());
      proxyRes.on('aborted', () => res.destroy());
      proxyRes.on('end', done);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    const fail = (reason: string) => {
      if (failed) return;
      failed = true;
      proxyRes.destroy();
      this.#log.warn({ camera: x.camera.alias, method, path: x.path, reason }, 'http proxy: bad camera answer');
      this.#fail(req, res, 502, new CamtapError('CAMTAP_ERR_UPSTREAM', { url: x.cameraUrl, reason }), false);
    };
    proxyRes.on('data', (c: Buffer) => {
      if (failed) return;
      size += c.length;
      if (size > this.#maxResponse) fail(`answer over ${this.#maxResponse} bytes`);
      else chunks.push(c);
    });
    proxyRes.on('error', () => fail('answer cut short'));
    proxyRes.on('aborted', () => fail('answer cut short'));
    proxyRes.on('end', () => {
      if (failed) return;
      let body: Buffer;
      try {
        body = decode(Buffer.concat(chunks, size), encoding, this.#maxResponse);
      } catch (e) {
        fail(`cannot decode ${encoding} body: ${(e as Error).message}`);
        return;
      }
      const out = rewriteBody(body, x.rewrite);
      const headers = downstreamResponseHeaders(proxyRes.rawHeaders, x.rewrite, true);
      headers.push('Content-Length', String(out.length));
      res.writeHead(status, proxyRes.statusMessage, headers);
      res.end(out);
      done();
    });
  }

  /** Answers an error as JSON `{error, message}` (like the API); `close` ends the connection after it. */
  #fail(req: IncomingMessage, res: ServerResponse, status: number, err: CamtapError, close: boolean): void {
    this.#log.debug({ status, code: err.code, method: req.method, path: pathOnly(req.url ?? '') }, 'http proxy: refused');
    if (res.writableEnded) return; // answered already (e.g. a parse error answered in #clientError)
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const body = JSON.stringify({ error: err.code, message: err.message });
    const headers: Record<string, string | number> = { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(body) };
    if (close) headers['Connection'] = 'close';
    res.writeHead(status, headers);
    res.end(body);
    // The rest of a refused body is read and dropped until node closes the connection.
    if (close) req.resume();
  }

  #internal(res: ServerResponse, e: unknown): void {
    this.#log.error({ err: (e as Error)?.stack ?? String(e) }, 'http proxy: unexpected error');
    if (res.writableEnded) return;
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const err = new CamtapError('CAMTAP_ERR_INTERNAL', { reason: (e as Error)?.message ?? String(e) });
    const body = JSON.stringify({ error: err.code, message: err.message });
    res.writeHead(500, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(body), Connection: 'close' });
    res.end(body);
  }

  /**
   * A request node's parser refused (smuggling patterns, bad chunks, headers over
   * node's 16 KiB): answered and the connection closed, as node's default does, but with
   * camtap's error body; nothing was forwarded.
   */
  #clientError(err: NodeJS.ErrnoException, socket: Socket): void {
    socket.on('error', () => {});
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    const reason = status === 431 ? 'header section over the limit' : status === 408 ? 'request not received in time' : `malformed request (${err.code ?? 'parse error'})`;
    const peer = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    this.#log.debug({ peer, code: err.code }, 'http proxy: unparsable request');
    const res = this.#inflight.get(socket);
    // Bytes after a message that ended the connection (HTTP/1.0, `Connection: close`): not
    // a request; the connection closes once the answer in progress, if any, is out.
    if (err.code === 'HPE_CLOSED_CONNECTION') {
      if (!res) socket.end();
      return;
    }
    const code = status === 431 ? 'CAMTAP_ERR_HTTP_TOO_LARGE' : 'CAMTAP_ERR_HTTP_REQUEST';
    const message = status === 431 ? new CamtapError(code, { peer, what: 'header section', reason }).message : new CamtapError(code, { peer, reason }).message;
    const answer = rawAnswer(status, http.STATUS_CODES[status] ?? 'Bad Request', code, message);
    if (res && !res.req.complete) {
      // Mid-body of the request being read (a bad chunk): nothing was forwarded; answer it.
      if (!res.headersSent) {
        const body = JSON.stringify({ error: code, message });
        res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(body), Connection: 'close' });
        res.end(body, () => socket.destroy());
      } else socket.destroy();
      return;
    }
    if (res && !res.writableFinished) {
      // A later pipelined request is malformed: the one being relayed is answered first
      // (RFC 9112 §9.3.2 order), then the error, then the connection closes.
      if (!res.headersSent) res.setHeader('Connection', 'close');
      res.prependListener('finish', () => {
        if (socket.writable) socket.end(answer);
      });
      res.once('close', () => socket.end());
      return;
    }
    socket.end(answer);
  }
}

/** A whole error answer for a socket the HTTP server no longer writes to. */
function rawAnswer(status: number, reason: string, code: string, message: string): string {
  const body = JSON.stringify({ error: code, message });
  return `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}

/** `base`'s scheme and host with `port` instead of its own (a dedicated port's public base). */
function withPort(base: string, port: number): string {
  try {
    const u = new URL(base);
    u.port = String(port);
    return `${u.protocol}//${u.host}`;
  } catch {
    return `http://127.0.0.1:${port}`;
  }
}

/** Undoes a content coding (RFC 9110 §8.4.1) with the output bounded. */
function decode(body: Buffer, encoding: string, max: number): Buffer {
  const o = { maxOutputLength: max };
  switch (encoding) {
    case 'identity':
      return body;
    case 'gzip':
    case 'x-gzip':
      return zlib.gunzipSync(body, o);
    case 'br':
      return zlib.brotliDecompressSync(body, o);
    case 'deflate':
      // "deflate" is the zlib format (RFC 9110 §8.4.1.2); some servers send raw deflate.
      try {
        return zlib.inflateSync(body, o);
      } catch {
        return zlib.inflateRawSync(body, o);
      }
    default:
      throw new Error(`unknown content coding ${encoding}`);
  }
}
