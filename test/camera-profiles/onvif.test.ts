/**
 * The onvif profile through the npm `onvif` client against real peers on loopback: the
 * ONVIF simulator (test/helpers/onvif-sim.js, WS-UsernameToken checked) whose
 * GetStreamUri names the GStreamer lab camera (Digest, same credentials), and, for
 * WS-Discovery, a responder inside a network namespace of its own (only `lo`, with a
 * multicast route) so the probe's multicast never leaves this test.
 *
 * The simulator's clock is shifted by a known amount (a preload replacing its `Date`),
 * which is the ground truth `time()` must find. What the camera was asked to do on a
 * redirect is read from the simulator's request log, not from the profile.
 */
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { readFileSync, existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { randomUUID } from 'node:crypto';
import createOnvifProfile, { isMulticast } from '../../camera-profiles/onvif/index.js';
import { toDiscovered } from '../../camera-profiles/onvif/discovery.js';
import type { DiscoveredCamera, ProfileCamera } from '../../core/contracts/index.js';
import { runProfileContract, startProcess, type RedirectObservation } from './contract.js';
import { cameraMissing, freePort, have, run, startCamera } from '../helpers/peers.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const SIM = path.join(ROOT, 'test/helpers/onvif-sim.js');
const USER = 'admin';
const PASSWORD = 'Onv-if-9x';
/** The simulated camera's clock runs 2 h 17 min 42.5 s behind this host's. */
const SKEW_MS = -8_262_500;
const SKEW_PRELOAD = `data:text/javascript,${encodeURIComponent(
  `const R = Date, O = ${SKEW_MS}; class D extends R { constructor(...a) { if (a.length) super(...a); else super(R.now() + O); } static now() { return R.now() + O; } } globalThis.Date = D;`,
)}`;

interface Sim {
  camera: ProfileCamera;
  port: number;
  log: string;
}

/** The lab camera plus the ONVIF simulator pointing at it, with a request log. */
async function startSim(t: Test): Promise<Sim> {
  const rtsp = await startCamera({ port: await freePort(), auth: 'digest', user: USER, password: PASSWORD });
  t.teardown(() => rtsp.stop());
  const port = await freePort();
  const log = path.join(t.testdir({}), 'onvif-requests.jsonl');
  await startProcess(t, process.execPath, ['--import', SKEW_PRELOAD, SIM, '--port', String(port), '--bind', '127.0.0.1', '--rtsp', rtsp.url, '--user', USER, '--password', PASSWORD, '--log', log], /onvif sim ready/);
  return { camera: { name: 'lab-onvif', address: '127.0.0.1', apiUrl: `http://127.0.0.1:${port}/onvif/device_service`, user: USER, password: PASSWORD }, port, log };
}

/** The simulator's request log: what the camera was asked, in order. */
function requests(log: string): Array<{ path: string; action: string | null; body: string }> {
  if (!existsSync(log)) return [];
  return readFileSync(log, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { path: string; action: string | null; body: string });
}

const tag = (body: string, name: string) => new RegExp(`<(?:\\w+:)?${name}(?:\\s[^>]*)?>([^<]*)<`).exec(body)?.[1] ?? null;

/**
 * Where the simulated camera multicasts: the last SetVideoEncoderConfiguration it
 * received, else its built-in configuration (onvif-sim.js vec(): 0.0.0.0, port 0, AutoStart false).
 */
function observeMulticast(log: string): RedirectObservation {
  const set = requests(log).filter((r) => r.action === 'SetVideoEncoderConfiguration').pop();
  if (!set) return { host: '0.0.0.0', port: 0, active: false };
  const mc = /<(?:\w+:)?Multicast[\s>][\s\S]*?<\/(?:\w+:)?Multicast>/.exec(set.body)?.[0] ?? '';
  const host = tag(mc, 'IPv4Address') ?? tag(mc, 'IPv6Address') ?? '';
  return { host, port: Number(tag(mc, 'Port')), active: tag(mc, 'AutoStart') === 'true' && host !== '0.0.0.0' && host !== '' };
}

/** Can this process make a network namespace (root or CAP_SYS_ADMIN, `unshare` and `ip` installed)? */
function netnsMissing(): string | null {
  if (!have('unshare') || !have('ip')) return 'unshare or ip (util-linux, iproute2) is not installed';
  const r = spawnSync('unshare', ['-n', 'ip', 'link', 'set', 'lo', 'up'], { encoding: 'utf8' });
  return r.status === 0 ? null : `cannot create a network namespace (${(r.stderr || '').trim() || `exit ${r.status}`}): WS-Discovery multicast is only probed in an isolated namespace`;
}

/**
 * Runs the profile's discover() inside a new network namespace, beside a WS-Discovery
 * responder (ProbeMatch per WS-Discovery 2005/04 §5.3, as an ONVIF device sends it,
 * ONVIF Core §7.3) that announces `xaddr` with `urn`.
 */
async function discoverInNetns(t: Test, urn: string, xaddr: string): Promise<DiscoveredCamera[]> {
  const script = path.join(t.testdir({}), 'discover.mjs');
  const profileUrl = pathToFileURL(path.join(ROOT, 'camera-profiles/onvif/index.js')).href;
  writeFileSync(
    script,
    `import dgram from 'node:dgram';
const { default: make } = await import(${JSON.stringify(profileUrl)});
const responder = dgram.createSocket({ type: 'udp4', reuseAddr: true });
responder.on('message', (msg, rinfo) => {
  const id = /MessageID[^>]*>([^<]+)</.exec(msg.toString())?.[1] ?? '';
  if (!/NetworkVideoTransmitter/.test(msg.toString())) return;
  const xml = '<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery" xmlns:dn="http://www.onvif.org/ver10/network/wsdl">' +
    '<s:Header><a:MessageID>urn:uuid:${randomUUID()}</a:MessageID><a:RelatesTo>' + id + '</a:RelatesTo><a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>' +
    '<a:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches</a:Action></s:Header><s:Body><d:ProbeMatches><d:ProbeMatch>' +
    '<a:EndpointReference><a:Address>${urn}</a:Address></a:EndpointReference><d:Types>dn:NetworkVideoTransmitter</d:Types>' +
    '<d:Scopes>onvif://www.onvif.org/name/SimCam onvif://www.onvif.org/Profile/Streaming</d:Scopes><d:XAddrs>${xaddr}</d:XAddrs>' +
    '<d:MetadataVersion>1</d:MetadataVersion></d:ProbeMatch></d:ProbeMatches></s:Body></s:Envelope>';
  responder.send(xml, rinfo.port, rinfo.address);
});
responder.bind(3702, () => {
  responder.addMembership('239.255.255.250', '127.0.0.1');
  make({}).discover({ timeoutMs: 1500 }).then((found) => { console.log('FOUND ' + JSON.stringify(found)); responder.close(); }, (e) => { console.log('FAILED ' + e.message); process.exit(1); });
});
`,
  );
  const loader = process.execArgv.filter((a) => a.includes('@tapjs/typescript'));
  const r = await run('unshare', ['-n', 'sh', '-c', 'ip link set lo up && ip route add 224.0.0.0/4 dev lo && cd "$0" && exec "$@"', ROOT, process.execPath, ...loader, script], { timeoutMs: 60000 });
  const line = r.stdout.split('\n').find((l) => l.startsWith('FOUND '));
  if (!line) throw new Error(`discovery child failed (${r.code}): ${r.stdout}\n${r.stderr}`);
  return JSON.parse(line.slice(6)) as DiscoveredCamera[];
}

const missing = await cameraMissing();
if (missing) console.log(`# skipping onvif camera tests: ${missing}`);
const noNetns = netnsMissing();
if (noNetns) console.log(`# skipping the WS-Discovery probe: ${noNetns}`);

t.test('onvif', { skip: missing ?? false }, async (t) => {
  let sim: Sim | null = null;
  const urn = `urn:uuid:${randomUUID()}`;
  await runProfileContract(t, (ctx) => createOnvifProfile(ctx), {
    modulePath: path.join(ROOT, 'camera-profiles/onvif'),
    options: { timeoutMs: 10000 },
    start: async (t) => {
      sim = await startSim(t);
      return sim.camera;
    },
    // onvif-sim.js GetDeviceInformation; camera.py H.264 640x360; the preload's clock shift.
    truth: {
      manufacturer: 'LabKit',
      model: 'SimCam-1',
      firmware: '0.1',
      get serial() {
        return `SIM${sim?.port}`;
      },
      stream: { codec: 'h264', width: 640, height: 360 },
      clockOffsetMs: SKEW_MS,
      auth: true,
    },
    flows: [
      { name: 'a SOAP POST to the device service', flow: { transport: 'tcp', src: '192.0.2.10', sport: 50000, dst: '192.0.2.20', dport: 8999 }, payload: Buffer.from('POST /onvif/device_service HTTP/1.1\r\nHost: cam\r\nContent-Type: application/soap+xml\r\n\r\n<s:Envelope/>'), kind: 'onvif' },
      { name: 'a POST to another path is not ONVIF', flow: { transport: 'tcp', src: '192.0.2.10', sport: 50000, dst: '192.0.2.20', dport: 8999 }, payload: Buffer.from('POST /api/login HTTP/1.1\r\nHost: cam\r\n\r\n'), kind: null },
      { name: 'RTSP is not ONVIF', flow: { transport: 'tcp', src: '192.0.2.10', sport: 50000, dst: '192.0.2.20', dport: 8999 }, payload: Buffer.from('OPTIONS rtsp://cam/ RTSP/1.0\r\nCSeq: 1\r\n\r\n'), kind: null },
    ],
    redirect: {
      // The simulator says RTPMulticast=false; the operator override lets the SOAP path run.
      camera: (c) => ({ ...c, options: { assumeMulticast: true } }),
      target: async () => ({ host: '239.255.42.42', port: 51000, ttl: 1 }),
      observe: async () => observeMulticast(sim!.log),
    },
    discover: noNetns
      ? { skip: noNetns }
      : {
          run: () => discoverInNetns(t, urn, 'http://127.0.0.1:8080/onvif/device_service'),
          expect: { id: urn, apiUrl: 'http://127.0.0.1:8080/onvif/device_service' },
        },
  });

  await t.test('describe lists the media profiles as the device configures them, without multicast', async (t) => {
    const { camera } = await startSim(t);
    const p = createOnvifProfile();
    t.teardown(() => p.close!());
    const d = await p.describe!(camera);
    // onvif-sim.js: profile_1 "mainStream", H264 640x360, 25 fps, 512 kbit/s; RTPMulticast false.
    t.same(d.streams, [{ id: 'profile_1', name: 'mainStream', codec: 'h264', width: 640, height: 360, fps: 25, bitrateKbps: 512 }]);
    t.same(d.capabilities, ['describe', 'time', 'stream-uri']);
    t.equal(d.hardwareId, 'gst-rtsp-server');
  });

  await t.test('time reports the NTP flag and the POSIX time zone the device gives', async (t) => {
    const { camera } = await startSim(t);
    const r = await createOnvifProfile().time!(camera);
    t.equal(r.source, 'onvif');
    t.equal(r.ntp, true);
    t.equal(r.timezone, 'UTC0');
    t.equal(r.cameraMs % 1000, 0, 'whole seconds, as tt:Time carries');
  });

  await t.test('streamUri passes the transport on as the StreamSetup protocol', async (t) => {
    const { camera, log } = await startSim(t);
    const p = createOnvifProfile();
    t.teardown(() => p.close!());
    await p.streamUri!(camera, { transport: 'udp' });
    await p.streamUri!(camera);
    const asked = requests(log).filter((r) => r.action === 'GetStreamUri').map((r) => [tag(r.body, 'Stream'), tag(r.body, 'Protocol'), tag(r.body, 'ProfileToken')]);
    t.same(asked, [
      ['RTP-Unicast', 'UDP', 'profile_1'],
      ['RTP-Unicast', 'RTSP', 'profile_1'],
    ]);
  });

  await t.test('redirect refuses a device that says it cannot multicast, and a unicast target, asking nothing to change', async (t) => {
    const { camera, log } = await startSim(t);
    const p = createOnvifProfile();
    t.teardown(() => p.close!());
    await t.rejects(p.redirect!(camera, { host: '239.255.42.42', port: 51000 }), { code: 'CAMTAP_ERR_PROFILE_UNSUPPORTED', message: /lab-onvif.*RTPMulticast=false/ });
    await t.rejects(p.redirect!({ ...camera, options: { assumeMulticast: true } }, { host: '127.0.0.1', port: 51000 }), { code: 'CAMTAP_ERR_PROFILE_UNSUPPORTED', message: /not one/ });
    t.same(
      requests(log).filter((r) => r.action === 'SetVideoEncoderConfiguration'),
      [],
      'no SetVideoEncoderConfiguration was sent',
    );
  });

  await t.test('a redirect rewrites only the multicast part of the encoder configuration', async (t) => {
    const { camera, log } = await startSim(t);
    const p = createOnvifProfile();
    t.teardown(() => p.close!());
    const cam = { ...camera, options: { assumeMulticast: true } };
    const saved = await p.redirect!(cam, { host: '239.255.42.42', port: 51000, ttl: 4 });
    t.same(saved.data, { stream: 'profile_1', encoder: 'vec_1', multicast: { type: 'IPv4', address: '0.0.0.0', port: 0, ttl: 1, autoStart: false } }, 'saved: the configuration the device reported');
    const set = requests(log).filter((r) => r.action === 'SetVideoEncoderConfiguration');
    t.equal(set.length, 1);
    const body = set[0]!.body;
    t.match(body, /<Configuration token="vec_1"/);
    // Everything else as onvif-sim.js configured it.
    t.same(['Encoding', 'Width', 'Height', 'FrameRateLimit', 'BitrateLimit', 'GovLength', 'H264Profile', 'SessionTimeout', 'TTL'].map((x) => tag(body, x)), ['H264', '640', '360', '25', '512', '50', 'Baseline', 'PT60S', '4']);
    t.same(observeMulticast(log), { host: '239.255.42.42', port: 51000, active: true });
    await p.restore!(cam, saved);
    t.same(observeMulticast(log), { host: '0.0.0.0', port: 0, active: false });
  });

  await t.test('WS-Discovery answers are mapped defensively', async (t) => {
    const ok = { probeMatches: { probeMatch: { endpointReference: { address: 'urn:uuid:1' }, scopes: 'onvif://www.onvif.org/name/A  onvif://www.onvif.org/hardware/B', XAddrs: 'http://10.0.0.5/onvif/device_service http://[fe80::1]/onvif/device_service' } } };
    t.same(toDiscovered(ok, 'onvif'), {
      address: '10.0.0.5',
      apiUrls: ['http://10.0.0.5/onvif/device_service', 'http://[fe80::1]/onvif/device_service'],
      id: 'urn:uuid:1',
      scopes: ['onvif://www.onvif.org/name/A', 'onvif://www.onvif.org/hardware/B'],
      profile: 'onvif',
    });
    for (const bad of [null, 1, 'x', {}, { probeMatches: {} }, { probeMatches: { probeMatch: [ok.probeMatches.probeMatch, ok.probeMatches.probeMatch] } }, { probeMatches: { probeMatch: { XAddrs: 'ftp://x' } } }, { probeMatches: { probeMatch: { XAddrs: 42 } } }]) {
      t.equal(toDiscovered(bad, 'onvif'), null, JSON.stringify(bad));
    }
  });
});

t.test('multicast groups are told from unicast addresses (RFC 5771, RFC 4291 §2.7)', async (t) => {
  for (const a of ['224.0.0.1', '239.255.255.250', 'ff02::1', 'FF05::1:3']) t.ok(isMulticast(a), a);
  for (const a of ['223.255.255.255', '240.0.0.1', '127.0.0.1', 'fe80::1', 'cam.local', '']) t.notOk(isMulticast(a), a);
});
