/**
 * Failover execution: takes the cameras of a failed VMS over, keeps them recorded while
 * the VMS is down, and gives them back (issue "VMS failover and restore").
 *
 *   plan(vms)   builds the plan (./plan.ts) from the catalog: pure data, nothing sent.
 *   start(vms)  runs each camera's take-over steps (./rtsp-replay.ts, ./http-replay.ts, or
 *               the camera profile's API); what the cameras then send is recorded through
 *               the inline recorder into the same store and index as everything else.
 *               An RTSP take-over whose camera drops the session is set up again with
 *               backoff for as long as the failover lasts.
 *   end(vms)    runs the give-back steps (TEARDOWN of camtap's sessions, the original HTTP
 *               configuration requests, the profile's restore), checks the VMS's traffic
 *               resumed, closes the failover period, and offers the gap: a replay URL and
 *               an export URL per camera covering the period, plus the VMS plugin's
 *               backfill hook when it has one.
 *
 * Both take `dryRun`: every request is listed as it would go on the wire and nothing is
 * sent (no socket is even bound). Every action is audited: a JSON line per step in
 * `<dataDir>/failover-audit.jsonl` and the failover periods with every camera's outcome
 * in the catalog (`failover:history`), so `camtap failover status` and the console show
 * them after a restart.
 *
 * The health state machine (./health.ts) decides *when*; this class decides *how*. The
 * serve command wires the two: a transition to failing-over calls `start`, to restoring
 * calls `end`, and their results move the machine on.
 */
import { appendFile, mkdir } from 'node:fs/promises';
import { createSocket } from 'node:dgram';
import { networkInterfaces } from 'node:os';
import path from 'node:path';
import type { Catalog } from '../catalog/catalog.js';
import type { CameraProfile, ProfileCamera, SavedCameraState } from '../contracts/camera-profile.js';
import type { InlineRecorder } from '../contracts/inline.js';
import type { Logger } from '../contracts/logger.js';
import type { CameraRecord, HttpTransaction, SegmentRecord, StreamRecord, VmsRecord } from '../contracts/records.js';
import { CamtapError, isCamtapError } from '../errors.js';
import { UpstreamSession } from '../rtsp-client/upstream.js';
import { readCapturedRequest } from './captured-http.js';
import { sendHttpSteps } from './http-replay.js';
import { buildFailoverPlan } from './plan.js';
import { RtpReceiver } from './rtp-receiver.js';
import { startRtspReplay, type ReplaySession } from './rtsp-replay.js';
import type { CameraOutcome, CameraPlan, FailoverPlan, FailoverTarget, HttpStep, RtspStep, StepOutcome } from './types.js';

/** Where the failover settings come from (config `failover`). */
export interface FailoverSettings {
  /** The address cameras reach camtap at; null: the local address on the route to each VMS's first camera. */
  host: string | null;
  /** First even UDP port for redirected RTP (default 50000). */
  rtpPortBase: number;
  /** How long `end` waits to see the VMS's traffic again before it reports the restore unconfirmed (ms). */
  confirmMs: number;
  /** Call the VMS plugin's backfill hook after a restore. */
  backfill: boolean;
}

export interface FailoverManagerDeps {
  catalog: Catalog;
  log: Logger;
  dataDir: string;
  settings: () => FailoverSettings;
  /** The camera profile that handles a camera (its config `profile`, else the first that matches), or null. */
  profileFor: (camera: CameraRecord) => CameraProfile | null;
  /** Credentials and profile options of a camera from the config (by inventory name or address). */
  cameraConfig: (camera: CameraRecord) => Pick<ProfileCamera, 'user' | 'password' | 'apiUrl' | 'options'>;
  /** Where what the taken-over cameras send is recorded (the inline tap); null: not recorded (dry runs, tests). */
  recorder: () => InlineRecorder | null;
  /** camtap's RTSP base (rtsp://host:port) and HTTP API base (null when off): the gap's URLs. */
  rtspBase: () => string;
  httpBase: () => string | null;
  /** Has camtap seen traffic between this VMS address and its cameras since `sinceMs`? (the restore check) */
  vmsTrafficSince?: (vmsAddress: string, sinceMs: number) => boolean;
  /** The VMS plugin's backfill hook for a VMS, when it has one. */
  backfill?: (vms: string) => ((ctx: { vms: string; camera: string; start: string; end: string; replayUrl: string; exportUrl: string }) => Promise<{ ok: boolean; detail: string }>) | null;
  /** Told of every start and end (alerts, metrics). */
  onEvent?: (e: FailoverEvent) => void;
  /** Addresses camtap owns (default: every address of this host's interfaces). */
  ownAddresses?: () => string[];
}

