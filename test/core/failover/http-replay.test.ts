/**
 * Failover strategy (b) against a real pushing camera (test/helpers/push-camera.ts: an
 * HTTP CGI that points an ffmpeg RTP stream wherever it is told): resending the
 * captured "push to" request with camtap's address makes the camera's RTP arrive at
 * camtap's socket, with no auth, Basic and Digest (a fresh nonce per challenge), and
 * the outcome says why when it cannot. The RTP is checked against the SDP ffmpeg wrote
 * (payload type) and by its own sequence numbers, not by camtap's code.
 */
import t, { type Test } from 'tap';
import { createSocket, type Socket } from 'node:dgram';
import { silentLogger } from '../../../core/logger.js';
import { sendHttpSteps } from '../../../core/failover/http-replay.js';
import type { HttpStep } from '../../../core/failover/types.js';
import { freePort, have } from '../../helpers/peers.js';
import { startPushCamera, type PushCamera } from '../../helpers/push-camera.js';

const skip = have('ffmpeg') ? false : 'ffmpeg is missing';
const USER = 'admin';
const PASSWORD = 'pa:ss w0rd';

/** A UDP socket on loopback standing in for camtap, keeping every datagram. */
async function udpSink(t: Test): Promise<{ port: number; packets: Buffer[]; sock: Socket }> {
  const sock = createSocket('udp4');
  const packets: Buffer[] = [];
  sock.on('message', (m) => packets.push(Buffer.from(m)));
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => sock.close());
  return { port: sock.address().port, packets, sock };
}

async function until(cond: () => boolean, limitMs = 20_000): Promise<boolean> {
  const end = Date.now() + limitMs;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return cond();
}

/** The captured "push to the VMS" request, with the VMS's address replaced by `dest:port` (what the plan makes of it). */
function pushStep(cam: PushCamera, dest: string, port: number, extra: Partial<HttpStep> = {}): HttpStep {
  return {
    kind: 'http',
    method: 'POST',
    url: cam.url,
    // As captured: a Content-Length of the original body, and a captured Authorization that must not be sent.
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': '999', 'user-agent': 'SomeVMS/7.1', authorization: 'Basic b2xkOm9sZA==' },
    body: `dest=${dest}&port=${port}`,
    note: `dest 10.0.0.5:40000 -> ${dest}:${port}`,
    ...extra,
  };
}

const getStep = (cam: PushCamera): HttpStep => ({ kind: 'http', method: 'GET', url: cam.url, headers: {}, body: '', note: 'read back' });

/** RTP v2 packets of one payload type and SSRC with consecutive sequence numbers (RFC 3550 §5.1), read by hand. */
function checkRtp(t: Test, packets: Buffer[], pt: number): void {
  const rtp = packets.filter((p) => p.length >= 12 && p[0]! >> 6 === 2 && !(p[1]! >= 200 && p[1]! <= 204));
  t.ok(rtp.length >= 25, `${rtp.length} RTP packets arrived`);
  t.same([...new Set(rtp.map((p) => p[1]! & 0x7f))], [pt], `payload type ${pt}, as in ffmpeg's SDP`);
  t.equal(new Set(rtp.map((p) => p.readUInt32BE(8))).size, 1, 'one SSRC');
  let gaps = 0;
  for (let i = 1; i < rtp.length; i++) if (((rtp[i]!.readUInt16BE(2) - rtp[i - 1]!.readUInt16BE(2)) & 0xffff) !== 1) gaps++;
  t.equal(gaps, 0, 'consecutive sequence numbers');
}

async function payloadType(cam: PushCamera): Promise<number> {
  const m = /^m=video \d+ RTP\/AVP (\d+)/m.exec(await cam.sdp());
  return m ? Number(m[1]) : -1;
}

