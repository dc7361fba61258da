/**
 * The API's OpenAPI 3 document, generated from the routes' own schemas
 * (@fastify/swagger), and swagger-ui to read and try it:
 *
 *   GET /docs        swagger-ui (viewer; its static files under /docs/static are public)
 *   GET /docs/json   the OpenAPI document (viewer)
 *   GET /docs/yaml   the same as YAML (viewer)
 *
 * Every route states `description` and `tags` in its schema and `config.role`
 * (core/api/auth.ts); the document adds to each operation the security it takes (bearer
 * token, HTTP Basic, and `?access_token=` on GET), the role it needs (`x-camtap-role`,
 * also appended to the description) and the 401/403 answers. Those additions are made
 * in the document only: the routes' response serialization is left as the routes
 * declare it.
 *
 * Must be installed before any route is registered (swagger collects them through an
 * onRoute hook).
 */
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import { CORE_VERSION } from '../plugin-host.js';
import type { RouteRole } from './auth.js';

/** The JSON error body every 4xx/5xx carries (core/api/http-errors.ts). */
export const errorBodySchema = {
  type: 'object',
  required: ['error', 'message'],
  properties: {
    error: { type: 'string', description: 'error code (docs/ERRORS.md), e.g. CAMTAP_ERR_NOT_FOUND' },
    message: { type: 'string', description: 'what went wrong, for people' },
  },
} as const;

const ERROR_RESPONSES: Record<string, { description: string; content: Record<string, { schema: unknown }> }> = {
  '401': { description: 'No credentials, or ones camtap does not know (WWW-Authenticate says how to send them); no data', content: { 'application/json': { schema: errorBodySchema } } },
  '403': { description: 'The credentials\u2019 role is too low for this route; no data', content: { 'application/json': { schema: errorBodySchema } } },
};

export interface OpenApiOptions {
  /** Whether the API has authentication (security requirements are documented either way). */
  auth: boolean;
}

/** Registers @fastify/swagger and swagger-ui at /docs. Call before registering routes. */
export function installOpenApi(app: FastifyInstance, opts: OpenApiOptions): void {
  app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'camtap API',
        version: CORE_VERSION,
        description:
          'Streams, sessions, inventory, downloads, taps and configuration of a camtap gateway. ' +
          'Authenticate with `Authorization: Bearer <token>` or HTTP Basic (a user of the config\u2019s `auth` block); ' +
          'roles are viewer < operator < admin. Errors are `{error, message}` with codes from docs/ERRORS.md. ' +
          (opts.auth ? '' : 'This instance runs without `auth`: the API is open on loopback only. ') +
          'See docs/API.md.',
      },
      components: {
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer', description: 'An API token of the config (`auth.tokens`) or CAMTAP_ADMIN_TOKEN' },
          basicAuth: { type: 'http', scheme: 'basic', description: 'A user of the config (`auth.users`)' },
          accessToken: { type: 'apiKey', in: 'query', name: 'access_token', description: 'A token in the URL, for what a browser loads by URL alone (<video src>); GET only. It lands in browser history and proxy logs: prefer the header.' },
        },
      },
      tags: [
        { name: 'streams', description: 'RTP streams camtap learned, and where to watch them' },
        { name: 'exports', description: 'Downloads of one stream: packets (pcap) or video (mp4, mkv)' },
        { name: 'catalog', description: 'Sessions, inventory and health' },
        { name: 'taps', description: 'Capture taps: status, create, start, stop' },
        { name: 'config', description: 'The effective configuration (secrets redacted)' },
        { name: 'auth', description: 'Who the caller is' },
      ],
    },
    transform: ({ schema, url, route }) => {
      const role: RouteRole = (route.config as { role?: RouteRole } | undefined)?.role ?? 'viewer';
      const s = { ...(schema ?? {}) } as Record<string, unknown>;
      const methods = Array.isArray(route.method) ? route.method : [route.method];
      const get = methods.every((m) => m === 'GET' || m === 'HEAD');
      s['x-camtap-role'] = role;
      if (role === 'public') {
        s.security = [];
      } else {
        s.security = [{ bearerAuth: [] }, { basicAuth: [] }, ...(get ? [{ accessToken: [] }] : [])];
        if (typeof s.description === 'string') s.description = `${s.description}\n\nRole: **${role}** or above.`;
      }
      return { schema: s as typeof schema, url };
    },
    transformObject: (doc) => {
      if (!('openapiObject' in doc)) return doc.swaggerObject;
      const openapiObject = doc.openapiObject;
      // 401/403 on every operation that needs a role (added here, not to the route schemas,
      // so fastify's serialization of the routes' own answers is unchanged).
      for (const item of Object.values(openapiObject.paths ?? {})) {
        for (const op of Object.values(item as Record<string, { security?: unknown[]; responses?: Record<string, unknown> }>)) {
          if (!op || typeof op !== 'object' || !Array.isArray(op.security) || op.security.length === 0) continue;
          op.responses = { ...ERROR_RESPONSES, ...(op.responses ?? {}) };
        }
      }
      return openapiObject;
    },
  });
  app.register(swaggerUi, {
    routePrefix: '/docs',
    uiConfig: { deepLinking: true, persistAuthorization: false },
    staticCSP: true,
  });
}
