/**
 * generic-rtsp: any camera that speaks RTSP (RFC 2326 / 7826) on any port. Recognises an
 * RTSP connection by its first bytes, so cameras on unusual ports are classified without
 * configuration; codec hints come from the SDP alone.
 *
 * Camera API, with nothing but the camera record's RTSP `url` (and `user`/`password`):
 * - describe: OPTIONS (the `Server` header, the methods) and DESCRIBE (the SDP's video
 *   streams). RTSP has no notion of maker or model, so those stay empty.
 * - streamUri: the configured URL, credentials split off.
 * - time: the `Date` header of an OPTIONS answer (RFC 2326 §12.18; whole seconds).
 * There is no redirect: a plain RTSP camera only sends where a client's SETUP asks.
 */
import { connectionFor, parseSdpStreams, splitCredentials } from './rtsp-probe.js';
import { CamtapError, clockOffset, type CameraProfile, type FlowInfo, type PluginMeta, type ProfileCamera, type ProfileCapability, type StreamHint } from '../../core/contracts/index.js';

export const meta: PluginMeta = {
  name: 'generic-rtsp',
  kind: 'camera-profile',
  version: '0.2.0',
  core: '^0.1.0',
  description: 'Any RTSP camera: recognises RTSP on any TCP port by its first request or response line; describes, times and hands out its RTSP URL',
};

export const CAPABILITIES: readonly ProfileCapability[] = ['describe', 'stream-uri', 'time'];

/** The one stream a plain RTSP URL names. */
export const DEFAULT_STREAM = 'default';

const RTSP_START = /^(?:OPTIONS|DESCRIBE|SETUP|PLAY|PAUSE|TEARDOWN|GET_PARAMETER|SET_PARAMETER|ANNOUNCE|RECORD|REDIRECT) \S+ RTSP\/[12]\.0\r?\n|^RTSP\/[12]\.0 \d{3} /;

export function looksLikeRtsp(payload: Buffer): boolean {
  return payload.length >= 12 && RTSP_START.test(payload.toString('latin1', 0, Math.min(payload.length, 256)));
}

/** RFC 3551 §6 table 5: static video payload types an SDP may use without an `rtpmap`. */
const STATIC_VIDEO: Record<number, { codec: string; clockRate: number }> = {
  26: { codec: 'JPEG', clockRate: 90000 },
  31: { codec: 'H261', clockRate: 90000 },
  32: { codec: 'MPV', clockRate: 90000 },
  33: { codec: 'MP2T', clockRate: 90000 },
  34: { codec: 'H263', clockRate: 90000 },
};

/** Hints for static payload types of `m=video` lines that have no `rtpmap` (RFC 4566 §6: it is optional for them). */
export function staticHints(sdp: string): StreamHint[] {
  const out: StreamHint[] = [];
  const mapped = new Set<number>();
  for (const m of sdp.matchAll(/^a=rtpmap:(\d{1,3})\s/gm)) mapped.add(Number(m[1]));
  for (const m of sdp.matchAll(/^m=video \d+(?:\/\d+)? [A-Za-z/]+((?: \d{1,3})+)\s*$/gm)) {
    for (const pt of m[1]!.trim().split(' ').map(Number)) {
      const s = STATIC_VIDEO[pt];
      if (s && !mapped.has(pt) && !out.some((h) => h.payloadType === pt)) out.push({ payloadType: pt, ...s });
    }
  }
  return out;
}

function needUrl(camera: ProfileCamera, operation: string): string {
  if (!camera.url) throw new CamtapError('CAMTAP_ERR_PROFILE_UNSUPPORTED', { camera: camera.name, profile: meta.name, operation, reason: 'the camera record has no RTSP url' });
  return camera.url;
}

const profile: CameraProfile = {
  meta,
  capabilities: CAPABILITIES,

  match(flow: FlowInfo, firstPayload: Buffer) {
    if (flow.transport === 'tcp' && looksLikeRtsp(firstPayload)) return 'rtsp';
    return null;
  },

  streamHints: staticHints,

  async describe(camera, opts) {
    const url = needUrl(camera, 'describe');
    return connectionFor(camera, url, 'describe', opts, async (conn, check) => {
      const options = check(await conn.request('OPTIONS', url), 'OPTIONS');
      const described = check(await conn.request('DESCRIBE', url, { Accept: 'application/sdp' }), 'DESCRIBE');
      const extra: Record<string, string> = {};
      const server = options.header('Server') ?? described.header('Server');
      if (server) extra.server = server;
      const methods = options.header('Public');
      if (methods) extra.methods = methods;
      const sdp = described.body.toString('utf8');
      const session = /^s=(.*)$/m.exec(sdp)?.[1]?.trim();
      if (session) extra.session = session;
      return { capabilities: [...CAPABILITIES], streams: parseSdpStreams(sdp, DEFAULT_STREAM), extra };
    });
  },

  async streamUri(camera, opts) {
    const { uri, user, password } = splitCredentials(needUrl(camera, 'streamUri'), camera);
    if (opts?.stream !== undefined && opts.stream !== DEFAULT_STREAM) {
      throw new CamtapError('CAMTAP_ERR_PROFILE_UNSUPPORTED', { camera: camera.name, profile: meta.name, operation: 'streamUri', reason: `a plain RTSP camera has one stream ("${DEFAULT_STREAM}"), not "${opts.stream}"` });
    }
    return { uri, ...(user !== undefined ? { user } : {}), ...(password !== undefined ? { password } : {}), stream: DEFAULT_STREAM };
  },

  async time(camera, opts) {
    const url = needUrl(camera, 'time');
    return connectionFor(camera, url, 'time', opts, async (conn) => {
      const sentAt = Date.now();
      // OPTIONS needs no credentials on any camera seen; its status does not matter here, only the Date.
      const res = await conn.request('OPTIONS', url);
      const receivedAt = Date.now();
      const date = res.header('Date');
      const cameraMs = date === null ? NaN : Date.parse(date);
      if (!Number.isFinite(cameraMs)) {
        throw new CamtapError('CAMTAP_ERR_PROFILE_UNSUPPORTED', { camera: camera.name, profile: meta.name, operation: 'time', reason: date === null ? 'the camera sends no Date header' : `unreadable Date header "${date.slice(0, 64)}"` });
      }
      return { cameraMs, ...clockOffset(sentAt, receivedAt, cameraMs, 1000), source: 'rtsp-date' };
    });
  },
};

export default profile;
