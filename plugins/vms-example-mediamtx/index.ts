/**
 * vms-example-mediamtx: the worked example of a VMS plugin, built on a public VMS API:
 * MediaMTX's control API (api/openapi.yaml in bluenviron/mediamtx; listens on :9997 when
 * `api: yes`). It imports nothing from camtap but the contracts, as a third-party package
 * must. See README.md next to it.
 *
 *   probe      GET /v3/paths/list answers 200 with JSON `{ items: [...] }`
 *   backfill   POST /v3/config/paths/add/<name> `{ source: <camtap replayUrl>, record: true,
 *              useAbsoluteTimestamp: true }`: MediaMTX pulls camtap's replay of the gap and
 *              records it, stamped with the capture time the replay's RTCP sender reports
 *              carry; once the replay ended the path is removed
 *              (DELETE /v3/config/paths/delete/<name>)
 *   classify   MediaMTX's RTSP client (gortsplib) by User-Agent
 *
 * Options (config `failover.vms[].options`): `apiUrl` (default http://<address>:<apiPort>),
 * `apiPort` (9997), `user`/`password` (the API's Basic credentials, `authInternalUsers`
 * with action `api`), `insecureTls`, and under `backfill`: `pathPrefix`
 * ('camtap-backfill'), `startTimeoutMs` (10000), `pollMs` (1000), `keepPath` (false),
 * `pathConf` (more PathConf fields, e.g. `recordPath`).
 */
import http from 'node:http';
import https from 'node:https';
import { performance } from 'node:perf_hooks';
import type { PluginMeta, SessionRecord, VmsBackfillContext, VmsCallOptions, VmsEndpoint, VmsHealth, VmsPlugin, VmsProbeOptions, VmsRecord } from '../../core/contracts/index.js';

export const meta: PluginMeta = {
  name: 'vms-example-mediamtx',
  kind: 'vms',
  version: '0.1.0',
  core: '^0.1.0',
  description: 'MediaMTX (example VMS plugin): health from its control API, backfill by pulling camtap\'s replay into a recording path',
};

interface ApiAnswer {
  status: number;
  json: unknown;
  text: string;
  ms: number;
}

interface BackfillOptions {
  pathPrefix: string;
  startTimeoutMs: number;
  pollMs: number;
  keepPath: boolean;
  pathConf: Record<string, unknown>;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
const num = (v: unknown, d: number): number => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : d);

/** The API base URL of a VMS endpoint. */
export function apiBase(endpoint: VmsEndpoint): string {
  const o = endpoint.options ?? {};
  const url = str(o.apiUrl);
  if (url) return url.replace(/\/+$/, '');
  const port = typeof o.apiPort === 'number' ? o.apiPort : endpoint.ports[0] ?? 9997;
  const host = endpoint.address.includes(':') ? `[${endpoint.address}]` : endpoint.address;
  return `http://${host}:${port}`;
}

function backfillOptions(endpoint: VmsEndpoint): BackfillOptions {
  const b = (endpoint.options?.backfill ?? {}) as Record<string, unknown>;
  return {
    pathPrefix: str(b.pathPrefix) ?? 'camtap-backfill',
    startTimeoutMs: num(b.startTimeoutMs, 10_000),
    pollMs: Math.max(10, num(b.pollMs, 1000)),
    keepPath: b.keepPath === true,
    pathConf: b.pathConf && typeof b.pathConf === 'object' ? (b.pathConf as Record<string, unknown>) : {},
  };
}

