/**
 * onvif: any ONVIF Profile S camera (ONVIF Core and Media specifications), through the
 * npm `onvif` package (a runtime dependency of this profile).
 *
 * - describe: GetDeviceInformation, GetCapabilities, GetProfiles (media profiles).
 * - streamUri: GetStreamUri for a media profile: failover's "camera API" path, where
 *   camtap pulls the stream itself with the camera record's credentials.
 * - time: GetSystemDateAndTime (unauthenticated, as ONVIF Core §5.9.1 allows, because a
 *   client needs the device clock before it can sign WS-Security timestamps).
 * - discover: WS-Discovery probe (./discovery.ts).
 * - redirect/restore: RTP multicast. The video encoder configuration of a media profile
 *   gets a multicast group, port and AutoStart (ONVIF Media §5.3 SetVideoEncoderConfiguration,
 *   schema tt:MulticastConfiguration): the camera then streams to the group with no
 *   RTSP session, and camtap joins it. Restore writes the saved multicast settings back.
 *   The package sends ForcePersistence=true, so the change survives a camera reboot
 *   until restored. Refused when the device says it cannot multicast
 *   (GetCapabilities Media/StreamingCapabilities/RTPMulticast) unless the camera record
 *   sets `options.assumeMulticast: true` (some firmware under-reports).
 *
 * Camera record: `apiUrl` is the device service URL (default
 * `http://<address>/onvif/device_service`); `user`/`password` are sent as WS-Security
 * UsernameToken digests (or HTTP Digest when the camera asks), never logged. Plugin
 * options: `timeoutMs` (per call, default 10 s), `discoveryMs` (default 3 s).
 */
import net from 'node:net';
import type { Cam } from 'onvif';
import {
  CamtapError,
  isCamtapError,
  clockOffset,
  type CallOptions,
  type CameraProfile,
  type CameraTime,
  type DeviceDescription,
  type DiscoveredCamera,
  type DiscoverOptions,
  type FlowInfo,
  type PluginContext,
  type PluginMeta,
  type ProfileCamera,
  type ProfileCapability,
  type RedirectTarget,
  type SavedCameraState,
  type StreamProfile,
  type StreamUri,
  type StreamUriOptions,
} from '../../core/contracts/index.js';
import { CamCache, call, DEFAULT_TIMEOUT_MS, newCam, xmlText } from './client.js';
import { DEFAULT_DISCOVERY_MS, probe } from './discovery.js';

export const meta: PluginMeta = {
  name: 'onvif',
  kind: 'camera-profile',
  version: '0.1.0',
  core: '^0.1.0',
  description: 'ONVIF Profile S cameras: device information, media profiles, stream URI, clock, WS-Discovery, RTP multicast redirect',
};

export const CAPABILITIES: readonly ProfileCapability[] = ['describe', 'stream-uri', 'time', 'discover', 'redirect-multicast'];

/** ONVIF encoding names (tt:VideoEncoding, tt:VideoEncodingMimeNames) as ffprobe names the codec. */
const CODECS: Record<string, string> = { H264: 'h264', H265: 'hevc', JPEG: 'mjpeg', MPEG4: 'mpeg4', 'MP4V-ES': 'mpeg4' };

/** ONVIF SOAP requests are HTTP POSTs to the service paths (`/onvif/device_service`, `/onvif/media_service`, ...). */
const ONVIF_POST = /^POST \/onvif\/\S* HTTP\/1\.[01]\r?\n/;

/** The multicast part of a video encoder configuration, as saved for restore. */
interface MulticastSettings {
  type: 'IPv4' | 'IPv6';
  address: string;
  port: number;
  ttl: number;
  autoStart: boolean;
}

interface SavedData {
  stream: string;
  encoder: string;
  multicast: MulticastSettings;
}

