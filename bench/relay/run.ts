/**
 * Relay benchmark (issue 4): N live 4 Mbit/s camera streams relayed by `camtap serve`'s
 * inline gateway and recorded at once, against the same streams pulled directly from the
 * camera (the baseline) and relayed by ffmpeg (`-c copy -f rtp`, one process per stream).
 * Per packet: added latency over the direct connection (p50/p99), loss; per relay: CPU
 * per Gbit/s and the largest N that one core relays with no loss. Writes a JSON result
 * into the bench directory and rewrites the `## Relay` section of docs/BENCHMARKS.md.
 *
 *   npm run build && npm run bench:relay [-- --steps 10,50,100 --seconds 15 --runs 1 --no-docs --no-quiet --only camtap,direct]
 *
 * Processes (all on loopback): the camera simulator (bench/relay/fake-camera.ts, one
 * process for all N streams), the relay under test, and the receiver
 * (bench/relay/receiver.ts, one process for all N sessions). Latency is measured from the
 * camera's write to the receiver's read, both on CLOCK_MONOTONIC, matching packets by
 * payload (bench/relay/packet-key.ts, bench/relay/latency-join.ts).
 *
 * Not a test: it prints PASS/MISS per target and exits non-zero only when a command failed.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { setPriority } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { summarizeCpuProfile, type ProfileSummary } from '../lib/cpuprofile.js';
import { dataDirSize } from '../lib/disk.js';
import { describeMachine, type Machine } from '../lib/machine.js';
import { mdTable, num, replaceSection } from '../lib/markdown.js';
import { measure, succeeded, waitForQuiet } from '../lib/measure.js';
import { machineBusyS, procCpu, type ProcCpu } from '../lib/proc.js';
import { Samples, percentiles, type Percentiles } from '../lib/stats.js';
import type { CameraConfig, CameraStats } from './fake-camera.js';
import { joinStream } from './latency-join.js';
import { readLogs, type LogRecord } from './packet-log.js';
import type { ReceiverConfig, ReceiverResult } from './receiver.js';

/** The figures the issue asks for; printed next to the measurements as PASS/MISS. */
const TARGETS = {
  addedP99Ms: 2,
  gbpsPerCore: 1,
  vsFfmpeg: 3,
  streamMbps: 4,
};

// ---------------------------------------------------------------------------------- setup

function repoRoot(): string {
  for (let d = path.dirname(fileURLToPath(import.meta.url)); d !== path.dirname(d); d = path.dirname(d)) {
    const pj = path.join(d, 'package.json');
    if (existsSync(pj) && (JSON.parse(readFileSync(pj, 'utf8')) as { name?: string }).name === 'camtap') return d;
  }
  throw new Error('cannot find the camtap repository root above ' + fileURLToPath(import.meta.url));
}

const ROOT = repoRoot();
const { values: argv } = parseArgs({
  options: {
    'bench-dir': { type: 'string' },
    /** Passes per (relay, N); the one with the lowest p99 latency is kept. */
    runs: { type: 'string', default: '1' },
    /** Stream counts to try, in order. */
    steps: { type: 'string', default: '10,25,50,75,100,150,200,300' },
    /** Measurement window of each pass, seconds. */
    seconds: { type: 'string', default: '15' },
    /** Seconds between the last session playing and the window. */
    settle: { type: 'string', default: '3' },
    /** N of the paired passes (direct and through camtap at once, per-packet added latency); `max`: camtap's largest N without loss. */
    'paired-steps': { type: 'string', default: '10,25' },
    /** Lower transport of the camera leg (camtap's and ffmpeg's); the direct baseline is always TCP. */
    'camera-transport': { type: 'string', default: 'tcp' },
    /** Capture whose H.264 stream the camera simulator loops. */
    template: { type: 'string' },
    /** Most ffmpeg processes started in one pass. */
    'ffmpeg-max': { type: 'string', default: '400' },
    'no-docs': { type: 'boolean', default: false },
    'no-quiet': { type: 'boolean', default: false },
    'no-profile': { type: 'boolean', default: false },
    /** A packet read later than this after the camera wrote it counts as lost (a live viewer has dropped it), ms. */
    'late-ms': { type: 'string', default: '1000' },
    /** Longest wait for a quiet machine before each pass, seconds. */
    'quiet-max': { type: 'string', default: '15' },
    /** Comma list to run a subset while developing: direct,camtap,ffmpeg,paired,profile (does not touch docs/). */
    only: { type: 'string' },
  },
});
const BENCH_DIR = path.resolve(argv['bench-dir'] ?? process.env.BENCH_DIR ?? '/tmp/camtap-bench');
const RUNS = Math.max(1, Number(argv.runs) || 1);
const STEPS = argv.steps!.split(',').map(Number).filter((n) => n > 0);
const WINDOW_S = Math.max(3, Number(argv.seconds) || 15);
const SETTLE_S = Math.max(0, Number(argv.settle) || 3);
const PAIRED_STEPS = argv['paired-steps']!.split(',').map((x) => (x.trim() === 'max' ? -1 : Number(x))).filter((n) => n === -1 || n > 0);
const CAMERA_TRANSPORT: 'tcp' | 'udp' = argv['camera-transport'] === 'udp' ? 'udp' : 'tcp';
const FFMPEG_MAX = Math.max(1, Number(argv['ffmpeg-max']) || 400);
const ONLY = argv.only ? new Set(argv.only.split(',')) : null;
const QUIET = !argv['no-quiet'];
const QUIET_MAX_MS = Math.max(1, Number(argv['quiet-max']) || 15) * 1000;
const want = (k: string) => !ONLY || ONLY.has(k);
const CLI = path.join(ROOT, 'dist/core/cli.js');
const HERE = path.dirname(fileURLToPath(import.meta.url));
const TEMPLATE = argv.template ?? ['/work/shared/lab/templates/template_720p.pcap', path.join(ROOT, 'fixtures/captures/gen_template_360p.pcap')].find((f) => existsSync(f))!;
const HOST = '127.0.0.1';
const LATE_MS = Math.max(1, Number(argv['late-ms']) || 1000);
/** The receiver keeps reading this long after the window: a packet sent at its end may still arrive (late). */
const GRACE_MS = LATE_MS + 500;
/** Other processes busier than this (cores, of the machine) during a window make a miss inconclusive. */
const NOISY_CORES = 0.5;
/** camtap's JavaScript runs on its main thread: past this it is saturated. */
const SATURATED_CORES = 0.95;
/**
 * Nice value of the camera simulator and the receiver. The load generator must not be what
 * falls behind: N ffmpeg processes would otherwise get N shares of the CPU against its one
 * (the kernel shares it by thread). It uses a fraction of a core (see the table).
 */
const GENERATOR_NICE = -10;
let reniced: boolean | null = null;
const failures: string[] = [];

if (BENCH_DIR === ROOT || BENCH_DIR.startsWith(ROOT + path.sep)) {
  process.stderr.write(`bench: refusing to write recordings inside the repository (${BENCH_DIR}); pick another --bench-dir\n`);
  process.exit(64);
}
const WORK = path.join(BENCH_DIR, 'relay');
mkdirSync(WORK, { recursive: true });

