/**
 * The RTSP client connection against scripted cameras (small node:net servers on
 * loopback): requests carry CSeq, Session and credentials as RFC 2326 and RFC 7616 say,
 * 401s are answered once (and once more for a stale nonce), every byte is reported to
 * the recorder exactly as it crossed the socket, and a camera that answers garbage, a
 * 1 MB header, a huge body or a flood of `$` frames makes start() reject with a clear
 * error instead of crashing or hanging.
 */
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import type { Endpoint, InlineRecorder } from '../../../core/contracts/inline.js';
import { isCamtapError } from '../../../core/errors.js';
import { RtspClientConnection } from '../../../core/rtsp-client/client.js';
import { UpstreamSession } from '../../../core/rtsp-client/upstream.js';
import type { WireMessage } from '../../../core/wire/rtsp-message.js';
import { SDP, answer, fakeCamera, type Conn } from './fake-camera.js';

const md5 = (s: string) => createHash('md5').update(s).digest('hex');

/** Digest parameters of an Authorization value. */
function digestParams(v: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of v.replace(/^Digest\s+/, '').matchAll(/(\w+)=("(?:[^"\\]|\\.)*"|[^,\s]*)/g)) out[m[1]!] = m[2]!.startsWith('"') ? m[2]!.slice(1, -1) : m[2]!;
  return out;
}

t.test('requests carry CSeq, User-Agent and the Session; userinfo never reaches the wire', async (t) => {
  const cam = await fakeCamera(t, (req, c) => {
    if (req.method === 'SETUP') c.send(answer(req, 200, ['Session: 4711ab;timeout=42', 'Transport: RTP/AVP/TCP;unicast;interleaved=0-1']));
    else if (req.method === 'PLAY') c.send(answer(req, 200, ['Session: 4711ab']));
    else c.send(answer(req, 200));
  });
  const conn = await RtspClientConnection.connect(`rtsp://127.0.0.1:${cam.port}/live`, { userAgent: 'test-agent' });
  t.teardown(() => conn.close());
  await conn.request('OPTIONS', `rtsp://user:secret@127.0.0.1:${cam.port}/live`);
  await conn.request('SETUP', `rtsp://127.0.0.1:${cam.port}/live/trackID=0`, { Transport: 'RTP/AVP/TCP;unicast;interleaved=0-1' });
  t.same(conn.session, { id: '4711ab', timeoutSec: 42 }, 'Session id and timeout (RFC 2326 §12.37)');
  await conn.request('PLAY', `rtsp://127.0.0.1:${cam.port}/live`, { 'User-Agent': 'VMS/1.0', CSeq: '999' });
  t.same(conn.session, { id: '4711ab', timeoutSec: 42 }, 'the id repeated without a timeout keeps the timeout');
  const [o, s, p] = cam.conns[0]!.requests;
  t.equal(o!.url, `rtsp://127.0.0.1:${cam.port}/live`, 'userinfo stripped from the request line');
  t.same([o!.cseq, s!.cseq, p!.cseq], [1, 2, 3], 'CSeq counts up; a caller CSeq is replaced');
  t.equal(o!.header('User-Agent'), 'test-agent');
  t.equal(p!.header('User-Agent'), 'VMS/1.0', "the caller's headers win (a captured request replays as captured)");
  t.equal(o!.header('Session'), null);
  t.equal(p!.header('Session'), '4711ab', 'the session from SETUP on later requests, without its timeout');
  t.notMatch(Buffer.concat(cam.conns[0]!.received).toString('latin1'), 'secret');
});

