/**
 * The capture pipeline: one pass over every stored packet, no re-parsing.
 *
 *   frame + store location -> decode (link/IP/transport, fragments) -> flow lookup
 *     UDP: RTP/RTCP by the ports RTSP SETUP announced, configured ports, then heuristics
 *     TCP: reassembly -> RTSP/HTTP messages (dialogs, transactions) and interleaved `$`
 *          frames (RTP/RTCP by the channels SETUP announced)
 *   RTP -> per-stream state (extended seq, loss, duplicates, frames, keyframes) -> sparse
 *          per-segment index entries
 *
 * Synchronous per packet; allocation only when a flow, stream or message is new.
 * Malformed input is counted, never thrown.
 */
import type { StoreLocation, TapFrame } from '../contracts/frame.js';
import type { Logger } from '../contracts/logger.js';
import type { CameraRecord, HttpTransaction, SessionRecord, StreamRecord, VmsRecord } from '../contracts/records.js';
import type { Config } from '../config.js';
import type { PluginHost } from '../plugin-host.js';
import { DecodeStatus, PacketDecoder, PacketMeta } from '../wire/packet.js';
import { RtpHeader, parseRtp, looksLikeRtp, looksLikeRtcp } from '../wire/rtp.js';
import { walkRtcp, parseSenderReport, ntpToUnixMs, type RtcpSenderReport } from '../wire/rtcp.js';
import { codecFor, type SdpMedia } from '../wire/sdp.js';
import { inspectPayload } from '../wire/codecs.js';
import { MessageStreamParser, type WireMessage } from '../wire/rtsp-message.js';
import { TcpReassembler } from './tcp-reassembly.js';
import { Flow, FlowTable } from './flow-table.js';
import { RtpStreamState, KEYFRAME } from './rtp-stream.js';
import { SegmentIndexWriter } from '../index/segment-index.js';
import type { LiveChannel, LivePacket } from '../live/channel.js';
import { RtspConnectionLearner, type RtspDialog, type SetupAnnouncement } from '../sessions/rtsp-dialog.js';
import { HttpConnectionLearner } from '../sessions/http-exchange.js';
import { Inventory, hostOf } from '../sessions/inventory.js';
import { looksLikeRtsp } from '../../camera-profiles/generic-rtsp/index.js';
import type { TrafficObserver } from '../failover/traffic-watch.js';

const TCP_FIN = 0x01;
const TCP_SYN = 0x02;
const TCP_RST = 0x04;
const TCP_ACK = 0x10;

/** What SETUP said one client port or interleaved channel carries. */
interface MediaRule {
  kind: 'rtp' | 'rtcp';
  dialog: RtspDialog;
  media: SdpMedia | null;
}

/** Per-flow RTP/RTCP state (UDP flow, or one interleaved channel of a TCP connection). */
interface MediaFlowState {
  transport: 'udp' | 'tcp';
  src: string;
  dst: string;
  srcIp: string;
  channel: number | undefined;
  direction: StreamRecord['direction'];
  rule: MediaRule | null;
  kind: 'rtp' | 'rtcp';
  streams: Map<number, RtpStreamState>;
  last: RtpStreamState | null;
  malformed: number;
}

interface ConnSide {
  reasm: TcpReassembler;
  parser: MessageStreamParser;
  /** This side sends requests (the RTSP/HTTP client). */
  isClient: boolean;
  src: string;
  dst: string;
  srcIp: string;
  dstIp: string;
  /** This side sent FIN or RST: its later segments are no sign of life (traffic watch). */
  closed: boolean;
}

interface TcpConn {
  kind: 'rtsp' | 'http' | 'other' | 'unknown';
  sides: [ConnSide | null, ConnSide | null];
  /** Endpoint string of the side that opened the connection / sends requests. */
  client: string | null;
  rtsp: RtspConnectionLearner | null;
  http: HttpConnectionLearner | null;
  channels: Map<number, MediaFlowState>;
  channelRules: Map<number, MediaRule>;
  tapId: number;
}

interface TcpFlowState {
  conn: TcpConn;
  dir: 0 | 1;
}

const EMPTY = Buffer.alloc(0);

