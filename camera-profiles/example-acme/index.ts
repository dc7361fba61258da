/**
 * example-acme: a documented example of a vendor camera profile, for the fictional
 * "ACME" cameras whose management API is VAPIX-style CGI (the shape of Axis' API):
 *
 *   GET /axis-cgi/param.cgi?action=list&group=root.Brand,...   `root.A.B=value` lines
 *   GET /axis-cgi/param.cgi?action=update&root.A.B=v&...        `OK` or `# Error: ...`
 *   GET /axis-cgi/date.cgi?action=get                           `Nov 24, 2026 01:32:24` (UTC)
 *   RTSP rtsp://<camera>:<root.Network.RTSP.Port>/axis-media/media.amp?videocodec=h264&camera=<n>
 *
 * and a push destination (root.Push.P0.*): the camera sends RTP over UDP to Host:Port
 * while Enabled=yes. That is this profile's redirect: failover points the push at
 * camtap, and restore writes the saved values back. test/helpers/acme-sim.js simulates
 * the API; test/camera-profiles/example-acme.test.ts runs the contract suite on it.
 *
 * To write a profile for a real vendor, copy this folder and change: `meta`, the
 * `CAPABILITIES` it really has, the requests in each method, and the test fixture. It is
 * not built in: name its folder (or npm package) in the config's `plugins:` list.
 *
 * Camera record: `apiUrl` (default `http://<address>`), `user`/`password` (HTTP Digest
 * or Basic, never logged), `options.stream` (the default stream number, `1`).
 */
import net from 'node:net';
import {
  CamtapError,
  clockOffset,
  type CallOptions,
  type CameraProfile,
  type DeviceDescription,
  type FlowInfo,
  type PluginContext,
  type PluginMeta,
  type ProfileCamera,
  type ProfileCapability,
  type RedirectTarget,
  type SavedCameraState,
  type StreamHint,
  type StreamProfile,
} from '../../core/contracts/index.js';
import { cgiGet } from './http.js';

// 1. Every plugin exports `meta`: camtap checks it at load and refuses another core range.
export const meta: PluginMeta = {
  name: 'example-acme',
  kind: 'camera-profile',
  version: '1.0.0',
  core: '^0.1.0',
  description: 'Example vendor profile: ACME cameras with a VAPIX-style CGI API and an RTP push destination',
};

// 2. What the camera API calls can do; the failover planner reads this without calling.
export const CAPABILITIES: readonly ProfileCapability[] = ['describe', 'stream-uri', 'time', 'redirect-unicast'];

