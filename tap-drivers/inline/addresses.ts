/**
 * Endpoint addresses as the inline tap writes them into headers: parsed once per text
 * (the relaying code passes the same few strings for every datagram of a stream) and
 * kept in a small bounded cache, so recording a datagram does not parse or allocate.
 *
 * Node reports IPv4 peers of a dual-stack (`::`) socket as IPv4-mapped IPv6 addresses
 * (`::ffff:10.0.0.5`); on the wire those packets are IPv4 (RFC 4291 §2.5.5.2), so they
 * are recorded as IPv4.
 */
import { formatIpv6, parseIp } from '../../core/wire/packet.js';

/** An address ready to be copied into an IP header. */
export interface IpAddr {
  version: 4 | 6;
  /** 4 or 16 bytes, network order. */
  bytes: Buffer;
  /** Canonical text as the pipeline prints it (dotted IPv4, RFC 5952 IPv6). */
  text: string;
}

const MAX_ENTRIES = 4096;

function isV4Mapped(b: Buffer): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/** Parses `text` (IPv4, IPv6, IPv4-mapped IPv6; brackets and %zone dropped); null when it is none. */
export function toIpAddr(text: string): IpAddr | null {
  if (typeof text !== 'string') return null;
  const p = parseIp(text);
  if (!p) return null;
  if (p.version === 6 && isV4Mapped(p.bytes)) {
    const b = Buffer.from(p.bytes.subarray(12, 16));
    return { version: 4, bytes: b, text: `${b[0]}.${b[1]}.${b[2]}.${b[3]}` };
  }
  if (p.version === 4) {
    const b = p.bytes;
    return { version: 4, bytes: b, text: `${b[0]}.${b[1]}.${b[2]}.${b[3]}` };
  }
  return { version: 6, bytes: p.bytes, text: formatIpv6(p.bytes, 0) };
}

/** `a` as an IPv4-mapped IPv6 address, for a connection whose other end is IPv6. */
export function mappedV6(a: IpAddr): IpAddr {
  if (a.version === 6) return a;
  const b = Buffer.alloc(16);
  b[10] = 0xff;
  b[11] = 0xff;
  a.bytes.copy(b, 12);
  return { version: 6, bytes: b, text: formatIpv6(b, 0) };
}

/** Text -> parsed address, bounded (cleared whole when full: a cache, not a registry). */
export class AddressCache {
  readonly #map = new Map<string, IpAddr | null>();

  get(text: string): IpAddr | null {
    let a = this.#map.get(text);
    if (a !== undefined) return a;
    a = toIpAddr(text);
    if (this.#map.size >= MAX_ENTRIES) this.#map.clear();
    this.#map.set(text, a);
    return a;
  }
}
