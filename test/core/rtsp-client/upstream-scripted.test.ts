/**
 * The upstream session against scripted cameras sending RTP over TCP. Keeping the camera's session alive (RFC 2326 §10.8, §12.37) against scripted
 * cameras sending RTP over TCP: GET_PARAMETER at half the Session timeout, OPTIONS
 * instead once the camera answers 501 (or from the start when OPTIONS' Public does not
 * list it), and a 454 (session gone) loses the camera. Credentials never reach the logs.
 * stop() during set-up ends it at once.
 */
import t from 'tap';
import type { Logger } from '../../../core/contracts/logger.js';
import { UpstreamSession } from '../../../core/rtsp-client/upstream.js';
import type { WireMessage } from '../../../core/wire/rtsp-message.js';
import { SDP, answer, fakeCamera, pumpRtp, type Conn } from './fake-camera.js';
import { record } from './channel-check.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  while (performance.now() < end && !cond()) await sleep(25);
  return cond();
}

/** A camera: SDP, TCP SETUP with `Session: s1;timeout=<timeout>`, RTP after PLAY; `other` answers the rest. */
function script(timeout: number, other: (req: WireMessage, c: Conn) => void, publicMethods = 'OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER', authorization: string | null = null) {
  return (req: WireMessage, c: Conn) => {
    if (authorization !== null && req.header('Authorization') !== authorization) c.send(answer(req, 401, ['WWW-Authenticate: Basic realm="cam"']));
    else if (req.method === 'OPTIONS' && c.requests.length === 1) c.send(answer(req, 200, [`Public: ${publicMethods}`]));
    else if (req.method === 'DESCRIBE') c.send(answer(req, 200, ['Content-Type: application/sdp', `Content-Base: ${req.url}/`], SDP));
    else if (req.method === 'SETUP') c.send(answer(req, 200, [`Session: s1;timeout=${timeout}`, 'Transport: RTP/AVP/TCP;unicast;interleaved=0-1']));
    else if (req.method === 'PLAY') {
      c.send(answer(req, 200, ['Session: s1']));
      pumpRtp(c);
    } else if (req.method === 'TEARDOWN') c.send(answer(req, 200));
    else other(req, c);
  };
}

const afterPlay = (c: Conn) => c.requests.slice(c.requests.findIndex((r) => r.method === 'PLAY') + 1).map((r) => r.method);

t.test('GET_PARAMETER answered 501: OPTIONS from then on, at half the Session timeout', async (t) => {
  const cam = await fakeCamera(t, script(2, (req, c) => c.send(answer(req, req.method === 'GET_PARAMETER' ? 501 : 200))));
  const s = new UpstreamSession({ url: `rtsp://127.0.0.1:${cam.port}/live`, transport: 'tcp', key: 'k', camera: 'cam' });
  t.teardown(() => s.stop());
  const ch = await s.start();
  const rec = record(ch);
  t.ok(await until(() => afterPlay(cam.conns[0]!).filter((m) => m === 'OPTIONS').length >= 2, 10_000), 'two OPTIONS keepalives');
  t.same(afterPlay(cam.conns[0]!).slice(0, 3), ['GET_PARAMETER', 'OPTIONS', 'OPTIONS'], 'GET_PARAMETER tried once');
  const ka = cam.conns[0]!.requests.filter((r) => r.method === 'OPTIONS').slice(1);
  t.ok(ka.every((r) => r.header('Session') === 's1' && r.url === `rtsp://127.0.0.1:${cam.port}/live/`), 'with the session, on the aggregate URL (the Content-Base)');
  t.ok(ka.length >= 2);
  t.equal(s.state, 'playing');
  t.ok(rec.packets.length > 10 && rec.packets[0]!.keyframe, 'the RTP flows');
  t.equal(cam.conns.length, 1, 'never reconnected');
});

