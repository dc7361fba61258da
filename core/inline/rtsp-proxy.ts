/**
 * The RTSP side of the inline gateway: `rtsp://camtap:8554/<alias>/...` is the camera
 * `<alias>` (a camera of the config with a `url`), proxied. camtap opens one session to the
 * camera per upstream URL and lower transport and serves every VMS client of it from that
 * session's live feed, so the camera sees one client however many VMSs watch
 * (live555's proxy server works the same way). Each leg negotiates its own transport: the
 * VMS leg is an ordinary live session of camtap's RTSP server (UDP or TCP-interleaved,
 * whatever the VMS asks), the camera leg uses the camera's configured `transport`.
 *
 *   /<alias>              the camera's configured URL
 *   /<alias>/<path>?<q>   rtsp://<camera host:port>/<path>?<q> (other streams of the camera,
 *                         e.g. the URI its ONVIF GetStreamUri names, rewritten by the HTTP proxy)
 *   transparent mode      a request whose URL names the camera's own address (traffic
 *                         redirected to camtap) is proxied to that same URL
 *
 * A camera session nobody watches for `graceMs` is torn down, unless it is held: when a
 * VMS client is lost without TEARDOWN (its connection closed under it: the VMS process or
 * host died), the camera session is kept, and so recorded through the inline tap, until a
 * VMS client of that camera comes back and plays it (it then shares the session) or an
 * operator releases it (`release`). A VMS that leaves with TEARDOWN holds nothing. The
 * session itself (reconnects, keepalives, recording through the inline tap) is the
 * UpstreamSession's job.
 */
import type { Logger } from '../contracts/logger.js';
import { CamtapError } from '../errors.js';
import { silentLogger } from '../logger.js';
import type { LiveChannel, LiveFeed } from '../live/channel.js';

export interface ProxyCamera {
  name: string;
  address: string;
  /** RTSP URL, possibly with user:password@. */
  url: string;
  transport: 'udp' | 'tcp';
}

/** What the proxy needs of a camera session (core/rtsp-client/upstream.ts). */
export interface Upstream {
  start(): Promise<LiveChannel>;
  stop(): Promise<void>;
}

export type UpstreamFactory = (o: { url: string; transport: 'udp' | 'tcp'; key: string; camera: string }) => Upstream;

/** First path segments that are camtap's own, never camera aliases. */
export const RESERVED = new Set(['replay', 'live', 'api', 'cam', 'docs', 'metrics']);

/** `rtsp://user:pass@host/x` → `rtsp://host/x`, for logs and errors. */
export function redactUrl(url: string): string {
  return url.replace(/^(rtsps?:\/\/)[^@/]*@/i, '$1');
}

interface Held {
  up: Upstream;
  channel: Promise<LiveChannel>;
  camera: string;
  /** The camera URL without credentials, for logs and `holds()`. */
  url: string;
  idleSince: number;
  /** Kept whatever the subscriber count: a VMS client was lost without TEARDOWN (ISO 8601 since when), or null. */
  heldSince: string | null;
  /** Why and who, for `holds()`. */
  heldFor: string;
  /** Subscribers when a VMS client asked for the held camera again; the hold ends once there are more (it plays). */
  returnMark: number | null;
}

/** A held camera session (see `RtspProxySource.hold`). */
export interface ProxyHold {
  key: string;
  camera: string;
  /** The camera URL, credentials removed. */
  url: string;
  since: string;
  reason: string;
}

/** A VMS client of a live session gone without TEARDOWN (core/serve/rtsp-server.ts `ClientLost`). */
export interface LostClient {
  path: string;
  query: URLSearchParams;
  host?: string;
  peer?: string;
  why?: string;
}

export class RtspProxySource {
  readonly #cameras: () => ProxyCamera[];
  readonly #start: UpstreamFactory;
  readonly #transparent: boolean;
  readonly #graceMs: number;
  readonly #log: Logger;
  readonly #held = new Map<string, Held>();
  readonly #sweep: NodeJS.Timeout;
  #closed = false;

