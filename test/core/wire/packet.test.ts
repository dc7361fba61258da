import t, { type Test } from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TapFrame } from '../../../core/contracts/frame.js';
import { DecodeStatus, PacketDecoder, PacketMeta, dstAddr, endpoint, parseIp, srcAddr } from '../../../core/wire/packet.js';

// Ground truth: tshark's dissection of the real captures and of hand-built frames (written
// to pcap files here with a minimal writer, so the code under test never reads them).

const CAPTURES = fileURLToPath(new URL('../../../fixtures/captures/', import.meta.url));
const HAVE_TSHARK = spawnSync('tshark', ['--version'], { stdio: 'ignore' }).status === 0;
const noTshark = HAVE_TSHARK ? false : 'tshark is not installed';
const tmp = mkdtempSync(join(tmpdir(), 'camtap-packet-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

function tsharkFields(file: string, fields: string[]): string[][] {
  const args = ['-r', file, '-T', 'fields', '-E', 'occurrence=f'];
  for (const f of fields) args.push('-e', f);
  const out = execFileSync('tshark', args, { encoding: 'utf8', maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'ignore'] });
  return out
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split('\t'));
}

/** The frames of a classic little-endian pcap (pcap §4-5), read by hand. */
function pcapFrames(file: string): TapFrame[] {
  const b = readFileSync(file);
  const linkType = b.readUInt32LE(20) & 0x03ffffff;
  const frames: TapFrame[] = [];
  for (let p = 24; p + 16 <= b.length; ) {
    const capLen = b.readUInt32LE(p + 8);
    frames.push({ tapId: 0, tsSec: b.readUInt32LE(p), tsNsec: b.readUInt32LE(p + 4) * 1000, linkType, buf: b, off: p + 16, capLen, origLen: b.readUInt32LE(p + 12) });
    p += 16 + capLen;
  }
  return frames;
}

/** Writes frames as a classic pcap with one link type, one second apart unless given. */
function writePcap(file: string, linkType: number, frames: Array<Buffer | { data: Buffer; sec: number; origLen?: number }>): void {
  const h = Buffer.alloc(24);
  h.writeUInt32LE(0xa1b2c3d4, 0);
  h.writeUInt16LE(2, 4);
  h.writeUInt16LE(4, 6);
  h.writeUInt32LE(262144, 16);
  h.writeUInt32LE(linkType, 20);
  const parts: Buffer[] = [h];
  frames.forEach((f, i) => {
    const { data, sec, origLen } = Buffer.isBuffer(f) ? { data: f, sec: 1_700_000_000 + i, origLen: undefined } : f;
    const r = Buffer.alloc(16);
    r.writeUInt32LE(sec, 0);
    r.writeUInt32LE(data.length, 8);
    r.writeUInt32LE(origLen ?? data.length, 12);
    parts.push(r, data);
  });
  writeFileSync(file, Buffer.concat(parts));
}

function frameOf(data: Buffer, linkType: number, tsSec = 1_700_000_000, capLen = data.length): TapFrame {
  // Put the frame at an odd offset of a larger buffer: offsets in the result must be absolute.
  const buf = Buffer.concat([Buffer.alloc(7, 0xaa), data, Buffer.alloc(5, 0xbb)]);
  return { tapId: 0, tsSec, tsNsec: 0, linkType, buf, off: 7, capLen, origLen: data.length };
}

// ---------------------------------------------------------------------------------------
// Builders, straight from the RFC header layouts.

const v4 = (s: string): Buffer => Buffer.from(s.split('.').map(Number));
const v6 = (hex: string): Buffer => Buffer.from(hex.replace(/[^0-9a-f]/g, ''), 'hex');

/** RFC 768. Checksum 0 (none). */
function udp(sport: number, dport: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(sport, 0);
  h.writeUInt16BE(dport, 2);
  h.writeUInt16BE(8 + payload.length, 4);
  return Buffer.concat([h, payload]);
}

/** RFC 9293 §3.1, with `optWords` 32-bit words of NOP options. */
function tcp(sport: number, dport: number, seq: number, ack: number, flags: number, payload: Buffer, optWords = 0): Buffer {
  const h = Buffer.alloc(20 + optWords * 4, 1);
  h.writeUInt16BE(sport, 0);
  h.writeUInt16BE(dport, 2);
  h.writeUInt32BE(seq >>> 0, 4);
  h.writeUInt32BE(ack >>> 0, 8);
  h.writeUInt8(((5 + optWords) << 4) | ((flags >> 8) & 1), 12);
  h.writeUInt8(flags & 0xff, 13);
  h.writeUInt16BE(65535, 14);
  h.writeUInt16BE(0, 16);
  h.writeUInt16BE(0, 18);
  return Buffer.concat([h, payload]);
}

