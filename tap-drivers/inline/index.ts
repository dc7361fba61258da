/**
 * The inline tap: what camtap relays itself (RTSP proxy legs, HTTP/ONVIF proxy exchanges,
 * upstream camera sessions) enters the capture pipeline like captured traffic, so the
 * recording equals what the VMS received. The relaying code reports through the tap's
 * {@link InlineRecorder} (`tap.recorder`); the tap synthesizes the IPv4/IPv6 + TCP/UDP
 * packets a capture would have held (LINKTYPE_RAW, valid checksums, TTL 64) and feeds
 * them to the sink its `open()` was given, which stores and indexes them like any tap's.
 *
 * - TCP: `tcp(client, server)` records the handshake at once; each `fromClient` /
 *   `fromServer` call becomes segments of at most 1448 (IPv4) / 1428 (IPv6) payload
 *   bytes, PSH on the last one of the call; `close()` records a FIN each way.
 * - UDP: one datagram per `udp()` call; a payload that no single datagram can carry
 *   (> 65507 bytes over IPv4, > 65527 over IPv6) is dropped and counted.
 * - Time: the wall clock when the call was made (tap-drivers/inline/clock.ts).
 * - Before `open()` and after `close()` frames are dropped and counted in `drops`
 *   (TCP sequence numbers still advance, as on a wire nobody was watching).
 * - Filter: the tap's FilterSpec as a predicate on the endpoints (core/capture/filter.ts
 *   `toPredicate`, the same as file taps; the `raw` BPF clause is ignored). Frames it
 *   rejects are neither delivered nor counted as drops (`counters.filtered`).
 * - Every recorder call is synchronous and never throws: bad endpoints, non-Buffer data
 *   and a throwing sink are counted (`counters`) and the first of each kind is logged.
 *
 * Options (TapConfig.options):
 * - `onRecorder(recorder, tap)`: called once when the tap is created, for relaying code
 *   that starts the tap through the TapRunner (which does not hand out its Tap objects).
 * - `resolve`: inventory lookup for `cameras` / `vms` in the filter (given by the runner).
 */
import { toBpf, toPredicate, type FilterMeta, type FilterPredicate, type NameResolver } from '../../core/capture/filter.js';
import type { FilterSpec } from '../../core/contracts/filter.js';
import { LinkType, type FrameSink, type TapFrame } from '../../core/contracts/frame.js';
import type { Endpoint, InlineRecorder, TcpRecording } from '../../core/contracts/inline.js';
import type { Logger } from '../../core/contracts/logger.js';
import type { PluginContext, PluginMeta, Tap, TapConfig, TapDriver, TapStatus } from '../../core/contracts/plugin.js';
import { CamtapError } from '../../core/errors.js';
import { AddressCache, mappedV6, type IpAddr } from './addresses.js';
import { wallClock, type WallTime } from './clock.js';
import { FrameWriter, MAX_UDP_PAYLOAD_V4, MAX_UDP_PAYLOAD_V6, PROTO_TCP, PROTO_UDP, TCP_MSS_V4, TCP_MSS_V6, TCP_SEGMENT_V4, TCP_SEGMENT_V6 } from './frames.js';
import { TcpConnection, type TcpSegmentOut } from './tcp-recording.js';

export type { Endpoint, InlineRecorder, TcpRecording } from '../../core/contracts/inline.js';

export const meta: PluginMeta = {
  name: 'inline',
  kind: 'tap-driver',
  version: '0.1.0',
  core: '^0.1.0',
  description: 'Traffic camtap relays itself (RTSP/HTTP proxies), recorded as if captured on the wire',
};

/** What the tap counted besides the TapStatus numbers (every drop is in exactly one of the drop reasons). */
export interface InlineCounters {
  /** Frames delivered to the sink. */
  packets: number;
  bytes: number;
  /** Frames not delivered: the sum of the reasons below. */
  drops: number;
  /** Before open() or after close(). */
  notOpen: number;
  /** UDP payloads too large for one datagram. */
  oversize: number;
  /** Bad endpoints (not an IP address, port not 0..65535) or data that is not a Buffer. */
  invalid: number;
  /** Writes on a TcpRecording after its close(). */
  afterClose: number;
  /** The sink threw. */
  sinkErrors: number;
  /** Rejected by the tap's filter (not a drop: the filter asked for it). */
  filtered: number;
}

