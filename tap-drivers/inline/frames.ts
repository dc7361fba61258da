/**
 * Synthesized IP/TCP/UDP packets for the inline tap: the headers a capture of the relayed
 * traffic would have shown, written with the payload into one reusable scratch buffer
 * (LINKTYPE_RAW: the frame starts with the IP header, whose version nibble decides).
 *
 * ```
 * IPv4 (RFC 791 §3.1), 20 bytes         IPv6 (RFC 8200 §3), 40 bytes
 * 0x45 | TOS 0 | Total Length            0x6 | Traffic Class 0 | Flow Label 0
 * Identification | DF, offset 0          Payload Length | Next Header | Hop Limit 64
 * TTL 64 | Protocol | Header Checksum    Source Address (16 bytes)
 * Source Address                         Destination Address (16 bytes)
 * Destination Address
 * ```
 *
 * Checksums are the Internet checksum (RFC 1071): the IPv4 header checksum over the
 * header; TCP (RFC 9293 §3.1) and UDP (RFC 768) over a pseudo-header (RFC 793 / RFC 8200
 * §8.1 for IPv6) plus the segment. A computed UDP checksum of 0 is sent as 0xFFFF (RFC
 * 768; for IPv6 a zero checksum is not allowed at all).
 */
import type { IpAddr } from './addresses.js';

export const PROTO_TCP = 6;
export const PROTO_UDP = 17;

/** TCP flags (RFC 9293 §3.1). */
export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;

const IPV4_HEADER = 20;
const IPV6_HEADER = 40;
const UDP_HEADER = 8;
const TCP_HEADER = 20;
/** MSS option (RFC 9293 §3.2): kind 2, length 4, value. */
const TCP_MSS_OPTION = 4;
const TTL = 64;
/** Receive window announced in every segment (no window scaling is negotiated). */
export const TCP_WINDOW = 65535;

/** Largest UDP payload in one IPv4 datagram: 65535 - 20 (IP) - 8 (UDP). */
export const MAX_UDP_PAYLOAD_V4 = 65507;
/** Largest UDP payload in one IPv6 datagram without a jumbogram: 65535 (Payload Length) - 8. */
export const MAX_UDP_PAYLOAD_V6 = 65527;

/**
 * Payload per TCP segment: what Linux sends on a 1500-byte Ethernet MTU with TCP
 * timestamps (1500 - 20 IP - 20 TCP - 12 options = 1448; IPv6 headers are 20 bytes longer).
 */
export const TCP_SEGMENT_V4 = 1448;
export const TCP_SEGMENT_V6 = 1428;
/** The MSS each end announces in its SYN (1500 MTU minus the IP and TCP headers). */
export const TCP_MSS_V4 = 1460;
export const TCP_MSS_V6 = 1440;

/** The scratch buffer fits the largest frame written: an IPv6 header plus a full 65535-byte payload. */
const SCRATCH = IPV6_HEADER + 65535;

/** The 16-bit one's-complement sum of `len` bytes as big-endian words, unfolded (RFC 1071 §4.1). */
function sum16(buf: Buffer, off: number, len: number, acc: number): number {
  const end = off + (len & ~1);
  let s = acc;
  for (let i = off; i < end; i += 2) s += (buf[i]! << 8) | buf[i + 1]!;
  if (len & 1) s += buf[end]! << 8;
  return s;
}

/** Folds the carries and complements (RFC 1071 §4.1). */
function finish(sum: number): number {
  let s = sum;
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 65536);
  return ~s & 0xffff;
}

/**
 * Writes packets into one reused buffer. Each call returns the frame's length; the frame
 * is `buf[0, length)` and is valid until the next call.
 */
export class FrameWriter {
  readonly buf: Buffer = Buffer.alloc(SCRATCH);
  /** IPv4 Identification: per writer, incremented per datagram (RFC 6864 allows any scheme for atomic datagrams). */
  #ipId: number;

  constructor(firstIpId = Math.floor(Math.random() * 65536)) {
    this.#ipId = firstIpId & 0xffff;
  }

