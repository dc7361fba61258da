/**
 * The proxy's rewriting of camera answers, on hand-written bodies (ONVIF answers as the
 * ONVIF Media and Device WSDLs shape them, VAPIX parameter lists, ISAPI JSON) with the
 * expected output written out by hand, and the hop-by-hop rules of RFC 9110 §7.6.1.
 */
import t from 'tap';
import { downstreamResponseHeaders, isRewritableType, makeRewriter, rewriteBody, upstreamRequestHeaders } from '../../../core/inline/http-rewrite.js';

const rw = makeRewriter({ cameraHttp: 'http://10.0.0.11:80', httpPublic: 'http://camtap.example:8080/cam/door', rtspPublic: 'rtsp://camtap.example:8554/door' });

t.test('GetStreamUri, GetSnapshotUri and XAddrs point at camtap', async (t) => {
  t.equal(
    rw('<trt:MediaUri><tt:Uri>rtsp://10.0.0.11:554/Streaming/Channels/101?transportmode=unicast&amp;profile=Profile_1</tt:Uri></trt:MediaUri>'),
    '<trt:MediaUri><tt:Uri>rtsp://camtap.example:8554/door/Streaming/Channels/101?transportmode=unicast&amp;profile=Profile_1</tt:Uri></trt:MediaUri>',
  );
  t.equal(rw('<tt:Uri>rtsp://10.0.0.11/stream1</tt:Uri>'), '<tt:Uri>rtsp://camtap.example:8554/door/stream1</tt:Uri>', 'no port');
  t.equal(rw('<tt:Uri>rtsp://10.0.0.11:8554</tt:Uri>'), '<tt:Uri>rtsp://camtap.example:8554/door</tt:Uri>', 'no path');
  t.equal(rw('<tt:Uri>RTSP://10.0.0.11/s</tt:Uri>'), '<tt:Uri>rtsp://camtap.example:8554/door/s</tt:Uri>', 'scheme case-insensitive (RFC 3986 §3.1)');
  t.equal(rw('<tt:Uri>rtsp://admin:pw@10.0.0.11:554/s</tt:Uri>'), '<tt:Uri>rtsp://admin:pw@camtap.example:8554/door/s</tt:Uri>', 'userinfo the camera put in is kept for the VMS');
  t.equal(rw('<tt:Uri>http://10.0.0.11/onvif-http/snapshot?Profile_1</tt:Uri>'), '<tt:Uri>http://camtap.example:8080/cam/door/onvif-http/snapshot?Profile_1</tt:Uri>', 'snapshot, default port implied');
  t.equal(rw('<tt:XAddr>http://10.0.0.11:80/onvif/device_service</tt:XAddr>'), '<tt:XAddr>http://camtap.example:8080/cam/door/onvif/device_service</tt:XAddr>', 'XAddr, default port explicit');
  t.equal(
    rw('<tds:XAddr>http://10.0.0.11/onvif/Media http://10.0.0.11/onvif/Media2</tds:XAddr>'),
    '<tds:XAddr>http://camtap.example:8080/cam/door/onvif/Media http://camtap.example:8080/cam/door/onvif/Media2</tds:XAddr>',
    'space-separated XAddrs (WS-Discovery style)',
  );
  t.equal(rw('<tt:XAddr>http://10.0.0.11</tt:XAddr>'), '<tt:XAddr>http://camtap.example:8080/cam/door</tt:XAddr>', 'bare base');
});

t.test('only the camera’s own addresses are rewritten', async (t) => {
  const keep = [
    '<tt:Uri>rtsp://10.0.0.12:554/stream1</tt:Uri>', // another device
    '<tt:Uri>rtsp://10.0.0.111/stream1</tt:Uri>', // a longer address with the camera's as prefix
    '<tt:Uri>rtsp://10.0.0.11.example.org/stream1</tt:Uri>', // a host name starting like it
    '<tt:XAddr>http://10.0.0.11:8080/onvif/device_service</tt:XAddr>', // another port
    '<tt:XAddr>https://10.0.0.11/onvif/device_service</tt:XAddr>', // another scheme
    'root.Time.NTP=10.0.0.11', // not a URI
    '<tt:IPv4Address>10.0.0.11</tt:IPv4Address>',
  ];
  for (const s of keep) t.equal(rw(s), s, s);
});

t.test('camera bases with a port, a path, a host name or IPv6', async (t) => {
  const port = makeRewriter({ cameraHttp: 'http://192.168.1.5:8000', httpPublic: 'http://c:1/cam/a', rtspPublic: 'rtsp://c:2/a' });
  t.equal(port('http://192.168.1.5:8000/ISAPI/System/deviceInfo'), 'http://c:1/cam/a/ISAPI/System/deviceInfo');
  t.equal(port('http://192.168.1.5/ISAPI'), 'http://192.168.1.5/ISAPI', 'the default port is not the camera’s 8000');
  t.equal(port('rtsp://192.168.1.5:554/Streaming/Channels/101'), 'rtsp://c:2/a/Streaming/Channels/101', 'RTSP on any port of the camera');

  const path = makeRewriter({ cameraHttp: 'http://10.0.0.5/api/', httpPublic: 'http://c:1/cam/a/', rtspPublic: 'rtsp://c:2/a/' });
  t.equal(path('http://10.0.0.5/api/v1/x'), 'http://c:1/cam/a/v1/x', 'the base path is replaced');
  t.equal(path('http://10.0.0.5/other'), 'http://10.0.0.5/other', 'outside the base path: left');
  t.equal(path('http://10.0.0.5/apiary'), 'http://10.0.0.5/apiary', 'the base path ends at a segment');

  const named = makeRewriter({ cameraHttp: 'https://Cam-7.Site.Local', httpPublic: 'http://c:1/cam/a', rtspPublic: 'rtsp://c:2/a' });
  t.equal(named('https://cam-7.site.local/onvif/device_service'), 'http://c:1/cam/a/onvif/device_service', 'host names compare case-insensitively; https base');
  t.equal(named('https://cam-7.site.local:443/x'), 'http://c:1/cam/a/x');

  const v6 = makeRewriter({ cameraHttp: 'http://[fd00::11]:80', httpPublic: 'http://c:1/cam/a', rtspPublic: 'rtsp://c:2/a' });
  t.equal(v6('<tt:Uri>rtsp://[fd00::11]:554/s</tt:Uri> <tt:XAddr>http://[fd00::11]/onvif/x</tt:XAddr>'), '<tt:Uri>rtsp://c:2/a/s</tt:Uri> <tt:XAddr>http://c:1/cam/a/onvif/x</tt:XAddr>');
});