function log(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

/** Phase timings of each pass, with RELAY_DEBUG=1. */
function debug(msg: string): void {
  if (process.env.RELAY_DEBUG) log(`  ${msg}`);
}

function fail(what: string, why: string): void {
  failures.push(`${what}: ${why}`);
  log(`FAILED ${what}: ${why}`);
}

/** The environment camtap runs in: no config or data dir inherited from the caller's shell. */
function camtapEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.CAMTAP_CONFIG;
  delete env.CAMTAP_DATA;
  delete env.CAMTAP_LOG_LEVEL;
  delete env.NODE_OPTIONS;
  return env;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------- child processes

/** Every process this script started and has not seen exit, killed by pid if the script dies. */
const children = new Set<ChildProcess>();
function killAll(): void {
  for (const c of children) {
    try {
      if (c.pid !== undefined && c.exitCode === null) process.kill(c.pid, 'SIGKILL');
    } catch {}
  }
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.on(sig, () => {
    killAll();
    process.exit(130);
  });

interface Child {
  proc: ChildProcess;
  pid: number;
  stderrTail(): string;
  exited: Promise<number | null>;
}

function startChild(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; stdin?: boolean; stdout?: boolean; priority?: number } = {}): Child {
  const proc = spawn(cmd, args, { env: opts.env ?? process.env, stdio: [opts.stdin ? 'pipe' : 'ignore', opts.stdout === false ? 'ignore' : 'pipe', 'pipe'] });
  children.add(proc);
  if (opts.priority !== undefined && proc.pid !== undefined) {
    try {
      setPriority(proc.pid, opts.priority);
      reniced ??= true;
    } catch {
      // Not allowed (not root): the generator runs at normal priority, which the report says.
      reniced = false;
    }
  }
  let err = '';
  proc.stderr!.on('data', (b: Buffer) => (err = (err + b.toString()).slice(-4000)));
  const exited = new Promise<number | null>((res) => {
    proc.on('close', (code) => {
      children.delete(proc);
      res(code);
    });
    proc.on('error', () => {
      children.delete(proc);
      res(null);
    });
  });
  return { proc, pid: proc.pid ?? -1, stderrTail: () => err, exited };
}

/** SIGTERM (or `signal`), then SIGKILL after `graceMs`; by pid. */
async function stopChild(c: Child, signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<number | null> {
  if (c.proc.exitCode !== null || c.proc.signalCode !== null) return c.exited;
  try {
    process.kill(c.pid, signal);
  } catch {}
  const t = setTimeout(() => {
    try {
      process.kill(c.pid, 'SIGKILL');
    } catch {}
  }, graceMs);
  const code = await c.exited;
  clearTimeout(t);
  return code;
}

/** Lines of a child's stdout, awaited one by one. */
class Lines {
  readonly #lines: string[] = [];
  readonly #waiters: Array<() => void> = [];
  #closed = false;
  constructor(c: Child) {
    const rl = createInterface({ input: c.proc.stdout!, crlfDelay: Infinity });
    rl.on('line', (l) => {
      this.#lines.push(l);
      this.#waiters.splice(0).forEach((w) => w());
    });
    rl.on('close', () => {
      this.#closed = true;
      this.#waiters.splice(0).forEach((w) => w());
    });
  }
  /** The next line matching `re`, or null on close or after `timeoutMs`. */
  async next(re: RegExp, timeoutMs: number): Promise<RegExpExecArray | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (this.#lines.length) {
        const m = re.exec(this.#lines.shift()!);
        if (m) return m;
      }
      if (this.#closed || Date.now() > deadline) return null;
      await new Promise<void>((res) => {
        const t = setTimeout(res, Math.max(1, deadline - Date.now()));
        this.#waiters.push(() => {
          clearTimeout(t);
          res();
        });
      });
    }
  }
}

// ---------------------------------------------------------------------------------- the peers

interface Camera {
  child: Child;
  port: number;
  loop: LoopInfo;
  dump(file: string): Promise<CameraStats | null>;
  stop(): Promise<void>;
}

interface LoopInfo {
  loopMs: number;
  speed: number;
  rtpBps: number;
  packetsPerLoop: number;
  maxRtpBytes: number;
  idrs: number;
  aus: number;
  source: { file: string; ssrc: number; rtpPackets: number; accessUnits: number; loopS: number; capturedRtpBps: number; capturedFps: number; pacedFps: number };
}

async function startCamera(n: number): Promise<Camera | null> {
  const cfg: CameraConfig = { template: TEMPLATE, targetBps: TARGETS.streamMbps * 1e6, paths: n, host: HOST, port: 0, maxQueueBytes: 8 << 20 };
  const file = path.join(WORK, 'camera.json');
  writeFileSync(file, JSON.stringify(cfg));
  const child = startChild(process.execPath, [path.join(HERE, 'fake-camera.js'), file], { stdin: true, priority: GENERATOR_NICE });
  const lines = new Lines(child);
  const m = await lines.next(/^LISTENING (\d+)$/, 30_000);
  const l = await lines.next(/^LOOP (.*)$/, 5000);
  if (!m || !l) {
    fail('camera simulator', `did not start: ${child.stderrTail().trim().split('\n').slice(-3).join(' | ')}`);
    await stopChild(child, 'SIGKILL');
    return null;
  }
  return {
    child,
    port: Number(m[1]),
    loop: JSON.parse(l[1]!) as LoopInfo,
    dump: async (out: string) => {
      child.proc.stdin!.write(`DUMP ${out}\n`);
      const d = await lines.next(/^DUMPED (.*)$/, 60_000);
      return d ? (JSON.parse(d[1]!) as CameraStats) : null;
    },
    stop: async () => {
      child.proc.stdin!.end('QUIT\n');
      await stopChild(child, 'SIGTERM', 3000);
    },
  };
}

interface Camtap {
  child: Child;
  port: number;
  dataDir: string;
}

/** `camtap serve --config C --data D --rtsp-port 0 --http-port 0` with one camera per stream; resolves once it prints its port. */
async function startCamtap(n: number, camPort: number, profileDir: string | null): Promise<Camtap | null> {
  const dataDir = path.join(WORK, 'camtap-data');
  rmSync(dataDir, { recursive: true, force: true });
  const cfgFile = path.join(WORK, 'camtap.yaml');
  const lines = ['cameras:'];
  for (let i = 0; i < n; i++) lines.push(`  - { name: cam${i}, address: ${HOST}, url: "rtsp://${HOST}:${camPort}/stream${i}", transport: ${CAMERA_TRANSPORT} }`);
  lines.push('serve:', `  maxClients: ${Math.max(500, 2 * n + 10)}`, '');
  writeFileSync(cfgFile, lines.join('\n'));
  const prof = profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [];
  const child = startChild(process.execPath, [...prof, CLI, 'serve', '--config', cfgFile, '--data', dataDir, '--rtsp-port', '0', '--http-port', '0'], { env: camtapEnv() });
  const out = new Lines(child);
  const m = await out.next(/serving RTSP on port (\d+)/, 60_000);
  // The stream list that follows must keep draining.
  void out.next(/^\0$/, 24 * 3600_000);
  if (!m) {
    fail('camtap serve', `no "serving RTSP on port" line: ${child.stderrTail().trim().split('\n').slice(-3).join(' | ')}`);
    await stopChild(child, 'SIGKILL');
    return null;
  }
  return { child, port: Number(m[1]), dataDir };
}

// ---------------------------------------------------------------------------------- one pass

type Relay = 'direct' | 'camtap' | 'ffmpeg' | 'paired';

interface CpuSample {
  t: number;
  relay: number | null;
  relayMain: number | null;
  camera: ProcCpu | null;
  receiver: ProcCpu | null;
  busy: number | null;
}

interface Recording {
  segmentBytes: number;
  /** RTP packets camtap recorded on the camera legs and on the VMS legs (`camtap streams --json`). */
  cameraLegPackets: number | null;
  vmsLegPackets: number | null;
  streams: number | null;
}

interface Pass {
  relay: Relay;
  n: number;
  attempt: number;
  /** Latency (arrival − camera write), ms, of the packets the camera sent inside the window. Paired: through camtap. */
  latency: Percentiles;
  /** Paired passes: the direct sessions' latency, and per-packet via − direct. */
  directLatency: Percentiles | null;
  addedPerPacket: Percentiles | null;
  /** Packets the camera sent in the window (all sessions of the relay under test), lost of those, received packets no sent packet explains. */
  sentInWindow: number;
  /** Never read, and read later than LATE_MS (not counted in `lost`). */
  lost: number;
  late: number;
  unmatched: number;
  /** Streams with at least one lost packet. */
  streamsWithLoss: number;
  /** The largest latency of the packets sent in each second of the window, ms (spread or bursts?). */
  perSecondMaxMs: Array<number | null>;
  sentMbps: number;
  receivedMbps: number;
  windowS: number;
  /** CPU in cores over the window: the relay (camtap: all threads; ffmpeg: all processes), camtap's main thread, camera, receiver, everything else. */
  relayCores: number | null;
  relayMainCores: number | null;
  cameraCores: number | null;
  receiverCores: number | null;
  othersCores: number | null;
  /** Relay processes that had exited by the window's end (ffmpeg). */
  relayExited: number;
  camera: CameraStats | null;
  receiver: ReceiverResult;
  recording: Recording | null;
  quietWaitS: number;
  /** No loss, every session played the window through, and (relays) within one core. */
  pass: boolean;
  /** A miss while other processes used more than NOISY_CORES: it may be the machine's, not the relay's. */
  noisy: boolean;
  saturated: boolean;
  why: string;
  wallS: number;
}

