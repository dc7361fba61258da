/**
 * The HTTP/ONVIF proxy with real peers on loopback: the npm `onvif` client (agsh 0.8)
 * adopts the ONVIF simulator (test/helpers/onvif-sim.js, real SOAP over HTTP, WS-Security
 * UsernameToken checked) through camtap; a node:http "camera" speaks VAPIX-style CGI and
 * ISAPI-style REST. Ground truth: the simulator's own request log (what the camera saw),
 * the simulator's source (its answers), hand-written expected URIs, and tshark reading
 * the inline tap's synthesized capture of both legs.
 */
import t, { type Test } from 'tap';
import http from 'node:http';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { Cam, type CamOptions } from 'onvif';
import { HttpCameraProxy, type HttpCameraProxyOptions, type ProxiedCamera } from '../../../core/inline/http-proxy.js';
import { InlineTap } from '../../../tap-drivers/inline/index.js';
import { silentLogger } from '../../../core/logger.js';
import { epbSize, idbSize, shbSize, writeEpb, writeIdb, writeShb } from '../../../core/wire/pcapng-writer.js';
import type { TapFrame } from '../../../core/contracts/frame.js';
import { freePort } from '../../helpers/peers.js';
import { KeepingRecorder, keepingLogger, learn, messages, side, startSim, tempDir, soap, type Sim } from './http-peers.js';

const USER = 'admin';
const PASSWORD = 'Pa55-w0rd-xyz';
/** The simulator's stream URI: the camera's RTSP server on its own host, port 554. */
const CAMERA_RTSP = 'rtsp://127.0.0.1:554/stream1';
/** camtap's RTSP base as the VMS reaches it (nothing listens: only the rewritten text is checked). */
const RTSP_BASE = 'rtsp://127.0.0.2:18554';

const noTshark = spawnSync('tshark', ['--version']).status === 0 ? false : 'tshark is not installed';

interface Running {
  proxy: HttpCameraProxy;
  port: number;
  base: string;
}

/** A proxy on 127.0.0.1:<free port> whose httpBase is its own address; closed at teardown. */
async function startProxy(tt: Test, cameras: ProxiedCamera[], extra: Partial<HttpCameraProxyOptions> = {}): Promise<Running> {
  let base = '';
  const proxy = new HttpCameraProxy({ cameras: () => cameras, rtspBase: () => RTSP_BASE, httpBase: () => base, ...extra });
  const l = await proxy.listen(0, '127.0.0.1');
  base = `http://127.0.0.1:${l.port}`;
  tt.teardown(() => proxy.close());
  return { proxy, port: l.port, base };
}

function connect(opts: CamOptions): Promise<Cam> {
  return new Promise((resolve, reject) => {
    const cam: Cam = new Cam({ timeout: 5000, ...opts }, (err) => (err ? reject(err) : resolve(cam)));
  });
}

function call<T>(fn: (cb: (err: Error | null, data?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, data) => (err ? reject(err) : resolve(data as T))));
}

/** One request through plain node:http; the answer's status, headers and body. */
function request(port: number, opts: { method?: string; path: string; headers?: http.OutgoingHttpHeaders; body?: Buffer | string | Array<Buffer | string> }): Promise<{ status: number; headers: http.IncomingHttpHeaders; raw: string[]; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: opts.method ?? 'GET', path: opts.path, headers: opts.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, raw: res.rawHeaders, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    const b = opts.body;
    if (Array.isArray(b)) for (const part of b) req.write(part);
    else if (b !== undefined) req.write(b);
    req.end();
  });
}

/** PasswordDigest and Nonce values the client sent (they must not reach any record). */
function wsSecuritySecrets(sim: Sim): string[] {
  const out: string[] = [];
  for (const r of sim.requests()) {
    for (const m of r.body.matchAll(/<(?:\w+:)?(?:Password|Nonce)[^>]*>([^<]+)</g)) out.push(m[1]!);
  }
  return out;
}

