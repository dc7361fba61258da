/**
 * Live access with real peers on loopback: GStreamer's RTSP server is the camera, ffmpeg
 * the VMS pulling it past camtap's libpcap tap, and `camtap serve` runs that tap. While
 * the VMS streams, a second ffmpeg pulls `rtsp://camtap/live/<camera>` over TCP and over
 * UDP and decodes with no errors; a raw RTSP client measures the delay behind the
 * camera: each packet's arrival against its capture time, which camtap's RTCP sender
 * reports carry (RFC 3550 §6.4.1: NTP time <-> RTP timestamp). On loopback the capture
 * time is when the camera sent the packet, so this is the delay camtap adds (tap, pipeline,
 * fan-out, output), reported, not asserted (no timed tests).
 */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { tempDir } from '../helpers/camtap.js';
import { startServe } from '../helpers/serve.js';
import { freePort, have, run, startCamera, startVms } from '../helpers/peers.js';
import { RawRtsp, sessionOf } from '../core/serve/raw-rtsp.js';
import { ntpToUnixMs } from '../../core/wire/rtcp.js';

const missing = ['ffmpeg', 'gst-launch-1.0'].filter((c) => !have(c));
const skip = missing.length ? `needs ${missing.join(', ')} (scripts/install-deps.sh installs them)` : false;

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

