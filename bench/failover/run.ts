/**
 * Failover benchmark (issue 5): what a VMS's death costs in video, per mode, with real
 * peers in network namespaces (bench/failover/netns.ts): the lab GStreamer camera, ffmpeg
 * as the VMS, and `camtap serve` (the built CLI) on a third host.
 *
 *   passive-udp   the VMS pulls the camera over UDP; camtap taps the link (its tcpdump tap
 *                 on a hub port) and, when the VMS dies, replays the captured set-up from
 *                 its own address and records (the topology of test/e2e/failover-netns.test.ts)
 *   passive-tcp   the same, the VMS pulling over TCP interleaved
 *   inline        the VMS pulls the camera through camtap's inline gateway
 *                 (rtsp://camtap:8554/cam1); when the VMS dies camtap keeps the camera
 *                 session and its recording (serve.holdOnVmsLoss)
 *
 * Each run: fresh camera, camtap and data directory; the VMS plays, then is killed with
 * SIGKILL. Measured, from captures read by tshark (never from camtap's own figures):
 *   (a) detection: the failover record's start (inline: camtap's "VMS lost" log line) − kill
 *   (b) passive: first RTP packet from the camera to camtap after the kill − kill;
 *       inline: the largest gap in the camera -> camtap RTP around the kill
 *   (c) video lost: frames the camera would have delivered that nobody recorded: passive,
 *       (first frame end to camtap after the kill − last frame end the VMS got before it)
 *       × fps − 1; inline, the same over every break in the camera -> camtap RTP sequence
 *       around the VMS's last frame to the end of the window (an unbroken sequence loses none).
 *
 *   npm run build && npm run bench:failover [-- --runs 5 --modes passive-udp,passive-tcp,inline --record-s 8 --no-docs]
 *
 * Root only (network namespaces). Kills only the processes it started, by PID. Not a
 * test: prints PASS/MISS per target and exits non-zero only when a run could not be made.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { describeMachine } from '../lib/machine.js';
import { mdTable, num, replaceSection } from '../lib/markdown.js';
import { percentiles } from '../lib/stats.js';
import { makeNet, netnsMissing, type Net } from './netns.js';
import { Proc, run, sleep, stopAll } from './proc.js';
import { largestGap, readRtp, sequenceBreaks, type RtpSeen } from './wire.js';

/** The issue's targets. */
const TARGETS = {
  /** Detection by traffic cessation within 2 s. */
  detectionMs: 2000,
  /** Passive mode loses at most the detection time plus 1 s. */
  passiveExtraMs: 1000,
  /** Inline mode loses no frame. */
  inlineLostFrames: 0,
};

type Mode = 'passive-udp' | 'passive-tcp' | 'inline';
const MODES: Mode[] = ['passive-udp', 'passive-tcp', 'inline'];

function repoRoot(): string {
  for (let d = path.dirname(fileURLToPath(import.meta.url)); d !== path.dirname(d); d = path.dirname(d)) {
    const pj = path.join(d, 'package.json');
    if (existsSync(pj) && (JSON.parse(readFileSync(pj, 'utf8')) as { name?: string }).name === 'camtap') return d;
  }
  throw new Error('cannot find the camtap repository root above ' + fileURLToPath(import.meta.url));
}

