import t from 'tap';
import { readFileSync } from 'node:fs';
import {
  RtpHeader,
  parseRtp,
  looksLikeRtp,
  looksLikeRtcp,
  seqGt,
  seqDiff,
  extendSeq,
  extendTs,
  writeRtpHeader,
} from '../../../core/wire/rtp.js';
import { CAPTURES, noTshark, tsharkFields } from './tshark-truth.js';

// RFC 3550 §5.1 by hand: V=2 P=1 X=1 CC=2, M=1 PT=96, seq 0xABCD, ts 0x01020304,
// SSRC 0xDEADBEEF, two CSRCs, extension 0xBEDE with 1 word, 3 payload bytes, 2 padding.
const full = Buffer.from(
  [
    'b2', 'e0', 'abcd', '01020304', 'deadbeef', // fixed header
    '11111111', '22222222', // CSRCs
    'bede', '0001', 'aabbccdd', // extension: profile, length 1 word, data
    '010203', // payload
    '0002', // padding: 1 filler byte + the count byte (2)
  ].join(''),
  'hex',
);

t.test('parses every field of a v2 header with CSRCs, extension and padding', async (t) => {
  const buf = Buffer.concat([Buffer.from('ffff', 'hex'), full]); // at an offset, like a frame
  const h = new RtpHeader();
  t.ok(parseRtp(buf, 2, full.length, h));
  t.same(
    { ...h },
    {
      version: 2,
      padding: true,
      extension: true,
      csrcCount: 2,
      marker: true,
      payloadType: 96,
      seq: 0xabcd,
      timestamp: 0x01020304,
      ssrc: 0xdeadbeef,
      payloadOff: 2 + 12 + 8 + 8,
      payloadLen: 3,
      extProfile: 0xbede,
      extOff: 2 + 12 + 8 + 4,
      extLen: 4,
    },
  );
  t.equal(buf.subarray(h.payloadOff, h.payloadOff + h.payloadLen).toString('hex'), '010203');
});

t.test('resets the extension fields when the next packet has none', async (t) => {
  const h = new RtpHeader();
  t.ok(parseRtp(full, 0, full.length, h));
  const plain = Buffer.from('8060000100000002000000030102', 'hex');
  t.ok(parseRtp(plain, 0, plain.length, h));
  t.same([h.extension, h.extProfile, h.extOff, h.extLen, h.padding, h.payloadOff, h.payloadLen], [false, -1, 0, 0, false, 12, 2]);
});

t.test('rejects what is not a valid RTP v2 packet, without throwing', async (t) => {
  const h = new RtpHeader();
  const mutate = (f: (b: Buffer) => void) => {
    const b = Buffer.from(full);
    f(b);
    return b;
  };
  const cases: Array<[string, Buffer, number]> = [
    ['shorter than 12 bytes', full.subarray(0, 11), 11],
    ['version 1', mutate((b) => (b[0] = (b[0]! & 0x3f) | 0x40)), full.length],
    ['version 0 (STUN-like)', mutate((b) => (b[0] = b[0]! & 0x3f)), full.length],
    ['CSRC list past the end', full.subarray(0, 16), 16],
    ['extension header past the end', full.subarray(0, 22), 22],
    ['extension data past the end', mutate((b) => b.writeUInt16BE(9, 22)), full.length],
    ['padding count 0', mutate((b) => (b[b.length - 1] = 0)), full.length],
    ['padding longer than the payload', mutate((b) => (b[b.length - 1] = 6)), full.length],
  ];
  for (const [name, b, len] of cases) t.notOk(parseRtp(b, 0, len, h), name);
  t.notOk(parseRtp(full, 0, full.length + 1, h), 'length beyond the buffer');
  t.notOk(parseRtp(full, -1, 12, h), 'negative offset');
  t.notOk(parseRtp(Buffer.alloc(0), 0, 0, h), 'empty');
});

