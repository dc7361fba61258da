/**
 * The packet-path types. Everything here is shaped for the hot path: a tap driver
 * hands the pipeline one {@link TapFrame} at a time, and the object (and the Buffer
 * region it points at) is only valid during that synchronous call. Consumers that
 * keep anything copy it. Nothing on this path allocates per packet beyond views.
 */

/** Link-layer types (pcap LINKTYPE_* numbers) camtap decodes. */
export const LinkType = {
  NULL: 0, // BSD loopback, host-endian AF_ value
  ETHERNET: 1,
  RAW: 101, // raw IPv4/IPv6, version nibble decides
  LOOP: 108, // OpenBSD loopback, network-endian AF_ value
  LINUX_SLL: 113,
  IPV4: 228,
  IPV6: 229,
  LINUX_SLL2: 276,
} as const;
export type LinkTypeValue = (typeof LinkType)[keyof typeof LinkType] | number;

/**
 * One captured frame, as a tap driver hands it to the pipeline.
 *
 * The bytes are `buf[off, off + capLen)`. The object is reused by the caller for the
 * next frame: read it during `sink(frame)` and copy what must outlive the call.
 */
export interface TapFrame {
  /** Numeric id of the tap that saw the frame (stable for the data dir). */
  tapId: number;
  /** Capture time: whole seconds since the Unix epoch. */
  tsSec: number;
  /** Capture time: nanoseconds within `tsSec` (0..999_999_999). */
  tsNsec: number;
  /** pcap LINKTYPE_* of `buf`. */
  linkType: number;
  buf: Buffer;
  off: number;
  /** Bytes captured (present in `buf`). */
  capLen: number;
  /** Bytes on the wire (>= capLen when the snap length cut the frame). */
  origLen: number;
}

/** Where a packet is stored: segment id and the byte offset of its record there. */
export interface StoreLocation {
  segment: number;
  offset: number;
}

/** The callback a tap driver feeds. Synchronous; it never throws for bad packets. */
export type FrameSink = (frame: TapFrame) => void;

/** Transport of an RTP/RTCP stream as captured. */
export type MediaTransport = 'udp' | 'tcp';

/** Protocol class a flow was given by the classifier. */
export type FlowKind = 'unknown' | 'rtp' | 'rtcp' | 'rtsp' | 'http' | 'onvif' | 'other';
