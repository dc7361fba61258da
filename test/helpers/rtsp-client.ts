/**
 * A bare RTSP-over-TCP replay client for load tests: DESCRIBE / SETUP (interleaved) /
 * PLAY on one connection, then either reads the `$` frames (RFC 2326 §10.12) and
 * measures their arrival against the pace asked for, or stops reading its socket
 * altogether, as a stuck VMS does, so the server's send queue and the kernel's socket
 * buffers fill up.
 *
 * It parses answers and frames with the project's MessageStreamParser (hardened, and
 * exercised on its own elsewhere) but reads the RTP header itself (RFC 3550 §5.1), so
 * what it counts does not come from the server's code.
 */
import { connect, type Socket } from 'node:net';
import { MessageStreamParser, serializeMessage, type WireMessage } from '../../core/wire/rtsp-message.js';

/** What one interleaved session received, for comparison with the manifest and the pace. */
export interface ReplayStats {
  /** RTP packets on the session's RTP channel. */
  rtpPackets: number;
  /** Access units: runs of one RTP timestamp (as the manifest counts them). */
  accessUnits: number;
  /** RTP packets with the marker bit. */
  markers: number;
  /** RTCP compound packets; the last one carries BYE at the end of the replay. */
  rtcpPackets: number;
  bye: boolean;
  /** performance.now() when PLAY was sent and when BYE arrived (null before). */
  playSentAt: number;
  byeAt: number | null;
  /** Longest wall-time gap between two RTP packets, ms. */
  maxGapMs: number;
  /**
   * Spread of (arrival − due) over all RTP packets, ms, where a packet is due
   * `(rtpTs − firstRtpTs) / clockRate / speed` after the first one arrived: 0 when every
   * packet came exactly on its pace, and how far the worst one fell behind otherwise.
   * The server paces by capture time, which follows the RTP clock within a few ms.
   */
  latenessSpreadMs: number;
}

/** A session set up and not played yet. */
export interface Prepared {
  url: string;
  session: string;
  stats: ReplayStats;
}

interface SessionState {
  channel: number;
  clockRate: number;
  speed: number;
  stats: ReplayStats;
  lastTs: number | null;
  firstTs: number | null;
  /** Unwrapped RTP timestamp of the last packet (RFC 3550 timestamps wrap at 2^32). */
  extTs: number;
  firstArrival: number;
  lastArrival: number;
  minOffset: number;
  maxOffset: number;
  onBye: (() => void) | null;
}

const TIMEOUT_MS = 30_000;

