/**
 * Failover strategy (b): resend the captured HTTP configuration requests that point a
 * camera at its VMS (push destination, multicast address, event or recording target),
 * with the VMS's address already replaced by camtap's in the plan (./plan.ts); and, on
 * restore, the original requests.
 *
 * Each step is one request on its own connection, sent as captured: method, request
 * target byte for byte (cameras are picky about their CGI query strings), headers, and
 * the body with `Content-Length` recomputed (RFC 9112 §6.2; the substitution changes the
 * length). Hop-by-hop headers (RFC 9110 §7.6.1), `Host` (made from the URL) and a
 * captured `Authorization` are not sent: a captured Digest answer is bound to a spent
 * nonce (RFC 7616 §3.3) and a Basic one is a password in clear. A 401 is answered with
 * the camera's credentials from the config, Basic (RFC 7617) or Digest (RFC 7616), by
 * the same Authenticator the RTSP client uses; a fresh one per step, since cameras that
 * issue one nonce per challenge refuse a nonce reused on the next request.
 *
 * 2xx is success; anything else fails the step with the status and the first 200
 * characters of the answer, and no later step is sent. Outcomes never hold credentials
 * (URLs lose their userinfo and secret query values; the camera's password is masked
 * if an answer echoes it). With `dryRun` nothing is sent: each request is listed as it
 * would go.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Logger } from '../contracts/logger.js';
import { silentLogger } from '../logger.js';
import { Authenticator, parseChallenges, pickChallenge } from '../rtsp-client/auth.js';
import { redactUrl } from '../rtsp-client/url.js';
import type { CameraOutcome, HttpStep, StepOutcome } from './types.js';

export interface HttpReplayOptions {
  /** The camera the requests go to. With `address`, a step to another host is refused unsent. */
  camera: { name: string; address?: string; user?: string; password?: string };
  log: Logger;
  /** Aborts the request in flight; no later step is sent. */
  signal?: AbortSignal;
  /** Per request, connection to the end of the answer (default 10 s). */
  timeoutMs?: number;
  /** Nothing is sent: the outcome lists every request as it would go. */
  dryRun?: boolean;
}

const DEFAULT_TIMEOUT_MS = 10_000;
/** Answer bytes kept for the outcome; the rest is read and dropped. */
const MAX_ANSWER = 64 * 1024;
/** First request, one with credentials, one after a stale nonce (RFC 7616 §3.3). */
const MAX_SENDS = 3;
const REASON_CHARS = 200;

/** Not forwarded (RFC 9110 §7.6.1 hop-by-hop, plus what the sender computes or answers itself). */
const DROPPED = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-authorization', 'proxy-authenticate', 'authorization', 'content-length', 'host', 'expect']);

const AUTH_PLACEHOLDER = '<answered from challenge>';

interface Target {
  tls: boolean;
  /** Host as in the URL (IPv6 in brackets), and without brackets for connecting. */
  hostText: string;
  host: string;
  port: number;
  /** The request target, as captured. */
  path: string;
}

/** `http[s]://[userinfo@]host[:port][/path][?query]`, the path kept byte for byte (no normalization, unlike WHATWG URL). */
function parseHttpUrl(url: string): Target | null {
  const m = /^(https?):\/\/(?:[^@/?#]*@)?(\[[0-9a-fA-F:.]+\]|[^:/?#[\]@]+)(?::(\d{1,5}))?([/?][^#]*)?(?:#.*)?$/i.exec(url.trim());
  if (!m) return null;
  const tls = m[1]!.toLowerCase() === 'https';
  const port = m[3] !== undefined ? Number(m[3]) : tls ? 443 : 80;
  if (!(port > 0 && port <= 65535)) return null;
  const hostText = m[2]!;
  let path = m[4] ?? '/';
  if (path.startsWith('?')) path = `/${path}`;
  return { tls, hostText, host: hostText.replace(/^\[|\]$/g, ''), port, path };
}

function bodyOf(s: HttpStep): Buffer {
  return s.bodyEncoding === 'base64' ? Buffer.from(s.body, 'base64') : Buffer.from(s.body ?? '', 'utf8');
}

function sendableHeaders(s: HttpStep, body: Buffer): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const [k, v] of Object.entries(s.headers)) if (!DROPPED.has(k.toLowerCase())) out.push([k, v]);
  // A body, or a method that carries one, says its length (RFC 9110 §8.6).
  if (body.length > 0 || /^(POST|PUT|PATCH)$/i.test(s.method)) out.push(['Content-Length', String(body.length)]);
  return out;
}

