/**
 * What camtap learns and keeps in the catalog. These are plain JSON-able records:
 * the CLI's `--json` output and the REST API show them as they are.
 */

/** An RTP stream: one SSRC on one flow (UDP 5-tuple, or TCP connection + interleaved channel). */
export interface StreamRecord {
  /** Stable id derived from transport, endpoints, channel and SSRC. */
  id: string;
  /** Camera name (inventory name, or the camera's address when it has none). */
  camera: string;
  /** Sender `ip:port` (IPv6 as `[addr]:port`). */
  src: string;
  /** Receiver `ip:port`. */
  dst: string;
  transport: 'udp' | 'tcp';
  /** Interleaved channel for RTP over RTSP/TCP. */
  channel?: number;
  ssrc: number;
  payloadType: number;
  /** Codec name from the SDP rtpmap (`H264`, `H265`, `JPEG`, ...), or null when unknown. */
  codec: string | null;
  clockRate: number | null;
  /** `server->client` (camera to VMS) or `client->server` (e.g. ffmpeg's NAT punch packet). */
  direction: 'server->client' | 'client->server' | 'unknown';
  /** Id of the RTSP session that set it up, when one was seen. */
  session: string | null;
  /** Original RTSP URL of the stream (the session's URL). */
  url: string | null;
  /** Unique packets (duplicates not counted). */
  packets: number;
  duplicates: number;
  outOfOrder: number;
  /** First and last sequence number in capture order. */
  firstSeq: number;
  lastSeq: number;
  /** Lowest and highest extended sequence number (first packet gets 65536 headroom). */
  minExtSeq: number;
  maxExtSeq: number;
  /** expected (maxExtSeq - minExtSeq + 1) minus unique packets. */
  lost: number;
  markers: number;
  /** Frames (access units) and keyframes seen. */
  frames: number;
  keyframes: number;
  payloadBytes: number;
  /** RTP timestamp of the last packet (a later import of the next file continues from it). */
  lastRtpTs: number;
  /** ISO 8601 capture times of the first and last packet. */
  start: string;
  end: string;
  /** Same times in ns since epoch, as decimal strings (exact; JSON has no 64-bit ints). */
  startNs: string;
  endNs: string;
  /** RTCP SR mapping: NTP (ms since Unix epoch) at an RTP timestamp, when an SR was seen. */
  srNtpMs?: number | null;
  srRtpTs?: number | null;
  /** Tap ids that saw it. */
  taps: number[];
  /** Malformed RTP packets attributed to the flow. */
  malformed: number;
}

/** One RTSP request/response pair inside a dialog, with where its packets are stored. */
export interface RtspExchange {
  method: string;
  url: string;
  cseq: number | null;
  status: number | null;
  /** Capture time of the request (ISO 8601). */
  time: string;
  /** Store locations of the packets that carried the request and the response. */
  requestAt: Array<{ segment: number; offset: number }>;
  responseAt: Array<{ segment: number; offset: number }>;
  /** Request headers, credentials redacted (Authorization value replaced). */
  headers: Record<string, string>;
  responseHeaders: Record<string, string>;
}

/** A track negotiated by SETUP. */
export interface RtspTrack {
  controlUrl: string;
  requestedTransport: string | null;
  transport: string | null;
  /** Parsed negotiated transport. */
  lower: 'udp' | 'tcp' | 'udp-mcast' | null;
  clientPorts: [number, number] | null;
  serverPorts: [number, number] | null;
  interleaved: [number, number] | null;
  ssrc: number | null;
  status: number | null;
}

/** One RTSP dialog (a session id on a TCP connection, or the connection when no session id was given). */
export interface SessionRecord {
  id: string;
  /** RTSP `Session` id (without `;timeout=`), or null. */
  sessionId: string | null;
  timeout: number | null;
  client: string;
  server: string;
  url: string;
  contentBase: string | null;
  /** The DESCRIBE SDP, as text. */
  sdp: string | null;
  /** Whether the dialog used authentication, and which scheme. */
  auth: 'basic' | 'digest' | null;
  userAgent: string | null;
  tracks: RtspTrack[];
  requests: RtspExchange[];
  camera: string;
  vms: string;
  start: string;
  end: string;
  taps: number[];
}

/** A camera HTTP / ONVIF exchange recorded as a configuration transaction. */
export interface HttpTransaction {
  id: string;
  kind: 'http' | 'onvif';
  client: string;
  server: string;
  method: string;
  url: string;
  status: number | null;
  /** SOAP action / ONVIF operation when recognised. */
  operation: string | null;
  time: string;
  requestAt: Array<{ segment: number; offset: number }>;
  responseAt: Array<{ segment: number; offset: number }>;
  headers: Record<string, string>;
  camera: string;
  vms: string;
}

export interface CameraRecord {
  name: string;
  address: string;
  urls: string[];
  codecs: string[];
  vms: string[];
  firstSeen: string;
  lastSeen: string;
}

export interface VmsRecord {
  name: string;
  address: string;
  userAgents: string[];
  cameras: string[];
  firstSeen: string;
  lastSeen: string;
}

/** A stored segment: camtap's own pcapng, or a capture indexed where it lies (`--in-place`). */
export interface SegmentRecord {
  id: number;
  path: string;
  format: 'pcap' | 'pcapng';
  external: boolean;
  sealed: boolean;
  bytes: number;
  packets: number;
  /** ns since epoch as decimal strings. */
  startNs: string;
  endNs: string;
  /** Stream ids with packets in this segment. */
  streams: string[];
}
