/**
 * Prometheus metrics (prom-client, text exposition format 0.0.4) on a Registry of camtap's
 * own, never the global one, so two instances in one process (tests) do not mix.
 *
 * Every value is read from the running services when Prometheus scrapes: the packet path
 * does no work for metrics (ARCHITECTURE.md "Hot-path rules"). The only state kept here
 * is per-stream bytes at the last bitrate window (a timer, O(streams) per window) and the
 * highest loss count reported per stream (so a counter never steps back).
 *
 * The names, labels and meaning of every metric are listed in docs/OPERATIONS.md.
 */
import { statfs } from 'node:fs/promises';
import { Counter, Gauge, Registry } from 'prom-client';
import type { PipelineCounters } from '../capture/pipeline.js';
import type { TapRunner } from '../capture/tap-runner.js';
import type { TapStatus } from '../contracts/plugin.js';
import type { LiveFeed } from '../live/channel.js';
import type { LiveSource } from '../live/live-source.js';

/** A tap as the metrics and alerts see it (TapRunner.status() plus whether it is live). */
export interface TapInfo {
  name: string;
  driver: string;
  state: TapStatus['state'];
  packets: number;
  bytes: number;
  drops: number | null;
  /**
   * Expected to run until stopped (libpcap, tcpdump, inline, a drop-folder file tap):
   * its stopping is an outage. A file tap reading a fixed list of files is not live.
   */
  live: boolean;
  error?: string;
}

/** What is read of a stream's state (core/capture/rtp-stream.ts RtpStreamState). */
export interface StreamView {
  readonly id: string;
  readonly camera: string;
  readonly direction: string;
  readonly unique: number;
  readonly duplicates: number;
  readonly maxExt: number;
  readonly minExt: number;
  readonly payloadBytes: number;
  /** RFC 3550 §6.4.1 interarrival jitter in RTP timestamp units. */
  readonly jitter: number;
  readonly clockRate: number | null;
}

/** Lost packets of a stream as RFC 3550 §6.4.1 counts them: expected (extended seq span) minus received. */
export function streamLost(s: Pick<StreamView, 'maxExt' | 'minExt' | 'unique'>): number {
  return s.maxExt < 0 ? 0 : Math.max(0, s.maxExt - s.minExt + 1 - s.unique);
}

/** Packets a stream should have received so far (extended seq span). */
export function streamExpected(s: Pick<StreamView, 'maxExt' | 'minExt'>): number {
  return s.maxExt < 0 ? 0 : s.maxExt - s.minExt + 1;
}

/** A tap driver keeps running until stopped (as opposed to a file tap reading a fixed list). */
export function isLiveTap(cfg: { driver: string; options?: Record<string, unknown> }): boolean {
  return cfg.driver !== 'pcap-file' || Boolean(cfg.options?.watch);
}

/** The taps of a runner as the metrics and alerts read them (empty without a runner). */
export function tapInfos(runner: Pick<TapRunner, 'list'> | null): TapInfo[] {
  if (!runner) return [];
  return runner.list().map((t) => {
    const st = t.status;
    return { name: t.name, driver: t.driver, state: st.state, packets: st.packets, bytes: st.bytes, drops: st.drops, live: isLiveTap(t), ...(st.error !== undefined ? { error: st.error } : {}) };
  });
}

/** The failover states of core/failover (ARCHITECTURE.md "Data flow" 6), exposed as an enum. */
export const FAILOVER_STATES = ['healthy', 'suspect', 'failing-over', 'failed-over', 'restoring'] as const;

