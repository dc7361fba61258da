/**
 * Prometheus scrape endpoint (core/metrics/metrics.ts; metric list in docs/OPERATIONS.md):
 *
 *   GET /metrics     text exposition format 0.0.4                 viewer, or public with `metrics.public`
 *
 * Outside /api, where Prometheus looks by default. A scraper authenticates like any
 * client (`authorization: Bearer <viewer token>` in its scrape config); `metrics.public:
 * true` lets a Prometheus on a trusted network scrape without one.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { Metrics } from '../metrics/metrics.js';

export interface MetricsRoutesOptions {
  metrics: Metrics;
  /** Scraping needs no credentials (config `metrics.public`). */
  public?: boolean;
}

export const metricsRoutes: FastifyPluginAsync<MetricsRoutesOptions> = async (app, opts) => {
  const { metrics } = opts;
  app.get(
    '/metrics',
    {
      config: { role: opts.public ? 'public' : 'viewer' },
      schema: {
        tags: ['metrics'],
        description:
          'Prometheus metrics in the text exposition format 0.0.4: per tap packets, bytes, drops; per stream packets, loss, jitter, bitrate; replay and live sessions; failover state per VMS; storage used and free; ingest lag; active alerts. Every value is read at scrape time. Names and meaning: docs/OPERATIONS.md.',
        querystring: { type: 'object', additionalProperties: false, properties: {} },
        produces: ['text/plain'],
        response: { 200: { type: 'string', description: 'text/plain; version=0.0.4' } },
      },
    },
    async (_req, reply) => {
      const text = await metrics.text();
      return reply.type(metrics.contentType).header('cache-control', 'no-store').send(text);
    },
  );
};