t.test('no GET_PARAMETER in Public: OPTIONS keepalives only', async (t) => {
  const cam = await fakeCamera(t, script(60, (req, c) => c.send(answer(req, 200)), 'OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN'));
  const s = new UpstreamSession({ url: `rtsp://127.0.0.1:${cam.port}/live`, transport: 'tcp', key: 'k', camera: 'cam', keepaliveSec: 0.2 });
  t.teardown(() => s.stop());
  await s.start();
  t.ok(await until(() => afterPlay(cam.conns[0]!).length >= 3, 10_000));
  t.same(afterPlay(cam.conns[0]!).slice(0, 3), ['OPTIONS', 'OPTIONS', 'OPTIONS']);
});

t.test('a keepalive answered 454 loses the camera; with maxReconnects 0 the channel ends', async (t) => {
  const cam = await fakeCamera(t, script(60, (req, c) => c.send(answer(req, 454))));
  const s = new UpstreamSession({ url: `rtsp://127.0.0.1:${cam.port}/live`, transport: 'tcp', key: 'k', camera: 'cam', keepaliveSec: 0.2, maxReconnects: 0 });
  t.teardown(() => s.stop());
  const ch = await s.start();
  const rec = record(ch, false);
  t.equal(await rec.ended, 'camera lost: keepalive: the camera no longer knows the session (454)');
  t.equal(s.state, 'closed');
});

t.test('credentials never reach the logs, at any level', async (t) => {
  const lines: string[] = [];
  const log: Logger = {
    debug: (o, m) => void lines.push(JSON.stringify([o, m])),
    info: (o, m) => void lines.push(JSON.stringify([o, m])),
    warn: (o, m) => void lines.push(JSON.stringify([o, m])),
    error: (o, m) => void lines.push(JSON.stringify([o, m])),
    child(b) {
      lines.push(JSON.stringify(b));
      return log;
    },
  };
  const good = `Basic ${Buffer.from('admin:Sup3rSecret').toString('base64')}`;
  const cam = await fakeCamera(t, script(60, (req, c) => c.send(answer(req, 200)), undefined, good));
  const s = new UpstreamSession({ url: `rtsp://admin:Sup3rSecret@127.0.0.1:${cam.port}/live?password=Sup3rSecret`, transport: 'tcp', key: 'k', camera: 'cam', log, keepaliveSec: 0.2 });
  await s.start();
  await until(() => afterPlay(cam.conns[0]!).length >= 2, 5000);
  await s.stop();
  t.ok(cam.conns[0]!.requests.filter((r) => r.header('Authorization') === good).length >= 5, 'the credentials were used');
  const all = lines.join('\n');
  t.ok(lines.length > 5, `${lines.length} log lines`);
  t.notMatch(all, 'Sup3rSecret');
  t.notMatch(all, good.slice(6));
  t.match(all, `rtsp://127.0.0.1:${cam.port}/live?password=***`, 'the URL is logged redacted');
});

t.test('stop() during set-up: start() rejects at once, no connection left; start() after stop() rejects', async (t) => {
  const cam = await fakeCamera(t, () => {}); // never answers
  const s = new UpstreamSession({ url: `rtsp://127.0.0.1:${cam.port}/live`, transport: 'udp', key: 'k', camera: 'cam', timeoutMs: 60_000 });
  const started = s.start().catch((e: Error) => e);
  t.ok(await until(() => cam.conns.length === 1 && cam.conns[0]!.requests.length === 1, 5000), 'OPTIONS sent');
  await s.stop();
  const err = await started;
  t.match((err as Error).message, /stopped while setting up/);
  await cam.conns[0]!.closed;
  t.equal(s.state, 'closed');
  const again = await s.start().catch((e: Error) => e);
  t.match((again as Error).message, /stopped while setting up/, 'the same promise');
  const fresh = new UpstreamSession({ url: `rtsp://127.0.0.1:${cam.port}/live`, transport: 'udp', key: 'k', camera: 'cam' });
  await fresh.stop();
  t.match(((await fresh.start().catch((e: Error) => e)) as Error).message, /the session was stopped/);
  t.equal(cam.conns.length, 1, 'no connection made after stop()');
});
