import type { FilterSpec } from './filter.js';
import type { FrameSink } from './frame.js';
import type { Logger } from './logger.js';

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

/** A VMS vendor plugin (plugins/vms-<name>). Later issues add probing and restore. */
export interface VmsPlugin {
  meta: PluginMeta;
  /** Does an RTSP User-Agent / HTTP client string identify this VMS? */
  classify?(userAgent: string): boolean;
}

/** A module that exports a plugin: `meta` plus a factory or the plugin object as default. */
export interface PluginModule {
  meta: PluginMeta;
  default: ((ctx: PluginContext) => TapDriver | CameraProfile | VmsPlugin) | TapDriver | CameraProfile | VmsPlugin;
}
