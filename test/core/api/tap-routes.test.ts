/**
 * /api/taps with real taps: a pcap-file tap on a drop folder is created over the API,
 * takes a capture copied into the folder, is stopped and started again, and its counters
 * equal what capinfos and tshark say of the capture; what it stored is read back by
 * tshark. The filter translation is judged by tcpdump (it must select what tshark's
 * equivalent display filter selects). Roles: viewer reads, operator creates/starts/stops,
 * admin deletes; through fastify inject and a real HTTP client.
 */
import t from 'tap';
import { copyFileSync, mkdirSync, readdirSync, renameSync } from 'node:fs';
import path from 'node:path';
import { createHttpApi, startHttpApi, type HttpApiDeps } from '../../../core/api/http-server.js';
import { Credentials } from '../../../core/api/auth.js';
import { TapRunner, inventoryResolver, type TapView } from '../../../core/capture/tap-runner.js';
import { loadConfig, validateConfig } from '../../../core/config.js';
import { createCamtap } from '../../../core/container.js';
import { silentLogger } from '../../../core/logger.js';
import { have, run } from '../../helpers/peers.js';
import { tempDir } from '../../helpers/camtap.js';
import { CAPTURES, manifest } from '../query/fixture.js';

const FIXTURE = path.join(CAPTURES, 'lo_udp_h264.pcap');
const M = manifest('lo_udp_h264.pcap');
const PACKETS = Number((M as unknown as { capinfos: Record<string, string> }).capinfos['Number of packets']);
const CAMERA_PORT = 54872;
const noTools = have('tshark') && have('tcpdump') ? false : 'tshark and tcpdump are the judges here';

const VIEWER = 'viewer-token-0123456789abcdef';
const OPERATOR = 'operator-token-0123456789abcdef';
const ADMIN = 'admin-token-0123456789abcdef';
const as = (token: string) => ({ authorization: `Bearer ${token}` });

/** Sum of captured lengths per tshark (frame.cap_len). */
async function tsharkBytes(file: string): Promise<number> {
  const r = await run('tshark', ['-r', file, '-T', 'fields', '-e', 'frame.cap_len']);
  return r.stdout.trim().split('\n').reduce((n, l) => n + Number(l), 0);
}

/** Copies the fixture into the folder as a complete file (written under another name, then renamed). */
function drop(dir: string, name: string): void {
  copyFileSync(FIXTURE, path.join(dir, `${name}.part`));
  renameSync(path.join(dir, `${name}.part`), path.join(dir, name));
}

async function setup(t: { teardown(fn: () => unknown): void }) {
  const dataDir = tempDir(t);
  const dropDir = path.join(dataDir, 'drop');
  mkdirSync(dropDir);
  const { config } = loadConfig({ dataDir, env: {} });
  const c = await createCamtap(config, silentLogger, { command: 'test taps api' });
  const { store, pipeline, ingest, catalog, plugins } = c.cradle;
  const runner = new TapRunner({ config, log: silentLogger, plugins, store, pipeline, ingest, resolve: inventoryResolver(config), tapId: (n) => catalog.tapId(n) });
  const ac = new AbortController();
  runner.start([], ac.signal);
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    ac.abort();
    await runner.stop();
    await c.close();
  };
  t.teardown(close);
  const auth = validateConfig(
    {
      auth: {
        tokens: [
          { name: 'v', token: VIEWER, role: 'viewer' },
          { name: 'o', token: OPERATOR, role: 'operator' },
          { name: 'a', token: ADMIN, role: 'admin' },
        ],
      },
    },
    '(test)',
  ).auth;
  const deps: HttpApiDeps = { catalog, indexDir: path.join(dataDir, 'index'), log: silentLogger, rtspBase: () => 'rtsp://127.0.0.1:8554', auth: new Credentials(auth, {}), taps: () => runner };
  const app = createHttpApi(deps);
  t.teardown(() => app.close());
  return { app, deps, dataDir, dropDir, runner, close };
}

