/**
 * First-level packet decode: link layer -> IPv4/IPv6 (+ fragment reassembly) -> UDP/TCP
 * header, filled into one reused {@link PacketMeta} per pipeline. Offsets index into
 * `meta.buf`, which is the frame's own Buffer (no copies) except for a datagram rebuilt
 * from fragments. Bad input returns a {@link DecodeStatus} and is counted; nothing here
 * throws on packet bytes.
 */
import { isIPv4, isIPv6 } from 'node:net';
import type { TapFrame } from '../contracts/frame.js';
import { LinkType } from '../contracts/frame.js';

export const enum DecodeStatus {
  OK = 0,
  NOT_IP = 1,
  TRUNCATED = 2,
  FRAGMENT_PENDING = 3,
  UNSUPPORTED_LINK = 4,
  BAD_HEADER = 5,
}

const EMPTY = Buffer.alloc(0);

/** Reused per pipeline: filled in place by PacketDecoder.decode; all offsets index into `buf`. */
export class PacketMeta {
  /** Frame buffer, or the reassembled datagram buffer after defragmentation. */
  buf: Buffer = EMPTY;
  ipVersion: 0 | 4 | 6 = 0;
  /** IP header start. */
  ipOff = 0;
  /** Bytes of the IP datagram actually present (total length clamped to what was captured). */
  ipLen = 0;
  /** IPv4 addresses as uint32 (0 for IPv6). */
  src4 = 0;
  dst4 = 0;
  /** Offsets of the address bytes in buf (4 or 16 bytes). */
  srcOff = 0;
  dstOff = 0;
  /** 6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, ... (after IPv6 extension headers). */
  protocol = 0;
  sport = 0;
  dport = 0;
  l4Off = 0;
  /** UDP/TCP payload (UDP: by UDP length, TCP: by IP length minus headers; both clamped to the captured bytes). ICMP and others: the whole L4 message. */
  payloadOff = 0;
  payloadLen = 0;
  /** TCP sequence/acknowledgement numbers (uint32) and flags (9 bits, NS..FIN). */
  tcpSeq = 0;
  tcpAck = 0;
  tcpFlags = 0;
  /** Outermost 802.1Q VLAN id, -1 if none. */
  vlan = -1;
  /** The datagram was cut by the snap length. */
  truncated = false;
  /** This datagram was rebuilt from IP fragments. */
  reassembled = false;
  /** Hash of (protocol, src addr, dst addr, sport, dport), 32-bit, direction-sensitive: for flow tables. */
  flowHash = 0;
}

/** EtherTypes (IEEE 802). */
const ET_IPV4 = 0x0800;
const ET_IPV6 = 0x86dd;
const ET_VLAN = 0x8100;
const ET_QINQ = 0x88a8;
const ET_QINQ_OLD = 0x9100;

/** BSD AF_INET6 differs by OS: 24 NetBSD/OpenBSD, 28 FreeBSD, 30 Darwin (pcap LINKTYPE_NULL). */
const AF_INET = 2;

const PROTO_ICMP = 1;
const PROTO_TCP = 6;
const PROTO_UDP = 17;

/** IPv6 extension headers walked to reach the transport (RFC 8200 §4; 135 Mobility, 139 HIP, 140 Shim6 share the length format). */
const NH_HOPOPT = 0;
const NH_ROUTING = 43;
const NH_FRAGMENT = 44;
const NH_AH = 51;
const NH_DSTOPTS = 60;
const NH_MOBILITY = 135;
const NH_HIP = 139;
const NH_SHIM6 = 140;
const MAX_EXT_HEADERS = 16;

/** Most parts kept for one datagram; more means a fragment flood, and the datagram is dropped. */
const MAX_PARTS = 256;
const MAX_DATAGRAM = 65535;

interface FragPart {
  off: number;
  data: Buffer;
}

