/**
 * Checks on a request before the HTTP/ONVIF proxy forwards anything to a camera. The input
 * is hostile: a request whose framing two parsers could read differently (request
 * smuggling, RFC 9112 §6.3 and §11.2) is refused, never "fixed", and the camera sees
 * nothing of it. Node's parser (llhttp, strict) already refuses Content-Length together
 * with Transfer-Encoding, repeated Content-Length, bad chunk sizes and bare LF; these
 * checks stand on their own anyway, for a server started with `insecureHTTPParser` and for
 * what llhttp lets through (repeated Host, Transfer-Encoding on HTTP/1.0). Pure functions.
 */

/** Where a request goes: one of ours (camera alias + the camera-side target), not ours, or refused. */
export type ProxyRoute =
  | { kind: 'camera'; alias: string; /** origin-form target on the camera: `/path?query` */ target: string }
  | { kind: 'not-ours' }
  | { kind: 'bad'; status: 400 | 404; reason: string };

/** The prefix of proxied paths: `/cam/<alias>/<rest>`. */
export const CAM_PREFIX = '/cam/';

/** `.`/`..` segments, raw or percent-encoded (RFC 3986 §3.3, §5.2.4): refused, not resolved. */
function hasDotSegment(path: string): boolean {
  for (const seg of path.split('/')) {
    if (seg.length > 6 || seg.length === 0) continue;
    const s = seg.replace(/%2e/gi, '.');
    if (s === '.' || s === '..') return true;
  }
  return false;
}

/** Splits an absolute-form target (RFC 9112 §3.2.2) into authority and origin-form, or null. */
function splitAbsolute(url: string): { authority: string; origin: string } | null {
  const m = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/([^/?#]*)(.*)$/s.exec(url);
  if (!m) return null;
  const rest = m[2]!;
  return { authority: m[1]!.toLowerCase(), origin: rest.startsWith('/') ? rest : '/' + rest };
}

/** The origin-form target's path must be plain: no dot segments, backslashes or fragments. */
function checkTarget(target: string): string | null {
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  if (path.includes('\\')) return 'backslash in path';
  if (target.includes('#')) return 'fragment in request-target';
  if (hasDotSegment(path)) return 'dot segment (. or ..) in path';
  return null;
}

/**
 * Maps a request-target to a camera. `ourAuthorities` are the `host:port` spellings that
 * name camtap itself: an absolute-form target (a forward-proxy request) naming anything
 * else is refused with 400 whatever its path, so camtap is never an open proxy.
 *
 * - `prefix` mode (`dedicatedAlias` null): `/cam/<alias>/<rest>` -> camera `/<rest>`;
 *   other paths are not ours.
 * - dedicated mode: every path is the one camera's, unchanged (a port per camera, for VMSs
 *   that only take host:port and for HTTP Digest, whose response hash covers the
 *   request-target, RFC 7616 §3.4.1, so the path must reach the camera as the VMS sent it).
 */
export function routeRequest(url: string, ourAuthorities: readonly string[], dedicatedAlias: string | null = null): ProxyRoute {
  let origin = url;
  if (!url.startsWith('/')) {
    if (url === '*') return dedicatedAlias ? { kind: 'bad', status: 400, reason: 'asterisk-form request-target' } : { kind: 'not-ours' };
    const abs = splitAbsolute(url);
    if (!abs) return { kind: 'bad', status: 400, reason: 'request-target is neither origin-form nor absolute-form' };
    if (!ourAuthorities.includes(abs.authority)) return { kind: 'bad', status: 400, reason: 'absolute-form request-target names another host (camtap is not a forward proxy)' };
    origin = abs.origin;
  }
  if (dedicatedAlias !== null) {
    const bad = checkTarget(origin);
    return bad ? { kind: 'bad', status: 400, reason: bad } : { kind: 'camera', alias: dedicatedAlias, target: origin };
  }
  if (!(origin.startsWith(CAM_PREFIX) || origin === '/cam' || origin.startsWith('/cam?'))) return { kind: 'not-ours' };
  const after = origin.slice(CAM_PREFIX.length);
  const end = after.search(/[/?]/);
  const rawAlias = end < 0 ? after : after.slice(0, end);
  let rest = end < 0 ? '/' : after.slice(end);
  if (rest.startsWith('?')) rest = '/' + rest;
  let alias: string;
  try {
    alias = decodeURIComponent(rawAlias);
  } catch {
    return { kind: 'bad', status: 400, reason: 'camera alias is not valid percent-encoding' };
  }
  if (!alias) return { kind: 'bad', status: 404, reason: 'no camera alias in path (expected /cam/<alias>/...)' };
  const bad = checkTarget(rest);
  if (bad) return { kind: 'bad', status: 400, reason: bad };
  return { kind: 'camera', alias, target: rest };
}

/** What the body framing of a request allows. */
export type Framing =
  | { ok: true; /** declared length, or null for chunked / no body */ length: number | null; chunked: boolean }
  | { ok: false; status: 400 | 413; reason: string };

/**
 * Checks the message framing of a parsed request from its raw header list (names as sent):
 * RFC 9112 §6.1 (Transfer-Encoding: only `chunked`, only once, not in HTTP/1.0, never
 * with Content-Length), §6.3 (one Content-Length, digits only), §3.2 (exactly one Host in
 * HTTP/1.1). A declared length over `maxBody` is refused before any of the body is read.
 */
export function checkFraming(rawHeaders: readonly string[], httpVersion: string, maxBody: number): Framing {
  const cl: string[] = [];
  const te: string[] = [];
  let hosts = 0;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    if (name === 'content-length') cl.push(rawHeaders[i + 1]!);
    else if (name === 'transfer-encoding') te.push(rawHeaders[i + 1]!);
    else if (name === 'host') hosts++;
  }
  if (httpVersion === '1.1' && hosts !== 1) return { ok: false, status: 400, reason: hosts ? 'more than one Host header' : 'no Host header' };
  if (hosts > 1) return { ok: false, status: 400, reason: 'more than one Host header' };
  if (te.length > 0) {
    if (cl.length > 0) return { ok: false, status: 400, reason: 'both Content-Length and Transfer-Encoding' };
    if (httpVersion !== '1.1') return { ok: false, status: 400, reason: `Transfer-Encoding in an HTTP/${httpVersion} request` };
    if (te.length > 1 || te[0]!.trim().toLowerCase() !== 'chunked') return { ok: false, status: 400, reason: 'Transfer-Encoding other than a single "chunked"' };
    return { ok: true, length: null, chunked: true };
  }
  if (cl.length > 1) return { ok: false, status: 400, reason: 'more than one Content-Length' };
  if (cl.length === 1) {
    const v = cl[0]!.trim();
    if (!/^\d{1,15}$/.test(v)) return { ok: false, status: 400, reason: 'Content-Length is not a decimal number' };
    const n = Number(v);
    if (n > maxBody) return { ok: false, status: 413, reason: `body of ${n} bytes is over the limit of ${maxBody}` };
    return { ok: true, length: n, chunked: false };
  }
  return { ok: true, length: null, chunked: false };
}
