/**
 * Failover strategy (a): replay one captured RTSP set-up (OPTIONS/DESCRIBE/SETUP/PLAY,
 * one plan group) toward the camera, with camtap's address and ports already put in by
 * the plan (./plan.ts), so the camera streams to camtap as it streamed to the VMS.
 *
 * Verbatim replay does not work (lab README §7): the captured Session gets 454 Session
 * Not Found and a captured Digest answer 401, its nonce being spent (RFC 2617 §3.2.2). So
 * each request goes out with CSeq renumbered from 1, the Session adopted from the new
 * SETUP answer (RFC 2326 §12.37), and a 401 answered afresh with the camera's
 * credentials from the config (../rtsp-client/client.ts does these three). A captured
 * Authorization is never sent. gst-rtsp-server and most cameras end a session when its
 * TCP connection closes, so the connection stays open for as long as camtap holds the
 * camera, with a keepalive at half the Session `timeout` (RFC 2326 §12.37, default 60 s):
 * GET_PARAMETER (§10.8), or OPTIONS when the camera's Public does not list it.
 *
 * RTP the camera sends to camtap's UDP ports (the SETUP step's client_port) is received
 * by ./rtp-receiver.ts and recorded datagram by datagram; interleaved RTP (§10.12) comes
 * in the connection, which records every byte it reads. Either way the packets land in
 * the store and index like captured traffic.
 *
 * Every step's outcome is kept: the request line (URL without credentials), the status,
 * and the answer's first line with the headers that matter. A failing step ends the
 * group: nothing after it is sent, and a session already set up is torn down. With
 * `dryRun` nothing is sent and no socket is opened: the outcome lists each request as it
 * would go on the wire.
 */
import type { InlineRecorder } from '../contracts/inline.js';
import type { Logger } from '../contracts/logger.js';
import { isCamtapError } from '../errors.js';
import { silentLogger } from '../logger.js';
import { parseChallenges, pickChallenge } from '../rtsp-client/auth.js';
import { RtspClientConnection, type RtspResponse } from '../rtsp-client/client.js';
import { parseRtspUrl, redactUrl, stripUserinfo } from '../rtsp-client/url.js';
import { parseSdp, resolveControl, type Sdp } from '../wire/sdp.js';
import { parseTransport } from '../wire/rtsp-transport.js';
import { serializeMessage } from '../wire/rtsp-message.js';
import { RtpReceiver, type TrackStats } from './rtp-receiver.js';
import type { CameraOutcome, RtspStep, StepOutcome } from './types.js';

export interface RtspReplayOptions {
  /** The inventory camera the steps go to, with its credentials from the config. */
  camera: { name: string; address: string; user?: string; password?: string };
  /** One group: OPTIONS/DESCRIBE/SETUP.../PLAY, as the plan wrote them. */
  steps: Array<RtspStep & { group?: string }>;
  /** camtap's address the camera sends UDP RTP to (the receiver binds there). */
  host: string;
  /** Records the RTSP connection and every datagram received (null: not recorded). */
  recorder: InlineRecorder | null;
  log: Logger;
  /** Aborting fails a replay still setting up, and stops (TEARDOWN) one that is running. */
  signal?: AbortSignal;
  /** Per request (default 10 s). */
  timeoutMs?: number;
  /** Nothing is sent: the outcome lists every request as it would go. */
  dryRun?: boolean;
  /** Every RTP packet received, with its track index; `rtp` is valid during the call only. */
  onPacket?(track: number, rtp: Buffer): void;
}

export interface RtspReplayResult {
  outcome: CameraOutcome;
  /** The running session (null on failure and on a dry run). */
  session: ReplaySession | null;
}

export interface ReplaySession {
  /** The Session id the camera gave camtap (RFC 2326 §12.37). */
  readonly sessionId: string;
  stats(): { packets: number; bytes: number; lastPacketAt: number | null; tracks: number };
  /** Counters per track (RTP, RTCP, receiver reports sent). */
  tracks(): TrackStats[];
  /** TEARDOWN and close; the TEARDOWN's outcome is returned (numbered after the group's steps). Idempotent: later calls return []. */
  stop(): Promise<StepOutcome[]>;
  /** Resolves with why the session ended: `stopped`, or the connection loss or keepalive failure. */
  readonly closed: Promise<string>;
}

