/**
 * `camtap serve` as a child process for end-to-end tests: started on free ports
 * (`--rtsp-port 0 --http-port 0` unless the args say otherwise), resolved once it prints
 * where it listens, killed at teardown.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { CLI } from './camtap.js';

export interface Serve {
  rtsp: number;
  /** HTTP API port, or null when it is off. */
  http: number | null;
  proc: ChildProcessWithoutNullStreams;
  /** stderr so far (the log). */
  log(): string;
}

export async function startServe(t: { teardown(fn: () => unknown): void }, args: string[], opts: { logLevel?: string } = {}): Promise<Serve> {
  const ports = [...(args.includes('--rtsp-port') ? [] : ['--rtsp-port', '0']), ...(args.includes('--http-port') ? [] : ['--http-port', '0'])];
  const proc = spawn(process.execPath, [CLI, 'serve', ...ports, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, CAMTAP_LOG_LEVEL: opts.logLevel ?? 'info' } });
  t.teardown(() => void proc.kill('SIGKILL'));
  let out = '';
  let err = '';
  proc.stderr.on('data', (d) => (err += d));
  const found = await new Promise<{ rtsp: number; http: number | null }>((resolve, reject) => {
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /serving RTSP on port (\d+)(?:, HTTP API on port (\d+))?/.exec(out);
      if (m) resolve({ rtsp: Number(m[1]), http: m[2] ? Number(m[2]) : null });
    });
    proc.on('exit', (c) => reject(new Error(`serve exited ${c}: ${err.slice(-2000)}`)));
  });
  return { ...found, proc, log: () => err };
}
