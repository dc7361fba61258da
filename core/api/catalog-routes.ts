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
  const tags = ['catalog'];
  // Public: a liveness probe (load balancer, systemd, Kubernetes) holds no credentials, and the answer carries no data.
  app.get(
    '/health',
    {
      config: { role: 'public' },
      schema: {
        tags,
        description: 'Liveness: `{"status":"ok"}` while the process serves requests. Needs no credentials.',
        querystring: NO_QUERY,
        response: { 200: { type: 'object', required: ['status'], properties: { status: { type: 'string', enum: ['ok'] } } } },
      },
    },
    async () => ({ status: 'ok' }),
  );
  app.get(
    '/sessions',
    {
      config: { role: 'viewer' },
      schema: {
        tags,
        description: 'RTSP dialogs camtap learned (URL, transport, ports, session id, auth scheme; credentials were redacted at capture), as `camtap sessions --json`.',
        querystring: NO_QUERY,
      },
    },
    async () => catalog.listSessions(),
  );
  app.get(
    '/inventory',
    {
      config: { role: 'viewer' },
      schema: {
        tags,
        description: 'VMSs and the cameras they use, as camtap learned them (`camtap inventory --json`): `{"vms": [...], "cameras": [...]}`.',
        querystring: NO_QUERY,
      },
    },
    async () => ({ vms: await catalog.listVms(), cameras: await catalog.listCameras() }),
  );
};
