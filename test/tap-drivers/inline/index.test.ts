/**
 * The inline tap records relayed traffic as a capture would have shown it. The judge is
 * tshark reading the frames (written as pcapng by the project's block encoders): valid
 * IPv4/IPv6/TCP/UDP checksums, no TCP analysis complaints, the bytes of each direction
 * back exactly, RTSP and RTP dissected as in the lab capture the bytes came from.
 */
import t from 'tap';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import driver, { InlineTap, meta, describeFilter } from '../../../tap-drivers/inline/index.js';
import { PluginHost } from '../../../core/plugin-host.js';
import { silentLogger } from '../../../core/logger.js';
import { toBpf } from '../../../core/capture/filter.js';
import type { FilterSpec } from '../../../core/contracts/filter.js';
import { have } from '../../helpers/peers.js';
import { CAPTURES, noTshark, recordLab, openTap, tempDir, tshark, tsharkFields, tsharkFollow, writePcapng, type Kept } from './capture.js';

const skip = noTshark;
const CHECKS = ['-o', 'ip.check_checksum:TRUE', '-o', 'tcp.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE'];
/** Wireshark's checksum status values (epan/proto.h: PROTO_CHECKSUM_E_BAD = 0, GOOD = 1). */
const GOOD = '1';
const orig = path.join(CAPTURES, 'lo_udp_h264.pcap');

function write(t: Parameters<typeof tempDir>[0], frames: Kept[], name = 'inline.pcapng'): string {
  const file = path.join(tempDir(t), name);
  writePcapng(file, frames);
  return file;
}

t.test('exports a tap-driver plugin for core ^0.1.0, loaded as a built-in', async (t) => {
  t.match(meta, { name: 'inline', kind: 'tap-driver', core: '^0.1.0' });
  t.equal(driver.meta, meta);
  const host = new PluginHost({ log: silentLogger, dataDir: '/nonexistent' });
  await host.loadBuiltins();
  t.equal(host.tapDriver('inline', 'gw').meta.name, 'inline');
  t.type(driver.create({ id: 1, name: 'gw', driver: 'inline', filter: {}, options: {} }, { log: silentLogger, options: {}, dataDir: '/x' }), InlineTap);
});

t.test('translate() says the filter is a predicate, shown as the BPF it equals', async (t) => {
  t.equal(driver.translate({}), 'inline (relayed traffic; no filter)');
  t.equal(driver.translate({ hosts: ['10.0.0.5'], ports: [554] }), 'inline (relayed traffic; filter applied as a predicate: (ip host 10.0.0.5) and (port 554))');
  t.equal(describeFilter({ ports: [554], raw: 'vlan 5' }), 'inline (relayed traffic; filter applied as a predicate: (port 554); raw "vlan 5" ignored)');
});

