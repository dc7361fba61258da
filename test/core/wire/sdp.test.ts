import t from 'tap';
import { readFileSync } from 'node:fs';
import { parseSdp, codecFor, resolveControl, h264ParameterSets } from '../../../core/wire/sdp.js';
import { CAPTURES, noTshark, tsharkFields, tsharkFollow } from './tshark-truth.js';

/** The DESCRIBE answer's body of TCP stream 0, as tshark reassembled the stream. */
function describeSdp(file: string): string {
  const server = Buffer.concat(
    tsharkFollow(file, 0)
      .filter((c) => c.dir === 1)
      .map((c) => c.data),
  ).toString('latin1');
  const at = server.indexOf('Content-Type: application/sdp');
  const head = server.lastIndexOf('RTSP/1.0', at);
  const bodyAt = server.indexOf('\r\n\r\n', at) + 4;
  const len = Number(/Content-Length: (\d+)/.exec(server.slice(head, bodyAt))![1]);
  return server.slice(bodyAt, bodyAt + len);
}

t.test('DESCRIBE answers of the fixtures parse to what tshark and the manifest saw', { skip: noTshark }, async (t) => {
  const cases: Array<[string, string, number]> = [
    ['lo_tcp_interleaved_h264', 'H264', 96],
    ['lo_udp_h265', 'H265', 96],
    ['lo_udp_mjpeg', 'JPEG', 26],
    ['lo_digest_auth_udp_h264', 'H264', 96],
  ];
  for (const [name, codec, pt] of cases) {
    const manifest = JSON.parse(readFileSync(`${CAPTURES}${name}.manifest.json`, 'utf8'));
    const session = manifest.rtsp_sessions[0];
    const sdp = parseSdp(describeSdp(`${name}.pcap`));
    if (!sdp) {
      t.fail(`${name}: no SDP`);
      continue;
    }
    t.same(
      sdp.media.map((m) => `${m.type} ${m.port} ${m.proto} ${m.formats.join(' ')}`),
      session.sdp.media,
      `${name}: m= lines`,
    );
    t.same(sdp.media[0]!.attributes, session.sdp.attributes, `${name}: media attributes in order`);
    t.same(codecFor(sdp.media[0]!, pt), { codec, clockRate: 90000 }, `${name}: codec`);
    t.equal(sdp.control, '*', `${name}: session control`);
    t.equal(
      resolveControl(session.content_base, sdp.media[0]!.control),
      session.tracks[0].control_url,
      `${name}: control URL the client set up`,
    );
  }
});

t.test('sprop-parameter-sets decode to the SPS/PPS the camera sends in-band', { skip: noTshark }, async (t) => {
  const sdp = parseSdp(describeSdp('lo_tcp_interleaved_h264.pcap'))!;
  const sets = h264ParameterSets(sdp.media[0]!.fmtp.get(96)!);
  // seq 16149 and 16150 of lo_udp_h264 carry the same encoder's SPS and PPS as single NAL units.
  const rows = tsharkFields('lo_udp_h264.pcap', 'rtp.seq == 16149 or rtp.seq == 16150', ['rtp.payload']);
  t.same(
    sets.map((b) => b.toString('hex')),
    rows.map((r) => r[0]),
  );
  t.same(
    sets.map((b) => b[0]! & 0x1f),
    [7, 8],
    'NAL types SPS, PPS',
  );
});

t.test('is tolerant: LF line ends, spaces in fmtp, lines it does not know', async (t) => {
  const text = readFileSync(`${CAPTURES}lo_push_rtp_h264.sdp`, 'utf8'); // ffmpeg-written, LF only
  const sdp = parseSdp(text)!;
  t.equal(sdp.version, 0);
  t.equal(sdp.origin, '- 0 0 IN IP4 127.0.0.1');
  t.equal(sdp.sessionName, 'No Name');
  t.equal(sdp.connection, 'IN IP4 127.0.0.1');
  t.same(sdp.attributes, ['tool:libavformat LIBAVFORMAT_VERSION']);
  const m = sdp.media[0]!;
  t.same([m.type, m.port, m.portCount, m.proto, m.formats], ['video', 5004, 1, 'RTP/AVP', [96]]);
  t.same(m.rtpmap.get(96), { codec: 'H264', clockRate: 90000, channels: null });
  t.equal(h264ParameterSets(m.fmtp.get(96)!).length, 2, 'sprop after "; "');
  t.equal(m.control, null);
  t.equal(m.connection, null);
});