export interface FailoverEvent {
  kind: 'failover-started' | 'failover-ended' | 'camera-lost' | 'camera-resumed';
  vms: string;
  camera?: string;
  ok: boolean;
  detail: string;
  at: string;
}

/** The gap offered back for one camera. */
export interface GapOffer {
  camera: string;
  start: string;
  end: string;
  replayUrl: string;
  /** The mp4 export of the stream camtap recorded over the period (null when the HTTP API is off or nothing was recorded). */
  exportUrl: string | null;
  /** Packets camtap recorded from this camera over the period (from the catalog). */
  packets: number;
  backfill?: { ok: boolean; detail: string };
}

/** One failover period of one VMS, as kept in the catalog. */
export interface FailoverRecord {
  id: string;
  vms: string;
  vmsAddress: string;
  trigger: string;
  dryRun: boolean;
  start: string;
  end: string | null;
  target: FailoverTarget | null;
  redirect: CameraOutcome[];
  restore: CameraOutcome[];
  /** Did the VMS's traffic resume after the restore (null: not checked). */
  resumed: boolean | null;
  gap: GapOffer[];
}

export interface FailoverStatus {
  vms: string;
  active: boolean;
  /** The running (or last) failover period. */
  current: FailoverRecord | null;
  /** Per taken-over camera: packets camtap received since the take-over, and its sessions' state. */
  cameras: Array<{ camera: string; strategy: string; packets: number; state: 'receiving' | 'waiting' | 'reconnecting' | 'stopped' }>;
}

const HISTORY_KEY = 'failover:history';
const HISTORY_MAX = 200;

interface Running {
  record: FailoverRecord;
  plan: FailoverPlan;
  cameras: Map<string, RunningCamera>;
  stopping: boolean;
}

interface RunningCamera {
  plan: CameraPlan;
  camera: CameraRecord;
  sessions: Map<string, ReplaySession | null>;
  receivers: RtpReceiver[];
  saved: SavedCameraState | null;
  upstream: UpstreamSession | null;
  state: 'receiving' | 'waiting' | 'reconnecting' | 'stopped';
  retry: NodeJS.Timeout | null;
}

export class FailoverManager {
  readonly #d: FailoverManagerDeps;
  readonly #log: Logger;
  readonly #running = new Map<string, Running>();
  /** One operation per VMS at a time: start and end of one VMS are serialized. */
  readonly #locks = new Map<string, Promise<unknown>>();

  constructor(deps: FailoverManagerDeps) {
    this.#d = deps;
    this.#log = deps.log.child({ component: 'failover' });
  }

  /** Failover is running for this VMS, named by its inventory name or its address (taken over, not yet given back). */
  active(vms: string): boolean {
    return this.#runningOf(vms) !== undefined;
  }

