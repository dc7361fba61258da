/**
 * The RTSP server under bad input and bad clients: garbage, oversized headers, missing
 * CSeq, junk `$` frames, transports and states it does not serve, and a client that
 * stops reading. Each gets an error answer or a closed connection, the server keeps
 * running, and an ffmpeg client playing meanwhile still decodes every frame.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { have } from '../../helpers/peers.js';
import { RawRtsp, sessionOf } from './raw-rtsp.js';
import { ffmpegDecode, startServer, videoTruth } from './serve-fixture.js';

const noFfmpeg = have('ffmpeg') ? false : 'ffmpeg is not installed';
const FRAMES: number = videoTruth.decode.frames_decoded;

/** Waits for the first answer or the close; returns the status, or 'closed'. */
async function outcome(c: RawRtsp, ms = 10_000): Promise<number | 'closed' | 'nothing'> {
  await c.until(() => c.responses.length > 0 || c.closed, ms);
  if (c.responses.length > 0) return c.responses[0]!.status ?? 'nothing';
  return c.closed ? 'closed' : 'nothing';
}

t.test('bad input gets an error answer or a closed connection while ffmpeg plays on', { skip: noFfmpeg }, async (t) => {
  const { port, base, server } = await startServer(t);
  const playing = ffmpegDecode(`${base}/replay/test?speed=4`, 'tcp');
  const fresh = async () => {
    const c = await RawRtsp.connect(port);
    t.teardown(() => c.close());
    return c;
  };

  await t.test('garbage bytes: 400 and the connection is closed', async (t) => {
    const c = await fresh();
    c.write(Buffer.concat([Buffer.from([0x00, 0xff, 0x13]), randomBytes(4096)]));
    t.equal(await outcome(c), 400);
    t.ok(await c.until(() => c.closed), 'closed');
  });

  await t.test('a 1 MB header: 400 or closed, never buffered', async (t) => {
    const c = await fresh();
    c.write(`OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nX-Junk: ${'a'.repeat(1024 * 1024)}\r\n\r\n`);
    const o = await outcome(c);
    t.ok(o === 400 || o === 'closed', `got ${o}`);
    t.ok(await c.until(() => c.closed), 'closed');
  });

  await t.test('a request without CSeq: 400, and the connection goes on', async (t) => {
    const c = await fresh();
    c.write('OPTIONS * RTSP/1.0\r\nUser-Agent: x\r\n\r\n');
    t.equal(await outcome(c), 400);
    t.equal(c.responses[0]!.header('CSeq'), null, 'no CSeq invented');
    t.equal((await c.request('OPTIONS', '*'))?.status, 200, 'next request answered');
  });

  await t.test('junk $ frames: a well-framed one is ignored, an impossible one closes', async (t) => {
    const c = await fresh();
    const junk = Buffer.concat([Buffer.from([0x24, 9, 0, 64, 0x80]), randomBytes(63)]);
    c.write(junk);
    t.equal((await c.request('OPTIONS', '*'))?.status, 200, 'a frame on an unused channel is skipped');
    c.write(Buffer.from([0x24, 0, 0, 2, 0x00, 0x00]));
    const before = c.responses.length;
    await c.until(() => c.responses.length > before || c.closed);
    t.ok(c.closed || c.responses[before]?.status === 400, 'a 2-byte non-RTP frame: 400 or closed');
    t.ok(await c.until(() => c.closed), 'closed');
  });

  await t.test('transports it does not serve: 461', async (t) => {
    const c = await fresh();
    const url = `${base}/replay/test/trackID=0`;
    t.equal((await c.request('SETUP', url, { Transport: 'RTP/AVP;multicast;destination=232.1.1.1;port=5000-5001;ttl=1' }))?.status, 461, 'multicast');
    t.equal((await c.request('SETUP', url, { Transport: 'RTP/SAVP;unicast;client_port=5000-5001' }))?.status, 461, 'SRTP profile');
    t.equal((await c.request('SETUP', url, { Transport: 'RTP/AVP;unicast;client_port=5000-5001;mode=RECORD' }))?.status, 461, 'RECORD');
    t.equal((await c.request('SETUP', url, { Transport: 'RTP/AVP;unicast' }))?.status, 461, 'UDP without client_port');
    t.equal((await c.request('SETUP', url))?.status, 461, 'no Transport');
    const alt = await c.request('SETUP', url, { Transport: 'RTP/AVP;multicast, RTP/AVP/TCP;unicast;interleaved=4-5' });
    t.equal(alt?.status, 200, 'the first servable alternative is taken');
    t.match(alt?.header('Transport') ?? '', /interleaved=4-5/);
  });

  await t.test('states and sessions: 455 without SETUP, 454 for an unknown session, 459 across presentations', async (t) => {
    const c = await fresh();
    t.equal((await c.request('PLAY', `${base}/replay/test/`))?.status, 455, 'PLAY without SETUP');
    t.equal((await c.request('PAUSE', `${base}/replay/test/`))?.status, 455, 'PAUSE without SETUP');
    t.equal((await c.request('PLAY', `${base}/replay/test/`, { Session: '0123456789abcdef' }))?.status, 454, 'unknown session');
    t.equal((await c.request('TEARDOWN', `${base}/replay/test/`, { Session: 'nope' }))?.status, 454);
    const s = await c.request('SETUP', `${base}/replay/test/trackID=0`, { Transport: 'RTP/AVP/TCP;unicast' });
    t.equal((await c.request('SETUP', `${base}/replay/loop/trackID=0`, { Transport: 'RTP/AVP/TCP;unicast', Session: sessionOf(s) }))?.status, 459);
    t.equal((await c.request('SETUP', `${base}/replay/test/trackID=3`, { Transport: 'RTP/AVP/TCP;unicast' }))?.status, 404, 'no such track');
    await c.request('TEARDOWN', `${base}/replay/test/`, { Session: sessionOf(s) });
  });

  await t.test('unknown path: 404', async (t) => {
    const c = await fresh();
    t.equal((await c.request('DESCRIBE', `${base}/replay/missing`))?.status, 404);
    t.equal((await c.request('SETUP', `${base}/nothing/here/trackID=0`, { Transport: 'RTP/AVP/TCP;unicast' }))?.status, 404);
    t.equal((await c.request('DESCRIBE', 'not-a-url'))?.status, 400, 'not an rtsp URL: 400');
    t.equal((await c.request('DESCRIBE', `${base}/replay/test?speed=warp`))?.status, 400, 'bad speed=: 400');
  });

  await t.test('bad ranges: 457; reverse Scale: 456', async (t) => {
    const c = await fresh();
    const s = await c.request('SETUP', `${base}/replay/test/trackID=0`, { Transport: 'RTP/AVP/TCP;unicast' });
    const sess = sessionOf(s);
    for (const range of ['npt=abc-', 'npt=5-2', 'npt=50-60', 'npt=now-', 'smpte=0:00:01-', 'clock=20000101T000000Z-20000101T000010Z', 'clock=garbage']) {
      t.equal((await c.request('PLAY', `${base}/replay/test/`, { Session: sess, Range: range }))?.status, 457, range);
    }
    t.equal((await c.request('PLAY', `${base}/replay/test/`, { Session: sess, Scale: '-1' }))?.status, 456, 'Scale -1');
    t.equal(server.sessions >= 1, true, 'the session survives refused requests');
    await c.request('TEARDOWN', `${base}/replay/test/`, { Session: sess });
  });

  await t.test('other protocols and versions: 505 for RTSP/2.0, 551 for an unknown Require, 405 for RECORD', async (t) => {
    const c = await fresh();
    c.write('OPTIONS * RTSP/2.0\r\nCSeq: 1\r\n\r\n');
    t.equal(await outcome(c), 505);
    t.equal((await c.request('OPTIONS', '*', { Require: 'com.example.teleport' }))?.status, 551);
    t.equal((await c.request('OPTIONS', '*', { Require: 'onvif-replay' }))?.status, 200, 'onvif-replay is accepted');
    t.equal((await c.request('RECORD', `${base}/replay/test/`))?.status, 405);
    t.equal((await c.request('FLY', `${base}/replay/test/`))?.status, 501);
  });

  const r = await playing;
  t.equal(r.code, 0, 'the concurrent ffmpeg client exits 0');
  t.same(r.errors, [], 'with no error lines');
  t.equal(r.frames, FRAMES, `and all ${FRAMES} frames`);
});

