/**
 * A test camera that pushes RTP wherever its HTTP API says, the way cameras with a
 * "push stream to" CGI do (the target of failover strategy (b), core/failover/http-replay.ts):
 *
 *   POST /cgi-bin/stream.cgi   form body `dest=IP&port=N`: (re)starts the stream toward IP:N
 *   GET  /cgi-bin/stream.cgi   the current setting, `dest=…&port=…` (empty values when none)
 *
 * The stream is an ffmpeg child, `ffmpeg -re -f lavfi -i testsrc2=size=320x240:rate=25
 * -c:v libx264 -g 25 -bf 0 -f rtp rtp://dest:port`, started through test/helpers/peers.ts
 * (tracked and stopped by its PID), restarted when the setting changes; `-sdp_file`
 * writes the SDP a test reads to know the payload type. Destinations are limited to
 * loopback (127.0.0.0/8): tests send nothing elsewhere.
 *
 * Auth is done for real and checked independently of camtap's code: Basic (RFC 7617)
 * or Digest (RFC 7616 with MD5 and qop=auth), a fresh nonce with every challenge, each
 * nonce's count required to increase.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { isIPv4 } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startProcess, type Proc } from './peers.js';

export interface PushDestination {
  dest: string;
  port: number;
}

export interface PushCamera {
  /** `http://host:port/cgi-bin/stream.cgi`. */
  url: string;
  host: string;
  httpPort: number;
  /** The destination streamed to now (null before the first POST). */
  current(): (PushDestination & { pid: number }) | null;
  /** Every destination set, with when its stream started (ms since the epoch) and the ffmpeg PID. */
  history(): Array<PushDestination & { at: number; pid: number }>;
  /** Every request the API received: method, path, status answered, and whether it carried valid credentials. */
  requests(): Array<{ method: string; path: string; status: number; authorized: boolean }>;
  /** The SDP ffmpeg wrote for the current stream (waits until it is there). */
  sdp(timeoutMs?: number): Promise<string>;
  /** Stops the stream and the API. */
  stop(): Promise<void>;
}

export interface PushCameraOptions {
  httpPort: number;
  host?: string;
  auth?: 'basic' | 'digest';
  user?: string;
  password?: string;
}

const PATH = '/cgi-bin/stream.cgi';
const REALM = 'push-camera';
const MAX_BODY = 4096;
const MAX_NONCES = 64;

