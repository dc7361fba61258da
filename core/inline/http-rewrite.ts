/**
 * What the HTTP/ONVIF proxy changes in a camera's answers so that a VMS that adopted the
 * camera through camtap keeps talking to camtap: the camera's RTSP URIs (ONVIF
 * GetStreamUri, VAPIX/ISAPI stream URLs) become `${rtspBase}/<alias>/<path>` (camtap's RTSP
 * server proxies `/<alias>/<anything>` to `rtsp://camera/<anything>`), and the camera's
 * HTTP base (ONVIF XAddrs in GetCapabilities/GetServices, GetSnapshotUri, `Location`)
 * becomes camtap's `/cam/<alias>` base. Pure string work, tested on hand-written bodies.
 *
 * Bodies are handled as latin1 text: one char per byte, so any ASCII-compatible charset
 * (UTF-8, ISO-8859-x) comes back byte for byte outside the replaced URIs, which are ASCII.
 */

/** Where one camera's URIs point after rewriting. */
export interface RewriteTarget {
  /** Base URL of the camera's HTTP API as configured, e.g. `http://10.0.0.11:80`. */
  cameraHttp: string;
  /** What replaces the camera's HTTP base: `${httpBase}/cam/<alias>` (or a dedicated port's root). */
  httpPublic: string;
  /** What replaces `rtsp://camera-host[:port]`: `${rtspBase}/<alias>`. */
  rtspPublic: string;
}

/** A compiled rewriter: text in, text out (unchanged when nothing names the camera). */
export type Rewriter = (text: string) => string;

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/** What may follow a URI's authority: a path, query, fragment, or the end of the URI in XML/JSON/text. */
const AUTHORITY_END = `(?=[/?#<>"'\\s&;,)\\]]|$)`;
/** RFC 3986 §3.2.1 userinfo (unreserved / pct-encoded / sub-delims / ":"), kept as the camera gave it. */
const USERINFO = `((?:[A-Za-z0-9\\-._~!$'()*+,;=:]|%[0-9A-Fa-f]{2})*@)?`;

function defaultPort(protocol: string): string {
  return protocol === 'https:' ? '443' : '80';
}

/** `base` with `userinfo` (ending in `@`, or empty) put after its scheme. */
function withUserinfo(base: string, userinfo: string | undefined): string {
  if (!userinfo) return base;
  const i = base.indexOf('://');
  return i < 0 ? base : base.slice(0, i + 3) + userinfo + base.slice(i + 3);
}

/**
 * Builds the rewriter for one camera. RTSP URIs on the camera's host (any port: RTSP is
 * usually 554 while the API is 80) are rewritten; HTTP URIs only when scheme, host, port
 * and base path are the camera's API base, so links to other devices stay as they are.
 * Host names compare case-insensitively (RFC 3986 §6.2.2.1).
 */
export function makeRewriter(t: RewriteTarget): Rewriter {
  const cam = new URL(t.cameraHttp);
  const host = escapeRegex(cam.hostname); // IPv6 keeps its brackets
  const rtspPublic = t.rtspPublic.replace(/\/+$/, '');
  const httpPublic = t.httpPublic.replace(/\/+$/, '');
  const rtsp = new RegExp(`rtsp://${USERINFO}${host}(?::\\d{1,5})?${AUTHORITY_END}`, 'gi');
  const port = cam.port || defaultPort(cam.protocol);
  const portRe = port === defaultPort(cam.protocol) ? `(?::${port})?` : `:${port}`;
  const basePath = escapeRegex(cam.pathname.replace(/\/+$/, ''));
  const scheme = escapeRegex(cam.protocol.slice(0, -1));
  const http = new RegExp(`${scheme}://${USERINFO}${host}${portRe}${basePath}${AUTHORITY_END}`, 'gi');
  return (text: string) => {
    if (text.length === 0) return text;
    return text
      .replace(rtsp, (_m, userinfo: string | undefined) => withUserinfo(rtspPublic, userinfo))
      .replace(http, (_m, userinfo: string | undefined) => withUserinfo(httpPublic, userinfo));
  };
}

