import t from 'tap';
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { epbSize, idbSize, shbSize, writeEpb, writeIdb, writeShb } from '../../../core/wire/pcapng-writer.js';
import { CAPTURES, epochToNs, hasTool, pktNs, readClassicPcap, tshark } from '../store/pcap-fixture.js';

t.test('SHB bytes match the spec layout (version 1.0, section length -1)', async (t) => {
  const buf = Buffer.alloc(64);
  t.equal(shbSize(), 28);
  t.equal(writeShb(buf, 0), 28);
  t.equal(buf.subarray(0, 28).toString('hex'), '0a0d0d0a' + '1c000000' + '4d3c2b1a' + '0100' + '0000' + 'ffffffffffffffff' + '1c000000');

  const b2 = Buffer.alloc(64, 0xee);
  t.equal(shbSize({ userAppl: 'camtap' }), 44);
  t.equal(writeShb(b2, 4, { userAppl: 'camtap' }), 48);
  // shb_userappl (code 4, length 6, "camtap" + 2 pad), opt_endofopt, trailing length 44
  t.equal(
    b2.subarray(4, 48).toString('hex'),
    '0a0d0d0a2c0000004d3c2b1a01000000ffffffffffffffff' + '04000600' + Buffer.from('camtap').toString('hex') + '0000' + '00000000' + '2c000000',
  );
  t.equal(b2[3], 0xee, 'bytes before pos untouched');
  t.equal(b2[48], 0xee, 'bytes after the block untouched');
});

t.test('IDB options are byte-identical to the ones dumpcap wrote for the same interface', async (t) => {
  // lo_dumpcap_udp_h264.pcapng: SHB of 0xa4 bytes, then dumpcap's IDB for "lo"/"Loopback" with if_tsresol 9.
  const ref = readFileSync(join(CAPTURES, 'lo_dumpcap_udp_h264.pcapng'));
  const idbAt = ref.readUInt32LE(4);
  t.equal(ref.readUInt32LE(idbAt), 1, 'fixture has an IDB after its SHB');
  const buf = Buffer.alloc(128);
  const end = writeIdb(buf, 0, 1, 262144, 'lo', 'Loopback');
  t.equal(end, idbSize('lo', 'Loopback'));
  t.equal(end, 52);
  // type, length, link type 1, reserved, snaplen 262144
  t.equal(buf.subarray(0, 16).toString('hex'), '01000000' + '34000000' + '0100' + '0000' + '00000400');
  t.same(buf.subarray(8, 16), ref.subarray(idbAt + 8, idbAt + 16), 'link type and snaplen as dumpcap');
  // if_name, if_description, if_tsresol: same bytes, same order as dumpcap
  t.same(buf.subarray(16, 44), ref.subarray(idbAt + 16, idbAt + 44));
  t.equal(buf.subarray(44, 52).toString('hex'), '00000000' + '34000000', 'end of options, trailing length');

  const noDesc = Buffer.alloc(64);
  t.equal(writeIdb(noDesc, 0, 101, 0, 'cam'), idbSize('cam'));
  t.equal(noDesc.subarray(0, idbSize('cam')).toString('hex'), '01000000' + '28000000' + '6500' + '0000' + '00000000' + '02000300' + '63616d00' + '09000100' + '09000000' + '00000000' + '28000000');
});

t.test('EPBs are byte-identical to every packet block dumpcap wrote (ts split, padding, lengths)', async (t) => {
  const ref = readFileSync(join(CAPTURES, 'lo_dumpcap_udp_h264.pcapng'));
  const buf = Buffer.alloc(70000, 0xee);
  let p = 0;
  let n = 0;
  let mismatches = 0;
  while (p + 8 <= ref.length) {
    const type = ref.readUInt32LE(p);
    const len = ref.readUInt32LE(p + 4);
    if (type === 6) {
      const ts = (BigInt(ref.readUInt32LE(p + 12)) << 32n) | BigInt(ref.readUInt32LE(p + 16));
      const capLen = ref.readUInt32LE(p + 20);
      const origLen = ref.readUInt32LE(p + 24);
      const data = ref.subarray(p + 28, p + 28 + capLen);
      t.equal(epbSize(capLen), len);
      const end = writeEpb(buf, 0, ref.readUInt32LE(p + 8), Number(ts / 1_000_000_000n), Number(ts % 1_000_000_000n), data, 0, capLen, origLen);
      if (end !== len || !buf.subarray(0, len).equals(ref.subarray(p, p + len))) mismatches++;
      n++;
    }
    p += len;
  }
  t.equal(n, 540, 'all 540 packets of the fixture compared');
  t.equal(mismatches, 0);
});

