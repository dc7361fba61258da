/** What the benchmark ran on, for the report: CPU, cores, memory, kernel, tool versions. */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';

export interface Machine {
  nproc: number;
  cpuModel: string;
  memTotalBytes: number;
  kernel: string;
  node: string;
  tools: Record<string, string | null>;
}

function firstLine(cmd: string, args: string[]): string | null {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) return null;
  const text = `${r.stdout ?? ''}\n${r.stderr ?? ''}`;
  return text.split('\n').find((l) => l.trim() !== '' && !/^Running as user/.test(l))?.trim() ?? null;
}

export function describeMachine(): Machine {
  let cpuModel = os.cpus()[0]?.model ?? 'unknown';
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) cpuModel = m[1]!.trim();
  } catch {}
  return {
    nproc: os.availableParallelism(),
    cpuModel,
    memTotalBytes: os.totalmem(),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    tools: {
      tshark: firstLine('tshark', ['--version']),
      tcpdump: firstLine('tcpdump', ['--version']),
      dd: firstLine('dd', ['--version']),
      gnuTime: firstLine('/usr/bin/time', ['--version']),
    },
  };
}