for (const v6 of [false, true]) {
  const family = v6 ? 'IPv6' : 'IPv4';
  // IPv6 on a port no dissector claims, to show the bytes decode as RTSP when told so.
  const rtspPort = v6 ? 10554 : 8554;
  const decode = ['-d', `tcp.port==${rtspPort},rtsp`, '-d', 'udp.port==12260,rtp'];

  t.test(`${family}: an RTSP dialog and its RTP, as tshark reads them: valid checksums, the same bytes, the same RTSP and RTP`, { skip }, async (t) => {
    const { tap, frames } = openTap(t);
    const before = Date.now();
    const lab = recordLab(tap.recorder, v6, rtspPort, 60);
    const after = Date.now();
    const file = write(t, frames);

    // Every header checksum verified good by tshark (status 1), no packet without its check.
    const ipField = v6 ? 'ipv6.version' : 'ip.checksum.status';
    const rows = tsharkFields(file, [ipField, 'tcp.checksum.status', 'udp.checksum.status', v6 ? 'ipv6.hlim' : 'ip.ttl'], CHECKS);
    t.equal(rows.length, frames.length, 'tshark reads every frame');
    t.ok(rows.every(([ip]) => ip === (v6 ? '6' : GOOD)), v6 ? 'IPv6 headers' : 'IPv4 header checksums good');
    t.ok(rows.every(([, tcp, udp]) => tcp === GOOD || udp === GOOD), 'TCP/UDP checksums good');
    t.ok(rows.every((r) => r[3] === '64'), 'TTL / hop limit 64');
    t.equal(tshark(['-r', file, ...CHECKS, '-Y', 'ip.checksum.status == 0 || tcp.checksum.status == 0 || udp.checksum.status == 0']), '', 'no bad checksum');
    t.equal(tshark(['-r', file, ...decode, '-Y', 'tcp.analysis.flags || _ws.expert.severity >= warning']), '', 'no TCP analysis or dissector warnings');

    // The connection: handshake, then each write with PSH on its last segment, then FIN each way.
    const flags = tsharkFields(file, ['tcp.flags'], ['-Y', 'tcp']).map(([f]) => f);
    t.same(flags.slice(0, 3), ['0x0002', '0x0012', '0x0010'], 'SYN, SYN-ACK, ACK');
    t.same(flags.slice(-3), ['0x0011', '0x0011', '0x0010'], 'FIN-ACK, FIN-ACK, ACK');
    t.same(flags.slice(3, -3), lab.writes.map(() => '0x0018'), 'each RTSP message one PSH-ACK segment');

    // The bytes each way, as tshark reassembles the stream.
    const follow = tsharkFollow(file, 0, decode);
    t.ok(follow.client.equals(Buffer.concat(lab.writes.filter((w) => w.fromClient).map((w) => w.data))), 'client bytes back exactly');
    t.ok(follow.server.equals(Buffer.concat(lab.writes.filter((w) => !w.fromClient).map((w) => w.data))), 'server bytes back exactly');

    // RTSP dissected as in the lab capture.
    const rtspOf = (f: string, d: string[]) => tsharkFields(f, ['rtsp.request', 'rtsp.response', 'rtsp.transport', 'rtsp.session'], [...d, '-Y', 'rtsp']).map((r) => r.join('|'));
    t.same(rtspOf(file, decode), rtspOf(orig, []), 'the same RTSP requests, responses, transports and sessions');
    t.match(tshark(['-r', file, ...decode, '-Y', 'sdp', '-T', 'fields', '-e', 'sdp.media']), /video 0 RTP\/AVP 96/, 'the SDP inside DESCRIBE');

    // RTP dissected as in the lab capture.
    const rtpOf = (f: string, d: string[], filter: string) => tsharkFields(f, ['rtp.ssrc', 'rtp.seq', 'rtp.timestamp', 'rtp.marker'], [...d, '-Y', filter]).map((r) => r.join('|'));
    const want = rtpOf(orig, ['-d', 'udp.port==12260,rtp'], 'rtp && udp.srcport == 54872').slice(0, 60);
    t.same(rtpOf(file, decode, 'rtp'), want, 'the same 60 RTP packets');

    // IPv4 Identification increments per datagram.
    if (!v6) {
      const ids = tsharkFields(file, ['ip.id']).map(([id]) => parseInt(id!, 16));
      t.ok(ids.every((id, i) => i === 0 || id === ((ids[i - 1]! + 1) & 0xffff)), 'IP ID increments');
    }

    // Wall-clock nanosecond timestamps, never going backwards.
    const ns = frames.map((f) => BigInt(f.tsSec) * 1_000_000_000n + BigInt(f.tsNsec));
    t.ok(ns.every((x, i) => i === 0 || x >= ns[i - 1]!), 'monotonic');
    t.ok(ns[0]! >= BigInt(before) * 1_000_000n && ns.at(-1)! < BigInt(after + 1) * 1_000_000n, 'within the wall-clock time of the calls');
    t.ok(frames.every((f) => f.linkType === 101 && f.tapId === 7), 'LINKTYPE_RAW frames of the tap id');

    // status(): what tshark counts.
    const lens = tsharkFields(file, ['frame.len']).map(([l]) => Number(l));
    t.match(tap.status(), { state: 'running', packets: lens.length, bytes: lens.reduce((a, b) => a + b, 0), drops: 0 });
  });

  t.test(`${family}: a write larger than a segment becomes full segments, PSH on the last; 200 KB come back whole`, { skip }, async (t) => {
    const { tap, frames } = openTap(t);
    const seg = v6 ? 1428 : 1448;
    const conn = tap.recorder.tcp({ ip: v6 ? '2001:db8::1' : '10.0.0.1', port: 40000 }, { ip: v6 ? '2001:db8::2' : '10.0.0.2', port: 80 });
    const small = Buffer.alloc(5000, 0x61);
    const big = Buffer.alloc(200_000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7 + (i >> 8)) & 0xff;
    conn.fromClient(small);
    conn.fromServer(big);
    conn.fromClient(Buffer.from('bye'));
    conn.close();
    const file = write(t, frames);
    const rows = tsharkFields(file, ['tcp.srcport', 'tcp.len', 'tcp.flags.push', 'tcp.checksum.status'], CHECKS);
    t.ok(rows.every((r) => r[3] === GOOD), 'every TCP checksum good');
    const data = rows.filter((r) => r[1] !== '0');
    const fromClient = data.filter((r) => r[0] === '40000');
    t.same(fromClient.map((r) => [Number(r[1]), r[2]]), [[seg, '0'], [seg, '0'], [seg, '0'], [5000 - 3 * seg, '1'], [3, '1']], '5000 bytes: three full segments and the rest with PSH');
    const fromServer = data.filter((r) => r[0] === '80');
    t.equal(fromServer.length, Math.ceil(200_000 / seg), '200 KB in full segments');
    t.ok(fromServer.slice(0, -1).every((r) => Number(r[1]) === seg && r[2] === '0'), 'all but the last full, without PSH');
    t.equal(fromServer.at(-1)![2], '1', 'PSH on the last');
    t.equal(tshark(['-r', file, '-Y', 'tcp.analysis.flags']), '', 'no TCP analysis complaints (window never overrun, no unseen ACKs)');
    const follow = tsharkFollow(file, 0);
    t.ok(follow.server.equals(big), '200 KB back byte for byte');
    t.ok(follow.client.equals(Buffer.concat([small, Buffer.from('bye')])), 'client bytes back');
  });
}

