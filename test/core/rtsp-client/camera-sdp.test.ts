/**
 * A camera's DESCRIBE answer cut to its video track, in the form live sessions serve
 * (the rules of core/query/plan-sdp.ts), and the SETUP/PLAY URLs from its controls
 * (RFC 2326 §C.1.1). Input: an SDP as an Axis-style camera sends it (audio first,
 * ONVIF metadata last, `a=ssrc`, LF line ends).
 */
import t from 'tap';
import { cutSdp, pickCameraVideo } from '../../../core/rtsp-client/camera-sdp.js';

const CAMERA = [
  'v=0',
  'o=- 1234 1 IN IP4 192.0.2.10',
  's=Media Presentation',
  'c=IN IP4 0.0.0.0',
  't=0 0',
  'a=control:rtsp://192.0.2.10/axis-media/media.amp',
  'a=range:npt=0.000000-',
  'm=audio 0 RTP/AVP 97',
  'a=control:rtsp://192.0.2.10/axis-media/media.amp/trackID=2',
  'a=rtpmap:97 MPEG4-GENERIC/16000/1',
  'm=video 0 RTP/AVP 96',
  'b=AS:50000',
  'a=framerate:25.000000',
  'a=control:rtsp://192.0.2.10/axis-media/media.amp/trackID=1',
  'a=rtpmap:96 H264/90000',
  'a=fmtp:96 packetization-mode=1; profile-level-id=4d0029; sprop-parameter-sets=Z00AKeKQDwBE/LgLcBAQFAAAD6AAAw1DoYAEvgAAS+C7y4wwAJfAAAl8F3lwoA==,aO48gA==',
  'a=ssrc:1234 cname:x',
  'm=application 0 RTP/AVP 98',
  'a=control:rtsp://192.0.2.10/axis-media/media.amp/trackID=3',
  'a=rtpmap:98 vnd.onvif.metadata/90000',
  '',
].join('\n');

t.test('the video section with session lines, control * and trackID=0, no ssrc, CRLF', async (t) => {
  const v = pickCameraVideo(CAMERA, 'rtsp://192.0.2.10/axis-media/media.amp');
  t.ok(v);
  t.equal(v!.index, 1);
  t.equal(v!.payloadType, 96);
  t.equal(v!.codec, 'H264');
  t.equal(v!.clockRate, 90000);
  t.equal(v!.setupUrl, 'rtsp://192.0.2.10/axis-media/media.amp/trackID=1', 'absolute control as is');
  t.equal(v!.controlUrl, 'rtsp://192.0.2.10/axis-media/media.amp', 'the session-level control for PLAY');
  t.equal(
    v!.channelSdp,
    [
      'v=0',
      'o=- 1234 1 IN IP4 192.0.2.10',
      's=Media Presentation',
      'c=IN IP4 0.0.0.0',
      't=0 0',
      'a=control:*',
      'a=range:npt=0.000000-',
      'm=video 0 RTP/AVP 96',
      'b=AS:50000',
      'a=framerate:25.000000',
      'a=rtpmap:96 H264/90000',
      'a=fmtp:96 packetization-mode=1; profile-level-id=4d0029; sprop-parameter-sets=Z00AKeKQDwBE/LgLcBAQFAAAD6AAAw1DoYAEvgAAS+C7y4wwAJfAAAl8F3lwoA==,aO48gA==',
      'a=control:trackID=0',
      '',
    ].join('\r\n'),
  );
});

t.test('relative controls resolve against the base; no session control means the base', async (t) => {
  const sdp = 'v=0\r\ns=x\r\nt=0 0\r\nm=video 0 RTP/AVP 26\r\na=control:track1\r\n';
  const v = pickCameraVideo(sdp, 'rtsp://cam:554/live/');
  t.equal(v!.setupUrl, 'rtsp://cam:554/live/track1');
  t.equal(v!.controlUrl, 'rtsp://cam:554/live/');
  t.equal(v!.codec, 'JPEG', 'static payload type 26 without rtpmap (RFC 3551)');
  t.equal(cutSdp(sdp, 0), 'v=0\r\ns=x\r\nt=0 0\r\na=control:*\r\nm=video 0 RTP/AVP 26\r\na=control:trackID=0\r\n');
});

t.test('no video, or not SDP: null', async (t) => {
  t.equal(pickCameraVideo('v=0\r\nm=audio 0 RTP/AVP 0\r\n', 'rtsp://c/'), null);
  t.equal(pickCameraVideo('<html>not sdp</html>', 'rtsp://c/'), null);
  t.equal(pickCameraVideo('v=0\r\nm=video 0 RTP/AVP\r\n', 'rtsp://c/'), null, 'no payload type');
});
