/**
 * The tcpdump tap: runs `tcpdump -i IFACE -U -w - 'BPF'` and reads the pcap stream it
 * writes on stdout. Needs nothing native in camtap, only the tcpdump program and the
 * right to capture (root or CAP_NET_RAW on tcpdump).
 *
 * Options (TapConfig.options):
 * - `interface` (required): the interface to capture on (`any` for all, as a cooked
 *   capture without VLAN filtering).
 * - `snaplen` (default 262144): bytes kept per packet (`-s`).
 * - `bufferKiB` (default 16384): kernel ring size (`-B`); raise it when `drops` grows.
 * - `tcpdumpPath` (default `tcpdump`): the program.
 * - `extraArgs`: more tcpdump options, inserted before the filter.
 * - `immediate` (default false): `--immediate-mode`, each packet handed over at once.
 *   By default libpcap on Linux packs packets into TPACKET_V3 blocks that the kernel
 *   hands over when full or after tcpdump's 1 s timeout, so packets reach camtap up to
 *   1 s late, and a block still filling when tcpdump stops is lost: close() therefore
 *   waits out that timeout before stopping tcpdump. Immediate mode uses a TPACKET_V2
 *   ring of snaplen-sized slots instead (bufferKiB * 1024 / snaplen of them: 64 at the
 *   defaults), which drops bursts unless `snaplen` is lowered or `bufferKiB` raised.
 * - `nanoseconds` (default true): `--time-stamp-precision=nano`.
 * - `resolve`: inventory lookup for `cameras`/`vms` in the filter (given by the pipeline).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { toBpf, type NameResolver } from '../../core/capture/filter.js';
import type { FilterSpec } from '../../core/contracts/filter.js';
import type { FrameSink } from '../../core/contracts/frame.js';
import type { PluginContext, PluginMeta, Tap, TapConfig, TapDriver, TapStatus } from '../../core/contracts/plugin.js';
import type { Logger } from '../../core/contracts/logger.js';
import { CamtapError } from '../../core/errors.js';
import { CaptureParser, type CaptureRecord } from '../../core/wire/capture-file.js';

export const meta: PluginMeta = {
  name: 'tcpdump',
  kind: 'tap-driver',
  version: '0.1.0',
  core: '^0.1.0',
  description: 'Live capture through a tcpdump child process (pcap on stdout)',
};

export interface TcpdumpOptions {
  interface: string;
  snaplen: number;
  bufferKiB: number;
  tcpdumpPath: string;
  extraArgs: string[];
  immediate: boolean;
  nanoseconds: boolean;
  resolve: NameResolver | undefined;
}

/** libpcap's default block timeout on Linux as tcpdump sets it (1000 ms), plus a margin. */
const BLOCK_TIMEOUT_MS = 1100;
const KILL_AFTER_MS = 5000;
const STDERR_KEEP = 16 * 1024;

function optionError(tap: string, reason: string): CamtapError {
  return new CamtapError('CAMTAP_ERR_TAP', { tap, reason });
}

