/**
 * The RTSP `Transport` header (RFC 2326 §12.39, RFC 7826 §18.54): how and where the
 * RTP/RTCP of one SETUP will flow. The SETUP answer's Transport is what tells camtap
 * which UDP ports or interleaved channels carry a stream, before any heuristic.
 */

export interface TransportSpec {
  /** `RTP/AVP`, `RTP/AVP/TCP`, `RTP/AVP/UDP`, `RTP/SAVP`, ... as written, upper-cased. */
  profile: string;
  /** Lower transport: `/TCP` suffix, else UDP (RFC 2326 §12.39 default). */
  lower: 'udp' | 'tcp';
  multicast: boolean;
  /** `client_port=a-b`; a single port `a` gives `[a, a + 1]` (RTCP on the next port). */
  clientPorts: [number, number] | null;
  serverPorts: [number, number] | null;
  /** `interleaved=a-b` channels; a single channel `a` gives `[a, a + 1]`. */
  interleaved: [number, number] | null;
  /** `ssrc=` (hexadecimal per RFC 2326; the first of an RTSP 2.0 `/` list). */
  ssrc: number | null;
  /** `mode=` without quotes, upper-cased (`PLAY`, `RECORD`, or a list `PLAY,RECORD`). */
  mode: string | null;
  /** `destination=` (RFC 2326) or the address of RTSP 2.0 `dest_addr=`. */
  destination: string | null;
  /** `source=` (RFC 2326) or the address of RTSP 2.0 `src_addr=`. */
  source: string | null;
  ttl: number | null;
  /** Multicast `port=a-b`. */
  port: [number, number] | null;
  /** The alternative as written (trimmed). */
  raw: string;
  /** Every parameter, name lower-cased, value unquoted, or `true` for a bare flag. */
  params: Map<string, string | true>;
}

/** Splits on `sep` outside double quotes (`mode="PLAY,RECORD"` stays whole). */
export function splitOutsideQuotes(s: string, sep: string): string[] {
  const out: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '"') quoted = !quoted;
    else if (c === sep && !quoted) {
      out.push(s.slice(start, i));
      start = i + 1;
    }
  }
  out.push(s.slice(start));
  return out;
}

/** `"x"` -> `x`; a value with more quotes (RTSP 2.0 `"a"/"b"` lists) is left as is. */
const unquote = (v: string) => (/^"[^"]*"$/.test(v) ? v.slice(1, -1) : v);

function range(v: string | true | undefined, max: number): [number, number] | null {
  if (typeof v !== 'string') return null;
  const m = /^\s*(\d{1,5})\s*(?:-\s*(\d{1,5}))?\s*$/.exec(v);
  if (!m) return null;
  const a = Number(m[1]);
  const b = m[2] !== undefined ? Number(m[2]) : a + 1;
  if (a > max || b > max) return null;
  return [a, b];
}

/** RTSP 2.0 address: `"host:port"`, `"[v6]:port"`, `":port"` or a bare host. */
function splitAddress(v: string): { host: string | null; port: number | null } {
  const s = unquote(v.trim());
  let m = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(s);
  if (m) return { host: m[1]!, port: m[2] ? Number(m[2]) : null };
  m = /^([^:]*):(\d{1,5})$/.exec(s);
  if (m) return { host: m[1] || null, port: Number(m[2]) };
  return { host: s || null, port: null };
}