export interface InlineOptions {
  onRecorder?: (recorder: InlineRecorder, tap: InlineTap) => void;
  resolve?: NameResolver;
}

function tapError(tap: string, reason: string): CamtapError {
  return new CamtapError('CAMTAP_ERR_TAP', { tap, reason });
}

/** Reads and checks the driver options; throws CAMTAP_ERR_TAP naming the option. */
export function inlineOptions(tap: string, o: Record<string, unknown>): InlineOptions {
  const out: InlineOptions = {};
  if (o.onRecorder !== undefined) {
    if (typeof o.onRecorder !== 'function') throw tapError(tap, 'options.onRecorder: must be a function');
    out.onRecorder = o.onRecorder as InlineOptions['onRecorder'];
  }
  if (o.resolve !== undefined) {
    if (typeof o.resolve !== 'function') throw tapError(tap, 'options.resolve: must be a function');
    out.resolve = o.resolve as NameResolver;
  }
  return out;
}

function isPort(p: unknown): p is number {
  return typeof p === 'number' && Number.isInteger(p) && p >= 0 && p <= 65535;
}

/** Whether the spec has anything a predicate applies (`raw` is BPF only). */
function hasFilter(spec: FilterSpec | undefined): spec is FilterSpec {
  if (!spec || typeof spec !== 'object') return false;
  return Object.entries(spec).some(([k, v]) => k !== 'raw' && v !== undefined);
}

/** What `camtap taps explain` shows: the predicate, as the BPF it is equivalent to. */
export function describeFilter(spec: FilterSpec, resolve?: NameResolver): string {
  const { raw, ...rest } = spec ?? {};
  const bpf = hasFilter(rest) ? toBpf(rest, resolve, { vlan: false }) : '';
  const ignored = raw ? `; raw "${raw}" ignored` : '';
  if (bpf === '') return `inline (relayed traffic; no filter${ignored})`;
  return `inline (relayed traffic; filter applied as a predicate: ${bpf}${ignored})`;
}

export class InlineTap implements Tap {
  /** The relaying code's handle: every call records at once into the sink of open(). */
  readonly recorder: InlineRecorder;
  readonly options: InlineOptions;
  readonly #config: TapConfig;
  readonly #log: Logger;
  #state: TapStatus['state'] = 'idle';
  #error: string | undefined;
  #filterText: string | undefined;
  #sink: FrameSink | null = null;
  #pred: FilterPredicate | null = null;
  /** Bumped when the predicate changes, so connections recompute their cached verdicts. */
  #filterEpoch = 0;
  readonly #fm: FilterMeta = { ipVersion: 0, srcAddr: '', dstAddr: '', protocol: 0, sport: 0, dport: 0 };
  readonly #counters: InlineCounters = { packets: 0, bytes: 0, drops: 0, notOpen: 0, oversize: 0, invalid: 0, afterClose: 0, sinkErrors: 0, filtered: 0 };
  readonly #logged = new Set<string>();
  readonly #addrs = new AddressCache();
  readonly #writer = new FrameWriter();
  readonly #now: WallTime = { sec: 0, nsec: 0 };
  readonly #frame: TapFrame;
  readonly #tcpOut: TcpSegmentOut;
  #release: (() => void) | null = null;
  #closed: Promise<void> | null = null;

