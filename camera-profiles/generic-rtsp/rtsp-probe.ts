/**
 * The few RTSP exchanges the generic-rtsp profile makes (OPTIONS, DESCRIBE) over core's
 * RTSP client (core/rtsp-client: bounded parsing, Basic/Digest), with its errors turned
 * into the camera profile contract's: CAMTAP_ERR_CAMERA_AUTH for a 401 to credentials,
 * CAMTAP_ERR_CAMERA_API for anything else, never naming the credentials.
 */
import { CamtapError, isCamtapError, type CallOptions, type ProfileCamera, type StreamProfile } from '../../core/contracts/index.js';
import { RtspClientConnection, type RtspResponse } from '../../core/rtsp-client/client.js';
import { parseRtspUrl, stripUserinfo } from '../../core/rtsp-client/url.js';

const DEFAULT_TIMEOUT_MS = 10_000;

/** The URL without userinfo, and the credentials to use: the camera record's, else the URL's. */
export function splitCredentials(url: string, camera: ProfileCamera): { uri: string; user?: string; password?: string } {
  const t = parseRtspUrl(url);
  if (t === null) throw new CamtapError('CAMTAP_ERR_PROFILE_UNSUPPORTED', { camera: camera.name, profile: 'generic-rtsp', operation: 'streamUri', reason: `not an rtsp:// URL: ${stripUserinfo(url).slice(0, 200)}` });
  const user = camera.user ?? t.user ?? undefined;
  const password = camera.user !== undefined ? camera.password : (t.password ?? undefined);
  return { uri: t.url, ...(user !== undefined ? { user } : {}), ...(password !== undefined ? { password } : {}) };
}

/** Checks an answer's status: 2xx passes, 401 is refused credentials, anything else a failure. */
export type StatusCheck = (res: RtspResponse, method: string) => RtspResponse;

/**
 * Opens a connection to `url` with the camera's credentials, runs `fn`, closes it.
 * `opts.signal` closes the connection (the call then rejects as aborted).
 */
export async function connectionFor<T>(camera: ProfileCamera, url: string, operation: string, opts: CallOptions | undefined, fn: (conn: RtspClientConnection, check: StatusCheck) => Promise<T>): Promise<T> {
  const { uri, user, password } = splitCredentials(url, camera);
  const apiError = (reason: string, cause?: unknown) => new CamtapError('CAMTAP_ERR_CAMERA_API', { camera: camera.name, operation, reason }, { cause });
  if (opts?.signal?.aborted) throw apiError('aborted');
  let conn: RtspClientConnection;
  try {
    conn = await RtspClientConnection.connect(uri, { timeoutMs: opts?.timeoutMs ?? DEFAULT_TIMEOUT_MS, ...(user !== undefined ? { user, password: password ?? '' } : {}) });
  } catch (e) {
    throw apiError(isCamtapError(e) ? String(e.details.reason ?? e.message) : (e as Error).message, e);
  }
  const onAbort = () => conn.close();
  opts?.signal?.addEventListener('abort', onAbort, { once: true });
  const check: StatusCheck = (res, method) => {
    const status = res.status ?? 0;
    if (status >= 200 && status < 300) return res;
    if (status === 401) throw new CamtapError('CAMTAP_ERR_CAMERA_AUTH', { camera: camera.name, operation: `${operation} (${method})`, user: user ?? '(none)' });
    throw apiError(`${method} answered ${status} ${res.reason ?? ''}`.trim());
  };
  try {
    return await fn(conn, check);
  } catch (e) {
    if (opts?.signal?.aborted) throw apiError('aborted', e);
    if (isCamtapError(e, 'CAMTAP_ERR_UPSTREAM')) throw apiError(String(e.details.reason ?? e.message), e);
    throw e;
  } finally {
    opts?.signal?.removeEventListener('abort', onAbort);
    conn.close();
  }
}

/** ffprobe's codec names for SDP encoding names (RFC 6184 H264, RFC 7798 H265, RFC 2435 JPEG, RFC 6416 MP4V-ES). */
const CODECS: Record<string, string> = { H264: 'h264', H265: 'hevc', JPEG: 'mjpeg', 'MP4V-ES': 'mpeg4' };

/**
 * The first video stream of an SDP (RFC 4566): codec from its first payload type's
 * `rtpmap` (static type 26 is JPEG, RFC 3551), size from `a=framesize` (3GPP) or
 * `a=x-dimensions`, rate from `a=framerate`. A plain RTSP URL is one stream: `id`.
 */
export function parseSdpStreams(sdp: string, id: string): StreamProfile[] {
  const sections = sdp.split(/\r?\n(?=m=)/);
  const video = sections.find((s) => s.startsWith('m=video '));
  if (!video) return [];
  const s: StreamProfile = { id };
  const pt = /^m=video \S+ \S+ (\d{1,3})/.exec(video)?.[1];
  if (pt !== undefined) {
    const enc = new RegExp(`^a=rtpmap:${pt} ([^/\\s]+)/`, 'm').exec(video)?.[1]?.toUpperCase();
    const codec = enc ? (CODECS[enc] ?? enc.toLowerCase()) : pt === '26' ? 'mjpeg' : undefined;
    if (codec) s.codec = codec;
    const size = new RegExp(`^a=framesize:${pt} (\\d{1,5})-(\\d{1,5})`, 'm').exec(video) ?? /^a=x-dimensions:\s*(\d{1,5}),\s*(\d{1,5})/m.exec(video);
    if (size) {
      s.width = Number(size[1]);
      s.height = Number(size[2]);
    }
  }
  const fps = /^a=(?:x-)?framerate:\s*([\d.]{1,8})/m.exec(video)?.[1];
  if (fps && Number(fps) > 0) s.fps = Number(fps);
  const as = /^b=AS:(\d{1,9})/m.exec(video)?.[1];
  if (as) s.bitrateKbps = Number(as);
  return [s];
}
