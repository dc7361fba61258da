/**
 * Loads plugins (built-in folders and external npm packages or folders named in the
 * config) against the typed contracts in core/contracts, fastify-style: a plugin is a
 * module exporting `meta` (name, kind, version, supported core range) and a default
 * export (the plugin object, or a factory taking a PluginContext). Meta is checked at
 * load; every hook call goes through `call()`, which tags a thrown error with the plugin's
 * name and the hook (Rollup's PluginDriver does the same).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import semver from 'semver';
import type { CameraProfile, PluginContext, PluginMeta, TapDriver, VmsPlugin } from './contracts/plugin.js';
import type { Logger } from './contracts/logger.js';
import { CamtapError } from './errors.js';

export const CORE_VERSION = '0.1.0';

/** Built-in plugins, loaded through the same path as external ones. Paths are relative to the compiled core/ folder. */
const BUILTINS = [
  '../tap-drivers/pcap-file/index.js',
  '../tap-drivers/libpcap/index.js',
  '../tap-drivers/tcpdump/index.js',
  '../tap-drivers/inline/index.js',
  '../camera-profiles/generic-rtsp/index.js',
  '../camera-profiles/onvif/index.js',
  '../plugins/vms-generic/index.js',
];

type AnyPlugin = TapDriver | CameraProfile | VmsPlugin;

export interface PluginHostDeps {
  log: Logger;
  dataDir: string;
  /** Per-plugin options by plugin name. */
  pluginOptions?: Record<string, Record<string, unknown>>;
}

export function checkMeta(meta: unknown, where: string): PluginMeta {
  const m = meta as Partial<PluginMeta> | undefined;
  const bad = (reason: string) => new CamtapError('CAMTAP_ERR_PLUGIN_META', { plugin: m?.name ?? where, reason });
  if (!m || typeof m !== 'object') throw bad('no `meta` export');
  if (typeof m.name !== 'string' || !/^[a-z0-9@/._-]+$/.test(m.name)) throw bad('meta.name must be a lower-case string');
  if (!['tap-driver', 'camera-profile', 'vms', 'notifier', 'exporter'].includes(m.kind as string)) throw bad(`meta.kind "${String(m.kind)}" is not one of tap-driver, camera-profile, vms, notifier, exporter`);
  if (typeof m.version !== 'string' || !semver.valid(m.version)) throw bad(`meta.version "${String(m.version)}" is not a semver version`);
  if (typeof m.core !== 'string' || !semver.validRange(m.core)) throw bad(`meta.core "${String(m.core)}" is not a semver range`);
  if (!semver.satisfies(CORE_VERSION, m.core)) throw new CamtapError('CAMTAP_ERR_PLUGIN_CORE_RANGE', { plugin: m.name, range: m.core, core: CORE_VERSION });
  return m as PluginMeta;
}

export class PluginHost {
  readonly tapDrivers = new Map<string, TapDriver>();
  readonly cameraProfiles: CameraProfile[] = [];
  readonly vmsPlugins: VmsPlugin[] = [];
  readonly #deps: PluginHostDeps;
  readonly #loaded = new Set<string>();

  constructor(deps: PluginHostDeps) {
    this.#deps = deps;
  }

  async loadBuiltins(): Promise<void> {
    // A broken built-in (a partial install) costs only its own feature, never the whole program.
    for (const rel of BUILTINS) {
      const file = new URL(rel, import.meta.url);
      try {
        await this.#loadUrl(file.href, rel);
      } catch (e) {
        this.#deps.log.warn({ plugin: rel, err: (e as Error).message }, 'built-in plugin not loaded');
      }
    }
  }

