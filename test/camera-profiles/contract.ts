/**
 * The camera profile contract suite (core/contracts/camera-profile.ts), for any profile:
 * a vendor runs it from their own test against a running camera (a simulator or a lab
 * device), giving the truth about that camera from outside the profile:
 *
 *   import t from 'tap';
 *   import { runProfileContract } from '<camtap>/test/camera-profiles/contract.js';
 *   import make from '../index.js';
 *   runProfileContract(t, (ctx) => make(ctx), {
 *     modulePath: new URL('..', import.meta.url).pathname,
 *     start: async (t) => ({ name: 'cam1', address: '127.0.0.1', apiUrl: ..., user, password }),
 *     truth: { manufacturer: 'ACME', stream: { codec: 'h264', width: 640, height: 360 }, clockOffsetMs: 0, auth: true },
 *   });
 *
 * What it checks: meta passes the plugin host's check (and the folder loads like a
 * config's `plugins:` entry); declared capabilities match the methods; `match` and
 * `streamHints` answer the given cases and never throw on garbage; `describe` says what
 * the camera is; the `streamUri` opens in ffprobe with the given codec and size and has
 * no credentials in it; `time` brackets the true clock offset within its uncertainty;
 * `redirect` changes what the camera does (as the fixture observes it from the camera's
 * side) and `restore` from a JSON copy of the saved state puts it back; refused
 * credentials give CAMTAP_ERR_CAMERA_AUTH, an unreachable camera and an aborted call
 * CAMTAP_ERR_CAMERA_API; and the password shows up nowhere: no result (but
 * `streamUri().password`), error, saved state or log line.
 */
import type { Test } from 'tap';
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import {
  PROFILE_CAPABILITIES,
  isCamtapError,
  type CameraProfile,
  type DiscoveredCamera,
  type FlowInfo,
  type Logger,
  type PluginContext,
  type ProfileCamera,
  type ProfileCapability,
  type ProfileFlowKind,
  type RedirectTarget,
  type StreamHint,
} from '../../core/contracts/index.js';
import { PluginHost, checkMeta } from '../../core/plugin-host.js';
import { silentLogger } from '../../core/logger.js';
import { have, run } from '../helpers/peers.js';

/** What is true about the camera, from the simulator's flags or the device's label: never from the profile. */
export interface ProfileTruth {
  manufacturer?: string;
  model?: string;
  firmware?: string;
  serial?: string;
  /** ffprobe's view of the default stream (`codec_name`, `width`, `height`). */
  stream?: { codec: string; width?: number; height?: number };
  /** Camera clock minus this host's clock, ms (0 for a camera on this host's clock). */
  clockOffsetMs?: number;
  /** The camera checks credentials: a wrong password must give CAMTAP_ERR_CAMERA_AUTH. */
  auth?: boolean;
}

/** A first packet and what `match` must answer for it. */
export interface FlowCase {
  name: string;
  flow: FlowInfo;
  payload: Buffer;
  kind: ProfileFlowKind | null;
}

/** An SDP and the hints `streamHints` must give for it. */
export interface HintCase {
  name: string;
  sdp: string;
  hints: StreamHint[];
}

/** What the camera does with its stream, read from the camera's side (simulator state or log, a real tool). */
export interface RedirectObservation {
  host: string;
  port: number;
  /** It is sending there now. */
  active: boolean;
}

export interface RedirectFixture {
  /** The camera record to redirect with (e.g. with options a profile needs); the started one when absent. */
  camera?(camera: ProfileCamera): ProfileCamera;
  /** Where to redirect to (bind any receiving socket here; clean up with `t.teardown`). */
  target(t: Test): Promise<RedirectTarget>;
  /** The camera's current destination, observed without the profile. */
  observe(camera: ProfileCamera): Promise<RedirectObservation>;
  /** Resolves once media from the camera arrived at the target (the real effect), when the fixture can see it. */
  delivered?(target: RedirectTarget): Promise<void>;
}

export interface DiscoverFixture {
  /** Runs the profile's discovery where the camera answers (e.g. inside an isolated network namespace). */
  run(): Promise<DiscoveredCamera[]>;
  /** The camera that must be among the answers. */
  expect: { id?: string; apiUrl: string };
}