// The `onvif` package's parsed (xml2js + linerase) shapes, as far as this profile reads them.
interface ParsedEncoder {
  $?: { token?: string };
  name?: unknown;
  useCount?: number;
  encoding?: string;
  resolution?: { width?: number; height?: number };
  quality?: number;
  rateControl?: { frameRateLimit?: number; encodingInterval?: number; bitrateLimit?: number; $?: { ConstantBitRate?: boolean } };
  H264?: { govLength?: number; H264Profile?: string };
  MPEG4?: { govLength?: number; Mpeg4Profile?: string };
  multicast?: { address?: { type?: string; IPv4Address?: string; IPv6Address?: string } | 0; port?: number; TTL?: number; autoStart?: boolean };
  sessionTimeout?: string;
}
interface ParsedProfile {
  $?: { token?: string };
  name?: unknown;
  videoEncoderConfiguration?: ParsedEncoder;
  /** Media2 (ONVIF Profile T) puts configurations one level down. */
  configurations?: { videoEncoder?: ParsedEncoder };
}

function encoderOf(p: ParsedProfile): ParsedEncoder | undefined {
  return p.videoEncoderConfiguration ?? p.configurations?.videoEncoder;
}

function toStreamProfile(p: ParsedProfile): StreamProfile | null {
  const id = p.$?.token;
  if (typeof id !== 'string' || id === '') return null;
  const vec = encoderOf(p);
  const s: StreamProfile = { id };
  if (p.name !== undefined) s.name = String(p.name);
  if (vec?.encoding) s.codec = CODECS[String(vec.encoding).toUpperCase()] ?? String(vec.encoding).toLowerCase();
  if (typeof vec?.resolution?.width === 'number') s.width = vec.resolution.width;
  if (typeof vec?.resolution?.height === 'number') s.height = vec.resolution.height;
  if (typeof vec?.rateControl?.frameRateLimit === 'number') s.fps = vec.rateControl.frameRateLimit;
  if (typeof vec?.rateControl?.bitrateLimit === 'number') s.bitrateKbps = vec.rateControl.bitrateLimit;
  return s;
}

function multicastOf(vec: ParsedEncoder): MulticastSettings {
  const m = vec.multicast ?? {};
  const a = typeof m.address === 'object' && m.address ? m.address : {};
  const v6 = a.type === 'IPv6';
  return {
    type: v6 ? 'IPv6' : 'IPv4',
    address: String((v6 ? a.IPv6Address : a.IPv4Address) ?? (v6 ? '::' : '0.0.0.0')),
    port: typeof m.port === 'number' ? m.port : 0,
    ttl: typeof m.TTL === 'number' ? m.TTL : 1,
    autoStart: m.autoStart === true,
  };
}

/**
 * SetVideoEncoderConfiguration replaces the whole configuration (ONVIF Media §5.3.8), so
 * the request carries every field the camera gave, with only the multicast part changed.
 */
function setOptions(vec: ParsedEncoder, token: string, mc: MulticastSettings): Parameters<Cam['setVideoEncoderConfiguration']>[0] {
  return {
    token,
    ...(vec.name !== undefined ? { name: String(vec.name) } : {}),
    ...(vec.useCount !== undefined ? { useCount: vec.useCount } : {}),
    ...(vec.encoding ? { encoding: vec.encoding } : {}),
    ...(vec.resolution?.width && vec.resolution.height ? { resolution: { width: vec.resolution.width, height: vec.resolution.height } } : {}),
    ...(vec.quality !== undefined ? { quality: vec.quality } : {}),
    ...(vec.rateControl ? { rateControl: vec.rateControl } : {}),
    ...(vec.H264 ? { H264: { govLength: vec.H264.govLength, profile: vec.H264.H264Profile } } : {}),
    ...(vec.MPEG4 ? { MPEG4: { govLength: vec.MPEG4.govLength, profile: vec.MPEG4.Mpeg4Profile } } : {}),
    multicast: {
      address: mc.type === 'IPv6' ? { type: 'IPv6', IPv6Address: mc.address } : { type: 'IPv4', IPv4Address: mc.address },
      port: mc.port,
      TTL: mc.ttl,
      autoStart: mc.autoStart,
    },
    ...(vec.sessionTimeout ? { sessionTimeout: vec.sessionTimeout } : {}),
  };
}