  constructor(opts: { cameras: () => ProxyCamera[]; start: UpstreamFactory; transparent?: boolean; graceMs?: number; log?: Logger }) {
    this.#cameras = opts.cameras;
    this.#start = opts.start;
    this.#transparent = opts.transparent ?? false;
    this.#graceMs = opts.graceMs ?? 5000;
    this.#log = (opts.log ?? silentLogger).child({ component: 'rtsp-proxy' });
    this.#sweep = setInterval(() => this.#sweepIdle(), Math.min(1000, this.#graceMs));
    this.#sweep.unref();
  }

  /** Camera sessions open now. */
  get upstreams(): number {
    return this.#held.size;
  }

  /**
   * The feed of a proxied camera, or null when the path names no camera. `host` is the
   * request URL's host (for transparent mode).
   */
  /** Whether a request path names a proxied camera (`/<alias>/...`). */
  proxies(path: string): boolean {
    const m = /^\/([^/]+)/.exec(path);
    if (!m || RESERVED.has(m[1]!)) return false;
    const alias = decodeURIComponent(m[1]!);
    return this.#cameras().some((c) => c.url && c.name === alias);
  }

  async resolve(path: string, query: URLSearchParams, host?: string): Promise<LiveFeed | null> {
    const target = this.#target(path, query, host);
    if (!target) return null;
    return this.#acquire(target);
  }

