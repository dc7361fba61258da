/**
 * VMS health: one state machine per VMS (ARCHITECTURE.md "Data flow" 6) that decides
 * *when* camtap takes a VMS's cameras over and gives them back; ./manager.ts decides how.
 *
 *   healthy ──probe fails / traffic stops──> suspect ──failAfter failed probes──> failing-over
 *      ^                                       │ probe ok, traffic flowing           │ failoverDone(ok)
 *      │                                       v                                     v
 *      └── restoreDone(ok) ── restoring <── recoverAfterMs healthy, unbroken ── failed-over
 *
 * Inputs: probe results (the VMS plugin's `probe`, or the generic TCP/HTTP probe), the
 * traffic watch (is the VMS still talking to its cameras?), manual `start`/`end`, and the
 * manager's `failoverDone`/`restoreDone`. Output: every transition through
 * `onTransition`, and with `auto` off, a detection event where `auto` would have acted.
 *
 * Hysteresis, so that a flapping VMS does not bounce its cameras back and forth:
 * - failing over needs `failAfter` consecutive failed probes (one bad answer is only
 *   `suspect`); after a failover that failed, the next attempt waits twice as many;
 * - giving back needs the VMS healthy for `recoverAfterMs` without a break: a failed
 *   probe in between restarts the wait, and the VMS stays failed-over meanwhile;
 * - silence toward the cameras alone makes a VMS `suspect`, never failed over, unless the
 *   VMS has nothing to probe (then its traffic is its only health signal).
 *
 * All timing comes from an injectable clock, so tests drive it without waiting.
 */
import type { Logger } from '../contracts/logger.js';
import type { VmsEndpoint, VmsHealth, VmsPlugin, VmsProbeOptions } from '../contracts/plugin.js';
import { CamtapError } from '../errors.js';
import { probeEndpoint } from './probe.js';

export type VmsState = 'healthy' | 'suspect' | 'failing-over' | 'failed-over' | 'restoring';

/** What moved the machine: a probe verdict, the traffic watch, an operator, or the manager's outcome. */
export type TransitionCause = 'probe' | 'traffic' | 'manual' | 'failover' | 'restore';

export interface VmsTransition {
  vms: string;
  from: VmsState;
  to: VmsState;
  reason: string;
  /** ISO 8601. */
  at: string;
  cause: TransitionCause;
}

/**
 * With `auto` off (or after a manual start, for the way back), where the machine would
 * have acted: `down` when failing over was due (run `camtap failover start <vms>`), `up`
 * when giving back was due (`camtap failover end <vms>`). Raised once per episode.
 */
export interface VmsDetection {
  vms: string;
  kind: 'down' | 'up';
  state: VmsState;
  reason: string;
  at: string;
}

/** Time source and timers (ms). Tests pass a manual clock; the default is the system's. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** The traffic watch as the monitor uses it (./traffic-watch.ts `TrafficWatch`). */
export interface TrafficVerdicts {
  watch?(vms: string, address: string): void;
  unwatch?(vms: string): void;
  silentFor(vms: string, nowMs: number): number | null;
  isSilent(vms: string, nowMs: number, timeoutMs: number): boolean | null;
  /** Since the VMS closed an RTSP connection without TEARDOWN and went quiet (its process is gone), or null. */
  closedFor?(vms: string, nowMs: number): number | null;
  thresholdMs?(vms: string, timeoutMs: number): number;
}

/** One VMS to watch (config `failover.vms[]`). */
export interface VmsWatchEntry {
  name: string;
  address: string;
  ports?: number[];
  healthUrl?: string;
  expectStatus?: number;
  /** VMS plugin name; default vms-generic. */
  plugin?: string;
  options?: Record<string, unknown>;
}

/** The `failover` config block, as far as health goes. */
export interface HealthSettings {
  probeIntervalMs: number;
  probeTimeoutMs: number;
  failAfter: number;
  recoverAfterMs: number;
  trafficTimeoutMs: number;
  auto: boolean;
  vms: VmsWatchEntry[];
}

