/**
 * The SDP a plan carries: the captured DESCRIBE answer cut down to the one media section
 * of the stream (RFC 8866 §5: session-level lines, then one `m=` section), or, when no
 * dialog was captured, one built from what the stream record knows.
 *
 * Choices (the replay server may rewrite further, see core/serve/replay-sdp.ts):
 * - session-level lines are kept as captured, except `a=control:` which becomes `*`
 *   (RFC 2326 §C.1.1: the aggregate is the presentation URL);
 * - the media section keeps its lines, except `a=control:` which becomes `trackID=0`
 *   (the replay serves one track; relative to the server's own Content-Base) and
 *   `a=ssrc:` / `a=ssrc-group:` lines, which name the captured SSRC the replay rewrites;
 * - lines end with CRLF (RFC 8866 §5).
 */
import type { SessionRecord, StreamRecord } from '../contracts/records.js';
import { codecFor, parseSdp, resolveControl, type SdpMedia } from '../wire/sdp.js';

/** The media `a=control:` value the plan's SDP carries. */
export const TRACK_CONTROL = 'trackID=0';

/** Encoding names that are audio (RFC 3551 §4.5 and the common dynamic ones); anything else is announced as video. */
const AUDIO = /^(PCMU|PCMA|GSM|G72\d(?:-\d+)?|G729\w*|DVI4|LPC|L8|L16|L24|QCELP|CN|MPA|MPEG4-GENERIC|MP4A-LATM|OPUS|SPEEX|AMR(?:-WB)?|ILBC|TELEPHONE-EVENT)$/i;

function portOf(endpoint: string): number {
  return Number(endpoint.slice(endpoint.lastIndexOf(':') + 1));
}

/** Index of the media section that carries `stream`: the SETUP track it was negotiated by, else its payload type, else the only/first video. */
export function pickStreamMedia(media: SdpMedia[], stream: StreamRecord, session: SessionRecord | null): number {
  if (media.length === 0) return -1;
  if (session !== null) {
    const track = session.tracks.find((t) =>
      stream.transport === 'tcp'
        ? t.interleaved !== null && t.interleaved[0] === stream.channel
        : t.clientPorts !== null && t.clientPorts[0] === portOf(stream.dst),
    ) ?? session.tracks.find((t) => t.ssrc !== null && t.ssrc === stream.ssrc);
    if (track) {
      const base = session.contentBase ?? session.url;
      const strip = (u: string) => u.replace(/\/+$/, '');
      const i = media.findIndex((m) => strip(resolveControl(base, m.control)) === strip(track.controlUrl));
      if (i >= 0) return i;
    }
  }
  const byPt = media.findIndex((m) => m.formats.includes(stream.payloadType) && (stream.codec === null || codecFor(m, stream.payloadType)?.codec === stream.codec.toUpperCase()));
  if (byPt >= 0) return byPt;
  const anyPt = media.findIndex((m) => m.formats.includes(stream.payloadType));
  if (anyPt >= 0) return anyPt;
  const video = media.findIndex((m) => m.type === 'video');
  return video >= 0 ? video : 0;
}

/**
 * `sdp` reduced to the stream's media section (see the file comment), or null when the
 * text is not SDP or has no media section.
 */
export function reduceSdp(sdp: string, stream: StreamRecord, session: SessionRecord | null): string | null {
  const parsed = parseSdp(sdp);
  if (parsed === null || parsed.media.length === 0) return null;
  const keep = pickStreamMedia(parsed.media, stream, session);
  const lines = sdp.replace(/^\uFEFF/, '').split(/\r?\n|\r/).map((l) => l.trim()).filter((l) => l !== '');
  const out: string[] = [];
  let section = -1; // -1: session level; i: the i-th m= section
  let sessionControl = false;
  for (const line of lines) {
    const type = line[0]?.toLowerCase();
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

/** An SDP for a stream no DESCRIBE was captured for (RTP pushed to a port): codec, clock and payload type from the record. */
export function buildSdp(stream: StreamRecord): string {
  const host = stream.src.startsWith('[') ? stream.src.slice(1, stream.src.indexOf(']')) : stream.src.slice(0, stream.src.lastIndexOf(':'));
  const ipv = host.includes(':') ? 'IP6' : 'IP4';
  const pt = stream.payloadType;
  const known = stream.codec !== null && stream.clockRate !== null ? { codec: stream.codec, clockRate: stream.clockRate } : codecFor(null, pt);
  const type = known !== null && AUDIO.test(known.codec) ? 'audio' : 'video';
  const lines = [
    'v=0',
    `o=- ${BigInt(stream.startNs) / 1_000_000_000n} 1 IN ${ipv} ${host}`,
    `s=camtap ${stream.id}`,
    `c=IN ${ipv} ${ipv === 'IP6' ? '::' : '0.0.0.0'}`,
    't=0 0',
    'a=control:*',
    `m=${type} 0 RTP/AVP ${pt}`,
  ];
  if (known !== null) lines.push(`a=rtpmap:${pt} ${known.codec}/${known.clockRate}`);
  lines.push(`a=control:${TRACK_CONTROL}`);
  return `${lines.join('\r\n')}\r\n`;
}
