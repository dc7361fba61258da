/**
 * Hostile input to the HTTP/ONVIF proxy. The pure checks are tested on hand-written
 * request-targets and header lists (RFC 9112 §3.2, §6.1, §6.3); then raw bytes go to a
 * running proxy in front of the ONVIF simulator, and the simulator's own request log is
 * the judge of what reached the camera: never two requests where the VMS sent one,
 * nothing at all of a refused request. After each attempt a well-formed sentinel request
 * must still be answered (no crash) and be the only new entry in the camera's log.
 */
import t from 'tap';
import { checkFraming, routeRequest } from '../../../core/inline/http-guard.js';
import { HttpCameraProxy } from '../../../core/inline/http-proxy.js';
import { rawExchange, soap, startSim, statuses, type Sim } from './http-peers.js';

t.test('routeRequest maps /cam/<alias>/<rest> and refuses what could escape it', async (t) => {
  const ours = ['camtap.example:8080'];
  t.same(routeRequest('/cam/door/onvif/device_service', ours), { kind: 'camera', alias: 'door', target: '/onvif/device_service' });
  t.same(routeRequest('/cam/door/axis-cgi/param.cgi?action=list&group=Network', ours), { kind: 'camera', alias: 'door', target: '/axis-cgi/param.cgi?action=list&group=Network' }, 'query kept');
  t.same(routeRequest('/cam/door', ours), { kind: 'camera', alias: 'door', target: '/' });
  t.same(routeRequest('/cam/door?x=1', ours), { kind: 'camera', alias: 'door', target: '/?x=1' });
  t.same(routeRequest('/cam/front%20door/x', ours), { kind: 'camera', alias: 'front door', target: '/x' }, 'alias percent-decoded');
  t.same(routeRequest('/cam/door/a/..%2f/x', ours), { kind: 'camera', alias: 'door', target: '/a/..%2f/x' }, 'an encoded slash inside a segment is the camera’s business');
  t.same(routeRequest('http://camtap.example:8080/cam/door/x', ours), { kind: 'camera', alias: 'door', target: '/x' }, 'absolute-form naming camtap itself');
  t.same(routeRequest('http://CAMTAP.example:8080/cam/door/x', ours), { kind: 'camera', alias: 'door', target: '/x' }, 'host compared case-insensitively');

  t.same(routeRequest('/api/streams', ours), { kind: 'not-ours' });
  t.same(routeRequest('/camera/x', ours), { kind: 'not-ours' });
  t.same(routeRequest('*', ours), { kind: 'not-ours' });
  t.same(routeRequest('http://camtap.example:8080/api/x', ours), { kind: 'not-ours' });

  t.match(routeRequest('http://10.0.0.11/cam/door/x', ours), { kind: 'bad', status: 400 }, 'absolute-form to another host');
  t.match(routeRequest('http://10.0.0.11/anything', ours), { kind: 'bad', status: 400 }, 'absolute-form to another host, any path');
  t.match(routeRequest('evil.example:443', ours), { kind: 'bad', status: 400 }, 'authority-form');
  t.match(routeRequest('/cam/door/../other/x', ours), { kind: 'bad', status: 400 });
  t.match(routeRequest('/cam/door/%2E%2e/x', ours), { kind: 'bad', status: 400 }, 'encoded dot segment');
  t.match(routeRequest('/cam/door/./x', ours), { kind: 'bad', status: 400 });
  t.match(routeRequest('/cam/door/a\\..\\b', ours), { kind: 'bad', status: 400 }, 'backslash');
  t.match(routeRequest('/cam/%zz/x', ours), { kind: 'bad', status: 400 }, 'bad percent-encoding in the alias');
  t.match(routeRequest('/cam//x', ours), { kind: 'bad', status: 404 }, 'no alias');

  t.same(routeRequest('/onvif/device_service', ours, 'gate'), { kind: 'camera', alias: 'gate', target: '/onvif/device_service' }, 'dedicated port: the path unchanged');
  t.match(routeRequest('/../x', ours, 'gate'), { kind: 'bad', status: 400 });
});

