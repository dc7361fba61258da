/**
 * The relay benchmark's VMS: receives N live streams and logs, per packet, its payload key
 * and arrival time (CLOCK_MONOTONIC, bench/lib/mono-clock.ts), for the harness to pair
 * with the camera's send log (bench/relay/latency-join.ts). Nothing is decoded.
 *
 *   node dist/bench/relay/receiver.js CONFIG.json      (a ReceiverConfig)
 *
 * - `rtsp` mode: one RTSP connection per session (as VMSs do), DESCRIBE, SETUP over TCP
 *   interleaved, PLAY (bench/lib/rtsp-client.ts), sessions opened evenly over `rampMs`;
 *   the measurement window opens `settleMs` after the last PLAY answer.
 * - `udp` mode (the ffmpeg peer, which sends plain RTP with `-f rtp`): binds an even/odd
 *   port pair per session (RTP, and RTCP so ffmpeg's sender reports do not bounce),
 *   prints `PORTS [..]` for the harness to start the senders, and opens the window
 *   `settleMs` after every port has had its first packet (or `startTimeoutMs`).
 *
 * Prints `WINDOW START <ms>` and `WINDOW END <ms>` (the harness samples CPU then), keeps
 * reading for `graceMs` after the window so packets sent late in it can still arrive,
 * writes the log and prints one JSON line (ReceiverResult).
 *
 * Arrival is when this process's JavaScript handled the read, so it includes this
 * process's own event-loop delay; it is the same for the direct baseline, and the
 * event-loop delay is reported next to it.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { monoMs, monoOffsetMs } from '../lib/mono-clock.js';
import { RtspClient, interleavedChannels, mediaControlUrl, sessionId, type RtspResponse } from '../lib/rtsp-client.js';
import { Samples, percentiles, type Percentiles } from '../lib/stats.js';
import { keyA, keyB, rtpPayloadOffset } from './packet-key.js';
import { PacketLog, writeLogs } from './packet-log.js';

export interface ReceiverSession {
  /** Camera stream index (the key into the camera's send log). */
  stream: number;
  /** Tag kept in the log (e.g. 0 direct, 1 through camtap). */
  role: number;
  /** rtsp mode: the URL to play. */
  url?: string;
}

export interface ReceiverConfig {
  mode: 'rtsp' | 'udp';
  sessions: ReceiverSession[];
  rampMs: number;
  settleMs: number;
  measureMs: number;
  graceMs: number;
  startTimeoutMs: number;
  host: string;
  logFile: string;
}

export interface ReceiverResult {
  sessions: number;
  /** Sessions receiving when the window opened. */
  playing: number;
  failed: number;
  failures: Record<string, number>;
  /** Indexes (in the config) of the sessions that never received a packet. */
  silent: number[];
  /** Sessions whose connection closed or that got an RTCP BYE before the window ended. */
  endedEarly: number;
  packets: number;
  /** RTP bytes (header + payload) that arrived inside the window, in all and by session role. */
  rtpBytesInWindow: number;
  rtpBytesInWindowByRole: Record<string, number>;
  packetsInWindow: number;
  windowStartMs: number;
  windowEndMs: number;
  /** Connect to PLAY answer (rtsp), or port bound to first packet (udp), ms. */
  setupMs: Percentiles;
  rampDoneMs: number;
  cpuS: number;
  eventLoopDelayP99Ms: number | null;
  eventLoopDelayMaxMs: number | null;
}

interface State {
  cfg: ReceiverSession;
  log: PacketLog;
  playing: boolean;
  ended: boolean;
  firstAt: number;
}

function containsBye(buf: Buffer, off: number, len: number): boolean {
  let p = off;
  const end = off + len;
  while (p + 4 <= end) {
    if (buf[p + 1] === 203) return true;
    p += 4 * (buf.readUInt16BE(p + 2) + 1);
  }
  return false;
}

