/**
 * Authentication of RTSP clients (players, VMSs) by the users of the config's `auth`
 * block: RTSP reuses HTTP's authentication (RFC 2326 §D, RFC 7826 §19.1), so a request
 * without valid credentials is answered `401 Unauthorized` with a `WWW-Authenticate`
 * challenge, and the client repeats it with `Authorization`.
 *
 * - Digest (RFC 2617 §3.2; MD5, the algorithm every RTSP client implements). The
 *   challenge carries no `qop`, as cameras' do: RTSP clients answer it in RFC 2069's form
 *   (`response = MD5(HA1:nonce:MD5(method:uri))`). A client that sends `qop=auth` anyway
 *   is checked with its `nc` and `cnonce` (RFC 2617 §3.2.2.1). `auth-int` is refused.
 * - Basic (RFC 7617) only with `auth.rtspBasic: true`: the password crosses the network
 *   in clear, and for a proxied camera the dialog is recorded by the inline tap.
 *
 * Nonces: a fresh random one per challenge, remembered per connection (at most
 * {@link MAX_NONCES} each, forgotten with the connection), so a nonce seen on the wire
 * cannot be used from another connection. A nonce unused for `nonceTtlSec` expires; a
 * request with an expired (or unknown) nonce but a correct digest gets `stale=TRUE` in
 * the new challenge, so the client retries without asking its user again (RFC 2617
 * §3.2.1). Keepalives (GET_PARAMETER) keep a long session's nonce fresh.
 *
 * Every method but OPTIONS needs credentials (OPTIONS is how a client discovers the
 * server; it reveals nothing). Any role may watch (viewer or above); digests are compared
 * in constant time.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Logger } from '../contracts/logger.js';
import { parseAuthorization, parseBasic, roleAtLeast, type Credentials, type Principal } from '../api/auth.js';
import type { WireMessage } from '../wire/rtsp-message.js';

/** Nonces remembered per connection (each challenge makes one; a client uses the last). */
export const MAX_NONCES = 4;

export type RtspAuthResult = { ok: true; principal: Principal } | { ok: false; status: 401 | 403; why: string; headers: Array<[string, string]> };

/** What the RTSP server asks before it handles a request (core/serve/rtsp-server.ts `auth`). */
export interface RtspAuthenticator {
  /** Whether `req` on `conn` may proceed; OPTIONS is not asked about. */
  check(conn: object, req: Pick<WireMessage, 'method' | 'url' | 'header'>, log?: Logger): Promise<RtspAuthResult>;
}

/** `key=value, key="quoted value", ...` of a Digest credential (RFC 2617 §3.2.2, RFC 9110 §5.6.6). */
export function parseAuthParams(s: string): Map<string, string> {
  const out = new Map<string, string>();
  const re = /\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*(?:,|$)/gy;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s)) !== null && m[0] !== '') {
    const k = m[1]!.toLowerCase();
    if (!out.has(k)) out.set(k, m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3]!);
    if (re.lastIndex >= s.length) break;
  }
  return out;
}

function md5(s: string): string {
  return createHash('md5').update(s).digest('hex');
}

/**
 * The Digest `response` (RFC 2617 §3.2.2.1): MD5(HA1:nonce:HA2) without qop (RFC 2069),
 * MD5(HA1:nonce:nc:cnonce:qop:HA2) with qop=auth; HA2 = MD5(method:uri). `ha1` in hex.
 */
export function digestResponse(o: { ha1: string; nonce: string; method: string; uri: string; qop?: 'auth'; nc?: string; cnonce?: string }): string {
  const ha2 = md5(`${o.method}:${o.uri}`);
  return o.qop === 'auth' ? md5(`${o.ha1}:${o.nonce}:${o.nc}:${o.cnonce}:auth:${ha2}`) : md5(`${o.ha1}:${o.nonce}:${ha2}`);
}

/** Same text in constant time (for equal lengths; lengths are not secret here). */
function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Whether the digest's `uri` names the request's URL (RFC 2617 §3.2.2.5): equal, or the same path and query. */
function sameUri(digestUri: string, requestUrl: string): boolean {
  if (digestUri === requestUrl) return true;
  const pq = (u: string): string | null => {
    if (u.startsWith('/')) return u;
    try {
      const x = new URL(u);
      return `${x.pathname}${x.search}`;
    } catch {
      return null;
    }
  };
  const a = pq(digestUri);
  return a !== null && a === pq(requestUrl);
}

export interface RtspDigestAuthOptions {
  credentials: Credentials;
  /** Milliseconds clock (tests move it to expire nonces); default Date.now. */
  now?: () => number;
}