/** Is `host` a multicast group (IPv4 224.0.0.0/4, RFC 5771; IPv6 ff00::/8, RFC 4291 §2.7)? */
export function isMulticast(host: string): boolean {
  const v = net.isIP(host);
  if (v === 4) {
    const first = Number(host.split('.')[0]);
    return first >= 224 && first <= 239;
  }
  return v === 6 && /^ff/i.test(host);
}

function savedData(saved: SavedCameraState): SavedData | null {
  const d = saved.data as Partial<SavedData> | null;
  const m = d?.multicast as Partial<MulticastSettings> | undefined;
  if (!d || typeof d !== 'object' || typeof d.stream !== 'string' || typeof d.encoder !== 'string' || !m) return null;
  if ((m.type !== 'IPv4' && m.type !== 'IPv6') || typeof m.address !== 'string' || !Number.isInteger(m.port) || !Number.isInteger(m.ttl) || typeof m.autoStart !== 'boolean') return null;
  return d as SavedData;
}

/** Builds the profile; the host calls this with the plugin context (`options.timeoutMs`, `options.discoveryMs`). */
export function createOnvifProfile(ctx: Partial<PluginContext> = {}): CameraProfile {
  const timeoutDefault = typeof ctx.options?.timeoutMs === 'number' ? ctx.options.timeoutMs : DEFAULT_TIMEOUT_MS;
  const discoveryDefault = typeof ctx.options?.discoveryMs === 'number' ? ctx.options.discoveryMs : DEFAULT_DISCOVERY_MS;
  const log = ctx.log;
  const cams = new CamCache();
  const o = (opts: CallOptions | undefined) => ({ signal: opts?.signal, timeoutMs: opts?.timeoutMs ?? timeoutDefault });

  const unsupported = (camera: ProfileCamera, operation: string, reason: string) => new CamtapError('CAMTAP_ERR_PROFILE_UNSUPPORTED', { camera: camera.name, profile: meta.name, operation, reason });

  /**
   * Runs `fn` on the connected device. A connection from an earlier call that fails now
   * is dropped and the call made once more on a fresh one: the camera may have rebooted and renamed
   * its media profiles. Refused credentials and aborts are not retried.
   */
  async function withCam<T>(camera: ProfileCamera, opts: CallOptions | undefined, fn: (cam: Cam) => Promise<T>): Promise<T> {
    const attempt = async () => fn(await cams.get(camera, o(opts)));
    const cached = cams.has(camera);
    try {
      return await attempt();
    } catch (e) {
      cams.drop(camera);
      if (!cached || isCamtapError(e, 'CAMTAP_ERR_CAMERA_AUTH') || isCamtapError(e, 'CAMTAP_ERR_PROFILE_UNSUPPORTED') || opts?.signal?.aborted) throw e;
      log?.debug({ camera: camera.name, err: (e as Error).message }, 'onvif call failed; reconnecting once');
      return attempt();
    }
  }

  function pickProfile(camera: ProfileCamera, cam: Cam, operation: string, stream: string | undefined): ParsedProfile {
    const profiles = (cam.profiles ?? []) as ParsedProfile[];
    if (profiles.length === 0) throw unsupported(camera, operation, 'the device has no media profiles');
    if (stream === undefined) {
      // The package's choice: the first profile on the first video source.
      const def = (cam.defaultProfile as ParsedProfile | undefined)?.$?.token;
      return profiles.find((p) => p.$?.token === def) ?? profiles[0]!;
    }
    const p = profiles.find((x) => x.$?.token === stream);
    if (!p) throw unsupported(camera, operation, `no media profile "${stream}" (the device has ${profiles.map((x) => x.$?.token).join(', ')})`);
    return p;
  }

  async function canMulticast(camera: ProfileCamera, cam: Cam, opts: CallOptions | undefined): Promise<boolean> {
    const { xml } = await call<unknown>(camera, 'GetCapabilities', o(opts), (cb) => cam.getCapabilities(cb));
    return xmlText(xml, 'RTPMulticast') === 'true';
  }

  async function encoderConfig(camera: ProfileCamera, cam: Cam, token: string, opts: CallOptions | undefined): Promise<ParsedEncoder> {
    const { data } = await call<ParsedEncoder>(camera, 'GetVideoEncoderConfiguration', o(opts), (cb) => cam.getVideoEncoderConfiguration(token, cb));
    return data;
  }

  async function writeMulticast(camera: ProfileCamera, cam: Cam, encoder: string, mc: MulticastSettings, operation: string, opts: CallOptions | undefined): Promise<void> {
    const current = await encoderConfig(camera, cam, encoder, opts);
    await call<unknown>(camera, operation, o(opts), (cb) => cam.setVideoEncoderConfiguration(setOptions(current, encoder, mc), cb));
  }

  return {
    meta,
    capabilities: CAPABILITIES,

    match(flow: FlowInfo, firstPayload: Buffer) {
      if (flow.transport !== 'tcp' || firstPayload.length < 16) return null;
      return ONVIF_POST.test(firstPayload.toString('latin1', 0, Math.min(firstPayload.length, 256))) ? 'onvif' : null;
    },

    async describe(camera, opts) {
      return withCam(camera, opts, async (cam) => {
        const { xml } = await call<unknown>(camera, 'GetDeviceInformation', o(opts), (cb) => cam.getDeviceInformation(cb));
        const multicast = await canMulticast(camera, cam, opts);
        const d: DeviceDescription = { capabilities: ['describe', 'time'], streams: [] };
        const fields = [['manufacturer', 'Manufacturer'], ['model', 'Model'], ['firmware', 'FirmwareVersion'], ['serial', 'SerialNumber'], ['hardwareId', 'HardwareId']] as const;
        for (const [key, tag] of fields) {
          const v = xmlText(xml, tag);
          if (v) d[key] = v;
        }
        const uri = cam.uri as Record<string, unknown> | undefined;
        if (uri?.media || uri?.media2) {
          d.capabilities.push('stream-uri');
          d.streams = ((cam.profiles ?? []) as ParsedProfile[]).map(toStreamProfile).filter((s): s is StreamProfile => s !== null);
          if (multicast) d.capabilities.push('redirect-multicast');
        }
        return d;
      });
    },

    async streamUri(camera, opts?: StreamUriOptions): Promise<StreamUri> {
      return withCam(camera, opts, async (cam) => {
        const profile = pickProfile(camera, cam, 'streamUri', opts?.stream);
        const token = profile.$!.token!;
        // ONVIF Media §5.15.1 StreamSetup: RTP-Unicast over RTSP (interleaved, TCP) or UDP.
        const protocol = opts?.transport === 'udp' ? 'UDP' : 'RTSP';
        const { data } = await call<{ uri?: unknown; invalidAfterConnect?: unknown }>(camera, 'GetStreamUri', o(opts), (cb) =>
          cam.getStreamUri({ protocol, stream: 'RTP-Unicast', profileToken: token }, cb),
        );
        if (typeof data?.uri !== 'string' || !/^rtsps?:\/\//i.test(data.uri)) throw new CamtapError('CAMTAP_ERR_CAMERA_API', { camera: camera.name, operation: 'GetStreamUri', reason: 'the answer has no rtsp:// Uri' });
        // Some cameras put credentials in the URI: they are split off, never passed on in it.
        const u = new URL(data.uri);
        const embedded = u.username ? { user: decodeURIComponent(u.username), password: decodeURIComponent(u.password) } : null;
        u.username = '';
        u.password = '';
        const user = camera.user ?? embedded?.user;
        const password = camera.user !== undefined ? camera.password : embedded?.password;
        return {
          uri: u.href,
          ...(user !== undefined ? { user } : {}),
          ...(password !== undefined ? { password } : {}),
          stream: token,
          ...(data.invalidAfterConnect === true ? { singleUse: true } : {}),
        };
      });
    },

    async time(camera, opts): Promise<CameraTime> {
      // A Cam of its own, not connected: GetSystemDateAndTime is the one call a device answers before anything else.
      const cam = newCam(camera, o(opts).timeoutMs);
      const sentAt = Date.now();
      const { data, xml } = await call<Date>(camera, 'GetSystemDateAndTime', o(opts), (cb) => cam.getSystemDateAndTime(cb));
      const receivedAt = Date.now();
      // Without UTCDateTime the package would read LocalDateTime as UTC: wrong by the time zone.
      if (!/UTCDateTime/.test(xml) || !(data instanceof Date) || Number.isNaN(data.getTime())) {
        throw new CamtapError('CAMTAP_ERR_CAMERA_API', { camera: camera.name, operation: 'GetSystemDateAndTime', reason: 'the answer has no UTCDateTime' });
      }
      // ONVIF's tt:Time has whole seconds.
      const { offsetMs, uncertaintyMs } = clockOffset(sentAt, receivedAt, data.getTime(), 1000);
      const t: CameraTime = { cameraMs: data.getTime(), offsetMs, uncertaintyMs, source: 'onvif' };
      const type = xmlText(xml, 'DateTimeType');
      if (type) t.ntp = type === 'NTP';
      const tz = xmlText(xml, 'TZ');
      if (tz) t.timezone = tz;
      return t;
    },

    async discover(opts?: DiscoverOptions): Promise<DiscoveredCamera[]> {
      try {
        return await probe({ ...opts, timeoutMs: opts?.timeoutMs ?? discoveryDefault }, meta.name);
      } catch (e) {
        throw new CamtapError('CAMTAP_ERR_CAMERA_API', { camera: '(WS-Discovery)', operation: 'discover', reason: (e as Error).message }, { cause: e });
      }
    },

    async redirect(camera, target: RedirectTarget, opts): Promise<SavedCameraState> {
      if (!isMulticast(target.host)) throw unsupported(camera, 'redirect', `an ONVIF redirect goes to an RTP multicast group, and ${target.host} is not one`);
      if (!Number.isInteger(target.port) || target.port < 1 || target.port > 65535) throw unsupported(camera, 'redirect', `port ${target.port} is not a UDP port`);
      return withCam(camera, opts, async (cam) => {
        if (camera.options?.assumeMulticast !== true && !(await canMulticast(camera, cam, opts))) {
          throw unsupported(camera, 'redirect', 'the device says it cannot stream RTP multicast (GetCapabilities RTPMulticast=false); set options.assumeMulticast: true in the camera record to try anyway');
        }
        const profile = pickProfile(camera, cam, 'redirect', target.stream);
        const encoder = encoderOf(profile)?.$?.token;
        if (!encoder) throw unsupported(camera, 'redirect', `media profile ${profile.$?.token} has no video encoder configuration`);
        const before = multicastOf(await encoderConfig(camera, cam, encoder, opts));
        const saved: SavedCameraState = { profile: meta.name, camera: camera.name, takenAt: Date.now(), data: { stream: profile.$!.token!, encoder, multicast: { ...before } } };
        const v6 = net.isIP(target.host) === 6;
        await writeMulticast(camera, cam, encoder, { type: v6 ? 'IPv6' : 'IPv4', address: target.host, port: target.port, ttl: target.ttl ?? 1, autoStart: true }, 'SetVideoEncoderConfiguration', opts);
        return saved;
      });
    },

    async restore(camera, saved, opts): Promise<void> {
      if (saved.profile !== meta.name) throw unsupported(camera, 'restore', `the saved state was taken by profile ${saved.profile}`);
      const d = savedData(saved);
      if (!d) throw unsupported(camera, 'restore', 'the saved state is not an ONVIF multicast setting');
      await withCam(camera, opts, (cam) => writeMulticast(camera, cam, d.encoder, d.multicast, 'SetVideoEncoderConfiguration', opts));
    },

    async close() {
      cams.clear();
    },
  };
}

export default createOnvifProfile;