const md5 = (s: string) => createHash('md5').update(s, 'utf8').digest('hex');

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** `k=v, k="v"` parameters of a Digest Authorization header. */
function digestParams(v: string): Map<string, string> {
  const out = new Map<string, string>();
  const re = /([A-Za-z0-9_*-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g;
  for (let m = re.exec(v); m; m = re.exec(v)) out.set(m[1]!.toLowerCase(), m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3]!);
  return out;
}

export async function startPushCamera(opts: PushCameraOptions): Promise<PushCamera> {
  const host = opts.host ?? '127.0.0.1';
  const user = opts.user ?? 'admin';
  const password = opts.password ?? 'admin';
  const dir = mkdtempSync(path.join(tmpdir(), 'push-camera-'));
  const sdpFile = path.join(dir, 'stream.sdp');
  /** Nonces issued (each challenge gets its own) -> the highest nonce count seen. */
  const nonces = new Map<string, number>();
  const log: Array<{ method: string; path: string; status: number; authorized: boolean }> = [];
  const history: Array<PushDestination & { at: number; pid: number }> = [];
  let current: (PushDestination & { pid: number }) | null = null;
  let proc: Proc | null = null;
  /** Changes run one at a time: a stream is stopped before the next one starts. */
  let chain: Promise<unknown> = Promise.resolve();

  const authorized = (req: IncomingMessage): boolean => {
    if (!opts.auth) return true;
    const h = req.headers.authorization ?? '';
    if (opts.auth === 'basic') {
      const m = /^Basic\s+(\S+)$/i.exec(h);
      return m !== null && safeEqual(Buffer.from(m[1]!, 'base64').toString('utf8'), `${user}:${password}`);
    }
    const m = /^Digest\s+(.*)$/i.exec(h);
    if (!m) return false;
    const p = digestParams(m[1]!);
    const nonce = p.get('nonce') ?? '';
    const last = nonces.get(nonce);
    if (last === undefined || p.get('username') !== user || p.get('realm') !== REALM || p.get('uri') !== req.url) return false;
    if ((p.get('algorithm') ?? 'MD5').toUpperCase() !== 'MD5' || p.get('qop') !== 'auth') return false;
    const nc = Number.parseInt(p.get('nc') ?? '', 16);
    const cnonce = p.get('cnonce') ?? '';
    if (!(nc > last) || !cnonce) return false;
    // RFC 7616 §3.4.1: KD(H(A1), nonce:nc:cnonce:qop:H(A2)), A1 = user:realm:password, A2 = method:uri.
    const expected = md5(`${md5(`${user}:${REALM}:${password}`)}:${nonce}:${p.get('nc')}:${cnonce}:auth:${md5(`${req.method}:${req.url}`)}`);
    if (!safeEqual(expected, p.get('response') ?? '')) return false;
    nonces.set(nonce, nc);
    return true;
  };

  const challenge = (res: ServerResponse) => {
    if (opts.auth === 'basic') res.setHeader('WWW-Authenticate', `Basic realm="${REALM}"`);
    else {
      const nonce = randomBytes(16).toString('hex');
      nonces.set(nonce, 0);
      if (nonces.size > MAX_NONCES) nonces.delete(nonces.keys().next().value!);
      res.setHeader('WWW-Authenticate', `Digest realm="${REALM}", qop="auth", algorithm=MD5, nonce="${nonce}", opaque="${randomBytes(8).toString('hex')}"`);
    }
    res.writeHead(401, { 'Content-Type': 'text/plain' }).end('authorization required\n');
  };

  const restart = async (d: PushDestination): Promise<void> => {
    if (proc) await proc.stop();
    proc = null;
    rmSync(sdpFile, { force: true });
    const p = startProcess('push-camera ffmpeg', 'ffmpeg', [
      '-nostdin', '-hide_banner', '-loglevel', 'error',
      '-re', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25',
      '-c:v', 'libx264', '-g', '25', '-bf', '0',
      '-f', 'rtp', '-sdp_file', sdpFile, `rtp://${d.dest}:${d.port}`,
    ]);
    proc = p;
    current = { ...d, pid: p.pid };
    history.push({ ...d, at: Date.now(), pid: p.pid });
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (d: Buffer) => {
      size += d.length;
      if (size <= MAX_BODY) chunks.push(d);
    });
    req.on('end', () => {
      const record = (status: number, ok: boolean) => log.push({ method: req.method ?? '', path: req.url ?? '', status, authorized: ok });
      const ok = authorized(req);
      const pathOnly = (req.url ?? '').split('?')[0];
      if (!ok) {
        record(401, false);
        return challenge(res);
      }
      if (pathOnly !== PATH) {
        record(404, true);
        return res.writeHead(404, { 'Content-Type': 'text/plain' }).end(`no such CGI: ${pathOnly}\n`);
      }
      if (req.method === 'GET') {
        record(200, true);
        return res.writeHead(200, { 'Content-Type': 'application/x-www-form-urlencoded' }).end(`dest=${current?.dest ?? ''}&port=${current?.port ?? ''}`);
      }
      if (req.method !== 'POST') {
        record(405, true);
        return res.writeHead(405, { Allow: 'GET, POST' }).end();
      }
      if (size > MAX_BODY) {
        record(413, true);
        return res.writeHead(413).end();
      }
      const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
      const dest = form.get('dest') ?? '';
      const port = Number(form.get('port'));
      if (!isIPv4(dest) || !dest.startsWith('127.') || !Number.isInteger(port) || port < 1 || port > 65535) {
        record(400, true);
        return res.writeHead(400, { 'Content-Type': 'text/plain' }).end(`bad destination: dest must be a loopback IPv4 address and port 1-65535 (got dest=${dest}&port=${form.get('port') ?? ''})\n`);
      }
      const run = chain.then(async () => {
        if (current === null || current.dest !== dest || current.port !== port) await restart({ dest, port });
      });
      chain = run.catch(() => {});
      run.then(
        () => {
          record(200, true);
          res.writeHead(200, { 'Content-Type': 'text/plain' }).end(`OK dest=${dest}&port=${port}\n`);
        },
        (e: unknown) => {
          record(500, true);
          res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`cannot start the stream: ${String(e)}\n`);
        },
      );
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.httpPort, host, () => {
      server.off('error', reject);
      resolve();
    });
  });

  return {
    url: `http://${host}:${opts.httpPort}${PATH}`,
    host,
    httpPort: opts.httpPort,
    current: () => (current ? { ...current } : null),
    history: () => history.map((h) => ({ ...h })),
    requests: () => log.map((r) => ({ ...r })),
    async sdp(timeoutMs = 10_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        try {
          const text = readFileSync(sdpFile, 'utf8');
          if (/^m=/m.test(text)) return text;
        } catch {
          /* not written yet */
        }
        if (Date.now() > until) throw new Error(`push camera: no SDP in ${sdpFile} within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async stop() {
      await chain;
      if (proc) await proc.stop();
      proc = null;
      current = null;
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