/** RFC 791 §3.1. */
function ipv4(proto: number, src: string, dst: string, payload: Buffer, o: { id?: number; mf?: boolean; fragOff?: number; optWords?: number; totalLen?: number } = {}): Buffer {
  const ihl = 5 + (o.optWords ?? 0);
  const h = Buffer.alloc(ihl * 4, 1);
  h.writeUInt8(0x40 | ihl, 0);
  h.writeUInt8(0, 1);
  h.writeUInt16BE(o.totalLen ?? ihl * 4 + payload.length, 2);
  h.writeUInt16BE(o.id ?? 0x1234, 4);
  h.writeUInt16BE((o.mf ? 0x2000 : 0) | ((o.fragOff ?? 0) >> 3), 6);
  h.writeUInt8(64, 8);
  h.writeUInt8(proto, 9);
  h.writeUInt16BE(0, 10);
  v4(src).copy(h, 12);
  v4(dst).copy(h, 16);
  let sum = 0;
  for (let i = 0; i < h.length; i += 2) sum += h.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  h.writeUInt16BE(~sum & 0xffff, 10);
  return Buffer.concat([h, payload]);
}

/** RFC 8200 §3; `payload` starts with whatever `next` names. */
function ipv6(next: number, src: Buffer, dst: Buffer, payload: Buffer): Buffer {
  const h = Buffer.alloc(40);
  h.writeUInt32BE(0x60000000, 0);
  h.writeUInt16BE(payload.length, 4);
  h.writeUInt8(next, 6);
  h.writeUInt8(64, 7);
  src.copy(h, 8);
  dst.copy(h, 24);
  return Buffer.concat([h, payload]);
}

/** An 8-octet-unit extension header (hop-by-hop, routing, destination options) of `units` * 8 bytes, PadN-filled. */
function ext(next: number, units: number, routing = false): Buffer {
  const b = Buffer.alloc(units * 8);
  b[0] = next;
  b[1] = units - 1;
  if (routing) {
    b[2] = 0; // type 0 with segments left 0: processed as if absent
    b[3] = 0;
  } else {
    b[2] = 1; // PadN
    b[3] = units * 8 - 4;
  }
  return b;
}

/** RFC 8200 §4.5 Fragment header. */
function frag6(next: number, offset: number, more: boolean, id: number): Buffer {
  const b = Buffer.alloc(8);
  b[0] = next;
  b.writeUInt16BE(offset | (more ? 1 : 0), 2);
  b.writeUInt32BE(id, 4);
  return b;
}

/** Ethernet II; `tags` are (TPID, TCI) pairs between the source address and the EtherType (802.1Q / 802.1ad). */
function eth(type: number, payload: Buffer, tags: Array<[number, number]> = []): Buffer {
  const addrs = Buffer.from('00163e000001' + '00163e000002', 'hex');
  const tagBytes = tags.map(([tpid, tci]) => {
    const b = Buffer.alloc(4);
    b.writeUInt16BE(tpid, 0);
    b.writeUInt16BE(tci, 2);
    return b;
  });
  const ty = Buffer.alloc(2);
  ty.writeUInt16BE(type, 0);
  return Buffer.concat([addrs, ...tagBytes, ty, payload]);
}

function sll(proto: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt16BE(0, 0);
  h.writeUInt16BE(1, 2); // ARPHRD_ETHER
  h.writeUInt16BE(6, 4);
  Buffer.from('00163e000001', 'hex').copy(h, 6);
  h.writeUInt16BE(proto, 14);
  return Buffer.concat([h, payload]);
}

function sll2(proto: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt16BE(proto, 0);
  h.writeUInt32BE(3, 4); // ifindex
  h.writeUInt16BE(1, 8); // ARPHRD_ETHER
  h.writeUInt8(0, 10);
  h.writeUInt8(6, 11);
  Buffer.from('00163e000001', 'hex').copy(h, 12);
  return Buffer.concat([h, payload]);
}

function afHeader(af: number, le: boolean): Buffer {
  const b = Buffer.alloc(4);
  if (le) b.writeUInt32LE(af);
  else b.writeUInt32BE(af);
  return b;
}

const pay = (n: number, seed = 1): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff));

const A6 = v6('2001:0db8:0000:0000:0001:0000:0000:0001');
const B6 = v6('fe80:0000:0000:0000:0216:3eff:fe00:0002');
const M6 = v6('0000:0000:0000:0000:0000:ffff:c000:0201'); // ::ffff:192.0.2.1

interface Expect {
  status: DecodeStatus;
  vlan?: number;
  src?: string;
  dst?: string;
  protocol?: number;
  sport?: number;
  dport?: number;
  payloadLen?: number;
}

function check(t: Test, dec: PacketDecoder, m: PacketMeta, f: TapFrame, e: Expect, name: string): void {
  const st = dec.decode(f, m);
  t.equal(st, e.status, `${name}: status`);
  if (e.status !== DecodeStatus.OK) return;
  const got = { vlan: m.vlan, src: srcAddr(m), dst: dstAddr(m), protocol: m.protocol, sport: m.sport, dport: m.dport, payloadLen: m.payloadLen };
  const want = { vlan: e.vlan ?? -1, src: e.src, dst: e.dst, protocol: e.protocol, sport: e.sport ?? 0, dport: e.dport ?? 0, payloadLen: e.payloadLen };
  t.same(got, want, `${name}: fields`);
  t.ok(m.payloadOff + m.payloadLen <= m.buf.length && m.payloadOff >= 0, `${name}: payload inside buf`);
}

