/**
 * Child process of the retrieve benchmark: N concurrent RTSP replay sessions over TCP
 * interleaved against a running `camtap serve`, measuring how late each RTP packet
 * arrives against the pace camtap promises (capture time / speed).
 *
 *   node dist/bench/retrieve/rtsp-load.js CONFIG.json      (a LoadConfig)
 *
 * Each session: DESCRIBE, SETUP (RTP/AVP/TCP;interleaved), PLAY with `Range: clock=a-b`,
 * then `$` frames are read and their RTP headers looked at, nothing decoded. Which
 * captured packet each frame is comes from the PLAY answer (RTP-Info seq/rtptime of the
 * first packet, Range start = its capture time to the ms) and tshark's packet table of
 * the capture (rtp-truth.ts): replay keeps sequence-number differences, so
 * `captured = first + (seq - RTP-Info seq)`; the RTP timestamp difference is checked
 * against the same table for every packet (a mismatch is counted, not measured).
 *
 * Lateness of a packet = its arrival - (the session's first arrival + (due - first
 * due) / speed), where `due` is when camtap's pacer sends it (the capture time of its
 * access unit's marker packet: the pacer holds a unit's packets until then). Also
 * reported against each packet's own capture time (the raw definition, which adds the
 * unit holding by design). Arrival is when this process read the bytes, so lateness
 * includes this client's own delays; its event-loop delay is reported next to it.
 *
 * Prints `WINDOW START` and `WINDOW END` lines when the measurement window opens and
 * closes (the harness samples the server's CPU then), then one JSON object (LoadResult).
 */
import { readFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { RtspClient, clockTime, mediaControlUrl, interleavedChannels, rangeClockStartNs, rtpInfo, sessionId, type RtspResponse } from '../lib/rtsp-client.js';
import { dueTimes, loadTruth, type TruthStream } from './rtp-truth.js';

export interface LoadSession {
  /** `/replay/<stream id>` */
  path: string;
  /** The stream's captured SSRC (key into the truth table). */
  ssrc: number;
  startNs: string;
  endNs: string;
}

export interface LoadConfig {
  port: number;
  truthFile: string;
  speed: number;
  /** Sessions set up on one RTSP connection (interleaved channels 0-1, 2-3, ...). */
  sessionsPerConnection: number;
  /** Connections are opened evenly over this time. */
  rampMs: number;
  /** Wait after the last session started playing before measuring. */
  settleMs: number;
  measureMs: number;
  sessions: LoadSession[];
}

export interface LoadResult {
  sessions: number;
  connections: number;
  /** Sessions playing when the measurement window opened. */
  playing: number;
  failed: number;
  failures: Record<string, number>;
  /** Sessions whose connection closed or whose BYE came before the window ended. */
  endedEarly: number;
  /** Packets inside the window (lateness measured on these). */
  packets: number;
  /** Packets whose RTP timestamp did not match the tshark table at the mapped position. */
  mappingMismatches: number;
  /** Sessions whose first packet could not be found in the tshark table. */
  unmapped: number;
  /** Lateness vs the access unit's due time, ms. */
  lateness: Percentiles;
  /** Lateness vs the packet's own capture time, ms (includes the access-unit holding by design). */
  latenessVsCapture: Percentiles;
  /** The worst session's p99 lateness (vs due time), ms. */
  worstSessionP99: number | null;
  /** RTP bytes (without the 4-byte `$` headers) received in the window, as Mbit/s. */
  receivedMbps: number;
  windowMs: number;
  /** Connect (or the previous session's PLAY answer on the same connection) to PLAY answer, ms. */
  setupMs: Percentiles;
  /** The largest lateness in each second of the window, ms (shows whether lateness is spread or in bursts). */
  perSecondMaxLateness: Array<number | null>;
  rampDoneMs: number;
  clientCpuS: number;
  clientEventLoopDelayP99Ms: number | null;
  clientEventLoopDelayMaxMs: number | null;
}

export interface Percentiles {
  p50: number | null;
  p90: number | null;
  p99: number | null;
  p999: number | null;
  max: number | null;
}

export function percentiles(v: Float64Array): Percentiles {
  if (v.length === 0) return { p50: null, p90: null, p99: null, p999: null, max: null };
  const s = Float64Array.from(v).sort();
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
  return { p50: q(0.5), p90: q(0.9), p99: q(0.99), p999: q(0.999), max: s[s.length - 1]! };
}

/** A growable Float64Array. */
class Samples {
  a = new Float64Array(1 << 16);
  n = 0;
  push(x: number): void {
    if (this.n === this.a.length) {
      const b = new Float64Array(this.a.length * 2);
      b.set(this.a);
      this.a = b;
    }
    this.a[this.n++] = x;
  }
  view(): Float64Array {
    return this.a.subarray(0, this.n);
  }
}

interface SessionState {
  cfg: LoadSession;
  truth: TruthStream | null;
  due: Float64Array | null;
  playing: boolean;
  ended: boolean;
  seqBase: number;
  tsBase: number;
  /** Index into the truth arrays of the first packet; -1 when unmapped. */
  firstIdx: number;
  /** Offset (in sequence numbers) of the last packet from the first. */
  extOff: number;
  lastSeq: number;
  firstArrival: number;
  firstDue: number;
  firstCap: number;
  seen: number;
  late: Samples;
}

const dueCache = new Map<number, { dueMs: Float64Array; auStart: Uint8Array }>();

async function main(): Promise<void> {
  const cfg = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as LoadConfig;
  const truth = loadTruth(cfg.truthFile);
  if (!truth) throw new Error(`no truth table at ${cfg.truthFile}`);
  const speed = cfg.speed;
  const failures: Record<string, number> = {};
  const fail = (why: string) => (failures[why] = (failures[why] ?? 0) + 1);
  let mappingMismatches = 0;
  let unmapped = 0;
  const lateAll = new Samples();
  const rawAll = new Samples();
  const setup = new Samples();
  const perSecondMax: number[] = [];
  let bytesInWindow = 0;
  let windowStart = Number.POSITIVE_INFINITY;
  let windowEnd = Number.POSITIVE_INFINITY;
  const states: SessionState[] = [];
  const clients: RtspClient[] = [];

  const onRtp = (s: SessionState, buf: Buffer, off: number, len: number, arrival: number): void => {
    if (len < 12 || !s.playing || s.firstIdx < 0) return;
    const t = s.truth!;
    const seq = buf.readUInt16BE(off + 2);
    if (s.seen === 0) s.extOff = (seq - s.seqBase) & 0xffff;
    else {
      const d = (seq - s.lastSeq) & 0xffff;
      s.extOff += d < 32768 ? d : d - 65536;
    }
    s.lastSeq = seq;
    const k = s.firstIdx + s.extOff;
    if (k < 0 || k >= t.count || t.marker[k] === 255) {
      mappingMismatches++;
      return;
    }
    const ts = buf.readUInt32BE(off + 4);
    if (((ts - s.tsBase) >>> 0) !== ((t.rtpTs[k]! - t.rtpTs[s.firstIdx]!) >>> 0)) {
      mappingMismatches++;
      return;
    }
    if (s.seen++ === 0) {
      s.firstArrival = arrival;
      s.firstDue = s.due![k]!;
      s.firstCap = t.timeMs[k]!;
    }
    if (arrival < windowStart || arrival > windowEnd) return;
    const el = arrival - s.firstArrival;
    const late = el - (s.due![k]! - s.firstDue) / speed;
    lateAll.push(late);
    const sec = Math.floor((arrival - windowStart) / 1000);
    if (late > (perSecondMax[sec] ?? Number.NEGATIVE_INFINITY)) perSecondMax[sec] = late;
    s.late.push(late);
    rawAll.push(el - (t.timeMs[k]! - s.firstCap) / speed);
    bytesInWindow += len;
  };

  const startSession = async (c: RtspClient, s: SessionState, channel: number, byChannel: Map<number, SessionState>): Promise<void> => {
    const url = `rtsp://127.0.0.1:${cfg.port}${s.cfg.path}?speed=${speed}`;
    const expect = (r: RtspResponse, what: string) => {
      if (r.status !== 200) throw new Error(`${what} ${r.status}`);
      return r;
    };
    const d = expect(await c.request('DESCRIBE', url, { Accept: 'application/sdp' }), 'DESCRIBE');
    const trackUrl = mediaControlUrl(d, url);
    const su = expect(await c.request('SETUP', trackUrl, { Transport: `RTP/AVP/TCP;unicast;interleaved=${channel}-${channel + 1}` }), 'SETUP');
    const ch = interleavedChannels(su) ?? [channel, channel + 1];
    const sid = sessionId(su);
    byChannel.set(ch[0], s);
    byChannel.set(ch[1], s);
    const range = `clock=${clockTime(BigInt(s.cfg.startNs))}-${clockTime(BigInt(s.cfg.endNs))}`;
    // Mapped synchronously on the answer: the first frames may follow it in the same read.
    const p = await c.request('PLAY', url, { Session: sid, Range: range }, { onAnswer: (r) => r.status === 200 && mapFirst(s, r) });
    expect(p, 'PLAY');
    if (!s.playing) throw new Error('PLAY without RTP-Info/Range');
  };

  /** From the PLAY answer: the first packet's place in the truth table (an access-unit start captured in the millisecond the Range names). */
  const mapFirst = (s: SessionState, r: RtspResponse): void => {
    const info = rtpInfo(r);
    const firstNs = rangeClockStartNs(r);
    if (!info || firstNs === null) return;
    s.seqBase = info.seq;
    s.tsBase = info.rtptime;
    s.firstIdx = -1;
    const t = s.truth;
    if (t) {
      const ms = Number(firstNs / 1_000_000n);
      const { auStart } = dueCache.get(t.ssrc)!;
      let lo = 0;
      let hi = t.count;
      while (lo < hi) {
        const m = (lo + hi) >> 1;
        if (!(t.timeMs[m]! >= ms)) lo = m + 1; // NaN (missing) sorts as "before"
        else hi = m;
      }
      for (let k = lo; k < t.count && t.timeMs[k]! < ms + 1; k++)
        if (auStart[k]) {
          s.firstIdx = k;
          break;
        }
    }
    if (s.firstIdx < 0) unmapped++;
    s.playing = true;
  };

  const perConn = Math.max(1, cfg.sessionsPerConnection);
  const nConn = Math.ceil(cfg.sessions.length / perConn);
  for (const sc of cfg.sessions) {
    const t = truth.streams.get(sc.ssrc >>> 0) ?? null;
    if (t && !dueCache.has(t.ssrc)) dueCache.set(t.ssrc, dueTimes(t));
    states.push({ cfg: sc, truth: t, due: t ? dueCache.get(t.ssrc)!.dueMs : null, playing: false, ended: false, seqBase: 0, tsBase: 0, firstIdx: -1, extOff: 0, lastSeq: 0, firstArrival: 0, firstDue: 0, firstCap: 0, seen: 0, late: new Samples() });
  }

  const t0 = performance.now();
  const starts: Array<Promise<void>> = [];
  for (let i = 0; i < nConn; i++) {
    const group = states.slice(i * perConn, (i + 1) * perConn);
    const at = t0 + (cfg.rampMs * i) / nConn;
    starts.push(
      (async () => {
        const wait = at - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        let c: RtspClient;
        try {
          c = await RtspClient.connect(cfg.port);
        } catch (e) {
          for (const _ of group) fail(`connect: ${(e as Error).message}`);
          return;
        }
        clients.push(c);
        const byChannel = new Map<number, SessionState>();
        c.onFrame = (channel, buf, off, len, arrival) => {
          const s = byChannel.get(channel);
          if (!s) return;
          if ((channel & 1) === 0) onRtp(s, buf, off, len, arrival);
          else if (len >= 8 && containsBye(buf, off, len)) s.ended = true;
        };
        c.socket.on('close', () => {
          for (const s of group) s.ended = true;
        });
        for (const [j, s] of group.entries()) {
          try {
            const t = performance.now();
            await startSession(c, s, 2 * j, byChannel);
            setup.push(performance.now() - t);
          } catch (e) {
            fail((e as Error).message.replace(/\d+ ms/, 'N ms'));
          }
        }
      })(),
    );
  }
  await Promise.all(starts);
  const rampDone = performance.now();
  windowStart = rampDone + cfg.settleMs;
  windowEnd = windowStart + cfg.measureMs;
  await new Promise((r) => setTimeout(r, Math.max(0, windowStart - performance.now())));
  const playing = states.filter((s) => s.playing && !s.ended).length;
  const eld = monitorEventLoopDelay({ resolution: 1 });
  eld.enable();
  const cpu0 = process.cpuUsage();
  // The harness samples the server's CPU on these lines.
  process.stdout.write('WINDOW START\n');
  await new Promise((r) => setTimeout(r, Math.max(0, windowEnd - performance.now())));
  process.stdout.write('WINDOW END\n');
  const cpu = process.cpuUsage(cpu0);
  eld.disable();
  const endedEarly = states.filter((s) => s.playing && s.ended).length;
  for (const c of clients) c.close();

  let worst: number | null = null;
  for (const s of states) {
    const p = percentiles(s.late.view()).p99;
    if (p !== null && (worst === null || p > worst)) worst = p;
  }
  const res: LoadResult = {
    sessions: states.length,
    connections: nConn,
    playing,
    failed: Object.values(failures).reduce((a, b) => a + b, 0),
    failures,
    endedEarly,
    packets: lateAll.n,
    mappingMismatches,
    unmapped,
    lateness: percentiles(lateAll.view()),
    latenessVsCapture: percentiles(rawAll.view()),
    worstSessionP99: worst,
    receivedMbps: (bytesInWindow * 8) / (cfg.measureMs / 1000) / 1e6,
    windowMs: cfg.measureMs,
    setupMs: percentiles(setup.view()),
    perSecondMaxLateness: Array.from(perSecondMax, (x) => x ?? null),
    rampDoneMs: rampDone - t0,
    clientCpuS: (cpu.user + cpu.system) / 1e6,
    clientEventLoopDelayP99Ms: eld.count > 0 ? eld.percentile(99) / 1e6 : null,
    clientEventLoopDelayMaxMs: eld.count > 0 ? eld.max / 1e6 : null,
  };
  process.stdout.write(JSON.stringify(res) + '\n');
}

/** Whether an RTCP compound packet (RFC 3550 §6.1) holds a BYE (PT 203). */
function containsBye(buf: Buffer, off: number, len: number): boolean {
  let p = off;
  const end = off + len;
  while (p + 4 <= end) {
    if (buf[p + 1] === 203) return true;
    p += 4 * (buf.readUInt16BE(p + 2) + 1);
  }
  return false;
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`rtsp-load: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