t.test('answers without CSeq match the outstanding request; a camera request is answered', async (t) => {
  const cam = await fakeCamera(t, (req, c) => {
    if (req.kind === 'response') return;
    // A camera asking the client something first (RFC 2326 §10: servers may send OPTIONS), then an answer without CSeq.
    c.send('OPTIONS * RTSP/1.0\r\nCSeq: 77\r\n\r\n');
    c.send('RTSP/1.0 200 OK\r\nPublic: OPTIONS\r\n\r\n');
  });
  const conn = await RtspClientConnection.connect(`rtsp://127.0.0.1:${cam.port}/`);
  t.teardown(() => conn.close());
  const r = await conn.request('OPTIONS', `rtsp://127.0.0.1:${cam.port}/`);
  t.equal(r.header('Public'), 'OPTIONS');
  await new Promise((r) => setTimeout(r, 50));
  const back = cam.conns[0]!.requests.find((m) => m.kind === 'response');
  t.equal(back?.status, 200, 'the camera got an answer');
  t.equal(back?.cseq, 77, 'with its own CSeq');
});

t.test('Basic: the 401 is answered once on the same connection, and every later request carries credentials', async (t) => {
  const good = `Basic ${Buffer.from('admin:pa:ss').toString('base64')}`;
  const cam = await fakeCamera(t, (req, c) => {
    if (req.header('Authorization') === good) c.send(answer(req, 200));
    else c.send(answer(req, 401, ['WWW-Authenticate: Basic realm="cam"']));
  });
  const conn = await RtspClientConnection.connect(`rtsp://admin:pa%3Ass@127.0.0.1:${cam.port}/s`);
  t.teardown(() => conn.close());
  t.equal((await conn.request('DESCRIBE', conn.url)).status, 200);
  t.equal((await conn.request('SETUP', `${conn.url}/trackID=0`)).status, 200);
  const reqs = cam.conns[0]!.requests;
  t.same(reqs.map((r) => [r.method, r.header('Authorization') !== null]), [['DESCRIBE', false], ['DESCRIBE', true], ['SETUP', true]]);
  t.equal(cam.conns.length, 1, 'one connection');
  t.equal(conn.authScheme, 'basic');
});

t.test('Digest with qop=auth: nonce count per request, a stale nonce retried once, a wrong password returned as 401', async (t) => {
  const realm = 'cam';
  let nonce = 'n-1';
  let staleNext = 0;
  const seen: Array<{ method: string; nc: string; nonce: string; valid: boolean }> = [];
  const cam = await fakeCamera(t, (req, c) => {
    const auth = req.header('Authorization');
    const challenge = (stale: boolean) => answer(req, 401, [`WWW-Authenticate: Digest realm="${realm}", nonce="${nonce}", qop="auth", algorithm=MD5${stale ? ', stale=TRUE' : ''}`]);
    if (!auth) return c.send(challenge(false));
    const p = digestParams(auth);
    // RFC 2617 §3.2.2.1, computed here independently of the client.
    const expected = md5(`${md5(`admin:${realm}:secret`)}:${p.nonce}:${p.nc}:${p.cnonce}:auth:${md5(`${req.method}:${p.uri}`)}`);
    const valid = p.response === expected && p.uri === req.url && p.nonce === nonce;
    seen.push({ method: req.method!, nc: p.nc!, nonce: p.nonce!, valid });
    if (staleNext > 0) {
      staleNext--;
      nonce = `n-${seen.length + 1}`;
      return c.send(challenge(true));
    }
    c.send(valid ? answer(req, 200) : challenge(false));
  });
  const conn = await RtspClientConnection.connect(`rtsp://admin:secret@127.0.0.1:${cam.port}/s`);
  t.teardown(() => conn.close());
  t.equal((await conn.request('DESCRIBE', conn.url)).status, 200);
  t.equal((await conn.request('SETUP', `${conn.url}/trackID=0`)).status, 200);
  staleNext = 1;
  t.equal((await conn.request('PLAY', conn.url)).status, 200, 'a stale nonce is retried with the new one');
  staleNext = 2;
  t.equal((await conn.request('GET_PARAMETER', conn.url)).status, 401, 'but only once');
  t.same(
    seen.map((s) => [s.method, s.nc, s.valid]),
    [
      ['DESCRIBE', '00000001', true],
      ['SETUP', '00000002', true],
      ['PLAY', '00000003', true],
      ['PLAY', '00000001', true],
      ['GET_PARAMETER', '00000002', true],
      ['GET_PARAMETER', '00000001', true],
    ],
  );

  const wrong = await RtspClientConnection.connect(`rtsp://admin:nope@127.0.0.1:${cam.port}/s`);
  t.teardown(() => wrong.close());
  t.equal((await wrong.request('DESCRIBE', wrong.url)).status, 401, 'a wrong password: the 401 is the answer');
  t.equal(cam.conns[1]!.requests.length, 2, 'tried once with credentials, not again');
});