// ---------------------------------------------------------------------------------------

t.test('every packet of the real captures decodes like tshark dissects it', { skip: noTshark }, async (t) => {
  const fields = ['ip.src', 'ip.dst', 'ip.proto', 'ip.len', 'udp.srcport', 'udp.dstport', 'udp.length', 'tcp.srcport', 'tcp.dstport', 'tcp.len', 'tcp.seq_raw', 'tcp.ack_raw', 'tcp.flags'];
  for (const f of ['netns_multi.pcap', 'lo_udp_h264.pcap', 'lo_tcp_interleaved_h264.pcap', 'netns_failover_replay_h264.pcap']) {
    const file = join(CAPTURES, f);
    const truth = tsharkFields(file, fields);
    const frames = pcapFrames(file);
    t.equal(frames.length, truth.length, `${f}: frames`);
    const dec = new PacketDecoder();
    const m = new PacketMeta();
    const mismatches: string[] = [];
    const protos = new Map<number, number>();
    frames.forEach((fr, i) => {
      const st = dec.decode(fr, m);
      const [src, dst, proto, ipLen, us, ud, ulen, ts, td, tlen, seq, ack, flags] = truth[i]!;
      const p = Number(proto);
      protos.set(p, (protos.get(p) ?? 0) + 1);
      const want =
        p === 17
          ? [src, dst, 17, Number(ipLen), Number(us), Number(ud), Number(ulen) - 8, 0, 0, 0]
          : p === 6
            ? [src, dst, 6, Number(ipLen), Number(ts), Number(td), Number(tlen), Number(seq), Number(ack), Number(flags)]
            : [src, dst, p, Number(ipLen), 0, 0, Number(ipLen) - 20, 0, 0, 0]; // ICMP etc.: the whole message (no IP options here)
      const got = [srcAddr(m), dstAddr(m), m.protocol, m.ipLen, m.sport, m.dport, m.payloadLen, m.tcpSeq, m.tcpAck, m.tcpFlags];
      if (st !== DecodeStatus.OK || JSON.stringify(got) !== JSON.stringify(want)) mismatches.push(`#${i + 1} st=${st} got ${JSON.stringify(got)} want ${JSON.stringify(want)}`);
    });
    t.same(mismatches.slice(0, 5), [], `${f}: every frame's addresses, protocol, ports, lengths, seq/ack/flags`);
    if (f !== 'lo_tcp_interleaved_h264.pcap') t.ok((protos.get(17) ?? 0) > 0, `${f}: has UDP`);
    if (f !== 'lo_udp_h264.pcap') t.ok((protos.get(6) ?? 0) > 0, `${f}: has TCP`);
    t.same(dec.counters, { notIp: 0, truncated: 0, badHeader: 0, unsupportedLink: 0, fragments: 0, reassembled: 0, fragmentsExpired: 0 });
  }
  // The ICMP port-unreachable frames of the failover capture: protocol 1, no ports.
  const file = join(CAPTURES, 'netns_failover_replay_h264.pcap');
  const icmp = tsharkFields(file, ['frame.number', 'ip.proto']).filter((r) => r[1] === '1');
  t.ok(icmp.length > 0, 'the capture has ICMP');
  const frames = pcapFrames(file);
  const dec = new PacketDecoder();
  const m = new PacketMeta();
  for (const [n] of icmp) {
    t.equal(dec.decode(frames[Number(n) - 1]!, m), DecodeStatus.OK);
    t.same([m.protocol, m.sport, m.dport], [1, 0, 0], `frame ${n}: ICMP has no ports`);
  }
});