/** One API request: JSON in and out, Basic auth from the options, bounded by `timeoutMs` and `signal`. Rejects with a message naming the request. */
function api(endpoint: VmsEndpoint, method: string, path: string, body: unknown, timeoutMs: number, signal?: AbortSignal): Promise<ApiAnswer> {
  const url = new URL(apiBase(endpoint) + path);
  const o = endpoint.options ?? {};
  const headers: Record<string, string> = { accept: 'application/json', connection: 'close' };
  const user = str(o.user);
  if (user !== undefined) headers.authorization = `Basic ${Buffer.from(`${user}:${str(o.password) ?? ''}`).toString('base64')}`;
  const payload = body === undefined ? null : Buffer.from(JSON.stringify(body));
  if (payload) {
    headers['content-type'] = 'application/json';
    headers['content-length'] = String(payload.length);
  }
  const what = `${method} ${url.pathname}`;
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new Error(`${what}: aborted`));
    const t0 = performance.now();
    const mod = url.protocol === 'https:' ? https : http;
    const req = mod.request(url, { method, headers, agent: false, rejectUnauthorized: o.insecureTls !== true });
    let done = false;
    const fail = (msg: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      req.destroy();
      reject(new Error(`${what}: ${msg}`));
    };
    const onAbort = () => fail('aborted');
    const timer = setTimeout(() => fail(`no answer within ${timeoutMs} ms`), timeoutMs);
    signal?.addEventListener('abort', onAbort, { once: true });
    req.once('error', (e: NodeJS.ErrnoException) => fail(e.code ?? e.message));
    req.once('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > 8 << 20) return fail('answer over 8 MiB');
        chunks.push(c);
      });
      res.once('error', (e) => fail(e.message));
      res.once('end', () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown = undefined;
        try {
          json = text ? JSON.parse(text) : undefined;
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, json, text, ms: performance.now() - t0 });
      });
    });
    req.end(payload ?? undefined);
  });
}

/** MediaMTX's error body is `{ status: "error", error: "..." }`. */
function apiError(a: ApiAnswer): string {
  const e = (a.json as { error?: unknown } | undefined)?.error;
  return `HTTP ${a.status}${typeof e === 'string' ? `: ${e}` : ''}`;
}

/** A path is readable: `online` (current API), `ready` (deprecated, older versions). */
function isOnline(p: unknown): boolean {
  const x = p as { online?: unknown; ready?: unknown } | null;
  return x?.online === true || (x?.online === undefined && x?.ready === true);
}

/** A path name MediaMTX accepts (letters, digits, `_.~-` and `/` between parts). */
function pathName(prefix: string, camera: string, start: string): string {
  const clean = (s: string) => s.replace(/[^A-Za-z0-9_.~-]+/g, '_').replace(/^_+|_+$/g, '') || '_';
  const t = start.replace(/[-:]/g, '').replace(/\.\d+/, '');
  return [...prefix.split('/').map(clean), clean(camera), clean(t)].join('/');
}

function redact(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//');
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });

/** Health: the control API lists its paths (200, JSON with an `items` array). */
export async function probe(endpoint: VmsEndpoint, opts: VmsProbeOptions): Promise<VmsHealth> {
  const name = `GET ${apiBase(endpoint)}/v3/paths/list`;
  try {
    const a = await api(endpoint, 'GET', '/v3/paths/list', undefined, opts.timeoutMs, opts.signal);
    const items = (a.json as { items?: unknown } | undefined)?.items;
    let ok = false;
    let detail: string;
    if (a.status !== 200) detail = a.status === 401 ? 'HTTP 401: the API wants credentials (options.user/password)' : apiError(a);
    else if (!Array.isArray(items)) detail = 'HTTP 200 but not a path list (no JSON `items` array)';
    else {
      ok = true;
      detail = `HTTP 200, ${items.length} path${items.length === 1 ? '' : 's'}, ${items.filter(isOnline).length} online`;
    }
    return { ok, detail, latencyMs: Math.round(a.ms * 10) / 10, checks: [{ name, ok, detail }] };
  } catch (e) {
    const detail = (e as Error).message;
    return { ok: false, detail, latencyMs: null, checks: [{ name, ok: false, detail }] };
  }
}

/**
 * Backfill: a recording path whose source is camtap's replay. Resolves when MediaMTX has
 * read the replay to its end (the path went online, then offline) or the gap's length
 * (plus the start timeout) has passed, and the path is removed again.
 */
