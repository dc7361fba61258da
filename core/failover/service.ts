/**
 * Failover inside `camtap serve`: the health monitor (./health.ts, *when*) wired to the
 * manager (./manager.ts, *how*), with the config's camera credentials and profiles, the
 * taps' traffic watch, and the inline recorder the taken-over cameras are recorded
 * through.
 *
 * The monitor watches the VMSs of `failover.vms`; a transition to failing-over (with
 * `auto`, or by hand) runs the manager's `start`, a transition to restoring its `end`,
 * and their outcomes move the monitor on. The API and CLI act through {@link
 * FailoverService.start}/{@link FailoverService.end}, which keep the two in step for a
 * watched VMS and drive the manager alone for any other VMS of the inventory.
 */
import type { Config } from '../config.js';
import type { Catalog } from '../catalog/catalog.js';
import type { CameraProfile, ProfileCamera } from '../contracts/camera-profile.js';
import type { InlineRecorder } from '../contracts/inline.js';
import type { Logger } from '../contracts/logger.js';
import type { CameraRecord } from '../contracts/records.js';
import type { PluginHost } from '../plugin-host.js';
import { VmsHealthMonitor, type VmsStatus, type VmsTransition } from './health.js';
import { FailoverManager, type FailoverEvent, type FailoverRecord, type FailoverStatus } from './manager.js';
import type { FailoverPlan } from './types.js';
import type { TrafficWatch } from './traffic-watch.js';

export interface FailoverServiceDeps {
  config: Config;
  catalog: Catalog;
  log: Logger;
  plugins: PluginHost;
  trafficWatch: TrafficWatch | null;
  recorder: () => InlineRecorder | null;
  rtspBase: () => string;
  httpBase: () => string | null;
  onEvent?: (e: FailoverEvent) => void;
  onTransition?: (t: VmsTransition) => void;
}

export class FailoverService {
  readonly manager: FailoverManager;
  readonly monitor: VmsHealthMonitor | null;
  readonly #log: Logger;
  readonly #config: Config;

  constructor(d: FailoverServiceDeps) {
    const fo = d.config.failover;
    this.#config = d.config;
    this.#log = d.log.child({ component: 'failover' });
    this.manager = new FailoverManager({
      catalog: d.catalog,
      log: d.log,
      dataDir: d.config.dataDir,
      settings: () => ({ host: fo.host, rtpPortBase: fo.rtpPortBase, confirmMs: fo.confirmMs, backfill: fo.backfill }),
      profileFor: (k) => profileFor(d.config, d.plugins, k),
      cameraConfig: (k) => cameraConfig(d.config, k),
      recorder: d.recorder,
      rtspBase: d.rtspBase,
      httpBase: d.httpBase,
      ...(d.trafficWatch ? { vmsTrafficSince: (addr: string, since: number) => d.trafficWatch!.seenSince(addr, since) } : {}),
      backfill: (vms) => {
        const entry = fo.vms.find((v) => v.name === vms || v.address === vms);
        const p = entry ? d.plugins.vmsPlugins.find((x) => x.meta.name === entry.plugin) : null;
        if (!entry || !p?.backfill) return null;
        const endpoint = { name: entry.name, address: entry.address, ports: entry.ports, ...(entry.healthUrl ? { healthUrl: entry.healthUrl } : {}), ...(entry.expectStatus ? { expectStatus: entry.expectStatus } : {}), options: entry.options };
        return (ctx) => p.backfill!({ ...ctx, endpoint } as Parameters<NonNullable<typeof p.backfill>>[0], { timeoutMs: 30_000 });
      },
      ...(d.onEvent ? { onEvent: d.onEvent } : {}),
    });
    this.monitor =
      fo.vms.length > 0
        ? new VmsHealthMonitor({
            settings: fo,
            onTransition: (t) => {
              d.onTransition?.(t);
              void this.#onTransition(t);
            },
            plugin: (name) => d.plugins.vmsPlugins.find((p) => p.meta.name === name) ?? null,
            trafficWatch: d.trafficWatch,
            log: d.log,
          })
        : null;
  }

  /** Starts probing (when VMSs are configured). */
  run(): void {
    this.monitor?.run();
  }

  health(): VmsStatus[] {
    return this.monitor?.states() ?? [];
  }

  status(vms?: string): Promise<FailoverStatus[]> {
    return this.manager.status(vms);
  }

  history(): Promise<FailoverRecord[]> {
    return this.manager.history();
  }

