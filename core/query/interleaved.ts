/**
 * RTP interleaved in an RTSP connection (RFC 2326 §10.12: `$`, channel, 16-bit length,
 * then the RTP packet), read back from stored TCP segments of the camera -> client
 * direction: TCP reassembly (core/capture/tcp-reassembly.ts) then the RTSP stream parser
 * (core/wire/rtsp-message.ts), as at capture.
 *
 * A read starts mid-connection, at the packet the index points at: the one holding the
 * `$` of an indexed frame, which may follow the tail of the previous frame in the same
 * segment. So the byte stream is entered at a frame header that is checked down to the
 * RTP header (`$`, the channel, a length of at least 12, RTP version 2, the stream's
 * SSRC and, when known, the indexed sequence number) instead of trusting the parser's
 * resync on a bare `$`, which a payload byte can fake.
 */
import { TcpReassembler } from '../capture/tcp-reassembly.js';
import { MessageStreamParser } from '../wire/rtsp-message.js';
import type { PacketMeta } from '../wire/packet.js';

const DOLLAR = 0x24;
const TCP_SYN = 0x02;
/** Packets looked at for the exact sequence number before any frame of the stream will do. */
const ANCHOR_TRIES = 64;

/** Offset in `buf[off, off + len)` of a `$` frame header of `channel` carrying RTP of `ssrc` (and `seq` unless null); -1 if none. */
export function findInterleavedFrame(buf: Buffer, off: number, len: number, channel: number, ssrc: number, seq: number | null): number {
  const end = off + len;
  for (let j = off; j + 16 <= end; j++) {
    if (buf[j] !== DOLLAR || buf[j + 1] !== channel) continue;
    if (buf.readUInt16BE(j + 2) < 12 || buf[j + 4]! >>> 6 !== 2) continue;
    if (buf.readUInt32BE(j + 12) !== ssrc) continue;
    if (seq !== null && buf.readUInt16BE(j + 6) !== seq) continue;
    return j - off;
  }
  return -1;
}

export class InterleavedSource {
  readonly #channel: number;
  readonly #ssrc: number;
  #anchorSeq: number | null;
  #tries = 0;
  #reasm: TcpReassembler | null = null;
  readonly #parser: MessageStreamParser;
  #tsNs = 0n;
  /** Parser complaints (garbage, gaps) while reading. */
  errors = 0;

  /**
   * @param anchorSeq 16-bit sequence number of the frame the read starts at (the index entry's), or null
   * @param onFrame gets each RTP packet of the channel (a view valid during the call) with the capture time of the TCP packet that completed it
   */
  constructor(channel: number, ssrc: number, anchorSeq: number | null, onFrame: (rtp: Buffer, tsNs: bigint) => void) {
    this.#channel = channel;
    this.#ssrc = ssrc >>> 0;
    this.#anchorSeq = anchorSeq;
    this.#parser = new MessageStreamParser({
      onMessage: () => {},
      onInterleaved: (ch, payload) => {
        if (ch === this.#channel) onFrame(payload, this.#tsNs);
      },
      onError: () => {
        this.errors++;
      },
    });
  }

  /** One TCP packet of the camera -> client direction (decoded into `meta`), captured at `tsNs`. */
  push(meta: PacketMeta, tsNs: bigint): void {
    this.#tsNs = tsNs;
    if (meta.payloadLen <= 0) return;
    if (this.#reasm === null) {
      const i = findInterleavedFrame(meta.buf, meta.payloadOff, meta.payloadLen, this.#channel, this.#ssrc, this.#anchorSeq);
      if (i < 0) {
        if (this.#anchorSeq !== null && ++this.#tries >= ANCHOR_TRIES) this.#anchorSeq = null;
        return;
      }
      const parser = this.#parser;
      this.#reasm = new TcpReassembler({
        onData: (data) => parser.push(data, null),
        onGap: (bytes) => parser.gap(bytes),
      });
      this.#reasm.push((meta.tcpSeq + i) >>> 0, 0, meta.buf, meta.payloadOff + i, meta.payloadLen - i, null);
      return;
    }
    this.#reasm.push(meta.tcpSeq, meta.tcpFlags & ~TCP_SYN, meta.buf, meta.payloadOff, meta.payloadLen, null);
  }

  /** End of the read: data held behind a hole is delivered. */
  flush(): void {
    this.#reasm?.flush();
  }
}
