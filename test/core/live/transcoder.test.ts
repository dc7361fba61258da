/**
 * The transcoder against real peers: `camtap serve` replays the multi-camera lab capture,
 * the Transcoder's ffmpeg pulls a stream from it and re-encodes it, and every packet the
 * channel publishes is forwarded over UDP to a second, independent ffmpeg that reads the
 * channel's SDP. Ground truth is the capture's manifest (tshark + ffmpeg decode): with
 * `-fps_mode passthrough` a transcode neither drops nor duplicates frames, so the
 * receiver decodes exactly the frames the manifest counts, in the target codec, with no
 * decoder errors.
 */
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { chmodSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CAPTURES, CLI, camtap, camtapJson, tempDir } from '../../helpers/camtap.js';
import { have } from '../../helpers/peers.js';
import type { StreamRecord } from '../../../core/contracts/records.js';
import type { LiveChannel } from '../../../core/live/channel.js';
import { Transcoder, channelSdp, parseTargetCodec } from '../../../core/live/transcoder.js';
import { isCamtapError } from '../../../core/errors.js';

interface MS { src: string; dst: string; decode: { codec: string; frames_decoded: number; width: number; height: number } | null }
const manifest = JSON.parse(readFileSync(path.join(CAPTURES, 'netns_multi.manifest.json'), 'utf8')) as { rtp_streams: MS[] };
const skip = have('ffmpeg') ? false : 'ffmpeg is missing (scripts/install-deps.sh installs it)';

/** ffmpeg processes whose parent is this test process (a transcoder must leave none behind). */
function ffmpegChildren(): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === process.pid && comm === 'ffmpeg') out.push(Number(d));
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}

/** `camtap serve` over the imported lab capture; its port and the streams. */
async function serveFixture(tt: typeof t): Promise<{ port: number; streams: StreamRecord[] }> {
  const data = tempDir(tt, 'camtap-transcode-');
  const imp = await camtap(['import', path.join(CAPTURES, 'netns_multi.pcap')], { data });
  if (imp.code !== 0) throw new Error(`import failed: ${imp.stderr}`);
  const streams = await camtapJson<StreamRecord[]>(['streams'], data);
  const srv = spawn(process.execPath, [CLI, 'serve', '--data', data, '--rtsp-port', '0', '--http-port', '0'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, CAMTAP_LOG_LEVEL: 'warn' } });
  tt.teardown(() => void srv.kill('SIGKILL'));
  let text = '';
  const port = await new Promise<number>((resolve, reject) => {
    srv.stdout.on('data', (d) => {
      text += d;
      const m = /serving RTSP on port (\d+)/.exec(text);
      if (m) resolve(Number(m[1]));
    });
    srv.on('exit', (c) => reject(new Error(`serve exited ${c}`)));
  });
  return { port, streams };
}

/** Is something bound to UDP `port` on this host (/proc/net/udp, local address column)? */
function udpBound(port: number): boolean {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return readFileSync('/proc/net/udp', 'utf8').split('\n').some((l) => l.trim().split(/\s+/)[1]?.endsWith(hex));
}

/** Two consecutive UDP ports free a moment ago (RTP and RTCP for the receiving ffmpeg). */
async function freePortPair(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const p = 20000 + 2 * Math.floor(Math.random() * 20000);
    if (!udpBound(p) && !udpBound(p + 1)) return p;
  }
  throw new Error('no free UDP port pair');
}

interface Received {
  code: number | null;
  /** Frames the receiver decoded (framecrc lines). */
  frames: number;
  /** The codec ffmpeg found in the SDP and packets (`h264`, `hevc`, `mjpeg`) and the decoded `#dimensions`. */
  codecId: string;
  dimensions: string;
  /** Warnings and errors the receiver logged (decoder, RTP loss). */
  problems: string;
  published: number;
  endReason: string;
  firstPacketMs: number;
}

/**
 * Starts a transcoder and plays its channel, from its first packet, into an ffmpeg that
 * reads the channel's SDP from a file (pointed at a local port) and decodes to framecrc.
 * Packets are queued until the receiver listens, then sent in order; an RTCP RR+BYE
 * after the last one ends the receiver's input (RFC 3550 §6.6).
 */
