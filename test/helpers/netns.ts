/**
 * A camera network in network namespaces this test creates (after ../shared/lab/netns_topo.sh):
 *
 *   <p>sw        "switch": bridge br0 with ageing_time 0, so it floods every frame to
 *                every port like a hub (each host sees the others' traffic: the camtap
 *                host's eth0 is a tap on the VMS link)
 *   <p>c1..cN    cameras, eth0 = <net>.11, .12, ...
 *   <p>v1..vM    VMSs,    eth0 = <net>.101, .102, ...
 *   <p>h         the camtap host, eth0 = <net>.200
 *
 * `<p>` is unique per test process and `<net>` a 10.79.x.0/24 picked from the PID, so
 * test files running at once do not meet. Nothing connects these namespaces to the root
 * namespace: every peer runs inside one (`exec`, `spawnIn`), and the namespaces are
 * deleted when the test ends (processes still in them are killed by PID first).
 */
import { execFileSync } from 'node:child_process';
import { startProcess, type Proc } from './peers.js';

export interface Topology {
  /** Namespace names: `cam(i)`, `vms(j)` (1-based), `host`, `sw`. */
  cam(i: number): string;
  vms(j: number): string;
  host: string;
  sw: string;
  /** Addresses. */
  camIp(i: number): string;
  vmsIp(j: number): string;
  hostIp: string;
  /** Runs a program in a namespace to its end. */
  exec(ns: string, cmd: string, args: string[], opts?: { timeoutMs?: number; input?: string }): { code: number; stdout: string; stderr: string };
  /** Starts a long-running peer in a namespace (tracked, stopped by PID at the end). */
  spawnIn(ns: string, name: string, cmd: string, args: string[], env?: NodeJS.ProcessEnv): Proc & { waitFor(re: RegExp, timeoutMs: number): Promise<void> };
  /** Deletes the namespaces (idempotent). */
  down(): void;
}

/** Why namespaces cannot be made here, or null. */
export function netnsMissing(): string | null {
  if (process.getuid?.() !== 0) return 'network namespaces need root';
  try {
    execFileSync('ip', ['netns', 'list'], { stdio: 'pipe' });
    return null;
  } catch (e) {
    return `ip netns unusable: ${(e as Error).message}`;
  }
}

export function netnsTopology(t: { teardown(fn: () => unknown): void }, opts: { cameras: number; vms: number }): Topology {
  const tag = (process.pid % 46656).toString(36).padStart(3, '0');
  const p = `ct${tag}`;
  const net = `10.79.${process.pid % 250}`;
  const names = { sw: `${p}sw`, host: `${p}h`, cam: (i: number) => `${p}c${i}`, vms: (j: number) => `${p}v${j}` };
  const all = [names.sw, names.host, ...range(opts.cameras).map(names.cam), ...range(opts.vms).map(names.vms)];
  const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
  const down = () => {
    for (const ns of all) {
      try {
        const pids = execFileSync('ip', ['netns', 'pids', ns], { stdio: 'pipe' }).toString().split(/\s+/).filter(Boolean);
        for (const pid of pids) {
          try {
            process.kill(Number(pid), 'SIGKILL');
          } catch {
            /* gone */
          }
        }
        ip('netns', 'del', ns);
      } catch {
        /* not there */
      }
    }
  };
  down();
  ip('netns', 'add', names.sw);
  ip('-n', names.sw, 'link', 'add', 'br0', 'type', 'bridge', 'ageing_time', '0', 'stp_state', '0', 'forward_delay', '0');
  ip('-n', names.sw, 'link', 'set', 'br0', 'up');
  ip('-n', names.sw, 'link', 'set', 'lo', 'up');
  const attach = (ns: string, swIf: string, addr: string) => {
    ip('netns', 'add', ns);
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    ip('link', 'add', swIf, 'netns', names.sw, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
    ip('-n', names.sw, 'link', 'set', swIf, 'master', 'br0', 'up');
    ip('-n', ns, 'link', 'set', 'eth0', 'up');
    ip('-n', ns, 'addr', 'add', `${addr}/24`, 'dev', 'eth0');
    // Offloads off: captured checksums and segment sizes are what a wire would carry.
    try {
      execFileSync('ip', ['netns', 'exec', ns, 'ethtool', '-K', 'eth0', 'tx', 'off', 'gso', 'off', 'tso', 'off', 'gro', 'off'], { stdio: 'pipe' });
    } catch {
      /* no ethtool: checksums are then offloaded, which captures show as wrong but nothing here checks */
    }
  };
  t.teardown(down);
  for (const i of range(opts.cameras)) attach(names.cam(i), `c${i}`, `${net}.${10 + i}`);
  for (const j of range(opts.vms)) attach(names.vms(j), `v${j}`, `${net}.${100 + j}`);
  attach(names.host, 'hst', `${net}.200`);
  return {
    cam: names.cam,
    vms: names.vms,
    host: names.host,
    sw: names.sw,
    camIp: (i) => `${net}.${10 + i}`,
    vmsIp: (j) => `${net}.${100 + j}`,
    hostIp: `${net}.200`,
    exec(ns, cmd, args, o = {}) {
      try {
        const stdout = execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: 'pipe', timeout: o.timeoutMs ?? 60_000, maxBuffer: 64 << 20, ...(o.input !== undefined ? { input: o.input } : {}) }).toString();
        return { code: 0, stdout, stderr: '' };
      } catch (e) {
        const x = e as { status?: number; stdout?: Buffer; stderr?: Buffer };
        return { code: x.status ?? -1, stdout: x.stdout?.toString() ?? '', stderr: x.stderr?.toString() ?? '' };
      }
    },
    spawnIn(ns, name, cmd, args, env) {
      // `ip netns exec` execs the program in place: the PID is the program's.
      return startProcess(name, 'ip', ['netns', 'exec', ns, cmd, ...args], env);
    },
    down,
  };
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i + 1);
}
