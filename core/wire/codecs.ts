/**
 * Video payload inspection: from one RTP payload, the NAL/JPEG facts the index needs
 * (does this packet begin an access unit, does it carry a keyframe or parameter sets).
 * No depacketization and no allocation: a few header bytes are read per packet.
 *
 * What counts as the start of an access unit is only partly visible in one packet; the
 * flags report what the payload shows, and the caller combines them with the RTP facts
 * (a new timestamp, the previous packet's marker bit).
 */

/**
 * Bits of the mask {@link inspectPayload} returns. (A plain object rather than a
 * `const enum`: tests run through a transpile-only loader, which cannot inline const
 * enums across modules.)
 */
export const FrameFlags = {
  NONE: 0,
  /** The packet begins an access unit (first slice of a picture, or a NAL unit that precedes one). */
  FRAME_START: 1,
  /** The packet begins a picture a decoder can start from (IDR/IRAP, or H.264 SPS, or any JPEG frame). */
  KEYFRAME: 2,
  /** The packet carries parameter sets (H.264 SPS/PPS, H.265 VPS/SPS/PPS, MPEG-4 VOS/VOL). */
  PARAMETER_SETS: 4,
} as const;
export type FrameFlags = number;

const START = FrameFlags.FRAME_START;
const KEY = FrameFlags.KEYFRAME;
const PSETS = FrameFlags.PARAMETER_SETS;

export type CodecKind = 'H264' | 'H265' | 'JPEG' | 'MP4V' | 'other';

/** Names seen so far (SDP rtpmap spellings), so the packet path does not upper-case per packet. Bounded: names come from the network. */
const KIND_CACHE = new Map<string, CodecKind>();

/** The codec families camtap inspects; everything else is `other`. */
export function codecKind(codec: string | null): CodecKind {
  if (!codec) return 'other';
  const cached = KIND_CACHE.get(codec);
  if (cached) return cached;
  const kind = kindOf(codec.toUpperCase());
  if (KIND_CACHE.size < 256) KIND_CACHE.set(codec, kind);
  return kind;
}

function kindOf(codec: string): CodecKind {
  switch (codec) {
    case 'H264':
    case 'H264-SVC':
      return 'H264';
    case 'H265':
    case 'HEVC':
      return 'H265';
    case 'JPEG':
      return 'JPEG';
    case 'MP4V-ES':
    case 'MP4V':
      return 'MP4V';
    default:
      return 'other';
  }
}

/**
 * Flags (a {@link FrameFlags} mask) of one RTP payload `buf[off, off + len)`.
 * `codec` is the SDP encoding name as {@link codecFor} returns it (upper-case); other
 * spellings are matched through {@link codecKind}. Unknown codecs and malformed
 * payloads give 0.
 */
export function inspectPayload(codec: string, buf: Buffer, off: number, len: number): number {
  if (off < 0 || len <= 0 || off + len > buf.length) return 0;
  switch (codec) {
    case 'H264':
      return inspectH264(buf, off, len);
    case 'H265':
      return inspectH265(buf, off, len);
    case 'JPEG':
      return inspectJpeg(buf, off, len);
    case 'MP4V-ES':
      return inspectMp4v(buf, off, len);
    default:
      switch (codecKind(codec)) {
        case 'H264':
          return inspectH264(buf, off, len);
        case 'H265':
          return inspectH265(buf, off, len);
        case 'JPEG':
          return inspectJpeg(buf, off, len);
        case 'MP4V':
          return inspectMp4v(buf, off, len);
        default:
          return 0;
      }
  }
}

/**
 * Flags of one H.264 NAL unit of `type` whose first payload byte (after the 1-byte NAL
 * header) is `next` (-1 if absent). H.264 §7.4.1.2.3: AUD (9), SPS (7), PPS (8) and
 * SEI (6) can only begin or lead into an access unit; a slice (1, 5) begins a picture
 * when first_mb_in_slice is 0, which as ue(v) is the single bit `1`.
 */
function h264Nal(type: number, next: number): number {
  switch (type) {
    case 1:
      return next >= 0 && next & 0x80 ? START : 0;
    case 5:
      return KEY | (next >= 0 && next & 0x80 ? START : 0);
    case 7:
      return START | KEY | PSETS;
    case 8:
      return START | PSETS;
    case 6:
    case 9:
      return START;
    default:
      return 0;
  }
}

/**
 * H.264 over RTP (RFC 6184 §5.2): single NAL unit (1..23), STAP-A (24), STAP-B (25),
 * FU-A (28), FU-B (29). A fragment says something only when its S bit is set. MTAPs
 * (26, 27) are not inspected.
 */
