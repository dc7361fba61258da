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
import { buildNamespaces, netnsMissing } from '../../bench/lib/netns.js';

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

export { netnsMissing };

export function netnsTopology(t: { teardown(fn: () => unknown): void }, opts: { cameras: number; vms: number }): Topology {
  const tag = (process.pid % 46656).toString(36).padStart(3, '0');
  const ns = buildNamespaces(`ct${tag}`, `10.79.${process.pid % 250}`, opts);
  // Processes still in the namespaces are this test process's own peers (or a crashed earlier run's, same PID): killed by PID.
  const kill = (pids: number[]) => {
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  };
  const down = () => kill(ns.down());
  kill(ns.stale);
  t.teardown(down);
  return {
    cam: ns.cam,
    vms: ns.vms,
    host: ns.host,
    sw: ns.sw,
    camIp: ns.camIp,
    vmsIp: ns.vmsIp,
    hostIp: ns.hostIp,
    exec(n, cmd, args, o = {}) {
      try {
        const stdout = execFileSync('ip', ['netns', 'exec', n, cmd, ...args], { stdio: 'pipe', timeout: o.timeoutMs ?? 60_000, maxBuffer: 64 << 20, ...(o.input !== undefined ? { input: o.input } : {}) }).toString();
        return { code: 0, stdout, stderr: '' };
      } catch (e) {
        const x = e as { status?: number; stdout?: Buffer; stderr?: Buffer };
        return { code: x.status ?? -1, stdout: x.stdout?.toString() ?? '', stderr: x.stderr?.toString() ?? '' };
      }
    },
    spawnIn(n, name, cmd, args, env) {
      // `ip netns exec` execs the program in place: the PID is the program's.
      return startProcess(name, 'ip', ['netns', 'exec', n, cmd, ...args], env);
    },
    down,
  };
}