export interface MetricsDeps {
  /** The taps running now (TapRunner.status() with `live`). */
  taps?: () => readonly TapInfo[];
  /** The streams in memory now (CapturePipeline.activeStreams()). */
  streams?: () => readonly StreamView[];
  /** Pipeline-wide counters (CapturePipeline.counters). */
  pipeline?: () => Readonly<PipelineCounters>;
  /** RTSP replay sessions open now. */
  replaySessions?: () => number;
  /** Live sessions (clients watching a live feed) now. */
  liveSessions?: () => number;
  /** Failover state per VMS (the failover manager's health state machine). */
  failover?: () => ReadonlyArray<{ vms: string; state: string }>;
  /** Folder whose file system is measured (the data dir). */
  dataDir?: string | null;
  /** Bytes of camtap's own segments (SegmentStore.totalBytes()). */
  segmentBytes?: () => number;
  /** Capture time of the newest packet stored, ns since the epoch (SegmentStore.current()?.lastTsNs). */
  newestPacketNs?: () => bigint | null;
  /** Active alerts by severity (AlertManager). */
  alerts?: () => ReadonlyArray<{ severity: string }>;
  /** Wall clock in ms (tests inject one). */
  now?: () => number;
  /** Window of `camtap_stream_bitrate_bits` (default 5000 ms); 0: no timer, call sample() yourself. */
  bitrateWindowMs?: number;
}

export interface Metrics {
  readonly registry: Registry;
  /** `text/plain; version=0.0.4; charset=utf-8`. */
  readonly contentType: string;
  /** The exposition text of every metric, read now. */
  text(): Promise<string>;
  /** Closes a bitrate window now (the timer calls it every `bitrateWindowMs`). */
  sample(): void;
  /** Stops the bitrate timer. Safe to call twice. */
  close(): void;
}

/**
 * A gauge without labels whose series is left out while it has no value: prom-client
 * prints an unset label-less gauge as 0, and a free-space or lag of 0 that means
 * "unknown" would set off alert rules.
 */
class OptionalGauge extends Gauge {
  readonly #read: () => number | null | Promise<number | null>;

  constructor(name: string, help: string, registers: Registry[], read: () => number | null | Promise<number | null>) {
    super({ name, help, registers });
    this.#read = read;
  }

  override async get(): ReturnType<Gauge['get']> {
    const v = await this.#read();
    if (v !== null) this.set(v);
    const r = await super.get();
    return v === null ? { ...r, values: [] } : r;
  }
}

interface ByteMark {
  bytes: number;
  at: number;
  bitrate: number | null;
}

