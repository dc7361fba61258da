/**
 * A cheap RTSP camera simulator for the relay benchmark: one process serves N live H.264
 * streams (`rtsp://HOST:PORT/stream0` .. `streamN-1`) at a chosen bitrate, from a real
 * capture looped (bench/relay/h264-source.ts), with no encoding: a stream costs a header
 * write and a copy per packet. GStreamer per camera (test/helpers/camera.py) would encode
 * live and cost far more CPU than the relay under test.
 *
 *   node dist/bench/relay/fake-camera.js CONFIG.json        (a CameraConfig)
 *
 * stdout: `LISTENING <port>`, then `LOOP <json>` (the loop's figures). stdin commands:
 * `DUMP <file>` writes the send log (one PacketLog per stream, bench/relay/packet-log.ts)
 * and answers `DUMPED <json CameraStats>`; `QUIT` exits.
 *
 * RTSP (RFC 2326): OPTIONS, DESCRIBE (SDP with sprop-parameter-sets), SETUP over TCP
 * interleaved or UDP (`client_port`; one shared server port pair), PLAY (RTP-Info),
 * GET_PARAMETER / SET_PARAMETER (keepalives), PAUSE, TEARDOWN. Interleaved frames the
 * client sends (RTCP receiver reports) are skipped. No authentication, no RTCP sender
 * reports (neither camtap nor ffmpeg needs them).
 *
 * Like a real camera's encoder, a stream runs once for all its sessions: it starts at an
 * IDR picture (a different GOP of the loop for each stream, so I-frames do not line up)
 * when its first session plays, a later session joins at the next IDR, and it stops when
 * its last session leaves. An access unit is written to each session in one write (TCP:
 * all its `$` frames; UDP: a datagram per packet) when it is due; the send time logged for
 * its packets is taken just before the writes, so the camera's own timer lateness is not
 * counted as relay latency (it is reported separately, as `lagMs`). A session whose socket
 * holds more than `maxQueueBytes` unsent misses the access unit (counted in `dropped`; the
 * packets stay in the log, so the receiver sees them as lost).
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { readFileSync } from 'node:fs';
import { monoMs } from '../lib/mono-clock.js';
import { Samples, percentiles, type Percentiles } from '../lib/stats.js';
import { loadH264Loop, profileLevelId, type H264Loop } from './h264-source.js';
import { PacketLog, writeLogs } from './packet-log.js';

export interface CameraConfig {
  /** Capture with the H.264 stream to loop. */
  template: string;
  /** RTP bitrate (header + payload) of each stream, bit/s. */
  targetBps: number;
  /** Streams served: `/stream0` .. `/stream<paths-1>`. */
  paths: number;
  host: string;
  /** 0: any free port. */
  port: number;
  /** A session with more than this many bytes waiting in its socket misses an access unit. */
  maxQueueBytes: number;
}

export interface CameraStats {
  paths: number;
  /** Streams that played at some point, and sessions that played. */
  pathsPlayed: number;
  sessionsPlayed: number;
  accessUnits: number;
  packets: number;
  /** RTP bytes written (header + payload, all sessions). */
  rtpBytes: number;
  /** Access units not written to a session because its socket queue was over maxQueueBytes. */
  dropped: number;
  /** Send time minus due time of each access unit, ms: how late the camera's timer ran. */
  lagMs: Percentiles;
  cpuS: number;
}

const PT = 96;

class Session {
  readonly id: string;
  readonly conn: Connection;
  readonly tcp: boolean;
  channel = 0;
  udpPort = 0;
  udpHost = '';
  path: PathState | null = null;
  playing = false;
  waitKey = true;
  constructor(id: string, conn: Connection, tcp: boolean) {
    this.id = id;
    this.conn = conn;
    this.tcp = tcp;
  }
}

class PathState {
  readonly index: number;
  readonly ssrc: number;
  readonly log = new PacketLog();
  sessions: Session[] = [];
  seq: number;
  readonly tsBase: number;
  /** Position: access-unit index in the loop, completed loops, start AU and its time. */
  au = 0;
  loop = 0;
  startAu = 0;
  baseMs = 0;
  nextAt = Number.POSITIVE_INFINITY;
  played = false;
  constructor(index: number) {
    this.index = index;
    this.ssrc = (0x10000000 + index * 7919) >>> 0;
    this.seq = (index * 1237) & 0xffff;
    this.tsBase = (index * 104729) >>> 0;
  }
}

class Connection {
  readonly socket: Socket;
  carry: Buffer | null = null;
  readonly sessions = new Map<string, Session>();
  constructor(socket: Socket) {
    this.socket = socket;
  }
}

