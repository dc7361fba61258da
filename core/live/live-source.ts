/**
 * What `/live/...` URLs (and requests for another codec) mean to the RTSP server: the
 * feed to subscribe a session to.
 *
 *   /live/<camera>          camera name or address: its stream the taps see now
 *                           (the most recently active one when it has several)
 *   /live/<stream-id>       one stream exactly
 *   ?codec=h264             a transcoded feed (one ffmpeg per stream and codec, shared);
 *                           on /replay/... too, when the stored codec differs
 *
 * Live feeds come straight from the capture pipeline: the stream's state gets a
 * {@link LiveChannel} while it is watched, and the pipeline publishes each new packet
 * into it (one copy, fanned out). A channel nobody has used for {@link IDLE_MS} is
 * detached, so an unwatched stream costs nothing per packet. A stream that leaves the
 * pipeline's memory (idle) and comes back has the same id: the sweep re-attaches its
 * channel to the new state, and subscribed clients continue.
 */
import type { Logger } from '../contracts/logger.js';
import type { Catalog } from '../catalog/catalog.js';
import type { CapturePipeline } from '../capture/pipeline.js';
import type { RtpStreamState } from '../capture/rtp-stream.js';
import { CamtapError } from '../errors.js';
import { silentLogger } from '../logger.js';
import { findSession, planReplay, planSdp } from '../query/plan.js';
import { hostOf } from '../sessions/inventory.js';
import { LiveChannel, type LiveFeed } from './channel.js';
import type { TranscodePool } from './transcode-pool.js';
import { parseTargetCodec, type TargetCodec } from './transcoder.js';

/** A feed nobody subscribed to for this long is detached from its stream and dropped. */
export const IDLE_MS = 120_000;
/** A stream not seen for this long is not live (its camera stopped, or the tap did). */
export const STALE_SEC = 10;
const SWEEP_MS = 2_000;

/** Starts (or shares) the transcoder of a feed: {@link TranscodePool}, or a stand-in in tests. */
export type Transcoding = Pick<TranscodePool, 'acquire' | 'close'>;

export interface LiveSource {
  /**
   * The live (or transcoded) feed a request path and query name; null when the request
   * is an ordinary replay (a `/replay/` path without a codec change). Throws CamtapError
   * CAMTAP_ERR_NOT_FOUND when nothing live matches, CAMTAP_ERR_USAGE for a bad codec.
   */
  resolve(path: string, query: URLSearchParams, host?: string): Promise<LiveFeed | null>;
  close(): Promise<void>;
}

/** Feeds other than the pipeline's and transcoders': the inline gateway's proxied cameras (core/inline/rtsp-proxy.ts). */
export interface ProxyFeeds {
  resolve(path: string, query: URLSearchParams, host?: string): Promise<LiveFeed | null>;
  close(): Promise<void>;
}

const STREAM_ID = /^s[0-9a-f]{12}$/;

function rank(s: RtpStreamState): number {
  return (s.direction === 'server->client' ? 2 : 0) + (s.codec !== null ? 1 : 0);
}

/** Target codecs to the encoding names of the SDP (RFC 6184, RFC 7798, RFC 2435). */
const ENCODING: Record<TargetCodec, string> = { h264: 'H264', h265: 'H265', mjpeg: 'JPEG' };

export class PipelineLiveSource implements LiveSource {
  readonly #pipeline: CapturePipeline | null;
  readonly #catalog: Catalog;
  readonly #transcoding: Transcoding | null;
  readonly #proxy: ProxyFeeds | null;
  readonly #internalBase: () => string;
  readonly #log: Logger;
  readonly #channels = new Map<string, { ch: LiveChannel; state: RtpStreamState | null; idleSince: number }>();
  readonly #sweep: NodeJS.Timeout;

  constructor(deps: {
    /** Null when no tap runs: only transcoded replays are live then. */
    pipeline: CapturePipeline | null;
    catalog: Catalog;
    transcoding?: Transcoding | null;
    /** Proxied cameras (`/<alias>/...`), asked first for paths that are not /live/ or /replay/. */
    proxy?: ProxyFeeds | null;
    /** `rtsp://127.0.0.1:<port>` of this server, which a transcoder pulls its input from. */
    internalBase: () => string;
    log?: Logger;
  }) {
    this.#pipeline = deps.pipeline;
    this.#catalog = deps.catalog;
    this.#transcoding = deps.transcoding ?? null;
    this.#proxy = deps.proxy ?? null;
    this.#internalBase = deps.internalBase;
    this.#log = (deps.log ?? silentLogger).child({ component: 'live' });
    this.#sweep = setInterval(() => this.#sweepChannels(), SWEEP_MS);
    this.#sweep.unref();
  }

  /** Feeds attached to streams now (for status and tests). */
  get feeds(): number {
    return this.#channels.size;
  }

