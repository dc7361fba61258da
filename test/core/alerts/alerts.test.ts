/**
 * The alert rules with an injected clock and hand-made tap/stream readings, the webhook
 * delivery against a real HTTP receiver (signature checked with an independent HMAC),
 * and the alert routes (list, acknowledge with roles, server-sent events over a socket).
 */
import t from 'tap';
import { createHmac } from 'node:crypto';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { configSchema } from '../../../core/config.js';
import { silentLogger } from '../../../core/logger.js';
import { AlertManager, type Alert, type AlertEvent, type AlertSettings, type WebhookPayload } from '../../../core/alerts/alerts.js';
import { WebhookSender } from '../../../core/alerts/webhook.js';
import type { StreamView, TapInfo } from '../../../core/metrics/metrics.js';
import Fastify from 'fastify';
import { alertRoutes } from '../../../core/api/alert-routes.js';
import { installAuth, Credentials } from '../../../core/api/auth.js';
import { installErrorHandling } from '../../../core/api/http-errors.js';

function settings(over: Partial<AlertSettings> = {}): AlertSettings {
  return { ...configSchema.parse({}).alerts, ...over };
}

/** A manager over mutable readings, with a clock the test moves. */
function rig(over: Partial<AlertSettings> = {}, extra: { free?: number } = {}) {
  const clock = { now: 1_000_000 };
  const taps: TapInfo[] = [];
  const streams: Array<StreamView & { unique: number; maxExt: number; minExt: number; duplicates: number }> = [];
  const space = { free: extra.free ?? 50, size: 100 };
  const events: AlertEvent[] = [];
  const m = new AlertManager({
    settings: settings(over),
    log: silentLogger,
    taps: () => taps,
    streams: () => streams,
    dataDir: '/data',
    diskSpace: async () => space,
    now: () => clock.now,
    webhooks: null,
  });
  m.subscribe((e) => events.push(e));
  return { m, clock, taps, streams, space, events };
}

const tap = (o: Partial<TapInfo> = {}): TapInfo => ({ name: 'eth1', driver: 'tcpdump', state: 'running', packets: 0, bytes: 0, drops: 0, live: true, ...o });
const stream = (o: Partial<StreamView> = {}) => ({ id: 's1', camera: 'cam1', direction: 'server->client', unique: 0, duplicates: 0, maxExt: -1, minExt: -1, payloadBytes: 0, jitter: 0, clockRate: 90000, ...o });

t.test('tap down: a failed tap fires once, and resolves when it runs again', async (t) => {
  const r = rig();
  r.taps.push(tap({ packets: 5 }));
  await r.m.evaluate();
  t.same(r.m.active(), [], 'a running tap with packets is fine');
  r.taps[0] = tap({ state: 'failed', packets: 5, error: 'tcpdump was killed by SIGKILL' });
  await r.m.evaluate();
  await r.m.evaluate();
  const a = r.m.active();
  t.equal(a.length, 1, 'one alert, not one per round');
  t.match(a[0], { kind: 'tap-down', severity: 'critical', subject: 'eth1', message: /tap eth1 \(tcpdump\) is down: failed: tcpdump was killed by SIGKILL/ });
  t.same(r.events.map((e) => e.type), ['fired']);
  r.taps[0] = tap({ packets: 9 });
  r.clock.now += 1000;
  await r.m.evaluate();
  t.same(r.m.active(), []);
  t.same(r.events.map((e) => e.type), ['fired', 'resolved']);
  t.equal(r.m.recent()[0]!.id, a[0]!.id, 'the resolved alert is in the recent list');
  t.equal(r.m.recent()[0]!.resolvedAt, new Date(r.clock.now).toISOString());
});

t.test('tap down: a live tap that stopped counts; a file tap that finished its files does not', async (t) => {
  const r = rig();
  r.taps.push(tap({ name: 'files', driver: 'pcap-file', state: 'stopped', live: false }), tap({ name: 'drop', driver: 'pcap-file', state: 'stopped', live: true }));
  await r.m.evaluate();
  t.same(r.m.active().map((a) => a.subject), ['drop']);
});

t.test('tap down: a capturing tap whose packet count stands still for tapSilentMs', async (t) => {
  const r = rig({ tapSilentMs: 60_000 });
  r.taps.push(tap({ packets: 100 }), tap({ name: 'gw', driver: 'inline', packets: 3 }));
  await r.m.evaluate();
  r.clock.now += 59_000;
  await r.m.evaluate();
  t.same(r.m.active(), [], 'not yet');
  r.clock.now += 1000;
  await r.m.evaluate();
  t.same(r.m.active().map((a) => [a.kind, a.subject]), [['tap-down', 'eth1']], 'silent for 60 s; the idle inline tap is not watched for silence');
  t.match(r.m.active()[0]!.message, /no packets for 60 s/);
  r.taps[0] = tap({ packets: 101 });
  r.clock.now += 1000;
  await r.m.evaluate();
  t.same(r.m.active(), [], 'one more packet resolves it');
});

