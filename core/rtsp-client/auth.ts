/**
 * Client side of HTTP authentication as RTSP uses it (RFC 2326 §D.1, RFC 7826 §19):
 * Basic (RFC 7617) and Digest (RFC 7616, which obsoletes RFC 2617 and keeps RFC 2069's
 * form without `qop` for old servers). Cameras answer 401 with one or more challenges;
 * the client picks the strongest it supports, and from then on sends credentials with
 * every request (a new nonce count per request for Digest, RFC 7616 §3.4).
 *
 * Pure functions plus one small stateful {@link Authenticator}; no I/O. The challenge
 * text comes from the camera and is untrusted: parsing is bounded and never throws.
 */
import { createHash, randomBytes } from 'node:crypto';

/** A Basic challenge (RFC 7617 §2). */
export interface BasicChallenge {
  scheme: 'basic';
  realm: string | null;
}

/** A Digest challenge (RFC 7616 §3.3). Parameter names are matched case-insensitively. */
export interface DigestChallenge {
  scheme: 'digest';
  realm: string;
  nonce: string;
  opaque: string | null;
  /** As the server wrote it, upper-cased (`MD5`, `MD5-SESS`, `SHA-256`, `SHA-256-SESS`, ...); `MD5` when absent. */
  algorithm: string;
  /** `qop` options offered (`auth`, `auth-int`), lower-cased; empty for an RFC 2069 challenge. */
  qop: string[];
  /** `stale=true`: the nonce expired but the credentials were right (RFC 7616 §3.3). */
  stale: boolean;
  /** `userhash=true` (RFC 7616 §3.4.4). */
  userhash: boolean;
  /** `charset=UTF-8` (RFC 7616 §3.3). */
  utf8: boolean;
}

export type Challenge = BasicChallenge | DigestChallenge;

/** Digest algorithms this client computes, strongest first (RFC 7616 §3.3: the client uses the first it supports in its own order of preference). */
const DIGEST_ALGORITHMS = ['SHA-256', 'SHA-256-SESS', 'MD5', 'MD5-SESS'] as const;
type DigestAlgorithm = (typeof DIGEST_ALGORITHMS)[number];

/** A challenge header longer than this is not parsed (a hostile camera). */
const MAX_CHALLENGE = 8192;

/**
 * Splits `WWW-Authenticate` values into challenges (RFC 9110 §11.6.1): one header may
 * hold several (`Digest realm="a", nonce="b", Basic realm="a"`), and a server may send
 * several headers. Unknown schemes and Digest challenges without a nonce or realm are
 * left out; quoted strings may contain commas and escaped quotes.
 */
