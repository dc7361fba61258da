/**
 * camtap's RTSP server for recorded streams (RFC 2326, with RFC 7826 where it helps): any
 * RTSP player or VMS asks for `rtsp://host:port/<path>?<query>` and gets the stream
 * resolved by a {@link ReplaySource}, paced by capture time, over UDP unicast or TCP
 * interleaved.
 *
 * Why not the `rtsp-server` npm package the design card names: it is a thin wrapper over
 * `rtsp-stream`'s decoder, which expects only requests on the connection. A client's
 * RTCP receiver reports arrive as interleaved `$` frames (RFC 2326 §10.12) on the same
 * TCP connection and break its parser, and it has no way to write `$` frames in order
 * with its responses either, so interleaved media would need our own framing on both
 * directions anyway. It also has no Transport negotiation (461), no session handling,
 * no bound on header size, knows nothing of RTSP 2.0 headers, and has not been released
 * since 2018. A demultiplexer in front of it would have been a second parser doing
 * {@link MessageStreamParser}'s job, so the server uses that parser (hostile-input
 * hardened, bounded, `$` frames and requests in any split) and `serializeMessage`
 * directly and owns the small RTSP method layer below.
 *
 * Path and query: the request URL's path (track suffix `/trackID=0` and trailing
 * slashes removed) and query go to `source.plan()` as they are; `speed=` in the query
 * (a number or `max`) is read here too. npt ranges count from the start of the plan
 * made without a range (the presentation), which the SDP announces as `a=range:npt=0-D`.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from '../contracts/logger.js';
import { isCamtapError } from '../errors.js';
import { silentLogger } from '../logger.js';
import type { ReplayPacket, ReplayPlan } from '../query/types.js';
import type { WireMessage } from '../wire/rtsp-message.js';
import { parseTransport, type TransportSpec } from '../wire/rtsp-transport.js';
import type { InlineRecorder } from '../contracts/inline.js';
import type { LiveFeed } from '../live/channel.js';
import type { LiveSource } from '../live/live-source.js';
import { liveSdp, replaySdp } from './replay-sdp.js';
import type { RtspAuthenticator } from './rtsp-auth.js';
import { RtspConnection } from './rtsp-connection.js';
import { formatClock, formatNpt, parseRange, parseScale, parseSpeedParam, rateControlOff } from './rtsp-range.js';
import { RtspSession, type Presentation } from './rtsp-session.js';
import { InterleavedOutput, plainAddress, UdpOutput, type MediaOutput } from './rtp-output.js';

export type { Presentation } from './rtsp-session.js';

/** Where the server gets streams: the query engine in production, anything that yields real packets in tests. */
export interface ReplaySource {
  /**
   * Resolves a request path + query (e.g. `'/replay/cam1'`, `start=...&end=...&speed=4`)
   * to a plan. `range` (from a PLAY `Range`, in ns since the epoch) overrides the
   * query's start/end when given; null means the query alone decides. Throws
   * CamtapError CAMTAP_ERR_NOT_FOUND (answered 404) or CAMTAP_ERR_RANGE (457); other
   * CamtapErrors with a 4xx HTTP status are answered 400, anything else 500.
   */
  plan(path: string, query: URLSearchParams, range: { startNs?: bigint; endNs?: bigint } | null): Promise<ReplayPlan>;
  /** The plan's packets in order, rewritten to `ssrc`. Stops (may throw) when `signal` aborts. */
  packets(plan: ReplayPlan, opts: { ssrc: number; signal: AbortSignal }): AsyncIterable<ReplayPacket>;
}

export interface RtspServerOptions {
  source: ReplaySource;
  /** Live feeds (`/live/...`, `?codec=` conversions); without it those requests get 404. */
  live?: LiveSource | null;
  /**
   * The inline tap's recorder for a request path, or null: connections of VMSs watching a
   * proxied camera are recorded (the RTSP dialog and the media as sent), so the recording
   * equals what the VMS received.
   */
  recordFor?: ((path: string) => InlineRecorder | null) | null;
  /** TCP port; 0 picks a free one (see `listen()`'s answer). */
  port: number;
  /** Listen address (default all interfaces). */
  host?: string;
  log?: Logger;
  /** Seconds without a keepalive request or RTCP from the client before its session ends (default 60). */
  sessionTimeoutSec?: number;
  /** Concurrent RTSP connections (default 100); more get 503. Sessions are capped at twice this. */
  maxClients?: number;
  /** Bytes queued for one TCP client before it is dropped as not reading (default 4 MiB). */
  maxQueueBytes?: number;
  /** Pace of `speed=max` over UDP, as a multiple of capture time (default {@link UDP_MAX_SPEED}). */
  udpMaxSpeed?: number;
  /**
   * Who may watch (core/serve/rtsp-auth.ts): every request but OPTIONS is checked and a
   * refusal answered 401 with its challenge. Null: open, as without `auth` users.
   */
  auth?: RtspAuthenticator | null;
  /**
   * Told when a live session ends without TEARDOWN: its RTSP connection closed (a killed
   * VMS's kernel closes the socket; RFC 2326 §10.7 makes TEARDOWN the orderly end) or it
   * timed out. The inline gateway then keeps the camera's session (RtspProxySource.clientLost).
   */
  onClientLost?: ((lost: ClientLost) => void) | null;
}