export interface ProfileFixture {
  /** The profile's folder or package, loaded through the plugin host as a config's `plugins:` entry. */
  modulePath?: string;
  /** Plugin options given to the factory as `ctx.options`. */
  options?: Record<string, unknown>;
  /** Starts the camera and answers its record, with working credentials when it checks them. Stop it with `t.teardown`. */
  start(t: Test): Promise<ProfileCamera>;
  truth: ProfileTruth;
  flows?: FlowCase[];
  hints?: HintCase[];
  redirect?: RedirectFixture;
  discover?: DiscoverFixture | { skip: string };
  /** The record with the camera's API moved to `closedPort`, where nothing listens. Default: the port of `url` and `apiUrl` replaced. */
  unreachable?(camera: ProfileCamera, closedPort: number): ProfileCamera;
}

/** A logger that keeps every line, to look for credentials in. */
function capturingLogger(lines: string[], bindings: Record<string, unknown> = {}): Logger {
  const rec = (level: string) => (obj: object | string, msg?: string) => {
    lines.push(`${level} ${JSON.stringify(bindings)} ${typeof obj === 'string' ? obj : JSON.stringify(obj)} ${msg ?? ''}`);
  };
  return { debug: rec('debug'), info: rec('info'), warn: rec('warn'), error: rec('error'), child: (b) => capturingLogger(lines, { ...bindings, ...b }) };
}

/** Everything an error says: message, details and the causes' messages. */
function errorText(e: unknown): string {
  const parts: string[] = [];
  for (let x: unknown = e, i = 0; x && i < 5; x = (x as { cause?: unknown }).cause, i++) {
    parts.push(String((x as Error).message ?? x));
    if (isCamtapError(x)) parts.push(JSON.stringify(x.toJSON()));
  }
  return parts.join(' | ');
}

/** A TCP port on 127.0.0.1 nothing listens on (free a moment ago). */
function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

function defaultUnreachable(camera: ProfileCamera, port: number): ProfileCamera {
  const move = (u: string | undefined) => {
    if (!u) return u;
    const x = new URL(u);
    x.port = String(port);
    return x.href;
  };
  const c: ProfileCamera = { ...camera };
  if (camera.url) c.url = move(camera.url)!;
  if (camera.apiUrl) c.apiUrl = move(camera.apiUrl)!;
  return c;
}

/** ffprobe's first video stream of an RTSP URL (over TCP), credentials put into the URL for ffprobe only. */
async function ffprobe(uri: string, user: string | undefined, password: string | undefined): Promise<{ codec_name?: string; width?: number; height?: number } | null> {
  const u = new URL(uri);
  if (user !== undefined) {
    u.username = encodeURIComponent(user);
    u.password = encodeURIComponent(password ?? '');
  }
  const r = await run('ffprobe', ['-v', 'error', '-rtsp_transport', 'tcp', '-select_streams', 'v:0', '-show_entries', 'stream=codec_name,width,height', '-of', 'json', u.href], { timeoutMs: 30000 });
  if (r.code !== 0) return null;
  return (JSON.parse(r.stdout) as { streams?: Array<{ codec_name?: string; width?: number; height?: number }> }).streams?.[0] ?? null;
}

/** Deterministic garbage (xorshift32), so a failure reproduces. */
function garbage(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

/**
 * For fixtures: starts a simulator process, resolves once its output matches `ready`,
 * and stops it by PID (SIGTERM, SIGKILL after 5 s) when `t` ends, or with SIGKILL if the
 * test process exits first.
 */
export function startProcess(t: Test, cmd: string, args: string[], ready: RegExp, timeoutMs = 20000): Promise<{ pid: number; output(): string }> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const killNow = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.once('exit', killNow);
  t.teardown(async () => {
    process.off('exit', killNow);
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const timer = setTimeout(killNow, 5000);
    await exited;
    clearTimeout(timer);
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${cmd}: no ${ready} within ${timeoutMs} ms:\n${out.slice(-2000)}`)), timeoutMs);
    const onData = (d: Buffer) => {
      out += d.toString('utf8');
      if (ready.test(out)) {
        clearTimeout(timer);
        resolve({ pid: child.pid!, output: () => out });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${cmd} exited (${code}) before ${ready}:\n${out.slice(-2000)}`));
    });
  });
}

const REDIRECT_CAPS: ProfileCapability[] = ['redirect-unicast', 'redirect-multicast'];

/**
 * Runs the contract on a profile against one camera. `makeProfile` builds the profile
 * from a plugin context (for a module exporting a plugin object: `() => mod.default`).
 * Resolves when all checks ran.
 */