/** Polls GET /api/taps/:name until `pred` holds (no duration is asserted). */
async function until(get: () => Promise<TapView>, pred: (v: TapView) => boolean, ms = 60_000): Promise<TapView> {
  const end = Date.now() + ms;
  let v = await get();
  while (!pred(v) && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 50));
    v = await get();
  }
  return v;
}

const dropTap = (dir: string) => ({ name: 'drop', driver: 'pcap-file', options: { watch: dir, settleMs: 0, rescanMs: 50, checkOpen: false } });

t.test('a drop-folder tap created over the API takes a capture, stops, starts again; counters match capinfos and tshark, the store holds every packet', { skip: noTools }, async (t) => {
  const { app, dropDir, dataDir, close } = await setup(t);
  const bytes = await tsharkBytes(FIXTURE);
  const created = await app.inject({ method: 'POST', url: '/api/taps', headers: as(OPERATOR), payload: dropTap(dropDir) });
  t.equal(created.statusCode, 201, `operator creates it ${created.body.slice(0, 300)}`);
  t.match(created.json(), { name: 'drop', driver: 'pcap-file', enabled: true, filter: {}, options: { watch: dropDir }, status: { state: 'running', packets: 0 } });
  const get = async () => (await app.inject({ method: 'GET', url: '/api/taps/drop', headers: as(VIEWER) })).json<TapView>();

  drop(dropDir, 'one.pcap');
  let v = await until(get, (x) => x.status.packets >= PACKETS);
  t.equal(v.status.packets, PACKETS, `${PACKETS} packets (capinfos)`);
  t.equal(v.status.bytes, bytes, `${bytes} bytes (tshark frame.cap_len)`);
  t.equal(v.status.drops, null, 'a file tap cannot know of drops');
  t.equal(v.status.filter, '', 'no filter: empty native filter');

  const stopped = await app.inject({ method: 'POST', url: '/api/taps/drop/stop', headers: as(OPERATOR) });
  t.equal(stopped.statusCode, 200);
  t.equal(stopped.json<TapView>().status.state, 'stopped', 'stopped');
  t.equal((await app.inject({ method: 'POST', url: '/api/taps/drop/stop', headers: as(OPERATOR) })).json<TapView>().status.state, 'stopped', 'stop again: still stopped');

  drop(dropDir, 'two.pcap');
  const started = await app.inject({ method: 'POST', url: '/api/taps/drop/start', headers: as(OPERATOR) });
  t.equal(started.statusCode, 200);
  t.equal(started.json<TapView>().status.state, 'running', 'running again');
  v = await until(get, (x) => x.status.packets >= 2 * PACKETS);
  t.equal(v.status.packets, 2 * PACKETS, 'the second file taken after the restart; counters add up');
  t.equal(v.status.bytes, 2 * bytes);
  t.equal((await app.inject({ method: 'POST', url: '/api/taps/drop/start', headers: as(OPERATOR) })).json<TapView>().status.state, 'running', 'start again: still running, nothing re-read');

  const list = await app.inject({ method: 'GET', url: '/api/taps', headers: as(VIEWER) });
  t.same(list.json<TapView[]>().map((x) => [x.name, x.status.state, x.status.packets]), [['drop', 'running', 2 * PACKETS]], 'GET /api/taps lists it with its status');

  await close();
  const segs = readdirSync(path.join(dataDir, 'segments')).filter((f) => f.endsWith('.pcapng'));
  let stored = 0;
  for (const f of segs) stored += (await run('tshark', ['-r', path.join(dataDir, 'segments', f), '-T', 'fields', '-e', 'frame.number'])).stdout.trim().split('\n').filter(Boolean).length;
  t.equal(stored, 2 * PACKETS, 'tshark reads every packet of both files in the store');
});

