/**
 * VMS health probes: a TCP connect to each port the VMS listens on, and an HTTP GET of a
 * health URL that must answer an expected status. These are what `vms-generic` does and
 * what the health monitor falls back on for a VMS plugin without its own `probe`.
 *
 * A probe never throws: every outcome (refused, timed out, aborted, wrong status) is a
 * failed check with the reason in words, and every socket is closed when it settles.
 */
import { connect, isIPv6 } from 'node:net';
import http from 'node:http';
import https from 'node:https';
import { performance } from 'node:perf_hooks';
import type { VmsCheck, VmsEndpoint, VmsHealth, VmsProbeOptions } from '../contracts/plugin.js';
import { redactUrl } from '../rtsp-client/url.js';

/** One check's outcome plus how long its answer took (ms; null when nothing answered). */
export interface ProbeCheck extends VmsCheck {
  latencyMs: number | null;
}

function hostPort(host: string, port: number): string {
  return isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

function errText(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  return err?.code ?? err?.message ?? String(e);
}

/**
 * TCP connect to `host:port` (the three-way handshake, RFC 9293 §3.5), closed at once.
 * Ok when the connection is established within `timeoutMs`; a refusal (RST) or silence
 * is a failed check.
 */
export function tcpProbe(host: string, port: number, timeoutMs: number, opts: { signal?: AbortSignal } = {}): Promise<ProbeCheck> {
  const signal = opts.signal;
  const name = `tcp ${hostPort(host, port)}`;
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve({ name, ok: false, detail: 'aborted', latencyMs: null });
    const t0 = performance.now();
    const sock = connect({ host, port });
    let done = false;
    const finish = (ok: boolean, detail: string, latencyMs: number | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      sock.destroy();
      resolve({ name, ok, detail, latencyMs });
    };
    const onAbort = () => finish(false, 'aborted', null);
    const timer = setTimeout(() => finish(false, `no answer within ${timeoutMs} ms`, null), timeoutMs);
    signal?.addEventListener('abort', onAbort, { once: true });
    sock.once('connect', () => {
      const ms = performance.now() - t0;
      finish(true, `connected in ${Math.round(ms)} ms`, ms);
    });
    sock.once('error', (e) => finish(false, errText(e), null));
  });
}

/**
 * HTTP(S) GET of `url`; ok when the answer's status is `expect`. Redirects are not
 * followed (a 302 to a login page is not the health answer). The body is read and
 * dropped, the connection not kept alive. Credentials in the URL's userinfo go as Basic
 * (RFC 7617) and are never shown. HTTPS certificates are verified unless `insecure`
 * (appliances with self-signed certificates).
 */
export function httpProbe(url: string, expect: number, timeoutMs: number, opts: { signal?: AbortSignal; insecure?: boolean } = {}): Promise<ProbeCheck> {
  const signal = opts.signal;
  const shown = redactUrl(url);
  const name = `GET ${shown}`;
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve({ name, ok: false, detail: 'aborted', latencyMs: null });
    let u: URL;
    try {
      u = new URL(url);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`not an http(s) URL`);
    } catch (e) {
      return resolve({ name, ok: false, detail: `bad URL: ${(e as Error).message}`, latencyMs: null });
    }
    const t0 = performance.now();
    let done = false;
    const headers: Record<string, string> = { connection: 'close', 'user-agent': 'camtap-probe' };
    if (u.username || u.password) headers.authorization = `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}`;
    const mod = u.protocol === 'https:' ? https : http;
    const req = mod.request(u, { method: 'GET', headers, agent: false, rejectUnauthorized: opts.insecure !== true });
    const finish = (ok: boolean, detail: string, latencyMs: number | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      req.destroy();
      resolve({ name, ok, detail, latencyMs });
    };
    const onAbort = () => finish(false, 'aborted', null);
    const timer = setTimeout(() => finish(false, `no answer within ${timeoutMs} ms`, null), timeoutMs);
    signal?.addEventListener('abort', onAbort, { once: true });
    req.once('response', (res) => {
      const ms = performance.now() - t0;
      res.resume();
      const status = res.statusCode ?? 0;
      finish(status === expect, status === expect ? `HTTP ${status} in ${Math.round(ms)} ms` : `HTTP ${status}, expected ${expect}`, ms);
    });
    req.once('error', (e) => finish(false, errText(e), null));
    req.end();
  });
}

/** Folds checks into a health verdict: ok only if every check is ok; no checks, no verdict (ok, `checks: []`). */
export function healthOf(checks: ProbeCheck[], nothing = 'nothing to probe'): VmsHealth {
  if (checks.length === 0) return { ok: true, detail: nothing, latencyMs: null, checks: [] };
  const failed = checks.filter((c) => !c.ok);
  let latency: number | null = null;
  for (const c of checks) if (c.latencyMs !== null && (latency === null || c.latencyMs > latency)) latency = c.latencyMs;
  return {
    ok: failed.length === 0,
    detail: failed.length === 0 ? `${checks.length} check${checks.length > 1 ? 's' : ''} ok` : failed.map((c) => `${c.name}: ${c.detail}`).join('; '),
    latencyMs: latency === null ? null : Math.round(latency * 10) / 10,
    checks: checks.map(({ name, ok, detail }) => ({ name, ok, detail })),
  };
}

/**
 * The generic probe: every port of the endpoint by TCP connect, and its `healthUrl` by
 * HTTP GET expecting `expectStatus` (default 200), all at once within `timeoutMs`
 * (`options.insecureTls: true` accepts a self-signed certificate). An endpoint with
 * neither gives no verdict (`checks: []`).
 */
export async function probeEndpoint(endpoint: VmsEndpoint, opts: VmsProbeOptions): Promise<VmsHealth> {
  const signal = opts.signal;
  const jobs: Array<Promise<ProbeCheck>> = endpoint.ports.map((p) => tcpProbe(endpoint.address, p, opts.timeoutMs, { signal }));
  if (endpoint.healthUrl) jobs.push(httpProbe(endpoint.healthUrl, endpoint.expectStatus ?? 200, opts.timeoutMs, { signal, insecure: endpoint.options?.insecureTls === true }));
  return healthOf(await Promise.all(jobs), 'nothing to probe (no ports, no healthUrl)');
}