/** One datagram being reassembled. */
interface FragDatagram {
  /** Capture time (s) of its first fragment, for the timeout. */
  firstSec: number;
  /** IPv4: the offset-0 fragment's header; IPv6: the unfragmentable part (header + extension headers before the Fragment header). */
  header: Buffer | null;
  /** IPv6: offset in `header` of the next-header byte that named the Fragment header. */
  nhOff: number;
  /** IPv6: the Fragment header's next header. */
  fragNext: number;
  /** Payload length, known once the last fragment (MF clear) arrived; -1 before. */
  total: number;
  parts: FragPart[];
}

function mix(h: number, v: number): number {
  h = Math.imul(h ^ v, 0x9e3779b1);
  return h ^ (h >>> 15);
}

export class PacketDecoder {
  readonly counters = { notIp: 0, truncated: 0, badHeader: 0, unsupportedLink: 0, fragments: 0, reassembled: 0, fragmentsExpired: 0 };
  readonly #maxDatagrams: number;
  readonly #timeoutSec: number;
  /** Datagrams being reassembled, oldest first (Map keeps insertion order). */
  readonly #frags = new Map<string, FragDatagram>();

  /**
   * @param opts.maxFragmentDatagrams datagrams reassembled at once (default 1024); the oldest is dropped beyond it
   * @param opts.fragmentTimeoutSec capture-time seconds a datagram may wait for its fragments (default 30, as Linux ipfrag_time)
   */
  constructor(opts: { maxFragmentDatagrams?: number; fragmentTimeoutSec?: number } = {}) {
    this.#maxDatagrams = Math.max(1, opts.maxFragmentDatagrams ?? 1024);
    this.#timeoutSec = opts.fragmentTimeoutSec ?? 30;
  }

  /** Datagrams currently waiting for fragments. */
  get pendingDatagrams(): number {
    return this.#frags.size;
  }

  /** Decodes link/IP/transport of `frame` into `meta` without allocating (except when reassembling fragments). */
  decode(frame: TapFrame, meta: PacketMeta): DecodeStatus {
    const buf = frame.buf;
    let o = frame.off;
    const end = Math.min(o + frame.capLen, buf.length);
    meta.buf = buf;
    meta.ipVersion = 0;
    meta.ipOff = meta.ipLen = 0;
    meta.src4 = meta.dst4 = meta.srcOff = meta.dstOff = 0;
    meta.protocol = meta.sport = meta.dport = 0;
    meta.l4Off = meta.payloadOff = meta.payloadLen = 0;
    meta.tcpSeq = meta.tcpAck = meta.tcpFlags = 0;
    meta.vlan = -1;
    meta.truncated = false;
    meta.reassembled = false;
    meta.flowHash = 0;

    let et: number;
    switch (frame.linkType) {
      case LinkType.ETHERNET:
        if (end - o < 14) return this.#status(DecodeStatus.TRUNCATED);
        et = (buf[o + 12]! << 8) | buf[o + 13]!;
        o += 14;
        break;
      case LinkType.LINUX_SLL:
        // Linux cooked v1: packet type, ARPHRD, address length, 8 address bytes, protocol.
        if (end - o < 16) return this.#status(DecodeStatus.TRUNCATED);
        et = (buf[o + 14]! << 8) | buf[o + 15]!;
        o += 16;
        break;
      case LinkType.LINUX_SLL2:
        // Linux cooked v2: protocol, reserved, ifindex, ARPHRD, packet type, address length, 8 address bytes.
        if (end - o < 20) return this.#status(DecodeStatus.TRUNCATED);
        et = (buf[o]! << 8) | buf[o + 1]!;
        o += 20;
        break;
      case LinkType.NULL:
      case LinkType.LOOP: {
        if (end - o < 4) return this.#status(DecodeStatus.TRUNCATED);
        const be = ((buf[o]! << 24) | (buf[o + 1]! << 16) | (buf[o + 2]! << 8) | buf[o + 3]!) >>> 0;
        let af = be;
        // NULL is in the capturing host's byte order: a value only in the top half is little-endian read as big.
        if (frame.linkType === LinkType.NULL && (be & 0xffff) === 0) af = ((buf[o + 1]! << 8) | buf[o]!) >>> 0;
        o += 4;
        if (af === AF_INET) et = ET_IPV4;
        else if (af === 24 || af === 28 || af === 30) et = ET_IPV6;
        else return this.#status(DecodeStatus.NOT_IP);
        break;
      }
      case LinkType.RAW:
        if (end - o < 1) return this.#status(DecodeStatus.TRUNCATED);
        et = buf[o]! >> 4 === 4 ? ET_IPV4 : buf[o]! >> 4 === 6 ? ET_IPV6 : 0;
        break;
      case LinkType.IPV4:
        et = ET_IPV4;
        break;
      case LinkType.IPV6:
        et = ET_IPV6;
        break;
      default:
        return this.#status(DecodeStatus.UNSUPPORTED_LINK);
    }
    // 802.1Q and stacked QinQ tags (802.1ad 0x88a8, pre-standard 0x9100): TCI then the inner EtherType.
    while (et === ET_VLAN || et === ET_QINQ || et === ET_QINQ_OLD) {
      if (end - o < 4) return this.#status(DecodeStatus.TRUNCATED);
      if (meta.vlan < 0) meta.vlan = ((buf[o]! << 8) | buf[o + 1]!) & 0x0fff;
      et = (buf[o + 2]! << 8) | buf[o + 3]!;
      o += 4;
    }
    if (et === ET_IPV4) return this.#status(this.#ipv4(buf, o, end, meta, frame.tsSec, false));
    if (et === ET_IPV6) return this.#status(this.#ipv6(buf, o, end, meta, frame.tsSec, false));
    return this.#status(DecodeStatus.NOT_IP);
  }

