/**
 * The pcap-file tap: capture files as a source, either read once (`paths`) or taken
 * from a drop folder as writers finish them (`watch`), e.g. a hardware tap or
 * `tcpdump -G 60 -w /drop/dump-%s.pcap`.
 *
 * Frames are the {@link CaptureRecord}s of core/wire/capture-file.ts, delivered with the
 * file's own timestamps; besides the TapFrame fields they carry `fileOffset` and
 * `recordLen`, which the pipeline uses to index a file in place (`inPlace`).
 *
 * Filtering: a file tap has no kernel filter. The pipeline decodes every frame anyway,
 * so it applies `toPredicate(config.filter)` (core/capture/filter.ts) on the decoded
 * metadata; translate() returns the equivalent BPF text for display.
 *
 * Options (TapConfig.options):
 * - `paths`: files or folders (their matching files, oldest first) to read once.
 * - `watch`: a drop folder to take files from until the tap is closed.
 * - `pattern`: glob-ish names to take (`*`, `?`; string or list). Default: `.pcap`,
 *   `.pcapng`, `.cap`, `.dmp`, with rotation suffixes (`x.pcap0`, `x.pcap12`, `x.pcap.1`).
 * - `settleMs` (default 2000): how long a file must stay unchanged to count as complete
 *   when no newer file shows that its writer rotated.
 * - `rescanMs` (default 1000): the periodic rescan behind fs.watch.
 * - `doneDir`: move taken files there (relative paths: from the working directory).
 * - `checkOpen` (default true): do not take a file some process has open for writing.
 * - `chunkKiB` (default: the reader's 4 MiB): read size; close() takes effect between reads.
 * - `inPlace` (default false): for the pipeline; the tap only exposes it.
 * - `onFile(path, 'start' | 'end', result?)`: called around each file; `result` has the
 *   counts, the errors and `movedTo` when the file went to `doneDir`.
 * - `onFileError(path, errors)`: the file's errors (bad records skipped by resync, or
 *   the error that stopped it); the last one also shows in status().error.
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { toBpf, type NameResolver } from '../../core/capture/filter.js';
import type { FilterSpec } from '../../core/contracts/filter.js';
import type { FrameSink } from '../../core/contracts/frame.js';
import type { Logger } from '../../core/contracts/logger.js';
import type { PluginContext, PluginMeta, Tap, TapConfig, TapDriver, TapStatus } from '../../core/contracts/plugin.js';
import { CamtapError, isCamtapError } from '../../core/errors.js';
import { readCaptureFile, type CaptureInterface, type CaptureRecord } from '../../core/wire/capture-file.js';
import { DropFolder, moveToDone, nameMatcher, type FileIdentity } from './watch.js';

export const meta: PluginMeta = {
  name: 'pcap-file',
  kind: 'tap-driver',
  version: '0.1.0',
  core: '^0.1.0',
  description: 'pcap/pcapng files: read once, or taken from a drop folder as they are completed',
};

export type { CaptureRecord };

/** What `onFile(path, 'end', result)` receives. */
export interface FileResult {
  format: 'pcap' | 'pcapng' | null;
  /** Records delivered from this file in this run. */
  records: number;
  /** Bytes of the file read in this run. */
  bytes: number;
  /** Offset just past the last record read. */
  endOffset: number;
  /** Where reading started (non-zero when resuming an interrupted file). */
  startOffset: number;
  interfaces: CaptureInterface[];
  errors: CamtapError[];
  /** The file's new path when it was moved to `doneDir`. */
  movedTo?: string;
}

export interface PcapFileOptions {
  paths: string[];
  watch: string | null;
  pattern: string[] | null;
  settleMs: number;
  rescanMs: number;
  doneDir: string | null;
  checkOpen: boolean;
  chunkKiB: number | null;
  inPlace: boolean;
  onFile?: (file: string, phase: 'start' | 'end', result?: FileResult) => void;
  onFileError?: (file: string, errors: CamtapError[]) => void;
  resolve?: NameResolver;
}

function optionError(tap: string, reason: string): CamtapError {
  return new CamtapError('CAMTAP_ERR_TAP', { tap, reason });
}

