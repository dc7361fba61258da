/**
 * Who may use camtap's HTTP API (and, through {@link Credentials}, its RTSP server: see
 * core/serve/rtsp-auth.ts). The config's `auth` block lists users (HTTP Basic, RTSP
 * Digest) and API tokens (`Authorization: Bearer`), each with a role; the environment
 * variable `CAMTAP_ADMIN_TOKEN` adds one admin token (for scripts and first set-up).
 *
 * Roles are ordered viewer < operator < admin. Each route declares the role it needs in
 * `config.role`; without one, GET/HEAD need viewer, other methods operator, and
 * everything under /api/config admin. `public` routes (the liveness probe
 * /api/health, swagger-ui's static files) need nothing.
 *
 * Answers: no or unknown credentials are 401 with `WWW-Authenticate` (RFC 9110 §11.6.1;
 * `Bearer` per RFC 6750 §3, `Basic` per RFC 7617 §2); valid credentials with a role
 * too low are 403. Neither body carries data, only the catalog's `{error, message}`.
 *
 * `?access_token=<token>` is taken on GET/HEAD for what a browser loads by URL alone (a
 * `<video src>`, an `<a download>`): it is stripped from the query before the route sees
 * it and from the request log, but it does end up in browser history and in any proxy's
 * access log, so docs/API.md advises short-lived viewer tokens for it.
 *
 * Secrets are compared in constant time: tokens and plain passwords as SHA-256 digests
 * (equal lengths, {@link timingSafeEqual}), scrypt hashes by recomputing them. A
 * successful scrypt check is remembered for a few minutes (keyed by a digest of user
 * and password), since Basic sends the password with every request and scrypt is slow
 * on purpose.
 *
 * Without an `auth` block the API is open (today's behaviour) and camtap serve keeps it
 * on loopback: {@link apiListenHost}, and startHttpApi refuses a non-loopback address
 * with CAMTAP_ERR_AUTH_REQUIRED.
 */
import { createHash, randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../config.js';
import type { Logger } from '../contracts/logger.js';
import { CamtapError } from '../errors.js';
import type { ErrorBody } from './http-errors.js';

/** A role, lowest first. */
export type Role = 'viewer' | 'operator' | 'admin';
/** What a route needs: a role, or nothing (`public`). */
export type RouteRole = Role | 'public';

export const ROLES: readonly Role[] = ['viewer', 'operator', 'admin'];
const RANK: Record<RouteRole, number> = { public: -1, viewer: 0, operator: 1, admin: 2 };

/** Whether `have` is at least `need`. */
export function roleAtLeast(have: Role, need: RouteRole): boolean {
  return RANK[have] >= RANK[need];
}

/** Who a request or RTSP connection authenticated as. */
export interface Principal {
  name: string;
  role: Role;
  /** `open`: the API runs without `auth` (every request is admin, as before auth existed). */
  via: 'token' | 'basic' | 'digest' | 'open';
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The role the route needs (core/api/auth.ts); default GET viewer, others operator, /api/config admin. */
    role?: RouteRole;
  }
  interface FastifyRequest {
    /** Set by the auth hook before the handler runs (null only on routes that need nothing). */
    principal: Principal | null;
  }
}

type AuthConfig = NonNullable<Config['auth']>;

const OPEN: Principal = Object.freeze({ name: 'anonymous', role: 'admin', via: 'open' });

function sha256(s: string | Buffer): Buffer {
  return createHash('sha256').update(s).digest();
}

function scryptAsync(password: string, salt: Buffer, keylen: number, o: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => scryptCb(password, salt, keylen, o, (e, k) => (e ? reject(e) : resolve(k))));
}

/** Memory scrypt needs for N (r = 8), with room (node refuses above `maxmem`). */
function scryptOptions(N: number): ScryptOptions {
  return { N, r: 8, p: 1, maxmem: 256 * N * 8 + (1 << 20) };
}

interface ScryptHash {
  N: number;
  salt: Buffer;
  hash: Buffer;
}

/** `scrypt$N$salt$hash` (base64); null when malformed or N is not a power of two in 2^10..2^20. */
export function parseScryptHash(s: string): ScryptHash | null {
  const m = /^scrypt\$(\d{4,8})\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/.exec(s);
  if (!m) return null;
  const N = Number(m[1]);
  if (N < 1024 || N > 1 << 20 || (N & (N - 1)) !== 0) return null;
  const salt = Buffer.from(m[2]!, 'base64');
  const hash = Buffer.from(m[3]!, 'base64');
  if (salt.length < 8 || hash.length < 16) return null;
  return { N, salt, hash };
}

