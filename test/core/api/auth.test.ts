/**
 * API authentication and roles over the lab's multi-camera capture: without credentials
 * or with wrong ones 401 (with WWW-Authenticate), with a role too low 403, and neither
 * answer carries any of the data (no stream id, no camera address). Tokens (plain, hashed,
 * CAMTAP_ADMIN_TOKEN), HTTP Basic users (plain and scrypt, the scrypt hash made by
 * Python's hashlib) and `?access_token=` are checked through fastify inject and a real
 * HTTP client (fetch against a listening API). Without `auth` the API stays open and
 * refuses to listen beyond loopback.
 */
import t from 'tap';
import path from 'node:path';
import { createHttpApi, startHttpApi, type HttpApiDeps } from '../../../core/api/http-server.js';
import { Credentials, apiListenHost, defaultRole, digestHa1, hashPassword, hashToken, isLoopbackHost, parseScryptHash } from '../../../core/api/auth.js';
import { validateConfig } from '../../../core/config.js';
import { isCamtapError } from '../../../core/errors.js';
import { silentLogger } from '../../../core/logger.js';
import type { StreamRecord } from '../../../core/contracts/records.js';
import { have, run } from '../../helpers/peers.js';
import { importCaptures, manifest } from '../query/fixture.js';

const MULTI = 'netns_multi.pcap';
const M = manifest(MULTI);
const BASE = 'rtsp://camtap.test:8554';
const noPython = have('python3') ? false : 'python3 is not installed (it makes the scrypt hash)';

const VIEWER_TOKEN = 'viewer-token-0123456789abcdef';
const OPERATOR_TOKEN = 'operator-token-0123456789abcdef';
const ADMIN_TOKEN = 'admin-token-0123456789abcdef-xyz';
const ENV_TOKEN = 'env-admin-token-0123456789';

/** Python's hashlib.scrypt (another implementation than node's) in camtap's format. */
async function pythonScrypt(password: string): Promise<string> {
  const py = `import hashlib,base64,sys
salt=b'0123456789abcdef'
h=hashlib.scrypt(sys.argv[1].encode(),salt=salt,n=16384,r=8,p=1,dklen=32)
print('scrypt$16384$'+base64.b64encode(salt).decode()+'$'+base64.b64encode(h).decode())`;
  const r = await run('python3', ['-c', py, password]);
  if (r.code !== 0) throw new Error(r.stderr);
  return r.stdout.trim();
}

async function authBlock(): Promise<Record<string, unknown>> {
  return {
    users: [
      { name: 'vera', password: 'vera pass', role: 'viewer' },
      { name: 'otto', passwordHash: noPython ? await hashPassword('otto pass') : await pythonScrypt('otto pass'), role: 'operator' },
    ],
    tokens: [
      { name: 'wall-screen', token: VIEWER_TOKEN, role: 'viewer' },
      { name: 'ops-script', tokenHash: hashToken(OPERATOR_TOKEN), role: 'operator' },
      { name: 'root', token: ADMIN_TOKEN, role: 'admin' },
    ],
  };
}

async function setup(t: Parameters<typeof importCaptures>[0], opts: { auth?: boolean; env?: NodeJS.ProcessEnv } = {}) {
  const imp = await importCaptures(t, [MULTI]);
  const config = validateConfig(opts.auth === false ? {} : { auth: await authBlock() }, '(test)');
  const credentials = new Credentials(config.auth, opts.env ?? {});
  const deps: HttpApiDeps = { catalog: imp.catalog, indexDir: path.join(imp.dataDir, 'index'), log: silentLogger, rtspBase: () => BASE, auth: credentials, config: () => config };
  const app = createHttpApi(deps);
  t.teardown(() => app.close());
  return { imp, deps, app, config };
}

const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`, 'utf8').toString('base64')}`;
const bearer = (k: string) => `Bearer ${k}`;

/** What must never be in a refusal: any stream id, camera address or URL of the capture. */
function leaks(body: string, streams: StreamRecord[]): string[] {
  const secrets = [...streams.map((s) => s.id), ...M.rtp_streams.map((s) => s.src.slice(0, s.src.lastIndexOf(':'))), 'replayUrl', 'rtsp://'];
  return secrets.filter((x) => body.includes(x));
}