export interface VmsHealthMonitorDeps {
  settings: HealthSettings;
  onTransition: (t: VmsTransition) => void;
  onDetection?: (d: VmsDetection) => void;
  /** Finds a loaded VMS plugin by name (PluginHost's `vmsPlugins`); without it every VMS gets the generic probe. */
  plugin?: (name: string) => VmsPlugin | null | undefined;
  /** The probe for VMSs whose plugin has none (default: ./probe.ts `probeEndpoint`). */
  fallbackProbe?: (endpoint: VmsEndpoint, opts: VmsProbeOptions) => Promise<VmsHealth>;
  trafficWatch?: TrafficVerdicts | null;
  clock?: Clock;
  log?: Logger;
}

/** A VMS's state and what it rests on (`camtap failover status`, the API). */
export interface VmsStatus {
  vms: string;
  address: string;
  plugin: string;
  state: VmsState;
  /** When it entered this state (ISO 8601). */
  since: string;
  /** Consecutive failed probes now. */
  failures: number;
  /** Failed over by an operator: given back only by `end`. */
  manual: boolean;
  lastProbe: VmsHealth | null;
  lastProbeAt: string | null;
  /** Since the VMS's last sign of life toward its cameras (null: never seen, or no traffic watch). */
  trafficSilentForMs: number | null;
  /** Failed-over and healthy since (ISO 8601): the restore wait under way. */
  healthySince: string | null;
  /** Recoveries interrupted by a failed probe while failed-over. */
  flaps: number;
}

interface Slot {
  entry: VmsWatchEntry;
  endpoint: VmsEndpoint;
  pluginName: string;
  plugin: VmsPlugin | null;
  state: VmsState;
  since: number;
  failures: number;
  /** Failovers that failed in a row (backoff). */
  failedAttempts: number;
  manual: boolean;
  downRaised: boolean;
  upRaised: boolean;
  healthySince: number | null;
  flaps: number;
  last: VmsHealth | null;
  lastAt: number | null;
  inFlight: AbortController | null;
}

const iso = (ms: number): string => new Date(ms).toISOString();

/** How long a VMS's connections stay closed before it counts as gone (a restart that reconnects at once is not a failure). */
export const CLOSE_GRACE_MS = 500;

export class VmsHealthMonitor {
  readonly #deps: VmsHealthMonitorDeps;
  readonly #s: HealthSettings;
  readonly #clock: Clock;
  readonly #slots = new Map<string, Slot>();
  readonly #fallback: (endpoint: VmsEndpoint, opts: VmsProbeOptions) => Promise<VmsHealth>;
  #timer: unknown = null;
  #running = false;
  #closed = false;

