/**
 * ONVIF replay (ONVIF Streaming Specification §6): a client that sends
 * `Require: onvif-replay` gets the recording's clock range in the SDP, may PLAY with
 * `Range: clock=` and `Rate-Control: no`, and every RTP packet carries the 0xABAC header
 * extension with the absolute time of its frame. Ground truth for those times is tshark's
 * capture time of the packets; GStreamer's rtspsrc in ONVIF mode is the real client.
 */
import t from 'tap';
import { OnvifFlag, writeWithOnvifExt } from '../../../core/serve/onvif-ext.js';
import { ntpToUnixMs } from '../../../core/wire/rtcp.js';
import { have, run } from '../../helpers/peers.js';
import { RawRtsp, sessionOf } from './raw-rtsp.js';
import { completeAccessUnits, startServer, tsharkPackets } from './serve-fixture.js';

const noTshark = have('tshark') ? false : 'tshark is the ground truth here (scripts/install-deps.sh installs it)';
const noGst = have('gst-launch-1.0') ? false : 'gst-launch-1.0 is not installed';

t.test('the extension: profile 0xABAC, length 3, NTP time, flags and CSeq; a packet extension already there is replaced', async (t) => {
  const rtp = Buffer.from([0x80, 0x60, 0x00, 0x07, 0, 0, 0x0b, 0xb8, 1, 2, 3, 4, 0x65, 0xaa]);
  const out = Buffer.alloc(100);
  // 2024-01-01T00:00:00.5Z = NTP 3913056000.5
  const n = writeWithOnvifExt(out, rtp, 1_704_067_200_500_000_000n, OnvifFlag.CLEAN | OnvifFlag.DISCONTINUITY, 0x1234);
  t.equal(n, 14 + 16);
  t.same(
    [...out.subarray(0, n)],
    [0x90, 0x60, 0x00, 0x07, 0, 0, 0x0b, 0xb8, 1, 2, 3, 4, 0xab, 0xac, 0, 3, 0xe9, 0x3c, 0x7f, 0x00, 0x80, 0, 0, 0, 0xa0, 0x34, 0, 0, 0x65, 0xaa],
  );
  const withExt = Buffer.from([0x90, 0x60, 0, 7, 0, 0, 0, 1, 1, 2, 3, 4, 0xbe, 0xde, 0, 1, 9, 9, 9, 9, 0x41]);
  const m = writeWithOnvifExt(out, withExt, 0n, 0, 1);
  t.same([...out.subarray(12, 14)], [0xab, 0xac], 'ours replaces the one-byte-header extension');
  t.equal(out[m - 1], 0x41, 'payload kept');
  t.equal(m, 12 + 16 + 1);
  t.equal(writeWithOnvifExt(out, Buffer.from([0x40, 0, 0, 0]), 0n, 0, 0), -1, 'not RTP: -1');
});

t.test('an ONVIF replay client gets the clock range and packets stamped with their capture time', { skip: noTshark }, async (t) => {
  const { port, base } = await startServer(t);
  const truth = completeAccessUnits(await tsharkPackets());
  const truthUs = new Set(truth.map((p) => Math.round(p.time * 1e6)));
  const c = await RawRtsp.connect(port);
  t.teardown(() => c.close());
  const url = `${base}/replay/test`;
  const desc = await c.request('DESCRIBE', url, { Require: 'onvif-replay', Accept: 'application/sdp' });
  t.equal(desc?.status, 200);
  const range = /a=range:clock=(\d{8}T\d{6}(?:\.\d+)?Z)-(\d{8}T\d{6}(?:\.\d+)?Z)/.exec(desc?.body.toString() ?? '');
  t.ok(range, 'the SDP gives the clock range');
  const setup = await c.request('SETUP', `${url}/trackID=0`, { Require: 'onvif-replay', Transport: 'RTP/AVP/TCP;unicast;interleaved=0-1' });
  t.equal(setup?.status, 200);
  const play = await c.request('PLAY', url, { Require: 'onvif-replay', Session: sessionOf(setup), Range: `clock=${range?.[1]}-`, 'Rate-Control': 'no' });
  t.equal(play?.status, 200);
  t.equal(play?.header('Rate-Control'), 'no');
  const playCseq = Number(play?.header('CSeq'));
  await c.until(() => c.frames.some((f) => f.channel === 1 && f.data.includes(Buffer.from([0x81, 203]))) || c.closed, 30_000);
  const rtp = c.frames.filter((f) => f.channel === 0).map((f) => f.data);
  t.equal(rtp.length, truth.length, 'every packet of the complete frames');
  let bad = 0;
  let outside = 0;
  const flags: number[] = [];
  for (const p of rtp) {
    const cc = p[0]! & 0x0f;
    const x = 12 + 4 * cc;
    if (!(p[0]! & 0x10) || p.readUInt16BE(x) !== 0xabac || p.readUInt16BE(x + 2) !== 3 || p[x + 13] !== (playCseq & 0xff)) {
      bad++;
      continue;
    }
    const ms = ntpToUnixMs(p.readUInt32BE(x + 4), p.readUInt32BE(x + 8));
    const us = Math.round(ms * 1000);
    if (!truthUs.has(us) && !truthUs.has(us - 1) && !truthUs.has(us + 1)) outside++;
    flags.push(p[x + 12]!);
  }
  t.equal(bad, 0, 'every packet carries the extension with the PLAY CSeq');
  t.equal(outside, 0, 'every NTP time is the capture time of a packet of the stream (tshark)');
  t.ok(flags[0]! & OnvifFlag.CLEAN, 'the first packet is a clean point (replay starts at a keyframe)');
  t.ok(flags[0]! & OnvifFlag.DISCONTINUITY, 'and marks the discontinuity of a new PLAY');
  t.equal(flags.slice(1).filter((f) => f & OnvifFlag.DISCONTINUITY).length, 0, 'no other discontinuity (the capture has no loss)');
  const idrPackets = truth.filter((p) => (p.nalHdr & 0x1f) === 5 || (p.nalHdr & 0x1f) === 7 || (p.nalHdr & 0x1f) === 8 || (p.nalHdr & 0x1f) === 28).length;
  t.ok(flags.filter((f) => f & OnvifFlag.CLEAN).length <= idrPackets, 'clean points only on keyframe packets');
  t.ok(flags.filter((f) => f & OnvifFlag.CLEAN).length > 1, 'and on every packet of a keyframe access unit');
});

t.test('GStreamer rtspsrc in ONVIF mode plays the replay to EOS', { skip: noGst }, async (t) => {
  const { base } = await startServer(t);
  // rtspsrc sends Require: onvif-replay on SETUP and PLAY only; onvif=1 gives it the clock range at DESCRIBE.
  const r = await run(
    'gst-launch-1.0',
    ['-e', 'rtspsrc', `location=${base}/replay/test?onvif=1`, 'onvif-mode=true', 'protocols=tcp', '!', 'rtph264depay', '!', 'h264parse', '!', 'avdec_h264', '!', 'fakesink', 'sync=false'],
    { timeoutMs: 60_000 },
  );
  t.equal(r.code, 0, `gst-launch exits 0 ${r.stderr.slice(-400)}`);
  t.match(r.stdout, /EOS/, 'reaches EOS');
  t.notMatch(r.stdout + r.stderr, /ERROR/, 'no error');
});
