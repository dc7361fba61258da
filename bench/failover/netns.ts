/**
 * The benchmark's camera network, in network namespaces it creates (the layout of
 * test/helpers/netns.ts, after /work/shared/lab/netns_topo.sh, without the test runner):
 *
 *   <p>sw   bridge br0 with ageing_time 0: it floods every frame to every port like a hub,
 *           so the camtap host's eth0 sees the camera<->VMS link (its tcpdump tap)
 *   <p>c1   the camera, eth0 = <net>.11
 *   <p>v1   the VMS,    eth0 = <net>.101
 *   <p>h    the camtap host, eth0 = <net>.200
 *
 * `<p>` and `<net>` (10.78.x.0/24) come from the PID, so the tests' namespaces (10.79.x)
 * and another run do not meet. Nothing connects them to the root namespace. `down()`
 * deletes the namespaces; it kills nothing (the caller stops its own processes first by
 * PID) and reports processes still inside.
 */
import { execFileSync } from 'node:child_process';
import { Proc, run } from './proc.js';

export interface Net {
  cam: string;
  vms: string;
  host: string;
  camIp: string;
  vmsIp: string;
  hostIp: string;
  /** Starts a long-running program inside a namespace (`ip netns exec` execs in place: the PID is the program's). */
  spawnIn(ns: string, name: string, cmd: string, args: string[], env?: NodeJS.ProcessEnv): Proc;
  /** Runs a program inside a namespace to its end. */
  exec(ns: string, cmd: string, args: string[], opts?: { timeoutMs?: number; env?: NodeJS.ProcessEnv }): Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** Deletes the namespaces; returns the PIDs still inside them (not killed). */
  down(): number[];
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

export function makeNet(): Net {
  const tag = (process.pid % 46656).toString(36).padStart(3, '0');
  const p = `fb${tag}`;
  const net = `10.78.${process.pid % 250}`;
  const names = { sw: `${p}sw`, host: `${p}h`, cam: `${p}c1`, vms: `${p}v1` };
  const all = [names.sw, names.host, names.cam, names.vms];
  const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
  const down = (): number[] => {
    const left: number[] = [];
    for (const ns of all) {
      try {
        left.push(...execFileSync('ip', ['netns', 'pids', ns], { stdio: 'pipe' }).toString().split(/\s+/).filter(Boolean).map(Number));
        ip('netns', 'del', ns);
      } catch {
        /* not there */
      }
    }
    return left;
  };
  const stale = down();
  if (stale.length) throw new Error(`namespaces ${p}* exist with processes ${stale.join(', ')} in them: stop them first`);
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
    try {
      // Offloads off: captured segment sizes and checksums are what a wire would carry.
      execFileSync('ip', ['netns', 'exec', ns, 'ethtool', '-K', 'eth0', 'tx', 'off', 'gso', 'off', 'tso', 'off', 'gro', 'off'], { stdio: 'pipe' });
    } catch {
      /* no ethtool */
    }
  };
  attach(names.cam, 'c1', `${net}.11`);
  attach(names.vms, 'v1', `${net}.101`);
  attach(names.host, 'hst', `${net}.200`);
  return {
    cam: names.cam,
    vms: names.vms,
    host: names.host,
    camIp: `${net}.11`,
    vmsIp: `${net}.101`,
    hostIp: `${net}.200`,
    spawnIn: (ns, name, cmd, args, env) => new Proc(name, 'ip', ['netns', 'exec', ns, cmd, ...args], env),
    exec: (ns, cmd, args, opts = {}) => run('ip', ['netns', 'exec', ns, cmd, ...args], opts),
    down,
  };
}