t.test('the recorder gets exactly the bytes of the connection, each way, and one close', async (t) => {
  const cam = await fakeCamera(t, (req, c) => {
    // The answer in two writes, the second with an interleaved frame after it.
    const a = Buffer.from(answer(req, 200, ['Session: 1'], SDP), 'latin1');
    c.send(a.subarray(0, 7));
    c.send(Buffer.concat([a.subarray(7), Buffer.from([0x24, 0, 0, 12, 0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1])]));
  });
  const toServer: Buffer[] = [];
  const toClient: Buffer[] = [];
  let tcpCalls: Array<[Endpoint, Endpoint]> = [];
  let closes = 0;
  const recorder: InlineRecorder = {
    tcp(client, server) {
      tcpCalls.push([client, server]);
      return { fromClient: (d) => toServer.push(Buffer.from(d)), fromServer: (d) => toClient.push(Buffer.from(d)), close: () => void closes++ };
    },
    udp() {
      t.fail('no UDP here');
    },
  };
  const conn = await RtspClientConnection.connect(`rtsp://127.0.0.1:${cam.port}/s`, { recorder });
  const frames: number[] = [];
  conn.onInterleaved((ch, payload) => frames.push(ch, payload.length));
  await conn.request('DESCRIBE', conn.url, { Accept: 'application/sdp' });
  await conn.request('OPTIONS', conn.url);
  await new Promise((r) => setTimeout(r, 50));
  conn.close();
  conn.close();
  await cam.conns[0]!.closed;
  const server = cam.conns[0]!;
  t.same(tcpCalls, [[{ ip: '127.0.0.1', port: server.peerPort }, { ip: '127.0.0.1', port: cam.port }]], 'camtap side then camera side');
  t.same(Buffer.concat(toServer), Buffer.concat(server.received), 'fromClient: what the camera received');
  t.same(Buffer.concat(toClient), Buffer.concat(server.sent), 'fromServer: what the camera sent');
  t.equal(closes, 1, 'closed once');
  t.same(frames, [0, 12, 0, 12], 'the interleaved frames');
});

/** start() of an upstream session against a scripted camera: the error, and that the camera saw the connection closed. */
async function startAgainst(t: Test, onRequest: (req: WireMessage, c: Conn) => void, timeoutMs = 5000): Promise<{ err: Error; cam: Awaited<ReturnType<typeof fakeCamera>> }> {
  const cam = await fakeCamera(t, onRequest);
  const s = new UpstreamSession({ url: `rtsp://admin:secret@127.0.0.1:${cam.port}/cam`, transport: 'tcp', key: 'k', camera: 'cam', timeoutMs });
  const err = (await s.start().then(
    () => new Error('start() resolved'),
    (e: unknown) => e as Error,
  ));
  t.equal(s.state, 'closed');
  if (cam.conns[0]) await cam.conns[0].closed; // the client hung up
  t.notMatch(err.message, 'secret');
  return { err, cam };
}