  constructor(deps: VmsHealthMonitorDeps) {
    this.#deps = deps;
    this.#s = deps.settings;
    this.#clock = deps.clock ?? systemClock;
    this.#fallback = deps.fallbackProbe ?? probeEndpoint;
    const now = this.#clock.now();
    deps.settings.vms.forEach((e, i) => {
      if (this.#slots.has(e.name)) throw new CamtapError('CAMTAP_ERR_CONFIG', { file: 'config', key: `failover.vms[${i}].name`, reason: `duplicate VMS name "${e.name}"` });
      const pluginName = e.plugin ?? 'vms-generic';
      let plugin: VmsPlugin | null = null;
      if (deps.plugin) {
        plugin = deps.plugin(pluginName) ?? null;
        if (!plugin) throw new CamtapError('CAMTAP_ERR_CONFIG', { file: 'config', key: `failover.vms[${i}].plugin`, reason: `no VMS plugin "${pluginName}" is loaded (name its folder or package under plugins:)` });
      }
      const endpoint: VmsEndpoint = { name: e.name, address: e.address, ports: e.ports ?? [], options: e.options ?? {} };
      if (e.healthUrl) endpoint.healthUrl = e.healthUrl;
      if (e.expectStatus !== undefined) endpoint.expectStatus = e.expectStatus;
      this.#slots.set(e.name, {
        entry: e, endpoint, pluginName, plugin, state: 'healthy', since: now, failures: 0, failedAttempts: 0, manual: false,
        downRaised: false, upRaised: false, healthySince: null, flaps: 0, last: null, lastAt: null, inFlight: null,
      });
      deps.trafficWatch?.watch?.(e.name, e.address);
    });
  }

  /** Starts probing every VMS each `probeIntervalMs` (the first round now). A VMS whose probe is still out is skipped that round. */
  run(): void {
    if (this.#running || this.#closed) return;
    this.#running = true;
    const loop = () => {
      if (!this.#running) return;
      void this.tick();
      this.#timer = this.#clock.setTimeout(loop, this.#s.probeIntervalMs);
    };
    loop();
  }

  /** Stops probing, aborts probes under way, stops watching traffic. Safe twice. */
  close(): void {
    this.#running = false;
    this.#closed = true;
    if (this.#timer !== null) this.#clock.clearTimeout(this.#timer);
    this.#timer = null;
    for (const s of this.#slots.values()) {
      s.inFlight?.abort();
      this.#deps.trafficWatch?.unwatch?.(s.entry.name);
    }
  }

  /** One round: probes every VMS not already being probed and feeds each result to `report`. Resolves when the round's probes are in. */
  async tick(): Promise<void> {
    const jobs: Array<Promise<void>> = [];
    for (const s of this.#slots.values()) {
      if (s.inFlight) continue;
      const ctrl = new AbortController();
      s.inFlight = ctrl;
      jobs.push(
        this.#probe(s, ctrl).then((h) => {
          s.inFlight = null;
          if (!this.#closed) this.report(s.entry.name, h);
        }),
      );
    }
    await Promise.all(jobs);
  }

  async #probe(s: Slot, ctrl: AbortController): Promise<VmsHealth> {
    const timeoutMs = this.#s.probeTimeoutMs;
    const failed = (detail: string): VmsHealth => ({ ok: false, detail, latencyMs: null, checks: [{ name: 'probe', ok: false, detail }] });
    const p = s.plugin;
    const run = p?.probe ? (e: VmsEndpoint, o: VmsProbeOptions) => p.probe!(e, o) : this.#fallback;
    // A probe that ignores its signal still ends the round at the timeout.
    let timer: unknown = null;
    const timedOut = new Promise<VmsHealth>((resolve) => {
      timer = this.#clock.setTimeout(() => {
        ctrl.abort();
        resolve(failed(`no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      ctrl.signal.addEventListener('abort', () => resolve(failed(this.#closed ? 'monitor closed' : `no answer within ${timeoutMs} ms`)), { once: true });
    });
    try {
      const h = await Promise.race([Promise.resolve().then(() => run(s.endpoint, { signal: ctrl.signal, timeoutMs })), timedOut]);
      if (!h || typeof h.ok !== 'boolean' || !Array.isArray(h.checks)) return failed(`plugin ${s.pluginName}: probe gave no health verdict`);
      return h;
    } catch (e) {
      this.#deps.log?.warn({ vms: s.entry.name, plugin: s.pluginName, err: (e as Error).message }, 'VMS probe threw');
      return failed(`plugin ${s.pluginName}: probe failed: ${(e as Error).message}`);
    } finally {
      this.#clock.clearTimeout(timer);
    }
  }

  /**
   * A probe result for `vms` (taken at `atMs`, default now). The verdict is the probe's;
   * a probe with no checks leaves the verdict to the traffic watch. Traffic silence makes
   * a healthy VMS suspect and keeps it there until traffic resumes.
   */
  report(vms: string, health: VmsHealth, atMs: number = this.#clock.now()): void {
    const s = this.#slot(vms);
    s.last = health;
    s.lastAt = atMs;
    const tw = this.#deps.trafficWatch ?? null;
    const silent = tw ? tw.isSilent(vms, atMs, this.#s.trafficTimeoutMs) : null;
    const silence = silent === true ? `no traffic toward its cameras for ${Math.round(tw!.silentFor(vms, atMs) ?? 0)} ms` : null;
    let verdict: 'ok' | 'fail' | 'none';
    let cause: TransitionCause = 'probe';
    let reason = health.detail;
    // A VMS that closed its camera connections without TEARDOWN and has said nothing since
    // is gone (a killed process's kernel closes its sockets at once): no need to wait for
    // failAfter rounds. CLOSE_GRACE_MS leaves time for a quick reconnect.
    const closedMs = tw?.closedFor?.(vms, atMs) ?? null;
    const gone = closedMs !== null && closedMs >= CLOSE_GRACE_MS;
    if (gone) {
      verdict = 'fail';
      cause = 'traffic';
      reason = `closed its RTSP connection without TEARDOWN ${Math.round(closedMs)} ms ago and has been silent since`;
    } else if (health.checks.length > 0) verdict = health.ok ? 'ok' : 'fail';
    else if (silent === null) verdict = 'none';
    else {
      verdict = silent ? 'fail' : 'ok';
      cause = 'traffic';
      reason = silence ?? 'traffic toward its cameras again';
    }
    switch (s.state) {
      case 'healthy':
        if (verdict === 'fail') {
          s.failures = gone ? this.#need(s) : 1;
          this.#move(s, 'suspect', cause, reason, atMs);
          this.#maybeFailover(s, cause, reason, atMs);
        } else if (silence) this.#move(s, 'suspect', 'traffic', silence, atMs);
        break;
      case 'suspect':
        if (verdict === 'fail') {
          s.failures = gone ? Math.max(s.failures + 1, this.#need(s)) : s.failures + 1;
          this.#maybeFailover(s, cause, reason, atMs);
        } else if (verdict === 'ok') {
          s.failures = 0;
          if (!silence) {
            s.downRaised = false;
            this.#move(s, 'healthy', cause, cause === 'probe' ? `probe ok: ${reason}` : reason, atMs);
          }
        }
        break;
      case 'failed-over':
        if (verdict === 'ok') {
          if (s.healthySince === null) s.healthySince = atMs;
          const healthyMs = atMs - s.healthySince;
          if (healthyMs >= this.#s.recoverAfterMs) this.#maybeRestore(s, `healthy for ${Math.round(healthyMs)} ms: ${reason}`, cause, atMs);
        } else if (verdict === 'fail' && s.healthySince !== null) {
          // Flapping: the wait starts again; the cameras stay with camtap.
          s.healthySince = null;
          s.upRaised = false;
          s.flaps++;
          this.#deps.log?.info({ vms, reason }, 'VMS failed again while recovering: stays failed over');
        }
        break;
      default:
        // failing-over, restoring: the manager is acting; results are kept for status only.
        break;
    }
  }

  /** Failed rounds needed before failing over: failAfter, doubled after each failover that failed. */
  #need(s: Slot): number {
    return this.#s.failAfter * 2 ** Math.min(s.failedAttempts, 6);
  }

  #maybeFailover(s: Slot, cause: TransitionCause, reason: string, atMs: number): void {
    const need = this.#need(s);
    if (s.failures < need) return;
    const why = `${s.failures} failed ${cause === 'traffic' ? 'traffic checks' : 'probes'} in a row: ${reason}`;
    if (this.#s.auto) this.#move(s, 'failing-over', cause, why, atMs);
    else if (!s.downRaised) {
      s.downRaised = true;
      this.#detect(s, 'down', `${why} (automatic failover is off: camtap failover start ${s.entry.name})`, atMs);
    }
  }

  #maybeRestore(s: Slot, reason: string, cause: TransitionCause, atMs: number): void {
    if (this.#s.auto && !s.manual) this.#move(s, 'restoring', cause, reason, atMs);
    else if (!s.upRaised) {
      s.upRaised = true;
      const why = s.manual ? 'failed over by hand' : 'automatic failover is off';
      this.#detect(s, 'up', `${reason} (${why}: camtap failover end ${s.entry.name})`, atMs);
    }
  }

  /** Operator: take the VMS's cameras over now (from healthy or suspect). It is given back only by `end`. */
  start(vms: string, reason = 'started by hand'): VmsTransition {
    const s = this.#slot(vms);
    if (s.state !== 'healthy' && s.state !== 'suspect') throw this.#conflict(s, 'start a failover');
    s.manual = true;
    return this.#move(s, 'failing-over', 'manual', reason, this.#clock.now());
  }

  /** Operator: give the cameras back now (from failed-over), whatever the probes say. */
  end(vms: string, reason = 'ended by hand'): VmsTransition {
    const s = this.#slot(vms);
    if (s.state !== 'failed-over') throw this.#conflict(s, 'end a failover');
    return this.#move(s, 'restoring', 'manual', reason, this.#clock.now());
  }

  /**
   * The manager's outcome of a take-over: failing-over -> failed-over, or when it failed,
   * back to suspect (the next attempt needs twice the failed probes). False when the VMS
   * was not failing over (nothing changes).
   */
  failoverDone(vms: string, ok: boolean, detail?: string): boolean {
    const s = this.#slot(vms);
    if (s.state !== 'failing-over') return false;
    const at = this.#clock.now();
    s.healthySince = null;
    s.upRaised = false;
    if (ok) {
      s.failedAttempts = 0;
      this.#move(s, 'failed-over', 'failover', detail ?? 'cameras taken over', at);
    } else {
      s.failedAttempts++;
      s.failures = 0;
      s.manual = false;
      s.downRaised = false;
      this.#move(s, 'suspect', 'failover', `failover failed: ${detail ?? 'no camera taken over'}`, at);
    }
    return true;
  }

  /** The manager's outcome of a give-back: restoring -> healthy, or back to failed-over (another `recoverAfterMs` wait). False when not restoring. */
  restoreDone(vms: string, ok: boolean, detail?: string): boolean {
    const s = this.#slot(vms);
    if (s.state !== 'restoring') return false;
    const at = this.#clock.now();
    s.healthySince = null;
    s.upRaised = false;
    if (ok) {
      s.failures = 0;
      s.failedAttempts = 0;
      s.manual = false;
      s.downRaised = false;
      this.#move(s, 'healthy', 'restore', detail ?? 'cameras given back', at);
    } else this.#move(s, 'failed-over', 'restore', `restore failed: ${detail ?? 'cameras not given back'}`, at);
    return true;
  }

  state(vms: string): VmsState {
    return this.#slot(vms).state;
  }

  states(): VmsStatus[] {
    const now = this.#clock.now();
    const tw = this.#deps.trafficWatch ?? null;
    return [...this.#slots.values()].map((s) => ({
      vms: s.entry.name,
      address: s.entry.address,
      plugin: s.pluginName,
      state: s.state,
      since: iso(s.since),
      failures: s.failures,
      manual: s.manual,
      lastProbe: s.last,
      lastProbeAt: s.lastAt === null ? null : iso(s.lastAt),
      trafficSilentForMs: tw ? tw.silentFor(s.entry.name, now) : null,
      healthySince: s.healthySince === null ? null : iso(s.healthySince),
      flaps: s.flaps,
    }));
  }

  /** The endpoint a VMS is probed at (what `backfill`/`planRestore` get). */
  endpoint(vms: string): VmsEndpoint {
    return this.#slot(vms).endpoint;
  }

  /** The VMS's plugin, when a plugin lookup was given. */
  plugin(vms: string): VmsPlugin | null {
    return this.#slot(vms).plugin;
  }

  #slot(vms: string): Slot {
    const s = this.#slots.get(vms);
    if (!s) throw new CamtapError('CAMTAP_ERR_NOT_FOUND', { what: 'VMS', id: vms });
    return s;
  }

  #conflict(s: Slot, action: string): CamtapError {
    return new CamtapError('CAMTAP_ERR_CONFLICT', { what: `VMS ${s.entry.name}`, reason: `cannot ${action} while it is ${s.state}` });
  }

  #move(s: Slot, to: VmsState, cause: TransitionCause, reason: string, atMs: number): VmsTransition {
    const t: VmsTransition = { vms: s.entry.name, from: s.state, to, reason, at: iso(atMs), cause };
    s.state = to;
    s.since = atMs;
    this.#deps.log?.info({ vms: t.vms, from: t.from, to, cause }, `VMS ${t.vms}: ${t.from} -> ${to}: ${reason}`);
    try {
      this.#deps.onTransition(t);
    } catch (e) {
      this.#deps.log?.warn({ vms: t.vms, err: (e as Error).message }, 'onTransition handler threw');
    }
    return t;
  }

  #detect(s: Slot, kind: 'down' | 'up', reason: string, atMs: number): void {
    const d: VmsDetection = { vms: s.entry.name, kind, state: s.state, reason, at: iso(atMs) };
    this.#deps.log?.warn({ vms: d.vms, kind }, `VMS ${d.vms} ${kind}: ${reason}`);
    try {
      this.#deps.onDetection?.(d);
    } catch (e) {
      this.#deps.log?.warn({ vms: d.vms, err: (e as Error).message }, 'onDetection handler threw');
    }
  }
}
