/**
 * `camtap serve` with and without `auth`, as a user runs it (the compiled CLI):
 * - without `auth` the API is open on loopback only, with a warning; asking for another
 *   address is a startup error (CAMTAP_ERR_AUTH_REQUIRED, exit 78) before anything listens;
 * - with `auth` made by `camtap token` and `camtap passwd`, the API wants a token or a user
 *   (401/403 otherwise), CAMTAP_ADMIN_TOKEN is an admin, the config's drop-folder tap is
 *   driven over /api/taps, and the RTSP server wants Digest credentials: ffmpeg with
 *   user:pass decodes a replay with the manifest's frame count and fails with 401 without.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CAPTURES, CLI, camtap, camtapJson, tempDir } from '../helpers/camtap.js';
import { have, run } from '../helpers/peers.js';
import type { StreamRecord } from '../../core/contracts/records.js';

interface MS {
  src: string;
  dst: string;
  decode: { frames_decoded: number } | null;
}
const manifest = JSON.parse(readFileSync(path.join(CAPTURES, 'lo_udp_h264.manifest.json'), 'utf8')) as { rtp_streams: MS[]; capinfos: Record<string, string> };
const PACKETS = Number(manifest.capinfos['Number of packets']);
const VIDEO = manifest.rtp_streams.find((s) => s.decode)!;
const ENV_TOKEN = 'env-admin-token-for-e2e-0123456789';

interface Serve {
  rtsp: number;
  http: number;
  log: () => string;
  stop: () => Promise<number | null>;
}

/** `camtap serve` with a config file and extra environment, resolved once it says where it listens. */
async function serve(t: { teardown(fn: () => unknown): void }, config: string, env: NodeJS.ProcessEnv = {}): Promise<Serve> {
  const proc = spawn(process.execPath, [CLI, 'serve', '--config', config, '--rtsp-port', '0', '--http-port', '0'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, CAMTAP_LOG_LEVEL: 'info', CAMTAP_ADMIN_TOKEN: '', ...env } });
  const exited = new Promise<number | null>((r) => proc.on('exit', (c) => r(c)));
  t.teardown(() => void proc.kill('SIGKILL'));
  let out = '';
  let err = '';
  proc.stderr.on('data', (d) => (err += d));
  const ports = await new Promise<{ rtsp: number; http: number }>((resolve, reject) => {
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /serving RTSP on port (\d+), HTTP API on port (\d+)/.exec(out);
      if (m) resolve({ rtsp: Number(m[1]), http: Number(m[2]) });
    });
    void exited.then((c) => reject(new Error(`serve exited ${c}: ${err.slice(-2000)}`)));
  });
  return {
    ...ports,
    log: () => err,
    stop: () => {
      proc.kill('SIGINT');
      return exited;
    },
  };
}

t.test('without auth: open on loopback with a warning; another address is refused at startup', async (t) => {
  const dir = tempDir(t);
  const data = path.join(dir, 'data');
  t.equal((await camtap(['import', path.join(CAPTURES, 'lo_udp_h264.pcap')], { data })).code, 0);
  const open = path.join(dir, 'open.yaml');
  writeFileSync(open, `dataDir: ${data}\n`);
  const s = await serve(t, open);
  const r = await fetch(`http://127.0.0.1:${s.http}/api/streams`);
  t.equal(r.status, 200, 'the API answers without credentials');
  t.equal(((await r.json()) as StreamRecord[]).length, manifest.rtp_streams.length);
  t.match(s.log(), /no `auth` in the config.*loopback only/, 'the log warns that the API is open');
  t.match(s.log(), /"host":"127\.0\.0\.1".*http api listening/, 'and it listens on 127.0.0.1 although serve.host is 0.0.0.0');
  await s.stop();

  const exposed = path.join(dir, 'exposed.yaml');
  writeFileSync(exposed, `dataDir: ${data}\nserve:\n  httpHost: 0.0.0.0\n`);
  const bad = await camtap(['serve', '--config', exposed, '--rtsp-port', '0', '--http-port', '0'], { env: { CAMTAP_ADMIN_TOKEN: '' }, timeoutMs: 60_000 });
  t.equal(bad.code, 78, 'exit 78 (configuration)');
  t.match(bad.stderr, /CAMTAP_ERR_AUTH_REQUIRED: HTTP API on 0\.0\.0\.0/, 'names the error and the address');
  t.notMatch(bad.stdout, /serving/, 'nothing was served');
});

