/**
 * camtap's HTTP API (`camtap serve --http-port`, config `serve.httpPort`), on fastify.
 * Everything is under `/api`, JSON in and out, errors as `{ error: CODE, message }`
 * (core/api/http-errors.ts):
 *
 *   GET /api/health
 *   GET /api/streams?camera=&dst=&codec=&url=&ssrc=&start=&end=      core/api/stream-routes.ts
 *   GET /api/streams/:id
 *   GET /api/streams/:id/pcap?start=&end=&format=pcap|pcapng          core/api/export-routes.ts
 *   GET /api/streams/:id/mp4?start=&end=
 *   GET /api/streams/:id/mkv?start=&end=
 *   GET /api/sessions                                                 core/api/catalog-routes.ts
 *   GET /api/inventory
 *
 * Each group of routes is a fastify plugin with JSON schemas for its params and query,
 * so later layers (authentication, an OpenAPI document, more routes) register around
 * them without touching them. Unknown query parameters are refused (400), not ignored:
 * a misspelt filter must not quietly return every stream. There is no authentication
 * yet: {@link startHttpApi} listens on 127.0.0.1 unless told otherwise.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Catalog } from '../catalog/catalog.js';
import type { Logger } from '../contracts/logger.js';
import { catalogRoutes } from './catalog-routes.js';
import { exportRoutes } from './export-routes.js';
import { installErrorHandling } from './http-errors.js';
import { streamRoutes } from './stream-routes.js';

export interface HttpApiDeps {
  catalog: Catalog;
  /** The data dir's index folder (the container's `indexDir`). */
  indexDir: string;
  log: Logger;
  /** Base of camtap's RTSP URLs (e.g. `rtsp://127.0.0.1:8554`), read per request. */
  rtspBase: () => string;
  /** Sees every request first; true when it handled it (the camera HTTP/ONVIF proxy). */
  front?: ((req: IncomingMessage, res: ServerResponse) => boolean) | null;
}

export interface HttpApiOptions extends HttpApiDeps {
  /** TCP port; 0 picks a free one (see the answer's `port`). */
  port: number;
  /** Listen address (default 127.0.0.1: the API has no authentication yet). */
  host?: string;
}

export interface RunningHttpApi {
  port: number;
  app: FastifyInstance;
  /** Stops listening, ends running downloads and open connections. Safe to call twice. */
  close(): Promise<void>;
}

/** The API with its routes registered, not listening (tests use `app.inject()`). */
export function createHttpApi(deps: HttpApiDeps): FastifyInstance {
  const log = deps.log.child({ component: 'http-api' });
  const front = deps.front;
  const app = Fastify({
    logger: false,
    // Requests another handler takes (the inline gateway's camera HTTP/ONVIF proxy at
    // /cam/<alias>/...) never reach fastify: they are proxied byte for byte, not parsed.
    ...(front ? { serverFactory: (handler: (req: IncomingMessage, res: ServerResponse) => void) => createServer((req, res) => (front(req, res) ? undefined : handler(req, res))) } : {}),
    // A download may run for long: close() must not wait for it.
    forceCloseConnections: true,
    return503OnClosing: true,
    ajv: { customOptions: { removeAdditional: false } },
  });
  installErrorHandling(app, log);
  app.addHook('onResponse', async (req, reply) => {
    log.debug({ method: req.method, url: req.url, status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'http request');
  });
  app.register(catalogRoutes, { prefix: '/api', catalog: deps.catalog });
  app.register(streamRoutes, { prefix: '/api', catalog: deps.catalog, rtspBase: deps.rtspBase });
  app.register(exportRoutes, { prefix: '/api', catalog: deps.catalog, indexDir: deps.indexDir, log });
  return app;
}

/** Creates the API and listens on `host:port`. */
export async function startHttpApi(opts: HttpApiOptions): Promise<RunningHttpApi> {
  const app = createHttpApi(opts);
  const host = opts.host ?? '127.0.0.1';
  await app.listen({ port: opts.port, host });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : opts.port;
  opts.log.child({ component: 'http-api' }).info({ port, host }, 'http api listening');
  let closing: Promise<void> | null = null;
  return {
    port,
    app,
    close() {
      closing ??= app.close();
      return closing;
    },
  };
}
