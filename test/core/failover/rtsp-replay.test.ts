/**
 * Failover strategy (a) against the lab camera (a real gst-rtsp-server): the set-up
 * ffmpeg makes (captured with tcpdump and read back with tshark, as camtap would have
 * captured a VMS's) is replayed with camtap's ports put in, over UDP and over TCP
 * interleaved. tshark on a tcpdump capture of the same traffic is the ground truth:
 * the requests as they went (CSeq renumbered, the new Session adopted, no captured
 * credentials), every RTP packet the camera sent to camtap (all counted by the replay
 * and all handed to the recorder), and none after TEARDOWN. Digest: answered with the
 * camera's credentials, and without them the outcome says so. A dry run sends nothing.
 */
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import path from 'node:path';
import type { Endpoint, InlineRecorder } from '../../../core/contracts/inline.js';
import { silentLogger } from '../../../core/logger.js';
import { RtpReceiver } from '../../../core/failover/rtp-receiver.js';
import { startRtspReplay } from '../../../core/failover/rtsp-replay.js';
import type { RtspStep } from '../../../core/failover/types.js';
import { isCamtapError } from '../../../core/errors.js';
import { MessageStreamParser } from '../../../core/wire/rtsp-message.js';
import { cameraMissing, freePort, freeUdpPair, have, startCamera, startTcpdump, startVms } from '../../helpers/peers.js';
import { answer, fakeCamera, pumpRtp, SDP } from '../rtsp-client/fake-camera.js';

const missing = (await cameraMissing()) ?? (['ffmpeg', 'tcpdump', 'tshark'].find((x) => !have(x)) ? 'ffmpeg, tcpdump or tshark is missing' : null);
const skip = missing ?? false;
const USER = 'admin';
const PASSWORD = 'pa:ss w0rd';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, limitMs = 20_000): Promise<boolean> {
  const end = Date.now() + limitMs;
  while (Date.now() < end) {
    if (cond()) return true;
    await sleep(50);
  }
  return cond();
}

/** An InlineRecorder that keeps every call (a copy of every payload). */
function testRecorder() {
  const udp: Array<{ src: Endpoint; dst: Endpoint; payload: Buffer }> = [];
  const tcp: Array<{ client: Endpoint; server: Endpoint; fromClient: Buffer[]; fromServer: Buffer[]; closed: boolean }> = [];
  const recorder: InlineRecorder = {
    tcp(client, server) {
      const c = { client: { ...client }, server: { ...server }, fromClient: [] as Buffer[], fromServer: [] as Buffer[], closed: false };
      tcp.push(c);
      return {
        fromClient: (d) => void c.fromClient.push(Buffer.from(d)),
        fromServer: (d) => void c.fromServer.push(Buffer.from(d)),
        close: () => void (c.closed = true),
      };
    },
    udp(src, dst, payload) {
      udp.push({ src: { ...src }, dst: { ...dst }, payload: Buffer.from(payload) });
    },
  };
  return { recorder, udp, tcp };
}

interface CapturedRequest {
  method: string;
  url: string;
  headers: Array<[string, string]>;
}

function tshark(args: string[]): string {
  return execFileSync('tshark', args, { encoding: 'utf8', maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'ignore'] });
}

/** RTSP messages in a capture (requests, or answers), read from the TCP payload tshark dissects as RTSP. */
function tsharkRtsp(file: string, rtspPort: number, filter: 'rtsp.request' | 'rtsp.response'): Array<{ time: number; srcPort: number; start: string[]; headers: Array<[string, string]> }> {
  const out = tshark(['-r', file, '-d', `tcp.port==${rtspPort},rtsp`, '-Y', filter, '-T', 'fields', '-e', 'frame.time_epoch', '-e', 'tcp.srcport', '-e', 'tcp.payload']);
  const res: Array<{ time: number; srcPort: number; start: string[]; headers: Array<[string, string]> }> = [];
  for (const line of out.split('\n')) {
    if (!line) continue;
    const [time, sport, hex] = line.split('\t') as [string, string, string];
    const text = Buffer.from(hex.replace(/:/g, ''), 'hex').toString('latin1');
    const [head] = text.split('\r\n\r\n');
    const [start, ...lines] = head!.split('\r\n');
    res.push({ time: Number(time), srcPort: Number(sport), start: start!.split(' '), headers: lines.map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]) });
  }
  return res;
}

