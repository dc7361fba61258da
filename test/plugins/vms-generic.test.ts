/**
 * vms-generic: probes a VMS by TCP connect to the ports it listens on and by an HTTP
 * health URL (real sockets on loopback), and describes how a VMS uses its cameras from
 * captured sessions (checked against the tshark manifest of netns_multi.pcap).
 */
import t from 'tap';
import net from 'node:net';
import http from 'node:http';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import plugin, { meta, describeRtspUse } from '../../plugins/vms-generic/index.js';
import { checkMeta, PluginHost } from '../../core/plugin-host.js';
import { tcpProbe, httpProbe } from '../../core/failover/probe.js';
import { readCaptureFile } from '../../core/wire/capture-file.js';
import { CapturePipeline } from '../../core/capture/pipeline.js';
import { silentLogger } from '../../core/logger.js';
import { loadConfig } from '../../core/config.js';
import { CAPTURES, tempDir } from '../helpers/camtap.js';
import { freePort } from '../helpers/peers.js';
import type { VmsEndpoint } from '../../core/contracts/plugin.js';

const probe = (e: Partial<VmsEndpoint>, timeoutMs = 10_000, signal = new AbortController().signal) =>
  plugin.probe!({ name: 'vms1', address: '127.0.0.1', ports: [], ...e }, { signal, timeoutMs });

type Teardown = { teardown(fn: () => unknown): void };

async function tcpServer(t: Teardown): Promise<number> {
  const srv = net.createServer((s) => s.destroy());
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => srv.close(() => r())));
  return (srv.address() as net.AddressInfo).port;
}

async function httpServer(t: Teardown, handler: http.RequestListener): Promise<number> {
  const srv = http.createServer(handler);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => {
    srv.closeAllConnections();
    srv.close(() => r());
  }));
  return (srv.address() as net.AddressInfo).port;
}

t.test('meta passes the host check and the built-in loads as a VMS plugin', async (t) => {
  t.equal(checkMeta(meta, 'vms-generic').kind, 'vms');
  const host = new PluginHost({ log: silentLogger, dataDir: tempDir(t) });
  await host.loadBuiltins();
  const p = host.vmsPlugins.find((x) => x.meta.name === 'vms-generic');
  t.ok(p && typeof p.probe === 'function', 'vms-generic with a probe');
});

t.test('probe: every listening port connects and the health URL answers as expected: ok', async (t) => {
  const a = await tcpServer(t);
  const b = await tcpServer(t);
  const web = await httpServer(t, (req, res) => {
    res.statusCode = req.url === '/health' ? 200 : 404;
    res.end('fine');
  });
  const h = await probe({ ports: [a, b], healthUrl: `http://127.0.0.1:${web}/health` });
  t.equal(h.ok, true);
  t.same(h.checks.map((c) => [c.name, c.ok]), [[`tcp 127.0.0.1:${a}`, true], [`tcp 127.0.0.1:${b}`, true], [`GET http://127.0.0.1:${web}/health`, true]]);
  t.type(h.latencyMs, 'number');
  t.match(h.detail, /3 checks ok/);
});

t.test('probe: one closed port or a wrong status fails the whole probe, naming the check', async (t) => {
  const open = await tcpServer(t);
  const closed = await freePort();
  const h = await probe({ ports: [open, closed] });
  t.equal(h.ok, false);
  t.same(h.checks.map((c) => c.ok), [true, false]);
  t.match(h.detail, new RegExp(`tcp 127\\.0\\.0\\.1:${closed}: ECONNREFUSED`));
  const web = await httpServer(t, (_req, res) => {
    res.statusCode = 503;
    res.end();
  });
  const w = await probe({ healthUrl: `http://127.0.0.1:${web}/` });
  t.equal(w.ok, false);
  t.match(w.checks[0]!.detail, /HTTP 503, expected 200/);
  const x = await probe({ healthUrl: `http://127.0.0.1:${web}/`, expectStatus: 503 });
  t.equal(x.ok, true, 'expectStatus decides what is healthy');
});

t.test('probe: a silent port and an aborted probe end at once as failures', async (t) => {
  // Accepts the connection, never answers the HTTP request.
  const silent = net.createServer(() => {});
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  const sockets: net.Socket[] = [];
  silent.on('connection', (s) => sockets.push(s));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    silent.close();
  });
  const port = (silent.address() as net.AddressInfo).port;
  const h = await probe({ healthUrl: `http://127.0.0.1:${port}/` }, 200);
  t.equal(h.ok, false);
  t.match(h.checks[0]!.detail, /no answer within 200 ms/);
  const ctrl = new AbortController();
  const p = probe({ healthUrl: `http://127.0.0.1:${port}/` }, 60_000, ctrl.signal);
  ctrl.abort();
  const a = await p;
  t.same([a.ok, a.checks[0]!.detail], [false, 'aborted']);
  const pre = await tcpProbe('127.0.0.1', port, 1000, { signal: AbortSignal.abort() });
  t.same([pre.ok, pre.detail], [false, 'aborted'], 'an already aborted signal: no connection attempted');
});

