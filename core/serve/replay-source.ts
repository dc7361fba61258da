/**
 * What `/replay/...` URLs mean: the RTSP server's ReplaySource backed by the catalog and
 * the query engine.
 *
 *   /replay/<camera>            camera name or address (the stream with most data in range)
 *   /replay/<stream-id>         one stream exactly (`camtap streams`, `replayUrl`)
 *   ?start=&end=                ISO 8601 or relative (-10m); PLAY's Range overrides them
 *   ?dst=&codec=&ssrc=&url=     further selectors, as for `camtap export`
 *   ?speed=                     pacing (1 default, 4, max): handled by the server
 */
import type { Catalog } from '../catalog/catalog.js';
import type { ReplayPlan, ReplayPacket, StreamSelector } from '../query/types.js';
import { planReplay } from '../query/plan.js';
import { replayPackets } from '../query/replay.js';
import { isoFromNs } from '../query/time.js';
import { CamtapError } from '../errors.js';
import type { ReplaySource } from './rtsp-server.js';

const STREAM_ID = /^s[0-9a-f]{12}$/;

export class CatalogReplaySource implements ReplaySource {
  readonly #catalog: Catalog;
  readonly #indexDir: string;

  constructor(deps: { catalog: Catalog; indexDir: string }) {
    this.#catalog = deps.catalog;
    this.#indexDir = deps.indexDir;
  }

  async plan(path: string, query: URLSearchParams, range: { startNs?: bigint; endNs?: bigint } | null): Promise<ReplayPlan> {
    const m = /^\/replay\/([^/?]+)\/?$/.exec(path);
    if (!m) throw new CamtapError('CAMTAP_ERR_NOT_FOUND', { what: 'path', id: path });
    const name = decodeURIComponent(m[1]!);
    const sel: StreamSelector = STREAM_ID.test(name) ? { id: name } : { camera: name };
    for (const k of ['dst', 'codec', 'url'] as const) {
      const v = query.get(k);
      if (v) sel[k] = v;
    }
    const ssrc = query.get('ssrc');
    if (ssrc) sel.ssrc = Number(ssrc);
    const start = range?.startNs !== undefined ? isoFromNs(range.startNs) : query.get('start');
    const end = range?.endNs !== undefined ? isoFromNs(range.endNs) : query.get('end');
    if (start) sel.start = start;
    if (end) sel.end = end;
    return planReplay(this.#catalog, sel);
  }

  packets(plan: ReplayPlan, opts: { ssrc: number; signal: AbortSignal }): AsyncIterable<ReplayPacket> {
    // Segment paths are looked up when read: an open segment is renamed when it is sealed.
    let segs: Map<number, { path: string }> | null = null;
    const catalog = this.#catalog;
    const indexDir = this.#indexDir;
    return {
      async *[Symbol.asyncIterator]() {
        segs = new Map((await catalog.listSegments()).map((s) => [s.id, s]));
        yield* replayPackets({ indexDir, segments: (id) => segs!.get(id) }, plan, opts);
      },
    };
  }
}

/** The RTSP URL that replays a stream whole (`replayUrl` in `camtap streams`). */
export function replayUrl(base: string, streamId: string): string {
  return `${base.replace(/\/+$/, '')}/replay/${streamId}`;
}