export function inspectH264(buf: Buffer, off: number, len: number): number {
  if (len < 1 || off < 0 || off + len > buf.length) return 0;
  const type = buf[off]! & 0x1f;
  const end = off + len;
  if (type >= 1 && type <= 23) return h264Nal(type, len > 1 ? buf[off + 1]! : -1);
  if (type === 24 || type === 25) {
    // [STAP hdr][DON16 if STAP-B]{[size16][NAL]}*
    let p = off + (type === 25 ? 3 : 1);
    let flags = 0;
    while (p + 2 < end) {
      const size = buf.readUInt16BE(p);
      p += 2;
      if (size === 0 || p + size > end) break;
      flags |= h264Nal(buf[p]! & 0x1f, size > 1 ? buf[p + 1]! : -1);
      p += size;
    }
    return flags;
  }
  if (type === 28 || type === 29) {
    // [FU indicator][FU header S|E|R|type][DON16 if FU-B][fragment]
    if (len < 2) return 0;
    const fu = buf[off + 1]!;
    if (!(fu & 0x80)) return 0;
    const dataAt = off + (type === 29 ? 4 : 2);
    return h264Nal(fu & 0x1f, dataAt < end ? buf[dataAt]! : -1);
  }
  return 0;
}

/**
 * Flags of one H.265 NAL unit of `type`; `next` is the first byte after the 2-byte NAL
 * header (-1 if absent). VCL types 0..31 begin a picture when
 * first_slice_segment_in_pic_flag (the first slice header bit) is 1; IRAP types
 * 16..23 are keyframes; VPS/SPS/PPS (32..34), AUD (35) and prefix SEI (39) lead into an
 * access unit (H.265 §7.4.2.4.4).
 */
function h265Nal(type: number, next: number): number {
  if (type <= 31) {
    const first = next >= 0 && next & 0x80 ? START : 0;
    return type >= 16 && type <= 23 ? KEY | first : first;
  }
  switch (type) {
    case 32:
    case 33:
    case 34:
      return START | PSETS;
    case 35:
    case 39:
      return START;
    default:
      return 0;
  }
}

/**
 * H.265 over RTP (RFC 7798 §4.4): single NAL unit, aggregation packet (48), fragmentation
 * unit (49). Assumes no DONL fields (sprop-max-don-diff = 0, which is what cameras send).
 * PACI (50) is not inspected.
 */
export function inspectH265(buf: Buffer, off: number, len: number): number {
  if (len < 2 || off < 0 || off + len > buf.length) return 0;
  const type = (buf[off]! >>> 1) & 0x3f;
  const end = off + len;
  if (type < 48) return h265Nal(type, len > 2 ? buf[off + 2]! : -1);
  if (type === 48) {
    // [PayloadHdr16]{[size16][NAL]}*
    let p = off + 2;
    let flags = 0;
    while (p + 2 < end) {
      const size = buf.readUInt16BE(p);
      p += 2;
      if (size < 2 || p + size > end) break;
      flags |= h265Nal((buf[p]! >>> 1) & 0x3f, size > 2 ? buf[p + 2]! : -1);
      p += size;
    }
    return flags;
  }
  if (type === 49) {
    // [PayloadHdr16][FU header S|E|type6][fragment]
    if (len < 3) return 0;
    const fu = buf[off + 2]!;
    if (!(fu & 0x80)) return 0;
    return h265Nal(fu & 0x3f, len > 3 ? buf[off + 3]! : -1);
  }
  return 0;
}

/**
 * JPEG over RTP (RFC 2435 §3.1): the 8-byte main header's 24-bit fragment offset is 0
 * in the first packet of a frame; every JPEG frame is intra-coded.
 */
export function inspectJpeg(buf: Buffer, off: number, len: number): number {
  if (len < 8 || off < 0 || off + len > buf.length) return 0;
  const fragOffset = (buf[off + 1]! << 16) | (buf[off + 2]! << 8) | buf[off + 3]!;
  return fragOffset === 0 ? START | KEY : 0;
}

/**
 * MPEG-4 Part 2 over RTP (RFC 6416 §5.1): a packet that begins an access unit starts
 * with a start code: VOS (B0), VO (00..1F), VOL (20..2F) carry configuration and
 * precede an I-VOP; GOV (B3) precedes an I-VOP; a VOP (B6) is an I-VOP when
 * vop_coding_type (the next 2 bits) is 0.
 */
export function inspectMp4v(buf: Buffer, off: number, len: number): number {
  if (len < 4 || off < 0 || off + len > buf.length) return 0;
  if (buf[off] !== 0 || buf[off + 1] !== 0 || buf[off + 2] !== 1) return 0;
  const code = buf[off + 3]!;
  if (code === 0xb0 || code <= 0x2f) return START | KEY | PSETS;
  if (code === 0xb3) return START | KEY;
  if (code === 0xb6) return len > 4 && buf[off + 4]! >>> 6 === 0 ? START | KEY : START;
  return 0;
}