t.test('checkFraming refuses ambiguous framing (RFC 9112 §6)', async (t) => {
  const max = 1000;
  const H = ['Host', 'cam'];
  t.same(checkFraming([...H, 'Content-Length', '12'], '1.1', max), { ok: true, length: 12, chunked: false });
  t.same(checkFraming([...H, 'Transfer-Encoding', 'Chunked'], '1.1', max), { ok: true, length: null, chunked: true }, 'coding names are case-insensitive');
  t.same(checkFraming([...H], '1.1', max), { ok: true, length: null, chunked: false });
  t.same(checkFraming([], '1.0', max), { ok: true, length: null, chunked: false }, 'HTTP/1.0 needs no Host');
  const bad = (raw: string[], version = '1.1') => {
    const f = checkFraming(raw, version, max);
    return f.ok ? 'ok' : `${f.status}`;
  };
  t.equal(bad([...H, 'Content-Length', '5', 'Transfer-Encoding', 'chunked']), '400', 'CL + TE');
  t.equal(bad([...H, 'Transfer-Encoding', 'chunked', 'Content-Length', '5']), '400', 'TE + CL');
  t.equal(bad([...H, 'Content-Length', '5', 'Content-Length', '5']), '400', 'two equal Content-Lengths');
  t.equal(bad([...H, 'Content-Length', '5, 5']), '400', 'a list in Content-Length');
  t.equal(bad([...H, 'Content-Length', '+5']), '400');
  t.equal(bad([...H, 'Content-Length', '0x10']), '400');
  t.equal(bad([...H, 'Transfer-Encoding', 'chunked', 'Transfer-Encoding', 'chunked']), '400', 'two Transfer-Encodings');
  t.equal(bad([...H, 'Transfer-Encoding', 'gzip, chunked']), '400', 'a coding besides chunked');
  t.equal(bad([...H, 'Transfer-Encoding', 'chunked'], '1.0'), '400', 'Transfer-Encoding in HTTP/1.0');
  t.equal(bad(['Host', 'a', 'Host', 'b']), '400', 'two Hosts');
  t.equal(bad([]), '400', 'no Host in HTTP/1.1');
  t.equal(bad([...H, 'Content-Length', '1001']), '413', 'declared body over the limit');
  t.equal(bad([...H, 'Content-Length', '1000']), 'ok', 'exactly the limit');
});

/** The proxy (limits as given) in front of the simulator, both stopped at teardown. */
async function setup(t: Parameters<Parameters<typeof t.test>[1]>[0], maxBodyBytes?: number): Promise<{ sim: Sim; port: number }> {
  const sim = await startSim(t, { rtsp: 'rtsp://127.0.0.1:554/stream1' });
  let port = 0;
  const proxy = new HttpCameraProxy({ cameras: () => [{ alias: 'door', http: sim.base }], rtspBase: () => 'rtsp://127.0.0.2:8554', httpBase: () => `http://127.0.0.1:${port}`, maxBodyBytes });
  t.teardown(() => proxy.close());
  port = (await proxy.listen(0, '127.0.0.1')).port;
  return { sim, port };
}

const PATH = '/cam/door/onvif/device_service';

