import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readCapturedRequest, type CapturedHttpRequest } from '../../../core/failover/captured-http.js';
import { buildFailoverPlan, formatPlan, type PlanInputs } from '../../../core/failover/plan.js';
import type { FailoverPlan, HttpStep, RtspStep } from '../../../core/failover/types.js';
import type { CameraProfile } from '../../../core/contracts/camera-profile.js';
import type { CameraRecord, HttpTransaction, SessionRecord, VmsRecord } from '../../../core/contracts/records.js';
import { isCamtapError } from '../../../core/errors.js';
import { CAPTURES, importCaptures, noTshark } from '../query/fixture.js';

const CAMTAP = '10.77.0.100';
const BASE = 50000;

// ---------------------------------------------------------------- ground truth from tshark

interface TsharkRtsp {
  frame: number;
  stream: number;
  src: string;
  dst: string;
  method: string;
  url: string;
  transport: string;
  /** Request header lines as sent (from tcp.payload, split here: nothing of camtap parses them). */
  headers: Array<[string, string]>;
  /** Status of the answer (paired in order on the TCP stream). */
  status: number | null;
  /** Session id of the answer, without ;timeout=. */
  session: string;
}

function tsharkRtsp(file: string): TsharkRtsp[] {
  const out = execFileSync('tshark', ['-r', `${CAPTURES}${file}`, '-Y', 'rtsp', '-T', 'fields', '-E', 'occurrence=f', ...['frame.number', 'tcp.stream', 'ip.src', 'ip.dst', 'rtsp.method', 'rtsp.url', 'rtsp.status', 'rtsp.transport', 'rtsp.session', 'tcp.payload'].flatMap((f) => ['-e', f])], {
    encoding: 'utf8',
    maxBuffer: 1 << 28,
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const reqs: TsharkRtsp[] = [];
  const waiting = new Map<number, TsharkRtsp[]>();
  for (const line of out.split('\n')) {
    if (!line) continue;
    const [frame, stream, src, dst, method, url, status, transport, session, payload] = line.split('\t') as string[];
    const s = Number(stream);
    if (method) {
      const text = Buffer.from(payload!.replace(/:/g, ''), 'hex').toString('latin1');
      const head = text.split('\r\n\r\n')[0]!.split('\r\n').slice(1);
      const r: TsharkRtsp = { frame: Number(frame), stream: s, src: src!, dst: dst!, method, url: url!, transport: transport!, headers: head.map((h) => [h.slice(0, h.indexOf(':')), h.slice(h.indexOf(':') + 1).trim()]), status: null, session: '' };
      reqs.push(r);
      (waiting.get(s) ?? waiting.set(s, []).get(s)!).push(r);
    } else if (status) {
      const r = waiting.get(s)?.shift();
      if (r) {
        r.status = Number(status);
        r.session = (session ?? '').split(';')[0]!;
      }
    }
  }
  return reqs;
}

/**
 * What the plan must replay for one VMS and camera, from tshark's requests: the last TCP
 * connection from the VMS to the camera whose PLAY got 200, its requests up to that
 * PLAY, without the ones the camera answered 401 and without keep-alives, the last of
 * each method and URL.
 */
function expectedReplay(all: TsharkRtsp[], vms: string, camera: string): TsharkRtsp[] {
  const mine = all.filter((r) => r.src === vms && r.dst === camera);
  const played = mine.filter((r) => r.method === 'PLAY' && r.status === 200);
  const conn = played[played.length - 1]!.stream;
  const reqs = mine.filter((r) => r.stream === conn);
  const upTo = reqs.slice(0, reqs.findIndex((r) => r.method === 'PLAY' && r.status === 200) + 1);
  const ok = upTo.filter((r) => r.status === 200 && r.method !== 'GET_PARAMETER');
  return ok.filter((r, i) => !ok.slice(i + 1).some((x) => x.method === r.method && x.url === r.url));
}

// ---------------------------------------------------------------- helpers

async function planFor(t: Test, file: string, vmsName: string, over: Partial<PlanInputs> = {}) {
  const imp = await importCaptures(t, [file]);
  const c = imp.catalog;
  const [vmsList, cameras, sessions, transactions, streams] = await Promise.all([c.listVms(), c.listCameras(), c.listSessions(), c.listTransactions(), c.listStreams()]);
  const vms = vmsList.find((v) => v.name === vmsName)!;
  const inputs: PlanInputs = {
    vms,
    cameras,
    sessions,
    transactions,
    streams,
    target: { host: CAMTAP, rtpPortBase: BASE },
    ownAddresses: ['127.0.0.1', CAMTAP],
    profileOf: () => null,
    readRequest: (tx) => readCapturedRequest((id) => imp.segments.find((s) => s.id === id), tx),
    ...over,
  };
  return { plan: await buildFailoverPlan(inputs), inputs, cameras, sessions };
}

/** Everything of a plan that goes on the wire (the notes say in words what was substituted, old values included). */
const wire = (p: FailoverPlan) => JSON.stringify(p.cameras.map((c) => [...c.steps, ...c.restore].map(({ note: _note, ...rest }) => rest)));

const rtspSteps = (p: FailoverPlan) => p.cameras.flatMap((c) => c.steps).filter((s): s is RtspStep & { group?: string } => s.kind === 'rtsp');

/** Captured credentials and session ids must appear nowhere in a plan or its printout. */
function assertClean(t: Test, plan: FailoverPlan, secrets: string[]) {
  const json = JSON.stringify(plan);
  const text = formatPlan(plan);
  for (const s of secrets) {
    t.notOk(json.includes(s), `${JSON.stringify(s)} is not in the plan`);
    t.notOk(text.includes(s), `${JSON.stringify(s)} is not in the printed plan`);
  }
  for (const c of plan.cameras) {
    for (const s of [...c.steps, ...c.restore]) {
      if (s.kind === 'api') continue;
      const names = Object.keys(s.headers).map((k) => k.toLowerCase());
      t.notOk(names.includes('authorization') || names.includes('session') || names.includes('cseq'), `${s.method} ${s.url} carries no captured Authorization, Session or CSeq`);
    }
  }
  t.notOk(/<redacted>|Digest |Basic /.test(json), 'no trace of a captured credential');
}

// ---------------------------------------------------------------- RTSP replay

t.test('netns_multi: VMS1\'s plan replays each of its cameras\' captured set-up, as tshark shows it, toward camtap\'s ports', { skip: noTshark }, async (t) => {
  const vms = '10.77.0.101';
  const truth = tsharkRtsp('netns_multi.pcap');
  const { plan } = await planFor(t, 'netns_multi.pcap', vms);
  const vmsCameras = [...new Set(truth.filter((r) => r.src === vms).map((r) => r.dst))].sort();
  t.same(plan.cameras.map((c) => c.camera).sort(), vmsCameras, 'the cameras VMS1 pulled from, and no other');
  t.notOk(plan.cameras.some((c) => c.address === '10.77.0.14'), 'VMS2-only camera 10.77.0.14 is not in VMS1\'s plan');
  t.equal(plan.vmsAddress, vms);
  let track = 0;
  for (const cam of plan.cameras) {
    t.equal(cam.strategy, 'rtsp-replay', `${cam.camera}: the VMS pulled it over RTSP`);
    const want = expectedReplay(truth, vms, cam.address);
    t.same(
      cam.steps.map((s) => (s.kind === 'rtsp' ? [s.method, s.url] : [])),
      want.map((r) => [r.method, r.url]),
      `${cam.camera}: methods and URLs as tshark shows the VMS's requests`,
    );
    t.equal(new Set(cam.steps.map((s) => s.group)).size, 1, 'one group per captured session');
    t.same(cam.from.sessions, [cam.steps[0]!.group]);
    for (const [i, s] of cam.steps.entries()) {
      if (s.kind !== 'rtsp') continue;
      const captured = want[i]!;
      // Every captured header but CSeq/Session/Authorization, in order; Transport rewritten by hand here.
      const expectHeaders = captured.headers
        .filter(([k]) => !['cseq', 'session', 'authorization'].includes(k.toLowerCase()))
        .map(([k, v]) => {
          if (k.toLowerCase() !== 'transport') return [k.toLowerCase(), v];
          return [k.toLowerCase(), /TCP/.test(v) ? v : v.replace(/client_port=\d+-\d+/, `client_port=${BASE + 2 * track}-${BASE + 2 * track + 1}`)];
        });
      t.same(
        Object.entries(s.headers).map(([k, v]) => [k.toLowerCase(), v]),
        expectHeaders,
        `${cam.camera} ${s.method}: captured headers kept, Transport pointed at camtap`,
      );
      if (s.method === 'SETUP') {
        const udp = !/TCP/.test(captured.transport);
        t.equal(s.track?.index, track);
        t.equal(s.track?.lower, udp ? 'udp' : 'tcp');
        if (udp) t.same([s.track?.rtpPort, s.track?.rtcpPort], [BASE + 2 * track, BASE + 2 * track + 1], 'ports counted across the whole plan');
        else t.same(s.track?.interleaved, captured.transport.match(/interleaved=(\d+)-(\d+)/)!.slice(1).map(Number), 'interleaved channels as captured');
        track++;
      }
    }
    t.same(
      cam.restore.map((s) => (s.kind === 'rtsp' ? [s.method, s.url, s.group] : [])),
      [['TEARDOWN', want.find((r) => r.method === 'PLAY')!.url, cam.steps[0]!.group]],
      'give back: TEARDOWN of the group',
    );
  }
  const vmsPorts = truth.filter((r) => r.method === 'SETUP').flatMap((r) => [...r.transport.matchAll(/client_port=(\d+)-(\d+)/g)].flatMap((m) => [m[1]!, m[2]!]));
  const sent = wire(plan);
  for (const p of vmsPorts) t.notOk(sent.includes(p), `the VMS's client port ${p} is in no request of the plan`);
  assertClean(t, plan, truth.map((r) => r.session).filter(Boolean));
});

t.test('netns_multi: VMS2\'s plan has its own two cameras, ports counted from the base again', { skip: noTshark }, async (t) => {
  const truth = tsharkRtsp('netns_multi.pcap');
  const { plan } = await planFor(t, 'netns_multi.pcap', '10.77.0.102');
  t.same(plan.cameras.map((c) => c.camera).sort(), ['10.77.0.11', '10.77.0.14']);
  t.same(rtspSteps(plan).filter((s) => s.method === 'SETUP').map((s) => s.headers['Transport']), [`RTP/AVP/UDP;unicast;client_port=${BASE}-${BASE + 1}`, `RTP/AVP/UDP;unicast;client_port=${BASE + 2}-${BASE + 3}`]);
  assertClean(t, plan, truth.map((r) => r.session).filter(Boolean));
});

t.test('netns_failover_replay_h264: the Digest camera\'s plan keeps only the authorised attempts of the last session that played', { skip: noTshark }, async (t) => {
  const vms = '10.77.0.102';
  const truth = tsharkRtsp('netns_failover_replay_h264.pcap');
  const { plan, sessions } = await planFor(t, 'netns_failover_replay_h264.pcap', vms);
  t.equal(plan.cameras.length, 1);
  const cam = plan.cameras[0]!;
  t.equal(cam.strategy, 'rtsp-replay');
  const want = expectedReplay(truth, vms, '10.77.0.11');
  t.same(
    cam.steps.map((s) => (s.kind === 'rtsp' ? [s.method, s.url] : [])),
    want.map((r) => [r.method, r.url]),
    'OPTIONS, the DESCRIBE that got 200 (not the challenged one), SETUP, PLAY',
  );
  t.ok(sessions.some((s) => s.id === cam.steps[0]!.group), 'the group is a catalog session');
  t.ok(sessions.some((s) => s.client.startsWith(`${vms}:`) && !s.requests.some((r) => r.method === 'PLAY')), 'the capture also has the failed verbatim replay, which is not planned');
  const setup = rtspSteps(plan).find((s) => s.method === 'SETUP')!;
  t.equal(setup.headers['Transport'], `RTP/AVP/UDP;unicast;client_port=${BASE}-${BASE + 1}`);
  t.notOk(wire(plan).includes('40000'), 'the VMS\'s client port 40000 is in no request');
  t.match(setup.note, 'client_port 40000-40001 -> 50000-50001', 'the note says what was substituted');
  t.match(cam.steps[1]!.note, /challenged/, 'the DESCRIBE step says the camera challenged it');
  assertClean(t, plan, [...truth.map((r) => r.session).filter(Boolean), 'username=', 'nonce', 'response=']);
});

t.test('the target must be an address camtap owns', async (t) => {
  const imp = await importCaptures(t, ['netns_multi.pcap']);
  const c = imp.catalog;
  const vms = (await c.listVms()).find((v) => v.name === '10.77.0.101')!;
  const base: PlanInputs = {
    vms,
    cameras: await c.listCameras(),
    sessions: await c.listSessions(),
    transactions: [],
    target: { host: '10.77.0.50', rtpPortBase: BASE },
    ownAddresses: ['127.0.0.1', CAMTAP],
    profileOf: () => null,
    readRequest: () => Promise.reject(new Error('not used')),
  };
  await t.rejects(buildFailoverPlan(base), { code: 'CAMTAP_ERR_FAILOVER', message: /10\.77\.0\.50 is not one of this host's addresses/ });
  await t.rejects(buildFailoverPlan({ ...base, target: { host: CAMTAP, rtpPortBase: 50001 } }), { code: 'CAMTAP_ERR_FAILOVER', message: /even/ }, 'an odd RTP port base');
  await t.rejects(buildFailoverPlan({ ...base, target: { host: CAMTAP, rtpPortBase: 65534 } }), { code: 'CAMTAP_ERR_FAILOVER', message: /65535/ }, 'ports that run out');
  const ok = await buildFailoverPlan({ ...base, target: { host: '10.77.0.100', rtpPortBase: BASE }, only: ['10.77.0.12'] });
  t.same(ok.cameras.map((k) => k.camera), ['10.77.0.12'], '`only` restricts the plan');
  await t.rejects(buildFailoverPlan({ ...base, target: { host: CAMTAP, rtpPortBase: BASE }, only: ['10.77.0.14'] }), { code: 'CAMTAP_ERR_FAILOVER', message: /not a camera of VMS 10\.77\.0\.101/ });
  await t.rejects(buildFailoverPlan({ ...base, target: { host: CAMTAP, rtpPortBase: BASE }, only: ['cam-nowhere'] }), { code: 'CAMTAP_ERR_NOT_FOUND' });
});

// ---------------------------------------------------------------- HTTP replay

interface HttpTruth {
  vms: string;
  camera: string;
  requests: Array<{ frame: number; method: string; uri: string; headers: string[]; body: string; authorization: string | null; status: number | null }>;
  rtp: { src: string; dst: string };
}
const httpTruth = JSON.parse(readFileSync(`${CAPTURES}../failover/failover-http-push.json`, 'utf8')) as HttpTruth;

for (const withStreams of [true, false]) {
  t.test(`failover-http-push: the push destination is resent with camtap's address and port, everything else as tshark shows it (${withStreams ? 'with' : 'without'} stream records)`, async (t) => {
    const host = '127.0.0.1';
    const { plan } = await planFor(t, '../failover/failover-http-push.pcap', httpTruth.vms, { target: { host, rtpPortBase: BASE }, ...(withStreams ? {} : { streams: undefined }) });
    t.equal(plan.cameras.length, 1);
    const cam = plan.cameras[0]!;
    t.equal(cam.camera, httpTruth.camera);
    t.equal(cam.strategy, 'http-replay');
    // By hand from the truth file: frame 15 is the last accepted POST to stream.cgi (frame 12
    // set the same thing before, frame 10 was refused), 18 names the VMS in its URL, 21 in
    // its JSON body; 4 names no address and 8 names 127.0.0.50, not the VMS.
    const frames = [15, 18, 21];
    const want = frames.map((f) => httpTruth.requests.find((r) => r.frame === f)!);
    const steps = cam.steps as HttpStep[];
    t.same(
      steps.map((s) => s.method),
      want.map((r) => r.method),
    );
    const sub = (s: string) => s.replaceAll('127.0.0.5', host);
    t.same(
      steps.map((s) => s.url),
      want.map((r) => `http://${httpTruth.camera}${sub(r.uri)}`),
      'URLs with the VMS address replaced',
    );
    t.same(
      steps.map((s) => s.body),
      [sub(want[0]!.body).replace('port=5004', `port=${BASE}`), sub(want[1]!.body), sub(want[2]!.body)],
      'bodies byte-identical but for the address and the RTP port (the notify URL keeps its port 8080)',
    );
    for (const [i, s] of steps.entries()) {
      const keep = want[i]!.headers.filter((h) => !/^(authorization|connection|content-length|transfer-encoding):/i.test(h));
      t.same(
        Object.entries(s.headers).map(([k, v]) => `${k}: ${v}`),
        keep,
        `frame ${want[i]!.frame}: headers as sent, credentials and hop-by-hop ones removed`,
      );
    }
    t.same(cam.receive, [{ rtpPort: BASE, rtcpPort: BASE + 1 }], 'camtap receives the pushed RTP on its first port pair');
    t.same(
      (cam.restore as HttpStep[]).map((s) => [s.method, s.url, s.body]),
      want.map((r) => [r.method, `http://${httpTruth.camera}${r.uri}`, r.body]),
      'give back: the captured requests unchanged',
    );
    t.same(cam.from.transactions.length, 3);
    const text = formatPlan(plan);
    t.match(text, `POST /cgi-bin/stream.cgi HTTP/1.1`);
    t.match(text, `dest=${host}&port=${BASE}`);
    t.match(text, `Content-Length: ${`dest=${host}&port=${BASE}`.length}`, 'the printout shows the length the sender will send');
    const auth = want[0]!.authorization!;
    assertClean(t, plan, [auth, auth.split(' ')[1]!, 's3cret', 'admin:']);
  });
}

// ---------------------------------------------------------------- strategy choice (hand-made records)

const T0 = '2026-01-01T00:00:00.000000000Z';
const vmsRec: VmsRecord = { name: 'vms-a', address: '192.0.2.1', userAgents: [], cameras: ['cam'], firstSeen: T0, lastSeen: T0 };
const camRec: CameraRecord = { name: 'cam', address: '192.0.2.10', urls: [], codecs: [], vms: ['vms-a'], firstSeen: T0, lastSeen: T0 };

function exchange(method: string, url: string, status: number, time: string, headers: Record<string, string> = {}) {
  return { method, url, cseq: null, status, time, requestAt: [], responseAt: [], headers, responseHeaders: {} };
}

function session(torn: string | null): SessionRecord {
  const url = 'rtsp://192.0.2.10/main';
  const requests = [
    exchange('DESCRIBE', url, 200, '2026-01-01T00:00:01Z'),
    exchange('SETUP', `${url}/track1`, 200, '2026-01-01T00:00:02Z', { transport: 'RTP/AVP;unicast;client_port=6000-6001' }),
    exchange('PLAY', url, 200, '2026-01-01T00:00:03Z', { session: 'abc' }),
    ...(torn ? [exchange('TEARDOWN', url, 200, torn, { session: 'abc' })] : []),
  ];
  return {
    id: 's1', sessionId: 'abc', timeout: 60, client: '192.0.2.1:40000', server: '192.0.2.10:554', url, contentBase: null, sdp: null, auth: null, userAgent: null,
    tracks: [{ controlUrl: `${url}/track1`, requestedTransport: null, transport: null, lower: 'udp', clientPorts: [6000, 6001], serverPorts: null, interleaved: null, ssrc: null, status: 200 }],
    requests, camera: 'cam', vms: 'vms-a', start: T0, end: T0, taps: [1],
  };
}

const pushTx: HttpTransaction = {
  id: 'hpush', kind: 'http', client: '192.0.2.1:40100', server: '192.0.2.10:80', method: 'POST', url: '/push', status: 200, operation: null,
  time: '2026-01-01T00:00:10Z', requestAt: [], responseAt: [], headers: { 'content-length': '22' }, camera: 'cam', vms: 'vms-a',
};
const pushReq: CapturedHttpRequest = { method: 'POST', target: '/push', headers: [['Host', '192.0.2.10'], ['Content-Length', '22']], body: Buffer.from('ip=192.0.2.1&port=6000') };

function inputs(over: Partial<PlanInputs>): PlanInputs {
  return {
    vms: vmsRec, cameras: [camRec], sessions: [], transactions: [], target: { host: '192.0.2.99', rtpPortBase: 40000 }, ownAddresses: ['192.0.2.99'],
    profileOf: () => null, readRequest: async () => pushReq, ...over,
  };
}

function profile(caps: CameraProfile['capabilities']): CameraProfile {
  return {
    meta: { name: 'vendor-x', kind: 'camera-profile', version: '1.0.0', core: '*' } as CameraProfile['meta'],
    capabilities: caps,
    redirect: async () => ({ profile: 'vendor-x', camera: 'cam', takenAt: 0, data: null }),
    restore: async () => {},
    streamUri: async () => ({ uri: 'rtsp://192.0.2.10/main' }),
  };
}

t.test('a camera with both RTSP and HTTP evidence: RTSP when the VMS pulls, and the reason names the HTTP requests passed over', async (t) => {
  const plan = await buildFailoverPlan(inputs({ sessions: [session(null)], transactions: [pushTx] }));
  const cam = plan.cameras[0]!;
  t.equal(cam.strategy, 'rtsp-replay');
  t.match(cam.reason, /hpush.*not replayed: the VMS pulls/);
  t.equal((cam.steps.find((s) => s.kind === 'rtsp' && s.method === 'SETUP') as RtspStep).headers['Transport'], 'RTP/AVP;unicast;client_port=40000-40001');
});

t.test('a camera with both: HTTP when the VMS tore its RTSP session down before setting the push destination', async (t) => {
  const plan = await buildFailoverPlan(inputs({ sessions: [session('2026-01-01T00:00:05Z')], transactions: [pushTx] }));
  const cam = plan.cameras[0]!;
  t.equal(cam.strategy, 'http-replay');
  t.match(cam.reason, /RTSP sessions s1 not replayed: .*tore/);
  t.equal((cam.steps[0] as HttpStep).body, 'ip=192.0.2.99&port=40000', 'without stream records the port parameter is taken for the RTP port');
  t.same(cam.receive, [{ rtpPort: 40000, rtcpPort: 40001 }]);
});

t.test('a camera with both: HTTP when the camera was seen pushing to the port the request sets', async (t) => {
  const stream = { id: 'st1', camera: 'cam', src: '192.0.2.10:7000', dst: '192.0.2.1:6000', transport: 'udp', ssrc: 1, session: null, direction: 'server->client' } as unknown as NonNullable<PlanInputs['streams']>[number];
  const plan = await buildFailoverPlan(inputs({ sessions: [session(null)], transactions: [pushTx], streams: [stream] }));
  t.equal(plan.cameras[0]!.strategy, 'http-replay');
  t.match(plan.cameras[0]!.reason, /pushes to the VMS \(stream st1/);
});

t.test('without captured evidence: the profile redirects the camera, or camtap pulls, or nothing, with the reason', async (t) => {
  const redirect = await buildFailoverPlan(inputs({ profileOf: () => profile(['redirect-unicast', 'stream-uri']) }));
  const r = redirect.cameras[0]!;
  t.equal(r.strategy, 'camera-api');
  t.same(r.steps, [{ kind: 'api', call: 'redirect', profile: 'vendor-x', target: { host: '192.0.2.99', port: 40000 }, note: r.steps[0]!.note }]);
  t.same(r.restore.map((s) => (s.kind === 'api' ? s.call : s.kind)), ['restore']);
  t.same(r.receive, [{ rtpPort: 40000, rtcpPort: 40001 }]);
  t.match(r.reason, /no captured RTSP session from 192\.0\.2\.1 to 192\.0\.2\.10.*no captured HTTP request/);

  const pull = await buildFailoverPlan(inputs({ profileOf: () => profile(['stream-uri']) }));
  t.equal(pull.cameras[0]!.strategy, 'camera-api');
  t.same(pull.cameras[0]!.steps.map((s) => (s.kind === 'api' ? s.call : s.kind)), ['stream-uri']);
  t.match(formatPlan(pull), /camtap stops pulling/);

  const none = await buildFailoverPlan(inputs({ profileOf: () => profile(['describe']) }));
  t.equal(none.cameras[0]!.strategy, 'none');
  t.match(none.cameras[0]!.reason, /vendor-x can neither redirect/);
  const noProfile = await buildFailoverPlan(inputs({}));
  t.match(noProfile.cameras[0]!.reason, /no camera profile/);
});

t.test('an HTTP request the camera refused is not evidence, and one that cannot be read is named in the reason', async (t) => {
  const refused = await buildFailoverPlan(inputs({ transactions: [{ ...pushTx, status: 403 }] }));
  t.equal(refused.cameras[0]!.strategy, 'none');
  const unreadable = await buildFailoverPlan(inputs({ transactions: [pushTx], readRequest: () => Promise.reject(new Error('segment 3 deleted')) }));
  t.equal(unreadable.cameras[0]!.strategy, 'none');
  t.match(unreadable.cameras[0]!.reason, /unreadable: hpush \(segment 3 deleted\)/);
});
