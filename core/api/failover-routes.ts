/**
 * Failover over the API, the same as `camtap failover status|plan|start|end <vms>`:
 *
 *   GET  /api/failover                 every VMS with a failover running or recorded, and each VMS's health state
 *   GET  /api/failover/history         failover periods (start, end, per camera outcome, gap offered)
 *   GET  /api/failover/:vms            one VMS
 *   GET  /api/failover/:vms/plan       what `start` would send, per camera, nothing sent (?camera= to narrow)
 *   POST /api/failover/:vms/start      take the VMS's cameras over (?dryRun=true lists the requests, sends nothing)
 *   POST /api/failover/:vms/end        give them back and offer the gap (?dryRun=true likewise)
 *
 * Errors are the catalog's (core/api/http-errors.ts): an unknown VMS is 404.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { FailoverRecord, FailoverStatus } from '../failover/manager.js';
import type { FailoverPlan } from '../failover/types.js';

/** What the routes need: core/failover/service.ts FailoverService. */
export interface FailoverApi {
  status(vms?: string): Promise<FailoverStatus[]>;
  history(): Promise<FailoverRecord[]>;
  plan(vms: string, opts?: { only?: string[] }): Promise<FailoverPlan>;
  start(vms: string, opts: { dryRun?: boolean; trigger?: string }): Promise<FailoverRecord>;
  end(vms: string, opts: { dryRun?: boolean; trigger?: string }): Promise<FailoverRecord>;
  /** The health state per watched VMS (core/failover/health.ts). */
  health(): Array<{ vms: string; state: string }>;
}

export interface FailoverRoutesOptions {
  failover: FailoverApi;
}

const VMS_PARAMS = { type: 'object', required: ['vms'], properties: { vms: { type: 'string', minLength: 1, description: 'VMS inventory name or address' } } } as const;
const DRY_QUERY = { type: 'object', additionalProperties: false, properties: { dryRun: { type: 'boolean', default: false, description: 'list every request, send nothing' } } } as const;

export const failoverRoutes: FastifyPluginAsync<FailoverRoutesOptions> = async (app, opts) => {
  const fo = opts.failover;
  const health = () => fo.health();
  const tags = ['failover'];
  app.get(
    '/failover',
    { config: { role: 'viewer' }, schema: { tags, description: 'Every VMS with a failover running or recorded, and the health state of every watched VMS.', querystring: { type: 'object', additionalProperties: false, properties: {} } } },
    async () => ({ health: health(), failover: await fo.status() }),
  );
  app.get(
    '/failover/history',
    { config: { role: 'viewer' }, schema: { tags, description: 'Failover periods, oldest first: per camera the strategy, every step sent and its answer, the restore, and the gap offered back.', querystring: { type: 'object', additionalProperties: false, properties: {} } } },
    async () => fo.history(),
  );
  app.get<{ Params: { vms: string } }>(
    '/failover/:vms',
    { config: { role: 'viewer' }, schema: { tags, description: 'Failover status of one VMS: running or not, its cameras and packets received since the take-over.', params: VMS_PARAMS } },
    async (req) => {
      const [s] = await fo.status(req.params.vms);
      return { ...s, health: health().find((h) => h.vms === s?.vms) ?? null };
    },
  );
  app.get<{ Params: { vms: string }; Querystring: { camera?: string | string[] } }>(
    '/failover/:vms/plan',
    {
      config: { role: 'operator' },
      schema: {
        tags,
        description: 'The take-over and give-back steps per camera, exactly as they would go on the wire (credentials never shown). Built from the catalog alone; nothing is sent.',
        params: VMS_PARAMS,
        querystring: { type: 'object', additionalProperties: false, properties: { camera: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }] } } },
      },
    },
    async (req) => {
      const c = req.query.camera;
      return fo.plan(req.params.vms, c === undefined ? {} : { only: Array.isArray(c) ? c : [c] });
    },
  );
  app.post<{ Params: { vms: string }; Querystring: { dryRun?: boolean } }>(
    '/failover/:vms/start',
    { config: { role: 'operator' }, schema: { tags, description: "Takes the VMS's cameras over now (or lists what it would send with dryRun).", params: VMS_PARAMS, querystring: DRY_QUERY } },
    async (req) => fo.start(req.params.vms, { dryRun: req.query.dryRun === true, trigger: 'api' }),
  );
  app.post<{ Params: { vms: string }; Querystring: { dryRun?: boolean } }>(
    '/failover/:vms/end',
    { config: { role: 'operator' }, schema: { tags, description: 'Gives the cameras back to the VMS, checks its traffic resumed and offers the gap (replay and export URLs per camera).', params: VMS_PARAMS, querystring: DRY_QUERY } },
    async (req) => fo.end(req.params.vms, { dryRun: req.query.dryRun === true, trigger: 'api' }),
  );
};
