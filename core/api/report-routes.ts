/**
 * Reports (core/reports/coverage.ts; the columns are described in docs/OPERATIONS.md):
 *
 *   GET /api/reports/coverage?date=YYYY-MM-DD&format=html|csv|json&gap=&camera=     viewer
 *
 * Daily recording coverage per camera: recorded seconds, gaps, coverage percentage, and
 * failover periods. `format=html` is a standalone page with an SVG plot, `csv` one line
 * per camera (sent as a download), `json` (default) the full report.
 */
import type { FastifyPluginAsync } from 'fastify';
import { coverageCsv, coverageHtml, coverageReport, DEFAULT_GAP_SEC, type CoverageDeps } from '../reports/coverage.js';
import { errorBodySchema } from './openapi.js';

export type ReportRoutesOptions = CoverageDeps;

interface CoverageQuery {
  date: string;
  format?: 'html' | 'csv' | 'json';
  gap?: number;
  camera?: string;
}

const span = { type: 'object', properties: { start: { type: 'string' }, end: { type: 'string' }, seconds: { type: 'number' } } } as const;

export const reportRoutes: FastifyPluginAsync<ReportRoutesOptions> = async (app, opts) => {
  app.get<{ Querystring: CoverageQuery }>(
    '/reports/coverage',
    {
      config: { role: 'viewer' },
      schema: {
        tags: ['reports'],
        description:
          'Recording coverage of every camera over one UTC day: recorded seconds, gaps (silences longer than `gap` seconds, found in the segment index), coverage percentage of the part of the day that has passed, failover periods. format=html: a page with one bar row per camera; csv: camera,date,covered_seconds,gap_seconds,coverage_percent,gaps; json: the full report.',
        querystring: {
          type: 'object',
          additionalProperties: false,
          required: ['date'],
          properties: {
            date: { type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}$', description: 'the UTC day, YYYY-MM-DD' },
            format: { type: 'string', enum: ['html', 'csv', 'json'], default: 'json' },
            gap: { type: 'number', minimum: 0.1, maximum: 86400, default: DEFAULT_GAP_SEC, description: 'seconds of silence that make a gap' },
            camera: { type: 'string', minLength: 1, maxLength: 256, description: 'only this camera (name or address)' },
          },
        },
        produces: ['application/json', 'text/csv', 'text/html'],
        response: {
          200: {
            description: 'The report (JSON shown; CSV and HTML as text)',
            type: 'object',
            properties: {
              date: { type: 'string' },
              start: { type: 'string' },
              end: { type: 'string' },
              until: { type: 'string' },
              windowSeconds: { type: 'number' },
              gapSec: { type: 'number' },
              failoverKnown: { type: 'boolean' },
              cameras: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    camera: { type: 'string' },
                    address: { type: 'string' },
                    coveredSeconds: { type: 'number' },
                    gapSeconds: { type: 'number' },
                    failoverSeconds: { type: 'number' },
                    coveragePercent: { type: 'number' },
                    covered: { type: 'array', items: span },
                    gaps: { type: 'array', items: span },
                    failover: { type: 'array', items: { ...span, properties: { ...span.properties, vms: { type: 'string' } } } },
                  },
                },
              },
            },
          },
          400: errorBodySchema,
          404: errorBodySchema,
        },
      },
    },
    async (req, reply) => {
      const q = req.query;
      const report = await coverageReport(opts, { date: q.date, ...(q.gap !== undefined ? { gapSec: q.gap } : {}), ...(q.camera !== undefined ? { camera: q.camera } : {}) });
      if (q.format === 'csv') {
        return reply.type('text/csv; charset=utf-8').header('content-disposition', `attachment; filename="camtap-coverage-${q.date}.csv"`).send(coverageCsv(report));
      }
      if (q.format === 'html') return reply.type('text/html; charset=utf-8').send(coverageHtml(report));
      return report;
    },
  );
};