const DEFAULT_TIMEOUT_MS = 10_000;
/** Session timeout when the camera gives none (RFC 2326 §12.37). */
const DEFAULT_SESSION_TIMEOUT_S = 60;
/** How long a TEARDOWN on the way out may take before the connection is closed anyway. */
const TEARDOWN_WAIT_MS = 3000;
/** Datagrams the camera sent before it answered TEARDOWN may still be on the way: the ports stay open this long. */
const DRAIN_MS = 250;
/** GET_PARAMETER answers meaning "not supported here": keepalive with OPTIONS instead (RFC 2326 §10.8 makes it optional). */
const KEEPALIVE_UNSUPPORTED = new Set([400, 403, 405, 451, 455, 501]);

/** Headers the executor owns: never sent as captured. */
const OWNED = new Set(['cseq', 'session', 'authorization', 'content-length']);

const SESSION_PLACEHOLDER = '<from SETUP answer>';
const AUTH_PLACEHOLDER = '<answered from challenge>';

const isOk = (status: number | null) => status !== null && status >= 200 && status < 300;
const now = () => new Date().toISOString();
const errText = (e: unknown) => (isCamtapError(e) && typeof e.details.reason === 'string' ? e.details.reason : e instanceof Error ? e.message : String(e));

function headerOf(h: Record<string, string>, name: string): string | null {
  for (const [k, v] of Object.entries(h)) if (k.toLowerCase() === name) return v;
  return null;
}

/** The step's headers as they go out: the executor's own (CSeq, Session, Authorization, Content-Length) removed. */
function sendable(h: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) if (!OWNED.has(k.toLowerCase())) out[k] = v;
  return out;
}

/** The answer as an outcome shows it: the status line and the headers that matter. */
function summarize(res: RtspResponse): string {
  const lines = [`RTSP/${res.version} ${res.status} ${res.reason ?? ''}`.trimEnd()];
  for (const name of ['Session', 'Transport', 'RTP-Info', 'Public']) {
    const v = res.header(name);
    if (v !== null) lines.push(`${name}: ${v}`);
  }
  const schemes = challengeSchemes(res);
  if (schemes) lines.push(`WWW-Authenticate: ${schemes}`);
  return lines.join('\n');
}

/** `Digest`, `Basic`, `Digest, Basic`: the schemes a 401 offers (the challenge's parameters are not kept). */
function challengeSchemes(res: RtspResponse): string | null {
  const values = res.headers.filter(([k]) => k.toLowerCase() === 'www-authenticate').map(([, v]) => v);
  if (values.length === 0) return null;
  const best = pickChallenge(parseChallenges(values));
  if (best) return best.scheme === 'digest' ? 'Digest' : 'Basic';
  const words = values.map((v) => /^\s*([A-Za-z0-9_-]+)/.exec(v)?.[1]).filter((w): w is string => Boolean(w));
  return words.length ? [...new Set(words)].join(', ') : null;
}

/** Why a refused step failed, in words an operator acts on. */
function refusal(request: string, res: RtspResponse, camera: RtspReplayOptions['camera']): string {
  const line = `${res.status} ${res.reason ?? ''}`.trimEnd();
  if (res.status === 401) {
    const scheme = challengeSchemes(res);
    const s = scheme ? ` (${scheme})` : '';
    if (camera.user === undefined || camera.user === '') return `${request}: ${line}${s} and no credentials configured for camera ${camera.name}`;
    return `${request}: ${line}${s}: credentials refused for user ${camera.user}`;
  }
  if (res.status === 454) return `${request}: ${line} (the camera does not know the session)`;
  return `${request}: ${line}`;
}

const sameHost = (a: string, b: string) => a.replace(/^\[|\]$/g, '').toLowerCase() === b.replace(/^\[|\]$/g, '').toLowerCase();

/** Checks the group before anything is sent: RTSP URLs, all to one camera, and that camera the inventory's. */
function checkSteps(opts: RtspReplayOptions): { index: number; reason: string } | { host: string; port: number } {
  const { steps, camera } = opts;
  if (steps.length === 0) return { index: -1, reason: 'no RTSP steps to replay' };
  let first: { host: string; port: number } | null = null;
  for (let i = 0; i < steps.length; i++) {
    const s = steps[i]!;
    if (s.kind !== 'rtsp') return { index: i, reason: `step ${i + 1} is not an RTSP request (${String(s.kind)})` };
    const u = parseRtspUrl(s.url);
    if (u === null) return { index: i, reason: `${s.method} ${redactUrl(s.url)}: not an rtsp:// URL` };
    if (!sameHost(u.host, camera.address)) return { index: i, reason: `${s.method} ${redactUrl(s.url)}: ${u.host} is not the address of camera ${camera.name} (${camera.address}); not sent` };
    if (first === null) first = { host: u.host, port: u.port };
    else if (u.port !== first.port) return { index: i, reason: `${s.method} ${redactUrl(s.url)}: port ${u.port} differs from the group's first request (${first.port})` };
  }
  return first!;
}

