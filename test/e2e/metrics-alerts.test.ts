/**
 * `camtap serve` with live tcpdump taps on loopback, alerts going to a webhook receiver
 * run by the test, and tokens on the API. The test sends RTP packets of its own making;
 * /metrics (over HTTP, parsed by Debian's prometheus_client) counts exactly those on the
 * tap and on the stream. Then a tap is stopped through the API and another one's tcpdump
 * is killed: each time the receiver gets a signed `tap-down` alert naming the tap, which
 * GET /api/alerts lists too; the camera that stopped sending gets its alert as well.
 */
import t from 'tap';
import { createHmac } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { tempDir } from '../helpers/camtap.js';
import { freePort, have } from '../helpers/peers.js';
import { startServe } from '../helpers/serve.js';
import type { Alert, WebhookPayload } from '../../core/alerts/alerts.js';

const PY = '/usr/bin/python3';
const pyParser = existsSync(PY) && spawnSync(PY, ['-c', 'from prometheus_client.parser import text_string_to_metric_families']).status === 0;
const skip = !have('tcpdump') ? 'needs tcpdump' : !pyParser ? 'needs python3-prometheus-client' : process.getuid?.() !== 0 && !have('sudo') ? 'needs the right to capture on lo' : false;

const VIEWER = 'e2e-viewer-token-0123456789';
const OPERATOR = 'e2e-operator-token-0123456789';
const SECRET = 'webhook-secret-e2e';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseExposition(text: string): Sample[] {
  const script = [
    'import sys, json',
    'from prometheus_client.parser import text_string_to_metric_families',
    'print(json.dumps([{"name": s.name, "labels": s.labels, "value": s.value} for f in text_string_to_metric_families(sys.stdin.read()) for s in f.samples]))',
  ].join('\n');
  const r = spawnSync(PY, ['-c', script], { input: text, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`prometheus_client refused the exposition: ${r.stderr}`);
  return JSON.parse(r.stdout) as Sample[];
}

/** RFC 3550 §5.1 fixed header (V=2, PT 96) and a 100-byte payload: 112 bytes of UDP payload. */
function rtp(seq: number, ssrc: number): Buffer {
  const b = Buffer.alloc(112, 0xab);
  b[0] = 0x80;
  b[1] = 96;
  b.writeUInt16BE(seq, 2);
  b.writeUInt32BE(seq * 3000, 4);
  b.writeUInt32BE(ssrc, 8);
  return b;
}

/** The tcpdump children of a process, with their command lines. */
function tcpdumpChildren(pid: number): Array<{ pid: number; cmd: string }> {
  const out: Array<{ pid: number; cmd: string }> = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== pid) continue;
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').join(' ');
      if (/\btcpdump\b/.test(cmd) && !/ -d /.test(cmd)) out.push({ pid: Number(d), cmd });
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

async function until<T>(what: string, fn: () => Promise<T | null | undefined | false>, tries = 300): Promise<T> {
  for (let i = 0; i < tries; i++) {
    const v = await fn();
    if (v) return v;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}

t.test('tap counters match what was sent; stopping or killing a tap sends a signed tap-down alert to the webhook', { skip }, async (t) => {
  const dir = tempDir(t);
  // The webhook receiver.
  const got: Array<{ headers: IncomingHttpHeaders; body: string }> = [];
  const rx = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      got.push({ headers: req.headers, body });
      res.end();
    });
  });
  await new Promise<void>((r) => rx.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => rx.close(() => r())));
  const hook = `http://127.0.0.1:${(rx.address() as AddressInfo).port}/camtap`;

  const [p1, p2] = [await freePort('udp'), await freePort('udp')];
  const cfg = path.join(dir, 'camtap.yaml');
  writeFileSync(
    cfg,
    [
      'taps:',
      `  - { name: lo-a, driver: tcpdump, options: { interface: lo, immediate: true, snaplen: 2048 }, filter: { raw: "udp dst port ${p1}" } }`,
      `  - { name: lo-b, driver: tcpdump, options: { interface: lo, immediate: true, snaplen: 2048 }, filter: { raw: "udp dst port ${p2}" } }`,
      `classify: { rtpPorts: [${p1}, ${p2}] }`,
      'auth:',
      '  tokens:',
      `    - { name: grafana, token: ${VIEWER}, role: viewer }`,
      `    - { name: ops, token: ${OPERATOR}, role: operator }`,
      'alerts:',
      '  intervalMs: 300',
      '  cameraSilentMs: 1500',
      '  tapSilentMs: 3600000',
      `  webhooks: [{ url: "${hook}", secret: ${SECRET} }]`,
      '',
    ].join('\n'),
  );
  const serve = await startServe(t, ['--config', cfg, '--data', path.join(dir, 'data')]);
  const base = `http://127.0.0.1:${serve.http}`;
  const get = async (p: string, token = VIEWER) => fetch(base + p, { headers: { authorization: `Bearer ${token}` } });
  const scrape = async () => parseExposition(await (await get('/metrics')).text());
  const value = (s: Sample[], name: string, labels: Record<string, string>) => s.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v))?.value;

  const anon = await fetch(base + '/metrics');
  t.equal(anon.status, 401, 'no token, no metrics');
  t.notMatch(await anon.text(), /camtap_/);

  await until('both taps running', async () => {
    const s = await scrape();
    return value(s, 'camtap_tap_up', { tap: 'lo-a' }) === 1 && value(s, 'camtap_tap_up', { tap: 'lo-b' }) === 1;
  });
  // tcpdump prints "listening on" before its filter is live on every kernel path: a moment more.
  await sleep(500);

  // RTP toward each tap's port.
  const N = 250;
  const sock = createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  t.teardown(() => sock.close());
  for (let i = 0; i < N; i++) {
    await new Promise<void>((r, j) => sock.send(rtp(1000 + i, 0x11223344), p1, '127.0.0.1', (e) => (e ? j(e) : r())));
    await new Promise<void>((r, j) => sock.send(rtp(5000 + i, 0x55667788), p2, '127.0.0.1', (e) => (e ? j(e) : r())));
    if (i % 50 === 49) await sleep(20);
  }
  const s = await until('the packets counted', async () => {
    const x = await scrape();
    return (value(x, 'camtap_tap_packets_total', { tap: 'lo-a' }) ?? 0) >= N && (value(x, 'camtap_tap_packets_total', { tap: 'lo-b' }) ?? 0) >= N ? x : null;
  });
  // Ethernet (14) + IPv4 (20) + UDP (8) + RTP (112) on lo.
  for (const tap of ['lo-a', 'lo-b']) {
    t.equal(value(s, 'camtap_tap_packets_total', { tap }), N, `${tap}: packets = the ${N} sent`);
    t.equal(value(s, 'camtap_tap_bytes_total', { tap }), N * 154, `${tap}: bytes = ${N} x 154`);
  }
  const streams = s.filter((x) => x.name === 'camtap_stream_packets_total');
  t.same(streams.map((x) => [x.labels.camera, x.value]), [['127.0.0.1', N], ['127.0.0.1', N]], 'two streams of N packets, camera 127.0.0.1');
  t.same(s.filter((x) => x.name === 'camtap_stream_lost_total').map((x) => x.value), [0, 0], 'nothing lost');
  t.ok((value(s, 'camtap_storage_free_bytes', {}) ?? 0) > 0, 'free storage reported');
  // The store's newest packet shows once its writer flushed (every second while serving).
  const lag = await until('the ingest lag', async () => value(await scrape(), 'camtap_ingest_lag_seconds', {}) ?? null);
  t.ok(lag >= 0, `ingest lag reported while live taps run (${lag} s)`);

  // The camera stopped sending (the test did): an alert, no webhook needed to see it.
  await until('camera-silent alert', async () => {
    const a = (await (await get('/api/alerts')).json()) as { active: Alert[] };
    return a.active.find((x) => x.kind === 'camera-silent' && x.subject === '127.0.0.1');
  });

  // 1. Stopped by an operator through the API.
  const viewerStop = await fetch(`${base}/api/taps/lo-a/stop`, { method: 'POST', headers: { authorization: `Bearer ${VIEWER}` } });
  t.equal(viewerStop.status, 403, 'a viewer cannot stop a tap');
  const stop = await fetch(`${base}/api/taps/lo-a/stop`, { method: 'POST', headers: { authorization: `Bearer ${OPERATOR}` } });
  t.equal(stop.status, 200, 'an operator stops tap lo-a');
  const tapDown = (tap: string) => got.map((g) => ({ g, p: JSON.parse(g.body) as WebhookPayload })).find(({ p }) => p.event === 'alert.fired' && p.alert.kind === 'tap-down' && p.alert.subject === tap);
  const a = await until('the webhook to get tap-down for lo-a', async () => tapDown('lo-a'));
  t.match(a.p.alert, { kind: 'tap-down', severity: 'critical', subject: 'lo-a', message: /tap lo-a \(tcpdump\) is down: stopped/ });
  t.equal(a.g.headers['x-camtap-signature'], 'sha256=' + createHmac('sha256', SECRET).update(a.g.body).digest('hex'), 'signed with the secret');
  t.equal(a.g.headers['x-camtap-event'], 'alert.fired');

  // 2. Its capture process dies: kill lo-b's tcpdump (a child of the serve process the test started).
  const child = await until('the tcpdump of lo-b', async () => tcpdumpChildren(serve.proc.pid!).find((c) => c.cmd.includes(`port ${p2}`)));
  process.kill(child.pid, 'SIGKILL');
  const b = await until('the webhook to get tap-down for lo-b', async () => tapDown('lo-b'));
  t.match(b.p.alert.message, /tap lo-b \(tcpdump\) is down: failed: tcpdump was killed by SIGKILL/);

  const list = (await (await get('/api/alerts')).json()) as { active: Alert[]; recent: Alert[] };
  t.same(list.active.filter((x) => x.kind === 'tap-down').map((x) => x.subject).sort(), ['lo-a', 'lo-b'], 'both listed at /api/alerts');
  const ack = await fetch(`${base}/api/alerts/${a.p.alert.id}/ack`, { method: 'POST', headers: { authorization: `Bearer ${OPERATOR}` } });
  t.equal(ack.status, 200);
  t.match(await ack.json(), { id: a.p.alert.id, ackedBy: 'ops' });
  const acked = await until('the acked event at the webhook', async () => got.map((g) => JSON.parse(g.body) as WebhookPayload).find((p) => p.event === 'alert.acked'));
  t.equal(acked.alert.id, a.p.alert.id);

  // Started again: resolved.
  t.equal((await fetch(`${base}/api/taps/lo-a/start`, { method: 'POST', headers: { authorization: `Bearer ${OPERATOR}` } })).status, 200);
  const resolved = await until('tap-down of lo-a resolved', async () => got.map((g) => JSON.parse(g.body) as WebhookPayload).find((p) => p.event === 'alert.resolved' && p.alert.kind === 'tap-down' && p.alert.subject === 'lo-a'));
  t.equal(resolved.alert.id, a.p.alert.id, 'the same alert, now resolved');
  t.ok(resolved.alert.resolvedAt, 'with its resolution time');
});
