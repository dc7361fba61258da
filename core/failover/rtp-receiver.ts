/**
 * What a taken-over camera sends camtap during a failover: RTP and RTCP on UDP port
 * pairs camtap binds (RTP even, RTCP the port above, RFC 3550 §11), or interleaved in
 * the RTSP connection (RFC 2326 §10.12, fed in by ./rtsp-replay.ts). Every UDP datagram
 * goes to the inline recorder with its real endpoints, so it is stored and indexed like
 * captured traffic (interleaved frames are already recorded as the RTSP connection's
 * bytes), and to an optional per-packet callback.
 *
 * camtap sends the camera an RTCP receiver report per track every 5 s (RFC 3550 §6.2:
 * the minimum interval for a session this small): some cameras end a session that
 * sends no RTCP, even while the RTSP keepalive goes on.
 *
 * The packet path is synchronous and allocates nothing per packet: endpoint objects
 * are made once per camera port and reused while it does not change, and the RTP
 * header is parsed into one object per receiver.
 */
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { Endpoint, InlineRecorder } from '../contracts/inline.js';
import type { Logger } from '../contracts/logger.js';
import { CamtapError } from '../errors.js';
import { silentLogger } from '../logger.js';
import { ReceptionStats } from '../rtsp-client/receiver-report.js';
import { plainAddress } from '../serve/rtp-output.js';
import { RtpHeader, looksLikeRtcp, parseRtp } from '../wire/rtp.js';

/** RTCP report interval (RFC 3550 §6.2: 5 s minimum). */
const REPORT_MS = 5000;

export interface RtpReceiverOptions {
  /** camtap's address the camera sends to: the sockets bind here. */
  host: string;
  /** Where every datagram received is recorded (null: not recorded). */
  recorder: InlineRecorder | null;
  log?: Logger;
  /**
   * One UDP pair bound at once as track 0 (a camera pushed there by an HTTP or API
   * redirect). Bind errors then surface through {@link RtpReceiver.ready}.
   */
  rtpPort?: number;
  rtcpPort?: number;
  /** Called for every RTP packet (not RTCP) with its track; `rtp` is valid during the call only. */
  onPacket?(track: number, rtp: Buffer): void;
  /** Datagrams from other addresses are dropped (counted, not recorded). Default: all are taken. */
  from?: string[];
  /** CNAME of camtap's receiver reports (RFC 3550 §6.5.1). */
  cname?: string;
  /** Receiver report interval in ms (default 5000). */
  reportMs?: number;
}

/** Counters of one track. */
export interface TrackStats {
  track: number;
  lower: 'udp' | 'tcp';
  /** RTP packets and their bytes. */
  packets: number;
  bytes: number;
  /** RTCP compounds from the camera. */
  rtcp: number;
  /** Datagrams on the RTP port that are not RTP, or from an address not allowed. */
  dropped: number;
  /** Receiver reports sent. */
  reports: number;
  /** Wall clock (ms since the epoch) of the last RTP packet, or null. */
  lastPacketAt: number | null;
}

/** Totals over the tracks. */
export interface ReceiverStats {
  packets: number;
  bytes: number;
  lastPacketAt: number | null;
  tracks: number;
}

class Track {
  readonly stats: TrackStats;
  readonly reception: ReceptionStats;
  rtp: UdpSocket | null = null;
  rtcp: UdpSocket | null = null;
  /** camtap's endpoints as the recorder reports them (UDP). */
  localRtp: Endpoint = { ip: '', port: 0 };
  localRtcp: Endpoint = { ip: '', port: 0 };
  /** The camera's endpoint of the last datagram on each port (reused while it does not change). */
  fromRtp: Endpoint | null = null;
  fromRtcp: Endpoint | null = null;
  /** Where receiver reports go (UDP): given by the SETUP answer, else learned from the camera's datagrams. */
  remote: Endpoint | null = null;
  /** Sends a receiver report over the RTSP connection (interleaved tracks). */
  sendRtcp: ((rr: Buffer) => boolean) | null = null;

  constructor(track: number, lower: 'udp' | 'tcp', clockRate: number) {
    this.stats = { track, lower, packets: 0, bytes: 0, rtcp: 0, dropped: 0, reports: 0, lastPacketAt: null };
    this.reception = new ReceptionStats(clockRate);
  }
}

