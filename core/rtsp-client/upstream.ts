/**
 * The upstream camera session of the inline gateway: camtap's one RTSP session to a
 * real camera, shared by every VMS that asks camtap for that camera. It sets up the
 * camera's video track (DESCRIBE, SETUP over UDP or TCP interleaved, PLAY; RFC 2326
 * §10), publishes each RTP packet into a {@link LiveChannel} (the feed live sessions
 * subscribe to, as they do to a transcoder's), keeps the camera's session alive, and
 * reports every byte it exchanges with the camera to an {@link InlineRecorder} so the
 * traffic is stored like a capture.
 *
 * When the camera goes away (its TCP connection closes, no RTP arrives for a while,
 * or a keepalive fails) the session sets up a new camera session with exponential
 * backoff and publishes into the SAME channel. Subscribers need not notice: packets
 * of a new camera session are published only from its first keyframe, with sequence
 * numbers continuing where the last session stopped, timestamps advanced by the
 * wall-clock time of the outage, and the first session's SSRC and payload type, so the
 * channel carries one continuous RTP stream (a gap in the pictures, not a new stream).
 * `maxReconnects` ends the channel instead after that many failed attempts.
 *
 * The packet path is synchronous, allocation-free (a packet of a later session is
 * rewritten in one reused buffer) and never throws on what the camera sends.
 */
import type { Socket as UdpSocket, RemoteInfo } from 'node:dgram';
import type { Endpoint, InlineRecorder } from '../contracts/inline.js';
import type { Logger } from '../contracts/logger.js';
import { CamtapError, isCamtapError } from '../errors.js';
import { LiveChannel, type LivePacket } from '../live/channel.js';
import { silentLogger } from '../logger.js';
import { bindUdpPair, plainAddress } from '../serve/rtp-output.js';
import { FrameFlags, codecKind, inspectPayload } from '../wire/codecs.js';
import { RtpHeader, parseRtp, seqGt } from '../wire/rtp.js';
import { formatTransport, parseTransport } from '../wire/rtsp-transport.js';
import { pickCameraVideo, type CameraVideo } from './camera-sdp.js';
import { RtspClientConnection, type RtspResponse } from './client.js';
import { ReceptionStats } from './receiver-report.js';
import { redactUrl } from './url.js';

export type UpstreamState = 'connecting' | 'playing' | 'reconnecting' | 'closed';

export interface UpstreamOptions {
  /** The camera's RTSP URL; may carry `user:password@` (never logged). */
  url: string;
  /** Lower transport asked of the camera: UDP client ports, or interleaved on the RTSP connection. */
  transport: 'udp' | 'tcp';
  /** The channel's key (e.g. the gateway alias). */
  key: string;
  /** Camera name, for the channel and the logs. */
  camera: string;
  log?: Logger;
  /** Reports the RTSP connection's bytes and the UDP datagrams received (null: not recorded). */
  recorder?: InlineRecorder | null;
  /** Backoff between reconnect attempts: `minMs` doubling up to `maxMs` (default 1 s .. 30 s). */
  reconnect?: { minMs: number; maxMs: number };
  /**
   * Reconnect attempts after the camera is lost before the channel is ended (default:
   * unlimited). 0 ends the channel as soon as the camera is lost. Counted per outage.
   */
  maxReconnects?: number;
  /** Keepalive period (default: half the camera's Session timeout, else 30 s). */
  keepaliveSec?: number;
  /** Address the UDP client ports are bound on (default: the RTSP connection's local address). */
  localHost?: string;
  /** The camera counts as lost when no RTP arrives for this long (default 10 s). */
  rtpTimeoutMs?: number;
  /** Connect and per-request answer timeout (default 10 s). */
  timeoutMs?: number;
  userAgent?: string;
  /** Called when the channel's last subscriber leaves (the owner may stop the session). */
  onIdle?: (ch: LiveChannel) => void;
  /** Called once when the session ends for good (stop(), gave up reconnecting, codec changed). */
  onEnd?: (reason: string) => void;
}

/** Counters for status pages and tests. */
export interface UpstreamStats {
  /** RTP packets received from the camera (all sessions), and the ones published. */
  rtpReceived: number;
  published: number;
  /** Packets of a new camera session dropped while waiting for its first keyframe. */
  waitedForKey: number;
  /** RTCP compounds received, and receiver reports sent. */
  rtcpReceived: number;
  reportsSent: number;
  /** Datagrams or frames dropped: not from the camera, not RTP, another payload type or channel. */
  dropped: number;
}

