/**
 * Translation of the common {@link FilterSpec} into what each kind of tap can apply:
 * a BPF expression (libpcap and tcpdump compile it in the kernel) and a predicate over
 * first-level metadata (file taps, where the pipeline decodes before filtering).
 *
 * Both translations mean the same thing; test/core/capture/filter.test.ts runs every
 * BPF through tcpdump over a real capture and compares the count with the predicate.
 *
 * Semantics (present fields ANDed, list entries ORed):
 * - `hosts`: `ip host A` / `ip net A/len`, or `host A` / `net A/len` for IPv6 (IPv6
 *   addresses already imply ip6). `direction` makes it `src`/`dst`. The `ip` qualifier
 *   keeps ARP out: plain `host A` also matches ARP for A, which a predicate over IP
 *   metadata cannot express, and camtap has no use for ARP.
 * - `ports`: `port N` / `portrange A-B` (TCP, UDP or SCTP, either end).
 * - `protocols`: rtsp -> `tcp port 554 or tcp port 8554` (+ `rtspPorts`); http/onvif ->
 *   `tcp port 80 or tcp port 8080` (+ `httpPorts`); rtp/rtcp -> `udp`, because RTP ports
 *   are negotiated in SETUP (RFC 2326 12.39) and the pipeline classifies them. RTP
 *   interleaved in RTSP (RFC 2326 10.12) rides in the RTSP TCP connection.
 * - `cameras` / `vms`: inventory names resolved to addresses by `resolve`; each is its
 *   own clause, so `cameras` + `vms` keeps the traffic between them.
 * - `raw`: appended as one more clause (BPF only; a predicate ignores it).
 * - A non-empty BPF `F` becomes `(F) or (vlan and (F))`: the same traffic inside one
 *   802.1Q tag (the `vlan` keyword shifts the offsets of what follows it, hence the
 *   repetition). Cooked captures (`-i any`) have no VLAN support: pass `{ vlan: false }`.
 */
import { formatIpv6 } from '../wire/packet.js';
import { isIP } from 'node:net';
import { CamtapError } from '../errors.js';
import type { FilterSpec } from '../contracts/filter.js';

/** Looks an inventory name up: the addresses (or CIDR networks) of a camera or a VMS. */
export type NameResolver = (name: string, kind: 'camera' | 'vms') => string[];

/** The first-level metadata a predicate sees (the pipeline's decode of one packet). */
export interface FilterMeta {
  ipVersion: number;
  srcAddr: string;
  dstAddr: string;
  /** IP protocol number (6 TCP, 17 UDP, 132 SCTP, ...). */
  protocol: number;
  /** 0 when the packet has no ports (not TCP/UDP/SCTP, or a non-first fragment). */
  sport: number;
  dport: number;
}

export type FilterPredicate = (meta: FilterMeta) => boolean;

export interface BpfOptions {
  /** Also match inside one VLAN tag (default true). Must be false on cooked (SLL/SLL2) links. */
  vlan?: boolean;
}

const FIELDS = ['hosts', 'ports', 'protocols', 'direction', 'cameras', 'vms', 'rtspPorts', 'httpPorts', 'raw'] as const;
const PROTOCOLS = ['rtp', 'rtcp', 'rtsp', 'http', 'onvif'] as const;
const RTSP_PORTS = [554, 8554];
const HTTP_PORTS = [80, 8080];

const PROTO_TCP = 6;
const PROTO_UDP = 17;
const PROTO_SCTP = 132;

function fail(field: string, reason: string): never {
  throw new CamtapError('CAMTAP_ERR_FILTER', { field, reason });
}