t.test('link layers: VLAN, QinQ, Linux SLL/SLL2, BSD null both byte orders, LOOP, raw, IPv4/IPv6 link types', { skip: noTshark }, async (t) => {
  const u4 = ipv4(17, '10.1.2.3', '10.9.8.7', udp(5004, 6970, pay(100)));
  const t4 = ipv4(6, '192.168.0.10', '192.168.0.20', tcp(554, 40000, 0xfffffff0, 12345, 0x018, pay(33), 3), { optWords: 2 });
  const u6 = ipv6(17, A6, B6, udp(5006, 6972, pay(61)));
  const t6 = ipv6(6, B6, A6, tcp(8554, 50000, 1, 2, 0x010, pay(7)));
  const U4 = { src: '10.1.2.3', dst: '10.9.8.7', protocol: 17, sport: 5004, dport: 6970, payloadLen: 100 };
  const T4 = { src: '192.168.0.10', dst: '192.168.0.20', protocol: 6, sport: 554, dport: 40000, payloadLen: 33 };
  const U6 = { src: '2001:db8::1:0:0:1', dst: 'fe80::216:3eff:fe00:2', protocol: 17, sport: 5006, dport: 6972, payloadLen: 61 };
  const T6 = { src: 'fe80::216:3eff:fe00:2', dst: '2001:db8::1:0:0:1', protocol: 6, sport: 8554, dport: 50000, payloadLen: 7 };
  const cases: Array<{ name: string; linkType: number; frames: Array<[Buffer, Expect]> }> = [
    {
      name: 'ethernet',
      linkType: 1,
      frames: [
        [eth(0x0800, u4), { status: DecodeStatus.OK, ...U4 }],
        [eth(0x0800, u4, [[0x8100, 100]]), { status: DecodeStatus.OK, vlan: 100, ...U4 }],
        [eth(0x0800, t4, [[0x88a8, 200], [0x8100, 300]]), { status: DecodeStatus.OK, vlan: 200, ...T4 }],
        [eth(0x86dd, u6, [[0x9100, 4000 | 0xe000], [0x8100, 5]]), { status: DecodeStatus.OK, vlan: 4000, ...U6 }],
        [eth(0x86dd, t6), { status: DecodeStatus.OK, ...T6 }],
        [eth(0x0806, Buffer.alloc(28)), { status: DecodeStatus.NOT_IP }],
      ],
    },
    { name: 'sll', linkType: 113, frames: [[sll(0x0800, u4), { status: DecodeStatus.OK, ...U4 }], [sll(0x86dd, t6), { status: DecodeStatus.OK, ...T6 }]] },
    { name: 'sll2', linkType: 276, frames: [[sll2(0x86dd, u6), { status: DecodeStatus.OK, ...U6 }], [sll2(0x0800, t4), { status: DecodeStatus.OK, ...T4 }]] },
    {
      name: 'null',
      linkType: 0,
      frames: [
        [Buffer.concat([afHeader(2, true), u4]), { status: DecodeStatus.OK, ...U4 }],
        [Buffer.concat([afHeader(2, false), t4]), { status: DecodeStatus.OK, ...T4 }],
        [Buffer.concat([afHeader(30, true), u6]), { status: DecodeStatus.OK, ...U6 }],
        [Buffer.concat([afHeader(24, false), t6]), { status: DecodeStatus.OK, ...T6 }],
        [Buffer.concat([afHeader(28, true), u6]), { status: DecodeStatus.OK, ...U6 }],
      ],
    },
    { name: 'loop', linkType: 108, frames: [[Buffer.concat([afHeader(2, false), u4]), { status: DecodeStatus.OK, ...U4 }], [Buffer.concat([afHeader(24, false), u6]), { status: DecodeStatus.OK, ...U6 }]] },
    { name: 'raw', linkType: 101, frames: [[u4, { status: DecodeStatus.OK, ...U4 }], [t6, { status: DecodeStatus.OK, ...T6 }]] },
    { name: 'ipv4', linkType: 228, frames: [[t4, { status: DecodeStatus.OK, ...T4 }]] },
    { name: 'ipv6', linkType: 229, frames: [[u6, { status: DecodeStatus.OK, ...U6 }]] },
  ];
  for (const c of cases) {
    const file = join(tmp, `${c.name}.pcap`);
    writePcap(file, c.linkType, c.frames.map(([b]) => b));
    // tshark names an 802.1ad (0x88a8) outer tag ieee8021ad.id, and 802.1Q / 0x9100 tags vlan.id.
    const truth = tsharkFields(file, ['ieee8021ad.id', 'vlan.id', 'ip.src', 'ip.dst', 'ipv6.src', 'ipv6.dst', 'udp.srcport', 'udp.dstport', 'udp.length', 'tcp.srcport', 'tcp.dstport', 'tcp.len']);
    const dec = new PacketDecoder();
    const m = new PacketMeta();
    c.frames.forEach(([b, e], i) => {
      check(t, dec, m, frameOf(b, c.linkType), e, `${c.name} #${i + 1}`);
      if (e.status !== DecodeStatus.OK) return;
      // tshark agrees with the hand-computed expectation
      const [ad, q, s4, d4, s6, d6, us, ud, ul, ts, td, tl] = truth[i]!;
      const vlan = ad || q;
      const isUdp = e.protocol === 17;
      t.same(
        { vlan: vlan ? Number(vlan) : -1, src: s4 || s6, dst: d4 || d6, sport: Number(isUdp ? us : ts), dport: Number(isUdp ? ud : td), payloadLen: isUdp ? Number(ul) - 8 : Number(tl) },
        { vlan: e.vlan ?? -1, src: e.src, dst: e.dst, sport: e.sport, dport: e.dport, payloadLen: e.payloadLen },
        `${c.name} #${i + 1}: tshark agrees`,
      );
    });
  }
});

