/**
 * Shared by the HTTP/ONVIF proxy tests (not a test itself): the ONVIF device simulator
 * (test/helpers/onvif-sim.js) as a child process with its request log, a recorder that
 * keeps what the proxy reports per TCP connection, the capture pipeline's HTTP learner
 * run over those bytes, raw-socket exchanges, and a logger that keeps every line.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Endpoint, InlineRecorder, TcpRecording } from '../../../core/contracts/inline.js';
import type { HttpTransaction } from '../../../core/contracts/records.js';
import type { Logger } from '../../../core/contracts/logger.js';
import { MessageStreamParser, type WireMessage } from '../../../core/wire/rtsp-message.js';
import { HttpConnectionLearner } from '../../../core/sessions/http-exchange.js';
import { freePort } from '../../helpers/peers.js';

export const SIM = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../helpers/onvif-sim.js');

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** A temporary folder removed at teardown. */
export function tempDir(t: Teardown): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'camtap-httpproxy-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** One request as the simulator logged it. */
export interface SimRequest {
  path: string;
  action: string | null;
  body: string;
}

export interface Sim {
  port: number;
  base: string;
  /** Every request the simulator received so far, in order. */
  requests(): SimRequest[];
}

/** Starts the ONVIF simulator on 127.0.0.1 and waits for its ready line; stopped by PID at teardown. */
export async function startSim(t: Teardown, opts: { rtsp: string; user?: string; password?: string }): Promise<Sim> {
  const port = await freePort();
  const log = path.join(tempDir(t), 'sim.jsonl');
  const args = [SIM, '--port', String(port), '--bind', '127.0.0.1', '--rtsp', opts.rtsp, '--log', log];
  if (opts.user) args.push('--user', opts.user, '--password', opts.password ?? '');
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
    process.off('exit', killOnExit);
  });
  let text = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`onvif sim not ready: ${text}`)), 15000);
    const onData = (d: Buffer) => {
      text += d.toString();
      if (/onvif sim ready/.test(text)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`onvif sim exited ${code}: ${text}`));
    });
  });
  return {
    port,
    base: `http://127.0.0.1:${port}`,
    requests: () =>
      existsSync(log)
        ? readFileSync(log, 'utf8')
            .split('\n')
            .filter((l) => l)
            .map((l) => JSON.parse(l) as SimRequest)
        : [],
  };
}

/** One recorded TCP connection: endpoints and the bytes each way in call order. */
export interface RecordedConn {
  client: Endpoint;
  server: Endpoint;
  events: Array<{ fromClient: boolean; data: Buffer }>;
  closed: boolean;
}

/** An InlineRecorder that keeps copies of everything reported to it. */
export class KeepingRecorder implements InlineRecorder {
  readonly conns: RecordedConn[] = [];
  readonly datagrams: Array<{ src: Endpoint; dst: Endpoint; payload: Buffer }> = [];

  tcp(client: Endpoint, server: Endpoint): TcpRecording {
    const c: RecordedConn = { client: { ...client }, server: { ...server }, events: [], closed: false };
    this.conns.push(c);
    return {
      fromClient: (d) => c.events.push({ fromClient: true, data: Buffer.from(d) }),
      fromServer: (d) => c.events.push({ fromClient: false, data: Buffer.from(d) }),
      close: () => {
        c.closed = true;
      },
    };
  }

  udp(src: Endpoint, dst: Endpoint, payload: Buffer): void {
    this.datagrams.push({ src, dst, payload: Buffer.from(payload) });
  }

  /** Connections whose server side is `port`. */
  to(port: number): RecordedConn[] {
    return this.conns.filter((c) => c.server.port === port);
  }
}

/** Bytes of one direction of a recorded connection. */
export function side(c: RecordedConn, fromClient: boolean): Buffer {
  return Buffer.concat(c.events.filter((e) => e.fromClient === fromClient).map((e) => e.data));
}

/** The HTTP messages of one recorded connection, each direction parsed by camtap's wire parser. */
export function messages(c: RecordedConn): { requests: WireMessage[]; responses: WireMessage[]; errors: string[] } {
  const requests: WireMessage[] = [];
  const responses: WireMessage[] = [];
  const errors: string[] = [];
  const mk = (into: WireMessage[]) =>
    new MessageStreamParser({ onMessage: (m) => into.push(m), onInterleaved: () => errors.push('interleaved frame'), onError: (r, o) => errors.push(`${r} @${o}`) });
  const pc = mk(requests);
  const ps = mk(responses);
  for (const e of c.events) (e.fromClient ? pc : ps).push(e.data, null);
  return { requests, responses, errors };
}

/**
 * What the capture pipeline's HTTP learner (core/sessions/http-exchange.ts) makes of one
 * recorded connection: the bytes fed in the order the proxy reported them.
 */
export function learn(c: RecordedConn): HttpTransaction[] {
  const client = `${c.client.ip}:${c.client.port}`;
  const server = `${c.server.ip}:${c.server.port}`;
  const learner = new HttpConnectionLearner(client, server, server, client);
  let sec = 1_700_000_000;
  const onMessage = (m: WireMessage) => learner.onMessage(m, sec++, 0);
  const pc = new MessageStreamParser({ onMessage, onInterleaved: () => {}, onError: () => {} });
  const ps = new MessageStreamParser({ onMessage, onInterleaved: () => {}, onError: () => {} });
  for (const e of c.events) (e.fromClient ? pc : ps).push(e.data, null);
  learner.finish();
  return learner.transactions;
}

/** A logger that keeps every line (object and message) as JSON text. */
export function keepingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const put = (o: object | string, m?: string) => lines.push(JSON.stringify([o, m ?? null]));
  const log: Logger & { lines: string[] } = { lines, debug: put, info: put, warn: put, error: put, child: () => log };
  return log;
}

/**
 * Writes `payload` on a fresh connection and returns everything the server sent until it
 * closed the connection; after `endAfterMs` (a safety net, not a timing assertion) the
 * client gives up and `serverClosed` is false.
 */
export function rawExchange(port: number, payload: string | Buffer, endAfterMs = 5000): Promise<{ text: string; serverClosed: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(payload));
    const got: Buffer[] = [];
    let gaveUp = false;
    const timer = setTimeout(() => {
      gaveUp = true;
      s.destroy();
    }, endAfterMs);
    s.on('data', (d) => got.push(d));
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ text: Buffer.concat(got).toString('latin1'), serverClosed: !gaveUp });
    });
  });
}

/** Status codes of the HTTP answers in `text`, in order. */
export function statuses(text: string): number[] {
  return [...text.matchAll(/HTTP\/1\.[01] (\d{3}) /g)].map((m) => Number(m[1]));
}

/** A SOAP 1.2 request for an ONVIF operation without arguments, as the onvif client words it. */
export function soap(op: string, ns = 'http://www.onvif.org/ver10/device/wsdl'): string {
  return `<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body><${op} xmlns="${ns}"/></s:Body></s:Envelope>`;
}