  #target(path: string, query: URLSearchParams, host?: string): { url: string; camera: ProxyCamera } | null {
    const cams = this.#cameras().filter((c) => c.url);
    const q = new URLSearchParams(query);
    q.delete('codec');
    const qs = q.toString() ? `?${q.toString()}` : '';
    const m = /^\/([^/]+)(\/.*)?$/.exec(path);
    if (m && !RESERVED.has(m[1]!)) {
      const alias = decodeURIComponent(m[1]!);
      const cam = cams.find((c) => c.name === alias);
      if (cam) {
        const rest = (m[2] ?? '').replace(/^\/+/, '');
        if (!rest) return { url: cam.url, camera: cam };
        const u = new URL(cam.url);
        return { url: `${u.protocol}//${u.username ? `${u.username}${u.password ? `:${u.password}` : ''}@` : ''}${u.host}/${rest}${qs}`, camera: cam };
      }
    }
    if (this.#transparent && host) {
      const h = host.replace(/^\[|\](:\d+)?$|:\d+$/g, '');
      const cam = cams.find((c) => c.address === h || new URL(c.url).hostname.replace(/^\[|\]$/g, '') === h);
      if (cam) {
        const u = new URL(cam.url);
        return { url: `${u.protocol}//${u.username ? `${u.username}${u.password ? `:${u.password}` : ''}@` : ''}${host}${path}${qs}`, camera: cam };
      }
    }
    return null;
  }

  async #acquire(target: { url: string; camera: ProxyCamera }): Promise<LiveFeed> {
    if (this.#closed) throw new CamtapError('CAMTAP_ERR_NOT_FOUND', { what: 'camera', id: `${target.camera.name} (camtap is closing)` });
    const key = `${target.camera.transport}|${target.url}`;
    let h = this.#held.get(key);
    if (h) {
      const ch = await h.channel;
      if (!ch.ended) {
        h.idleSince = performance.now();
        if (h.heldSince !== null) h.returnMark = ch.subscribers;
        return ch;
      }
      this.#forget(key, h);
    }
    const up = this.#start({ url: target.url, transport: target.camera.transport, key, camera: target.camera.name });
    h = { up, channel: up.start(), camera: target.camera.name, url: redactUrl(target.url), idleSince: performance.now(), heldSince: null, heldFor: '', returnMark: null };
    this.#held.set(key, h);
    try {
      const ch = await h.channel;
      this.#log.info({ camera: target.camera.name, url: redactUrl(target.url), transport: target.camera.transport }, 'camera session opened');
      return ch;
    } catch (e) {
      this.#forget(key, h);
      throw e;
    }
  }

  #forget(key: string, h: Held): void {
    if (this.#held.get(key) === h) this.#held.delete(key);
    void h.up.stop().catch(() => {});
  }

  /**
   * A VMS client of the camera at `path` (as the RTSP server resolved it) was lost without
   * TEARDOWN: holds that camera's session. False when the path names no open camera session.
   */
  clientLost(lost: LostClient): boolean {
    const target = this.#target(lost.path, lost.query, lost.host);
    if (!target) return false;
    const key = `${target.camera.transport}|${target.url}`;
    if (!this.hold(key, `VMS ${lost.peer ?? '?'} lost (${lost.why ?? 'no TEARDOWN'})`)) return false;
    this.#log.warn({ camera: target.camera.name, url: redactUrl(target.url), vms: lost.peer, why: lost.why }, 'VMS lost without TEARDOWN: camera session kept and recorded');
    return true;
  }

  /**
   * Keeps the camera session `key` open (and recorded) whatever its subscriber count, until
   * a VMS client asks for it again and plays it, or `release`. False when no such session is open.
   */
  hold(key: string, reason = 'held'): boolean {
    const h = this.#held.get(key);
    if (!h) return false;
    h.heldSince ??= new Date().toISOString();
    h.heldFor = reason;
    h.returnMark = null;
    return true;
  }

  /**
   * Ends holds (the operator's way): `key` as `holds()` lists it, or a camera name for all of
   * that camera's sessions. The session then closes after the grace period if nobody
   * watches. Returns the number of holds released.
   */
  release(keyOrCamera: string): number {
    let n = 0;
    for (const [key, h] of this.#held) {
      if (h.heldSince === null || (key !== keyOrCamera && publicKey(key, h) !== keyOrCamera && h.camera !== keyOrCamera)) continue;
      this.#unhold(h, 'released');
      n++;
    }
    return n;
  }

  /** The held camera sessions. */
  holds(): ProxyHold[] {
    return [...this.#held].filter(([, h]) => h.heldSince !== null).map(([key, h]) => ({ key: publicKey(key, h), camera: h.camera, url: h.url, since: h.heldSince!, reason: h.heldFor }));
  }

  #unhold(h: Held, why: string): void {
    this.#log.info({ camera: h.camera, since: h.heldSince, why }, why === 'released' ? 'camera session hold released' : 'VMS client back: camera session shared, hold ended');
    h.heldSince = null;
    h.heldFor = '';
    h.returnMark = null;
    h.idleSince = performance.now();
  }

  /** Camera sessions with no VMS client for graceMs are closed (and ended ones dropped); held ones are kept. */
  #sweepIdle(): void {
    const now = performance.now();
    for (const [key, h] of this.#held) {
      void h.channel.then(
        (ch) => {
          if (ch.ended) return this.#forget(key, h);
          if (h.heldSince !== null) {
            if (h.returnMark !== null && ch.subscribers > h.returnMark) this.#unhold(h, 'returned');
            h.idleSince = performance.now();
            return;
          }
          if (ch.subscribers > 0) h.idleSince = performance.now();
          else if (now - h.idleSince > this.#graceMs) {
            this.#log.info({ camera: h.camera }, 'no VMS client left: camera session closed');
            this.#forget(key, h);
          }
        },
        () => {},
      );
    }
  }

  async close(): Promise<void> {
    for (const h of this.#held.values()) if (h.heldSince !== null) this.#log.info({ camera: h.camera, since: h.heldSince }, 'camtap closing: held camera session closed');
    this.#closed = true;
    clearInterval(this.#sweep);
    const all = [...this.#held.values()];
    this.#held.clear();
    await Promise.all(all.map((h) => h.up.stop().catch(() => {})));
  }
}

/** A session's key as shown to operators: `<transport>|<camera URL without credentials>`. */
function publicKey(key: string, h: Held): string {
  return `${key.slice(0, key.indexOf('|'))}|${h.url}`;
}
