/**
 * Runs one command and measures it: wall time, CPU time (user + system) and peak RSS.
 *
 * Peak RSS is the child's own high-water mark (`VmHWM` in /proc/<pid>/status), polled while
 * it runs. When GNU time (Debian package `time`) is installed the command runs under
 * `/usr/bin/time -f ... -o FILE`, which adds the kernel's exact figures from wait4(2):
 * user/system CPU and ru_maxrss (the same high-water mark, taken at exit, so it cannot miss
 * growth after the last poll). The polled pid is then the command itself, found as the
 * child of the `time` process, never `time` or a shell.
 *
 * Without GNU time, CPU comes from the last poll of /proc/<pid>/stat and may miss up to
 * one poll interval at the end; `exact` says which one was used.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export const GNU_TIME = '/usr/bin/time';

export interface MeasureOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Kill the command (SIGKILL, by pid) after this long. Default 1 h. */
  timeoutMs?: number;
  /** /proc poll interval. Default 50 ms. */
  pollMs?: number;
  /** Keep at most this many bytes of stdout (from the start). Default 4 MiB. */
  maxStdout?: number;
  /** Use GNU time when present. Default true. */
  useGnuTime?: boolean;
}

export interface Measurement {
  /** The command as run (without the GNU time wrapper). */
  argv: string[];
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  /** Wall seconds from spawn to exit, by the monotonic clock of this process. */
  wallS: number;
  userS: number;
  sysS: number;
  cpuS: number;
  /** Peak RSS in bytes: the larger of the polled VmHWM and ru_maxrss. */
  peakRssBytes: number;
  polledHwmBytes: number | null;
  rusageMaxRssBytes: number | null;
  /** True when CPU and RSS come from wait4(2) via GNU time, false when from /proc polling. */
  exact: boolean;
  stdout: string;
  /** The last 8 KiB of stderr. */
  stderrTail: string;
  /**
   * CPU seconds the whole machine spent busy (all CPUs, /proc/stat) during the run, minus the
   * command's own: how much other processes competed with it. A noise indicator only (it
   * includes this harness's polling and kernel threads).
   */
  othersCpuS: number | null;
  /** 1-minute load average just before the start. */
  loadAvg1: number | null;
}

/** True when the command exited by itself with status 0. */
export function succeeded(m: Measurement): boolean {
  return m.exitCode === 0 && !m.timedOut;
}

/** `VmHWM` of a pid in bytes, or null once the process is gone. */
export function readVmHwm(pid: number): number | null {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** Parent pid, user and system CPU ticks from /proc/<pid>/stat, or null once gone. */
function readStat(pid: number): { ppid: number; utime: number; stime: number } | null {
  let s: string;
  try {
    s = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return null;
  }
  // comm (field 2) may hold spaces and parentheses: the fields after it start at the last ')'.
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  // f[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
  return { ppid: Number(f[1]), utime: Number(f[11]), stime: Number(f[12]) };
}

/** The first process whose parent is `ppid` (this kernel has no /proc/<pid>/task/<tid>/children). */
function findChild(ppid: number): number | null {
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const st = readStat(Number(name));
    if (st && st.ppid === ppid) return Number(name);
  }
  return null;
}

/** Busy jiffies of all CPUs together (everything but idle and iowait), or null. */
function machineBusyTicks(): number | null {
  try {
    const f = readFileSync('/proc/stat', 'latin1').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already inside user).
    return f.slice(0, 8).reduce((a, b) => a + b, 0) - (f[3] ?? 0) - (f[4] ?? 0);
  } catch {
    return null;
  }
}

function loadAvg1(): number | null {
  try {
    return Number(readFileSync('/proc/loadavg', 'latin1').split(' ')[0]);
  } catch {
    return null;
  }
}

/**
 * Waits until the rest of the machine is quiet: `windows` consecutive 500 ms windows in
 * which all CPUs together were busy less than `maxBusyCores` (0.3 = 30 % of one core), or
 * until `maxWaitMs`. Returns the seconds waited. On a shared box this keeps a test run or
 * a compile next door out of most measurements; the result rows still report the CPU
 * others used during each run.
 */
