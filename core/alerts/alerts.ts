/**
 * Alerts: rules evaluated every `alerts.intervalMs` over what the services report, plus
 * events pushed in by the failover manager. An alert is keyed by (kind, subject): it
 * fires once when its condition starts, stays active (it may be acknowledged by an
 * operator meanwhile) and is resolved when the condition ends. Every change goes to the
 * log, to the webhooks (./webhook.ts) and to subscribers (the console's event stream).
 *
 * Rules (thresholds in config `alerts`, docs/OPERATIONS.md):
 * - storage-low    the data dir's file system has less than `storageFreeMinPercent` free
 * - tap-down       a tap failed, a live tap stopped by itself, or a capturing tap's packet
 *                  count did not grow for `tapSilentMs`
 * - camera-silent  none of a camera's streams received a packet for `cameraSilentMs`
 * - stream-loss    a stream lost more than `lossPercent` of what it should have received
 *                  during one interval (intervals with fewer than `lossMinPackets` expected
 *                  decide nothing)
 * - vms-failed / vms-restored   `event()` from the failover manager
 *
 * Silence is measured on the wall clock between evaluations (a counter that stopped
 * growing), not from packet timestamps, so a drop-folder tap replaying old files does not
 * look silent and a clock step on the capture host does not fire anything.
 */
import { randomUUID } from 'node:crypto';
import { statfs } from 'node:fs/promises';
import type { Config } from '../config.js';
import type { Logger } from '../contracts/logger.js';
import { CamtapError } from '../errors.js';
import { streamExpected, streamLost, type StreamView, type TapInfo } from '../metrics/metrics.js';
import { WebhookSender, type WebhookStats } from './webhook.js';

export type AlertKind = 'storage-low' | 'tap-down' | 'camera-silent' | 'stream-loss' | 'vms-failed' | 'vms-restored';
export type AlertSeverity = 'critical' | 'warning' | 'info';

export interface Alert {
  id: string;
  kind: AlertKind;
  severity: AlertSeverity;
  /** What it is about: a tap name, a camera, a stream id, a VMS, the data dir. */
  subject: string;
  message: string;
  /** ISO 8601. */
  firedAt: string;
  resolvedAt?: string;
  ackedAt?: string;
  ackedBy?: string;
  /** Numbers behind the message (free percent, loss, silent ms, ...). */
  details?: Record<string, unknown>;
}

export type AlertEventType = 'fired' | 'resolved' | 'acked';

export interface AlertEvent {
  type: AlertEventType;
  alert: Alert;
}

/** The body POSTed to a webhook. */
export interface WebhookPayload {
  version: 1;
  event: `alert.${AlertEventType}`;
  alert: Alert;
  /** When camtap queued it (ISO 8601). Retries send the same body. */
  sentAt: string;
}

export type AlertSettings = Config['alerts'];

export interface AlertManagerDeps {
  settings: AlertSettings;
  log: Logger;
  taps?: () => readonly TapInfo[];
  /** The streams in memory (CapturePipeline.activeStreams()). */
  streams?: () => readonly StreamView[];
  /** The data dir whose file system is watched; null: no storage rule. */
  dataDir?: string | null;
  /** Free and total bytes of a folder's file system (default: statfs). */
  diskSpace?: (dir: string) => Promise<{ free: number; size: number }>;
  /** Wall clock, ms (tests inject one). */
  now?: () => number;
  /** Where events go besides subscribers (default: built from `settings.webhooks`). */
  webhooks?: WebhookSender | null;
}

const SEVERITY: Record<AlertKind, AlertSeverity> = {
  'storage-low': 'critical',
  'tap-down': 'critical',
  'camera-silent': 'warning',
  'stream-loss': 'warning',
  'vms-failed': 'critical',
  'vms-restored': 'info',
};

/** A tap whose packet count is expected to keep growing (an inline tap is idle while nobody watches; a file tap reads in bursts). */
function capturesContinuously(t: TapInfo): boolean {
  return t.live && t.driver !== 'inline' && t.driver !== 'pcap-file';
}

