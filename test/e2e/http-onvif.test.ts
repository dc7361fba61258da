/**
 * Camera configuration traffic with real peers on loopback: the npm `onvif` client (agsh,
 * 0.8.3) talks to the lab's ONVIF simulator (test/helpers/onvif-sim.js), a node:http
 * "camera" answers VAPIX-style CGI requests, tcpdump captures both. `camtap import` of
 * those captures must list in `camtap transactions` exactly the HTTP exchanges tshark
 * finds (method, URL, final status, endpoints, SOAP operation from the request body),
 * with store locations pointing at the very packets tshark says carried each message,
 * and with no credential (password, WS-Security PasswordDigest, Basic token, Digest
 * response) anywhere in its JSON output.
 */
import t, { type Test } from 'tap';
import http from 'node:http';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { Cam } from 'onvif';
import { camtap, camtapJson, tempDir } from '../helpers/camtap.js';
import { freePort, have, run, startTcpdump, type Proc } from '../helpers/peers.js';
import type { HttpTransaction, SegmentRecord, SessionRecord } from '../../core/contracts/records.js';

const SIM = path.join(path.dirname(fileURLToPath(import.meta.url)), '../helpers/onvif-sim.js');
const RTSP_URL = 'rtsp://127.0.0.1:8554/stream1';
const USER = 'admin';
const PASSWORD = 'secret';

const missing = ['tcpdump', 'tshark'].filter((c) => !have(c));
const skip = missing.length ? `needs ${missing.join(', ')} (scripts/install-deps.sh installs them)` : false;
if (skip) console.log(`# skipping http-onvif e2e: ${skip}`);

/** One request/response exchange as tshark's HTTP dissector sees it. */
interface TruthExchange {
  client: string;
  server: string;
  method: string;
  url: string;
  /** The final (non-1xx) response's code, null when none was captured. */
  status: number | null;
  /** Frames that carried the request (tcp.segment when reassembled, else the frame itself). */
  requestFrames: number[];
  /** Frames that carried the final response. */
  responseFrames: number[];
  /** The request body as tshark decoded it (http.file_data), '' when none. */
  body: string;
}

type Layers = Record<string, string[] | undefined>;

/**
 * HTTP exchanges on `port` from tshark (`-d tcp.port==port,http`), in request order.
 * tshark finds the message boundaries; responses are paired with requests per TCP
 * connection in order (RFC 9112 §9.3.2), 1xx answers being interim (RFC 9110 §15.2).
 * tshark's own `http.request_in` is not used: tshark 4.0 ties a request to its *first*
 * answer, a 102 Processing included, and leaves the final answer unpaired.
 */
async function tsharkHttp(file: string, port: number): Promise<TruthExchange[]> {
  const fields = ['frame.number', 'tcp.stream', 'ip.src', 'tcp.srcport', 'ip.dst', 'tcp.dstport', 'http.request.method', 'http.request.uri', 'http.response.code', 'tcp.segment', 'http.file_data'];
  const r = await run('tshark', ['-r', file, '-d', `tcp.port==${port},http`, '-Y', 'http.request or http.response', '-T', 'json', ...fields.flatMap((f) => ['-e', f])], { timeoutMs: 60000 });
  if (r.code !== 0) throw new Error(`tshark failed (${r.code}): ${r.stderr}`);
  const pkts = (JSON.parse(r.stdout || '[]') as Array<{ _source: { layers: Layers } }>).map((p) => p._source.layers);
  const one = (l: Layers, f: string) => l[f]?.[0];
  const frames = (l: Layers) => (l['tcp.segment']?.length ? l['tcp.segment'].map(Number) : [Number(one(l, 'frame.number'))]);
  const waiting = new Map<string, TruthExchange[]>();
  const out: TruthExchange[] = [];
  for (const l of pkts) {
    const stream = one(l, 'tcp.stream')!;
    const method = one(l, 'http.request.method');
    if (method !== undefined) {
      const x: TruthExchange = {
        client: `${one(l, 'ip.src')}:${one(l, 'tcp.srcport')}`,
        server: `${one(l, 'ip.dst')}:${one(l, 'tcp.dstport')}`,
        method,
        url: one(l, 'http.request.uri')!,
        status: null,
        requestFrames: frames(l),
        responseFrames: [],
        body: one(l, 'http.file_data') ?? '',
      };
      out.push(x);
      waiting.set(stream, [...(waiting.get(stream) ?? []), x]);
      continue;
    }
    const code = Number(one(l, 'http.response.code'));
    if (code < 200 && code !== 101) continue;
    const x = waiting.get(stream)?.shift();
    if (!x) continue;
    x.status = code;
    x.responseFrames = frames(l);
  }
  return out;
}

