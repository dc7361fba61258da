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
 *   GET /api/streams/:id/media-info, /api/streams/:id/fmp4?start=    core/api/media-routes.ts (browser video)
 *   GET /api/live/:name/media-info, /api/live/:name/fmp4
 *   GET /api/timeline?camera=&start=&end=                             core/api/timeline-routes.ts
 *   GET /, /console/*                                                 core/api/console-routes.ts (the web console)
 *   GET /metrics                                                      core/api/metrics-routes.ts (Prometheus)
 *   GET /api/alerts, /api/alerts/stream, POST /api/alerts/:id/ack     core/api/alert-routes.ts
 *   GET /api/reports/coverage?date=&format=html|csv|json              core/api/report-routes.ts
 *
 * Each group of routes is a fastify plugin with JSON schemas for its params and query,
 * so later layers (authentication, an OpenAPI document, more routes) register around
 * them without touching them. Unknown query parameters are refused (400), not ignored:
 * a misspelt filter must not quietly return every stream.
 *
 *   GET /api/health                     public (liveness)
 *   GET /api/auth/me                    core/api/auth.ts
 *   GET|POST|DELETE /api/taps...        core/api/tap-routes.ts
 *   GET /api/config                     core/api/config-routes.ts (admin)
 *   GET /docs, /docs/json               core/api/openapi.ts (swagger-ui, OpenAPI 3)
 *
 * Authentication (core/api/auth.ts, docs/API.md): installed before any route, so each
 * route only declares `config: { role }` (viewer, operator, admin, or public) and a schema
 * with `description` and `tags` (the OpenAPI document is generated from them). Without
 * credentials (`auth` absent) the API is open and {@link startHttpApi} refuses to listen
 * beyond loopback. Requests the `front` handler takes (the camera HTTP/ONVIF proxy) never
 * reach fastify, so camtap's authentication does not apply to them: the camera's own does.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Catalog } from '../catalog/catalog.js';
import type { Logger } from '../contracts/logger.js';
import type { TapRunner } from '../capture/tap-runner.js';
import type { Config } from '../config.js';
import { CamtapError } from '../errors.js';
import { authRoutes, installAuth, isLoopbackHost, redactAccessToken, type Credentials } from './auth.js';
import { catalogRoutes } from './catalog-routes.js';
import { failoverRoutes, type FailoverApi } from './failover-routes.js';
import { configRoutes } from './config-routes.js';
import { installOpenApi } from './openapi.js';
import { tapRoutes } from './tap-routes.js';
import { consoleRoutes } from './console-routes.js';
import { exportRoutes } from './export-routes.js';
import { installErrorHandling } from './http-errors.js';
import { mediaRoutes } from './media-routes.js';
import { streamRoutes } from './stream-routes.js';
import { timelineRoutes, type FailoverPeriod } from './timeline-routes.js';
import type { LiveSource } from '../live/live-source.js';
import type { Metrics } from '../metrics/metrics.js';
import type { AlertManager } from '../alerts/alerts.js';
import { metricsRoutes } from './metrics-routes.js';
import { alertRoutes } from './alert-routes.js';
import { reportRoutes } from './report-routes.js';

export interface HttpApiDeps {
  catalog: Catalog;
  /** The data dir's index folder (the container's `indexDir`). */
  indexDir: string;
  log: Logger;
  /** Base of camtap's RTSP URLs (e.g. `rtsp://127.0.0.1:8554`), read per request. */
  rtspBase: () => string;
  /** Sees every request first; true when it handled it (the camera HTTP/ONVIF proxy). */
  front?: ((req: IncomingMessage, res: ServerResponse) => boolean) | null;
  /** Users and tokens (core/api/auth.ts); absent or disabled: an open API (loopback only). */
  auth?: Credentials | null;
  /** camtap serve's tap runner, or null when it runs without capture (/api/taps answers 409). */
  taps?: () => TapRunner | null;
  /** The effective config for GET /api/config (redacted there); absent: that route answers 409. */
  config?: () => Config | null;
  /** Live feeds for the browser player (`/api/live/:name/fmp4`): camtap serve's LiveSource; none: those routes answer 404. */
  live?: LiveSource | null;
  /** Failover periods for the timeline (core/failover); none: the timeline shows none. */
  failoverPeriods?: () => Promise<FailoverPeriod[]>;
  /** Prometheus metrics for GET /metrics (core/metrics/metrics.ts); none: no such route. */
  metrics?: Metrics | null;
  /** GET /metrics without credentials (config `metrics.public`). */
  metricsPublic?: boolean;
  /** Alerts for /api/alerts (core/alerts/alerts.ts); none: those routes are absent. */
  alerts?: AlertManager | null;
  /** VMS failover (core/failover/service.ts): /api/failover routes. */
  failover?: FailoverApi | null;
}