t.test('camera stopped sending: none of its streams grew for cameraSilentMs', async (t) => {
  const r = rig({ cameraSilentMs: 30_000 });
  r.streams.push(stream({ id: 'a', unique: 10, maxExt: 100009, minExt: 100000 }), stream({ id: 'b', unique: 10, maxExt: 200009, minExt: 200000 }), stream({ id: 'punch', camera: 'cam1', direction: 'client->server', unique: 1, maxExt: 65536, minExt: 65536 }));
  await r.m.evaluate();
  r.clock.now += 20_000;
  r.streams[1]!.unique = 20;
  r.streams[1]!.maxExt = 200019;
  await r.m.evaluate();
  r.clock.now += 20_000;
  await r.m.evaluate();
  t.same(r.m.active(), [], 'stream b sent 20 s ago: the camera is alive');
  r.clock.now += 10_000;
  await r.m.evaluate();
  t.match(r.m.active(), [{ kind: 'camera-silent', severity: 'warning', subject: 'cam1', message: /camera cam1 stopped sending: no RTP packet for 30 s/ }]);
  // The pipeline lets idle streams go: the camera is still silent.
  r.streams.length = 0;
  r.clock.now += 10_000;
  await r.m.evaluate();
  t.equal(r.m.active().length, 1, 'still active after its streams left memory');
  r.streams.push(stream({ id: 'c', unique: 1, maxExt: 300000, minExt: 300000 }));
  await r.m.evaluate();
  t.same(r.m.active(), [], 'a new stream of the camera resolves it');
});

t.test('loss over lossPercent within one interval fires; a clean interval resolves it', async (t) => {
  const r = rig({ lossPercent: 5, lossMinPackets: 100 });
  const s = stream({ unique: 1000, maxExt: 100999, minExt: 100000 });
  r.streams.push(s);
  await r.m.evaluate();
  // 200 expected, 180 received: 10 % lost.
  Object.assign(s, { unique: 1180, maxExt: 101199 });
  r.clock.now += 1000;
  await r.m.evaluate();
  t.match(r.m.active(), [{ kind: 'stream-loss', subject: 's1', details: { lost: 20, expected: 200, lossPercent: 10 } }]);
  // 50 expected, all lost: too few to decide either way.
  Object.assign(s, { maxExt: 101249 });
  r.clock.now += 1000;
  await r.m.evaluate();
  t.equal(r.m.active().length, 1, 'an interval under lossMinPackets changes nothing');
  // 150 more expected (200 since the last decision), 100 received: the 50 lost count now.
  Object.assign(s, { unique: 1280, maxExt: 101399 });
  r.clock.now += 1000;
  await r.m.evaluate();
  t.match(r.m.active()[0]!.details, { lost: 100, expected: 200, lossPercent: 50 }, 'the undecided interval is carried into the next');
  Object.assign(s, { unique: 1480, maxExt: 101599 });
  r.clock.now += 1000;
  await r.m.evaluate();
  t.same(r.m.active(), [], '0 % in the next interval');
});

t.test('storage near full: less than storageFreeMinPercent free', async (t) => {
  const r = rig({ storageFreeMinPercent: 10 }, { free: 9.5 });
  await r.m.evaluate();
  t.match(r.m.active(), [{ kind: 'storage-low', severity: 'critical', subject: '/data', details: { freePercent: 9.5, minPercent: 10 } }]);
  r.space.free = 10;
  await r.m.evaluate();
  t.same(r.m.active(), []);
});