t.test('TCP header fields: seq/ack as uint32, 9-bit flags, data offset with options', async (t) => {
  const dec = new PacketDecoder();
  const m = new PacketMeta();
  const f = frameOf(eth(0x0800, ipv4(6, '1.2.3.4', '5.6.7.8', tcp(1, 2, 0xfedcba98, 0x89abcdef, 0x1c2, pay(10), 10))), 1);
  t.equal(dec.decode(f, m), DecodeStatus.OK);
  t.same([m.tcpSeq, m.tcpAck, m.tcpFlags, m.payloadLen, m.payloadOff - m.l4Off, m.l4Off - m.ipOff], [0xfedcba98, 0x89abcdef, 0x1c2, 10, 60, 20]);
  t.equal(m.buf[m.payloadOff], pay(10)[0]);
  t.equal(m.ipOff, 7 + 14, 'offsets index into the frame buffer');
  t.equal(m.buf.subarray(m.srcOff, m.srcOff + 4).toString('hex'), '01020304');
  t.equal(m.src4, 0x01020304);
  t.equal(m.dst4, 0x05060708);
});

t.test('IPv6 extension headers: hop-by-hop, routing, destination options, atomic fragment, then UDP', { skip: noTshark }, async (t) => {
  const u = udp(1234, 5678, pay(40));
  // HBH(8) -> Routing(16) -> DstOpts(24) -> atomic Fragment -> UDP
  const chain = Buffer.concat([ext(43, 1), ext(60, 2, true), ext(44, 3), frag6(17, 0, false, 99), u]);
  const pkt = eth(0x86dd, ipv6(0, A6, M6, chain));
  const file = join(tmp, 'ext.pcap');
  writePcap(file, 1, [pkt]);
  const [row] = tsharkFields(file, ['ipv6.src', 'ipv6.dst', 'udp.srcport', 'udp.dstport', 'udp.length']);
  const dec = new PacketDecoder();
  const m = new PacketMeta();
  check(t, dec, m, frameOf(pkt, 1), { status: DecodeStatus.OK, src: row![0], dst: row![1], protocol: 17, sport: Number(row![2]), dport: Number(row![3]), payloadLen: Number(row![4]) - 8 }, 'ext headers');
  t.equal(dstAddr(m), '::ffff:192.0.2.1', 'IPv4-mapped in mixed notation');
  t.equal(m.l4Off, 7 + 14 + 40 + 8 + 16 + 24 + 8);
  t.equal(dec.counters.fragments, 0, 'an atomic fragment is no fragment');
});

t.test('IPv4 fragments out of order are reassembled, then UDP decoded from the datagram', { skip: noTshark }, async (t) => {
  const body = udp(40000, 5004, pay(2992, 3)); // 3000 bytes of UDP
  const parts = [
    { off: 0, len: 1480 },
    { off: 1480, len: 1480 },
    { off: 2960, len: 40 },
  ];
  const fr = parts.map((p, i) => eth(0x0800, ipv4(17, '10.0.0.1', '10.0.0.2', body.subarray(p.off, p.off + p.len), { id: 0x4242, mf: i < 2, fragOff: p.off })));
  const order = [2, 0, 1];
  const file = join(tmp, 'frag4.pcap');
  writePcap(file, 1, order.map((i) => fr[i]!));
  const truth = tsharkFields(file, ['udp.srcport', 'udp.dstport', 'udp.length', 'ip.src']);
  t.same(truth.map((r) => r[2]), ['', '', '3000'], 'tshark reassembles on the last frame');
  const dec = new PacketDecoder();
  const m = new PacketMeta();
  t.equal(dec.decode(frameOf(fr[2]!, 1), m), DecodeStatus.FRAGMENT_PENDING);
  t.same([m.ipVersion, srcAddr(m), m.protocol], [4, '10.0.0.1', 17], 'a pending fragment still has its addresses');
  t.equal(dec.decode(frameOf(fr[0]!, 1), m), DecodeStatus.FRAGMENT_PENDING);
  t.equal(dec.pendingDatagrams, 1);
  check(t, dec, m, frameOf(fr[1]!, 1), { status: DecodeStatus.OK, src: '10.0.0.1', dst: '10.0.0.2', protocol: 17, sport: Number(truth[2]![0]), dport: Number(truth[2]![1]), payloadLen: Number(truth[2]![2]) - 8 }, 'reassembled');
  t.ok(m.reassembled);
  t.same(m.buf.subarray(m.payloadOff, m.payloadOff + m.payloadLen), pay(2992, 3), 'payload bytes in order');
  t.equal(m.ipLen, 3020);
  t.same([dec.counters.fragments, dec.counters.reassembled, dec.pendingDatagrams], [3, 1, 0]);
});