/** Each request as it would go on the wire, placeholders where the camera's answers decide. */
function dryRunOutcome(opts: RtspReplayOptions): CameraOutcome {
  const creds = opts.camera.user !== undefined && opts.camera.user !== '';
  let sessionKnown = false;
  const steps: StepOutcome[] = opts.steps.map((s, i) => {
    const given = sendable(s.headers);
    const headers: Array<[string, string]> = [['CSeq', String(i + 1)], ...Object.entries(given)];
    if (headerOf(given, 'user-agent') === null) headers.push(['User-Agent', 'camtap']);
    if (sessionKnown) headers.push(['Session', SESSION_PLACEHOLDER]);
    if (creds) headers.push(['Authorization', AUTH_PLACEHOLDER]);
    if (s.method.toUpperCase() === 'SETUP') sessionKnown = true;
    let text: string;
    try {
      text = serializeMessage({ kind: 'request', method: s.method, url: stripUserinfo(s.url), headers, ...(s.body ? { body: Buffer.from(s.body, 'utf8') } : {}) }).toString('utf8');
    } catch (e) {
      text = `(cannot be sent: ${e instanceof Error ? e.message : String(e)})`;
    }
    return { step: i + 1, ...(s.group ? { group: s.group } : {}), kind: 'rtsp', request: `${s.method} ${redactUrl(s.url)}`, status: null, ok: true, answer: `(dry run: not sent)\n${text.replace(/\r\n/g, '\n').trimEnd()}`, at: now() };
  });
  return { camera: opts.camera.name, strategy: 'rtsp-replay', ok: true, steps };
}

/** Clock rate of the track a SETUP URL names, from the DESCRIBE answer's SDP (90 kHz when unknown: video). */
function clockRateFor(sdp: Sdp | null, base: string, setupUrl: string, index: number): number {
  if (sdp === null || sdp.media.length === 0) return 90_000;
  const norm = (u: string) => stripUserinfo(u).replace(/\/+$/, '');
  const want = norm(setupUrl);
  const m = sdp.media.find((x) => norm(resolveControl(base, x.control)) === want) ?? (sdp.media.length === 1 ? sdp.media[0] : sdp.media[index]);
  const pt = m?.formats[0];
  if (m === undefined || pt === undefined) return 90_000;
  const r = m.rtpmap.get(pt)?.clockRate;
  return r && r > 0 ? r : pt === 0 || pt === 8 ? 8000 : 90_000;
}

/**
 * Replays one group of RTSP steps toward its camera and keeps the session it sets up.
 * Never rejects: every failure is in the outcome (`ok: false`, `reason` naming the step
 * and why), with the outcome of each step sent so far.
 */
