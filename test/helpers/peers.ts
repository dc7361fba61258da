/**
 * Real lab peers for tests: the GStreamer RTSP camera (test/helpers/camera.py, a copy of
 * the lab's camera.py), ffmpeg pulling like a VMS, tcpdump, and small process helpers.
 *
 * Every process started here is tracked and stopped by its own PID when the test file
 * ends (a root-level `t.teardown`), and killed with SIGKILL if the test process exits
 * first. Traffic stays on loopback.
 */
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** A started peer process. */
export interface Proc {
  pid: number;
  /** Sends `signal` (default SIGTERM), waits for the exit (SIGKILL after 5 s), returns the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** What the process wrote so far (stdout and stderr interleaved, last 256 KiB). */
  log(): string;
  /** The exit code (null when a signal ended it). */
  exited: Promise<number | null>;
}

/** Debian's python: it has python3-gi and the GStreamer RTSP server bindings. */
export const PYTHON = '/usr/bin/python3';
export const CAMERA_PY = path.join(path.dirname(fileURLToPath(import.meta.url)), 'camera.py');

const LOG_MAX = 256 * 1024;
const live = new Set<ManagedProc>();

class ManagedProc implements Proc {
  readonly pid: number;
  readonly exited: Promise<number | null>;
  #log = '';
  #done = false;
  readonly #child: ChildProcess;

  constructor(child: ChildProcess, readonly name: string) {
    if (child.pid === undefined) throw new Error(`${name}: spawn failed`);
    this.pid = child.pid;
    this.#child = child;
    const add = (d: Buffer) => {
      this.#log += d.toString('utf8');
      if (this.#log.length > LOG_MAX) this.#log = this.#log.slice(-LOG_MAX);
    };
    child.stdout?.on('data', add);
    child.stderr?.on('data', add);
    this.exited = new Promise((resolve) => {
      child.on('exit', (code) => {
        this.#done = true;
        live.delete(this);
        resolve(code);
      });
    });
    live.add(this);
  }

  get running(): boolean {
    return !this.#done;
  }

  log(): string {
    return this.#log;
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.#done) return this.exited;
    try {
      process.kill(this.pid, signal);
    } catch {
      /* already gone */
    }
    const timer = setTimeout(() => {
      if (!this.#done) {
        try {
          process.kill(this.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }, 5000);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Lines written so far, for waiting on a ready message. */
  waitFor(re: RegExp, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (re.test(this.#log)) {
          done();
          resolve();
          return true;
        }
        return false;
      };
      const onData = () => void check();
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.name}: no ${re} within ${timeoutMs} ms; log:\n${this.#log.slice(-4000)}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.#child.stdout?.off('data', onData);
        this.#child.stderr?.off('data', onData);
      };
      this.exited.then((code) => {
        if (check()) return;
        done();
        reject(new Error(`${this.name}: exited (${code}) before ${re}; log:\n${this.#log.slice(-4000)}`));
      });
      // Listen after the log collector so the chunk is already appended.
      this.#child.stdout?.on('data', onData);
      this.#child.stderr?.on('data', onData);
      check();
    });
  }
}

async function stopAll(): Promise<void> {
  await Promise.all([...live].map((p) => p.stop()));
}

t.teardown(stopAll);
process.on('exit', () => {
  for (const p of live) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
});

function start(name: string, cmd: string, args: string[], env?: NodeJS.ProcessEnv): ManagedProc {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(env ? { env } : {}) });
  return new ManagedProc(child, name);
}

/** Any long-running peer (tracked and stopped like the others); `waitFor` resolves when its output matches. */
export function startProcess(name: string, cmd: string, args: string[], env?: NodeJS.ProcessEnv): Proc & { waitFor(re: RegExp, timeoutMs: number): Promise<void> } {
  return start(name, cmd, args, env);
}

/** Is the program installed (an absolute path, or a name on PATH)? */
export function have(cmd: string): boolean {
  const candidates = cmd.includes('/') ? [cmd] : (process.env.PATH ?? '').split(':').filter(Boolean).map((d) => path.join(d, cmd));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return true;
    } catch {
      /* next */
    }
  }
  return false;
}

/** Why the lab camera cannot run here, or null when it can (GStreamer RTSP server bindings). */
export async function cameraMissing(): Promise<string | null> {
  if (!have(PYTHON)) return `${PYTHON} is not installed`;
  const r = await run(PYTHON, ['-c', 'import gi; gi.require_version("GstRtspServer","1.0"); gi.require_version("Gst","1.0")'], { timeoutMs: 20000 });
  return r.code === 0 ? null : `GStreamer RTSP server bindings missing for ${PYTHON}: ${r.stderr.trim().split('\n').pop()}`;
}