function show(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

function stringList(spec: Record<string, unknown>, key: string): string[] | undefined {
  const v = spec[key];
  if (v === undefined) return undefined;
  if (!Array.isArray(v)) fail(key, `must be a list, got ${show(v)}`);
  return v.map((x, i) => {
    if (typeof x !== 'string' || x.trim() === '') fail(`${key}[${i}]`, `${show(x)} is not a name`);
    return x.trim();
  });
}

function isPort(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= 65535;
}

function portList(spec: Record<string, unknown>, key: string): number[] | undefined {
  const v = spec[key];
  if (v === undefined) return undefined;
  if (!Array.isArray(v)) fail(key, `must be a list, got ${show(v)}`);
  return v.map((x, i) => {
    const n = typeof x === 'string' && /^\d+$/.test(x.trim()) ? Number(x) : x;
    if (typeof n !== 'number' || !isPort(n)) fail(`${key}[${i}]`, `${show(x)} is not a port`);
    return n;
  });
}

/** A port or an inclusive range, as parsed from `ports`. */
interface PortRange {
  lo: number;
  hi: number;
}

function parsePortEntry(x: unknown, field: string): PortRange {
  if (typeof x === 'number') {
    if (!isPort(x)) fail(field, `${show(x)} is not a port`);
    return { lo: x, hi: x };
  }
  if (typeof x !== 'string') fail(field, `${show(x)} is not a port`);
  const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(x);
  if (!m) fail(field, `${show(x)} is not a port or a range like "5000-5999"`);
  const lo = Number(m[1]);
  const hi = m[2] === undefined ? lo : Number(m[2]);
  if (!isPort(lo) || !isPort(hi)) fail(field, `${show(x)} is not a port`);
  if (lo > hi) fail(field, `${show(x)}: range start is above its end`);
  return { lo, hi };
}

/** A host or network, normalised. */
interface Net {
  version: 4 | 6;
  /** Canonical address text (Node's formatting) for BPF. */
  text: string;
  prefix: number;
  /** IPv4: the network as uint32; IPv6: 8 words. */
  v4: number;
  v6: Uint16Array;
}

function parseNet(x: unknown, field: string): Net {
  if (typeof x !== 'string') fail(field, `${show(x)} is not an address`);
  const s = x.trim();
  const slash = s.indexOf('/');
  const addr = slash < 0 ? s : s.slice(0, slash);
  if (addr.includes('%')) fail(field, `${show(x)}: zone ids (%iface) are not supported`);
  const version = isIP(addr);
  if (version !== 4 && version !== 6) fail(field, `${show(x)} is not an IPv4/IPv6 address or a CIDR network`);
  const max = version === 4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const p = s.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > max) fail(field, `${show(x)}: prefix length must be 0..${max}`);
    prefix = Number(p);
  }
  const v6 = new Uint16Array(8);
  let v4 = 0;
  if (version === 4) {
    v4 = parseV4(addr);
    if (prefix < 32 && (v4 & ~maskV4(prefix)) >>> 0 !== 0) {
      fail(field, `${show(x)} has host bits set (did you mean ${formatV4((v4 & maskV4(prefix)) >>> 0)}/${prefix}?)`);
    }
  } else {
    parseV6(addr, v6);
    for (let i = 0; i < 8; i++) {
      if ((v6[i]! & ~maskV6Word(prefix, i) & 0xffff) !== 0) {
        fail(field, `${show(x)} has host bits set below /${prefix}`);
      }
    }
  }
  return { version, text: version === 4 ? formatV4(v4) : formatV6(v6), prefix, v4, v6 };
}

function maskV4(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

function maskV6Word(prefix: number, word: number): number {
  const bits = Math.max(0, Math.min(16, prefix - word * 16));
  return bits === 0 ? 0 : (0xffff << (16 - bits)) & 0xffff;
}

function formatV4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/** RFC 5952 text of eight 16-bit words (the decoder's formatter, so filters and records agree). */
function formatV6(w: Uint16Array): string {
  const b = Buffer.allocUnsafe(16);
  for (let i = 0; i < 8; i++) b.writeUInt16BE(w[i]!, 2 * i);
  return formatIpv6(b, 0);
}

/**
 * Dotted-quad text to uint32 without allocating; -1 when it is not one. Runs per packet
 * in predicates, so no split/regex.
 */
export function parseV4(s: string): number {
  let n = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      part = part * 10 + (c - 48);
      if (++digits > 3 || part > 255) return -1;
    } else if (c === 46) {
      if (digits === 0 || ++dots > 3) return -1;
      n = n * 256 + part;
      part = 0;
      digits = 0;
    } else return -1;
  }
  if (dots !== 3 || digits === 0) return -1;
  return n * 256 + part;
}

