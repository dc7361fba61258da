/**
 * A small HTTP GET client for a camera CGI API, as a vendor profile needs one: HTTP
 * Basic (RFC 7617) or Digest (RFC 7616, MD5, `qop=auth`) answered after a 401, a
 * deadline, an abort signal, a bounded answer, and errors in the camera profile
 * contract's codes. Self-contained on purpose: a third-party profile imports nothing
 * from camtap but `camtap/contracts`.
 */
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { CamtapError, type CallOptions, type ProfileCamera } from '../../core/contracts/index.js';

/** A CGI answer larger than this is not what a parameter list looks like. */
const MAX_BODY = 256 * 1024;
const DEFAULT_TIMEOUT_MS = 10_000;

const md5 = (s: string) => createHash('md5').update(s, 'utf8').digest('hex');

/** `key=value` / `key="value"` pairs of a challenge (quoted strings may hold commas). */
function challengeParams(h: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of h.matchAll(/([A-Za-z][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g)) out.set(m[1]!.toLowerCase(), m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3]!);
  return out;
}

/** The Authorization value for a 401's challenge, or null when the scheme is not one this client speaks. */
export function authorization(challenge: string, user: string, password: string, method: string, uri: string): string | null {
  if (/^\s*basic\b/i.test(challenge)) return `Basic ${Buffer.from(`${user}:${password}`, 'utf8').toString('base64')}`;
  if (!/^\s*digest\s/i.test(challenge)) return null;
  const p = challengeParams(challenge.replace(/^\s*digest\s+/i, ''));
  const realm = p.get('realm');
  const nonce = p.get('nonce');
  const algorithm = (p.get('algorithm') ?? 'MD5').toUpperCase();
  if (realm === undefined || nonce === undefined || algorithm !== 'MD5') return null;
  const qops = (p.get('qop') ?? '').split(',').map((q) => q.trim());
  const ha1 = md5(`${user}:${realm}:${password}`);
  const ha2 = md5(`${method}:${uri}`);
  const q = (s: string) => `"${s.replace(/(["\\])/g, '\\$1')}"`;
  const parts = [`username=${q(user)}`, `realm=${q(realm)}`, `nonce=${q(nonce)}`, `uri=${q(uri)}`, 'algorithm=MD5'];
  if (qops.includes('auth')) {
    // RFC 7616 §3.4.1: response = KD(H(A1), nonce:nc:cnonce:qop:H(A2)).
    const cnonce = randomBytes(8).toString('hex');
    const nc = '00000001';
    parts.push(`response=${q(md5(`${ha1}:${nonce}:${nc}:${cnonce}:auth:${ha2}`))}`, 'qop=auth', `nc=${nc}`, `cnonce=${q(cnonce)}`);
  } else {
    // RFC 2069 form, for old servers that offer no qop.
    parts.push(`response=${q(md5(`${ha1}:${nonce}:${ha2}`))}`);
  }
  const opaque = p.get('opaque');
  if (opaque !== undefined) parts.push(`opaque=${q(opaque)}`);
  return `Digest ${parts.join(', ')}`;
}

/** One GET; resolves with status, the WWW-Authenticate challenge and the body text. */
function getOnce(url: URL, headers: Record<string, string>, timeoutMs: number, signal: AbortSignal | undefined): Promise<{ status: number; challenge: string | null; body: string }> {
  return new Promise((resolve, reject) => {
    const lib = url.protocol === 'https:' ? https : http;
    const req = lib.get(url, { headers, timeout: timeoutMs, ...(signal ? { signal } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_BODY) req.destroy(new Error(`answer over ${MAX_BODY} bytes`));
        else chunks.push(c);
      });
      res.on('end', () => {
        const ch = res.headers['www-authenticate'];
        resolve({ status: res.statusCode ?? 0, challenge: Array.isArray(ch) ? (ch[0] ?? null) : (ch ?? null), body: Buffer.concat(chunks).toString('utf8') });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs / 1000} s`)));
    req.on('error', reject);
  });
}

/**
 * GETs `pathAndQuery` from the camera's API base (`camera.apiUrl`, else
 * `http://<address>`), answering a 401 once with the camera record's credentials.
 * Rejects with CAMTAP_ERR_CAMERA_AUTH when they are refused and CAMTAP_ERR_CAMERA_API
 * for anything else that is not a 200.
 */
export async function cgiGet(camera: ProfileCamera, pathAndQuery: string, operation: string, opts: CallOptions | undefined): Promise<string> {
  const base = camera.apiUrl ?? `http://${camera.address.includes(':') ? `[${camera.address}]` : camera.address}`;
  const url = new URL(pathAndQuery, base);
  const timeoutMs = opts?.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const fail = (reason: string, cause?: unknown) => new CamtapError('CAMTAP_ERR_CAMERA_API', { camera: camera.name, operation, reason }, { cause });
  const get = async (headers: Record<string, string>) => {
    try {
      return await getOnce(url, headers, timeoutMs, opts?.signal);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw fail(opts?.signal?.aborted ? 'aborted' : err.code && err.code !== 'ABORT_ERR' ? `${err.code} (${url.host})` : err.message, e);
    }
  };
  let res = await get({});
  if (res.status === 401 && camera.user !== undefined && res.challenge) {
    const authz = authorization(res.challenge, camera.user, camera.password ?? '', 'GET', url.pathname + url.search);
    if (authz === null) throw fail(`unsupported authentication challenge: ${res.challenge.split(/\s/)[0]}`);
    res = await get({ Authorization: authz });
  }
  if (res.status === 401) throw new CamtapError('CAMTAP_ERR_CAMERA_AUTH', { camera: camera.name, operation, user: camera.user ?? '(none)' });
  if (res.status !== 200) throw fail(`HTTP ${res.status} for ${url.pathname}`);
  return res.body;
}
