/**
 * Runs the configured taps: builds each through its driver, gives it the sink it needs
 * and reports their status. Several taps run at once; each frame keeps its tap id.
 *
 * - Live taps (libpcap, tcpdump) filter in the kernel; their frames go to the store and
 *   the pipeline (copy mode).
 * - File taps (pcap-file) have no kernel: their filter spec becomes a predicate on the
 *   decoded addresses, applied before anything is stored. With `inPlace`, each file is
 *   registered as an external segment and indexed where it lies.
 *
 * Taps can also be added, started, stopped and removed one by one while camtap serve
 * runs (the API's /api/taps, core/api/tap-routes.ts). A Tap instance opens once, so a
 * restart builds a new one from the driver; the counters add up over restarts.
 */
import type { Tap, TapConfig, TapStatus } from '../contracts/plugin.js';
import type { FilterSpec } from '../contracts/filter.js';
import type { FrameSink, TapFrame } from '../contracts/frame.js';
import type { Logger } from '../contracts/logger.js';
import type { Config } from '../config.js';
import type { PluginHost } from '../plugin-host.js';
import type { SegmentStore } from '../store/segment-store.js';
import type { CapturePipeline } from './pipeline.js';
import type { Ingest, InPlaceFile } from './ingest.js';
import { toPredicate, type FilterPredicate, type NameResolver } from './filter.js';
import { DecodeStatus, PacketDecoder, PacketMeta, srcAddr, dstAddr } from '../wire/packet.js';
import type { CaptureRecord } from '../wire/capture-file.js';
import { CamtapError } from '../errors.js';

export interface TapRunnerDeps {
  config: Config;
  log: Logger;
  plugins: PluginHost;
  store: SegmentStore;
  pipeline: CapturePipeline;
  ingest: Ingest;
  /** Inventory names in filter specs -> addresses. */
  resolve: NameResolver;
  /** Called once when the store halts (disk full): the owner stops the taps. */
  onHalt?: (e: CamtapError) => void;
  /** The stable id of a tap name (the catalog's `tapId`), for taps added while running. */
  tapId?: (name: string) => Promise<number>;
}

interface Running {
  cfg: TapConfig;
  tap: Tap;
  done: Promise<void>;
  error: Error | null;
}

/**
 * Inventory names -> addresses for filter specs: the config's cameras and VMSs first,
 * then what camtap learned (catalog inventory records).
 */
export function inventoryResolver(config: Pick<Config, 'cameras' | 'vms'>, learned: { cameras: Array<{ name: string; address: string }>; vms: Array<{ name: string; address: string }> } = { cameras: [], vms: [] }): NameResolver {
  return (name, kind) => {
    const from = (list: Array<{ name: string; address: string }>) => list.filter((x) => x.name === name).map((x) => x.address);
    const configured = from(kind === 'camera' ? config.cameras : config.vms);
    return configured.length ? configured : from(kind === 'camera' ? learned.cameras : learned.vms);
  };
}

/** A predicate over a frame's decoded IP header, for taps without a kernel filter. */
export function framePredicate(pred: FilterPredicate): (frame: TapFrame) => boolean {
  const decoder = new PacketDecoder();
  const m = new PacketMeta();
  const fm = { ipVersion: 0, srcAddr: '', dstAddr: '', protocol: 0, sport: 0, dport: 0 };
  return (frame) => {
    const st = decoder.decode(frame, m);
    if (st !== DecodeStatus.OK) return false;
    fm.ipVersion = m.ipVersion;
    fm.srcAddr = srcAddr(m);
    fm.dstAddr = dstAddr(m);
    fm.protocol = m.protocol;
    fm.sport = m.sport;
    fm.dport = m.dport;
    return pred(fm);
  };
}

/** A tap as the API shows it: its config, whether it runs, and its counters. */
export interface TapView {
  id: number;
  name: string;
  driver: string;
  /** The filter spec of the config (the driver's translation: `status.filter`, {@link TapRunner.explain}). */
  filter: FilterSpec;
  /** Driver options as configured (callbacks left out). */
  options: Record<string, unknown>;
  /** Whether the tap starts with camtap (false for one added stopped). */
  enabled: boolean;
  /** Counters add up over the tap's restarts within this process. */
  status: TapStatus;
}

interface Entry {
  cfg: TapConfig;
  enabled: boolean;
  /** The current (or last) instance; null before the first start. */
  run: Running | null;
  /** Counters of the instances before the current one. */
  before: { packets: number; bytes: number; drops: number | null };
}

export class TapRunner {
  readonly #d: TapRunnerDeps;
  /** Every tap, in the order added. */
  readonly #entries = new Map<string, Entry>();
  /** The runner's signal (from start()): aborting it stops every tap. */
  #signal: AbortSignal | null = null;
  readonly fileErrors: CamtapError[] = [];
  /** The store error that halted capture (disk full), if any. */
  halted: CamtapError | null = null;

  constructor(deps: TapRunnerDeps) {
    this.#d = deps;
  }

