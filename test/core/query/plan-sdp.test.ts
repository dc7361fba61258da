/**
 * The plan's SDP: a captured DESCRIBE answer cut to the stream's media section, or one
 * built from the stream record. Expected texts are written out by hand from RFC 8866 §5.
 */
import t from 'tap';
import { buildSdp, pickStreamMedia, reduceSdp } from '../../../core/query/plan-sdp.js';
import { parseSdp } from '../../../core/wire/sdp.js';
import type { SessionRecord, StreamRecord } from '../../../core/contracts/records.js';

const CAPTURED = [
  'v=0',
  'o=- 1 1 IN IP4 192.168.1.64',
  's=Media Presentation',
  'c=IN IP4 0.0.0.0',
  't=0 0',
  'a=control:rtsp://192.168.1.64:554/Streaming/Channels/101/',
  'a=range:npt=now-',
  'm=video 0 RTP/AVP 96',
  'a=rtpmap:96 H264/90000',
  'a=fmtp:96 packetization-mode=1',
  'a=control:trackID=1',
  'a=ssrc:305419896 cname:cam',
  'm=audio 0 RTP/AVP 0',
  'a=rtpmap:0 PCMU/8000',
  'a=control:trackID=2',
  'm=application 0 RTP/AVP 107',
  'a=rtpmap:107 vnd.onvif.metadata/90000',
  'a=control:trackID=3',
  '',
].join('\n');

function stream(over: Partial<StreamRecord>): StreamRecord {
  return {
    id: 's1', camera: '192.168.1.64', src: '192.168.1.64:8000', dst: '10.0.0.5:50000', transport: 'udp', ssrc: 0x12345678, payloadType: 96,
    codec: 'H264', clockRate: 90000, direction: 'server->client', session: 'abc', url: 'rtsp://192.168.1.64:554/Streaming/Channels/101',
    packets: 10, duplicates: 0, outOfOrder: 0, firstSeq: 1, lastSeq: 10, minExtSeq: 65537, maxExtSeq: 65546, lost: 0, markers: 1, frames: 1,
    keyframes: 1, payloadBytes: 1000, lastRtpTs: 0, start: '2026-11-23T21:06:43.000000000Z', end: '2026-11-23T21:06:44.000000000Z',
    startNs: '1795468003000000000', endNs: '1795468004000000000', taps: [0], malformed: 0, ...over,
  };
}

function session(tracks: SessionRecord['tracks']): SessionRecord {
  return {
    id: 'r1', sessionId: 'abc', timeout: 60, client: '10.0.0.5:40000', server: '192.168.1.64:554', url: 'rtsp://192.168.1.64:554/Streaming/Channels/101',
    contentBase: 'rtsp://192.168.1.64:554/Streaming/Channels/101/', sdp: CAPTURED, auth: null, userAgent: null, tracks, requests: [],
    camera: '192.168.1.64', vms: '10.0.0.5', start: '2026-11-23T21:06:42.000000000Z', end: '2026-11-23T21:06:44.000000000Z', taps: [0],
  };
}

const track = (control: string, over: Partial<SessionRecord['tracks'][number]>): SessionRecord['tracks'][number] => ({
  controlUrl: control, requestedTransport: null, transport: null, lower: 'udp', clientPorts: null, serverPorts: null, interleaved: null, ssrc: null, status: 200, ...over,
});

t.test('the video section is kept, session lines kept, control and ssrc lines replaced or dropped', async (t) => {
  const s = session([
    track('rtsp://192.168.1.64:554/Streaming/Channels/101/trackID=1', { clientPorts: [50000, 50001] }),
    track('rtsp://192.168.1.64:554/Streaming/Channels/101/trackID=2', { clientPorts: [50002, 50003] }),
  ]);
  const out = reduceSdp(CAPTURED, stream({}), s);
  t.equal(
    out,
    [
      'v=0',
      'o=- 1 1 IN IP4 192.168.1.64',
      's=Media Presentation',
      'c=IN IP4 0.0.0.0',
      't=0 0',
      'a=control:*',
      'a=range:npt=now-',
      'm=video 0 RTP/AVP 96',
      'a=rtpmap:96 H264/90000',
      'a=fmtp:96 packetization-mode=1',
      'a=control:trackID=0',
      '',
    ].join('\r\n'),
  );
});