t.test('close() records a FIN each way once; writes after it are dropped and counted', { skip }, async (t) => {
  const { tap, frames } = openTap(t);
  const conn = tap.recorder.tcp({ ip: '10.0.0.1', port: 5000 }, { ip: '10.0.0.2', port: 554 });
  conn.fromClient(Buffer.from('OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n'));
  conn.close();
  conn.close();
  conn.fromServer(Buffer.alloc(3000));
  const file = write(t, frames);
  const rows = tsharkFields(file, ['tcp.flags.fin', 'ip.src'], CHECKS);
  t.same(rows.filter((r) => r[0] === '1').map((r) => r[1]), ['10.0.0.1', '10.0.0.2'], 'one FIN from each end');
  t.equal(rows.length, 3 + 1 + 3, 'handshake, one segment, FIN-ACK, FIN-ACK, ACK');
  t.equal(tshark(['-r', file, '-Y', 'tcp.analysis.flags']), '', 'a clean close for tshark');
  t.match(tap.counters, { afterClose: 3, drops: 3 }, 'the 3000 bytes after close: three segments dropped');
  t.equal(tap.status().drops, 3);
});

t.test('UDP: the largest datagram each family carries is recorded, one byte more is dropped and counted', { skip }, async (t) => {
  const { tap, frames } = openTap(t);
  const v4 = { src: { ip: '10.0.0.1', port: 5004 }, dst: { ip: '10.0.0.2', port: 6000 } };
  const v6 = { src: { ip: 'fd00::1', port: 5004 }, dst: { ip: 'fd00::2', port: 6000 } };
  t.doesNotThrow(() => {
    tap.recorder.udp(v4.src, v4.dst, Buffer.alloc(65507, 1));
    tap.recorder.udp(v4.src, v4.dst, Buffer.alloc(65508, 1));
    tap.recorder.udp(v6.src, v6.dst, Buffer.alloc(65527, 2));
    tap.recorder.udp(v6.src, v6.dst, Buffer.alloc(65528, 2));
  });
  const file = write(t, frames);
  const rows = tsharkFields(file, ['udp.length', 'udp.checksum.status', 'ip.checksum.status'], CHECKS);
  t.same(rows.map((r) => r[0]), ['65515', '65535'], 'tshark reads the two datagrams that fit (UDP length = payload + 8)');
  t.ok(rows.every((r) => r[1] === GOOD), 'their UDP checksums are good');
  t.equal(rows[0]![2], GOOD, 'a 65535-byte IPv4 packet with a good header checksum');
  t.match(tap.counters, { oversize: 2, drops: 2, packets: 2 });
});

