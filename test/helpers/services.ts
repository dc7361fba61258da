/**
 * Real Redis and PostgreSQL servers for tests, started per test file on free loopback
 * ports in temp dirs and stopped by PID. Nothing is installed here: the binaries come from
 * the Debian packages (redis-server, postgresql) that CI installs; when one is missing the
 * start function answers null and the caller skips that backend with a printed reason.
 *
 * Why not a shared server started by CI: tap runs test files in parallel, and a server per
 * file keeps their keys, ports and failures apart. Both servers start in well under a
 * second when durability is off (fsync off, no snapshots), which is all a test needs.
 */

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, chownSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadPg } from '../../core/catalog/pg.js';

export interface RunningService {
  /** Catalog URL for the server: `redis://127.0.0.1:<port>/0` or `postgresql://postgres@127.0.0.1:<port>/camtap_test`. */
  url: string;
  /** Stops the server (by PID: a polite signal, SIGKILL after a timeout) and removes its temp dir. Safe twice. */
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

/** Servers still running, killed synchronously if the test process exits without stopping them. */
const running = new Set<{ child: ChildProcess; dir: string }>();
function killAllNow(): void {
  for (const r of running) {
    try {
      if (r.child.pid !== undefined && r.child.exitCode === null) process.kill(r.child.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
    rmSync(r.dir, { recursive: true, force: true });
  }
  running.clear();
}
process.on('exit', killAllNow);
// A test process killed by the runner (timeout, bail) runs no 'exit' handlers: clean up,
// then die of the same signal once no other handler is left to decide otherwise.
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
  process.on(sig, function onSignal() {
    killAllNow();
    process.removeListener(sig, onSignal);
    if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
  });
}

/** A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it; we close and hand it over). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      if (addr === null || typeof addr === 'string') {
        srv.close();
        reject(new Error('no port from listen(0)'));
        return;
      }
      srv.close(() => resolve(addr.port));
    });
  });
}

function which(name: string, candidates: string[]): string | null {
  for (const c of candidates) if (existsSync(c)) return c;
  const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  const p = r.stdout.trim();
  return r.status === 0 && p !== '' ? p : null;
}

/** Highest installed PostgreSQL major version's bin dir (Debian keeps them versioned and off PATH). */
function postgresBinDir(): string | null {
  const base = '/usr/lib/postgresql';
  if (existsSync(base)) {
    const versions = readdirSync(base)
      .filter((v) => existsSync(join(base, v, 'bin', 'initdb')) && existsSync(join(base, v, 'bin', 'postgres')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions.length > 0) return join(base, versions[0]!, 'bin');
  }
  const initdb = which('initdb', []);
  return initdb === null ? null : join(initdb, '..');
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Collects a child's output so a failed start can say why. */
function captureOutput(child: ChildProcess): () => string {
  let out = '';
  const add = (b: Buffer): void => {
    if (out.length < 20_000) out += b.toString('utf8');
  };
  child.stdout?.on('data', add);
  child.stderr?.on('data', add);
  // A server a test forgot to stop must not keep the test process alive: the 'exit'
  // handler above kills it when the process ends.
  child.unref();
  for (const s of [child.stdout, child.stderr]) (s as unknown as { unref?: () => void } | null)?.unref?.();
  return () => out;
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => child.once('exit', () => r()));
}

/** Signal, wait, SIGKILL after the timeout; then remove the temp dir. */
async function stopChild(entry: { child: ChildProcess; dir: string }, signal: NodeJS.Signals): Promise<void> {
  const { child, dir } = entry;
  if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
    const done = exited(child);
    try {
      process.kill(child.pid, signal);
    } catch {
      /* exited meanwhile */
    }
    const timer = sleep(STOP_TIMEOUT_MS).then(() => 'timeout' as const);
    if ((await Promise.race([done.then(() => 'done' as const), timer])) === 'timeout') {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        /* exited meanwhile */
      }
      await done;
    }
  }
  running.delete(entry);
  rmSync(dir, { recursive: true, force: true });
}

/** Retries `probe` until it resolves, the child exits, or the ready timeout passes. */
async function waitReady(child: ChildProcess, what: string, output: () => string, probe: () => Promise<void>): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let last: unknown;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${output()}`);
    }
    try {
      await probe();
      return;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`${what} not ready after ${READY_TIMEOUT_MS} ms: ${String(last)}\n${output()}`);
    await sleep(50);
  }
}

/** Sends a RESP PING and expects `+PONG`. */
function redisPing(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = createConnection({ host: '127.0.0.1', port });
    let got = '';
    const fail = (e: Error): void => {
      sock.destroy();
      reject(e);
    };
    sock.setTimeout(2000, () => fail(new Error('PING timeout')));
    sock.once('error', fail);
    sock.once('connect', () => sock.write('*1\r\n$4\r\nPING\r\n'));
    sock.on('data', (b) => {
      got += b.toString('latin1');
      if (got.includes('\r\n')) {
        sock.destroy();
        if (got.startsWith('+PONG')) resolve();
        else reject(new Error(`PING answered ${JSON.stringify(got)}`));
      }
    });
  });
}

/**
 * Starts `redis-server` on a free 127.0.0.1 port with no persistence, its working dir a
 * fresh temp dir. Null when redis-server is not installed.
 */
export async function startRedis(): Promise<RunningService | null> {
  const bin = which('redis-server', ['/usr/bin/redis-server', '/usr/local/bin/redis-server']);
  if (bin === null) return null;
  const dir = mkdtempSync(join(tmpdir(), 'camtap-redis-'));
  const port = await freePort();
  const child = spawn(
    bin,
    ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--protected-mode', 'no', '--loglevel', 'warning'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const entry = { child, dir };
  running.add(entry);
  const output = captureOutput(child);
  try {
    await waitReady(child, 'redis-server', output, () => redisPing(port));
  } catch (e) {
    await stopChild(entry, 'SIGKILL');
    throw e;
  }
  return { url: `redis://127.0.0.1:${port}/0`, stop: () => stopChild(entry, 'SIGTERM') };
}