const ROOT = repoRoot();
const CLI = path.join(ROOT, 'dist/core/cli.js');
const CAMERA_PY = path.join(ROOT, 'test/helpers/camera.py');
const PYTHON = '/usr/bin/python3';
const { values: argv } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    modes: { type: 'string', default: MODES.join(',') },
    'record-s': { type: 'string', default: '8' },
    'settle-s': { type: 'string', default: '3' },
    fps: { type: 'string', default: '25' },
    'inline-vms': { type: 'string', default: 'tcp' },
    'bench-dir': { type: 'string' },
    'no-docs': { type: 'boolean', default: false },
    /** Inline with serve.holdOnVmsLoss off: a control that shows what the method sees when the camera session is closed (never written to the docs). */
    'no-hold': { type: 'boolean', default: false },
  },
});
const RUNS = Math.max(1, Number(argv.runs));
const RECORD_MS = Number(argv['record-s']) * 1000;
const SETTLE_MS = Number(argv['settle-s']) * 1000;
const FPS = Number(argv.fps);
const INLINE_VMS = argv['inline-vms'] === 'udp' ? 'udp' : 'tcp';
const modes = argv.modes!.split(',').map((m) => m.trim()) as Mode[];
for (const m of modes) if (!MODES.includes(m)) throw new Error(`--modes: ${m} is not one of ${MODES.join(', ')}`);
const BENCH_DIR = path.resolve(argv['bench-dir'] ?? process.env.BENCH_DIR ?? '/tmp/camtap-bench');
if (BENCH_DIR === ROOT || BENCH_DIR.startsWith(ROOT + path.sep)) throw new Error(`--bench-dir ${BENCH_DIR} is inside the repository`);
const WORK = path.join(BENCH_DIR, 'failover');

interface RunResult {
  mode: Mode;
  rep: number;
  /** ms since the epoch. */
  killedAt: number;
  /** 1-minute load average when the VMS was killed. */
  load1: number;
  /** (a) ms from the kill to the failover record's start (inline: the hold). */
  detectionMs: number | null;
  /** (b) passive: ms from the kill to the first RTP packet to camtap; inline: the largest gap in the camera -> camtap RTP. */
  firstPacketMs: number | null;
  /** (c) video lost, ms and frames. */
  lostMs: number | null;
  lostFrames: number | null;
  /** Last frame end the VMS received before the kill, first one camtap got after (ms since the epoch). */
  lastVmsFrameAt: number | null;
  firstCamtapFrameAt: number | null;
  /** RTP packets the camera sent camtap (tshark) and the packets camtap's catalog holds for them. */
  sentToCamtap: number;
  recordedByCamtap: number | null;
  /** Frames per second the camera actually delivered to the VMS over the 2 s before the kill (marker bits). */
  measuredFps: number | null;
  /** Outcome of the take-over (passive) or the hold (inline). */
  ok: boolean;
  note: string;
}

function log(msg: string): void {
  process.stdout.write(`${new Date().toISOString().slice(11, 23)} ${msg}\n`);
}

/** `time` of the first camtap JSON log line whose msg contains `text`, or null. */
function logTime(camtapLog: string, text: string): number | null {
  for (const line of camtapLog.split('\n')) {
    if (!line.startsWith('{') || !line.includes(text)) continue;
    try {
      const j = JSON.parse(line) as { time?: number; msg?: string };
      if (typeof j.time === 'number' && j.msg?.includes(text)) return j.time;
    } catch {
      /* a partial line */
    }
  }
  return null;
}

function passiveConfig(net: Net, data: string): string {
  return [
    `dataDir: ${data}`,
    'taps:',
    '  - name: span',
    '    driver: tcpdump',
    '    options: { interface: eth0 }',
    'serve: { rtspPort: 8554, httpPort: 8080, host: 0.0.0.0 }',
    'cameras:',
    `  - { name: cam1, address: ${net.camIp} }`,
    'vms:',
    `  - { name: vms1, address: ${net.vmsIp} }`,
    'failover:',
    '  auto: true',
    `  host: ${net.hostIp}`,
    '  trafficTimeoutMs: 2000',
    '  vms:',
    `    - { name: vms1, address: ${net.vmsIp} }`,
    '',
  ].join('\n');
}

function inlineConfig(net: Net, data: string): string {
  return [
    `dataDir: ${data}`,
    `serve: { rtspPort: 8554, httpPort: 8080, host: 0.0.0.0, holdOnVmsLoss: ${!argv['no-hold']} }`,
    'cameras:',
    `  - { name: cam1, address: ${net.camIp}, url: "rtsp://${net.camIp}:8554/stream1", transport: tcp }`,
    '',
  ].join('\n');
}