/** Bump allocator over slabs that are never reused: a socket may still hold an earlier write. */
class Slab {
  #slab = Buffer.allocUnsafeSlow(1 << 20);
  #pos = 0;
  take(n: number): Buffer {
    if (n > 1 << 18) return Buffer.allocUnsafe(n);
    if (this.#pos + n > this.#slab.length) {
      this.#slab = Buffer.allocUnsafeSlow(1 << 20);
      this.#pos = 0;
    }
    const b = this.#slab.subarray(this.#pos, this.#pos + n);
    this.#pos += n;
    return b;
  }
}

const CRLF2 = Buffer.from('\r\n\r\n');

async function main(): Promise<void> {
  const cfg = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as CameraConfig;
  const src: H264Loop = await loadH264Loop(cfg.template, cfg.targetBps);
  const paths = Array.from({ length: cfg.paths }, (_, i) => new PathState(i));
  const playing = new Set<PathState>();
  const slab = new Slab();
  const lag = new Samples(1 << 16);
  const stats = { accessUnits: 0, packets: 0, rtpBytes: 0, dropped: 0, sessionsPlayed: 0 };
  const sprop = `${src.sps.toString('base64')},${src.pps.toString('base64')}`;
  const plid = profileLevelId(src.sps);
  let port = 0;
  let sessionSeq = 0;

  // One UDP pair for every UDP session (server_port), bound on an even port.
  let udp: { rtp: UdpSocket; rtcp: UdpSocket; port: number } | null = null;
  const udpPair = async (): Promise<{ rtp: UdpSocket; rtcp: UdpSocket; port: number }> => {
    if (udp) return udp;
    for (let tries = 0; tries < 50; tries++) {
      const rtp = createSocket('udp4');
      await new Promise<void>((res, rej) => rtp.once('error', rej).bind(0, cfg.host, () => res()));
      const p = rtp.address().port;
      if (p % 2 === 0) {
        const rtcp = createSocket('udp4');
        const ok = await new Promise<boolean>((res) => {
          rtcp.once('error', () => res(false));
          rtcp.bind(p + 1, cfg.host, () => res(true));
        });
        if (ok) {
          rtcp.on('message', () => {});
          rtp.on('message', () => {});
          udp = { rtp, rtcp, port: p };
          return udp;
        }
        rtcp.close();
      }
      rtp.close();
    }
    throw new Error('no even/odd UDP port pair');
  };

  const dueOf = (p: PathState) => p.baseMs + p.loop * src.loopMs + src.aus[p.au]!.atMs;

  const startPath = (p: PathState) => {
    const now = monoMs();
    p.startAu = src.idrs[p.index % src.idrs.length]!;
    p.au = p.startAu;
    p.loop = 0;
    p.baseMs = now - src.aus[p.startAu]!.atMs;
    p.nextAt = now;
    p.played = true;
    playing.add(p);
  };

  const sendAu = (p: PathState) => {
    const au = src.aus[p.au]!;
    const n = au.payloads.length;
    let total = 0;
    for (let i = 0; i < n; i++) total += 16 + au.payloads[i]!.length;
    const buf = slab.take(total);
    const ts = (p.tsBase + p.loop * src.loopTicks + au.ticks - src.aus[p.startAu]!.ticks) >>> 0;
    let o = 0;
    for (let i = 0; i < n; i++) {
      const pl = au.payloads[i]!;
      buf[o] = 0x24;
      buf[o + 1] = 0;
      buf.writeUInt16BE(12 + pl.length, o + 2);
      buf[o + 4] = 0x80;
      buf[o + 5] = (i === n - 1 ? 0x80 : 0) | PT;
      buf.writeUInt16BE(p.seq, o + 6);
      buf.writeUInt32BE(ts, o + 8);
      buf.writeUInt32BE(p.ssrc, o + 12);
      pl.copy(buf, o + 16);
      p.seq = (p.seq + 1) & 0xffff;
      o += 16 + pl.length;
    }
    const t = monoMs();
    lag.push(t - p.nextAt);
    for (let i = 0; i < n; i++) p.log.push(au.keyA[i]!, au.keyB[i]!, t);
    stats.accessUnits++;
    stats.packets += n;
    for (const s of p.sessions) {
      if (s.waitKey) {
        if (!au.idr) continue;
        s.waitKey = false;
      }
      if (s.tcp) {
        const sock = s.conn.socket;
        if (sock.destroyed) continue;
        if (sock.writableLength > cfg.maxQueueBytes) {
          stats.dropped++;
          continue;
        }
        if (s.channel === 0) sock.write(buf);
        else {
          const c = Buffer.from(buf);
          for (let q = 0; q < c.length; q += 4 + c.readUInt16BE(q + 2)) c[q + 1] = s.channel;
          sock.write(c);
        }
      } else if (udp) {
        for (let q = 0; q < buf.length; q += 4 + buf.readUInt16BE(q + 2)) udp.rtp.send(buf, q + 4, buf.readUInt16BE(q + 2), s.udpPort, s.udpHost);
      }
      stats.rtpBytes += total - 4 * n;
    }
    // Advance.
    p.au++;
    if (p.au >= src.aus.length) {
      p.au = 0;
      p.loop++;
    }
    p.nextAt = dueOf(p);
  };

  let timer: NodeJS.Timeout | null = null;
  const tick = () => {
    timer = null;
    let soonest = Number.POSITIVE_INFINITY;
    for (const p of playing) {
      // monoMs() per path: the writes before take time.
      while (p.nextAt <= monoMs()) sendAu(p);
      if (p.nextAt < soonest) soonest = p.nextAt;
    }
    if (playing.size > 0) timer = setTimeout(tick, Math.max(0, Math.min(1, soonest - monoMs())));
  };
  const kick = () => {
    if (timer === null) timer = setTimeout(tick, 0);
  };

  const leave = (s: Session) => {
    const p = s.path;
    if (!p || !s.playing) return;
    s.playing = false;
    p.sessions = p.sessions.filter((x) => x !== s);
    if (p.sessions.length === 0) {
      playing.delete(p);
      p.nextAt = Number.POSITIVE_INFINITY;
    }
  };

  const respond = (c: Connection, cseq: string, status: number, headers: Array<[string, string]> = [], body = '') => {
    const reason = status === 200 ? 'OK' : status === 404 ? 'Not Found' : status === 454 ? 'Session Not Found' : status === 461 ? 'Unsupported Transport' : 'Method Not Allowed';
    let text = `RTSP/1.0 ${status} ${reason}\r\nCSeq: ${cseq}\r\nServer: camtap-bench-camera\r\n`;
    for (const [k, v] of headers) text += `${k}: ${v}\r\n`;
    if (body) text += `Content-Length: ${Buffer.byteLength(body)}\r\n`;
    text += `\r\n${body}`;
    if (!c.socket.destroyed) c.socket.write(text);
  };

  const pathOf = (url: string): PathState | null => {
    const m = /\/stream(\d+)(?:[/?]|$)/.exec(url);
    const i = m ? Number(m[1]) : -1;
    return i >= 0 && i < paths.length ? paths[i]! : null;
  };

  const handle = async (c: Connection, method: string, url: string, h: Map<string, string>) => {
    const cseq = h.get('cseq') ?? '0';
    const sid = (h.get('session') ?? '').split(';')[0]!.trim();
    switch (method) {
      case 'OPTIONS':
        return respond(c, cseq, 200, [['Public', 'OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER']]);
      case 'DESCRIBE': {
        const p = pathOf(url);
        if (!p) return respond(c, cseq, 404);
        const base = `rtsp://${cfg.host}:${port}/stream${p.index}/`;
        const sdp = [
          'v=0',
          `o=- ${1000 + p.index} 1 IN IP4 ${cfg.host}`,
          `s=camtap bench camera stream${p.index}`,
          'c=IN IP4 0.0.0.0',
          't=0 0',
          'a=control:*',
          'a=range:npt=0-',
          `m=video 0 RTP/AVP ${PT}`,
          `a=rtpmap:${PT} H264/90000`,
          `a=fmtp:${PT} packetization-mode=1;profile-level-id=${plid};sprop-parameter-sets=${sprop}`,
          'a=control:trackID=0',
          '',
        ].join('\r\n');
        return respond(c, cseq, 200, [['Content-Type', 'application/sdp'], ['Content-Base', base]], sdp);
      }
      case 'SETUP': {
        const p = pathOf(url);
        if (!p) return respond(c, cseq, 404);
        const tr = h.get('transport') ?? '';
        const tcp = /RTP\/AVP\/TCP/i.test(tr);
        let s = sid ? c.sessions.get(sid) : undefined;
        if (!s) {
          s = new Session(`${(0x1000000 + ++sessionSeq * 7877).toString(16)}${p.index.toString(16)}`, c, tcp);
          c.sessions.set(s.id, s);
        }
        s.path = p;
        let answer: string;
        const ssrc = p.ssrc.toString(16).toUpperCase().padStart(8, '0');
        if (tcp) {
          const m = /interleaved=(\d+)(?:-(\d+))?/.exec(tr);
          s.channel = m ? Number(m[1]) : 0;
          answer = `RTP/AVP/TCP;unicast;interleaved=${s.channel}-${s.channel + 1};ssrc=${ssrc}`;
        } else {
          const m = /client_port=(\d+)(?:-(\d+))?/.exec(tr);
          if (!m) return respond(c, cseq, 461);
          const pair = await udpPair();
          s.udpPort = Number(m[1]);
          s.udpHost = c.socket.remoteAddress?.replace(/^::ffff:/, '') ?? cfg.host;
          answer = `RTP/AVP;unicast;client_port=${m[1]}-${m[2] ?? Number(m[1]) + 1};server_port=${pair.port}-${pair.port + 1};ssrc=${ssrc}`;
        }
        return respond(c, cseq, 200, [['Transport', answer], ['Session', `${s.id};timeout=60`]]);
      }
      case 'PLAY': {
        const s = c.sessions.get(sid);
        if (!s || !s.path) return respond(c, cseq, 454);
        const p = s.path;
        if (!s.playing) {
          s.playing = true;
          s.waitKey = true;
          p.sessions = [...p.sessions, s];
          stats.sessionsPlayed++;
          if (!playing.has(p)) startPath(p);
          kick();
        }
        const next = (p.tsBase + p.loop * src.loopTicks + src.aus[p.au]!.ticks - src.aus[p.startAu]!.ticks) >>> 0;
        return respond(c, cseq, 200, [
          ['Session', s.id],
          ['Range', 'npt=0.000-'],
          ['RTP-Info', `url=rtsp://${cfg.host}:${port}/stream${p.index}/trackID=0;seq=${p.seq};rtptime=${next}`],
        ]);
      }
      case 'PAUSE': {
        const s = c.sessions.get(sid);
        if (!s) return respond(c, cseq, 454);
        leave(s);
        return respond(c, cseq, 200, [['Session', s.id]]);
      }
      case 'TEARDOWN': {
        const s = c.sessions.get(sid);
        if (s) {
          leave(s);
          c.sessions.delete(s.id);
        }
        return respond(c, cseq, 200, s ? [['Session', s.id]] : []);
      }
      case 'GET_PARAMETER':
      case 'SET_PARAMETER':
        return respond(c, cseq, 200, sid ? [['Session', sid]] : []);
      default:
        return respond(c, cseq, 405, [['Allow', 'OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER']]);
    }
  };

  const onData = (c: Connection, chunk: Buffer) => {
    let data = c.carry ? Buffer.concat([c.carry, chunk]) : chunk;
    c.carry = null;
    let pos = 0;
    while (pos < data.length) {
      if (data[pos] === 0x24) {
        if (data.length - pos < 4) break;
        const total = 4 + data.readUInt16BE(pos + 2);
        if (data.length - pos < total) break;
        pos += total; // RTCP from the client: not needed
        continue;
      }
      const end = data.indexOf(CRLF2, pos);
      if (end < 0) {
        if (data.length - pos > 64 * 1024) return void c.socket.destroy();
        break;
      }
      const lines = data.toString('latin1', pos, end).split('\r\n');
      const h = new Map<string, string>();
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        if (i > 0) h.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim());
      }
      const bodyLen = Number(h.get('content-length') ?? 0) || 0;
      if (data.length < end + 4 + bodyLen) break;
      pos = end + 4 + bodyLen;
      const [method, url] = (lines[0] ?? '').split(' ');
      void handle(c, method ?? '', url ?? '', h).catch((e: unknown) => process.stderr.write(`fake-camera: ${String(e)}\n`));
    }
    if (pos < data.length) c.carry = Buffer.from(data.subarray(pos));
  };

  const server = createServer((socket) => {
    socket.setNoDelay(true);
    const c = new Connection(socket);
    socket.on('data', (b: Buffer) => onData(c, b));
    socket.on('error', () => {});
    socket.on('close', () => {
      for (const s of c.sessions.values()) leave(s);
      c.sessions.clear();
    });
  });
  server.maxConnections = 100_000;
  await new Promise<void>((res) => server.listen({ port: cfg.port, host: cfg.host, backlog: 4096 }, () => res()));
  port = (server.address() as { port: number }).port;
  process.stdout.write(`LISTENING ${port}\n`);
  process.stdout.write(`LOOP ${JSON.stringify({ ...src, aus: src.aus.length, sps: src.sps.toString('hex'), pps: src.pps.toString('hex'), idrs: src.idrs.length })}\n`);

  for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
    const [cmd, arg] = line.trim().split(/\s+/, 2);
    if (cmd === 'DUMP' && arg) {
      const cpu = process.cpuUsage();
      writeLogs(
        arg,
        paths.filter((p) => p.played).map((p) => ({ stream: p.index, role: 0, log: p.log })),
      );
      const res: CameraStats = {
        paths: paths.length,
        pathsPlayed: paths.filter((p) => p.played).length,
        sessionsPlayed: stats.sessionsPlayed,
        accessUnits: stats.accessUnits,
        packets: stats.packets,
        rtpBytes: stats.rtpBytes,
        dropped: stats.dropped,
        lagMs: percentiles(lag.view()),
        cpuS: (cpu.user + cpu.system) / 1e6,
      };
      process.stdout.write(`DUMPED ${JSON.stringify(res)}\n`);
    } else if (cmd === 'QUIT') break;
  }
  process.exit(0);
}

main().catch((e: unknown) => {
  process.stderr.write(`fake-camera: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
