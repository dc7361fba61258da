/**
 * Runs the real `camtap` command (the compiled CLI, as a user runs it) against a data dir.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CLI = path.join(ROOT, 'dist/core/cli.js');
export const CAPTURES = path.join(ROOT, 'fixtures/captures');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function camtap(args: string[], opts: { data?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CliResult> {
  const full = opts.data ? [...args, '--data', opts.data] : args;
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [CLI, ...full], { env: { ...process.env, CAMTAP_LOG_LEVEL: 'warn', ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export async function camtapJson<T>(args: string[], data: string): Promise<T> {
  const r = await camtap([...args, '--json'], { data });
  if (r.code !== 0) throw new Error(`camtap ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** A temporary data dir removed at teardown. */
export function tempDir(t: { teardown(fn: () => void): void }, prefix = 'camtap-test-'): string {
  const d = mkdtempSync(path.join(os.tmpdir(), prefix));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}
