/**
 * Where a replay session's RTP and RTCP go: a UDP socket pair (RFC 2326 §12.39
 * `client_port`/`server_port`, RFC 3550 §11 even/odd ports) or interleaved `$` frames on
 * the RTSP connection (RFC 2326 §10.12).
 *
 * The replay source reuses its packet buffers as it advances, while a socket may still
 * hold a written buffer (a TCP write that did not complete, a UDP send that met EAGAIN),
 * so every packet is copied once into a slab that is never reused (the GC frees a slab
 * when the last write holding it completes). That copy is also where the `$` header is
 * put, so a frame is one write.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { Endpoint, InlineRecorder } from '../contracts/inline.js';
import type { Logger } from '../contracts/logger.js';
import { formatTransport } from '../wire/rtsp-transport.js';

/** A session's packet output, independent of the lower transport. */
export interface MediaOutput {
  readonly kind: 'udp' | 'tcp';
  /** The `Transport` value of the SETUP answer. */
  transport(ssrc: number): string;
  /** Sends one RTP packet (copied). False when the client is gone or was dropped: stop sending. */
  sendRtp(packet: Buffer): boolean;
  /** Sends one RTCP compound packet (copied). */
  sendRtcp(packet: Buffer): boolean;
  /**
   * Flow control for unpaced (`max`) sending: null when more may be sent now, else a
   * promise that settles when the client has taken data (TCP drain), the connection is
   * gone, or (UDP) the event loop has had a turn.
   */
  backpressure(): Promise<void> | null;
  /** The client is behind now (queue over its high-water mark): a live sender drops rather than waits. */
  congested(): boolean;
  readonly closed: boolean;
  close(): void;
}

/** Bump allocator over large slabs that are never reused (see the file comment). */
export class SendSlab {
  #slab: Buffer;
  #pos = 0;
  readonly #size: number;

  constructor(slabBytes = 256 * 1024) {
    this.#size = slabBytes;
    this.#slab = Buffer.allocUnsafeSlow(slabBytes);
  }

  /** `n` fresh bytes, valid as long as the caller holds the view. */
  take(n: number): Buffer {
    if (n > this.#size >> 2) return Buffer.allocUnsafe(n);
    if (this.#pos + n > this.#slab.length) {
      this.#slab = Buffer.allocUnsafeSlow(this.#size);
      this.#pos = 0;
    }
    const b = this.#slab.subarray(this.#pos, this.#pos + n);
    this.#pos += n;
    return b;
  }
}

/** The RTSP connection as an interleaved sink (implemented by the server's connection). */
export interface InterleavedLink {
  /** Writes one whole `$` frame. False if the connection is closed or was just dropped because its send queue is full. */
  writeFrame(frame: Buffer): boolean;
  /** null while the socket's queue is under its high-water mark; else settles on drain or close. */
  drained(): Promise<void> | null;
  /** The send queue is over its high-water mark. */
  readonly congested: boolean;
  readonly closed: boolean;
}

/** RTP/RTCP as `$` frames on the RTSP connection, channels `[rtp, rtcp]`. */
export class InterleavedOutput implements MediaOutput {
  readonly kind = 'tcp' as const;
  readonly #link: InterleavedLink;
  readonly channels: [number, number];
  readonly #slab = new SendSlab();
  #closed = false;

  constructor(link: InterleavedLink, channels: [number, number]) {
    this.#link = link;
    this.channels = channels;
  }

  get closed(): boolean {
    return this.#closed || this.#link.closed;
  }

  transport(ssrc: number): string {
    return formatTransport({ profile: 'RTP/AVP/TCP', multicast: false, interleaved: this.channels, ssrc, mode: 'PLAY' });
  }

  sendRtp(packet: Buffer): boolean {
    return this.#frame(this.channels[0], packet);
  }

  sendRtcp(packet: Buffer): boolean {
    return this.#frame(this.channels[1], packet);
  }

  /**
   * ```
   * | '$' (0x24) | channel | length (16 bits) | packet ... |   RFC 2326 §10.12
   * ```
   */
  #frame(channel: number, packet: Buffer): boolean {
    if (this.closed) return false;
    const len = packet.length;
    if (len > 0xffff) return true; // cannot be framed; never produced by RTP over UDP or TCP capture
    const f = this.#slab.take(4 + len);
    f[0] = 0x24;
    f[1] = channel;
    f.writeUInt16BE(len, 2);
    packet.copy(f, 4);
    return this.#link.writeFrame(f);
  }

  backpressure(): Promise<void> | null {
    return this.closed ? null : this.#link.drained();
  }

  congested(): boolean {
    return this.#link.congested;
  }

  close(): void {
    this.#closed = true;
  }
}

/** Packets sent to UDP between turns given to the event loop when unpaced. */
const UDP_BURST = 32;
/** Datagrams queued in user space above which a UDP output counts as congested. */
const UDP_CONGESTED_PACKETS = 256;

/** Strips the IPv4-mapped prefix a dual-stack listener reports (`::ffff:127.0.0.1`). */
export function plainAddress(a: string): string {
  return a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a;
}

function bindSocket(s: UdpSocket, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error) => reject(e);
    s.once('error', onError);
    s.bind({ port, address: host, exclusive: true }, () => {
      s.off('error', onError);
      resolve();
    });
  });
}

function connectSocket(s: UdpSocket, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    s.connect(port, host, (err?: Error) => (err ? reject(err) : resolve()));
  });
}

/**
 * Binds an even RTP port and the odd port above it for RTCP (RFC 3550 §11) on `host`.
 * The OS picks the first port; when its neighbour is taken, both are dropped and it
 * tries again.
 */
