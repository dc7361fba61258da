/**
 * The libpcap tap: captures in-process through the `pcap` npm package (node_pcap), with
 * the BPF filter compiled into the kernel. The native module is optional: it is loaded
 * lazily in open(), so camtap installs and runs where it was not built; open() then
 * fails with a CAMTAP_ERR_TAP that suggests the tcpdump driver.
 *
 * Options (TapConfig.options):
 * - `interface` (required).
 * - `snaplen` (default 262144): bytes kept per packet.
 * - `bufferKiB` (default 16384): kernel ring size; raise it when `drops` grows.
 * - `promiscuous` (default false): a mirror/SPAN port delivers other hosts' traffic
 *   without it; switch it on for hubs or taps that need it.
 * - `timeoutMs` (default 100): libpcap's packet buffer timeout, the longest a packet
 *   waits in the kernel before delivery (the TPACKET_V3 block timeout). 0 = immediate
 *   mode: one wakeup per packet, and a TPACKET_V2 ring of snaplen-sized slots
 *   (bufferKiB * 1024 / snaplen of them), so lower `snaplen` with it.
 * - `resolve`: inventory lookup for `cameras`/`vms` in the filter (given by the pipeline).
 *
 * Known limit of node_pcap 3.x: closing only breaks the capture loop; the native poll
 * handle is released when the next packet that passes the filter arrives. On a camera
 * tap that is immediate; on a silent interface the process keeps its event loop alive
 * until then (camtap's shutdown exits the process anyway).
 */
import { createRequire } from 'node:module';
import { endianness } from 'node:os';
import { toBpf, type NameResolver } from '../../core/capture/filter.js';
import type { FilterSpec } from '../../core/contracts/filter.js';
import { LinkType, type FrameSink, type TapFrame } from '../../core/contracts/frame.js';
import type { Logger } from '../../core/contracts/logger.js';
import type { PluginContext, PluginMeta, Tap, TapConfig, TapDriver, TapStatus } from '../../core/contracts/plugin.js';
import { CamtapError } from '../../core/errors.js';

export const meta: PluginMeta = {
  name: 'libpcap',
  kind: 'tap-driver',
  version: '0.1.0',
  core: '^0.1.0',
  description: 'Live capture in-process through libpcap (the optional native pcap module)',
};

/** The part of node_pcap this driver uses (typed here so camtap compiles without the module). */
interface PcapStats {
  ps_recv: number;
  ps_drop: number;
  ps_ifdrop: number;
}
interface PcapPacket {
  buf: Buffer;
  /** tv_sec, tv_usec, caplen, len: 4 bytes each in host byte order (pcap_session.cc PacketReady). */
  header: Buffer;
  link_type: string;
}
interface PcapSession {
  readonly link_type: string;
  on(event: 'packet', cb: (p: PcapPacket) => void): unknown;
  close(): void;
  stats(): PcapStats;
}
interface PcapModule {
  createSession(
    device: string,
    opts: { filter?: string; buffer_size?: number; snap_length?: number; promiscuous?: boolean; buffer_timeout?: number },
  ): PcapSession;
  lib_version?: string;
}

export interface LibpcapOptions {
  interface: string;
  snaplen: number;
  bufferKiB: number;
  promiscuous: boolean;
  timeoutMs: number;
  resolve: NameResolver | undefined;
  /** The module to load (tests point it at a missing one). */
  module: string;
}

/** node_pcap names the DLTs it knows; others come as "Unknown linktype N" (N = DLT, equal to LINKTYPE for those). */
const LINK_TYPES: Record<string, number> = {
  LINKTYPE_NULL: LinkType.NULL,
  LINKTYPE_ETHERNET: LinkType.ETHERNET,
  LINKTYPE_IEEE802_11_RADIO: 127,
  LINKTYPE_RAW: LinkType.RAW,
  LINKTYPE_LINUX_SLL: LinkType.LINUX_SLL,
};

/** The pcap LINKTYPE_* number for node_pcap's `link_type` string, or -1. */
export function linkTypeNumber(name: string): number {
  const known = LINK_TYPES[name];
  if (known !== undefined) return known;
  const m = /^Unknown linktype (\d+)$/.exec(name);
  return m ? Number(m[1]) : -1;
}