t.test('IPv6 fragments: the unfragmentable part kept, the Fragment header dropped', { skip: noTshark }, async (t) => {
  const body = udp(7000, 7001, pay(2000, 9)); // 2008 bytes
  const mk = (off: number, len: number, more: boolean) => eth(0x86dd, ipv6(0, B6, A6, Buffer.concat([ext(44, 1), frag6(17, off, more, 0xabcdef01), body.subarray(off, off + len)])));
  const f1 = mk(0, 1232, true);
  const f2 = mk(1232, 776, false);
  const file = join(tmp, 'frag6.pcap');
  writePcap(file, 1, [f2, f1]);
  const truth = tsharkFields(file, ['udp.srcport', 'udp.dstport', 'udp.length']);
  t.equal(truth[1]![2], '2008', 'tshark reassembles');
  const dec = new PacketDecoder();
  const m = new PacketMeta();
  t.equal(dec.decode(frameOf(f2, 1), m), DecodeStatus.FRAGMENT_PENDING);
  check(t, dec, m, frameOf(f1, 1), { status: DecodeStatus.OK, src: 'fe80::216:3eff:fe00:2', dst: '2001:db8::1:0:0:1', protocol: 17, sport: 7000, dport: 7001, payloadLen: 2000 }, 'reassembled');
  t.ok(m.reassembled);
  t.same(m.buf.subarray(m.payloadOff, m.payloadOff + m.payloadLen), pay(2000, 9));
  t.equal(m.buf.readUInt16BE(4), 8 + 2008, 'payload length: hop-by-hop + UDP');
  t.equal(m.buf[40], 17, 'hop-by-hop now names UDP');
  t.equal(m.l4Off, 48);
});

t.test('overlapping fragments: the bytes that arrived first win', async (t) => {
  const A = Buffer.alloc(16, 0xaa);
  const B = Buffer.alloc(16, 0xbb);
  const head = udp(1, 2, Buffer.alloc(24, 0x11)); // 32 bytes: offsets 0..31
  const f = (off: number, data: Buffer, more: boolean) => frameOf(eth(0x0800, ipv4(17, '10.0.0.1', '10.0.0.2', data, { id: 7, mf: more, fragOff: off })), 1);
  const dec = new PacketDecoder();
  const m = new PacketMeta();
  t.equal(dec.decode(f(16, A, true), m), DecodeStatus.FRAGMENT_PENDING); // bytes 16..31 = aa
  t.equal(dec.decode(f(24, B, false), m), DecodeStatus.FRAGMENT_PENDING); // 24..39 = bb, overlaps 24..31
  t.equal(dec.decode(f(0, head, true), m), DecodeStatus.OK); // 0..31 overlaps everything before 32
  const d = m.buf.subarray(m.ipOff + 20, m.ipOff + 20 + 40);
  t.same(d.subarray(0, 16), head.subarray(0, 16), 'new bytes from the last fragment where nothing was');
  t.same(d.subarray(16, 32), A, 'aa arrived first for 16..31');
  t.same(d.subarray(32, 40), B.subarray(8), 'bb for 32..39');
  t.same([m.sport, m.dport], [1, 2]);
  t.equal(m.payloadLen, 24, 'UDP length says 32: clamped to 24 bytes of payload');
});

t.test('fragment table: timeout by capture time and a bounded number of datagrams', async (t) => {
  const frag = (id: number, off: number, more: boolean, sec: number) =>
    frameOf(eth(0x0800, ipv4(17, '10.0.0.1', '10.0.0.2', off === 0 ? udp(1, 2, pay(8)) : pay(16), { id, mf: more, fragOff: off })), 1, sec);
  const dec = new PacketDecoder({ fragmentTimeoutSec: 30 });
  const m = new PacketMeta();
  t.equal(dec.decode(frag(1, 0, true, 1000), m), DecodeStatus.FRAGMENT_PENDING);
  t.equal(dec.decode(frag(1, 16, false, 1031), m), DecodeStatus.FRAGMENT_PENDING, 'the first half expired; this one waits alone');
  t.equal(dec.counters.fragmentsExpired, 1);
  t.equal(dec.counters.reassembled, 0);
  t.equal(dec.decode(frag(1, 0, true, 1040), m), DecodeStatus.OK, 'completed within the timeout');

  const small = new PacketDecoder({ maxFragmentDatagrams: 2 });
  for (let id = 10; id < 13; id++) t.equal(small.decode(frag(id, 0, true, 5), m), DecodeStatus.FRAGMENT_PENDING);
  t.equal(small.pendingDatagrams, 2, 'bounded');
  t.equal(small.counters.fragmentsExpired, 1, 'the oldest was dropped');
  t.equal(small.decode(frag(10, 16, false, 5), m), DecodeStatus.FRAGMENT_PENDING, 'datagram 10 was the one dropped');
  t.equal(small.decode(frag(12, 16, false, 5), m), DecodeStatus.OK, 'datagram 12 completes');

  const bad = new PacketDecoder();
  t.equal(bad.decode(frag(20, 65528, true, 5), m), DecodeStatus.BAD_HEADER, 'a fragment past 64 KiB');
});

