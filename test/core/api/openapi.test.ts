/**
 * The OpenAPI document at /docs/json describes every route fastify serves under /api:
 * the routes are collected from fastify itself (an onRoute hook on the app, so routes
 * added later by any group are covered) and each must be in the document with a
 * description, tags, the role it needs and the matching security. The document is also
 * checked by a validator other than the one that generated it (openapi-spec-validator
 * or, where missing, structural checks).
 */
import t from 'tap';
import path from 'node:path';
import type { RouteOptions } from 'fastify';
import { createHttpApi } from '../../../core/api/http-server.js';
import { Credentials, hashToken } from '../../../core/api/auth.js';
import { validateConfig } from '../../../core/config.js';
import { silentLogger } from '../../../core/logger.js';
import { run } from '../../helpers/peers.js';
import { importCaptures } from '../query/fixture.js';

const TOKEN = 'docs-reader-token-0123456789';

interface Operation {
  description?: string;
  tags?: string[];
  security?: Array<Record<string, string[]>>;
  responses?: Record<string, unknown>;
  'x-camtap-role'?: string;
}

async function appWithRoutes(t: Parameters<typeof importCaptures>[0]) {
  const imp = await importCaptures(t, ['lo_udp_h264.pcap']);
  const config = validateConfig({ auth: { tokens: [{ name: 'docs', tokenHash: hashToken(TOKEN), role: 'viewer' }] } }, '(test)');
  // Route groups that exist only with their service (alerts, failover, metrics) are given a
  // stand-in: registering routes must not call it, and every group is then in the document.
  const standIn = new Proxy({}, { get: () => () => Promise.reject(new Error('stand-in called')) }) as never;
  const app = createHttpApi({
    catalog: imp.catalog,
    indexDir: path.join(imp.dataDir, 'index'),
    log: silentLogger,
    rtspBase: () => 'rtsp://127.0.0.1:8554',
    auth: new Credentials(config.auth, {}),
    config: () => config,
    taps: () => null,
    ...({ alerts: standIn, failover: standIn, metrics: standIn } as object),
  });
  const routes: RouteOptions[] = [];
  // Added before ready(): the route groups are plugins, registered when the app loads.
  app.addHook('onRoute', (r) => void routes.push(r));
  await app.ready();
  t.teardown(() => app.close());
  return { app, routes };
}

/** `/api/streams/:id` -> `/api/streams/{id}` (OpenAPI path templating). */
function openapiPath(url: string): string {
  return url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
}

t.test('every /api route fastify knows is in /docs/json with a description, tags and its role', async (t) => {
  const { app, routes } = await appWithRoutes(t);
  const api = routes.filter((r) => r.url.startsWith('/api/'));
  t.ok(api.length >= 15, `${api.length} routes under /api collected from fastify`);
  const r = await app.inject({ method: 'GET', url: '/docs/json', headers: { authorization: `Bearer ${TOKEN}` } });
  t.equal(r.statusCode, 200);
  const doc = r.json<{ paths: Record<string, Record<string, Operation>>; components: { securitySchemes: Record<string, { type: string; scheme?: string; in?: string; name?: string; description?: string }> } }>();
  for (const route of api) {
    for (const m of [route.method].flat()) {
      if (m === 'HEAD') continue; // fastify's automatic HEAD twin of a GET
      const op = doc.paths[openapiPath(route.url)]?.[m.toLowerCase()];
      const name = `${m} ${route.url}`;
      t.ok(op, `${name} is in the document`);
      if (!op) continue;
      t.ok(typeof op.description === 'string' && op.description.trim().length >= 10, `${name} has a description`);
      t.ok(Array.isArray(op.tags) && op.tags.length > 0, `${name} has tags`);
      const role = (route.config as { role?: string } | undefined)?.role;
      t.ok(role, `${name} has a role in its config`);
      t.equal(op['x-camtap-role'], role, `${name}: the document states its role (${role})`);
      if (role === 'public') t.same(op.security, [], `${name}: no security`);
      else {
        t.same(op.security?.slice(0, 2), [{ bearerAuth: [] }, { basicAuth: [] }], `${name}: bearer or basic`);
        t.ok(op.responses?.['401'] && op.responses?.['403'], `${name}: 401 and 403 documented`);
      }
    }
  }
  t.same(doc.components.securitySchemes.bearerAuth, { type: 'http', scheme: 'bearer', description: doc.components.securitySchemes.bearerAuth!.description });
  t.equal(doc.components.securitySchemes.basicAuth?.scheme, 'basic');
  t.same([doc.components.securitySchemes.accessToken?.in, doc.components.securitySchemes.accessToken?.name], ['query', 'access_token']);
  const roles = Object.fromEntries(api.filter((x) => x.method !== 'HEAD').map((x) => [`${[x.method].flat()[0]} ${x.url}`, (x.config as { role?: string }).role]));
  t.match(roles, {
    'GET /api/health': 'public',
    'GET /api/streams': 'viewer',
    'GET /api/taps': 'viewer',
    'POST /api/taps': 'operator',
    'POST /api/taps/:name/start': 'operator',
    'POST /api/taps/:name/stop': 'operator',
    'DELETE /api/taps/:name': 'admin',
    'GET /api/config': 'admin',
  });
});

t.test('the document is valid OpenAPI 3 for an independent validator', async (t) => {
  const { app } = await appWithRoutes(t);
  const body = (await app.inject({ method: 'GET', url: '/docs/json', headers: { authorization: `Bearer ${TOKEN}` } })).body;
  let python: string | null = null;
  for (const p of ['python3', '/usr/bin/python3']) {
    if (python === null && (await run(p, ['-c', 'import openapi_spec_validator']).catch(() => ({ code: 1 }))).code === 0) python = p;
  }
  if (python === null) {
    t.comment('python3-openapi-spec-validator is not installed: structural checks only');
    const doc = JSON.parse(body) as { openapi: string; info: { title: string; version: string }; paths: object };
    t.match(doc, { openapi: /^3\.0\.\d$/, info: { title: String, version: String }, paths: Object });
    return;
  }
  const py = 'import json,sys\nfrom openapi_spec_validator import validate\nvalidate(json.load(sys.stdin))\nprint("valid")';
  const r = await run(python, ['-c', py], { input: Buffer.from(body) });
  t.equal(r.code, 0, r.stderr.slice(-2000));
  t.equal(r.stdout.trim(), 'valid');
});
