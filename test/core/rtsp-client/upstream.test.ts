/**
 * The upstream camera session against the lab camera (a real gst-rtsp-server): over
 * UDP and TCP interleaved, with no auth, Basic and Digest, the channel carries the
 * camera's H.264, and an independent ffmpeg reading the channel's SDP decodes every
 * access unit of it with no error. A wrong password is refused with an error naming
 * the camera URL without the password.
 */
import t from 'tap';
import { isCamtapError } from '../../../core/errors.js';
import { UpstreamSession } from '../../../core/rtsp-client/upstream.js';
import { cameraMissing, freePort, have, startCamera } from '../../helpers/peers.js';
import { accessUnits, decode, record, seqOf, ssrcOf, tsOf, wholeUnits } from './channel-check.js';

const missing = (await cameraMissing()) ?? (have('ffmpeg') ? null : 'ffmpeg is missing');
const skip = missing ?? false;
const USER = 'admin';
const PASSWORD = 'pa:ss w0rd'; // a colon and a space: percent-encoded in the URL

/** Waits until `packets` span `ms` of media after the first one (or `limitMs` of waiting). */
async function collectFor(packets: { rtp: Buffer }[], ms: number, limitMs = 20_000): Promise<void> {
  const until = performance.now() + limitMs;
  while (performance.now() < until) {
    if (packets.length > 1 && ((tsOf(packets[packets.length - 1]!.rtp) - tsOf(packets[0]!.rtp)) >>> 0) / 90 >= ms) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

for (const auth of ['none', 'basic', 'digest'] as const) {
  t.test(`a camera with ${auth === 'none' ? 'no auth' : `${auth} auth`}: its H.264 decodes from the channel over UDP and over TCP`, { skip }, async (t) => {
    const port = await freePort();
    const cam = await startCamera({ port, ...(auth === 'none' ? {} : { auth, user: USER, password: PASSWORD }) });
    t.teardown(() => cam.stop());
    const url = auth === 'none' ? cam.url : cam.url.replace('rtsp://', `rtsp://${USER}:${encodeURIComponent(PASSWORD)}@`);
    const dir = t.testdir({});
    let sessions = 0;
    for (const transport of ['udp', 'tcp'] as const) {
      await t.test(transport, async (t) => {
        const s = new UpstreamSession({ url, transport, key: `cam-${auth}-${transport}`, camera: `cam-${auth}` });
        t.teardown(() => s.stop());
        const ch = await s.start();
        sessions++;
        t.equal(s.state, 'playing');
        t.equal(s.current.auth, auth === 'none' ? null : auth, 'answered the scheme the camera asked for');
        t.equal(ch.codec, 'H264');
        t.equal(ch.clockRate, 90000);
        t.match(ch.sdp, /\r\nm=video 0 RTP\/AVP 96\r\n/);
        t.match(ch.sdp, /a=control:\*\r\n[^]*a=control:trackID=0\r\n$/, 'session control *, the track trackID=0');
        const rec = record(ch);
        await collectFor(rec.packets, 2500);
        await s.stop();
        t.equal(s.state, 'closed');
        t.equal(await rec.ended, 'stopped', 'stop() ends the channel');
        const rtp = wholeUnits(rec.packets.map((p) => p.rtp));
        t.ok(rtp.length > 50, `${rtp.length} packets from the first keyframe`);
        t.equal(new Set(rtp.map(ssrcOf)).size, 1, 'one SSRC');
        let gaps = 0;
        for (let i = 1; i < rtp.length; i++) if (((seqOf(rtp[i]!) - seqOf(rtp[i - 1]!)) & 0xffff) !== 1) gaps++;
        t.equal(gaps, 0, 'consecutive sequence numbers (loopback loses nothing)');
        const d = await decode(ch.sdp, rtp, dir);
        t.equal(d.codecId, 'h264');
        t.equal(d.dimensions, '640x360');
        t.equal(d.problems, '', 'ffmpeg reports no decoder or RTP problem');
        t.equal(d.frames, accessUnits(rtp), 'every access unit decodes to a frame');
      });
    }
    // The 401 is answered on the same connection: one RTSP connection per session.
    const connections = cam.log().split('\n').filter((l) => l.startsWith('client connected:')).length;
    t.equal(connections, sessions, 'one camera connection per session');
  });
}

t.test('a wrong password is refused with the camera URL, without the password', { skip }, async (t) => {
  for (const auth of ['basic', 'digest'] as const) {
    const port = await freePort();
    const cam = await startCamera({ port, auth, user: USER, password: PASSWORD });
    t.teardown(() => cam.stop());
    const secret = 'WrongSecret42';
    const s = new UpstreamSession({ url: cam.url.replace('rtsp://', `rtsp://${USER}:${secret}@`), transport: 'tcp', key: 'k', camera: 'cam' });
    const err = await s.start().then(
      () => null,
      (e: unknown) => e,
    );
    t.ok(isCamtapError(err, 'CAMTAP_ERR_UPSTREAM_REFUSED'), `${auth}: CAMTAP_ERR_UPSTREAM_REFUSED`);
    const e = err as Error & { details: Record<string, unknown> };
    t.match(e.message, `camera rtsp://127.0.0.1:${port}/stream1 refused DESCRIBE: 401`, 'names the URL, the method and the status');
    t.match(e.message, /wrong user or password/);
    t.notMatch(e.message, secret, 'no password in the message');
    t.notMatch(JSON.stringify(e.details), secret, 'nor in the details');
    t.notMatch(e.message, `${USER}@`, 'no userinfo at all');
    t.equal(e.details.status, 401);
    t.equal(s.state, 'closed');
    t.equal(s.channel, null);
    await s.stop();
  }
});

t.test('a camera that is not there: CAMTAP_ERR_UPSTREAM naming the URL', async (t) => {
  const port = await freePort();
  const s = new UpstreamSession({ url: `rtsp://u:hunter2@127.0.0.1:${port}/x`, transport: 'udp', key: 'k', camera: 'cam' });
  const err = (await s.start().catch((e: unknown) => e)) as Error;
  t.ok(isCamtapError(err, 'CAMTAP_ERR_UPSTREAM'));
  t.equal(err.message, `camera rtsp://127.0.0.1:${port}/x: cannot connect: ECONNREFUSED`);
});