t.test('GET /api/taps/:name/filter: the driver\u2019s BPF, which tcpdump applies to select what tshark\u2019s equivalent filter selects', { skip: noTools }, async (t) => {
  const { app, dropDir } = await setup(t);
  const body = { name: 'cam', driver: 'pcap-file', filter: { ports: [CAMERA_PORT], protocols: ['rtp'] }, options: { watch: dropDir }, enabled: false };
  const r = await app.inject({ method: 'POST', url: '/api/taps', headers: as(OPERATOR), payload: body });
  t.equal(r.statusCode, 201);
  t.match(r.json(), { name: 'cam', enabled: false, status: { state: 'idle', packets: 0, bytes: 0 } }, 'added stopped (enabled: false)');
  const f = await app.inject({ method: 'GET', url: '/api/taps/cam/filter', headers: as(VIEWER) });
  t.equal(f.statusCode, 200);
  const x = f.json<{ tap: string; driver: string; filter: object; native: string }>();
  t.same([x.tap, x.driver, x.filter], ['cam', 'pcap-file', { ports: [CAMERA_PORT], protocols: ['rtp'] }]);
  t.ok(x.native.length > 0, `native: ${x.native}`);
  const dump = await run('tcpdump', ['-nn', '-r', FIXTURE, x.native]);
  t.equal(dump.code, 0, `tcpdump compiles it ${dump.stderr.slice(-300)}`);
  const byTcpdump = dump.stdout.trim().split('\n').filter(Boolean).length;
  const byTshark = (await run('tshark', ['-r', FIXTURE, '-Y', `udp.port == ${CAMERA_PORT}`, '-T', 'fields', '-e', 'frame.number'])).stdout.trim().split('\n').filter(Boolean).length;
  t.ok(byTshark > 0);
  t.equal(byTcpdump, byTshark, `tcpdump with it selects the ${byTshark} UDP packets of port ${CAMERA_PORT} (tshark)`);
});

t.test('bad entries are 400 (the config file\u2019s schema), a taken name 409, unknown taps 404', async (t) => {
  const { app, dropDir } = await setup(t);
  const post = (payload: unknown) => app.inject({ method: 'POST', url: '/api/taps', headers: as(OPERATOR), payload: payload as object });
  const cases: Array<[string, unknown, string, RegExp]> = [
    ['no driver', { name: 'x' }, 'CAMTAP_ERR_USAGE', /driver/],
    ['bad name', { name: 'a b', driver: 'pcap-file' }, 'CAMTAP_ERR_USAGE', /name/],
    ['unknown key', { name: 'x', driver: 'pcap-file', colour: 'red' }, 'CAMTAP_ERR_USAGE', /colour|additional/],
    ['unknown filter field', { name: 'x', driver: 'pcap-file', filter: { hostz: ['a'] } }, 'CAMTAP_ERR_USAGE', /hostz|additional/],
    ['unknown driver', { name: 'x', driver: 'carrier-pigeon' }, 'CAMTAP_ERR_TAP_DRIVER', /carrier-pigeon/],
    ['options the driver refuses', { name: 'x', driver: 'pcap-file', options: {} }, 'CAMTAP_ERR_TAP', /options\.paths|options\.watch/],
  ];
  for (const [what, body, code, msg] of cases) {
    const r = await post(body);
    t.equal(r.statusCode, 400, `${what}: 400`);
    t.equal(r.json().error, code, `${what}: ${code}`);
    t.match(r.json().message, msg, `${what}: the message says what`);
  }
  t.equal((await app.inject({ method: 'GET', url: '/api/taps', headers: as(VIEWER) })).json<unknown[]>().length, 0, 'none of them was added');
  t.equal((await post(dropTap(dropDir))).statusCode, 201);
  const again = await post(dropTap(dropDir));
  t.equal(again.statusCode, 409, 'the same name again: 409');
  t.equal(again.json().error, 'CAMTAP_ERR_CONFLICT');
  for (const [method, url] of [['GET', '/api/taps/nope'], ['GET', '/api/taps/nope/filter'], ['POST', '/api/taps/nope/start'], ['POST', '/api/taps/nope/stop']] as const) {
    const r = await app.inject({ method, url, headers: as(ADMIN) });
    t.equal(r.statusCode, 404, `${method} ${url}: 404`);
    t.equal(r.json().error, 'CAMTAP_ERR_NOT_FOUND');
  }
  t.equal((await app.inject({ method: 'DELETE', url: '/api/taps/nope', headers: as(ADMIN) })).statusCode, 404);
});