  /** Loads an external plugin: an npm package name (resolved from the working directory) or a folder/file path. */
  async load(spec: string): Promise<PluginMeta> {
    let href: string;
    try {
      if (spec.startsWith('/') || spec.startsWith('.')) {
        let p = path.resolve(spec);
        if (existsSync(path.join(p, 'package.json'))) {
          const pkg = JSON.parse(readFileSync(path.join(p, 'package.json'), 'utf8')) as { main?: string; exports?: unknown };
          p = path.join(p, typeof pkg.exports === 'string' ? pkg.exports : pkg.main ?? 'index.js');
        } else if (!path.extname(p)) p = path.join(p, 'index.js');
        href = pathToFileURL(p).href;
      } else {
        href = pathToFileURL(createRequire(path.join(process.cwd(), 'noop.js')).resolve(spec)).href;
      }
    } catch (e) {
      throw new CamtapError('CAMTAP_ERR_PLUGIN_LOAD', { plugin: spec, reason: (e as Error).message });
    }
    return this.#loadUrl(href, spec);
  }

  async #loadUrl(href: string, label: string): Promise<PluginMeta> {
    let mod: Record<string, unknown>;
    try {
      mod = (await import(href)) as Record<string, unknown>;
    } catch (e) {
      throw new CamtapError('CAMTAP_ERR_PLUGIN_LOAD', { plugin: label, reason: (e as Error).message }, { cause: e });
    }
    const meta = checkMeta(mod.meta, label);
    if (this.#loaded.has(meta.name)) return meta;
    const ctx: PluginContext = {
      log: this.#deps.log.child({ plugin: meta.name }),
      options: this.#deps.pluginOptions?.[meta.name] ?? {},
      dataDir: this.#deps.dataDir,
    };
    let plugin: AnyPlugin;
    try {
      plugin = typeof mod.default === 'function' ? (mod.default as (c: PluginContext) => AnyPlugin)(ctx) : (mod.default as AnyPlugin);
    } catch (e) {
      throw new CamtapError('CAMTAP_ERR_PLUGIN_HOOK', { plugin: meta.name, hook: 'factory', reason: (e as Error).message }, { cause: e });
    }
    if (!plugin || typeof plugin !== 'object') throw new CamtapError('CAMTAP_ERR_PLUGIN_META', { plugin: meta.name, reason: 'default export is not a plugin object or factory' });
    (plugin as { meta: PluginMeta }).meta ??= meta;
    if (meta.kind === 'tap-driver') {
      const d = plugin as TapDriver;
      if (typeof d.create !== 'function' || typeof d.translate !== 'function') throw new CamtapError('CAMTAP_ERR_PLUGIN_META', { plugin: meta.name, reason: 'a tap driver needs create() and translate()' });
      this.tapDrivers.set(meta.name, d);
    } else if (meta.kind === 'camera-profile') this.cameraProfiles.push(plugin as CameraProfile);
    else if (meta.kind === 'vms') this.vmsPlugins.push(plugin as VmsPlugin);
    this.#loaded.add(meta.name);
    return meta;
  }

  tapDriver(name: string, tap: string): TapDriver {
    const d = this.tapDrivers.get(name);
    if (!d) throw new CamtapError('CAMTAP_ERR_TAP_DRIVER', { tap, driver: name, known: [...this.tapDrivers.keys()].join(', ') || 'none' });
    return d;
  }

  /** Calls a plugin hook, tagging any error with the plugin and hook names. */
  static call<T>(plugin: { meta: PluginMeta }, hook: string, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      throw new CamtapError('CAMTAP_ERR_PLUGIN_HOOK', { plugin: plugin.meta.name, hook, reason: (e as Error).message }, { cause: e });
    }
  }

  /** *first* hook over camera profiles: the first non-null answer wins; a throwing profile is logged and skipped (a plugin must not stop the packet path). */
  matchFlow(flow: Parameters<NonNullable<CameraProfile['match']>>[0], payload: Buffer): ReturnType<NonNullable<CameraProfile['match']>> {
    for (const p of this.cameraProfiles) {
      if (!p.match) continue;
      try {
        const r = PluginHost.call(p, 'match', () => p.match!(flow, payload));
        if (r) return r;
      } catch (e) {
        this.#deps.log.warn({ err: (e as Error).message }, 'camera profile hook failed');
      }
    }
    return null;
  }
}