t.test('a TCP client that stops reading is dropped when its send queue fills, and does not stall another client', { skip: noFfmpeg }, async (t) => {
  const { port, base, server } = await startServer(t);
  const playing = ffmpegDecode(`${base}/replay/test?speed=4`, 'tcp');
  const end = Date.now() + 30_000;
  while (server.sessions < 1 && Date.now() < end) await new Promise((res) => setTimeout(res, 20));
  t.equal(server.sessions, 1, 'ffmpeg is set up and playing (2.5 s at speed=4)');
  const stuck = await RawRtsp.connect(port);
  t.teardown(() => stuck.close());
  // The capture 80 times over (36 MB) at 1000x: far more than the 4 MiB queue and the kernel buffers.
  const s = await stuck.request('SETUP', `${base}/replay/loop/trackID=0`, { Transport: 'RTP/AVP/TCP;unicast;interleaved=0-1' });
  t.equal(s?.status, 200);
  const play = await stuck.request('PLAY', `${base}/replay/loop/?speed=1000`, { Session: sessionOf(s) });
  t.equal(play?.status, 200);
  stuck.socket.pause(); // never reads again
  while (server.connections > 1 && Date.now() < end) await new Promise((res) => setTimeout(res, 20));
  t.equal(server.connections, 1, 'the stuck client\'s connection is closed by the server, ffmpeg\'s is not');
  const r = await playing;
  t.equal(r.code, 0, 'ffmpeg exits 0');
  t.same(r.errors, [], 'no error lines');
  t.equal(r.frames, FRAMES, `ffmpeg gets all ${FRAMES} frames`);
  while (server.sessions > 0 && Date.now() < end) await new Promise((res) => setTimeout(res, 20));
  t.equal(server.sessions, 0, 'no session left');
  stuck.socket.resume();
  t.ok(await stuck.until(() => stuck.closed), 'the stuck client sees the close once it reads');
  t.ok(stuck.framesSeen < 80 * videoTruth.packets, `it got only part of the stream (${stuck.framesSeen} packets)`);
});

t.test('over maxClients: the extra connection gets 503 and is closed', async (t) => {
  const { port } = await startServer(t, { maxClients: 1 });
  const a = await RawRtsp.connect(port);
  t.teardown(() => a.close());
  t.equal((await a.request('OPTIONS', '*'))?.status, 200);
  const b = await RawRtsp.connect(port);
  t.teardown(() => b.close());
  t.equal((await b.request('OPTIONS', '*'))?.status, 503);
  t.ok(await b.until(() => b.closed), 'closed');
  t.equal((await a.request('OPTIONS', '*'))?.status, 200, 'the first client is unaffected');
});
