/**
 * Alerts for the console and for scripts (core/alerts/alerts.ts; rules, payloads and the
 * event stream in docs/OPERATIONS.md):
 *
 *   GET  /api/alerts              active alerts and the recent resolved ones           viewer
 *   GET  /api/alerts/stream       server-sent events: `snapshot`, then `fired`,        viewer
 *                                 `resolved`, `acked` as they happen
 *   POST /api/alerts/:id/ack      mark an alert seen (it stays active until resolved)  operator
 *
 * The event stream is the HTML5 server-sent events format (`text/event-stream`): the
 * browser's EventSource reconnects by itself, and each connection starts with a
 * `snapshot` event holding the active alerts, so nothing needs replaying. A client that
 * does not read (its socket buffer past {@link SSE_MAX_BUFFERED}) is disconnected rather
 * than buffered without bound.
 */
import type { ServerResponse } from 'node:http';
import type { FastifyPluginAsync } from 'fastify';
import type { Alert, AlertEvent, AlertManager } from '../alerts/alerts.js';
import { errorBodySchema } from './openapi.js';

export interface AlertRoutesOptions {
  alerts: AlertManager;
  /** Milliseconds between keep-alive comments on the event stream (default 15 s: under the usual proxy idle timeouts). */
  keepAliveMs?: number;
}

/** Bytes an event-stream client may leave unread before it is dropped. */
export const SSE_MAX_BUFFERED = 1 << 20;

const alertSchema = {
  type: 'object',
  required: ['id', 'kind', 'severity', 'subject', 'message', 'firedAt'],
  properties: {
    id: { type: 'string' },
    kind: { type: 'string', enum: ['storage-low', 'tap-down', 'camera-silent', 'stream-loss', 'vms-failed', 'vms-restored'] },
    severity: { type: 'string', enum: ['critical', 'warning', 'info'] },
    subject: { type: 'string', description: 'what it is about: tap name, camera, stream id, VMS, data dir' },
    message: { type: 'string' },
    firedAt: { type: 'string', format: 'date-time' },
    resolvedAt: { type: 'string', format: 'date-time' },
    ackedAt: { type: 'string', format: 'date-time' },
    ackedBy: { type: 'string' },
    details: { type: 'object', additionalProperties: true, description: 'the numbers behind the message' },
  },
} as const;

const NO_QUERY = { type: 'object', additionalProperties: false, properties: {} } as const;

export const alertRoutes: FastifyPluginAsync<AlertRoutesOptions> = async (app, opts) => {
  const { alerts } = opts;
  const tags = ['alerts'];
  const open = new Set<ServerResponse>();

  app.get<{ Querystring: { limit?: number } }>(
    '/alerts',
    {
      config: { role: 'viewer' },
      schema: {
        tags,
        description: 'Alerts firing now (oldest first) and the most recent resolved ones (newest first).',
        querystring: { type: 'object', additionalProperties: false, properties: { limit: { type: 'integer', minimum: 1, maximum: 100000, description: 'at most this many resolved alerts (default: all kept, config alerts.recent)' } } },
        response: { 200: { type: 'object', required: ['active', 'recent'], properties: { active: { type: 'array', items: alertSchema }, recent: { type: 'array', items: alertSchema } } } },
      },
    },
    async (req) => ({ active: alerts.active(), recent: alerts.recent(req.query.limit) }),
  );

  app.post<{ Params: { id: string } }>(
    '/alerts/:id/ack',
    {
      config: { role: 'operator' },
      schema: {
        tags,
        description: 'Acknowledges an alert: it is marked with the time and who acknowledged it, and stays active until its condition ends. Acknowledging twice changes nothing.',
        params: { type: 'object', required: ['id'], properties: { id: { type: 'string', minLength: 1, maxLength: 64 } } },
        querystring: NO_QUERY,
        response: { 200: alertSchema, 404: errorBodySchema },
      },
    },
    async (req): Promise<Alert> => alerts.ack(req.params.id, req.principal?.name),
  );

  app.get(
    '/alerts/stream',
    {
      config: { role: 'viewer' },
      schema: {
        tags,
        description:
          'Server-sent events (text/event-stream): first `event: snapshot` with `{"active": [...]}`, then `fired`, `resolved` and `acked` events whose data is the alert as JSON; a comment line every 15 s keeps proxies from closing the connection.',
        querystring: NO_QUERY,
        produces: ['text/event-stream'],
      },
    },
    (req, reply) => {
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        connection: 'keep-alive',
        // nginx buffers responses unless told otherwise.
        'x-accel-buffering': 'no',
      });
      open.add(res);
      let seq = 0;
      const write = (event: string, data: unknown) => {
        if (res.writableLength > SSE_MAX_BUFFERED) {
          res.destroy();
          return;
        }
        res.write(`id: ${++seq}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
      };
      res.write('retry: 5000\n\n');
      write('snapshot', { active: alerts.active() });
      const off = alerts.subscribe((e: AlertEvent) => write(e.type, e.alert));
      const keepAlive = setInterval(() => res.write(': keep-alive\n\n'), opts.keepAliveMs ?? 15_000);
      keepAlive.unref();
      res.on('close', () => {
        off();
        clearInterval(keepAlive);
        open.delete(res);
      });
    },
  );

  // Hijacked responses are not fastify's to end: close() ends them here.
  app.addHook('onClose', async () => {
    for (const res of open) res.end();
  });
};
