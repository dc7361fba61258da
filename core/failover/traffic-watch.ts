/**
 * Is a VMS still talking to its cameras? The capture pipeline reports, for the addresses
 * watched here, every sign of life a VMS gives on the camera network:
 *
 *   rtsp     any RTSP request it sends (keepalive GET_PARAMETER/OPTIONS, RFC 2326 §10.8,
 *            §10.1; SETUP, PLAY, TEARDOWN)
 *   rtcp-rr  an RTCP receiver report it sends (PT 201, RFC 3550 §6.4.2)
 *   tcp      an acknowledgement it sends on an RTSP connection it opened (interleaved
 *            media, RFC 2326 §10.12, is acknowledged continuously); FIN and RST do not
 *            count, nor a zero window (RFC 9293 §3.8.6: its application stopped reading)
 *
 * `observe` is on the packet path: one Map lookup by the address string the pipeline
 * already holds, a few number stores, no allocation.
 *
 * A VMS's silence is judged against its own rhythm: a VMS streaming over UDP whose only
 * signs are keepalives every 30 s is not silent after 2 s. The watch keeps the longest
 * gap between consecutive signs over its last two 5-minute windows of activity (gaps over
 * 2 minutes are outages or idle spells, not rhythm, and do not wipe it), and `isSilent`
 * waits for the larger of the configured timeout and twice that gap.
 */
import { isIPv6 } from 'node:net';
import { formatIpv6 } from '../wire/packet.js';

/**
 * `rtsp`, `rtcp-rr`, `tcp`: signs of life. `teardown`: an RTSP TEARDOWN (a sign of life
 * that also announces an orderly close). `close`: the VMS's end of an RTSP connection
 * closed (FIN or RST): not a sign of life, and with no TEARDOWN shortly before it and
 * nothing from the VMS since, the VMS process or host is gone (a killed process's
 * sockets are closed by its kernel at once).
 */
export type TrafficKind = 'rtsp' | 'rtcp-rr' | 'tcp' | 'teardown' | 'close';

/** A close this long after a TEARDOWN from the same VMS is its orderly end. */
export const ORDERLY_CLOSE_MS = 5000;
/**
 * Silence is judged only once the VMS has been watched this long: its rhythm (RTCP RRs
 * every few seconds over UDP, keepalives every timeout/2) is not known before, and a VMS
 * that just set its sessions up is not silent for sending nothing yet.
 */
export const RHYTHM_LEARN_MS = 15_000;

/** What the pipeline calls (core/capture/pipeline.ts `trafficWatch`). */
export interface TrafficObserver {
  observe(srcIp: string, kind: TrafficKind, tsMs: number): void;
}

/** Length of one of the two buckets the rhythm is kept over. */
export const CADENCE_WINDOW_MS = 300_000;
/** Gaps longer than this are outages or idle spells, not a VMS's rhythm. */
export const MAX_CADENCE_MS = 120_000;

const NEVER = Number.NEGATIVE_INFINITY;

class Entry {
  readonly names = new Set<string>();
  last = NEVER;
  lastRtsp = NEVER;
  lastRtcpRr = NEVER;
  lastTcp = NEVER;
  lastTeardown = NEVER;
  lastClose = NEVER;
  firstSeen = NEVER;
  rtsp = 0;
  rtcpRr = 0;
  tcp = 0;
  /** Longest gap in the current and the previous bucket. */
  gapCur = 0;
  gapPrev = 0;
  bucketStart = NEVER;
  constructor(readonly address: string) {}
}

/** Per-VMS view of what the watch saw (times in ms, as given to `observe`; null: never). */
export interface TrafficSeen {
  vms: string;
  address: string;
  last: number | null;
  lastRtsp: number | null;
  lastRtcpRr: number | null;
  lastTcp: number | null;
  counts: { rtsp: number; rtcpRr: number; tcp: number };
  /** Longest recent gap between signs (ms), 0 until two were seen. */
  cadenceMs: number;
}

const orNull = (v: number): number | null => (v === NEVER ? null : v);

/** The address as the pipeline writes it: IPv4 dotted quad; IPv6 per RFC 5952 (lowercase, `::` compression). */
export function canonicalAddress(address: string): string {
  const a = address.trim().replace(/^\[|\]$/g, '');
  if (!isIPv6(a)) return a;
  const bytes = Buffer.alloc(16);
  let s = a.toLowerCase().replace(/%.*$/, '');
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(s);
  if (v4) {
    const hi = ((Number(v4[1]) << 8) | Number(v4[2])).toString(16);
    const lo = ((Number(v4[3]) << 8) | Number(v4[4])).toString(16);
    s = `${s.slice(0, v4.index)}${hi}:${lo}`;
  }
  const [head, tail] = s.includes('::') ? s.split('::') : [s, null];
  const h = head ? head.split(':') : [];
  const tl = tail ? tail.split(':') : [];
  const groups = tail === null ? h : [...h, ...new Array<string>(8 - h.length - tl.length).fill('0'), ...tl];
  groups.forEach((g, i) => bytes.writeUInt16BE(parseInt(g, 16), 2 * i));
  return formatIpv6(bytes, 0);
}

export class TrafficWatch implements TrafficObserver {
  readonly #byAddr = new Map<string, Entry>();
  readonly #byName = new Map<string, Entry>();

