/**
 * Address and port substitution in captured RTSP and HTTP text, for failover plans: the
 * failed VMS's address becomes camtap's, the VMS's ports become camtap's, and nothing
 * else changes. Pure string functions; the plan builder decides what to substitute.
 *
 * An address is matched only as a whole token: `10.77.0.1` is not inside `10.77.0.11`,
 * `110.77.0.1` or `10.77.0.1.5`; an IPv6 address matches in any of its textual forms
 * (RFC 4291 §2.2: `fd00::1` = `FD00:0:0::1`), bare, in brackets (RFC 3986 §3.2.2) or
 * percent-encoded in a query (`fd00%3A%3A1`).
 */
import { parseIp } from '../wire/packet.js';
import { splitOutsideQuotes } from '../wire/rtsp-transport.js';

/** Where an address occurs in a text: `[start, end)`, and whether its colons were written `%3A`. */
interface Hit {
  start: number;
  end: number;
  encoded: boolean;
}

const isDigit = (c: string | undefined) => c !== undefined && c >= '0' && c <= '9';

function sameBytes(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && a.equals(b);
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Occurrences of the IPv4 address `bytes`: a dotted quad not preceded by a digit or dot and not followed by a digit or `.digit`. */
function ipv4Hits(text: string, bytes: Buffer): Hit[] {
  const out: Hit[] = [];
  const re = /\d{1,3}(?:\.\d{1,3}){3}/g;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const start = m.index;
    const end = start + m[0].length;
    const prev = text[start - 1];
    if (isDigit(prev) || prev === '.') {
      // `1.10.77.0.1`: a longer dotted token; go on from the next character.
      re.lastIndex = start + 1;
      continue;
    }
    if (isDigit(text[end]) || (text[end] === '.' && isDigit(text[end + 1]))) continue;
    const ip = parseIp(m[0]);
    if (ip && ip.version === 4 && sameBytes(ip.bytes, bytes)) out.push({ start, end, encoded: false });
  }
  return out;
}

/**
 * Occurrences of the IPv6 address `bytes`: a maximal run of hex digits, dots and colons
 * (or `%3A`) that parses to the same 16 bytes. A run glued to other letters
 * (`abcfd00::1`) does not parse and so does not match.
 */
function ipv6Hits(text: string, bytes: Buffer): Hit[] {
  const out: Hit[] = [];
  const re = /(?:[0-9A-Fa-f.:]|%3[Aa])+/g;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    let start = m.index;
    let end = start + m[0].length;
    if (!/:|%3[Aa]/.test(m[0])) continue;
    // A run that begins inside a %XX escape (`dest%3Dfd00%3A%3A1`): skip the escape's digits.
    if (text[start - 1] === '%') start += 2;
    // A separator colon before (`host:fd00::1`) or after, or a full stop after, is not part of the address.
    if (text[start] === ':' && text[start + 1] !== ':') start++;
    if (text[end - 1] === '.') end--;
    if (text[end - 1] === ':' && text[end - 2] !== ':') end--;
    if (end <= start) continue;
    const token = text.slice(start, end);
    const encoded = /%3[Aa]/.test(token);
    const ip = parseIp(encoded ? token.replace(/%3[Aa]/g, ':') : token);
    if (ip && ip.version === 6 && sameBytes(ip.bytes, bytes)) out.push({ start, end, encoded });
  }
  return out;
}

/** Occurrences of a host name (not an IP literal): case-insensitive, not inside a longer name. */
function nameHits(text: string, name: string): Hit[] {
  const out: Hit[] = [];
  if (name === '') return out;
  const re = new RegExp(`(?<![A-Za-z0-9.-])${escapeRe(name)}(?![A-Za-z0-9-]|\\.[A-Za-z0-9])`, 'gi');
  for (let m = re.exec(text); m; m = re.exec(text)) out.push({ start: m.index, end: m.index + m[0].length, encoded: false });
  return out;
}

function strip(addr: string): string {
  const a = addr.trim();
  return a.startsWith('[') && a.endsWith(']') ? a.slice(1, -1) : a;
}

function hits(text: string, from: string): Hit[] {
  const f = strip(from);
  const ip = parseIp(f);
  if (!ip) return nameHits(text, f);
  return ip.version === 4 ? ipv4Hits(text, ip.bytes) : ipv6Hits(text, ip.bytes);
}