t.test('padding may take the whole payload (RFC 3550 §5.1)', async (t) => {
  const b = Buffer.from('a060000100000002000000030000000004', 'hex'); // 1 payload byte + 4 padding bytes (the count includes itself)
  const h = new RtpHeader();
  t.ok(parseRtp(b, 0, b.length, h));
  t.equal(h.payloadLen, 1);
  b[b.length - 1] = 5;
  t.ok(parseRtp(b, 0, b.length, h));
  t.equal(h.payloadLen, 0);
});

t.test('heuristics tell RTP from RTCP (RFC 5761 §4)', async (t) => {
  const rtp = Buffer.from('80e0000100000002000000030102', 'hex'); // marker + PT 96
  const sr = Buffer.from('80c8000600000001' + '00'.repeat(20), 'hex'); // SR, 28 bytes
  const rr = Buffer.from('80c9000100000001', 'hex'); // empty RR
  t.ok(looksLikeRtp(rtp, 0, rtp.length));
  t.notOk(looksLikeRtcp(rtp, 0, rtp.length));
  t.notOk(looksLikeRtp(sr, 0, sr.length), 'SR second byte 200 = marker + PT 72');
  t.ok(looksLikeRtcp(sr, 0, sr.length));
  t.ok(looksLikeRtcp(Buffer.concat([sr, rr]), 0, sr.length + rr.length), 'compound');
  t.notOk(looksLikeRtcp(Buffer.concat([sr, rr]), 0, sr.length + rr.length - 1), 'length words must add up');
  t.notOk(looksLikeRtcp(rr, 0, 4), 'a length word longer than the datagram');
  const bad = Buffer.from(rtp);
  bad[0] = 0x8f; // CC = 15: 72 bytes of CSRCs in a 14-byte datagram
  t.notOk(looksLikeRtp(bad, 0, bad.length));
});

t.test('wrap-aware sequence comparisons', async (t) => {
  t.ok(seqGt(1, 0));
  t.ok(seqGt(0, 65535), '0 follows 65535');
  t.notOk(seqGt(65535, 0));
  t.notOk(seqGt(5, 5));
  t.ok(seqGt(0x7fff, 0), 'half the space minus one is ahead');
  t.notOk(seqGt(0x8000, 0), 'exactly half is behind');
  t.equal(seqDiff(0, 65535), 1);
  t.equal(seqDiff(65535, 0), -1);
  t.equal(seqDiff(100, 90), 10);
  t.equal(seqDiff(0x8000, 0), -32768);
  t.equal(seqDiff(0x7fff, 0), 32767);
});

t.test('extended sequence numbers follow the manifest rule', async (t) => {
  t.equal(extendSeq(null, 12069), 12069 + 65536, 'first packet gets 65536 headroom');
  t.equal(extendSeq(65536 + 65530, 3), 131075, 'forward across the wrap: 65530 -> 3 is +9');
  t.equal(extendSeq(131075, 65534), 131070, 'a late packet from before the wrap extends backwards');
  t.equal(extendSeq(65536 + 10, 5), 65541, 'reordered predecessor');
  t.equal(extendSeq(65536, 65535), 65535, 'the packet just before the first one stays positive');
  t.equal(extendSeq(65536 + 100, 100 + 0x7fff), 65536 + 100 + 0x7fff);
  t.equal(extendSeq(65536 + 100, 100 + 0x8000), 65536 + 100 - 0x8000, 'exactly half the space counts backwards');
});

t.test('extended sequence numbers match the manifests of captures with loss, reordering and duplicates', { skip: noTshark }, async (t) => {
  for (const name of ['lo_udp_h264_impaired', 'netns_loss_dup_h264']) {
    const manifest = JSON.parse(readFileSync(`${CAPTURES}${name}.manifest.json`, 'utf8'));
    for (const s of manifest.rtp_streams.filter((x: { packets: number }) => x.packets > 10)) {
      const rows = tsharkFields(`${name}.pcap`, `rtp and not icmp and rtp.ssrc == ${s.ssrc}`, ['rtp.seq']);
      let max: number | null = null;
      let min = Infinity;
      for (const [seq] of rows) {
        const ext = extendSeq(max, Number(seq));
        max = max === null ? ext : Math.max(max, ext);
        min = Math.min(min, ext);
      }
      t.same([min, max], [s.min_ext_seq, s.max_ext_seq], `${name} ${s.ssrc}`);
    }
  }
});