/** Reads and checks the driver options; throws CAMTAP_ERR_TAP naming the option. */
export function tcpdumpOptions(tap: string, o: Record<string, unknown>): TcpdumpOptions {
  const iface = o.interface;
  if (typeof iface !== 'string' || iface.trim() === '') throw optionError(tap, 'options.interface is required (e.g. eth0, or any)');
  const int = (key: string, min: number, max: number): number | undefined => {
    const v = o[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw optionError(tap, `options.${key}: ${JSON.stringify(v)} is not an integer in ${min}..${max}`);
    return v;
  };
  const bool = (key: string, dflt: boolean): boolean => {
    const v = o[key];
    if (v === undefined) return dflt;
    if (typeof v !== 'boolean') throw optionError(tap, `options.${key}: must be true or false`);
    return v;
  };
  const extra = o.extraArgs ?? [];
  if (!Array.isArray(extra) || !extra.every((a) => typeof a === 'string')) throw optionError(tap, 'options.extraArgs: must be a list of strings');
  const path = o.tcpdumpPath ?? 'tcpdump';
  if (typeof path !== 'string' || path === '') throw optionError(tap, 'options.tcpdumpPath: must be a program name or path');
  if (o.resolve !== undefined && typeof o.resolve !== 'function') throw optionError(tap, 'options.resolve: must be a function');
  return {
    interface: iface.trim(),
    snaplen: int('snaplen', 1, 262144) ?? 262144,
    bufferKiB: int('bufferKiB', 1, 16 * 1024 * 1024) ?? 16 * 1024,
    tcpdumpPath: path,
    extraArgs: extra as string[],
    immediate: bool('immediate', false),
    nanoseconds: bool('nanoseconds', true),
    resolve: o.resolve as NameResolver | undefined,
  };
}

/** The kernel/interface drop counts tcpdump prints when it exits, or null when absent. */
export function parseTcpdumpDrops(stderr: string): number | null {
  const kernel = /(\d+) packets? dropped by kernel/.exec(stderr);
  const iface = /(\d+) packets? dropped by interface/.exec(stderr);
  if (!kernel && !iface) return null;
  return Number(kernel?.[1] ?? 0) + Number(iface?.[1] ?? 0);
}

/** The line that says what went wrong: tcpdump's own last `tcpdump: ...` message, else the last line. */
function lastErrorLine(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const own = lines.filter((l) => l.startsWith('tcpdump:') && !/listening on|data link type/.test(l));
  return own.at(-1) ?? lines.at(-1) ?? '(no message)';
}

function runQuiet(cmd: string, args: string[]): Promise<{ code: number | null; stderr: string; error?: Error }> {
  return new Promise((resolve) => {
    let stderr = '';
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr!.on('data', (d: Buffer) => {
      if (stderr.length < STDERR_KEEP) stderr += d.toString('utf8');
    });
    child.on('error', (error) => resolve({ code: null, stderr, error }));
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

class TcpdumpTap implements Tap {
  readonly #config: TapConfig;
  readonly #opts: TcpdumpOptions;
  readonly #log: Logger;
  #state: TapStatus['state'] = 'idle';
  #packets = 0;
  #bytes = 0;
  #drops: number | null = null;
  #error: string | undefined;
  #filter: string | undefined;
  #child: ChildProcess | null = null;
  #stderr = '';
  #closing = false;
  #closed: Promise<void> | null = null;
  #exited: Promise<void> | null = null;

  constructor(config: TapConfig, ctx: PluginContext) {
    this.#config = config;
    this.#opts = tcpdumpOptions(config.name, config.options);
    this.#log = ctx.log.child({ tap: config.name, driver: 'tcpdump' });
  }

  status(): TapStatus {
    const s: TapStatus = { state: this.#state, packets: this.#packets, bytes: this.#bytes, drops: this.#drops };
    if (this.#error !== undefined) s.error = this.#error;
    if (this.#filter !== undefined) s.filter = this.#filter;
    return s;
  }

  #fail(reason: string, cause?: unknown): CamtapError {
    this.#state = 'failed';
    this.#error = reason;
    return new CamtapError('CAMTAP_ERR_TAP', { tap: this.#config.name, reason }, cause === undefined ? undefined : { cause });
  }

  /** Picks the filter: the VLAN-aware BPF unless the link type has no VLAN support (cooked `any`). */
  async #chooseFilter(): Promise<string> {
    const spec: FilterSpec = this.#config.filter ?? {};
    const withVlan = toBpf(spec, this.#opts.resolve);
    if (withVlan === '') return '';
    const check = await runQuiet(this.#opts.tcpdumpPath, ['-i', this.#opts.interface, '-d', withVlan]);
    if (check.error) throw this.#fail(`cannot run ${this.#opts.tcpdumpPath}: ${check.error.message}`, check.error);
    if (check.code === 0) return withVlan;
    if (/vlan/i.test(check.stderr)) {
      const plain = toBpf(spec, this.#opts.resolve, { vlan: false });
      const again = await runQuiet(this.#opts.tcpdumpPath, ['-i', this.#opts.interface, '-d', plain]);
      if (again.code === 0) return plain;
      throw this.#fail(`filter ${JSON.stringify(plain)} rejected: ${lastErrorLine(again.stderr)}`);
    }
    throw this.#fail(`filter ${JSON.stringify(withVlan)} rejected: ${lastErrorLine(check.stderr)}`);
  }

  async open(sink: FrameSink, signal: AbortSignal): Promise<void> {
    if (this.#state !== 'idle') throw new CamtapError('CAMTAP_ERR_TAP', { tap: this.#config.name, reason: `cannot open: tap is ${this.#state}` });
    this.#state = 'opening';
    if (signal.aborted) {
      this.#state = 'stopped';
      return;
    }
    let filter: string;
    try {
      filter = await this.#chooseFilter();
    } catch (e) {
      if (e instanceof CamtapError && e.code === 'CAMTAP_ERR_TAP') throw e;
      throw this.#fail(e instanceof Error ? e.message : String(e), e);
    }
    this.#filter = filter;
    if (this.#closing || signal.aborted) {
      this.#state = 'stopped';
      return;
    }
    const o = this.#opts;
    const args = ['-i', o.interface, '-U', '-n', '-s', String(o.snaplen), '-w', '-'];
    if (o.immediate) args.push('--immediate-mode');
    if (o.nanoseconds) args.push('--time-stamp-precision=nano');
    args.push('-B', String(o.bufferKiB));
    args.push(...o.extraArgs);
    if (filter !== '') args.push(filter);
    this.#log.info({ cmd: o.tcpdumpPath, args }, 'starting tcpdump');

    const parser = new CaptureParser({ file: `tcpdump -i ${o.interface} (stdout)`, tapId: this.#config.id });
    const onRecord = (r: CaptureRecord) => {
      this.#packets++;
      this.#bytes += r.capLen;
      sink(r);
    };
    const child = spawn(o.tcpdumpPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child = child;
    const onAbort = () => void this.close();
    signal.addEventListener('abort', onAbort, { once: true });

    return new Promise<void>((resolve, reject) => {
      let failure: CamtapError | null = null;
      let spawnError: Error | null = null;
      child.stdout!.on('data', (chunk: Buffer) => {
        if (failure) return;
        try {
          parser.push(chunk, onRecord);
        } catch (e) {
          // A broken stream or a sink that throws: stop rather than deliver garbage.
          failure = this.#fail(`reading tcpdump output: ${e instanceof Error ? e.message : String(e)}`, e);
          child.kill('SIGINT');
        }
      });
      child.stderr!.on('data', (d: Buffer) => {
        this.#stderr += d.toString('utf8');
        if (this.#stderr.length > STDERR_KEEP) this.#stderr = this.#stderr.slice(-STDERR_KEEP);
        if (this.#state === 'opening' && this.#stderr.includes('listening on')) this.#state = 'running';
      });
      child.on('error', (e) => {
        spawnError = e;
      });
      this.#exited = new Promise<void>((done) => {
        child.on('close', (code, sig) => {
          signal.removeEventListener('abort', onAbort);
          this.#child = null;
          this.#drops = parseTcpdumpDrops(this.#stderr);
          if (!failure) {
            try {
              if (parser.format !== null) parser.end(onRecord);
            } catch (e) {
              if (!this.#closing) failure = this.#fail(`reading tcpdump output: ${e instanceof Error ? e.message : String(e)}`, e);
            }
          }
          if (failure) reject(failure);
          else if (spawnError) reject(this.#fail(`cannot run ${o.tcpdumpPath}: ${spawnError.message}`, spawnError));
          else if (this.#closing || code === 0) {
            this.#state = 'stopped';
            resolve();
          } else {
            const how = code !== null ? `exited with code ${code}` : `was killed by ${sig}`;
            reject(this.#fail(`tcpdump ${how}: ${lastErrorLine(this.#stderr)}`));
          }
          this.#log.info({ packets: this.#packets, drops: this.#drops, code, signal: sig }, 'tcpdump ended');
          done();
        });
      });
    });
  }

  close(): Promise<void> {
    if (this.#closed) return this.#closed;
    this.#closing = true;
    this.#closed = (async () => {
      const child = this.#child;
      if (!child) {
        if (this.#state === 'idle' || this.#state === 'opening') this.#state = 'stopped';
        return;
      }
      // Without immediate mode the kernel still holds the block being filled: wait for its timeout.
      if (!this.#opts.immediate) await new Promise((r) => setTimeout(r, BLOCK_TIMEOUT_MS));
      child.kill('SIGINT'); // tcpdump flushes its output and prints the drop counts
      const killer = setTimeout(() => child.kill('SIGKILL'), KILL_AFTER_MS);
      await this.#exited;
      clearTimeout(killer);
    })();
    return this.#closed;
  }
}

/** The driver: BPF translation and tap creation. */
const driver: TapDriver = {
  meta,
  translate: (spec: FilterSpec, resolve?: NameResolver) => toBpf(spec, resolve),
  create: (config: TapConfig, ctx: PluginContext) => new TcpdumpTap(config, ctx),
};

export default driver;
