/**
 * Recording an upstream camera session: a fake InlineRecorder collects what the
 * session reports, and the ground truth is taken outside camtap: a TCP relay between
 * the session and the lab camera keeps every byte each way, and tcpdump on loopback
 * captures the UDP datagrams (read back with tshark).
 *
 * - fromClient is byte for byte what reached the camera, and parses as the requests the
 *   session made (OPTIONS, DESCRIBE, SETUP, PLAY, keepalives, TEARDOWN);
 * - fromServer is byte for byte what the camera sent (over TCP the media is in it, as
 *   interleaved frames);
 * - over UDP every datagram the camera sent to the session's RTP port, up to the last one
 *   recorded, was recorded, with its real endpoints, and their count is the RTP packets
 *   the session received.
 */
import t, { type Test } from 'tap';
import { createServer, connect, type Socket } from 'node:net';
import path from 'node:path';
import type { Endpoint, InlineRecorder } from '../../../core/contracts/inline.js';
import { UpstreamSession } from '../../../core/rtsp-client/upstream.js';
import { MessageStreamParser, type WireMessage } from '../../../core/wire/rtsp-message.js';
import { parseTransport } from '../../../core/wire/rtsp-transport.js';
import { cameraMissing, freePort, have, run, startCamera, startTcpdump } from '../../helpers/peers.js';

const skip = (await cameraMissing()) ?? false;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Recorded {
  tcp: Array<{ client: Endpoint; server: Endpoint; fromClient: Buffer[]; fromServer: Buffer[]; closes: number }>;
  udp: Array<{ src: Endpoint; dst: Endpoint; payload: Buffer }>;
}

function fakeRecorder(): { recorder: InlineRecorder; rec: Recorded } {
  const rec: Recorded = { tcp: [], udp: [] };
  const recorder: InlineRecorder = {
    tcp(client, server) {
      const c = { client: { ...client }, server: { ...server }, fromClient: [] as Buffer[], fromServer: [] as Buffer[], closes: 0 };
      rec.tcp.push(c);
      return {
        fromClient: (d) => c.fromClient.push(Buffer.from(d)),
        fromServer: (d) => c.fromServer.push(Buffer.from(d)),
        close: () => void c.closes++,
      };
    },
    udp(src, dst, payload) {
      rec.udp.push({ src: { ...src }, dst: { ...dst }, payload: Buffer.from(payload) });
    },
  };
  return { recorder, rec };
}

/** A TCP relay to `port` keeping the bytes each way (what a tap between the two would see). */
async function relay(t: Test, port: number): Promise<{ port: number; up: Buffer[]; down: Buffer[]; clientPort: () => number }> {
  const up: Buffer[] = [];
  const down: Buffer[] = [];
  let clientPort = 0;
  const socks: Socket[] = [];
  const server = createServer((c) => {
    clientPort = c.remotePort ?? 0;
    const u = connect(port, '127.0.0.1');
    socks.push(c, u);
    c.on('data', (d: Buffer) => {
      up.push(Buffer.from(d));
      u.write(d);
    });
    u.on('data', (d: Buffer) => {
      down.push(Buffer.from(d));
      c.write(d);
    });
    c.on('close', () => u.end());
    u.on('close', () => c.end());
    c.on('error', () => {});
    u.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const s of socks) s.destroy();
    server.close();
  });
  const a = server.address();
  return { port: typeof a === 'object' && a ? a.port : 0, up, down, clientPort: () => clientPort };
}

function parseStream(bytes: Buffer): { messages: WireMessage[]; frames: Array<[number, number]>; errors: number } {
  const messages: WireMessage[] = [];
  const frames: Array<[number, number]> = [];
  let errors = 0;
  const p = new MessageStreamParser({ onMessage: (m) => messages.push(m), onInterleaved: (ch, b) => frames.push([ch, b.length]), onError: () => errors++ });
  p.push(bytes, null);
  return { messages, frames, errors };
}