t.test('extended RTP timestamps unwrap 32 bits', async (t) => {
  const first = extendTs(null, 0xfffffff0);
  t.equal(first, 0xfffffff0 + 2 ** 32, 'first timestamp gets 2^32 headroom');
  const next = extendTs(first, 0x10); // +0x20 across the wrap
  t.equal(next, first + 0x20);
  t.equal(extendTs(next, 0xffffffe0), first - 0x10, 'a B-frame timestamp before the wrap');
  t.equal(extendTs(first, 0xfffffff0 + 90000 - 2 ** 32), first + 90000);
  let ext = extendTs(null, 0);
  for (let i = 0; i < 5000; i++) ext = extendTs(ext, ((i + 1) * 3_000_000) >>> 0); // 1.3 wraps per 1000 steps
  t.equal(ext, 2 ** 32 + 5000 * 3_000_000, 'many wraps, exact as a float64');
});

t.test('writes a 12-byte header that parses back (RFC 3550 §5.1 layout)', async (t) => {
  const b = Buffer.alloc(16, 0xee);
  t.equal(writeRtpHeader(b, 2, { marker: true, payloadType: 96, seq: 0x1_0005, timestamp: 2 ** 32 + 7, ssrc: 0xbe83cf09 }), 12);
  t.equal(b.toString('hex'), 'eeee' + '80e0' + '0005' + '00000007' + 'be83cf09' + 'eeee');
  const h = new RtpHeader();
  t.ok(parseRtp(b, 2, 12, h));
  t.same([h.marker, h.payloadType, h.seq, h.timestamp, h.ssrc, h.payloadLen], [true, 96, 5, 7, 0xbe83cf09, 0]);
  t.equal(writeRtpHeader(Buffer.alloc(11), 0, { marker: false, payloadType: 0, seq: 0, timestamp: 0, ssrc: 0 }), 0, 'does not fit');
});

t.test('every UDP datagram of lo_udp_h264 parses as tshark dissects it', { skip: noTshark }, async (t) => {
  const rows = tsharkFields('lo_udp_h264.pcap', 'udp and not icmp', [
    'udp.payload',
    'rtp.seq',
    'rtp.timestamp',
    'rtp.marker',
    'rtp.p_type',
    'rtp.ssrc',
    'rtcp.pt',
  ]);
  const h = new RtpHeader();
  let rtp = 0;
  let rtcp = 0;
  const wrong: string[] = [];
  for (const [hex, seq, ts, marker, pt, ssrc, rtcpPt] of rows) {
    const buf = Buffer.from(hex!, 'hex');
    if (seq) {
      rtp++;
      const ok = parseRtp(buf, 0, buf.length, h);
      const got = [ok, h.seq, h.timestamp, h.marker, h.payloadType, h.ssrc];
      const want = [true, Number(seq), Number(ts), marker === '1' || marker === 'True', Number(pt), Number(ssrc)];
      if (JSON.stringify(got) !== JSON.stringify(want)) wrong.push(`seq ${seq}: ${JSON.stringify(got)}`);
      if (Number(pt) >= 96 && !looksLikeRtp(buf, 0, buf.length)) wrong.push(`seq ${seq}: heuristic missed`);
    } else if (rtcpPt) {
      rtcp++;
      if (!looksLikeRtcp(buf, 0, buf.length)) wrong.push(`RTCP ${rtcpPt} not recognised`);
      if (looksLikeRtp(buf, 0, buf.length)) wrong.push(`RTCP ${rtcpPt} taken for RTP`);
    }
  }
  t.equal(rtp, 854, 'RTP datagrams (tshark io,phs)');
  t.equal(rtcp, 5, 'RTCP datagrams (tshark io,phs)');
  t.same(wrong, []);
});