t.test('truncated and malformed frames give a status, never an exception', async (t) => {
  const dec = new PacketDecoder();
  const m = new PacketMeta();
  const u4 = eth(0x0800, ipv4(17, '10.1.2.3', '10.9.8.7', udp(5004, 6970, pay(1000))));
  const cases: Array<[string, TapFrame, DecodeStatus]> = [
    ['ethernet header cut', frameOf(u4, 1, 1, 10), DecodeStatus.TRUNCATED],
    ['VLAN tag cut', frameOf(eth(0x0800, Buffer.alloc(0), [[0x8100, 5]]).subarray(0, 16), 1), DecodeStatus.TRUNCATED],
    ['IPv4 header cut', frameOf(u4, 1, 1, 14 + 12), DecodeStatus.TRUNCATED],
    ['UDP header cut', frameOf(u4, 1, 1, 14 + 20 + 4), DecodeStatus.TRUNCATED],
    ['IHL below 5', frameOf(eth(0x0800, Buffer.from([0x43, ...Buffer.alloc(40)])), 1), DecodeStatus.BAD_HEADER],
    ['IP version 5 under EtherType IPv4', frameOf(eth(0x0800, Buffer.from([0x55, ...Buffer.alloc(40)])), 1), DecodeStatus.BAD_HEADER],
    ['total length below the header', frameOf(eth(0x0800, ipv4(17, '1.1.1.1', '2.2.2.2', udp(1, 2, pay(4)), { totalLen: 12 })), 1), DecodeStatus.BAD_HEADER],
    ['UDP length below 8', frameOf(eth(0x0800, ipv4(17, '1.1.1.1', '2.2.2.2', Buffer.from([0, 1, 0, 2, 0, 4, 0, 0]))), 1), DecodeStatus.BAD_HEADER],
    ['TCP data offset below 5', frameOf(eth(0x0800, ipv4(6, '1.1.1.1', '2.2.2.2', Buffer.from([...Buffer.alloc(12), 0x40, ...Buffer.alloc(7)]))), 1), DecodeStatus.BAD_HEADER],
    ['TCP data offset past the datagram', frameOf(eth(0x0800, ipv4(6, '1.1.1.1', '2.2.2.2', Buffer.from([...Buffer.alloc(12), 0xf0, ...Buffer.alloc(7)]))), 1), DecodeStatus.BAD_HEADER],
    ['IPv6 header cut', frameOf(eth(0x86dd, ipv6(17, A6, B6, udp(1, 2, pay(4)))).subarray(0, 40), 1), DecodeStatus.TRUNCATED],
    ['IPv6 extension header past the datagram', frameOf(eth(0x86dd, ipv6(0, A6, B6, Buffer.from([17, 200, 1, 4, 0, 0, 0, 0]))), 1), DecodeStatus.BAD_HEADER],
    ['ARP', frameOf(eth(0x0806, Buffer.alloc(28)), 1), DecodeStatus.NOT_IP],
    ['802.3 length field (LLC)', frameOf(eth(0x0040, Buffer.alloc(64)), 1), DecodeStatus.NOT_IP],
    ['null link, AF_APPLETALK', frameOf(Buffer.concat([afHeader(16, true), Buffer.alloc(30)]), 0), DecodeStatus.NOT_IP],
    ['raw link, version 0', frameOf(Buffer.alloc(40), 101), DecodeStatus.NOT_IP],
    ['unsupported link type (USB)', frameOf(Buffer.alloc(64), 189), DecodeStatus.UNSUPPORTED_LINK],
  ];
  for (const [name, f, st] of cases) t.equal(dec.decode(f, m), st, name);
  t.same([dec.counters.truncated, dec.counters.badHeader, dec.counters.notIp, dec.counters.unsupportedLink], [5, 7, 4, 1], 'counted by kind');

  // Snap length cut the payload: decoded, flagged, lengths clamped to what is there.
  const snapped = frameOf(u4, 1, 1, 14 + 20 + 8 + 100);
  t.equal(dec.decode(snapped, m), DecodeStatus.OK);
  t.same([m.truncated, m.payloadLen, m.ipLen, m.sport], [true, 100, 128, 5004]);
  // Ethernet padding after a short datagram is not payload.
  const short = Buffer.concat([eth(0x0800, ipv4(17, '1.1.1.1', '2.2.2.2', udp(1, 2, pay(2)))), Buffer.alloc(16)]);
  t.equal(dec.decode(frameOf(short, 1), m), DecodeStatus.OK);
  t.same([m.truncated, m.payloadLen, m.ipLen], [false, 2, 30]);

  // Random bytes on every link type: a status each time, offsets inside the buffer.
  let seed = 12345;
  const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 16) & 0xff;
  let ok = 0;
  for (let i = 0; i < 20000; i++) {
    const n = rnd() % 120;
    const b = Buffer.alloc(n);
    for (let j = 0; j < n; j++) b[j] = rnd();
    if (n > 14 && i % 2 === 0) b.writeUInt16BE(i % 4 === 0 ? 0x0800 : 0x86dd, 12);
    if (n > 14 && i % 4 === 0) b[14] = 0x45;
    if (n > 14 && i % 4 === 2) b[14] = 0x60;
    const lt = [0, 1, 101, 108, 113, 228, 229, 276][i % 8]!;
    const st = dec.decode(frameOf(b, lt), m);
    if (st === DecodeStatus.OK) {
      ok++;
      if (m.payloadOff < 0 || m.payloadOff + m.payloadLen > m.buf.length || m.payloadLen < 0) t.fail(`frame ${i}: payload outside the buffer`);
    }
  }
  t.pass(`20000 random frames decoded without an exception (${ok} looked like IP)`);
});

