/**
 * The example vendor profile (camera-profiles/example-acme) on its simulated camera
 * (test/helpers/acme-sim.js, HTTP Digest) with the GStreamer lab camera serving its RTSP
 * path: the contract suite as a vendor would run it, plus the vendor-specific parts.
 * What the camera does is observed without the profile: its parameters through curl
 * (a real HTTP Digest client), and the RTP its push destination sends, on a UDP socket.
 */
import t, { type Test } from 'tap';
import dgram from 'node:dgram';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import createAcmeProfile, { parseCameraDate, parseParams } from '../../camera-profiles/example-acme/index.js';
import type { ProfileCamera, RedirectTarget } from '../../core/contracts/index.js';
import { runProfileContract, startProcess, type RedirectObservation } from './contract.js';
import { cameraMissing, freePort, freeUdpPair, have, run, startCamera } from '../helpers/peers.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SIM = path.join(ROOT, 'test/helpers/acme-sim.js');
const USER = 'root';
const PASSWORD = 'Acme-pass-42';
/** The simulated camera's clock runs 93.25 s ahead of this host's. */
const CLOCK_OFFSET_MS = 93_250;
const SERIAL = 'ACCC8E00C0DE';
/** The SSRC acme-sim.js pushes with (root.Push.P0.SSRC). */
const PUSH_SSRC = 2890844526;

interface Acme {
  camera: ProfileCamera;
  log: string;
}

/** The lab camera at ACME's RTSP path and the ACME API simulator pointing at it. */
async function startAcme(t: Test, auth: 'digest' | 'basic' = 'digest'): Promise<Acme> {
  const rtsp = await startCamera({ port: await freePort(), path: '/axis-media/media.amp', auth: 'digest', user: USER, password: PASSWORD });
  t.teardown(() => rtsp.stop());
  const port = await freePort();
  const log = path.join(t.testdir({}), 'acme-requests.jsonl');
  const rtspPort = new URL(rtsp.url.replace(/^rtsp:/, 'http:')).port;
  await startProcess(t, process.execPath, [SIM, '--port', String(port), '--user', USER, '--password', PASSWORD, '--auth', auth, '--rtsp-port', rtspPort, '--serial', SERIAL, '--clock-offset', String(CLOCK_OFFSET_MS), '--log', log], /acme sim ready/);
  return { camera: { name: 'acme-door', address: '127.0.0.1', apiUrl: `http://127.0.0.1:${port}`, user: USER, password: PASSWORD }, log };
}

/** The camera's push destination as curl reads it (not through the profile). */
async function observePush(camera: ProfileCamera): Promise<RedirectObservation> {
  const r = await run('curl', ['-sS', '--fail', '--digest', '-u', `${USER}:${PASSWORD}`, `${camera.apiUrl}/axis-cgi/param.cgi?action=list&group=root.Push.P0`], { timeoutMs: 20000 });
  if (r.code !== 0) throw new Error(`curl failed (${r.code}): ${r.stderr}`);
  const p = new Map(r.stdout.split(/\r?\n/).filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as [string, string]));
  return { host: p.get('root.Push.P0.Host') ?? '', port: Number(p.get('root.Push.P0.Port')), active: p.get('root.Push.P0.Enabled') === 'yes' };
}

/** UDP receivers bound at redirect targets: resolve on the first RTP packet (RFC 3550 §5.1 header read here). */
const receivers = new Map<number, Promise<{ version: number; payloadType: number; ssrc: number }>>();
async function udpTarget(t: Test): Promise<RedirectTarget> {
  const port = await freeUdpPair();
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(port, '127.0.0.1', () => resolve());
  });
  receivers.set(
    port,
    new Promise((resolve) =>
      sock.on('message', (m) => {
        if (m.length >= 12) resolve({ version: m[0]! >> 6, payloadType: m[1]! & 0x7f, ssrc: m.readUInt32BE(8) });
      }),
    ),
  );
  t.teardown(() => new Promise<void>((r) => sock.close(() => r())));
  return { host: '127.0.0.1', port };
}

const missing = await cameraMissing();
const noCurl = have('curl') ? null : 'curl is not installed (it reads the camera parameters independently of the profile)';
const skip = missing ?? noCurl;
if (skip) console.log(`# skipping example-acme camera tests: ${skip}`);

