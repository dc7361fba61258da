/**
 * The SDP a replay announces: the captured stream's media section only, its codec lines
 * kept, the original transport's lines dropped. The input SDPs are real cameras' (the
 * fixture manifests' DESCRIBE answers).
 */
import t from 'tap';
import type { ReplayPlan } from '../../../core/query/types.js';
import type { StreamRecord } from '../../../core/contracts/records.js';
import { replaySdp } from '../../../core/serve/replay-sdp.js';
import { parseSdp } from '../../../core/wire/sdp.js';
import { loadManifest, manifestSdp } from './pcap-replay-source.js';

function plan(sdp: string | null, over: Partial<StreamRecord> = {}): ReplayPlan {
  const stream = { id: 's1', camera: 'lobby', payloadType: 96, codec: 'H264', clockRate: 90000, ...over } as StreamRecord;
  return { stream, session: null, sdp: sdp ?? '', startNs: 1_000_000_000_000n, endNs: 1_010_128_727_000n, segments: [] };
}

t.test('the H.264 camera SDP: one video section with rtpmap/fmtp, own control and range, no ssrc line', async (t) => {
  const m = loadManifest('lo_udp_h264.manifest.json');
  const text = replaySdp(plan(manifestSdp(m)), { control: 'trackID=0', address: '127.0.0.1' });
  t.ok(text.endsWith('\r\n') && !/[^\r]\n/.test(text), 'CRLF lines');
  const sdp = parseSdp(text)!;
  t.equal(sdp.control, '*');
  t.equal(sdp.range, 'npt=0-10.129', '10.128727 s');
  t.match(sdp.origin ?? '', /^- 1000 1 IN IP4 127\.0\.0\.1$/);
  t.equal(sdp.media.length, 1);
  const v = sdp.media[0]!;
  t.same([v.type, v.port, v.proto, v.formats, v.control], ['video', 0, 'RTP/AVP', [96], 'trackID=0']);
  t.same(v.rtpmap.get(96), { codec: 'H264', clockRate: 90000, channels: null });
  t.match(v.fmtp.get(96) ?? '', /sprop-parameter-sets=Z0LAHtoCgL\/lwFqDAwNSgAAAAwCAAAAZR4sXUA==,aM48gA==/);
  t.notOk(v.attributes.some((a) => /^(ssrc|control:stream)/.test(a)), 'camera ssrc and control dropped');
  t.ok(v.attributes.includes('framerate:25'), 'other attributes kept');
});

t.test('a multi-media SDP: the section with the stream\'s payload type is served', async (t) => {
  const cam = ['v=0', 'o=- 1 1 IN IP4 10.0.0.1', 's=cam', 't=0 0', 'm=audio 0 RTP/AVP 0', 'a=rtpmap:0 PCMU/8000', 'a=control:track2', 'm=video 0 RTP/AVP 97 96', 'a=rtpmap:96 H264/90000', 'a=rtpmap:97 H265/90000', 'a=fmtp:96 packetization-mode=1', 'a=fmtp:97 sprop-vps=QAE=', 'a=rtcp-fb:* nack', 'a=recvonly', 'a=control:track1', ''].join('\r\n');
  const sdp = parseSdp(replaySdp(plan(cam, { payloadType: 97, codec: 'H265' }), { control: 'trackID=0', address: '::1' }))!;
  t.equal(sdp.media.length, 1);
  const v = sdp.media[0]!;
  t.same(v.formats, [97]);
  t.same(v.rtpmap.get(97)?.codec, 'H265');
  t.notOk(v.rtpmap.has(96), 'the other payload type is gone');
  t.equal(v.fmtp.get(97), 'sprop-vps=QAE=');
  t.ok(v.attributes.includes('rtcp-fb:* nack'), 'rtcp-fb for all types kept');
  t.notOk(v.attributes.includes('recvonly'), 'direction dropped');
  t.match(sdp.origin ?? '', /IN IP6 ::1$/);
});

t.test('no captured SDP: built from the stream record (MJPEG, static type 26)', async (t) => {
  const sdp = parseSdp(replaySdp(plan(null, { payloadType: 26, codec: 'JPEG' }), { control: 'rtsp://h/replay/x/trackID=0?speed=4', address: '127.0.0.1' }))!;
  const v = sdp.media[0]!;
  t.same([v.type, v.formats], ['video', [26]]);
  t.same(v.rtpmap.get(26), { codec: 'JPEG', clockRate: 90000, channels: null });
  t.equal(v.control, 'rtsp://h/replay/x/trackID=0?speed=4');
});