export async function waitForQuiet(opts: { maxBusyCores?: number; windows?: number; maxWaitMs?: number } = {}): Promise<number> {
  const limit = opts.maxBusyCores ?? 0.3;
  const need = opts.windows ?? 2;
  const t0 = Date.now();
  let quiet = 0;
  while (Date.now() - t0 < (opts.maxWaitMs ?? 60_000)) {
    const a = machineBusyTicks();
    await new Promise((r) => setTimeout(r, 500));
    const b = machineBusyTicks();
    if (a === null || b === null) return 0;
    quiet = (b - a) / CLK_TCK / 0.5 < limit ? quiet + 1 : 0;
    if (quiet >= need) break;
  }
  return (Date.now() - t0) / 1000;
}

/** Clock ticks per second for /proc/<pid>/stat; 100 on every Linux build Debian ships. */
const CLK_TCK = 100;

/** Runs `cmd args` and measures it. Never throws for a failing command: check `succeeded`. */
export function measure(cmd: string, args: string[], opts: MeasureOptions = {}): Promise<Measurement> {
  const useTime = opts.useGnuTime !== false && existsSync(GNU_TIME);
  const statFile = path.join(tmpdir(), `camtap-bench-time-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}`);
  const argv = [cmd, ...args];
  const spawnArgv = useTime ? [GNU_TIME, '-f', '%e %U %S %M', '-o', statFile, '--', ...argv] : argv;
  const maxStdout = opts.maxStdout ?? 4 << 20;
  return new Promise((resolve, reject) => {
    const load = loadAvg1();
    const busy0 = machineBusyTicks();
    const t0 = process.hrtime.bigint();
    const child = spawn(spawnArgv[0]!, spawnArgv.slice(1), { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let target: number | null = useTime ? null : (child.pid ?? null);
    let hwm: number | null = null;
    let ticks: { utime: number; stime: number } | null = null;
    const stdout: Buffer[] = [];
    let stdoutBytes = 0;
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (b: Buffer) => {
      if (stdoutBytes < maxStdout) stdout.push(b);
      stdoutBytes += b.length;
    });
    child.stderr.on('data', (b: Buffer) => {
      stderr = (stderr + b.toString('utf8')).slice(-8192);
    });
    const poll = () => {
      if (target === null && child.pid !== undefined) target = findChild(child.pid);
      if (target === null) return;
      const h = readVmHwm(target);
      if (h !== null) hwm = Math.max(hwm ?? 0, h);
      const st = readStat(target);
      if (st) ticks = { utime: st.utime, stime: st.stime };
    };
    const timer = setInterval(poll, opts.pollMs ?? 50);
    const killer = setTimeout(() => {
      timedOut = true;
      // Kill the measured command by its pid (and the GNU time wrapper, which then exits).
      if (target !== null) {
        try {
          process.kill(target, 'SIGKILL');
        } catch {}
      }
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 3_600_000);
    child.on('error', (e) => {
      clearInterval(timer);
      clearTimeout(killer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
      const busy1 = machineBusyTicks();
      clearInterval(timer);
      clearTimeout(killer);
      let exitCode = code;
      let sig: string | null = signal;
      let userS = ticks ? (ticks as { utime: number }).utime / CLK_TCK : 0;
      let sysS = ticks ? (ticks as { stime: number }).stime / CLK_TCK : 0;
      let rusageMaxRssBytes: number | null = null;
      let exact = false;
      if (useTime) {
        let text = '';
        try {
          text = readFileSync(statFile, 'utf8');
        } catch {}
        rmSync(statFile, { force: true });
        // GNU time writes "Command exited with non-zero status N" before the format line.
        const lines = text.trim().split('\n');
        const m = /^([\d.]+) ([\d.]+) ([\d.]+) (\d+)$/.exec(lines[lines.length - 1] ?? '');
        if (m) {
          userS = Number(m[2]);
          sysS = Number(m[3]);
          rusageMaxRssBytes = Number(m[4]) * 1024;
          exact = true;
        }
        // GNU time exits with the command's status; a signal it reports in the file.
        const sg = /terminated by signal (\d+)/.exec(text);
        if (sg) {
          exitCode = null;
          sig = `signal ${sg[1]}`;
        }
      }
      const peak = Math.max(hwm ?? 0, rusageMaxRssBytes ?? 0);
      resolve({
        argv,
        exitCode,
        signal: sig,
        timedOut,
        wallS,
        userS,
        sysS,
        cpuS: userS + sysS,
        peakRssBytes: peak,
        polledHwmBytes: hwm,
        rusageMaxRssBytes,
        exact,
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderrTail: stderr,
        othersCpuS: busy0 !== null && busy1 !== null ? Math.max(0, (busy1 - busy0) / CLK_TCK - (userS + sysS)) : null,
        loadAvg1: load,
      });
    });
  });
}
