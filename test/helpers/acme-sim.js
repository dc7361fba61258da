#!/usr/bin/env node
// A simulated "ACME" camera management API, VAPIX-style (Axis' CGI API shape), for the
// example camera profile (camera-profiles/example-acme) and its contract tests. No
// dependencies. Video comes from a real RTSP server the test starts (the GStreamer lab
// camera at /axis-media/media.amp); this stub is only the HTTP API and a push sender.
//
//   node acme-sim.js --port 8081 [--bind 127.0.0.1] [--user root --password pass]
//        [--auth digest|basic] [--rtsp-port 554] [--serial ACCC8E000001] [--model Q1615]
//        [--firmware 9.80.1] [--clock-offset <ms>] [--log requests.jsonl]
//
// Endpoints (HTTP GET; when --user is given every request needs HTTP Digest, RFC 7616
// MD5 qop=auth, or Basic with --auth basic, else 401 with a challenge):
//   /axis-cgi/param.cgi?action=list[&group=G1,G2]   `root.A.B=value` lines (CRLF); a group
//        may be given without `root.`; an unknown group adds the line
//        `# Error: Error -1 getting param in group 'G'` (HTTP 200, as VAPIX does).
//   /axis-cgi/param.cgi?action=update&root.A.B=v&...  `OK`, or (nothing changed)
//        `# Error: Error setting 'root.A.B' to 'v'!` for an unknown, read-only or invalid one.
//   /axis-cgi/date.cgi?action=get   the camera clock in UTC as `Nov 24, 2026 01:32:24`,
//        shifted by --clock-offset ms (a camera whose clock is off).
// Anything else: 404.
//
// Parameters: root.Brand.{Brand,ProdFullName,ProdNbr,ProdType},
// root.Properties.Firmware.Version, root.Properties.System.SerialNumber,
// root.Network.RTSP.Port (--rtsp-port), root.Image.I0.Appearance.Resolution,
// root.Image.I0.Stream.FPS, and the push destination root.Push.P0.{Enabled (yes|no), Host
// (IPv4 or IPv6 address), Port (0-65535), Source (1)} (writable) and .SSRC (read-only).
// While Enabled=yes with a Host and a Port, the camera sends RTP (RFC 3550: version 2,
// payload type 96, that SSRC, 90 kHz timestamps, 25 packets/s, payload an H.264 filler
// NAL unit) to Host:Port over UDP.
//
// Every request is appended to --log as JSON (t, path with query; never the
// Authorization header) so a test can assert what a profile asked.
import http from 'node:http';
import crypto from 'node:crypto';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const PORT = +(args.port || 8081);
const BIND = args.bind || '127.0.0.1';
const AUTH = args.auth || 'digest';
const REALM = 'ACME camera';
const OFFSET_MS = +(args['clock-offset'] || 0);
const model = args.model || 'Q1615';

/** name -> { value, writable, valid? } */
const params = new Map();
const def = (name, value, valid) => params.set(name, { value: String(value), writable: !!valid, valid });
def('root.Brand.Brand', 'ACME');
def('root.Brand.ProdFullName', `ACME ${model} Network Camera`);
def('root.Brand.ProdNbr', model);
def('root.Brand.ProdType', 'Network Camera');
def('root.Properties.Firmware.Version', args.firmware || '9.80.1');
def('root.Properties.System.SerialNumber', args.serial || 'ACCC8E000001');
def('root.Network.RTSP.Port', args['rtsp-port'] || 554);
def('root.Image.I0.Appearance.Resolution', '640x360');
def('root.Image.I0.Stream.FPS', 25);
def('root.Push.P0.Enabled', 'no', (v) => v === 'yes' || v === 'no');
def('root.Push.P0.Host', '', (v) => v === '' || net.isIP(v) !== 0);
def('root.Push.P0.Port', 0, (v) => /^\d{1,5}$/.test(v) && +v <= 65535);
def('root.Push.P0.Source', 1, (v) => v === '1');
def('root.Push.P0.SSRC', 2890844526);

// ---- the push sender
let pusher = null;
function updatePush() {
  const on = params.get('root.Push.P0.Enabled').value === 'yes';
  const host = params.get('root.Push.P0.Host').value;
  const port = +params.get('root.Push.P0.Port').value;
  if (pusher) {
    clearInterval(pusher.timer);
    pusher.sock.close();
    pusher = null;
  }
  if (!on || !host || !port) return;
  const sock = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
  sock.on('error', () => {});
  const ssrc = +params.get('root.Push.P0.SSRC').value;
  let seq = crypto.randomInt(0, 65536);
  let ts = crypto.randomInt(0, 2 ** 32);
  const send = () => {
    const pkt = Buffer.alloc(12 + 16, 0xff);
    pkt[0] = 0x80; // V=2, no padding, no extension, no CSRC
    pkt[1] = 0x80 | 96; // marker (one packet per frame), PT 96
    pkt.writeUInt16BE(seq, 2);
    pkt.writeUInt32BE(ts >>> 0, 4);
    pkt.writeUInt32BE(ssrc >>> 0, 8);
    pkt[12] = 0x0c; // H.264 NAL unit type 12: filler data (RFC 6184 single NAL unit packet)
    sock.send(pkt, port, host);
    seq = (seq + 1) & 0xffff;
    ts = (ts + 3600) % 2 ** 32;
  };
  send();
  pusher = { sock, timer: setInterval(send, 40) };
}