/** A header of a captured message, by name in any case. */
const hdr = (m: { headers: Array<[string, string]> }, name: string): string | undefined => m.headers.find(([k]) => k.toLowerCase() === name.toLowerCase())?.[1];

/** RTSP requests in a capture. */
function tsharkRequests(file: string, rtspPort: number): Array<CapturedRequest & { time: number; srcPort: number }> {
  return tsharkRtsp(file, rtspPort, 'rtsp.request').map((m) => ({ time: m.time, srcPort: m.srcPort, method: m.start[0]!, url: m.start[1]!, headers: m.headers }));
}

/** RTSP answers in a capture: CSeq, status, Session id. */
function tsharkAnswers(file: string, rtspPort: number): Array<{ cseq: number; status: number; session: string | null }> {
  return tsharkRtsp(file, rtspPort, 'rtsp.response').map((m) => ({ cseq: Number(hdr(m, 'CSeq')), status: Number(m.start[1]), session: hdr(m, 'Session')?.split(';')[0] ?? null }));
}

/** Every RTP packet in the capture to `dst` UDP port (decoded as RTP there), in capture order. */
function tsharkUdpRtp(file: string, port: number): Array<{ time: number; seq: number; srcPort: number }> {
  const out = tshark(['-r', file, '-d', `udp.port==${port},rtp`, '-Y', `udp.dstport==${port} && rtp && !icmp`, '-T', 'fields', '-e', 'frame.time_epoch', '-e', 'rtp.seq', '-e', 'udp.srcport']);
  return out
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [time, seq, sp] = l.split('\t') as [string, string, string];
      return { time: Number(time), seq: Number(seq), srcPort: Number(sp) };
    });
}

/** Every RTP packet tshark finds interleaved in the camera's side of one RTSP connection (RFC 2326 §10.12). */
function tsharkTcpRtp(file: string, rtspPort: number, clientPort: number): Array<{ time: number; seq: number }> {
  const out = tshark(['-r', file, '-d', `tcp.port==${rtspPort},rtsp`, '-Y', `tcp.srcport==${rtspPort} && tcp.dstport==${clientPort} && rtp`, '-T', 'fields', '-E', 'occurrence=a', '-E', 'aggregator=|', '-e', 'frame.time_epoch', '-e', 'rtp.seq']);
  const res: Array<{ time: number; seq: number }> = [];
  for (const l of out.split('\n')) {
    if (!l) continue;
    const [time, seqs] = l.split('\t') as [string, string];
    for (const s of seqs.split('|')) res.push({ time: Number(time), seq: Number(s) });
  }
  return res;
}

/** RTCP packet types (`rtcp.pt`) sent from `srcPort` over UDP. */
function tsharkRtcpFrom(file: string, srcPort: number, dstPort: number): number[] {
  const out = tshark(['-r', file, '-d', `udp.port==${srcPort},rtcp`, '-Y', `udp.srcport==${srcPort} && udp.dstport==${dstPort} && rtcp`, '-T', 'fields', '-E', 'occurrence=f', '-e', 'rtcp.pt']);
  return out.split('\n').filter(Boolean).map(Number);
}

/** What ffmpeg sends to set up the camera's stream, as a capture shows it (the dialog a VMS left in camtap's store). */
async function captureFfmpegDialog(t: Test, url: string, rtspPort: number, transport: 'udp' | 'tcp'): Promise<CapturedRequest[]> {
  const dir = t.testdir({});
  const file = path.join(dir, `ffmpeg-${transport}.pcap`);
  const td = await startTcpdump({ iface: 'lo', out: file, filter: `tcp port ${rtspPort}` });
  const vms = startVms({ url, transport, seconds: 1 });
  await vms.exited;
  await sleep(200);
  await td.stop();
  return tsharkRequests(file, rtspPort);
}