t.test('JSON and VAPIX parameter lists', async (t) => {
  t.equal(rw('{"url":"rtsp://10.0.0.11/h264","next":"http://10.0.0.11/x"}'), '{"url":"rtsp://camtap.example:8554/door/h264","next":"http://camtap.example:8080/cam/door/x"}');
  t.equal(rw("root.Network.RTSP.URL='rtsp://10.0.0.11/axis-media/media.amp'"), "root.Network.RTSP.URL='rtsp://camtap.example:8554/door/axis-media/media.amp'");
});

t.test('rewriteBody keeps every other byte (latin1 round trip)', async (t) => {
  const body = Buffer.concat([Buffer.from('<a>é € ', 'utf8'), Buffer.from([0xff, 0x00, 0x80]), Buffer.from(' rtsp://10.0.0.11/s</a>')]);
  const out = rewriteBody(body, rw);
  t.same(out, Buffer.concat([Buffer.from('<a>é € ', 'utf8'), Buffer.from([0xff, 0x00, 0x80]), Buffer.from(' rtsp://camtap.example:8554/door/s</a>')]));
  const same = Buffer.from('<a>nothing to change</a>');
  t.equal(rewriteBody(same, rw), same, 'unchanged bodies are returned as they are');
  const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('rtsp://10.0.0.11/s', 'utf16le')]);
  t.equal(rewriteBody(utf16, rw), utf16, 'UTF-16 bodies are not touched');
});

t.test('which answers are rewritten', async (t) => {
  for (const ct of ['application/soap+xml; charset=utf-8', 'text/xml', 'application/xml', 'text/plain', 'application/json', 'application/vnd.foo+json', 'text/html', 'application/javascript']) t.ok(isRewritableType(ct, false), ct);
  for (const ct of ['image/jpeg', 'multipart/x-mixed-replace; boundary=x', 'text/event-stream', 'application/octet-stream', 'video/mp4']) t.notOk(isRewritableType(ct, true), ct);
  t.ok(isRewritableType(undefined, true), 'untyped with a length');
  t.notOk(isRewritableType(undefined, false), 'untyped without a length (maybe endless)');
});

t.test('request fields toward the camera', async (t) => {
  const raw = [
    'Host', 'camtap:8080',
    'Authorization', 'Digest username="admin", response="abc"',
    'Connection', 'keep-alive, X-Trace',
    'X-Trace', '1',
    'Keep-Alive', 'timeout=5',
    'Transfer-Encoding', 'chunked',
    'Content-Length', '99',
    'Expect', '100-continue',
    'Accept-Encoding', 'gzip',
    'Proxy-Authorization', 'Basic eDp5',
    'TE', 'trailers',
    'Upgrade', 'websocket',
    'Cookie', 'a=1',
    'Cookie', 'b=2',
    'X-Multi', 'one',
    'x-multi', 'two',
    'Content-Type', 'application/soap+xml',
  ];
  t.same(upstreamRequestHeaders(raw, 12, 'POST'), {
    authorization: 'Digest username="admin", response="abc"',
    cookie: 'a=1; b=2',
    'x-multi': ['one', 'two'],
    'content-type': 'application/soap+xml',
    'accept-encoding': 'identity',
    'content-length': '12',
  });
  t.same(upstreamRequestHeaders(['Host', 'x'], 0, 'GET'), { 'accept-encoding': 'identity' }, 'GET without body: no Content-Length');
  t.same(upstreamRequestHeaders(['Host', 'x'], 0, 'POST'), { 'accept-encoding': 'identity', 'content-length': '0' }, 'empty POST: Content-Length 0');
});

t.test('answer fields toward the VMS', async (t) => {
  const raw = [
    'Content-Type', 'text/xml',
    'Content-Length', '10',
    'Content-Encoding', 'gzip',
    'Connection', 'close, X-Hop',
    'X-Hop', 'h',
    'Transfer-Encoding', 'chunked',
    'Location', 'http://10.0.0.11/login',
    'WWW-Authenticate', 'Digest realm="a", nonce="1", algorithm=MD5',
    'WWW-Authenticate', 'Digest realm="a", nonce="2", algorithm=SHA-256',
    'Set-Cookie', 'sid=1',
  ];
  const keep = ['Content-Type', 'text/xml', 'Location', 'http://camtap.example:8080/cam/door/login', 'WWW-Authenticate', 'Digest realm="a", nonce="1", algorithm=MD5', 'WWW-Authenticate', 'Digest realm="a", nonce="2", algorithm=SHA-256', 'Set-Cookie', 'sid=1'];
  t.same(downstreamResponseHeaders(raw, rw, true), keep, 'new body: length and coding dropped');
  t.same(downstreamResponseHeaders(raw, rw, false), ['Content-Type', 'text/xml', 'Content-Length', '10', 'Content-Encoding', 'gzip', ...keep.slice(2)], 'streamed body: length and coding kept');
});