t.test('flowHash: the same for every packet of a flow, direction-sensitive, differs by port and protocol', async (t) => {
  const dec = new PacketDecoder();
  const m = new PacketMeta();
  const h = (b: Buffer): number => {
    t.equal(dec.decode(frameOf(b, 1), m), DecodeStatus.OK);
    return m.flowHash;
  };
  const ab = h(eth(0x0800, ipv4(17, '10.0.0.1', '10.0.0.2', udp(5000, 6000, pay(10)))));
  t.equal(h(eth(0x0800, ipv4(17, '10.0.0.1', '10.0.0.2', udp(5000, 6000, pay(900))), [[0x8100, 3]])), ab, 'same 5-tuple, other packet');
  t.not(h(eth(0x0800, ipv4(17, '10.0.0.2', '10.0.0.1', udp(6000, 5000, pay(10))))), ab, 'reverse direction');
  t.not(h(eth(0x0800, ipv4(17, '10.0.0.1', '10.0.0.2', udp(5000, 6001, pay(10))))), ab, 'other port');
  t.not(h(eth(0x0800, ipv4(6, '10.0.0.1', '10.0.0.2', tcp(5000, 6000, 0, 0, 2, pay(0))))), ab, 'other protocol');
  const x6 = h(eth(0x86dd, ipv6(17, A6, B6, udp(1, 2, pay(1)))));
  t.not(h(eth(0x86dd, ipv6(17, B6, A6, udp(1, 2, pay(1))))), x6, 'IPv6 reverse');
  t.equal(h(eth(0x86dd, ipv6(17, A6, B6, udp(1, 2, pay(50))))), x6, 'IPv6 same flow');
  t.ok(Number.isInteger(ab) && ab >= 0 && ab <= 0xffffffff, 'uint32');
});

t.test('addresses as text (RFC 5952) match tshark; parseIp and endpoint', { skip: noTshark }, async (t) => {
  const addrs = [
    '2001:0db8:0000:0000:0000:0000:0000:0001',
    '2001:0db8:0000:0000:0001:0000:0000:0001', // first of two equal runs... the longer run wins, here the second
    '2001:0db8:0000:0001:0000:0000:0000:0001',
    '0000:0000:0000:0000:0000:0000:0000:0001',
    '0000:0000:0000:0000:0000:0000:0000:0000',
    'fe80:0000:0000:0000:0216:3eff:fe00:0002',
    '2001:0db8:0001:0002:0003:0004:0005:0006',
    '2001:0db8:0000:0001:0001:0001:0001:0001', // a single zero group is not compressed
    '0000:0000:0000:0000:0000:ffff:c000:0201',
    'ff02:0000:0000:0000:0000:0000:0000:00fb',
    '2001:0000:0000:0001:0000:0000:0001:0000', // tie: the first run
  ];
  const frames = addrs.map((a) => eth(0x86dd, ipv6(17, v6(a), A6, udp(1, 2, pay(1)))));
  const file = join(tmp, 'addrs.pcap');
  writePcap(file, 1, frames);
  const truth = tsharkFields(file, ['ipv6.src']).map((r) => r[0]);
  const dec = new PacketDecoder();
  const m = new PacketMeta();
  const got = frames.map((f) => (dec.decode(frameOf(f, 1), m), srcAddr(m)));
  t.same(got, truth, 'formatted like tshark');
  t.equal(got[10], '2001::1:0:0:1:0', 'a tie between two runs: the first is compressed');
  for (const [i, s] of got.entries()) t.same(parseIp(s!)?.bytes, v6(addrs[i]!), `parseIp(${s}) round-trips`);

  t.same(parseIp('10.0.0.1'), { version: 4, bytes: Buffer.from([10, 0, 0, 1]) });
  t.same(parseIp('[2001:db8::1]')?.bytes, v6('2001:0db8:0000:0000:0000:0000:0000:0001'));
  t.same(parseIp('fe80::1%eth0')?.bytes, v6('fe80:0000:0000:0000:0000:0000:0000:0001'));
  t.same(parseIp('::ffff:192.0.2.1')?.bytes, v6('0000:0000:0000:0000:0000:ffff:c000:0201'));
  t.same(parseIp('64:ff9b::10.1.2.3')?.bytes, v6('0064:ff9b:0000:0000:0000:0000:0a01:0203'));
  for (const bad of ['', '10.0.0', '10.0.0.256', '1:2:3:4:5:6:7:8:9', 'cam-1.local', '2001:db8:::1', '::g']) t.equal(parseIp(bad), null, `parseIp(${JSON.stringify(bad)}) is null`);

  t.equal(endpoint('10.0.0.1', 554), '10.0.0.1:554');
  t.equal(endpoint('2001:db8::1', 554), '[2001:db8::1]:554');
  const v4m = new PacketMeta();
  t.equal(srcAddr(v4m), '', 'not decoded: empty');
});
