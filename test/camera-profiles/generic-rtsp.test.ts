/**
 * The generic-rtsp profile against the GStreamer lab camera (RTSP with Digest auth): the
 * contract suite, plus what only this profile does (SDP facts, the RTSP Date clock,
 * static payload type hints from RFC 3551).
 */
import t, { type Test } from 'tap';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import profile, { staticHints } from '../../camera-profiles/generic-rtsp/index.js';
import type { ProfileCamera } from '../../core/contracts/index.js';
import { runProfileContract } from './contract.js';
import { cameraMissing, freePort, startCamera } from '../helpers/peers.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const USER = 'viewer';
const PASSWORD = 'Gr7-lab-pw';

const tcp = { transport: 'tcp' as const, src: '192.0.2.10', sport: 50000, dst: '192.0.2.20', dport: 7070 };

async function labCamera(t: Test): Promise<ProfileCamera> {
  const cam = await startCamera({ port: await freePort(), auth: 'digest', user: USER, password: PASSWORD });
  t.teardown(() => cam.stop());
  return { name: 'lab-rtsp', address: '127.0.0.1', url: cam.url, user: USER, password: PASSWORD };
}

const missing = await cameraMissing();
if (missing) console.log(`# skipping generic-rtsp camera tests: ${missing}`);

t.test('generic-rtsp', { skip: missing ?? false }, async (t) => {
  await runProfileContract(t, () => profile, {
    modulePath: path.join(ROOT, 'camera-profiles/generic-rtsp'),
    start: labCamera,
    // camera.py: H.264 640x360 by default; it runs on this host's clock.
    truth: { stream: { codec: 'h264', width: 640, height: 360 }, clockOffsetMs: 0, auth: true },
    flows: [
      // RFC 2326 §6.1 request line and §7.1 status line.
      { name: 'an OPTIONS request on an odd port', flow: tcp, payload: Buffer.from('OPTIONS rtsp://192.0.2.20:7070/live RTSP/1.0\r\nCSeq: 1\r\n\r\n'), kind: 'rtsp' },
      { name: 'an RTSP 2.0 DESCRIBE', flow: tcp, payload: Buffer.from('DESCRIBE rtsp://cam/x RTSP/2.0\r\nCSeq: 1\r\n\r\n'), kind: 'rtsp' },
      { name: 'a status line (camtap saw the answer first)', flow: tcp, payload: Buffer.from('RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n'), kind: 'rtsp' },
      { name: 'an HTTP request is not RTSP', flow: tcp, payload: Buffer.from('GET / HTTP/1.1\r\nHost: cam\r\n\r\n'), kind: null },
      { name: 'RTSP text over UDP is not an RTSP connection', flow: { ...tcp, transport: 'udp' }, payload: Buffer.from('OPTIONS rtsp://cam/ RTSP/1.0\r\nCSeq: 1\r\n\r\n'), kind: null },
    ],
    hints: [
      // RFC 3551 §6 table 5: PT 26 is JPEG/90000, PT 34 H263/90000; dynamic types need an rtpmap.
      { name: 'static JPEG without rtpmap', sdp: 'v=0\r\nm=video 0 RTP/AVP 26\r\na=control:track1\r\n', hints: [{ payloadType: 26, codec: 'JPEG', clockRate: 90000 }] },
      { name: 'static types on one m= line', sdp: 'm=video 0 RTP/AVP 34 26\r\n', hints: [{ payloadType: 34, codec: 'H263', clockRate: 90000 }, { payloadType: 26, codec: 'JPEG', clockRate: 90000 }] },
      { name: 'an rtpmap wins', sdp: 'm=video 0 RTP/AVP 26\r\na=rtpmap:26 JPEG/90000\r\n', hints: [] },
      { name: 'a dynamic type gets no guess', sdp: 'm=video 0 RTP/AVP 96\r\n', hints: [] },
      { name: 'audio is not video', sdp: 'm=audio 0 RTP/AVP 0\r\n', hints: [] },
    ],
  });

  await t.test('describe reads the SDP the camera serves and its Server header', async (t) => {
    const camera = await labCamera(t);
    const d = await profile.describe!(camera);
    // What gst-rtsp-server sends (Server header, s= line) and camera.py's stream (b=AS, a=framerate).
    t.equal(d.extra?.server, 'GStreamer RTSP server');
    t.equal(d.extra?.session, 'Session streamed with GStreamer');
    t.match(d.extra?.methods ?? '', /DESCRIBE/);
    t.match(d.streams, [{ id: 'default', codec: 'h264', fps: 25 }]);
  });

  await t.test('a camera record without an RTSP url cannot be asked', async (t) => {
    await t.rejects(profile.describe!({ name: 'no-url', address: '127.0.0.1' }), { code: 'CAMTAP_ERR_PROFILE_UNSUPPORTED', message: /no-url.*no RTSP url/ });
  });

  await t.test('credentials written into the URL are split off, the record\'s win', async (t) => {
    const s = await profile.streamUri!({ name: 'c', address: '192.0.2.5', url: 'rtsp://u1:p%40ss@192.0.2.5:8554/live?ch=1' });
    t.same(s, { uri: 'rtsp://192.0.2.5:8554/live?ch=1', user: 'u1', password: 'p@ss', stream: 'default' });
    const r = await profile.streamUri!({ name: 'c', address: '192.0.2.5', url: 'rtsp://u1:x@192.0.2.5/live', user: 'u2', password: 'y' });
    t.same(r, { uri: 'rtsp://192.0.2.5/live', user: 'u2', password: 'y', stream: 'default' });
  });
});

t.test('static payload type hints follow RFC 3551 and ignore mapped or dynamic types', async (t) => {
  t.same(staticHints('m=video 5000 RTP/AVP 26 96\r\na=rtpmap:96 H264/90000\r\n'), [{ payloadType: 26, codec: 'JPEG', clockRate: 90000 }]);
  t.same(staticHints('m=video 5000/2 RTP/AVP 32\n'), [{ payloadType: 32, codec: 'MPV', clockRate: 90000 }]);
});
