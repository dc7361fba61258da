import type { FilterSpec } from './filter.js';
import type { FrameSink } from './frame.js';
import type { Logger } from './logger.js';
import type { SessionRecord, VmsRecord } from './records.js';

/** Every plugin exports `meta`; the host checks it at load (name, kind, core semver range). */
export interface PluginMeta {
  name: string;
  kind: 'tap-driver' | 'camera-profile' | 'vms' | 'notifier' | 'exporter';
  version: string;
  /** Semver range of camtap core this plugin was written for, e.g. `^0.1.0`. */
  core: string;
  description?: string;
}

/** What the host gives a plugin factory. */
export interface PluginContext {
  log: Logger;
  /** Plugin-specific options from the config (already validated by the plugin). */
  options: Record<string, unknown>;
  /** The data directory (for plugins that keep state). */
  dataDir: string;
}

/** Health and counters of an open tap, as `camtap taps` and the API show them. */
export interface TapStatus {
  state: 'idle' | 'opening' | 'running' | 'stopped' | 'failed';
  packets: number;
  bytes: number;
  /** Packets the kernel or the tool dropped (libpcap ps_drop + ps_ifdrop), when known. */
  drops: number | null;
  error?: string;
  /** The native filter in effect. */
  filter?: string;
}

/** The config of one tap as the driver receives it. */
export interface TapConfig {
  /** Numeric id, stable per name in the data dir. */
  id: number;
  name: string;
  driver: string;
  filter: FilterSpec;
  /** Driver options (interface, folder, snaplen, ...). */
  options: Record<string, unknown>;
}

/** One running tap. `close()` is safe to call twice. */
export interface Tap {
  /** Starts delivering frames to the sink until `signal` aborts or `close()`; resolves when the source is exhausted (files) or closed (live). */
  open(sink: FrameSink, signal: AbortSignal): Promise<void>;
  close(): Promise<void>;
  status(): TapStatus;
}

/** A tap driver plugin (tap-drivers/<name>). */
export interface TapDriver {
  meta: PluginMeta;
  /**
   * The driver's native filter for a spec (BPF string, predicate description, ...).
   * `resolve` maps the camera/VMS inventory names a spec may use to their addresses.
   */
  translate(spec: FilterSpec, resolve?: (name: string, kind: 'camera' | 'vms') => string[]): string;
  create(config: TapConfig, ctx: PluginContext): Tap;
}

/** A flow as the camera profiles see it on its first packet. */
export interface FlowInfo {
  transport: 'udp' | 'tcp';
  src: string;
  sport: number;
  dst: string;
  dport: number;
}

/** A camera vendor/family profile (camera-profiles/<name>): the full contract is in camera-profile.ts. */
import type { CameraProfile } from './camera-profile.js';
export type { CameraProfile };

/**
 * Where a VMS can be probed, as the config names it (`failover.vms[]`). A VMS is an RTSP
 * *client* toward its cameras and has no listening port there: `ports` are where it
 * listens for others (its API, web console, recording or viewer RTSP server).
 */
export interface VmsEndpoint {
  name: string;
  address: string;
  /** TCP ports the VMS listens on; a probe connects to each. */
  ports: number[];
  /** An HTTP(S) URL that answers `expectStatus` when the VMS is up. */
  healthUrl?: string;
  /** Status `healthUrl` must answer (default 200). */
  expectStatus?: number;
  /** Plugin-specific options from the config (API port, credentials, ...). */
  options?: Record<string, unknown>;
}

/** One check of a probe (`tcp 10.0.0.5:443`, `GET http://10.0.0.5/health`). */
export interface VmsCheck {
  name: string;
  ok: boolean;
  /** What was seen (`connected in 3 ms`, `ECONNREFUSED`, `HTTP 503, expected 200`). */
  detail: string;
}

/**
 * A probe's verdict. `ok` only when every check passed. A probe with no checks (nothing
 * to probe) gives no verdict: health then rests on the VMS's traffic toward its cameras.
 */
export interface VmsHealth {
  ok: boolean;
  detail: string;
  /** Slowest answer among the checks that answered (ms), null when none answered. */
  latencyMs: number | null;
  checks: VmsCheck[];
}

/** A probe must settle by `timeoutMs` and stop when `signal` aborts; it reports failure in the result, never by throwing. */
export interface VmsProbeOptions {
  signal: AbortSignal;
  timeoutMs: number;
}

/** Options of the slower VMS calls (backfill). */
export interface VmsCallOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}

/** What `planRestore` is told: the cameras camtap took over from `vms` and the period it held them. */
export interface VmsRestoreContext {
  vms: string;
  cameras: string[];
  /** ISO 8601. */
  gap: { start: string; end: string };
  endpoint?: VmsEndpoint;
}

/**
 * What `backfill` is told: one camera's gap and where camtap serves it. `replayUrl` is an
 * RTSP URL that plays the recorded period at capture pace (RTCP sender reports carry the
 * capture time as NTP, RFC 3550 §6.4.1); `exportUrl` an HTTP URL of the same as MP4.
 */
export interface VmsBackfillContext {
  vms: string;
  camera: string;
  /** ISO 8601. */
  start: string;
  end: string;
  replayUrl: string;
  exportUrl: string;
  /** The VMS to act on (a plugin instance serves every VMS that names it). */
  endpoint: VmsEndpoint;
}

/** A VMS vendor plugin (plugins/vms-<name>). Every member but `meta` is optional. */
export interface VmsPlugin {
  meta: PluginMeta;
  /** Does an RTSP User-Agent / HTTP client string identify this VMS? */
  classify?(userAgent: string): boolean;
  /** Is the VMS up? Without it the host probes `ports` and `healthUrl` itself (as vms-generic does). */
  probe?(endpoint: VmsEndpoint, opts: VmsProbeOptions): Promise<VmsHealth>;
  /** How this VMS talks to its cameras, in words for plans and status (`RTSP over TCP to 4 cameras, User-Agent Lavf`). */
  describeCameraUse?(vms: VmsRecord, sessions: SessionRecord[]): string;
  /** Notes per camera on what the VMS needs when it gets its cameras back (re-add a camera, reconnect a channel). */
  planRestore?(ctx: VmsRestoreContext): Promise<Array<{ camera: string; note: string }>>;
  /** Has the VMS ingest the gap camtap recorded for one camera; reports failure in the result (`ok: false` and why). */
  backfill?(ctx: VmsBackfillContext, opts?: VmsCallOptions): Promise<{ ok: boolean; detail: string }>;
}

/** A module that exports a plugin: `meta` plus a factory or the plugin object as default. */
export interface PluginModule {
  meta: PluginMeta;
  default: ((ctx: PluginContext) => TapDriver | CameraProfile | VmsPlugin) | TapDriver | CameraProfile | VmsPlugin;
}
