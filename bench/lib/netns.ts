/**
 * A camera network in network namespaces (after ../shared/lab/netns_topo.sh), shared by
 * the failover tests (test/helpers/netns.ts) and bench/failover:
 *
 *   <p>sw        "switch": bridge br0 with ageing_time 0, so it floods every frame to every
 *                port like a hub (each host sees the others' traffic)
 *   <p>c1..cN    cameras, eth0 = <net>.11, .12, ...
 *   <p>v1..vM    VMSs,    eth0 = <net>.101, .102, ...
 *   <p>h         the camtap host, eth0 = <net>.200
 *
 * Nothing connects these namespaces to the root namespace. No dependency on tap: benches
 * use it too.
 */
import { execFileSync } from 'node:child_process';

export interface Namespaces {
  sw: string;
  host: string;
  cam(i: number): string;
  vms(j: number): string;
  camIp(i: number): string;
  vmsIp(j: number): string;
  hostIp: string;
  /** Deletes the namespaces; answers the PIDs that were still in them (the caller decides what to do with them). */
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

/**
 * Builds the namespaces: names start with `prefix`, addresses are `<net>.x`. Namespaces
 * of an earlier run with the same prefix are deleted first; their PIDs are in `stale`.
 */
export function buildNamespaces(prefix: string, net: string, opts: { cameras: number; vms: number }): Namespaces & { stale: number[] } {
  const names = { sw: `${prefix}sw`, host: `${prefix}h`, cam: (i: number) => `${prefix}c${i}`, vms: (j: number) => `${prefix}v${j}` };
  const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);
  const all = [names.sw, names.host, ...range(opts.cameras).map(names.cam), ...range(opts.vms).map(names.vms)];
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
  // Interface names in the switch: `hst`, not `h` (`ip link add h` reads `h` as `help`).
  for (const i of range(opts.cameras)) attach(names.cam(i), `c${i}`, `${net}.${10 + i}`);
  for (const j of range(opts.vms)) attach(names.vms(j), `v${j}`, `${net}.${100 + j}`);
  attach(names.host, 'hst', `${net}.200`);
  return { ...names, camIp: (i) => `${net}.${10 + i}`, vmsIp: (j) => `${net}.${100 + j}`, hostIp: `${net}.200`, down, stale };
}
