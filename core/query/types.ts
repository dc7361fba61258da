/**
 * Stream requests: what a requester asks for (a selector), what camtap resolves it to (a
 * plan: one stream, its dialog and SDP, the time range, the segments to read), and what
 * comes out (replay packets in order, rewritten to be continuous).
 */
import type { SegmentRecord, SessionRecord, StreamRecord } from '../contracts/records.js';

/** A request for a stream. Every field is optional; present fields must all match. */
export interface StreamSelector {
  /** Stream id (`camtap streams`), exact. */
  id?: string;
  /** Camera: inventory name, or its address. */
  camera?: string;
  /** Destination: VMS/client name or address (`ip` or `ip:port`). */
  dst?: string;
  /** Codec name as in the SDP (`H264`, `H265`, `JPEG`), case-insensitive. */
  codec?: string;
  /** Original RTSP URL of the stream, or its path (`/stream1`). */
  url?: string;
  ssrc?: number;
  /** Start of the time range: ISO 8601, or relative to now like `-10m`, `-30s`, `-2h`. Absent: the stream's start. */
  start?: string;
  /** End of the time range (same forms). Absent: the stream's end (recorded) or open-ended (live). */
  end?: string;
}

export interface ReplayPlan {
  stream: StreamRecord;
  /** The RTSP dialog that set the stream up, if one was captured. */
  session: SessionRecord | null;
  /** The SDP to announce (from the dialog's DESCRIBE, else built from the stream). */
  sdp: string;
  /** The requested range in ns since the epoch (clamped to the stream). */
  startNs: bigint;
  endNs: bigint;
  /** Segments holding packets of the stream in the range, in time order (led by the keyframe lookback ones: see `lookbackSegments`). */
  segments: SegmentRecord[];
  /**
   * How many of `segments`, at the head of the list, lie wholly before `startNs`: they
   * are only there so a replay can start at the keyframe that precedes the range (see
   * core/query/plan.ts). Absent means 0.
   */
  lookbackSegments?: number;
  /**
   * The request reaches past the stream's last recorded packet (no end given, or an end
   * after it): a live stream may have more than `endNs` by the time it is served.
   */
  openEnd?: boolean;
}

/** One packet of a replay, in sequence order. Buffers are valid until the iterator advances. */
export interface ReplayPacket {
  /** Capture time (ns since the epoch), for pacing. */
  tsNs: bigint;
  /** The RTP packet rewritten: continuous sequence numbers, timestamps and the output SSRC. */
  rtp: Buffer;
  /** Rewritten header fields (also in `rtp`). */
  seq: number;
  timestamp: number;
  marker: boolean;
  payloadType: number;
  /** Original (captured) sequence number (extended) and RTP timestamp. */
  origExtSeq: number;
  origTimestamp: number;
  /** The packet starts a keyframe (IDR/IRAP/JPEG frame). */
  keyframe: boolean;
  /** Packets are missing right before this one (capture loss). */
  gapBefore: number;
}