// ---- auth
const nonces = new Set();
const md5 = (s) => crypto.createHash('md5').update(s).digest('hex');
function authParams(h) {
  const out = {};
  for (const m of h.matchAll(/(\w+)=(?:"([^"]*)"|([^,\s]*))/g)) out[m[1].toLowerCase()] = m[2] ?? m[3];
  return out;
}
function authorized(req) {
  if (!args.user) return true;
  const h = req.headers.authorization || '';
  if (AUTH === 'basic') {
    const m = /^Basic\s+(\S+)$/i.exec(h);
    return !!m && Buffer.from(m[1], 'base64').toString('utf8') === `${args.user}:${args.password ?? ''}`;
  }
  if (!/^Digest\s/i.test(h)) return false;
  const p = authParams(h.slice(7));
  if (p.username !== args.user || p.realm !== REALM || !nonces.has(p.nonce) || p.uri !== req.url) return false;
  const ha1 = md5(`${args.user}:${REALM}:${args.password ?? ''}`);
  const ha2 = md5(`${req.method}:${p.uri}`);
  const expect = p.qop === 'auth' ? md5(`${ha1}:${p.nonce}:${p.nc}:${p.cnonce}:auth:${ha2}`) : md5(`${ha1}:${p.nonce}:${ha2}`);
  return expect === p.response;
}
function challenge() {
  if (AUTH === 'basic') return `Basic realm="${REALM}"`;
  const nonce = crypto.randomBytes(12).toString('hex');
  nonces.add(nonce);
  return `Digest realm="${REALM}", nonce="${nonce}", algorithm=MD5, qop="auth"`;
}

// ---- CGIs
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const p2 = (n) => String(n).padStart(2, '0');
function dateCgi() {
  const d = new Date(Date.now() + OFFSET_MS);
  return `${MONTHS[d.getUTCMonth()]} ${p2(d.getUTCDate())}, ${d.getUTCFullYear()} ${p2(d.getUTCHours())}:${p2(d.getUTCMinutes())}:${p2(d.getUTCSeconds())}\r\n`;
}
function paramCgi(q) {
  const action = q.get('action');
  if (action === 'list') {
    const groups = (q.get('group') || 'root').split(',').map((g) => (g === 'root' || g.startsWith('root.') ? g : `root.${g}`));
    let out = '';
    for (const g of groups) {
      const hits = [...params].filter(([name]) => name === g || name.startsWith(`${g}.`));
      if (hits.length === 0) out += `# Error: Error -1 getting param in group '${g.replace(/^root\./, '')}'\r\n`;
      for (const [name, p] of hits) out += `${name}=${p.value}\r\n`;
    }
    return out;
  }
  if (action === 'update') {
    const changes = [];
    for (const [k, v] of q) {
      if (k === 'action') continue;
      const name = k.startsWith('root.') ? k : `root.${k}`;
      const p = params.get(name);
      if (!p || !p.writable || !p.valid(v)) return `# Error: Error setting '${name}' to '${v}'!\r\n`;
      changes.push([p, v]);
    }
    for (const [p, v] of changes) p.value = v;
    updatePush();
    return 'OK\r\n';
  }
  return `# Error: action '${action}' is not supported\r\n`;
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, `http://${req.headers.host || 'camera'}`);
  if (args.log) fs.appendFileSync(args.log, JSON.stringify({ t: Date.now() / 1000, method: req.method, path: req.url }) + '\n');
  const send = (status, body, headers = {}) => {
    res.writeHead(status, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body), ...headers });
    res.end(body);
  };
  if (!authorized(req)) return send(401, 'Unauthorized\r\n', { 'WWW-Authenticate': challenge() });
  if (req.method !== 'GET') return send(405, 'Method Not Allowed\r\n');
  if (url.pathname === '/axis-cgi/param.cgi') return send(200, paramCgi(url.searchParams));
  if (url.pathname === '/axis-cgi/date.cgi' && url.searchParams.get('action') === 'get') return send(200, dateCgi());
  send(404, 'Not Found\r\n');
});
server.listen(PORT, BIND, () => console.log(`acme sim ready: http://${BIND.includes(':') ? `[${BIND}]` : BIND}:${PORT}`));
for (const s of ['SIGINT', 'SIGTERM']) {
  process.on(s, () => {
    if (pusher) {
      clearInterval(pusher.timer);
      pusher.sock.close();
    }
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
