/**
 * One RTSP replay session (RFC 2326 §A.2 server state machine: Init -> Ready on SETUP,
 * Ready -> Playing on PLAY, Playing -> Ready on PAUSE, any -> Init on TEARDOWN): its id,
 * SSRC, output, the presentation it plays and the player that paces packets into the
 * output. The server's request handlers drive it.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from '../contracts/logger.js';
import type { ReplayPacket, ReplayPlan } from '../query/types.js';
import type { LiveFeed } from '../live/channel.js';
import { LivePlayer } from '../live/live-player.js';
import { Player, type PlayPosition, type PlayerEnd } from './pacer.js';
import type { MediaOutput } from './rtp-output.js';

/** What a request URL names: the presentation (one stream) and its URLs. */
export interface Presentation {
  /** The request path without the track suffix and trailing slashes, percent-encoded as sent (`/replay/cam1`). */
  path: string;
  /** The query without the track suffix (`start=...&end=...&speed=4`). */
  query: URLSearchParams;
  /** `path?query`: which DESCRIBE/SETUP/PLAY belong together. */
  key: string;
  /** Content-Base: `rtsp://host:port/path/` (then `?query` when there is one). */
  base: string;
  /** The media's `a=control:` value. */
  control: string;
  /** The media's URL (the SETUP URL; RTP-Info `url=`). */
  trackUrl: string;
}

/** The replay source the session pulls packets from (the part of ReplaySource it needs). */
export interface PacketSource {
  packets(plan: ReplayPlan, opts: { ssrc: number; signal: AbortSignal }): AsyncIterable<ReplayPacket>;
}

export type SessionState = 'ready' | 'playing' | 'paused';

export class RtspSession {
  readonly id = randomBytes(8).toString('hex');
  /** SSRC of the replayed stream (RFC 3550 §8: random). */
  readonly ssrc = randomBytes(4).readUInt32BE(0);
  readonly presentation: Presentation;
  /** The plan without a Range: npt 0 is its start, its end is the presentation's end. Null for live. */
  readonly basePlan: ReplayPlan | null;
  /** The plan being played (differs from basePlan after a PLAY with Range); null for live. */
  plan: ReplayPlan | null;
  /** The live feed a live (or transcoded) session plays; null for a replay. */
  readonly feed: LiveFeed | null;
  /** The live feed's player, once PLAY came. */
  live: LivePlayer | null = null;
  output: MediaOutput;
  /** Pace from the URL's `speed=` (1 when absent, Infinity for `max`). */
  urlSpeed: number;
  /** Id of the connection that made it; interleaved sessions end with it. */
  readonly connectionId: number;
  state: SessionState = 'ready';
  /** The client asked for ONVIF replay (`Require: onvif-replay`): packets carry the 0xABAC extension. */
  onvif = false;
  player: Player | null = null;
  /** performance.now() of the last sign of life from the client. */
  lastActivity = performance.now();
  #ended = false;
  #abort: AbortController | null = null;
  readonly #log: Logger;
  readonly #cname: string;
  readonly #onEnd: (s: RtspSession, reason: string) => void;

  constructor(opts: {
    presentation: Presentation;
    plan: ReplayPlan | null;
    feed?: LiveFeed | null;
    output: MediaOutput;
    urlSpeed: number;
    connectionId: number;
    cname: string;
    log: Logger;
    onEnd: (s: RtspSession, reason: string) => void;
  }) {
    this.presentation = opts.presentation;
    this.basePlan = opts.plan;
    this.plan = opts.plan;
    this.feed = opts.feed ?? null;
    this.output = opts.output;
    this.urlSpeed = opts.urlSpeed;
    this.connectionId = opts.connectionId;
    this.#cname = opts.cname;
    this.#log = opts.log.child({ session: this.id });
    this.#onEnd = opts.onEnd;
  }

  get ended(): boolean {
    return this.#ended;
  }

  touch(): void {
    this.lastActivity = performance.now();
  }

  /** Replaces the output (a second SETUP of the track in Ready state). */
  setOutput(out: MediaOutput): void {
    if (out !== this.output) this.output.close();
    this.output = out;
  }

  /**
   * Starts a new player on `plan` and pulls its first packet (for RTP-Info); the caller
   * answers PLAY and then calls `player.start()`. Null when the plan yields no packet
   * (the session stays Ready).
   */
  async prepare(source: PacketSource, plan: ReplayPlan, speed: number, onvif: { cseq: number } | null = null): Promise<PlayPosition | null> {
    this.#stopPlayer();
    const abort = new AbortController();
    const it = source.packets(plan, { ssrc: this.ssrc, signal: abort.signal })[Symbol.asyncIterator]();
    const player: Player = new Player({
      iterator: it,
      output: this.output,
      ssrc: this.ssrc,
      speed,
      cname: this.#cname,
      log: this.#log,
      onvif,
      onEnd: (why) => this.#playerEnded(player, why),
    });
    this.player = player;
    this.#abort = abort;
    let pos: PlayPosition | null;
    try {
      pos = await player.prime();
    } catch (e) {
      this.#stopPlayer();
      throw e;
    }
    if (this.#ended || this.player !== player) {
      player.stop();
      return null;
    }
    if (!pos) {
      this.#stopPlayer();
      return null;
    }
    this.plan = plan;
    return pos;
  }

  /**
   * The live player (made on the first PLAY, kept across PAUSE): the caller answers PLAY
   * with its position, then calls `live.start()`.
   */
  livePlayer(): LivePlayer {
    if (!this.feed) throw new Error('not a live session');
    if (this.live && this.live.ended === null) return this.live;
    const lp: LivePlayer = new LivePlayer({
      feed: this.feed,
      output: this.output,
      ssrc: this.ssrc,
      cname: this.#cname,
      log: this.#log,
      onEnd: (why) => {
        this.#log.debug({ why, packets: lp.packetsSent, thinned: lp.stats.thinned }, 'live player ended');
        if (this.live === lp && (why === 'dropped' || why === 'eos')) this.end(why === 'eos' ? 'live feed ended' : 'client dropped');
      },
    });
    this.live = lp;
    return lp;
  }

  #playerEnded(player: Player, why: PlayerEnd): void {
    this.#log.debug({ why, packets: player.packetsSent }, 'player ended');
    if (why === 'dropped' && this.player === player) this.end('client dropped');
  }

  #stopPlayer(): void {
    this.#abort?.abort();
    this.#abort = null;
    const p = this.player;
    this.player = null;
    p?.stop();
  }

  /** Ends the session: stops the player, closes the output. Idempotent. */
  end(reason: string): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#stopPlayer();
    this.live?.stop();
    this.output.close();
    this.#log.info({ reason }, 'session ended');
    this.#onEnd(this, reason);
  }
}