function bindError(host: string, port: number, e: unknown): CamtapError {
  const code = (e as NodeJS.ErrnoException)?.code;
  const reason = code === 'EADDRINUSE' ? 'port in use' : code === 'EADDRNOTAVAIL' ? 'not an address of this host' : code === 'EACCES' ? 'permission denied' : (code ?? (e instanceof Error ? e.message : String(e)));
  return new CamtapError('CAMTAP_ERR_FAILOVER_RECEIVE', { address: isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`, reason });
}

function bindSocket(host: string, port: number): Promise<UdpSocket> {
  return new Promise((resolve, reject) => {
    const s = createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4' });
    const onError = (e: Error) => {
      s.close();
      reject(bindError(host, port, e));
    };
    s.once('error', onError);
    s.bind({ port, address: host, exclusive: true }, () => {
      s.off('error', onError);
      resolve(s);
    });
  });
}

/**
 * The UDP port pairs and interleaved tracks of one taken-over camera (an RTSP replay's
 * tracks, or the pair a pushing camera was pointed at). `close()` is safe to call twice;
 * the owner (the replay session or the failover manager) closes it.
 */
export class RtpReceiver {
  /** Resolves when the pair given in the options is bound (at once without one); rejects with CAMTAP_ERR_FAILOVER_RECEIVE. */
  readonly ready: Promise<void>;
  readonly host: string;

  readonly #opts: RtpReceiverOptions;
  readonly #log: Logger;
  readonly #tracks = new Map<number, Track>();
  readonly #hdr = new RtpHeader();
  readonly #from: Set<string> | null;
  readonly #rtcpOut = Buffer.allocUnsafeSlow(32 + 268);
  readonly #cname: Buffer;
  readonly #ssrc = (1 + Math.floor(Math.random() * 0xfffffffe)) >>> 0;
  readonly #timer: NodeJS.Timeout;
  #closed = false;

  constructor(opts: RtpReceiverOptions) {
    this.#opts = opts;
    this.host = opts.host;
    this.#log = (opts.log ?? silentLogger).child({ component: 'failover-receiver', host: opts.host });
    this.#from = opts.from ? new Set(opts.from.map(plainAddress)) : null;
    this.#cname = Buffer.from((opts.cname ?? `camtap@${opts.host}`).slice(0, 255), 'utf8');
    this.#timer = setInterval(() => this.#report(), opts.reportMs ?? REPORT_MS);
    this.#timer.unref();
    if (opts.rtpPort !== undefined) {
      this.ready = this.bindUdp(0, opts.rtpPort, opts.rtcpPort ?? opts.rtpPort + 1);
      // Callers that construct and forget still hear of a bind failure in the log.
      this.ready.catch((e: unknown) => this.#log.warn({ err: e instanceof Error ? e.message : String(e) }, 'cannot receive'));
    } else this.ready = Promise.resolve();
  }

  /** A receiver with its option pair bound; rejects with CAMTAP_ERR_FAILOVER_RECEIVE (nothing left bound) when a port cannot be bound. */
  static async open(opts: RtpReceiverOptions): Promise<RtpReceiver> {
    const r = new RtpReceiver(opts);
    try {
      await r.ready;
    } catch (e) {
      r.close();
      throw e;
    }
    return r;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Binds `rtpPort` and `rtcpPort` on the host for `track`. Rejects with
   * CAMTAP_ERR_FAILOVER_RECEIVE naming `host:port` (port in use, not an address of this
   * host); neither port stays bound then.
   */
  async bindUdp(track: number, rtpPort: number, rtcpPort: number, clockRate = 90_000): Promise<void> {
    if (this.#closed) throw new CamtapError('CAMTAP_ERR_FAILOVER_RECEIVE', { address: `${this.host}:${rtpPort}`, reason: 'receiver closed' });
    if (this.#tracks.has(track)) throw new CamtapError('CAMTAP_ERR_FAILOVER_RECEIVE', { address: `${this.host}:${rtpPort}`, reason: `track ${track} is already set up` });
    const rtp = await bindSocket(this.host, rtpPort);
    let rtcp: UdpSocket;
    try {
      rtcp = await bindSocket(this.host, rtcpPort);
    } catch (e) {
      rtp.close();
      throw e;
    }
    if (this.#closed) {
      rtp.close();
      rtcp.close();
      throw new CamtapError('CAMTAP_ERR_FAILOVER_RECEIVE', { address: `${this.host}:${rtpPort}`, reason: 'receiver closed' });
    }
    const t = new Track(track, 'udp', clockRate);
    t.rtp = rtp;
    t.rtcp = rtcp;
    t.localRtp = { ip: plainAddress(this.host), port: rtpPort };
    t.localRtcp = { ip: plainAddress(this.host), port: rtcpPort };
    for (const s of [rtp, rtcp]) s.on('error', (e) => this.#log.debug({ err: e.message, track }, 'udp socket error'));
    rtp.on('message', (msg: Buffer, rinfo: RemoteInfo) => this.#onDatagram(t, false, msg, rinfo));
    rtcp.on('message', (msg: Buffer, rinfo: RemoteInfo) => this.#onDatagram(t, true, msg, rinfo));
    this.#tracks.set(track, t);
  }

  /**
   * A track carried in the RTSP connection: its frames come in through {@link push}, and
   * receiver reports go out through `sendRtcp` (the connection's RTCP channel).
   */
  addInterleaved(track: number, sendRtcp: (rr: Buffer) => boolean, clockRate = 90_000): void {
    if (this.#closed || this.#tracks.has(track)) return;
    const t = new Track(track, 'tcp', clockRate);
    t.sendRtcp = sendRtcp;
    this.#tracks.set(track, t);
  }

  /** One interleaved frame of `track` (RTP, or RTCP when `rtcp`); `buf` is valid during the call only. */
  push(track: number, rtcp: boolean, buf: Buffer): void {
    const t = this.#tracks.get(track);
    if (t === undefined || this.#closed) return;
    if (rtcp) this.#onRtcp(t, buf);
    else this.#onRtp(t, buf);
  }

  /** Where `track`'s receiver reports go (the camera's RTCP port from the SETUP answer's `server_port`). */
  setRemote(track: number, remote: Endpoint): void {
    const t = this.#tracks.get(track);
    if (t) t.remote = { ip: plainAddress(remote.ip), port: remote.port };
  }

  /** Also takes datagrams from `ip` (a camera that sends from another address, Transport `source=`). No-op without a `from` filter. */
  allowFrom(ip: string): void {
    this.#from?.add(plainAddress(ip));
  }

  /** Counters of every track, in track order. */
  tracks(): TrackStats[] {
    return [...this.#tracks.values()].map((t) => ({ ...t.stats })).sort((a, b) => a.track - b.track);
  }

  /** Counters of one track, or null when it is not set up. */
  trackStats(track: number): TrackStats | null {
    const t = this.#tracks.get(track);
    return t ? { ...t.stats } : null;
  }

  /** Totals over every track. */
  stats(): ReceiverStats {
    let packets = 0;
    let bytes = 0;
    let last: number | null = null;
    for (const t of this.#tracks.values()) {
      packets += t.stats.packets;
      bytes += t.stats.bytes;
      if (t.stats.lastPacketAt !== null && (last === null || t.stats.lastPacketAt > last)) last = t.stats.lastPacketAt;
    }
    return { packets, bytes, lastPacketAt: last, tracks: this.#tracks.size };
  }

  /** Stops receiving and reporting; unbinds every port. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    for (const t of this.#tracks.values()) {
      for (const s of [t.rtp, t.rtcp]) {
        if (!s) continue;
        s.removeAllListeners('message');
        try {
          s.close();
        } catch {
          /* already closed */
        }
      }
      t.rtp = t.rtcp = null;
      t.sendRtcp = null;
    }
  }

  // ------------------------------------------------------------------ packet path

  #onDatagram(t: Track, rtcpPort: boolean, msg: Buffer, rinfo: RemoteInfo): void {
    if (this.#closed) return;
    const ip = rinfo.family === 'IPv6' ? plainAddress(rinfo.address) : rinfo.address;
    if (this.#from !== null && !this.#from.has(ip)) {
      t.stats.dropped++;
      return;
    }
    let src = rtcpPort ? t.fromRtcp : t.fromRtp;
    if (src === null || src.port !== rinfo.port || src.ip !== ip) {
      src = { ip, port: rinfo.port };
      if (rtcpPort) t.fromRtcp = src;
      else t.fromRtp = src;
    }
    this.#opts.recorder?.udp(src, rtcpPort ? t.localRtcp : t.localRtp, msg);
    // RTCP multiplexed on the RTP port (RFC 5761 §4) is taken as RTCP.
    if (rtcpPort || looksLikeRtcp(msg, 0, msg.length)) this.#onRtcp(t, msg);
    else this.#onRtp(t, msg);
  }

  #onRtp(t: Track, buf: Buffer): void {
    const h = this.#hdr;
    if (!parseRtp(buf, 0, buf.length, h)) {
      t.stats.dropped++;
      return;
    }
    const s = t.stats;
    s.packets++;
    s.bytes += buf.length;
    s.lastPacketAt = Date.now();
    t.reception.onRtp(h.ssrc, h.seq, h.timestamp, performance.now());
    const cb = this.#opts.onPacket;
    if (cb) {
      try {
        cb(s.track, buf);
      } catch (e) {
        this.#log.error({ err: e instanceof Error ? e.message : String(e) }, 'onPacket threw');
      }
    }
  }

  #onRtcp(t: Track, buf: Buffer): void {
    t.stats.rtcp++;
    t.reception.onRtcp(buf, performance.now());
  }

  // ------------------------------------------------------------------ receiver reports

  #report(): void {
    if (this.#closed) return;
    const now = performance.now();
    for (const t of this.#tracks.values()) {
      const n = t.reception.writeReport(this.#rtcpOut, this.#ssrc, this.#cname, now);
      if (n === 0) continue;
      if (t.sendRtcp !== null) {
        if (t.sendRtcp(this.#rtcpOut.subarray(0, n))) t.stats.reports++;
        continue;
      }
      // No SETUP answer said where: the camera's RTCP source, else its RTP source port + 1 (RFC 3550 §11).
      const to = t.remote ?? t.fromRtcp ?? (t.fromRtp ? { ip: t.fromRtp.ip, port: t.fromRtp.port + 1 } : null);
      if (to === null || t.rtcp === null || to.port > 65535) continue;
      // dgram may send after this returns: the datagram gets its own copy.
      const copy = Buffer.from(this.#rtcpOut.subarray(0, n));
      this.#opts.recorder?.udp(t.localRtcp, to, copy);
      t.rtcp.send(copy, to.port, to.ip, (err) => {
        if (err) this.#log.debug({ err: err.message, track: t.stats.track }, 'receiver report not sent');
      });
      t.stats.reports++;
    }
  }
}