t.test('reads several media sections, port counts, channels and static payload types', async (t) => {
  const text = [
    'v=0',
    'o=- 1 1 IN IP4 192.0.2.10',
    's=Camera',
    'c=IN IP4 0.0.0.0',
    'a=control:rtsp://192.0.2.10/live/',
    'a=range:npt=0-',
    'x-vendor-thing:1',
    'm=video 6000/2 RTP/AVP 26 96',
    'c=IN IP4 239.1.1.1/16',
    'a=rtpmap:96 h264/90000',
    'a=control:trackID=1',
    'a=recvonly',
    'm=audio 0 RTP/AVP 0 97 8',
    'a=rtpmap:97 MPEG4-GENERIC/48000/2',
    'a=fmtp:97 streamtype=5; mode=AAC-hbr',
    'a=control:rtsp://192.0.2.10/live/audio',
    'm=application 0 RTP/AVP smart/1/90000',
    '',
  ].join('\r\n');
  const sdp = parseSdp(text)!;
  t.equal(sdp.control, 'rtsp://192.0.2.10/live/');
  t.equal(sdp.range, 'npt=0-');
  t.equal(sdp.media.length, 3);
  const [v, a, app] = sdp.media;
  t.same([v!.port, v!.portCount, v!.formats, v!.connection], [6000, 2, [26, 96], 'IN IP4 239.1.1.1/16']);
  t.same(codecFor(v!, 26), { codec: 'JPEG', clockRate: 90000 }, 'static JPEG (RFC 3551 table 5)');
  t.same(codecFor(v!, 96), { codec: 'H264', clockRate: 90000 }, 'upper-cased');
  t.same(a!.rtpmap.get(97), { codec: 'MPEG4-GENERIC', clockRate: 48000, channels: 2 });
  t.equal(a!.fmtp.get(97), 'streamtype=5; mode=AAC-hbr');
  t.same(codecFor(a!, 0), { codec: 'PCMU', clockRate: 8000 });
  t.same(codecFor(a!, 8), { codec: 'PCMA', clockRate: 8000 });
  t.same(codecFor(null, 33), { codec: 'MP2T', clockRate: 90000 });
  t.same(codecFor(null, 34), { codec: 'H263', clockRate: 90000 });
  t.equal(codecFor(a!, 98), null, 'dynamic type with no rtpmap');
  t.same(app!.formats, [], 'non-numeric formats are left out');
  t.equal(resolveControl(sdp.control!, v!.control), 'rtsp://192.0.2.10/live/trackID=1');
  t.equal(resolveControl(sdp.control!, a!.control), 'rtsp://192.0.2.10/live/audio');
});

t.test('returns null only for text that is not SDP', async (t) => {
  t.equal(parseSdp(''), null);
  t.equal(parseSdp('<html><body>401</body></html>'), null);
  t.equal(parseSdp('RTSP/1.0 200 OK\r\nCSeq: 2\r\n'), null);
  t.not(parseSdp('m=video 0 RTP/AVP 96\na=rtpmap:96 H264/90000'), null, 'no v= but a media section');
  const broken = parseSdp('v=zero\r\nm=video\r\na=rtpmap:x\r\na=rtpmap:96 H264\r\na=fmtp:\r\n')!;
  t.equal(broken.version, 0);
  t.same([broken.media[0]!.type, broken.media[0]!.port, broken.media[0]!.rtpmap.size, broken.media[0]!.fmtp.size], ['video', 0, 0, 0]);
});

t.test('resolves control URLs as RFC 2326 C.1.1 and common clients do', async (t) => {
  const base = 'rtsp://cam/stream1/';
  t.equal(resolveControl(base, '*'), base);
  t.equal(resolveControl(base, null), base);
  t.equal(resolveControl(base, 'stream=0'), 'rtsp://cam/stream1/stream=0');
  t.equal(resolveControl('rtsp://cam/stream1', 'trackID=1'), 'rtsp://cam/stream1/trackID=1', 'base without a slash');
  t.equal(resolveControl(base, 'rtsp://other:8554/x'), 'rtsp://other:8554/x', 'absolute');
  t.equal(resolveControl('rtsp://cam:554/a/b?x=1', '/track1'), 'rtsp://cam:554/track1', 'absolute path');
});

t.test('skips sprop entries that are not base64', async (t) => {
  t.same(h264ParameterSets('packetization-mode=1'), []);
  t.same(
    h264ParameterSets('sprop-parameter-sets=Z0I=,,!!!,aM4=').map((b) => b.toString('hex')),
    ['6742', '68ce'],
  );
});