export async function startRtspReplay(opts: RtspReplayOptions): Promise<RtspReplayResult> {
  const { camera, steps } = opts;
  const group = steps[0]?.group;
  const outcomes: StepOutcome[] = [];
  const stepOutcome = (i: number, request: string, status: number | null, ok: boolean, answer: string, at: string): StepOutcome => {
    const o: StepOutcome = { step: i + 1, ...(group !== undefined ? { group } : {}), kind: 'rtsp', request, status, ok, answer, at };
    outcomes.push(o);
    return o;
  };
  const failed = (reason: string): RtspReplayResult => ({ outcome: { camera: camera.name, strategy: 'rtsp-replay', ok: false, reason, steps: outcomes }, session: null });

  const target = checkSteps(opts);
  if ('reason' in target) {
    if (target.index >= 0) {
      const s = steps[target.index]!;
      stepOutcome(target.index, `${s.method} ${redactUrl(s.url)}`, null, false, `not sent: ${target.reason}`, now());
    }
    return failed(target.reason);
  }
  if (opts.dryRun) return { outcome: dryRunOutcome(opts), session: null };

  const log = (opts.log ?? silentLogger).child({ component: 'failover-rtsp', camera: camera.name });
  const first = steps[0]!;
  const firstRequest = `${first.method} ${redactUrl(first.url)}`;
  if (opts.signal?.aborted) {
    stepOutcome(0, firstRequest, null, false, 'not sent: aborted', now());
    return failed(`${firstRequest}: aborted before it was sent`);
  }
  let conn: RtspClientConnection;
  const connectAt = now();
  try {
    conn = await RtspClientConnection.connect(stripUserinfo(first.url), {
      timeoutMs: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      log,
      ...(camera.user !== undefined && camera.user !== '' ? { user: camera.user, password: camera.password ?? '' } : {}),
      recorder: opts.recorder,
    });
  } catch (e) {
    stepOutcome(0, firstRequest, null, false, errText(e), connectAt);
    return failed(`${firstRequest}: ${errText(e)}`);
  }
  if (!sameHost(conn.localAddress, opts.host)) {
    // Without `destination=` the camera sends UDP to the address the RTSP connection came from (RFC 2326 §12.39).
    log.warn({ local: conn.localAddress, host: opts.host }, 'the RTSP connection does not come from the failover host: UDP RTP may go to the connection\'s address');
  }

  const receiver = new RtpReceiver({ host: opts.host, recorder: opts.recorder, log, from: [conn.remoteAddress], cname: `camtap-failover@${opts.host}`, ...(opts.onPacket ? { onPacket: opts.onPacket } : {}) });
  // Interleaved channel -> track, and whether it is the pair's RTCP channel: flat tables, looked up per frame.
  const channelTrack = new Int16Array(256).fill(-1);
  const channelRtcp = new Uint8Array(256);
  conn.onInterleaved((ch, payload) => {
    const track = channelTrack[ch]!;
    if (track >= 0) receiver.push(track, channelRtcp[ch] === 1, payload);
  });

  let publicMethods: string | null = null;
  let sdp: Sdp | null = null;
  let sdpBase = first.url;
  let setups = 0;
  let controlUrl = first.url;
  let userAgent: string | null = null;

  /** Ends a group that failed: TEARDOWN of a session already set up, then everything closed. */
  const abandon = async (reason: string): Promise<RtspReplayResult> => {
    if (conn.session !== null && !conn.closed) {
      const at = now();
      const request = `TEARDOWN ${redactUrl(controlUrl)}`;
      try {
        const res = await withTimeout(conn.request('TEARDOWN', stripUserinfo(controlUrl), userAgent ? { 'User-Agent': userAgent } : {}), TEARDOWN_WAIT_MS);
        stepOutcome(outcomes.length, request, res?.status ?? null, res !== null && isOk(res.status), res ? summarize(res) : `no answer within ${TEARDOWN_WAIT_MS / 1000} s`, at);
      } catch (e) {
        stepOutcome(outcomes.length, request, null, false, errText(e), at);
      }
    }
    conn.close();
    receiver.close();
    return failed(reason);
  };

  for (let i = 0; i < steps.length; i++) {
    const s = steps[i]!;
    const method = s.method.toUpperCase();
    const url = stripUserinfo(s.url);
    const request = `${s.method} ${redactUrl(s.url)}`;
    const headers = sendable(s.headers);
    userAgent ??= headerOf(headers, 'user-agent');
    if (opts.signal?.aborted) {
      stepOutcome(i, request, null, false, 'not sent: aborted', now());
      return abandon(`${request}: aborted before it was sent`);
    }
    let setup: { index: number; lower: 'udp' | 'tcp'; channels: [number, number] | null; clockRate: number } | null = null;
    if (method === 'SETUP') {
      const index = s.track?.index ?? setups;
      setups++;
      const spec = parseTransport(headerOf(headers, 'transport') ?? '')[0] ?? null;
      const lower = s.track?.lower ?? spec?.lower ?? 'udp';
      const clockRate = clockRateFor(sdp, sdpBase, url, index);
      if (spec?.multicast) {
        stepOutcome(i, request, null, false, 'not sent: a multicast SETUP is not taken over by replay', now());
        return abandon(`${request}: multicast transport cannot be replayed (join the group instead)`);
      }
      if (lower === 'udp') {
        const rtpPort = s.track?.rtpPort ?? spec?.clientPorts?.[0];
        const rtcpPort = s.track?.rtcpPort ?? spec?.clientPorts?.[1] ?? (rtpPort !== undefined ? rtpPort + 1 : undefined);
        if (rtpPort === undefined || rtcpPort === undefined) {
          stepOutcome(i, request, null, false, 'not sent: no client_port to receive the track on', now());
          return abandon(`${request}: the plan gives no UDP port for track ${index}`);
        }
        const cp = spec?.clientPorts;
        if (cp && (cp[0] !== rtpPort || cp[1] !== rtcpPort)) {
          stepOutcome(i, request, null, false, `not sent: Transport client_port=${cp[0]}-${cp[1]} but the track is received on ${rtpPort}-${rtcpPort}`, now());
          return abandon(`${request}: the plan's Transport and track ports disagree`);
        }
        try {
          await receiver.bindUdp(index, rtpPort, rtcpPort, clockRate);
        } catch (e) {
          const msg = e instanceof Error ? e.message : String(e);
          stepOutcome(i, request, null, false, `not sent: ${msg}`, now());
          return abandon(`${request}: ${msg}`);
        }
      }
      setup = { index, lower, channels: s.track?.interleaved ?? spec?.interleaved ?? null, clockRate };
    }

    const at = now();
    let res: RtspResponse;
    try {
      res = await conn.request(s.method, url, headers, s.body !== undefined && s.body !== '' ? Buffer.from(s.body, 'utf8') : undefined);
    } catch (e) {
      stepOutcome(i, request, null, false, errText(e), at);
      return abandon(`${request}: ${errText(e)}`);
    }
    const ok = isOk(res.status);
    stepOutcome(i, request, res.status, ok, summarize(res), at);
    if (!ok) return abandon(refusal(request, res, camera));

    if (method === 'OPTIONS') publicMethods = res.header('Public');
    else if (method === 'DESCRIBE') {
      sdp = parseSdp(res.body.toString('utf8'));
      sdpBase = res.header('Content-Base') ?? res.header('Content-Location') ?? url;
      controlUrl = url;
      if (sdp?.control && sdp.control !== '*') controlUrl = resolveControl(sdpBase, sdp.control);
    } else if (method === 'PLAY') controlUrl = url;
    if (setup !== null) {
      const answer = parseTransport(res.header('Transport') ?? '')[0] ?? null;
      if (setup.lower === 'udp') {
        const source = answer?.source ?? null;
        if (source) receiver.allowFrom(source);
        const sp = answer?.serverPorts;
        if (sp) receiver.setRemote(setup.index, { ip: source ?? conn.remoteAddress, port: sp[1] });
      } else {
        // The camera may pick other channels than asked (RFC 2326 §12.39): its answer stands.
        const ch = answer?.interleaved ?? setup.channels ?? [2 * setup.index, 2 * setup.index + 1];
        channelTrack[ch[0]] = setup.index;
        channelRtcp[ch[0]] = 0;
        channelTrack[ch[1]] = setup.index;
        channelRtcp[ch[1]] = 1;
        const rtcpChannel = ch[1];
        receiver.addInterleaved(setup.index, (rr) => conn.sendInterleaved(rtcpChannel, rr), setup.clockRate);
      }
    }
  }

  const session = new RunningReplay({
    conn,
    receiver,
    log,
    controlUrl,
    userAgent,
    useGetParameter: publicMethods === null || /\bGET_PARAMETER\b/i.test(publicMethods),
    nextStep: outcomes.length + 1,
    group,
  });
  if (opts.signal) {
    const signal = opts.signal;
    const onAbort = () => void session.stop();
    signal.addEventListener('abort', onAbort, { once: true });
    void session.closed.then(() => signal.removeEventListener('abort', onAbort));
  }
  log.info({ session: session.sessionId, tracks: setups }, 'camera taken over by replay');
  return { outcome: { camera: camera.name, strategy: 'rtsp-replay', ok: true, steps: outcomes }, session };
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | null> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => resolve(null), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

interface RunningReplayInit {
  conn: RtspClientConnection;
  receiver: RtpReceiver;
  log: Logger;
  /** The aggregate URL (PLAY's): keepalive and TEARDOWN go there. */
  controlUrl: string;
  userAgent: string | null;
  useGetParameter: boolean;
  nextStep: number;
  group: string | undefined;
}

/** A replayed session while camtap holds the camera: keepalive, connection watch, TEARDOWN. */
class RunningReplay implements ReplaySession {
  readonly sessionId: string;
  readonly closed: Promise<string>;
  readonly #i: RunningReplayInit;
  readonly #keepalive: NodeJS.Timeout;
  #useGetParameter: boolean;
  #busy = false;
  #ended = false;
  #stopping: Promise<StepOutcome[]> | null = null;
  #resolveClosed: (reason: string) => void = () => {};

  constructor(init: RunningReplayInit) {
    this.#i = init;
    this.sessionId = init.conn.session?.id ?? '';
    this.#useGetParameter = init.useGetParameter;
    this.closed = new Promise((r) => (this.#resolveClosed = r));
    const timeout = init.conn.session?.timeoutSec ?? DEFAULT_SESSION_TIMEOUT_S;
    // Half the session timeout (RFC 2326 §12.37), so one lost keepalive does not end it.
    this.#keepalive = setInterval(() => void this.#keepAlive(), Math.max(1, timeout) * 500);
    this.#keepalive.unref();
    init.conn.onClose((err) => {
      if (this.#stopping === null) this.#end(err ? errText(err) : 'connection closed');
    });
  }

  stats(): { packets: number; bytes: number; lastPacketAt: number | null; tracks: number } {
    return this.#i.receiver.stats();
  }

  tracks(): TrackStats[] {
    return this.#i.receiver.tracks();
  }

  stop(): Promise<StepOutcome[]> {
    if (this.#stopping !== null) return this.#stopping.then(() => []);
    this.#stopping = this.#teardown();
    return this.#stopping;
  }

  async #teardown(): Promise<StepOutcome[]> {
    const { conn, controlUrl } = this.#i;
    clearInterval(this.#keepalive);
    const out: StepOutcome[] = [];
    if (!this.#ended && !conn.closed) {
      const at = now();
      const request = `TEARDOWN ${redactUrl(controlUrl)}`;
      const base = { step: this.#i.nextStep, ...(this.#i.group !== undefined ? { group: this.#i.group } : {}), kind: 'rtsp' as const, request, at };
      try {
        const res = await withTimeout(conn.request('TEARDOWN', stripUserinfo(controlUrl), this.#i.userAgent ? { 'User-Agent': this.#i.userAgent } : {}), TEARDOWN_WAIT_MS);
        out.push({ ...base, status: res?.status ?? null, ok: res !== null && isOk(res.status), answer: res ? summarize(res) : `no answer within ${TEARDOWN_WAIT_MS / 1000} s` });
      } catch (e) {
        out.push({ ...base, status: null, ok: false, answer: errText(e) });
      }
      if (this.#i.receiver.tracks().some((t) => t.lower === 'udp')) await new Promise((r) => setTimeout(r, DRAIN_MS));
    }
    this.#end('stopped');
    return out;
  }

  #end(reason: string): void {
    if (this.#ended) return;
    this.#ended = true;
    clearInterval(this.#keepalive);
    this.#i.conn.close();
    this.#i.receiver.close();
    if (reason !== 'stopped') this.#i.log.warn({ session: this.sessionId, reason }, 'replayed session ended');
    this.#resolveClosed(reason);
  }

  /** GET_PARAMETER with no body (RFC 2326 §10.8), or OPTIONS where the camera does not support it. */
  async #keepAlive(): Promise<void> {
    if (this.#busy || this.#ended || this.#stopping !== null) return;
    this.#busy = true;
    const { conn, controlUrl } = this.#i;
    const headers: Record<string, string> = this.#i.userAgent ? { 'User-Agent': this.#i.userAgent } : {};
    try {
      if (this.#useGetParameter) {
        const r = await conn.request('GET_PARAMETER', stripUserinfo(controlUrl), headers);
        if (isOk(r.status)) return;
        if (r.status === 454) return this.#lost('keepalive: the camera no longer knows the session (454)');
        if (!KEEPALIVE_UNSUPPORTED.has(r.status ?? 0)) return this.#lost(`keepalive: GET_PARAMETER answered ${r.status}`);
        this.#useGetParameter = false;
      }
      const r = await conn.request('OPTIONS', stripUserinfo(controlUrl), headers);
      if (r.status === 454) this.#lost('keepalive: the camera no longer knows the session (454)');
    } catch (e) {
      this.#lost(`keepalive failed: ${errText(e)}`);
    } finally {
      this.#busy = false;
    }
  }

  #lost(reason: string): void {
    if (this.#stopping !== null) return;
    this.#end(reason);
  }
}