const DEFAULT_BACKOFF = { minMs: 1000, maxMs: 30_000 };
const TEARDOWN_WAIT_MS = 2000;
/** RTCP report interval (RFC 3550 §6.2: 5 s minimum for a session this small). */
const REPORT_MS = 5000;
const TICK_MS = 500;

/** GET_PARAMETER answers meaning "not supported here": fall back to OPTIONS (RFC 2326 §10.8 makes it optional). */
const KEEPALIVE_UNSUPPORTED = new Set([400, 403, 405, 451, 455, 501]);

const ok = (r: RtspResponse) => r.status !== null && r.status >= 200 && r.status < 300;

/** One camera RTSP session: its connection, transport and counters. */
class Leg {
  readonly conn: RtspClientConnection;
  readonly video: CameraVideo;
  readonly publicMethods: string | null;
  rtp: UdpSocket | null = null;
  rtcp: UdpSocket | null = null;
  /** Interleaved channels (TCP), or the camera's RTP/RTCP ports (UDP; null when it did not say). */
  channels: [number, number] = [0, 1];
  serverPorts: [number, number] | null = null;
  /** Addresses the camera's datagrams may come from (the RTSP peer, and Transport `source=`). */
  cameraIps = new Set<string>();
  /** Our RTP and RTCP endpoints as the recorder reports them (UDP). */
  localRtp: Endpoint = { ip: '', port: 0 };
  localRtcp: Endpoint = { ip: '', port: 0 };
  /** The camera's endpoint of the last datagram recorded on each port (reused while it does not change). */
  fromRtp: Endpoint | null = null;
  fromRtcp: Endpoint | null = null;
  stats: ReceptionStats;
  lastRtpAt: number;
  lastReportAt: number;
  nextKeepaliveAt: number;
  keepaliveBusy = false;
  useGetParameter: boolean;
  /**
   * A later camera session waits for its first packet to compute the offsets below:
   * `key` drops packets until a keyframe (codecs that mark them), `first` takes the first one.
   */
  gate: 'key' | 'first' | null = null;
  /** Packets are rewritten with the offsets (a later session), or published as received. */
  rewrite = false;
  seqOffset = 0;
  tsOffset = 0;
  closed = false;

  constructor(conn: RtspClientConnection, video: CameraVideo, publicMethods: string | null) {
    this.conn = conn;
    this.video = video;
    this.publicMethods = publicMethods;
    this.stats = new ReceptionStats(video.clockRate ?? 90_000);
    this.lastRtpAt = this.lastReportAt = this.nextKeepaliveAt = performance.now();
    // Public lists what OPTIONS says the camera supports (RFC 2326 §12.28); no list: try it.
    this.useGetParameter = publicMethods === null || /\bGET_PARAMETER\b/i.test(publicMethods);
  }

  /** TEARDOWN (waiting at most a moment), then closes the connection and sockets. */
  async teardown(): Promise<void> {
    if (!this.closed && !this.conn.closed && this.conn.session !== null) {
      const t = this.conn.request('TEARDOWN', this.video.controlUrl).catch(() => null);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([t, new Promise((r) => (timer = setTimeout(r, TEARDOWN_WAIT_MS)))]);
      clearTimeout(timer);
    }
    this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.conn.close();
    for (const s of [this.rtp, this.rtcp]) {
      try {
        s?.close();
      } catch {
        /* closed */
      }
    }
  }
}

export class UpstreamSession {
  readonly key: string;
  readonly camera: string;
  /** The camera URL as logs and errors show it (no credentials). */
  readonly redactedUrl: string;
  readonly stats: UpstreamStats = { rtpReceived: 0, published: 0, waitedForKey: 0, rtcpReceived: 0, reportsSent: 0, dropped: 0 };