/** A live session that ended without TEARDOWN: what it played and who watched. */
export interface ClientLost {
  /** The presentation's path and query, and the host the client asked for (as LiveSource.resolve takes them). */
  path: string;
  query: URLSearchParams;
  host: string;
  /** The client's address:port. */
  peer: string;
  why: 'connection closed' | 'client not reading' | 'timeout';
}

/**
 * `max` over UDP is paced at this multiple of capture time. UDP has no back-pressure,
 * and what a client cannot read in time is lost in its socket buffer: ffmpeg, which
 * stops reading while it probes the stream and starts its decoder, lost 5-50% of a
 * 450 KB H.264 recording sent unpaced, even held to 2 MB/s, and none at 8x or 16x.
 * TCP `max` needs no such guess: it follows the socket's back-pressure.
 */
export const UDP_MAX_SPEED = 8;

const PUBLIC = 'OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER';
/** The one media's control (RFC 2326 §C.1.1); relative to the Content-Base. */
export const TRACK_CONTROL = 'trackID=0';
/** `Require` option tags accepted (RFC 2326 §12.32). ONVIF replay clients send `onvif-replay`. */
const SUPPORTED_REQUIRE = new Set(['onvif-replay']);
const HIGH_WATER = 256 * 1024;

/** An answer that ends a request early: the status and, for the log, why. */
class Reply extends Error {
  constructor(
    readonly status: number,
    readonly why: string,
    readonly extra: Array<[string, string]> = [],
  ) {
    super(why);
  }
}

/**
 * Maps a request URL to its presentation and track. The track suffix is found at the
 * end of the path (`/replay/cam1/trackID=0?start=...`, RFC 3986 resolution of the
 * control) or appended after the query (`/replay/cam1?start=...&speed=4/trackID=0`,
 * which ffmpeg builds by concatenating the Content-Base and the control). Null if the
 * URL is not an absolute rtsp URL.
 */