/** uid/gid of the `postgres` account, from getent (the apt package creates it). */
function postgresAccount(): { uid: number; gid: number } | null {
  const r = spawnSync('getent', ['passwd', 'postgres'], { encoding: 'utf8' });
  if (r.status !== 0) return null;
  const f = r.stdout.trim().split(':');
  const uid = Number(f[2]);
  const gid = Number(f[3]);
  return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid } : null;
}

/**
 * Starts a throwaway PostgreSQL cluster: `initdb -A trust --no-sync` into a temp dir, then
 * `postgres -F -c fsync=off` on a free 127.0.0.1 port with its unix socket in the same dir,
 * and creates database `camtap_test`. PostgreSQL refuses to run as root, so as root both
 * run as the `postgres` account (spawned with its uid/gid, so the PID we hold is the
 * postmaster's own and stop() signals it directly). Null when the binaries are missing.
 */
export async function startPostgres(): Promise<RunningService | null> {
  const binDir = postgresBinDir();
  if (binDir === null) return null;
  let ids: { uid: number; gid: number } | undefined;
  if (process.getuid?.() === 0) {
    const acct = postgresAccount();
    if (acct === null) throw new Error('running as root and there is no postgres account to run PostgreSQL as');
    ids = acct;
  }
  // As root the dir must be reachable by the postgres account: $TMPDIR may be a private
  // dir of root's, /tmp is world-traversable by definition.
  const base = ids !== undefined && existsSync('/tmp') ? '/tmp' : tmpdir();
  const dir = mkdtempSync(join(base, 'camtap-pg-'));
  if (ids !== undefined) chownSync(dir, ids.uid, ids.gid);
  const data = join(dir, 'data');
  const env = { ...process.env, LC_ALL: 'C', LANG: 'C', PGTZ: 'UTC' };
  const init = spawnSync(
    join(binDir, 'initdb'),
    ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions'],
    { encoding: 'utf8', env, cwd: dir, ...(ids ?? {}) },
  );
  if (init.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`initdb failed (${init.status ?? init.signal}): ${init.error?.message ?? ''}\n${init.stdout}${init.stderr}`);
  }
  const port = await freePort();
  const child = spawn(
    join(binDir, 'postgres'),
    [
      '-D', data, '-F', '-h', '127.0.0.1', '-p', String(port), '-k', dir,
      '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off',
      '-c', 'max_connections=40', '-c', 'shared_buffers=16MB',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env, cwd: dir, ...(ids ?? {}) },
  );
  const entry = { child, dir };
  running.add(entry);
  const output = captureOutput(child);
  const pg = loadPg();
  const admin = `postgresql://postgres@127.0.0.1:${port}/postgres`;
  try {
    await waitReady(child, 'postgres', output, async () => {
      const c = new pg.Client({ connectionString: admin, connectionTimeoutMillis: 2000 });
      try {
        await c.connect();
        await c.query('SELECT 1');
      } finally {
        await c.end().catch(() => undefined);
      }
    });
    const c = new pg.Client({ connectionString: admin, connectionTimeoutMillis: 5000 });
    try {
      await c.connect();
      await c.query('CREATE DATABASE camtap_test');
    } finally {
      await c.end().catch(() => undefined);
    }
  } catch (e) {
    await stopChild(entry, 'SIGKILL');
    throw e;
  }
  // SIGINT is PostgreSQL's "fast" shutdown: SIGTERM ("smart") would wait for clients to leave.
  return { url: `postgresql://postgres@127.0.0.1:${port}/camtap_test`, stop: () => stopChild(entry, 'SIGINT') };
}