t.test('a POST pointing the push camera at camtap\'s socket makes its RTP arrive there', { skip }, async (t) => {
  const cam = await startPushCamera({ httpPort: await freePort() });
  t.teardown(() => cam.stop());
  const sink = await udpSink(t);
  const o = await sendHttpSteps([pushStep(cam, '127.0.0.1', sink.port)], { camera: { name: 'cam1', address: '127.0.0.1' }, log: silentLogger });
  t.equal(o.ok, true, o.reason ?? 'ok');
  t.equal(o.strategy, 'http-replay');
  t.equal(o.steps.length, 1);
  t.match(o.steps[0], { step: 1, kind: 'http', request: `POST ${cam.url}`, status: 200, ok: true });
  t.match(o.steps[0]!.answer, `HTTP/1.1 200 OK\nOK dest=127.0.0.1&port=${sink.port}`);
  t.same(cam.requests(), [{ method: 'POST', path: '/cgi-bin/stream.cgi', status: 200, authorized: true }], 'one request: the captured Content-Length was recomputed (999 would have hung it)');
  t.match(cam.current(), { dest: '127.0.0.1', port: sink.port });
  t.ok(await until(() => sink.packets.length >= 40), 'RTP arrives');
  checkRtp(t, sink.packets, await payloadType(cam));

  const g = await sendHttpSteps([getStep(cam)], { camera: { name: 'cam1' }, log: silentLogger });
  t.equal(g.ok, true);
  t.match(g.steps[0]!.answer, `dest=127.0.0.1&port=${sink.port}`, 'GET reads the setting back');
});

t.test('the push camera restarts its stream on each change and stops the old one by PID', { skip }, async (t) => {
  const cam = await startPushCamera({ httpPort: await freePort() });
  t.teardown(() => cam.stop());
  const a = await udpSink(t);
  const b = await udpSink(t);
  t.equal((await sendHttpSteps([pushStep(cam, '127.0.0.1', a.port)], { camera: { name: 'cam1' }, log: silentLogger })).ok, true);
  t.ok(await until(() => a.packets.length >= 10), 'first destination receives');
  // Setting the same destination again changes nothing.
  t.equal((await sendHttpSteps([pushStep(cam, '127.0.0.1', a.port)], { camera: { name: 'cam1' }, log: silentLogger })).ok, true);
  t.equal(cam.history().length, 1, 'no restart for the same destination');
  t.equal((await sendHttpSteps([pushStep(cam, '127.0.0.1', b.port)], { camera: { name: 'cam1' }, log: silentLogger })).ok, true);
  const h = cam.history();
  t.same(h.map((x) => x.port), [a.port, b.port]);
  t.not(h[0]!.pid, h[1]!.pid, 'a new ffmpeg');
  t.throws(() => process.kill(h[0]!.pid, 0), { code: 'ESRCH' }, 'the old ffmpeg is gone');
  t.ok(await until(() => b.packets.length >= 10), 'second destination receives');
  const before = a.packets.length;
  await new Promise((r) => setTimeout(r, 500));
  t.equal(a.packets.length, before, 'the first destination receives nothing more');
  const g = await sendHttpSteps([getStep(cam)], { camera: { name: 'cam1' }, log: silentLogger });
  t.match(g.steps[0]!.answer, `dest=127.0.0.1&port=${b.port}`);
});

for (const auth of ['digest', 'basic'] as const) {
  t.test(`a push camera with ${auth} auth: the 401 is answered with the camera's credentials`, { skip }, async (t) => {
    const cam = await startPushCamera({ httpPort: await freePort(), auth, user: USER, password: PASSWORD });
    t.teardown(() => cam.stop());
    const sink = await udpSink(t);

    await t.test('without credentials: refused, and the outcome says none are configured', async (t) => {
      const o = await sendHttpSteps([pushStep(cam, '127.0.0.1', sink.port), getStep(cam)], { camera: { name: 'cam1' }, log: silentLogger });
      t.equal(o.ok, false);
      t.equal(o.reason, `POST ${cam.url}: 401 Unauthorized (${auth === 'digest' ? 'Digest' : 'Basic'}) and no credentials configured for camera cam1`);
      t.equal(o.steps.length, 1, 'the failing step ends the run');
      t.match(o.steps[0], { status: 401, ok: false });
      t.same(cam.requests().map((r) => [r.method, r.status, r.authorized]), [['POST', 401, false]], 'the captured Authorization was not sent (it would have been tried)');
      t.equal(cam.history().length, 0, 'nothing streams');
    });

    await t.test('with a wrong password: refused, naming the user, never the password', async (t) => {
      const o = await sendHttpSteps([pushStep(cam, '127.0.0.1', sink.port)], { camera: { name: 'cam1', user: USER, password: 'Wr0ngSecret' }, log: silentLogger });
      t.equal(o.ok, false);
      t.equal(o.reason, `POST ${cam.url}: 401 Unauthorized (${auth === 'digest' ? 'Digest' : 'Basic'}): credentials refused for user ${USER}`);
      t.notMatch(JSON.stringify(o), 'Wr0ngSecret');
    });

    await t.test('with credentials: each step answers its own challenge and the RTP arrives', async (t) => {
      const n0 = cam.requests().length;
      const o = await sendHttpSteps([pushStep(cam, '127.0.0.1', sink.port), getStep(cam)], { camera: { name: 'cam1', address: '127.0.0.1', user: USER, password: PASSWORD }, log: silentLogger });
      t.equal(o.ok, true, o.reason ?? 'ok');
      t.same(o.steps.map((s) => s.status), [200, 200]);
      t.same(
        cam.requests().slice(n0).map((r) => [r.method, r.status, r.authorized]),
        [['POST', 401, false], ['POST', 200, true], ['GET', 401, false], ['GET', 200, true]],
        'challenged, then accepted, per step',
      );
      t.notMatch(JSON.stringify(o), PASSWORD, 'no password in the outcome');
      t.ok(await until(() => sink.packets.length >= 40), 'RTP arrives');
      checkRtp(t, sink.packets, await payloadType(cam));
    });
  });
}

