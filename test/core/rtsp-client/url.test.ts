/** Camera URLs: credentials split off, never shown (RFC 3986 §3.2.1 userinfo, percent-decoded). */
import t from 'tap';
import { parseRtspUrl, redactUrl, stripUserinfo } from '../../../core/rtsp-client/url.js';

t.test('parses host, port, decoded credentials, and the URL to send', async (t) => {
  t.same(parseRtspUrl('rtsp://admin:p%40ss%3Aw@192.0.2.1:8554/Streaming/Channels/101?transportmode=unicast'), {
    host: '192.0.2.1',
    port: 8554,
    url: 'rtsp://192.0.2.1:8554/Streaming/Channels/101?transportmode=unicast',
    user: 'admin',
    password: 'p@ss:w',
  });
  t.same(parseRtspUrl('rtsp://[fd00::5]/live'), { host: 'fd00::5', port: 554, url: 'rtsp://[fd00::5]/live', user: null, password: null }, 'IPv6, default port 554');
  t.same(parseRtspUrl('RTSP://cam'), { host: 'cam', port: 554, url: 'rtsp://cam/', user: null, password: null });
  t.equal(parseRtspUrl('rtsp://user@cam/x')?.password, null, 'a user without a password');
  t.equal(parseRtspUrl('http://cam/x'), null);
  t.equal(parseRtspUrl('rtsp://cam:99999/x'), null);
  t.equal(parseRtspUrl('rtsp:///x'), null);
});

t.test('redacts userinfo and secret query values, keeps the rest', async (t) => {
  t.equal(redactUrl('rtsp://admin:secret@cam:554/x'), 'rtsp://cam:554/x');
  t.equal(redactUrl('rtsp://cam/cgi?user=admin&password=secret&channel=1'), 'rtsp://cam/cgi?user=admin&password=***&channel=1');
  t.equal(redactUrl('rtsp://cam/x?pwd=a&token=b'), 'rtsp://cam/x?pwd=***&token=***');
  t.equal(stripUserinfo('rtsp://a:b@c/d@e'), 'rtsp://c/d@e', 'an @ in the path is not userinfo');
});