function hexVal(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/**
 * IPv6 text (RFC 4291 2.2, including `::` and a trailing dotted quad) into 8 words
 * without allocating. Returns false when it is not an address (a `%zone` is ignored).
 */
export function parseV6(s: string, out: Uint16Array): boolean {
  let end = s.length;
  const pct = s.indexOf('%');
  if (pct >= 0) end = pct;
  let w = 0; // words written before '::'
  let gap = -1; // word index where '::' sits
  let i = 0;
  if (end >= 2 && s.charCodeAt(0) === 58 && s.charCodeAt(1) === 58) {
    gap = 0;
    i = 2;
  } else if (end >= 1 && s.charCodeAt(0) === 58) return false;
  while (i < end) {
    if (w >= 8) return false;
    // A dotted quad may close the address (IPv4-embedded, RFC 4291 2.2 form 3).
    let j = i;
    let isQuad = false;
    while (j < end) {
      const c = s.charCodeAt(j);
      if (c === 46) {
        isQuad = true;
        break;
      }
      if (c === 58) break;
      j++;
    }
    if (isQuad) {
      if (w > 6) return false;
      const v4 = parseV4(s.slice(i, end));
      if (v4 < 0) return false;
      out[w++] = v4 >>> 16;
      out[w++] = v4 & 0xffff;
      i = end;
      break;
    }
    let v = 0;
    let digits = 0;
    while (i < end) {
      const h = hexVal(s.charCodeAt(i));
      if (h < 0) break;
      v = v * 16 + h;
      if (++digits > 4) return false;
      i++;
    }
    if (digits === 0) return false;
    out[w++] = v;
    if (i === end) break;
    if (s.charCodeAt(i) !== 58) return false;
    i++;
    if (i < end && s.charCodeAt(i) === 58) {
      if (gap >= 0) return false;
      gap = w;
      i++;
    } else if (i === end) return false;
  }
  if (gap < 0) return w === 8;
  if (w >= 8) return false;
  // Slide the words after '::' to the end and zero the gap.
  const tail = w - gap;
  for (let k = 0; k < tail; k++) out[7 - k] = out[w - 1 - k]!;
  for (let k = gap; k < 8 - tail; k++) out[k] = 0;
  return true;
}

/**
 * Checks a filter spec from a config or an API request and returns it typed. Throws
 * `CAMTAP_ERR_FILTER` naming the field, e.g. `filter ports[2]: "70000" is not a port`.
 */
export function validateFilter(spec: unknown): FilterSpec {
  if (spec === undefined || spec === null) return {};
  if (typeof spec !== 'object' || Array.isArray(spec)) fail('(filter)', `must be an object, got ${show(spec)}`);
  const o = spec as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!(FIELDS as readonly string[]).includes(k)) fail(k, `unknown field (known: ${FIELDS.join(', ')})`);
  }
  const out: FilterSpec = {};
  if (o.hosts !== undefined) {
    if (!Array.isArray(o.hosts)) fail('hosts', `must be a list, got ${show(o.hosts)}`);
    o.hosts.forEach((h, i) => parseNet(h, `hosts[${i}]`));
    out.hosts = (o.hosts as string[]).map((h) => h.trim());
  }
  if (o.ports !== undefined) {
    if (!Array.isArray(o.ports)) fail('ports', `must be a list, got ${show(o.ports)}`);
    o.ports.forEach((p, i) => parsePortEntry(p, `ports[${i}]`));
    out.ports = o.ports as Array<number | string>;
  }
  if (o.protocols !== undefined) {
    if (!Array.isArray(o.protocols)) fail('protocols', `must be a list, got ${show(o.protocols)}`);
    o.protocols.forEach((p, i) => {
      if (!(PROTOCOLS as readonly unknown[]).includes(p)) fail(`protocols[${i}]`, `${show(p)} is not one of ${PROTOCOLS.join(', ')}`);
    });
    out.protocols = o.protocols as FilterSpec['protocols'];
  }
  if (o.direction !== undefined) {
    if (o.direction !== 'src' && o.direction !== 'dst' && o.direction !== 'both') {
      fail('direction', `${show(o.direction)} is not src, dst or both`);
    }
    out.direction = o.direction;
  }
  const cameras = stringList(o, 'cameras');
  if (cameras) out.cameras = cameras;
  const vms = stringList(o, 'vms');
  if (vms) out.vms = vms;
  const rtspPorts = portList(o, 'rtspPorts');
  if (rtspPorts) out.rtspPorts = rtspPorts;
  const httpPorts = portList(o, 'httpPorts');
  if (httpPorts) out.httpPorts = httpPorts;
  if (o.raw !== undefined) {
    if (typeof o.raw !== 'string') fail('raw', `must be a string, got ${show(o.raw)}`);
    if (o.raw.trim() !== '') out.raw = o.raw.trim();
  }
  return out;
}

