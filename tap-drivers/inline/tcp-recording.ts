/**
 * One relayed TCP connection as a capture would have shown it (RFC 9293): the three-way
 * handshake, the bytes each way cut into MSS-sized segments with consistent sequence
 * and acknowledgment numbers, and a FIN each way at the end.
 *
 * The relaying code only knows the bytes it passed on, in order, so every segment
 * acknowledges all the other side has sent so far. The receiver's own pure ACKs are
 * not invented per segment (they would double the stored packets of an interleaved RTP
 * stream); one is recorded only when the sender's unacknowledged bytes would exceed the
 * 64 KiB window, so a dissector never sees a sender overrun the window it was given.
 */
import { randomInt } from 'node:crypto';
import type { TcpRecording } from '../../core/contracts/inline.js';
import type { IpAddr } from './addresses.js';
import { TCP_ACK, TCP_FIN, TCP_PSH, TCP_SYN, TCP_WINDOW } from './frames.js';

/** Where a connection's segments go (the tap: it stamps the time, builds and delivers frames). */
export interface TcpSegmentOut {
  /** The time of the call that is about to record segments. */
  stamp(): void;
  /** One segment from the client (`fromClient`) or the server. `data` is null for segments without payload. */
  segment(conn: TcpConnection, fromClient: boolean, seq: number, ack: number, flags: number, mss: number, data: Buffer | null, off: number, len: number): void;
  /** Segments that could not be recorded (writes after close, non-Buffer data). */
  dropped(frames: number): void;
}

/** One direction's sequence space. */
interface Side {
  /** Next sequence number this side sends. */
  next: number;
  /** Highest sequence number of this side the other side has acknowledged. */
  acked: number;
}

export class TcpConnection implements TcpRecording {
  readonly client: IpAddr;
  readonly clientPort: number;
  readonly server: IpAddr;
  readonly serverPort: number;
  /** Filter verdicts per direction, computed by the tap for the filter epoch in `keepEpoch`. */
  keepC2S = true;
  keepS2C = true;
  keepEpoch = -1;
  readonly #out: TcpSegmentOut;
  readonly #segment: number;
  readonly #c: Side;
  readonly #s: Side;
  #closed = false;

  /**
   * Records the handshake at once. `segment` is the payload per data segment, `mss` the
   * value of the MSS option in both SYNs.
   */
  constructor(client: IpAddr, clientPort: number, server: IpAddr, serverPort: number, out: TcpSegmentOut, segment: number, mss: number) {
    this.client = client;
    this.clientPort = clientPort;
    this.server = server;
    this.serverPort = serverPort;
    this.#out = out;
    this.#segment = segment;
    // RFC 9293 §3.4.1: initial sequence numbers that an observer cannot predict.
    const cIsn = randomInt(0x100000000);
    const sIsn = randomInt(0x100000000);
    this.#c = { next: (cIsn + 1) >>> 0, acked: (cIsn + 1) >>> 0 };
    this.#s = { next: (sIsn + 1) >>> 0, acked: (sIsn + 1) >>> 0 };
    out.stamp();
    out.segment(this, true, cIsn, 0, TCP_SYN, mss, null, 0, 0);
    out.segment(this, false, sIsn, this.#c.next, TCP_SYN | TCP_ACK, mss, null, 0, 0);
    out.segment(this, true, this.#c.next, this.#s.next, TCP_ACK, 0, null, 0, 0);
  }

  /** Whether close() was called. */
  get closed(): boolean {
    return this.#closed;
  }

  fromClient(data: Buffer): void {
    this.#write(true, data);
  }

  fromServer(data: Buffer): void {
    this.#write(false, data);
  }

  #write(fromClient: boolean, data: Buffer): void {
    if (!Buffer.isBuffer(data)) {
      this.#out.dropped(1);
      return;
    }
    const len = data.length;
    if (len === 0) return;
    if (this.#closed) {
      this.#out.dropped(Math.ceil(len / this.#segment));
      return;
    }
    const snd = fromClient ? this.#c : this.#s;
    const rcv = fromClient ? this.#s : this.#c;
    const out = this.#out;
    out.stamp();
    for (let off = 0; off < len; ) {
      const n = Math.min(this.#segment, len - off);
      if (((snd.next - snd.acked) >>> 0) + n > TCP_WINDOW) {
        // The receiver acknowledges what it has before its window would be overrun.
        out.segment(this, !fromClient, rcv.next, snd.next, TCP_ACK, 0, null, 0, 0);
        snd.acked = snd.next;
      }
      const last = off + n === len;
      out.segment(this, fromClient, snd.next, rcv.next, last ? TCP_ACK | TCP_PSH : TCP_ACK, 0, data, off, n);
      snd.next = (snd.next + n) >>> 0;
      rcv.acked = rcv.next;
      off += n;
    }
  }

  /** FIN from the client, FIN from the server, and the client's last ACK (RFC 9293 §3.6). Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const c = this.#c;
    const s = this.#s;
    const out = this.#out;
    out.stamp();
    out.segment(this, true, c.next, s.next, TCP_FIN | TCP_ACK, 0, null, 0, 0);
    c.next = (c.next + 1) >>> 0;
    out.segment(this, false, s.next, c.next, TCP_FIN | TCP_ACK, 0, null, 0, 0);
    s.next = (s.next + 1) >>> 0;
    out.segment(this, true, c.next, s.next, TCP_ACK, 0, null, 0, 0);
    c.acked = c.next;
    s.acked = s.next;
  }
}