export async function bindUdpPair(host: string, attempts = 20): Promise<[UdpSocket, UdpSocket]> {
  const type = isIPv6(host) ? 'udp6' : 'udp4';
  for (let i = 0; i < attempts; i++) {
    const a = createSocket(type);
    a.on('error', () => {});
    try {
      await bindSocket(a, 0, host);
    } catch (e) {
      a.close();
      throw e;
    }
    const p = a.address().port;
    const other = p % 2 === 0 ? p + 1 : p - 1;
    if (other < 1024 || other > 65535) {
      a.close();
      continue;
    }
    const b = createSocket(type);
    b.on('error', () => {});
    try {
      await bindSocket(b, other, host);
    } catch {
      b.close();
      a.close();
      continue;
    }
    return p % 2 === 0 ? [a, b] : [b, a];
  }
  throw new Error(`no free even/odd UDP port pair on ${host}`);
}

/**
 * Unicast UDP to the client's `client_port` pair from a server port pair. Both sockets
 * are connected to the client, so they only hear the client (its NAT-punch packets and
 * RTCP receiver reports, which count as keepalive) and sends skip the per-packet lookup.
 */
export class UdpOutput implements MediaOutput {
  readonly kind = 'udp' as const;
  readonly #rtp: UdpSocket;
  readonly #rtcp: UdpSocket;
  readonly clientPorts: [number, number];
  readonly serverPorts: [number, number];
  readonly #slab = new SendSlab();
  #sinceYield = 0;
  #closed = false;
  /** Send errors (ICMP port unreachable on a connected socket, ...): counted, not fatal. */
  errors = 0;
  #record: { rec: InlineRecorder; rtp: [Endpoint, Endpoint]; rtcp: [Endpoint, Endpoint] } | null = null;

  private constructor(rtp: UdpSocket, rtcp: UdpSocket, clientPorts: [number, number], onActivity: () => void, log: Logger) {
    this.#rtp = rtp;
    this.#rtcp = rtcp;
    this.clientPorts = clientPorts;
    this.serverPorts = [rtp.address().port, rtcp.address().port];
    const onError = (e: Error) => {
      this.errors++;
      if (this.errors === 1) log.debug({ err: e.message }, 'udp output error');
    };
    for (const s of [rtp, rtcp]) {
      s.removeAllListeners('error');
      s.on('error', onError);
      s.on('message', onActivity);
    }
  }

  /** Binds a port pair on `localHost` (the address the RTSP connection came in on) and connects it to `peerHost`'s `clientPorts`. */
  static async open(opts: {
    localHost: string;
    peerHost: string;
    clientPorts: [number, number];
    onActivity: () => void;
    log: Logger;
    /** Records every datagram sent (the inline tap, for a VMS of a proxied camera). */
    recorder?: InlineRecorder | null;
  }): Promise<UdpOutput> {
    const [rtp, rtcp] = await bindUdpPair(plainAddress(opts.localHost));
    try {
      const peer = plainAddress(opts.peerHost);
      await connectSocket(rtp, opts.clientPorts[0], peer);
      await connectSocket(rtcp, opts.clientPorts[1], peer);
    } catch (e) {
      rtp.close();
      rtcp.close();
      throw e;
    }
    const out = new UdpOutput(rtp, rtcp, opts.clientPorts, opts.onActivity, opts.log);
    if (opts.recorder) {
      const peer = plainAddress(opts.peerHost);
      const local = plainAddress(opts.localHost);
      out.#record = { rec: opts.recorder, rtp: [{ ip: local, port: out.serverPorts[0] }, { ip: peer, port: opts.clientPorts[0] }], rtcp: [{ ip: local, port: out.serverPorts[1] }, { ip: peer, port: opts.clientPorts[1] }] };
    }
    return out;
  }

  get closed(): boolean {
    return this.#closed;
  }

  transport(ssrc: number): string {
    return formatTransport({ profile: 'RTP/AVP', multicast: false, clientPorts: this.clientPorts, serverPorts: this.serverPorts, ssrc, mode: 'PLAY' });
  }

  sendRtp(packet: Buffer): boolean {
    const r = this.#record;
    if (r !== null && !this.#closed) r.rec.udp(r.rtp[0], r.rtp[1], packet);
    return this.#send(this.#rtp, packet);
  }

  sendRtcp(packet: Buffer): boolean {
    const r = this.#record;
    if (r !== null && !this.#closed) r.rec.udp(r.rtcp[0], r.rtcp[1], packet);
    return this.#send(this.#rtcp, packet);
  }

  #send(s: UdpSocket, packet: Buffer): boolean {
    if (this.#closed) return false;
    const copy = this.#slab.take(packet.length);
    packet.copy(copy);
    s.send(copy);
    this.#sinceYield++;
    return true;
  }

  /** Datagrams the kernel has not taken yet (loopback or a full NIC queue): the client side is not keeping up. */
  congested(): boolean {
    return this.#rtp.getSendQueueCount() > UDP_CONGESTED_PACKETS;
  }

  /** Gives the event loop a turn every few dozen packets (UDP has no back-pressure to wait on). */
  backpressure(): Promise<void> | null {
    if (this.#closed) return null;
    if (this.#rtp.getSendQueueCount() > 0) {
      this.#sinceYield = 0;
      return new Promise((r) => setTimeout(r, 1));
    }
    if (this.#sinceYield < UDP_BURST) return null;
    this.#sinceYield = 0;
    return yieldToLoop();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const s of [this.#rtp, this.#rtcp]) {
      try {
        s.close();
      } catch {
        // already closed
      }
    }
  }
}
