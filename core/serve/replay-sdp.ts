/**
 * The SDP a replay announces in its DESCRIBE answer (RFC 2326 §C, RFC 8866): one media
 * section, the captured stream's, with its codec lines (rtpmap, fmtp, rtcp-fb) taken
 * from the captured SDP and everything that described the original transport dropped
 * (control URLs, ssrc lines, range, direction, rtcp-mux): the replay has its own SSRC,
 * control URL and range.
 */
import type { LiveFeed } from '../live/channel.js';
import type { ReplayPlan } from '../query/types.js';
import { codecFor, parseSdp, type SdpMedia } from '../wire/sdp.js';
import { formatClock } from './rtsp-range.js';

/** Media attributes that describe the original session, not the codec. */
const DROP_ATTR = /^(control|ssrc|ssrc-group|range|sendonly|recvonly|sendrecv|inactive|rtcp-mux|rtcp|mid|group|setup|connection|fingerprint|ice-\w+|candidate|crypto|key-mgmt)(:|$)/i;
/** Attributes tied to one payload type: kept only for the served one. */
const PT_ATTR = /^(rtpmap|fmtp|rtcp-fb):\s*(\d+|\*)/i;

/** One SDP line's text must not break the description (a camera name with CR/LF). */
const clean = (s: string) => s.replace(/[\r\n]+/g, ' ').trim();

/** The media section carrying the stream: its payload type (and codec when known), else the first video. */
function pickMedia(media: SdpMedia[], pt: number, codec: string | null): SdpMedia | null {
  const byPt = media.filter((m) => m.formats.includes(pt));
  const exact = byPt.find((m) => !codec || codecFor(m, pt)?.codec === codec.toUpperCase());
  return exact ?? byPt[0] ?? media.find((m) => m.type === 'video') ?? null;
}

/** What an SDP is built from: the stream's identity and its captured SDP (recorded or live). */
interface SdpSource {
  camera: string;
  payloadType: number;
  codec: string | null;
  clockRate: number | null;
  /** The captured (or transcoder's) SDP, one media section or more; empty when none. */
  sdp: string;
  /** `o=` session id (RFC 8866 §5.2): seconds, stable for one presentation. */
  originSec: bigint;
  /** `a=range:` value (RFC 2326 §C.1.5). */
  range: string;
  title: string;
}

/**
 * Builds the SDP text (CRLF lines) for `plan`. `control` is the media `a=control:`
 * value (relative to the Content-Base, or absolute); `address` the server's address for
 * `o=`. `a=range:npt=0-D` gives the presentation's length, so npt 0 in PLAY is the
 * plan's start.
 */
export function replaySdp(plan: ReplayPlan, opts: { control: string; address: string; clockRange?: boolean }): string {
  const stream = plan.stream;
  const durSec = Number(plan.endNs - plan.startNs) / 1e9;
  // ONVIF replay clients seek in absolute time: they get the recording's clock range.
  const range = opts.clockRange ? `clock=${formatClock(plan.startNs)}-${formatClock(plan.endNs)}` : `npt=0-${Math.max(0, durSec).toFixed(3)}`;
  return buildSdpText(
    {
      camera: stream.camera,
      payloadType: stream.payloadType,
      codec: stream.codec,
      clockRate: stream.clockRate,
      sdp: plan.sdp,
      originSec: plan.startNs / 1_000_000_000n,
      range,
      title: 'camtap replay',
    },
    opts,
  );
}

/** The SDP of a live feed: as {@link replaySdp}, with an open range (`npt=now-`, RFC 2326 §3.6). */
export function liveSdp(feed: LiveFeed, opts: { control: string; address: string }): string {
  return buildSdpText(
    {
      camera: feed.camera,
      payloadType: feed.payloadType,
      codec: feed.codec,
      clockRate: feed.clockRate,
      sdp: feed.sdp,
      originSec: BigInt(Math.floor(Date.now() / 1000)),
      range: 'npt=now-',
      title: 'camtap live',
    },
    opts,
  );
}

function buildSdpText(src: SdpSource, opts: { control: string; address: string }): string {
  const pt = src.payloadType;
  const parsed = src.sdp ? parseSdp(src.sdp) : null;
  const media = parsed ? pickMedia(parsed.media, pt, src.codec) : null;
  const ipv = opts.address.includes(':') ? 'IP6' : 'IP4';
  const lines = [
    'v=0',
    `o=- ${src.originSec} 1 IN ${ipv} ${opts.address}`,
    `s=${clean(`${src.title} ${src.camera}`) || src.title}`,
    `c=IN ${ipv} ${ipv === 'IP6' ? '::' : '0.0.0.0'}`,
    't=0 0',
    'a=tool:camtap',
    'a=control:*',
    `a=range:${src.range}`,
  ];
  const type = media && /^[a-z]+$/i.test(media.type) ? media.type : 'video';
  lines.push(`m=${type} 0 RTP/AVP ${pt}`);
  const attrs: string[] = [];
  let hasRtpmap = false;
  for (const raw of media?.attributes ?? []) {
    const a = clean(raw);
    if (!a || DROP_ATTR.test(a)) continue;
    const m = PT_ATTR.exec(a);
    if (m) {
      if (m[2] !== '*' && m[2] !== String(pt)) continue;
      if (m[1]!.toLowerCase() === 'rtpmap') hasRtpmap = true;
    }
    attrs.push(`a=${a}`);
  }
  if (!hasRtpmap) {
    // A static type (JPEG 26) may come without rtpmap; say it anyway, some clients want it.
    const known = codecFor(media, pt) ?? (src.codec && src.clockRate ? { codec: src.codec, clockRate: src.clockRate } : null);
    if (known) attrs.unshift(`a=rtpmap:${pt} ${known.codec}/${known.clockRate}`);
  }
  lines.push(...attrs);
  lines.push(`a=control:${clean(opts.control)}`);
  return `${lines.join('\r\n')}\r\n`;
}