t.test('roles: viewer reads, operator starts and stops, only admin deletes', async (t) => {
  const { app, dropDir } = await setup(t);
  t.equal((await app.inject({ method: 'POST', url: '/api/taps', headers: as(VIEWER), payload: dropTap(dropDir) })).statusCode, 403, 'viewer cannot create');
  t.equal((await app.inject({ method: 'POST', url: '/api/taps', headers: as(OPERATOR), payload: dropTap(dropDir) })).statusCode, 201);
  t.equal((await app.inject({ method: 'POST', url: '/api/taps/drop/stop', headers: as(VIEWER) })).statusCode, 403, 'viewer cannot stop');
  t.equal((await app.inject({ method: 'DELETE', url: '/api/taps/drop', headers: as(OPERATOR) })).statusCode, 403, 'operator cannot delete');
  t.equal((await app.inject({ method: 'GET', url: '/api/taps/drop', headers: as(VIEWER) })).json<TapView>().status.state, 'running', 'still running after the refusals');
  const del = await app.inject({ method: 'DELETE', url: '/api/taps/drop', headers: as(ADMIN) });
  t.equal(del.statusCode, 204, 'admin deletes');
  t.equal(del.body, '');
  t.equal((await app.inject({ method: 'GET', url: '/api/taps/drop', headers: as(ADMIN) })).statusCode, 404, 'gone');
  t.equal((await app.inject({ method: 'POST', url: '/api/taps', headers: as(OPERATOR), payload: dropTap(dropDir) })).statusCode, 201, 'the name can be used again');
});

t.test('through a real HTTP client (fetch against startHttpApi)', { skip: noTools }, async (t) => {
  const { deps, dropDir } = await setup(t);
  const api = await startHttpApi({ ...deps, port: 0, host: '127.0.0.1' });
  t.teardown(() => api.close());
  const base = `http://127.0.0.1:${api.port}`;
  const create = await fetch(`${base}/api/taps`, { method: 'POST', headers: { ...as(OPERATOR), 'content-type': 'application/json' }, body: JSON.stringify(dropTap(dropDir)) });
  t.equal(create.status, 201);
  drop(dropDir, 'one.pcap');
  const get = async () => (await (await fetch(`${base}/api/taps/drop`, { headers: as(VIEWER) })).json()) as TapView;
  const v = await until(get, (x) => x.status.packets >= PACKETS);
  t.equal(v.status.packets, PACKETS, `${PACKETS} packets (capinfos)`);
  const stop = await fetch(`${base}/api/taps/drop/stop`, { method: 'POST', headers: as(OPERATOR) });
  t.equal(stop.status, 200);
  t.equal(((await stop.json()) as TapView).status.state, 'stopped');
  const anon = await fetch(`${base}/api/taps`);
  t.equal(anon.status, 401, 'no token: 401');
  t.notMatch(await anon.text(), /drop/, 'and not a word about the taps');
  const del = await fetch(`${base}/api/taps/drop`, { method: 'DELETE', headers: as(ADMIN) });
  t.equal(del.status, 204);
});

t.test('serve without capture: every tap route answers 409 saying why', async (t) => {
  const { deps } = await setup(t);
  const app = createHttpApi({ ...deps, taps: () => null });
  t.teardown(() => app.close());
  for (const [method, url] of [['GET', '/api/taps'], ['GET', '/api/taps/x'], ['GET', '/api/taps/x/filter'], ['POST', '/api/taps/x/start'], ['POST', '/api/taps/x/stop'], ['DELETE', '/api/taps/x']] as const) {
    const r = await app.inject({ method, url, headers: as(ADMIN) });
    t.equal(r.statusCode, 409, `${method} ${url}: 409`);
    t.equal(r.json().error, 'CAMTAP_ERR_CONFLICT');
    t.match(r.json().message, /without capture/);
  }
  const post = await app.inject({ method: 'POST', url: '/api/taps', headers: as(ADMIN), payload: { name: 'x', driver: 'pcap-file', options: { paths: ['/x'] } } });
  t.equal(post.statusCode, 409);
});