t.test('a datagram whose checksum computes to zero carries 0xFFFF (RFC 768), which tshark accepts', { skip }, async (t) => {
  const { tap, frames } = openTap(t);
  // Hand computation of the one's-complement sum (RFC 1071) of the pseudo-header (src,
  // dst, protocol 17, UDP length 12), the UDP header (ports 1000 -> 2000, length 12,
  // checksum 0) and a first payload word 0: the last payload word is chosen to make the
  // total 0xFFFF, so the checksum (its complement) is 0 and must be sent as 0xFFFF.
  const words = [0x0a00, 0x0001, 0x0a00, 0x0002, 17, 12, 1000, 2000, 12, 0, 0];
  let s = words.reduce((a, b) => a + b, 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  const last = 0xffff - s;
  const payload = Buffer.from([0, 0, last >> 8, last & 0xff]);
  tap.recorder.udp({ ip: '10.0.0.1', port: 1000 }, { ip: '10.0.0.2', port: 2000 }, payload);
  t.equal(frames[0]!.data.readUInt16BE(26), 0xffff, 'checksum field 0xFFFF');
  const file = write(t, frames);
  t.same(tsharkFields(file, ['udp.checksum', 'udp.checksum.status'], CHECKS), [['0xffff', GOOD]]);
});

t.test('a bad checksum would be seen: tshark flags a frame whose payload changed after it was written', { skip }, async (t) => {
  const { tap, frames } = openTap(t);
  const conn = tap.recorder.tcp({ ip: '10.0.0.1', port: 5000 }, { ip: '10.0.0.2', port: 554 });
  conn.fromClient(Buffer.from('DESCRIBE rtsp://10.0.0.2/ RTSP/1.0\r\nCSeq: 2\r\n\r\n'));
  tap.recorder.udp({ ip: '10.0.0.2', port: 5000 }, { ip: '10.0.0.1', port: 6000 }, Buffer.from('abcd'));
  frames[3]!.data[50] ^= 0x20;
  frames[4]!.data[30] ^= 0x20;
  frames[0]!.data[8] = 63; // TTL: the IPv4 header checksum no longer matches
  const file = write(t, frames);
  const rows = tsharkFields(file, ['ip.checksum.status', 'tcp.checksum.status', 'udp.checksum.status'], CHECKS);
  t.same([rows[0]![0], rows[3]![1], rows[4]![2]], ['0', '0', '0'], 'PROTO_CHECKSUM_E_BAD on all three');
});

t.test('before open() and after close() frames are dropped and counted; open() resolves on abort', async (t) => {
  const tap = new InlineTap({ id: 3, name: 'gw', driver: 'inline', filter: {}, options: {} }, { log: silentLogger, options: {}, dataDir: '/x' });
  const rec = tap.recorder;
  t.equal(tap.status().state, 'idle');
  const early = rec.tcp({ ip: '10.0.0.1', port: 5000 }, { ip: '10.0.0.2', port: 554 });
  rec.udp({ ip: '10.0.0.2', port: 5000 }, { ip: '10.0.0.1', port: 6000 }, Buffer.alloc(10));
  t.match(tap.status(), { packets: 0, drops: 4 }, 'handshake and datagram dropped');
  const got: number[] = [];
  const ac = new AbortController();
  const done = tap.open((f) => got.push(f.capLen), ac.signal);
  t.equal(tap.status().state, 'running');
  early.fromClient(Buffer.alloc(10));
  rec.udp({ ip: '10.0.0.2', port: 5000 }, { ip: '10.0.0.1', port: 6000 }, Buffer.alloc(10));
  t.same(got, [20 + 20 + 10, 20 + 8 + 10], 'a connection begun before open goes on');
  ac.abort();
  await done;
  t.equal(tap.status().state, 'stopped');
  rec.udp({ ip: '10.0.0.2', port: 5000 }, { ip: '10.0.0.1', port: 6000 }, Buffer.alloc(10));
  early.close();
  t.match(tap.status(), { packets: 2, bytes: 88, drops: 8 });
  t.match(tap.counters, { notOpen: 8 });
  await tap.close();
  await t.rejects(tap.open(() => {}, new AbortController().signal), { code: 'CAMTAP_ERR_TAP' }, 'a tap opens once');
});

t.test('the recorder never throws: bad endpoints, bad data and a throwing sink are counted', async (t) => {
  const tap = new InlineTap({ id: 3, name: 'gw', driver: 'inline', filter: {}, options: {} }, { log: silentLogger, options: {}, dataDir: '/x' });
  let calls = 0;
  void tap.open(() => {
    calls++;
    throw new Error('store is gone');
  }, new AbortController().signal);
  t.teardown(() => tap.close());
  const rec = tap.recorder;
  t.doesNotThrow(() => {
    rec.udp({ ip: 'camera.local', port: 5000 }, { ip: '10.0.0.1', port: 6000 }, Buffer.alloc(4));
    rec.udp({ ip: '10.0.0.2', port: 70000 }, { ip: '10.0.0.1', port: 6000 }, Buffer.alloc(4));
    rec.udp({ ip: '10.0.0.2', port: 5000 }, { ip: '10.0.0.1', port: 6000 }, 'text' as unknown as Buffer);
    const bad = rec.tcp({ ip: '300.1.1.1', port: 1 }, { ip: '10.0.0.1', port: 554 });
    bad.fromClient(Buffer.alloc(10));
    bad.close();
    rec.udp(null as unknown as { ip: string; port: number }, { ip: '10.0.0.1', port: 6000 }, Buffer.alloc(4));
    rec.udp({ ip: '10.0.0.2', port: 5000 }, { ip: '10.0.0.1', port: 6000 }, Buffer.alloc(4));
  });
  t.equal(calls, 1, 'only the valid datagram reached the sink');
  t.match(tap.counters, { invalid: 3 + 3 + 1 + 1, sinkErrors: 1, packets: 0 });
  t.match(tap.status(), { drops: 9, error: 'store is gone' });
});

t.test('IPv4-mapped IPv6 endpoints (a dual-stack socket) are recorded as IPv4', { skip }, async (t) => {
  const { tap, frames } = openTap(t);
  tap.recorder.udp({ ip: '::ffff:10.1.2.3', port: 5004 }, { ip: '10.1.2.4', port: 6000 }, Buffer.from('x'));
  const conn = tap.recorder.tcp({ ip: '::ffff:10.1.2.4', port: 50000 }, { ip: '2001:db8::9', port: 554 });
  conn.close();
  const file = write(t, frames);
  const rows = tsharkFields(file, ['ip.src', 'ip.dst', 'ipv6.src', 'ipv6.dst', 'udp.checksum.status', 'tcp.checksum.status'], CHECKS);
  t.same(rows[0]!.slice(0, 2), ['10.1.2.3', '10.1.2.4'], 'IPv4 on the wire');
  t.same(rows[1]!.slice(2, 4), ['::ffff:10.1.2.4', '2001:db8::9'], 'with an IPv6 peer, one IPv6 connection');
  t.equal(rows[0]![4], GOOD);
  t.ok(rows.slice(1).every((r) => r[5] === GOOD));
});

t.test('the filter keeps what its BPF equivalent keeps, decided per direction', { skip: skip || (have('tcpdump') ? false : 'tcpdump is not installed') }, async (t) => {
  const specs: FilterSpec[] = [{ ports: [8554] }, { protocols: ['rtp'] }, { hosts: ['127.0.1.11'], direction: 'src' }, { hosts: ['::1'] }];
  const all = openTap(t);
  recordLab(all.tap.recorder, false, 8554, 20);
  recordLab(all.tap.recorder, true, 8554, 20);
  const unfiltered = write(t, all.frames, 'all.pcapng');
  for (const spec of specs) {
    const one = openTap(t, spec);
    recordLab(one.tap.recorder, false, 8554, 20);
    recordLab(one.tap.recorder, true, 8554, 20);
    const bpf = toBpf(spec, undefined, { vlan: false });
    const want = execFileSync('tcpdump', ['-nn', '-r', unfiltered, bpf], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n').filter(Boolean).length;
    t.equal(one.frames.length, want, `${JSON.stringify(spec)}: as many frames as tcpdump keeps with ${bpf}`);
    t.equal(one.tap.counters.filtered, all.frames.length - want, 'the rest counted as filtered, not as drops');
    t.equal(one.tap.status().drops, 0);
    t.equal(one.tap.status().filter, describeFilter(spec));
  }
});