const PUSH = 'root.Push.P0';
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** A parameter list (`root.A.B=value` lines) and the `# Error:` lines that came with it. */
export function parseParams(text: string): { params: Map<string, string>; errors: string[] } {
  const params = new Map<string, string>();
  const errors: string[] = [];
  for (const line of text.split(/\r?\n/)) {
    if (line.startsWith('#')) errors.push(line.replace(/^#\s*(Error:\s*)?/, ''));
    else {
      const eq = line.indexOf('=');
      if (eq > 0) params.set(line.slice(0, eq), line.slice(eq + 1));
    }
  }
  return { params, errors };
}

/** `Nov 24, 2026 01:32:24` (UTC) as ms since the epoch; NaN when it is not that. */
export function parseCameraDate(text: string): number {
  const m = /^([A-Z][a-z]{2}) (\d{1,2}), (\d{4}) (\d{2}):(\d{2}):(\d{2})\s*$/.exec(text.trim());
  const month = m ? MONTHS.indexOf(m[1]!) : -1;
  if (!m || month < 0) return NaN;
  return Date.UTC(Number(m[3]), month, Number(m[2]), Number(m[4]), Number(m[5]), Number(m[6]));
}

/** Reads parameter groups; a group the camera does not have is simply absent. */
async function list(camera: ProfileCamera, groups: string[], operation: string, opts: CallOptions | undefined): Promise<Map<string, string>> {
  const text = await cgiGet(camera, `/axis-cgi/param.cgi?action=list&group=${groups.map(encodeURIComponent).join(',')}`, operation, opts);
  return parseParams(text).params;
}

/** Writes parameters in one request (the camera applies all or none); `# Error:` answers reject. */
async function update(camera: ProfileCamera, values: Record<string, string>, operation: string, opts: CallOptions | undefined): Promise<void> {
  const q = Object.entries(values).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`);
  const text = await cgiGet(camera, `/axis-cgi/param.cgi?action=update&${q.join('&')}`, operation, opts);
  if (!/^OK\s*$/.test(text)) {
    throw new CamtapError('CAMTAP_ERR_CAMERA_API', { camera: camera.name, operation, reason: parseParams(text).errors[0] ?? `unexpected answer "${text.slice(0, 80)}"` });
  }
}

const hostForUrl = (h: string) => (h.includes(':') ? `[${h}]` : h);
const defaultStream = (camera: ProfileCamera) => (typeof camera.options?.stream === 'string' ? camera.options.stream : '1');

/** The profile: a factory, so it gets the plugin context (logger, options). */
export function createAcmeProfile(ctx: Partial<PluginContext> = {}): CameraProfile {
  const log = ctx.log;
  const unsupported = (camera: ProfileCamera, operation: string, reason: string) => new CamtapError('CAMTAP_ERR_PROFILE_UNSUPPORTED', { camera: camera.name, profile: meta.name, operation, reason });

  return {
    meta,
    capabilities: CAPABILITIES,

    // 3. Hooks on the capture path: synchronous, never throw, look at a few bytes only.
    match(flow: FlowInfo, firstPayload: Buffer) {
      if (flow.transport !== 'tcp' || firstPayload.length < 16) return null;
      const head = firstPayload.toString('latin1', 0, Math.min(firstPayload.length, 128));
      if (/^GET \/axis-cgi\/\S+ HTTP\/1\.[01]\r?\n/.test(head)) return 'http';
      if (/^[A-Z_]+ rtsp:\/\/\S+\/axis-media\/media\.amp\S* RTSP\/1\.0\r?\n/.test(head)) return 'rtsp';
      return null;
    },

    // ACME firmware before 10.0 leaves out `a=rtpmap` for its H.264 payload type 96:
    // without this hint camtap could not name the codec of a captured stream.
    streamHints(sdp: string): StreamHint[] {
      if (!/^a=tool:ACME/m.test(sdp) || /^a=rtpmap:96 /m.test(sdp) || !/^m=video \d+ RTP\/AVP 96\b/m.test(sdp)) return [];
      return [{ payloadType: 96, codec: 'H264', clockRate: 90000 }];
    },

    // 4. Camera API calls: each takes the camera record and CallOptions (signal, timeout).
    async describe(camera, opts): Promise<DeviceDescription> {
      const p = await list(camera, ['root.Brand', 'root.Properties', 'root.Image.I0', PUSH], 'describe', opts);
      const d: DeviceDescription = { capabilities: ['describe', 'stream-uri', 'time'], streams: [] };
      const set = (key: 'manufacturer' | 'model' | 'firmware' | 'serial', name: string) => {
        const v = p.get(name);
        if (v) d[key] = v;
      };
      set('manufacturer', 'root.Brand.Brand');
      set('model', 'root.Brand.ProdNbr');
      set('firmware', 'root.Properties.Firmware.Version');
      set('serial', 'root.Properties.System.SerialNumber');
      // Older firmware has no push destination: then there is no redirect.
      if (p.has(`${PUSH}.Enabled`)) d.capabilities.push('redirect-unicast');
      const s: StreamProfile = { id: '1', codec: 'h264' };
      const res = /^(\d{1,5})x(\d{1,5})$/.exec(p.get('root.Image.I0.Appearance.Resolution') ?? '');
      if (res) Object.assign(s, { width: Number(res[1]), height: Number(res[2]) });
      const fps = Number(p.get('root.Image.I0.Stream.FPS'));
      if (fps > 0) s.fps = fps;
      d.streams = [s];
      return d;
    },

    async streamUri(camera, opts) {
      const stream = opts?.stream ?? defaultStream(camera);
      if (!/^\d{1,2}$/.test(stream)) throw unsupported(camera, 'streamUri', `stream "${stream}" is not a camera number`);
      const port = (await list(camera, ['root.Network.RTSP.Port'], 'streamUri', opts)).get('root.Network.RTSP.Port') ?? '554';
      // The credentials go beside the URI, never in it.
      return {
        uri: `rtsp://${hostForUrl(camera.address)}:${port}/axis-media/media.amp?videocodec=h264&camera=${stream}`,
        ...(camera.user !== undefined ? { user: camera.user, password: camera.password ?? '' } : {}),
        stream,
      };
    },

    async time(camera, opts) {
      const sentAt = Date.now();
      const text = await cgiGet(camera, '/axis-cgi/date.cgi?action=get', 'time', opts);
      const receivedAt = Date.now();
      const cameraMs = parseCameraDate(text);
      if (!Number.isFinite(cameraMs)) throw new CamtapError('CAMTAP_ERR_CAMERA_API', { camera: camera.name, operation: 'time', reason: `unreadable date "${text.trim().slice(0, 40)}"` });
      // date.cgi has whole seconds.
      return { cameraMs, ...clockOffset(sentAt, receivedAt, cameraMs, 1000), source: 'acme-date.cgi' };
    },

    // 5. Redirect: save first, then change; the saved state is plain JSON with no credentials.
    async redirect(camera, target: RedirectTarget, opts): Promise<SavedCameraState> {
      if (net.isIP(target.host) === 0) throw unsupported(camera, 'redirect', `the push destination must be an IP address, not "${target.host}"`);
      if (!Number.isInteger(target.port) || target.port < 1 || target.port > 65535) throw unsupported(camera, 'redirect', `port ${target.port} is not a UDP port`);
      const p = await list(camera, [PUSH], 'redirect', opts);
      if (!p.has(`${PUSH}.Enabled`)) throw unsupported(camera, 'redirect', 'this camera has no push destination (root.Push.P0)');
      const data: Record<string, string> = {};
      for (const k of ['Enabled', 'Host', 'Port', 'Source']) data[k] = p.get(`${PUSH}.${k}`) ?? '';
      const saved: SavedCameraState = { profile: meta.name, camera: camera.name, takenAt: Date.now(), data };
      await update(camera, { [`${PUSH}.Host`]: target.host, [`${PUSH}.Port`]: String(target.port), [`${PUSH}.Source`]: target.stream ?? defaultStream(camera), [`${PUSH}.Enabled`]: 'yes' }, 'redirect', opts);
      log?.info({ camera: camera.name, host: target.host, port: target.port }, 'acme push destination set');
      return saved;
    },

    async restore(camera, saved, opts) {
      if (saved.profile !== meta.name) throw unsupported(camera, 'restore', `the saved state was taken by profile ${saved.profile}`);
      const d = saved.data as Record<string, unknown> | null;
      const keys = ['Enabled', 'Host', 'Port', 'Source'];
      if (!d || typeof d !== 'object' || Array.isArray(d) || !keys.every((k) => typeof d[k] === 'string')) throw unsupported(camera, 'restore', 'the saved state is not an ACME push destination');
      const values: Record<string, string> = {};
      for (const k of keys) values[`${PUSH}.${k}`] = d[k] as string;
      await update(camera, values, 'restore', opts);
      log?.info({ camera: camera.name }, 'acme push destination restored');
    },
  };
}

// 6. The default export: the factory (or a plugin object).
export default createAcmeProfile;
