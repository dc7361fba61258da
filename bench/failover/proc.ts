/**
 * Processes the failover benchmark starts: each is tracked by its PID, its output kept
 * (bounded) for waiting on a ready line and for reading camtap's JSON log, and stopped by
 * that PID alone (a signal, then SIGKILL after a grace). Whatever is still running when the
 * benchmark exits is killed by PID. Nothing here is shared with the tests (they import tap).
 */
import { spawn, type ChildProcess } from 'node:child_process';

const LOG_MAX = 4 << 20;
const live = new Set<Proc>();

export class Proc {
  readonly pid: number;
  readonly exited: Promise<number | null>;
  #out = '';
  #stdout: Buffer[] = [];
  #stderr: Buffer[] = [];
  #done = false;
  readonly #child: ChildProcess;
  readonly #waiters = new Set<() => void>();

  constructor(
    readonly name: string,
    cmd: string,
    args: string[],
    env?: NodeJS.ProcessEnv,
    /** Keep stdout and stderr apart and whole (short commands whose output is parsed). */
    readonly keepStreams = false,
  ) {
    this.#child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(env ? { env } : {}) });
    if (this.#child.pid === undefined) throw new Error(`${name}: spawn ${cmd} failed`);
    this.pid = this.#child.pid;
    const add = (d: Buffer) => {
      this.#out += d.toString('utf8');
      if (this.#out.length > LOG_MAX) this.#out = this.#out.slice(-LOG_MAX);
      for (const w of this.#waiters) w();
    };
    this.#child.stdout!.on('data', (d: Buffer) => {
      if (this.keepStreams) this.#stdout.push(d);
      else add(d);
    });
    this.#child.stderr!.on('data', (d: Buffer) => {
      if (this.keepStreams) this.#stderr.push(d);
      else add(d);
    });
    this.exited = new Promise((resolve) => {
      this.#child.on('close', (code) => {
        this.#done = true;
        live.delete(this);
        for (const w of this.#waiters) w();
        resolve(code);
      });
      this.#child.on('error', () => {
        this.#done = true;
        live.delete(this);
        resolve(null);
      });
    });
    live.add(this);
  }

  get running(): boolean {
    return !this.#done;
  }

  /** stdout and stderr so far, interleaved (the last 4 MiB). */
  log(): string {
    return this.#out;
  }

  /** The whole stdout (with `keepStreams`). */
  stdout(): string {
    return Buffer.concat(this.#stdout).toString('utf8');
  }

  stderr(): string {
    return Buffer.concat(this.#stderr).toString('utf8');
  }

  /** Resolves when the output matches `re`; rejects on exit or after `timeoutMs`. */
  waitFor(re: RegExp, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => finish(new Error(`${this.name}: no ${re} within ${timeoutMs} ms; log:\n${this.#out.slice(-3000)}`)), timeoutMs);
      const finish = (err: Error | null) => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        if (err) reject(err);
        else resolve();
      };
      const check = () => {
        if (re.test(this.#out)) finish(null);
        else if (this.#done) finish(new Error(`${this.name}: exited before ${re}; log:\n${this.#out.slice(-3000)}`));
      };
      this.#waiters.add(check);
      check();
    });
  }

  /** Sends `signal` to this PID and waits for the exit (SIGKILL after `graceMs`). */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 8000): Promise<number | null> {
    if (this.#done) return this.exited;
    this.signal(signal);
    const timer = setTimeout(() => this.signal('SIGKILL'), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends a signal to this PID (no-op once it exited). */
  signal(signal: NodeJS.Signals): void {
    if (this.#done) return;
    try {
      process.kill(this.pid, signal);
    } catch {
      /* gone */
    }
  }
}

/** Stops every process still running, each by its PID. */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((p) => p.stop('SIGTERM', 3000)));
}

process.on('exit', () => {
  for (const p of live) p.signal('SIGKILL');
});

/** Runs a program to its end (SIGKILL at `timeoutMs`) without blocking the event loop (camtap's log pipe must keep draining). */
export function run(cmd: string, args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = new Proc(cmd, cmd, args, opts.env, true);
  const timer = setTimeout(() => p.signal('SIGKILL'), opts.timeoutMs ?? 120_000);
  return p.exited.then((code) => {
    clearTimeout(timer);
    return { code, stdout: p.stdout(), stderr: p.stderr() };
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