t.test('a malformed camera makes start() reject with a clear error and never crashes', async (t) => {
  await t.test('garbage instead of an answer', async (t) => {
    const { err } = await startAgainst(t, (_req, c) => c.send('HELLO THERE, I AM A CAMERA\r\n\r\n'));
    t.ok(isCamtapError(err, 'CAMTAP_ERR_UPSTREAM'));
    t.match(err.message, /^camera rtsp:\/\/127\.0\.0\.1:\d+\/cam: malformed data from the camera at byte 0: malformed start line$/);
  });
  await t.test('binary junk', async (t) => {
    const { err } = await startAgainst(t, (_req, c) => c.send(Buffer.from([0, 1, 2, 0xff, 0xfe, 13, 10])));
    t.ok(isCamtapError(err, 'CAMTAP_ERR_UPSTREAM'));
    t.match(err.message, /malformed data from the camera at byte 0: unexpected byte 0x00/);
  });
  await t.test('a 1 MB header', async (t) => {
    const { err } = await startAgainst(t, (req, c) => c.send(`RTSP/1.0 200 OK\r\nCSeq: ${req.cseq}\r\nX-Pad: ${'a'.repeat(1 << 20)}\r\n\r\n`));
    t.ok(isCamtapError(err, 'CAMTAP_ERR_UPSTREAM'));
    t.match(err.message, /header section exceeds 65536 bytes/);
  });
  await t.test('a body of 50 MB announced', async (t) => {
    const { err } = await startAgainst(t, (req, c) => c.send(`RTSP/1.0 200 OK\r\nCSeq: ${req.cseq}\r\nContent-Length: 50000000\r\n\r\nv=0\r\n`));
    t.ok(isCamtapError(err, 'CAMTAP_ERR_UPSTREAM'));
    t.match(err.message, /Content-Length 50000000 exceeds 1048576/);
  });
  await t.test('a flood of well-formed $ frames nobody set up', async (t) => {
    const frame = Buffer.from([0x24, 0, 0, 12, 0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]);
    const { err } = await startAgainst(t, (_req, c) => c.send(Buffer.concat(Array.from({ length: 1000 }, () => frame))));
    t.ok(isCamtapError(err, 'CAMTAP_ERR_UPSTREAM'));
    t.match(err.message, /sent 65 interleaved frames on channels never set up/);
  });
  await t.test('$ frames that are not RTP', async (t) => {
    const { err } = await startAgainst(t, (_req, c) => c.send(Buffer.from([0x24, 0, 0, 2, 0xde, 0xad, 0x24, 7, 0xff, 0xff])));
    t.ok(isCamtapError(err, 'CAMTAP_ERR_UPSTREAM'));
    t.match(err.message, /interleaved frame of 2 bytes is too short/);
  });
  await t.test('an answer with an SDP that has no video', async (t) => {
    const audio = SDP.replace('m=video 0 RTP/AVP 96', 'm=audio 0 RTP/AVP 0');
    const { err } = await startAgainst(t, (req, c) => c.send(answer(req, 200, ['Content-Type: application/sdp'], audio)));
    t.ok(isCamtapError(err, 'CAMTAP_ERR_UPSTREAM'));
    t.match(err.message, /its SDP has no RTP video track/);
  });
  await t.test('a camera that hangs up', async (t) => {
    const { err } = await startAgainst(t, (_req, c) => c.sock.destroy());
    t.ok(isCamtapError(err, 'CAMTAP_ERR_UPSTREAM'));
    t.match(err.message, /connection closed by the camera|connection error: ECONNRESET/);
  });
  await t.test('a camera that never answers', async (t) => {
    const { err } = await startAgainst(t, () => {}, 300);
    t.ok(isCamtapError(err, 'CAMTAP_ERR_UPSTREAM'));
    t.match(err.message, /no answer to OPTIONS within 0.3 s/);
  });
  await t.test('a SETUP refused: CAMTAP_ERR_UPSTREAM_REFUSED with the status', async (t) => {
    const { err } = await startAgainst(t, (req, c) => {
      if (req.method === 'DESCRIBE') c.send(answer(req, 200, ['Content-Type: application/sdp'], SDP));
      else if (req.method === 'SETUP') c.send(answer(req, 461));
      else c.send(answer(req, 200));
    });
    t.ok(isCamtapError(err, 'CAMTAP_ERR_UPSTREAM_REFUSED'));
    t.match(err.message, /refused SETUP: 461/);
  });
});
