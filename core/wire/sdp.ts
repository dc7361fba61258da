/**
 * SDP (RFC 8866) as cameras send it in a DESCRIBE answer, read tolerantly: cameras end
 * lines with `\n` or `\r\n`, reorder lines, and add vendor attributes. What camtap needs
 * is per media section: payload types, codec and clock (rtpmap, or the RFC 3551 static
 * table), fmtp parameters and the control URL (RFC 2326 §C.1.1).
 */

export interface SdpRtpmap {
  /** Encoding name, upper-cased (`H264`, `H265`, `JPEG`, `MPEG4-GENERIC`). */
  codec: string;
  clockRate: number;
  /** Audio channels (`/2` suffix), or null when not given. */
  channels: number | null;
}

export interface SdpMedia {
  /** `video`, `audio`, `application`, ... */
  type: string;
  port: number;
  /** `m=video 5000/2 ...` gives 2; 1 otherwise. */
  portCount: number;
  proto: string;
  /** Numeric formats (payload types) in `m=` order; non-numeric formats are left out. */
  formats: number[];
  /** `a=control:` of this section, as written. */
  control: string | null;
  rtpmap: Map<number, SdpRtpmap>;
  /** `a=fmtp:<pt> <params>` -> `<params>`. */
  fmtp: Map<number, string>;
  /** Every `a=` line of the section without the `a=`, in order (rtpmap/fmtp/control included). */
  attributes: string[];
  /** `c=` of the section (e.g. `IN IP4 0.0.0.0`), or null. */
  connection: string | null;
}

export interface Sdp {
  version: number;
  origin: string | null;
  sessionName: string | null;
  connection: string | null;
  /** Session-level `a=control:` (often `*`). */
  control: string | null;
  /** Session-level `a=range:` (e.g. `npt=0-` or `npt=now-`). */
  range: string | null;
  /** Session-level `a=` lines without the `a=`, in order. */
  attributes: string[];
  media: SdpMedia[];
}

const LINE = /^([a-zA-Z])\s*=(.*)$/;

/**
 * Parses SDP text. Unknown lines are kept (attributes) or skipped (other types);
 * a broken line never fails the whole description. Returns null only if the text is
 * not SDP at all: no `v=` and no `m=` line.
 */
export function parseSdp(text: string): Sdp | null {
  const sdp: Sdp = {
    version: 0,
    origin: null,
    sessionName: null,
    connection: null,
    control: null,
    range: null,
    attributes: [],
    media: [],
  };
  let sawVersion = false;
  let cur: SdpMedia | null = null;
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n|\r/);
  for (const raw of lines) {
    const m = LINE.exec(raw.trim());
    if (!m) continue;
    const type = m[1]!.toLowerCase();
    const value = m[2]!.trim();
    switch (type) {
      case 'v': {
        sawVersion = true;
        const v = Number.parseInt(value, 10);
        sdp.version = Number.isFinite(v) ? v : 0;
        break;
      }
      case 'o':
        if (!cur) sdp.origin = value;
        break;
      case 's':
        if (!cur) sdp.sessionName = value;
        break;
      case 'c':
        if (cur) cur.connection = value;
        else sdp.connection = value;
        break;
      case 'm':
        cur = parseMediaLine(value);
        sdp.media.push(cur);
        break;
      case 'a':
        if (cur) addMediaAttribute(cur, value);
        else {
          sdp.attributes.push(value);
          const [name, rest] = splitAttribute(value);
          if (name === 'control') sdp.control = rest;
          else if (name === 'range') sdp.range = rest;
        }
        break;
      default:
        break;
    }
  }
  if (!sawVersion && sdp.media.length === 0) return null;
  return sdp;
}

function splitAttribute(value: string): [string, string | null] {
  const i = value.indexOf(':');
  if (i < 0) return [value.toLowerCase(), null];
  return [value.slice(0, i).trim().toLowerCase(), value.slice(i + 1).trim()];
}

function parseMediaLine(value: string): SdpMedia {
  // m=<media> <port>[/<number of ports>] <proto> <fmt> ...   (RFC 8866 §5.14)
  const parts = value.split(/\s+/);
  const [portText = '', countText] = (parts[1] ?? '').split('/');
  const port = /^\d+$/.test(portText) ? Number(portText) : 0;
  const count = countText && /^\d+$/.test(countText) ? Number(countText) : 1;
  const formats: number[] = [];
  for (const f of parts.slice(3)) if (/^\d{1,3}$/.test(f) && Number(f) <= 127) formats.push(Number(f));
  return {
    type: parts[0] ?? '',
    port: port <= 65535 ? port : 0,
    portCount: count > 0 ? count : 1,
    proto: parts[2] ?? '',
    formats,
    control: null,
    rtpmap: new Map(),
    fmtp: new Map(),
    attributes: [],
    connection: null,
  };
}