/** A `passwordHash` for the config: `scrypt$N$salt$hash` (16-byte salt, 32-byte key, r=8, p=1). */
export async function hashPassword(password: string, N = 16384): Promise<string> {
  const salt = randomBytes(16);
  const key = await scryptAsync(password, salt, 32, scryptOptions(N));
  return `scrypt$${N}$${salt.toString('base64')}$${key.toString('base64')}`;
}

/** A `tokenHash` for the config: `sha256:<hex>`. */
export function hashToken(token: string): string {
  return `sha256:${sha256(token).toString('hex')}`;
}

/** A new random API token (32 bytes, base64url: 43 characters). */
export function newToken(): string {
  return randomBytes(32).toString('base64url');
}

/** RTSP/HTTP Digest's HA1 for MD5 (RFC 2617 §3.2.2.2): hex MD5(user:realm:password). */
export function digestHa1(user: string, realm: string, password: string): string {
  return createHash('md5').update(`${user}:${realm}:${password}`).digest('hex');
}

interface UserEntry {
  name: string;
  role: Role;
  /** SHA-256 of a plain password. */
  plain: Buffer | null;
  scrypt: ScryptHash | null;
  /** MD5(name:realm:password), for RTSP Digest; null when only a scrypt hash is known. */
  ha1: Buffer | null;
}

interface TokenEntry {
  name: string;
  role: Role;
  hash: Buffer;
}

const VERIFIED_TTL_MS = 5 * 60_000;
const VERIFIED_MAX = 256;

/**
 * The users and tokens of the config (plus `CAMTAP_ADMIN_TOKEN`), and their checks.
 * Shared by the HTTP API and the RTSP server, so one user list serves both.
 */
export class Credentials {
  /** False without an `auth` block and without CAMTAP_ADMIN_TOKEN: everything is open. */
  readonly enabled: boolean;
  readonly realm: string;
  /** RTSP takes Basic too (auth.rtspBasic). */
  readonly rtspBasic: boolean;
  readonly nonceTtlSec: number;
  readonly #users = new Map<string, UserEntry>();
  readonly #tokens: TokenEntry[] = [];
  /** Digest of user + password -> expiry, for scrypt users (see the file comment). */
  readonly #verified = new Map<string, number>();

