/**
 * The capture taps of a running `camtap serve`, as core/capture/tap-runner.ts runs them:
 *
 *   GET    /api/taps                 every tap with its status (state, packets, bytes, drops, filter)   viewer
 *   GET    /api/taps/:name           one tap                                                            viewer
 *   GET    /api/taps/:name/filter    the driver's translation of its filter (`camtap taps explain`)     viewer
 *   POST   /api/taps                 add a tap: body as one entry of the config's `taps:`               operator
 *   POST   /api/taps/:name/start     start it (a running tap is left running)                           operator
 *   POST   /api/taps/:name/stop      stop it (a stopped tap is left stopped)                            operator
 *   DELETE /api/taps/:name           stop and remove it (what it recorded stays)                        admin
 *
 * A tap added here lives as long as the process; the config file is not rewritten. The
 * body of POST /api/taps is checked by the config file's own schema (core/config.ts
 * `tapSchema`), so an entry that works here works in the file and the other way round.
 * When serve runs without capture (no enabled tap, no inline gateway) there is no runner:
 * every route answers 409 CAMTAP_ERR_CONFLICT saying so.
 */
import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import type { TapRunner, TapView } from '../capture/tap-runner.js';
import { tapSchema } from '../config.js';
import { CamtapError, isCamtapError } from '../errors.js';
import { withStatus } from './http-errors.js';
import { errorBodySchema } from './openapi.js';

export interface TapRoutesOptions {
  /** The runner of `camtap serve`, or null when it runs without capture. */
  taps: () => TapRunner | null;
}

/** Drops what OpenAPI 3.0's schema objects do not take (`$schema`, `propertyNames`: string keys go without saying in JSON). */
function openapiCompatible(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(openapiCompatible);
  if (v === null || typeof v !== 'object') return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) if (k !== '$schema' && k !== 'propertyNames') out[k] = openapiCompatible(x);
  return out;
}

/** The config file's tap entry as JSON Schema (for validation and the OpenAPI document). */
function tapBodySchema(): Record<string, unknown> {
  const s = openapiCompatible(z.toJSONSchema(tapSchema, { target: 'draft-7', io: 'input' })) as Record<string, unknown>;
  return { ...s, description: 'One entry of the config file\u2019s `taps:` list (README): name, driver, filter, options, enabled' };
}