t.test('the onvif client adopts an ONVIF camera through camtap and is sent to camtap for media, snapshots and streams', async (t) => {
  const sim = await startSim(t, { rtsp: CAMERA_RTSP, user: USER, password: PASSWORD });
  const recorder = new KeepingRecorder();
  const log = keepingLogger();
  const p = await startProxy(t, [{ alias: 'door', http: sim.base }], { recorder, log, recordVmsLeg: true });

  const cam = await connect({ hostname: '127.0.0.1', port: p.port, path: '/cam/door/onvif/device_service', username: USER, password: PASSWORD });
  // XAddrs from GetCapabilities/GetServices name camtap, so the client's next calls come back here.
  t.equal(cam.uri?.device?.href, `${p.base}/cam/door/onvif/device_service`, 'device XAddr rewritten');
  t.equal(cam.uri?.media?.href, `${p.base}/cam/door/onvif/media_service`, 'media XAddr rewritten');

  const info = await call<{ manufacturer?: string; model?: string; serialNumber?: string }>((cb) => cam.getDeviceInformation(cb));
  t.match(info, { manufacturer: 'LabKit', model: 'SimCam-1', serialNumber: `SIM${sim.port}` }, 'device information is the camera’s');
  const profiles = await call<Array<{ $: { token: string } }>>((cb) => cam.getProfiles(cb));
  t.same(
    profiles.map((x) => x.$.token),
    ['profile_1'],
    'profiles are the camera’s',
  );
  const stream = await call<{ uri: string }>((cb) => cam.getStreamUri({ protocol: 'RTSP', profileToken: 'profile_1' }, cb));
  t.equal(stream.uri, 'rtsp://127.0.0.2:18554/door/stream1', 'GetStreamUri answers camtap’s RTSP URI: <rtspBase>/<alias>/<camera path>');
  const snap = await call<{ uri: string }>((cb) => cam.getSnapshotUri({ profileToken: 'profile_1' }, cb));
  t.equal(snap.uri, `${p.base}/cam/door/snapshot.jpg`, 'GetSnapshotUri answers camtap’s HTTP URI');

  // What the camera saw: its own paths (no /cam/<alias> prefix), every operation the client made.
  const seen = sim.requests();
  t.ok(seen.length >= 6, `camera received ${seen.length} requests`);
  t.same([...new Set(seen.map((r) => r.path))].sort(), ['/onvif/device_service', '/onvif/media_service'], 'the camera is asked on its own paths');
  for (const op of ['GetSystemDateAndTime', 'GetDeviceInformation', 'GetProfiles', 'GetStreamUri', 'GetSnapshotUri']) {
    t.ok(
      seen.some((r) => r.action === op),
      `camera received ${op}`,
    );
  }

  // camtap -> camera leg: one connection per exchange, byte-exact what the camera parsed.
  const camLeg = recorder.to(sim.port);
  t.equal(camLeg.length, seen.length, 'one recorded camera connection per request the camera logged');
  const recordedBodies = camLeg.flatMap((c) => messages(c).requests.map((m) => m.body.toString('utf8'))).sort();
  t.same(recordedBodies, seen.map((r) => r.body).sort(), 'recorded request bodies equal what the camera logged, byte for byte');
  t.same(
    camLeg.map((c) => {
      const m = messages(c);
      return { errors: m.errors, requests: m.requests.length, responses: m.responses.length, client: c.client.ip, server: c.server.port, closed: c.closed };
    }),
    camLeg.map(() => ({ errors: [], requests: 1, responses: 1, client: '127.0.0.1', server: sim.port, closed: true })),
    'each camera connection: real endpoints, one request, one answer, parses cleanly, closed',
  );
  const camAnswers = camLeg.map((c) => side(c, false).toString('latin1')).join('\n');
  t.ok(camAnswers.includes(`<tt:Uri>${CAMERA_RTSP}</tt:Uri>`), 'the camera leg holds the camera’s own stream URI');

  // The capture pipeline's HTTP learner makes ONVIF transactions of the camera leg.
  const txs = camLeg.flatMap((c) => learn(c));
  t.same(txs.map((x) => x.operation).sort(), seen.map((r) => r.action).sort(), 'one transaction per exchange, named by the ONVIF operation the camera logged');
  t.ok(
    txs.every((x) => x.kind === 'onvif' && x.status === 200 && x.method === 'POST'),
    'all ONVIF, POST, answered 200',
  );
  const secrets = [PASSWORD, ...wsSecuritySecrets(sim)];
  t.ok(secrets.length > 2, 'the client did send WS-Security digests and nonces');
  const txText = JSON.stringify(txs);
  t.same(
    secrets.filter((s) => txText.includes(s)),
    [],
    'no password, digest or nonce in the transactions',
  );

  // VMS -> camtap leg: the VMS's view, with camtap's addresses.
  const vmsLeg = recorder.to(p.port);
  t.ok(vmsLeg.length >= 1, 'client connections recorded');
  const vmsTx = vmsLeg.flatMap((c) => learn(c));
  t.same(vmsTx.map((x) => x.operation).sort(), seen.map((r) => r.action).sort(), 'the VMS leg has the same operations');
  t.ok(
    vmsTx.every((x) => x.url.startsWith('/cam/door/onvif/') && x.status === 200),
    'VMS leg URLs are camtap’s',
  );
  const vmsAnswers = vmsLeg.map((c) => side(c, false).toString('latin1')).join('\n');
  t.ok(vmsAnswers.includes('<tt:Uri>rtsp://127.0.0.2:18554/door/stream1</tt:Uri>'), 'the VMS leg holds the rewritten stream URI');
  t.notOk(vmsAnswers.includes(sim.base), 'no camera HTTP address reaches the VMS');
  t.same(
    vmsLeg.flatMap((c) => messages(c).errors),
    [],
    'VMS leg parses cleanly',
  );

  const logText = log.lines.join('\n');
  t.ok(log.lines.length > 0, 'the proxy logged');
  t.same(
    secrets.filter((s) => logText.includes(s)),
    [],
    'no credential in the log',
  );
  t.notOk(/Password|Authorization|Security/i.test(logText), 'no credential-bearing field in the log');
});