t.test('example-acme', { skip: skip ?? false }, async (t) => {
  const tcp = { transport: 'tcp' as const, src: '192.0.2.10', sport: 50000, dst: '192.0.2.20', dport: 80 };
  await runProfileContract(t, (ctx) => createAcmeProfile(ctx), {
    modulePath: path.join(ROOT, 'camera-profiles/example-acme'),
    start: async (t) => (await startAcme(t)).camera,
    // acme-sim.js parameters and flags; camera.py's stream.
    truth: { manufacturer: 'ACME', model: 'Q1615', firmware: '9.80.1', serial: SERIAL, stream: { codec: 'h264', width: 640, height: 360 }, clockOffsetMs: CLOCK_OFFSET_MS, auth: true },
    flows: [
      { name: 'a VAPIX-style CGI request', flow: tcp, payload: Buffer.from('GET /axis-cgi/param.cgi?action=list&group=root.Brand HTTP/1.1\r\nHost: cam\r\n\r\n'), kind: 'http' },
      { name: 'an RTSP request for the ACME media path', flow: { ...tcp, dport: 8554 }, payload: Buffer.from('DESCRIBE rtsp://192.0.2.20:8554/axis-media/media.amp?videocodec=h264 RTSP/1.0\r\nCSeq: 2\r\n\r\n'), kind: 'rtsp' },
      { name: 'another HTTP path is not ACME', flow: tcp, payload: Buffer.from('GET /index.html HTTP/1.1\r\nHost: cam\r\n\r\n'), kind: null },
    ],
    hints: [
      { name: 'ACME SDP without an rtpmap for 96', sdp: 'v=0\r\na=tool:ACME RTSP\r\nm=video 0 RTP/AVP 96\r\na=control:trackID=1\r\n', hints: [{ payloadType: 96, codec: 'H264', clockRate: 90000 }] },
      { name: 'ACME SDP with its rtpmap needs no hint', sdp: 'v=0\r\na=tool:ACME RTSP\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n', hints: [] },
      { name: 'another vendor\'s SDP gets no ACME guess', sdp: 'v=0\r\na=tool:GStreamer\r\nm=video 0 RTP/AVP 96\r\n', hints: [] },
    ],
    redirect: {
      target: udpTarget,
      observe: observePush,
      delivered: async (target) => {
        const first = await receivers.get(target.port)!;
        // What acme-sim.js sends: RTP version 2, payload type 96, its push SSRC.
        if (first.version !== 2 || first.payloadType !== 96 || first.ssrc !== PUSH_SSRC) throw new Error(`unexpected packet ${JSON.stringify(first)}`);
      },
    },
  });

  await t.test('the camera\'s own error line for a rejected update reaches the caller', async (t) => {
    const { camera } = await startAcme(t);
    const p = createAcmeProfile();
    const bad = { profile: 'example-acme', camera: camera.name, takenAt: 0, data: { Enabled: 'no', Host: '', Port: 'abc', Source: '1' } };
    await t.rejects(p.restore!(camera, bad), { code: 'CAMTAP_ERR_CAMERA_API', message: "camera acme-door: restore failed: Error setting 'root.Push.P0.Port' to 'abc'!" });
    t.same(await observePush(camera), { host: '', port: 0, active: false }, 'nothing changed');
  });

  await t.test('HTTP Basic works as well as Digest', async (t) => {
    const { camera } = await startAcme(t, 'basic');
    const d = await createAcmeProfile().describe!(camera);
    t.equal(d.serial, SERIAL);
    await t.rejects(createAcmeProfile().describe!({ ...camera, password: 'nope' }), { code: 'CAMTAP_ERR_CAMERA_AUTH' });
  });

  await t.test('a redirect needs an IP address and a port', async (t) => {
    const p = createAcmeProfile();
    const camera: ProfileCamera = { name: 'x', address: '127.0.0.1', apiUrl: 'http://127.0.0.1:9' };
    await t.rejects(p.redirect!(camera, { host: 'camtap.local', port: 5000 }), { code: 'CAMTAP_ERR_PROFILE_UNSUPPORTED' });
    await t.rejects(p.redirect!(camera, { host: '127.0.0.1', port: 70000 }), { code: 'CAMTAP_ERR_PROFILE_UNSUPPORTED' });
  });
});

t.test('parameter lists and dates read as VAPIX writes them', async (t) => {
  t.same(parseParams("root.Brand.Brand=ACME\r\nroot.A.B=x=y\r\n# Error: Error -1 getting param in group 'Nope'\r\n"), {
    params: new Map([
      ['root.Brand.Brand', 'ACME'],
      ['root.A.B', 'x=y'],
    ]),
    errors: ["Error -1 getting param in group 'Nope'"],
  });
  t.equal(parseCameraDate('Nov 24, 2026 01:32:24\r\n'), Date.parse('2026-11-24T01:32:24Z'));
  t.equal(parseCameraDate('Feb 03, 2025 23:59:59'), Date.parse('2025-02-03T23:59:59Z'));
  for (const bad of ['', '2026-11-24 01:32:24', 'Foo 24, 2026 01:32:24', 'Nov 24 2026 01:32:24']) t.ok(Number.isNaN(parseCameraDate(bad)), JSON.stringify(bad));
});
