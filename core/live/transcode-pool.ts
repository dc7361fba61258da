/**
 * One transcoder per stream and target codec, shared by every client that asks for it:
 * the first acquire() of a key starts ffmpeg, later ones (also while it is starting) get
 * the same channel, and the transcoder is stopped once its channel has had no subscriber
 * for `graceMs` (a client that reconnects within the grace finds it still running). A
 * transcoder that ended on its own (input over, ffmpeg failed) is forgotten at once, so
 * the next acquire starts a fresh one.
 *
 * Why a grace at all: an RTSP client tearing down and setting up again (a VMS
 * reconnecting, a player seeking) would otherwise pay ffmpeg's start (≈1 s) every time.
 */
import type { Logger } from '../contracts/logger.js';
import { CamtapError } from '../errors.js';
import { silentLogger } from '../logger.js';
import type { LiveChannel } from './channel.js';
import { Transcoder, type TranscoderOptions } from './transcoder.js';

export interface TranscodePoolOptions {
  log?: Logger;
  /** How long a transcoder with no subscriber keeps running (default 2000 ms). */
  graceMs?: number;
  /**
   * How long an acquired channel may wait for its first subscriber before it counts as
   * idle (default 10 s: an RTSP client acquires at DESCRIBE and subscribes at PLAY).
   */
  claimMs?: number;
  /** Starts a transcoder (default {@link Transcoder.start}; tests count spawns through it). */
  start?: typeof Transcoder.start;
}

interface Entry {
  key: string;
  starting: Promise<Transcoder>;
  transcoder: Transcoder | null;
  /** Pending idle stop, if any. */
  timer: NodeJS.Timeout | null;
  /** Removed from the pool (stopping or ended): never handed out again. */
  gone: boolean;
}

export class TranscodePool {
  readonly #log: Logger;
  readonly #graceMs: number;
  readonly #claimMs: number;
  readonly #start: typeof Transcoder.start;
  readonly #entries = new Map<string, Entry>();
  readonly #stopping = new Set<Promise<void>>();
  #closed = false;

  constructor(opts: TranscodePoolOptions = {}) {
    this.#log = (opts.log ?? silentLogger).child({ component: 'transcode-pool' });
    this.#graceMs = opts.graceMs ?? 2000;
    this.#claimMs = Math.max(opts.claimMs ?? 10_000, this.#graceMs);
    this.#start = opts.start ?? ((o) => Transcoder.start(o));
  }

  /** Transcoders running or starting. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * The channel of the transcoder for `key`, started with `opts` if none runs (`opts.key`
   * is replaced by `key`; its `onIdle`/`onEnd` still run, after the pool's own handling).
   * Concurrent calls for one key share one start; a failed start rejects them all (with
   * ffmpeg's message) and leaves nothing behind.
   */
  async acquire(key: string, opts: TranscoderOptions): Promise<LiveChannel> {
    if (this.#closed) throw new CamtapError('CAMTAP_ERR_INTERRUPTED', { reason: 'transcode pool closed' });
    let entry = this.#entries.get(key);
    if (entry === undefined) entry = this.#spawn(key, opts);
    this.#cancelStop(entry);
    const tr = await entry.starting;
    if (entry.gone || tr.channel.ended) {
      // Stopped or ended between the start and this caller: start again.
      return this.acquire(key, opts);
    }
    // The caller subscribes next; if it never does, the claim window ends like a grace.
    if (tr.channel.subscribers === 0) this.#scheduleStop(entry, this.#claimMs);
    return tr.channel;
  }

  #spawn(key: string, opts: TranscoderOptions): Entry {
    const entry: Entry = { key, starting: null as unknown as Promise<Transcoder>, transcoder: null, timer: null, gone: false };
    entry.starting = this.#start({
      ...opts,
      key,
      onIdle: (ch) => {
        if (!entry.gone) this.#scheduleStop(entry, this.#graceMs);
        opts.onIdle?.(ch);
      },
      onEnd: (reason) => {
        this.#forget(entry);
        opts.onEnd?.(reason);
      },
    }).then(
      (tr) => {
        entry.transcoder = tr;
        if (this.#closed && !entry.gone) this.#stop(entry, 'pool closed');
        return tr;
      },
      (err: unknown) => {
        this.#forget(entry);
        throw err;
      },
    );
    // A start nobody awaits any more (closed pool) must not be an unhandled rejection.
    entry.starting.catch(() => {});
    this.#entries.set(key, entry);
    this.#log.debug({ key }, 'starting transcoder');
    return entry;
  }

  #cancelStop(entry: Entry): void {
    if (entry.timer !== null) clearTimeout(entry.timer);
    entry.timer = null;
  }

  #scheduleStop(entry: Entry, ms: number): void {
    this.#cancelStop(entry);
    entry.timer = setTimeout(() => {
      entry.timer = null;
      const tr = entry.transcoder;
      if (entry.gone || tr === null || tr.channel.subscribers > 0) return;
      this.#stop(entry, 'idle');
    }, ms);
    entry.timer.unref?.();
  }

  #forget(entry: Entry): void {
    this.#cancelStop(entry);
    entry.gone = true;
    if (this.#entries.get(entry.key) === entry) this.#entries.delete(entry.key);
  }

  #stop(entry: Entry, why: string): void {
    this.#forget(entry);
    const tr = entry.transcoder;
    if (tr === null) return;
    this.#log.info({ key: entry.key, pid: tr.pid, why }, 'stopping transcoder');
    const p = tr.stop().finally(() => this.#stopping.delete(p));
    this.#stopping.add(p);
  }

  /** Stops every transcoder (also those still starting) and waits until their ffmpeg exited. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    const entries = [...this.#entries.values()];
    for (const e of entries) if (e.transcoder !== null) this.#stop(e, 'pool closed');
    // Starts in flight stop themselves when they resolve (see #spawn).
    await Promise.allSettled(entries.map((e) => e.starting));
    await Promise.allSettled([...this.#stopping]);
  }
}