  /**
   * Copy mode with a full disk: the store halts (everything before is kept) and every tap
   * is stopped through `onHalt`; frames arriving meanwhile are dropped, not thrown at the
   * tap driver.
   */
  #storeSink(): FrameSink {
    const { ingest, store } = this.#d;
    return (f) => {
      if (this.halted) return;
      try {
        ingest.sink(f);
      } catch (e) {
        if (!(e instanceof CamtapError) || !store.halted) throw e;
        this.halted = e;
        this.#d.onHalt?.(e);
      }
    };
  }

  #sinkFor(cfg: TapConfig, options: Record<string, unknown>): FrameSink {
    const { ingest } = this.#d;
    const isFileTap = cfg.driver === 'pcap-file';
    const keep = isFileTap && Object.keys(cfg.filter).length > 0 ? framePredicate(toPredicate(cfg.filter, this.#d.resolve)) : null;
    if (!(isFileTap && options.inPlace === true)) {
      const sink = this.#storeSink();
      if (!keep) return sink;
      return (f) => {
        if (keep(f)) sink(f);
      };
    }
    // In place: locations are (the file's external segment, the record's offset).
    if (options.doneDir) throw new CamtapError('CAMTAP_ERR_CONFIG', { file: '(config)', key: `taps[${cfg.name}].options`, reason: 'inPlace and doneDir exclude each other: an in-place index needs the file to stay where it was read' });
    let current: InPlaceFile | null = null;
    options.onFile = (file: string, phase: 'start' | 'end', result?: { format: 'pcap' | 'pcapng' | null; endOffset: number; errors: CamtapError[] }) => {
      if (phase === 'start') {
        current = ingest.inPlaceFile(file);
        return;
      }
      if (result?.errors.length) this.fileErrors.push(...result.errors);
      if (current && result?.format) current.done(result.format, result.endOffset);
      current = null;
    };
    return (f) => {
      if (keep && !keep(f)) return;
      current?.sink(f as CaptureRecord);
    };
  }

  /**
   * Builds a fresh instance of the entry's tap and opens it (a Tap opens once; a restart
   * is a new instance). Throws what the driver throws for a bad config (unknown driver,
   * bad options) before anything runs.
   */
  #open(e: Entry): void {
    const { plugins, log, config } = this.#d;
    const cfg = e.cfg;
    const driver = plugins.tapDriver(cfg.driver, cfg.name);
    const options: Record<string, unknown> = { ...cfg.options, resolve: this.#d.resolve, dataDir: config.dataDir };
    if (cfg.driver === 'pcap-file') {
      options.onFileError = (file: string, errors: CamtapError[]) => {
        for (const err of errors) log.error({ tap: cfg.name, file, code: err.code }, err.message);
      };
    }
    const sink = this.#sinkFor(cfg, options);
    const tap = driver.create({ ...cfg, options }, { log: log.child({ tap: cfg.name }), options, dataDir: config.dataDir });
    if (e.run) {
      const st = e.run.tap.status();
      e.before = { packets: e.before.packets + st.packets, bytes: e.before.bytes + st.bytes, drops: st.drops === null ? e.before.drops : (e.before.drops ?? 0) + st.drops };
    }
    const r: Running = { cfg, tap, done: Promise.resolve(), error: null };
    r.done = tap.open(sink, this.#signal ?? new AbortController().signal).catch((err: Error) => {
      r.error = err;
      log.error({ tap: cfg.name, err: err.message }, 'tap failed');
    });
    e.run = r;
  }

  /** Opens the taps; they run until stop() (live, watch) or until their files are read. */
  start(cfgs: TapConfig[], signal: AbortSignal): void {
    this.#signal = signal;
    for (const cfg of cfgs) {
      const e: Entry = { cfg, enabled: true, run: null, before: { packets: 0, bytes: 0, drops: null } };
      this.#entries.set(cfg.name, e);
      this.#open(e);
    }
  }

  /** Resolves when every tap has ended by itself (file taps done, or all failed). */
  async settled(): Promise<void> {
    await Promise.all([...this.#entries.values()].map((e) => e.run?.done));
  }

  async stop(): Promise<void> {
    for (const e of this.#entries.values()) await e.run?.tap.close();
    await this.settled();
  }

  /** The running tap of that name (the inline gateway takes the inline tap's recorder from it). */
  tap(name: string): Tap | undefined {
    return this.#entries.get(name)?.run?.tap;
  }

  failed(): Array<{ name: string; error: Error }> {
    return [...this.#entries.values()].filter((e) => e.run?.error).map((e) => ({ name: e.cfg.name, error: e.run!.error! }));
  }

  /** Every tap with its counters (added over restarts; a tap never started is `idle` with zeros). */
  status(): Array<{ id: number; name: string; driver: string } & TapStatus> {
    return [...this.#entries.values()].map((e) => ({ id: e.cfg.id, name: e.cfg.name, driver: e.cfg.driver, ...this.#statusOf(e) }));
  }

  #statusOf(e: Entry): TapStatus {
    if (!e.run) return { state: 'idle', packets: e.before.packets, bytes: e.before.bytes, drops: e.before.drops };
    const st = e.run.tap.status();
    const out: TapStatus = {
      ...st,
      packets: e.before.packets + st.packets,
      bytes: e.before.bytes + st.bytes,
      drops: st.drops === null ? e.before.drops : (e.before.drops ?? 0) + st.drops,
    };
    if (e.run.error && out.error === undefined) out.error = e.run.error.message;
    if (e.run.error && out.state !== 'failed') out.state = 'failed';
    return out;
  }

  #entry(name: string): Entry {
    const e = this.#entries.get(name);
    if (!e) throw new CamtapError('CAMTAP_ERR_NOT_FOUND', { what: 'tap', id: name });
    return e;
  }

  #view(e: Entry): TapView {
    const options: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(e.cfg.options)) if (typeof v !== 'function') options[k] = v;
    return { id: e.cfg.id, name: e.cfg.name, driver: e.cfg.driver, filter: e.cfg.filter, options, enabled: e.enabled, status: this.#statusOf(e) };
  }

  /** Every tap, in the order added. */
  list(): TapView[] {
    return [...this.#entries.values()].map((e) => this.#view(e));
  }

  /** One tap. @throws CamtapError CAMTAP_ERR_NOT_FOUND */
  get(name: string): TapView {
    return this.#view(this.#entry(name));
  }

  /**
   * Adds a tap (API `POST /api/taps`) and starts it unless `enabled` is false. Its id is
   * the catalog's for the name (`deps.tapId`), so a tap re-created under an old name keeps
   * its id. The tap lives as long as this process: the config file is not changed.
   * @throws CamtapError CAMTAP_ERR_CONFLICT for a name in use, CAMTAP_ERR_TAP_DRIVER for an
   * unknown driver, CAMTAP_ERR_TAP for options the driver refuses (the tap is not added).
   */
  async add(cfg: Omit<TapConfig, 'id'> & { enabled?: boolean }): Promise<TapView> {
    if (this.#entries.has(cfg.name)) throw new CamtapError('CAMTAP_ERR_CONFLICT', { what: `tap ${cfg.name}`, reason: 'a tap of that name exists (DELETE it first, or pick another name)' });
    this.#d.plugins.tapDriver(cfg.driver, cfg.name); // unknown driver: refused before an id is taken
    const id = this.#d.tapId ? await this.#d.tapId(cfg.name) : Math.max(0, ...[...this.#entries.values()].map((x) => x.cfg.id)) + 1;
    if (this.#entries.has(cfg.name)) throw new CamtapError('CAMTAP_ERR_CONFLICT', { what: `tap ${cfg.name}`, reason: 'a tap of that name exists (DELETE it first, or pick another name)' });
    const e: Entry = { cfg: { id, name: cfg.name, driver: cfg.driver, filter: cfg.filter, options: { ...cfg.options } }, enabled: cfg.enabled !== false, run: null, before: { packets: 0, bytes: 0, drops: null } };
    if (e.enabled) this.#open(e); // throws before the entry exists
    this.#entries.set(cfg.name, e);
    this.#d.log.info({ tap: cfg.name, driver: cfg.driver, started: e.enabled }, 'tap added');
    return this.#view(e);
  }

  /** Whether the tap's current instance is open (opening or running). */
  #active(e: Entry): boolean {
    const st = e.run?.tap.status().state;
    return e.run !== null && e.run.error === null && (st === 'opening' || st === 'running' || st === 'idle');
  }

  /** Starts a stopped, failed or never-started tap (a new instance); a running one is left as it is. */
  startTap(name: string): TapView {
    const e = this.#entry(name);
    if (this.#signal?.aborted) throw new CamtapError('CAMTAP_ERR_CONFLICT', { what: `tap ${name}`, reason: 'camtap is shutting down' });
    if (!this.#active(e)) {
      this.#open(e);
      this.#d.log.info({ tap: name }, 'tap started');
    }
    return this.#view(e);
  }

  /** Stops the tap (closes its instance and waits for it); a stopped one is left as it is. */
  async stopTap(name: string): Promise<TapView> {
    const e = this.#entry(name);
    if (e.run) {
      await e.run.tap.close();
      await e.run.done;
      this.#d.log.info({ tap: name }, 'tap stopped');
    }
    return this.#view(e);
  }

  /** Stops the tap and forgets it (its recorded packets stay in the store). */
  async remove(name: string): Promise<void> {
    await this.stopTap(name);
    this.#entries.delete(name);
    this.#d.log.info({ tap: name }, 'tap removed');
  }

  /** The tap's filter spec and the driver's native translation, as `camtap taps explain`. */
  explain(name: string): { tap: string; driver: string; filter: FilterSpec; native: string } {
    const e = this.#entry(name);
    const native = this.#d.plugins.tapDriver(e.cfg.driver, name).translate(e.cfg.filter, this.#d.resolve);
    return { tap: name, driver: e.cfg.driver, filter: e.cfg.filter, native };
  }
}