/** The first element inside the SOAP Body of tshark's request text: the ONVIF operation. */
function soapOpOf(body: string): string | null {
  const body0 = body.indexOf('Body');
  if (body0 < 0) return null;
  const open = body.indexOf('>', body0);
  const m = /^\s*<(?:[A-Za-z_][\w.-]*:)?([A-Za-z_][\w.-]*)/.exec(body.slice(open + 1));
  return m ? m[1]! : null;
}

/**
 * Packet number (1-based over the data dir's segments in id order) of each pcapng block
 * offset: Enhanced, Simple and obsolete Packet Blocks count (pcapng spec §4.3-4.5).
 */
function packetNumbers(segs: SegmentRecord[]): Map<string, number> {
  const out = new Map<string, number>();
  let n = 0;
  for (const s of [...segs].sort((a, b) => a.id - b.id)) {
    const b = readFileSync(s.path);
    let le = true;
    for (let o = 0; o + 12 <= b.length; ) {
      let type = le ? b.readUInt32LE(o) : b.readUInt32BE(o);
      if (type === 0x0a0d0d0a) {
        le = b.readUInt32LE(o + 8) === 0x1a2b3c4d;
        type = 0x0a0d0d0a;
      }
      const len = le ? b.readUInt32LE(o + 4) : b.readUInt32BE(o + 4);
      if (len < 12) break;
      if (type === 6 || type === 3 || type === 2) out.set(`${s.id}:${o}`, ++n);
      o += len;
    }
  }
  return out;
}

/** Waits until tshark finds `n` final responses on `port` in the growing capture (tcpdump -U). */
async function waitForResponses(file: string, port: number, n: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const got = await tsharkHttp(file, port).catch(() => []);
    if (got.filter((x) => x.status !== null).length >= n) return;
    await sleep(100);
  }
}

/** Starts the ONVIF simulator on 127.0.0.1:port and waits for its ready line; stopped by PID at teardown. */
async function startSim(tt: Test, port: number, log: string): Promise<void> {
  const child = spawn(process.execPath, [SIM, '--port', String(port), '--bind', '127.0.0.1', '--rtsp', RTSP_URL, '--user', USER, '--password', PASSWORD, '--log', log], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  tt.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
    process.off('exit', killOnExit);
  });
  let text = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`onvif sim not ready: ${text}`)), 15000);
    const onData = (d: Buffer) => {
      text += d.toString();
      if (/onvif sim ready/.test(text)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`onvif sim exited ${code}: ${text}`));
    });
  });
}

/** A Cam connected (or failed to connect) the way a VMS does: GetSystemDateAndTime, GetServices/GetCapabilities, GetProfiles, GetVideoSources. */
function connectCam(port: number, password: string): Promise<{ cam: Cam; err: Error | null }> {
  const cam = new Cam({ hostname: '127.0.0.1', port, username: USER, password, timeout: 10000, autoconnect: false });
  return new Promise((resolve) => cam.connect((err) => resolve({ cam, err })));
}

const exchangeView = (x: { client: string; server: string; method: string; url: string; status: number | null }) => ({ client: x.client, server: x.server, method: x.method, url: x.url, status: x.status });