  readonly #opts: UpstreamOptions;
  readonly #log: Logger;
  readonly #backoff: { minMs: number; maxMs: number };
  readonly #maxReconnects: number;
  readonly #rtpTimeoutMs: number;
  #state: UpstreamState = 'connecting';
  #channel: LiveChannel | null = null;
  #leg: Leg | null = null;
  #reconnects = 0;
  #attempts = 0;
  #lostReason = '';
  #starting: Promise<LiveChannel> | null = null;
  #retryTimer: NodeJS.Timeout | null = null;
  #tick: NodeJS.Timeout | null = null;
  #stopping: Promise<void> | null = null;
  /** The connection of a set-up in progress (stop() closes it, so the set-up ends at once). */
  #settingUp: RtspClientConnection | null = null;
  #ended = false;

  // Packet path state: reused, never reallocated.
  readonly #hdr = new RtpHeader();
  readonly #pkt: LivePacket = { rtp: Buffer.alloc(0), tsNs: 0n, keyframe: false };
  readonly #scratch = Buffer.allocUnsafeSlow(65536);
  readonly #rtcpOut = Buffer.allocUnsafeSlow(32 + 268);
  readonly #cname: Buffer;
  readonly #ssrc = (1 + Math.floor(Math.random() * 0xfffffffe)) >>> 0;
  readonly #epochNs = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
  /** The channel's stream as published so far: SSRC and payload type of the first session, the highest sequence number, its timestamp and arrival. */
  #outSsrc: number | null = null;
  #outPt = 0;
  #outCodec: string | null = null;
  #outClock = 90_000;
  #lastSeq: number | null = null;
  #lastTs = 0;
  #lastAtNs = 0n;

  constructor(opts: UpstreamOptions) {
    this.#opts = opts;
    this.key = opts.key;
    this.camera = opts.camera;
    this.redactedUrl = redactUrl(opts.url);
    this.#log = (opts.log ?? silentLogger).child({ component: 'upstream', camera: opts.camera, url: this.redactedUrl });
    this.#backoff = opts.reconnect ?? DEFAULT_BACKOFF;
    this.#maxReconnects = opts.maxReconnects ?? Infinity;
    this.#rtpTimeoutMs = opts.rtpTimeoutMs ?? 10_000;
    this.#cname = Buffer.from(`camtap@${opts.key}`.slice(0, 255), 'utf8');
  }

  get channel(): LiveChannel | null {
    return this.#channel;
  }
  get state(): UpstreamState {
    return this.#state;
  }
  /** Camera sessions set up again after the camera was lost. */
  get reconnects(): number {
    return this.#reconnects;
  }
  /** The current camera session (for status): its Session id, auth scheme, and the RTSP connection's endpoints. */
  get current(): { session: string | null; auth: 'basic' | 'digest' | null; local: Endpoint | null; remote: Endpoint | null } {
    const c = this.#leg?.conn;
    return {
      session: c?.session?.id ?? null,
      auth: c?.authScheme ?? null,
      local: c ? { ip: c.localAddress, port: c.localPort } : null,
      remote: c ? { ip: c.remoteAddress, port: c.remotePort } : null,
    };
  }