export interface PipelineCounters {
  packets: number;
  bytes: number;
  notIp: number;
  truncated: number;
  badHeader: number;
  unsupportedLink: number;
  rtp: number;
  rtcp: number;
  rtpMalformed: number;
  rtcpMalformed: number;
  rtpDuplicates: number;
  interleaved: number;
  rtspMessages: number;
  httpMessages: number;
  messageErrors: number;
  tcpGaps: number;
  other: number;
}

export interface PipelineDeps {
  log: Logger;
  config: Pick<Config, 'classify' | 'cameras' | 'vms' | 'index'>;
  plugins?: PluginHost | null;
  /** Folder the per-segment index sidecars are written to. */
  indexDir: string;
  /** Tap names by id, for `taps` in records. */
  tapName?: (id: number) => string;
  /** Told of each VMS sign of life (RTSP request, RTCP RR, ACK on its RTSP connection): failover's traffic watch. */
  trafficWatch?: TrafficObserver | null;
}

export interface PipelineSnapshot {
  streams: StreamRecord[];
  sessions: SessionRecord[];
  transactions: HttpTransaction[];
  cameras: CameraRecord[];
  vms: VmsRecord[];
}

export class CapturePipeline {
  readonly counters: PipelineCounters = {
    packets: 0, bytes: 0, notIp: 0, truncated: 0, badHeader: 0, unsupportedLink: 0, rtp: 0, rtcp: 0, rtpMalformed: 0,
    rtcpMalformed: 0, rtpDuplicates: 0, interleaved: 0, rtspMessages: 0, httpMessages: 0, messageErrors: 0, tcpGaps: 0, other: 0,
  };
  readonly #deps: PipelineDeps;
  #traffic: TrafficObserver | null = null;
  readonly #decoder = new PacketDecoder();
  readonly #meta = new PacketMeta();
  readonly #rtp = new RtpHeader();
  readonly #sr: RtcpSenderReport = { ssrc: 0, ntpSec: 0, ntpFrac: 0, rtpTs: 0, packetCount: 0, octetCount: 0 };
  readonly #flows = new FlowTable();
  readonly #livePacket: LivePacket = { rtp: EMPTY, tsNs: 0n, keyframe: false };
  readonly #conns = new Map<string, TcpConn>();
  readonly #rules = new Map<string, MediaRule>();
  #rulesEpoch = 0;
  #streams: RtpStreamState[] = [];
  /** Index-writer keys are never reused, even after a stream is evicted from memory. */
  #nextStreamKey = 0;
  readonly #streamsById = new Map<string, RtpStreamState>();
  readonly #bySsrc = new Map<number, RtpStreamState[]>();
  readonly #restored = new Map<string, StreamRecord>();
  #seedCameras: CameraRecord[] = [];
  #seedVms: VmsRecord[] = [];
  #dialogs: RtspDialog[] = [];
  /** Dialogs of connections that ended: dropped from memory once persisted. */
  readonly #finishedDialogs = new WeakSet<RtspDialog>();
  readonly #http: HttpConnectionLearner[] = [];
  readonly #writers = new Map<number, SegmentIndexWriter>();
  #lastWriterSeg = -1;
  #lastWriter: SegmentIndexWriter | null = null;
  readonly #rtspPorts: Set<number>;
  readonly #httpPorts: Set<number>;
  readonly #rtpPorts: Set<number>;
  readonly #cameraByAddr = new Map<string, string>();
  readonly #vmsByAddr = new Map<string, string>();
  // Current packet (valid during process()).
  #sec = 0;
  #nsec = 0;
  #tap = 0;
  #sweepAt = 0;

  constructor(deps: PipelineDeps) {
    this.#deps = deps;
    this.#traffic = deps.trafficWatch ?? null;
    const c = deps.config.classify;
    this.#rtspPorts = new Set(c.rtspPorts);
    this.#httpPorts = new Set(c.httpPorts);
    this.#rtpPorts = new Set(c.rtpPorts);
    for (const cam of deps.config.cameras) this.#cameraByAddr.set(cam.address, cam.name);
    for (const v of deps.config.vms) this.#vmsByAddr.set(v.address, v.name);
  }