function samplePids(relayPids: number[], camtapPid: number | null, camera: number, receiver: number): CpuSample {
  let relay: number | null = null;
  for (const p of relayPids) {
    const c = procCpu(p);
    if (c) relay = (relay ?? 0) + c.processS;
  }
  return { t: performance.now(), relay, relayMain: camtapPid !== null ? (procCpu(camtapPid)?.mainThreadS ?? null) : null, camera: procCpu(camera), receiver: procCpu(receiver), busy: machineBusyS() };
}

/** `camtap streams --json` of the recording: RTP packets per leg (by the sender's port). */
async function recordedLegs(dataDir: string, camtapPort: number): Promise<Omit<Recording, 'segmentBytes'>> {
  const m = await measure(process.execPath, [CLI, 'streams', '--json', '--data', dataDir], { env: camtapEnv(), timeoutMs: 120_000, maxStdout: 64 << 20, useGnuTime: false });
  if (!succeeded(m)) {
    fail('camtap streams --json (recording check)', `exit ${m.exitCode ?? m.signal}: ${m.stderrTail.trim().split('\n').slice(-2).join(' | ')}`);
    return { cameraLegPackets: null, vmsLegPackets: null, streams: null };
  }
  const rows = JSON.parse(m.stdout) as Array<{ src: string; packets: number; direction: string }>;
  const port = (s: string) => Number(s.slice(s.lastIndexOf(':') + 1));
  let cam = 0;
  let vms = 0;
  for (const r of rows) {
    if (r.direction === 'client->server') continue;
    // The VMS legs leave camtap's RTSP port; everything else camtap received is a camera leg (TCP: the camera's RTSP port; UDP: its RTP port).
    if (port(r.src) === camtapPort) vms += r.packets;
    else cam += r.packets;
  }
  return { cameraLegPackets: cam, vmsLegPackets: vms, streams: rows.length };
}