t.test('camtap does not terminate authentication: a wrong password gets the camera’s own fault', async (t) => {
  const sim = await startSim(t, { rtsp: CAMERA_RTSP, user: USER, password: PASSWORD });
  const p = await startProxy(t, [{ alias: 'door', http: sim.base }]);
  const r = await request(p.port, {
    method: 'POST',
    path: '/cam/door/onvif/device_service',
    headers: { 'Content-Type': 'application/soap+xml; charset=utf-8' },
    body: soap('GetDeviceInformation'),
  });
  t.equal(r.status, 400, 'the camera’s status (the simulator answers NotAuthorized with 400)');
  t.match(r.body.toString(), /ter:NotAuthorized/, 'the camera’s SOAP fault');
  await t.rejects(connect({ hostname: '127.0.0.1', port: p.port, path: '/cam/door/onvif/device_service', username: USER, password: 'wrong' }), 'the onvif client is refused by the camera');
});

t.test('a dedicated port serves one camera at its own paths (VMSs that take only host:port)', async (t) => {
  const sim = await startSim(t, { rtsp: CAMERA_RTSP, user: USER, password: PASSWORD });
  const recorder = new KeepingRecorder();
  const cameras = [{ alias: 'gate', http: sim.base }];
  let base = '';
  const proxy = new HttpCameraProxy({ cameras: () => cameras, rtspBase: () => RTSP_BASE, httpBase: () => base, recorder, recordVmsLeg: true });
  t.teardown(() => proxy.close());
  const main = await proxy.listen(0, '127.0.0.1');
  base = `http://127.0.0.1:${main.port}`;
  const dedicated = await proxy.listen(0, '127.0.0.1', { alias: 'gate' });
  const cam = await connect({ hostname: '127.0.0.1', port: dedicated.port, username: USER, password: PASSWORD });
  t.equal(cam.uri?.media?.href, `http://127.0.0.1:${dedicated.port}/onvif/media_service`, 'XAddrs name the dedicated port');
  const stream = await call<{ uri: string }>((cb) => cam.getStreamUri({ protocol: 'RTSP' }, cb));
  t.equal(stream.uri, 'rtsp://127.0.0.2:18554/gate/stream1');
  t.ok(
    sim.requests().every((r) => r.path.startsWith('/onvif/')),
    'paths reach the camera unchanged',
  );
  await dedicated.close();
  await dedicated.close();
  t.pass('listener close is idempotent');
});

