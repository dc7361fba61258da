/**
 * What camtap learned besides streams, as the catalog keeps it (the records of
 * core/contracts/records.ts, as `camtap sessions --json` and `camtap inventory --json`
 * print them), and the health probe:
 *
 *   GET /api/health      {"status":"ok"} while the process serves requests
 *   GET /api/sessions    RTSP dialogs (URL, transport, session id, auth scheme; credentials redacted at capture)
 *   GET /api/inventory   {"vms": [...], "cameras": [...]}
 */
import type { FastifyPluginAsync } from 'fastify';
import type { Catalog } from '../catalog/catalog.js';

export interface CatalogRoutesOptions {
  catalog: Catalog;
}

const NO_QUERY = { type: 'object', additionalProperties: false, properties: {} } as const;

export const catalogRoutes: FastifyPluginAsync<CatalogRoutesOptions> = async (app, opts) => {
  const { catalog } = opts;
  app.get('/health', { schema: { querystring: NO_QUERY } }, async () => ({ status: 'ok' }));
  app.get('/sessions', { schema: { querystring: NO_QUERY } }, async () => catalog.listSessions());
  app.get('/inventory', { schema: { querystring: NO_QUERY } }, async () => ({ vms: await catalog.listVms(), cameras: await catalog.listCameras() }));
};
