/**
 * The camera profile contract (camera-profiles/<name>): what camtap asks of a camera
 * vendor or family. Two kinds of member:
 *
 * - Hooks on the capture path (`match`, `streamHints`): synchronous, pure, never throw
 *   on bad input (the packet path calls them; ARCHITECTURE.md "Hot-path rules").
 * - Camera API calls (`describe`, `streamUri`, `time`, `discover`, `redirect`,
 *   `restore`): asynchronous, talk to one camera over its management API (ONVIF SOAP,
 *   a vendor CGI, RTSP). Failover uses them when replaying a captured dialog cannot
 *   work: it pulls the stream itself from `streamUri`, or has the camera send it
 *   elsewhere with `redirect` and puts it back with `restore`.
 *
 * Everything but `meta` is optional, so a profile written for the first contract (meta,
 * match, streamHints) still loads. `capabilities` tells the failover planner which
 * strategies a profile allows without calling it; `describe().capabilities` narrows
 * that to what one device supports.
 *
 * Errors: a camera API call rejects with a CamtapError, `CAMTAP_ERR_CAMERA_API` (the
 * camera cannot be reached, timed out or answered something unusable),
 * `CAMTAP_ERR_CAMERA_AUTH` (it refused the credentials) or
 * `CAMTAP_ERR_PROFILE_UNSUPPORTED` (this camera or profile cannot do what was asked).
 * Credentials come from the camera record and never appear in a result (except
 * `streamUri().password`, which is the point), an error, a log line or saved state.
 *
 * `test/camera-profiles/contract.ts` checks all of this against a running camera; see
 * docs/PLUGINS.md "Writing a camera profile".
 */
import type { FlowInfo, PluginMeta } from './plugin.js';

/** What a camera API call may ask of a profile. The failover planner picks a strategy by these. */
export type ProfileCapability =
  /** `describe()`: maker, model, firmware, serial and the streams the device offers. */
  | 'describe'
  /** `streamUri()`: camtap can pull the stream itself with the camera's credentials (failover "pull"). */
  | 'stream-uri'
  /** `time()`: the camera clock and its offset from camtap's. */
  | 'time'
  /** `discover()`: finds cameras on the network (e.g. WS-Discovery). */
  | 'discover'
  /** `redirect()`/`restore()` toward a unicast address camtap listens on (a vendor push destination). */
  | 'redirect-unicast'
  /** `redirect()`/`restore()` toward a multicast group camtap joins (ONVIF RTP multicast). */
  | 'redirect-multicast';

/** All capabilities, in the order documentation lists them. */
export const PROFILE_CAPABILITIES: readonly ProfileCapability[] = ['describe', 'stream-uri', 'time', 'discover', 'redirect-unicast', 'redirect-multicast'];

/** The kinds `match` may answer: `rtsp`, `http` and `onvif` are TCP only, `rtp`/`rtcp` either. */
export type ProfileFlowKind = 'rtsp' | 'http' | 'onvif' | 'rtp' | 'rtcp';

/** A codec hint for one RTP payload type, from an SDP that lacks or garbles its `rtpmap`. */
export interface StreamHint {
  payloadType: number;
  /** Encoding name as an `rtpmap` would write it (`H264`, `H265`, `JPEG`). */
  codec: string;
  clockRate: number;
}

/**
 * A camera as the API calls see it: the inventory record plus its credentials from the
 * config. Credentials are never part of `url` or `apiUrl` (a profile must not need them
 * there) and never logged.
 */
export interface ProfileCamera {
  /** Inventory name, used in errors and logs. */
  name: string;
  /** Host name or IP address (no port, no brackets for IPv6). */
  address: string;
  /** The camera's RTSP URL as configured or learned from captured dialogs. */
  url?: string;
  /**
   * Where its management API answers when not at the profile's default (which is built
   * from `address`): the ONVIF device service URL, or `http://host:port` of a CGI API.
   */
  apiUrl?: string;
  user?: string;
  password?: string;
  /** Profile-specific settings (see each profile's documentation). */
  options?: Record<string, unknown>;
}