async function runPass(relay: Relay, n: number, attempt: number, opts: { profileDir?: string } = {}): Promise<Pass | null> {
  const t0 = performance.now();
  const quietWaitS = QUIET ? await waitForQuiet({ maxWaitMs: QUIET_MAX_MS }) : 0;
  const cam = await startCamera(n);
  if (!cam) return null;
  debug(`${relay} N=${n}: camera up after ${num((performance.now() - t0) / 1000, 1)} s (quiet wait ${num(quietWaitS, 1)} s)`);
  let camtap: Camtap | null = null;
  const ffmpegs: Child[] = [];
  const tag = `${relay}-${n}-${attempt}`;
  const rxLog = path.join(WORK, `recv-${tag}.log`);
  const camLog = path.join(WORK, `sent-${tag}.log`);
  try {
    if (relay === 'camtap' || relay === 'paired') {
      camtap = await startCamtap(n, cam.port, opts.profileDir ?? null);
      if (!camtap) return null;
      debug(`camtap up at ${num((performance.now() - t0) / 1000, 1)} s`);
    }
    const sessions: ReceiverConfig['sessions'] = [];
    for (let i = 0; i < n; i++) {
      if (relay === 'direct' || relay === 'paired') sessions.push({ stream: i, role: 0, url: `rtsp://${HOST}:${cam.port}/stream${i}` });
      if (relay === 'camtap' || relay === 'paired') sessions.push({ stream: i, role: 1, url: `rtsp://${HOST}:${camtap!.port}/cam${i}` });
      if (relay === 'ffmpeg') sessions.push({ stream: i, role: 2 });
    }
    const ffStaggerMs = 25;
    const rcfg: ReceiverConfig = {
      mode: relay === 'ffmpeg' ? 'udp' : 'rtsp',
      sessions,
      // Sessions 25 ms apart (at most 8 s in all), as a VMS fleet would not connect all at once.
      rampMs: relay === 'ffmpeg' ? 0 : Math.min(8000, 25 * sessions.length),
      settleMs: SETTLE_S * 1000,
      measureMs: WINDOW_S * 1000,
      graceMs: GRACE_MS,
      startTimeoutMs: 30_000 + ffStaggerMs * n,
      host: HOST,
      logFile: rxLog,
    };
    const cfgFile = path.join(WORK, 'receiver.json');
    writeFileSync(cfgFile, JSON.stringify(rcfg));
    const rx = startChild(process.execPath, [path.join(HERE, 'receiver.js'), cfgFile], { priority: GENERATOR_NICE });
    const relayPids = (): number[] => (camtap ? [camtap.child.pid] : ffmpegs.map((f) => f.pid));
    let s0: CpuSample | null = null;
    let s1: CpuSample | null = null;
    let result: ReceiverResult | null = null;
    let ffStart: Promise<void> | null = null;
    for await (const line of createInterface({ input: rx.proc.stdout!, crlfDelay: Infinity })) {
      if (line.startsWith('PORTS ')) {
        const ports = JSON.parse(line.slice(6)) as number[];
        // Started a little apart: a few hundred ffmpeg start-ups at once would starve everything.
        ffStart = (async () => {
          for (let i = 0; i < ports.length; i++) {
            ffmpegs.push(
              startChild('ffmpeg', ['-nostdin', '-v', 'error', '-rtsp_transport', CAMERA_TRANSPORT, '-i', `rtsp://${HOST}:${cam.port}/stream${i}`, '-c', 'copy', '-f', 'rtp', `rtp://${HOST}:${ports[i]}`], { stdout: false }),
            );
            await sleep(ffStaggerMs);
          }
        })();
      } else if (line.startsWith('WINDOW START')) {
        debug(`window opens at ${num((performance.now() - t0) / 1000, 1)} s`);
        s0 = samplePids(relayPids(), camtap?.child.pid ?? null, cam.child.pid, rx.pid);
      } else if (line.startsWith('WINDOW END')) s1 = samplePids(relayPids(), camtap?.child.pid ?? null, cam.child.pid, rx.pid);
      else if (line.startsWith('{')) result = JSON.parse(line) as ReceiverResult;
    }
    const code = await rx.exited;
    await ffStart;
    const relayExited = ffmpegs.filter((f) => f.proc.exitCode !== null).length;
    // What the ffmpeg processes said (-v error): the first few distinct messages.
    const ffErrors = [...new Set(ffmpegs.map((f) => f.stderrTail().trim().split('\n').pop() ?? '').filter((x) => x !== ''))].slice(0, 3);
    if (ffErrors.length) debug(`ffmpeg said: ${ffErrors.join(' | ')}`);
    if (result && ffmpegs.length)
      for (const i of result.silent.slice(0, 3)) {
        const f = ffmpegs[i];
        debug(`ffmpeg of stream ${i} sent nothing: ${f ? `pid ${f.pid}, ${f.proc.exitCode === null ? 'running' : `exit ${f.proc.exitCode}`}, said ${JSON.stringify(f.stderrTail().trim().slice(-300))}` : 'not started'}`);
      }
    if (code !== 0 || !result) {
      fail(`receiver (${relay}, ${n} streams)`, `exit ${code}: ${rx.stderrTail().trim().split('\n').slice(-3).join(' | ')}`);
      return null;
    }
    debug(`receiver done at ${num((performance.now() - t0) / 1000, 1)} s`);
    const camera = await cam.dump(camLog);
    debug(`camera log dumped at ${num((performance.now() - t0) / 1000, 1)} s`);
    // Stop the relay before reading its recording.
    await Promise.all(ffmpegs.map((f) => stopChild(f, 'SIGTERM', 3000)));
    let recording: Recording | null = null;
    if (camtap) {
      const code = await stopChild(camtap.child, 'SIGTERM', 20_000);
      if (code !== 0) fail(`camtap serve (${relay}, ${n} streams)`, `exit ${code}: ${camtap.child.stderrTail().trim().split('\n').slice(-3).join(' | ')}`);
      debug(`camtap stopped at ${num((performance.now() - t0) / 1000, 1)} s`);
      if (!opts.profileDir) {
        recording = { segmentBytes: dataDirSize(camtap.dataDir).segments, ...(await recordedLegs(camtap.dataDir, camtap.port)) };
      }
    }
    await cam.stop();
    debug(`recording checked, camera stopped at ${num((performance.now() - t0) / 1000, 1)} s`);

    // Pair every received packet with its send.
    const sent = new Map<number, LogRecord>();
    if (camera) for (const r of readLogs(camLog)) sent.set(r.stream, r);
    const recv = readLogs(rxLog);
    const ws = result.windowStartMs;
    const we = result.windowEndMs;
    const lat = new Samples(1 << 16);
    const direct = new Samples(1 << 16);
    const added = new Samples(1 << 16);
    let sentInWindow = 0;
    let sentBytes = 0;
    let lost = 0;
    let late = 0;
    let unmatched = 0;
    const lossy = new Set<number>();
    const perSecond: number[] = [];
    const byStream = new Map<number, Map<number, Float64Array>>();
    for (const r of recv) {
      const s = sent.get(r.stream);
      if (!s) continue;
      const j = joinStream(s, r);
      unmatched += j.unmatched;
      if (!byStream.has(r.stream)) byStream.set(r.stream, new Map());
      byStream.get(r.stream)!.set(r.role, j.latency);
    }
    const underTest = relay === 'direct' ? 0 : relay === 'ffmpeg' ? 2 : 1;
    for (const [stream, s] of sent) {
      const roles = byStream.get(stream);
      const mine = roles?.get(underTest) ?? null;
      const base = relay === 'paired' ? (roles?.get(0) ?? null) : null;
      for (let i = 0; i < s.time.length; i++) {
        const t = s.time[i]!;
        if (t < ws || t > we) continue;
        sentInWindow++;
        const v = mine ? mine[i]! : Number.NaN;
        if (Number.isNaN(v)) {
          lost++;
          lossy.add(stream);
        } else {
          lat.push(v);
          if (v > LATE_MS) {
            late++;
            lossy.add(stream);
          }
          const sec = Math.floor((t - ws) / 1000);
          if (!(v <= (perSecond[sec] ?? Number.NEGATIVE_INFINITY))) perSecond[sec] = v;
        }
        if (base) {
          const d = base[i]!;
          if (!Number.isNaN(d)) {
            direct.push(d);
            if (!Number.isNaN(v)) added.push(v - d);
          }
        }
      }
    }
    // Sent bitrate from the loop's figures: every stream plays at the paced rate.
    sentBytes = (cam.loop.rtpBps / 8) * n * ((we - ws) / 1000);
    let relayCores: number | null = null;
    let relayMainCores: number | null = null;
    let cameraCores: number | null = null;
    let receiverCores: number | null = null;
    let othersCores: number | null = null;
    if (s0 && s1) {
      const secs = (s1.t - s0.t) / 1000;
      const d = (a: number | null | undefined, b: number | null | undefined) => (a != null && b != null ? (b - a) / secs : null);
      relayCores = d(s0.relay, s1.relay);
      relayMainCores = d(s0.relayMain, s1.relayMain);
      cameraCores = d(s0.camera?.processS, s1.camera?.processS);
      receiverCores = d(s0.receiver?.processS, s1.receiver?.processS);
      const busy = d(s0.busy, s1.busy);
      if (busy !== null) othersCores = Math.max(0, busy - (relayCores ?? 0) - (cameraCores ?? 0) - (receiverCores ?? 0));
    }
    const problems: string[] = [];
    if (result.failed) problems.push(`${result.failed} sessions not set up (${Object.entries(result.failures).map(([k, v]) => `${k} ×${v}`).join(', ')})`);
    if (result.playing < result.sessions && !result.failed) problems.push(`${result.sessions - result.playing} sessions not playing`);
    if (result.endedEarly) problems.push(`${result.endedEarly} sessions ended early`);
    if (relayExited) problems.push(`${relayExited} ffmpeg processes exited${ffErrors.length ? ` (${ffErrors[0]!.slice(0, 120)})` : ''}`);
    if (lost || late) problems.push(`${lost ? `${lost} of ${sentInWindow} packets lost` : ''}${lost && late ? ', ' : ''}${late ? `${late} later than ${LATE_MS} ms` : ''} (${lossy.size} streams)`);
    if (camera?.dropped) problems.push(`camera skipped ${camera.dropped} access units (relay not reading)`);
    const saturated = relay === 'camtap' ? (relayMainCores ?? 0) > SATURATED_CORES : relay === 'ffmpeg' ? (relayCores ?? 0) > 1 : false;
    if (saturated) problems.push(relay === 'camtap' ? `main thread at ${num(relayMainCores, 2)} cores` : `${num(relayCores, 2)} cores`);
    const pass = problems.length === 0;
    const noisy = !pass && (othersCores === null || othersCores > NOISY_CORES);
    const pass_: Pass = {
      relay,
      n,
      attempt,
      latency: percentiles(lat.view()),
      directLatency: relay === 'paired' ? percentiles(direct.view()) : null,
      addedPerPacket: relay === 'paired' ? percentiles(added.view()) : null,
      sentInWindow,
      lost,
      late,
      unmatched,
      streamsWithLoss: lossy.size,
      perSecondMaxMs: Array.from(perSecond, (x) => (x === undefined ? null : Math.round(x * 10) / 10)),
      sentMbps: (sentBytes * 8) / ((we - ws) / 1000) / 1e6,
      receivedMbps: ((result.rtpBytesInWindowByRole[underTest] ?? 0) * 8) / ((we - ws) / 1000) / 1e6,
      windowS: (we - ws) / 1000,
      relayCores,
      relayMainCores,
      cameraCores,
      receiverCores,
      othersCores,
      relayExited,
      camera,
      receiver: result,
      recording,
      quietWaitS,
      pass,
      noisy,
      saturated,
      why: problems.join('; '),
      wallS: (performance.now() - t0) / 1000,
    };
    const L = pass_.latency;
    debug(`max latency per second of the window (ms): ${pass_.perSecondMaxMs.map((x) => num(x, 1)).join(' ')}`);
    log(
      `${relay.padEnd(6)} N=${String(n).padStart(3)}: latency p50 ${num(L.p50, 2)} p99 ${num(L.p99, 2)} max ${num(L.max, 1)} ms` +
        (pass_.addedPerPacket ? ` (direct p50 ${num(pass_.directLatency?.p50, 2)} p99 ${num(pass_.directLatency?.p99, 2)}; added per packet p50 ${num(pass_.addedPerPacket.p50, 2)} p99 ${num(pass_.addedPerPacket.p99, 2)})` : '') +
        `; ${num(pass_.receivedMbps, 0)} of ${num(pass_.sentMbps, 0)} Mbit/s; lost ${lost}+${late} late/${sentInWindow}, unmatched ${unmatched}; relay ${num(relayCores, 2)} cores${relayMainCores !== null ? ` (main ${num(relayMainCores, 2)})` : ''}; camera ${num(cameraCores, 2)} (lag p99 ${num(camera?.lagMs.p99, 1)} ms), receiver ${num(receiverCores, 2)} (loop p99 ${num(result.eventLoopDelayP99Ms, 1)} ms), others ${num(othersCores, 2)}` +
        (recording ? `; recorded ${num(recording.segmentBytes / 1e6)} MB, legs ${recording.cameraLegPackets}/${recording.vmsLegPackets} pkts` : '') +
        `; ${pass ? "PASS" : "MISS: " + pass_.why}; pass ${num(pass_.wallS, 0)} s${quietWaitS >= 1 ? ` (waited ${quietWaitS.toFixed(0)} s for quiet)` : ""}`,
    );
    return pass_;
  } finally {
    for (const f of ffmpegs) await stopChild(f, 'SIGKILL', 1000);
    if (camtap) await stopChild(camtap.child, 'SIGKILL', 1000);
    if (camtap && !opts.profileDir) rmSync(camtap.dataDir, { recursive: true, force: true });
    if (cam.child.proc.exitCode === null) await stopChild(cam.child, 'SIGKILL', 1000);
    rmSync(rxLog, { force: true });
    rmSync(camLog, { force: true });
  }
}