t.test('roles are ordered and routes default to viewer for GET, operator otherwise, admin under /api/config', async (t) => {
  t.equal(defaultRole('GET', '/api/streams'), 'viewer');
  t.equal(defaultRole('HEAD', '/api/streams'), 'viewer');
  t.equal(defaultRole('POST', '/api/taps'), 'operator');
  t.equal(defaultRole('DELETE', '/api/whatever'), 'operator');
  t.equal(defaultRole('GET', '/api/config'), 'admin');
  t.equal(defaultRole('GET', '/api/config/x'), 'admin');
  t.equal(defaultRole('GET', '/api/configs'), 'viewer', 'only the /api/config tree');
});

t.test('loopback: 127/8, ::1 and localhost are; wildcard and other addresses are not', async (t) => {
  for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1']) t.ok(isLoopbackHost(h), h);
  for (const h of ['0.0.0.0', '::', '10.0.0.1', '192.168.1.2', 'camtap.example', '128.0.0.1']) t.notOk(isLoopbackHost(h), h);
  t.equal(apiListenHost({ host: '0.0.0.0' }, false), '127.0.0.1', 'no auth: the API stays on loopback');
  t.equal(apiListenHost({ host: '0.0.0.0' }, true), '0.0.0.0', 'with auth: serve.host');
  t.equal(apiListenHost({ host: '::1' }, false), '::1', 'a loopback serve.host is kept');
  t.equal(apiListenHost({ host: '0.0.0.0', httpHost: '10.1.1.1' }, false), '10.1.1.1', 'serve.httpHost wins (startHttpApi then refuses it without auth)');
});

t.test('passwords: a hash made by Python\u2019s scrypt verifies, a wrong password does not; hashPassword round-trips', { skip: noPython }, async (t) => {
  const hash = await pythonScrypt('pässwörd');
  t.ok(parseScryptHash(hash), 'the format parses');
  const c = new Credentials(validateConfig({ auth: { users: [{ name: 'u', passwordHash: hash, role: 'admin' }] } }, '(test)').auth, {});
  t.same(await c.verifyPassword('u', 'pässwörd'), { name: 'u', role: 'admin', via: 'basic' }, 'right password (UTF-8)');
  t.equal(await c.verifyPassword('u', 'passwort'), null, 'wrong password');
  t.equal(await c.verifyPassword('v', 'pässwörd'), null, 'unknown user');
  t.same(await c.verifyPassword('u', 'pässwörd'), { name: 'u', role: 'admin', via: 'basic' }, 'again (remembered)');
  const ours = await hashPassword('x y z');
  const c2 = new Credentials(validateConfig({ auth: { users: [{ name: 'w', passwordHash: ours }] } }, '(test)').auth, {});
  t.same(await c2.verifyPassword('w', 'x y z'), { name: 'w', role: 'viewer', via: 'basic' }, 'hashPassword output verifies; role defaults to viewer');
  // Python verifies camtap's hash too.
  const [, N, salt, key] = ours.split('$');
  const py = `import hashlib,base64,sys
print(hashlib.scrypt(b'x y z',salt=base64.b64decode(sys.argv[2]),n=int(sys.argv[1]),r=8,p=1,dklen=32)==base64.b64decode(sys.argv[3]))`;
  t.equal((await run('python3', ['-c', py, N!, salt!, key!])).stdout.trim(), 'True', 'Python accepts camtap\u2019s hash');
  t.equal(digestHa1('Mufasa', 'testrealm@host.com', 'Circle Of Life'), '939e7578ed9e3c518a452acee763bce9', 'HA1 of RFC 2617 §3.5');
});

t.test('config: bad auth entries are refused with the key path; a short CAMTAP_ADMIN_TOKEN too', async (t) => {
  const bad = (auth: unknown, key: RegExp) => {
    try {
      validateConfig({ auth }, 'c.yaml');
      t.fail('accepted');
    } catch (e) {
      t.ok(isCamtapError(e, 'CAMTAP_ERR_CONFIG'), 'CAMTAP_ERR_CONFIG');
      t.match((e as Error).message, key);
    }
  };
  bad({ users: [{ name: 'a' }] }, /auth\.users\[0\].*password or passwordHash/);
  bad({ users: [{ name: 'a:b', password: 'x' }] }, /auth\.users\[0\]\.name/);
  bad({ users: [{ name: 'a', password: 'x', role: 'root' }] }, /auth\.users\[0\]\.role/);
  bad({ tokens: [{ name: 'k', token: 'short' }] }, /auth\.tokens\[0\]\.token.*16/);
  bad({ tokens: [{ name: 'k', token: VIEWER_TOKEN, tokenHash: hashToken(VIEWER_TOKEN) }] }, /auth\.tokens\[0\].*one of them/);
  bad({ users: [{ name: 'a', passwordHash: 'md5$abc' }] }, /auth\.users\[0\]\.passwordHash/);
  t.throws(() => new Credentials(validateConfig({ auth: { users: [{ name: 'a', password: 'x' }, { name: 'a', password: 'y' }] } }, 'c').auth, {}), /duplicate user "a"/);
  t.throws(() => new Credentials(undefined, { CAMTAP_ADMIN_TOKEN: 'short' }), /CAMTAP_ADMIN_TOKEN.*16/);
  t.equal(new Credentials(undefined, {}).enabled, false, 'no auth block, no env token: open');
  t.equal(new Credentials(undefined, { CAMTAP_ADMIN_TOKEN: ENV_TOKEN }).enabled, true, 'CAMTAP_ADMIN_TOKEN alone turns auth on');
});