/** Per-call options of every camera API call. */
export interface CallOptions {
  /** Aborts the call; it then rejects with CAMTAP_ERR_CAMERA_API. */
  signal?: AbortSignal;
  /** Gives up after this long (profile default, typically 10 s). */
  timeoutMs?: number;
}

/** One stream (ONVIF media profile, vendor stream number) a device offers. */
export interface StreamProfile {
  /** What `streamUri({ stream })` and `RedirectTarget.stream` take: an ONVIF profile token, a vendor stream number. */
  id: string;
  name?: string;
  /** Lower-case codec as ffprobe names it (`h264`, `hevc`, `mjpeg`), when the device says. */
  codec?: string;
  width?: number;
  height?: number;
  fps?: number;
  bitrateKbps?: number;
}

/** What a device says about itself. Plain JSON: the API shows it as it is. */
export interface DeviceDescription {
  manufacturer?: string;
  model?: string;
  firmware?: string;
  serial?: string;
  hardwareId?: string;
  /** What this device supports: a subset of the profile's `capabilities` (e.g. no multicast redirect when the device says it cannot multicast). */
  capabilities: ProfileCapability[];
  /** Its streams, default first. Empty when it does not say. */
  streams: StreamProfile[];
  /** Other facts worth showing (the RTSP `Server` header, the hostname), as strings. */
  extra?: Record<string, string>;
}

/** Options of `streamUri`. */
export interface StreamUriOptions extends CallOptions {
  /** A `StreamProfile.id`; the device's default stream when absent. */
  stream?: string;
  /** How camtap means to pull it; profiles that ask the camera pass it on (ONVIF StreamSetup). Default `tcp`. */
  transport?: 'udp' | 'tcp';
}

/** Where and how to pull a camera's stream. */
export interface StreamUri {
  /** The RTSP URL, without credentials in it. */
  uri: string;
  /** Credentials to present to it (from the camera record). */
  user?: string;
  password?: string;
  /** The stream it is for. */
  stream?: string;
  /** The camera says the URI works for one connection only (ONVIF InvalidAfterConnect): ask again before reconnecting. */
  singleUse?: boolean;
}

/**
 * One reading of the camera's clock. camtap time-stamps packets with its own clock; the
 * camera stamps RTCP sender reports, overlays and its own recordings with its clock:
 * `offsetMs` converts between the two.
 */
export interface CameraTime {
  /** The camera's clock as it answered, ms since the Unix epoch (UTC). */
  cameraMs: number;
  /** Camera clock minus camtap's clock, ms: camtap time + offsetMs = camera time. */
  offsetMs: number;
  /** The true offset is within ±uncertaintyMs of `offsetMs`: half the round trip plus the reading's resolution (see {@link clockOffset}). */
  uncertaintyMs: number;
  /** Where the reading came from: `onvif` (GetSystemDateAndTime), `rtsp-date` (an RTSP `Date` header), or the vendor API's name. */
  source: string;
  /** The camera says its clock follows NTP, when it says. */
  ntp?: boolean;
  /** The camera's time zone as it gives it (POSIX TZ for ONVIF), when it says. */
  timezone?: string;
}

/** Options of `discover`. */
export interface DiscoverOptions extends CallOptions {
  /** How long to collect answers, ms (the profile's default otherwise). */
  timeoutMs?: number;
  /** Network interface to probe on (e.g. `eth1`); the default route's otherwise. */
  device?: string;
}

/** A camera that answered a discovery probe. */
export interface DiscoveredCamera {
  /** Host the camera's API is at. */
  address: string;
  /** Management endpoints it announced (ONVIF XAddrs), as given. */
  apiUrls: string[];
  /** Its stable identity (WS-Discovery EndpointReference, a `urn:uuid:`), when it has one. */
  id?: string;
  /** What it says it is (ONVIF scopes: `onvif://www.onvif.org/name/...`). */
  scopes: string[];
  /** The profile that found it. */
  profile: string;
}