function optionError(tap: string, reason: string): CamtapError {
  return new CamtapError('CAMTAP_ERR_TAP', { tap, reason });
}

/** Reads and checks the driver options; throws CAMTAP_ERR_TAP naming the option. */
export function libpcapOptions(tap: string, o: Record<string, unknown>): LibpcapOptions {
  const iface = o.interface;
  if (typeof iface !== 'string' || iface.trim() === '') throw optionError(tap, 'options.interface is required (e.g. eth0, or any)');
  const int = (key: string, min: number, max: number, dflt: number): number => {
    const v = o[key];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw optionError(tap, `options.${key}: ${JSON.stringify(v)} is not an integer in ${min}..${max}`);
    return v;
  };
  const promiscuous = o.promiscuous ?? false;
  if (typeof promiscuous !== 'boolean') throw optionError(tap, 'options.promiscuous: must be true or false');
  if (o.resolve !== undefined && typeof o.resolve !== 'function') throw optionError(tap, 'options.resolve: must be a function');
  const mod = o.module ?? 'pcap';
  if (typeof mod !== 'string') throw optionError(tap, 'options.module: must be a module name');
  return {
    interface: iface.trim(),
    snaplen: int('snaplen', 1, 262144, 262144),
    bufferKiB: int('bufferKiB', 1, 16 * 1024 * 1024, 16 * 1024),
    promiscuous,
    timeoutMs: int('timeoutMs', 0, 60000, 100),
    resolve: o.resolve as NameResolver | undefined,
    module: mod,
  };
}

const LE = endianness() === 'LE';

class LibpcapTap implements Tap {
  readonly #config: TapConfig;
  readonly #opts: LibpcapOptions;
  readonly #log: Logger;
  #state: TapStatus['state'] = 'idle';
  #packets = 0;
  #bytes = 0;
  #drops: number | null = null;
  #error: string | undefined;
  #filter: string | undefined;
  #session: PcapSession | null = null;
  #closed: Promise<void> | null = null;
  #finish: (() => void) | null = null;
  #failure: CamtapError | null = null;
  /** The one frame object, refilled for every packet (the pipeline copies what it keeps). */
  readonly #frame: TapFrame;

  constructor(config: TapConfig, ctx: PluginContext) {
    this.#config = config;
    this.#opts = libpcapOptions(config.name, config.options);
    this.#log = ctx.log.child({ tap: config.name, driver: 'libpcap' });
    this.#frame = { tapId: config.id, tsSec: 0, tsNsec: 0, linkType: 0, buf: Buffer.alloc(0), off: 0, capLen: 0, origLen: 0 };
  }