/** A well-formed request for `op`, closing the connection after its answer. */
function good(op: string, target = PATH): string {
  const body = soap(op);
  return `POST ${target} HTTP/1.1\r\nHost: camtap\r\nContent-Type: application/soap+xml\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}

/** Sends a sentinel request and checks it is the one new thing the camera logged since `before`. */
async function sentinel(t: Parameters<Parameters<typeof t.test>[1]>[0], sim: Sim, port: number, before: number, what: string): Promise<void> {
  const r = await rawExchange(port, good('GetHostname'));
  t.same(statuses(r.text), [200], `${what}: the proxy still answers`);
  const after = sim.requests();
  t.same(
    after.slice(before).map((x) => x.action),
    ['GetHostname'],
    `${what}: the camera saw nothing of it`,
  );
}

t.test('request smuggling and malformed framing get 400 and a closed connection; the camera sees nothing', async (t) => {
  const { sim, port } = await setup(t);
  const smuggled = good('SetScopes');
  const inner = '0\r\n\r\n' + smuggled;
  const cases: Array<[string, string, number]> = [
    ['Content-Length with Transfer-Encoding (CL.TE)', `POST ${PATH} HTTP/1.1\r\nHost: camtap\r\nContent-Length: ${inner.length}\r\nTransfer-Encoding: chunked\r\n\r\n${inner}`, 400],
    ['Transfer-Encoding with Content-Length (TE.CL)', `POST ${PATH} HTTP/1.1\r\nHost: camtap\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n${(smuggled.length).toString(16)}\r\n${smuggled}\r\n0\r\n\r\n`, 400],
    ['two Content-Lengths', `POST ${PATH} HTTP/1.1\r\nHost: camtap\r\nContent-Length: 0\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`, 400],
    ['Transfer-Encoding: chunked, identity', `POST ${PATH} HTTP/1.1\r\nHost: camtap\r\nTransfer-Encoding: chunked, identity\r\n\r\n${inner}`, 400],
    ['Transfer-Encoding in HTTP/1.0', `POST ${PATH} HTTP/1.0\r\nHost: camtap\r\nTransfer-Encoding: chunked\r\n\r\n${inner}`, 400],
    ['obfuscated Transfer-Encoding (space before colon)', `POST ${PATH} HTTP/1.1\r\nHost: camtap\r\nTransfer-Encoding : chunked\r\nContent-Length: ${inner.length}\r\n\r\n${inner}`, 400],
    ['two Host headers', `POST ${PATH} HTTP/1.1\r\nHost: camtap\r\nHost: other\r\nContent-Length: 0\r\n\r\n`, 400],
    ['malformed chunk size', `POST ${PATH} HTTP/1.1\r\nHost: camtap\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n`, 400],
    ['bare LF line endings', `POST ${PATH} HTTP/1.1\nHost: camtap\nContent-Length: 0\n\n`, 400],
    ['absolute-form URI naming another host', `POST http://10.1.2.3:80${PATH} HTTP/1.1\r\nHost: 10.1.2.3\r\nContent-Length: 0\r\n\r\n`, 400],
    ['dot segments', `GET /cam/door/../../etc/passwd HTTP/1.1\r\nHost: camtap\r\n\r\n`, 400],
    ['encoded dot segments', `GET /cam/door/%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: camtap\r\n\r\n`, 400],
  ];
  for (const [what, payload, status] of cases) {
    const before = sim.requests().length;
    const r = await rawExchange(port, payload);
    t.same(statuses(r.text), [status], `${what}: ${status}`);
    t.ok(r.serverClosed, `${what}: connection closed by camtap`);
    t.match(r.text, /"error":"CAMTAP_ERR_HTTP_REQUEST"/, `${what}: camtap's error body`);
    await sentinel(t, sim, port, before, what);
  }
});

t.test('paths outside /cam/<alias>/ and CONNECT are refused without reaching the camera', async (t) => {
  const { sim, port } = await setup(t);
  const cases: Array<[string, string, number]> = [
    ['a path outside /cam/', `GET /onvif/device_service HTTP/1.1\r\nHost: camtap\r\nConnection: close\r\n\r\n`, 404],
    ['no alias', `GET /cam/ HTTP/1.1\r\nHost: camtap\r\nConnection: close\r\n\r\n`, 404],
    ['an unknown alias', `GET /cam/nosuch/onvif/device_service HTTP/1.1\r\nHost: camtap\r\nConnection: close\r\n\r\n`, 404],
    ['CONNECT (forward proxy tunnel)', `CONNECT 10.1.2.3:443 HTTP/1.1\r\nHost: 10.1.2.3:443\r\n\r\n`, 405],
    ['a header section over 16 KiB', `GET ${PATH} HTTP/1.1\r\nHost: camtap\r\nX-Big: ${'a'.repeat(20000)}\r\n\r\n`, 431],
  ];
  for (const [what, payload, status] of cases) {
    const before = sim.requests().length;
    const r = await rawExchange(port, payload);
    t.same(statuses(r.text), [status], `${what}: ${status}`);
    t.ok(r.serverClosed, `${what}: connection closed`);
    await sentinel(t, sim, port, before, what);
  }
  const before = sim.requests().length;
  const own = await rawExchange(port, good('GetScopes', `http://127.0.0.1:${port}${PATH}`));
  t.same(statuses(own.text), [200], 'absolute-form naming camtap itself is served');
  t.same(
    sim.requests()
      .slice(before)
      .map((x) => [x.path, x.action]),
    [['/onvif/device_service', 'GetScopes']],
  );
});