  /** Writes the IP header for `l4Len` bytes of `proto`; returns the header length. Both addresses have the same version. */
  #ip(src: IpAddr, dst: IpAddr, proto: number, l4Len: number): number {
    const b = this.buf;
    if (src.version === 4) {
      b[0] = 0x45;
      b[1] = 0;
      b.writeUInt16BE(IPV4_HEADER + l4Len, 2);
      b.writeUInt16BE(this.#ipId, 4);
      this.#ipId = (this.#ipId + 1) & 0xffff;
      b.writeUInt16BE(0x4000, 6); // DF, offset 0: never a fragment
      b[8] = TTL;
      b[9] = proto;
      b[10] = 0;
      b[11] = 0;
      src.bytes.copy(b, 12, 0, 4);
      dst.bytes.copy(b, 16, 0, 4);
      b.writeUInt16BE(finish(sum16(b, 0, IPV4_HEADER, 0)), 10);
      return IPV4_HEADER;
    }
    b.writeUInt32BE(0x60000000, 0);
    b.writeUInt16BE(l4Len, 4);
    b[6] = proto;
    b[7] = TTL;
    src.bytes.copy(b, 8, 0, 16);
    dst.bytes.copy(b, 24, 0, 16);
    return IPV6_HEADER;
  }

  /** The pseudo-header sum for the transport checksum (addresses read back from the IP header just written). */
  #pseudo(version: 4 | 6, proto: number, l4Len: number): number {
    if (version === 4) return sum16(this.buf, 12, 8, proto + l4Len);
    return sum16(this.buf, 8, 32, proto + (l4Len >>> 16) + (l4Len & 0xffff));
  }

  /** One UDP datagram. The caller keeps `len` within MAX_UDP_PAYLOAD_V4/V6. */
  udp(src: IpAddr, sport: number, dst: IpAddr, dport: number, data: Buffer, off: number, len: number): number {
    const b = this.buf;
    const l4Len = UDP_HEADER + len;
    const h = this.#ip(src, dst, PROTO_UDP, l4Len);
    b.writeUInt16BE(sport, h);
    b.writeUInt16BE(dport, h + 2);
    b.writeUInt16BE(l4Len, h + 4);
    b[h + 6] = 0;
    b[h + 7] = 0;
    data.copy(b, h + UDP_HEADER, off, off + len);
    const c = finish(sum16(b, h, l4Len, this.#pseudo(src.version, PROTO_UDP, l4Len)));
    b.writeUInt16BE(c === 0 ? 0xffff : c, h + 6);
    return h + l4Len;
  }

  /** One TCP segment; `mss` > 0 adds the MSS option (SYNs only). */
  tcp(src: IpAddr, sport: number, dst: IpAddr, dport: number, seq: number, ack: number, flags: number, mss: number, data: Buffer | null, off: number, len: number): number {
    const b = this.buf;
    const hdr = TCP_HEADER + (mss > 0 ? TCP_MSS_OPTION : 0);
    const l4Len = hdr + len;
    const h = this.#ip(src, dst, PROTO_TCP, l4Len);
    b.writeUInt16BE(sport, h);
    b.writeUInt16BE(dport, h + 2);
    b.writeUInt32BE(seq >>> 0, h + 4);
    b.writeUInt32BE(flags & TCP_ACK ? ack >>> 0 : 0, h + 8);
    b[h + 12] = (hdr / 4) << 4;
    b[h + 13] = flags;
    b.writeUInt16BE(TCP_WINDOW, h + 14);
    b[h + 16] = 0;
    b[h + 17] = 0;
    b[h + 18] = 0;
    b[h + 19] = 0;
    if (mss > 0) {
      b[h + 20] = 2;
      b[h + 21] = 4;
      b.writeUInt16BE(mss, h + 22);
    }
    if (data !== null && len > 0) data.copy(b, h + hdr, off, off + len);
    b.writeUInt16BE(finish(sum16(b, h, l4Len, this.#pseudo(src.version, PROTO_TCP, l4Len))), h + 16);
    return h + l4Len;
  }
}
