/**
 * A live feed: RTP packets as they arrive (from a tap, through the capture pipeline, or
 * from a transcoder's output), fanned out to every subscriber from the one buffer they
 * arrived in. Publishing is synchronous and allocation-free per subscriber: each
 * subscriber copies what it keeps (its output rewrites the header into its own slab
 * anyway), so a subscriber can never hold the publisher's buffer, and a slow one can only
 * lose its own packets (its output's bounded queue decides; see core/live/live-player.ts).
 */

/** One packet of a live feed. `rtp` is a view valid only during the `onPacket` call. */
export interface LivePacket {
  /** The RTP packet as received (header included). */
  rtp: Buffer;
  /** When it was seen (capture or arrival time, ns since the epoch). */
  tsNs: bigint;
  /** It starts a keyframe (H.264 IDR / SPS, H.265 IRAP / VPS, every JPEG frame). */
  keyframe: boolean;
  /**
   * The source restarted before this packet (a camera session reconnected): its sequence
   * numbers, timestamps and SSRC are unrelated to the packets before. Subscribers re-base
   * and wait for a keyframe.
   */
  discontinuity?: boolean;
}

export interface LiveSubscriber {
  onPacket(p: LivePacket): void;
  /** The feed ended (the stream stopped, the transcoder exited, camtap is closing). */
  onEnd(reason: string): void;
}

/** What a live session needs of a feed. */
export interface LiveFeed {
  /** Identity of the feed (a stream id, or a transcode key). */
  readonly key: string;
  /**
   * The SDP to announce: session-level lines and one media section whose `a=control:`
   * is `trackID=0` (as core/query/plan-sdp.ts makes it for recorded streams).
   */
  readonly sdp: string;
  /** Camera name, for the SDP's `s=` and the logs. */
  readonly camera: string;
  readonly payloadType: number;
  readonly codec: string | null;
  readonly clockRate: number | null;
  readonly subscribers: number;
  readonly ended: boolean;
  /** Adds a subscriber; returns the function that removes it. */
  subscribe(sub: LiveSubscriber): () => void;
}

export interface LiveChannelInit {
  key: string;
  sdp: string;
  camera: string;
  payloadType: number;
  codec: string | null;
  clockRate: number | null;
  /** Called when the last subscriber leaves (the owner may stop the source). */
  onIdle?: (ch: LiveChannel) => void;
}

export class LiveChannel implements LiveFeed {
  readonly key: string;
  readonly sdp: string;
  readonly camera: string;
  readonly payloadType: number;
  readonly codec: string | null;
  readonly clockRate: number | null;
  /** Packets published, and fanned-out deliveries (packets × subscribers). */
  published = 0;
  delivered = 0;
  #subs: LiveSubscriber[] = [];
  #ended = false;
  readonly #onIdle: ((ch: LiveChannel) => void) | undefined;

  constructor(init: LiveChannelInit) {
    this.key = init.key;
    this.sdp = init.sdp;
    this.camera = init.camera;
    this.payloadType = init.payloadType;
    this.codec = init.codec;
    this.clockRate = init.clockRate;
    this.#onIdle = init.onIdle;
  }

  get subscribers(): number {
    return this.#subs.length;
  }

  get ended(): boolean {
    return this.#ended;
  }

  subscribe(sub: LiveSubscriber): () => void {
    if (this.#ended) {
      queueMicrotask(() => sub.onEnd('feed ended'));
      return () => {};
    }
    // Copy on write: publish() iterates the array it read, unaffected by (un)subscribes
    // a subscriber makes from inside onPacket.
    this.#subs = [...this.#subs, sub];
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#subs = this.#subs.filter((s) => s !== sub);
      if (this.#subs.length === 0 && !this.#ended) this.#onIdle?.(this);
    };
  }

  /** Fans one packet out. A subscriber that throws is ended and removed; the others still get it. */
  publish(p: LivePacket): void {
    if (this.#ended) return;
    this.published++;
    const subs = this.#subs;
    for (let i = 0; i < subs.length; i++) {
      const s = subs[i]!;
      try {
        s.onPacket(p);
        this.delivered++;
      } catch (e) {
        this.#subs = this.#subs.filter((x) => x !== s);
        try {
          s.onEnd(`subscriber failed: ${e instanceof Error ? e.message : String(e)}`);
        } catch {
          /* it is gone either way */
        }
        if (this.#subs.length === 0 && !this.#ended) this.#onIdle?.(this);
      }
    }
  }

  /** Ends the feed for every subscriber. Idempotent. */
  end(reason: string): void {
    if (this.#ended) return;
    this.#ended = true;
    const subs = this.#subs;
    this.#subs = [];
    for (const s of subs) {
      try {
        s.onEnd(reason);
      } catch {
        /* ending anyway */
      }
    }
  }
}