/** The spec, validated, with names resolved to networks: the common input of both translations. */
interface Plan {
  hosts: Net[] | null;
  cameras: Net[] | null;
  vms: Net[] | null;
  direction: 'src' | 'dst' | 'both';
  ports: PortRange[] | null;
  tcpPorts: number[] | null; // from protocols
  udp: boolean; // from protocols
  raw: string | null;
}

function resolveNames(names: string[] | undefined, kind: 'camera' | 'vms', field: string, resolve?: NameResolver): Net[] | null {
  if (!names || names.length === 0) return null;
  const out: Net[] = [];
  names.forEach((name, i) => {
    if (!resolve) fail(`${field}[${i}]`, `cannot resolve ${show(name)}: no inventory given to the filter translation`);
    const addrs = resolve(name, kind);
    if (!addrs || addrs.length === 0) fail(`${field}[${i}]`, `unknown ${kind} ${show(name)} (no address in the inventory)`);
    for (const a of addrs) out.push(parseNet(a, `${field}[${i}] (${name})`));
  });
  return out;
}

function plan(spec: FilterSpec, resolve?: NameResolver): Plan {
  const s = validateFilter(spec);
  const protocols = new Set(s.protocols ?? []);
  let tcpPorts: number[] | null = null;
  if (protocols.has('rtsp') || protocols.has('http') || protocols.has('onvif')) {
    const set = new Set<number>();
    if (protocols.has('rtsp')) for (const p of [...RTSP_PORTS, ...(s.rtspPorts ?? [])]) set.add(p);
    if (protocols.has('http') || protocols.has('onvif')) for (const p of [...HTTP_PORTS, ...(s.httpPorts ?? [])]) set.add(p);
    tcpPorts = [...set];
  }
  return {
    hosts: s.hosts && s.hosts.length > 0 ? s.hosts.map((h, i) => parseNet(h, `hosts[${i}]`)) : null,
    cameras: resolveNames(s.cameras, 'camera', 'cameras', resolve),
    vms: resolveNames(s.vms, 'vms', 'vms', resolve),
    direction: s.direction ?? 'both',
    ports: s.ports && s.ports.length > 0 ? s.ports.map((p, i) => parsePortEntry(p, `ports[${i}]`)) : null,
    tcpPorts,
    udp: protocols.has('rtp') || protocols.has('rtcp'),
    raw: s.raw ?? null,
  };
}

function bpfNet(n: Net, dir: 'src' | 'dst' | 'both'): string {
  const d = dir === 'both' ? '' : `${dir} `;
  // IPv6 addresses imply ip6; IPv4 gets `ip` so that ARP for the address stays out.
  const proto = n.version === 4 ? 'ip ' : '';
  const full = n.prefix === (n.version === 4 ? 32 : 128);
  return full ? `${proto}${d}host ${n.text}` : `${proto}${d}net ${n.text}/${n.prefix}`;
}

/**
 * The BPF expression for a spec ('' = everything), as `tcpdump` and `pcap_compile` take it.
 * Throws `CAMTAP_ERR_FILTER` for a bad spec or a name `resolve` does not know.
 */
export function toBpf(spec: FilterSpec, resolve?: NameResolver, opts: BpfOptions = {}): string {
  const p = plan(spec, resolve);
  const clauses: string[] = [];
  if (p.hosts) clauses.push(p.hosts.map((n) => bpfNet(n, p.direction)).join(' or '));
  if (p.cameras) clauses.push(p.cameras.map((n) => bpfNet(n, 'both')).join(' or '));
  if (p.vms) clauses.push(p.vms.map((n) => bpfNet(n, 'both')).join(' or '));
  if (p.ports) clauses.push(p.ports.map((r) => (r.lo === r.hi ? `port ${r.lo}` : `portrange ${r.lo}-${r.hi}`)).join(' or '));
  if (p.tcpPorts || p.udp) {
    const alts = (p.tcpPorts ?? []).map((n) => `tcp port ${n}`);
    if (p.udp) alts.push('udp');
    clauses.push(alts.join(' or '));
  }
  if (p.raw) clauses.push(p.raw);
  if (clauses.length === 0) return '';
  const f = clauses.map((c) => `(${c})`).join(' and ');
  return opts.vlan === false ? f : `(${f}) or (vlan and (${f}))`;
}