/** Reads and checks the options; throws CAMTAP_ERR_TAP naming the option. */
export function pcapFileOptions(tap: string, o: Record<string, unknown>): PcapFileOptions {
  const strings = (key: string): string[] | null => {
    const v = o[key];
    if (v === undefined || v === null) return null;
    const list = typeof v === 'string' ? [v] : v;
    if (!Array.isArray(list) || !list.every((x) => typeof x === 'string' && x !== '')) throw optionError(tap, `options.${key}: must be a path or a list of them`);
    return list as string[];
  };
  const int = (key: string, min: number, dflt: number): number => {
    const v = o[key];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw optionError(tap, `options.${key}: ${JSON.stringify(v)} is not an integer >= ${min}`);
    return v;
  };
  const bool = (key: string, dflt: boolean): boolean => {
    const v = o[key];
    if (v === undefined) return dflt;
    if (typeof v !== 'boolean') throw optionError(tap, `options.${key}: must be true or false`);
    return v;
  };
  const fn = <F>(key: string): F | undefined => {
    const v = o[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'function') throw optionError(tap, `options.${key}: must be a function`);
    return v as F;
  };
  const paths = strings('paths') ?? [];
  const watch = o.watch ?? null;
  if (watch !== null && (typeof watch !== 'string' || watch === '')) throw optionError(tap, 'options.watch: must be a folder path');
  if (paths.length === 0 && watch === null) throw optionError(tap, 'give options.paths (files or folders to read) or options.watch (a drop folder)');
  const doneDir = o.doneDir ?? null;
  if (doneDir !== null && (typeof doneDir !== 'string' || doneDir === '')) throw optionError(tap, 'options.doneDir: must be a folder path');
  return {
    paths,
    watch: watch as string | null,
    pattern: strings('pattern'),
    settleMs: int('settleMs', 0, 2000),
    rescanMs: int('rescanMs', 10, 1000),
    doneDir: doneDir as string | null,
    checkOpen: bool('checkOpen', true),
    chunkKiB: o.chunkKiB === undefined ? null : int('chunkKiB', 4, 0),
    inPlace: bool('inPlace', false),
    onFile: fn('onFile'),
    onFileError: fn('onFileError'),
    resolve: fn('resolve'),
  };
}

/** `<dataDir>/taps/<tapname>.taken.json`: the drop folder's memory of taken files. */
export function takenStatePath(dataDir: string, tapName: string): string {
  return path.join(dataDir, 'taps', `${tapName}.taken.json`);
}

class PcapFileTap implements Tap {
  readonly options: PcapFileOptions;
  readonly #config: TapConfig;
  readonly #log: Logger;
  readonly #dataDir: string;
  readonly #match: (name: string) => boolean;
  #state: TapStatus['state'] = 'idle';
  #packets = 0;
  #bytes = 0;
  #error: string | undefined;
  #filter: string | undefined;
  readonly #stop = new AbortController();
  #running: Promise<void> | null = null;
  #closed: Promise<void> | null = null;
  #kick: (() => void) | null = null;

  constructor(config: TapConfig, ctx: PluginContext) {
    this.#config = config;
    this.options = pcapFileOptions(config.name, config.options);
    this.#log = ctx.log.child({ tap: config.name, driver: 'pcap-file' });
    this.#dataDir = ctx.dataDir;
    this.#match = nameMatcher(this.options.pattern);
  }