  /** Starts watching `address` as VMS `vmsName` (several VMSs may share an address). Re-watching a name moves it. */
  watch(vmsName: string, address: string): void {
    const addr = canonicalAddress(address);
    const prev = this.#byName.get(vmsName);
    if (prev?.address === addr) return;
    if (prev) this.unwatch(vmsName);
    let e = this.#byAddr.get(addr);
    if (!e) {
      e = new Entry(addr);
      this.#byAddr.set(addr, e);
    }
    e.names.add(vmsName);
    this.#byName.set(vmsName, e);
  }

  /** Stops watching a VMS; its address is forgotten when no other VMS shares it. */
  unwatch(vmsName: string): void {
    const e = this.#byName.get(vmsName);
    if (!e) return;
    this.#byName.delete(vmsName);
    e.names.delete(vmsName);
    if (e.names.size === 0) this.#byAddr.delete(e.address);
  }

  /** The VMS names watched now. */
  watched(): string[] {
    return [...this.#byName.keys()];
  }

  /** A sign of life from `srcIp` at `tsMs` (capture time). Ignores addresses not watched. O(1), allocation-free. */
  observe(srcIp: string, kind: TrafficKind, tsMs: number): void {
    const e = this.#byAddr.get(srcIp);
    if (e === undefined) return;
    if (kind === 'close') {
      if (tsMs - e.lastTeardown > ORDERLY_CLOSE_MS && tsMs > e.lastClose) e.lastClose = tsMs;
      return;
    }
    if (kind === 'teardown') {
      if (tsMs > e.lastTeardown) e.lastTeardown = tsMs;
      kind = 'rtsp';
    }
    if (e.firstSeen === NEVER) e.firstSeen = tsMs;
    if (kind === 'rtsp') {
      e.rtsp++;
      if (tsMs > e.lastRtsp) e.lastRtsp = tsMs;
    } else if (kind === 'rtcp-rr') {
      e.rtcpRr++;
      if (tsMs > e.lastRtcpRr) e.lastRtcpRr = tsMs;
    } else {
      e.tcp++;
      if (tsMs > e.lastTcp) e.lastTcp = tsMs;
    }
    if (tsMs <= e.last) return; // older than what was seen (a second tap, reordering)
    if (e.last !== NEVER) {
      if (tsMs - e.bucketStart >= CADENCE_WINDOW_MS) {
        // Rotate. A quiet spell (an outage) rotates once: the rhythm before it is kept.
        e.gapPrev = e.gapCur;
        e.gapCur = 0;
        e.bucketStart = tsMs;
      }
      const gap = tsMs - e.last;
      if (gap <= MAX_CADENCE_MS && gap > e.gapCur) e.gapCur = gap;
    } else e.bucketStart = tsMs;
    e.last = tsMs;
  }

  /** Milliseconds since the VMS's last sign of life, or null when it was never seen (no verdict). Unknown VMS: null. */
  silentFor(vms: string, nowMs: number): number | null {
    const e = this.#byName.get(vms);
    if (!e || e.last === NEVER) return null;
    return Math.max(0, nowMs - e.last);
  }

  /**
   * Milliseconds since the VMS closed an RTSP connection without a TEARDOWN, when nothing
   * came from it after (its process or host is gone); null otherwise.
   */
  closedFor(vms: string, nowMs: number): number | null {
    const e = this.#byName.get(vms);
    if (!e || e.lastClose === NEVER || e.lastClose < e.last) return null;
    return Math.max(0, nowMs - e.lastClose);
  }

  /** The VMS's recent rhythm: the longest gap between consecutive signs (ms). */
  cadenceMs(vms: string): number {
    const e = this.#byName.get(vms);
    return e ? Math.max(e.gapCur, e.gapPrev) : 0;
  }

  /** The silence after which the VMS counts as silent: `timeoutMs`, or twice its rhythm when that is longer. */
  thresholdMs(vms: string, timeoutMs: number): number {
    return Math.max(timeoutMs, 2 * this.cadenceMs(vms));
  }

  /** Has the VMS been silent past its threshold? null when it was never seen (its traffic is not visible to camtap). */
  isSilent(vms: string, nowMs: number, timeoutMs: number): boolean | null {
    const s = this.silentFor(vms, nowMs);
    if (s === null) return null;
    if (this.closedFor(vms, nowMs) !== null) return true;
    const e = this.#byName.get(vms)!;
    // Rhythm not learnt yet: no verdict from silence alone (a close still is one).
    if (e.last - e.firstSeen < RHYTHM_LEARN_MS && s <= RHYTHM_LEARN_MS) return null;
    return s > this.thresholdMs(vms, timeoutMs);
  }

  /** Has anything been seen from `address` since `sinceMs`? (the restore check: the VMS talks to its cameras again) */
  seenSince(address: string, sinceMs: number): boolean {
    const e = this.#byAddr.get(canonicalAddress(address));
    return !!e && e.last >= sinceMs;
  }

  /** What was seen from a VMS, or null when it is not watched. */
  seen(vms: string): TrafficSeen | null {
    const e = this.#byName.get(vms);
    if (!e) return null;
    return {
      vms,
      address: e.address,
      last: orNull(e.last),
      lastRtsp: orNull(e.lastRtsp),
      lastRtcpRr: orNull(e.lastRtcpRr),
      lastTcp: orNull(e.lastTcp),
      counts: { rtsp: e.rtsp, rtcpRr: e.rtcpRr, tcp: e.tcp },
      cadenceMs: Math.max(e.gapCur, e.gapPrev),
    };
  }
}