/** Per-call scratch for address parsing: predicates run per packet and must not allocate. */
class AddrCache {
  private lastText = '';
  private lastV4 = -1;
  private readonly words = new Uint16Array(8);
  private lastV6ok = false;
  private lastV6text: string | null = null;

  v4(text: string): number {
    if (text !== this.lastText) {
      this.lastText = text;
      this.lastV4 = parseV4(text);
    }
    return this.lastV4;
  }

  v6(text: string): Uint16Array | null {
    if (text !== this.lastV6text) {
      this.lastV6text = text;
      this.lastV6ok = parseV6(text, this.words);
    }
    return this.lastV6ok ? this.words : null;
  }
}

function netMatcher(nets: Net[]): (version: number, text: string, cache: AddrCache) => boolean {
  const v4 = nets.filter((n) => n.version === 4).map((n) => ({ net: n.v4, mask: maskV4(n.prefix) }));
  const v6 = nets.filter((n) => n.version === 6).map((n) => ({ net: n.v6, mask: Uint16Array.from({ length: 8 }, (_, i) => maskV6Word(n.prefix, i)) }));
  return (version, text, cache) => {
    if (version === 4) {
      if (v4.length === 0) return false;
      const a = cache.v4(text);
      if (a < 0) return false;
      for (const n of v4) if ((a & n.mask) >>> 0 === n.net) return true;
      return false;
    }
    if (version === 6) {
      if (v6.length === 0) return false;
      const w = cache.v6(text);
      if (!w) return false;
      outer: for (const n of v6) {
        for (let i = 0; i < 8; i++) if ((w[i]! & n.mask[i]!) !== n.net[i]) continue outer;
        return true;
      }
      return false;
    }
    return false;
  };
}

/**
 * A predicate over decoded metadata that keeps exactly what {@link toBpf} keeps (for
 * IP traffic; the `raw` clause is BPF-only and ignored here). Built once per tap; the
 * returned function does not allocate.
 */
export function toPredicate(spec: FilterSpec, resolve?: NameResolver): FilterPredicate {
  const p = plan(spec, resolve);
  const clauses: FilterPredicate[] = [];
  const src = new AddrCache();
  const dst = new AddrCache();
  const endClause = (nets: Net[], dir: 'src' | 'dst' | 'both'): FilterPredicate => {
    const m = netMatcher(nets);
    if (dir === 'src') return (x) => m(x.ipVersion, x.srcAddr, src);
    if (dir === 'dst') return (x) => m(x.ipVersion, x.dstAddr, dst);
    return (x) => m(x.ipVersion, x.srcAddr, src) || m(x.ipVersion, x.dstAddr, dst);
  };
  if (p.hosts) clauses.push(endClause(p.hosts, p.direction));
  if (p.cameras) clauses.push(endClause(p.cameras, 'both'));
  if (p.vms) clauses.push(endClause(p.vms, 'both'));
  if (p.ports) {
    const lo = Int32Array.from(p.ports, (r) => r.lo);
    const hi = Int32Array.from(p.ports, (r) => r.hi);
    // BPF `port` is TCP, UDP or SCTP, and never a non-first fragment (ports 0 there).
    clauses.push((x) => {
      if (x.protocol !== PROTO_TCP && x.protocol !== PROTO_UDP && x.protocol !== PROTO_SCTP) return false;
      for (let i = 0; i < lo.length; i++) {
        if ((x.sport >= lo[i]! && x.sport <= hi[i]!) || (x.dport >= lo[i]! && x.dport <= hi[i]!)) return true;
      }
      return false;
    });
  }
  if (p.tcpPorts || p.udp) {
    const tcp = new Set(p.tcpPorts ?? []);
    const udp = p.udp;
    clauses.push((x) => {
      if (udp && x.protocol === PROTO_UDP) return true;
      return x.protocol === PROTO_TCP && (tcp.has(x.sport) || tcp.has(x.dport));
    });
  }
  if (clauses.length === 0) return () => true;
  return (x) => {
    for (let i = 0; i < clauses.length; i++) if (!clauses[i]!(x)) return false;
    return true;
  };
}