/**
 * A pass, run `RUNS` times (the lowest p99 kept); a miss while other processes were busy
 * (more than NOISY_CORES during its window) is run once more.
 */
async function step(relay: Relay, n: number, all: Pass[]): Promise<Pass | null> {
  let best: Pass | null = null;
  let retried = false;
  for (let attempt = 1; attempt <= RUNS + (retried ? 1 : 0); attempt++) {
    const p = await runPass(relay, n, attempt);
    if (!p) return best;
    all.push(p);
    if (!best || (p.pass && !best.pass) || (p.pass === best.pass && (p.latency.p99 ?? Infinity) < (best.latency.p99 ?? Infinity))) best = p;
    if (!p.pass && !retried && (p.othersCores === null || p.othersCores > NOISY_CORES) && !p.saturated) {
      retried = true;
      log(`${relay} N=${n}: missed while others used ${num(p.othersCores, 2)} cores: once more`);
    }
  }
  return best;
}

// ---------------------------------------------------------------------------------- sweep

interface Sweep {
  /** Every pass run, and the one kept per (relay, N). */
  passes: Pass[];
  kept: Pass[];
  maxPass: Record<'camtap' | 'ffmpeg' | 'direct', number | null>;
  firstMiss: Record<'camtap' | 'ffmpeg' | 'direct', number | null>;
  skipped: string[];
}

async function sweep(): Promise<Sweep> {
  const passes: Pass[] = [];
  const kept: Pass[] = [];
  const maxPass: Sweep['maxPass'] = { camtap: null, ffmpeg: null, direct: null };
  const firstMiss: Sweep['firstMiss'] = { camtap: null, ffmpeg: null, direct: null };
  const skipped: string[] = [];
  const active = { camtap: want('camtap'), ffmpeg: want('ffmpeg') };
  for (const n of STEPS) {
    if (!active.camtap && !active.ffmpeg && !(ONLY && ONLY.has('direct') && ONLY.size === 1)) break;
    if (want('direct')) {
      const d = await step('direct', n, passes);
      if (d) kept.push(d);
      if (d && d.pass) maxPass.direct = n;
      else {
        firstMiss.direct ??= n;
        log(`direct N=${n} missed: the camera simulator and receiver cannot carry ${n} streams here; stopping the sweep`);
        skipped.push(`N ≥ ${n}: the direct baseline itself missed (${d?.why ?? 'failed'})`);
        break;
      }
    }
    for (const relay of ['camtap', 'ffmpeg'] as const) {
      if (!active[relay]) continue;
      if (relay === 'ffmpeg' && n > FFMPEG_MAX) {
        skipped.push(`ffmpeg N=${n}: more than --ffmpeg-max ${FFMPEG_MAX} processes`);
        active.ffmpeg = false;
        continue;
      }
      const p = await step(relay, n, passes);
      if (p) kept.push(p);
      if (p && p.pass) maxPass[relay] = n;
      else {
        firstMiss[relay] = n;
        active[relay] = false;
      }
    }
  }
  // One step between the last pass and the first miss, when they are far apart.
  for (const relay of ['camtap', 'ffmpeg'] as const) {
    const lo = maxPass[relay];
    const hi = firstMiss[relay];
    if (lo === null || hi === null || hi - lo < 20) continue;
    const mid = Math.round((lo + hi) / 2 / 10) * 10;
    if (mid <= lo || mid >= hi) continue;
    if (want('direct') && !kept.some((p) => p.relay === 'direct' && p.n === mid)) {
      const d = await step('direct', mid, passes);
      if (d) kept.push(d);
      if (!d?.pass) continue;
    }
    const p = await step(relay, mid, passes);
    if (p) kept.push(p);
    if (p?.pass) maxPass[relay] = mid;
    else if (p) firstMiss[relay] = mid;
  }
  return { passes, kept, maxPass, firstMiss, skipped };
}

// ---------------------------------------------------------------------------------- profile

interface Profile {
  n: number;
  pass: Pass | null;
  summary: ProfileSummary | null;
  dir: string;
}

async function profile(n: number): Promise<Profile | null> {
  const dir = path.join(WORK, 'prof-camtap');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const p = await runPass('camtap', n, 1, { profileDir: dir });
  rmSync(path.join(WORK, 'camtap-data'), { recursive: true, force: true });
  const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')) : [];
  if (files.length === 0) {
    fail('camtap serve --cpu-prof', 'no .cpuprofile written');
    return { n, pass: p, summary: null, dir };
  }
  const summary = files.map((f) => summarizeCpuProfile(path.join(dir, f), ROOT, 25)).sort((a, b) => b.totalMs - a.totalMs)[0]!;
  for (const e of [...summary.topFunctions, ...summary.byFile]) e.name = toSource(e.name);
  log(`profiled camtap at N=${n}: ${path.join(dir, files[0]!)}`);
  return { n, pass: p, summary, dir };
}

/** `dist/x/y.js:L` in a profile entry -> `x/y.ts:L'` through the build's source map (the line of the last mapping on L). */
const sourceMaps = new Map<string, SourceMap | null>();
function toSource(name: string): string {
  return name.replace(/dist\/([^\s():]+)\.js(?::(\d+))?/g, (all, rel: string, line?: string) => {
    let sm = sourceMaps.get(rel);
    if (sm === undefined) {
      try {
        sm = new SourceMap(JSON.parse(readFileSync(path.join(ROOT, 'dist', `${rel}.js.map`), 'utf8')));
      } catch {
        sm = null;
      }
      sourceMaps.set(rel, sm);
    }
    if (!sm) return all;
    if (line === undefined) return `${rel}.ts`;
    const e = sm.findEntry(Number(line) - 1, 1 << 20) as { originalSource?: string; originalLine?: number };
    if (!e.originalSource || e.originalLine === undefined) return all;
    return `${path.relative(ROOT, path.resolve(path.join(ROOT, 'dist', path.dirname(rel)), e.originalSource))}:${e.originalLine + 1}`;
  });
}

// ---------------------------------------------------------------------------------- report

interface Target {
  name: string;
  target: string;
  measured: string;
  pass: boolean | null;
}

interface Result {
  date: string;
  reproduce: string;
  benchDir: string;
  machine: Machine & { ffmpeg: string | null };
  options: { steps: number[]; windowS: number; settleS: number; runs: number; pairedSteps: number[]; cameraTransport: string; quietMaxS: number; lateMs: number; generatorNice: number | null };
  loop: LoopInfo | null;
  sweep: Sweep;
  paired: Pass[];
  profile: Profile | null;
  rows: Row[];
  targets: Target[];
  failures: string[];
}

/** One kept pass with its comparison to the direct baseline at the same N. */
interface Row {
  pass: Pass;
  /** Differences of percentiles against the direct pass of the same N, ms. */
  addedP50: number | null;
  addedP99: number | null;
  streamsPerCore: number | null;
  gbpsPerCore: number | null;
  coresPerGbps: number | null;
}