/** Every location resolves to a stored packet; the packets are the ones tshark named; locations increase in exchange order. */
function checkLocations(tt: Test, list: HttpTransaction[], truth: TruthExchange[], segs: SegmentRecord[], what: string): void {
  const segIds = new Set(segs.map((s) => s.id));
  const num = packetNumbers(segs);
  const located = list.every((x) => x.requestAt.length > 0 && x.responseAt.length > 0 && [...x.requestAt, ...x.responseAt].every((l) => segIds.has(l.segment) && num.has(`${l.segment}:${l.offset}`)));
  tt.ok(located, `${what}: every requestAt/responseAt is non-empty and points at a packet block of a listed segment`);
  tt.same(
    list.map((x) => ({ request: x.requestAt.map((l) => num.get(`${l.segment}:${l.offset}`)), response: x.responseAt.map((l) => num.get(`${l.segment}:${l.offset}`)) })),
    truth.map((x) => ({ request: x.requestFrames, response: x.responseFrames })),
    `${what}: request/response locations are the frames tshark says carried each message`,
  );
  // Exchanges on different connections may overlap (the client runs some in parallel), so
  // requests increase from exchange to exchange, and each answer comes after its request.
  const after = (a: { segment: number; offset: number } | undefined, b: { segment: number; offset: number } | undefined) => a !== undefined && b !== undefined && (a.segment > b.segment || (a.segment === b.segment && a.offset > b.offset));
  tt.ok(list.every((x, i) => i === 0 || after(x.requestAt.at(-1), list[i - 1]!.requestAt.at(-1))), `${what}: request locations (the packet completing each request) increase in exchange order`);
  tt.ok(list.every((x) => after(x.responseAt[0], x.requestAt.at(-1))), `${what}: each response is stored after its request`);
}

function checkNoSecrets(tt: Test, text: string, secrets: string[], what: string): void {
  const found = secrets.filter((s) => s.length > 0 && text.includes(s));
  tt.same(found, [], `${what}: no credential appears (${secrets.length} checked)`);
}

t.test('ONVIF client <-> simulator: camtap transactions equal tshark exchange for exchange, credentials redacted', { skip }, async (t) => {
  const dir = tempDir(t);
  const port = await freePort('tcp');
  const simLog = path.join(dir, 'req.jsonl');
  const pcap = path.join(dir, 'onvif.pcap');
  await startSim(t, port, simLog);
  const td: Proc = await startTcpdump({ iface: 'lo', out: pcap, filter: `tcp port ${port}`, extra: ['-B', '65536'] });
  t.teardown(() => td.stop('SIGKILL'));

  const good = await connectCam(port, PASSWORD);
  t.equal(good.err, null, 'connect with the right password succeeds');
  const uri = await new Promise<string | Error>((resolve) => good.cam.getStreamUri({ protocol: 'RTSP' }, (e, s) => resolve(e ?? s!.uri)));
  t.equal(uri, RTSP_URL, 'GetStreamUri returns the simulator RTSP URL');
  const bad = await connectCam(port, 'wrong-password');
  t.match(bad.err?.message ?? '', /not authorized/i, 'connect with a wrong password fails (Sender not Authorized)');

  const logged = readFileSync(simLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { path: string; action: string });
  await waitForResponses(pcap, port, logged.length);
  await td.stop('SIGINT');

  const truth = await tsharkHttp(pcap, port);
  const truthOps = truth.map((x) => soapOpOf(x.body));
  // Ground truth holds together: tshark and the simulator's own request log agree.
  t.same(truth.map((x) => [x.url, truthOps[truth.indexOf(x)]]), logged.map((l) => [l.path, l.action]), `tshark finds the ${logged.length} requests the simulator logged`);
  t.ok(truth.some((x) => x.status === 400) && truth.some((x) => x.status === 200), 'ground truth holds both 200 answers and the 400 NotAuthorized fault');
  t.ok(truthOps.includes('GetStreamUri') && truthOps.includes('GetProfiles'), 'ground truth includes GetProfiles and GetStreamUri');
  const digests = truth.flatMap((x) => [...x.body.matchAll(/<(?:\w+:)?Password[^>]*>([^<]+)</g)].map((m) => m[1]!));
  t.ok(digests.length >= 5, `the client sent WS-Security PasswordDigest values (${digests.length})`);

  for (const mode of ['config', 'default'] as const) {
    const data = path.join(dir, `data-${mode}`);
    const args = ['import', pcap];
    if (mode === 'config') {
      const cfg = path.join(dir, 'camtap.yaml');
      writeFileSync(cfg, `classify:\n  httpPorts: [${port}]\n`);
      args.push('--config', cfg);
    }
    const what = mode === 'config' ? `classify.httpPorts [${port}]` : 'default config (first bytes)';
    const imp = await camtap(args, { data });
    t.equal(imp.code, 0, `${what}: import exits 0`, { stderr: imp.stderr.slice(-2000) });
    const txText = (await camtap(['transactions', '--json'], { data })).stdout;
    const list = JSON.parse(txText) as HttpTransaction[];
    t.equal(list.length, truth.length, `${what}: ${truth.length} exchanges, as tshark`);
    t.same(list.map(exchangeView), truth.map(exchangeView), `${what}: method, url, status, client and server equal tshark's, in order`);
    t.same(list.map((x) => x.kind), truth.map(() => 'onvif'), `${what}: every exchange has kind onvif`);
    t.same(list.map((x) => x.operation), truthOps, `${what}: operation is the SOAP Body's first element of each request`);
    checkLocations(t, list, truth, await camtapJson<SegmentRecord[]>(['segments'], data), what);
    const sessText = JSON.stringify(await camtapJson<SessionRecord[]>(['sessions'], data));
    checkNoSecrets(t, txText, [PASSWORD, ...digests], `${what}: transactions --json`);
    checkNoSecrets(t, sessText, [PASSWORD, ...digests], `${what}: sessions --json`);
  }
});