  status(): TapStatus {
    if (this.#session && this.#state === 'running') this.#drops = this.#readDrops(this.#session);
    const s: TapStatus = { state: this.#state, packets: this.#packets, bytes: this.#bytes, drops: this.#drops };
    if (this.#error !== undefined) s.error = this.#error;
    if (this.#filter !== undefined) s.filter = this.#filter;
    return s;
  }

  #readDrops(session: PcapSession): number | null {
    try {
      const st = session.stats();
      return st.ps_drop + st.ps_ifdrop;
    } catch {
      return this.#drops;
    }
  }

  #fail(reason: string, cause?: unknown): CamtapError {
    this.#state = 'failed';
    this.#error = reason;
    return new CamtapError('CAMTAP_ERR_TAP', { tap: this.#config.name, reason }, cause === undefined ? undefined : { cause });
  }

  #load(): PcapModule {
    const require = createRequire(import.meta.url);
    try {
      return require(this.#opts.module) as PcapModule;
    } catch (e) {
      const why = e instanceof Error ? e.message.split('\n')[0] : String(e);
      throw this.#fail(
        `the libpcap driver needs the native "${this.#opts.module}" module, which did not load (${why}); ` +
          'install libpcap-dev and run `npm install pcap`, or use the tcpdump driver instead',
        e,
      );
    }
  }

  #createSession(pcap: PcapModule, filter: string): PcapSession {
    return pcap.createSession(this.#opts.interface, {
      filter,
      buffer_size: this.#opts.bufferKiB * 1024,
      snap_length: this.#opts.snaplen,
      promiscuous: this.#opts.promiscuous,
      // node_pcap turns a timeout <= 0 into immediate mode.
      buffer_timeout: this.#opts.timeoutMs,
    });
  }

  async open(sink: FrameSink, signal: AbortSignal): Promise<void> {
    if (this.#state !== 'idle') throw new CamtapError('CAMTAP_ERR_TAP', { tap: this.#config.name, reason: `cannot open: tap is ${this.#state}` });
    this.#state = 'opening';
    if (signal.aborted || this.#closed) {
      this.#state = 'stopped';
      return;
    }
    const pcap = this.#load();
    const spec: FilterSpec = this.#config.filter ?? {};
    let filter: string;
    try {
      filter = toBpf(spec, this.#opts.resolve);
    } catch (e) {
      this.#state = 'failed';
      this.#error = e instanceof Error ? e.message : String(e);
      throw e;
    }
    let session: PcapSession;
    try {
      try {
        session = this.#createSession(pcap, filter);
      } catch (e) {
        // Cooked captures (`any`) have no VLAN support: keep the filter without the VLAN part.
        if (filter === '' || !/vlan/i.test(e instanceof Error ? e.message : '')) throw e;
        filter = toBpf(spec, this.#opts.resolve, { vlan: false });
        session = this.#createSession(pcap, filter);
      }
    } catch (e) {
      throw this.#fail(`cannot capture on ${this.#opts.interface}: ${e instanceof Error ? e.message : String(e)}`, e);
    }
    this.#filter = filter;
    this.#session = session;
    const linkType = linkTypeNumber(session.link_type);
    if (linkType < 0) {
      session.close();
      throw this.#fail(`link type ${session.link_type} of ${this.#opts.interface} is not supported`);
    }
    this.#log.info({ interface: this.#opts.interface, filter, linkType }, 'libpcap capture started');
    const frame = this.#frame;
    frame.linkType = linkType;
    session.on('packet', (p: PcapPacket) => {
      if (this.#failure) return;
      const h = p.header;
      frame.tsSec = LE ? h.readUInt32LE(0) : h.readUInt32BE(0);
      frame.tsNsec = (LE ? h.readUInt32LE(4) : h.readUInt32BE(4)) * 1000;
      const caplen = LE ? h.readUInt32LE(8) : h.readUInt32BE(8);
      frame.origLen = LE ? h.readUInt32LE(12) : h.readUInt32BE(12);
      // node_pcap copies at most its buffer (snap_length) bytes.
      frame.capLen = caplen < p.buf.length ? caplen : p.buf.length;
      frame.buf = p.buf;
      this.#packets++;
      this.#bytes += frame.capLen;
      try {
        sink(frame);
      } catch (e) {
        // Thrown into node_pcap's poll callback this would end the process: fail the tap instead.
        this.#failure ??= this.#fail(`the pipeline failed on a packet: ${e instanceof Error ? e.message : String(e)}`, e);
        void this.close();
      }
    });
    this.#state = 'running';
    const onAbort = () => void this.close();
    signal.addEventListener('abort', onAbort, { once: true });
    await new Promise<void>((resolve) => {
      this.#finish = resolve;
    });
    signal.removeEventListener('abort', onAbort);
    if (this.#failure) throw this.#failure;
  }

  close(): Promise<void> {
    if (this.#closed) return this.#closed;
    this.#closed = (async () => {
      const session = this.#session;
      if (!session) {
        if (this.#state === 'idle' || this.#state === 'opening') this.#state = 'stopped';
        return;
      }
      // Packets still in the kernel's current block are delivered at the buffer timeout.
      if (this.#opts.timeoutMs > 0) await new Promise((r) => setTimeout(r, this.#opts.timeoutMs + 50));
      // Last counters first: stats() on a released handle is not safe.
      this.#drops = this.#readDrops(session);
      session.close();
      this.#session = null;
      if (this.#state === 'running') this.#state = 'stopped';
      this.#log.info({ packets: this.#packets, drops: this.#drops }, 'libpcap capture stopped');
      this.#finish?.();
    })();
    return this.#closed;
  }
}

/** The driver: BPF translation and tap creation. */
const driver: TapDriver = {
  meta,
  translate: (spec: FilterSpec, resolve?: NameResolver) => toBpf(spec, resolve),
  create: (config: TapConfig, ctx: PluginContext) => new LibpcapTap(config, ctx),
};

export default driver;
