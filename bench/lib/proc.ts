/**
 * Per-process figures from /proc for processes the benchmark started: CPU time of the
 * whole process and of its main thread (a Node process is one JavaScript thread plus the
 * libuv pool, GC and compiler threads; "one core" for JS is the main thread), and bytes
 * read through read(2)/pread(2) (`rchar`: page-cache hits count, so it says how much a
 * command read, not how much came from disk).
 */
import { readFileSync } from 'node:fs';

/** Clock ticks per second for /proc/<pid>/stat; 100 on every Linux build Debian ships. */
export const CLK_TCK = 100;

function statTicks(file: string): number | null {
  let s: string;
  try {
    s = readFileSync(file, 'latin1');
  } catch {
    return null;
  }
  // comm (field 2) may hold spaces and parentheses: the fields after it start at the last ')'.
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  // f[0] is field 3 (state): utime is field 14, stime 15.
  return Number(f[11]) + Number(f[12]);
}

export interface ProcCpu {
  /** User + system seconds of every thread of the process. */
  processS: number;
  /** User + system seconds of the main thread (tid = pid). */
  mainThreadS: number;
}

/** CPU seconds used so far by `pid` (all threads, and the main thread alone), or null once gone. */
export function procCpu(pid: number): ProcCpu | null {
  const all = statTicks(`/proc/${pid}/stat`);
  const main = statTicks(`/proc/${pid}/task/${pid}/stat`);
  if (all === null || main === null) return null;
  return { processS: all / CLK_TCK, mainThreadS: main / CLK_TCK };
}

/** `rchar` of /proc/<pid>/io (`self` for this process): bytes read by read-type system calls, or null. */
export function procReadBytes(pid: number | 'self' = 'self'): number | null {
  try {
    const m = /^rchar:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'latin1'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** CPU seconds all CPUs together have been busy since boot (everything but idle and iowait, /proc/stat), or null. */
export function machineBusyS(): number | null {
  try {
    const f = readFileSync('/proc/stat', 'latin1').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already inside user).
    return (f.slice(0, 8).reduce((a, b) => a + b, 0) - (f[3] ?? 0) - (f[4] ?? 0)) / CLK_TCK;
  } catch {
    return null;
  }
}