  #status(st: DecodeStatus): DecodeStatus {
    if (st !== DecodeStatus.OK) {
      const c = this.counters;
      if (st === DecodeStatus.NOT_IP) c.notIp++;
      else if (st === DecodeStatus.TRUNCATED) c.truncated++;
      else if (st === DecodeStatus.BAD_HEADER) c.badHeader++;
      else if (st === DecodeStatus.UNSUPPORTED_LINK) c.unsupportedLink++;
    }
    return st;
  }

  /** RFC 791 §3.1. */
  #ipv4(buf: Buffer, o: number, end: number, meta: PacketMeta, tsSec: number, rebuilt: boolean): DecodeStatus {
    if (end - o < 20) return DecodeStatus.TRUNCATED;
    const vihl = buf[o]!;
    if (vihl >> 4 !== 4) return DecodeStatus.BAD_HEADER;
    const ihl = (vihl & 0x0f) * 4;
    if (ihl < 20) return DecodeStatus.BAD_HEADER;
    if (end - o < ihl) return DecodeStatus.TRUNCATED;
    let total = (buf[o + 2]! << 8) | buf[o + 3]!;
    // Total length 0 is what TCP segmentation offload leaves in captures of outgoing packets.
    if (total === 0) total = end - o;
    if (total < ihl) return DecodeStatus.BAD_HEADER;
    const claimedEnd = o + total;
    const ipEnd = claimedEnd > end ? end : claimedEnd;
    meta.truncated = claimedEnd > end;
    meta.ipVersion = 4;
    meta.ipOff = o;
    meta.ipLen = ipEnd - o;
    meta.srcOff = o + 12;
    meta.dstOff = o + 16;
    meta.src4 = ((buf[o + 12]! << 24) | (buf[o + 13]! << 16) | (buf[o + 14]! << 8) | buf[o + 15]!) >>> 0;
    meta.dst4 = ((buf[o + 16]! << 24) | (buf[o + 17]! << 16) | (buf[o + 18]! << 8) | buf[o + 19]!) >>> 0;
    const proto = buf[o + 9]!;
    meta.protocol = proto;
    const ff = (buf[o + 6]! << 8) | buf[o + 7]!;
    if ((ff & 0x3fff) !== 0 && !rebuilt) {
      // MF set or a non-zero fragment offset.
      this.counters.fragments++;
      meta.l4Off = meta.payloadOff = o + ihl;
      meta.flowHash = this.#hash(meta);
      if (meta.truncated) return DecodeStatus.TRUNCATED;
      const fragOff = (ff & 0x1fff) * 8;
      const key = `4:${meta.src4}:${meta.dst4}:${(buf[o + 4]! << 8) | buf[o + 5]!}:${proto}`;
      const d = this.#addFragment(key, tsSec, fragOff, (ff & 0x2000) !== 0, buf, o + ihl, ipEnd, buf, o, ihl, 0, 0);
      if (d === null) return DecodeStatus.FRAGMENT_PENDING;
      if (d === undefined) return DecodeStatus.BAD_HEADER;
      // Rebuilt datagram: the first fragment's header with total length and fragment fields rewritten.
      d.writeUInt16BE(d.length, 2);
      d.writeUInt16BE(0, 6);
      meta.buf = d;
      meta.reassembled = true;
      return this.#ipv4(d, 0, d.length, meta, tsSec, true);
    }
    return this.#l4(buf, o + ihl, ipEnd, claimedEnd, meta);
  }

  /** RFC 8200 §3-4. */
  #ipv6(buf: Buffer, o: number, end: number, meta: PacketMeta, tsSec: number, rebuilt: boolean): DecodeStatus {
    if (end - o < 40) return DecodeStatus.TRUNCATED;
    if (buf[o]! >> 4 !== 6) return DecodeStatus.BAD_HEADER;
    const plen = (buf[o + 4]! << 8) | buf[o + 5]!;
    // Payload length 0: a jumbogram (RFC 2675) or offloaded segment; use what was captured.
    const claimedEnd = plen === 0 ? end : o + 40 + plen;
    const ipEnd = claimedEnd > end ? end : claimedEnd;
    meta.truncated = claimedEnd > end;
    meta.ipVersion = 6;
    meta.ipOff = o;
    meta.ipLen = ipEnd - o;
    meta.srcOff = o + 8;
    meta.dstOff = o + 24;
    let next = buf[o + 6]!;
    let nhOff = o + 6;
    let p = o + 40;
    for (let i = 0; i < MAX_EXT_HEADERS; i++) {
      let hlen: number;
      if (next === NH_HOPOPT || next === NH_ROUTING || next === NH_DSTOPTS || next === NH_MOBILITY || next === NH_HIP || next === NH_SHIM6) {
        if (ipEnd - p < 8) return claimedEnd - p < 8 ? DecodeStatus.BAD_HEADER : DecodeStatus.TRUNCATED;
        hlen = (buf[p + 1]! + 1) * 8;
      } else if (next === NH_AH) {
        // RFC 4302 §2.2: length in 32-bit words minus 2.
        if (ipEnd - p < 8) return claimedEnd - p < 8 ? DecodeStatus.BAD_HEADER : DecodeStatus.TRUNCATED;
        hlen = (buf[p + 1]! + 2) * 4;
      } else if (next === NH_FRAGMENT) {
        // RFC 8200 §4.5: next header, reserved, offset(13) res(2) M(1), identification.
        if (ipEnd - p < 8) return claimedEnd - p < 8 ? DecodeStatus.BAD_HEADER : DecodeStatus.TRUNCATED;
        const fo = (buf[p + 2]! << 8) | buf[p + 3]!;
        const fragNext = buf[p]!;
        if ((fo & 0xfff9) === 0) {
          // Atomic fragment (RFC 6946): offset 0, M clear; the payload is whole.
          next = fragNext;
          nhOff = p;
          p += 8;
          continue;
        }
        if (rebuilt) return DecodeStatus.BAD_HEADER;
        this.counters.fragments++;
        meta.protocol = fragNext;
        meta.l4Off = meta.payloadOff = p + 8;
        meta.flowHash = this.#hash(meta);
        if (meta.truncated) return DecodeStatus.TRUNCATED;
        const id = ((buf[p + 4]! << 24) | (buf[p + 5]! << 16) | (buf[p + 6]! << 8) | buf[p + 7]!) >>> 0;
        const key = `6:${buf.toString('hex', o + 8, o + 40)}:${id}`;
        const d = this.#addFragment(key, tsSec, fo & 0xfff8, (fo & 1) !== 0, buf, p + 8, ipEnd, buf, o, p - o, nhOff - o, fragNext);
        if (d === null) return DecodeStatus.FRAGMENT_PENDING;
        if (d === undefined) return DecodeStatus.BAD_HEADER;
        meta.buf = d;
        meta.reassembled = true;
        return this.#ipv6(d, 0, d.length, meta, tsSec, true);
      } else {
        break;
      }
      next = buf[p]!;
      nhOff = p;
      p += hlen;
      if (p > claimedEnd) return DecodeStatus.BAD_HEADER;
      if (p > ipEnd) return DecodeStatus.TRUNCATED;
    }
    meta.protocol = next;
    return this.#l4(buf, p, ipEnd, claimedEnd, meta);
  }

  /** UDP (RFC 768) and TCP (RFC 9293 §3.1) headers; other protocols: the whole message as payload. */
  #l4(buf: Buffer, l4: number, ipEnd: number, claimedEnd: number, meta: PacketMeta): DecodeStatus {
    meta.l4Off = l4;
    const proto = meta.protocol;
    if (proto === PROTO_UDP) {
      if (ipEnd - l4 < 8) return claimedEnd - l4 < 8 ? DecodeStatus.BAD_HEADER : DecodeStatus.TRUNCATED;
      meta.sport = (buf[l4]! << 8) | buf[l4 + 1]!;
      meta.dport = (buf[l4 + 2]! << 8) | buf[l4 + 3]!;
      const ulen = (buf[l4 + 4]! << 8) | buf[l4 + 5]!;
      // Length 0: a UDP jumbogram (RFC 2675 §4); take the IP payload.
      let plen = ulen === 0 ? claimedEnd - l4 - 8 : ulen - 8;
      if (plen < 0) return DecodeStatus.BAD_HEADER;
      if (plen > claimedEnd - l4 - 8) plen = claimedEnd - l4 - 8;
      meta.payloadOff = l4 + 8;
      if (plen > ipEnd - l4 - 8) plen = ipEnd - l4 - 8;
      meta.payloadLen = plen;
    } else if (proto === PROTO_TCP) {
      if (ipEnd - l4 < 20) return claimedEnd - l4 < 20 ? DecodeStatus.BAD_HEADER : DecodeStatus.TRUNCATED;
      const doff = (buf[l4 + 12]! >> 4) * 4;
      if (doff < 20 || l4 + doff > claimedEnd) return DecodeStatus.BAD_HEADER;
      if (l4 + doff > ipEnd) return DecodeStatus.TRUNCATED;
      meta.sport = (buf[l4]! << 8) | buf[l4 + 1]!;
      meta.dport = (buf[l4 + 2]! << 8) | buf[l4 + 3]!;
      meta.tcpSeq = ((buf[l4 + 4]! << 24) | (buf[l4 + 5]! << 16) | (buf[l4 + 6]! << 8) | buf[l4 + 7]!) >>> 0;
      meta.tcpAck = ((buf[l4 + 8]! << 24) | (buf[l4 + 9]! << 16) | (buf[l4 + 10]! << 8) | buf[l4 + 11]!) >>> 0;
      meta.tcpFlags = ((buf[l4 + 12]! & 1) << 8) | buf[l4 + 13]!;
      meta.payloadOff = l4 + doff;
      meta.payloadLen = ipEnd - l4 - doff;
    } else {
      meta.payloadOff = l4;
      meta.payloadLen = ipEnd - l4;
    }
    meta.flowHash = this.#hash(meta);
    return DecodeStatus.OK;
  }

  #hash(meta: PacketMeta): number {
    let h = mix(0x811c9dc5, meta.protocol);
    if (meta.ipVersion === 4) {
      h = mix(h, meta.src4);
      h = mix(h, meta.dst4);
    } else {
      const b = meta.buf;
      for (let i = 0; i < 16; i += 4) h = mix(h, b.readInt32BE(meta.srcOff + i));
      for (let i = 0; i < 16; i += 4) h = mix(h, b.readInt32BE(meta.dstOff + i));
    }
    h = mix(h, (meta.sport << 16) | meta.dport);
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    return (h ^ (h >>> 16)) >>> 0;
  }

  /**
   * Adds a fragment's data buf[from, to) at byte `fragOff` of the datagram `key`.
   * Returns the rebuilt datagram (header + payload) once every byte is there, null while
   * waiting, undefined when the fragment is impossible (past 64 KiB, conflicting ends)
   * and the datagram was dropped. Overlaps: the bytes that arrived first win (the
   * conservative choice against overlap attacks, RFC 5722 forbids them for IPv6).
   */
  #addFragment(
    key: string,
    tsSec: number,
    fragOff: number,
    more: boolean,
    buf: Buffer,
    from: number,
    to: number,
    hdrBuf: Buffer,
    hdrOff: number,
    hdrLen: number,
    nhOff: number,
    fragNext: number,
  ): Buffer | null | undefined {
    const frags = this.#frags;
    // Expire by capture time; the map is in arrival order, so stop at the first young one.
    for (const [k, d] of frags) {
      if (tsSec - d.firstSec <= this.#timeoutSec) break;
      frags.delete(k);
      this.counters.fragmentsExpired++;
    }
    let d = frags.get(key);
    if (d === undefined) {
      if (frags.size >= this.#maxDatagrams) {
        const oldest = frags.keys().next().value!;
        frags.delete(oldest);
        this.counters.fragmentsExpired++;
      }
      d = { firstSec: tsSec, header: null, nhOff: 0, fragNext: 0, total: -1, parts: [] };
      frags.set(key, d);
    }
    const len = to - from;
    const endOff = fragOff + len;
    const bad = endOff > MAX_DATAGRAM || d.parts.length >= MAX_PARTS || (!more && d.total >= 0 && d.total !== endOff) || (d.total >= 0 && endOff > d.total);
    if (bad) {
      frags.delete(key);
      return undefined;
    }
    if (!more) d.total = endOff;
    const data = Buffer.allocUnsafe(len);
    buf.copy(data, 0, from, to);
    d.parts.push({ off: fragOff, data });
    if (fragOff === 0 && d.header === null) {
      d.header = Buffer.allocUnsafe(hdrLen);
      hdrBuf.copy(d.header, 0, hdrOff, hdrOff + hdrLen);
      d.nhOff = nhOff;
      d.fragNext = fragNext;
    }
    if (d.total < 0 || d.header === null) return null;
    // Complete when the parts cover [0, total) without a hole.
    const spans = d.parts.map((x) => [x.off, x.off + x.data.length] as const).sort((a, b) => a[0] - b[0]);
    let covered = 0;
    for (const [s, e] of spans) {
      if (s > covered) return null;
      if (e > covered) covered = e;
    }
    if (covered < d.total) return null;
    frags.delete(key);
    const h = d.header;
    const out = Buffer.allocUnsafe(h.length + d.total);
    h.copy(out, 0);
    // Latest first, so earlier arrivals overwrite: first wins.
    for (let i = d.parts.length - 1; i >= 0; i--) {
      const x = d.parts[i]!;
      x.data.copy(out, h.length + x.off, 0, Math.min(x.data.length, d.total - x.off));
    }
    if (key.charCodeAt(0) === 54 /* '6' */) {
      // Drop the Fragment header: the header that named it now names what it carried.
      out[d.nhOff] = d.fragNext;
      out.writeUInt16BE(out.length - 40, 4);
    }
    this.counters.reassembled++;
    return out;
  }
}