t.test('probe: credentials in the health URL go as Basic and are never shown', async (t) => {
  let auth: string | undefined;
  const web = await httpServer(t, (req, res) => {
    auth = req.headers.authorization;
    res.statusCode = auth === `Basic ${Buffer.from('admin:S3cret!').toString('base64')}` ? 200 : 401;
    res.end();
  });
  const h = await probe({ healthUrl: `http://admin:S3cret!@127.0.0.1:${web}/status` });
  t.equal(h.ok, true, 'the server saw the right Basic credentials (RFC 7617)');
  t.notMatch(JSON.stringify(h), /S3cret/, 'no password in the result');
  const bad = await httpProbe('http://127.0.0.1:1/x', 200, 1000);
  t.equal(bad.ok, false);
  const nonsense = await httpProbe('ftp://x/', 200, 1000);
  t.match(nonsense.detail, /bad URL/);
});

t.test('probe: nothing to probe gives no verdict (no checks)', async (t) => {
  const h = await probe({});
  t.same([h.ok, h.checks], [true, []]);
  t.match(h.detail, /nothing to probe/);
});

t.test('classify recognises VMS RTSP clients by User-Agent', async (t) => {
  t.ok(plugin.classify!('Lavf58.76.100'));
  t.ok(plugin.classify!('Milestone XProtect'));
  t.notOk(plugin.classify!('curl/8.5.0'));
});

t.test('describeCameraUse says what the capture shows: cameras, transports, keepalive', async (t) => {
  const file = path.join(CAPTURES, 'netns_multi.pcap');
  const { config } = loadConfig({ env: {} });
  const p = new CapturePipeline({ config, log: silentLogger, indexDir: tempDir(t) });
  const loc = { segment: 1, offset: 0 };
  await readCaptureFile(file, (r) => {
    loc.offset = r.fileOffset;
    p.process(r, loc);
  });
  p.finish();
  const snap = p.snapshot(false);
  // Truth: the tshark manifest's RTSP sessions.
  const manifest = JSON.parse(readFileSync(path.join(CAPTURES, 'netns_multi.manifest.json'), 'utf8')) as {
    rtsp_sessions: Array<{ client: string; server: string; tracks: Array<{ transport: { raw: string } }>; requests: Array<{ method: string }> }>;
  };
  const byVms = new Map<string, typeof manifest.rtsp_sessions>();
  for (const s of manifest.rtsp_sessions) {
    const ip = s.client.split(':')[0]!;
    byVms.set(ip, [...(byVms.get(ip) ?? []), s]);
  }
  t.equal(snap.vms.length, byVms.size, 'one VMS record per client address in the manifest');
  for (const [ip, sessions] of byVms) {
    const vms = snap.vms.find((v) => v.address === ip)!;
    const text = plugin.describeCameraUse!(vms, snap.sessions);
    const cams = [...new Set(sessions.map((s) => s.server.split(':')[0]!))].sort();
    t.match(text, `to ${cams.length} cameras (${cams.join(', ')})`, `${ip}: its cameras`);
    const lowers = new Set(sessions.flatMap((s) => s.tracks.map((tr) => (/interleaved=/.test(tr.transport.raw) ? 'TCP (interleaved)' : 'UDP'))));
    t.match(text, `RTSP over ${[...lowers].sort().join(' and ')}`, `${ip}: its transports`);
    const keep = new Set(sessions.flatMap((s) => s.requests.slice(s.requests.findIndex((r) => r.method === 'PLAY') + 1).map((r) => r.method).filter((m) => m === 'GET_PARAMETER' || m === 'OPTIONS')));
    t.match(text, `keepalive ${[...keep].sort().join('/')}`, `${ip}: its keepalive`);
  }
  t.equal(describeRtspUse({ name: 'x', address: '10.9.9.9', userAgents: [], cameras: [], firstSeen: '', lastSeen: '' }, snap.sessions), 'no RTSP session of x captured');
});

t.test('planRestore: a note per camera', async (t) => {
  const notes = await plugin.planRestore!({ vms: 'vms1', cameras: ['cam1', 'cam2'], gap: { start: '2026-11-23T21:20:33Z', end: '2026-11-23T21:20:47Z' } });
  t.same(notes.map((n) => n.camera), ['cam1', 'cam2']);
  t.match(notes[0]!.note, /reconnects to cam1/);
});