/** The `a=control:` of the SDP's media resolved against the Content-Base (RFC 2326 §C.1.1). */
function trackUrl(describe: WireMessage, requestUrl: string): string {
  const sdp = describe.body.toString('utf8');
  const m = /^a=control:(\S+)\s*$/m.exec(sdp.slice(Math.max(0, sdp.indexOf('m='))));
  const control = m ? m[1]! : '*';
  if (/^rtsp:\/\//i.test(control)) return control;
  const base = describe.header('Content-Base') ?? requestUrl;
  return base.endsWith('/') ? base + control : `${base}/${control}`;
}

function clockRateOf(describe: WireMessage): number {
  const m = /^a=rtpmap:\d+ [^/\s]+\/(\d+)/m.exec(describe.body.toString('utf8'));
  return m ? Number(m[1]) : 90_000;
}

export class RtspTcpClient {
  readonly socket: Socket;
  /** Set when the socket closed, with performance.now() of that moment. */
  closedAt: number | null = null;
  /** Bytes read from the socket so far. */
  bytesRead = 0;
  readonly #parser: MessageStreamParser;
  readonly #answers = new Map<number, (m: WireMessage) => void>();
  readonly #sessions = new Map<number, SessionState>();
  readonly #closeWaiters: Array<() => void> = [];
  #cseq = 0;
  #nextChannel = 0;

  private constructor(socket: Socket) {
    this.socket = socket;
    this.#parser = new MessageStreamParser({
      onMessage: (m) => {
        const cseq = m.cseq;
        const f = cseq === null ? undefined : this.#answers.get(cseq);
        if (f && cseq !== null) {
          this.#answers.delete(cseq);
          f(m);
        }
      },
      onInterleaved: (channel, payload) => this.#frame(channel, payload),
      onError: () => {},
    });
    socket.on('data', (d: Buffer) => {
      this.bytesRead += d.length;
      this.#parser.push(d, null);
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closedAt = performance.now();
      for (const f of this.#closeWaiters.splice(0)) f();
      for (const s of this.#sessions.values()) s.onBye?.();
    });
  }

  static connect(port: number, host = '127.0.0.1'): Promise<RtspTcpClient> {
    return new Promise((resolve, reject) => {
      const s = connect({ port, host }, () => {
        s.off('error', reject);
        resolve(new RtspTcpClient(s));
      });
      s.once('error', reject);
    });
  }

  get closed(): boolean {
    return this.closedAt !== null;
  }

  /** Sends a request with the next CSeq; resolves with its answer, null if the socket closes or 30 s pass. */
  request(method: string, url: string, headers: Array<[string, string]> = []): Promise<WireMessage | null> {
    const cseq = ++this.#cseq;
    return new Promise((resolve) => {
      if (this.closed) return resolve(null);
      const timer = setTimeout(() => done(null), TIMEOUT_MS);
      const done = (m: WireMessage | null) => {
        clearTimeout(timer);
        this.#answers.delete(cseq);
        resolve(m);
      };
      this.#answers.set(cseq, done);
      this.#closeWaiters.push(() => done(null));
      this.socket.write(serializeMessage({ kind: 'request', method, url, headers: [['CSeq', String(cseq)], ['User-Agent', 'camtap-test'], ...headers] }));
    });
  }

  /**
   * DESCRIBE and SETUP `RTP/AVP/TCP;interleaved=n-n+1` of `url`; `speed` is the pace the
   * URL asks for (Infinity for `max`), used only to measure lateness. Several sessions
   * on one client share the connection on distinct channel pairs. Throws when an answer
   * is not 200.
   */
  async setup(url: string, speed: number): Promise<Prepared> {
    const d = await this.request('DESCRIBE', url, [['Accept', 'application/sdp']]);
    if (d?.status !== 200) throw new Error(`DESCRIBE ${url}: ${d?.status ?? 'no answer'}`);
    const channel = this.#nextChannel;
    this.#nextChannel += 2;
    const setup = await this.request('SETUP', trackUrl(d, url), [['Transport', `RTP/AVP/TCP;unicast;interleaved=${channel}-${channel + 1}`]]);
    if (setup?.status !== 200) throw new Error(`SETUP ${url}: ${setup?.status ?? 'no answer'}`);
    const session = (setup.header('Session') ?? '').split(';')[0]!.trim();
    const granted = /interleaved=(\d+)-(\d+)/.exec(setup.header('Transport') ?? '');
    const state: SessionState = {
      channel: granted ? Number(granted[1]) : channel,
      clockRate: clockRateOf(d),
      speed,
      stats: { rtpPackets: 0, accessUnits: 0, markers: 0, rtcpPackets: 0, bye: false, playSentAt: 0, byeAt: null, maxGapMs: 0, latenessSpreadMs: 0 },
      lastTs: null,
      firstTs: null,
      extTs: 0,
      firstArrival: 0,
      lastArrival: 0,
      minOffset: Number.POSITIVE_INFINITY,
      maxOffset: Number.NEGATIVE_INFINITY,
      onBye: null,
    };
    this.#sessions.set(state.channel, state);
    return { url, session, stats: state.stats };
  }

  /** PLAY of a set-up session from its start; resolves with its stats once the answer (200) came. */
  async play(p: Prepared): Promise<ReplayStats> {
    p.stats.playSentAt = performance.now();
    const r = await this.request('PLAY', p.url, [['Session', p.session], ['Range', 'npt=0.000-']]);
    if (r?.status !== 200) throw new Error(`PLAY ${p.url}: ${r?.status ?? 'no answer'}`);
    return p.stats;
  }

  /** Sends PLAY and does not wait for the answer (a client that no longer reads never sees it). */
  playBlind(p: Prepared): void {
    p.stats.playSentAt = performance.now();
    void this.request('PLAY', p.url, [['Session', p.session], ['Range', 'npt=0.000-']]);
  }

  /** setup() then play(). */
  async open(url: string, speed: number): Promise<ReplayStats> {
    return this.play(await this.setup(url, speed));
  }

  /** Stats of the sessions set up so far, in SETUP order. */
  stats(): ReplayStats[] {
    return [...this.#sessions.values()].map((s) => s.stats);
  }

  /** Resolves when every session played so far has received its RTCP BYE, the socket closed, or `ms` passed. */
  async ended(ms = 60_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const all = Promise.all(
      [...this.#sessions.values()].map(
        (s) =>
          new Promise<void>((resolve) => {
            if (s.stats.bye || this.closed) return resolve();
            const prev = s.onBye;
            s.onBye = () => {
              prev?.();
              resolve();
            };
          }),
      ),
    );
    await Promise.race([all, new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
    clearTimeout(timer);
  }

  /** Resolves when the server closes the connection (true), or false after `ms`. */
  closedWithin(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      if (this.closed) return resolve(true);
      const timer = setTimeout(() => resolve(false), ms);
      this.#closeWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /**
   * Stops reading the socket for good: the kernel's receive buffer fills, then the
   * server's send buffer, then the server's user-space queue.
   */
  stopReading(): void {
    this.socket.pause();
  }

  /** Reads again (what the kernel kept, then whatever the server still sends). */
  resumeReading(): void {
    this.socket.resume();
  }

  /** The client's local port (to find the connection in `ss`). */
  get localPort(): number {
    return this.socket.localPort ?? 0;
  }

  close(): void {
    this.socket.destroy();
  }

  /**
   * ```
   * |V=2|P|X|  CC   |M|     PT      |       sequence number         |   RFC 3550 §5.1
   * |                           timestamp                           |
   * ```
   */
  #frame(channel: number, payload: Buffer): void {
    const now = performance.now();
    const rtcp = this.#sessions.get(channel - 1);
    if (rtcp && channel % 2 === 1) {
      rtcp.stats.rtcpPackets++;
      // Walk the compound (RFC 3550 §6.1) for a BYE (PT 203).
      for (let off = 0; off + 4 <= payload.length; off += (payload.readUInt16BE(off + 2) + 1) * 4) {
        if (payload[off + 1] === 203) {
          rtcp.stats.bye = true;
          rtcp.stats.byeAt = now;
          rtcp.onBye?.();
          rtcp.onBye = null;
        }
      }
      return;
    }
    const s = this.#sessions.get(channel);
    if (!s || payload.length < 12 || payload[0]! >> 6 !== 2) return;
    const st = s.stats;
    const ts = payload.readUInt32BE(4);
    if (payload[1]! & 0x80) st.markers++;
    if (s.lastTs === null || ts !== s.lastTs) st.accessUnits++;
    if (s.lastTs === null) {
      s.firstTs = ts;
      s.extTs = 0;
      s.firstArrival = now;
    } else {
      // Signed 32-bit difference: a timestamp going back a little is not a wrap.
      s.extTs += (ts - s.lastTs) | 0;
      st.maxGapMs = Math.max(st.maxGapMs, now - s.lastArrival);
    }
    s.lastTs = ts;
    s.lastArrival = now;
    st.rtpPackets++;
    if (Number.isFinite(s.speed)) {
      const offset = now - s.firstArrival - (s.extTs / s.clockRate / s.speed) * 1000;
      s.minOffset = Math.min(s.minOffset, offset);
      s.maxOffset = Math.max(s.maxOffset, offset);
      st.latenessSpreadMs = s.maxOffset - s.minOffset;
    }
  }
}