t.test('handle() mounts beside other routes: /cam/<alias>/ is the proxy’s, the rest is not', async (t) => {
  const sim = await startSim(t, { rtsp: CAMERA_RTSP });
  const proxy = new HttpCameraProxy({ cameras: () => [{ alias: 'door', http: sim.base }], rtspBase: () => RTSP_BASE, httpBase: () => `http://127.0.0.1:${port}` });
  t.teardown(() => proxy.close());
  const server = http.createServer((req, res) => {
    if (proxy.handle(req, res)) return;
    res.end('api:' + req.url);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as net.AddressInfo).port;
  t.equal((await request(port, { path: '/api/streams' })).body.toString(), 'api:/api/streams', 'other paths stay with the host server');
  t.equal((await request(port, { path: '/camera' })).body.toString(), 'api:/camera', '/camera is not /cam/');
  const r = await request(port, { method: 'POST', path: '/cam/door/onvif/device_service', headers: { 'Content-Type': 'application/soap+xml' }, body: soap('GetCapabilities') });
  t.equal(r.status, 200);
  t.match(r.body.toString(), `<tt:XAddr>http://127.0.0.1:${port}/cam/door/onvif/media_service</tt:XAddr>`, 'XAddrs name the host server’s port');
  const missing = await request(port, { path: '/cam/nosuch/onvif/device_service' });
  t.equal(missing.status, 404, 'unknown alias: 404');
  t.match(JSON.parse(missing.body.toString()), { error: 'CAMTAP_ERR_NOT_FOUND' });
});

/** A VAPIX/ISAPI-style camera: logs what it received, answers per path. */
async function startHttpCamera(t: Test, jpeg: Buffer): Promise<{ port: number; base: string; seen: Array<{ method: string; url: string; raw: string[]; body: Buffer }> }> {
  const seen: Array<{ method: string; url: string; raw: string[]; body: Buffer }> = [];
  let base = '';
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      seen.push({ method: req.method ?? '', url: req.url ?? '', raw: req.rawHeaders, body });
      const u = req.url ?? '';
      if (u.startsWith('/axis-cgi/param.cgi')) {
        // Compressed although asked for identity: some cameras do.
        const text = `root.Network.RTSP.URL=rtsp://127.0.0.1:554/axis-media/media.amp?camera=1\nroot.HTTP.Self=${base}/axis-cgi/param.cgi\nroot.Other=http://127.0.0.9:${server.address() && (server.address() as net.AddressInfo).port}/x\n`;
        const gz = zlib.gzipSync(Buffer.from(text));
        res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Encoding': 'gzip', 'Content-Length': gz.length, Connection: 'close, X-Hop', 'X-Hop': 'hop-by-hop', 'X-Kept': 'end-to-end' });
        res.end(gz);
      } else if (u === '/jpg/image.jpg') {
        res.writeHead(200, { 'Content-Type': 'image/jpeg', 'Content-Length': jpeg.length });
        res.end(req.method === 'HEAD' ? undefined : jpeg);
      } else if (u === '/mjpg/video.cgi') {
        res.writeHead(200, { 'Content-Type': 'multipart/x-mixed-replace; boundary=frame' });
        for (let i = 0; i < 3; i++) res.write(Buffer.concat([Buffer.from(`--frame\r\nContent-Type: image/jpeg\r\nContent-Length: ${jpeg.length}\r\n\r\n`), jpeg, Buffer.from('\r\n')]));
        res.end();
      } else if (u.startsWith('/ISAPI/Streaming/channels/101') && req.method === 'PUT') {
        const out = JSON.stringify({ ok: true, stream: 'rtsp://127.0.0.1/Streaming/Channels/101', self: `${base}/ISAPI/Streaming/channels/101` });
        res.writeHead(201, { 'Content-Type': 'application/json', Location: `${base}/ISAPI/Streaming/channels/101/status`, 'Content-Length': Buffer.byteLength(out) });
        res.end(out);
      } else {
        res.writeHead(404, { 'Content-Type': 'text/plain', 'WWW-Authenticate': ['Digest realm="cam", nonce="n1", algorithm=MD5', 'Digest realm="cam", nonce="n2", algorithm=SHA-256'] });
        res.end('no');
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as net.AddressInfo).port;
  base = `http://127.0.0.1:${port}`;
  return { port, base, seen };
}

t.test('VAPIX/ISAPI-style APIs: text rewritten (gzip undone), binary and streams byte-exact, hop-by-hop fields dropped', async (t) => {
  const jpeg = randomBytes(200_000);
  jpeg[0] = 0xff;
  jpeg[1] = 0xd8;
  const cam = await startHttpCamera(t, jpeg);
  const recorder = new KeepingRecorder();
  const p = await startProxy(t, [{ alias: 'axis', http: cam.base }], { recorder, recordVmsLeg: true });
  const basic = 'Basic ' + Buffer.from(`root:${PASSWORD}`).toString('base64');

  const params = await request(p.port, {
    path: '/cam/axis/axis-cgi/param.cgi?action=list&group=Network',
    headers: { Authorization: basic, 'Accept-Encoding': 'gzip, br', Connection: 'keep-alive, X-Client-Hop', 'X-Client-Hop': '1', 'Proxy-Authorization': 'Basic eHg6eXk=', 'X-Custom': 'kept' },
  });
  t.equal(params.status, 200);
  const expected =
    'root.Network.RTSP.URL=rtsp://127.0.0.2:18554/axis/axis-media/media.amp?camera=1\n' +
    `root.HTTP.Self=${p.base}/cam/axis/axis-cgi/param.cgi\n` +
    `root.Other=http://127.0.0.9:${cam.port}/x\n`;
  t.equal(params.body.toString(), expected, 'camera URIs rewritten, another host’s left alone');
  t.equal(params.headers['content-length'], String(Buffer.byteLength(expected)), 'Content-Length of the rewritten body');
  t.equal(params.headers['content-encoding'], undefined, 'sent uncompressed');
  t.equal(params.headers['x-hop'], undefined, 'a field named in the camera’s Connection is not forwarded');
  t.equal(params.headers['x-kept'], 'end-to-end');

  const got = cam.seen[0]!;
  const h = (name: string) => got.raw.flatMap((v, i) => (i % 2 === 0 && v.toLowerCase() === name ? [got.raw[i + 1]!] : []));
  t.equal(got.url, '/axis-cgi/param.cgi?action=list&group=Network', 'path mapped, query kept');
  t.same(h('authorization'), [basic], 'Authorization passed through untouched');
  t.same(h('host'), [`127.0.0.1:${cam.port}`], 'Host is the camera’s');
  t.same(h('accept-encoding'), ['identity'], 'compression refused upstream');
  t.same(h('x-client-hop'), [], 'a field named in the client’s Connection is not forwarded');
  t.same(h('proxy-authorization'), [], 'Proxy-Authorization is not forwarded');
  t.same(h('x-custom'), ['kept']);

  const img = await request(p.port, { path: '/cam/axis/jpg/image.jpg' });
  t.ok(img.body.equals(jpeg), 'JPEG relayed byte for byte');
  t.equal(img.headers['content-length'], String(jpeg.length));
  const head = await request(p.port, { method: 'HEAD', path: '/cam/axis/jpg/image.jpg' });
  t.equal(head.status, 200);
  t.equal(head.headers['content-length'], String(jpeg.length), 'HEAD keeps the camera’s Content-Length');
  t.equal(head.body.length, 0);

  const mjpeg = await request(p.port, { path: '/cam/axis/mjpg/video.cgi' });
  const part = Buffer.concat([Buffer.from(`--frame\r\nContent-Type: image/jpeg\r\nContent-Length: ${jpeg.length}\r\n\r\n`), jpeg, Buffer.from('\r\n')]);
  t.ok(mjpeg.body.equals(Buffer.concat([part, part, part])), 'MJPEG stream relayed unchanged');

  const config = Buffer.from(JSON.stringify({ StreamingChannel: { id: 101, Video: { maxFrameRate: 1500 } } }));
  const put = await request(p.port, { method: 'PUT', path: '/cam/axis/ISAPI/Streaming/channels/101', headers: { 'Content-Type': 'application/json' }, body: [config.subarray(0, 10), config.subarray(10)] });
  t.equal(put.status, 201);
  t.equal(put.headers.location, `${p.base}/cam/axis/ISAPI/Streaming/channels/101/status`, 'Location rewritten');
  t.same(JSON.parse(put.body.toString()), { ok: true, stream: 'rtsp://127.0.0.2:18554/axis/Streaming/Channels/101', self: `${p.base}/cam/axis/ISAPI/Streaming/channels/101` }, 'JSON rewritten');
  const putSeen = cam.seen.find((s) => s.method === 'PUT')!;
  t.ok(putSeen.body.equals(config), 'chunked request body reaches the camera byte for byte');
  t.same(
    putSeen.raw.flatMap((v, i) => (i % 2 === 0 && /^(content-length|transfer-encoding)$/i.test(v) ? [`${v.toLowerCase()}: ${putSeen.raw[i + 1]}`] : [])),
    [`content-length: ${config.length}`],
    'the camera gets a Content-Length, not chunks',
  );
  // The VMS leg's recording of the chunked PUT parses back to the same body.
  const vmsReqs = recorder.to(p.port).flatMap((c) => messages(c).requests);
  t.ok(
    vmsReqs.some((m) => m.method === 'PUT' && m.body.equals(config)),
    'VMS leg recorded the chunked request whole',
  );

  const nf = await request(p.port, { path: '/cam/axis/nothing' });
  t.equal(nf.status, 404, 'the camera’s 404 passes through');
  t.same(
    nf.raw.flatMap((v, i) => (i % 2 === 0 && v.toLowerCase() === 'www-authenticate' ? [nf.raw[i + 1]] : [])),
    ['Digest realm="cam", nonce="n1", algorithm=MD5', 'Digest realm="cam", nonce="n2", algorithm=SHA-256'],
    'repeated challenges stay separate',
  );

  // The camera leg of the Basic-auth request: the HTTP learner redacts the token.
  const camTx = recorder.to(cam.port).flatMap((c) => learn(c));
  const paramTx = camTx.find((x) => x.url.startsWith('/axis-cgi/param.cgi'));
  t.ok(paramTx, 'transaction for the CGI request');
  t.equal(paramTx?.kind, 'http');
  t.equal(paramTx?.headers['authorization'], 'Basic <redacted>', 'Basic token redacted in the transaction');
  t.notOk(JSON.stringify(camTx).includes(basic.slice(6)), 'no token anywhere in the transactions');
});

t.test('a camera that is down gets 502, one that stays silent 504', async (t) => {
  const closedPort = await freePort();
  const sockets = new Set<net.Socket>();
  const silent = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
  });
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => silent.close(() => r()));
  });
  const silentPort = (silent.address() as net.AddressInfo).port;
  const p = await startProxy(
    t,
    [
      { alias: 'down', http: `http://127.0.0.1:${closedPort}` },
      { alias: 'mute', http: `http://127.0.0.1:${silentPort}` },
    ],
    { timeoutMs: 300 },
  );
  const down = await request(p.port, { path: '/cam/down/onvif/device_service' });
  t.equal(down.status, 502);
  t.match(JSON.parse(down.body.toString()), { error: 'CAMTAP_ERR_UPSTREAM', message: /ECONNREFUSED/ });
  const mute = await request(p.port, { path: '/cam/mute/x' });
  t.equal(mute.status, 504);
  t.match(JSON.parse(mute.body.toString()), { error: 'CAMTAP_ERR_UPSTREAM_TIMEOUT' });
  t.equal(sockets.size, 1, 'the silent camera was reached once');
});

