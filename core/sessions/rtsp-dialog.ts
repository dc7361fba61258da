/**
 * Learns RTSP dialogs from the messages of one TCP connection: pairs requests with
 * responses by CSeq, groups them into sessions (a new `Session` id starts a new one),
 * keeps the DESCRIBE SDP and Content-Base, and for every successful SETUP tells the
 * pipeline which ports or interleaved channels now carry RTP/RTCP for which track, so
 * RTP is identified from the dialog before any heuristic (RFC 2326 §10.4, §12.39).
 * Nothing is copied from the packets but the message text; credentials are redacted.
 */
import { createHash } from 'node:crypto';
import type { StoreLocation } from '../contracts/frame.js';
import type { RtspExchange, SessionRecord, RtspTrack } from '../contracts/records.js';
import type { WireMessage } from '../wire/rtsp-message.js';
import { redactHeaders } from '../wire/rtsp-message.js';
import { parseSdp, resolveControl, type Sdp, type SdpMedia } from '../wire/sdp.js';
import { parseTransport } from '../wire/rtsp-transport.js';
import { isoFromParts } from '../capture/rtp-stream.js';
import { hostOf } from './inventory.js';

/** What a successful SETUP announces: where the media of one track will flow. */
export interface SetupAnnouncement {
  dialog: RtspDialog;
  track: RtspTrack;
  media: SdpMedia | null;
  /** Address the client receives on (Transport `destination=` or the RTSP client's address). */
  clientIp: string;
  serverIp: string;
}

export interface RtspDialogHooks {
  onSetup(a: SetupAnnouncement): void;
  /** Resolves a camera or VMS name from an address (config inventory), or returns the address. */
  cameraName(ip: string): string;
  vmsName(ip: string): string;
  /**
   * The camera a request URL names when the server is camtap's inline gateway
   * (`rtsp://camtap/<alias>/...`), so the inventory shows the VMS using that camera; null
   * for any other URL.
   */
  cameraOfUrl?(url: string): string | null;
}

interface Pending {
  msg: WireMessage;
  sec: number;
  nsec: number;
}

const sessionIdOf = (v: string | null) => (v ? v.split(';')[0]!.trim() : null);


/** One session of a connection, as it is being learned. */
export class RtspDialog {
  readonly record: SessionRecord;
  sdp: Sdp | null = null;
  dirty = true;

  constructor(record: SessionRecord) {
    this.record = record;
  }
}

export class RtspConnectionLearner {
  readonly client: string;
  readonly server: string;
  readonly dialogs: RtspDialog[] = [];
  readonly #hooks: RtspDialogHooks;
  readonly #pending: Pending[] = [];
  readonly #tapId: number;
  #current: RtspDialog | null = null;
  /** Messages that did not parse into anything usable (e.g. a response with no request). */
  orphans = 0;

  constructor(client: string, server: string, tapId: number, hooks: RtspDialogHooks) {
    this.client = client;
    this.server = server;
    this.#tapId = tapId;
    this.#hooks = hooks;
  }

