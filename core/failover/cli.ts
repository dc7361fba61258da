/**
 * `camtap failover status|plan|start|end|history <vms> [--json] [--dry-run] [--camera NAME]`.
 *
 * `plan` and every `--dry-run` work on the data directory alone (an imported capture is
 * enough): nothing is sent. A real `start`/`end` acts on cameras, and the take-over
 * (camtap's camera sessions, the UDP ports it receives on, the recording) lives in the
 * `camtap serve` process: these commands ask the running serve over its HTTP API
 * (`--api URL`, default http://127.0.0.1:<serve.httpPort>; token from CAMTAP_TOKEN when
 * the API has authentication). `status` and `history` read the API when serve runs and
 * the catalog otherwise.
 */
import { CamtapError } from '../errors.js';
import type { FailoverManager, FailoverRecord, FailoverStatus } from './manager.js';
import { formatPlan } from './plan.js';
import type { CameraOutcome, FailoverPlan } from './types.js';

export interface FailoverCliOptions {
  json: boolean;
  dryRun: boolean;
  cameras: string[];
  /** The running serve's API base, or null when none answers. */
  api: string | null;
  /** Builds an offline manager on the data directory (read-only use: plans, dry runs, history). */
  offline: <T>(fn: (m: FailoverManager) => Promise<T>) => Promise<T>;
  out: (s: string) => void;
}

export async function cmdFailover(args: string[], o: FailoverCliOptions): Promise<number> {
  const [sub, vms] = args;
  if (!sub || !['status', 'plan', 'start', 'end', 'history'].includes(sub)) throw new CamtapError('CAMTAP_ERR_USAGE', { reason: 'failover status|plan|start|end|history <vms> [--dry-run] [--json] [--camera NAME]' });
  if ((sub === 'plan' || sub === 'start' || sub === 'end') && !vms) throw new CamtapError('CAMTAP_ERR_USAGE', { reason: `failover ${sub} needs a VMS name or address (camtap inventory lists them)` });
  const print = (v: unknown, text: () => string) => o.out(o.json ? JSON.stringify(v, null, 2) : text());
  if (sub === 'plan') {
    const plan = await o.offline((m) => m.plan(vms!, o.cameras.length ? { only: o.cameras } : {}));
    print(plan, () => formatPlan(plan));
    return 0;
  }
  if (sub === 'status' || sub === 'history') {
    const path = sub === 'history' ? '/api/failover/history' : vms ? `/api/failover/${encodeURIComponent(vms)}` : '/api/failover';
    const live = o.api ? await apiCall('GET', o.api, path) : null;
    if (sub === 'history') {
      const h = (live as FailoverRecord[] | null) ?? (await o.offline((m) => m.history()));
      print(h, () => h.map(formatRecord).join('\n\n') || '(no failover recorded)');
      return 0;
    }
    const st: FailoverStatus[] = live ? (vms ? [live as FailoverStatus] : (live as { failover: FailoverStatus[] }).failover) : await o.offline((m) => m.status(vms));
    print(st, () => st.map(formatStatus).join('\n\n') || '(no failover running or recorded)');
    return 0;
  }
  // start / end
  if (o.dryRun) {
    const rec = await o.offline((m) => (sub === 'start' ? m.start(vms!, { dryRun: true, trigger: 'cli', ...(o.cameras.length ? { only: o.cameras } : {}) }) : dryEnd(m, vms!)));
    print(rec, () => formatRecord(rec));
    return 0;
  }
  if (!o.api) throw new CamtapError('CAMTAP_ERR_USAGE', { reason: `failover ${sub} acts through the running \`camtap serve\` (its HTTP API did not answer; pass --api URL), or use --dry-run to see what it would send` });
  const rec = (await apiCall('POST', o.api, `/api/failover/${encodeURIComponent(vms!)}/${sub}`)) as FailoverRecord;
  print(rec, () => formatRecord(rec));
  const outcomes = sub === 'start' ? rec.redirect : rec.restore;
  return outcomes.every((c) => c.ok) ? 0 : 1;
}