t.test('a VMS that leaves an endless MJPEG stream makes camtap hang up on the camera', async (t) => {
  let cameraClosed!: () => void;
  const closed = new Promise<void>((r) => (cameraClosed = r));
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'multipart/x-mixed-replace; boundary=frame' });
    const part = Buffer.concat([Buffer.from('--frame\r\nContent-Type: image/jpeg\r\n\r\n'), randomBytes(4096), Buffer.from('\r\n')]);
    const timer = setInterval(() => res.write(part), 20);
    res.on('close', () => {
      clearInterval(timer);
      cameraClosed();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  const camPort = (server.address() as net.AddressInfo).port;
  // No idle timeout to fall back on: only the VMS leaving can end the camera's stream.
  const p = await startProxy(t, [{ alias: 'cam', http: `http://127.0.0.1:${camPort}` }], { timeoutMs: 3_600_000 });
  const got = await new Promise<number>((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: p.port, path: '/cam/cam/mjpg/video.cgi', agent: false }, (res) => {
      let n = 0;
      res.on('data', (c: Buffer) => {
        n += c.length;
        if (n > 20_000) {
          req.destroy();
          resolve(n);
        }
      });
    });
    req.on('error', (e) => (e.message.includes('socket hang up') ? undefined : reject(e)));
  });
  t.ok(got > 20_000, 'the stream flowed through camtap');
  await closed;
  t.pass('the camera’s stream was closed once the VMS left');
});