/** Runs a program to its end (SIGKILL at `timeoutMs`, default 60 s) and collects its output. */
export function run(
  cmd: string,
  args: string[],
  opts: { timeoutMs?: number; input?: Buffer } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: [opts.input ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    const proc = new ManagedProc(child, cmd);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    child.stderr!.on('data', (d: Buffer) => err.push(d));
    child.on('error', reject);
    if (opts.input) child.stdin!.end(opts.input);
    const timer = setTimeout(() => void proc.stop('SIGKILL'), opts.timeoutMs ?? 60000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
  });
}

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort(kind: 'tcp' | 'udp' = 'tcp'): Promise<number> {
  return new Promise((resolve, reject) => {
    if (kind === 'udp') {
      const s = createSocket('udp4');
      s.on('error', reject);
      s.bind(0, '127.0.0.1', () => {
        const { port } = s.address();
        s.close(() => resolve(port));
      });
      return;
    }
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/**
 * Starts the lab camera (a gst-rtsp-server) and waits for its ready line.
 * `url` is the RTSP URL of the (first) mount.
 */
export async function startCamera(opts: {
  port: number;
  bind?: string;
  codec?: 'h264' | 'h265' | 'mjpeg';
  path?: string;
  fps?: number;
  auth?: 'basic' | 'digest';
  user?: string;
  password?: string;
  extra?: string[];
}): Promise<Proc & { url: string }> {
  const bind = opts.bind ?? '127.0.0.1';
  const mount = opts.path ?? '/stream1';
  const args = [CAMERA_PY, '--bind', bind, '--port', String(opts.port), '--path', mount, '--codec', opts.codec ?? 'h264'];
  if (opts.fps !== undefined) args.push('--fps', String(opts.fps));
  if (opts.auth) args.push('--auth', opts.auth);
  if (opts.user !== undefined) args.push('--user', opts.user);
  if (opts.password !== undefined) args.push('--password', opts.password);
  if (opts.extra) args.push(...opts.extra);
  const p = start('camera', PYTHON, ['-u', ...args]);
  try {
    await p.waitFor(/ready: rtsp:\/\//, 30000);
  } catch (e) {
    await p.stop('SIGKILL');
    throw e;
  }
  const host = bind.includes(':') ? `[${bind}]` : bind;
  return Object.assign(p, { url: `rtsp://${host}:${opts.port}${mount}` });
}

/**
 * ffmpeg pulling a stream the way a VMS does (RTSP over UDP or TCP interleaved) for
 * `seconds`, copying it to `out` (format from its extension) or discarding it.
 * `inputArgs` go before `-i`, e.g. `['-min_port', '40000', '-max_port', '40001']` to
 * pin the client's RTP/RTCP ports.
 */
export function startVms(opts: { url: string; transport: 'udp' | 'tcp'; seconds: number; out?: string; inputArgs?: string[] }): Proc {
  const args = ['-nostdin', '-hide_banner', '-loglevel', 'info', '-rtsp_transport', opts.transport, ...(opts.inputArgs ?? []), '-i', opts.url, '-t', String(opts.seconds), '-map', '0', '-c', 'copy'];
  if (opts.out) args.push('-y', opts.out);
  else args.push('-f', 'null', '-');
  return start('ffmpeg', 'ffmpeg', args);
}

/**
 * tcpdump writing `out` (packet-buffered); resolves once it says it is listening.
 * `extra` goes before `-w`, e.g. `['-G', '1']` to rotate every second (`out` with strftime %s).
 */
export async function startTcpdump(opts: { iface: string; out: string; filter?: string; extra?: string[] }): Promise<Proc> {
  // --immediate-mode: with TPACKET_V3 a partly filled block is lost when tcpdump is stopped.
  const args = ['-i', opts.iface, '-U', '-n', '--immediate-mode', ...(opts.extra ?? []), '-w', opts.out];
  if (opts.filter) args.push(opts.filter);
  const p = start('tcpdump', 'tcpdump', args);
  try {
    await p.waitFor(/listening on/, 15000);
  } catch (e) {
    await p.stop('SIGKILL');
    throw e;
  }
  return p;
}

/** An even UDP port P on 127.0.0.1 with P+1 free too (an RTP/RTCP pair, RFC 3550 11). */
export async function freeUdpPair(): Promise<number> {
  const canBind = (port: number) =>
    new Promise<boolean>((resolve) => {
      const s = createSocket('udp4');
      s.once('error', () => resolve(false));
      s.bind(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
  for (let i = 0; i < 50; i++) {
    const p = await freePort('udp');
    const even = p % 2 === 0 ? p : p - 1;
    if (even >= 1024 && (await canBind(even)) && (await canBind(even + 1))) return even;
  }
  throw new Error('no free UDP port pair');
}
