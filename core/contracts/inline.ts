/**
 * The inline tap: what camtap relays itself (RTSP proxy legs, HTTP/ONVIF proxy exchanges,
 * upstream camera sessions) enters the same capture pipeline as captured traffic. The
 * relaying code reports bytes and datagrams with their real endpoints; the inline tap
 * driver (tap-drivers/inline) synthesizes the IP/UDP/TCP headers a capture would have
 * shown and hands the frames to the store and pipeline, so the store, index, sessions and
 * inventory treat them like any tap's packets, and tshark reads the segments as usual.
 */

/** An `ip:port` endpoint (IPv4 dotted, IPv6 without brackets). */
export interface Endpoint {
  ip: string;
  port: number;
}

/** One recorded TCP connection: bytes each way, in the order they were relayed. */
export interface TcpRecording {
  /** Bytes the client sent (toward the server). */
  fromClient(data: Buffer): void;
  /** Bytes the server sent (toward the client). */
  fromServer(data: Buffer): void;
  /** The connection closed (a FIN each way is recorded). Idempotent. */
  close(): void;
}

/** Records relayed traffic as if captured on the wire. Every method is synchronous and never throws. */
export interface InlineRecorder {
  /** A TCP connection from `client` to `server` (the handshake is recorded at once). */
  tcp(client: Endpoint, server: Endpoint): TcpRecording;
  /** One UDP datagram. */
  udp(src: Endpoint, dst: Endpoint, payload: Buffer): void;
}