/** Does `text` hold the address `from` as a whole token (see {@link substituteAddress})? */
export function containsAddress(text: string, from: string): boolean {
  return hits(text, from).length > 0;
}

/**
 * Replaces every whole-token occurrence of the address `from` in `text` by `to`. Brackets
 * follow the replacement's family: an IPv6 `to` put where an IPv4 address was followed
 * by `:port` or stood in a URL authority (`//a:port`, `user@a`) gets brackets (RFC 3986
 * §3.2.2), and an IPv4 `to` replacing a bracketed IPv6 address loses them. In a
 * percent-encoded token the colons of `to` are written `%3A` too.
 */
export function substituteAddress(text: string, from: string, to: string): string {
  const found = hits(text, from);
  if (found.length === 0) return text;
  const dest = strip(to);
  const destV6 = dest.includes(':');
  let out = '';
  let at = 0;
  for (const h of found) {
    let { start, end } = h;
    let rep = h.encoded ? dest.replace(/:/g, '%3A') : dest;
    const bracketed = text[start - 1] === '[' && text[end] === ']';
    if (bracketed && !destV6) {
      start--;
      end++;
    } else if (!bracketed && destV6 && !h.encoded) {
      const authority = text.slice(Math.max(0, start - 2), start) === '//' || text[start - 1] === '@';
      if (authority || (text[end] === ':' && isDigit(text[end + 1]))) rep = `[${rep}]`;
    }
    out += text.slice(at, start) + rep;
    at = end;
  }
  return out + text.slice(at);
}

/** A port number in a text: `[start, end)` of its digits, and why it is taken for a port. */
export interface PortRef {
  start: number;
  end: number;
  port: number;
  /** `param`: the value of a parameter named like a port (`port=5004`, `"rtpPort": 5004`, `<Port>5004</Port>`); `endpoint`: after the address (`10.0.0.5:5004`, `[fd00::5]:5004`). */
  kind: 'param' | 'endpoint';
  /** The parameter's name, for `param`. */
  name?: string;
}

/** Parameter names that hold a port of something other than media (a web, RTSP or management service). */
const SERVICE_PORT = /https?|rtsp|onvif|web|ssh|telnet|ftp|smtp|ntp|dns|snmp|syslog|mqtt/i;

/**
 * Port numbers in `text` that may be the VMS's media ports: values of parameters whose
 * name contains `port` (form and query `name=5004`, JSON `"name": 5004`, XML
 * `<name>5004</name>`), except names of service ports (`http_port`, `rtspPort`), and
 * ports written after the address `address` (`address:5004`). In text order, no overlaps.
 */
export function findPortRefs(text: string, address: string): PortRef[] {
  const refs: PortRef[] = [];
  const add = (start: number, digits: string, kind: PortRef['kind'], name?: string) => {
    const port = Number(digits);
    if (port < 1 || port > 65535) return;
    const end = start + digits.length;
    if (refs.some((r) => r.start < end && start < r.end)) return;
    refs.push({ start, end, port, kind, ...(name !== undefined ? { name } : {}) });
  };
  const named: RegExp[] = [
    // form / query: name=5004
    /(?<![A-Za-z0-9_.[\]-])([A-Za-z0-9_.[\]-]*port[A-Za-z0-9_.[\]-]*)=(\d{1,5})(?![0-9])/gi,
    // JSON: "name": 5004 or "name": "5004"
    /"([^"\\]*port[^"\\]*)"\s*:\s*"?(\d{1,5})(?![0-9])/gi,
    // XML: <ns:name attr>5004</
    /<([A-Za-z0-9_:.-]*port[A-Za-z0-9_.-]*)(?:\s[^>]*)?>\s*(\d{1,5})\s*<\//gi,
  ];
  for (const re of named) {
    for (let m = re.exec(text); m; m = re.exec(text)) {
      const name = m[1]!;
      if (SERVICE_PORT.test(name)) continue;
      const digits = m[2]!;
      add(m.index + m[0].lastIndexOf(digits), digits, 'param', name);
    }
  }
  for (const h of hits(text, address)) {
    let i = h.end;
    if (text[i] === ']') i++;
    if (text[i] !== ':') continue;
    const m = /^\d{1,5}(?![0-9])/.exec(text.slice(i + 1, i + 7));
    if (m) add(i + 1, m[0], 'endpoint');
  }
  return refs.sort((a, b) => a.start - b.start);
}