function rowsOf(kept: Pass[]): Row[] {
  return kept.map((p) => {
    const d = kept.find((x) => x.relay === 'direct' && x.n === p.n);
    const rel = p.relay !== 'direct';
    return {
      pass: p,
      addedP50: rel && d && p.latency.p50 !== null && d.latency.p50 !== null ? p.latency.p50 - d.latency.p50 : null,
      addedP99: rel && d && p.latency.p99 !== null && d.latency.p99 !== null ? p.latency.p99 - d.latency.p99 : null,
      streamsPerCore: rel && p.relayCores ? p.n / p.relayCores : null,
      gbpsPerCore: rel && p.relayCores ? p.receivedMbps / 1000 / p.relayCores : null,
      coresPerGbps: rel && p.receivedMbps > 0 && p.relayCores !== null ? p.relayCores / (p.receivedMbps / 1000) : null,
    };
  });
}

function pf(p: boolean | null): string {
  return p === null ? 'n/a' : p ? 'PASS' : 'MISS';
}

function spawnSyncFirstLine(cmd: string, args: string[]): string | null {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) return null;
  return (r.stdout || r.stderr || '').split('\n')[0]?.trim() ?? null;
}

function targetsOf(rows: Row[], sw: Sweep, paired: Pass[]): Target[] {
  const camRows = rows.filter((r) => r.pass.relay === 'camtap' && r.pass.pass);
  const ffRows = rows.filter((r) => r.pass.relay === 'ffmpeg' && r.pass.pass);
  const worstAdded = camRows.reduce<number | null>((m, r) => (r.addedP99 === null ? m : m === null ? r.addedP99 : Math.max(m, r.addedP99)), null);
  const pairedWorst = paired.reduce<number | null>((m, p) => (p.addedPerPacket?.p99 == null ? m : m === null ? p.addedPerPacket.p99 : Math.max(m, p.addedPerPacket.p99)), null);
  const top = camRows.find((r) => r.pass.n === sw.maxPass.camtap) ?? null;
  // Streams per core at the largest N both relays passed.
  const common = ffRows.map((r) => r.pass.n).filter((n) => camRows.some((c) => c.pass.n === n));
  const nCommon = common.length ? Math.max(...common) : null;
  const cAt = camRows.find((r) => r.pass.n === nCommon);
  const fAt = ffRows.find((r) => r.pass.n === nCommon);
  const ratio = cAt?.streamsPerCore && fAt?.streamsPerCore ? cAt.streamsPerCore / fAt.streamsPerCore : null;
  const topFf = ffRows.find((r) => r.pass.n === sw.maxPass.ffmpeg) ?? null;
  const noisyMiss = (relay: 'camtap' | 'ffmpeg') => rows.some((r) => r.pass.relay === relay && r.pass.n === sw.firstMiss[relay] && r.pass.noisy);
  const underTarget = camRows.filter((r) => r.addedP99 !== null && r.addedP99 < TARGETS.addedP99Ms).map((r) => r.pass.n);
  const capRatio = top?.streamsPerCore && topFf?.streamsPerCore ? top.streamsPerCore / topFf.streamsPerCore : null;
  return [
    {
      name: 'p99 added latency vs direct (camtap, every N it relayed without loss; difference of p99s)',
      target: `< ${TARGETS.addedP99Ms} ms`,
      measured: camRows.length ? `worst ${num(worstAdded, 2)} ms (${camRows.map((r) => `N=${r.pass.n}: ${num(r.addedP99, 2)}`).join(', ')})` : 'n/a',
      pass: worstAdded === null ? null : worstAdded < TARGETS.addedP99Ms,
    },
    {
      name: 'p99 added latency, per packet (paired passes: through camtap − direct, same packet)',
      target: `< ${TARGETS.addedP99Ms} ms`,
      measured: paired.length ? paired.map((p) => `N=${p.n}: ${num(p.addedPerPacket?.p99, 2)} ms`).join(', ') : 'n/a',
      pass: pairedWorst === null ? null : pairedWorst < TARGETS.addedP99Ms,
    },
    {
      name: 'relayed and recorded per core (camtap, largest N without loss; all threads)',
      target: `>= ${TARGETS.gbpsPerCore} Gbit/s per core`,
      measured: top ? `N=${top.pass.n}: ${num(top.pass.receivedMbps, 0)} Mbit/s on ${num(top.pass.relayCores, 2)} cores = ${num(top.gbpsPerCore, 2)} Gbit/s per core (${num(top.coresPerGbps, 2)} cores per Gbit/s)` : 'n/a',
      pass: top?.gbpsPerCore == null ? null : top.gbpsPerCore >= TARGETS.gbpsPerCore,
    },
    {
      name: 'largest N on one core with no loss',
      target: 'report',
      measured: `camtap ${sw.maxPass.camtap ?? 'none'}${sw.firstMiss.camtap !== null ? ` (first miss ${sw.firstMiss.camtap}${noisyMiss('camtap') ? ', others busy' : ''})` : ' (no miss up to the last step)'}, with p99 added latency under ${TARGETS.addedP99Ms} ms ${underTarget.length ? Math.max(...underTarget) : 'none'}; ffmpeg ${sw.maxPass.ffmpeg ?? 'none'}${sw.firstMiss.ffmpeg !== null ? ` (first miss ${sw.firstMiss.ffmpeg}${noisyMiss('ffmpeg') ? ', others busy' : ''})` : ''}; direct baseline ${sw.maxPass.direct ?? 'none'}${sw.firstMiss.direct !== null ? ` (missed at ${sw.firstMiss.direct}: generator limit)` : ''}`,
      pass: null,
    },
    {
      name: `streams per core vs ffmpeg (same N, the largest both relayed without loss${nCommon !== null ? `: ${nCommon}` : ''})`,
      target: `>= ${TARGETS.vsFfmpeg}×`,
      measured: cAt && fAt ? `camtap ${num(cAt.streamsPerCore, 0)} vs ffmpeg ${num(fAt.streamsPerCore, 0)} streams per core = ${num(ratio, 2)}×` : 'n/a',
      pass: ratio === null ? null : ratio >= TARGETS.vsFfmpeg,
    },
    {
      name: 'streams per core, each relay at its own largest N without loss',
      target: `>= ${TARGETS.vsFfmpeg}×`,
      measured: top && topFf ? `camtap ${num(top.streamsPerCore, 0)} (N=${top.pass.n}) vs ffmpeg ${num(topFf.streamsPerCore, 0)} (N=${topFf.pass.n}) = ${num(capRatio, 2)}×` : 'n/a',
      pass: capRatio === null ? null : capRatio >= TARGETS.vsFfmpeg,
    },
  ];
}

