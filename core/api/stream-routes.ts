/**
 * `GET /api/streams` and `GET /api/streams/:id`: the RTP streams camtap learned, as the
 * catalog keeps them (core/contracts/records.ts StreamRecord), plus where to watch them:
 * `replayUrl` (the recording over RTSP) and `liveUrl` (the live relay). Streams a
 * client sends toward a camera (ffmpeg's NAT-punch packets, `client->server`) are listed
 * too, as in `camtap streams`, but have no URLs: camtap never serves them.
 *
 * Filters (all optional, all must match): the selectors of core/query/types.ts
 * StreamSelector with the same meaning (see core/query/plan.ts matchesSelector), and
 * `start`/`end`, which keep the streams whose recording overlaps the range.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { Catalog } from '../catalog/catalog.js';
import type { StreamRecord } from '../contracts/records.js';
import { CamtapError } from '../errors.js';
import { matchesSelector, type NameResolver } from '../query/plan.js';
import { replayUrl } from '../serve/replay-source.js';
import { parseRange, selectorOf, selectorProperties, type SelectorQuery } from './query-params.js';

export interface StreamRoutesOptions {
  catalog: Catalog;
  /** Base of camtap's RTSP URLs, e.g. `rtsp://127.0.0.1:8554` (read per request: the port is known once the server listens). */
  rtspBase: () => string;
}

/** A stream record as the API shows it. */
export type StreamView = StreamRecord & { replayUrl?: string; liveUrl?: string };

/** Stream ids are short; the limit keeps a hostile path out of the catalog lookup. */
export const streamIdParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', minLength: 1, maxLength: 64, description: 'stream id (`camtap streams`)' } },
} as const;

export function streamView(s: StreamRecord, base: string): StreamView {
  if (s.direction === 'client->server') return s;
  return { ...s, replayUrl: replayUrl(base, s.id), liveUrl: `${base.replace(/\/+$/, '')}/live/${s.id}` };
}

function nsOf(s: string): bigint {
  return /^\d{1,30}$/.test(s) ? BigInt(s) : 0n;
}

export const streamRoutes: FastifyPluginAsync<StreamRoutesOptions> = async (app, opts) => {
  const { catalog } = opts;

  app.get<{ Querystring: SelectorQuery }>(
    '/streams',
    {
      config: { role: 'viewer' },
      schema: {
        tags: ['streams'],
        description:
          'The RTP streams camtap learned, filtered by the selectors of a stream request (camera, destination, codec, URL, SSRC; all must match) and by `start`/`end` (streams whose recording overlaps the range). Each camera stream has `replayUrl` (the recording over RTSP) and `liveUrl`.',
        querystring: { type: 'object', additionalProperties: false, properties: selectorProperties },
      },
    },
    async (req) => {
      const sel = selectorOf(req.query);
      const { startNs, endNs } = parseRange(req.query);
      const cameras = sel.camera !== undefined ? await catalog.listCameras() : [];
      const vms = sel.dst !== undefined ? await catalog.listVms() : [];
      const names: NameResolver = {
        cameraAddresses: (n) => cameras.filter((c) => c.name === n).map((c) => c.address),
        vmsAddresses: (n) => vms.filter((v) => v.name === n).map((v) => v.address),
      };
      const base = opts.rtspBase();
      return (await catalog.listStreams())
        .filter((s) => matchesSelector(s, sel, names))
        .filter((s) => (startNs === null || nsOf(s.endNs) >= startNs) && (endNs === null || nsOf(s.startNs) <= endNs))
        .map((s) => streamView(s, base));
    },
  );

  app.get<{ Params: { id: string } }>('/streams/:id', { config: { role: 'viewer' }, schema: { tags: ['streams'], description: 'One stream by id, with its replay and live URLs; 404 when unknown.', params: streamIdParams } }, async (req) => {
    const s = await catalog.getStream(req.params.id);
    if (s === undefined) throw new CamtapError('CAMTAP_ERR_NOT_FOUND', { what: 'stream', id: req.params.id });
    return streamView(s, opts.rtspBase());
  });
};