  plan(vms: string, opts: { only?: string[] } = {}): Promise<FailoverPlan> {
    return this.manager.plan(vms, opts);
  }

  periods(): Promise<Array<{ vms: string; cameras: string[]; start: string; end: string | null }>> {
    return this.manager.periods();
  }

  /** Failover by hand (API, CLI): the manager acts at once; a watched VMS's monitor follows. */
  async start(vms: string, opts: { dryRun?: boolean; trigger?: string; only?: string[] } = {}): Promise<FailoverRecord> {
    const rec = await this.manager.start(vms, opts);
    const name = this.#watched(vms);
    if (!opts.dryRun && name && this.monitor!.state(name) !== 'failed-over' && this.monitor!.state(name) !== 'failing-over') this.monitor!.start(name, `started by ${opts.trigger ?? 'hand'}`);
    return rec;
  }

  /** Give-back by hand. */
  async end(vms: string, opts: { dryRun?: boolean; trigger?: string } = {}): Promise<FailoverRecord> {
    const rec = await this.manager.end(vms, opts);
    const name = this.#watched(vms);
    if (!opts.dryRun && name && this.monitor!.state(name) !== 'healthy') this.monitor!.end(name, `ended by ${opts.trigger ?? 'hand'}`);
    return rec;
  }

  async close(): Promise<void> {
    this.monitor?.close();
    await this.manager.close();
  }

  /** The monitor's name for a VMS named by the caller (config name or address), if it watches it. */
  #watched(vms: string): string | null {
    if (!this.monitor) return null;
    const e = this.#config.failover.vms.find((v) => v.name === vms || v.address === vms);
    return e ? e.name : null;
  }

  async #onTransition(t: VmsTransition): Promise<void> {
    const mon = this.monitor!;
    const entry = this.#config.failover.vms.find((v) => v.name === t.vms);
    const target = entry?.address ?? t.vms;
    try {
      if (t.to === 'failing-over') {
        if (this.manager.active(target)) {
          mon.failoverDone(t.vms, true, 'already taken over');
          return;
        }
        const rec = await this.manager.start(target, { trigger: `${t.cause}: ${t.reason}` });
        const ok = rec.redirect.some((c) => c.ok);
        mon.failoverDone(t.vms, ok, ok ? undefined : rec.redirect.map((c) => `${c.camera}: ${c.reason ?? 'failed'}`).join('; ') || 'no camera to take over');
      } else if (t.to === 'restoring') {
        if (!this.manager.active(target)) {
          mon.restoreDone(t.vms, true, 'nothing taken over');
          return;
        }
        const rec = await this.manager.end(target, { trigger: `${t.cause}: ${t.reason}` });
        mon.restoreDone(t.vms, rec.restore.every((c) => c.ok));
      }
    } catch (e) {
      this.#log.error({ vms: t.vms, to: t.to, err: (e as Error).message }, 'failover action failed');
      if (t.to === 'failing-over') mon.failoverDone(t.vms, false, (e as Error).message);
      else if (t.to === 'restoring') mon.restoreDone(t.vms, false, (e as Error).message);
    }
  }
}

/** The profile named in the camera's config entry, else the generic RTSP profile. */
export function profileFor(config: Config, plugins: PluginHost, k: CameraRecord): CameraProfile | null {
  const entry = config.cameras.find((c) => c.name === k.name || c.address === k.address);
  const want = entry?.profile;
  if (want) return plugins.cameraProfiles.find((p) => p.meta.name === want) ?? null;
  return plugins.cameraProfiles.find((p) => p.meta.name === 'generic-rtsp') ?? null;
}

/** Credentials and API settings of a camera from the config (by name or address); the password defaults to the userinfo of its `url`. */
export function cameraConfig(config: Config, k: CameraRecord): Pick<ProfileCamera, 'user' | 'password' | 'apiUrl' | 'options'> {
  const e = config.cameras.find((c) => c.name === k.name || c.address === k.address);
  if (!e) return {};
  let user = e.user;
  let password = e.password;
  if ((user === undefined || password === undefined) && e.url) {
    try {
      const u = new URL(e.url);
      if (user === undefined && u.username) user = decodeURIComponent(u.username);
      if (password === undefined && u.password) password = decodeURIComponent(u.password);
    } catch {
      /* a bad URL is the config check's to report */
    }
  }
  return { ...(user !== undefined ? { user } : {}), ...(password !== undefined ? { password } : {}), ...(e.apiUrl ? { apiUrl: e.apiUrl } : {}), ...(e.options ? { options: e.options } : {}) };
}
