/**
 * Downloads of one stream:
 *
 *   GET /api/streams/:id/pcap?start=&end=&format=pcap|pcapng   packets as captured + RTSP dialog (core/serve/export.ts)
 *   GET /api/streams/:id/mp4?start=&end=                       fragmented mp4 (core/serve/export-media.ts)
 *   GET /api/streams/:id/mkv?start=&end=                       matroska
 *
 * The stream and range are planned before anything is sent, so an unknown stream (404),
 * a malformed range (400) or one outside the recording (416) is a JSON error. The body
 * is streamed as it is produced; the status line waits for its first byte, so an
 * export that fails before writing anything (ffmpeg missing, a codec the container
 * cannot take) is a JSON error too. A failure after that can only cut the transfer
 * short (the chunked body ends without its last chunk; the client sees an error). A
 * client that goes away stops the export (and kills ffmpeg).
 */
import { Transform } from 'node:stream';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import type { Catalog } from '../catalog/catalog.js';
import type { Logger } from '../contracts/logger.js';
import { planReplay } from '../query/plan.js';
import { isoFromNs } from '../query/time.js';
import type { ReplayPlan } from '../query/types.js';
import { exportPcap } from '../serve/export.js';
import { exportMedia, type MediaFormat } from '../serve/export-media.js';
import { CatalogReplaySource } from '../serve/replay-source.js';
import { rangeProperties, parseRange, type RangeQuery } from './query-params.js';
import { streamIdParams } from './stream-routes.js';

export interface ExportRoutesOptions {
  catalog: Catalog;
  indexDir: string;
  log: Logger;
}

interface PcapQuery extends RangeQuery {
  format?: 'pcap' | 'pcapng';
}

const CONTENT_TYPE = {
  pcap: 'application/vnd.tcpdump.pcap',
  pcapng: 'application/x-pcapng',
  mp4: 'video/mp4',
  mkv: 'video/x-matroska',
} as const;

/** `camtap-<id>-20261123T210643Z.<ext>`: the stream and where the range starts. */
export function downloadName(plan: ReplayPlan, ext: string): string {
  const stamp = isoFromNs(plan.startNs).slice(0, 19).replace(/[-:]/g, '') + 'Z';
  return `camtap-${plan.stream.id.replace(/[^A-Za-z0-9_.-]/g, '_')}-${stamp}.${ext}`;
}

async function planFor(catalog: Catalog, id: string, q: RangeQuery): Promise<ReplayPlan> {
  parseRange(q); // 400 for a malformed or empty range, before the planner's 416
  return planReplay(catalog, { id, ...(q.start !== undefined ? { start: q.start } : {}), ...(q.end !== undefined ? { end: q.end } : {}) });
}

export const exportRoutes: FastifyPluginAsync<ExportRoutesOptions> = async (app, opts) => {
  const { catalog, indexDir, log } = opts;
  const running = new Set<AbortController>();
  app.addHook('onClose', async () => {
    for (const ac of running) ac.abort();
  });

  /**
   * Sends what `produce` writes as the body, once its first byte is there (see the file
   * comment); `produce` must not end the stream.
   */
  async function download(reply: FastifyReply, type: string, filename: string, produce: (out: NodeJS.WritableStream, signal: AbortSignal) => Promise<unknown>): Promise<FastifyReply> {
    const ac = new AbortController();
    running.add(ac);
    let firstByte!: () => void;
    const started = new Promise<'data'>((r) => (firstByte = () => r('data')));
    const body = new Transform({
      transform(chunk, _enc, cb) {
        firstByte();
        cb(null, chunk);
      },
    });
    const job = produce(body, ac.signal).finally(() => running.delete(ac));
    const first = await Promise.race([started, job.then(() => 'done' as const)]).catch((e: unknown) => {
      body.destroy();
      throw e;
    });
    job.then(
      () => body.end(),
      (e: unknown) => {
        if (!ac.signal.aborted) log.error({ err: (e as Error).message, file: filename }, 'http api: export failed after the first byte; transfer cut');
        body.destroy(e as Error);
      },
    );
    if (first === 'data') {
      reply.raw.on('close', () => {
        if (!reply.raw.writableFinished) ac.abort();
      });
    }
    return reply.type(type).header('content-disposition', `attachment; filename="${filename}"`).header('cache-control', 'no-store').send(body);
  }

  app.get<{ Params: { id: string }; Querystring: PcapQuery }>(
    '/streams/:id/pcap',
    {
      config: { role: 'viewer' },
      schema: {
        tags: ['exports'],
        description:
          'The stream\u2019s packets as captured (every header and byte), with the RTSP dialog that set it up, as a pcap or pcapng download (Wireshark opens it). The range starts at the keyframe before `start`. 404: unknown stream; 400: malformed range; 416: range outside the recording.',
        produces: ['application/vnd.tcpdump.pcap', 'application/x-pcapng'],
        params: streamIdParams,
        querystring: { type: 'object', additionalProperties: false, properties: { ...rangeProperties, format: { type: 'string', enum: ['pcap', 'pcapng'], default: 'pcap', description: 'file format' } } },
      },
    },
    async (req, reply) => {
      const format = req.query.format ?? 'pcap';
      const plan = await planFor(catalog, req.params.id, req.query);
      const segs = new Map((await catalog.listSegments()).map((s) => [s.id, s]));
      return download(reply, CONTENT_TYPE[format], downloadName(plan, format), (out, signal) => exportPcap({ indexDir, segments: (id) => segs.get(id) }, plan, out, { format, signal }));
    },
  );

  for (const format of ['mp4', 'mkv'] as const satisfies readonly MediaFormat[]) {
    app.get<{ Params: { id: string }; Querystring: RangeQuery }>(
      `/streams/:id/${format}`,
      {
        config: { role: 'viewer' },
        schema: {
          tags: ['exports'],
          description: `The stream\u2019s video as ${format === 'mp4' ? 'fragmented MP4' : 'Matroska'} (through ffmpeg, no re-encoding), from the keyframe before \`start\` to \`end\`. 404: unknown stream; 400: malformed range; 416: range outside the recording; 422: a codec the container cannot take; 503: ffmpeg missing.`,
          produces: [CONTENT_TYPE[format]],
          params: streamIdParams,
          querystring: { type: 'object', additionalProperties: false, properties: rangeProperties },
        },
      },
      async (req, reply) => {
        const plan = await planFor(catalog, req.params.id, req.query);
        // The replay asks for exactly the planned stream and range.
        const query = new URLSearchParams({ start: isoFromNs(plan.startNs), end: isoFromNs(plan.endNs) });
        const source = new CatalogReplaySource({ catalog, indexDir });
        return download(reply, CONTENT_TYPE[format], downloadName(plan, format), (out, signal) =>
          exportMedia({ source, path: `/replay/${plan.stream.id}`, query, format, out, log, signal }),
        );
      },
    );
  }
};