  /** The proxied camera (config `cameras[].url`) an RTSP URL names as `/<name>/...` on camtap's gateway; null otherwise. */
  #proxiedCamera(url: string): string | null {
    const m = /^rtsps?:\/\/[^/]+\/([^/?]+)/i.exec(url);
    if (!m) return null;
    let name: string;
    try {
      name = decodeURIComponent(m[1]!);
    } catch {
      return null;
    }
    return this.#deps.config.cameras.some((c) => c.url && c.name === name) ? name : null;
  }

  cameraName(ip: string): string {
    return this.#cameraByAddr.get(ip) ?? ip;
  }

  vmsName(ip: string): string {
    return this.#vmsByAddr.get(ip) ?? ip;
  }

  /** Continue counting streams seen by earlier runs (their records from the catalog). */
  restoreStreams(recs: StreamRecord[]): void {
    for (const r of recs) this.#restored.set(r.id, r);
  }

  /** Merge the inventory with what earlier runs stored. */
  restoreInventory(cameras: CameraRecord[], vms: VmsRecord[]): void {
    this.#seedCameras = cameras;
    this.#seedVms = vms;
  }

  /** Processes one stored packet. Never throws for bad input. */
  process(frame: TapFrame, loc: StoreLocation): void {
    const c = this.counters;
    c.packets++;
    c.bytes += frame.capLen;
    this.#sec = frame.tsSec;
    this.#nsec = frame.tsNsec;
    this.#tap = frame.tapId;
    const m = this.#meta;
    const st = this.#decoder.decode(frame, m);
    if (st !== DecodeStatus.OK) {
      if (st === DecodeStatus.NOT_IP) c.notIp++;
      else if (st === DecodeStatus.TRUNCATED) c.truncated++;
      else if (st === DecodeStatus.UNSUPPORTED_LINK) c.unsupportedLink++;
      else if (st === DecodeStatus.BAD_HEADER) c.badHeader++;
      return;
    }
    if (m.protocol === 17) this.#udp(m, loc);
    else if (m.protocol === 6) this.#tcp(m, loc);
    else c.other++;
    if (frame.tsSec >= this.#sweepAt) this.#sweep(frame.tsSec);
  }

  // ------------------------------------------------------------------ UDP
  #udp(m: PacketMeta, loc: StoreLocation): void {
    let f = this.#flows.lookup(m);
    if (f === null) f = this.#flows.insert(m);
    f.packets++;
    f.lastSec = this.#sec;
    if (!f.settled && f.epoch !== this.#rulesEpoch) this.#classifyUdp(f, m);
    if (f.kind === 'rtp') this.#rtpPacket(f.state as MediaFlowState, m.buf, m.payloadOff, m.payloadLen, loc);
    else if (f.kind === 'rtcp') this.#rtcpPacket(m.buf, m.payloadOff, m.payloadLen, f.srcIp);
    else this.counters.other++;
  }

  #classifyUdp(f: Flow, m: PacketMeta): void {
    f.epoch = this.#rulesEpoch;
    // RTSP SETUP announced the client's ports: packets to them come from the camera,
    // packets from them go to the camera (ffmpeg's NAT punch, RTCP receiver reports).
    let rule = this.#rules.get(`${f.dstIp}|${f.dport}`);
    let direction: StreamRecord['direction'] = 'server->client';
    if (!rule) {
      rule = this.#rules.get(`${f.srcIp}|${f.sport}`);
      direction = 'client->server';
    }
    if (rule) {
      f.kind = rule.kind;
      f.settled = true;
      f.state = this.#mediaState('udp', f.src, f.dst, f.srcIp, undefined, direction, rule);
      return;
    }
    const buf = m.buf, off = m.payloadOff, len = m.payloadLen;
    const configured = this.#rtpPorts.has(f.dport) || this.#rtpPorts.has(f.sport) || this.#rtpPorts.has(f.dport - 1) || this.#rtpPorts.has(f.sport - 1);
    const heuristic = this.#deps.config.classify.rtpHeuristics && f.sport >= 1024 && f.dport >= 1024;
    if ((configured || heuristic) && looksLikeRtcp(buf, off, len)) f.kind = 'rtcp';
    else if ((configured || heuristic) && looksLikeRtp(buf, off, len)) f.kind = 'rtp';
    else f.kind = 'other';
    if (configured) f.settled = true;
    if (f.kind === 'rtp' && !(f.state && (f.state as MediaFlowState).streams)) {
      f.state = this.#mediaState('udp', f.src, f.dst, f.srcIp, undefined, 'unknown', null);
    }
  }

  #mediaState(transport: 'udp' | 'tcp', src: string, dst: string, srcIp: string, channel: number | undefined, direction: StreamRecord['direction'], rule: MediaRule | null, kind: 'rtp' | 'rtcp' = rule?.kind ?? 'rtp'): MediaFlowState {
    return { transport, src, dst, srcIp, channel, direction, rule, kind, streams: new Map(), last: null, malformed: 0 };
  }

  // ------------------------------------------------------------------ RTP / RTCP
  #rtpPacket(ms: MediaFlowState, buf: Buffer, off: number, len: number, loc: StoreLocation): void {
    const h = this.#rtp;
    if (!parseRtp(buf, off, len, h)) {
      this.counters.rtpMalformed++;
      ms.malformed++;
      if (ms.last) ms.last.malformed++;
      return;
    }
    this.counters.rtp++;
    let s = ms.last;
    if (s === null || s.ssrc !== h.ssrc || s.evicted) {
      s = ms.streams.get(h.ssrc) ?? null;
      if (s === null || s.evicted) s = this.#newStream(ms, h.ssrc, h.payloadType);
      ms.last = s;
    }
    const flags = s.codec === null ? 0 : inspectPayload(s.codec, buf, h.payloadOff, h.payloadLen);
    const ext = s.update(h.seq, h.timestamp, h.marker, h.payloadType, h.payloadLen, flags, this.#sec, this.#nsec, this.#tap);
    if (ext < 0) {
      this.counters.rtpDuplicates++;
      return;
    }
    const live = s.live;
    if (live !== null) this.#publishLive(live, buf, off, len, flags);
    let w = this.#lastWriter;
    if (loc.segment !== this.#lastWriterSeg || w === null) {
      w = this.#writers.get(loc.segment) ?? null;
      if (w === null) {
        w = new SegmentIndexWriter(loc.segment, { every: this.#deps.config.index.every });
        this.#writers.set(loc.segment, w);
      }
      this.#lastWriter = w;
      this.#lastWriterSeg = loc.segment;
    }
    if (s.indexSeg !== loc.segment) {
      w.registerStream(s.key, s.id);
      s.indexSeg = loc.segment;
    }
    w.add(s.key, this.#sec, this.#nsec, ext, loc.offset, (flags & KEYFRAME) !== 0);
  }

  /** One new packet of a watched stream to its live feed (allocates only while watched). */
  #publishLive(live: LiveChannel, buf: Buffer, off: number, len: number, flags: number): void {
    const p = this.#livePacket;
    p.rtp = buf.subarray(off, off + len);
    p.tsNs = BigInt(this.#sec) * 1_000_000_000n + BigInt(this.#nsec);
    p.keyframe = (flags & KEYFRAME) !== 0;
    live.publish(p);
    p.rtp = EMPTY;
  }

  #newStream(ms: MediaFlowState, ssrc: number, pt: number): RtpStreamState {
    const rule = ms.rule;
    const dialog = rule?.dialog ?? null;
    const camera = dialog ? dialog.record.camera : this.cameraName(ms.direction === 'client->server' ? hostOf(ms.dst) : ms.srcIp);
    const s = new RtpStreamState(this.#nextStreamKey++, { transport: ms.transport, src: ms.src, dst: ms.dst, channel: ms.channel, ssrc }, camera);
    s.direction = ms.direction;
    if (dialog) {
      s.session = dialog.record.sessionId;
      s.url = dialog.record.url || null;
    }
    // Packets a client sends toward the camera's media port (ffmpeg's NAT punch, RFC 3550
    // receiver traffic) carry no camera media: no codec is inferred for them.
    const cf = ms.direction === 'client->server' ? null : codecFor(rule?.media ?? null, pt);
    if (cf) {
      s.codec = cf.codec;
      s.clockRate = cf.clockRate;
    }
    const prev = this.#restored.get(s.id);
    if (prev) s.restore(prev);
    this.#streams.push(s);
    this.#streamsById.set(s.id, s);
    const list = this.#bySsrc.get(ssrc);
    if (list) list.push(s);
    else this.#bySsrc.set(ssrc, [s]);
    ms.streams.set(ssrc, s);
    return s;
  }

  #rtcpPacket(buf: Buffer, off: number, len: number, srcIp: string): void {
    this.counters.rtcp++;
    const sr = this.#sr;
    const tw = this.#traffic;
    const ok = walkRtcp(buf, off, len, (pt, _count, o, l) => {
      if (pt === 201 && tw !== null) tw.observe(srcIp, 'rtcp-rr', this.#tsMs()); // RR, RFC 3550 §6.4.2
      if (pt !== 200 || !parseSenderReport(buf, o, l, sr)) return;
      const list = this.#bySsrc.get(sr.ssrc);
      if (!list) return;
      for (const s of list) {
        if (s.direction === 'client->server') continue;
        s.srNtpMs = ntpToUnixMs(sr.ntpSec, sr.ntpFrac);
        s.srRtpTs = sr.rtpTs;
        s.dirty = true;
      }
    });
    if (!ok) this.counters.rtcpMalformed++;
  }

  // ------------------------------------------------------------------ TCP
  #tcp(m: PacketMeta, loc: StoreLocation): void {
    let f = this.#flows.lookup(m);
    if (f === null) f = this.#newTcpFlow(m);
    f.packets++;
    f.lastSec = this.#sec;
    const fs = f.state as TcpFlowState;
    const conn = fs.conn;
    if (conn.kind === 'unknown' && m.payloadLen > 0) this.#classifyConn(conn, f, m);
    const kind = conn.kind as TcpConn['kind'];
    if (kind === 'other') return;
    // An unclassified connection keeps only its SYNs (they fix the ISN); mid-stream ACKs wait.
    if (kind === 'unknown' && !(m.tcpFlags & TCP_SYN)) return;
    const side = this.#side(conn, fs.dir, f);
    if (this.#traffic !== null && kind === 'rtsp' && side.isClient) this.#tcpSign(m, side);
    if (kind !== 'unknown' && conn.rtsp === null && conn.http === null) this.#learners(conn, f);
    side.reasm.push(m.tcpSeq, m.tcpFlags, m.buf, m.payloadOff, m.payloadLen, loc);
  }

  #newTcpFlow(m: PacketMeta): Flow {
    const f = this.#flows.insert(m);
    const a = f.src, b = f.dst;
    const key = a < b ? `${a}|${b}` : `${b}|${a}`;
    let conn = this.#conns.get(key);
    let dir: 0 | 1 = 0;
    if (!conn) {
      conn = { kind: 'unknown', sides: [null, null], client: null, rtsp: null, http: null, channels: new Map(), channelRules: new Map(), tapId: this.#tap };
      this.#conns.set(key, conn);
      if (this.#rtspPorts.has(m.dport) || this.#rtspPorts.has(m.sport)) conn.kind = 'rtsp';
      else if (this.#httpPorts.has(m.dport) || this.#httpPorts.has(m.sport)) conn.kind = 'http';
    } else dir = conn.sides[0] ? 1 : 0;
    // Who is the client: the SYN sender, else the side talking to the well-known port.
    if (conn.client === null) {
      if ((m.tcpFlags & (TCP_SYN | TCP_ACK)) === TCP_SYN) conn.client = f.src;
      else if (this.#rtspPorts.has(m.dport) || this.#httpPorts.has(m.dport)) conn.client = f.src;
      else if (this.#rtspPorts.has(m.sport) || this.#httpPorts.has(m.sport)) conn.client = f.dst;
    }
    f.state = { conn, dir } satisfies TcpFlowState;
    f.kind = conn.kind === 'unknown' ? 'unknown' : conn.kind;
    return f;
  }

  #classifyConn(conn: TcpConn, f: Flow, m: PacketMeta): void {
    const payload = m.buf.subarray(m.payloadOff, m.payloadOff + m.payloadLen);
    const byProfile = this.#deps.plugins?.matchFlow({ transport: 'tcp', src: f.srcIp, sport: f.sport, dst: f.dstIp, dport: f.dport }, payload) ?? null;
    if (byProfile === 'rtsp' || looksLikeRtsp(payload)) conn.kind = 'rtsp';
    else if (byProfile === 'http' || byProfile === 'onvif' || /^(?:GET|POST|PUT|DELETE|HEAD|PATCH|OPTIONS) \S+ HTTP\/1\.[01]\r?\n|^HTTP\/1\.[01] \d{3} /.test(payload.toString('latin1', 0, Math.min(64, payload.length)))) conn.kind = 'http';
    else conn.kind = 'other';
    if (conn.client === null && conn.kind !== 'other') {
      const first = payload.toString('latin1', 0, Math.min(12, payload.length));
      conn.client = /^(?:RTSP|HTTP)\//.test(first) ? f.dst : f.src;
    }
  }

  #side(conn: TcpConn, dir: 0 | 1, f: Flow): ConnSide {
    let side = conn.sides[dir];
    if (side) return side;
    if (conn.client === null) conn.client = f.src;
    const isClient = conn.client === f.src;
    const parser = new MessageStreamParser({
      onMessage: (msg: WireMessage) => {
        if (this.#traffic !== null && msg.kind === 'request' && msg.protocol === 'RTSP') {
          // A TEARDOWN announces the close that follows: that one is orderly, not a VMS gone.
          this.#traffic.observe(side!.srcIp, msg.method === 'TEARDOWN' ? 'teardown' : 'rtsp', this.#tsMs());
        }
        this.#onMessage(conn, msg);
      },
      onInterleaved: (channel: number, payload: Buffer, loc: StoreLocation | null) => this.#onInterleaved(conn, side!, channel, payload, loc),
      onError: () => {
        this.counters.messageErrors++;
      },
    });
    const reasm = new TcpReassembler({
      onData: (data: Buffer, loc: StoreLocation | null) => parser.push(data, loc),
      onGap: (bytes: number) => {
        this.counters.tcpGaps++;
        // The parser skips the lost bytes inside a frame or body and stays in step.
        parser.gap(bytes);
      },
    });
    side = { reasm, parser, isClient, src: f.src, dst: f.dst, srcIp: f.srcIp, dstIp: f.dstIp, closed: false };
    conn.sides[dir] = side;
    return side;
  }

  /** Creates the dialog learner once the connection's protocol is known. */
  #learners(conn: TcpConn, f: Flow): void {
    if (conn.client === null) conn.client = f.src;
    const isClient = conn.client === f.src;
    const client = isClient ? f.src : f.dst;
    const server = isClient ? f.dst : f.src;
    const clientIp = isClient ? f.srcIp : f.dstIp;
    const serverIp = isClient ? f.dstIp : f.srcIp;
    if (conn.kind === 'rtsp') {
      conn.rtsp = new RtspConnectionLearner(client, server, conn.tapId, {
        onSetup: (a) => this.#onSetup(conn, a),
        cameraName: (ip) => this.cameraName(ip),
        vmsName: (ip) => this.vmsName(ip),
        cameraOfUrl: (url) => this.#proxiedCamera(url),
      });
    } else if (conn.kind === 'http') {
      conn.http = new HttpConnectionLearner(client, server, this.cameraName(serverIp), this.vmsName(clientIp));
      this.#http.push(conn.http);
    }
  }

  #onMessage(conn: TcpConn, msg: WireMessage): void {
    if (msg.protocol === 'RTSP') {
      this.counters.rtspMessages++;
      if (conn.rtsp) {
        const before = conn.rtsp.dialogs.length;
        conn.rtsp.onMessage(msg, this.#sec, this.#nsec);
        for (let i = before; i < conn.rtsp.dialogs.length; i++) this.#dialogs.push(conn.rtsp.dialogs[i]!);
      }
    } else {
      this.counters.httpMessages++;
      conn.http?.onMessage(msg, this.#sec, this.#nsec);
    }
  }

  #onSetup(conn: TcpConn, a: SetupAnnouncement): void {
    const t = a.track;
    if (t.interleaved) {
      conn.channelRules.set(t.interleaved[0], { kind: 'rtp', dialog: a.dialog, media: a.media });
      conn.channelRules.set(t.interleaved[1], { kind: 'rtcp', dialog: a.dialog, media: a.media });
      // Channels already seen before the SETUP answer was parsed are re-bound.
      conn.channels.delete(t.interleaved[0]);
      conn.channels.delete(t.interleaved[1]);
    }
    if (t.clientPorts) {
      this.#rules.set(`${a.clientIp}|${t.clientPorts[0]}`, { kind: 'rtp', dialog: a.dialog, media: a.media });
      this.#rules.set(`${a.clientIp}|${t.clientPorts[1]}`, { kind: 'rtcp', dialog: a.dialog, media: a.media });
      this.#rulesEpoch++;
    }
  }

  #onInterleaved(conn: TcpConn, side: ConnSide, channel: number, payload: Buffer, loc: StoreLocation | null): void {
    this.counters.interleaved++;
    let ms = conn.channels.get(channel * 2 + (side.isClient ? 1 : 0));
    if (!ms) {
      const rule = conn.channelRules.get(channel) ?? null;
      const direction: StreamRecord['direction'] = side.isClient ? 'client->server' : 'server->client';
      const kind = rule ? rule.kind : channel % 2 === 0 && looksLikeRtp(payload, 0, payload.length) ? 'rtp' : 'rtcp';
      ms = this.#mediaState('tcp', side.src, side.dst, side.srcIp, channel, direction, rule, kind);
      conn.channels.set(channel * 2 + (side.isClient ? 1 : 0), ms);
    }
    if (ms.kind === 'rtp') this.#rtpPacket(ms, payload, 0, payload.length, loc ?? { segment: -1, offset: -1 });
    else this.#rtcpPacket(payload, 0, payload.length, side.srcIp);
  }

  /** Capture time of the current packet in ms (fractional). */
  #tsMs(): number {
    return this.#sec * 1000 + this.#nsec / 1e6;
  }

  /**
   * A segment the RTSP client (the VMS) sent on its connection: a sign it is alive unless
   * it closes (FIN, RST: nor is anything after them) or advertises a zero window
   * (RFC 9293 §3.8.6: its application stopped reading, the kernel answers alone).
   */
  #tcpSign(m: PacketMeta, side: ConnSide): void {
    if (m.tcpFlags & TCP_SYN) side.closed = false; // the 4-tuple opened again
    else if (side.closed) return;
    if (m.tcpFlags & (TCP_FIN | TCP_RST)) {
      side.closed = true;
      // The VMS's end of its RTSP connection closed: with no TEARDOWN before it, its process (or host) is gone.
      this.#traffic!.observe(side.srcIp, 'close', this.#tsMs());
      return;
    }
    if (m.l4Off + 16 <= m.buf.length && m.buf.readUInt16BE(m.l4Off + 14) === 0) return;
    this.#traffic!.observe(side.srcIp, 'tcp', this.#tsMs());
  }

  /** Sets (or clears) the traffic watch after construction. */
  setTrafficWatch(w: TrafficObserver | null): void {
    this.#traffic = w;
  }

  // ------------------------------------------------------------------ housekeeping
  #sweep(nowSec: number): void {
    this.#sweepAt = nowSec + 60;
    this.#evict(nowSec);
    this.#flows.sweep(nowSec, (f) => {
      if (f.protocol !== 6) return;
      const fs = f.state as TcpFlowState;
      const key = f.src < f.dst ? `${f.src}|${f.dst}` : `${f.dst}|${f.src}`;
      const conn = this.#conns.get(key);
      if (conn === fs.conn) {
        this.#finishConn(conn);
        this.#conns.delete(key);
      }
    });
  }

  #finishConn(conn: TcpConn): void {
    if (conn.rtsp) for (const d of conn.rtsp.dialogs) this.#finishedDialogs.add(d);
    for (const s of conn.sides) {
      if (!s) continue;
      s.reasm.flush();
      s.parser.end(); // delivers an HTTP body delimited by the connection's close
    }
    conn.rtsp?.finish();
    conn.http?.finish();
  }

  /**
   * A long live capture must not grow memory with every stream and dialog it ever saw:
   * what is idle (streams) or finished (dialogs) and already persisted leaves memory. The
   * inventory keeps it (the snapshot's inventory becomes the seed), and a stream that
   * resumes continues from its record, like one resumed by a later import.
   */
  #evict(nowSec: number): void {
    const idle = this.#flows.idleSec;
    const gone = this.#streams.filter((s) => !s.dirty && nowSec - s.lastSec > idle);
    if (gone.length) {
      const noTaps = () => [] as number[];
      const inv = this.#inventory();
      this.#seedCameras = inv.cameras;
      this.#seedVms = inv.vms;
      const set = new Set(gone);
      this.#streams = this.#streams.filter((s) => !set.has(s));
      for (const s of gone) {
        const r = s.toRecord(noTaps);
        this.#restored.set(s.id, r);
        this.#streamsById.delete(s.id);
        const list = this.#bySsrc.get(s.ssrc)?.filter((x) => x !== s) ?? [];
        if (list.length) this.#bySsrc.set(s.ssrc, list);
        else this.#bySsrc.delete(s.ssrc);
        s.evicted = true;
      }
    }
    if (this.#dialogs.some((d) => !d.dirty && this.#finishedDialogs.has(d))) {
      const inv = this.#inventory();
      this.#seedCameras = inv.cameras;
      this.#seedVms = inv.vms;
      this.#dialogs = this.#dialogs.filter((d) => d.dirty || !this.#finishedDialogs.has(d));
    }
  }

  /** The streams in memory now (the live ones among them): the state objects themselves, for live access. */
  activeStreams(): readonly RtpStreamState[] {
    return this.#streams;
  }

  /** The RTSP dialogs in memory now (their SDPs), without touching what the checkpoint persists. */
  activeSessions(): SessionRecord[] {
    return this.#dialogs.map((d) => d.record);
  }

  /** Streams and dialogs held in memory (for status and tests). */
  get memory(): { streams: number; dialogs: number; flows: number } {
    return { streams: this.#streams.length, dialogs: this.#dialogs.length, flows: this.#flows.size };
  }

  /** End of input (import done, tap closed): flush reassembly and pending requests. */
  finish(): void {
    for (const conn of this.#conns.values()) this.#finishConn(conn);
  }

  /**
   * The index writer of a segment is done: write its sidecar into the index folder.
   * Returns the stream ids present in it.
   */
  sealSegment(segment: number): string[] {
    const w = this.#writers.get(segment);
    if (!w) return [];
    w.writeSync(this.#deps.indexDir);
    this.#writers.delete(segment);
    if (this.#lastWriterSeg === segment) {
      this.#lastWriter = null;
      this.#lastWriterSeg = -1;
    }
    return w.summary().streams.map((x) => x.streamId);
  }

  /** Segments that have index entries not yet written. */
  openSegments(): number[] {
    return [...this.#writers.keys()];
  }


  /** Records of everything learned; `onlyDirty` returns what changed since the last call. */
  snapshot(onlyDirty = false): PipelineSnapshot {
    const tapIds = (mask: number) => {
      const r: number[] = [];
      for (let i = 0; i < 32; i++) if (mask & (1 << i)) r.push(i);
      return r;
    };
    const streams: StreamRecord[] = [];
    for (const s of this.#streams) {
      // Session id and URL may be learned after the stream started (SETUP reply parsed late).
      if (onlyDirty && !s.dirty) continue;
      s.dirty = false;
      streams.push(s.toRecord(tapIds));
    }
    const sessions: SessionRecord[] = [];
    for (const d of this.#dialogs) {
      if (onlyDirty && !d.dirty) continue;
      d.dirty = false;
      sessions.push(d.record);
    }
    const transactions: HttpTransaction[] = [];
    for (const h of this.#http) {
      if (onlyDirty && !h.dirty) continue;
      h.dirty = false;
      transactions.push(...h.transactions);
    }
    const { cameras, vms } = this.#inventory();
    return { streams, sessions, transactions, cameras, vms };
  }

  #inventory(): { cameras: CameraRecord[]; vms: VmsRecord[] } {
    const inv = new Inventory(this.#seedCameras, this.#seedVms);
    for (const d of this.#dialogs) inv.addSession(d.record);
    const noTaps = () => [];
    for (const s of this.#streams) inv.addStream(s.toRecord(noTaps), (ip) => this.vmsName(ip));
    return inv.records();
  }

}
