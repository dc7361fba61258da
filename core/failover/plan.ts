/**
 * Builds the failover plan of one failed VMS (./types.ts): per camera of the VMS, how
 * camtap takes it over and gives it back, from what the catalog learned of the VMS's
 * own set-up traffic. Pure: reads the catalog records it is given (and, through
 * `readRequest`, the stored packets of HTTP requests), sends nothing.
 *
 * Strategy per camera, in the order the issue prefers them:
 *
 * 1. `rtsp-replay`: the VMS pulled the camera's stream over RTSP (client = VMS, server =
 *    camera, a PLAY answered 2xx). The most recent such session per URL is replayed as
 *    captured (the VMS may pull a main and a sub stream: one group each), minus what a
 *    replay cannot reuse: CSeq (renumbered, RFC 2326 §12.17), Session (the camera gives a
 *    new one in the SETUP answer, §12.37; the lab's verbatim replay got 454), and
 *    Authorization (a Digest answer is bound to its nonce, RFC 2617 §3.2.2; the lab got
 *    401). Requests the camera challenged are kept once, in their authorised form. SETUP
 *    `Transport` points the camera at camtap's ports (./substitute.ts `rewriteTransport`).
 *    Every other header is kept: cameras key behaviour off User-Agent, Require and vendor
 *    headers.
 * 2. `http-replay`: the camera pushes to the VMS, configured by HTTP requests that carry
 *    the VMS address (a push destination, an event or recording target). The latest
 *    such request per setting is resent with camtap's address (and port) in place of
 *    the VMS's; the give-back resends the captured requests unchanged.
 * 3. `camera-api`: the camera's profile can redirect the camera (`redirect-unicast`) or
 *    name a stream camtap pulls itself (`stream-uri`).
 * 4. `none`, with the reason.
 *
 * Safety (issue 5): only cameras in the inventory are planned for, and camtap's address
 * (`target.host`) must be one camtap owns: the plan never points a camera elsewhere.
 */
import type { CameraProfile } from '../contracts/camera-profile.js';
import type { CameraRecord, HttpTransaction, RtspExchange, SessionRecord, StreamRecord, VmsRecord } from '../contracts/records.js';
import { CamtapError } from '../errors.js';
import { hostOf } from '../sessions/inventory.js';
import { parseIp } from '../wire/packet.js';
import { parseTransport } from '../wire/rtsp-transport.js';
import type { CapturedHttpRequest } from './captured-http.js';
import { containsAddress, findPortRefs, rewriteTransport, substituteAddress, substitutePorts, type PortRef } from './substitute.js';
import type { ApiStep, CameraPlan, FailoverPlan, FailoverStep, FailoverTarget, HttpStep, RtspStep } from './types.js';

export interface PlanInputs {
  /** The failed VMS. */
  vms: VmsRecord;
  /** The inventory: only cameras in it are planned for, those whose `vms` includes `vms.name`. */
  cameras: CameraRecord[];
  /** `catalog.listSessions()`. */
  sessions: SessionRecord[];
  /** `catalog.listTransactions()`. */
  transactions: HttpTransaction[];
  target: FailoverTarget;
  /** Addresses camtap owns; `target.host` must be one of them. */
  ownAddresses: string[];
  profileOf(camera: CameraRecord): CameraProfile | null;
  /** The captured request of a transaction, from the stored packets (./captured-http.ts `readCapturedRequest`). */
  readRequest(tx: HttpTransaction): Promise<CapturedHttpRequest>;
  /** Restrict to these cameras (inventory names or addresses). */
  only?: string[];
  /**
   * `catalog.listStreams()`, optional. With it, a port in a captured HTTP request is the
   * VMS's media port only when the camera was seen sending RTP to it (RTCP: the port
   * after); without it, any parameter named like a port is taken for one. It also tells
   * a camera that pushes (a stream to the VMS with no RTSP session) from one the VMS pulls.
   */
  streams?: StreamRecord[];
}

type PlannedStep = FailoverStep & { group?: string };

/** RTSP request headers a replay must not repeat: the sender adds fresh ones (see the file comment). */
const RTSP_DROP = new Set(['cseq', 'session', 'authorization', 'proxy-authorization', 'content-length']);
/** Methods replayed to set a stream up (RFC 2326 §10); keep-alives (GET_PARAMETER) and the rest are not set-up. */
const RTSP_SETUP_METHODS = new Set(['OPTIONS', 'DESCRIBE', 'SETUP', 'PLAY']);
/**
 * HTTP request headers a replay must not repeat: credentials (answered afresh with the
 * camera's, never stored in a plan; a captured Cookie is the VMS's login session),
 * hop-by-hop headers (RFC 9110 §7.6.1: they belong to the VMS's connection) and the
 * body framing (the sender computes Content-Length for the substituted body).
 */