async function main(): Promise<void> {
  const cfg = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as ReceiverConfig;
  const offset = monoOffsetMs();
  const states: State[] = cfg.sessions.map((s) => ({ cfg: s, log: new PacketLog(), playing: false, ended: false, firstAt: -1 }));
  const failures: Record<string, number> = {};
  const fail = (why: string) => (failures[why] = (failures[why] ?? 0) + 1);
  const setup = new Samples();
  let windowStart = Number.POSITIVE_INFINITY;
  let windowEnd = Number.POSITIVE_INFINITY;
  let bytesInWindow = 0;
  const byRole: Record<string, number> = {};
  let packetsInWindow = 0;
  let packets = 0;

  const onRtp = (s: State, buf: Buffer, off: number, len: number, arrival: number): void => {
    const p = rtpPayloadOffset(buf, off, len);
    if (p < 0) return;
    let plen = off + len - p;
    if (buf[off]! & 0x20 && plen > 0) plen -= buf[off + len - 1]!;
    if (plen <= 0) return;
    s.log.push(keyA(buf, p, plen), keyB(buf, p, plen), arrival);
    packets++;
    if (arrival >= windowStart && arrival <= windowEnd) {
      bytesInWindow += len;
      byRole[s.cfg.role] = (byRole[s.cfg.role] ?? 0) + len;
      packetsInWindow++;
    }
  };

  const clients: RtspClient[] = [];
  const udps: UdpSocket[] = [];
  const t0 = monoMs();

  if (cfg.mode === 'rtsp') {
    const expect = (r: RtspResponse, what: string) => {
      if (r.status !== 200) throw new Error(`${what} ${r.status}`);
      return r;
    };
    const n = states.length;
    await Promise.all(
      states.map(async (s, i) => {
        const at = t0 + (cfg.rampMs * i) / Math.max(1, n);
        const wait = at - monoMs();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        const url = s.cfg.url!;
        const u = new URL(url);
        const started = monoMs();
        let c: RtspClient;
        try {
          c = await RtspClient.connect(Number(u.port), u.hostname);
        } catch (e) {
          fail(`connect: ${(e as Error).message}`);
          return;
        }
        clients.push(c);
        let rtpCh = 0;
        c.onFrame = (ch, buf, off, len, arrival) => {
          if (ch === rtpCh) onRtp(s, buf, off, len, arrival + offset);
          else if (ch === rtpCh + 1 && containsBye(buf, off, len)) s.ended = true;
        };
        c.socket.on('close', () => (s.ended = true));
        try {
          const d = expect(await c.request('DESCRIBE', url, { Accept: 'application/sdp' }), 'DESCRIBE');
          const su = expect(await c.request('SETUP', mediaControlUrl(d, url), { Transport: 'RTP/AVP/TCP;unicast;interleaved=0-1' }), 'SETUP');
          rtpCh = (interleavedChannels(su) ?? [0, 1])[0];
          expect(await c.request('PLAY', url, { Session: sessionId(su), Range: 'npt=0.000-' }), 'PLAY');
          s.playing = true;
          setup.push(monoMs() - started);
        } catch (e) {
          fail((e as Error).message.replace(/\d+ ms/, 'N ms'));
        }
      }),
    );
  } else {
    const ports: number[] = [];
    for (const s of states) {
      const pair = await bindPair(cfg.host);
      udps.push(pair.rtp, pair.rtcp);
      ports.push(pair.port);
      pair.rtcp.on('message', () => {});
      pair.rtp.on('message', (msg: Buffer) => {
        const arrival = monoMs();
        if (s.firstAt < 0) {
          s.firstAt = arrival;
          s.playing = true;
          setup.push(arrival - t0);
        }
        onRtp(s, msg, 0, msg.length, arrival);
      });
    }
    process.stdout.write(`PORTS ${JSON.stringify(ports)}\n`);
    const deadline = monoMs() + cfg.startTimeoutMs;
    while (monoMs() < deadline && states.some((s) => !s.playing)) await new Promise((r) => setTimeout(r, 100));
    for (const s of states) if (!s.playing) fail('no RTP arrived');
  }
  const rampDone = monoMs();
  windowStart = rampDone + cfg.settleMs;
  windowEnd = windowStart + cfg.measureMs;
  await new Promise((r) => setTimeout(r, Math.max(0, windowStart - monoMs())));
  const playing = states.filter((s) => s.playing && !s.ended).length;
  const eld = monitorEventLoopDelay({ resolution: 1 });
  eld.enable();
  const cpu0 = process.cpuUsage();
  process.stdout.write(`WINDOW START ${windowStart.toFixed(3)}\n`);
  await new Promise((r) => setTimeout(r, Math.max(0, windowEnd - monoMs())));
  process.stdout.write(`WINDOW END ${windowEnd.toFixed(3)}\n`);
  const cpu = process.cpuUsage(cpu0);
  eld.disable();
  const endedEarly = states.filter((s) => s.playing && s.ended).length;
  await new Promise((r) => setTimeout(r, cfg.graceMs));
  for (const c of clients) c.close();
  for (const u of udps) u.close();
  writeLogs(
    cfg.logFile,
    states.map((s) => ({ stream: s.cfg.stream, role: s.cfg.role, log: s.log })),
  );
  const res: ReceiverResult = {
    sessions: states.length,
    playing,
    failed: Object.values(failures).reduce((a, b) => a + b, 0),
    failures,
    silent: states.flatMap((s, i) => (s.log.length === 0 ? [i] : [])),
    endedEarly,
    packets,
    rtpBytesInWindow: bytesInWindow,
    rtpBytesInWindowByRole: byRole,
    packetsInWindow,
    windowStartMs: windowStart,
    windowEndMs: windowEnd,
    setupMs: percentiles(setup.view()),
    rampDoneMs: rampDone - t0,
    cpuS: (cpu.user + cpu.system) / 1e6,
    eventLoopDelayP99Ms: eld.count > 0 ? eld.percentile(99) / 1e6 : null,
    eventLoopDelayMaxMs: eld.count > 0 ? eld.max / 1e6 : null,
  };
  process.stdout.write(JSON.stringify(res) + '\n');
}

/** An even RTP port and the odd RTCP port above it (RFC 3550 §11). */
async function bindPair(host: string): Promise<{ rtp: UdpSocket; rtcp: UdpSocket; port: number }> {
  for (let tries = 0; tries < 100; tries++) {
    const rtp = createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
    await new Promise<void>((res, rej) => rtp.once('error', rej).bind(0, host, () => res()));
    const port = rtp.address().port;
    if (port % 2 === 0) {
      const rtcp = createSocket('udp4');
      const ok = await new Promise<boolean>((res) => {
        rtcp.once('error', () => res(false));
        rtcp.bind(port + 1, host, () => res(true));
      });
      if (ok) return { rtp, rtcp, port };
      rtcp.close();
    }
    rtp.close();
  }
  throw new Error('no even/odd UDP port pair');
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`receiver: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