t.test('the SETUP track decides the section, not the payload type', async (t) => {
  // The audio track was set up on client port 50002: the stream to that port is the audio one.
  const s = session([
    track('rtsp://192.168.1.64:554/Streaming/Channels/101/trackID=1', { clientPorts: [50000, 50001] }),
    track('rtsp://192.168.1.64:554/Streaming/Channels/101/trackID=2', { clientPorts: [50002, 50003] }),
  ]);
  const out = reduceSdp(CAPTURED, stream({ dst: '10.0.0.5:50002', payloadType: 0, codec: 'PCMU', clockRate: 8000 }), s)!;
  const parsed = parseSdp(out)!;
  t.equal(parsed.media.length, 1, 'one media section');
  t.equal(parsed.media[0]!.type, 'audio');
  t.equal(parsed.media[0]!.control, 'trackID=0');
  t.equal(parsed.control, '*');
});

t.test('RTP over TCP: the interleaved channel picks the track', async (t) => {
  const s = session([
    track('rtsp://192.168.1.64:554/Streaming/Channels/101/trackID=1', { lower: 'tcp', interleaved: [0, 1] }),
    track('rtsp://192.168.1.64:554/Streaming/Channels/101/trackID=3', { lower: 'tcp', interleaved: [2, 3] }),
  ]);
  const media = parseSdp(CAPTURED)!.media;
  t.equal(pickStreamMedia(media, stream({ transport: 'tcp', channel: 2, payloadType: 107, codec: null }), s), 2, 'channel 2 is the metadata track');
  t.equal(pickStreamMedia(media, stream({ transport: 'tcp', channel: 0 }), s), 0, 'channel 0 is the video track');
});

t.test('without a matching track the payload type (and codec) decides', async (t) => {
  const media = parseSdp(CAPTURED)!.media;
  t.equal(pickStreamMedia(media, stream({ payloadType: 0, codec: 'PCMU' }), null), 1);
  t.equal(pickStreamMedia(media, stream({}), null), 0);
});

t.test('a stream with no dialog gets an SDP built from its record', async (t) => {
  t.equal(
    buildSdp(stream({ session: null, url: null })),
    ['v=0', 'o=- 1795468003 1 IN IP4 192.168.1.64', 's=camtap s1', 'c=IN IP4 0.0.0.0', 't=0 0', 'a=control:*', 'm=video 0 RTP/AVP 96', 'a=rtpmap:96 H264/90000', 'a=control:trackID=0', ''].join('\r\n'),
  );
  t.equal(
    buildSdp(stream({ src: '[2001:db8::7]:9000', payloadType: 0, codec: null, clockRate: null })),
    ['v=0', 'o=- 1795468003 1 IN IP6 2001:db8::7', 's=camtap s1', 'c=IN IP6 ::', 't=0 0', 'a=control:*', 'm=audio 0 RTP/AVP 0', 'a=rtpmap:0 PCMU/8000', 'a=control:trackID=0', ''].join('\r\n'),
    'a static payload type gets its RFC 3551 codec, IPv6 addresses IP6',
  );
  t.equal(
    buildSdp(stream({ codec: null, clockRate: null })).split('\r\n').filter((l) => l.startsWith('a=rtpmap')).length,
    0,
    'a dynamic payload type with no known codec gets no rtpmap',
  );
});

t.test('text that is not SDP is not reduced', async (t) => {
  t.equal(reduceSdp('hello', stream({}), null), null);
});