const HTTP_DROP = new Set(['authorization', 'proxy-authorization', 'cookie', 'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'content-length']);
/** Header names whose usual spelling is not Title-Case (RFC 2326 §12, RFC 9110). */
const SPELLING: Record<string, string> = { cseq: 'CSeq', 'www-authenticate': 'WWW-Authenticate', 'rtp-info': 'RTP-Info', etag: 'ETag', te: 'TE', soapaction: 'SOAPAction' };

const is2xx = (s: number | null) => s !== null && s >= 200 && s < 300;
const isChallenge = (s: number | null) => s === 401 || s === 407;

/** `user-agent` -> `User-Agent`: the catalog keeps names lower-cased; RTSP names are case-insensitive (RFC 2326 §4.2 via RFC 2616 §4.2). */
function headerName(lower: string): string {
  return SPELLING[lower] ?? lower.replace(/(^|-)([a-z])/g, (_m, d: string, c: string) => d + c.toUpperCase());
}

function sameAddress(a: string, b: string): boolean {
  const x = parseIp(a);
  const y = parseIp(b);
  if (x && y) return x.bytes.equals(y.bytes);
  return a.trim().toLowerCase() === b.trim().toLowerCase();
}

/** An RTSP/HTTP URL without `user:password@` (credentials come from the config, never from a capture). */
function withoutUserinfo(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@?#]*@/i, '$1');
}

/** Hands out RTP/RTCP port pairs: index k gets `rtpPortBase + 2k` (types.ts FailoverTarget). */
class PortPairs {
  #next = 0;
  constructor(
    readonly base: number,
    readonly vms: string,
  ) {}
  take(): { index: number; rtpPort: number; rtcpPort: number } {
    const index = this.#next++;
    const rtpPort = this.base + 2 * index;
    if (rtpPort + 1 > 65535) throw new CamtapError('CAMTAP_ERR_FAILOVER', { vms: this.vms, reason: `the plan needs more than ${index} RTP port pairs from ${this.base}: ports run past 65535 (lower failover.rtpPortBase)` });
    return { index, rtpPort, rtcpPort: rtpPort + 1 };
  }
}

/**
 * The failover plan for `inp.vms`.
 * @throws CamtapError CAMTAP_ERR_FAILOVER when `target.host` is not an address camtap
 *   owns, the port base is unusable, or `only` names a camera that is not one of the VMS's;
 *   CAMTAP_ERR_NOT_FOUND when `only` names a camera not in the inventory.
 */
export async function buildFailoverPlan(inp: PlanInputs): Promise<FailoverPlan> {
  const { vms, target } = inp;
  if (!inp.ownAddresses.some((a) => sameAddress(a, target.host))) {
    throw new CamtapError('CAMTAP_ERR_FAILOVER', {
      vms: vms.name,
      reason: `target address ${target.host} is not one of this host's addresses (${inp.ownAddresses.join(', ') || 'none'}); camtap only points cameras at an address it owns`,
    });
  }
  const base = target.rtpPortBase;
  if (!Number.isInteger(base) || base % 2 !== 0 || base < 1024 || base > 65534) {
    throw new CamtapError('CAMTAP_ERR_FAILOVER', { vms: vms.name, reason: `RTP port base ${base} must be an even port from 1024 to 65534 (RTP even, RTCP the next, RFC 3550 §11)` });
  }
  let cams = inp.cameras.filter((c) => c.vms.includes(vms.name));
  if (inp.only) {
    const picked: CameraRecord[] = [];
    for (const name of inp.only) {
      const c = cams.find((k) => k.name === name) ?? cams.find((k) => sameAddress(k.address, name));
      if (!c) {
        const known = inp.cameras.some((k) => k.name === name || sameAddress(k.address, name));
        if (!known) throw new CamtapError('CAMTAP_ERR_NOT_FOUND', { what: 'camera', id: name });
        throw new CamtapError('CAMTAP_ERR_FAILOVER', { vms: vms.name, reason: `camera ${name} is not a camera of VMS ${vms.name}` });
      }
      if (!picked.includes(c)) picked.push(c);
    }
    cams = cams.filter((c) => picked.includes(c));
  }
  const ports = new PortPairs(base, vms.name);
  const plans: CameraPlan[] = [];
  for (const camera of cams) plans.push(await planCamera(inp, camera, ports));
  return { vms: vms.name, vmsAddress: vms.address, target: { host: target.host, rtpPortBase: base }, createdAt: new Date().toISOString(), cameras: plans };
}

// ------------------------------------------------------------------- one camera

async function planCamera(inp: PlanInputs, camera: CameraRecord, ports: PortPairs): Promise<CameraPlan> {
  const rtsp = rtspEvidence(inp, camera);
  const http = await httpEvidence(inp, camera);
  const plan: CameraPlan = { camera: camera.name, address: camera.address, strategy: 'none', from: { sessions: [], transactions: [] }, steps: [], restore: [] };
  const why: string[] = [];
  if (rtsp.sessions.length > 0 && http.requests.length > 0) {
    const push = pushesToVms(inp, camera, rtsp.sessions, http.requests);
    if (push === null) {
      why.push(`HTTP requests carrying the VMS address (${http.requests.map((r) => r.tx.id).join(', ')}) not replayed: the VMS pulls this camera's stream over RTSP`);
      rtspPlan(inp, rtsp.sessions, ports, plan);
    } else {
      why.push(`RTSP sessions ${rtsp.sessions.map((s) => s.id).join(', ')} not replayed: ${push}`);
      httpPlan(inp, camera, http.requests, ports, plan);
    }
  } else if (rtsp.sessions.length > 0) {
    rtspPlan(inp, rtsp.sessions, ports, plan);
  } else {
    why.push(`no RTSP replay: ${rtsp.why}`);
    if (http.requests.length > 0) httpPlan(inp, camera, http.requests, ports, plan);
    else {
      why.push(`no HTTP replay: ${http.why}`);
      const notApi = apiPlan(inp, camera, ports, plan);
      if (notApi !== null) why.push(`no camera API: ${notApi}`);
    }
  }
  if (why.length > 0) plan.reason = why.join('; ');
  return plan;
}

// ------------------------------------------------------------------- RTSP

interface RtspEvidence {
  /** The most recent session per URL with a successful PLAY, in PLAY order. */
  sessions: SessionRecord[];
  /** Why there is none. */
  why: string;
}

function playOf(s: SessionRecord): RtspExchange | undefined {
  return s.requests.find((r) => r.method === 'PLAY' && is2xx(r.status));
}

function isVmsToCamera(inp: PlanInputs, camera: CameraRecord, client: string, server: string): boolean {
  return sameAddress(hostOf(client), inp.vms.address) && sameAddress(hostOf(server), camera.address);
}

function rtspEvidence(inp: PlanInputs, camera: CameraRecord): RtspEvidence {
  const mine = inp.sessions.filter((s) => isVmsToCamera(inp, camera, s.client, s.server));
  if (mine.length === 0) return { sessions: [], why: `no captured RTSP session from ${inp.vms.address} to ${camera.address}` };
  const played = mine.filter((s) => playOf(s) !== undefined);
  if (played.length === 0) {
    const last = (s: SessionRecord) => {
      const r = s.requests[s.requests.length - 1];
      return r ? `${r.method} ${r.status ?? 'unanswered'}` : 'no requests';
    };
    return { sessions: [], why: `captured RTSP sessions ${mine.map((s) => `${s.id} (ended at ${last(s)})`).join(', ')} never had a successful PLAY` };
  }
  const byUrl = new Map<string, SessionRecord>();
  for (const s of played) {
    const cur = byUrl.get(s.url);
    if (!cur || playOf(s)!.time > playOf(cur)!.time) byUrl.set(s.url, s);
  }
  const sessions = [...byUrl.values()].sort((a, b) => (playOf(a)!.time < playOf(b)!.time ? -1 : 1));
  return { sessions, why: '' };
}

/**
 * The requests of `s` to replay: set-up methods up to the first successful PLAY,
 * answered 2xx, the last of each method+URL; with each, how many attempts of it the
 * camera challenged (401/407) first.
 */
function replayRequests(s: SessionRecord): { kept: Array<{ r: RtspExchange; challenged: number }>; refused: string[]; skipped: string[] } {
  const play = playOf(s)!;
  const upTo = s.requests.slice(0, s.requests.indexOf(play) + 1);
  const refused: string[] = [];
  const skipped: string[] = [];
  const ok: RtspExchange[] = [];
  for (const r of upTo) {
    if (!RTSP_SETUP_METHODS.has(r.method)) skipped.push(r.method);
    else if (is2xx(r.status)) ok.push(r);
    else if (!isChallenge(r.status)) refused.push(`${r.method} ${r.status ?? 'unanswered'}`);
  }
  const kept = ok
    .filter((r, i) => !ok.slice(i + 1).some((x) => x.method === r.method && x.url === r.url))
    .map((r) => ({ r, challenged: upTo.filter((x) => x.method === r.method && x.url === r.url && isChallenge(x.status)).length }));
  return { kept, refused, skipped };
}

function rtspPlan(inp: PlanInputs, sessions: SessionRecord[], ports: PortPairs, plan: CameraPlan): void {
  plan.strategy = 'rtsp-replay';
  const vmsAddr = inp.vms.address;
  const host = inp.target.host;
  for (const s of sessions) {
    const group = s.id;
    plan.from.sessions.push(s.id);
    const { kept, refused, skipped } = replayRequests(s);
    let trackNo = 0;
    for (const { r, challenged } of kept) {
      const headers: Record<string, string> = {};
      const changed: string[] = [];
      const removed: string[] = [];
      for (const [k, v] of Object.entries(r.headers)) {
        if (RTSP_DROP.has(k)) {
          removed.push(headerName(k));
          continue;
        }
        const sub = substituteAddress(v, vmsAddr, host);
        if (sub !== v && k !== 'transport') changed.push(`${headerName(k)}: ${vmsAddr} -> ${host}`);
        headers[headerName(k)] = sub;
      }
      const url = withoutUserinfo(r.url);
      if (url !== r.url) changed.push('user:password removed from the URL');
      const step: RtspStep & { group: string } = { kind: 'rtsp', method: r.method, url, headers, note: '', group };
      const words = [`${r.method} as the VMS sent it in session ${s.id} (${r.time})`];
      if (r.method === 'SETUP') {
        const track = s.tracks.find((t) => t.controlUrl === r.url && is2xx(t.status)) ?? s.tracks.filter((t) => is2xx(t.status))[trackNo] ?? null;
        trackNo++;
        const requested = r.headers['transport'] ?? track?.requestedTransport ?? null;
        const spec = requested ? parseTransport(requested)[0] : undefined;
        const lower: 'udp' | 'tcp' = spec ? spec.lower : track?.lower === 'tcp' ? 'tcp' : 'udp';
        const multicast = spec?.multicast ?? track?.lower === 'udp-mcast';
        const pair = ports.take();
        if (lower === 'tcp') {
          const interleaved = spec?.interleaved ?? track?.interleaved ?? null;
          step.track = { index: pair.index, lower: 'tcp', ...(interleaved ? { interleaved } : {}) };
          headers['Transport'] = rewriteTransport(requested ?? 'RTP/AVP/TCP;unicast', {});
          words.push(`track ${pair.index} over TCP: interleaved ${interleaved ? interleaved.join('-') : '(the camera picks)'} kept (the channels are on camtap's own connection)`);
        } else if (multicast) {
          step.track = { index: pair.index, lower: 'udp' };
          headers['Transport'] = rewriteTransport(requested ?? 'RTP/AVP;multicast', {});
          words.push(`track ${pair.index} multicast: the group is the camera's, camtap joins it`);
        } else {
          step.track = { index: pair.index, lower: 'udp', rtpPort: pair.rtpPort, rtcpPort: pair.rtcpPort };
          const dest = spec?.destination ? host : undefined;
          headers['Transport'] = rewriteTransport(requested ?? 'RTP/AVP;unicast', { clientPorts: [pair.rtpPort, pair.rtcpPort], ...(dest ? { destination: dest } : {}) });
          const was = spec?.clientPorts ? spec.clientPorts.join('-') : '(none)';
          words.push(`track ${pair.index} over UDP: client_port ${was} -> ${pair.rtpPort}-${pair.rtcpPort}`);
          if (spec?.destination) words.push(`destination ${spec.destination} -> ${host}`);
        }
        const droppedParams = spec ? [...spec.params.keys()].filter((k) => k === 'ssrc' || k === 'server_port' || k === 'source') : [];
        if (droppedParams.length > 0) words.push(`Transport ${droppedParams.join(', ')} dropped (the camera's side of the old session)`);
      }
      words.push(...changed);
      if (removed.length > 0) words.push(`captured ${removed.join(', ')} removed (the sender adds its own)`);
      if (challenged > 0) words.push(`the camera challenged ${challenged === 1 ? 'the first attempt' : `${challenged} attempts`} (401): only the authorised one is kept, and the sender answers the camera's new challenge with the camera's credentials`);
      step.note = words.join('; ');
      plan.steps.push(step);
    }
    const first = plan.steps.find((x) => x.group === group);
    if (first) {
      const extra: string[] = [];
      if (refused.length > 0) extra.push(`refused requests left out (${refused.join(', ')})`);
      if (skipped.length > 0) extra.push(`${[...new Set(skipped)].join(', ')} before PLAY left out (not set-up)`);
      if (extra.length > 0) first.note += `; ${extra.join('; ')}`;
    }
    const play = playOf(s)!;
    const ua = s.requests.find((r) => r.headers['user-agent'])?.headers['user-agent'];
    plan.restore.push({
      kind: 'rtsp',
      method: 'TEARDOWN',
      url: withoutUserinfo(play.url),
      headers: ua ? { 'User-Agent': ua } : {},
      note: `ends camtap's session of group ${group} (RFC 2326 §10.7) so the VMS can set its own up again; the sender adds CSeq, the Session the camera gave and Authorization`,
      group,
    });
  }
}

// ------------------------------------------------------------------- HTTP

interface HttpRequestEvidence {
  tx: HttpTransaction;
  req: CapturedHttpRequest;
  /** The body as text, or null when it is not UTF-8. */
  text: string | null;
}

interface HttpEvidence {
  /** The latest request per setting that carries the VMS address, in capture order. */
  requests: HttpRequestEvidence[];
  why: string;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function asText(b: Buffer): string | null {
  try {
    return utf8.decode(b);
  } catch {
    return null;
  }
}

/** Which setting a request sets: method, path, SOAP operation, and the names of its query parameters (so `?a=x` and `?b=y` to one CGI stay two settings). */
function settingKey(tx: HttpTransaction, target: string): string {
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  const names = q < 0 ? [] : target.slice(q + 1).split('&').map((p) => p.split('=')[0]!).sort();
  return `${tx.method} ${path} ${tx.operation ?? ''} ${names.join('&')}`;
}

async function httpEvidence(inp: PlanInputs, camera: CameraRecord): Promise<HttpEvidence> {
  const vmsAddr = inp.vms.address;
  const mine = inp.transactions.filter((tx) => isVmsToCamera(inp, camera, tx.client, tx.server)).sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
  if (mine.length === 0) return { requests: [], why: `no captured HTTP request from ${vmsAddr} to ${camera.address}` };
  const accepted = mine.filter((tx) => is2xx(tx.status));
  const latest = new Map<string, HttpRequestEvidence>();
  const unreadable: string[] = [];
  for (const tx of accepted) {
    const inUrl = containsAddress(tx.url, vmsAddr); // percent-encoded IPv6 included (./substitute.ts)
    const mayHaveBody = 'content-length' in tx.headers || 'transfer-encoding' in tx.headers;
    if (!inUrl && !mayHaveBody) continue;
    let req: CapturedHttpRequest;
    try {
      req = await inp.readRequest(tx);
    } catch (e) {
      unreadable.push(`${tx.id} (${e instanceof Error ? e.message : String(e)})`);
      continue;
    }
    const text = asText(req.body);
    const inBody = text !== null && containsAddress(text, vmsAddr);
    if (!inUrl && !inBody) continue;
    const key = settingKey(tx, req.target);
    latest.delete(key); // re-inserted: Map order follows the latest capture time
    latest.set(key, { tx, req, text });
  }
  const requests = [...latest.values()];
  if (requests.length > 0) return { requests, why: '' };
  const parts = [`${mine.length} captured HTTP request${mine.length > 1 ? 's' : ''} from ${vmsAddr} to ${camera.address}, none accepted (2xx) with ${vmsAddr} in its URL or body`];
  if (unreadable.length > 0) parts.push(`unreadable: ${unreadable.join(', ')}`);
  return { requests: [], why: parts.join('; ') };
}

/**
 * Does the camera push to the VMS (so an HTTP replay, not an RTSP one, takes it over)?
 * A reason when it does, null when the VMS pulls. It pushes when the camera was seen
 * sending RTP to the VMS outside any RTSP session to a port the HTTP requests name, or
 * when every RTSP session had been torn down before the last push setting was made.
 */
function pushesToVms(inp: PlanInputs, camera: CameraRecord, sessions: SessionRecord[], reqs: HttpRequestEvidence[]): string | null {
  const named = new Set<number>();
  for (const r of reqs) for (const p of portRefsOf(r, inp.vms.address)) named.add(p.port);
  const pushed = (inp.streams ?? []).find(
    (s) => s.session === null && s.direction !== 'client->server' && sameAddress(hostOf(s.src), camera.address) && sameAddress(hostOf(s.dst), inp.vms.address) && named.has(Number(s.dst.slice(s.dst.lastIndexOf(':') + 1))),
  );
  if (pushed) return `the camera pushes to the VMS (stream ${pushed.id} to ${pushed.dst} outside any RTSP session, at the port the HTTP requests set)`;
  const lastSetting = reqs.reduce((t, r) => (r.tx.time > t ? r.tx.time : t), '');
  const torn = sessions.every((s) => s.requests.some((r) => r.method === 'TEARDOWN' && is2xx(r.status) && r.time < lastSetting));
  if (torn) return `the VMS tore its RTSP sessions down before it set the camera's push destination (${lastSetting}): the camera pushes to the VMS`;
  return null;
}

function portRefsOf(r: HttpRequestEvidence, vmsAddr: string): PortRef[] {
  return [...findPortRefs(r.req.target, vmsAddr), ...(r.text !== null ? findPortRefs(r.text, vmsAddr) : [])];
}

/**
 * Maps the VMS's media ports named in the camera's requests to camtap's port pairs, and
 * lists the pairs in `plan.receive`. With stream records a named port is a media port
 * when the camera sent RTP to it (or is the port after one: RTCP); without, every port
 * parameter is, and an odd one right after another is that one's RTCP (RFC 3550 §11).
 */
function mediaPorts(inp: PlanInputs, camera: CameraRecord, reqs: HttpRequestEvidence[], ports: PortPairs, plan: CameraPlan): Map<number, number> {
  const vmsAddr = inp.vms.address;
  const refs = reqs.flatMap((r) => portRefsOf(r, vmsAddr));
  const rtp = new Set<number>();
  const rtcp = new Set<number>();
  if (inp.streams) {
    const media = new Set<number>();
    for (const s of inp.streams) {
      if (s.direction === 'client->server' || !sameAddress(hostOf(s.src), camera.address) || !sameAddress(hostOf(s.dst), vmsAddr)) continue;
      media.add(Number(s.dst.slice(s.dst.lastIndexOf(':') + 1)));
    }
    for (const r of refs) {
      if (media.has(r.port)) rtp.add(r.port);
      else if (media.has(r.port - 1)) rtcp.add(r.port);
    }
  } else {
    const named = new Set(refs.filter((r) => r.kind === 'param').map((r) => r.port));
    for (const p of named) (p % 2 === 1 && named.has(p - 1) ? rtcp : rtp).add(p);
  }
  for (const p of rtcp) rtp.add(p - 1);
  const map = new Map<number, number>();
  for (const p of [...rtp].sort((a, b) => a - b)) {
    const pair = ports.take();
    map.set(p, pair.rtpPort);
    map.set(p + 1, pair.rtcpPort);
    plan.receive = [...(plan.receive ?? []), { rtpPort: pair.rtpPort, rtcpPort: pair.rtcpPort }];
  }
  // Only ports the requests name are substituted; the +1 entries only serve those that are RTCP.
  return new Map([...map].filter(([p]) => refs.some((r) => r.port === p)));
}

/** `text` with the VMS's ports and address replaced, and what changed in words. */
function substituteAll(text: string, vmsAddr: string, host: string, map: Map<number, number>): { text: string; words: string[] } {
  const refs = findPortRefs(text, vmsAddr).filter((r) => map.has(r.port));
  const ported = substitutePorts(text, refs, map);
  const words = refs.map((r) => `port ${r.port} -> ${map.get(r.port)}`);
  const addr = substituteAddress(ported, vmsAddr, host);
  if (addr !== ported) words.unshift(`${vmsAddr} -> ${host}`);
  return { text: addr, words };
}

function httpHeaders(req: CapturedHttpRequest, edit: (v: string) => string): { headers: Record<string, string>; dropped: string[] } {
  const connectionNamed = new Set(
    req.headers
      .filter(([k]) => k.toLowerCase() === 'connection')
      .flatMap(([, v]) => v.split(','))
      .map((x) => x.trim().toLowerCase())
      .filter(Boolean),
  );
  const headers: Record<string, string> = {};
  const dropped = new Set<string>();
  for (const [k, v] of req.headers) {
    const l = k.toLowerCase();
    if (HTTP_DROP.has(l) || connectionNamed.has(l)) {
      dropped.add(k);
      continue;
    }
    const name = Object.keys(headers).find((x) => x.toLowerCase() === l) ?? k;
    const val = l === 'host' ? v : edit(v);
    headers[name] = name in headers ? `${headers[name]}, ${val}` : val;
  }
  return { headers, dropped: [...dropped] };
}

function httpUrl(tx: HttpTransaction, target: string): string {
  if (/^https?:\/\//i.test(target)) return withoutUserinfo(target);
  const host = hostOf(tx.server);
  const port = tx.server.slice(tx.server.lastIndexOf(':') + 1);
  const h = host.includes(':') ? `[${host}]` : host;
  return `http://${h}${port === '80' ? '' : `:${port}`}${target.startsWith('/') ? target : `/${target}`}`;
}

function httpPlan(inp: PlanInputs, camera: CameraRecord, reqs: HttpRequestEvidence[], ports: PortPairs, plan: CameraPlan): void {
  plan.strategy = 'http-replay';
  const vmsAddr = inp.vms.address;
  const host = inp.target.host;
  const map = mediaPorts(inp, camera, reqs, ports, plan);
  for (const r of reqs) {
    plan.from.transactions.push(r.tx.id);
    const target = substituteAll(r.req.target, vmsAddr, host, map);
    const body = r.text !== null ? substituteAll(r.text, vmsAddr, host, map) : null;
    const { headers, dropped } = httpHeaders(r.req, (v) => substituteAll(v, vmsAddr, host, new Map()).text);
    const words = [`${r.req.method} ${r.req.target} as the VMS sent it (transaction ${r.tx.id}, ${r.tx.time})`];
    if (target.text !== r.req.target) words.push(`in the URL: ${target.words.join(', ')}`);
    if (body && body.text !== r.text) words.push(`in the body: ${body.words.join(', ')}`);
    if (dropped.length > 0) words.push(`captured ${dropped.join(', ')} removed (the sender answers the camera's challenge afresh and frames the body itself)`);
    const step: HttpStep = {
      kind: 'http',
      method: r.req.method,
      url: httpUrl(r.tx, target.text),
      headers,
      body: body ? body.text : r.req.body.toString('base64'),
      ...(body ? {} : { bodyEncoding: 'base64' as const }),
      note: words.join('; '),
    };
    plan.steps.push(step);
    const orig = httpHeaders(r.req, (v) => v);
    plan.restore.push({
      kind: 'http',
      method: r.req.method,
      url: httpUrl(r.tx, r.req.target),
      headers: orig.headers,
      body: r.text !== null ? r.text : r.req.body.toString('base64'),
      ...(r.text !== null ? {} : { bodyEncoding: 'base64' as const }),
      note: `puts the VMS's setting back: transaction ${r.tx.id} resent unchanged (credentials answered afresh)`,
    });
  }
}

// ------------------------------------------------------------------- camera API

/** A camera-api plan when the profile allows one (filled into `plan`); else the reason it does not, for `none`. */
function apiPlan(inp: PlanInputs, camera: CameraRecord, ports: PortPairs, plan: CameraPlan): string | null {
  const profile = inp.profileOf(camera);
  if (!profile) return 'no camera profile with an API handles this camera';
  const caps = profile.capabilities ?? [];
  const name = profile.meta.name;
  if (caps.includes('redirect-unicast') && profile.redirect) {
    const pair = ports.take();
    const step: ApiStep = { kind: 'api', call: 'redirect', profile: name, target: { host: inp.target.host, port: pair.rtpPort }, note: `profile ${name} has the camera send its default stream to ${inp.target.host}:${pair.rtpPort} (RTCP ${pair.rtcpPort})` };
    plan.strategy = 'camera-api';
    plan.steps.push(step);
    plan.restore.push({ kind: 'api', call: 'restore', profile: name, note: `profile ${name} puts the camera's settings back as they were before the redirect` });
    plan.receive = [{ rtpPort: pair.rtpPort, rtcpPort: pair.rtcpPort }];
    return null;
  }
  if (caps.includes('stream-uri') && profile.streamUri) {
    plan.strategy = 'camera-api';
    plan.steps.push({ kind: 'api', call: 'stream-uri', profile: name, note: `profile ${name} names the camera's stream URI and camtap pulls it itself (RTSP over TCP); nothing on the camera changes` });
    return null;
  }
  return `profile ${name} can neither redirect the camera (redirect-unicast) nor name a stream URI (stream-uri)`;
}

// ------------------------------------------------------------------- printing

const INDENT = '      ';

interface WireState {
  cseq: number;
  setup: boolean;
}

function wireLines(step: PlannedStep, state: Map<string, WireState>, restore: boolean): string[] {
  const auth = "Authorization: <answer to the camera's challenge, if it sends one>";
  if (step.kind === 'api') {
    const t = step.target ? ` -> ${step.target.host}:${step.target.port}${step.target.stream ? ` stream ${step.target.stream}` : ''}` : '';
    return [`${step.profile}.${step.call === 'stream-uri' ? 'streamUri' : step.call}(camera${t})`];
  }
  if (step.kind === 'rtsp') {
    const g = step.group ?? '';
    const st = state.get(g) ?? { cseq: 0, setup: false };
    state.set(g, st);
    st.cseq++;
    const lines = [`${step.method} ${step.url} RTSP/1.0`, restore ? 'CSeq: <next in the session>' : `CSeq: ${st.cseq}`];
    for (const [k, v] of Object.entries(step.headers)) lines.push(`${k}: ${v}`);
    // RFC 2326 §12.37: every request after the first SETUP names the session.
    if (restore || st.setup) lines.push("Session: <the id from the camera's SETUP answer>");
    if (step.method === 'SETUP') st.setup = true;
    lines.push(auth);
    if (step.body) lines.push('', step.body);
    return lines;
  }
  const u = new URL(step.url);
  const body = step.bodyEncoding === 'base64' ? Buffer.from(step.body, 'base64') : Buffer.from(step.body, 'utf8');
  // Host comes from the URL (RFC 9112 §3.2), first, as the sender writes it.
  const lines = [`${step.method} ${u.pathname}${u.search} HTTP/1.1`, `Host: ${u.host}`];
  for (const [k, v] of Object.entries(step.headers)) if (k.toLowerCase() !== 'host') lines.push(`${k}: ${v}`);
  lines.push(auth);
  if (body.length > 0 || step.method === 'POST' || step.method === 'PUT' || step.method === 'PATCH') lines.push(`Content-Length: ${body.length}`);
  if (body.length > 0) lines.push('', step.bodyEncoding === 'base64' ? `<${body.length} bytes, base64: ${step.body}>` : step.body);
  return lines;
}

function stepBlock(steps: PlannedStep[], restore: boolean): string[] {
  const out: string[] = [];
  const state = new Map<string, WireState>();
  steps.forEach((s, i) => {
    out.push(`    ${i + 1}.${s.group ? ` [${s.group}]` : ''} ${s.note}`);
    for (const l of wireLines(s, state, restore)) out.push(l === '' ? '' : INDENT + l);
  });
  return out;
}

/**
 * The plan for humans (`camtap failover plan`, `--dry-run`): per camera its strategy and
 * why, then every take-over and give-back request as it would go on the wire: start
 * line, headers, body. Headers the sender adds are shown as placeholders (`<...>`):
 * CSeq is numbered here as it will be (from 1 per session, RFC 2326 §12.17); the
 * Session and any Authorization only exist once the camera answers.
 */
export function formatPlan(plan: FailoverPlan): string {
  const out: string[] = [];
  out.push(`Failover plan for VMS ${plan.vms} (${plan.vmsAddress}): cameras taken over at ${plan.target.host}, RTP ports from ${plan.target.rtpPortBase}`);
  out.push(`built ${plan.createdAt}; nothing has been sent`);
  if (plan.cameras.length === 0) out.push('', 'no cameras of this VMS are in the inventory');
  for (const c of plan.cameras) {
    out.push('', `camera ${c.camera} (${c.address}): ${c.strategy}`);
    if (c.reason) out.push(`  why: ${c.reason}`);
    const from = [...c.from.sessions.map((s) => `session ${s}`), ...c.from.transactions.map((t) => `transaction ${t}`)];
    if (from.length > 0) out.push(`  from: ${from.join(', ')}`);
    if (c.receive && c.receive.length > 0) out.push(`  camtap receives on: ${c.receive.map((r) => `${plan.target.host}:${r.rtpPort} (RTCP ${r.rtcpPort})`).join(', ')}`);
    if (c.steps.length > 0) out.push('  take over:', ...stepBlock(c.steps, false));
    if (c.restore.length > 0) out.push('  give back:', ...stepBlock(c.restore, true));
    else if (c.strategy === 'camera-api') out.push('  give back: camtap stops pulling; nothing is sent to the camera');
  }
  return out.join('\n') + '\n';
}