function formatV4(a: number): string {
  return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
}

/** RFC 5952 §4: lowercase, no leading zeros, the longest run (first on a tie) of 2+ zero groups as "::"; §5 IPv4-mapped in mixed notation. */
export function formatIpv6(b: Buffer, o: number): string {
  const w: number[] = [];
  for (let i = 0; i < 8; i++) w.push((b[o + 2 * i]! << 8) | b[o + 2 * i + 1]!);
  if (w[0] === 0 && w[1] === 0 && w[2] === 0 && w[3] === 0 && w[4] === 0 && w[5] === 0xffff) {
    return `::ffff:${b[o + 12]}.${b[o + 13]}.${b[o + 14]}.${b[o + 15]}`;
  }
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (w[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (x: number): string => x.toString(16);
  if (bestAt < 0) return w.map(hex).join(':');
  return `${w.slice(0, bestAt).map(hex).join(':')}::${w.slice(bestAt + bestLen).map(hex).join(':')}`;
}

function addr(meta: PacketMeta, v4: number, off: number): string {
  if (meta.ipVersion === 4) return formatV4(v4);
  if (meta.ipVersion === 6) return formatIpv6(meta.buf, off);
  return '';
}

/** Source address as text: '10.0.0.1' or canonical RFC 5952 IPv6; '' when not IP. */
export function srcAddr(meta: PacketMeta): string {
  return addr(meta, meta.src4, meta.srcOff);
}

/** Destination address as text, like {@link srcAddr}. */
export function dstAddr(meta: PacketMeta): string {
  return addr(meta, meta.dst4, meta.dstOff);
}

/** '10.0.0.1:554' or '[2001:db8::1]:554' (RFC 3986 §3.2.2 brackets for IPv6). */
export function endpoint(addr: string, port: number): string {
  return addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`;
}

/** Parses a textual IPv4 or IPv6 address (brackets and a %zone are accepted and dropped); null when it is neither. */
export function parseIp(s: string): { version: 4 | 6; bytes: Buffer } | null {
  let t = s.trim();
  if (t.startsWith('[') && t.endsWith(']')) t = t.slice(1, -1);
  const pct = t.indexOf('%');
  if (pct >= 0) t = t.slice(0, pct);
  if (isIPv4(t)) return { version: 4, bytes: Buffer.from(t.split('.').map(Number)) };
  if (!isIPv6(t)) return null;
  const bytes = Buffer.alloc(16);
  let tail = t;
  let v4: number[] | null = null;
  const lastColon = t.lastIndexOf(':');
  if (t.indexOf('.', lastColon) > 0) {
    v4 = t.slice(lastColon + 1).split('.').map(Number);
    tail = t.slice(0, lastColon + 1) + '0:0';
  }
  const [head, rest] = tail.includes('::') ? (tail.split('::') as [string, string]) : [tail, null];
  const hw = head === '' ? [] : head.split(':');
  const rw = rest === null || rest === '' ? [] : rest.split(':');
  const words = rest === null ? hw : [...hw, ...new Array<string>(8 - hw.length - rw.length).fill('0'), ...rw];
  for (let i = 0; i < 8; i++) bytes.writeUInt16BE(parseInt(words[i]!, 16), 2 * i);
  if (v4) for (let i = 0; i < 4; i++) bytes[12 + i] = v4[i]!;
  return { version: 6, bytes };
}
