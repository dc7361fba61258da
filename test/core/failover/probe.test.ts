/**
 * The probe primitives: TCP connect (RFC 9293 §3.5 handshake), HTTP GET with an expected
 * status, and how checks fold into one verdict. Real sockets on loopback.
 */
import t from 'tap';
import net from 'node:net';
import http from 'node:http';
import { tcpProbe, httpProbe, healthOf, probeEndpoint } from '../../../core/failover/probe.js';
import { redactUrl } from '../../../core/rtsp-client/url.js';
import { freePort } from '../../helpers/peers.js';

async function listen(t: { teardown(fn: () => unknown): void }, srv: net.Server): Promise<number> {
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const sockets = new Set<net.Socket>();
  srv.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  t.teardown(() => new Promise<void>((r) => {
    for (const s of sockets) s.destroy();
    srv.close(() => r());
  }));
  return (srv.address() as net.AddressInfo).port;
}

t.test('tcpProbe: a listening port connects, a closed one is refused', async (t) => {
  let accepted = 0;
  const port = await listen(t, net.createServer((s) => {
    accepted++;
    s.destroy();
  }));
  const ok = await tcpProbe('127.0.0.1', port, 10_000);
  t.same([ok.name, ok.ok], [`tcp 127.0.0.1:${port}`, true]);
  t.match(ok.detail, /^connected in \d+ ms$/);
  t.type(ok.latencyMs, 'number');
  const closed = await freePort();
  const no = await tcpProbe('127.0.0.1', closed, 1000);
  t.same([no.ok, no.detail, no.latencyMs], [false, 'ECONNREFUSED', null]);
  t.ok(accepted <= 1, 'one connection at most: the refused probe never reached it');
  const v6 = await tcpProbe('::1', closed, 1000);
  t.equal(v6.name, `tcp [::1]:${closed}`, 'IPv6 written with brackets');
});

t.test('httpProbe: the status decides; no redirect is followed; the body is not kept', async (t) => {
  const seen: Array<{ url: string; conn: string | undefined }> = [];
  const port = await listen(t, http.createServer((req, res) => {
    seen.push({ url: req.url!, conn: req.headers.connection });
    if (req.url === '/ok') res.end('x'.repeat(100_000));
    else if (req.url === '/moved') {
      res.writeHead(302, { location: '/ok' });
      res.end();
    } else {
      res.statusCode = 500;
      res.end();
    }
  }));
  const a = await httpProbe(`http://127.0.0.1:${port}/ok`, 200, 10_000);
  t.same([a.name, a.ok], [`GET http://127.0.0.1:${port}/ok`, true]);
  const b = await httpProbe(`http://127.0.0.1:${port}/moved`, 200, 10_000);
  t.same([b.ok, b.detail], [false, 'HTTP 302, expected 200']);
  t.same(seen.map((s) => s.url), ['/ok', '/moved'], 'the redirect was not followed');
  t.ok(seen.every((s) => s.conn === 'close'), 'no kept-alive connection');
  const c = await httpProbe(`http://127.0.0.1:${port}/broken`, 200, 10_000);
  t.same([c.ok, c.detail], [false, 'HTTP 500, expected 200']);
});

t.test('httpProbe: a server that never answers fails at the timeout; an abort ends it at once', async (t) => {
  const port = await listen(t, net.createServer(() => {}));
  const slow = await httpProbe(`http://127.0.0.1:${port}/`, 200, 150);
  t.same([slow.ok, slow.detail], [false, 'no answer within 150 ms']);
  const ctrl = new AbortController();
  const p = httpProbe(`http://127.0.0.1:${port}/`, 200, 60_000, { signal: ctrl.signal });
  setImmediate(() => ctrl.abort());
  t.same([(await p).ok, (await p).detail], [false, 'aborted']);
});

t.test('healthOf: ok only if every check is; the slowest answer is the latency; no checks, no verdict', async (t) => {
  const h = healthOf([
    { name: 'tcp a:1', ok: true, detail: 'connected', latencyMs: 3.21 },
    { name: 'tcp a:2', ok: false, detail: 'ECONNREFUSED', latencyMs: null },
    { name: 'GET http://a/', ok: true, detail: 'HTTP 200', latencyMs: 12.34 },
  ]);
  t.same(h, {
    ok: false,
    detail: 'tcp a:2: ECONNREFUSED',
    latencyMs: 12.3,
    checks: [
      { name: 'tcp a:1', ok: true, detail: 'connected' },
      { name: 'tcp a:2', ok: false, detail: 'ECONNREFUSED' },
      { name: 'GET http://a/', ok: true, detail: 'HTTP 200' },
    ],
  });
  t.same(healthOf([{ name: 'x', ok: true, detail: 'y', latencyMs: 1 }]).detail, '1 check ok');
  t.same(healthOf([]), { ok: true, detail: 'nothing to probe', latencyMs: null, checks: [] });
  t.same(healthOf([{ name: 'x', ok: false, detail: 'ECONNREFUSED', latencyMs: null }]).latencyMs, null, 'nothing answered: no latency');
});

t.test('probeEndpoint probes every port and the health URL at once', async (t) => {
  const tcp = await listen(t, net.createServer((s) => s.destroy()));
  const web = await listen(t, http.createServer((_q, r) => {
    r.statusCode = 204;
    r.end();
  }));
  const h = await probeEndpoint({ name: 'v', address: '127.0.0.1', ports: [tcp], healthUrl: `http://127.0.0.1:${web}/h`, expectStatus: 204 }, { signal: new AbortController().signal, timeoutMs: 10_000 });
  t.same([h.ok, h.checks.length], [true, 2]);
});

t.test('health URLs are shown without userinfo (the shared redactUrl; config health URLs are valid URLs)', async (t) => {
  t.equal(redactUrl('http://admin:pw@10.0.0.1:8080/x?y=1'), 'http://10.0.0.1:8080/x?y=1');
  t.equal(redactUrl('http://10.0.0.1/'), 'http://10.0.0.1/');
});
