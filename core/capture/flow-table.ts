/**
 * Direction-sensitive flow table keyed by (protocol, addresses, ports). Lookup allocates
 * nothing: the decoder's 32-bit flow hash picks a bucket and the candidates are compared
 * field by field (IPv4 as numbers, IPv6 as bytes in place). Only the first packet of a
 * flow creates anything.
 */
import type { PacketMeta } from '../wire/packet.js';
import { srcAddr, dstAddr, endpoint } from '../wire/packet.js';
import type { FlowKind } from '../contracts/frame.js';

export class Flow {
  readonly protocol: number;
  readonly ipVersion: number;
  readonly src4: number;
  readonly dst4: number;
  readonly src6: Buffer | null;
  readonly dst6: Buffer | null;
  readonly sport: number;
  readonly dport: number;
  readonly hash: number;
  /** Dotted / RFC 5952 address strings and `ip:port` endpoints, made once per flow. */
  readonly srcIp: string;
  readonly dstIp: string;
  readonly src: string;
  readonly dst: string;
  kind: FlowKind = 'unknown';
  /** Classification epoch: learned port rules changed since this flow was classified. */
  epoch = -1;
  /** Set once classification is final (learned from a dialog or a protocol's first bytes). */
  settled = false;
  packets = 0;
  bytes = 0;
  lastSec = 0;
  /** Protocol state owned by the pipeline (RTP streams, TCP connection side, ...). */
  state: unknown = null;

  constructor(m: PacketMeta) {
    this.protocol = m.protocol;
    this.ipVersion = m.ipVersion;
    this.src4 = m.src4;
    this.dst4 = m.dst4;
    this.src6 = m.ipVersion === 6 ? Buffer.from(m.buf.subarray(m.srcOff, m.srcOff + 16)) : null;
    this.dst6 = m.ipVersion === 6 ? Buffer.from(m.buf.subarray(m.dstOff, m.dstOff + 16)) : null;
    this.sport = m.sport;
    this.dport = m.dport;
    this.hash = m.flowHash;
    this.srcIp = srcAddr(m);
    this.dstIp = dstAddr(m);
    this.src = endpoint(this.srcIp, m.sport);
    this.dst = endpoint(this.dstIp, m.dport);
  }

  matches(m: PacketMeta): boolean {
    if (this.sport !== m.sport || this.dport !== m.dport || this.protocol !== m.protocol || this.ipVersion !== m.ipVersion) return false;
    if (this.ipVersion === 4) return this.src4 === m.src4 && this.dst4 === m.dst4;
    return m.buf.compare(this.src6!, 0, 16, m.srcOff, m.srcOff + 16) === 0 && m.buf.compare(this.dst6!, 0, 16, m.dstOff, m.dstOff + 16) === 0;
  }
}

export class FlowTable {
  readonly #buckets = new Map<number, Flow | Flow[]>();
  #size = 0;
  /** Flows idle longer than this (capture seconds) are dropped by sweep(). */
  readonly idleSec: number;

  constructor(opts: { idleSec?: number } = {}) {
    this.idleSec = opts.idleSec ?? 600;
  }

  get size(): number {
    return this.#size;
  }

  /** The flow of a decoded packet; `created` tells the caller to classify it. */
  lookup(m: PacketMeta): Flow | null {
    const b = this.#buckets.get(m.flowHash);
    if (b === undefined) return null;
    if (b instanceof Flow) return b.matches(m) ? b : null;
    for (let i = 0; i < b.length; i++) if (b[i]!.matches(m)) return b[i]!;
    return null;
  }

  insert(m: PacketMeta): Flow {
    const f = new Flow(m);
    const b = this.#buckets.get(f.hash);
    if (b === undefined) this.#buckets.set(f.hash, f);
    else if (b instanceof Flow) this.#buckets.set(f.hash, [b, f]);
    else b.push(f);
    this.#size++;
    return f;
  }

  *flows(): IterableIterator<Flow> {
    for (const b of this.#buckets.values()) {
      if (b instanceof Flow) yield b;
      else yield* b;
    }
  }

  /** Drops flows idle for idleSec; `onEvict` lets the owner flush their state first. */
  sweep(nowSec: number, onEvict: (f: Flow) => void): number {
    let n = 0;
    for (const [h, b] of this.#buckets) {
      const list = b instanceof Flow ? [b] : b;
      const keep = list.filter((f) => {
        if (nowSec - f.lastSec <= this.idleSec) return true;
        onEvict(f);
        n++;
        return false;
      });
      if (keep.length === 0) this.#buckets.delete(h);
      else this.#buckets.set(h, keep.length === 1 ? keep[0]! : keep);
    }
    this.#size -= n;
    return n;
  }
}