export function runProfileContract(t: Test, makeProfile: (ctx: PluginContext) => CameraProfile | Promise<CameraProfile>, fixture: ProfileFixture): Promise<unknown> {
  return t.test('camera profile contract', async (t) => {
    const logLines: string[] = [];
    /** Every text a profile produced (results, errors, saved state), searched for the password at the end. */
    const produced: string[] = [];
    const ctx: PluginContext = { log: capturingLogger(logLines), options: fixture.options ?? {}, dataDir: t.testdirName };
    const profile = await makeProfile(ctx);
    t.teardown(async () => {
      await profile.close?.();
    });
    const caps = profile.capabilities ?? [];
    const has = (c: ProfileCapability) => caps.includes(c);
    const camera = await fixture.start(t);
    const name = profile.meta.name;

    await t.test('exports a meta the plugin host accepts', async (t) => {
      t.doesNotThrow(() => checkMeta(profile.meta, name));
      t.equal(profile.meta.kind, 'camera-profile');
      if (fixture.modulePath) {
        const host = new PluginHost({ log: silentLogger, dataDir: t.testdirName, pluginOptions: { [name]: fixture.options ?? {} } });
        const meta = await host.load(fixture.modulePath);
        t.equal(meta.name, name, 'the folder loads as a plugin');
        t.ok(host.cameraProfiles.some((p) => p.meta.name === name), 'and registers as a camera profile');
        for (const p of host.cameraProfiles) await p.close?.();
      }
    });

    await t.test('declares exactly the capabilities it implements', async (t) => {
      for (const c of caps) t.ok(PROFILE_CAPABILITIES.includes(c), `${c} is a known capability`);
      t.equal(new Set(caps).size, caps.length, 'no capability twice');
      const implemented: Record<ProfileCapability, boolean> = {
        describe: typeof profile.describe === 'function',
        'stream-uri': typeof profile.streamUri === 'function',
        time: typeof profile.time === 'function',
        discover: typeof profile.discover === 'function',
        'redirect-unicast': typeof profile.redirect === 'function' && typeof profile.restore === 'function',
        'redirect-multicast': typeof profile.redirect === 'function' && typeof profile.restore === 'function',
      };
      for (const c of PROFILE_CAPABILITIES.filter((x) => !REDIRECT_CAPS.includes(x))) t.equal(implemented[c], has(c), `${c}: declared ${has(c)}, implemented ${implemented[c]}`);
      const redirects = REDIRECT_CAPS.some(has);
      t.equal(typeof profile.redirect === 'function', redirects, 'redirect() exactly when a redirect capability is declared');
      t.equal(typeof profile.restore === 'function', redirects, 'restore() exactly when a redirect capability is declared');
    });

    await t.test('match answers the known first packets and never throws on garbage', async (t) => {
      if (!profile.match) return t.pass('no match hook');
      for (const c of fixture.flows ?? []) t.equal(profile.match(c.flow, c.payload), c.kind, c.name);
      const tcp: FlowInfo = { transport: 'tcp', src: '192.0.2.1', sport: 40000, dst: '192.0.2.2', dport: 9000 };
      const udp: FlowInfo = { ...tcp, transport: 'udp' };
      const junk = [Buffer.alloc(0), Buffer.from([0x52]), Buffer.from('RTSP/1.0 2'), Buffer.from('POST /onvif/device_service HTTP/1.1\r\n'), garbage(1500, 1), garbage(64, 2), Buffer.alloc(65536, 0x41)];
      for (const [i, p] of junk.entries()) {
        for (const f of [tcp, udp]) {
          let kind: unknown;
          t.doesNotThrow(() => (kind = profile.match!(f, p)), `${f.transport} junk #${i} does not throw`);
          t.ok(kind === null || ['rtsp', 'http', 'onvif', 'rtp', 'rtcp'].includes(kind as string), `${f.transport} junk #${i}: a kind or null`);
          if (f.transport === 'udp') t.notOk(['rtsp', 'http', 'onvif'].includes(kind as string), `udp junk #${i} is never a TCP protocol`);
        }
      }
    });

    await t.test('streamHints answers the known SDPs and never throws on garbage', async (t) => {
      if (!profile.streamHints) return t.pass('no streamHints hook');
      for (const c of fixture.hints ?? []) t.same(profile.streamHints(c.sdp), c.hints, c.name);
      for (const sdp of ['', 'm=video', 'm=video 0 RTP/AVP', garbage(2000, 3).toString('latin1'), 'm=video 0 RTP/AVP 96 96 96\r\na=rtpmap:96 /\r\n']) {
        let out: unknown;
        t.doesNotThrow(() => (out = profile.streamHints!(sdp)));
        t.ok(Array.isArray(out), 'an array');
      }
    });

    await t.test('describe says what the camera is', { skip: has('describe') ? false : 'no describe capability' }, async (t) => {
      const d = await profile.describe!(camera);
      produced.push(JSON.stringify(d));
      t.same(JSON.parse(JSON.stringify(d)), d, 'plain JSON');
      for (const k of ['manufacturer', 'model', 'firmware', 'serial'] as const) if (fixture.truth[k] !== undefined) t.equal(d[k], fixture.truth[k], k);
      for (const c of d.capabilities) t.ok(caps.includes(c), `device capability ${c} is one the profile declares`);
      if (d.capabilities.includes('stream-uri')) t.ok(d.streams.length > 0, 'a device that streams lists a stream');
      if (fixture.truth.stream && d.streams[0]?.codec !== undefined) t.equal(d.streams[0].codec, fixture.truth.stream.codec, 'default stream codec, as ffprobe names it');
    });

    await t.test('streamUri opens in ffprobe and carries no credentials', { skip: !has('stream-uri') ? 'no stream-uri capability' : !have('ffprobe') ? 'ffprobe is not installed' : false }, async (t) => {
      const s = await profile.streamUri!(camera);
      produced.push(JSON.stringify({ ...s, password: undefined }));
      const u = new URL(s.uri);
      t.match(u.protocol, /^rtsps?:$/, 'an RTSP URL');
      t.equal(u.username, '', 'no user in the URI');
      t.equal(u.password, '', 'no password in the URI');
      t.equal(s.user, camera.user, 'the camera record\'s user beside it');
      if (fixture.truth.stream) {
        const probe = await ffprobe(s.uri, s.user, s.password);
        t.ok(probe, 'ffprobe opens it');
        t.equal(probe?.codec_name, fixture.truth.stream.codec, 'codec');
        if (fixture.truth.stream.width !== undefined) t.equal(probe?.width, fixture.truth.stream.width, 'width');
        if (fixture.truth.stream.height !== undefined) t.equal(probe?.height, fixture.truth.stream.height, 'height');
      }
      if (has('describe')) {
        for (const st of (await profile.describe!(camera)).streams) t.equal((await profile.streamUri!(camera, { stream: st.id })).stream, st.id, `stream ${st.id} has a URI`);
      }
      await t.rejects(profile.streamUri!(camera, { stream: 'no-such-stream' }), { code: 'CAMTAP_ERR_PROFILE_UNSUPPORTED' }, 'an unknown stream is refused');
    });

    await t.test('time brackets the true clock offset', { skip: !has('time') ? 'no time capability' : fixture.truth.clockOffsetMs === undefined ? 'the fixture does not know the camera clock' : false }, async (t) => {
      const r = await profile.time!(camera);
      produced.push(JSON.stringify(r));
      t.ok(Number.isFinite(r.uncertaintyMs) && r.uncertaintyMs > 0, 'a positive uncertainty');
      const err = Math.abs(r.offsetMs - fixture.truth.clockOffsetMs!);
      t.ok(err <= r.uncertaintyMs, `offset ${r.offsetMs} ms is within ±${r.uncertaintyMs} ms of the truth ${fixture.truth.clockOffsetMs} ms (off by ${err})`);
      t.type(r.source, 'string');
    });

    await t.test('redirect sends the stream to the target and restore from saved JSON puts it back', { skip: !REDIRECT_CAPS.some(has) ? 'no redirect capability' : !fixture.redirect ? 'the fixture cannot observe a redirect' : false }, async (t) => {
      const rf = fixture.redirect!;
      const cam = rf.camera ? rf.camera(camera) : camera;
      const target = await rf.target(t);
      const before = await rf.observe(cam);
      const saved = await profile.redirect!(cam, target);
      const json = JSON.stringify(saved);
      produced.push(json);
      t.equal(saved.profile, name, 'saved state names the profile');
      t.equal(saved.camera, cam.name, 'and the camera');
      t.same(await rf.observe(cam), { host: target.host, port: target.port, active: true }, 'the camera now sends to the target');
      if (rf.delivered) {
        await rf.delivered(target);
        t.pass('media arrived at the target');
      }
      await t.rejects(profile.restore!(cam, { ...saved, profile: `not-${name}` }), { code: 'CAMTAP_ERR_PROFILE_UNSUPPORTED' }, "another profile's saved state is refused");
      t.same(await rf.observe(cam), { host: target.host, port: target.port, active: true }, 'and changes nothing');
      await profile.restore!(cam, JSON.parse(json));
      t.same(await rf.observe(cam), before, 'restored as before');
    });

    await t.test('refused credentials are CAMTAP_ERR_CAMERA_AUTH and change nothing', { skip: !fixture.truth.auth ? 'the camera does not check credentials' : false }, async (t) => {
      const bad: ProfileCamera = { ...camera, password: `${camera.password ?? ''}-wrong` };
      if (has('describe')) {
        const e = await profile.describe!(bad).catch((x: unknown) => x);
        produced.push(errorText(e));
        t.ok(isCamtapError(e, 'CAMTAP_ERR_CAMERA_AUTH'), `describe: ${errorText(e)}`);
      }
      if (REDIRECT_CAPS.some(has) && fixture.redirect) {
        const rf = fixture.redirect;
        const cam = rf.camera ? rf.camera(bad) : bad;
        const before = await rf.observe(cam);
        const e = await profile.redirect!(cam, await rf.target(t)).catch((x: unknown) => x);
        produced.push(errorText(e));
        t.ok(isCamtapError(e, 'CAMTAP_ERR_CAMERA_AUTH'), `redirect: ${errorText(e)}`);
        t.same(await rf.observe(cam), before, 'the camera is unchanged');
      }
    });

    await t.test('an unreachable camera and an aborted call are CAMTAP_ERR_CAMERA_API naming the camera', async (t) => {
      const port = await closedPort();
      const gone = (fixture.unreachable ?? defaultUnreachable)(camera, port);
      const calls: Array<[string, (c: ProfileCamera, signal?: AbortSignal) => Promise<unknown>]> = [];
      if (has('describe')) calls.push(['describe', (c, signal) => profile.describe!(c, { signal })]);
      if (has('time')) calls.push(['time', (c, signal) => profile.time!(c, { signal })]);
      if (calls.length === 0) return t.pass('no call that must reach the camera');
      for (const [op, fn] of calls) {
        const e = await fn(gone).catch((x: unknown) => x);
        produced.push(errorText(e));
        t.ok(isCamtapError(e, 'CAMTAP_ERR_CAMERA_API'), `${op} on a closed port: ${errorText(e)}`);
        t.match((e as Error).message, camera.name, `${op}: the message names the camera`);
        const ac = new AbortController();
        ac.abort();
        const a = await fn(camera, ac.signal).catch((x: unknown) => x);
        produced.push(errorText(a));
        t.ok(isCamtapError(a, 'CAMTAP_ERR_CAMERA_API'), `${op} with an aborted signal: ${errorText(a)}`);
      }
    });

    await t.test('discover finds the camera', { skip: !has('discover') ? 'no discover capability' : !fixture.discover ? 'the fixture cannot run a discovery' : 'skip' in fixture.discover ? fixture.discover.skip : false }, async (t) => {
      const d = fixture.discover as DiscoverFixture;
      const found = await d.run();
      produced.push(JSON.stringify(found));
      const hit = found.find((c) => c.apiUrls.includes(d.expect.apiUrl));
      t.ok(hit, `${d.expect.apiUrl} among ${JSON.stringify(found)}`);
      if (d.expect.id !== undefined) t.equal(hit?.id, d.expect.id, 'its id');
      t.equal(hit?.profile, name, 'found by this profile');
    });

    await t.test('the password appears in no result, error, saved state or log line', async (t) => {
      const pw = camera.password;
      if (!pw) return t.pass('the camera has no password');
      for (const [i, s] of produced.entries()) t.notOk(s.includes(pw), `output #${i} has no password`);
      t.notOk(logLines.some((l) => l.includes(pw)), `${logLines.length} log lines have no password`);
    });

    await t.test('close is safe twice', async (t) => {
      await profile.close?.();
      await profile.close?.();
      t.pass('closed twice');
    });
  });
}