function addMediaAttribute(media: SdpMedia, value: string): void {
  media.attributes.push(value);
  const [name, rest] = splitAttribute(value);
  if (rest === null) return;
  if (name === 'control') {
    media.control = rest;
  } else if (name === 'rtpmap') {
    // a=rtpmap:<payload type> <encoding name>/<clock rate>[/<encoding parameters>]
    const m = /^(\d{1,3})\s+([^/\s]+)\/(\d+)(?:\/(\d+))?/.exec(rest);
    if (!m) return;
    const clockRate = Number(m[3]);
    if (!(clockRate > 0)) return;
    media.rtpmap.set(Number(m[1]), {
      codec: m[2]!.toUpperCase(),
      clockRate,
      channels: m[4] ? Number(m[4]) : null,
    });
  } else if (name === 'fmtp') {
    const m = /^(\d{1,3})(?:\s+(.*))?$/.exec(rest);
    if (m) media.fmtp.set(Number(m[1]), (m[2] ?? '').trim());
  }
}

/** RFC 3551 §6 tables 4 and 5: the static payload types. */
const STATIC_PT: ReadonlyArray<readonly [number, string, number]> = [
  [0, 'PCMU', 8000],
  [3, 'GSM', 8000],
  [4, 'G723', 8000],
  [5, 'DVI4', 8000],
  [6, 'DVI4', 16000],
  [7, 'LPC', 8000],
  [8, 'PCMA', 8000],
  [9, 'G722', 8000],
  [10, 'L16', 44100],
  [11, 'L16', 44100],
  [12, 'QCELP', 8000],
  [13, 'CN', 8000],
  [14, 'MPA', 90000],
  [15, 'G728', 8000],
  [16, 'DVI4', 11025],
  [17, 'DVI4', 22050],
  [18, 'G729', 8000],
  [25, 'CELB', 90000],
  [26, 'JPEG', 90000],
  [28, 'NV', 90000],
  [31, 'H261', 90000],
  [32, 'MPV', 90000],
  [33, 'MP2T', 90000],
  [34, 'H263', 90000],
];
const STATIC_BY_PT = new Map(STATIC_PT.map(([pt, codec, clockRate]) => [pt, { codec, clockRate }]));

/**
 * Codec and clock rate of payload type `pt`: the media section's rtpmap first, then
 * the RFC 3551 static table (a camera may send `m=video 0 RTP/AVP 26` with no rtpmap).
 * Codec names are upper-case. Null for a dynamic type with no rtpmap.
 */
export function codecFor(media: SdpMedia | null, pt: number): { codec: string; clockRate: number } | null {
  const m = media?.rtpmap.get(pt);
  if (m) return { codec: m.codec, clockRate: m.clockRate };
  const s = STATIC_BY_PT.get(pt);
  return s ? { codec: s.codec, clockRate: s.clockRate } : null;
}

const ABSOLUTE_URL = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//;

/**
 * The URL a media section is set up with (RFC 2326 §C.1.1): `*` or no control means
 * the base itself; an absolute URL stands as is; otherwise the control is relative to
 * the base (Content-Base, else Content-Location, else the DESCRIBE URL). Relative
 * controls are appended as a path segment (`.../stream1` + `trackID=1` ->
 * `.../stream1/trackID=1`), which is what cameras expect and what ffmpeg, live555 and
 * GStreamer send, rather than RFC 3986 resolution that would replace `stream1`.
 * A control starting with `/` replaces the base's path.
 */
export function resolveControl(base: string, control: string | null): string {
  const c = control?.trim() ?? '';
  if (c === '' || c === '*') return base;
  if (ABSOLUTE_URL.test(c)) return c;
  if (c.startsWith('/')) {
    const m = /^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/?#]*)/.exec(base);
    return m ? m[1]! + c : c;
  }
  return base.endsWith('/') ? base + c : `${base}/${c}`;
}

/**
 * H.264 SPS/PPS from an fmtp `sprop-parameter-sets` (RFC 6184 §8.1): comma-separated
 * base64 NAL units. Entries that are empty or not base64 are left out.
 */
export function h264ParameterSets(fmtp: string): Buffer[] {
  const m = /(?:^|[;\s])sprop-parameter-sets\s*=\s*([^;\s]*)/i.exec(fmtp);
  if (!m) return [];
  const out: Buffer[] = [];
  for (const part of m[1]!.split(',')) {
    const b64 = part.trim();
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) continue;
    const nal = Buffer.from(b64, 'base64');
    if (nal.length > 0) out.push(nal);
  }
  return out;
}