  status(): TapStatus {
    const s: TapStatus = { state: this.#state, packets: this.#packets, bytes: this.#bytes, drops: null };
    if (this.#error !== undefined) s.error = this.#error;
    if (this.#filter !== undefined) s.filter = this.#filter;
    return s;
  }

  #reportErrors(file: string, errors: CamtapError[]): void {
    if (errors.length === 0) return;
    this.#error = errors[errors.length - 1]!.message;
    this.#log.warn({ file, errors: errors.map((e) => e.message) }, 'capture file errors');
    try {
      this.options.onFileError?.(file, errors);
    } catch (e) {
      this.#log.error({ file, err: String(e) }, 'onFileError callback threw');
    }
  }

  /**
   * Reads one file into the sink. Returns the result, or null when close() interrupted
   * it (`resume` then holds the offset of the first record not delivered).
   */
  async #readFile(file: string, sink: FrameSink, startOffset: number, resume: { at: number }): Promise<FileResult | null> {
    try {
      this.options.onFile?.(file, 'start');
    } catch (e) {
      this.#log.error({ file, err: String(e) }, 'onFile callback threw');
    }
    resume.at = startOffset;
    let sinkError: { e: unknown } | null = null;
    const onRecord = (r: CaptureRecord) => {
      this.#packets++;
      this.#bytes += r.capLen;
      try {
        sink(r);
      } catch (e) {
        sinkError = { e };
        throw e;
      }
      resume.at = r.fileOffset + r.recordLen;
    };
    let result: FileResult;
    try {
      const r = await readCaptureFile(file, onRecord, {
        tapId: this.#config.id,
        resync: true,
        startOffset,
        signal: this.#stop.signal,
        ...(this.options.chunkKiB !== null ? { chunkSize: this.options.chunkKiB * 1024 } : {}),
      });
      result = { format: r.format, records: r.records, bytes: r.bytes, endOffset: r.endOffset, startOffset, interfaces: r.interfaces, errors: r.errors };
    } catch (e) {
      if (sinkError) throw e; // the pipeline broke, not the file: fail the tap
      if (this.#stop.signal.aborted && isCamtapError(e, 'CAMTAP_ERR_INTERRUPTED')) return null;
      const err = isCamtapError(e) ? e : new CamtapError('CAMTAP_ERR_CAPTURE_OPEN', { file, reason: e instanceof Error ? e.message : String(e) }, { cause: e });
      result = { format: null, records: 0, bytes: 0, endOffset: resume.at, startOffset, interfaces: [], errors: [err] };
    }
    this.#reportErrors(file, result.errors);
    return result;
  }

  #ended(file: string, result: FileResult): void {
    try {
      this.options.onFile?.(file, 'end', result);
    } catch (e) {
      this.#log.error({ file, err: String(e) }, 'onFile callback threw');
    }
  }

  /** The files of a `paths` entry: the file itself, or a folder's matching files oldest first. */
  async #expand(p: string): Promise<string[]> {
    let st;
    try {
      st = await stat(p);
    } catch {
      return [p]; // reading it reports why it cannot be opened
    }
    if (!st.isDirectory()) return [p];
    const files: Array<{ f: string; m: number }> = [];
    for (const name of (await readdir(p)).filter(this.#match)) {
      const f = path.join(p, name);
      try {
        const s = await stat(f);
        if (s.isFile()) files.push({ f, m: s.mtimeMs });
      } catch {
        /* vanished */
      }
    }
    files.sort((a, b) => a.m - b.m || (a.f < b.f ? -1 : a.f > b.f ? 1 : 0));
    return files.map((x) => x.f);
  }

  async #readPaths(sink: FrameSink): Promise<void> {
    for (const p of this.options.paths) {
      for (const file of await this.#expand(p)) {
        if (this.#stop.signal.aborted) return;
        const result = await this.#readFile(file, sink, 0, { at: 0 });
        if (!result) return;
        this.#ended(file, result);
      }
    }
  }

  async #watchFolder(sink: FrameSink): Promise<void> {
    const o = this.options;
    const folder = new DropFolder({
      dir: o.watch!,
      match: this.#match,
      settleMs: o.settleMs,
      stateFile: takenStatePath(this.#dataDir, this.#config.name),
      checkOpen: o.checkOpen && process.platform === 'linux',
    });
    await folder.load();
    let wake: (() => void) | null = null;
    let kicked = false;
    this.#kick = () => {
      kicked = true;
      wake?.();
    };
    folder.start(() => this.#kick?.(), o.rescanMs);
    try {
      while (!this.#stop.signal.aborted) {
        kicked = false;
        for (const f of await folder.scan()) {
          if (this.#stop.signal.aborted) break;
          const id: FileIdentity = { name: f.name, size: f.size, mtimeMs: f.mtimeMs, ino: f.ino };
          const resume = { at: f.resumeAt };
          const result = await this.#readFile(f.path, sink, f.resumeAt, resume);
          if (!result) {
            await folder.mark(id, false, resume.at);
            break;
          }
          if (o.doneDir) {
            try {
              result.movedTo = await moveToDone(f.path, o.doneDir);
            } catch (e) {
              this.#error = `${f.path}: cannot move to ${o.doneDir}: ${e instanceof Error ? e.message : String(e)}`;
              this.#log.error({ file: f.path, doneDir: o.doneDir, err: String(e) }, 'move to doneDir failed');
            }
          }
          await folder.mark(id, true);
          this.#ended(f.path, result);
        }
        if (this.#stop.signal.aborted || kicked) continue;
        // Sleep until the folder changes, the rescan timer fires, or close().
        await new Promise<void>((resolve) => {
          wake = resolve;
          if (kicked || this.#stop.signal.aborted) resolve();
        });
        wake = null;
      }
    } finally {
      folder.stop();
      this.#kick = null;
    }
  }

  async open(sink: FrameSink, signal: AbortSignal): Promise<void> {
    if (this.#state !== 'idle') throw new CamtapError('CAMTAP_ERR_TAP', { tap: this.#config.name, reason: `cannot open: tap is ${this.#state}` });
    if (this.#closed || signal.aborted) {
      this.#state = 'stopped';
      return;
    }
    try {
      this.#filter = toBpf((this.#config.filter ?? {}) as FilterSpec, this.options.resolve);
    } catch (e) {
      this.#state = 'failed';
      this.#error = e instanceof Error ? e.message : String(e);
      throw e;
    }
    this.#state = 'running';
    const onAbort = () => void this.close();
    signal.addEventListener('abort', onAbort, { once: true });
    this.#running = (async () => {
      if (this.options.paths.length > 0) await this.#readPaths(sink);
      if (this.options.watch !== null && !this.#stop.signal.aborted) await this.#watchFolder(sink);
    })();
    try {
      await this.#running;
      this.#state = 'stopped';
    } catch (e) {
      this.#state = 'failed';
      this.#error = e instanceof Error ? e.message : String(e);
      throw isCamtapError(e) ? e : new CamtapError('CAMTAP_ERR_TAP', { tap: this.#config.name, reason: this.#error }, { cause: e });
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  close(): Promise<void> {
    if (this.#closed) return this.#closed;
    this.#stop.abort();
    this.#kick?.();
    this.#closed = (async () => {
      if (this.#running) await this.#running.catch(() => {});
      if (this.#state === 'idle' || this.#state === 'running') this.#state = 'stopped';
    })();
    return this.#closed;
  }
}

/** The driver. translate() is the BPF equivalent of the predicate the pipeline applies. */
const driver: TapDriver = {
  meta,
  translate: (spec: FilterSpec, resolve?: NameResolver) => toBpf(spec, resolve),
  create: (config: TapConfig, ctx: PluginContext) => new PcapFileTap(config, ctx),
};

export default driver;