  #runningOf(vms: string): Running | undefined {
    return this.#running.get(vms) ?? [...this.#running.values()].find((r) => r.record.vmsAddress === vms);
  }

  /** The plan `start` would run now, from the catalog alone. */
  async plan(vmsName: string, opts: { only?: string[] } = {}): Promise<FailoverPlan> {
    const cat = this.#d.catalog;
    const [vmsList, cameras, sessions, transactions, segments, streams] = await Promise.all([cat.listVms(), cat.listCameras(), cat.listSessions(), cat.listTransactions(), cat.listSegments(), cat.listStreams()]);
    const vms = findVms(vmsList, vmsName);
    const segById = new Map(segments.map((s) => [s.id, s]));
    const s = this.#d.settings();
    const own = this.#own();
    const host = s.host ?? (await this.#hostToward(cameras.filter((k) => k.vms.includes(vms.name)), own));
    return buildFailoverPlan({
      vms,
      cameras,
      sessions,
      transactions,
      streams,
      target: { host, rtpPortBase: s.rtpPortBase },
      ownAddresses: own,
      profileOf: (k) => this.#d.profileFor(k),
      readRequest: (tx: HttpTransaction) => readCapturedRequest((id: number): SegmentRecord | undefined => segById.get(id), tx),
      ...(opts.only ? { only: opts.only } : {}),
    });
  }

  /**
   * Takes the VMS's cameras over. With `dryRun` the outcome lists every request as it
   * would go and nothing is sent. Resolves when every camera's take-over steps ran (a
   * camera that failed is in the record with its reason; the others still run).
   */
  start(vmsName: string, opts: { dryRun?: boolean; trigger?: string; only?: string[] } = {}): Promise<FailoverRecord> {
    return this.#serial(vmsName, () => this.#start(vmsName, opts));
  }

  /** Gives the cameras back, checks the VMS's traffic resumed and offers the gap. */
  end(vmsName: string, opts: { dryRun?: boolean; trigger?: string } = {}): Promise<FailoverRecord> {
    return this.#serial(vmsName, () => this.#end(vmsName, opts));
  }

  /** Status of one VMS or of every VMS with a failover running or recorded. */
  async status(vmsName?: string): Promise<FailoverStatus[]> {
    const history = await this.history();
    const names = new Set<string>([...this.#running.keys(), ...history.map((h) => h.vms)]);
    if (vmsName !== undefined) {
      const vms = findVms(await this.#d.catalog.listVms(), vmsName, true);
      names.clear();
      names.add(vms?.name ?? vmsName);
    }
    const out: FailoverStatus[] = [];
    for (const name of names) {
      const run = this.#running.get(name);
      const last = run?.record ?? [...history].reverse().find((h) => h.vms === name && !h.dryRun) ?? null;
      out.push({
        vms: name,
        active: run !== undefined,
        current: last,
        cameras: run
          ? [...run.cameras.values()].map((c) => ({ camera: c.camera.name, strategy: c.plan.strategy, packets: packetsOf(c), state: c.state }))
          : [],
      });
    }
    return out;
  }

  /** Failover periods, oldest first (dry runs included, marked). */
  async history(): Promise<FailoverRecord[]> {
    return (await this.#d.catalog.getMeta<FailoverRecord[]>(HISTORY_KEY)) ?? [];
  }

  /** Failover periods for timelines: per VMS, its cameras, start and end (null while running). */
  async periods(): Promise<Array<{ vms: string; cameras: string[]; start: string; end: string | null }>> {
    return (await this.history()).filter((h) => !h.dryRun).map((h) => ({ vms: h.vms, cameras: h.redirect.map((c) => c.camera), start: h.start, end: h.end }));
  }

  /** Stops every take-over without giving cameras back (shutdown): the periods stay open in the catalog, and `end` after a restart restores from the saved state. */
  async close(): Promise<void> {
    for (const run of this.#running.values()) {
      run.stopping = true;
      for (const c of run.cameras.values()) await this.#stopCamera(c, false);
    }
    this.#running.clear();
  }

  async #start(vmsName: string, opts: { dryRun?: boolean; trigger?: string; only?: string[] }): Promise<FailoverRecord> {
    const dryRun = opts.dryRun === true;
    const existing = this.#runningOf(vmsName);
    if (existing && !dryRun) return existing.record;
    const plan = await this.plan(vmsName, opts.only ? { only: opts.only } : {});
    const now = new Date().toISOString();
    const record: FailoverRecord = {
      id: `f${Date.now().toString(36)}`,
      vms: plan.vms,
      vmsAddress: plan.vmsAddress,
      trigger: opts.trigger ?? 'manual',
      dryRun,
      start: now,
      end: dryRun ? now : null,
      target: plan.target,
      redirect: [],
      restore: [],
      resumed: null,
      gap: [],
    };
    const run: Running = { record, plan, cameras: new Map(), stopping: false };
    if (!dryRun) this.#running.set(plan.vms, run);
    await this.#audit({ action: dryRun ? 'dry-run' : 'start', vms: plan.vms, trigger: record.trigger, cameras: plan.cameras.map((c) => `${c.camera}:${c.strategy}`) });
    this.#log.warn({ vms: plan.vms, trigger: record.trigger, dryRun, cameras: plan.cameras.length }, dryRun ? 'failover dry run' : 'failover starting');
    const cams = new Map((await this.#d.catalog.listCameras()).map((k) => [k.name, k]));
    // Cameras are taken over in parallel: a slow or dead camera must not delay the others.
    const outcomes = await Promise.all(
      plan.cameras.map(async (cp) => {
        const camera = cams.get(cp.camera) ?? { name: cp.camera, address: cp.address, urls: [], codecs: [], vms: [plan.vms], firstSeen: now, lastSeen: now };
        const rc: RunningCamera = { plan: cp, camera, sessions: new Map(), receivers: [], saved: null, upstream: null, state: 'waiting', retry: null };
        if (!dryRun) run.cameras.set(cp.camera, rc);
        const o = await this.#redirect(run, rc, dryRun).catch((e: unknown) => failed(cp, `internal: ${errText(e)}`));
        await this.#auditOutcome(plan.vms, 'redirect', o);
        return o;
      }),
    );
    record.redirect = outcomes;
    await this.#save(record);
    const ok = outcomes.every((o) => o.ok);
    this.#event({ kind: 'failover-started', vms: plan.vms, ok, detail: summary(outcomes) });
    return record;
  }

  async #end(vmsName: string, opts: { dryRun?: boolean; trigger?: string }): Promise<FailoverRecord> {
    const dryRun = opts.dryRun === true;
    const vms = findVms(await this.#d.catalog.listVms(), vmsName, true);
    const name = vms?.name ?? vmsName;
    let run = this.#running.get(name);
    if (!run) {
      // Nothing running in this process: an open period from before a restart is restored from its record.
      const open = [...(await this.history())].reverse().find((h) => h.vms === name && !h.dryRun && h.end === null);
      if (!open) throw new CamtapError('CAMTAP_ERR_NOT_FOUND', { what: 'running failover of VMS', id: name });
      const plan = await this.plan(name);
      run = { record: open, plan, cameras: new Map(), stopping: false };
      const cams = new Map((await this.#d.catalog.listCameras()).map((k) => [k.name, k]));
      for (const cp of plan.cameras) {
        const camera = cams.get(cp.camera);
        if (camera) run.cameras.set(cp.camera, { plan: cp, camera, sessions: new Map(), receivers: [], saved: await this.#loadSaved(cp.camera), upstream: null, state: 'stopped', retry: null });
      }
    }
    await this.#audit({ action: dryRun ? 'restore dry-run' : 'restore', vms: name, trigger: opts.trigger ?? 'manual' });
    this.#log.warn({ vms: name, dryRun }, dryRun ? 'restore dry run' : 'restoring cameras to their VMS');
    const endAt = new Date();
    if (!dryRun) run.stopping = true;
    const outcomes = await Promise.all(
      [...run.cameras.values()].map(async (c) => {
        const o = await this.#restoreCamera(c, dryRun).catch((e: unknown) => failed(c.plan, `internal: ${errText(e)}`));
        await this.#auditOutcome(name, 'restore', o);
        return o;
      }),
    );
    if (dryRun) return { ...run.record, restore: outcomes, dryRun: true };
    this.#running.delete(name);
    const record = run.record;
    record.end = endAt.toISOString();
    record.restore = outcomes;
    record.resumed = await this.#confirmResumed(record.vmsAddress, endAt.getTime());
    record.gap = await this.#gap(record);
    await this.#save(record);
    this.#event({ kind: 'failover-ended', vms: name, ok: outcomes.every((o) => o.ok) && record.resumed !== false, detail: `${summary(outcomes)}; VMS traffic ${record.resumed === null ? 'not checked' : record.resumed ? 'resumed' : 'not seen again'}` });
    return record;
  }

  /** One camera's take-over, by its plan's strategy. */
  async #redirect(run: Running, c: RunningCamera, dryRun: boolean): Promise<CameraOutcome> {
    const cp = c.plan;
    if (cp.strategy === 'none') return { camera: cp.camera, strategy: 'none', ok: false, reason: cp.reason ?? 'no way to redirect this camera', steps: [] };
    const creds = this.#profileCamera(c.camera);
    if (cp.strategy === 'rtsp-replay') {
      const steps: StepOutcome[] = [];
      let reason: string | undefined;
      for (const [group, gsteps] of groups(cp.steps)) {
        const o = await this.#replayGroup(run, c, group, gsteps, dryRun);
        steps.push(...o.steps);
        if (!o.ok) reason ??= o.reason;
      }
      return { camera: cp.camera, strategy: cp.strategy, ok: reason === undefined, ...(reason ? { reason } : {}), steps };
    }
    if (!dryRun) {
      try {
        await this.#bindReceivers(run, c);
      } catch (e) {
        await this.#stopCamera(c, false);
        return failed(cp, errText(e));
      }
    }
    if (cp.strategy === 'http-replay') {
      const o = await sendHttpSteps(cp.steps.filter((s): s is HttpStep & { group?: string } => s.kind === 'http'), { camera: creds, log: this.#log, dryRun });
      if (!dryRun) c.state = o.ok ? 'waiting' : 'stopped';
      return o;
    }
    // camera-api: the profile redirects the camera, or camtap pulls the stream it names.
    const profile = this.#d.profileFor(c.camera);
    const step = cp.steps.find((s) => s.kind === 'api');
    const at = new Date().toISOString();
    if (!profile || !step || step.kind !== 'api') return failed(cp, 'no camera profile with an API for this camera');
    const request = step.call === 'redirect' ? `redirect ${step.target?.host}:${step.target?.port}` : `${step.call}`;
    if (dryRun) return { camera: cp.camera, strategy: cp.strategy, ok: true, steps: [{ step: 1, kind: 'api', request, status: null, ok: true, answer: '(dry run: not sent)', at }] };
    try {
      if (step.call === 'redirect' && profile.redirect && step.target) {
        c.saved = await profile.redirect(creds, { host: step.target.host, port: step.target.port, ...(step.target.stream ? { stream: step.target.stream } : {}) });
        await this.#d.catalog.setMeta(`failover:saved:${cp.camera}`, c.saved);
        c.state = 'waiting';
      } else if (step.call === 'stream-uri' && profile.streamUri) {
        const su = await profile.streamUri(creds, { transport: 'tcp' });
        const url = new URL(su.uri);
        if (su.user) url.username = encodeURIComponent(su.user);
        if (su.password) url.password = encodeURIComponent(su.password);
        c.upstream = new UpstreamSession({ url: url.toString(), transport: 'tcp', key: `failover:${cp.camera}`, camera: cp.camera, log: this.#log, recorder: this.#d.recorder() });
        await c.upstream.start();
        c.state = 'receiving';
      } else return failed(cp, `profile ${profile.meta.name} cannot ${step.call}`);
      return { camera: cp.camera, strategy: cp.strategy, ok: true, steps: [{ step: 1, kind: 'api', request, status: null, ok: true, answer: 'done', at }] };
    } catch (e) {
      return { camera: cp.camera, strategy: cp.strategy, ok: false, reason: `${request}: ${errText(e)}`, steps: [{ step: 1, kind: 'api', request, status: null, ok: false, answer: errText(e), at }] };
    }
  }

  /** One captured RTSP session replayed; set up again with backoff if the camera drops it while the failover lasts. */
  async #replayGroup(run: Running, c: RunningCamera, group: string, steps: RtspStep[], dryRun: boolean, attempt = 0): Promise<CameraOutcome> {
    const target = run.plan.target;
    const res = await startRtspReplay({
      camera: this.#profileCamera(c.camera),
      steps,
      host: target.host,
      recorder: dryRun ? null : this.#d.recorder(),
      log: this.#log,
      dryRun,
    });
    if (dryRun) return res.outcome;
    const session = res.session;
    c.sessions.set(group, session);
    if (session) {
      c.state = 'receiving';
      void session.closed.then((why) => {
        if (run.stopping || c.sessions.get(group) !== session) return;
        c.sessions.set(group, null);
        c.state = 'reconnecting';
        this.#log.warn({ camera: c.camera.name, why }, 'taken-over camera dropped its session; setting it up again');
        this.#event({ kind: 'camera-lost', vms: run.plan.vms, camera: c.camera.name, ok: false, detail: why });
        this.#retry(run, c, group, steps, 0);
      });
    } else if (attempt === 0 && res.outcome.steps.length > 0 && !res.outcome.steps.some((s) => s.status === 401 || s.status === 403)) {
      // Refused for a reason other than credentials (camera restarting, 503): keep trying while failed over.
      this.#retry(run, c, group, steps, 0);
    }
    return res.outcome;
  }

  #retry(run: Running, c: RunningCamera, group: string, steps: RtspStep[], n: number): void {
    const delay = Math.min(30_000, 1000 * 2 ** n);
    c.retry = setTimeout(() => {
      c.retry = null;
      if (run.stopping) return;
      void this.#replayGroup(run, c, group, steps, false, n + 1).then((o) => {
        void this.#auditOutcome(run.plan.vms, 'redirect again', o);
        if (o.ok) this.#event({ kind: 'camera-resumed', vms: run.plan.vms, camera: c.camera.name, ok: true, detail: 'set up again' });
        else if (!run.stopping && c.sessions.get(group) == null) this.#retry(run, c, group, steps, n + 1);
      });
    }, delay);
    c.retry.unref();
  }

  /** Binds the UDP ports a pushing camera will send to, before it is told to (a bind failure fails the camera's take-over, naming host:port). */
  async #bindReceivers(run: Running, c: RunningCamera): Promise<void> {
    for (const r of c.plan.receive ?? []) {
      c.receivers.push(await RtpReceiver.open({ host: run.plan.target.host, rtpPort: r.rtpPort, rtcpPort: r.rtcpPort, recorder: this.#d.recorder(), log: this.#log, from: [c.camera.address] }));
    }
  }

  async #restoreCamera(c: RunningCamera, dryRun: boolean): Promise<CameraOutcome> {
    const cp = c.plan;
    if (cp.strategy === 'none') return { camera: cp.camera, strategy: 'none', ok: true, steps: [] };
    if (cp.strategy === 'rtsp-replay') {
      if (dryRun) {
        const at = new Date().toISOString();
        return { camera: cp.camera, strategy: cp.strategy, ok: true, steps: cp.restore.map((s, i) => ({ step: i + 1, ...(s.group ? { group: s.group } : {}), kind: s.kind, request: stepLine(s), status: null, ok: true, answer: '(dry run: not sent)', at })) };
      }
      const steps: StepOutcome[] = [];
      if (c.retry) clearTimeout(c.retry);
      for (const s of c.sessions.values()) if (s) steps.push(...(await s.stop()));
      c.sessions.clear();
      c.state = 'stopped';
      return { camera: cp.camera, strategy: cp.strategy, ok: steps.every((s) => s.ok), steps };
    }
    if (cp.strategy === 'http-replay') {
      const o = await sendHttpSteps(cp.restore.filter((s): s is HttpStep & { group?: string } => s.kind === 'http'), { camera: this.#profileCamera(c.camera), log: this.#log, dryRun });
      if (!dryRun) await this.#stopCamera(c, true);
      return o;
    }
    const at = new Date().toISOString();
    const profile = this.#d.profileFor(c.camera);
    if (dryRun) return { camera: cp.camera, strategy: cp.strategy, ok: true, steps: [{ step: 1, kind: 'api', request: c.upstream ? 'stop pulling' : 'restore', status: null, ok: true, answer: '(dry run: not sent)', at }] };
    try {
      if (c.upstream) await c.upstream.stop();
      else {
        const saved = c.saved ?? (await this.#loadSaved(cp.camera));
        if (!profile?.restore || !saved) throw new CamtapError('CAMTAP_ERR_PROFILE_UNSUPPORTED', { camera: cp.camera, profile: profile?.meta.name ?? 'none', operation: 'restore', reason: saved ? 'the profile has no restore' : 'no saved camera state' });
        await profile.restore(this.#profileCamera(c.camera), saved);
      }
      await this.#stopCamera(c, true);
      return { camera: cp.camera, strategy: cp.strategy, ok: true, steps: [{ step: 1, kind: 'api', request: 'restore', status: null, ok: true, answer: 'done', at }] };
    } catch (e) {
      return { camera: cp.camera, strategy: cp.strategy, ok: false, reason: `restore: ${errText(e)}`, steps: [{ step: 1, kind: 'api', request: 'restore', status: null, ok: false, answer: errText(e), at }] };
    }
  }

  async #stopCamera(c: RunningCamera, _restored: boolean): Promise<void> {
    if (c.retry) clearTimeout(c.retry);
    c.retry = null;
    for (const s of c.sessions.values()) if (s) await s.stop().catch(() => []);
    c.sessions.clear();
    for (const r of c.receivers) r.close();
    c.receivers = [];
    if (c.upstream) await c.upstream.stop().catch(() => undefined);
    c.upstream = null;
    c.state = 'stopped';
  }

  /** Polls for the VMS's traffic for `confirmMs` after the restore. */
  async #confirmResumed(vmsAddress: string, sinceMs: number): Promise<boolean | null> {
    const seen = this.#d.vmsTrafficSince;
    if (!seen) return null;
    const until = Date.now() + this.#d.settings().confirmMs;
    while (Date.now() < until) {
      if (seen(vmsAddress, sinceMs)) return true;
      await new Promise((r) => setTimeout(r, 250));
    }
    return seen(vmsAddress, sinceMs);
  }

  /** The replay and export URLs covering the failover period, per camera, and the VMS plugin's backfill. */
  async #gap(rec: FailoverRecord): Promise<GapOffer[]> {
    const end = rec.end;
    if (end === null) return [];
    const streams = await this.#d.catalog.listStreams();
    const base = this.#d.rtspBase();
    const http = this.#d.httpBase();
    const backfill = this.#d.settings().backfill ? (this.#d.backfill?.(rec.vms) ?? null) : null;
    const out: GapOffer[] = [];
    for (const o of rec.redirect) {
      const mine = streams.filter((s) => s.camera === o.camera && s.direction !== 'client->server' && overlaps(s, rec.start, end) && (rec.target === null || hostOf(s.dst) === rec.target.host));
      const best = mine.sort((a, b) => b.packets - a.packets)[0];
      const q = `start=${encodeURIComponent(rec.start)}&end=${encodeURIComponent(end)}`;
      const replayUrl = best ? `${base}/replay/${best.id}?${q}` : `${base}/replay/${encodeURIComponent(o.camera)}?${q}`;
      const exportUrl = best && http ? `${http}/api/streams/${best.id}/mp4?${q}` : null;
      const g: GapOffer = { camera: o.camera, start: rec.start, end, replayUrl, exportUrl, packets: mine.reduce((n, s) => n + s.packets, 0) };
      if (backfill && exportUrl) g.backfill = await backfill({ vms: rec.vms, camera: o.camera, start: rec.start, end, replayUrl, exportUrl }).catch((e: unknown) => ({ ok: false, detail: errText(e) }));
      out.push(g);
    }
    return out;
  }

  #profileCamera(k: CameraRecord): ProfileCamera {
    const cfg = this.#d.cameraConfig(k);
    return { name: k.name, address: k.address, ...(k.urls[0] ? { url: k.urls[0] } : {}), ...cfg };
  }

  async #loadSaved(camera: string): Promise<SavedCameraState | null> {
    return (await this.#d.catalog.getMeta<SavedCameraState>(`failover:saved:${camera}`)) ?? null;
  }

  async #save(rec: FailoverRecord): Promise<void> {
    const h = await this.history();
    const i = h.findIndex((x) => x.id === rec.id);
    if (i >= 0) h[i] = rec;
    else h.push(rec);
    await this.#d.catalog.setMeta(HISTORY_KEY, h.slice(-HISTORY_MAX));
  }

  async #audit(entry: Record<string, unknown>): Promise<void> {
    const line = JSON.stringify({ at: new Date().toISOString(), ...entry });
    this.#log.info({ audit: entry }, 'failover audit');
    try {
      await mkdir(this.#d.dataDir, { recursive: true });
      await appendFile(path.join(this.#d.dataDir, 'failover-audit.jsonl'), `${line}\n`);
    } catch (e) {
      this.#log.error({ err: errText(e) }, 'failover audit: cannot write the audit file');
    }
  }

  async #auditOutcome(vms: string, action: string, o: CameraOutcome): Promise<void> {
    await this.#audit({ action, vms, camera: o.camera, strategy: o.strategy, ok: o.ok, ...(o.reason ? { reason: o.reason } : {}), steps: o.steps.map((s) => ({ request: s.request, status: s.status, ok: s.ok, answer: s.answer })) });
  }

  #event(e: Omit<FailoverEvent, 'at'>): void {
    try {
      this.#d.onEvent?.({ ...e, at: new Date().toISOString() });
    } catch (err) {
      this.#log.error({ err: errText(err) }, 'failover event listener failed');
    }
  }

  #own(): string[] {
    if (this.#d.ownAddresses) return this.#d.ownAddresses();
    return Object.values(networkInterfaces())
      .flat()
      .filter((a): a is NonNullable<typeof a> => a !== undefined)
      .map((a) => a.address.replace(/%.*$/, ''));
  }

  /** The local address the kernel would use toward the first reachable camera (no packet is sent: a UDP connect only picks the route). */
  async #hostToward(cameras: CameraRecord[], own: string[]): Promise<string> {
    for (const k of cameras) {
      const a = await localAddressToward(k.address).catch(() => null);
      if (a && own.includes(a)) return a;
    }
    const first = own.find((a) => !a.startsWith('127.') && a !== '::1');
    if (first) return first;
    throw new CamtapError('CAMTAP_ERR_FAILOVER', { vms: cameras[0]?.vms[0] ?? '?', reason: 'no address of this host reaches the cameras: set failover.host' });
  }

  #serial<T>(vms: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#locks.get(vms) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    this.#locks.set(
      vms,
      next.catch(() => undefined),
    );
    return next;
  }
}

/** The source address the kernel picks toward `ip` (a connected UDP socket; nothing is sent). */
export function localAddressToward(ip: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = createSocket(ip.includes(':') ? 'udp6' : 'udp4');
    s.once('error', (e) => {
      s.close();
      reject(e);
    });
    s.connect(9, ip, () => {
      const a = s.address().address;
      s.close();
      resolve(a);
    });
  });
}

function findVms(list: VmsRecord[], name: string, soft: true): VmsRecord | undefined;
function findVms(list: VmsRecord[], name: string, soft?: false): VmsRecord;
function findVms(list: VmsRecord[], name: string, soft = false): VmsRecord | undefined {
  const v = list.find((x) => x.name === name) ?? list.find((x) => x.address === name);
  if (!v && !soft) throw new CamtapError('CAMTAP_ERR_NOT_FOUND', { what: 'VMS', id: `${name} (known: ${list.map((x) => x.name).join(', ') || 'none'})` });
  return v;
}

function groups(steps: CameraPlan['steps']): Map<string, RtspStep[]> {
  const m = new Map<string, RtspStep[]>();
  for (const s of steps) {
    if (s.kind !== 'rtsp') continue;
    const g = s.group ?? '';
    let a = m.get(g);
    if (!a) m.set(g, (a = []));
    a.push(s);
  }
  return m;
}

function stepLine(s: CameraPlan['steps'][number]): string {
  if (s.kind === 'api') return s.call;
  return `${s.method} ${s.url}`;
}

function failed(cp: CameraPlan, reason: string): CameraOutcome {
  return { camera: cp.camera, strategy: cp.strategy, ok: false, reason, steps: [] };
}

function summary(os: CameraOutcome[]): string {
  const ok = os.filter((o) => o.ok).length;
  const bad = os.filter((o) => !o.ok).map((o) => `${o.camera}: ${o.reason ?? 'failed'}`);
  return `${ok}/${os.length} cameras${bad.length ? `; ${bad.join('; ')}` : ''}`;
}

function packetsOf(c: RunningCamera): number {
  let n = 0;
  for (const s of c.sessions.values()) n += s?.stats().packets ?? 0;
  for (const r of c.receivers) n += r.stats().packets;
  return n;
}

function overlaps(s: StreamRecord, start: string, end: string): boolean {
  return s.start <= end && s.end >= start;
}

function hostOf(endpoint: string): string {
  const m = /^\[(.*)\]:\d+$/.exec(endpoint) ?? /^(.*):\d+$/.exec(endpoint);
  return m ? m[1]! : endpoint;
}

function errText(e: unknown): string {
  return isCamtapError(e) ? e.message : e instanceof Error ? e.message : String(e);
}