/** Where `redirect` sends a camera's stream. */
export interface RedirectTarget {
  /** A unicast address camtap receives on, or a multicast group (per the capability used). */
  host: string;
  /** The RTP port (even; RTCP on port + 1, RFC 3550 §11). */
  port: number;
  /** A `StreamProfile.id`; the default stream when absent. */
  stream?: string;
  /** Multicast TTL (default 1: the local segment). */
  ttl?: number;
}

/** A JSON value: saved state must survive the catalog and a camtap restart. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/**
 * What `restore` needs to undo a `redirect`: the camera's settings as they were. Plain
 * JSON, kept by failover in the catalog, so a restore works after a camtap restart.
 */
export interface SavedCameraState {
  /** The profile that took it (`meta.name`); restore refuses another profile's state. */
  profile: string;
  /** The camera's inventory name. */
  camera: string;
  /** When it was taken, ms since the Unix epoch. */
  takenAt: number;
  /** Profile-specific settings, no credentials. */
  data: JsonValue;
}

/** A camera vendor/family profile (camera-profiles/<name>). */
export interface CameraProfile {
  meta: PluginMeta;
  /** The camera API calls this profile implements; absent means none (hooks only). */
  capabilities?: readonly ProfileCapability[];

  /** *first* hook: does this flow belong to a camera of this profile? A flow kind or null. Synchronous, never throws. */
  match?(flow: FlowInfo, firstPayload: Buffer): ProfileFlowKind | null;
  /** Codec hints from an SDP media section (payload type -> codec) when the SDP is incomplete. Never throws. */
  streamHints?(sdp: string): StreamHint[];

  /** Maker, model, firmware, serial and streams (`describe`). */
  describe?(camera: ProfileCamera, opts?: CallOptions): Promise<DeviceDescription>;
  /** The RTSP URL camtap pulls the camera's stream from, and the credentials for it (`stream-uri`). */
  streamUri?(camera: ProfileCamera, opts?: StreamUriOptions): Promise<StreamUri>;
  /** Reads the camera's clock (`time`). */
  time?(camera: ProfileCamera, opts?: CallOptions): Promise<CameraTime>;
  /** Finds cameras of this profile on the network (`discover`). */
  discover?(opts?: DiscoverOptions): Promise<DiscoveredCamera[]>;
  /**
   * Has the camera send a stream to `target` (`redirect-unicast`/`redirect-multicast`)
   * and answers what `restore` needs to undo it, taken before anything is changed.
   */
  redirect?(camera: ProfileCamera, target: RedirectTarget, opts?: CallOptions): Promise<SavedCameraState>;
  /** Puts the camera back as `saved` (from `redirect`, maybe after a camtap restart) describes. */
  restore?(camera: ProfileCamera, saved: SavedCameraState, opts?: CallOptions): Promise<void>;
  /** Releases connections and caches. Safe to call twice. */
  close?(): Promise<void>;
}

/**
 * The offset of a camera clock read with one request (the NTP on-wire idea, RFC 5905
 * §8, with one camera timestamp): the camera stamped its answer at some moment between
 * `sentAt` and `receivedAt` (camtap clock, ms), and its clock shows `cameraMs`, which is
 * truncated to `resolutionMs` (1000 for the whole seconds ONVIF and HTTP dates carry).
 * The estimate takes the middle of both intervals, so the true offset is within
 * ±(round trip / 2 + resolution / 2).
 */
export function clockOffset(sentAt: number, receivedAt: number, cameraMs: number, resolutionMs: number): { offsetMs: number; uncertaintyMs: number } {
  const mid = (sentAt + receivedAt) / 2;
  return {
    offsetMs: Math.round(cameraMs + resolutionMs / 2 - mid),
    // +1: the rounding of offsetMs.
    uncertaintyMs: Math.ceil((receivedAt - sentAt) / 2 + resolutionMs / 2) + 1,
  };
}