  /**
   * @throws CamtapError CAMTAP_ERR_CONFIG for a duplicate user name, a malformed hash, or a
   * CAMTAP_ADMIN_TOKEN shorter than 16 characters.
   */
  constructor(auth: AuthConfig | null | undefined, env: NodeJS.ProcessEnv = process.env) {
    const envToken = env.CAMTAP_ADMIN_TOKEN;
    this.enabled = auth != null || (envToken !== undefined && envToken !== '');
    this.realm = auth?.realm ?? 'camtap';
    this.rtspBasic = auth?.rtspBasic ?? false;
    this.nonceTtlSec = auth?.nonceTtlSec ?? 300;
    const bad = (key: string, reason: string) => new CamtapError('CAMTAP_ERR_CONFIG', { file: '(config)', key, reason });
    (auth?.users ?? []).forEach((u, i) => {
      if (this.#users.has(u.name)) throw bad(`auth.users[${i}].name`, `duplicate user "${u.name}"`);
      const scrypt = u.passwordHash !== undefined ? parseScryptHash(u.passwordHash) : null;
      if (u.passwordHash !== undefined && !scrypt) throw bad(`auth.users[${i}].passwordHash`, 'not scrypt$N$salt$hash with N a power of two from 1024 to 1048576');
      const ha1 = u.password !== undefined ? digestHa1(u.name, this.realm, u.password) : (u.rtspHa1 ?? null);
      this.#users.set(u.name, {
        name: u.name,
        role: u.role,
        // A plain password wins over a hash given beside it (both may be set while migrating).
        plain: u.password !== undefined ? sha256(u.password) : null,
        scrypt: u.password !== undefined ? null : scrypt,
        ha1: ha1 ? Buffer.from(ha1.toLowerCase(), 'hex') : null,
      });
    });
    for (const k of auth?.tokens ?? []) {
      this.#tokens.push({ name: k.name, role: k.role, hash: k.token !== undefined ? sha256(k.token) : Buffer.from(k.tokenHash!.slice('sha256:'.length), 'hex') });
    }
    if (envToken !== undefined && envToken !== '') {
      if (envToken.length < 16) throw new CamtapError('CAMTAP_ERR_CONFIG', { file: '(environment)', key: 'CAMTAP_ADMIN_TOKEN', reason: 'at least 16 characters (camtap token prints a random one)' });
      this.#tokens.push({ name: 'CAMTAP_ADMIN_TOKEN', role: 'admin', hash: sha256(envToken) });
    }
  }

  /** Credentials of a config (`config.auth`) and the environment. */
  static fromConfig(config: Pick<Config, 'auth'>, env: NodeJS.ProcessEnv = process.env): Credentials {
    return new Credentials(config.auth, env);
  }

  get hasUsers(): boolean {
    return this.#users.size > 0;
  }

  get hasTokens(): boolean {
    return this.#tokens.length > 0;
  }

  /** The token's holder, or null. Every configured token is compared (no early exit). */
  verifyToken(token: string): Principal | null {
    const h = sha256(token);
    let found: TokenEntry | null = null;
    for (const k of this.#tokens) if (timingSafeEqual(h, k.hash) && !found) found = k;
    return found ? { name: found.name, role: found.role, via: 'token' } : null;
  }

  /** The user, if `password` is theirs (plain or scrypt). */
  async verifyPassword(name: string, password: string, via: 'basic' = 'basic'): Promise<Principal | null> {
    const u = this.#users.get(name);
    const given = sha256(password);
    if (!u) {
      timingSafeEqual(given, given); // the same work as a known user with a plain password
      return null;
    }
    if (u.plain) return timingSafeEqual(given, u.plain) ? { name: u.name, role: u.role, via } : null;
    if (!u.scrypt) return null;
    const key = sha256(Buffer.concat([Buffer.from(name, 'utf8'), Buffer.from([0]), given])).toString('hex');
    const now = Date.now();
    const until = this.#verified.get(key);
    if (until !== undefined && until > now) return { name: u.name, role: u.role, via };
    const s = u.scrypt;
    const k = await scryptAsync(password, s.salt, s.hash.length, scryptOptions(s.N));
    if (!timingSafeEqual(k, s.hash)) return null;
    if (this.#verified.size >= VERIFIED_MAX) this.#verified.delete(this.#verified.keys().next().value!);
    this.#verified.set(key, now + VERIFIED_TTL_MS);
    return { name: u.name, role: u.role, via };
  }

  /** For RTSP Digest: the user's HA1 (binary MD5) and who they are; null for an unknown user or one without HA1. */
  digestUser(name: string): { ha1: Buffer; principal: Principal } | null {
    const u = this.#users.get(name);
    if (!u?.ha1) return null;
    return { ha1: u.ha1, principal: { name: u.name, role: u.role, via: 'digest' } };
  }
}

/** 127.0.0.0/8, ::1, localhost (also IPv4-mapped and bracketed forms). */
export function isLoopbackHost(host: string): boolean {
  const h = host.trim().replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  return /^(::ffff:)?127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/**
 * Where camtap serve's HTTP API listens: `serve.httpHost` when set, else `serve.host` when
 * the API has authentication (or `serve.host` is loopback anyway), else 127.0.0.1.
 */
export function apiListenHost(serve: { host: string; httpHost?: string | undefined }, authEnabled: boolean): string {
  if (serve.httpHost !== undefined) return serve.httpHost;
  return authEnabled || isLoopbackHost(serve.host) ? serve.host : '127.0.0.1';
}

/** What a route needs when it does not say (see the file comment). */
export function defaultRole(method: string, url: string): RouteRole {
  if (/^\/api\/config(\/|$|\?)/.test(url)) return 'admin';
  return method === 'GET' || method === 'HEAD' ? 'viewer' : 'operator';
}

/** `?access_token=` values replaced by `***`, for logs. */
export function redactAccessToken(url: string): string {
  return url.replace(/([?&]access_token=)[^&#]*/gi, '$1***');
}

/** The parts of an `Authorization` header (RFC 9110 §11.6.2): scheme (lower case) and the rest. */
export function parseAuthorization(header: string): { scheme: string; rest: string } | null {
  const m = /^\s*([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*)(?:\s+(.*))?$/s.exec(header);
  return m ? { scheme: m[1]!.toLowerCase(), rest: (m[2] ?? '').trim() } : null;
}

/** user and password of a Basic credential (RFC 7617 §2: base64 of `user:password`, UTF-8). */
export function parseBasic(token68: string): { user: string; password: string } | null {
  if (!/^[A-Za-z0-9+/]+=*$/.test(token68)) return null;
  const text = Buffer.from(token68, 'base64').toString('utf8');
  const colon = text.indexOf(':');
  return colon < 0 ? null : { user: text.slice(0, colon), password: text.slice(colon + 1) };
}

export interface InstallAuthOptions {
  /** Null or disabled: every request is let through as admin (an open API). */
  credentials: Credentials | null;
  log: Logger;
}

/**
 * Installs the checks on `app` (before any route is registered): every route gets its
 * `config.role` (declared or default), every request is authenticated before routing
 * reaches validation, and `req.principal` says who it was. swagger-ui's static files
 * (`/docs/static/...`: the UI's own scripts and styles, no data) are public.
 */
export function installAuth(app: FastifyInstance, opts: InstallAuthOptions): void {
  const creds = opts.credentials?.enabled ? opts.credentials : null;
  const log = opts.log;
  app.decorateRequest('principal', null);
  app.addHook('onRoute', (route) => {
    const method = Array.isArray(route.method) ? route.method[0]! : route.method;
    let role = route.config?.role;
    if (role === undefined) role = /^\/docs\/static\//.test(route.url) ? 'public' : defaultRole(String(method).toUpperCase(), route.url);
    route.config = { ...route.config, role };
  });
  app.addHook('onRequest', async (req, reply) => {
    const queryToken = takeQueryToken(req);
    if (!creds) {
      req.principal = OPEN;
      return;
    }
    const need: RouteRole = req.routeOptions.config?.role ?? defaultRole(req.method, req.url);
    if (need === 'public') return;
    const header = req.headers.authorization;
    let p: Principal | null = null;
    let tried: 'bearer' | 'basic' | 'other' | null = null;
    if (header !== undefined) {
      const a = parseAuthorization(header);
      if (a?.scheme === 'bearer') {
        tried = 'bearer';
        p = creds.verifyToken(a.rest);
      } else if (a?.scheme === 'basic') {
        tried = 'basic';
        const b = parseBasic(a.rest);
        p = b ? await creds.verifyPassword(b.user, b.password) : null;
        if (!p) log.info({ peer: req.ip, user: b?.user ?? null, url: redactAccessToken(req.url) }, 'http api: wrong user or password');
      } else tried = 'other';
    } else if (queryToken !== null && (req.method === 'GET' || req.method === 'HEAD')) {
      tried = 'bearer';
      p = creds.verifyToken(queryToken);
    }
    if (!p) return deny401(req, reply, creds, tried);
    if (!roleAtLeast(p.role, need)) return deny403(req, reply, p, need);
    req.principal = p;
  });
}

/** Removes `access_token` from the parsed query (routes refuse unknown parameters) and returns it. */
function takeQueryToken(req: FastifyRequest): string | null {
  const q = req.query as Record<string, unknown> | undefined;
  if (!q || typeof q !== 'object' || !Object.hasOwn(q, 'access_token')) return null;
  const v = q.access_token;
  delete q.access_token;
  return typeof v === 'string' && v !== '' ? v : null;
}

function deny401(req: FastifyRequest, reply: FastifyReply, creds: Credentials, tried: 'bearer' | 'basic' | 'other' | null): FastifyReply {
  const realm = `realm="${creds.realm}"`;
  const challenges = [`Bearer ${realm}${tried === 'bearer' ? ', error="invalid_token"' : ''}`];
  // A Basic challenge makes a browser prompt for a password: not for scripts holding a
  // token, nor for the console's own requests (X-Requested-With).
  if (creds.hasUsers && tried !== 'bearer' && req.headers['x-requested-with'] === undefined) challenges.push(`Basic ${realm}, charset="UTF-8"`);
  const reason = tried === null ? 'authentication required: send Authorization: Bearer <token> or HTTP Basic credentials (docs/API.md)' : 'invalid credentials';
  const e = new CamtapError('CAMTAP_ERR_UNAUTHORIZED', { reason });
  return reply.code(401).header('www-authenticate', challenges).header('cache-control', 'no-store').type('application/json; charset=utf-8').send({ error: e.code, message: e.message } satisfies ErrorBody);
}

function deny403(req: FastifyRequest, reply: FastifyReply, p: Principal, need: RouteRole): FastifyReply {
  const e = new CamtapError('CAMTAP_ERR_FORBIDDEN', { role: p.role, action: `${req.method} ${req.routeOptions.url ?? req.url.split('?')[0]}`, need });
  return reply.code(403).header('cache-control', 'no-store').type('application/json; charset=utf-8').send({ error: e.code, message: e.message } satisfies ErrorBody);
}

/**
 *   GET /api/auth/me   who the request authenticated as: {name, role, via, auth}
 *
 * The console asks it to show only the controls the role may use.
 */
export const authRoutes: FastifyPluginAsync<{ credentials: Credentials | null }> = async (app, opts) => {
  const enabled = opts.credentials?.enabled === true;
  app.get(
    '/auth/me',
    {
      config: { role: 'viewer' },
      schema: {
        tags: ['auth'],
        description: 'Who the request authenticated as, and its role. `auth` is false when the API runs without an `auth` block (open, loopback only).',
        querystring: { type: 'object', additionalProperties: false, properties: {} },
        response: {
          200: {
            type: 'object',
            required: ['name', 'role', 'via', 'auth'],
            properties: {
              name: { type: 'string' },
              role: { type: 'string', enum: [...ROLES] },
              via: { type: 'string', enum: ['token', 'basic', 'digest', 'open'] },
              auth: { type: 'boolean' },
            },
          },
        },
      },
    },
    async (req) => ({ ...(req.principal ?? OPEN), auth: enabled }),
  );
};

/** Reads the first line of a stream (a password piped to `camtap passwd`). */
async function firstLine(input: NodeJS.ReadableStream): Promise<string> {
  let text = '';
  for await (const chunk of input) {
    text += typeof chunk === 'string' ? chunk : (chunk as Buffer).toString('utf8');
    if (text.includes('\n')) break;
  }
  return text.split(/\r?\n/)[0]!;
}

/**
 * `camtap token NAME [ROLE]`: a new random token and its config entry (only the hash goes
 * in the file). `camtap passwd NAME [ROLE]`: a user entry for the password read from
 * standard input, with its scrypt hash and the RTSP Digest HA1 for `realm`. Returns the
 * text to print.
 * @throws CamtapError CAMTAP_ERR_USAGE for a missing name, a bad role or an empty password.
 */
export async function authCommand(cmd: 'token' | 'passwd', args: string[], opts: { realm: string; input: NodeJS.ReadableStream }): Promise<string> {
  const [name, roleArg] = args;
  const usage = cmd === 'token' ? 'camtap token NAME [viewer|operator|admin]' : 'echo PASSWORD | camtap passwd NAME [viewer|operator|admin]';
  if (!name || !/^[^:\s"\\]+$/.test(name)) throw new CamtapError('CAMTAP_ERR_USAGE', { reason: `${usage}: a name without spaces, quotes or colons` });
  const role = (roleArg ?? 'viewer') as Role;
  if (!ROLES.includes(role)) throw new CamtapError('CAMTAP_ERR_USAGE', { reason: `${usage}: role "${roleArg}" is not viewer, operator or admin` });
  if (cmd === 'token') {
    const token = newToken();
    return [
      `# The token (give it to the client; camtap keeps only its hash):`,
      `#   ${token}`,
      `# Add to the config under auth.tokens:`,
      `  - name: ${name}`,
      `    role: ${role}`,
      `    tokenHash: ${hashToken(token)}`,
    ].join('\n');
  }
  const password = await firstLine(opts.input);
  if (!password) throw new CamtapError('CAMTAP_ERR_USAGE', { reason: `${usage}: no password on standard input` });
  return [
    `# Add to the config under auth.users (rtspHa1 is for RTSP Digest with realm "${opts.realm}"):`,
    `  - name: ${name}`,
    `    role: ${role}`,
    `    passwordHash: ${await hashPassword(password)}`,
    `    rtspHa1: ${digestHa1(name, opts.realm, password)}`,
  ].join('\n');
}