function parseSpec(raw: string): TransportSpec | null {
  const parts = splitOutsideQuotes(raw, ';').map((p) => p.trim());
  const profile = (parts[0] ?? '').toUpperCase();
  if (!/^[A-Z0-9_.-]+\/[A-Z0-9_.-]+(\/[A-Z0-9_.-]+)?$/.test(profile)) return null;
  const params = new Map<string, string | true>();
  for (const p of parts.slice(1)) {
    if (!p) continue;
    const eq = p.indexOf('=');
    if (eq < 0) params.set(p.toLowerCase(), true);
    else params.set(p.slice(0, eq).trim().toLowerCase(), unquote(p.slice(eq + 1).trim()));
  }
  const str = (k: string) => {
    const v = params.get(k);
    return typeof v === 'string' ? v : null;
  };
  let destination = str('destination');
  let source = str('source');
  let clientPorts = range(params.get('client_port'), 65535);
  let serverPorts = range(params.get('server_port'), 65535);
  // RTSP 2.0 §18.54: dest_addr/src_addr = "addr:port" ["/" "addr:port"] (RTP then RTCP).
  const dest = str('dest_addr');
  if (dest) {
    const [rtp, rtcp] = dest.split('/').map(splitAddress);
    destination ??= rtp?.host ?? null;
    if (!clientPorts && rtp?.port != null) clientPorts = [rtp.port, rtcp?.port ?? rtp.port + 1];
  }
  const src = str('src_addr');
  if (src) {
    const [rtp, rtcp] = src.split('/').map(splitAddress);
    source ??= rtp?.host ?? null;
    if (!serverPorts && rtp?.port != null) serverPorts = [rtp.port, rtcp?.port ?? rtp.port + 1];
  }
  let ssrc: number | null = null;
  const ssrcText = str('ssrc')?.split('/')[0]?.trim();
  if (ssrcText && /^[0-9a-fA-F]{1,8}$/.test(ssrcText)) ssrc = Number.parseInt(ssrcText, 16) >>> 0;
  const ttlText = str('ttl');
  const ttl = ttlText && /^\d{1,3}$/.test(ttlText) ? Number(ttlText) : null;
  const mode = str('mode');
  return {
    profile,
    lower: profile.endsWith('/TCP') ? 'tcp' : 'udp',
    multicast: params.has('multicast'),
    clientPorts,
    serverPorts,
    interleaved: range(params.get('interleaved'), 255),
    ssrc,
    mode: mode ? mode.replace(/\s+/g, '').toUpperCase() : null,
    destination,
    source,
    ttl,
    port: range(params.get('port'), 65535),
    raw: raw.trim(),
    params,
  };
}

/**
 * Parses a Transport header value into its alternatives (comma-separated; commas
 * inside quoted values such as `mode="PLAY,RECORD"` do not split). An alternative whose
 * profile is not `X/Y[/Z]` is left out; malformed parameters become null fields.
 */
export function parseTransport(header: string): TransportSpec[] {
  const out: TransportSpec[] = [];
  for (const alt of splitOutsideQuotes(header, ',')) {
    if (!alt.trim()) continue;
    const spec = parseSpec(alt);
    if (spec) out.push(spec);
  }
  return out;
}

const hex8 = (n: number) => (n >>> 0).toString(16).toUpperCase().padStart(8, '0');
const pair = (p: [number, number]) => `${p[0]}-${p[1]}`;
const KNOWN = new Set([
  'unicast',
  'multicast',
  'destination',
  'source',
  'interleaved',
  'ttl',
  'port',
  'client_port',
  'server_port',
  'ssrc',
  'mode',
]);

/**
 * Builds one Transport alternative in RFC 2326 order: profile, `unicast`/`multicast`
 * (only when `multicast` is given), destination, source, interleaved, ttl, port,
 * client_port, server_port, ssrc (8 hex digits), mode (quoted, as RFC 2326 writes
 * it), then any other `params` entries.
 */
export function formatTransport(t: Partial<TransportSpec> & { profile: string }): string {
  const out = [t.profile];
  if (t.multicast === true) out.push('multicast');
  else if (t.multicast === false) out.push('unicast');
  if (t.destination) out.push(`destination=${t.destination}`);
  if (t.source) out.push(`source=${t.source}`);
  if (t.interleaved) out.push(`interleaved=${pair(t.interleaved)}`);
  if (t.ttl != null) out.push(`ttl=${t.ttl}`);
  if (t.port) out.push(`port=${pair(t.port)}`);
  if (t.clientPorts) out.push(`client_port=${pair(t.clientPorts)}`);
  if (t.serverPorts) out.push(`server_port=${pair(t.serverPorts)}`);
  if (t.ssrc != null) out.push(`ssrc=${hex8(t.ssrc)}`);
  if (t.mode) out.push(`mode="${t.mode}"`);
  if (t.params) {
    for (const [k, v] of t.params) {
      if (KNOWN.has(k)) continue;
      out.push(v === true ? k : `${k}=${/[;,\s]/.test(v) ? `"${v}"` : v}`);
    }
  }
  return out.join(';');
}