t.test('no or wrong credentials: 401 with WWW-Authenticate and no data', async (t) => {
  const { app, imp } = await setup(t);
  const urls = ['/api/streams', `/api/streams/${imp.streams[0]!.id}`, '/api/sessions', '/api/inventory', '/api/taps', '/api/config', '/docs/json', '/docs', '/api/no-such-route'];
  for (const url of urls) {
    for (const [what, headers] of [
      ['none', {}],
      ['unknown token', { authorization: bearer('not-a-token-0123456789') }],
      ['wrong password', { authorization: basic('vera', 'Vera pass') }],
      ['unknown user', { authorization: basic('nobody', 'vera pass') }],
      ['other scheme', { authorization: 'Digest username="vera"' }],
    ] as const) {
      const r = await app.inject({ method: 'GET', url, headers });
      t.equal(r.statusCode, 401, `${url} (${what}): 401`);
      t.same(Object.keys(r.json()).sort(), ['error', 'message'], `${url} (${what}): only error and message`);
      t.equal(r.json().error, 'CAMTAP_ERR_UNAUTHORIZED');
      t.same(leaks(r.body, imp.streams), [], `${url} (${what}): nothing of the data`);
      const wa = ([] as string[]).concat(r.headers['www-authenticate'] ?? []);
      t.match(wa[0], /^Bearer realm="camtap"/, 'Bearer challenge (RFC 6750)');
      if (what === 'unknown token') t.match(wa[0], /error="invalid_token"/, 'invalid_token for a bad token');
      if (what === 'unknown token') t.equal(wa.length, 1, 'no Basic challenge toward a token holder (no browser prompt)');
      else t.equal(wa[1], 'Basic realm="camtap", charset="UTF-8"', 'Basic challenge (RFC 7617)');
    }
  }
  const xhr = await app.inject({ method: 'GET', url: '/api/streams', headers: { 'x-requested-with': 'XMLHttpRequest' } });
  t.same(([] as string[]).concat(xhr.headers['www-authenticate'] ?? []).filter((h) => h.startsWith('Basic')), [], 'no Basic challenge toward the console\u2019s own requests');
  const post = await app.inject({ method: 'POST', url: `/api/taps?access_token=${ADMIN_TOKEN}`, payload: { name: 'x', driver: 'pcap-file', options: { paths: ['/nonexistent'] } } });
  t.equal(post.statusCode, 401, '?access_token= is not taken for POST');
});