t.test('a live camera is served at /live/<camera> while the VMS streams, decodable over TCP and UDP, delay measured', { skip }, async (t) => {
  const dir = tempDir(t);
  const camPort = await freePort('tcp');
  // Other tests stream on loopback at the same time: the tap sees their RTP too (found by
  // heuristics), and /live/labcam must still pick the stream this camera's RTSP dialog set up.
  const camIp = '127.0.0.1';
  const cam = await startCamera({ port: camPort, bind: camIp, codec: 'h264', fps: 25 });
  t.teardown(() => cam.stop());
  const cfg = path.join(dir, 'camtap.yaml');
  writeFileSync(
    cfg,
    [
      'taps:',
      '  - name: lo',
      '    driver: libpcap',
      '    options: { interface: lo, timeoutMs: 10 }',
      `    filter: { protocols: [rtsp, rtp, rtcp], rtspPorts: [${camPort}] }`,
      'cameras:',
      `  - { name: labcam, address: ${camIp} }`,
      'serve:',
      '  proxyInventory: true',
      '',
    ].join('\n'),
  );
  const serve = await startServe(t, ['--config', cfg, '--data', path.join(dir, 'data')]);
  for (let i = 0; i < 300 && !/libpcap capture started/.test(serve.log()); i++) await sleep(100);
  t.match(serve.log(), /libpcap capture started/, 'the tap opened');
  const vms = startVms({ url: cam.url, transport: 'udp', seconds: 45 });
  t.teardown(() => vms.stop('SIGKILL'));
  const base = `rtsp://127.0.0.1:${serve.rtsp}`;

  // The stream is live once the tap has seen the VMS's session and its first packets.
  let c = await RawRtsp.connect(serve.rtsp);
  t.teardown(() => c.close());
  let desc = null;
  for (let i = 0; i < 100; i++) {
    desc = await c.request('DESCRIBE', `${base}/live/labcam`, { Accept: 'application/sdp' });
    // Other tests stream on loopback too: wait for this camera's own (dialog-announced
    // H.264) stream, on a new connection (a connection keeps the feed it resolved).
    if (desc?.status === 200 && /H264\/90000/.test(desc.body.toString('utf8'))) break;
    c.close();
    await sleep(200);
    c = await RawRtsp.connect(serve.rtsp);
  }
  t.equal(desc?.status, 200, 'DESCRIBE /live/labcam answers 200 once the camera streams');
  const sdp = desc?.body.toString('utf8') ?? '';
  t.match(sdp, /a=rtpmap:\d+ H264\/90000/, 'the SDP announces H.264 as the camera does');
  t.match(sdp, /a=range:npt=now-/, 'the SDP announces a live range');
  t.match(sdp, /sprop-parameter-sets=/, "the camera's parameter sets come from the captured DESCRIBE");

  const setup = await c.request('SETUP', `${base}/live/labcam/trackID=0`, { Transport: 'RTP/AVP/TCP;unicast;interleaved=0-1' });
  t.equal(setup?.status, 200, 'SETUP over TCP interleaved');
  const session = sessionOf(setup);
  const play = await c.request('PLAY', `${base}/live/labcam`, { Session: session, Range: 'npt=0.000-' });
  t.equal(play?.status, 200, 'PLAY');
  t.equal(play?.header('Range'), 'npt=now-', 'PLAY answers with the live range');
  t.match(play?.header('RTP-Info') ?? '', /seq=\d+;rtptime=\d+/, 'RTP-Info gives the first sequence number and timestamp');

  // Meanwhile ffmpeg pulls the same camera over TCP and over UDP and decodes it.
  const decode = (transport: string) =>
    run('ffmpeg', ['-nostdin', '-v', 'error', '-rtsp_transport', transport, '-i', `${base}/live/labcam`, '-t', '6', '-f', 'framemd5', '-'], { timeoutMs: 60_000 });
  const [tcp, udp] = await Promise.all([decode('tcp'), decode('udp')]);
  for (const [name, r] of [['tcp', tcp], ['udp', udp]] as const) {
    const frames = r.stdout.split('\n').filter((l) => /^\s*0,/.test(l)).length;
    t.equal(r.code, 0, `ffmpeg over ${name} exits 0`);
    t.equal(r.stderr.trim(), '', `ffmpeg over ${name} reports no decoder errors`);
    // 6 s at 25 fps; the first keyframe may be up to a GOP (2 s) away, and ffmpeg starts late on a busy machine.
    t.ok(frames >= 50, `ffmpeg over ${name} decoded ${frames} frames of live video`);
  }

  await c.until(() => c.frames.filter((f) => f.channel === 1).length >= 2, 15_000);
  const tear = await c.request('TEARDOWN', `${base}/live/labcam`, { Session: session });
  t.equal(tear?.status, 200, 'TEARDOWN');

  const rtp = c.frames.filter((f) => f.channel === 0 && f.data.length >= 12);
  const srs = c.frames.filter((f) => f.channel === 1 && f.data.length >= 28 && f.data[1] === 200);
  t.ok(rtp.length > 100, `the raw client got ${rtp.length} RTP packets`);
  t.ok(srs.length >= 1, `and ${srs.length} sender reports`);
  const ssrc = rtp[0]!.data.readUInt32BE(8);
  t.ok(rtp.every((f) => f.data.readUInt32BE(8) === ssrc), 'one SSRC throughout');
  let seqOk = true;
  for (let i = 1; i < rtp.length; i++) if (((rtp[i]!.data.readUInt16BE(2) - rtp[i - 1]!.data.readUInt16BE(2)) & 0xffff) !== 1) seqOk = false;
  t.ok(seqOk, 'sequence numbers are continuous (loopback capture loses nothing)');
  const first = rtp[0]!.data;
  const nal = first[12]! & 0x1f;
  const fuType = nal === 28 ? first[13]! & 0x1f : nal === 24 ? first[15]! & 0x1f : nal;
  t.ok([5, 7, 8].includes(fuType), `the first packet starts a keyframe (NAL type ${fuType})`);

  // Delay behind the camera: arrival minus capture time, capture time from the SR mapping.
  const sr = srs[0]!.data;
  const srMs = ntpToUnixMs(sr.readUInt32BE(8), sr.readUInt32BE(12));
  const srTs = sr.readUInt32BE(16);
  const delays = rtp.map((f) => {
    const dts = (f.data.readUInt32BE(4) - srTs) | 0;
    return f.at - (srMs + dts / 90);
  });
  const p50 = percentile(delays, 50);
  const p99 = percentile(delays, 99);
  t.comment(`live delay behind the camera over ${delays.length} packets: p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${Math.max(...delays).toFixed(1)} ms`);
  t.ok(Number.isFinite(p50) && p50 > -50, 'packets arrive after their capture (the SR maps RTP time to capture time)');

  // The inventory learned labcam's URL from the VMS's dialog: camtap proxies it by name too.
  const px = await RawRtsp.connect(serve.rtsp);
  t.teardown(() => px.close());
  let pd = null;
  for (let i = 0; i < 60 && pd?.status !== 200; i++) {
    pd = await px.request('DESCRIBE', `${base}/labcam`, { Accept: 'application/sdp' });
    if (pd?.status !== 200) await sleep(500);
  }
  t.equal(pd?.status, 200, `rtsp://camtap/labcam proxies the camera the inventory learned ${pd?.status} ${serve.log().split('\n').filter((l) => /labcam|camera|upstream|proxy/i.test(l)).slice(-5).join('\n')}`);
  const viaProxy = await run('ffmpeg', ['-nostdin', '-v', 'error', '-rtsp_transport', 'tcp', '-i', `${base}/labcam`, '-t', '3', '-f', 'framemd5', '-'], { timeoutMs: 60_000 });
  t.equal(viaProxy.code, 0, 'and ffmpeg plays it');

  const none = await RawRtsp.connect(serve.rtsp);
  t.teardown(() => none.close());
  t.equal((await none.request('DESCRIBE', `${base}/live/no-such-camera`))?.status, 404, 'an unknown camera is 404');
  await vms.stop('SIGINT');
});