t.test('the real inline tap records both legs; tshark reads them as the ONVIF exchanges the camera logged', { skip: noTshark }, async (t) => {
  const sim = await startSim(t, { rtsp: CAMERA_RTSP, user: USER, password: PASSWORD });
  const tap = new InlineTap({ id: 3, name: 'inline', driver: 'inline', filter: {}, options: {} }, { log: silentLogger, options: {}, dataDir: '/nonexistent' });
  const frames: Array<{ sec: number; nsec: number; linkType: number; data: Buffer }> = [];
  const ac = new AbortController();
  void tap.open((f: TapFrame) => {
    frames.push({ sec: f.tsSec, nsec: f.tsNsec, linkType: f.linkType, data: Buffer.from(f.buf.subarray(f.off, f.off + f.capLen)) });
  }, ac.signal);
  t.teardown(() => tap.close());
  const p = await startProxy(t, [{ alias: 'door', http: sim.base }], { recorder: tap.recorder, recordVmsLeg: true });
  const cam = await connect({ hostname: '127.0.0.1', port: p.port, path: '/cam/door/onvif/device_service', username: USER, password: PASSWORD });
  const stream = await call<{ uri: string }>((cb) => cam.getStreamUri({ protocol: 'RTSP' }, cb));
  t.equal(stream.uri, 'rtsp://127.0.0.2:18554/door/stream1');
  await p.proxy.close(); // closes client and camera connections: FINs recorded

  const file = path.join(tempDir(t), 'inline.pcapng');
  let size = shbSize() + idbSize('inline');
  for (const f of frames) size += epbSize(f.data.length);
  const buf = Buffer.alloc(size);
  let off = writeShb(buf, 0);
  off = writeIdb(buf, off, frames[0]!.linkType, 0, 'inline');
  for (const f of frames) off = writeEpb(buf, off, 0, f.sec, f.nsec, f.data, 0, f.data.length, f.data.length);
  writeFileSync(file, buf.subarray(0, off));

  const r = spawnSync('tshark', ['-r', file, '-d', `tcp.port==${p.port},http`, '-d', `tcp.port==${sim.port},http`, '-Y', 'http.request', '-T', 'fields', '-E', 'occurrence=f', '-e', 'tcp.dstport', '-e', 'http.request.uri', '-e', 'http.file_data'], { encoding: 'utf8', maxBuffer: 1 << 26 });
  t.equal(r.status, 0, r.stderr);
  const rows = r.stdout.split('\n').filter((l) => l).map((l) => l.split('\t'));
  const opOf = (body: string) => {
    const text = /^[0-9a-f]+$/i.test(body) ? Buffer.from(body, 'hex').toString('utf8') : body;
    return /<(?:[\w-]+:)?Body[^>]*>\s*<(?:[\w-]+:)?([A-Za-z]\w*)/.exec(text)?.[1] ?? null;
  };
  const camRows = rows.filter((x) => Number(x[0]) === sim.port);
  const vmsRows = rows.filter((x) => Number(x[0]) === p.port);
  const logged = sim.requests();
  t.same(camRows.map((x) => x[1]).sort(), logged.map((x) => x.path).sort(), 'tshark finds on the camera leg the requests the camera logged');
  t.same(camRows.map((x) => opOf(x[2] ?? '')).sort(), logged.map((x) => x.action).sort(), 'with the same SOAP operations');
  t.same(vmsRows.map((x) => opOf(x[2] ?? '')).sort(), logged.map((x) => x.action).sort(), 'and on the VMS leg too');
  t.ok(
    vmsRows.every((x) => x[1]!.startsWith('/cam/door/onvif/')),
    'VMS leg URIs are camtap’s',
  );
  const resp = spawnSync('tshark', ['-r', file, '-d', `tcp.port==${p.port},http`, '-Y', `http.response and tcp.srcport==${p.port} and http.file_data contains "rtsp://127.0.0.2:18554/door/stream1"`, '-T', 'fields', '-e', 'http.response.code'], { encoding: 'utf8' });
  t.equal(resp.stdout.trim(), '200', 'tshark sees the rewritten GetStreamUri answer sent to the VMS');
});