  /**
   * Sets up the camera session and resolves with the channel once the camera answered
   * PLAY. Rejects with CAMTAP_ERR_UPSTREAM_REFUSED (the camera URL without credentials,
   * the method and the status) when the camera refuses a request, CAMTAP_ERR_UPSTREAM
   * when it cannot be reached, answers garbage, or has no video; the session is closed
   * then (no retry: the caller decides). Calling it again returns the same promise.
   */
  start(): Promise<LiveChannel> {
    if (this.#starting === null && this.#state === 'closed') return Promise.reject(new CamtapError('CAMTAP_ERR_UPSTREAM', { url: this.redactedUrl, reason: 'the session was stopped' }));
    this.#starting ??= this.#start();
    return this.#starting;
  }

  async #start(): Promise<LiveChannel> {
    let leg: Leg;
    try {
      leg = await this.#establish();
    } catch (e) {
      if (this.#state !== 'closed') {
        this.#state = 'closed';
        this.#ended = true;
      }
      throw e;
    }
    if (this.#state === 'closed') {
      void leg.teardown();
      throw new CamtapError('CAMTAP_ERR_UPSTREAM', { url: this.redactedUrl, reason: 'stopped while starting' });
    }
    const v = leg.video;
    this.#outPt = v.payloadType;
    this.#outCodec = v.codec;
    this.#outClock = v.clockRate ?? 90_000;
    this.#channel = new LiveChannel({
      key: this.key,
      sdp: v.channelSdp,
      camera: this.camera,
      payloadType: v.payloadType,
      codec: v.codec,
      clockRate: v.clockRate,
      onIdle: this.#opts.onIdle,
    });
    this.#attach(leg);
    this.#tick = setInterval(() => this.#onTick(), TICK_MS);
    this.#log.info({ transport: this.#opts.transport, codec: v.codec, session: leg.conn.session?.id }, 'camera session playing');
    return this.#channel;
  }

  /**
   * TEARDOWN, closes the connection and sockets, ends the channel ('stopped'). Safe to
   * call twice, and while starting or reconnecting.
   */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    this.#state = 'closed';
    this.#clearTimers();
    this.#settingUp?.close();
    const leg = this.#leg;
    this.#leg = null;
    if (leg) await leg.teardown();
    this.#end('stopped');
  }

  // ------------------------------------------------------------------ session set-up

  /** OPTIONS, DESCRIBE, SETUP (video track), PLAY on a new connection; the Leg is playing when this resolves. */
  async #establish(): Promise<Leg> {
    const o = this.#opts;
    const conn = await RtspClientConnection.connect(o.url, { timeoutMs: o.timeoutMs, log: this.#log, userAgent: o.userAgent, recorder: o.recorder ?? null });
    if (this.#state === 'closed') {
      conn.close();
      throw new CamtapError('CAMTAP_ERR_UPSTREAM', { url: this.redactedUrl, reason: 'stopped while setting up' });
    }
    this.#settingUp = conn;
    let leg: Leg | null = null;
    const refused = (method: string, r: RtspResponse) =>
      new CamtapError('CAMTAP_ERR_UPSTREAM_REFUSED', {
        url: this.redactedUrl,
        method,
        status: r.status,
        reason: `${r.reason ?? ''}${r.status === 401 ? ` (${conn.authScheme ? 'wrong user or password' : 'the URL carries no user and password'})` : ''}`.trim(),
      });
    const fail = (reason: string) => new CamtapError('CAMTAP_ERR_UPSTREAM', { url: this.redactedUrl, reason });
    try {
      // OPTIONS first, as VMSs do: some cameras expect it, and Public says whether GET_PARAMETER works.
      const opt = await conn.request('OPTIONS', conn.url);
      const publicMethods = ok(opt) ? opt.header('Public') : null;
      const d = await conn.request('DESCRIBE', conn.url, { Accept: 'application/sdp' });
      if (!ok(d)) throw refused('DESCRIBE', d);
      const base = d.header('Content-Base') ?? d.header('Content-Location') ?? conn.url;
      const video = pickCameraVideo(d.body.toString('utf8'), base);
      if (video === null) throw fail(d.body.length === 0 ? 'DESCRIBE answer has no SDP' : 'its SDP has no RTP video track');
      leg = new Leg(conn, video, publicMethods);
      const l = leg;
      let transport: string;
      if (o.transport === 'udp') {
        const host = plainAddress(o.localHost ?? conn.localAddress);
        const [rtp, rtcp] = await bindUdpPair(host);
        l.rtp = rtp;
        l.rtcp = rtcp;
        const ip = host === '0.0.0.0' || host === '::' ? conn.localAddress : host;
        l.localRtp = { ip, port: rtp.address().port };
        l.localRtcp = { ip, port: rtcp.address().port };
        transport = formatTransport({ profile: 'RTP/AVP', multicast: false, clientPorts: [rtp.address().port, rtcp.address().port] });
      } else {
        transport = formatTransport({ profile: 'RTP/AVP/TCP', multicast: false, interleaved: [0, 1] });
      }
      const s = await conn.request('SETUP', video.setupUrl, { Transport: transport });
      if (!ok(s)) throw refused('SETUP', s);
      if (conn.session === null) throw fail('SETUP answer has no Session header');
      const spec = parseTransport(s.header('Transport') ?? '')[0];
      if (!spec) throw fail('SETUP answer has no usable Transport header');
      if (spec.lower !== o.transport) throw fail(`asked for ${o.transport.toUpperCase()} transport, the camera answered ${spec.raw}`);
      l.cameraIps.add(conn.remoteAddress);
      if (o.transport === 'tcp') {
        l.channels = spec.interleaved ?? [0, 1];
        conn.onInterleaved((ch, payload) => this.#onFrame(l, ch, payload));
      } else {
        l.serverPorts = spec.serverPorts;
        if (spec.source) l.cameraIps.add(plainAddress(spec.source));
        l.rtp!.on('message', (msg: Buffer, rinfo: RemoteInfo) => this.#onDatagram(l, msg, rinfo, false));
        l.rtcp!.on('message', (msg: Buffer, rinfo: RemoteInfo) => this.#onDatagram(l, msg, rinfo, true));
      }
      const p = await conn.request('PLAY', video.controlUrl, { Range: 'npt=0.000-' });
      if (!ok(p)) throw refused('PLAY', p);
      l.lastRtpAt = performance.now();
      return l;
    } catch (e) {
      // A camera session that got as far as SETUP is torn down politely (it holds a slot on the camera).
      if (leg) void leg.teardown();
      else conn.close();
      if (this.#stopped()) throw new CamtapError('CAMTAP_ERR_UPSTREAM', { url: this.redactedUrl, reason: 'stopped while setting up' });
      if (isCamtapError(e)) throw e;
      throw fail(e instanceof Error ? e.message : String(e));
    } finally {
      if (this.#settingUp === conn) this.#settingUp = null;
    }
  }

  #attach(leg: Leg): void {
    this.#leg = leg;
    this.#state = 'playing';
    const timeout = leg.conn.session?.timeoutSec ?? null;
    const sec = this.#opts.keepaliveSec ?? (timeout !== null && timeout > 1 ? timeout / 2 : 30);
    leg.nextKeepaliveAt = performance.now() + sec * 1000;
    leg.conn.onClose((err) => this.#lost(leg, err ? err.message.replace(/^camera \S+: /, '') : 'connection closed'));
  }

  // ------------------------------------------------------------------ packet path

  #onDatagram(leg: Leg, msg: Buffer, rinfo: RemoteInfo, rtcpPort: boolean): void {
    const from = plainAddress(rinfo.address);
    if (!leg.cameraIps.has(from)) {
      this.stats.dropped++;
      return; // not the camera: not recorded, not published
    }
    const rec = this.#opts.recorder;
    if (rec) {
      // Endpoint objects are made once per camera port, never per packet (and never mutated).
      let src = rtcpPort ? leg.fromRtcp : leg.fromRtp;
      if (src === null || src.port !== rinfo.port || src.ip !== from) {
        src = { ip: from, port: rinfo.port };
        if (rtcpPort) leg.fromRtcp = src;
        else leg.fromRtp = src;
      }
      rec.udp(src, rtcpPort ? leg.localRtcp : leg.localRtp, msg);
    }
    if (rtcpPort || isRtcp(msg)) this.#onRtcp(leg, msg);
    else this.#onRtp(leg, msg);
  }

  #onFrame(leg: Leg, channel: number, payload: Buffer): void {
    if (channel === leg.channels[0]) this.#onRtp(leg, payload);
    else if (channel === leg.channels[1]) this.#onRtcp(leg, payload);
    else this.stats.dropped++;
  }

  #onRtcp(leg: Leg, buf: Buffer): void {
    this.stats.rtcpReceived++;
    leg.stats.onRtcp(buf, performance.now());
  }

  #onRtp(leg: Leg, buf: Buffer): void {
    const ch = this.#channel;
    if (leg !== this.#leg || ch === null) return;
    const h = this.#hdr;
    if (!parseRtp(buf, 0, buf.length, h) || !leg.video.media.formats.includes(h.payloadType)) {
      this.stats.dropped++;
      return;
    }
    this.stats.rtpReceived++;
    const nowMs = performance.now();
    leg.lastRtpAt = nowMs;
    leg.stats.onRtp(h.ssrc, h.seq, h.timestamp, nowMs);
    const codec = leg.video.codec;
    const keyframe = codec !== null && (inspectPayload(codec, buf, h.payloadOff, h.payloadLen) & FrameFlags.KEYFRAME) !== 0;
    const nowNs = process.hrtime.bigint();
    if (leg.gate !== null) {
      if (leg.gate === 'key' && !keyframe) {
        this.stats.waitedForKey++;
        return;
      }
      leg.gate = null;
      this.#continueFrom(leg, h.seq, h.timestamp, nowNs);
    }
    let out = buf;
    let seq = h.seq;
    let ts = h.timestamp;
    if (this.#outSsrc === null) this.#outSsrc = h.ssrc;
    if (leg.rewrite || h.ssrc !== this.#outSsrc || h.payloadType !== this.#outPt) {
      // A later camera session: one continuous stream for subscribers (see the file comment).
      if (buf.length > this.#scratch.length) return;
      seq = (h.seq + leg.seqOffset) & 0xffff;
      ts = (h.timestamp + leg.tsOffset) >>> 0;
      out = this.#scratch.subarray(0, buf.length);
      buf.copy(out);
      out[1] = (out[1]! & 0x80) | (this.#outPt & 0x7f);
      out.writeUInt16BE(seq, 2);
      out.writeUInt32BE(ts, 4);
      out.writeUInt32BE(this.#outSsrc, 8);
    }
    if (this.#lastSeq === null || seqGt(seq, this.#lastSeq)) {
      this.#lastSeq = seq;
      this.#lastTs = ts;
      this.#lastAtNs = nowNs;
    }
    const p = this.#pkt;
    p.rtp = out;
    p.tsNs = this.#epochNs + nowNs;
    p.keyframe = keyframe;
    this.stats.published++;
    ch.publish(p);
  }

  /** Offsets that make a new camera session's first published packet follow the last one published. */
  #continueFrom(leg: Leg, seq: number, timestamp: number, nowNs: bigint): void {
    if (this.#lastSeq === null) {
      leg.seqOffset = 0;
      leg.tsOffset = 0;
      return;
    }
    const elapsedTicks = Number(((nowNs - this.#lastAtNs) * BigInt(this.#outClock)) / 1_000_000_000n);
    leg.seqOffset = (this.#lastSeq + 1 - seq) & 0xffff;
    leg.tsOffset = (this.#lastTs + Math.max(1, elapsedTicks) - timestamp) >>> 0;
  }

  // ------------------------------------------------------------------ liveness

  #onTick(): void {
    const leg = this.#leg;
    if (leg === null || this.#state !== 'playing') return;
    const now = performance.now();
    if (now - leg.lastRtpAt > this.#rtpTimeoutMs) {
      this.#lost(leg, `no RTP for ${Math.round((now - leg.lastRtpAt) / 1000)} s`);
      return;
    }
    if (now - leg.lastReportAt >= REPORT_MS) {
      leg.lastReportAt = now;
      this.#sendReport(leg, now);
    }
    if (now >= leg.nextKeepaliveAt && !leg.keepaliveBusy) {
      const timeout = leg.conn.session?.timeoutSec ?? null;
      const sec = this.#opts.keepaliveSec ?? (timeout !== null && timeout > 1 ? timeout / 2 : 30);
      leg.nextKeepaliveAt = now + sec * 1000;
      leg.keepaliveBusy = true;
      void this.#keepalive(leg).finally(() => (leg.keepaliveBusy = false));
    }
  }

  /** GET_PARAMETER with no body (RFC 2326 §10.8, the usual keepalive), or OPTIONS where that is not supported. */
  async #keepalive(leg: Leg): Promise<void> {
    try {
      if (leg.useGetParameter) {
        const r = await leg.conn.request('GET_PARAMETER', leg.video.controlUrl);
        if (ok(r)) return;
        if (r.status === 454) return this.#lost(leg, 'keepalive: the camera no longer knows the session (454)');
        if (!KEEPALIVE_UNSUPPORTED.has(r.status ?? 0)) return this.#lost(leg, `keepalive: GET_PARAMETER answered ${r.status}`);
        leg.useGetParameter = false;
        this.#log.debug({ status: r.status }, 'GET_PARAMETER not supported: keepalive with OPTIONS');
      }
      const r = await leg.conn.request('OPTIONS', leg.video.controlUrl);
      if (r.status === 454) this.#lost(leg, 'keepalive: the camera no longer knows the session (454)');
    } catch (e) {
      this.#lost(leg, `keepalive failed: ${e instanceof Error ? e.message.replace(/^camera \S+: /, '') : String(e)}`);
    }
  }

  #sendReport(leg: Leg, now: number): void {
    const n = leg.stats.writeReport(this.#rtcpOut, this.#ssrc, this.#cname, now);
    if (n === 0) return;
    const rr = this.#rtcpOut.subarray(0, n);
    if (this.#opts.transport === 'tcp') {
      if (leg.conn.sendInterleaved(leg.channels[1], rr)) this.stats.reportsSent++;
      return;
    }
    const sock = leg.rtcp;
    const to = leg.serverPorts;
    if (!sock || !to) return;
    const camera = leg.conn.remoteAddress;
    // dgram may send after this returns: the datagram gets its own copy.
    const copy = Buffer.from(rr);
    this.#opts.recorder?.udp(leg.localRtcp, { ip: camera, port: to[1] }, copy);
    sock.send(copy, to[1], camera, (err) => {
      if (err) this.#log.debug({ err: err.message }, 'receiver report not sent');
    });
    this.stats.reportsSent++;
  }

  // ------------------------------------------------------------------ reconnecting

  #lost(leg: Leg, reason: string): void {
    if (leg !== this.#leg || this.#state !== 'playing') return;
    this.#leg = null;
    this.#lostReason = reason;
    this.#log.warn({ reason, published: this.stats.published }, 'camera lost');
    void leg.teardown();
    if (this.#maxReconnects <= 0) {
      this.#state = 'closed';
      this.#clearTimers();
      this.#end(`camera lost: ${reason}`);
      return;
    }
    this.#state = 'reconnecting';
    this.#attempts = 0;
    this.#scheduleRetry();
  }

  #scheduleRetry(): void {
    const delay = Math.min(this.#backoff.maxMs, this.#backoff.minMs * 2 ** Math.min(this.#attempts, 30));
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      void this.#retry();
    }, delay);
  }

  async #retry(): Promise<void> {
    if (this.#state !== 'reconnecting') return;
    this.#attempts++;
    let leg: Leg;
    try {
      leg = await this.#establish();
    } catch (e) {
      if (this.#state !== 'reconnecting') return;
      const why = e instanceof Error ? e.message : String(e);
      this.#log.warn({ attempt: this.#attempts, err: why }, 'reconnect failed');
      if (this.#attempts >= this.#maxReconnects) {
        this.#state = 'closed';
        this.#clearTimers();
        this.#end(`camera lost: ${this.#lostReason}; gave up after ${this.#attempts} attempt${this.#attempts === 1 ? '' : 's'} (${why})`);
        return;
      }
      this.#scheduleRetry();
      return;
    }
    if (this.#state !== 'reconnecting') {
      void leg.teardown();
      return;
    }
    if ((leg.video.codec ?? '').toUpperCase() !== (this.#outCodec ?? '').toUpperCase()) {
      // The channel's SDP announces one codec: subscribers could not decode another.
      void leg.teardown();
      this.#state = 'closed';
      this.#clearTimers();
      this.#end(`camera codec changed from ${this.#outCodec ?? 'unknown'} to ${leg.video.codec ?? 'unknown'}`);
      return;
    }
    // From its first keyframe (codecs that mark none: at once), continuing the channel's stream.
    leg.gate = codecKind(leg.video.codec) !== 'other' ? 'key' : 'first';
    leg.rewrite = true;
    this.#reconnects++;
    this.#attach(leg);
    this.#log.info({ attempts: this.#attempts, reconnects: this.#reconnects, session: leg.conn.session?.id }, 'camera reconnected');
  }

  /** State read through a call: TypeScript keeps a narrowed `#state` across awaits, where stop() may have changed it. */
  #stopped(): boolean {
    return this.#state === 'closed';
  }

  #clearTimers(): void {
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    if (this.#tick) clearInterval(this.#tick);
    this.#retryTimer = this.#tick = null;
  }

  #end(reason: string): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#log.info({ reason, published: this.stats.published, reconnects: this.#reconnects }, 'upstream session ended');
    this.#channel?.end(reason);
    try {
      this.#opts.onEnd?.(reason);
    } catch (e) {
      this.#log.warn({ err: String(e) }, 'onEnd threw');
    }
  }
}

/** RTCP on the RTP port (RFC 5761 §4: packet types 200..204 in the second byte). */
function isRtcp(b: Buffer): boolean {
  return b.length >= 8 && b[1]! >= 200 && b[1]! <= 204;
}