t.test('VMS failed and restored come from the failover manager as events', async (t) => {
  const r = rig();
  r.m.event('vms-failed', { vms: 'vms-a', reason: 'no RTSP traffic for 30 s' });
  r.m.event('vms-failed', { vms: 'vms-a', reason: 'still down' });
  t.match(r.m.active(), [{ kind: 'vms-failed', severity: 'critical', subject: 'vms-a', message: 'VMS vms-a failed: still down' }]);
  r.clock.now += 5000;
  const info = r.m.event('vms-restored', { vms: 'vms-a' });
  t.same(r.m.active(), []);
  t.match(info, { kind: 'vms-restored', severity: 'info', subject: 'vms-a', message: /VMS vms-a restored \(failed since / });
  t.same(r.events.map((e) => `${e.type} ${e.alert.kind}`), ['fired vms-failed', 'resolved vms-failed', 'fired vms-restored']);
});

t.test('acknowledging marks the alert, tells subscribers once, and refuses unknown ids', async (t) => {
  const r = rig();
  const a = r.m.event('vms-failed', { vms: 'v' })!;
  r.m.ack(a.id, 'alice');
  r.m.ack(a.id, 'bob');
  t.match(r.m.get(a.id), { ackedBy: 'alice', ackedAt: new Date(r.clock.now).toISOString() });
  t.same(r.events.map((e) => e.type), ['fired', 'acked']);
  t.equal(r.m.active().length, 1, 'still active');
  t.throws(() => r.m.ack('nope'), { code: 'CAMTAP_ERR_NOT_FOUND' });
});

t.test('the recent list is bounded by alerts.recent', async (t) => {
  const r = rig({ recent: 3 });
  for (let i = 0; i < 5; i++) r.m.event('vms-restored', { vms: `v${i}` });
  t.same(r.m.recent().map((a) => a.subject), ['v4', 'v3', 'v2']);
});

// ------------------------------------------------------------------ webhooks

interface Received {
  headers: IncomingMessage['headers'];
  body: string;
}

/** A receiver on loopback that answers with the statuses given, in turn (then 200). */
async function receiver(t: Tap.Test, statuses: number[] = []): Promise<{ url: string; got: Received[]; server: Server }> {
  const got: Received[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      got.push({ headers: req.headers, body });
      res.statusCode = statuses.shift() ?? 200;
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, got, server };
}

t.test('an alert reaches the webhook as signed JSON', async (t) => {
  const rx = await receiver(t);
  const m = new AlertManager({ settings: settings({ webhooks: [{ url: rx.url, secret: 's3cret' }] }), log: silentLogger, dataDir: null });
  t.teardown(() => m.close());
  const a = m.event('vms-failed', { vms: 'vms-a', reason: 'probe failed' })!;
  await m.drain();
  t.equal(rx.got.length, 1);
  const { headers, body } = rx.got[0]!;
  t.equal(headers['content-type'], 'application/json');
  t.equal(headers['x-camtap-event'], 'alert.fired');
  t.match(headers['x-camtap-delivery'], /^[0-9a-f-]{36}$/);
  const want = 'sha256=' + createHmac('sha256', 's3cret').update(body).digest('hex');
  t.equal(headers['x-camtap-signature'], want, 'HMAC-SHA256 of the raw body with the secret');
  const p = JSON.parse(body) as WebhookPayload;
  t.match(p, { version: 1, event: 'alert.fired', alert: { id: a.id, kind: 'vms-failed', subject: 'vms-a', severity: 'critical' } });
  t.same(m.webhookStats(), [{ url: rx.url, queued: 0, delivered: 1, failed: 0, dropped: 0 }]);
});

t.test('without a secret there is no signature header', async (t) => {
  const rx = await receiver(t);
  const m = new AlertManager({ settings: settings({ webhooks: [{ url: rx.url }] }), log: silentLogger, dataDir: null });
  t.teardown(() => m.close());
  m.event('vms-failed', { vms: 'v' });
  await m.drain();
  t.equal(rx.got[0]!.headers['x-camtap-signature'], undefined);
});

t.test('a failed delivery is retried with the same id; a 4xx refusal is not', async (t) => {
  const rx = await receiver(t, [503, 500, 200, 400]);
  const w = new WebhookSender([{ url: rx.url }], { log: silentLogger, queue: 10, attempts: 5, timeoutMs: 5000, backoffMs: () => 5 });
  t.teardown(() => w.close());
  w.send('alert.fired', { n: 1 });
  w.send('alert.fired', { n: 2 });
  await w.idle();
  t.same(rx.got.map((g) => JSON.parse(g.body).n), [1, 1, 1, 2], 'event 1 three times (503, 500, 200), event 2 once (400)');
  t.equal(new Set(rx.got.slice(0, 3).map((g) => g.headers['x-camtap-delivery'])).size, 1, 'retries carry the same delivery id');
  t.same(w.stats(), [{ url: rx.url, queued: 0, delivered: 1, failed: 1, dropped: 0 }]);
});

t.test('an unreachable receiver is given up after `attempts` tries', async (t) => {
  const rx = await receiver(t);
  await new Promise<void>((r) => rx.server.close(() => r()));
  const w = new WebhookSender([{ url: rx.url }], { log: silentLogger, queue: 10, attempts: 3, timeoutMs: 1000, backoffMs: () => 5 });
  t.teardown(() => w.close());
  w.send('alert.fired', {});
  await w.idle();
  t.same(w.stats()[0], { url: rx.url, queued: 0, delivered: 0, failed: 1, dropped: 0 });
});

t.test('a receiver that does not answer fills its bounded queue; send() never waits', async (t) => {
  const hung: Array<() => void> = [];
  const server = createServer((_req, res) => hung.push(() => res.end()));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const h of hung) h();
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const w = new WebhookSender([{ url }], { log: silentLogger, queue: 2, attempts: 1, timeoutMs: 60_000 });
  for (let i = 0; i < 5; i++) w.send('alert.fired', { i });
  t.same(w.stats()[0], { url, queued: 2, delivered: 0, failed: 0, dropped: 3 }, 'two kept, three dropped oldest first');
  w.close();
  await w.idle();
});

