/**
 * Runs the configured taps: builds each through its driver, gives it the sink it needs
 * and reports their status. Several taps run at once; each frame keeps its tap id.
 *
 * - Live taps (libpcap, tcpdump) filter in the kernel; their frames go to the store and
 *   the pipeline (copy mode).
 * - File taps (pcap-file) have no kernel: their filter spec becomes a predicate on the
 *   decoded addresses, applied before anything is stored. With `inPlace`, each file is
 *   registered as an external segment and indexed where it lies.
 */
import type { Tap, TapConfig, TapStatus } from '../contracts/plugin.js';
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

export class TapRunner {
  readonly #d: TapRunnerDeps;
  readonly #running: Running[] = [];
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

  /** Opens the taps; they run until stop() (live, watch) or until their files are read. */
  start(cfgs: TapConfig[], signal: AbortSignal): void {
    const { plugins, log, config } = this.#d;
    for (const cfg of cfgs) {
      const driver = plugins.tapDriver(cfg.driver, cfg.name);
      const options: Record<string, unknown> = { ...cfg.options, resolve: this.#d.resolve, dataDir: config.dataDir };
      if (cfg.driver === 'pcap-file') {
        options.onFileError = (file: string, errors: CamtapError[]) => {
          for (const e of errors) log.error({ tap: cfg.name, file, code: e.code }, e.message);
        };
      }
      const sink = this.#sinkFor(cfg, options);
      const tap = driver.create({ ...cfg, options }, { log: log.child({ tap: cfg.name }), options, dataDir: config.dataDir });
      const r: Running = { cfg, tap, done: Promise.resolve(), error: null };
      r.done = tap.open(sink, signal).catch((e: Error) => {
        r.error = e;
        log.error({ tap: cfg.name, err: e.message }, 'tap failed');
      });
      this.#running.push(r);
    }
  }

  /** Resolves when every tap has ended by itself (file taps done, or all failed). */
  async settled(): Promise<void> {
    await Promise.all(this.#running.map((r) => r.done));
  }

  async stop(): Promise<void> {
    for (const r of this.#running) await r.tap.close();
    await this.settled();
  }

  /** The running tap of that name (the inline gateway takes the inline tap's recorder from it). */
  tap(name: string): Tap | undefined {
    return this.#running.find((r) => r.cfg.name === name)?.tap;
  }

  failed(): Array<{ name: string; error: Error }> {
    return this.#running.filter((r) => r.error).map((r) => ({ name: r.cfg.name, error: r.error! }));
  }

  status(): Array<{ id: number; name: string; driver: string } & TapStatus> {
    return this.#running.map((r) => ({ id: r.cfg.id, name: r.cfg.name, driver: r.cfg.driver, ...r.tap.status() }));
  }
}