  constructor(config: TapConfig, ctx: PluginContext) {
    this.#config = config;
    this.options = inlineOptions(config.name, config.options ?? {});
    this.#log = ctx.log.child({ tap: config.name, driver: 'inline' });
    this.#frame = { tapId: config.id, tsSec: 0, tsNsec: 0, linkType: LinkType.RAW, buf: this.#writer.buf, off: 0, capLen: 0, origLen: 0 };
    this.#tcpOut = {
      stamp: () => wallClock.now(this.#now),
      segment: (conn, fromClient, seq, ack, flags, mss, data, off, len) => this.#tcpSegment(conn, fromClient, seq, ack, flags, mss, data, off, len),
      dropped: (n) => this.#drop(n, 'afterClose'),
    };
    this.recorder = {
      tcp: (client, server) => this.#tcp(client, server),
      udp: (src, dst, payload) => this.#udp(src, dst, payload),
    };
    if (this.options.onRecorder) this.options.onRecorder(this.recorder, this);
  }

  /** Counters by reason (a copy). */
  get counters(): InlineCounters {
    return { ...this.#counters };
  }

  status(): TapStatus {
    const c = this.#counters;
    const s: TapStatus = { state: this.#state, packets: c.packets, bytes: c.bytes, drops: c.drops };
    if (this.#error !== undefined) s.error = this.#error;
    if (this.#filterText !== undefined) s.filter = this.#filterText;
    return s;
  }

  async open(sink: FrameSink, signal: AbortSignal): Promise<void> {
    if (this.#state !== 'idle') throw tapError(this.#config.name, `cannot open: tap is ${this.#state}`);
    if (this.#closed || signal.aborted) {
      this.#state = 'stopped';
      return;
    }
    const spec = (this.#config.filter ?? {}) as FilterSpec;
    try {
      this.#filterText = describeFilter(spec, this.options.resolve);
      this.#pred = hasFilter(spec) ? toPredicate(spec, this.options.resolve) : null;
    } catch (e) {
      this.#state = 'failed';
      this.#error = e instanceof Error ? e.message : String(e);
      throw e;
    }
    this.#filterEpoch++;
    this.#sink = sink;
    this.#state = 'running';
    const onAbort = () => void this.close();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      await new Promise<void>((resolve) => {
        this.#release = resolve;
      });
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  close(): Promise<void> {
    if (this.#closed) return this.#closed;
    this.#sink = null;
    if (this.#state === 'idle' || this.#state === 'running' || this.#state === 'opening') this.#state = 'stopped';
    this.#release?.();
    this.#release = null;
    this.#closed = Promise.resolve();
    return this.#closed;
  }

  // ------------------------------------------------------------------ recorder

  #tcp(client: Endpoint, server: Endpoint): TcpRecording {
    let c = this.#endpoint(client);
    let s = this.#endpoint(server);
    if (c === null || s === null) {
      this.#drop(3, 'invalid', `bad TCP endpoint ${JSON.stringify(c === null ? client : server)}`);
      // Inert, but what it is given still shows in the counters.
      const invalid = (data: Buffer) => this.#drop(Buffer.isBuffer(data) && data.length > 0 ? Math.ceil(data.length / TCP_SEGMENT_V4) : 1, 'invalid');
      return { fromClient: invalid, fromServer: invalid, close: () => {} };
    }
    if (c.version !== s.version) {
      // One end IPv4, the other IPv6: on one socket that is an IPv4-mapped address.
      c = mappedV6(c);
      s = mappedV6(s);
    }
    const v4 = c.version === 4;
    return new TcpConnection(c, client.port, s, server.port, this.#tcpOut, v4 ? TCP_SEGMENT_V4 : TCP_SEGMENT_V6, v4 ? TCP_MSS_V4 : TCP_MSS_V6);
  }

  #tcpSegment(conn: TcpConnection, fromClient: boolean, seq: number, ack: number, flags: number, mss: number, data: Buffer | null, off: number, len: number): void {
    if (this.#sink === null) {
      this.#drop(1, 'notOpen');
      return;
    }
    if (this.#pred !== null) {
      if (conn.keepEpoch !== this.#filterEpoch) {
        conn.keepC2S = this.#keep(conn.client, conn.clientPort, conn.server, conn.serverPort, PROTO_TCP);
        conn.keepS2C = this.#keep(conn.server, conn.serverPort, conn.client, conn.clientPort, PROTO_TCP);
        conn.keepEpoch = this.#filterEpoch;
      }
      if (!(fromClient ? conn.keepC2S : conn.keepS2C)) {
        this.#counters.filtered++;
        return;
      }
    }
    const len0 = fromClient
      ? this.#writer.tcp(conn.client, conn.clientPort, conn.server, conn.serverPort, seq, ack, flags, mss, data, off, len)
      : this.#writer.tcp(conn.server, conn.serverPort, conn.client, conn.clientPort, seq, ack, flags, mss, data, off, len);
    this.#deliver(len0);
  }

  #udp(src: Endpoint, dst: Endpoint, payload: Buffer): void {
    let a = this.#endpoint(src);
    let b = this.#endpoint(dst);
    if (a === null || b === null) {
      this.#drop(1, 'invalid', `bad UDP endpoint ${JSON.stringify(a === null ? src : dst)}`);
      return;
    }
    if (!Buffer.isBuffer(payload)) {
      this.#drop(1, 'invalid', 'UDP payload is not a Buffer');
      return;
    }
    if (a.version !== b.version) {
      a = mappedV6(a);
      b = mappedV6(b);
    }
    const len = payload.length;
    if (len > (a.version === 4 ? MAX_UDP_PAYLOAD_V4 : MAX_UDP_PAYLOAD_V6)) {
      this.#drop(1, 'oversize', `UDP payload of ${len} bytes does not fit one IPv${a.version} datagram`);
      return;
    }
    if (this.#sink === null) {
      this.#drop(1, 'notOpen');
      return;
    }
    if (this.#pred !== null && !this.#keep(a, src.port, b, dst.port, PROTO_UDP)) {
      this.#counters.filtered++;
      return;
    }
    wallClock.now(this.#now);
    this.#deliver(this.#writer.udp(a, src.port, b, dst.port, payload, 0, len));
  }

  // ------------------------------------------------------------------ internals

  #endpoint(e: Endpoint): IpAddr | null {
    if (e === null || typeof e !== 'object' || !isPort(e.port)) return null;
    return this.#addrs.get(e.ip);
  }

  #keep(src: IpAddr, sport: number, dst: IpAddr, dport: number, protocol: number): boolean {
    const m = this.#fm;
    m.ipVersion = src.version;
    m.srcAddr = src.text;
    m.dstAddr = dst.text;
    m.protocol = protocol;
    m.sport = sport;
    m.dport = dport;
    try {
      return this.#pred!(m);
    } catch {
      return false;
    }
  }

  /** Hands the frame in the scratch buffer (`buf[0, len)`) to the sink. */
  #deliver(len: number): void {
    const sink = this.#sink;
    if (sink === null) {
      this.#drop(1, 'notOpen');
      return;
    }
    const f = this.#frame;
    f.tsSec = this.#now.sec;
    f.tsNsec = this.#now.nsec;
    f.capLen = len;
    f.origLen = len;
    try {
      sink(f);
    } catch (e) {
      this.#error = e instanceof Error ? e.message : String(e);
      this.#drop(1, 'sinkErrors', `sink threw: ${this.#error}`);
      return;
    }
    this.#counters.packets++;
    this.#counters.bytes += len;
  }

  #drop(n: number, reason: 'notOpen' | 'oversize' | 'invalid' | 'afterClose' | 'sinkErrors', detail?: string): void {
    this.#counters.drops += n;
    this.#counters[reason] += n;
    if (detail !== undefined && !this.#logged.has(reason)) {
      // The first of each kind only: a misbehaving caller must not flood the log per packet.
      this.#logged.add(reason);
      this.#log.warn({ reason }, `inline tap dropped a frame: ${detail}`);
    }
  }
}

/** The driver: translate() describes the predicate the tap applies itself. */
const driver: TapDriver = {
  meta,
  translate: (spec: FilterSpec, resolve?: NameResolver) => describeFilter(spec, resolve),
  create: (config: TapConfig, ctx: PluginContext) => new InlineTap(config, ctx),
};

export default driver;