function renderMarkdown(r: Result): string {
  const L: string[] = [];
  const m = r.machine;
  const lp = r.loop;
  L.push('## Relay', '');
  L.push(`Measured ${r.date.slice(0, 16).replace('T', ' ')} UTC on ${m.nproc} × ${m.cpuModel}, ${num(m.memTotalBytes / 2 ** 30, 1)} GiB RAM, ${m.kernel}, Node ${m.node}; ${m.ffmpeg ?? 'ffmpeg ?'}.`, '');
  L.push('Reproduce:', '', '```sh', r.reproduce, '```', '');
  L.push(
    `Method. Three kinds of process on loopback, each one process: a camera simulator (bench/relay/fake-camera.ts) serving N RTSP streams, the relay under test, and a receiver standing in for the VMS (bench/relay/receiver.ts). ` +
      (lp
        ? `The camera loops the H.264 stream of \`${path.basename(lp.source.file)}\` (${num(lp.source.accessUnits)} access units, ${num(lp.source.loopS, 1)} s at ${num(lp.source.capturedFps, 0)} fps, ${num(lp.source.capturedRtpBps / 1e6, 2)} Mbit/s of RTP, an IDR every ${num((lp.source.loopS / lp.idrs), 1)} s), re-packetized exactly as FFmpeg's RTP muxer does it (1460-byte payloads: STAP-A for small NAL units, FU-A of 1458 bytes) and paced to ${TARGETS.streamMbps} Mbit/s by playing it ${num(lp.speed, 2)}× faster (${num(lp.source.pacedFps, 1)} pictures/s, RTP timestamps scaled to match; ${num(lp.packetsPerLoop / (lp.loopMs / 1000), 0)} packets/s per stream, up to ${lp.maxRtpBytes} bytes), nothing padded. `
        : '') +
      `Each stream starts at an IDR of a different GOP when first played; an access unit is written in one write per session (TCP interleaved) when due. The receiver opens its sessions 25 ms apart (at most 8 s in all), and the ffmpeg processes are started 25 ms apart. ` +
      `Latency of a packet = the receiver's read − the camera's write, both on CLOCK_MONOTONIC (one clock for every process), for every packet the camera wrote during the ${r.options.windowS} s window (opened ${r.options.settleS} s after the last session played); packets are paired by payload (length and last 8 bytes), which every relay keeps: camtap forwards packets unchanged but for seq/timestamp/SSRC, and ffmpeg \`-c copy -f rtp\` re-packetizes into the same payloads because the camera already packetizes as ffmpeg does (every ffmpeg packet was paired: see the unmatched column). A sent packet never read, or read more than ${r.options.lateMs} ms after it was sent (a live viewer has given up on it: TCP never drops, so a relay that falls behind shows as growing latency first), is lost. ` +
      `Relays: **direct** (the receiver plays \`rtsp://camera/streamI\` itself: the baseline), **camtap** (\`camtap serve --config C --data D --rtsp-port 0 --http-port 0\` with the N cameras in C, ${r.options.cameraTransport.toUpperCase()} to the camera; the receiver plays \`rtsp://camtap/camI\` over TCP interleaved; camtap records both legs through its inline tap into pcapng segments), **ffmpeg** (per stream \`ffmpeg -nostdin -v error -rtsp_transport ${r.options.cameraTransport} -i rtsp://camera/streamI -c copy -f rtp rtp://127.0.0.1:PORT\`, the receiver on UDP PORT). ` +
      `CPU is utime + stime from /proc over the window: camtap's whole process (its main thread, where all its JavaScript runs, in parentheses), the sum of all ffmpeg processes. On loopback the kernel's receive path often runs in the sender's context, so part of a relay's input cost is charged to the camera process and part of its output cost is the receiver's work charged to the relay; the same holds for both relays. ` +
      `The camera and the receiver run at ${r.options.generatorNice !== null ? `nice ${r.options.generatorNice}` : 'normal priority (renicing was not allowed)'}: the load generator must not be what falls behind (the kernel shares the CPU by thread, so N ffmpeg processes would get N shares against its one); its CPU and timer lateness are in the table. ` +
      `A step passes when every session plays through the window, no packet is lost, the camera never had to skip a session for a full socket queue, and the relay fits in one core (camtap's main thread under ${SATURATED_CORES} cores, ffmpeg's processes together under 1 core). ` +
      `Added latency = relay p50/p99 − direct p50/p99 at the same N (different passes; the difference of percentiles, not a per-packet figure); the paired passes also give it per packet: the receiver plays each stream both directly and through camtap at once, and every packet's two latencies are subtracted. ` +
      `The machine has ${m.nproc} cores shared with other engineers' test runs: each pass waits up to ${r.options.quietMaxS} s for the others to use under 0.3 core, their CPU during the window is in the table, and a miss while they used more than ${NOISY_CORES} cores is run again.`,
    '',
  );
  L.push('### Steps', '');
  L.push(
    mdTable(
      ['N', 'relay', 'playing', 'received Mbit/s', 'lost', 'unmatched', 'latency p50 ms', 'p99 ms', 'p99.9 ms', 'max ms', 'added p50 / p99 ms', 'relay cores (main)', 'streams per core', 'Gbit/s per core', 'camera cores / lag p99 ms', 'receiver cores / loop p99 ms', "others' cores", ''],
      r.rows
        .slice()
        .sort((a, b) => a.pass.n - b.pass.n || ['direct', 'camtap', 'ffmpeg'].indexOf(a.pass.relay) - ['direct', 'camtap', 'ffmpeg'].indexOf(b.pass.relay))
        .map((x) => {
          const p = x.pass;
          return [
            String(p.n),
            p.relay,
            `${p.receiver.playing}/${p.receiver.sessions}`,
            num(p.receivedMbps, 0),
            `${num(p.lost)}${p.late ? ` + ${num(p.late)} late` : ''} / ${num(p.sentInWindow)}`,
            num(p.unmatched),
            num(p.latency.p50, 2),
            num(p.latency.p99, 2),
            num(p.latency.p999, 1),
            num(p.latency.max, 1),
            p.relay === 'direct' ? '' : `${num(x.addedP50, 2)} / ${num(x.addedP99, 2)}`,
            p.relay === 'direct' ? '' : `${num(p.relayCores, 2)}${p.relayMainCores !== null ? ` (${num(p.relayMainCores, 2)})` : ''}`,
            p.relay === 'direct' ? '' : num(x.streamsPerCore, 0),
            p.relay === 'direct' ? '' : num(x.gbpsPerCore, 2),
            `${num(p.cameraCores, 2)} / ${num(p.camera?.lagMs.p99, 1)}`,
            `${num(p.receiverCores, 2)} / ${num(p.receiver.eventLoopDelayP99Ms, 1)}`,
            num(p.othersCores, 2),
            p.pass ? 'PASS' : `MISS${p.noisy ? ' (others busy: inconclusive)' : ''}: ${p.why}`,
          ];
        }),
      ['r', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'l'],
    ),
    '',
  );
  const extra = r.sweep.passes.filter((p) => !r.sweep.kept.includes(p));
  if (extra.length)
    L.push(`Passes run again (not in the table): ${extra.map((p) => `${p.relay} N=${p.n} (${p.pass ? 'pass' : `miss: ${p.why}`}; p99 ${num(p.latency.p99, 2)} ms; others ${num(p.othersCores, 2)} cores)`).join('; ')}.`, '');
  if (r.sweep.skipped.length) L.push(`Not run: ${r.sweep.skipped.join('; ')}.`, '');
  L.push(
    `Largest N without loss on one core: camtap **${r.sweep.maxPass.camtap ?? 'none'}**${r.sweep.firstMiss.camtap !== null ? ` (first miss at ${r.sweep.firstMiss.camtap})` : ''}, ffmpeg **${r.sweep.maxPass.ffmpeg ?? 'none'}**${r.sweep.firstMiss.ffmpeg !== null ? ` (first miss at ${r.sweep.firstMiss.ffmpeg})` : ''}; the direct baseline ${r.sweep.firstMiss.direct !== null ? `missed at ${r.sweep.firstMiss.direct}: beyond that the camera simulator and receiver, sharing the machine with the relay, are the limit, not the relay` : `passed every step it ran (up to ${r.sweep.maxPass.direct ?? 'n/a'})`}.`,
    '',
  );
  if (r.paired.length) {
    L.push('### Added latency per packet (paired passes)', '');
    L.push(
      mdTable(
        ['N', 'sessions', 'direct p50 / p99 ms', 'through camtap p50 / p99 ms', 'added p50 ms', 'added p90 ms', 'added p99 ms', 'added p99.9 ms', 'added max ms', 'lost (camtap)', 'camtap cores (main)', "others' cores"],
        r.paired.map((p) => [
          String(p.n),
          `${p.receiver.playing}/${p.receiver.sessions}`,
          `${num(p.directLatency?.p50, 2)} / ${num(p.directLatency?.p99, 2)}`,
          `${num(p.latency.p50, 2)} / ${num(p.latency.p99, 2)}`,
          num(p.addedPerPacket?.p50, 2),
          num(p.addedPerPacket?.p90, 2),
          num(p.addedPerPacket?.p99, 2),
          num(p.addedPerPacket?.p999, 1),
          num(p.addedPerPacket?.max, 1),
          `${num(p.lost)}${p.late ? ` + ${num(p.late)} late` : ''} / ${num(p.sentInWindow)}`,
          `${num(p.relayCores, 2)} (${num(p.relayMainCores, 2)})`,
          num(p.othersCores, 2),
        ]),
        ['r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
      ),
      '',
    );
    L.push('Both sessions of a stream get the same camera write, so a packet\'s two latencies differ only by what camtap adds (and by the receiver reading one socket before the other). The camera and the receiver carry twice the traffic in these passes.', '');
  }
  const recs = r.rows.filter((x) => x.pass.recording);
  if (recs.length) {
    L.push('### Recording check', '');
    L.push(
      mdTable(
        ['N', 'segments MB', 'camera-leg RTP packets recorded', 'VMS-leg RTP packets recorded', 'packets the receiver read', 'packets the camera sent'],
        recs.map((x) => {
          const p = x.pass;
          const rec = p.recording!;
          return [String(p.n), num(rec.segmentBytes / 1e6, 0), num(rec.cameraLegPackets), num(rec.vmsLegPackets), num(p.receiver.packets), num(p.camera?.packets)];
        }),
        ['r', 'r', 'r', 'r', 'r', 'r'],
      ),
      '',
    );
    L.push('From `camtap streams --json` on the data directory after each camtap pass (camtap stopped with SIGTERM): the camera leg holds every packet camtap read from the cameras (from the first PLAY to the stop), the VMS leg every packet it wrote to the receiver, which reads them all but the last few in flight when it closes.', '');
  }
  if (r.profile?.summary) {
    const s = r.profile.summary;
    L.push("### Where camtap's time goes", '');
    L.push(`\`node --cpu-prof dist/core/cli.js serve ...\` at N=${r.profile.n} (${num(r.profile.pass?.receivedMbps, 0)} Mbit/s relayed; main thread ${num(r.profile.pass?.relayMainCores, 2)} cores during the window with the profiler on), self time over the whole run including start-up (${num(s.totalMs / 1000, 1)} s, ${num(s.samples)} samples; V8 pseudo-frames in parentheses; \`(idle)\` is the main thread waiting). The raw profile stays in \`$BENCH_DIR/relay/prof-camtap/\`.`, '');
    L.push(
      mdTable(
        ['function (file:line)', 'self ms', 'self %', 'total %'],
        s.topFunctions.slice(0, 20).map((f) => [f.name, num(f.selfMs, 0), num(f.selfPct, 1), num(f.totalPct, 1)]),
        ['l', 'r', 'r', 'r'],
      ),
      '',
    );
    L.push(mdTable(['file', 'self ms', 'self %'], s.byFile.slice(0, 12).map((f) => [f.name, num(f.selfMs, 0), num(f.selfPct, 1)]), ['l', 'r', 'r']), '');
  }
  L.push('### Targets', '');
  L.push(mdTable(['target', 'wanted', 'measured', ''], r.targets.map((x) => [x.name, x.target, x.measured, pf(x.pass)])), '');
  const waited = r.sweep.passes.reduce((a, p) => a + p.quietWaitS, 0);
  const others = r.sweep.passes.map((p) => p.othersCores).filter((x): x is number => x !== null);
  L.push(
    `Noise: the passes waited ${num(waited, 0)} s in all for a quiet machine; other processes used ${others.length ? `${num(Math.min(...others), 2)}..${num(Math.max(...others), 2)} cores (median ${num(others.slice().sort((a, b) => a - b)[others.length >> 1], 2)})` : 'n/a'} during the windows.`,
    '',
  );
  if (r.failures.length) {
    L.push('### Failed commands', '');
    for (const f of r.failures) L.push(`- ${f}`);
    L.push('');
  }
  return L.join('\n');
}

// ---------------------------------------------------------------------------------- main

async function main(): Promise<number> {
  const date = new Date().toISOString();
  const machine = { ...describeMachine(), ffmpeg: spawnSyncFirstLine('ffmpeg', ['-version'])?.replace(/\s+Copyright.*$/, '') ?? null };
  log(`bench dir ${BENCH_DIR}; steps ${STEPS.join(',')}, ${WINDOW_S} s windows; template ${TEMPLATE}; ${machine.nproc} × ${machine.cpuModel}; node ${machine.node}`);
  if (!existsSync(CLI)) {
    fail('camtap', `${CLI} missing: run npm run build first`);
    return finish(null);
  }
  if (!existsSync(TEMPLATE)) {
    fail('template', `${TEMPLATE} missing (--template)`);
    return finish(null);
  }
  // The loop's figures, from a camera simulator with one stream.
  const probe = await startCamera(1);
  if (!probe) return finish(null);
  const loop = probe.loop;
  await probe.stop();
  log(`camera loop: ${loop.aus} access units, ${num(loop.loopMs / 1000, 2)} s, ${num(loop.rtpBps / 1e6, 2)} Mbit/s (×${num(loop.speed, 2)} the capture's rate), ${num(loop.packetsPerLoop / (loop.loopMs / 1000), 0)} packets/s per stream`);

  const sw = await sweep();
  const paired: Pass[] = [];
  if (want('paired')) {
    const ns = [...new Set(PAIRED_STEPS.map((n) => (n === -1 ? (sw.maxPass.camtap ?? 0) : n)))].filter((n) => n > 0).sort((a, b) => a - b);
    for (const n of ns) {
      if (sw.maxPass.camtap !== null && n > sw.maxPass.camtap) continue;
      const p = await runPass('paired', n, 1);
      if (p) paired.push(p);
    }
  }
  let prof: Profile | null = null;
  if (!argv['no-profile'] && want('profile')) {
    // Where camtap is the bottleneck: its first miss, else its largest N.
    const n = sw.firstMiss.camtap ?? sw.maxPass.camtap ?? STEPS[0]!;
    prof = await profile(n);
  }
  const rows = rowsOf(sw.kept);
  const targets = targetsOf(rows, sw, paired);
  return finish({
    date,
    reproduce: 'npm run build && npm run bench:relay',
    benchDir: BENCH_DIR,
    machine,
    options: { steps: STEPS, windowS: WINDOW_S, settleS: SETTLE_S, runs: RUNS, pairedSteps: PAIRED_STEPS, cameraTransport: CAMERA_TRANSPORT, quietMaxS: QUIET ? QUIET_MAX_MS / 1000 : 0, lateMs: LATE_MS, generatorNice: reniced ? GENERATOR_NICE : null },
    loop,
    sweep: sw,
    paired,
    profile: prof,
    rows,
    targets,
    failures,
  });
}

function finish(r: Result | null): number {
  if (!r) {
    for (const f of failures) process.stderr.write(`bench: ${f}\n`);
    return 1;
  }
  const json = JSON.stringify(r, (_k, v) => (typeof v === 'bigint' ? String(v) : v), 2);
  const stamp = r.date.replace(/[:.]/g, '-');
  writeFileSync(path.join(BENCH_DIR, `relay-${stamp}.json`), json);
  writeFileSync(path.join(BENCH_DIR, 'relay-latest.json'), json);
  const md = renderMarkdown(r);
  process.stdout.write(md + '\n');
  for (const x of r.targets) process.stdout.write(`${pf(x.pass).padEnd(4)}  ${x.name}: ${x.measured} (target ${x.target})\n`);
  log(`result: ${path.join(BENCH_DIR, 'relay-latest.json')}`);
  if (!argv['no-docs'] && !ONLY) {
    const docFile = path.join(ROOT, 'docs/BENCHMARKS.md');
    const doc = existsSync(docFile) ? readFileSync(docFile, 'utf8') : '# Benchmarks\n\nFigures from the scripts in `bench/` (see bench/README.md). Each script rewrites its own section.\n';
    writeFileSync(docFile, replaceSection(doc, '## Relay', md));
    log(`wrote the "## Relay" section of ${docFile}`);
  }
  if (failures.length) {
    process.stderr.write(`\nbench: ${failures.length} command(s) failed:\n${failures.map((f) => '  ' + f).join('\n')}\n`);
    return 1;
  }
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
    killAll();
  },
  (e: unknown) => {
    process.stderr.write(`bench: ${(e as Error).stack ?? String(e)}\n`);
    killAll();
    process.exitCode = 1;
  },
);
