/**
 * From a camera's DESCRIBE answer to what the upstream session sets up and what its
 * LiveChannel announces: the first video section, and the SDP cut down to it in the
 * form core/query/plan-sdp.ts gives recorded streams (session-level lines as the camera
 * sent them with `a=control:*`, then the one media section with `a=control:trackID=0`
 * and without `a=ssrc` lines, CRLF line ends, RFC 8866 §5 / RFC 2326 §C.1.1), so live
 * sessions serve camera feeds, transcodes and replays alike.
 */
import { TRACK_CONTROL } from '../query/plan-sdp.js';
import { codecFor, parseSdp, resolveControl, type Sdp, type SdpMedia } from '../wire/sdp.js';

/** The video track of a camera's SDP, with the URLs to SETUP and PLAY it. */
export interface CameraVideo {
  sdp: Sdp;
  /** Index of the media section among the SDP's `m=` lines. */
  index: number;
  media: SdpMedia;
  /** The payload type set up (the section's first format) and its codec, if the SDP names one. */
  payloadType: number;
  codec: string | null;
  clockRate: number | null;
  /** SETUP URL of the track (its control resolved against the base, RFC 2326 §C.1.1). */
  setupUrl: string;
  /** Aggregate URL for PLAY/TEARDOWN/keepalive: the session-level control, else the base. */
  controlUrl: string;
  /** The SDP a LiveChannel announces: this section only, `a=control:trackID=0`. */
  channelSdp: string;
}

/**
 * The first `m=video` section with an RTP profile and a payload type; null when the
 * text is not SDP or has none. `base` is Content-Base, else Content-Location, else the
 * DESCRIBE URL (RFC 2326 §C.1.1).
 */
export function pickCameraVideo(text: string, base: string): CameraVideo | null {
  const sdp = parseSdp(text);
  if (sdp === null) return null;
  const index = sdp.media.findIndex((m) => m.type.toLowerCase() === 'video' && /^RTP\//i.test(m.proto) && m.formats.length > 0);
  if (index < 0) return null;
  const media = sdp.media[index]!;
  const payloadType = media.formats[0]!;
  const known = codecFor(media, payloadType);
  return {
    sdp,
    index,
    media,
    payloadType,
    codec: known?.codec ?? null,
    clockRate: known?.clockRate ?? null,
    setupUrl: resolveControl(base, media.control),
    controlUrl: resolveControl(base, sdp.control),
    channelSdp: cutSdp(text, index),
  };
}

/**
 * `text` reduced to media section `keep` (0-based), with the control and `a=ssrc`
 * rules of core/query/plan-sdp.ts's reduceSdp. Lines that are not `x=` lines are left
 * out: a camera's stray bytes do not reach a client.
 */
export function cutSdp(text: string, keep: number): string {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n|\r/).map((l) => l.trim()).filter((l) => /^[a-zA-Z]\s*=/.test(l));
  const out: string[] = [];
  let section = -1; // -1: session level; i: the i-th m= section
  let sessionControl = false;
  for (const line of lines) {
    const type = line[0]!.toLowerCase();
    if (type === 'm') {
      if (section === -1 && !sessionControl) out.push('a=control:*');
      section++;
      if (section === keep) out.push(line);
      continue;
    }
    if (section === -1) {
      if (/^a\s*=\s*control\s*:/i.test(line)) {
        if (!sessionControl) out.push('a=control:*');
        sessionControl = true;
        continue;
      }
      out.push(line);
      continue;
    }
    if (section !== keep) continue;
    if (/^a\s*=\s*control\s*:/i.test(line)) continue;
    if (/^a\s*=\s*ssrc(-group)?\s*:/i.test(line)) continue;
    out.push(line);
  }
  out.push(`a=control:${TRACK_CONTROL}`);
  return `${out.join('\r\n')}\r\n`;
}