export function parseChallenges(values: readonly string[]): Challenge[] {
  const out: Challenge[] = [];
  for (const value of values) {
    if (value.length > MAX_CHALLENGE) continue;
    let scheme: string | null = null;
    let params = new Map<string, string>();
    const flush = () => {
      if (scheme === null) return;
      const c = toChallenge(scheme, params);
      if (c) out.push(c);
      scheme = null;
      params = new Map();
    };
    // Tokens: `scheme`, `name=token`, `name="quoted"`, separated by commas/whitespace.
    const re = /\s*(?:([A-Za-z0-9!#$%&'*+.^_`|~-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,"]*)|([A-Za-z0-9!#$%&'*+.^_`|~-]+)(?:\s+[A-Za-z0-9+/._~-]+=*(?=\s*(?:,|$)))?|,)/gy;
    let pos = 0;
    while (pos < value.length) {
      re.lastIndex = pos;
      const m = re.exec(value);
      if (!m || m[0].length === 0) break;
      pos = re.lastIndex;
      if (m[1] !== undefined) {
        if (scheme === null) continue; // a parameter before any scheme
        const raw = m[2]!;
        const v = raw.startsWith('"') ? raw.slice(1, -1).replace(/\\(.)/g, '$1') : raw;
        const k = m[1].toLowerCase();
        if (!params.has(k)) params.set(k, v);
      } else if (m[3] !== undefined) {
        flush();
        scheme = m[3].toLowerCase();
      }
    }
    flush();
  }
  return out;
}

function toChallenge(scheme: string, p: Map<string, string>): Challenge | null {
  if (scheme === 'basic') return { scheme: 'basic', realm: p.get('realm') ?? null };
  if (scheme !== 'digest') return null;
  const nonce = p.get('nonce');
  const realm = p.get('realm');
  if (nonce === undefined || realm === undefined) return null;
  return {
    scheme: 'digest',
    realm,
    nonce,
    opaque: p.get('opaque') ?? null,
    algorithm: (p.get('algorithm') ?? 'MD5').toUpperCase(),
    qop: (p.get('qop') ?? '')
      .split(',')
      .map((q) => q.trim().toLowerCase())
      .filter(Boolean),
    stale: (p.get('stale') ?? '').toLowerCase() === 'true',
    userhash: (p.get('userhash') ?? '').toLowerCase() === 'true',
    utf8: (p.get('charset') ?? '').toLowerCase() === 'utf-8',
  };
}

/** `Basic base64(user:password)` (RFC 7617 §2; UTF-8, as RFC 7617 §2.1 recommends). */
export function basicAuthorization(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`, 'utf8').toString('base64')}`;
}

function isSupported(algorithm: string): algorithm is DigestAlgorithm {
  return (DIGEST_ALGORITHMS as readonly string[]).includes(algorithm);
}

/** H() of an algorithm (RFC 7616 §3.4.2): lower-case hex of MD5 or SHA-256, strings as UTF-8. */
function hashOf(algorithm: DigestAlgorithm): (data: string | Buffer) => string {
  const name = algorithm.startsWith('SHA-256') ? 'sha256' : 'md5';
  return (data: string | Buffer) => (typeof data === 'string' ? createHash(name).update(data, 'utf8') : createHash(name).update(data)).digest('hex');
}

export interface DigestInput {
  /** `MD5`, `MD5-sess`, `SHA-256`, `SHA-256-sess` (any case). */
  algorithm: string;
  username: string;
  password: string;
  realm: string;
  nonce: string;
  method: string;
  /** The request-target as sent (for RTSP the absolute request URL). */
  uri: string;
  /** `auth`, `auth-int`, or null for the RFC 2069 form (no qop, nc or cnonce). */
  qop: 'auth' | 'auth-int' | null;
  /** Nonce count (1 for the first request with this nonce). */
  nc: number;
  cnonce: string;
  /** The request body, for `auth-int`. */
  body?: Buffer;
}

/** `nc` as sent: 8 lower-case hex digits (RFC 7616 §3.4). */
export function formatNc(nc: number): string {
  return (nc >>> 0).toString(16).padStart(8, '0');
}

/**
 * The `response` value (RFC 7616 §3.4.1-3.4.3; RFC 2617 §3.2.2.1 for the form without
 * qop): `KD(H(A1), nonce:nc:cnonce:qop:H(A2))`, with A1 = `user:realm:password`
 * (for `-sess`: `H(user:realm:password):nonce:cnonce`) and A2 = `method:uri`
 * (`auth-int`: `method:uri:H(body)`). Null for an algorithm it does not compute.
 */
export function digestResponse(d: DigestInput): string | null {
  const alg = d.algorithm.toUpperCase();
  if (!isSupported(alg)) return null;
  const H = hashOf(alg);
  let ha1 = H(`${d.username}:${d.realm}:${d.password}`);
  if (alg.endsWith('-SESS')) ha1 = H(`${ha1}:${d.nonce}:${d.cnonce}`);
  const a2 = d.qop === 'auth-int' ? `${d.method}:${d.uri}:${H(d.body ?? Buffer.alloc(0))}` : `${d.method}:${d.uri}`;
  const ha2 = H(a2);
  if (d.qop === null) return H(`${ha1}:${d.nonce}:${ha2}`);
  return H(`${ha1}:${d.nonce}:${formatNc(d.nc)}:${d.cnonce}:${d.qop}:${ha2}`);
}

/** A quoted-string (RFC 9110 §5.6.4): `"` and `\` escaped. */
const quote = (s: string) => `"${s.replace(/(["\\])/g, '\\$1')}"`;

/**
 * The `Authorization` value answering a Digest challenge (RFC 7616 §3.4). The username
 * goes as `username*` (RFC 8187 encoding, §3.4.4) when it cannot be a quoted string in
 * ASCII, and hashed when the server asked for `userhash`. `qop` is `auth` when offered,
 * else `auth-int` when that is all that is offered, else absent (RFC 2069 servers).
 */
export function digestAuthorization(c: DigestChallenge, o: { username: string; password: string; method: string; uri: string; nc: number; cnonce: string; body?: Buffer }): string | null {
  const alg = c.algorithm;
  if (!isSupported(alg)) return null;
  const qop = c.qop.includes('auth') ? 'auth' : c.qop.includes('auth-int') ? 'auth-int' : null;
  if (c.qop.length > 0 && qop === null) return null; // only unknown qop options offered
  const response = digestResponse({ algorithm: alg, username: o.username, password: o.password, realm: c.realm, nonce: c.nonce, method: o.method, uri: o.uri, qop, nc: o.nc, cnonce: o.cnonce, body: o.body });
  if (response === null) return null;
  const parts: string[] = [];
  if (c.userhash) parts.push(`username=${quote(hashOf(alg)(`${o.username}:${c.realm}`))}`);
  else if (/^[\x20-\x7e]*$/.test(o.username)) parts.push(`username=${quote(o.username)}`);
  else parts.push(`username*=UTF-8''${encodeURIComponent(o.username)}`);
  parts.push(`realm=${quote(c.realm)}`, `nonce=${quote(c.nonce)}`, `uri=${quote(o.uri)}`);
  // The algorithm token as the server spelled it matters to some servers; our spelling is RFC 7616's.
  if (alg !== 'MD5' || c.qop.length > 0) parts.push(`algorithm=${alg.replace('-SESS', '-sess')}`);
  parts.push(`response=${quote(response)}`);
  if (c.opaque !== null) parts.push(`opaque=${quote(c.opaque)}`);
  if (qop !== null) parts.push(`qop=${qop}`, `nc=${formatNc(o.nc)}`, `cnonce=${quote(o.cnonce)}`);
  if (c.userhash) parts.push('userhash=true');
  return `Digest ${parts.join(', ')}`;
}

/** The challenge to answer: Digest with the strongest supported algorithm, else Basic; null when none is usable. */
export function pickChallenge(challenges: readonly Challenge[]): Challenge | null {
  let best: DigestChallenge | null = null;
  let bestRank = Infinity;
  for (const c of challenges) {
    if (c.scheme !== 'digest' || !isSupported(c.algorithm)) continue;
    if (c.qop.length > 0 && !c.qop.includes('auth') && !c.qop.includes('auth-int')) continue;
    const rank = DIGEST_ALGORITHMS.indexOf(c.algorithm as DigestAlgorithm);
    if (rank < bestRank) {
      best = c;
      bestRank = rank;
    }
  }
  return best ?? challenges.find((c) => c.scheme === 'basic') ?? null;
}

/** What to do with a 401: retry with (new) credentials, or give up. */
export type ChallengeVerdict = 'retry' | 'refused';

/**
 * Credentials for one connection: answers challenges and signs each request. After
 * the first 401 every request carries credentials (for Digest with the nonce count
 * advancing per request). A 401 to a request that carried credentials is final unless
 * it says the nonce was stale, which is retried once (RFC 7616 §3.3).
 */
export class Authenticator {
  readonly #user: string;
  readonly #password: string;
  readonly #cnonce: () => string;
  #challenge: Challenge | null = null;
  #nc = 0;

  constructor(user: string, password: string, opts: { cnonce?: () => string } = {}) {
    this.#user = user;
    this.#password = password;
    this.#cnonce = opts.cnonce ?? (() => randomBytes(16).toString('hex'));
  }

  /** The scheme in use (`basic`, `digest`), or null before any challenge. */
  get scheme(): 'basic' | 'digest' | null {
    return this.#challenge?.scheme ?? null;
  }

  /**
   * Takes the challenges of a 401. `sentCredentials`: the refused request carried an
   * Authorization; `staleRetried`: a stale-nonce retry was already made for it.
   */
  challenge(challenges: readonly Challenge[], sentCredentials: boolean, staleRetried: boolean): ChallengeVerdict {
    const c = pickChallenge(challenges);
    if (c === null) return 'refused';
    if (sentCredentials) {
      const stale = c.scheme === 'digest' && c.stale;
      if (!stale || staleRetried) return 'refused';
    }
    if (c.scheme === 'digest' && (this.#challenge?.scheme !== 'digest' || this.#challenge.nonce !== c.nonce)) this.#nc = 0;
    this.#challenge = c;
    return 'retry';
  }

  /** The Authorization value for one request, or null before any challenge. Each call with Digest uses the next nonce count. */
  authorization(method: string, uri: string, body?: Buffer): string | null {
    const c = this.#challenge;
    if (c === null) return null;
    if (c.scheme === 'basic') return basicAuthorization(this.#user, this.#password);
    this.#nc++;
    return digestAuthorization(c, { username: this.#user, password: this.#password, method, uri, nc: this.#nc, cnonce: this.#cnonce(), body });
  }
}