/** Builds the registry and its collectors; everything is read through `deps` at scrape time. */
export function createMetrics(deps: MetricsDeps): Metrics {
  const registry = new Registry();
  const registers = [registry];
  const now = deps.now ?? Date.now;
  const taps = () => deps.taps?.() ?? [];
  const streams = () => (deps.streams?.() ?? []).filter((s) => s.direction !== 'client->server');

  // --- taps
  const tapCounter = (name: string, help: string, pick: (t: TapInfo) => number | null) =>
    new Counter({
      name,
      help,
      labelNames: ['tap'],
      registers,
      collect() {
        this.reset();
        for (const t of taps()) {
          const v = pick(t);
          if (v !== null) this.inc({ tap: t.name }, v);
        }
      },
    });
  tapCounter('camtap_tap_packets_total', 'Packets the tap delivered (before any filtering of file taps).', (t) => t.packets);
  tapCounter('camtap_tap_bytes_total', 'Captured bytes the tap delivered.', (t) => t.bytes);
  tapCounter('camtap_tap_drops_total', 'Packets the kernel or the capture tool dropped, where the driver reports it.', (t) => t.drops);
  new Gauge({
    name: 'camtap_tap_up',
    help: '1 while the tap is running, 0 otherwise (idle, opening, stopped, failed).',
    labelNames: ['tap', 'driver'],
    registers,
    collect() {
      this.reset();
      for (const t of taps()) this.set({ tap: t.name, driver: t.driver }, t.state === 'running' ? 1 : 0);
    },
  });

  // --- streams
  const perStream = { labelNames: ['stream', 'camera'] as const, registers };
  const streamCounter = (name: string, help: string, value: (s: StreamView) => number) =>
    new Counter({
      name,
      help,
      ...perStream,
      collect() {
        this.reset();
        for (const s of streams()) this.inc({ stream: s.id, camera: s.camera }, value(s));
      },
    });
  const streamGauge = (name: string, help: string, value: (s: StreamView) => number | null) =>
    new Gauge({
      name,
      help,
      ...perStream,
      collect() {
        this.reset();
        for (const s of streams()) {
          const v = value(s);
          if (v !== null) this.set({ stream: s.id, camera: s.camera }, v);
        }
      },
    });
  const lostHigh = new Map<string, number>();
  const marks = new Map<string, ByteMark>();
  streamCounter('camtap_stream_packets_total', 'RTP packets of the stream received, duplicates not counted.', (s) => s.unique);
  streamCounter('camtap_stream_duplicates_total', 'RTP packets of the stream received more than once (same extended sequence number).', (s) => s.duplicates);
  streamCounter('camtap_stream_lost_total', 'RTP packets lost: expected (extended sequence span) minus received, RFC 3550 §6.4.1; never lowered by a late packet.', (s) => {
    // A reordered packet arriving late lowers RFC 3550's count; a Prometheus counter must
    // not step back (it would read as a reset), so the highest value reported stays.
    const v = Math.max(streamLost(s), lostHigh.get(s.id) ?? 0);
    lostHigh.set(s.id, v);
    return v;
  });
  streamGauge('camtap_stream_jitter_seconds', 'RFC 3550 §6.4.1 interarrival jitter of the stream, in seconds (absent while its clock rate is unknown).', (s) => (s.clockRate ? s.jitter / s.clockRate : null));
  streamGauge('camtap_stream_bitrate_bits', 'RTP payload bits per second of the stream over the last bitrate window (metrics.bitrateWindowMs).', (s) => marks.get(s.id)?.bitrate ?? null);

  // --- pipeline
  const pipelineCounter = (name: string, help: string, keys: Array<keyof PipelineCounters>) =>
    new Counter({
      name,
      help,
      labelNames: keys.length > 1 ? ['kind'] : [],
      registers,
      collect() {
        this.reset();
        const c = deps.pipeline?.();
        if (!c) return;
        if (keys.length === 1) this.inc(c[keys[0]!]);
        else for (const k of keys) this.inc({ kind: k }, c[k]);
      },
    });
  pipelineCounter('camtap_pipeline_packets_total', 'Packets the capture pipeline processed (all taps and imports of this process).', ['packets']);
  pipelineCounter('camtap_pipeline_errors_total', 'Malformed or incomplete input the pipeline counted and skipped, by kind.', ['truncated', 'badHeader', 'unsupportedLink', 'rtpMalformed', 'rtcpMalformed', 'messageErrors', 'tcpGaps']);

  // --- sessions, failover, alerts
  new OptionalGauge('camtap_replay_sessions', 'RTSP replay sessions open now (set up and not torn down or timed out).', registers, () => deps.replaySessions?.() ?? null);
  new OptionalGauge('camtap_live_sessions', 'Clients watching a live feed now.', registers, () => deps.liveSessions?.() ?? null);
  new Gauge({
    name: 'camtap_failover_state',
    help: 'Failover state per VMS: 1 for its current state, 0 for the others.',
    labelNames: ['vms', 'state'],
    registers,
    collect() {
      this.reset();
      for (const f of deps.failover?.() ?? []) {
        for (const st of FAILOVER_STATES) this.set({ vms: f.vms, state: st }, st === f.state ? 1 : 0);
        if (!(FAILOVER_STATES as readonly string[]).includes(f.state)) this.set({ vms: f.vms, state: f.state }, 1);
      }
    },
  });
  new Gauge({
    name: 'camtap_alerts_active',
    help: 'Alerts firing now, by severity.',
    labelNames: ['severity'],
    registers,
    collect() {
      this.reset();
      if (!deps.alerts) return;
      const by = new Map<string, number>([['critical', 0], ['warning', 0], ['info', 0]]);
      for (const a of deps.alerts()) by.set(a.severity, (by.get(a.severity) ?? 0) + 1);
      for (const [severity, n] of by) this.set({ severity }, n);
    },
  });

  // --- storage
  let fsStats: Promise<{ size: number; used: number; free: number } | null> | null = null;
  /** One statfs per scrape, shared by the three gauges that need it. */
  const fsOnce = () => {
    if (!deps.dataDir) return Promise.resolve(null);
    fsStats ??= statfs(deps.dataDir)
      .then((s) => ({ size: s.blocks * s.bsize, used: (s.blocks - s.bfree) * s.bsize, free: s.bavail * s.bsize }))
      .catch(() => null)
      .finally(() => setImmediate(() => (fsStats = null)));
    return fsStats;
  };
  const fsGauge = (name: string, help: string, pick: (s: { size: number; used: number; free: number }) => number) =>
    new OptionalGauge(name, help, registers, async () => {
      const s = await fsOnce();
      return s ? pick(s) : null;
    });
  fsGauge('camtap_storage_used_bytes', 'Bytes used on the file system of the data dir (statfs: blocks - free blocks).', (s) => s.used);
  fsGauge('camtap_storage_free_bytes', 'Bytes available to camtap on the file system of the data dir (statfs: available blocks).', (s) => s.free);
  fsGauge('camtap_storage_size_bytes', 'Size of the file system of the data dir.', (s) => s.size);
  new OptionalGauge('camtap_store_segment_bytes', "Bytes of camtap's own packet segments on disk.", registers, () => deps.segmentBytes?.() ?? null);
  new OptionalGauge('camtap_ingest_lag_seconds', 'Wall clock minus the capture time of the newest packet stored, while a live tap runs.', registers, () => {
    const ns = deps.newestPacketNs?.() ?? null;
    if (ns === null || !taps().some((t) => t.live && t.state === 'running')) return null;
    return Math.max(0, (now() - Number(ns / 1_000_000n)) / 1000);
  });

  const sample = () => {
    const t = now();
    const seen = new Set<string>();
    for (const s of streams()) {
      seen.add(s.id);
      const m = marks.get(s.id);
      if (!m) marks.set(s.id, { bytes: s.payloadBytes, at: t, bitrate: null });
      else if (t > m.at) {
        m.bitrate = ((s.payloadBytes - m.bytes) * 8) / ((t - m.at) / 1000);
        m.bytes = s.payloadBytes;
        m.at = t;
      }
    }
    // Streams the pipeline let go of (idle and persisted) leave the maps too.
    for (const id of marks.keys()) if (!seen.has(id)) marks.delete(id);
    for (const id of lostHigh.keys()) if (!seen.has(id)) lostHigh.delete(id);
  };
  const windowMs = deps.bitrateWindowMs ?? 5000;
  const timer = windowMs > 0 ? setInterval(sample, windowMs) : null;
  timer?.unref();
  sample();

  return {
    registry,
    contentType: registry.contentType,
    text: () => registry.metrics(),
    sample,
    close() {
      if (timer) clearInterval(timer);
    },
  };
}