async function transcodeAndReceive(tt: typeof t, inputUrl: string, codec: 'h264' | 'h265' | 'mjpeg', dir: string): Promise<Received> {
  const port = await freePortPair();
  const tx = createSocket('udp4');
  tt.teardown(() => tx.close());
  const queue: Buffer[] = [];
  let ready = false;
  let ended: string | null = null;
  let pumping = false;
  let wake: () => void = () => {};
  const drained = new Promise<void>((r) => (wake = r));
  const pump = async () => {
    if (pumping || !ready) return;
    pumping = true;
    let n = 0;
    while (queue.length > 0) {
      const b = queue.shift()!;
      await new Promise<void>((r) => tx.send(b, port, '127.0.0.1', () => r()));
      // Loopback UDP drops what the receiver's socket buffer cannot hold: let it read.
      if (++n % 16 === 0) await new Promise((r) => setTimeout(r, 1));
    }
    pumping = false;
    if (ended !== null) wake();
  };
  let channel: LiveChannel | null = null;
  const started = performance.now();
  const tr = await Transcoder.start({
    inputUrl,
    codec,
    key: `test-${codec}`,
    camera: 'cam',
    onChannel: (ch) => {
      channel = ch;
      ch.subscribe({
        onPacket: (p) => {
          queue.push(Buffer.from(p.rtp)); // the view is valid only during the call
          void pump();
        },
        onEnd: (reason) => {
          ended = reason;
          if (ready && !pumping) wake();
        },
      });
    },
  });
  tt.teardown(() => tr.stop());
  tt.ok(channel, 'onChannel ran before start() resolved');
  const sdpFile = path.join(dir, `recv-${codec}.sdp`);
  writeFileSync(sdpFile, tr.channel.sdp.replace(/^m=(\w+) 0 /m, `m=$1 ${port} `).replace(/^c=IN IP4 0\.0\.0\.0/m, 'c=IN IP4 127.0.0.1'));
  // Level-tagged log: the input's `Stream #0:0: Video: <codec>` line is at info level, errors are tagged [error].
  const rx: ChildProcess = spawn('ffmpeg', [
    '-nostdin', '-hide_banner', '-loglevel', 'level+info', '-nostats', '-protocol_whitelist', 'file,udp,rtp', '-buffer_size', String(4 << 20), '-i', sdpFile,
    '-map', '0:v', '-f', 'framecrc', '-',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  tt.teardown(() => void rx.kill('SIGKILL'));
  let stdout = '';
  let stderr = '';
  rx.stdout!.on('data', (d) => (stdout += d));
  rx.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => rx.on('close', (c) => r(c)));
  let gaveUp = false;
  const watchdog = setTimeout(() => {
    gaveUp = true;
    rx.kill('SIGKILL');
  }, 120_000);
  // Wait for the receiver to bind its port, then release the queue.
  while (!udpBound(port) && rx.exitCode === null) await new Promise((r) => setTimeout(r, 20));
  ready = true;
  void pump();
  if (ended === null || queue.length > 0 || pumping) await drained;
  // RR (no report blocks) + BYE: ffmpeg's RTP demuxer ends the input on BYE.
  const bye = Buffer.from([0x80, 201, 0, 1, 0, 0, 0, 1, 0x81, 203, 0, 1, 0, 0, 0, 1]);
  for (let i = 0; i < 3 && rx.exitCode === null; i++) {
    await new Promise<void>((r) => tx.send(bye, port, '127.0.0.1', () => r()));
    await Promise.race([exited, new Promise((r) => setTimeout(r, 2000))]);
  }
  const code = await exited;
  clearTimeout(watchdog);
  if (gaveUp) stderr += '\n[error] (test: receiver killed after 120 s)';
  return {
    code,
    frames: stdout.split('\n').filter((l) => /^0,/.test(l)).length,
    codecId: /Stream #0:0: Video: (\w+)/.exec(stderr)?.[1] ?? '?',
    dimensions: /^#dimensions 0: (\S+)/m.exec(stdout)?.[1] ?? '?',
    problems: stderr.split('\n').filter((l) => /\[(warning|error|fatal|panic)\]/.test(l)).join('\n'),
    published: tr.channel.published,
    endReason: ended ?? '',
    firstPacketMs: tr.firstPacketAt - started,
  };
}

t.test('parseTargetCodec accepts SDP and ffmpeg spellings in any case', async (t) => {
  t.equal(parseTargetCodec('H264'), 'h264');
  t.equal(parseTargetCodec('avc'), 'h264');
  t.equal(parseTargetCodec('H265'), 'h265');
  t.equal(parseTargetCodec('HEVC'), 'h265');
  t.equal(parseTargetCodec('JPEG'), 'mjpeg');
  t.equal(parseTargetCodec('mjpeg'), 'mjpeg');
  t.equal(parseTargetCodec('mpeg4'), null);
  t.equal(parseTargetCodec(''), null);
});

t.test("the channel SDP keeps ffmpeg's codec lines, with port 0 and trackID=0 (RFC 2326 §C.1)", async (t) => {
  // As ffmpeg 5.1 writes it for `-f rtp -payload_type 96 -sdp_file` with libx264 and a global header.
  const ff = [
    'v=0', 'o=- 0 0 IN IP4 127.0.0.1', 's=camtap replay 10.77.0.14', 'c=IN IP4 127.0.0.1', 't=0 0', 'a=tool:libavformat LIBAVFORMAT_VERSION',
    'm=video 40000 RTP/AVP 96', 'a=rtpmap:96 H264/90000',
    'a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z0LAFtoCgL/lwFqBAQLSgAAAAwCAAAAKR4sXUA==,aM4PyA==; profile-level-id=42C016', '',
  ].join('\n');
  const r = channelSdp(ff, 'cam\r\n1');
  t.ok(r);
  t.equal(r!.payloadType, 96);
  t.equal(r!.codec, 'H264');
  t.equal(r!.clockRate, 90000);
  const lines = r!.sdp.split('\r\n');
  t.equal(lines.at(-1), '', 'CRLF-terminated');
  t.ok(lines.includes('s=cam 1'), 'camera name on one line');
  t.ok(lines.includes('m=video 0 RTP/AVP 96'));
  t.ok(lines.includes('a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z0LAFtoCgL/lwFqBAQLSgAAAAwCAAAAKR4sXUA==,aM4PyA==; profile-level-id=42C016'));
  t.equal(lines.filter((l) => l.startsWith('m=')).length, 1);
  t.equal(lines.indexOf('a=control:trackID=0'), lines.length - 2, 'media control last');
  t.ok(lines.indexOf('a=control:*') < lines.indexOf('m=video 0 RTP/AVP 96'), 'aggregate control at session level');
  // JPEG on its static payload type: no rtpmap needed (RFC 3551 table 5).
  const j = channelSdp('v=0\nm=video 5000 RTP/AVP 26\n', 'c');
  t.same([j?.payloadType, j?.codec, j?.clockRate], [26, 'JPEG', 90000]);
  t.equal(channelSdp('v=0\ns=x\n', 'c'), null);
});

t.test('a missing ffmpeg is CAMTAP_ERR_TOOL_MISSING naming the tool and the fix', async (t) => {
  const err = await Transcoder.start({ inputUrl: 'rtsp://127.0.0.1:1/x', codec: 'h264', key: 'k', camera: 'cam', ffmpeg: '/nonexistent/ffmpeg' }).then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(isCamtapError(err, 'CAMTAP_ERR_TOOL_MISSING'), String(err));
  t.match((err as Error).message, /\/nonexistent\/ffmpeg/);
  t.match((err as Error).message, /apt install ffmpeg/);
});

t.test('an ffmpeg without the encoder is refused with an error naming the encoder', async (t) => {
  // A stand-in for an ffmpeg built without libx265: it answers as ffmpeg 5.1 does.
  const dir = tempDir(t);
  const fake = path.join(dir, 'ffmpeg');
  writeFileSync(fake, "#!/bin/sh\necho \"Unknown encoder 'libx265'\" >&2\nexit 1\n");
  chmodSync(fake, 0o755);
  const err = await Transcoder.start({ inputUrl: 'rtsp://127.0.0.1:1/x', codec: 'h265', key: 'k', camera: 'cam', ffmpeg: fake }).then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(isCamtapError(err, 'CAMTAP_ERR_TOOL_FAILED'), String(err));
  t.match((err as Error).message, /no libx265 encoder/);
});

t.test('transcodes replayed streams through one ffmpeg into a channel a second ffmpeg decodes', { skip }, async (t) => {
  const { port, streams } = await serveFixture(t);
  const dir = tempDir(t);
  const find = (codec: string) => {
    const ms = manifest.rtp_streams.find((s) => s.decode?.codec === codec)!;
    return { ms, s: streams.find((x) => x.src === ms.src && x.dst === ms.dst)! };
  };

  await t.test('MJPEG to H.264: every frame of the manifest, no decoder errors', async (t) => {
    const { ms, s } = find('JPEG');
    t.ok(s, 'the JPEG stream was imported');
    const r = await transcodeAndReceive(t, `rtsp://127.0.0.1:${port}/replay/${s.id}?speed=4`, 'h264', dir);
    t.comment(`acquire to first packet ${r.firstPacketMs.toFixed(0)} ms, ${r.published} packets published`);
    t.equal(r.code, 0, 'the receiver exits 0');
    t.equal(r.problems, '', 'no decoder or RTP errors');
    t.equal(r.codecId, 'h264', 'the channel carries H.264');
    t.equal(r.dimensions, `${ms.decode!.width}x${ms.decode!.height}`);
    t.equal(r.frames, ms.decode!.frames_decoded, `${ms.decode!.frames_decoded} frames (manifest)`);
    t.match(r.endReason, /input ended/, 'the channel ends when the replay does');
  });

  await t.test('H.264 to H.264 (re-encode): every frame of the manifest', async (t) => {
    const ms = manifest.rtp_streams.find((x) => x.src === '10.77.0.12:39134')!;
    const s = streams.find((x) => x.src === ms.src && x.dst === ms.dst)!;
    const r = await transcodeAndReceive(t, `rtsp://127.0.0.1:${port}/replay/${s.id}?speed=4`, 'h264', dir);
    t.equal(r.code, 0);
    t.equal(r.problems, '', 'no decoder or RTP errors');
    t.equal(r.codecId, 'h264');
    t.equal(r.frames, ms.decode!.frames_decoded, `${ms.decode!.frames_decoded} frames (manifest)`);
  });

  await t.test('MJPEG to H.265 and H.264 to MJPEG', async (t) => {
    const { ms, s } = find('JPEG');
    const h265 = await transcodeAndReceive(t, `rtsp://127.0.0.1:${port}/replay/${s.id}?speed=4`, 'h265', dir);
    t.equal(h265.problems, '', 'H.265: no decoder or RTP errors');
    t.equal(h265.codecId, 'hevc');
    t.equal(h265.frames, ms.decode!.frames_decoded, `H.265: ${ms.decode!.frames_decoded} frames (manifest)`);
    const h = manifest.rtp_streams.find((x) => x.src === '10.77.0.12:39134')!;
    const hs = streams.find((x) => x.src === h.src && x.dst === h.dst)!;
    const jpeg = await transcodeAndReceive(t, `rtsp://127.0.0.1:${port}/replay/${hs.id}?speed=4`, 'mjpeg', dir);
    t.equal(jpeg.problems, '', 'MJPEG: no decoder or RTP errors');
    t.equal(jpeg.codecId, 'mjpeg');
    t.equal(jpeg.frames, h.decode!.frames_decoded, `MJPEG: ${h.decode!.frames_decoded} frames (manifest)`);
  });

  await t.test('stop() ends the channel and leaves no ffmpeg behind', async (t) => {
    const { s } = find('JPEG');
    let reason = '';
    const tr = await Transcoder.start({ inputUrl: `rtsp://127.0.0.1:${port}/replay/${s.id}?speed=1`, codec: 'h264', key: 'k', camera: 'cam', onEnd: (r) => (reason = r) });
    t.same(ffmpegChildren(), [tr.pid], 'one ffmpeg child while running');
    const ended = new Promise<string>((r) => tr.channel.subscribe({ onPacket() {}, onEnd: r }));
    await tr.stop();
    t.equal(await ended, 'transcoder stopped');
    t.equal(reason, 'transcoder stopped', 'onEnd ran with the same reason');
    t.throws(() => process.kill(tr.pid, 0), { code: 'ESRCH' }, 'ffmpeg is gone');
    t.same(ffmpegChildren(), []);
    await tr.stop(); // twice is fine
  });

  await t.test("an input that fails (404) rejects with ffmpeg's message and leaves no child", async (t) => {
    const err = await Transcoder.start({ inputUrl: `rtsp://127.0.0.1:${port}/replay/nosuchcamera`, codec: 'h264', key: 'k', camera: 'nosuchcamera' }).then(
      () => null,
      (e: unknown) => e,
    );
    t.ok(isCamtapError(err, 'CAMTAP_ERR_TOOL_FAILED'), String(err));
    t.match((err as Error).message, /404/, "ffmpeg's own words");
    t.same(ffmpegChildren(), [], 'no ffmpeg left');
  });
});