t.test('the 64-bit ns timestamp is exact far beyond 2^53', async (t) => {
  const data = Buffer.from([1, 2, 3]);
  const buf = Buffer.alloc(64);
  const cases: Array<[number, number]> = [
    [0, 0],
    [0, 999_999_999],
    [1_795_467_919, 675_101_123],
    [2 ** 32 - 1, 999_999_999],
    [2 ** 34 + 12345, 1],
    [12_345_678_901, 999_999_998],
    [18_446_744_073, 709_551_615], // 2^64 - 1 ns
  ];
  for (const [sec, nsec] of cases) {
    writeEpb(buf, 0, 3, sec, nsec, data, 0, 3, 3);
    const got = (BigInt(buf.readUInt32LE(12)) << 32n) | BigInt(buf.readUInt32LE(16));
    t.equal(got, BigInt(sec) * 1_000_000_000n + BigInt(nsec), `${sec}.${nsec}`);
  }
  // 3 data bytes padded with one zero, interface id, caplen/origlen
  t.equal(buf.readUInt32LE(8), 3);
  t.equal(buf.subarray(28, 32).toString('hex'), '01020300');
  t.equal(buf.readUInt32LE(32), 36);
});

t.test('tshark reads a file of our blocks: times to the ns, lengths, interfaces, link types', { skip: hasTool('tshark') ? false : 'tshark not installed' }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'camtap-pcapng-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const src = readClassicPcap(join(CAPTURES, 'lo_tcp_interleaved_h264_nsec.pcap'));
  t.equal(src.linkType, 1);
  let size = shbSize({ userAppl: 'camtap test' }) + idbSize('cam-eth', 'camtap tap 1') + idbSize('cam-raw', 'camtap tap 2');
  for (const pk of src.packets) size += epbSize(pk.capLen);
  const buf = Buffer.alloc(size);
  let p = writeShb(buf, 0, { userAppl: 'camtap test' });
  p = writeIdb(buf, p, 1, 0, 'cam-eth', 'camtap tap 1');
  p = writeIdb(buf, p, 101, 0, 'cam-raw', 'camtap tap 2');
  // Odd packets go out as raw IP (the Ethernet header stripped) on interface 1; packet 3 is snap-cut to 60 bytes.
  const expected: string[] = [];
  src.packets.forEach((pk, i) => {
    const raw = i % 2 === 1;
    const off = raw ? 14 : 0;
    let capLen = pk.capLen - off;
    const origLen = pk.origLen - off;
    if (i === 3) capLen = 60;
    p = writeEpb(buf, p, raw ? 1 : 0, pk.tsSec, pk.tsNsec, pk.data, off, capLen, origLen);
    const ipSrc = [...pk.data.subarray(26, 30)].join('.'); // IPv4 source of the Ethernet frame
    expected.push([pktNs(pk).toString(), origLen, capLen, raw ? 1 : 0, raw ? 'cam-raw' : 'cam-eth', ipSrc].join('\t'));
  });
  const file = join(dir, 'x.pcapng');
  writeFileSync(file, buf.subarray(0, p));

  const r = tshark(['-r', file, '-T', 'fields', '-e', 'frame.time_epoch', '-e', 'frame.len', '-e', 'frame.cap_len', '-e', 'frame.interface_id', '-e', 'frame.interface_name', '-e', 'ip.src']);
  t.equal(r.status, 0);
  t.equal(r.stderr, '');
  const got = r.lines.map((l) => {
    const f = l.split('\t');
    f[0] = epochToNs(f[0]!).toString();
    return f.join('\t');
  });
  t.equal(got.length, 1225);
  t.same(got, expected);

  const idbs = tshark(['-r', file, '-X', 'read_format:MIME Files Format', '-Y', 'pcapng.interface_description.link_type', '-T', 'fields', '-e', 'pcapng.interface_description.link_type']);
  t.same(idbs.lines.join(',').split(','), ['1', '101'], 'IDB link types as Wireshark decodes them');
});