t.test('plain HTTP camera CGI: kind http, no operation, final statuses past 100 Continue, 102 Processing and 401, Authorization values redacted', { skip }, async (t) => {
  const dir = tempDir(t);
  const port = await freePort('tcp');
  const pcap = path.join(dir, 'http.pcap');
  const user = 'root';
  const pass = 'pass-' + randomBytes(6).toString('hex');
  const realm = 'AXIS_ACCC8E000000';
  const nonce = randomBytes(16).toString('hex');
  const md5 = (s: string) => createHash('md5').update(s).digest('hex');
  const basic = Buffer.from(`${user}:${pass}`).toString('base64');

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const auth = req.headers.authorization ?? '';
      const reply = (status: number, type: string, body: string | Buffer, extra: Record<string, string> = {}) => {
        res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), ...extra });
        res.end(body);
      };
      if (req.url!.startsWith('/axis-cgi/param.cgi')) {
        if (auth !== `Basic ${basic}`) return reply(401, 'text/plain', 'unauthorized', { 'WWW-Authenticate': `Basic realm="${realm}"` });
        if (req.method === 'GET') return reply(200, 'text/plain', 'root.Brand.Brand=AXIS\nroot.Brand.ProdNbr=M3045-V\nroot.Image.I0.Appearance.Resolution=1280x720\n');
        // A slow update: an interim 102 Processing (RFC 2518 §10.1) after the whole request,
        // then the final answer (RFC 9110 §15.2: a client must accept unexpected 1xx).
        if (!req.headers.expect) res.writeProcessing();
        return reply(200, 'text/plain', Buffer.concat(chunks).length > 0 ? 'OK\n' : 'Error: empty body\n');
      }
      // Digest (RFC 7616 §3.4.1, qop=auth): a challenge first, then the computed response.
      const m = /response="([0-9a-f]+)"/.exec(auth);
      const cnonce = /cnonce="([^"]+)"/.exec(auth)?.[1] ?? '';
      const want = md5(`${md5(`${user}:${realm}:${pass}`)}:${nonce}:00000001:${cnonce}:auth:${md5(`${req.method}:${req.url}`)}`);
      if (!m || m[1] !== want) return reply(401, 'text/plain', 'unauthorized', { 'WWW-Authenticate': `Digest realm="${realm}", nonce="${nonce}", qop="auth", algorithm=MD5` });
      reply(200, 'image/jpeg', Buffer.from([0xff, 0xd8, 0xff, 0xd9]));
    });
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const td: Proc = await startTcpdump({ iface: 'lo', out: pcap, filter: `tcp port ${port}`, extra: ['-B', '65536'] });
  t.teardown(() => td.stop('SIGKILL'));

  // One keep-alive connection: camtap must pair each answer with its request in order.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  const send = (method: string, url: string, headers: Record<string, string>, body?: string, expectContinue = false) =>
    new Promise<{ status: number; headers: http.IncomingHttpHeaders }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method, path: url, agent, headers: { ...headers, ...(body !== undefined ? { 'Content-Length': String(Buffer.byteLength(body)) } : {}), ...(expectContinue ? { Expect: '100-continue' } : {}) } }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers }));
      });
      req.on('error', reject);
      if (expectContinue) req.on('continue', () => req.end(body));
      else req.end(body);
    });
  const form = 'action=update&root.Image.I0.Appearance.Resolution=640x360';
  const sent: number[] = [];
  sent.push((await send('GET', '/axis-cgi/param.cgi?action=list', { Authorization: `Basic ${basic}` })).status);
  sent.push((await send('POST', '/axis-cgi/param.cgi', { Authorization: `Basic ${basic}`, 'Content-Type': 'application/x-www-form-urlencoded' }, form)).status);
  sent.push((await send('POST', '/axis-cgi/param.cgi', { Authorization: `Basic ${basic}`, 'Content-Type': 'application/x-www-form-urlencoded' }, form, true)).status);
  const imageUrl = '/axis-cgi/jpg/image.cgi?resolution=320x240';
  const challenge = await send('GET', imageUrl, {});
  sent.push(challenge.status);
  const cnonce = randomBytes(8).toString('hex');
  const response = md5(`${md5(`${user}:${realm}:${pass}`)}:${nonce}:00000001:${cnonce}:auth:${md5(`GET:${imageUrl}`)}`);
  const digestAuth = `Digest username="${user}", realm="${realm}", nonce="${nonce}", uri="${imageUrl}", algorithm=MD5, qop=auth, nc=00000001, cnonce="${cnonce}", response="${response}"`;
  sent.push((await send('GET', imageUrl, { Authorization: digestAuth })).status);
  t.same(sent, [200, 200, 200, 401, 200], 'the camera answered as scripted');

  await waitForResponses(pcap, port, sent.length);
  await td.stop('SIGINT');
  const truth = await tsharkHttp(pcap, port);
  t.same(truth.map((x) => x.status), sent, 'tshark sees the five exchanges with their final statuses');
  const interim = await run('tshark', ['-r', pcap, '-d', `tcp.port==${port},http`, '-Y', 'http.response.code < 200', '-T', 'fields', '-e', 'http.response.code']);
  t.same(interim.stdout.split('\n').filter(Boolean).sort(), ['100', '102'], 'tshark sees the interim 100 Continue and 102 Processing answers on the wire');
  t.equal(new Set(truth.map((x) => x.client)).size, 1, 'all on one keep-alive connection');

  const data = path.join(dir, 'data');
  const imp = await camtap(['import', pcap], { data });
  t.equal(imp.code, 0, 'import with the default config exits 0', { stderr: imp.stderr.slice(-2000) });
  const txText = (await camtap(['transactions', '--json'], { data })).stdout;
  const list = JSON.parse(txText) as HttpTransaction[];
  t.same(list.map(exchangeView), truth.map(exchangeView), `${truth.length} exchanges: method, url, final status, client and server equal tshark's, in order`);
  t.same(list.map((x) => [x.kind, x.operation]), truth.map(() => ['http', null]), 'kind http and operation null for every exchange');
  checkLocations(t, list, truth, await camtapJson<SegmentRecord[]>(['segments'], data), 'plain HTTP');

  const auths = list.map((x) => x.headers['authorization']);
  t.same(auths.map((a) => a?.split(' ')[0] ?? null), ['Basic', 'Basic', 'Basic', null, 'Digest'], 'the Authorization header name and scheme are kept');
  t.match(auths[4] ?? '', new RegExp(`username="${user}"`), 'the Digest username stays readable');
  checkNoSecrets(t, txText, [pass, basic, response], 'transactions --json');
  checkNoSecrets(t, JSON.stringify(await camtapJson<SessionRecord[]>(['sessions'], data)), [pass, basic, response], 'sessions --json');
});