t.test('a role too low: 403 with no data; enough: the data', async (t) => {
  const { app, imp } = await setup(t);
  const cases: Array<{ method: 'GET' | 'POST' | 'DELETE'; url: string; who: Record<string, string>; status: number }> = [
    { method: 'POST', url: '/api/taps', who: { authorization: bearer(VIEWER_TOKEN) }, status: 403 },
    { method: 'POST', url: '/api/taps/x/start', who: { authorization: basic('vera', 'vera pass') }, status: 403 },
    { method: 'DELETE', url: '/api/taps/x', who: { authorization: bearer(OPERATOR_TOKEN) }, status: 403 },
    { method: 'DELETE', url: '/api/taps/x', who: { authorization: basic('otto', 'otto pass') }, status: 403 },
    { method: 'GET', url: '/api/config', who: { authorization: bearer(OPERATOR_TOKEN) }, status: 403 },
    { method: 'GET', url: '/api/config', who: { authorization: basic('vera', 'vera pass') }, status: 403 },
  ];
  for (const c of cases) {
    const r = await app.inject({ method: c.method, url: c.url, headers: c.who, ...(c.method === 'POST' ? { payload: {} } : {}) });
    t.equal(r.statusCode, c.status, `${c.method} ${c.url} as ${c.who.authorization!.split(' ')[0]}: ${c.status}`);
    t.same(Object.keys(r.json()).sort(), ['error', 'message']);
    t.equal(r.json().error, 'CAMTAP_ERR_FORBIDDEN');
    t.match(r.json().message, /needs (operator|admin)/, 'the message names the role needed');
    t.same(leaks(r.body, imp.streams), [], 'nothing of the data');
    t.equal(r.headers['www-authenticate'], undefined, 'no challenge: the credentials were fine');
  }
  for (const who of [bearer(VIEWER_TOKEN), bearer(OPERATOR_TOKEN), bearer(ADMIN_TOKEN), basic('vera', 'vera pass'), basic('otto', 'otto pass')]) {
    const r = await app.inject({ method: 'GET', url: '/api/streams', headers: { authorization: who } });
    t.equal(r.statusCode, 200, `GET /api/streams as ${who.split(' ')[0]} ${who.length}: 200`);
    t.equal(r.json<StreamRecord[]>().length, M.rtp_streams.length, 'every stream of the manifest');
  }
  const me = await app.inject({ method: 'GET', url: '/api/auth/me', headers: { authorization: basic('otto', 'otto pass') } });
  t.same(me.json(), { name: 'otto', role: 'operator', via: 'basic', auth: true }, '/api/auth/me names the user and role');
  const cfg = await app.inject({ method: 'GET', url: '/api/config', headers: { authorization: bearer(ADMIN_TOKEN) } });
  t.equal(cfg.statusCode, 200, 'admin reads /api/config');
  t.notMatch(cfg.body, /vera pass|admin-token|scrypt\$/, 'with secrets redacted');
  const notFound = await app.inject({ method: 'GET', url: '/api/no-such-route', headers: { authorization: bearer(VIEWER_TOKEN) } });
  t.equal(notFound.statusCode, 404, 'an unknown route with credentials: 404');
});

t.test('?access_token= on GET (a <video src>) is taken and stripped before the route checks its parameters', async (t) => {
  const { app } = await setup(t);
  const r = await app.inject({ method: 'GET', url: `/api/streams?codec=jpeg&access_token=${VIEWER_TOKEN}` });
  t.equal(r.statusCode, 200, 'not refused as an unknown parameter');
  const jpeg = M.rtp_streams.filter((s) => s.decode?.codec === 'JPEG');
  t.equal(r.json<StreamRecord[]>().length, jpeg.length, 'the other parameters still apply (codec=jpeg)');
  const bad = await app.inject({ method: 'GET', url: '/api/streams?access_token=nope-nope-nope-nope' });
  t.equal(bad.statusCode, 401);
  t.match(([] as string[]).concat(bad.headers['www-authenticate'] ?? [])[0], /invalid_token/);
  const head = await app.inject({ method: 'HEAD', url: `/api/streams?access_token=${VIEWER_TOKEN}` });
  t.equal(head.statusCode, 200, 'HEAD too');
});

t.test('public and documentation routes: /api/health open, /docs and /docs/json need viewer, swagger-ui\u2019s static files open', async (t) => {
  const { app } = await setup(t);
  t.equal((await app.inject({ method: 'GET', url: '/api/health' })).statusCode, 200, '/api/health without credentials');
  t.equal((await app.inject({ method: 'GET', url: '/docs/json' })).statusCode, 401, '/docs/json without credentials: 401');
  t.equal((await app.inject({ method: 'GET', url: '/docs' })).statusCode, 401, '/docs without credentials: 401');
  const doc = await app.inject({ method: 'GET', url: '/docs/json', headers: { authorization: bearer(VIEWER_TOKEN) } });
  t.equal(doc.statusCode, 200, '/docs/json as viewer');
  t.equal(doc.json().openapi, '3.0.3');
  const ui = await app.inject({ method: 'GET', url: '/docs', headers: { authorization: basic('vera', 'vera pass') } });
  t.equal(ui.statusCode, 200, '/docs as viewer');
  t.match(ui.body, /swagger/i);
  const stat = await app.inject({ method: 'GET', url: '/docs/static/swagger-ui.css' });
  t.equal(stat.statusCode, 200, 'a static file of the UI without credentials (no data in it)');
});