t.test('an answer that is not 2xx fails the step with its status and the start of the answer; later steps are not sent', { skip }, async (t) => {
  const cam = await startPushCamera({ httpPort: await freePort() });
  t.teardown(() => cam.stop());
  const bad = pushStep(cam, '10.1.2.3', 5000);
  const o = await sendHttpSteps([bad, getStep(cam)], { camera: { name: 'cam1' }, log: silentLogger });
  t.equal(o.ok, false);
  t.equal(o.reason, `POST ${cam.url}: 400 Bad Request: bad destination: dest must be a loopback IPv4 address and port 1-65535 (got dest=10.1.2.3&port=5000)`);
  t.equal(o.steps.length, 1);
  t.equal(cam.requests().length, 1, 'the GET after it was not sent');

  const missing = await sendHttpSteps([{ ...getStep(cam), url: cam.url.replace('stream.cgi', 'nope.cgi') }], { camera: { name: 'cam1' }, log: silentLogger });
  t.match(missing, { ok: false, reason: `GET ${cam.url.replace('stream.cgi', 'nope.cgi')}: 404 Not Found: no such CGI: /cgi-bin/nope.cgi` });
});

t.test('a dry run lists each request as it would go and sends nothing', { skip }, async (t) => {
  const cam = await startPushCamera({ httpPort: await freePort(), auth: 'digest', user: USER, password: PASSWORD });
  t.teardown(() => cam.stop());
  const o = await sendHttpSteps([pushStep(cam, '127.0.0.1', 41000), getStep(cam)], { camera: { name: 'cam1', user: USER, password: PASSWORD }, log: silentLogger, dryRun: true });
  t.equal(o.ok, true);
  t.equal(o.steps.length, 2);
  const body = 'dest=127.0.0.1&port=41000';
  t.equal(
    o.steps[0]!.answer,
    [
      '(dry run: not sent)',
      'POST /cgi-bin/stream.cgi HTTP/1.1',
      `Host: 127.0.0.1:${cam.httpPort}`,
      'content-type: application/x-www-form-urlencoded',
      'user-agent: SomeVMS/7.1',
      `Content-Length: ${body.length}`,
      'Authorization: <answered from challenge>',
      '',
      body,
    ].join('\n'),
  );
  t.match(o.steps[1], { request: `GET ${cam.url}`, status: null, ok: true });
  t.notMatch(JSON.stringify(o), PASSWORD);
  t.notMatch(JSON.stringify(o), 'b2xkOm9sZA', 'the captured Authorization is not listed');
  t.same(cam.requests(), [], 'the camera received nothing');
});

t.test('a step to a host that is not the camera\'s address is not sent', async (t) => {
  const o = await sendHttpSteps([{ kind: 'http', method: 'POST', url: 'http://127.0.0.9:1/cgi-bin/x.cgi', headers: {}, body: 'a=b', note: '' }], { camera: { name: 'cam1', address: '127.0.0.1' }, log: silentLogger });
  t.equal(o.ok, false);
  t.equal(o.reason, 'POST http://127.0.0.9:1/cgi-bin/x.cgi: 127.0.0.9 is not the address of camera cam1 (127.0.0.1); not sent');
  t.match(o.steps[0], { status: null, ok: false, answer: /^not sent/ });
});

t.test('a camera that does not answer: the reason names the step and the connection error', async (t) => {
  const port = await freePort();
  const o = await sendHttpSteps([{ kind: 'http', method: 'GET', url: `http://127.0.0.1:${port}/x`, headers: {}, body: '', note: '' }], { camera: { name: 'cam1' }, log: silentLogger });
  t.match(o, { ok: false, reason: `GET http://127.0.0.1:${port}/x: cannot connect: ECONNREFUSED` });
});
