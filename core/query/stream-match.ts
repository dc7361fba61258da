/**
 * Which captured packets belong to a stream: the stream record's sender -> receiver
 * endpoints on its transport (UDP 5-tuple; for RTP interleaved in RTSP, the TCP
 * connection's camera -> client direction). Compared on the decoded header fields
 * (ports, then address words or bytes) so the scan allocates nothing per packet.
 * SSRC and interleaved channel are checked by the callers, on the RTP they extract.
 */
import type { StreamRecord } from '../contracts/records.js';
import { parseIp, type PacketMeta } from '../wire/packet.js';

interface Endpoint {
  version: 4 | 6;
  /** IPv4 address as uint32; 0 for IPv6. */
  v4: number;
  /** IPv6 address bytes (empty for IPv4). */
  v6: Buffer;
  port: number;
}

/** `ip:port` or `[v6]:port` as the stream records write them; null when malformed. */
export function parseEndpoint(s: string): Endpoint | null {
  const i = s.lastIndexOf(':');
  if (i <= 0) return null;
  const port = Number(s.slice(i + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535) return null;
  const ip = parseIp(s.slice(0, i));
  if (ip === null) return null;
  if (ip.version === 4) return { version: 4, v4: ip.bytes.readUInt32BE(0), v6: Buffer.alloc(0), port };
  return { version: 6, v4: 0, v6: ip.bytes, port };
}

function sameAddr(meta: PacketMeta, ep: Endpoint, v4: number, off: number): boolean {
  if (meta.ipVersion !== ep.version) return false;
  if (ep.version === 4) return v4 >>> 0 === ep.v4;
  const b = meta.buf;
  for (let i = 0; i < 16; i++) if (b[off + i] !== ep.v6[i]) return false;
  return true;
}

export class StreamMatcher {
  readonly transport: 'udp' | 'tcp';
  readonly ssrc: number;
  /** Interleaved RTP channel (TCP streams). */
  readonly channel: number;
  readonly #src: Endpoint;
  readonly #dst: Endpoint;
  readonly #proto: number;

  /** @throws TypeError when the record's endpoints do not parse (a catalog written by something else). */
  constructor(stream: StreamRecord) {
    const src = parseEndpoint(stream.src);
    const dst = parseEndpoint(stream.dst);
    if (src === null || dst === null) throw new TypeError(`stream ${stream.id}: endpoints ${stream.src} -> ${stream.dst} do not parse`);
    this.#src = src;
    this.#dst = dst;
    this.transport = stream.transport;
    this.#proto = stream.transport === 'tcp' ? 6 : 17;
    this.ssrc = stream.ssrc >>> 0;
    this.channel = stream.channel ?? 0;
  }

  /** The decoded packet goes from the stream's sender to its receiver on the stream's transport. */
  matches(meta: PacketMeta): boolean {
    return (
      meta.protocol === this.#proto &&
      meta.sport === this.#src.port &&
      meta.dport === this.#dst.port &&
      sameAddr(meta, this.#src, meta.src4, meta.srcOff) &&
      sameAddr(meta, this.#dst, meta.dst4, meta.dstOff)
    );
  }
}