for (const transport of ['udp', 'tcp'] as const) {
  t.test(`${transport}: the recorder gets the camera session exactly as it went over the wire`, { skip }, async (t) => {
    const camPort = await freePort();
    const cam = await startCamera({ port: camPort });
    t.teardown(() => cam.stop());
    const r = await relay(t, camPort);
    const dir = t.testdir({});
    const pcap = path.join(dir, 'lo.pcap');
    const dump = transport === 'udp' && have('tcpdump') && have('tshark') ? await startTcpdump({ iface: 'lo', out: pcap, filter: 'udp and host 127.0.0.1' }) : null;
    if (dump) t.teardown(() => dump.stop());
    const { recorder, rec } = fakeRecorder();
    const s = new UpstreamSession({ url: `rtsp://127.0.0.1:${r.port}/stream1`, transport, key: 'k', camera: 'cam', recorder, keepaliveSec: 1 });
    await s.start();
    await sleep(5600); // five keepalives and one receiver report
    await s.stop();
    await sleep(300); // what was in flight
    if (dump) await dump.stop('SIGINT');

    t.equal(rec.tcp.length, 1, 'one TCP connection');
    const c = rec.tcp[0]!;
    t.same(c.client, { ip: '127.0.0.1', port: r.clientPort() }, "camtap's end as the camera saw it");
    t.same(c.server, { ip: '127.0.0.1', port: r.port });
    t.equal(c.closes, 1, 'closed once');
    t.same(Buffer.concat(c.fromClient), Buffer.concat(r.up), 'fromClient: byte for byte what reached the camera');
    t.same(Buffer.concat(c.fromServer), Buffer.concat(r.down), 'fromServer: byte for byte what the camera sent');

    const sent = parseStream(Buffer.concat(c.fromClient));
    t.equal(sent.errors, 0);
    const methods = sent.messages.map((m) => m.method);
    t.same(methods.slice(0, 4), ['OPTIONS', 'DESCRIBE', 'SETUP', 'PLAY'], 'the set-up requests');
    t.equal(methods[methods.length - 1], 'TEARDOWN');
    t.ok(methods.filter((m) => m === 'GET_PARAMETER').length >= 4, 'keepalives (the camera supports GET_PARAMETER)');
    t.same(sent.messages.map((m) => m.cseq), sent.messages.map((_, i) => i + 1), 'CSeq 1, 2, 3, ...');

    const got = parseStream(Buffer.concat(c.fromServer));
    t.equal(got.errors, 0);
    const setupAnswer = got.messages[2]!;
    const tr = parseTransport(setupAnswer.header('Transport') ?? '')[0]!;
    if (transport === 'tcp') {
      t.equal(rec.udp.length, 0, 'no UDP');
      // As over UDP: frames that arrive while the session stops are recorded, not counted.
      const inRec = got.frames.filter(([ch]) => ch === tr.interleaved![0]).length;
      t.ok(inRec >= s.stats.rtpReceived && inRec <= s.stats.rtpReceived + 64, `interleaved RTP frames in fromServer: every packet the session received, plus the frame in flight at the stop (${inRec} recorded, ${s.stats.rtpReceived} received)`);
      const rrs = parseStream(Buffer.concat(c.fromClient)).frames.filter(([ch]) => ch === tr.interleaved![1]);
      t.equal(rrs.length, s.stats.reportsSent, 'receiver reports on the RTCP channel');
      t.ok(rrs.length >= 1);
      return;
    }
    const [rtpPort, rtcpPort] = tr.clientPorts!;
    const [srvRtp, srvRtcp] = tr.serverPorts!;
    const rtpIn = rec.udp.filter((d) => d.dst.port === rtpPort);
    t.ok(rtpIn.every((d) => d.src.ip === '127.0.0.1' && d.src.port === srvRtp && d.dst.ip === '127.0.0.1'), "RTP from the camera's server_port to our client_port");
    // Datagrams that land while the session stops are recorded (they were on the wire: the
    // tcpdump check below is the exact one) but no longer counted as received: at most the
    // rest of the frame in flight at the stop (a keyframe is tens of packets).
    t.ok(rtpIn.length >= s.stats.rtpReceived && rtpIn.length <= s.stats.rtpReceived + 64, `one recorded datagram per RTP packet received, plus the frame in flight at the stop (${rtpIn.length} recorded, ${s.stats.rtpReceived} received)`);
    t.ok(rtpIn.every((d) => d.payload[0]! >> 6 === 2), 'RTP v2');
    const rtcpIn = rec.udp.filter((d) => d.dst.port === rtcpPort);
    t.equal(rtcpIn.length, s.stats.rtcpReceived, 'RTCP from the camera');
    const rrOut = rec.udp.filter((d) => d.src.port === rtcpPort);
    t.equal(rrOut.length, s.stats.reportsSent, 'our receiver reports, recorded as sent');
    t.ok(rrOut.length >= 1 && rrOut.every((d) => d.dst.port === srvRtcp && d.payload[1] === 201), 'RR (PT 201) to the camera RTCP port');
    if (!dump) {
      t.comment('tcpdump or tshark missing: no capture to compare with');
      return;
    }
    const out = await run('tshark', ['-r', pcap, '-Y', `udp.dstport == ${rtpPort} && udp.srcport == ${srvRtp}`, '-T', 'fields', '-e', 'udp.payload']);
    const wire = out.stdout.trim().split('\n').filter(Boolean).map((h) => Buffer.from(h.replace(/:/g, ''), 'hex'));
    const recorded = rtpIn.map((d) => d.payload);
    t.ok(wire.length >= recorded.length, `tcpdump saw ${wire.length} datagrams, ${recorded.length} recorded`);
    t.same(wire.slice(0, recorded.length), recorded, 'every datagram on the wire up to the last recorded one was recorded, in order, byte for byte');
  });
}