t.test('with auth from `camtap token` and `camtap passwd`: API tokens, users and roles, taps over the API, RTSP Digest', { skip: have('ffmpeg') ? false : 'ffmpeg is the RTSP client' }, async (t) => {
  const dir = tempDir(t);
  const data = path.join(dir, 'data');
  const dropDir = path.join(dir, 'drop');
  mkdirSync(dropDir);
  t.equal((await camtap(['import', path.join(CAPTURES, 'lo_udp_h264.pcap')], { data })).code, 0);
  const streams = await camtapJson<StreamRecord[]>(['streams'], data);
  const video = streams.find((s) => s.src === VIDEO.src && s.dst === VIDEO.dst)!;

  // Entries made by the helpers, pasted into the config as an operator would.
  const tok = await camtap(['token', 'ops-script', 'operator']);
  t.equal(tok.code, 0, tok.stderr);
  const token = /#\s+(\S{40,})\n/.exec(tok.stdout)?.[1];
  t.ok(token, 'camtap token prints a token');
  t.notOk(tok.stdout.split('# Add to the config')[1]!.includes(token!), 'the config entry holds only its hash');
  const pw = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
    const p = spawn(process.execPath, [CLI, 'passwd', 'vera', 'viewer'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.on('close', (code) => resolve({ code, stdout }));
    p.stdin.end('vera pass\n');
  });
  t.equal(pw.code, 0);
  t.match(pw.stdout, /passwordHash: scrypt\$16384\$/);
  t.notMatch(pw.stdout, /vera pass/, 'the password itself is not printed');
  const entries = (s: string) => s.split('\n').filter((l) => !l.startsWith('#')).map((l) => `  ${l}`).join('\n');
  const cfg = path.join(dir, 'camtap.yaml');
  writeFileSync(
    cfg,
    `dataDir: ${data}
serve:
  host: 127.0.0.1
taps:
  - name: drop
    driver: pcap-file
    options: { watch: ${dropDir}, settleMs: 0, rescanMs: 50, checkOpen: false }
auth:
  tokens:
${entries(tok.stdout)}
  users:
${entries(pw.stdout)}
`,
  );
  const s = await serve(t, cfg, { CAMTAP_ADMIN_TOKEN: ENV_TOKEN });
  const api = `http://127.0.0.1:${s.http}`;
  const bearer = (k: string) => ({ authorization: `Bearer ${k}` });
  const basic = { authorization: `Basic ${Buffer.from('vera:vera pass').toString('base64')}` };

  const none = await fetch(`${api}/api/streams`);
  t.equal(none.status, 401, 'no credentials: 401');
  t.match(none.headers.get('www-authenticate') ?? '', /Bearer realm="camtap"/);
  t.notMatch(await none.text(), new RegExp(video.id), 'no data');
  t.equal((await fetch(`${api}/api/health`)).status, 200, '/api/health is open');
  const asVera = await fetch(`${api}/api/streams`, { headers: basic });
  t.equal(asVera.status, 200, 'vera (Basic, scrypt hash from camtap passwd): 200');
  t.equal(((await asVera.json()) as StreamRecord[]).length, manifest.rtp_streams.length);
  t.equal((await fetch(`${api}/api/taps/drop/stop`, { method: 'POST', headers: basic })).status, 403, 'vera (viewer) may not stop a tap');
  t.equal((await fetch(`${api}/api/config`, { headers: bearer(token!) })).status, 403, 'the operator token may not read the config');
  const cfgRes = await fetch(`${api}/api/config`, { headers: bearer(ENV_TOKEN) });
  t.equal(cfgRes.status, 200, 'CAMTAP_ADMIN_TOKEN reads the config');
  t.notMatch(await cfgRes.text(), /scrypt\$|sha256:/, 'with the hashes redacted');

  // The config's tap over the API.
  const tapNow = async () => ((await (await fetch(`${api}/api/taps/drop`, { headers: basic })).json()) as { status: { state: string; packets: number } }).status;
  t.equal((await tapNow()).state, 'running', 'the config tap runs');
  copyFileSync(path.join(CAPTURES, 'lo_udp_h264.pcap'), path.join(dropDir, 'a.part'));
  renameSync(path.join(dropDir, 'a.part'), path.join(dropDir, 'a.pcap'));
  for (let i = 0; i < 600 && (await tapNow()).packets < PACKETS; i++) await new Promise((r) => setTimeout(r, 100));
  t.equal((await tapNow()).packets, PACKETS, `the tap took the dropped capture: ${PACKETS} packets (capinfos)`);
  const stop = await fetch(`${api}/api/taps/drop/stop`, { method: 'POST', headers: bearer(token!) });
  t.equal(stop.status, 200, 'the operator token stops it');
  t.equal((await tapNow()).state, 'stopped');

  // RTSP: Digest for the users of the same config.
  const url = `rtsp://127.0.0.1:${s.rtsp}/replay/${video.id}?speed=max`;
  const ok = await run('ffmpeg', ['-nostdin', '-v', 'error', '-rtsp_transport', 'tcp', '-i', url.replace('rtsp://', 'rtsp://vera:vera%20pass@'), '-map', '0:v', '-f', 'framecrc', '-'], { timeoutMs: 120_000 });
  t.equal(ok.code, 0, `ffmpeg with vera's password exits 0 ${ok.stderr.slice(-500)}`);
  t.equal(ok.stdout.split('\n').filter((l) => /^0,/.test(l)).length, VIDEO.decode!.frames_decoded, `${VIDEO.decode!.frames_decoded} frames (manifest)`);
  const anon = await run('ffmpeg', ['-nostdin', '-v', 'error', '-rtsp_transport', 'tcp', '-i', url, '-f', 'null', '-'], { timeoutMs: 60_000 });
  t.not(anon.code, 0, 'ffmpeg without credentials fails');
  t.match(anon.stderr, /401/, 'with 401 Unauthorized');
  t.equal(await s.stop(), 0, 'serve stops cleanly on SIGINT');
});