export async function backfill(ctx: VmsBackfillContext, opts: VmsCallOptions = {}): Promise<{ ok: boolean; detail: string }> {
  const ep = ctx.endpoint;
  if (!ep) return { ok: false, detail: 'no VMS endpoint given' };
  const o = backfillOptions(ep);
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const signal = opts.signal;
  const name = pathName(o.pathPrefix, ctx.camera, ctx.start);
  const conf = { source: ctx.replayUrl, sourceOnDemand: false, rtspTransport: 'tcp', record: true, useAbsoluteTimestamp: true, ...o.pathConf };
  // 'unknown': the add was sent but not answered (aborted, connection lost): it may exist.
  let added: 'no' | 'unknown' | 'yes' = 'no';
  const remove = async (): Promise<string> => {
    if (added === 'no') return '';
    if (o.keepPath) return `; path ${name} kept`;
    // DELETE since MediaMTX 1.9; POST before.
    for (const method of ['DELETE', 'POST']) {
      try {
        const a = await api(ep, method, `/v3/config/paths/delete/${name}`, undefined, timeoutMs);
        if (a.status === 200) return '; path removed';
      } catch {
        /* try the next */
      }
    }
    return `; path ${name} could not be removed: remove it by hand`;
  };
  try {
    added = 'unknown';
    const add = await api(ep, 'POST', `/v3/config/paths/add/${name}`, conf, timeoutMs, signal);
    if (add.status !== 200) {
      added = 'no'; // refused: whatever is at that name is not ours
      return { ok: false, detail: `MediaMTX refused path ${name}: ${apiError(add)}` };
    }
    added = 'yes';
    const durationMs = Math.max(0, Date.parse(ctx.end) - Date.parse(ctx.start)) || 0;
    const t0 = Date.now();
    let onlineAt: number | null = null;
    for (;;) {
      if (signal?.aborted) return { ok: false, detail: `aborted while MediaMTX read ${redact(ctx.replayUrl)} into ${name}${await remove()}` };
      const now = Date.now();
      // null: no usable answer this time (a poll lost is not the path going offline).
      let online: boolean | null = null;
      try {
        const g = await api(ep, 'GET', `/v3/paths/get/${name}`, undefined, timeoutMs, signal);
        online = g.status === 200 ? isOnline(g.json) : g.status === 404 ? false : null;
      } catch {
        online = null;
      }
      if (signal?.aborted) continue;
      if (onlineAt === null) {
        if (online === true) onlineAt = now;
        else if (now - t0 >= o.startTimeoutMs) return { ok: false, detail: `MediaMTX did not read ${redact(ctx.replayUrl)} within ${o.startTimeoutMs} ms (path ${name})${await remove()}` };
      } else if (online === false || now - onlineAt >= durationMs + o.startTimeoutMs) {
        const secs = ((now - onlineAt) / 1000).toFixed(1);
        return { ok: true, detail: `MediaMTX recorded ${ctx.camera} ${ctx.start} .. ${ctx.end} from ${redact(ctx.replayUrl)} into path ${name} (${secs} s)${await remove()}` };
      }
      await sleep(o.pollMs, signal);
    }
  } catch (e) {
    return { ok: false, detail: `${(e as Error).message}${await remove()}` };
  }
}

const plugin: VmsPlugin = {
  meta,
  classify(userAgent: string) {
    // MediaMTX's RTSP client is gortsplib.
    return /gortsplib|MediaMTX/i.test(userAgent);
  },
  probe,
  describeCameraUse(vms: VmsRecord, sessions: SessionRecord[]) {
    const mine = sessions.filter((s) => s.vms === vms.name);
    const cams = [...new Set(mine.map((s) => s.camera))].sort();
    const tcp = mine.some((s) => s.tracks.some((t) => t.lower === 'tcp'));
    const udp = mine.some((s) => s.tracks.some((t) => t.lower === 'udp'));
    const how = tcp && udp ? 'TCP and UDP' : tcp ? 'TCP' : udp ? 'UDP' : 'RTSP';
    return `MediaMTX pulls ${cams.length} camera${cams.length === 1 ? '' : 's'} (${cams.join(', ') || 'none captured'}) as static RTSP sources over ${how}`;
  },
  async planRestore(ctx) {
    return ctx.cameras.map((camera) => ({
      camera,
      note: `MediaMTX retries a static source that failed on its own: the path of ${camera} comes back once the camera answers it again; ${ctx.gap.start} .. ${ctx.gap.end} can be backfilled from camtap`,
    }));
  },
  backfill,
};

export default plugin;