/** A restore dry run offline: what `end` would send for the last open period (or the plan's restore steps). */
async function dryEnd(m: FailoverManager, vms: string): Promise<FailoverRecord> {
  try {
    return await m.end(vms, { dryRun: true, trigger: 'cli' });
  } catch {
    const plan: FailoverPlan = await m.plan(vms);
    const at = new Date().toISOString();
    return {
      id: 'dry-run',
      vms: plan.vms,
      vmsAddress: plan.vmsAddress,
      trigger: 'cli',
      dryRun: true,
      start: at,
      end: at,
      target: plan.target,
      redirect: [],
      restore: plan.cameras.map((c) => ({ camera: c.camera, strategy: c.strategy, ok: true, steps: c.restore.map((s, i) => ({ step: i + 1, kind: s.kind, request: s.kind === 'api' ? s.call : `${s.method} ${s.url}`, status: null, ok: true, answer: '(dry run: not sent)', at })) })),
      resumed: null,
      gap: [],
    };
  }
}

async function apiCall(method: 'GET' | 'POST', base: string, path: string): Promise<unknown> {
  const headers: Record<string, string> = {};
  const token = process.env.CAMTAP_TOKEN ?? process.env.CAMTAP_ADMIN_TOKEN;
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(base.replace(/\/$/, '') + path, { method, headers, signal: AbortSignal.timeout(120_000) });
  const body = (await res.json().catch(() => null)) as { error?: string; message?: string } | null;
  if (!res.ok) throw new CamtapError('CAMTAP_ERR_FAILOVER', { vms: path.split('/')[3] ?? '', reason: `${method} ${path}: ${res.status} ${body?.message ?? body?.error ?? ''}`.trim() });
  return body;
}

/** Is a camtap API answering at `base`? */
export async function apiAnswers(base: string): Promise<boolean> {
  try {
    const res = await fetch(`${base.replace(/\/$/, '')}/api/health`, { signal: AbortSignal.timeout(1500) });
    return res.ok;
  } catch {
    return false;
  }
}

function formatOutcome(c: CameraOutcome): string {
  const lines = [`  ${c.camera}  ${c.strategy}  ${c.ok ? 'ok' : `FAILED: ${c.reason ?? ''}`}`];
  for (const s of c.steps) lines.push(`    ${s.ok ? '✓' : '✗'} ${s.request}  ->  ${s.status ?? ''} ${s.answer}`.trimEnd());
  return lines.join('\n');
}

export function formatRecord(r: FailoverRecord): string {
  const head = `${r.dryRun ? 'DRY RUN (nothing sent): ' : ''}failover of ${r.vms} (${r.vmsAddress}) ${r.start}${r.end ? ` .. ${r.end}` : ' .. (running)'} trigger ${r.trigger}${r.target ? `, cameras to ${r.target.host}` : ''}`;
  const parts = [head];
  if (r.redirect.length) parts.push('take-over:', ...r.redirect.map(formatOutcome));
  if (r.restore.length) parts.push('give-back:', ...r.restore.map(formatOutcome));
  if (r.resumed !== null) parts.push(`VMS traffic after the give-back: ${r.resumed ? 'resumed' : 'NOT seen'}`);
  for (const g of r.gap) parts.push(`gap ${g.camera}: ${g.packets} packets recorded  ${g.replayUrl}${g.exportUrl ? `  ${g.exportUrl}` : ''}${g.backfill ? `  backfill: ${g.backfill.ok ? 'ok' : 'failed'} ${g.backfill.detail}` : ''}`);
  return parts.join('\n');
}

function formatStatus(s: FailoverStatus): string {
  const lines = [`${s.vms}: ${s.active ? 'FAILED OVER (camtap records its cameras)' : 'not failed over'}`];
  for (const c of s.cameras) lines.push(`  ${c.camera}  ${c.strategy}  ${c.state}  ${c.packets} packets`);
  if (s.current) lines.push(formatRecord(s.current).replace(/^/gm, '  '));
  return lines.join('\n');
}
