/**
 * Camera URLs as operators write them: `rtsp://user:pass@host:port/path?query`
 * (RFC 2326 §3.2; credentials in the userinfo are a de-facto convention every VMS and
 * ffmpeg accept). The credentials are split off once here: they never go on the wire
 * in a request line, and never into a log line or an error (see {@link redactUrl}).
 */

/** A camera URL split into what the client connects to and what it sends. */
export interface RtspTarget {
  /** Host name or address, IPv6 without brackets. */
  host: string;
  /** Port (554 when absent, RFC 2326 §3.2). */
  port: number;
  /** The URL without userinfo: what goes into request lines and Digest's `uri`. */
  url: string;
  /** Decoded userinfo, or null when the URL has none. */
  user: string | null;
  password: string | null;
}

const USERINFO = /^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/)([^@/?#]*)@/;

/** Query parameters whose values are secrets on some cameras (`?user=admin&password=...`). */
const SECRET_PARAM = /^(pass(word)?|passwd|pwd|pw|token|auth|authorization|key|secret|sig(nature)?)$/i;

function decode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/**
 * Parses an `rtsp://` URL; null when it is not one (other scheme, no host, bad port).
 * The path and query are kept byte for byte (cameras are picky about them).
 */
export function parseRtspUrl(text: string): RtspTarget | null {
  const s = text.trim();
  const m = /^(rtsp):\/\/(?:([^@/?#]*)@)?(\[[0-9a-fA-F:.]+\]|[^:/?#[\]@]+)(?::(\d{1,5}))?([/?#].*)?$/i.exec(s);
  if (!m) return null;
  const port = m[4] !== undefined ? Number(m[4]) : 554;
  if (!(port > 0 && port <= 65535)) return null;
  const hostText = m[3]!;
  const host = hostText.startsWith('[') ? hostText.slice(1, -1) : hostText;
  let user: string | null = null;
  let password: string | null = null;
  if (m[2] !== undefined) {
    const colon = m[2].indexOf(':');
    user = decode(colon < 0 ? m[2] : m[2].slice(0, colon));
    password = colon < 0 ? null : decode(m[2].slice(colon + 1));
  }
  const rest = (m[5] ?? '/').replace(/#.*$/, '');
  const url = `${m[1]!.toLowerCase()}://${hostText}${m[4] !== undefined ? `:${m[4]}` : ''}${rest.startsWith('/') ? rest : `/${rest}`}`;
  return { host, port, url, user, password };
}

/** `url` without userinfo (anything before an `@` in the authority). */
export function stripUserinfo(url: string): string {
  return url.replace(USERINFO, '$1');
}

/**
 * `url` as it may appear in logs and errors: userinfo removed, and the values of query
 * parameters that carry secrets on some cameras replaced by `***`.
 */
export function redactUrl(url: string): string {
  const noUser = stripUserinfo(url);
  const q = noUser.indexOf('?');
  if (q < 0) return noUser;
  const [query, frag] = noUser.slice(q + 1).split('#', 2) as [string, string | undefined];
  const parts = query.split('&').map((kv) => {
    const eq = kv.indexOf('=');
    return eq > 0 && SECRET_PARAM.test(decode(kv.slice(0, eq))) ? `${kv.slice(0, eq)}=***` : kv;
  });
  return `${noUser.slice(0, q)}?${parts.join('&')}${frag !== undefined ? `#${frag}` : ''}`;
}
