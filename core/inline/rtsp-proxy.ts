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
 * A camera session nobody watches for `graceMs` is torn down. The session itself
 * (reconnects, keepalives, recording through the inline tap) is the UpstreamSession's job.
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
  idleSince: number;
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
        return ch;
      }
      this.#forget(key, h);
    }
    const up = this.#start({ url: target.url, transport: target.camera.transport, key, camera: target.camera.name });
    h = { up, channel: up.start(), camera: target.camera.name, idleSince: performance.now() };
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

  /** Camera sessions with no VMS client for graceMs are closed (and ended ones dropped). */
  #sweepIdle(): void {
    const now = performance.now();
    for (const [key, h] of this.#held) {
      void h.channel.then(
        (ch) => {
          if (ch.ended) return this.#forget(key, h);
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
    this.#closed = true;
    clearInterval(this.#sweep);
    const all = [...this.#held.values()];
    this.#held.clear();
    await Promise.all(all.map((h) => h.up.stop().catch(() => {})));
  }
}