  async resolve(path: string, query: URLSearchParams, host?: string): Promise<LiveFeed | null> {
    const live = /^\/live\/([^/?]+)\/?$/.exec(path);
    const replay = /^\/replay\/([^/?]+)\/?$/.exec(path);
    if (!live && !replay && this.#proxy) {
      const feed = await this.#proxy.resolve(path, query, host);
      if (feed) return feed;
    }
    const codecParam = query.get('codec');
    const targetCodec = codecParam ? parseTargetCodec(codecParam) : null;
    const target = targetCodec ? ENCODING[targetCodec] : undefined;
    if (codecParam && !target) {
      throw new CamtapError('CAMTAP_ERR_USAGE', { reason: `codec=${codecParam}: camtap converts to h264, h265 or mjpeg` });
    }
    if (!live && !(replay && target)) return null;
    let stored: { codec: string | null; camera: string; feed: LiveFeed | null };
    if (live) {
      const feed = this.#liveFeed(decodeURIComponent(live[1]!));
      stored = { codec: feed.codec, camera: feed.camera, feed };
    } else {
      const name = decodeURIComponent(replay![1]!);
      const plan = await planReplay(this.#catalog, STREAM_ID.test(name) ? { id: name } : { camera: name });
      stored = { codec: plan.stream.codec, camera: plan.stream.camera, feed: null };
    }
    if (!target || (stored.codec ?? '').toUpperCase() === target) return stored.feed;
    if (!this.#transcoding) throw new CamtapError('CAMTAP_ERR_NOT_FOUND', { what: 'transcoder', id: `${codecParam} (transcoding is off)` });
    // The transcoder pulls the same request without the codec change from this server.
    const q = new URLSearchParams(query);
    q.delete('codec');
    const inputQuery = q.toString();
    const inputUrl = `${this.#internalBase()}${path}${inputQuery ? `?${inputQuery}` : ''}`;
    q.delete('speed');
    const key = `${path}?${q.toString()}|${target}`;
    // A replay paces through recording gaps: ffmpeg must not give up on a quiet input then.
    return this.#transcoding.acquire(key, { inputUrl, codec: targetCodec!, key, camera: stored.camera, log: this.#log, inputTimeoutMs: live ? 30_000 : 0 });
  }

  /** The live feed of a camera (name or address) or stream id, attached to its stream state. */
  #liveFeed(name: string): LiveFeed {
    const p = this.#pipeline;
    if (!p) throw new CamtapError('CAMTAP_ERR_NOT_FOUND', { what: 'live stream', id: `${name} (no tap is running: configure taps for live access)` });
    const state = this.#find(p, name);
    if (!state) throw new CamtapError('CAMTAP_ERR_NOT_FOUND', { what: 'live stream', id: `${name} (no stream of it seen in the last ${STALE_SEC} s)` });
    const held = this.#channels.get(state.id);
    if (held && !held.ch.ended) {
      this.#attach(held, state);
      return held.ch;
    }
    const noTaps = () => [] as number[];
    const record = state.toRecord(noTaps);
    const sessions = p.activeSessions();
    const sdp = planSdp(record, findSession(record, sessions), sessions);
    const entry = { ch: null as unknown as LiveChannel, state: null as RtpStreamState | null, idleSince: performance.now() };
    entry.ch = new LiveChannel({
      key: state.id,
      sdp,
      camera: state.camera,
      payloadType: state.payloadType,
      codec: state.codec,
      clockRate: state.clockRate,
      onIdle: () => (entry.idleSince = performance.now()),
    });
    this.#channels.set(state.id, entry);
    this.#attach(entry, state);
    this.#log.info({ stream: state.id, camera: state.camera }, 'live feed attached');
    return entry.ch;
  }

  #attach(entry: { ch: LiveChannel; state: RtpStreamState | null }, state: RtpStreamState): void {
    if (entry.state === state && state.live === entry.ch) return;
    if (entry.state && entry.state.live === entry.ch) entry.state.live = null;
    state.live = entry.ch;
    entry.state = state;
  }

  /**
   * The live stream a name means: by id, else the camera's (name, address); streams an
   * RTSP dialog set up and with a known codec before ones found by heuristics, then the
   * most recent.
   */
  #find(p: CapturePipeline, name: string): RtpStreamState | null {
    const streams = p.activeStreams();
    let latest = 0;
    for (const s of streams) if (s.lastSec > latest) latest = s.lastSec;
    const nowSec = Math.max(latest, Math.floor(Date.now() / 1000));
    let best: RtpStreamState | null = null;
    for (const s of streams) {
      if (s.evicted || s.direction === 'client->server' || nowSec - s.lastSec > STALE_SEC) continue;
      const match = STREAM_ID.test(name) ? s.id === name : s.camera === name || hostOf(s.src) === name;
      if (!match) continue;
      if (!best || rank(s) > rank(best) || (rank(s) === rank(best) && (s.lastSec > best.lastSec || (s.lastSec === best.lastSec && s.unique > best.unique)))) best = s;
    }
    return best;
  }

  #sweepChannels(): void {
    const p = this.#pipeline;
    const now = performance.now();
    for (const [id, e] of this.#channels) {
      if (e.ch.ended || (e.ch.subscribers === 0 && now - e.idleSince > IDLE_MS)) {
        if (e.state && e.state.live === e.ch) e.state.live = null;
        e.ch.end('unused');
        this.#channels.delete(id);
        continue;
      }
      if (e.ch.subscribers > 0) e.idleSince = now;
      // The stream left memory and came back as a new state with the same id.
      if (p && (!e.state || e.state.evicted)) {
        const again = p.activeStreams().find((s) => s.id === id && !s.evicted);
        if (again) this.#attach(e, again);
      }
    }
  }

  async close(): Promise<void> {
    clearInterval(this.#sweep);
    for (const e of this.#channels.values()) {
      if (e.state && e.state.live === e.ch) e.state.live = null;
      e.ch.end('server closing');
    }
    this.#channels.clear();
    await this.#transcoding?.close();
    await this.#proxy?.close();
  }
}
