/**
 * vms-example-mediamtx against a fake MediaMTX control API. There is no MediaMTX binary
 * here: the fake below answers as MediaMTX's api/openapi.yaml documents it (PathList
 * `{ pageCount, itemCount, items: [Path] }` with `name`, `ready`/`online`, `source`;
 * POST /v3/config/paths/add/{name} with a PathConf body; GET /v3/paths/get/{name};
 * DELETE /v3/config/paths/delete/{name}; errors as `{ status: "error", error }`; Basic
 * auth when `authInternalUsers` restricts the `api` action), and it plays a static
 * source's life: a path added with a `source` goes online after a few polls, and offline
 * when the source (camtap's replay) ends.
 */
import t from 'tap';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import plugin, { meta } from '../../plugins/vms-example-mediamtx/index.js';
import { checkMeta, PluginHost } from '../../core/plugin-host.js';
import { VmsHealthMonitor, type VmsTransition } from '../../core/failover/health.js';
import { silentLogger } from '../../core/logger.js';
import { tempDir } from '../helpers/camtap.js';
import { freePort } from '../helpers/peers.js';
import type { VmsEndpoint } from '../../core/contracts/plugin.js';

const FOLDER = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../plugins/vms-example-mediamtx');

interface FakeOptions {
  /** `user:pass` the API requires (Basic). */
  auth?: string;
  /** Polls of GET /v3/paths/get before an added path is online (null: never). */
  onlineAfter?: number | null;
  /** Polls while online before the source ends. */
  endAfter?: number;
  /** Answer DELETE with 404 as versions before 1.9 did (they route POST .../delete). */
  oldDelete?: boolean;
  /** Answer every request with an HTML page (not MediaMTX). */
  html?: boolean;
  /** Called on each GET /v3/paths/get (before answering). */
  onPoll?: () => void;
}

interface FakePath {
  conf: Record<string, unknown>;
  polls: number;
  onlinePolls: number;
}

async function fakeMediamtx(t: { teardown(fn: () => unknown): void }, o: FakeOptions = {}) {
  const requests: Array<{ method: string; url: string; body: unknown; auth: string | undefined }> = [];
  const paths = new Map<string, FakePath>([
    ['cam1', { conf: { source: 'rtsp://10.0.0.11/stream1' }, polls: 0, onlinePolls: 0 }],
    ['cam2', { conf: { source: 'rtsp://10.0.0.12/stream1' }, polls: 0, onlinePolls: 0 }],
  ]);
  const online = (name: string, p: FakePath) => name === 'cam1' || (o.onlineAfter !== null && p.polls > (o.onlineAfter ?? 1) && p.onlinePolls <= (o.endAfter ?? 3));
  const pathJson = (name: string, p: FakePath) => {
    const on = online(name, p);
    return { name, confName: name, source: on ? { type: 'rtspSource', id: '' } : null, ready: on, readyTime: on ? new Date().toISOString() : null, online: on, tracks: on ? ['H264'] : [], bytesReceived: 0, readers: [] };
  };
  const srv = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const body = text ? (JSON.parse(text) as unknown) : undefined;
      requests.push({ method: req.method!, url: req.url!, body, auth: req.headers.authorization });
      const send = (status: number, json: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(json));
      };
      if (o.html) {
        res.writeHead(200, { 'content-type': 'text/html' });
        return res.end('<html>router login</html>');
      }
      if (o.auth && req.headers.authorization !== `Basic ${Buffer.from(o.auth).toString('base64')}`) {
        res.writeHead(401, { 'www-authenticate': 'Basic realm="mediamtx"' });
        return res.end();
      }
      const url = new URL(req.url!, 'http://x');
      let m: RegExpExecArray | null;
      if (req.method === 'GET' && url.pathname === '/v3/paths/list') {
        const items = [...paths].map(([n, p]) => pathJson(n, p));
        return send(200, { pageCount: 1, itemCount: items.length, items });
      }
      if (req.method === 'POST' && (m = /^\/v3\/config\/paths\/add\/(.+)$/.exec(url.pathname))) {
        if (paths.has(m[1]!)) return send(400, { status: 'error', error: 'path already exists' });
        paths.set(m[1]!, { conf: body as Record<string, unknown>, polls: 0, onlinePolls: 0 });
        return send(200, { status: 'ok' });
      }
      if (req.method === 'GET' && (m = /^\/v3\/paths\/get\/(.+)$/.exec(url.pathname))) {
        o.onPoll?.();
        const p = paths.get(m[1]!);
        if (!p) return send(404, { status: 'error', error: 'path not found' });
        p.polls++;
        const j = pathJson(m[1]!, p);
        if (j.online) p.onlinePolls++;
        return send(200, j);
      }
      if ((m = /^\/v3\/config\/paths\/delete\/(.+)$/.exec(url.pathname)) && (req.method === (o.oldDelete ? 'POST' : 'DELETE'))) {
        if (!paths.delete(m[1]!)) return send(404, { status: 'error', error: 'path not found' });
        return send(200, { status: 'ok' });
      }
      send(404, { status: 'error', error: 'not found' });
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => {
    srv.closeAllConnections();
    srv.close(() => r());
  }));
  const port = (srv.address() as net.AddressInfo).port;
  return { port, requests, paths, srv };
}

