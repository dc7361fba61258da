/**
 * Summarizes a V8 `.cpuprofile` (written by `node --cpu-prof`) by self time: per function
 * and per source file. Sample i lasts from its timestamp to the next one (the way DevTools
 * counts), so the sums add up to the profiled wall time.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileEntry {
  /** `functionName (file:line)`, or V8's pseudo-frames `(garbage collector)`, `(program)`, `(idle)`. */
  name: string;
  selfMs: number;
  selfPct: number;
  /** Time with this function anywhere on the stack (recursion counted once). Per-function rows only. */
  totalMs?: number;
  totalPct?: number;
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  samples: number;
  topFunctions: ProfileEntry[];
  byFile: ProfileEntry[];
}

function shortUrl(url: string, root: string): string {
  if (url === '') return '';
  let p = url;
  if (url.startsWith('file://')) p = fileURLToPath(url);
  if (p.startsWith(root + path.sep)) p = path.relative(root, p);
  return p;
}

/** `root` shortens file paths under it (the repository). */
export function summarizeCpuProfile(file: string, root: string, top = 20): ProfileSummary {
  const prof = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of prof.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const fnKey = (n: ProfileNode) => {
    const cf = n.callFrame;
    const u = shortUrl(cf.url, root);
    const name = cf.functionName || (u ? '(anonymous)' : '(root)');
    return u ? `${name} (${u}:${cf.lineNumber + 1})` : name;
  };
  const fileKey = (n: ProfileNode) => shortUrl(n.callFrame.url, root) || n.callFrame.functionName || '(native)';

  const selfFn = new Map<string, number>();
  const totalFn = new Map<string, number>();
  const selfFile = new Map<string, number>();
  const add = (m: Map<string, number>, k: string, v: number) => m.set(k, (m.get(k) ?? 0) + v);
  let totalUs = 0;
  let t = prof.startTime;
  const stamps: number[] = [];
  for (const d of prof.timeDeltas) stamps.push((t += d));
  for (let i = 0; i < prof.samples.length; i++) {
    const next = i + 1 < stamps.length ? stamps[i + 1]! : prof.endTime;
    const dur = Math.max(0, next - stamps[i]!);
    const node = byId.get(prof.samples[i]!);
    if (!node) continue;
    totalUs += dur;
    add(selfFn, fnKey(node), dur);
    add(selfFile, fileKey(node), dur);
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const k = fnKey(byId.get(id)!);
      if (seen.has(k)) continue;
      seen.add(k);
      add(totalFn, k, dur);
    }
  }
  const pct = (us: number) => (totalUs > 0 ? (100 * us) / totalUs : 0);
  const rows = (m: Map<string, number>, withTotal: boolean): ProfileEntry[] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => {
        const e: ProfileEntry = { name, selfMs: us / 1000, selfPct: pct(us) };
        if (withTotal) {
          const tot = totalFn.get(name) ?? us;
          e.totalMs = tot / 1000;
          e.totalPct = pct(tot);
        }
        return e;
      });
  return { file, totalMs: totalUs / 1000, samples: prof.samples.length, topFunctions: rows(selfFn, true), byFile: rows(selfFile, false) };
}