const NAME_PARAMS = {
  type: 'object',
  required: ['name'],
  properties: { name: { type: 'string', minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_.-]+$', description: 'tap name' } },
} as const;
const NO_QUERY = { type: 'object', additionalProperties: false, properties: {} } as const;

const statusSchema = {
  type: 'object',
  required: ['state', 'packets', 'bytes', 'drops'],
  properties: {
    state: { type: 'string', enum: ['idle', 'opening', 'running', 'stopped', 'failed'] },
    packets: { type: 'integer', description: 'packets the tap delivered (over restarts)' },
    bytes: { type: 'integer', description: 'captured bytes delivered' },
    drops: { type: 'integer', nullable: true, description: 'packets the kernel or tool dropped, null when the driver cannot know' },
    error: { type: 'string', description: 'the last error, when it failed or a file was bad' },
    filter: { type: 'string', description: 'the native filter in effect (BPF)' },
  },
} as const;

const tapViewSchema = {
  type: 'object',
  required: ['id', 'name', 'driver', 'filter', 'options', 'enabled', 'status'],
  properties: {
    id: { type: 'integer', description: 'stable id of the name in this data dir (frames carry it)' },
    name: { type: 'string' },
    driver: { type: 'string', description: 'tap driver: pcap-file, libpcap, tcpdump, inline, ...' },
    filter: { type: 'object', additionalProperties: true, description: 'filter spec as configured' },
    options: { type: 'object', additionalProperties: true, description: 'driver options as configured' },
    enabled: { type: 'boolean' },
    status: statusSchema,
  },
} as const;

const explainSchema = {
  type: 'object',
  required: ['tap', 'driver', 'filter', 'native'],
  properties: {
    tap: { type: 'string' },
    driver: { type: 'string' },
    filter: { type: 'object', additionalProperties: true, description: 'filter spec as configured' },
    native: { type: 'string', description: 'the driver\u2019s filter (BPF text); empty: everything' },
  },
} as const;

const ERR = { description: 'error', ...errorBodySchema };

/** Errors of a bad tap entry are the client's (400), whatever the driver calls them. */
function asBadRequest(e: unknown): unknown {
  if (isCamtapError(e, 'CAMTAP_ERR_TAP') || isCamtapError(e, 'CAMTAP_ERR_CONFIG') || isCamtapError(e, 'CAMTAP_ERR_FILTER') || isCamtapError(e, 'CAMTAP_ERR_TAP_DRIVER')) return withStatus(e, 400);
  return e;
}

export const tapRoutes: FastifyPluginAsync<TapRoutesOptions> = async (app, opts) => {
  const tags = ['taps'];
  const runner = (): TapRunner => {
    const r = opts.taps();
    if (!r) throw new CamtapError('CAMTAP_ERR_CONFLICT', { what: 'taps', reason: 'camtap serve runs without capture (no enabled tap and no inline gateway in its config): restart it with a tap in the config to manage taps here' });
    return r;
  };

  app.get(
    '/taps',
    { config: { role: 'viewer' }, schema: { tags, description: 'Every tap with its status: state, packets, bytes, drops and the native filter in effect.', querystring: NO_QUERY, response: { 200: { type: 'array', items: tapViewSchema }, 409: ERR } } },
    async () => runner().list(),
  );

  app.get<{ Params: { name: string } }>(
    '/taps/:name',
    { config: { role: 'viewer' }, schema: { tags, description: 'One tap with its status.', params: NAME_PARAMS, querystring: NO_QUERY, response: { 200: tapViewSchema, 404: ERR, 409: ERR } } },
    async (req) => runner().get(req.params.name),
  );

  app.get<{ Params: { name: string } }>(
    '/taps/:name/filter',
    { config: { role: 'viewer' }, schema: { tags, description: 'The tap\u2019s filter spec and the driver\u2019s native translation of it (BPF), as `camtap taps explain` prints them.', params: NAME_PARAMS, querystring: NO_QUERY, response: { 200: explainSchema, 404: ERR, 409: ERR } } },
    async (req) => {
      try {
        return runner().explain(req.params.name);
      } catch (e) {
        throw asBadRequest(e);
      }
    },
  );

  app.post<{ Body: unknown }>(
    '/taps',
    {
      config: { role: 'operator' },
      schema: {
        tags,
        description: 'Adds a tap and starts it (unless `enabled` is false). The body is one entry of the config file\u2019s `taps:` list, checked by the same schema. The tap lasts until camtap stops; the config file is not changed.',
        querystring: NO_QUERY,
        body: tapBodySchema(),
        response: { 201: tapViewSchema, 400: ERR, 409: ERR },
      },
    },
    async (req, reply) => {
      const r = runner();
      const parsed = tapSchema.safeParse(req.body);
      if (!parsed.success) {
        const issue = parsed.error.issues[0]!;
        throw new CamtapError('CAMTAP_ERR_USAGE', { reason: `tap: ${issue.path.join('.') || '(body)'}: ${issue.message}` });
      }
      let view: TapView;
      try {
        view = await r.add(parsed.data);
      } catch (e) {
        throw asBadRequest(e);
      }
      return reply.code(201).send(view);
    },
  );

  app.post<{ Params: { name: string } }>(
    '/taps/:name/start',
    { config: { role: 'operator' }, schema: { tags, description: 'Starts a stopped, failed or never started tap; a running tap is left running. Answers the tap as it is now.', params: NAME_PARAMS, querystring: NO_QUERY, response: { 200: tapViewSchema, 400: ERR, 404: ERR, 409: ERR } } },
    async (req) => {
      try {
        return runner().startTap(req.params.name);
      } catch (e) {
        throw asBadRequest(e);
      }
    },
  );

  app.post<{ Params: { name: string } }>(
    '/taps/:name/stop',
    { config: { role: 'operator' }, schema: { tags, description: 'Stops a tap and waits until it has (a file tap stops between reads); a stopped tap is left stopped. What it captured is kept.', params: NAME_PARAMS, querystring: NO_QUERY, response: { 200: tapViewSchema, 404: ERR, 409: ERR } } },
    async (req) => runner().stopTap(req.params.name),
  );

  app.delete<{ Params: { name: string } }>(
    '/taps/:name',
    { config: { role: 'admin' }, schema: { tags, description: 'Stops a tap and removes it from this process (a tap of the config file comes back at the next start). What it captured is kept.', params: NAME_PARAMS, querystring: NO_QUERY, response: { 204: { type: 'null', description: 'removed' }, 404: ERR, 409: ERR } } },
    async (req, reply) => {
      await runner().remove(req.params.name);
      return reply.code(204).send();
    },
  );
};