/** Digest (and optionally Basic) authentication against {@link Credentials} (see the file comment). */
export class RtspDigestAuth implements RtspAuthenticator {
  readonly #creds: Credentials;
  readonly #now: () => number;
  /** Per connection: nonce -> when it was issued or last used. */
  readonly #nonces = new WeakMap<object, Map<string, number>>();

  constructor(opts: RtspDigestAuthOptions) {
    this.#creds = opts.credentials;
    this.#now = opts.now ?? Date.now;
  }

  #challenge(conn: object, why: string, stale = false): RtspAuthResult {
    let m = this.#nonces.get(conn);
    if (!m) this.#nonces.set(conn, (m = new Map()));
    while (m.size >= MAX_NONCES) m.delete(m.keys().next().value!);
    const nonce = randomBytes(16).toString('hex');
    m.set(nonce, this.#now());
    const realm = this.#creds.realm;
    const headers: Array<[string, string]> = [['WWW-Authenticate', `Digest realm="${realm}", nonce="${nonce}", algorithm=MD5${stale ? ', stale=TRUE' : ''}`]];
    if (this.#creds.rtspBasic) headers.push(['WWW-Authenticate', `Basic realm="${realm}"`]);
    return { ok: false, status: 401, why, headers };
  }

  #allow(p: Principal, conn: object): RtspAuthResult {
    // Every role may watch; kept explicit so a lower role added later is refused here.
    if (!roleAtLeast(p.role, 'viewer')) return { ok: false, status: 403, why: `role ${p.role} may not watch`, headers: [] };
    void conn;
    return { ok: true, principal: p };
  }

  async check(conn: object, req: Pick<WireMessage, 'method' | 'url' | 'header'>, log?: Logger): Promise<RtspAuthResult> {
    const header = req.header('Authorization');
    if (header === null) return this.#challenge(conn, 'no credentials');
    const a = parseAuthorization(header);
    if (a?.scheme === 'basic') {
      if (!this.#creds.rtspBasic) return this.#challenge(conn, 'Basic is off (auth.rtspBasic); use Digest');
      const b = parseBasic(a.rest);
      const p = b ? await this.#creds.verifyPassword(b.user, b.password) : null;
      if (!p) {
        log?.info({ user: b?.user ?? null }, 'rtsp: wrong user or password (Basic)');
        return this.#challenge(conn, 'wrong user or password');
      }
      return this.#allow(p, conn);
    }
    if (a?.scheme !== 'digest') return this.#challenge(conn, `unsupported scheme ${a?.scheme ?? '(none)'}`);
    const d = parseAuthParams(a.rest);
    const user = d.get('username');
    const nonce = d.get('nonce');
    const uri = d.get('uri');
    const response = d.get('response')?.toLowerCase();
    const qop = d.get('qop')?.toLowerCase();
    const algorithm = d.get('algorithm');
    if (user === undefined || nonce === undefined || uri === undefined || response === undefined) return this.#challenge(conn, 'incomplete Digest credentials');
    if (d.get('realm') !== this.#creds.realm) return this.#challenge(conn, 'another realm');
    if (algorithm !== undefined && algorithm.toUpperCase() !== 'MD5') return this.#challenge(conn, `algorithm ${algorithm} not supported`);
    if (qop !== undefined && qop !== 'auth') return this.#challenge(conn, `qop ${qop} not supported`);
    if (!req.url || !sameUri(uri, req.url)) return this.#challenge(conn, 'Digest uri is not the request URL');
    const u = this.#creds.digestUser(user);
    const ha1 = u ? u.ha1.toString('hex') : md5(`${user}:${this.#creds.realm}:`); // unknown user: the same work
    let expected: string;
    if (qop === 'auth') {
      const nc = d.get('nc');
      const cnonce = d.get('cnonce');
      if (nc === undefined || cnonce === undefined || !/^[0-9a-fA-F]{8}$/.test(nc)) return this.#challenge(conn, 'qop=auth without nc/cnonce');
      expected = digestResponse({ ha1, nonce, method: req.method ?? '', uri, qop: 'auth', nc, cnonce });
    } else {
      expected = digestResponse({ ha1, nonce, method: req.method ?? '', uri });
    }
    if (!u || !sameText(expected, response)) {
      log?.info({ user }, 'rtsp: wrong user or password (Digest)');
      return this.#challenge(conn, 'wrong user or password');
    }
    // The digest is right; the nonce must be one this connection was given, and fresh.
    const m = this.#nonces.get(conn);
    const last = m?.get(nonce);
    const now = this.#now();
    if (last === undefined) return this.#challenge(conn, 'nonce not issued on this connection', true);
    if (now - last > this.#creds.nonceTtlSec * 1000) {
      m!.delete(nonce);
      return this.#challenge(conn, 'nonce expired', true);
    }
    m!.set(nonce, now);
    return this.#allow(u.principal, conn);
  }
}