const endpoint = (port: number, options: Record<string, unknown> = {}): VmsEndpoint => ({ name: 'mtx', address: '127.0.0.1', ports: [], options: { apiPort: port, ...options } });
const probeOpts = () => ({ signal: new AbortController().signal, timeoutMs: 10_000 });
const GAP = { vms: 'mtx', camera: 'cam 1', start: '2026-11-23T21:20:33.357Z', end: '2026-11-23T21:20:47.777Z', replayUrl: 'rtsp://127.0.0.1:8554/replay/s0123456789ab?start=2026-11-23T21:20:33.357Z&end=2026-11-23T21:20:47.777Z', exportUrl: 'http://127.0.0.1:8080/api/streams/s0123456789ab/mp4' };
/** Quick polls; a start timeout generous for a loaded machine (runs end when the fake's source ends, not at the timeout). */
const fast = { backfill: { pollMs: 10, startTimeoutMs: 10_000 } };
/** For the case where the source is never read: the whole start timeout is waited. */
const never = { backfill: { pollMs: 10, startTimeoutMs: 300 } };

t.test('meta passes the host check and the folder loads as a plugins: entry', async (t) => {
  t.equal(checkMeta(meta, 'x').name, 'vms-example-mediamtx');
  const host = new PluginHost({ log: silentLogger, dataDir: tempDir(t) });
  const m = await host.load(FOLDER);
  t.equal(m.kind, 'vms');
  const p = host.vmsPlugins.find((x) => x.meta.name === 'vms-example-mediamtx');
  t.ok(p?.probe && p.backfill, 'probe and backfill present');
});

t.test('probe: the API lists its paths -> healthy, with what it lists', async (t) => {
  const fake = await fakeMediamtx(t);
  const h = await plugin.probe!(endpoint(fake.port), probeOpts());
  t.equal(h.ok, true);
  t.equal(h.detail, 'HTTP 200, 2 paths, 1 online');
  t.same(h.checks.map((c) => c.name), [`GET http://127.0.0.1:${fake.port}/v3/paths/list`]);
  t.same(fake.requests.map((r) => `${r.method} ${r.url}`), ['GET /v3/paths/list']);
});

t.test('probe: an API behind credentials wants options.user/password, and never shows them', async (t) => {
  const fake = await fakeMediamtx(t, { auth: 'camtap:Pa55-word' });
  const no = await plugin.probe!(endpoint(fake.port), probeOpts());
  t.equal(no.ok, false);
  t.match(no.detail, /HTTP 401: the API wants credentials/);
  const yes = await plugin.probe!(endpoint(fake.port, { user: 'camtap', password: 'Pa55-word' }), probeOpts());
  t.equal(yes.ok, true);
  t.notMatch(JSON.stringify(yes), /Pa55/);
});

t.test('probe: something else on the port, or nothing, is unhealthy', async (t) => {
  const html = await fakeMediamtx(t, { html: true });
  const h = await plugin.probe!(endpoint(html.port), probeOpts());
  t.same([h.ok, h.detail], [false, 'HTTP 200 but not a path list (no JSON `items` array)']);
  const closed = await freePort();
  const c = await plugin.probe!(endpoint(closed), probeOpts());
  t.equal(c.ok, false);
  t.match(c.detail, /ECONNREFUSED/);
  t.equal(c.latencyMs, null);
});

t.test('backfill: MediaMTX gets a recording path pulling camtap\'s replay, read to its end, then removed', async (t) => {
  const fake = await fakeMediamtx(t, { onlineAfter: 2, endAfter: 3 });
  const r = await plugin.backfill!({ ...GAP, endpoint: endpoint(fake.port, fast) });
  t.equal(r.ok, true, r.detail);
  const name = 'camtap-backfill/cam_1/20261123T212033Z';
  const add = fake.requests.find((x) => x.method === 'POST')!;
  t.equal(add.url, `/v3/config/paths/add/${name}`);
  t.same(add.body, { source: GAP.replayUrl, sourceOnDemand: false, rtspTransport: 'tcp', record: true, useAbsoluteTimestamp: true });
  t.ok(fake.requests.some((x) => x.method === 'GET' && x.url === `/v3/paths/get/${name}`), 'polled the path');
  t.same(fake.requests[fake.requests.length - 1], { method: 'DELETE', url: `/v3/config/paths/delete/${name}`, body: undefined, auth: undefined }, 'removed it last');
  t.notOk(fake.paths.has(name), 'no path left behind');
  t.match(r.detail, new RegExp(`recorded cam 1 .* into path ${name.replace(/\//g, '\\/')} .*path removed`));
});