  onMessage(msg: WireMessage, sec: number, nsec: number): void {
    if (msg.protocol !== 'RTSP') return;
    if (msg.kind === 'request') {
      // Bounded: a client that never gets answers must not grow memory.
      if (this.#pending.length >= 64) this.#flushUnanswered(this.#pending.shift()!);
      this.#pending.push({ msg, sec, nsec });
      return;
    }
    let i = msg.cseq === null ? 0 : this.#pending.findIndex((p) => p.msg.cseq === msg.cseq);
    if (i < 0 || this.#pending.length === 0) {
      this.orphans++;
      return;
    }
    const [req] = this.#pending.splice(i, 1);
    this.#exchange(req!, msg);
  }

  /** Requests never answered (connection closed, capture ended) still belong to the dialog. */
  finish(): void {
    for (const p of this.#pending.splice(0)) this.#flushUnanswered(p);
  }

  #flushUnanswered(p: Pending): void {
    this.#exchange(p, null);
  }

  #dialogFor(sid: string | null, req: Pending): RtspDialog {
    const cur = this.#current;
    if (cur && !(sid && cur.record.sessionId && sid !== cur.record.sessionId)) return cur;
    const t = isoFromParts(req.sec, req.nsec);
    const id = 'r' + createHash('sha1').update(`${this.client}|${this.server}|${req.sec}.${req.nsec}|${sid ?? ''}`).digest('hex').slice(0, 12);
    const serverIp = hostOf(this.server);
    const clientIp = hostOf(this.client);
    const d = new RtspDialog({
      id,
      sessionId: null,
      timeout: null,
      client: this.client,
      server: this.server,
      url: '',
      contentBase: null,
      sdp: null,
      auth: null,
      userAgent: null,
      tracks: [],
      requests: [],
      camera: this.#hooks.cameraName(serverIp),
      vms: this.#hooks.vmsName(clientIp),
      start: t,
      end: t,
      taps: [this.#tapId],
    });
    this.dialogs.push(d);
    this.#current = d;
    return d;
  }

  #exchange(req: Pending, res: WireMessage | null): void {
    const rq = req.msg;
    const sessionHeader = res?.header('Session') ?? rq.header('Session');
    const sid = sessionIdOf(sessionHeader);
    const d = this.#dialogFor(sid, req);
    const r = d.record;
    d.dirty = true;
    r.end = isoFromParts(req.sec, req.nsec);
    if (sid && !r.sessionId) {
      r.sessionId = sid;
      const mt = /timeout\s*=\s*(\d+)/i.exec(sessionHeader ?? '');
      r.timeout = mt ? Number(mt[1]) : null;
    }
    const method = (rq.method ?? '').toUpperCase();
    const url = rq.url ?? '';
    const status = res?.status ?? null;
    r.userAgent ??= rq.header('User-Agent');
    if (method === 'DESCRIBE' && status === 200) {
      r.url = url;
      const text = res!.body.toString('utf8');
      r.sdp = text;
      d.sdp = parseSdp(text);
      r.contentBase = res!.header('Content-Base') ?? res!.header('Content-Location');
    }
    if (!r.url && (method === 'OPTIONS' || method === 'DESCRIBE')) r.url = url;
    if (status === 401) {
      const ch = res!.header('WWW-Authenticate') ?? '';
      r.auth = /^\s*digest/i.test(ch) ? 'digest' : 'basic';
    }
    const authz = rq.header('Authorization');
    if (authz) r.auth = /^\s*digest/i.test(authz) ? 'digest' : 'basic';
    if (method === 'SETUP') this.#setup(d, rq, res, url);
    if (!r.url && url) r.url = url;
    if (url && this.#hooks.cameraOfUrl) {
      const alias = this.#hooks.cameraOfUrl(url);
      if (alias !== null) r.camera = alias;
    }
    const exchange: RtspExchange = {
      method,
      url,
      cseq: rq.cseq,
      status,
      time: isoFromParts(req.sec, req.nsec),
      requestAt: rq.locations.map(copyLoc),
      responseAt: res ? res.locations.map(copyLoc) : [],
      headers: redactHeaders(rq.headers),
      responseHeaders: res ? redactHeaders(res.headers) : {},
    };
    r.requests.push(exchange);
  }

  #setup(d: RtspDialog, rq: WireMessage, res: WireMessage | null, url: string): void {
    const requested = rq.header('Transport');
    const negotiated = res?.status === 200 ? res.header('Transport') : null;
    const spec = negotiated ? parseTransport(negotiated)[0] ?? null : null;
    const track: RtspTrack = {
      controlUrl: url,
      requestedTransport: requested,
      transport: negotiated,
      lower: spec ? (spec.lower === 'tcp' ? 'tcp' : spec.multicast ? 'udp-mcast' : 'udp') : null,
      clientPorts: spec?.clientPorts ?? null,
      serverPorts: spec?.serverPorts ?? null,
      interleaved: spec?.interleaved ?? null,
      ssrc: spec?.ssrc ?? null,
      status: res?.status ?? null,
    };
    d.record.tracks.push(track);
    if (!spec) return;
    const media = this.#mediaFor(d, url, d.record.tracks.length - 1);
    this.#hooks.onSetup({
      dialog: d,
      track,
      media,
      clientIp: spec.destination && !spec.multicast ? spec.destination : hostOf(this.client),
      serverIp: spec.source ?? hostOf(this.server),
    });
  }

  /** The SDP media section a SETUP URL refers to (RFC 2326 C.1.1 control resolution). */
  #mediaFor(d: RtspDialog, setupUrl: string, index: number): SdpMedia | null {
    const sdp = d.sdp;
    if (!sdp || sdp.media.length === 0) return null;
    const base = d.record.contentBase ?? d.record.url;
    const norm = (u: string) => u.replace(/\/+$/, '');
    for (const m of sdp.media) {
      if (m.control && norm(resolveControl(base, m.control)) === norm(setupUrl)) return m;
    }
    return sdp.media.length === 1 ? sdp.media[0]! : sdp.media[index] ?? null;
  }
}

function copyLoc(l: StoreLocation): StoreLocation {
  return { segment: l.segment, offset: l.offset };
}