async function until<T>(what: string, ms: number, fn: () => Promise<T | null | false | undefined> | T | null | false | undefined, everyMs = 500): Promise<NonNullable<T>> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out (${ms} ms) waiting until ${what}`);
    await sleep(everyMs);
  }
}

function tcpdump(net: Net, ns: string, name: string, out: string, filter: string): Proc {
  // --immediate-mode: with TPACKET_V3 a partly filled block is lost when tcpdump is stopped.
  return net.spawnIn(ns, name, 'tcpdump', ['-i', 'eth0', '-U', '-n', '--immediate-mode', '-w', out, filter]);
}

async function oneRun(net: Net, mode: Mode, rep: number): Promise<RunResult> {
  const dir = path.join(WORK, `${mode}-${rep}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const data = path.join(dir, 'data');
  const cfg = path.join(dir, 'camtap.yaml');
  const passive = mode !== 'inline';
  writeFileSync(cfg, passive ? passiveConfig(net, data) : inlineConfig(net, data));
  const cli = (...args: string[]) => net.exec(net.host, process.execPath, [CLI, ...args, '--config', cfg], { timeoutMs: 60_000 });
  const procs: Proc[] = [];
  const keep = <P extends Proc>(p: P) => (procs.push(p), p);
  try {
    const camera = keep(net.spawnIn(net.cam, 'camera', PYTHON, ['-u', CAMERA_PY, '--bind', net.camIp, '--port', '8554', '--path', '/stream1', '--codec', 'h264', '--fps', String(FPS)]));
    await camera.waitFor(/ready: rtsp:\/\//, 30_000);
    // Everything the camera sends (to the VMS and to camtap), at the camera.
    const camPcap = path.join(dir, 'camera-side.pcap');
    const camCap = keep(tcpdump(net, net.cam, 'tcpdump-camera', camPcap, `src host ${net.camIp}`));
    await camCap.waitFor(/listening on/, 15_000);
    // Inline: what camtap sends the VMS, at the VMS (its last frame before death).
    const vmsPcap = path.join(dir, 'vms-side.pcap');
    const vmsCap = passive ? null : keep(tcpdump(net, net.vms, 'tcpdump-vms', vmsPcap, `src host ${net.hostIp}`));
    await vmsCap?.waitFor(/listening on/, 15_000);
    const camtap = keep(net.spawnIn(net.host, 'camtap', process.execPath, [CLI, 'serve', '--config', cfg], { ...process.env, CAMTAP_LOG_LEVEL: 'info' }));
    await camtap.waitFor(/camtap serving RTSP/, 60_000);

    const transport = mode === 'passive-udp' ? 'udp' : mode === 'passive-tcp' ? 'tcp' : INLINE_VMS;
    const url = passive ? `rtsp://${net.camIp}:8554/stream1` : `rtsp://${net.hostIp}:8554/cam1`;
    const vms = keep(net.spawnIn(net.vms, 'vms', 'ffmpeg', ['-nostdin', '-hide_banner', '-loglevel', 'info', '-rtsp_transport', transport, '-i', url, '-map', '0:v', '-c', 'copy', '-f', 'null', '-']));
    await vms.waitFor(/Output #0/, 30_000);
    if (passive) {
      await until('camtap learned the VMS dialog', 30_000, async () => {
        const r = await cli('sessions', '--json');
        if (r.code !== 0) return false;
        const ss = JSON.parse(r.stdout) as Array<{ client: string; requests: Array<{ method: string; status: number | null }> }>;
        return ss.some((s) => s.client.startsWith(`${net.vmsIp}:`) && s.requests.some((q) => q.method === 'PLAY' && q.status === 200));
      }, 1000);
    } else await camtap.waitFor(/session set up/, 15_000);
    await sleep(SETTLE_MS);

    const load1 = loadavg()[0]!;
    const killedAt = Date.now();
    vms.signal('SIGKILL');
    await vms.exited;
    let note = '';
    let ok = true;
    let detectedAt: number | null = null;
    try {
      if (passive) {
        await camtap.waitFor(/failover starting/, 30_000);
        detectedAt = logTime(camtap.log(), 'failover starting');
      } else {
        await camtap.waitFor(/VMS lost without TEARDOWN/, 15_000);
        detectedAt = logTime(camtap.log(), 'VMS lost without TEARDOWN');
      }
    } catch (e) {
      ok = false;
      note = passive ? 'no failover within 30 s' : 'no hold within 15 s';
      log(`  ${(e as Error).message.split('\n')[0]}`);
    }
    await sleep(Math.max(0, killedAt + RECORD_MS - Date.now()));
    if (passive && ok) {
      const r = await cli('failover', 'status', 'vms1', '--json', '--api', 'http://127.0.0.1:8080');
      try {
        const s = JSON.parse(r.stdout) as { current: { start: string; redirect: Array<{ ok: boolean; strategy: string; reason?: string }> } | null } | Array<{ current: { start: string; redirect: Array<{ ok: boolean; strategy: string; reason?: string }> } | null }>;
        const one = Array.isArray(s) ? s[0] : s;
        if (one?.current) {
          detectedAt = Date.parse(one.current.start);
          ok = one.current.redirect.length > 0 && one.current.redirect.every((c) => c.ok);
          note = one.current.redirect.map((c) => `${c.strategy}${c.ok ? '' : `: ${c.reason ?? 'failed'}`}`).join('; ');
        }
      } catch {
        note = `failover status: ${r.stderr.slice(-200)}`;
      }
    }
    if (!passive && ok) {
      ok = !/no VMS client left: camera session closed/.test(camtap.log());
      note = ok ? 'camera session held' : 'camera session closed';
    }
    // Stop the camera first: nothing is in flight when camtap flushes, so what it recorded can be compared with what was sent.
    await camera.stop('SIGKILL');
    await sleep(1500);
    await camtap.stop('SIGTERM', 20_000);
    await camCap.stop('SIGINT');
    await vmsCap?.stop('SIGINT');
    const streams = await cli('streams', '--json');
    let recorded: number | null = null;
    if (streams.code === 0) {
      const ss = JSON.parse(streams.stdout) as Array<{ src: string; dst: string; packets: number; direction: string }>;
      recorded = ss.filter((s) => s.src.startsWith(`${net.camIp}:`) && s.dst.startsWith(`${net.hostIp}:`) && s.direction !== 'client->server').reduce((n, s) => n + s.packets, 0);
    }
    writeFileSync(path.join(dir, 'camtap.log'), camtap.log());

    // ------------------------------------------------------------------ the captures
    const cam = await readRtp(camPcap);
    const toCamtap = cam.filter((p) => p.src === net.camIp && p.dst === net.hostIp);
    const toVmsFromCamera = cam.filter((p) => p.src === net.camIp && p.dst === net.vmsIp);
    const vmsGot: RtpSeen[] = passive ? toVmsFromCamera : (await readRtp(vmsPcap)).filter((p) => p.src === net.hostIp && p.dst === net.vmsIp);
    const vmsFrames = vmsGot.filter((p) => p.marker && p.t <= killedAt);
    const lastVmsFrameAt = vmsFrames.length ? vmsFrames[vmsFrames.length - 1]!.t : null;
    const fpsWindow = vmsFrames.filter((p) => p.t > killedAt - 2000).length;
    const measuredFps = vmsFrames.length ? fpsWindow / 2 : null;
    const windowEnd = killedAt + RECORD_MS;
    let firstPacketMs: number | null = null;
    let lostMs: number | null = null;
    let firstCamtapFrameAt: number | null = null;
    if (passive) {
      const first = toCamtap.find((p) => p.t > killedAt);
      const firstFrame = toCamtap.find((p) => p.t > killedAt && p.marker);
      firstPacketMs = first ? first.t - killedAt : null;
      firstCamtapFrameAt = firstFrame?.t ?? null;
      lostMs = firstFrame && lastVmsFrameAt !== null ? firstFrame.t - lastVmsFrameAt : null;
    } else if (lastVmsFrameAt !== null) {
      // The camera leg is one RTP flow from before the VMS's last frame to the window's end.
      const from = lastVmsFrameAt - 1000;
      firstPacketMs = largestGap(toCamtap, from, windowEnd).gapMs;
      const firstFrame = toCamtap.find((p) => p.t > lastVmsFrameAt && p.marker);
      firstCamtapFrameAt = firstFrame?.t ?? null;
      // A break in the sequence is a new camera session (or a lost packet): its span is video nobody recorded.
      const breaks = sequenceBreaks(toCamtap, from, windowEnd);
      lostMs = breaks.reduce((a, b) => a + b, 0);
      if (breaks.length) note += `; ${breaks.length} sequence break(s)`;
      // The flow must last to the window's end (a camera session closed for good has no break, just an end).
      const last = toCamtap.filter((p) => p.t <= windowEnd).at(-1);
      if (!last || windowEnd - last.t > 1000) {
        lostMs += windowEnd - (last?.t ?? lastVmsFrameAt);
        note += '; camera leg stopped';
      }
    }
    const lostFrames = lostMs === null ? null : passive ? Math.max(0, Math.round((lostMs * FPS) / 1000) - 1) : inlineLost(toCamtap, lastVmsFrameAt!, windowEnd);
    return {
      mode,
      rep,
      killedAt,
      load1,
      detectionMs: detectedAt === null ? null : detectedAt - killedAt,
      firstPacketMs,
      lostMs,
      lostFrames,
      lastVmsFrameAt,
      firstCamtapFrameAt,
      sentToCamtap: toCamtap.length,
      recordedByCamtap: recorded,
      measuredFps,
      ok,
      note: note.replace(/^; /, ''),
    };
  } finally {
    for (const p of procs.reverse()) await p.stop(p.name.startsWith('tcpdump') ? 'SIGINT' : 'SIGKILL', 5000);
  }

  /** Inline: frames in the breaks of the camera -> camtap flow (an unbroken flow loses none), and after its end if it stopped. */
  function inlineLost(toCamtap: RtpSeen[], lastVms: number, end: number): number {
    let frames = 0;
    let prev: RtpSeen | null = null;
    for (const p of toCamtap) {
      if (p.t < lastVms - 1000) continue;
      if (p.t > end) break;
      if (prev && p.seq !== ((prev.seq + 1) & 0xffff)) frames += Math.max(0, Math.round(((p.t - prev.t) * FPS) / 1000) - 1);
      prev = p;
    }
    if (!prev || end - prev.t > 1000) frames += Math.round(((end - (prev?.t ?? lastVms)) * FPS) / 1000);
    return frames;
  }
}

// ---------------------------------------------------------------------------------- report

interface ModeSummary {
  mode: Mode;
  runs: number;
  ok: number;
  detection: ReturnType<typeof percentiles>;
  firstPacket: ReturnType<typeof percentiles>;
  lostMs: ReturnType<typeof percentiles>;
  lostFrames: ReturnType<typeof percentiles>;
  /** Passive: the largest (lost − detection) over the runs, the margin the target is about. */
  worstExtraMs: number | null;
  load1: { mean: number; max: number };
  sent: number;
  recorded: number | null;
  detectionPass: boolean;
  lossPass: boolean;
}

function summarize(mode: Mode, rs: RunResult[]): ModeSummary {
  const arr = (f: (r: RunResult) => number | null) => Float64Array.from(rs.map(f).filter((x): x is number => x !== null));
  const extras = rs.map((r) => (r.lostMs !== null && r.detectionMs !== null ? r.lostMs - r.detectionMs : null)).filter((x): x is number => x !== null);
  const detection = percentiles(arr((r) => r.detectionMs));
  const lostFrames = percentiles(arr((r) => r.lostFrames));
  const complete = rs.every((r) => r.detectionMs !== null && r.lostMs !== null);
  const worstExtraMs = extras.length ? Math.max(...extras) : null;
  const recs = rs.map((r) => r.recordedByCamtap);
  return {
    mode,
    runs: rs.length,
    ok: rs.filter((r) => r.ok).length,
    detection,
    firstPacket: percentiles(arr((r) => r.firstPacketMs)),
    lostMs: percentiles(arr((r) => r.lostMs)),
    lostFrames,
    worstExtraMs,
    load1: { mean: rs.reduce((a, r) => a + r.load1, 0) / rs.length, max: Math.max(...rs.map((r) => r.load1)) },
    sent: rs.reduce((a, r) => a + r.sentToCamtap, 0),
    recorded: recs.some((x) => x === null) ? null : recs.reduce((a, b) => a! + b!, 0),
    detectionPass: complete && detection.max !== null && detection.max <= TARGETS.detectionMs,
    lossPass: complete && (mode === 'inline' ? lostFrames.max === TARGETS.inlineLostFrames : worstExtraMs !== null && worstExtraMs <= TARGETS.passiveExtraMs),
  };
}

const pf = (b: boolean) => (b ? 'PASS' : 'MISS');
const ms = (x: number | null) => num(x, 0);

function report(results: RunResult[], sums: ModeSummary[], machine: ReturnType<typeof describeMachine>, ffmpeg: string | null, at: Date): string {
  const head = ['mode', 'runs', 'detection p50 / max ms', 'kill → first packet at camtap p50 / max ms', 'video lost p50 / max ms', 'frames lost p50 / max', 'load avg (1 min) at kill, mean / max', 'RTP to camtap: recorded / sent'];
  const rows = sums.map((s) => [
    s.mode,
    `${s.ok}/${s.runs}`,
    `${ms(s.detection.p50)} / ${ms(s.detection.max)}`,
    `${ms(s.firstPacket.p50)} / ${ms(s.firstPacket.max)}${s.mode === 'inline' ? ' (largest gap)' : ''}`,
    `${ms(s.lostMs.p50)} / ${ms(s.lostMs.max)}`,
    `${num(s.lostFrames.p50)} / ${num(s.lostFrames.max)}`,
    `${num(s.load1.mean, 2)} / ${num(s.load1.max, 2)}`,
    `${s.recorded === null ? 'n/a' : num(s.recorded)} / ${num(s.sent)}`,
  ]);
  const targetRows: Array<Array<string | number>> = [];
  for (const s of sums) {
    targetRows.push([s.mode, `detection within ${TARGETS.detectionMs} ms`, `max ${ms(s.detection.max)} ms`, pf(s.detectionPass)]);
    if (s.mode === 'inline') targetRows.push([s.mode, 'no frame lost', `max ${num(s.lostFrames.max)} frames`, pf(s.lossPass)]);
    else targetRows.push([s.mode, `video lost ≤ detection + ${TARGETS.passiveExtraMs} ms (every run)`, `worst lost − detection ${ms(s.worstExtraMs)} ms`, pf(s.lossPass)]);
  }
  const runRows = results.map((r) => [r.mode, r.rep, ms(r.detectionMs), ms(r.firstPacketMs), ms(r.lostMs), num(r.lostFrames), num(r.measuredFps, 1), num(r.load1, 2), `${r.recordedByCamtap ?? 'n/a'} / ${r.sentToCamtap}`, r.ok ? 'ok' : 'FAILED', r.note]);
  return [
    '## Failover',
    '',
    `Measured ${at.toISOString().slice(0, 16).replace('T', ' ')} UTC on ${machine.nproc} × ${machine.cpuModel.replace(/\s+\d+-Core Processor$/, '')}, Linux ${machine.kernel.replace(/^Linux /, '')}, Node ${machine.node}; ${(machine.tools.tshark ?? 'tshark ?').replace(/\.$/, '')}, ${ffmpeg ?? 'ffmpeg ?'}. The machine's 2 cores are shared with other test runs: the load average at each kill is in the tables.`,
    '',
    'Reproduce (root: it makes network namespaces):',
    '',
    '```sh',
    'npm run build && npm run bench:failover',
    `npm run bench:failover -- --runs ${RUNS} --modes ${modes.join(',')} --record-s ${RECORD_MS / 1000} --no-docs   # the options, at this run's values`,
    '```',
    '',
    '### Method',
    '',
    "`bench/failover/run.ts` builds a camera network in network namespaces (`bench/failover/netns.ts`, the layout of the failover end-to-end test): a bridge that floods every frame to every port (a hub), the lab's GStreamer RTSP camera (`test/helpers/camera.py`, H.264 at 25 fps) in one namespace, ffmpeg as the VMS in another, and `camtap serve` (the built CLI) on a third host. Per mode:",
    '',
    '- **passive-udp** / **passive-tcp**: the VMS pulls the camera directly (`-rtsp_transport udp` / `tcp`); camtap taps the link (tcpdump tap on its hub port) with `failover.auto`, `trafficTimeoutMs: 2000`. When the VMS dies, camtap notices its RTSP connection closing without TEARDOWN, replays the captured set-up from its own address and records what the camera then sends.',
    `- **inline**: the VMS pulls \`rtsp://camtap:8554/cam1\` over ${INLINE_VMS === 'tcp' ? 'TCP interleaved' : 'UDP'}; camtap pulls the camera over TCP and records the camera leg. When the VMS dies, camtap keeps the camera session (\`serve.holdOnVmsLoss\`, default on) instead of closing it after the 5 s grace period.`,
    '',
    `Each run starts a fresh camera, camtap and data directory; the VMS plays, ${SETTLE_MS / 1000} s after camtap has seen its PLAY it is killed with SIGKILL, and the run goes on for ${RECORD_MS / 1000} s after the kill. Then the camera is killed (nothing in flight), camtap stopped (SIGTERM: it flushes) and the captures read by tshark: tcpdump in the camera's namespace (everything the camera sends) and, inline, in the VMS's (what camtap sends the VMS). A frame is an RTP packet with the marker bit (RFC 6184 §5.1), counted per interleaved packet.`,
    '',
    '- **detection**: the failover record\'s start (`camtap failover status`) − the kill (wall clock, the same clock as the captures). Inline has no failover: the time of camtap\'s log line "VMS lost without TEARDOWN: camera session kept and recorded".',
    '- **kill → first packet at camtap**: passive, the first RTP packet from the camera to camtap\'s address after the kill, at the camera. Inline, where the camera leg never stops, the largest gap between consecutive camera → camtap RTP packets from 1 s before the VMS\'s last frame to the end of the window.',
    `- **video lost**: passive, the first frame end from the camera to camtap after the kill − the last frame end the camera sent the VMS before the kill; frames lost = that × ${FPS} fps − 1 (the two frames at the edges were delivered). Inline, where the camera keeps sending camtap the frames it sent the VMS, the span of every break in the camera → camtap RTP sequence numbers (a new camera session, or a lost packet) from 1 s before the last frame end camtap sent the VMS to the end of the window, and the rest of the window if the flow stopped; frames lost = each break's span × fps − 1 (an unbroken sequence, every packet the camera sent reaching camtap, loses none).`,
    '- **recorded / sent**: RTP packets camtap\'s catalog holds for the camera → camtap streams against the packets the camera sent camtap (tshark), all runs together: a cross-check that what reached camtap was recorded.',
    '',
    '### Results',
    '',
    mdTable(head, rows, ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r']),
    '',
    '### Targets',
    '',
    mdTable(['mode', 'target', 'measured', ''], targetRows),
    '',
    '### Runs',
    '',
    mdTable(['mode', 'run', 'detection ms', 'first packet / largest gap ms', 'lost ms', 'frames lost', 'fps before kill', 'load 1 min', 'recorded / sent', 'outcome', 'note'], runRows, ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'l', 'l']),
    '',
  ].join('\n');
}

// ---------------------------------------------------------------------------------- main

async function main(): Promise<number> {
  const why = netnsMissing();
  if (why) {
    process.stderr.write(`bench:failover: ${why}\n`);
    return 2;
  }
  for (const [what, ok] of [
    ['dist/core/cli.js (npm run build)', existsSync(CLI)],
    [CAMERA_PY, existsSync(CAMERA_PY)],
    [PYTHON, existsSync(PYTHON)],
  ] as const)
    if (!ok) {
      process.stderr.write(`bench:failover: missing ${what}\n`);
      return 2;
    }
  for (const tool of ['tcpdump', 'tshark', 'ffmpeg']) {
    const r = await run('sh', ['-c', `command -v ${tool}`]);
    if (r.code !== 0) {
      process.stderr.write(`bench:failover: ${tool} is not installed\n`);
      return 2;
    }
  }
  mkdirSync(WORK, { recursive: true });
  const at = new Date();
  const net = makeNet();
  log(`namespaces ${net.cam}, ${net.vms}, ${net.host}: camera ${net.camIp}, VMS ${net.vmsIp}, camtap ${net.hostIp}`);
  const results: RunResult[] = [];
  let failed = 0;
  const onSignal = () => void stopAll().then(() => (net.down(), process.exit(130)));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    // Modes alternate run by run, so a busy spell of the machine spreads over all of them.
    for (let rep = 1; rep <= RUNS; rep++) {
      for (const mode of modes) {
        log(`${mode} run ${rep}/${RUNS}`);
        try {
          const r = await oneRun(net, mode, rep);
          results.push(r);
          log(`  detection ${ms(r.detectionMs)} ms, ${mode === 'inline' ? 'largest gap' : 'first packet'} ${ms(r.firstPacketMs)} ms, lost ${ms(r.lostMs)} ms = ${num(r.lostFrames)} frames, load ${num(r.load1, 2)}, recorded ${r.recordedByCamtap ?? 'n/a'} / sent ${r.sentToCamtap}${r.ok ? '' : ' FAILED'} ${r.note}`);
        } catch (e) {
          failed++;
          log(`  run failed: ${(e as Error).message.split('\n').slice(0, 6).join(' | ')}`);
        }
      }
    }
  } finally {
    await stopAll();
    const left = net.down();
    if (left.length) log(`processes still in the namespaces (not started here, not killed): ${left.join(', ')}`);
  }
  const sums = modes.map((m) => summarize(m, results.filter((r) => r.mode === m))).filter((s) => s.runs > 0);
  const machine = describeMachine();
  const ff = await run('ffmpeg', ['-version']);
  const ffmpeg = ff.stdout.split('\n')[0]?.replace(/\s+Copyright.*$/, '') ?? null;
  const md = report(results, sums, machine, ffmpeg, at);
  process.stdout.write(`\n${md}\n`);
  const json = { at: at.toISOString(), machine, ffmpeg, options: { runs: RUNS, modes, recordMs: RECORD_MS, settleMs: SETTLE_MS, fps: FPS, inlineVms: INLINE_VMS }, targets: TARGETS, summaries: sums, runs: results, failedRuns: failed };
  writeFileSync(path.join(BENCH_DIR, 'failover-latest.json'), JSON.stringify(json, null, 2));
  writeFileSync(path.join(BENCH_DIR, `failover-${at.toISOString().replace(/[:.]/g, '-')}.json`), JSON.stringify(json, null, 2));
  if (!argv['no-docs'] && !argv['no-hold'] && failed === 0) {
    const docFile = path.join(ROOT, 'docs/BENCHMARKS.md');
    writeFileSync(docFile, replaceSection(readFileSync(docFile, 'utf8'), '## Failover', md));
    log(`wrote the Failover section of ${docFile}`);
  } else if (failed) log(`${failed} run(s) failed: docs/BENCHMARKS.md left as it is`);
  return failed ? 1 : 0;
}

process.exitCode = await main();