async function statfsSpace(dir: string): Promise<{ free: number; size: number }> {
  const s = await statfs(dir);
  return { free: s.bavail * s.bsize, size: s.blocks * s.bsize };
}

interface Observed {
  value: number;
  changedAt: number;
}

export class AlertManager {
  readonly #d: AlertManagerDeps;
  readonly #s: AlertSettings;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #webhooks: WebhookSender | null;
  /** Active alerts by `kind|subject`. */
  readonly #active = new Map<string, Alert>();
  /** Resolved alerts, newest last, at most `settings.recent`. */
  readonly #recent: Alert[] = [];
  readonly #subs = new Set<(e: AlertEvent) => void>();
  readonly #taps = new Map<string, Observed>();
  readonly #streams = new Map<string, Observed & { camera: string; expected: number; lost: number }>();
  readonly #cameras = new Map<string, number>();
  #timer: NodeJS.Timeout | null = null;
  #evaluating: Promise<void> | null = null;
  #closed = false;

  constructor(deps: AlertManagerDeps) {
    this.#d = deps;
    this.#s = deps.settings;
    this.#log = deps.log.child({ component: 'alerts' });
    this.#now = deps.now ?? Date.now;
    this.#webhooks =
      deps.webhooks !== undefined
        ? deps.webhooks
        : deps.settings.webhooks.length
          ? new WebhookSender(deps.settings.webhooks, { log: this.#log, queue: deps.settings.webhookQueue, attempts: deps.settings.webhookAttempts, timeoutMs: deps.settings.webhookTimeoutMs })
          : null;
  }

  /** Evaluates the rules every `settings.intervalMs` until close(). */
  start(): void {
    if (this.#timer || this.#closed) return;
    this.#timer = setInterval(() => void this.evaluate(), this.#s.intervalMs);
    this.#timer.unref();
  }

  /** One round of every rule (the timer's; tests call it with their clock). Rounds never overlap. */
  evaluate(): Promise<void> {
    this.#evaluating ??= this.#round()
      .catch((e: Error) => this.#log.error({ err: e.message }, 'alert evaluation failed'))
      .finally(() => (this.#evaluating = null));
    return this.#evaluating;
  }

  async #round(): Promise<void> {
    const now = this.#now();
    this.#tapRules(now);
    this.#streamRules(now);
    await this.#storageRule();
  }

  #tapRules(now: number): void {
    const seen = new Set<string>();
    for (const t of this.#d.taps?.() ?? []) {
      seen.add(t.name);
      let o = this.#taps.get(t.name);
      if (!o || t.packets !== o.value || t.state !== 'running') {
        // The silence clock runs only while the tap runs and its count stands still.
        o = { value: t.packets, changedAt: now };
        this.#taps.set(t.name, o);
      }
      let why: string | null = null;
      if (t.state === 'failed') why = `failed${t.error ? `: ${t.error}` : ''}`;
      else if (t.state === 'stopped' && t.live) why = 'stopped';
      else if (t.state === 'running' && capturesContinuously(t) && now - o.changedAt >= this.#s.tapSilentMs) why = `no packets for ${Math.round((now - o.changedAt) / 1000)} s`;
      const subject = t.name;
      if (why) this.#fire('tap-down', subject, `tap ${t.name} (${t.driver}) is down: ${why}`, { tap: t.name, driver: t.driver, state: t.state, packets: t.packets, ...(t.error ? { error: t.error } : {}) });
      else if (t.state === 'running') this.#resolve('tap-down', subject, `tap ${t.name} is running again`);
    }
    for (const name of this.#taps.keys()) {
      if (seen.has(name)) continue;
      this.#taps.delete(name);
      this.#resolve('tap-down', name, `tap ${name} was removed`);
    }
  }

  #streamRules(now: number): void {
    const seen = new Set<string>();
    for (const s of this.#d.streams?.() ?? []) {
      if (s.direction === 'client->server') continue;
      seen.add(s.id);
      const count = s.unique + s.duplicates;
      const expected = streamExpected(s);
      const lost = streamLost(s);
      const o = this.#streams.get(s.id);
      if (!o) {
        this.#streams.set(s.id, { value: count, changedAt: now, camera: s.camera, expected, lost });
        this.#cameras.set(s.camera, Math.max(this.#cameras.get(s.camera) ?? now, now));
        continue;
      }
      if (count !== o.value) {
        o.value = count;
        o.changedAt = now;
        this.#cameras.set(s.camera, now);
      }
      // Loss over the interval since the last round.
      const dExpected = expected - o.expected;
      if (dExpected >= this.#s.lossMinPackets) {
        const dLost = Math.max(0, lost - o.lost);
        const pct = (dLost / dExpected) * 100;
        const details = { stream: s.id, camera: s.camera, lost: dLost, expected: dExpected, lossPercent: Math.round(pct * 100) / 100 };
        if (pct > this.#s.lossPercent) this.#fire('stream-loss', s.id, `stream ${s.id} of camera ${s.camera} lost ${details.lossPercent}% of its packets (${dLost} of ${dExpected})`, details);
        else this.#resolve('stream-loss', s.id, `stream ${s.id} of camera ${s.camera}: loss back to ${details.lossPercent}%`);
        o.expected = expected;
        o.lost = lost;
      } else if (dExpected < 0) {
        // The stream restarted its numbering (continued from a record): start over.
        o.expected = expected;
        o.lost = lost;
      }
    }
    for (const id of this.#streams.keys()) {
      if (seen.has(id)) continue;
      // Let go by the pipeline (idle and persisted): its camera's silence is still watched.
      this.#streams.delete(id);
      this.#resolve('stream-loss', id, `stream ${id} ended`);
    }
    for (const [camera, last] of this.#cameras) {
      const silent = now - last;
      if (silent >= this.#s.cameraSilentMs) this.#fire('camera-silent', camera, `camera ${camera} stopped sending: no RTP packet for ${Math.round(silent / 1000)} s`, { camera, silentMs: silent });
      else this.#resolve('camera-silent', camera, `camera ${camera} is sending again`);
    }
  }

  async #storageRule(): Promise<void> {
    const dir = this.#d.dataDir;
    if (!dir) return;
    let space: { free: number; size: number };
    try {
      space = await (this.#d.diskSpace ?? statfsSpace)(dir);
    } catch (e) {
      this.#log.warn({ dir, err: (e as Error).message }, 'cannot read free space of the data dir');
      return;
    }
    if (space.size <= 0) return;
    const pct = (space.free / space.size) * 100;
    const details = { dataDir: dir, freeBytes: space.free, sizeBytes: space.size, freePercent: Math.round(pct * 100) / 100, minPercent: this.#s.storageFreeMinPercent };
    if (pct < this.#s.storageFreeMinPercent) this.#fire('storage-low', dir, `storage near full: ${details.freePercent}% free on the data dir's file system (${dir}), under ${this.#s.storageFreeMinPercent}%`, details);
    else this.#resolve('storage-low', dir, `storage: ${details.freePercent}% free again`);
  }

  /**
   * What the failover manager reports: `vms-failed` fires (once per VMS until restored),
   * `vms-restored` resolves it and sends an informational alert of its own.
   */
  event(kind: 'vms-failed' | 'vms-restored', detail: { vms: string; reason?: string } & Record<string, unknown>): Alert | null {
    if (this.#closed) return null;
    const { vms, reason } = detail;
    if (kind === 'vms-failed') return this.#fire('vms-failed', vms, `VMS ${vms} failed${reason ? `: ${reason}` : ''}`, detail);
    const was = this.#active.get(`vms-failed|${vms}`);
    this.#resolve('vms-failed', vms, `VMS ${vms} restored`);
    const at = new Date(this.#now()).toISOString();
    const a: Alert = { id: randomUUID(), kind: 'vms-restored', severity: SEVERITY['vms-restored'], subject: vms, message: `VMS ${vms} restored${reason ? `: ${reason}` : ''}${was ? ` (failed since ${was.firedAt})` : ''}`, firedAt: at, resolvedAt: at, details: detail };
    this.#keepRecent(a);
    this.#emit('fired', a);
    return a;
  }

  #fire(kind: AlertKind, subject: string, message: string, details: Record<string, unknown>): Alert {
    const key = `${kind}|${subject}`;
    const cur = this.#active.get(key);
    if (cur) {
      // Still on: the message and numbers follow the condition, nobody is told again.
      cur.message = message;
      cur.details = details;
      return cur;
    }
    const a: Alert = { id: randomUUID(), kind, severity: SEVERITY[kind], subject, message, firedAt: new Date(this.#now()).toISOString(), details };
    this.#active.set(key, a);
    this.#emit('fired', a);
    return a;
  }

  #resolve(kind: AlertKind, subject: string, message: string): void {
    const key = `${kind}|${subject}`;
    const a = this.#active.get(key);
    if (!a) return;
    this.#active.delete(key);
    a.resolvedAt = new Date(this.#now()).toISOString();
    a.details = { ...a.details, resolution: message };
    this.#keepRecent(a);
    this.#emit('resolved', a);
  }

  #keepRecent(a: Alert): void {
    this.#recent.push(a);
    if (this.#recent.length > this.#s.recent) this.#recent.splice(0, this.#recent.length - this.#s.recent);
  }

  #emit(type: AlertEventType, a: Alert): void {
    const snapshot: Alert = { ...a, ...(a.details ? { details: { ...a.details } } : {}) };
    const line = { alert: a.kind, id: a.id, subject: a.subject, severity: a.severity };
    if (type === 'fired') {
      if (a.severity === 'critical') this.#log.error(line, a.message);
      else if (a.severity === 'warning') this.#log.warn(line, a.message);
      else this.#log.info(line, a.message);
    } else this.#log.info({ ...line, event: type }, type === 'resolved' ? `resolved: ${String(a.details?.resolution ?? a.message)}` : `acknowledged: ${a.message}`);
    this.#webhooks?.send(`alert.${type}`, { version: 1, event: `alert.${type}`, alert: snapshot, sentAt: new Date(this.#now()).toISOString() } satisfies WebhookPayload);
    for (const fn of this.#subs) {
      try {
        fn({ type, alert: snapshot });
      } catch (e) {
        this.#log.warn({ err: (e as Error).message }, 'alert subscriber failed');
      }
    }
  }

  /** Alerts firing now, oldest first. */
  active(): Alert[] {
    return [...this.#active.values()];
  }

  /** Resolved alerts, newest first (at most `settings.recent`). */
  recent(limit = this.#s.recent): Alert[] {
    return this.#recent.slice(-limit).reverse();
  }

  get(id: string): Alert | undefined {
    for (const a of this.#active.values()) if (a.id === id) return a;
    return this.#recent.find((a) => a.id === id);
  }

  /** An operator saw it: marked, still active until its condition ends. CAMTAP_ERR_NOT_FOUND for an unknown id. */
  ack(id: string, by?: string): Alert {
    const a = this.get(id);
    if (!a) throw new CamtapError('CAMTAP_ERR_NOT_FOUND', { what: 'alert', id });
    if (!a.ackedAt) {
      a.ackedAt = new Date(this.#now()).toISOString();
      if (by) a.ackedBy = by;
      this.#emit('acked', a);
    }
    return a;
  }

  /** Every change from now on; returns the function that stops it. */
  subscribe(fn: (e: AlertEvent) => void): () => void {
    this.#subs.add(fn);
    return () => void this.#subs.delete(fn);
  }

  webhookStats(): WebhookStats[] {
    return this.#webhooks?.stats() ?? [];
  }

  /** Resolves when the webhooks have nothing left to send (tests, orderly shutdown). */
  async drain(): Promise<void> {
    await this.#webhooks?.idle();
  }

  /** Stops the rules and the webhooks (undelivered events are dropped). Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    await this.#evaluating;
    this.#webhooks?.close();
    this.#subs.clear();
  }
}