const now = () => new Date().toISOString();

interface Answer {
  status: number;
  statusText: string;
  version: string;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

/** One request on its own connection; resolves with the answer (any status) or rejects with why there was none. */
function send(t: Target, method: string, headers: Array<[string, string]>, body: Buffer, timeoutMs: number, signal: AbortSignal | undefined): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const flat: Record<string, string> = {};
    for (const [k, v] of headers) flat[k] = k in flat ? `${flat[k]}, ${v}` : v;
    const reqOpts = {
      method,
      host: t.host,
      port: t.port,
      path: t.path,
      headers: flat,
      agent: false as const,
      // Cameras almost all serve a self-signed certificate; the camera is the inventory's address.
      ...(t.tls ? { rejectUnauthorized: false } : {}),
    };
    let done = false;
    const finish = (err: Error | null, a?: Answer) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve(a!);
    };
    const req = (t.tls ? httpsRequest : httpRequest)(reqOpts, (res) => {
      const chunks: Buffer[] = [];
      let kept = 0;
      res.on('data', (d: Buffer) => {
        if (kept >= MAX_ANSWER) return;
        const part = d.subarray(0, MAX_ANSWER - kept);
        chunks.push(part);
        kept += part.length;
      });
      res.on('end', () => finish(null, { status: res.statusCode ?? 0, statusText: res.statusMessage ?? '', version: res.httpVersion, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', (e) => finish(e));
      res.on('aborted', () => finish(new Error('answer cut off')));
    });
    const timer = setTimeout(() => {
      req.destroy();
      finish(new Error(`no answer within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    const onAbort = () => {
      req.destroy();
      finish(new Error('aborted'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    req.on('error', (e: NodeJS.ErrnoException) => finish(new Error(e.code ? `cannot connect: ${e.code}` : e.message)));
    req.end(body.length > 0 ? body : undefined);
  });
}

function wwwAuthenticate(a: Answer): string[] {
  const v = a.headers['www-authenticate'];
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

function schemeOf(values: string[]): string | null {
  const c = pickChallenge(parseChallenges(values));
  if (c) return c.scheme === 'digest' ? 'Digest' : 'Basic';
  const w = values.map((v) => /^\s*([A-Za-z0-9_-]+)/.exec(v)?.[1]).filter(Boolean);
  return w.length ? w.join(', ') : null;
}

/**
 * Sends each step in order; resolves with the camera's outcome (never rejects). The
 * first step that fails (no answer, or not 2xx) ends the run: `reason` names it.
 */
export async function sendHttpSteps(steps: Array<HttpStep & { group?: string }>, opts: HttpReplayOptions): Promise<CameraOutcome> {
  const { camera } = opts;
  const log = (opts.log ?? silentLogger).child({ component: 'failover-http', camera: camera.name });
  const creds = camera.user !== undefined && camera.user !== '';
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const mask = (text: string) => (camera.password && camera.password.length >= 3 ? text.split(camera.password).join('***') : text);
  const outcomes: StepOutcome[] = [];
  const result = (reason?: string): CameraOutcome => ({ camera: camera.name, strategy: 'http-replay', ok: reason === undefined, ...(reason !== undefined ? { reason } : {}), steps: outcomes });

  for (let i = 0; i < steps.length; i++) {
    const s = steps[i]!;
    const request = `${s.method} ${redactUrl(s.url)}`;
    const base = { step: i + 1, ...(s.group !== undefined ? { group: s.group } : {}), kind: 'http' as const, request };
    const fail = (answer: string, reason: string, status: number | null = null, at = now()) => {
      outcomes.push({ ...base, status, ok: false, answer, at });
      return result(reason);
    };
    if (s.kind !== 'http') return fail('not sent: not an HTTP step', `step ${i + 1} is not an HTTP request`);
    const t = parseHttpUrl(s.url);
    if (t === null) return fail('not sent: not an http:// or https:// URL', `${request}: not an http:// or https:// URL`);
    if (camera.address !== undefined && t.host.toLowerCase() !== camera.address.replace(/^\[|\]$/g, '').toLowerCase()) {
      return fail(`not sent: ${t.host} is not camera ${camera.name}'s address`, `${request}: ${t.host} is not the address of camera ${camera.name} (${camera.address}); not sent`);
    }
    const body = bodyOf(s);
    const headers = sendableHeaders(s, body);
    if (opts.dryRun) {
      const lines = [`${s.method} ${t.path} HTTP/1.1`, `Host: ${t.hostText}${t.port !== (t.tls ? 443 : 80) ? `:${t.port}` : ''}`, ...headers.map(([k, v]) => `${k}: ${v}`)];
      if (creds) lines.push(`Authorization: ${AUTH_PLACEHOLDER}`);
      const shownBody = body.length === 0 ? '' : s.bodyEncoding === 'base64' ? `(${body.length} bytes, binary)` : body.toString('utf8');
      outcomes.push({ ...base, status: null, ok: true, answer: `(dry run: not sent)\n${lines.join('\n')}\n\n${shownBody}`.trimEnd(), at: now() });
      continue;
    }
    if (opts.signal?.aborted) return fail('not sent: aborted', `${request}: aborted before it was sent`);

    const at = now();
    const auth = creds ? new Authenticator(camera.user!, camera.password ?? '') : null;
    let own = false;
    let staleRetried = false;
    let answer: Answer | null = null;
    for (let n = 0; n < MAX_SENDS; n++) {
      const h = headers.slice();
      let sentCreds = false;
      if (own && auth) {
        const a = auth.authorization(s.method, t.path, body);
        if (a !== null) {
          h.push(['Authorization', a]);
          sentCreds = true;
        }
      }
      try {
        answer = await send(t, s.method, h, body, timeoutMs, opts.signal);
      } catch (e) {
        const why = e instanceof Error ? e.message : String(e);
        return fail(why, `${request}: ${why}`, null, at);
      }
      log.debug({ request, status: answer.status }, 'http answer');
      if (answer.status !== 401 || auth === null) break;
      if (auth.challenge(parseChallenges(wwwAuthenticate(answer)), sentCreds, staleRetried) !== 'retry') break;
      if (sentCreds) staleRetried = true;
      own = true;
    }
    const a = answer!;
    const line = `HTTP/${a.version} ${a.status} ${a.statusText}`.trimEnd();
    const text = mask(a.body.toString('utf8').replace(/\s+/g, ' ').trim()).slice(0, REASON_CHARS);
    const ok = a.status >= 200 && a.status < 300;
    const shown = text ? `${line}\n${text}` : line;
    if (ok) {
      outcomes.push({ ...base, status: a.status, ok: true, answer: shown, at });
      continue;
    }
    let reason = `${request}: ${a.status} ${a.statusText}`.trimEnd();
    if (a.status === 401) {
      const scheme = schemeOf(wwwAuthenticate(a));
      const sch = scheme ? ` (${scheme})` : '';
      reason += creds ? `${sch}: credentials refused for user ${camera.user}` : `${sch} and no credentials configured for camera ${camera.name}`;
    } else if (text) reason += `: ${text}`;
    return fail(shown, reason, a.status, at);
  }
  return result();
}