export interface HttpApiOptions extends HttpApiDeps {
  /** TCP port; 0 picks a free one (see the answer's `port`). */
  port: number;
  /** Listen address (default 127.0.0.1); beyond loopback only with `auth` enabled (CAMTAP_ERR_AUTH_REQUIRED). */
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
  // Before any route: both work through onRoute hooks.
  installAuth(app, { credentials: deps.auth ?? null, log });
  installOpenApi(app, { auth: deps.auth?.enabled === true });
  app.addHook('onResponse', async (req, reply) => {
    log.debug({ method: req.method, url: redactAccessToken(req.url), status: reply.statusCode, ms: Math.round(reply.elapsedTime), user: req.principal?.name ?? null }, 'http request');
  });
  app.register(catalogRoutes, { prefix: '/api', catalog: deps.catalog });
  app.register(authRoutes, { prefix: '/api', credentials: deps.auth ?? null });
  app.register(tapRoutes, { prefix: '/api', taps: deps.taps ?? (() => null) });
  app.register(configRoutes, { prefix: '/api', config: deps.config ?? (() => null) });
  app.register(streamRoutes, { prefix: '/api', catalog: deps.catalog, rtspBase: deps.rtspBase });
  app.register(exportRoutes, { prefix: '/api', catalog: deps.catalog, indexDir: deps.indexDir, log });
  app.register(mediaRoutes, { prefix: '/api', catalog: deps.catalog, indexDir: deps.indexDir, log, live: deps.live ?? null });
  app.register(timelineRoutes, { prefix: '/api', catalog: deps.catalog, indexDir: deps.indexDir, log, ...(deps.failoverPeriods ? { failoverPeriods: deps.failoverPeriods } : {}) });
  if (deps.metrics) app.register(metricsRoutes, { metrics: deps.metrics, public: deps.metricsPublic === true });
  if (deps.alerts) app.register(alertRoutes, { prefix: '/api', alerts: deps.alerts });
  app.register(reportRoutes, { prefix: '/api', catalog: deps.catalog, indexDir: deps.indexDir, log, ...(deps.failoverPeriods ? { failoverPeriods: deps.failoverPeriods } : {}) });
  if (deps.failover) app.register(failoverRoutes, { prefix: '/api', failover: deps.failover });
  app.register(consoleRoutes);
  return app;
}

/** Creates the API and listens on `host:port`. */
export async function startHttpApi(opts: HttpApiOptions): Promise<RunningHttpApi> {
  const host = opts.host ?? '127.0.0.1';
  if (!opts.auth?.enabled) {
    if (!isLoopbackHost(host)) throw new CamtapError('CAMTAP_ERR_AUTH_REQUIRED', { host });
    opts.log.child({ component: 'http-api' }).warn({ host }, 'http api: no `auth` in the config: the API is open to every user and process on this machine (loopback only); add users or tokens to expose it (docs/API.md)');
  }
  const app = createHttpApi(opts);
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
