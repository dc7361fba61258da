/**
 * GET /api/config (admin): the effective configuration, loaded from a real YAML file,
 * with every secret of the file gone from the answer (passwords, hashes, tokens, keys,
 * URL userinfo, secret query parameters) while names, roles, addresses and hosts stay;
 * other roles get 403 and nothing of it.
 */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { createHttpApi } from '../../../core/api/http-server.js';
import { Credentials, hashToken } from '../../../core/api/auth.js';
import { REDACTED, redactSecrets } from '../../../core/api/config-routes.js';
import { loadConfig } from '../../../core/config.js';
import { silentLogger } from '../../../core/logger.js';
import { tempDir } from '../../helpers/camtap.js';

const ADMIN = 'admin-token-for-config-0123456789';
const OPERATOR = 'operator-token-for-config-0123456789';

/** Every secret written into the file below. */
const SECRETS = [
  'cam-pass-1',
  'cam-pass-2',
  'onvif-secret-3',
  'pg-secret-4',
  'user-plain-5',
  'tok-plain-0123456789-6',
  'opt-secret-7',
  'opt-apikey-8',
  'query-pw-9',
  ADMIN,
  hashToken(OPERATOR).slice('sha256:'.length),
  'c2FsdHNhbHRzYWx0',
];

function yaml(dataDir: string): string {
  return `
dataDir: ${dataDir}
catalog:
  url: postgresql://camtap:pg-secret-4@db.example:5432/camtap
serve:
  host: 127.0.0.1
cameras:
  - name: door
    address: 10.0.0.21
    url: rtsp://admin:cam-pass-1@10.0.0.21:554/stream1?user=admin&password=query-pw-9
  - name: yard
    address: 10.0.0.22
    url: rtsp://10.0.0.22/h264
    user: root
    password: cam-pass-2
    http: http://root:onvif-secret-3@10.0.0.22:8080
vms:
  - name: vms-a
    address: 10.0.1.5
taps:
  - name: drop
    driver: pcap-file
    options:
      watch: /var/drop
      password: opt-secret-7
      apiKey: opt-apikey-8
auth:
  users:
    - name: vera
      password: user-plain-5
      role: viewer
    - name: otto
      passwordHash: scrypt$16384$c2FsdHNhbHRzYWx0$MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=
      role: operator
  tokens:
    - name: script
      token: tok-plain-0123456789-6
      role: viewer
    - name: root
      token: ${ADMIN}
      role: admin
    - name: ops
      tokenHash: ${hashToken(OPERATOR)}
      role: operator
`;
}

async function setup(t: { teardown(fn: () => unknown): void }) {
  const dir = tempDir(t);
  const file = path.join(dir, 'camtap.yaml');
  writeFileSync(file, yaml(path.join(dir, 'data')));
  const { config } = loadConfig({ file, env: {} });
  // The catalog is not touched by /api/config: a stand-in that fails loudly if it were.
  const catalog = new Proxy({}, { get: () => () => Promise.reject(new Error('catalog used')) }) as never;
  const app = createHttpApi({ catalog, indexDir: dir, log: silentLogger, rtspBase: () => 'rtsp://127.0.0.1:8554', auth: Credentials.fromConfig(config, {}), config: () => config });
  t.teardown(() => app.close());
  return { app, config };
}

t.test('admin gets the effective config with every secret of the file redacted', async (t) => {
  const { app, config } = await setup(t);
  const r = await app.inject({ method: 'GET', url: '/api/config', headers: { authorization: `Bearer ${ADMIN}` } });
  t.equal(r.statusCode, 200);
  for (const s of SECRETS) t.notOk(r.body.includes(s), `secret ${s.slice(0, 12)}… is not in the answer`);
  const c = r.json<typeof config>();
  t.equal(c.cameras[0]!.url, 'rtsp://10.0.0.21:554/stream1?user=admin&password=***', 'camera URL: userinfo removed, password parameter masked, host and path kept');
  t.equal(c.cameras[1]!.password, REDACTED);
  t.equal(c.cameras[1]!.user, 'root', 'a user name is not a secret');
  t.equal(c.cameras[1]!.http, 'http://10.0.0.22:8080');
  t.equal(c.catalog.url, 'postgresql://db.example:5432/camtap');
  t.same(c.taps[0]!.options, { watch: '/var/drop', password: REDACTED, apiKey: REDACTED });
  t.same(
    c.auth!.users.map((u) => [u.name, u.role, u.password ?? null, u.passwordHash ?? null]),
    [
      ['vera', 'viewer', REDACTED, null],
      ['otto', 'operator', null, REDACTED],
    ],
  );
  t.same(
    c.auth!.tokens.map((k) => [k.name, k.role, k.token ?? null, k.tokenHash ?? null]),
    [
      ['script', 'viewer', REDACTED, null],
      ['root', 'admin', REDACTED, null],
      ['ops', 'operator', null, REDACTED],
    ],
  );
  t.equal(c.serve.host, '127.0.0.1', 'the rest as loaded');
  t.equal(c.dataDir, config.dataDir, 'paths resolved as in force');
  t.same(c.vms, config.vms);
  t.equal(config.cameras[1]!.password, 'cam-pass-2', 'the config in memory is untouched');
});

t.test('other roles and no credentials get nothing of it', async (t) => {
  const { app } = await setup(t);
  for (const headers of [{ authorization: `Bearer ${OPERATOR}` }, { authorization: `Basic ${Buffer.from('vera:user-plain-5').toString('base64')}` }, {}]) {
    const r = await app.inject({ method: 'GET', url: '/api/config', headers });
    t.equal(r.statusCode, headers.authorization ? 403 : 401);
    t.same(Object.keys(r.json()).sort(), ['error', 'message']);
    t.notMatch(r.body, /10\.0\.0\.2|door|yard|vms-a|drop/, 'no names or addresses');
  }
});

t.test('redactSecrets: keys that name secrets, nested anywhere; scalars only; URLs anywhere', async (t) => {
  const out = redactSecrets({
    a: { b: [{ secret: 1, privateKey: 'k', rtspHa1: 'h', key: 'x', keyframes: 3, monkey: 'm' }] },
    tokens: ['t1'],
    list: ['https://u:p@h/x', 'plain'],
    fn: () => 1,
  });
  t.same(out, { a: { b: [{ secret: REDACTED, privateKey: REDACTED, rtspHa1: REDACTED, key: REDACTED, keyframes: 3, monkey: 'm' }] }, tokens: [REDACTED], list: ['https://h/x', 'plain'] });
});