t.test('backfill: extra PathConf fields and keepPath come from the options', async (t) => {
  const fake = await fakeMediamtx(t, { onlineAfter: 0, endAfter: 1 });
  const r = await plugin.backfill!({ ...GAP, endpoint: endpoint(fake.port, { backfill: { ...fast.backfill, keepPath: true, pathPrefix: 'gaps', pathConf: { recordPath: './gaps/%path/%Y-%m-%d_%H-%M-%S-%f' } } }) });
  t.equal(r.ok, true, r.detail);
  const add = fake.requests.find((x) => x.method === 'POST')!;
  t.equal((add.body as { recordPath: string }).recordPath, './gaps/%path/%Y-%m-%d_%H-%M-%S-%f');
  t.ok(fake.paths.has('gaps/cam_1/20261123T212033Z'), 'path kept');
  t.notOk(fake.requests.some((x) => x.method === 'DELETE'));
});

t.test('backfill: a refusal, a source never read, an old MediaMTX and an abort', async (t) => {
  const exists = await fakeMediamtx(t);
  exists.paths.set('camtap-backfill/cam_1/20261123T212033Z', { conf: {}, polls: 0, onlinePolls: 0 });
  const r1 = await plugin.backfill!({ ...GAP, endpoint: endpoint(exists.port, fast) });
  t.same([r1.ok, r1.detail], [false, 'MediaMTX refused path camtap-backfill/cam_1/20261123T212033Z: HTTP 400: path already exists']);
  t.notOk(exists.requests.some((x) => x.url.includes('/delete/')), 'nothing to remove: it was not ours');

  const unread = await fakeMediamtx(t, { onlineAfter: null });
  const r2 = await plugin.backfill!({ ...GAP, endpoint: endpoint(unread.port, never) });
  t.equal(r2.ok, false);
  t.match(r2.detail, /MediaMTX did not read rtsp:\/\/127\.0\.0\.1:8554\/replay\/s0123456789ab.* within 300 ms .*path removed/);
  t.equal(unread.paths.size, 2, 'only the two original paths remain');

  const old = await fakeMediamtx(t, { onlineAfter: 0, endAfter: 1, oldDelete: true });
  const r3 = await plugin.backfill!({ ...GAP, endpoint: endpoint(old.port, fast) });
  t.equal(r3.ok, true);
  t.same(old.requests.filter((x) => x.url.includes('/delete/')).map((x) => x.method), ['DELETE', 'POST'], 'DELETE refused, POST (before 1.9) worked');
  t.equal(old.paths.size, 2);

  // Aborted while MediaMTX reads the replay (the abort comes with the third poll).
  const ctrl = new AbortController();
  let polls = 0;
  const slow = await fakeMediamtx(t, { onlineAfter: 0, endAfter: 1_000_000, onPoll: () => ++polls === 3 && ctrl.abort() });
  const r4 = await plugin.backfill!({ ...GAP, endpoint: endpoint(slow.port, fast) }, { signal: ctrl.signal });
  t.equal(r4.ok, false);
  t.match(r4.detail, /^aborted while MediaMTX read .*path removed/);
  t.equal(slow.paths.size, 2);
});

t.test('the health monitor runs the plugin: API down three probes in a row -> failing over', async (t) => {
  const fake = await fakeMediamtx(t);
  const transitions: VmsTransition[] = [];
  const mon = new VmsHealthMonitor({
    settings: { probeIntervalMs: 1000, probeTimeoutMs: 10_000, failAfter: 3, recoverAfterMs: 10_000, trafficTimeoutMs: 2000, auto: true, vms: [{ name: 'mtx', address: '127.0.0.1', plugin: 'vms-example-mediamtx', options: { apiPort: fake.port } }] },
    plugin: (n) => (n === plugin.meta.name ? plugin : null),
    onTransition: (x) => transitions.push(x),
  });
  t.teardown(() => mon.close());
  await mon.tick();
  t.equal(mon.state('mtx'), 'healthy');
  t.equal(mon.states()[0]!.lastProbe!.detail, 'HTTP 200, 2 paths, 1 online');
  fake.srv.closeAllConnections();
  await new Promise<void>((r) => fake.srv.close(() => r()));
  for (let i = 0; i < 3; i++) await mon.tick();
  t.same(transitions.map((x) => x.to), ['suspect', 'failing-over']);
  t.match(transitions[1]!.reason, /3 failed probes in a row: .*ECONNREFUSED/);
});

t.test('describeCameraUse and planRestore speak MediaMTX', async (t) => {
  const text = plugin.describeCameraUse!({ name: 'mtx', address: '10.0.0.2', userAgents: ['gortsplib'], cameras: [], firstSeen: '', lastSeen: '' }, []);
  t.match(text, /MediaMTX pulls 0 cameras/);
  t.ok(plugin.classify!('gortsplib'));
  const notes = await plugin.planRestore!({ vms: 'mtx', cameras: ['cam1'], gap: { start: GAP.start, end: GAP.end } });
  t.match(notes[0]!.note, /static source/);
});
