/**
 * The console's static routes (core/api/console-routes.ts): the files served byte for byte
 * with their types and a strict Content-Security-Policy, nothing but the listed files,
 * the page public while the API behind it asks for a token, and the page's own
 * references and script checked (every file it loads is served; app.js parses as a
 * module; it loads nothing from another origin).
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { createHttpApi } from '../../../core/api/http-server.js';
import { Credentials } from '../../../core/api/auth.js';
import { CONSOLE_FILES, consoleDir } from '../../../core/api/console-routes.js';
import { silentLogger } from '../../../core/logger.js';
import { ROOT } from '../../helpers/camtap.js';
import { importCaptures } from '../query/fixture.js';

const DIR = path.join(ROOT, 'core/api/console');
const VIEWER = 'viewer-token-console-routes-test';

async function app(t: { teardown(fn: () => unknown): void }, auth: Credentials | null = null) {
  const imp = await importCaptures(t, ['lo_udp_h264.pcap']);
  const a = createHttpApi({ catalog: imp.catalog, indexDir: path.join(imp.dataDir, 'index'), log: silentLogger, rtspBase: () => 'rtsp://camtap.test:8554', auth });
  t.teardown(() => a.close());
  return { app: a, imp };
}

t.test('/ and /console/ answer index.html as it is on disk, with a CSP that allows only camtap itself', async (t) => {
  const { app: a } = await app(t);
  const html = readFileSync(path.join(DIR, 'index.html'));
  for (const url of ['/', '/console/']) {
    const r = await a.inject({ method: 'GET', url });
    t.equal(r.statusCode, 200, url);
    t.equal(r.headers['content-type'], 'text/html; charset=utf-8', `${url}: html`);
    t.ok(r.rawPayload.equals(html), `${url}: the file's bytes`);
    const csp = String(r.headers['content-security-policy']);
    t.match(csp, /default-src 'self'/, `${url}: CSP default-src 'self'`);
    t.match(csp, /media-src 'self' blob:/, `${url}: video from MSE blob: URLs`);
    t.notMatch(csp, /unsafe-inline|unsafe-eval|\*/, `${url}: no inline script, no eval, no wildcard`);
  }
  const redirect = await a.inject({ method: 'GET', url: '/console' });
  t.equal(redirect.statusCode, 302);
  t.equal(redirect.headers.location, '/console/');
});

t.test('the listed files with their types; anything else is 404, traversal included', async (t) => {
  const { app: a } = await app(t);
  for (const [name, type] of Object.entries(CONSOLE_FILES)) {
    const r = await a.inject({ method: 'GET', url: `/console/${name}` });
    t.equal(r.statusCode, 200, name);
    t.equal(r.headers['content-type'], type, `${name}: ${type}`);
    t.ok(r.rawPayload.equals(readFileSync(path.join(DIR, name))), `${name}: the file's bytes`);
    t.equal(r.headers['x-content-type-options'], 'nosniff');
  }
  for (const url of ['/console/nope.js', '/console/..%2Fconsole-routes.ts', '/console/%2e%2e%2fhttp-server.ts', '/console/index.html%00', '/console/../http-server.ts', '/console/constructor', '/console/__proto__']) {
    const r = await a.inject({ method: 'GET', url });
    t.equal(r.statusCode, 404, `${url}: 404`);
    t.equal(r.json().error, 'CAMTAP_ERR_NOT_FOUND');
  }
});

t.test('with tokens: the page is public, the API behind it is not; ?access_token= opens media', async (t) => {
  const creds = new Credentials({ users: [], tokens: [{ name: 'vera', token: VIEWER, role: 'viewer' }], realm: 'camtap', rtspBasic: false, nonceTtlSec: 300 }, {});
  const { app: a, imp } = await app(t, creds);
  for (const url of ['/', '/console/', '/console/app.js', '/console/style.css']) t.equal((await a.inject({ method: 'GET', url })).statusCode, 200, `${url} without a token`);
  const id = imp.streams.find((s) => s.codec === 'H264')!.id;
  for (const url of ['/api/timeline', `/api/streams/${id}/media-info`, `/api/streams/${id}/fmp4`, '/api/live/cam/fmp4']) {
    const r = await a.inject({ method: 'GET', url });
    t.equal(r.statusCode, 401, `${url} without a token: 401`);
    t.notMatch(r.body, /127\.0\.1\.11|avc1/, `${url}: no data`);
  }
  const ok = await a.inject({ method: 'GET', url: `/api/streams/${id}/media-info?access_token=${VIEWER}` });
  t.equal(ok.statusCode, 200, 'media-info with ?access_token=');
  const tl = await a.inject({ method: 'GET', url: '/api/timeline', headers: { authorization: `Bearer ${VIEWER}` } });
  t.equal(tl.statusCode, 200, 'the timeline with a Bearer token');
});

t.test('the page: every file it loads is served, app.js parses as a module, nothing comes from another origin', async (t) => {
  const html = readFileSync(path.join(DIR, 'index.html'), 'utf8');
  const refs = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
  t.ok(refs.length >= 3, `references: ${refs.join(', ')}`);
  for (const r of refs) {
    t.match(r, /^\/console\/[^/]+$/, `${r} is one of camtap's own files`);
    t.ok(Object.hasOwn(CONSOLE_FILES, r.slice('/console/'.length)), `${r} is served`);
  }
  const check = spawnSync(process.execPath, ['--check', path.join(DIR, 'app.js')], { encoding: 'utf8' });
  t.equal(check.status, 0, `app.js parses (${check.stderr.trim()})`);
  for (const f of ['app.js', 'style.css', 'index.html']) {
    const text = readFileSync(path.join(DIR, f), 'utf8');
    t.notMatch(text.replace(/http:\/\/www\.w3\.org\/2000\/svg/g, ''), /https?:\/\/|\/\/fonts\.|@import/, `${f} loads nothing from another origin`);
    t.notMatch(text, /\.innerHTML\s*=|insertAdjacentHTML|document\.write/, `${f} never writes HTML from strings (names come from captured traffic)`);
  }
});

t.test('the console folder is found from the sources', async (t) => {
  t.equal(consoleDir(), DIR, 'beside the module');
});

const BUILT = path.join(ROOT, 'dist/core/api/console-routes.js');
t.test('and from a build in dist/', { skip: existsSync(BUILT) ? false : 'dist/ not built (npm run build)' }, async (t) => {
  const built = BUILT;
  const { consoleDir: fromDist } = (await import(built)) as { consoleDir: () => string };
  t.equal(fromDist(), DIR, 'from dist/core/api: the package’s core/api/console');
});