/**
 * Whether an answer's body is text the rewriter may change: XML and SOAP (ONVIF), JSON
 * (ISAPI/VAPIX REST), `text/*` (VAPIX CGI parameter lists), JavaScript. Never streams
 * (`text/event-stream`, `multipart/x-mixed-replace` MJPEG) nor binary (snapshots).
 * With no Content-Type at all only a body of declared length is taken (some cameras send
 * SOAP untyped; an untyped endless body is not buffered).
 */
export function isRewritableType(contentType: string | null | undefined, hasLength: boolean): boolean {
  if (!contentType) return hasLength;
  const ct = contentType.toLowerCase();
  if (ct.startsWith('text/event-stream') || ct.startsWith('multipart/')) return false;
  return /^text\/|[/+]xml\b|soap|[/+]json\b|javascript/.test(ct);
}

/** True when a body starts with a UTF-16 or UTF-32 byte order mark: latin1 rewriting would corrupt it. */
export function isWideText(body: Buffer): boolean {
  return body.length >= 2 && ((body[0] === 0xfe && body[1] === 0xff) || (body[0] === 0xff && body[1] === 0xfe));
}

/** Applies `rw` to a body byte-preservingly (latin1 round trip, see the file comment). */
export function rewriteBody(body: Buffer, rw: Rewriter): Buffer {
  if (isWideText(body)) return body;
  const text = body.toString('latin1');
  const out = rw(text);
  return out === text ? body : Buffer.from(out, 'latin1');
}

/**
 * Hop-by-hop fields (RFC 9110 §7.6.1): meaningful for one connection only, so never
 * forwarded. `Proxy-*` belong to camtap, which does not authenticate proxies.
 * `Transfer-Encoding` and `Content-Length` are set anew by whoever frames the body.
 */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** Field names listed in `Connection` values (they are hop-by-hop too, RFC 9110 §7.6.1). */
function connectionTokens(raw: string[]): Set<string> {
  const out = new Set<string>();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() !== 'connection') continue;
    for (const tok of raw[i + 1]!.split(',')) {
      const t = tok.trim().toLowerCase();
      if (t) out.add(t);
    }
  }
  return out;
}

/**
 * The request fields camtap sends to the camera, from the VMS's raw header list (names as
 * sent, repeats kept apart): hop-by-hop removed, `Expect` removed (the body is already
 * read), `Host` left to the proxy (the camera's own authority), `Accept-Encoding: identity`
 * so answers come uncompressed and can be rewritten, `Content-Length` set to the body
 * actually read. Authorization and WS-Security pass untouched: camtap does not terminate
 * the camera's authentication.
 */
export function upstreamRequestHeaders(raw: string[], bodyLength: number, method: string): Record<string, string | string[]> {
  const drop = connectionTokens(raw);
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (HOP_BY_HOP.has(name) || drop.has(name)) continue;
    if (name === 'host' || name === 'expect' || name === 'content-length' || name === 'accept-encoding') continue;
    const v = raw[i + 1]!;
    const prev = out[name];
    if (prev === undefined) out[name] = v;
    else if (name === 'cookie') out[name] = `${prev as string}; ${v}`; // RFC 9110 §5.3 exception: one Cookie line (RFC 6265 §5.4)
    else out[name] = Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  out['accept-encoding'] = 'identity';
  if (bodyLength > 0 || /^(?:POST|PUT|PATCH)$/.test(method)) out['content-length'] = String(bodyLength);
  return out;
}

/**
 * The answer fields camtap sends to the VMS, as a flat `[name, value, ...]` list (repeats
 * such as two `WWW-Authenticate` challenges, MD5 and SHA-256, stay separate): hop-by-hop
 * removed, `Location`/`Content-Location` rewritten to camtap's addresses, and
 * `Content-Length`/`Content-Encoding` dropped when `rebody` (camtap sends a new body).
 */
export function downstreamResponseHeaders(raw: string[], rw: Rewriter, rebody: boolean): string[] {
  const drop = connectionTokens(raw);
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || drop.has(lower)) continue;
    if (rebody && (lower === 'content-length' || lower === 'content-encoding')) continue;
    const v = raw[i + 1]!;
    out.push(name, lower === 'location' || lower === 'content-location' ? rw(v) : v);
  }
  return out;
}