// ------------------------------------------------------------------ routes

const TOKENS = { viewer: 'viewer-token-0123456789', operator: 'operator-token-0123456789' };

async function api(t: Tap.Test, m: AlertManager) {
  const app = Fastify();
  installErrorHandling(app, silentLogger);
  const auth = new Credentials({ users: [], tokens: Object.entries(TOKENS).map(([role, token]) => ({ name: role, token, role: role as 'viewer' | 'operator' })), realm: 'camtap', rtspBasic: false, nonceTtlSec: 300 }, {});
  installAuth(app, { credentials: auth, log: silentLogger });
  await app.register(alertRoutes, { prefix: '/api', alerts: m });
  t.teardown(() => app.close());
  return app;
}
const bearer = (role: keyof typeof TOKENS) => ({ authorization: `Bearer ${TOKENS[role]}` });

t.test('GET /api/alerts lists active and recent alerts to a viewer, nothing without a token', async (t) => {
  const r = rig();
  const app = await api(t, r.m);
  r.m.event('vms-failed', { vms: 'v1' });
  r.m.event('vms-restored', { vms: 'v2' });
  const anon = await app.inject({ url: '/api/alerts' });
  t.equal(anon.statusCode, 401);
  t.notMatch(anon.body, /v1/);
  const res = await app.inject({ url: '/api/alerts', headers: bearer('viewer') });
  t.equal(res.statusCode, 200);
  const body = res.json() as { active: Alert[]; recent: Alert[] };
  t.same(body.active.map((a) => a.subject), ['v1']);
  t.same(body.recent.map((a) => a.kind), ['vms-restored']);
});

t.test('POST /api/alerts/:id/ack needs an operator and names who acknowledged', async (t) => {
  const r = rig();
  const app = await api(t, r.m);
  const a = r.m.event('vms-failed', { vms: 'v1' })!;
  t.equal((await app.inject({ method: 'POST', url: `/api/alerts/${a.id}/ack`, headers: bearer('viewer') })).statusCode, 403, 'a viewer may not');
  t.equal(r.m.get(a.id)!.ackedAt, undefined, 'and nothing changed');
  const ok = await app.inject({ method: 'POST', url: `/api/alerts/${a.id}/ack`, headers: bearer('operator') });
  t.equal(ok.statusCode, 200);
  t.match(ok.json(), { id: a.id, ackedBy: 'operator' });
  const missing = await app.inject({ method: 'POST', url: '/api/alerts/nope/ack', headers: bearer('operator') });
  t.equal(missing.statusCode, 404);
  t.equal(missing.json().error, 'CAMTAP_ERR_NOT_FOUND');
});

t.test('GET /api/alerts/stream sends a snapshot, then each change as a server-sent event', async (t) => {
  const r = rig();
  const app = await api(t, r.m);
  r.m.event('vms-failed', { vms: 'before' });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const port = (app.server.address() as AddressInfo).port;
  const events: Array<{ event: string; data: unknown }> = [];
  let buf = '';
  let wake: (() => void) | null = null;
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/api/alerts/stream', headers: bearer('viewer') }, resolve);
    req.on('error', reject);
    req.end();
  });
  t.teardown(() => res.destroy());
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-type'], /^text\/event-stream/);
  res.setEncoding('utf8');
  res.on('data', (d: string) => {
    buf += d;
    let i: number;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const ev = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (ev && data) events.push({ event: ev, data: JSON.parse(data) });
    }
    wake?.();
  });
  const until = async (n: number) => {
    while (events.length < n) await new Promise<void>((r) => (wake = r));
  };
  await until(1);
  t.match(events[0], { event: 'snapshot', data: { active: [{ subject: 'before' }] } });
  const a = r.m.event('vms-failed', { vms: 'after' })!;
  r.m.ack(a.id, 'x');
  await until(3);
  t.match(events.slice(1), [{ event: 'fired', data: { id: a.id, subject: 'after' } }, { event: 'acked', data: { id: a.id, ackedBy: 'x' } }]);
  const anon = await fetch(`http://127.0.0.1:${port}/api/alerts/stream`);
  t.equal(anon.status, 401, 'the stream needs a viewer too');
  await anon.body?.cancel();
});