/**
 * The plan's steps for a captured set-up, as ./plan.ts makes them: OPTIONS, DESCRIBE,
 * SETUP, PLAY with CSeq, Session and Authorization left out, and the SETUP's
 * client_port (UDP) replaced by camtap's.
 */
function planSteps(captured: CapturedRequest[], opts: { rtpPort?: number; port?: number }): RtspStep[] {
  const steps: RtspStep[] = [];
  let track = 0;
  for (const r of captured) {
    if (!['OPTIONS', 'DESCRIBE', 'SETUP', 'PLAY'].includes(r.method)) continue;
    const headers: Record<string, string> = {};
    let note = `captured ${r.method}`;
    for (const [k, v] of r.headers) {
      const lk = k.toLowerCase();
      if (lk === 'cseq' || lk === 'session' || lk === 'authorization') continue;
      headers[lk] = v;
    }
    const url = opts.port ? r.url.replace(/:\d+\//, `:${opts.port}/`) : r.url;
    const step: RtspStep = { kind: 'rtsp', method: r.method, url, headers, note };
    if (r.method === 'SETUP') {
      const tr = headers.transport!;
      if (/\/TCP/.test(tr)) {
        const m = /interleaved=(\d+)-(\d+)/.exec(tr)!;
        step.track = { index: track, lower: 'tcp', interleaved: [Number(m[1]), Number(m[2])] };
      } else {
        const rtp = opts.rtpPort! + 2 * track;
        headers.transport = tr.replace(/client_port=\d+-\d+/, `client_port=${rtp}-${rtp + 1}`);
        step.track = { index: track, lower: 'udp', rtpPort: rtp, rtcpPort: rtp + 1 };
        note = `client_port -> ${rtp}-${rtp + 1}`;
        step.note = note;
      }
      track++;
    }
    steps.push(step);
  }
  return steps;
}

function interleavedChannels(chunks: Buffer[]): number[] {
  const channels: number[] = [];
  const p = new MessageStreamParser({ onMessage: () => {}, onInterleaved: (ch) => void channels.push(ch), onError: () => {} }, {});
  for (const c of chunks) p.push(c, null);
  return channels;
}

if (!missing) {
  // One camera without auth for the UDP, TCP and dry-run cases; the VMS's dialogs captured from it once.
  const port = await freePort();
  const cam = await startCamera({ port });
  t.teardown(() => cam.stop());
  let udpDialog: CapturedRequest[] = [];
  let tcpDialog: CapturedRequest[] = [];

  await t.test('ffmpeg\'s set-up is captured as a VMS\'s would be', async (t) => {
    udpDialog = await captureFfmpegDialog(t, cam.url, port, 'udp');
    tcpDialog = await captureFfmpegDialog(t, cam.url, port, 'tcp');
    t.same(udpDialog.slice(0, 4).map((r) => r.method), ['OPTIONS', 'DESCRIBE', 'SETUP', 'PLAY']);
    t.same(tcpDialog.slice(0, 4).map((r) => r.method), ['OPTIONS', 'DESCRIBE', 'SETUP', 'PLAY']);
    t.match(hdr(udpDialog[2]!, 'Transport'), /^RTP\/AVP\/UDP;unicast;client_port=\d+-\d+$/);
    t.match(hdr(tcpDialog[2]!, 'Transport'), /^RTP\/AVP\/TCP;unicast;interleaved=0-1$/);
  });

  t.test('over UDP: every RTP packet the camera sends to camtap\'s port is counted and recorded, and TEARDOWN stops it', async (t) => {
    const rtp = await freeUdpPair();
    const steps = planSteps(udpDialog, { rtpPort: rtp });
    const file = path.join(t.testdir({}), 'udp.pcap');
    const td = await startTcpdump({ iface: 'lo', out: file, filter: `tcp port ${port} or udp port ${rtp} or udp port ${rtp + 1}` });
    t.teardown(() => td.stop());
    const rec = testRecorder();
    const seqs: number[] = [];
    const res = await startRtspReplay({
      camera: { name: 'cam1', address: '127.0.0.1' },
      steps,
      host: '127.0.0.1',
      recorder: rec.recorder,
      log: silentLogger,
      onPacket: (track, b) => {
        if (track === 0) seqs.push(b.readUInt16BE(2));
      },
    });
    t.equal(res.outcome.ok, true, res.outcome.reason ?? 'ok');
    t.same(res.outcome.steps.map((s) => [s.step, s.request, s.status, s.ok]), steps.map((s, i) => [i + 1, `${s.method} ${s.url}`, 200, true]));
    const session = res.session!;
    const setupAnswer = res.outcome.steps[2]!.answer;
    t.ok(setupAnswer.startsWith(`RTSP/1.0 200 OK\nSession: ${session.sessionId}`), 'the SETUP answer\'s status line and Session');
    t.match(setupAnswer, `\nTransport: RTP/AVP;unicast;client_port=${rtp}-${rtp + 1};server_port=`, 'and its Transport');
    t.ok(await until(() => session.stats().packets >= 75), 'RTP arrives');
    const ended = await session.stop();
    t.match(ended, [{ step: 5, request: `TEARDOWN ${cam.url}/`, status: 200, ok: true }]);
    t.equal(await session.closed, 'stopped');
    t.same(await session.stop(), [], 'stop() again does nothing');
    await sleep(1500); // the camera would still be sending here if TEARDOWN had not stopped it
    await td.stop();

    const reqs = tsharkRequests(file, port);
    t.same(reqs.map((r) => r.method), ['OPTIONS', 'DESCRIBE', 'SETUP', 'PLAY', 'TEARDOWN'], 'the requests on the wire');
    t.same(reqs.map((r) => hdr(r, 'CSeq')), ['1', '2', '3', '4', '5'], 'CSeq renumbered from 1');
    const answers = tsharkAnswers(file, port);
    const sid = answers.find((a) => a.cseq === 3)!.session;
    t.equal(sid, session.sessionId, 'the session the camera gave in its SETUP answer');
    t.same(reqs.map((r) => hdr(r, 'Session') ?? null), [null, null, null, sid, sid], 'adopted for PLAY and TEARDOWN');
    t.same(reqs.map((r) => hdr(r, 'User-Agent')), udpDialog.slice(0, 5).map((r) => hdr(r, 'User-Agent')), 'the captured User-Agent');
    t.equal(hdr(reqs[2]!, 'Transport'), `RTP/AVP/UDP;unicast;client_port=${rtp}-${rtp + 1}`);
    t.ok(reqs.every((r) => hdr(r, 'Authorization') === undefined), 'no Authorization');
    t.same(answers.map((a) => a.status), [200, 200, 200, 200, 200]);

    const truth = tsharkUdpRtp(file, rtp);
    t.ok(truth.length >= 75, `${truth.length} RTP packets to port ${rtp} in the capture`);
    t.equal(session.stats().packets, truth.length, 'the replay counted every one');
    t.same(seqs, truth.map((x) => x.seq), 'and handed each to onPacket, in order');
    const recorded = rec.udp.filter((d) => d.dst.port === rtp);
    t.equal(recorded.length, truth.length, 'the recorder got every one');
    t.same(recorded.map((d) => d.payload.readUInt16BE(2)), truth.map((x) => x.seq));
    t.same(recorded[0]!.src, { ip: '127.0.0.1', port: truth[0]!.srcPort }, 'with the camera\'s endpoint');
    t.same(recorded[0]!.dst, { ip: '127.0.0.1', port: rtp }, 'and camtap\'s');
    t.equal(rec.tcp.length, 1, 'the RTSP connection is recorded too');
    t.equal(rec.tcp[0]!.server.port, port);
    t.match(Buffer.concat(rec.tcp[0]!.fromClient).toString('latin1'), /^OPTIONS [^]*TEARDOWN /);
    t.equal(rec.tcp[0]!.closed, true);
    const teardownAt = reqs[4]!.time;
    t.same(truth.filter((x) => x.time > teardownAt + 1), [], 'no RTP to the port from 1 s after TEARDOWN');
    const s = createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.bind(rtp, '127.0.0.1', () => resolve());
    });
    s.close();
    t.pass('the port is free again');
  });

  t.test('over TCP interleaved: every RTP frame in the connection is counted, the bytes are recorded, and TEARDOWN stops it', async (t) => {
    const steps = planSteps(tcpDialog, {});
    const file = path.join(t.testdir({}), 'tcp.pcap');
    const td = await startTcpdump({ iface: 'lo', out: file, filter: `tcp port ${port}` });
    t.teardown(() => td.stop());
    const rec = testRecorder();
    const seqs: number[] = [];
    const res = await startRtspReplay({ camera: { name: 'cam1', address: '127.0.0.1' }, steps, host: '127.0.0.1', recorder: rec.recorder, log: silentLogger, onPacket: (_t, b) => void seqs.push(b.readUInt16BE(2)) });
    t.equal(res.outcome.ok, true, res.outcome.reason ?? 'ok');
    t.match(res.outcome.steps[2]!.answer, /\nTransport: RTP\/AVP\/TCP;unicast;interleaved=0-1/);
    const session = res.session!;
    t.ok(await until(() => session.stats().packets >= 75), 'RTP arrives');
    t.match(session.tracks(), [{ track: 0, lower: 'tcp' }]);
    const ended = await session.stop();
    t.match(ended, [{ request: `TEARDOWN ${cam.url}/`, status: 200, ok: true }]);
    await sleep(1500);
    await td.stop();

    const reqs = tsharkRequests(file, port);
    t.same(reqs.map((r) => r.method), ['OPTIONS', 'DESCRIBE', 'SETUP', 'PLAY', 'TEARDOWN']);
    t.equal(hdr(reqs[2]!, 'Transport'), 'RTP/AVP/TCP;unicast;interleaved=0-1');
    const clientPort = rec.tcp[0]!.client.port;
    t.equal(reqs[0]!.srcPort, clientPort);
    const truth = tsharkTcpRtp(file, port, clientPort);
    t.ok(truth.length >= 75, `${truth.length} interleaved RTP packets in the capture`);
    t.equal(session.stats().packets, truth.length, 'the replay counted every one');
    t.same(seqs, truth.map((x) => x.seq), 'in order');
    const channels = interleavedChannels(rec.tcp[0]!.fromServer);
    t.equal(channels.filter((c) => c === 0).length, truth.length, 'the recorder has every frame in the connection\'s bytes');
    t.same(truth.filter((x) => x.time > reqs[4]!.time + 1), [], 'no RTP after TEARDOWN');
  });

  t.test('a dry run sends nothing and lists each request as it would go', async (t) => {
    const rtp = await freeUdpPair();
    const steps = planSteps(udpDialog, { rtpPort: rtp });
    const file = path.join(t.testdir({}), 'dry.pcap');
    const td = await startTcpdump({ iface: 'lo', out: file, filter: `tcp port ${port} or udp port ${rtp} or udp port ${rtp + 1}` });
    const res = await startRtspReplay({ camera: { name: 'cam1', address: '127.0.0.1', user: USER, password: PASSWORD }, steps, host: '127.0.0.1', recorder: null, log: silentLogger, dryRun: true });
    await sleep(500);
    await td.stop();
    t.equal(tshark(['-r', file]).trim(), '', 'the capture of the camera port and camtap\'s ports is empty');
    t.equal(res.session, null);
    t.equal(res.outcome.ok, true);
    const ua = udpDialog[0]!.headers.find(([k]) => k === 'User-Agent')![1];
    t.same(
      res.outcome.steps.map((s) => s.answer),
      [
        `(dry run: not sent)\nOPTIONS ${cam.url} RTSP/1.0\nCSeq: 1\nuser-agent: ${ua}\nAuthorization: <answered from challenge>`,
        `(dry run: not sent)\nDESCRIBE ${cam.url} RTSP/1.0\nCSeq: 2\naccept: application/sdp\nuser-agent: ${ua}\nAuthorization: <answered from challenge>`,
        `(dry run: not sent)\nSETUP ${steps[2]!.url} RTSP/1.0\nCSeq: 3\ntransport: RTP/AVP/UDP;unicast;client_port=${rtp}-${rtp + 1}\nuser-agent: ${ua}\nAuthorization: <answered from challenge>`,
        `(dry run: not sent)\nPLAY ${steps[3]!.url} RTSP/1.0\nCSeq: 4\nrange: npt=0.000-\nuser-agent: ${ua}\nSession: <from SETUP answer>\nAuthorization: <answered from challenge>`,
      ],
    );
    t.notMatch(JSON.stringify(res.outcome), PASSWORD);
    const s = createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.bind(rtp, '127.0.0.1', () => resolve());
    });
    s.close();
    t.pass('no port was bound');
  });

  t.test('a port in use: SETUP is not sent and the reason names host:port', async (t) => {
    const rtp = await freeUdpPair();
    const blocker = createSocket('udp4');
    await new Promise<void>((r) => blocker.bind(rtp, '127.0.0.1', () => r()));
    t.teardown(() => blocker.close());
    const rec = testRecorder();
    const res = await startRtspReplay({ camera: { name: 'cam1', address: '127.0.0.1' }, steps: planSteps(udpDialog, { rtpPort: rtp }), host: '127.0.0.1', recorder: rec.recorder, log: silentLogger });
    t.equal(res.outcome.ok, false);
    t.equal(res.outcome.reason, `SETUP ${udpDialog[2]!.url}: failover: cannot receive RTP on 127.0.0.1:${rtp}: port in use`);
    t.same(res.outcome.steps.map((s) => [s.request.split(' ')[0], s.status, s.ok]), [['OPTIONS', 200, true], ['DESCRIBE', 200, true], ['SETUP', null, false]]);
    t.notMatch(Buffer.concat(rec.tcp[0]!.fromClient).toString('latin1'), /SETUP/, 'SETUP never went out');
    const err = await RtpReceiver.open({ host: '127.0.0.1', rtpPort: rtp, rtcpPort: rtp + 1, recorder: null }).catch((e: unknown) => e);
    t.ok(isCamtapError(err, 'CAMTAP_ERR_FAILOVER_RECEIVE'), 'RtpReceiver.open rejects with CAMTAP_ERR_FAILOVER_RECEIVE');
  });

  t.test('a step toward a host that is not the camera\'s is not sent', async (t) => {
    const res = await startRtspReplay({ camera: { name: 'cam1', address: '127.0.0.2' }, steps: planSteps(udpDialog, { rtpPort: 50000 }), host: '127.0.0.1', recorder: null, log: silentLogger });
    t.equal(res.outcome.ok, false);
    t.equal(res.outcome.reason, `OPTIONS ${cam.url}: 127.0.0.1 is not the address of camera cam1 (127.0.0.2); not sent`);
    t.match(res.outcome.steps, [{ step: 1, status: null, ok: false }]);
  });

  t.test('a Digest camera: the challenge is answered with the camera\'s credentials; without them the outcome says so', async (t) => {
    const dport = await freePort();
    const dcam = await startCamera({ port: dport, auth: 'digest', user: USER, password: PASSWORD });
    t.teardown(() => dcam.stop());
    const rtp = await freeUdpPair();
    const steps = planSteps(udpDialog, { rtpPort: rtp, port: dport });

    const none = await startRtspReplay({ camera: { name: 'cam1', address: '127.0.0.1' }, steps, host: '127.0.0.1', recorder: null, log: silentLogger });
    t.equal(none.outcome.ok, false);
    t.equal(none.session, null);
    const refused = none.outcome.steps.find((s) => !s.ok)!;
    t.equal(refused.status, 401);
    t.match(refused.answer, /^RTSP\/1.0 401 Unauthorized\nWWW-Authenticate: Digest$/);
    t.equal(none.outcome.reason, `${refused.request}: 401 Unauthorized (Digest) and no credentials configured for camera cam1`);

    const wrong = await startRtspReplay({ camera: { name: 'cam1', address: '127.0.0.1', user: USER, password: 'Wr0ngSecret' }, steps, host: '127.0.0.1', recorder: null, log: silentLogger });
    t.equal(wrong.outcome.ok, false);
    t.match(wrong.outcome.reason, /: 401 Unauthorized \(Digest\): credentials refused for user admin$/);
    t.notMatch(JSON.stringify(wrong.outcome), 'Wr0ngSecret');

    const file = path.join(t.testdir({}), 'digest.pcap');
    const td = await startTcpdump({ iface: 'lo', out: file, filter: `tcp port ${dport} or udp port ${rtp}` });
    t.teardown(() => td.stop());
    const ok = await startRtspReplay({ camera: { name: 'cam1', address: '127.0.0.1', user: USER, password: PASSWORD }, steps, host: '127.0.0.1', recorder: null, log: silentLogger });
    t.equal(ok.outcome.ok, true, ok.outcome.reason ?? 'ok');
    t.same(ok.outcome.steps.map((s) => s.status), [200, 200, 200, 200]);
    t.notMatch(JSON.stringify(ok.outcome), PASSWORD, 'no password in the outcome');
    t.ok(await until(() => ok.session!.stats().packets >= 25), 'RTP arrives');
    await ok.session!.stop();
    await sleep(300);
    await td.stop();
    const auths = tsharkRequests(file, dport).map((r) => hdr(r, 'Authorization') ?? null);
    t.ok(auths.some((a) => a !== null && /^Digest username="admin", realm="[^"]+", nonce="[^"]+", uri="rtsp:/.test(a)), 'Digest answers on the wire');
    t.equal(tsharkUdpRtp(file, rtp).length, ok.session!.stats().packets, 'every RTP packet counted');
  });

  t.test('keepalive at half the Session timeout (GET_PARAMETER, listed in Public) and RTCP receiver reports every 5 s keep the session', async (t) => {
    const kport = await freePort();
    const kcam = await startCamera({ port: kport, extra: ['--session-timeout', '4'] });
    t.teardown(() => kcam.stop());
    const rtp = await freeUdpPair();
    const steps = planSteps(udpDialog, { rtpPort: rtp, port: kport });
    const file = path.join(t.testdir({}), 'keepalive.pcap');
    const td = await startTcpdump({ iface: 'lo', out: file, filter: `tcp port ${kport} or udp port ${rtp} or udp port ${rtp + 1}` });
    t.teardown(() => td.stop());
    const res = await startRtspReplay({ camera: { name: 'cam1', address: '127.0.0.1' }, steps, host: '127.0.0.1', recorder: null, log: silentLogger });
    t.equal(res.outcome.ok, true, res.outcome.reason ?? 'ok');
    t.match(res.outcome.steps[2]!.answer, /\nSession: \S+;timeout=4\n/);
    let closedWith: string | null = null;
    void res.session!.closed.then((r) => (closedWith = r));
    await sleep(6500);
    t.equal(closedWith, null, 'the session is still up after more than its timeout');
    const before = res.session!.stats().packets;
    t.ok(await until(() => res.session!.stats().packets > before), 'and RTP still arrives');
    const stats = res.session!.tracks()[0]!;
    await res.session!.stop();
    await td.stop();
    const reqs = tsharkRequests(file, kport);
    const keepalives = reqs.filter((r) => r.method === 'GET_PARAMETER');
    t.ok(keepalives.length >= 2, `${keepalives.length} GET_PARAMETER keepalives`);
    t.ok(keepalives.every((r) => hdr(r, 'Session') === res.session!.sessionId), 'each with the session');
    t.notOk(reqs.some((r) => r.method === 'OPTIONS' && r.time > reqs[3]!.time), 'no OPTIONS keepalive: Public lists GET_PARAMETER');
    const serverRtcp = Number(/server_port=\d+-(\d+)/.exec(res.outcome.steps[2]!.answer)![1]);
    const rr = tsharkRtcpFrom(file, rtp + 1, serverRtcp);
    t.ok(rr.length >= 1 && rr.every((pt) => pt === 201), `${rr.length} receiver reports (RTCP RR) from camtap's RTCP port to the camera's`);
    t.equal(stats.reports, rr.length, 'as many as the receiver counted');
  });
}

t.test('a camera whose Public lacks GET_PARAMETER gets OPTIONS as keepalive; losing the connection resolves closed', async (t) => {
  let pump: (() => void) | null = null;
  const fake = await fakeCamera(t, (req, c) => {
    switch (req.method) {
      case 'OPTIONS':
        return c.send(answer(req, 200, ['Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN']));
      case 'DESCRIBE':
        return c.send(answer(req, 200, ['Content-Type: application/sdp', `Content-Base: ${req.url}/`], SDP));
      case 'SETUP':
        return c.send(answer(req, 200, ['Session: fake1;timeout=2', 'Transport: RTP/AVP/TCP;unicast;interleaved=0-1']));
      case 'PLAY':
        c.send(answer(req, 200, ['Session: fake1']));
        pump = pumpRtp(c);
        return;
      default:
        return c.send(answer(req, 200, ['Session: fake1']));
    }
  });
  t.teardown(() => pump?.());
  const base = `rtsp://127.0.0.1:${fake.port}/live`;
  const steps: RtspStep[] = [
    { kind: 'rtsp', method: 'OPTIONS', url: base, headers: {}, note: '' },
    { kind: 'rtsp', method: 'DESCRIBE', url: base, headers: { accept: 'application/sdp' }, note: '' },
    { kind: 'rtsp', method: 'SETUP', url: `${base}/trackID=0`, headers: { transport: 'RTP/AVP/TCP;unicast;interleaved=0-1', session: 'captured-old', cseq: '7' }, track: { index: 0, lower: 'tcp', interleaved: [0, 1] }, note: '' },
    { kind: 'rtsp', method: 'PLAY', url: `${base}/`, headers: { range: 'npt=0.000-' }, note: '' },
  ];
  const res = await startRtspReplay({ camera: { name: 'cam9', address: '127.0.0.1' }, steps, host: '127.0.0.1', recorder: null, log: silentLogger });
  t.equal(res.outcome.ok, true, res.outcome.reason ?? 'ok');
  const conn = fake.conns[0]!;
  t.equal(conn.requests[2]!.header('Session'), null, 'the captured Session is not sent');
  t.equal(conn.requests[2]!.cseq, 3, 'nor the captured CSeq');
  t.ok(await until(() => conn.requests.filter((r) => r.method === 'OPTIONS').length >= 2, 5000), 'OPTIONS keepalive after PLAY');
  t.equal(conn.requests.filter((r) => r.method === 'GET_PARAMETER').length, 0, 'no GET_PARAMETER');
  t.equal(conn.requests.at(-1)!.header('Session'), 'fake1');
  t.ok(res.session!.stats().packets > 0, 'interleaved RTP counted');
  conn.sock.destroy();
  t.match(await res.session!.closed, /closed/, 'closed resolves with the connection loss');
  t.same(await res.session!.stop(), [], 'nothing to tear down');
});

t.test('a camera that cannot be reached: the reason names the first step and why', async (t) => {
  const p = await freePort();
  const res = await startRtspReplay({ camera: { name: 'cam1', address: '127.0.0.1' }, steps: [{ kind: 'rtsp', method: 'OPTIONS', url: `rtsp://127.0.0.1:${p}/x`, headers: {}, note: '' }], host: '127.0.0.1', recorder: null, log: silentLogger });
  t.equal(res.outcome.ok, false);
  t.equal(res.outcome.reason, `OPTIONS rtsp://127.0.0.1:${p}/x: cannot connect: ECONNREFUSED`);
  t.match(res.outcome.steps, [{ step: 1, status: null, ok: false }]);
});
