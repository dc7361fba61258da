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
import { buildNamespaces, netnsMissing } from '../lib/netns.js';
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
export { netnsMissing };

export function makeNet(): Net {
  const tag = (process.pid % 46656).toString(36).padStart(3, '0');
  const p = `fb${tag}`;
  const ns = buildNamespaces(p, `10.78.${process.pid % 250}`, { cameras: 1, vms: 1 });
  if (ns.stale.length) {
    ns.down();
    throw new Error(`namespaces ${p}* existed with processes ${ns.stale.join(', ')} in them: stop them first`);
  }
  return {
    cam: ns.cam(1),
    vms: ns.vms(1),
    host: ns.host,
    camIp: ns.camIp(1),
    vmsIp: ns.vmsIp(1),
    hostIp: ns.hostIp,
    spawnIn: (n, name, cmd, args, env) => new Proc(name, 'ip', ['netns', 'exec', n, cmd, ...args], env),
    exec: (n, cmd, args, opts = {}) => run('ip', ['netns', 'exec', n, cmd, ...args], opts),
    down: ns.down,
  };
}