t.test('what reaches the camera is one request per request the VMS sent', async (t) => {
  const { sim, port } = await setup(t);
  // A chunked body that holds a whole second request: it is body, never a request.
  const embedded = good('SetScopes');
  const chunked = `POST ${PATH} HTTP/1.1\r\nHost: camtap\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${embedded.length.toString(16)}\r\n${embedded}\r\n0\r\n\r\n`;
  let before = sim.requests().length;
  let r = await rawExchange(port, chunked);
  t.same(statuses(r.text), [400], 'the simulator answers a non-SOAP body with 400');
  let seen = sim.requests().slice(before);
  t.equal(seen.length, 1, 'exactly one request reached the camera');
  t.equal(seen[0]?.body, embedded, 'with the embedded request as its body, byte for byte');

  // Two pipelined requests: two, in order.
  const first = good('GetScopes').replace('Connection: close\r\n', '');
  before = sim.requests().length;
  r = await rawExchange(port, first + good('GetHostname'));
  t.same(statuses(r.text), [200, 200]);
  seen = sim.requests().slice(before);
  t.same(
    seen.map((x) => x.action),
    ['GetScopes', 'GetHostname'],
    'pipelined requests reach the camera as sent',
  );

  // A body shorter than its Content-Length says, then the client leaves: nothing is forwarded.
  before = sim.requests().length;
  const body = soap('SystemReboot');
  r = await rawExchange(port, `POST ${PATH} HTTP/1.1\r\nHost: camtap\r\nContent-Length: ${body.length + 100}\r\n\r\n${body}`, 300);
  t.same(statuses(r.text), [], 'no answer to an unfinished request');
  await sentinel(t, sim, port, before, 'a body cut short');

  // Bytes after a Content-Length body are the next request, parsed as such (here: garbage → 400).
  before = sim.requests().length;
  r = await rawExchange(port, good('GetScopes').replace('Connection: close\r\n', '') + 'GARBAGE\r\n\r\n');
  t.same(statuses(r.text), [200, 400], 'the request, then 400 for what followed it');
  t.same(
    sim.requests()
      .slice(before)
      .map((x) => x.action),
    ['GetScopes'],
    'only the real request reached the camera',
  );
});

t.test('an oversized body gets 413 and the camera sees nothing of it', async (t) => {
  const { sim, port } = await setup(t);
  let before = sim.requests().length;
  let r = await rawExchange(port, `POST ${PATH} HTTP/1.1\r\nHost: camtap\r\nContent-Type: application/soap+xml\r\nContent-Length: ${2 * 1024 * 1024}\r\n\r\n<s:Envelope`);
  t.same(statuses(r.text), [413], 'declared length over the default 1 MiB: 413 before the body is read');
  t.ok(r.serverClosed, 'connection closed');
  t.match(r.text, /"error":"CAMTAP_ERR_HTTP_TOO_LARGE"/);
  await sentinel(t, sim, port, before, 'Content-Length over the limit');

  const small = await setup(t, 1024);
  const chunk = 'x'.repeat(600);
  const chunks = Array.from({ length: 4 }, () => `${chunk.length.toString(16)}\r\n${chunk}\r\n`).join('');
  before = small.sim.requests().length;
  r = await rawExchange(small.port, `POST ${PATH} HTTP/1.1\r\nHost: camtap\r\nTransfer-Encoding: chunked\r\n\r\n${chunks}0\r\n\r\n`);
  t.same(statuses(r.text), [413], 'chunked body growing over maxBodyBytes: 413');
  t.ok(r.serverClosed, 'connection closed');
  await sentinel(t, small.sim, small.port, before, 'chunked body over the limit');

  before = small.sim.requests().length;
  const exact = 'y'.repeat(1024);
  r = await rawExchange(small.port, `POST ${PATH} HTTP/1.1\r\nHost: camtap\r\nContent-Length: 1024\r\nConnection: close\r\n\r\n${exact}`);
  t.same(statuses(r.text), [400], 'a body of exactly the limit is relayed (the simulator refuses non-SOAP with 400)');
  t.equal(small.sim.requests().slice(before)[0]?.body, exact, 'and reaches the camera whole');
});