t.test('CAMTAP_ADMIN_TOKEN is an admin token beside the config\u2019s', async (t) => {
  const { app } = await setup(t, { env: { CAMTAP_ADMIN_TOKEN: ENV_TOKEN } });
  const r = await app.inject({ method: 'GET', url: '/api/config', headers: { authorization: bearer(ENV_TOKEN) } });
  t.equal(r.statusCode, 200);
  const me = await app.inject({ method: 'GET', url: '/api/auth/me', headers: { authorization: bearer(ENV_TOKEN) } });
  t.same(me.json(), { name: 'CAMTAP_ADMIN_TOKEN', role: 'admin', via: 'token', auth: true });
});

t.test('without auth: the API is open (as before) and will not listen beyond loopback', async (t) => {
  const { app, deps } = await setup(t, { auth: false });
  const r = await app.inject({ method: 'GET', url: '/api/streams' });
  t.equal(r.statusCode, 200, 'GET /api/streams without credentials');
  t.equal(r.json<StreamRecord[]>().length, M.rtp_streams.length);
  t.same((await app.inject({ method: 'GET', url: '/api/auth/me' })).json(), { name: 'anonymous', role: 'admin', via: 'open', auth: false });
  t.equal((await app.inject({ method: 'GET', url: `/api/streams?access_token=whatever` })).statusCode, 200, 'a stray access_token does not break a route');
  const warnings: string[] = [];
  const log = { ...silentLogger, warn: (_o: object | string, m?: string) => void warnings.push(m ?? ''), child: () => log };
  await t.rejects(startHttpApi({ ...deps, log, port: 0, host: '0.0.0.0' }), { code: 'CAMTAP_ERR_AUTH_REQUIRED' }, '0.0.0.0 without auth: refused before listening');
  await t.rejects(startHttpApi({ ...deps, log, port: 0, host: '10.9.8.7' }), { code: 'CAMTAP_ERR_AUTH_REQUIRED' }, 'another address: refused');
  const api = await startHttpApi({ ...deps, log, port: 0, host: '127.0.0.1' });
  t.teardown(() => api.close());
  t.match(warnings.join('\n'), /no `auth`.*open/, 'a warning says the API is open');
  const res = await fetch(`http://127.0.0.1:${api.port}/api/streams`);
  t.equal(res.status, 200, 'a real client reads it without credentials on loopback');
});

t.test('a real HTTP client: 401 with challenges, 403, and data with Bearer, Basic or ?access_token=', async (t) => {
  const { deps, imp } = await setup(t);
  const api = await startHttpApi({ ...deps, port: 0, host: '127.0.0.1' });
  t.teardown(() => api.close());
  const base = `http://127.0.0.1:${api.port}`;
  const none = await fetch(`${base}/api/streams`);
  t.equal(none.status, 401);
  t.match(none.headers.get('www-authenticate') ?? '', /Bearer realm="camtap".*Basic realm="camtap"/, 'both challenges (fetch joins them)');
  const text = await none.text();
  t.same(leaks(text, imp.streams), [], 'no data');
  const forbidden = await fetch(`${base}/api/config`, { headers: { authorization: bearer(VIEWER_TOKEN) } });
  t.equal(forbidden.status, 403);
  t.same(Object.keys((await forbidden.json()) as object).sort(), ['error', 'message']);
  for (const [what, init, url] of [
    ['bearer', { headers: { authorization: bearer(OPERATOR_TOKEN) } }, '/api/streams'],
    ['basic (scrypt user)', { headers: { authorization: basic('otto', 'otto pass') } }, '/api/streams'],
    ['access_token', {}, `/api/streams?access_token=${encodeURIComponent(VIEWER_TOKEN)}`],
  ] as const) {
    const r = await fetch(`${base}${url}`, init);
    t.equal(r.status, 200, `${what}: 200`);
    t.equal(((await r.json()) as StreamRecord[]).length, M.rtp_streams.length, `${what}: every stream`);
  }
  const pcap = await fetch(`${base}/api/streams/${imp.streams.find((s) => s.direction !== 'client->server')!.id}/pcap?access_token=${encodeURIComponent(VIEWER_TOKEN)}`);
  t.equal(pcap.status, 200, 'a download by URL alone (as <a download> does) with ?access_token=');
  t.ok([0xa1b2c3d4, 0xa1b23c4d].includes(Buffer.from(await pcap.arrayBuffer()).readUInt32LE(0)), 'a pcap file (libpcap magic)');
});