/** A feed nobody watched for this long is forgotten (the live source drops it by then). */
const FEED_FORGET_MS = 5 * 60_000;

/**
 * Wraps a live source to count the clients watching its feeds (the RTSP server does not
 * tell live sessions from replays): the feeds it hands out are remembered while they
 * last, and their subscribers summed when asked. Nothing is added to the packet path.
 */
export function countLiveSessions(source: LiveSource, now: () => number = Date.now): { source: LiveSource; sessions(): number } {
  /** Feed -> since when it has had no subscriber (Infinity while watched). */
  const feeds = new Map<LiveFeed, number>();
  const wrapped: LiveSource = {
    async resolve(path, query, host) {
      const feed = await source.resolve(path, query, host);
      if (feed && !feed.ended && !feeds.has(feed)) feeds.set(feed, now());
      return feed;
    },
    close: () => source.close(),
  };
  return {
    source: wrapped,
    sessions() {
      let n = 0;
      const t = now();
      for (const [f, idleSince] of feeds) {
        if (f.ended) feeds.delete(f);
        else if (f.subscribers > 0) {
          n += f.subscribers;
          feeds.set(f, Infinity);
        } else if (idleSince === Infinity) feeds.set(f, t);
        else if (t - idleSince > FEED_FORGET_MS) feeds.delete(f);
      }
      return n;
    },
  };
}