/** Replaces the ports of `refs` (from {@link findPortRefs} on this same text) that `ports` maps, leaving the others as they are. */
export function substitutePorts(text: string, refs: readonly PortRef[], ports: ReadonlyMap<number, number>): string {
  let out = '';
  let at = 0;
  for (const r of [...refs].sort((a, b) => a.start - b.start)) {
    const to = ports.get(r.port);
    if (to === undefined || r.start < at) continue;
    out += text.slice(at, r.start) + String(to);
    at = r.end;
  }
  return out + text.slice(at);
}


/** Transport parameters a replayed SETUP must not carry (see {@link rewriteTransport}). */
const DROPPED_TRANSPORT_PARAMS = new Set(['ssrc', 'server_port', 'source']);

/**
 * Rewrites a captured SETUP request's `Transport` value (RFC 2326 §12.39) for camtap:
 *
 * - `client_port=a-b` (UDP unicast) becomes `clientPorts`: the camera sends RTP/RTCP to
 *   the port pair camtap binds. A UDP unicast alternative without `client_port` gets one
 *   appended. A single port `client_port=a` stays a single port. TCP (`RTP/AVP/TCP`,
 *   `interleaved=`) and multicast alternatives keep their ports: the channels live on
 *   camtap's own connection, and a multicast group is the camera's.
 * - `destination=` (unicast) becomes `destination`, when given: RFC 2326 §12.39 lets a
 *   server refuse a destination other than the requesting client (it would be a
 *   packet-flood tool), and camtap's SETUP comes from camtap's address.
 * - `ssrc=`, `server_port=` and `source=` are dropped: they name the camera's side of the
 *   captured session (its SSRC and ports, RFC 2326 §12.39 "ssrc", "server_port"), which
 *   the camera chooses afresh for a new session; a camera asked for an SSRC or ports it
 *   cannot give answers 461 Unsupported Transport.
 * - Everything else (`unicast`, `interleaved=`, `mode=`, `ttl=`, `layers=`, `append`,
 *   vendor parameters) is kept as written, in order.
 */
export function rewriteTransport(value: string, opts: { clientPorts?: [number, number]; destination?: string }): string {
  const alts = splitOutsideQuotes(value, ',');
  const out: string[] = [];
  for (const alt of alts) {
    const parts = splitOutsideQuotes(alt, ';');
    const lead = /^\s*/.exec(parts[0] ?? '')![0];
    const profile = (parts[0] ?? '').trim();
    const names = parts.slice(1).map((p) => p.split('=')[0]!.trim().toLowerCase());
    const tcp = /\/TCP$/i.test(profile);
    const multicast = names.includes('multicast');
    const kept: string[] = [profile];
    let sawClientPort = false;
    for (let i = 1; i < parts.length; i++) {
      const p = parts[i]!.trim();
      if (p === '') continue;
      const eq = p.indexOf('=');
      const name = (eq < 0 ? p : p.slice(0, eq)).trim().toLowerCase();
      const val = eq < 0 ? '' : p.slice(eq + 1).trim();
      if (DROPPED_TRANSPORT_PARAMS.has(name)) continue;
      if (name === 'client_port' && opts.clientPorts && !tcp && !multicast) {
        sawClientPort = true;
        const [a, b] = opts.clientPorts;
        kept.push(`${p.slice(0, eq).trim()}=${val.includes('-') ? `${a}-${b}` : `${a}`}`);
        continue;
      }
      if (name === 'destination' && opts.destination !== undefined && !multicast && eq >= 0) {
        const quoted = val.startsWith('"');
        kept.push(`${p.slice(0, eq).trim()}=${quoted ? `"${opts.destination}"` : opts.destination}`);
        continue;
      }
      kept.push(p);
    }
    if (opts.clientPorts && !tcp && !multicast && !sawClientPort) kept.push(`client_port=${opts.clientPorts[0]}-${opts.clientPorts[1]}`);
    out.push(lead + kept.join(';'));
  }
  return out.join(',');
}