export function presentationOf(rawUrl: string): { presentation: Presentation; track: number | null } | null {
  let u: URL;
  try {
    u = new URL(rawUrl);
  } catch {
    return null;
  }
  if (!/^rtsp[su]?:$/i.test(u.protocol) || !u.host) return null;
  let path = u.pathname;
  let search = u.search.replace(/^\?/, '');
  let track: number | null = null;
  let m = /\/trackID=(\d{1,5})$/.exec(search);
  if (m) {
    track = Number(m[1]);
    search = search.slice(0, m.index);
  }
  m = /\/trackID=(\d{1,5})\/*$/.exec(path);
  if (m) {
    track = Number(m[1]);
    path = path.slice(0, m.index);
  }
  path = path.replace(/\/+$/, '') || '/';
  const origin = `${u.protocol}//${u.host}`;
  const dir = path === '/' ? '/' : `${path}/`;
  const q = search ? `?${search}` : '';
  const presentation: Presentation = {
    path,
    query: new URLSearchParams(search),
    key: `${path}${q}`,
    base: `${origin}${dir}${q}`,
    // With a query, a relative control would be resolved differently by different
    // clients (appended to the query, or the query dropped): make it absolute then.
    control: search ? `${origin}${dir}${TRACK_CONTROL}${q}` : TRACK_CONTROL,
    trackUrl: `${origin}${dir}${TRACK_CONTROL}${q}`,
  };
  return { presentation, track };
}

type TransportChoice = { lower: 'udp'; clientPorts: [number, number] } | { lower: 'tcp'; interleaved: [number, number] | null };

/**
 * The first alternative the server can serve (RFC 2326 §12.39: the client lists them in
 * preference order): unicast `RTP/AVP[/UDP]` with `client_port`, or `RTP/AVP/TCP` with or
 * without `interleaved` (some VMSs leave it out; the server picks channels). Multicast,
 * RECORD mode and other profiles are skipped; none left is 461.
 */
export function chooseTransport(alternatives: TransportSpec[]): TransportChoice | null {
  for (const t of alternatives) {
    if (t.multicast) continue;
    if (t.mode && !t.mode.split(',').includes('PLAY')) continue;
    if (t.profile === 'RTP/AVP/TCP') {
      const il = t.interleaved;
      return { lower: 'tcp', interleaved: il && il[0] <= 254 && il[1] <= 255 && il[0] !== il[1] ? il : null };
    }
    if ((t.profile === 'RTP/AVP' || t.profile === 'RTP/AVP/UDP') && t.clientPorts && t.clientPorts[0] > 0 && t.clientPorts[1] > 0) {
      return { lower: 'udp', clientPorts: t.clientPorts };
    }
  }
  return null;
}

/**
 * The request is ONVIF replay (ONVIF Streaming Specification §6): it carries
 * `Require: onvif-replay`, or its URL has `onvif=1` (the form to give clients that only
 * send the header on SETUP and PLAY, like GStreamer's rtspsrc in ONVIF mode, but need the
 * clock range in the DESCRIBE answer already).
 */
function onvifReplay(req: WireMessage): boolean {
  const r = req.header('Require');
  if (r !== null && r.split(',').some((t) => t.trim().toLowerCase() === 'onvif-replay')) return true;
  const q = req.url ? presentationOf(req.url)?.presentation.query.get('onvif') : null;
  return q === '1' || q === 'true';
}

function sessionIdOf(header: string): string {
  return header.split(';')[0]!.trim();
}

function errorStatus(e: unknown): number {
  if (!isCamtapError(e)) return 500;
  if (e.http === 404 || e.http === 457 || e.http === 503) return e.http;
  return e.http >= 400 && e.http < 500 ? 400 : 500;
}

function formatSpeed(s: number): string {
  return Number.isInteger(s) ? `${s}.0` : String(s);
}

export class RtspServer {
  readonly #source: ReplaySource;
  readonly #live: LiveSource | null;
  readonly #recordFor: ((path: string) => InlineRecorder | null) | null;
  readonly #recorders = new WeakMap<RtspConnection, InlineRecorder>();
  readonly #port: number;
  readonly #host: string | undefined;
  readonly #log: Logger;
  readonly #timeoutSec: number;
  readonly #maxClients: number;
  readonly #maxQueue: number;
  readonly #udpMaxSpeed: number;
  readonly #auth: RtspAuthenticator | null;
  readonly #onClientLost: ((lost: ClientLost) => void) | null;
  #server: Server | null = null;
  readonly #sessions = new Map<string, RtspSession>();
  /** Sessions by the connection that set them up. */
  readonly #byConn = new Map<RtspConnection, Set<RtspSession>>();
  readonly #owner = new Map<RtspSession, RtspConnection>();
  readonly #connections = new Set<RtspConnection>();
  /** DESCRIBE results per connection (few entries), so SETUP does not plan again. */
  readonly #plans = new WeakMap<RtspConnection, Map<string, ReplayPlan>>();
  /** Live feeds per connection, likewise. */
  readonly #feeds = new WeakMap<RtspConnection, Map<string, LiveFeed>>();
  #sweep: NodeJS.Timeout | null = null;
  #closing: Promise<void> | null = null;

  constructor(opts: RtspServerOptions) {
    this.#source = opts.source;
    this.#live = opts.live ?? null;
    this.#recordFor = opts.recordFor ?? null;
    this.#port = opts.port;
    this.#host = opts.host;
    this.#log = (opts.log ?? silentLogger).child({ component: 'rtsp-server' });
    this.#timeoutSec = Math.max(1, opts.sessionTimeoutSec ?? 60);
    this.#maxClients = Math.max(1, opts.maxClients ?? 100);
    this.#maxQueue = Math.max(64 * 1024, opts.maxQueueBytes ?? 4 * 1024 * 1024);
    this.#udpMaxSpeed = opts.udpMaxSpeed && opts.udpMaxSpeed > 0 ? opts.udpMaxSpeed : UDP_MAX_SPEED;
    this.#auth = opts.auth ?? null;
    this.#onClientLost = opts.onClientLost ?? null;
  }

  /** Live sessions (set up and not torn down, timed out or dropped). */
  get sessions(): number {
    return this.#sessions.size;
  }

  /** Open RTSP connections. */
  get connections(): number {
    return this.#connections.size;
  }

  listen(): Promise<{ port: number }> {
    if (this.#closing) return Promise.reject(new Error('server closed'));
    if (this.#server) return Promise.reject(new Error('already listening'));
    const server = createServer({ noDelay: true }, (socket) => this.#accept(socket));
    this.#server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: this.#port, host: this.#host }, () => {
        server.off('error', reject);
        server.on('error', (e) => this.#log.error({ err: e.message }, 'listener error'));
        const sweepMs = Math.max(250, Math.min(5000, (this.#timeoutSec * 1000) / 4));
        this.#sweep = setInterval(() => this.#sweepIdle(), sweepMs);
        this.#sweep.unref();
        const addr = server.address();
        const port = typeof addr === 'object' && addr ? addr.port : this.#port;
        this.#log.info({ port, host: this.#host ?? '*' }, 'rtsp server listening');
        resolve({ port });
      });
    });
  }

  /** Stops listening and ends every session and connection. Safe to call twice. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#sweep) clearInterval(this.#sweep);
      for (const s of [...this.#sessions.values()]) s.end('server closing');
      for (const c of [...this.#connections]) c.destroy();
      const server = this.#server;
      if (server?.listening) await new Promise<void>((r) => server.close(() => r()));
    })();
    return this.#closing;
  }

  // ------------------------------------------------------------------ connections

  #accept(socket: Socket): void {
    if (this.#closing) {
      socket.destroy();
      return;
    }
    const conn = new RtspConnection(socket, {
      maxQueueBytes: this.#maxQueue,
      highWaterBytes: HIGH_WATER,
      maxHeaderBytes: 16 * 1024,
      maxBodyBytes: 64 * 1024,
      maxPipelined: 32,
      log: this.#log,
      onRequest: (c, m) => this.#onRequest(c, m),
      onInterleaved: (c, ch) => this.#onInterleaved(c, ch),
      onClose: (c) => this.#onConnClose(c),
    });
    if (this.#connections.size >= this.#maxClients) {
      conn.rejectWith = 503;
      setTimeout(() => conn.destroy(), 5000).unref();
    }
    this.#connections.add(conn);
    conn.log.debug('connected');
  }

  #onConnClose(conn: RtspConnection): void {
    this.#connections.delete(conn);
    const set = this.#byConn.get(conn);
    this.#byConn.delete(conn);
    // Interleaved media dies with its connection; UDP sessions outlive it (RFC 2326 §3.3)
    // until TEARDOWN from another connection or the session timeout. Sessions still here
    // were not torn down (TEARDOWN ends and forgets them first).
    const why = conn.droppedForQueue ? 'client not reading' : 'connection closed';
    for (const s of set ?? []) {
      this.#lost(s, conn, why);
      if (s.output.kind === 'tcp') s.end(why);
    }
    conn.log.debug('closed');
  }

  /** An interleaved frame from the client (RTCP receiver reports, or junk): a sign of life. */
  #onInterleaved(conn: RtspConnection, _channel: number): void {
    for (const s of this.#byConn.get(conn) ?? []) s.touch();
  }

  #sweepIdle(): void {
    const now = performance.now();
    const limit = this.#timeoutSec * 1000;
    for (const s of [...this.#sessions.values()]) {
      const conn = this.#owner.get(s);
      const last = s.output.kind === 'tcp' && conn ? Math.max(s.lastActivity, conn.lastActivity) : s.lastActivity;
      if (now - last > limit) {
        if (conn && !conn.closed) this.#lost(s, conn, 'timeout');
        s.end('timeout');
      }
    }
    for (const c of [...this.#connections]) {
      if ((this.#byConn.get(c)?.size ?? 0) === 0 && now - c.lastActivity > limit) {
        c.log.debug('idle connection closed');
        c.destroy();
      }
    }
  }

  /** Tells the owner a live session ended without TEARDOWN (see RtspServerOptions.onClientLost). */
  #lost(s: RtspSession, conn: RtspConnection, why: ClientLost['why']): void {
    if (!this.#onClientLost || !s.feed || s.ended) return;
    const p = s.presentation;
    try {
      this.#onClientLost({ path: p.path, query: new URLSearchParams(p.query), host: new URL(p.base).host, peer: `${plainAddress(conn.remoteAddress)}:${conn.remotePort}`, why });
    } catch (e) {
      conn.log.error({ err: e instanceof Error ? e.message : String(e) }, 'onClientLost failed');
    }
  }

  #register(conn: RtspConnection, s: RtspSession): void {
    this.#sessions.set(s.id, s);
    this.#owner.set(s, conn);
    let set = this.#byConn.get(conn);
    if (!set) this.#byConn.set(conn, (set = new Set()));
    set.add(s);
  }

  #forget(s: RtspSession): void {
    this.#sessions.delete(s.id);
    const conn = this.#owner.get(s);
    this.#owner.delete(s);
    if (conn) this.#byConn.get(conn)?.delete(s);
  }

  // ------------------------------------------------------------------ requests

  async #onRequest(conn: RtspConnection, req: WireMessage): Promise<void> {
    const cseq = req.cseq;
    if (conn.rejectWith) {
      conn.failAndClose(conn.rejectWith, 'Service Unavailable', cseq === null ? [] : [['CSeq', String(cseq)]]);
      return;
    }
    if (req.protocol !== 'RTSP') {
      conn.failAndClose(400, 'Bad Request');
      return;
    }
    // RFC 2326 §12.17: every request carries CSeq; without it the answer cannot be matched.
    if (cseq === null) {
      conn.respond(400, this.#common(null), undefined, 'Bad Request (no CSeq)');
      return;
    }
    const log = conn.log.child({ cseq, method: req.method });
    try {
      if (req.version !== '1.0') throw new Reply(505, `RTSP/${req.version} not supported`);
      if (req.bodyTruncated) {
        conn.failAndClose(413, 'Request Entity Too Large', [['CSeq', String(cseq)]]);
        return;
      }
      // RFC 2326 §D / RFC 7826 §19.1: before anything of the request is looked at (a 404 would tell what exists).
      if (this.#auth && req.method !== 'OPTIONS') {
        const a = await this.#auth.check(conn, req, log);
        if (!a.ok) throw new Reply(a.status, a.why, a.headers);
      }
      const require = req.header('Require');
      if (require) {
        const unsupported = require
          .split(',')
          .map((t) => t.trim())
          .filter((t) => t && !SUPPORTED_REQUIRE.has(t.toLowerCase()));
        if (unsupported.length) throw new Reply(551, 'option not supported', [['Unsupported', unsupported.join(', ')]]);
      }
      log.debug({ url: req.url }, 'request');
      if (this.#recordFor && !conn.recording && req.url) this.#maybeRecord(conn, req);
      switch (req.method) {
        case 'OPTIONS':
          return this.#options(conn, req);
        case 'DESCRIBE':
          return await this.#describe(conn, req);
        case 'SETUP':
          return await this.#setup(conn, req);
        case 'PLAY':
          return await this.#play(conn, req);
        case 'PAUSE':
          return this.#pause(conn, req);
        case 'TEARDOWN':
          return this.#teardown(conn, req);
        case 'GET_PARAMETER':
        case 'SET_PARAMETER':
          return this.#parameter(conn, req);
        case 'ANNOUNCE':
        case 'RECORD':
        case 'REDIRECT':
          throw new Reply(405, 'replay only', [['Allow', PUBLIC]]);
        default:
          throw new Reply(501, `method ${req.method} not implemented`);
      }
    } catch (e) {
      if (e instanceof Reply) {
        log.debug({ status: e.status, why: e.why }, 'request refused');
        conn.respond(e.status, [...this.#common(cseq), ...e.extra]);
        return;
      }
      const status = errorStatus(e);
      const msg = e instanceof Error ? e.message : String(e);
      if (status >= 500) log.error({ err: msg }, 'request failed');
      else log.debug({ status, err: msg }, 'request refused');
      conn.respond(status, this.#common(cseq));
    }
  }

  /** Starts recording the connection when its request names a proxied camera (see RtspServerOptions.recordFor). */
  #maybeRecord(conn: RtspConnection, req: WireMessage): void {
    const t = presentationOf(req.url!);
    const rec = t ? this.#recordFor!(t.presentation.path) : null;
    if (!rec) return;
    this.#recorders.set(conn, rec);
    conn.record(rec.tcp({ ip: plainAddress(conn.remoteAddress), port: conn.remotePort }, { ip: plainAddress(conn.localAddress), port: conn.localPort }), req);
  }

  #common(cseq: number | null): Array<[string, string]> {
    const h: Array<[string, string]> = [];
    if (cseq !== null) h.push(['CSeq', String(cseq)]);
    h.push(['Date', new Date().toUTCString()], ['Server', 'camtap']);
    return h;
  }

  /**
   * The session a request names in its `Session` header (RFC 2326 §12.37): none is 455
   * (the method needs one: PLAY before SETUP), an unknown id 454. The request counts as
   * a keepalive.
   */
  #requireSession(req: WireMessage): RtspSession {
    const h = req.header('Session');
    if (!h) throw new Reply(455, `${req.method} without a session`);
    return this.#lookupSession(h);
  }

  #lookupSession(header: string): RtspSession {
    const s = this.#sessions.get(sessionIdOf(header));
    if (!s) throw new Reply(454, 'unknown session');
    s.touch();
    return s;
  }

  #sessionHeader(s: RtspSession): [string, string] {
    return ['Session', `${s.id};timeout=${this.#timeoutSec}`];
  }

  #target(req: WireMessage): { presentation: Presentation; track: number | null; speed: number | null } {
    const t = req.url ? presentationOf(req.url) : null;
    if (!t) throw new Reply(400, `bad URL ${req.url}`);
    const speed = parseSpeedParam(t.presentation.query.get('speed'));
    if (speed !== null && Number.isNaN(speed)) throw new Reply(400, 'bad speed= parameter');
    return { ...t, speed };
  }

  #options(conn: RtspConnection, req: WireMessage): void {
    const h = req.header('Session');
    const s = h ? this.#lookupSession(h) : null;
    const headers = [...this.#common(req.cseq), ['Public', PUBLIC] as [string, string]];
    if (s) headers.push(this.#sessionHeader(s));
    conn.respond(200, headers);
  }

  async #planFor(conn: RtspConnection, p: Presentation): Promise<ReplayPlan> {
    const cache = this.#plans.get(conn);
    const hit = cache?.get(p.key);
    if (hit) return hit;
    const plan = await this.#source.plan(p.path, new URLSearchParams(p.query), null);
    let c = this.#plans.get(conn);
    if (!c) this.#plans.set(conn, (c = new Map()));
    if (c.size >= 8) c.delete(c.keys().next().value!);
    c.set(p.key, plan);
    return plan;
  }

  /** The live feed a presentation names, or null for a replay (see LiveSource.resolve). */
  async #feedFor(conn: RtspConnection, p: Presentation): Promise<LiveFeed | null> {
    const hit = this.#feeds.get(conn)?.get(p.key);
    if (hit && !hit.ended) return hit;
    let feed: LiveFeed | null;
    if (this.#live) feed = await this.#live.resolve(p.path, new URLSearchParams(p.query), new URL(p.base).host);
    else if (/^\/live\//.test(p.path) || p.query.has('codec')) throw new Reply(404, 'live access is not configured');
    else feed = null;
    // Only feeds are kept: "not live" may change (a camera the inventory learns meanwhile).
    if (feed) {
      let c = this.#feeds.get(conn);
      if (!c) this.#feeds.set(conn, (c = new Map()));
      if (c.size >= 8) c.delete(c.keys().next().value!);
      c.set(p.key, feed);
    }
    return feed;
  }

  /** RFC 2326 §10.2: the SDP, with a Content-Base the control resolves against (§C.1.1). */
  async #describe(conn: RtspConnection, req: WireMessage): Promise<void> {
    const t = this.#target(req);
    const feed = await this.#feedFor(conn, t.presentation);
    const where = { control: t.presentation.control, address: plainAddress(conn.localAddress) || '0.0.0.0' };
    const sdp = feed ? liveSdp(feed, where) : replaySdp(await this.#planFor(conn, t.presentation), { ...where, clockRange: onvifReplay(req) });
    conn.respond(
      200,
      [...this.#common(req.cseq), ['Content-Base', t.presentation.base], ['Content-Type', 'application/sdp']],
      Buffer.from(sdp, 'utf8'),
    );
  }

  /** Interleaved channels for a new output: the requested pair if free on this connection, else the lowest free even pair. */
  #channels(conn: RtspConnection, wanted: [number, number] | null, except: RtspSession | null): [number, number] {
    const used = new Set<number>();
    for (const s of this.#byConn.get(conn) ?? []) {
      if (s === except || !(s.output instanceof InterleavedOutput)) continue;
      used.add(s.output.channels[0]).add(s.output.channels[1]);
    }
    if (wanted && !used.has(wanted[0]) && !used.has(wanted[1])) return wanted;
    for (let c = 0; c < 254; c += 2) if (!used.has(c) && !used.has(c + 1)) return [c, c + 1];
    throw new Reply(453, 'no free interleaved channel');
  }

  /** RFC 2326 §10.4: one track per presentation; a second SETUP in Ready changes its transport. */
  async #setup(conn: RtspConnection, req: WireMessage): Promise<void> {
    const t = this.#target(req);
    if (t.track !== null && t.track !== 0) throw new Reply(404, `no track ${t.track}`);
    const th = req.header('Transport');
    const choice = th ? chooseTransport(parseTransport(th)) : null;
    if (!choice) throw new Reply(461, `unsupported transport ${th ?? '(none)'}`);
    const sh = req.header('Session');
    let existing: RtspSession | null = null;
    if (sh) {
      existing = this.#lookupSession(sh);
      if (existing.presentation.key !== t.presentation.key) throw new Reply(459, 'session belongs to another presentation');
      if (existing.state !== 'ready') throw new Reply(455, 'SETUP while playing');
    } else if (this.#sessions.size >= this.#maxClients * 2) {
      throw new Reply(503, 'session limit reached');
    }
    const feed = existing ? existing.feed : await this.#feedFor(conn, t.presentation);
    const plan = existing ? existing.basePlan : feed ? null : await this.#planFor(conn, t.presentation);
    const holder: { s: RtspSession | null } = { s: existing };
    let out: MediaOutput;
    if (choice.lower === 'udp') {
      try {
        out = await UdpOutput.open({
          localHost: conn.localAddress,
          peerHost: conn.remoteAddress,
          clientPorts: choice.clientPorts,
          onActivity: () => holder.s?.touch(),
          log: conn.log,
          recorder: this.#recorders.get(conn) ?? null,
        });
      } catch (e) {
        throw new Reply(503, `cannot open UDP ports: ${e instanceof Error ? e.message : String(e)}`);
      }
    } else {
      out = new InterleavedOutput(conn, this.#channels(conn, choice.interleaved, existing));
    }
    if (conn.closed || this.#closing || existing?.ended) {
      out.close();
      if (existing?.ended) throw new Reply(454, 'session ended meanwhile');
      return;
    }
    let s: RtspSession;
    if (existing) {
      existing.setOutput(out);
      s = existing;
    } else {
      s = new RtspSession({
        presentation: t.presentation,
        plan,
        feed,
        output: out,
        urlSpeed: t.speed ?? 1,
        connectionId: conn.id,
        cname: `camtap@${plainAddress(conn.localAddress) || 'localhost'}`,
        log: conn.log,
        onEnd: (x) => this.#forget(x),
      });
      holder.s = s;
      this.#register(conn, s);
      conn.log.info({ session: s.id, path: t.presentation.path, transport: out.kind }, 'session set up');
    }
    if (onvifReplay(req)) s.onvif = true;
    conn.respond(200, [...this.#common(req.cseq), ['Transport', out.transport(s.ssrc)], this.#sessionHeader(s)]);
  }

  /** The pace a PLAY asks for: `Rate-Control: no` (ONVIF) is max, then `Scale`, then the URL's `speed=`, then 1. */
  #speedOf(req: WireMessage, s: RtspSession): { speed: number; echo: Array<[string, string]> } {
    if (rateControlOff(req.header('Rate-Control'))) return { speed: Number.POSITIVE_INFINITY, echo: [['Rate-Control', 'no']] };
    const scale = req.header('Scale');
    if (scale !== null) {
      const v = parseScale(scale);
      if (Number.isNaN(v)) throw new Reply(456, `Scale ${scale} not supported (forward only, up to 1000)`);
      return { speed: v, echo: [['Scale', formatSpeed(v)]] };
    }
    const fromUrl = req.url ? presentationOf(req.url)?.presentation.query.get('speed') ?? null : null;
    const v = parseSpeedParam(fromUrl);
    if (v !== null && !Number.isNaN(v)) return { speed: v, echo: [] };
    return { speed: s.urlSpeed, echo: [] };
  }

  /** Absolute ns range of a PLAY `Range`, checked against the presentation; null when there is none. */
  #rangeOf(req: WireMessage, s: RtspSession): { range: { startNs?: bigint; endNs?: bigint } | null; clock: boolean } {
    const h = req.header('Range');
    if (h === null) return { range: null, clock: false };
    const r = parseRange(h);
    if (!r) throw new Reply(457, `bad Range ${h}`);
    if (r.kind === 'npt-now') throw new Reply(457, 'npt=now- (live) is not served by replay');
    const base = s.basePlan!;
    let startNs: bigint;
    let endNs: bigint | undefined;
    if (r.kind === 'npt') {
      startNs = base.startNs + BigInt(Math.round(r.start * 1e9));
      endNs = r.end === null ? undefined : base.startNs + BigInt(Math.round(r.end * 1e9));
    } else {
      startNs = r.startNs;
      endNs = r.endNs ?? undefined;
    }
    if (startNs > base.endNs || (endNs !== undefined && endNs < base.startNs)) throw new Reply(457, `Range ${h} outside the recording`);
    if (startNs < base.startNs) startNs = base.startNs;
    if (endNs !== undefined && endNs > base.endNs) endNs = base.endNs;
    return { range: { startNs, endNs }, clock: r.kind === 'clock' };
  }

  #rangeHeader(s: RtspSession, fromNs: bigint, toNs: bigint, clock: boolean): string {
    const base = s.basePlan!;
    if (fromNs < base.startNs) fromNs = base.startNs;
    if (clock) return `clock=${formatClock(fromNs)}-${formatClock(toNs)}`;
    return `npt=${formatNpt(Number(fromNs - base.startNs) / 1e9)}-${formatNpt(Number(toNs - base.startNs) / 1e9)}`;
  }

  /**
   * RFC 2326 §10.5. With a Range (or nothing played yet, or the end reached) a new replay
   * starts; without one a paused replay resumes where it stopped. The answer carries
   * the Range actually played (from the first packet, which may precede the asked start
   * by up to a GOP: replay starts at a keyframe) and RTP-Info (§12.33) with that packet's
   * sequence number and RTP timestamp.
   */
  async #play(conn: RtspConnection, req: WireMessage): Promise<void> {
    const s = this.#requireSession(req);
    if (s.feed) return this.#playLive(conn, req, s);
    const { range, clock } = this.#rangeOf(req, s);
    const asked = this.#speedOf(req, s);
    const echo = asked.echo;
    const speed = s.output.kind === 'udp' && !Number.isFinite(asked.speed) ? this.#udpMaxSpeed : asked.speed;
    const player = s.player;
    const headers = (pos: { tsNs: bigint; seq: number; timestamp: number }, endNs: bigint): Array<[string, string]> => [
      ...this.#common(req.cseq),
      this.#sessionHeader(s),
      ['Range', this.#rangeHeader(s, pos.tsNs, endNs, clock)],
      ['RTP-Info', `url=${s.presentation.trackUrl};seq=${pos.seq};rtptime=${pos.timestamp >>> 0}`],
      ...echo,
    ];
    if (range === null && player && player.ended === null) {
      const pos = player.position();
      if (pos) {
        conn.respond(200, headers(pos, s.plan!.endNs));
        if (player.paused) player.resume(speed);
        else player.setSpeed(speed);
        s.state = 'playing';
        return;
      }
    }
    const plan = range ? await this.#source.plan(s.presentation.path, new URLSearchParams(s.presentation.query), range) : s.basePlan!;
    if (s.ended) throw new Reply(454, 'session ended meanwhile');
    if (onvifReplay(req)) s.onvif = true;
    const pos = await s.prepare(this.#source, plan, speed, s.onvif ? { cseq: req.cseq ?? 0 } : null);
    if (s.ended) throw new Reply(454, 'session ended meanwhile');
    if (!pos) throw new Reply(457, 'no packets in the range');
    const endNs = range?.endNs !== undefined && range.endNs < plan.endNs ? range.endNs : plan.endNs;
    if (!conn.respond(200, headers(pos, endNs))) return;
    s.state = 'playing';
    s.player?.start();
  }

  /**
   * PLAY of a live session: packets go out as the feed delivers them, from the next
   * keyframe. Range and Scale do not apply (the answer says `npt=now-`, RFC 2326 §3.6);
   * RTP-Info gives the sequence number and timestamp the first packet will carry.
   */
  #playLive(conn: RtspConnection, req: WireMessage, s: RtspSession): void {
    if (s.feed!.ended) throw new Reply(404, 'live feed ended');
    const lp = s.livePlayer();
    const pos = lp.position();
    const ok = conn.respond(200, [
      ...this.#common(req.cseq),
      this.#sessionHeader(s),
      ['Range', 'npt=now-'],
      ['RTP-Info', `url=${s.presentation.trackUrl};seq=${pos.seq};rtptime=${pos.timestamp >>> 0}`],
    ]);
    if (!ok) return;
    s.state = 'playing';
    lp.start();
  }

  /** RFC 2326 §10.6: Playing -> Ready, keeping the position; PAUSE in Ready is 455 (§A.2). */
  #pause(conn: RtspConnection, req: WireMessage): void {
    const s = this.#requireSession(req);
    if (s.feed) {
      if (s.state !== 'playing' || !s.live) throw new Reply(455, 'PAUSE while not playing');
      s.live.pause();
      s.state = 'paused';
      conn.respond(200, [...this.#common(req.cseq), this.#sessionHeader(s)]);
      return;
    }
    if (s.state !== 'playing' || !s.player) throw new Reply(455, 'PAUSE while not playing');
    s.player.pause();
    s.state = 'paused';
    const pos = s.player.position();
    const headers = [...this.#common(req.cseq), this.#sessionHeader(s)];
    if (pos) headers.push(['Range', this.#rangeHeader(s, pos.tsNs, s.plan!.endNs, false)]);
    conn.respond(200, headers);
  }

  #teardown(conn: RtspConnection, req: WireMessage): void {
    const s = this.#requireSession(req);
    s.end('teardown');
    conn.respond(200, this.#common(req.cseq));
  }

  /**
   * GET_PARAMETER / SET_PARAMETER (RFC 2326 §10.8, §10.9): with no body they are the
   * keepalive most clients send; parameters themselves are not supported (451).
   */
  #parameter(conn: RtspConnection, req: WireMessage): void {
    const h = req.header('Session');
    const s = h ? this.#lookupSession(h) : null;
    if (req.body.length > 0 && req.body.toString('latin1').trim() !== '') throw new Reply(451, 'parameters not supported');
    const headers = this.#common(req.cseq);
    if (s) headers.push(this.#sessionHeader(s));
    conn.respond(200, headers);
  }
}
