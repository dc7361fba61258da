import t from 'tap';
import { TcpReassembler, TcpFlags, type ReassemblyOptions } from '../../../core/capture/tcp-reassembly.js';
import type { StoreLocation } from '../../../core/contracts/frame.js';
import { noTshark, tsharkFields, tsharkFollow } from '../wire/tshark-truth.js';

const { SYN, ACK, FIN, RST, PSH } = TcpFlags;

/** A reassembler that records what it delivers: bytes (gaps as '~' x n) and the locations. */
function recorder(opts?: ReassemblyOptions) {
  const out: string[] = [];
  const locs: Array<number | null> = [];
  const gaps: number[] = [];
  const r = new TcpReassembler(
    {
      onData: (d, loc) => {
        out.push(d.toString('latin1'));
        locs.push(loc ? loc.offset : null);
      },
      onGap: (n) => {
        gaps.push(n);
        out.push('~'.repeat(n));
      },
    },
    opts,
  );
  const seg = (seq: number, text: string, flags = ACK | PSH, at: number | null = null) => {
    const b = Buffer.from('HDR' + text, 'latin1'); // payload at an offset, as in a frame
    const loc: StoreLocation | null = at === null ? null : { segment: 1, offset: at };
    r.push(seq, flags, b, 3, text.length, loc);
  };
  return { r, seg, text: () => out.join(''), locs, gaps };
}

t.test('delivers in-order segments as they come, starting after the SYN', async (t) => {
  const { r, seg, text, locs } = recorder();
  seg(1000, '', SYN);
  seg(1001, 'OPTIONS ', ACK, 10);
  seg(1009, 'rtsp://x', ACK, 20);
  seg(1017, '', ACK);
  t.equal(text(), 'OPTIONS rtsp://x');
  t.same(locs, [10, 20]);
  t.same([r.delivered, r.gaps, r.retransmitted, r.buffered, r.ended], [16, 0, 0, 0, false]);
  seg(1017, '', FIN | ACK);
  t.ok(r.ended, 'FIN ends the direction');
});

t.test('in-order data is a view of the caller buffer, not a copy', async (t) => {
  const b = Buffer.from('xxabcdef');
  let got: Buffer | null = null;
  const r = new TcpReassembler({ onData: (d) => (got = d), onGap: () => {} });
  r.push(5, ACK, b, 2, 6, null);
  b[2] = 0x41; // 'A'
  t.equal(got!.toString(), 'Abcdef', 'a change to the packet shows through');
});

t.test('holds reordered segments and delivers them when the hole fills', async (t) => {
  const { r, seg, text, locs } = recorder();
  seg(1, '', SYN);
  seg(2, 'aaaa', ACK, 1);
  seg(10, 'cccc', ACK, 3);
  seg(14, 'dddd', ACK, 4);
  t.equal(text(), 'aaaa');
  t.equal(r.buffered, 8);
  seg(6, 'bbbb', ACK, 2);
  t.equal(text(), 'aaaabbbbccccdddd');
  t.same(locs, [1, 2, 3, 4], 'each piece keeps the location of its packet');
  t.equal(r.buffered, 0);
});

t.test('held data is a copy: the caller may reuse its buffer', async (t) => {
  const out: string[] = [];
  const r = new TcpReassembler({ onData: (d) => out.push(d.toString()), onGap: () => {} });
  const scratch = Buffer.alloc(4);
  r.push(0, SYN, scratch, 0, 0, null);
  scratch.write('BBBB');
  r.push(5, ACK, scratch, 0, 4, null);
  scratch.write('AAAA');
  r.push(1, ACK, scratch, 0, 4, null);
  t.equal(out.join(''), 'AAAABBBB');
});

t.test('drops retransmissions and trims overlaps', async (t) => {
  const { r, seg, text } = recorder();
  seg(100, '', SYN);
  seg(101, 'hello');
  seg(101, 'hello'); // full retransmission
  seg(104, 'lo wor'); // overlaps 2 delivered bytes
  seg(108, 'orld'); // overlaps the end
  seg(120, 'XYZ'); // ahead
  seg(120, 'XYZ'); // retransmission of held data
  seg(118, 'abXY'); // overlaps held data
  seg(112, '!12345'); // fills the hole exactly
  t.equal(text(), 'hello world!12345abXYZ');
  t.equal(r.retransmitted, 4);
  t.equal(r.buffered, 0);
});

t.test('handles the sequence number wrapping at 2^32', async (t) => {
  const { r, seg, text } = recorder();
  seg(0xfffffffa, '', SYN);
  seg(0xfffffffb, 'abc');
  seg(0x00000001, 'ghi'); // after the wrap, held
  seg(0xfffffffe, 'def'); // spans the wrap: 0xfffffffe, 0xffffffff, 0x0
  seg(0xfffffffb, 'abcdef'); // old retransmission from before the wrap
  t.equal(text(), 'abcdefghi');
  t.equal(r.delivered, 9);
  t.equal(r.retransmitted, 1);
});

t.test('without a SYN the first segment with data starts the stream', async (t) => {
  const { seg, text } = recorder();
  seg(5000, '', ACK); // a pure ACK does not start it
  seg(7000, 'mid-stream ');
  seg(6990, 'ignored...'); // before the start: as old as a retransmission
  seg(7011, 'capture');
  t.equal(text(), 'mid-stream capture');
});

t.test('a lost segment is skipped with onGap on flush', async (t) => {
  const { r, seg, text, gaps } = recorder();
  seg(0, '', SYN);
  seg(1, 'aaaa');
  seg(9, 'cccc'); // 'bbbb' at 5 never comes
  seg(17, 'eeee'); // and 'dddd' at 13 neither
  t.equal(text(), 'aaaa');
  r.flush();
  t.equal(text(), 'aaaa~~~~cccc~~~~eeee');
  t.same(gaps, [4, 4]);
  t.same([r.gaps, r.gapBytes, r.delivered, r.buffered], [2, 8, 12, 0]);
  seg(5, 'bbbb'); // the late segment is now behind: dropped
  seg(21, 'ffff');
  t.equal(text(), 'aaaa~~~~cccc~~~~eeeeffff');
});

t.test('gives up on a hole when the held bytes would exceed the limit', async (t) => {
  const { r, seg, text, gaps } = recorder({ maxBufferedBytes: 8 });
  seg(0, '', SYN);
  seg(1, 'aa');
  seg(5, 'cccc'); // hole of 2 at 3
  seg(9, 'dddd'); // 8 held
  t.equal(r.buffered, 8);
  seg(13, 'eeee'); // would be 12: skip the hole, deliver cccc dddd, then eeee in order
  t.equal(text(), 'aa~~ccccddddeeee');
  t.same(gaps, [2]);
  t.equal(r.buffered, 0);
  seg(30, '0123456789'); // a single segment larger than the limit, ahead of a hole
  t.equal(text(), 'aa~~ccccddddeeee' + '~'.repeat(13) + '0123456789');
});

t.test('RST ends the direction; data after the SYN-ACK handshake flags', async (t) => {
  const { r, seg, text } = recorder();
  seg(41, 'x', SYN | ACK); // TCP Fast Open style data on the SYN
  seg(43, 'y', RST | ACK);
  t.equal(text(), 'xy');
  t.ok(r.ended);
});

t.test('reassembles both directions of lo_tcp_interleaved_h264 byte for byte as tshark does', { skip: noTshark }, async (t) => {
  const rows = tsharkFields('lo_tcp_interleaved_h264.pcap', 'tcp', ['frame.number', 'tcp.srcport', 'tcp.seq_raw', 'tcp.flags', 'tcp.payload']);
  const want = tsharkFollow('lo_tcp_interleaved_h264.pcap', 0);
  const clientPort = rows[0]![1]; // the SYN comes from the client (follow node 0)
  const expected = [0, 1].map((d) => Buffer.concat(want.filter((c) => c.dir === d).map((c) => c.data)));
  const segments = rows.map(([frame, port, seq, flags, payload]) => ({
    frame: Number(frame),
    dir: port === clientPort ? 0 : 1,
    seq: Number(seq),
    flags: Number(flags),
    data: Buffer.from(payload ?? '', 'hex'),
  }));

  const run = (order: typeof segments) => {
    const got: Buffer[][] = [[], []];
    const gaps = [0, 0];
    const rs = [0, 1].map(
      (d) => new TcpReassembler({ onData: (b) => got[d]!.push(Buffer.from(b)), onGap: (n) => (gaps[d]! += n) }),
    );
    for (const s of order) rs[s.dir]!.push(s.seq, s.flags, s.data, 0, s.data.length, { segment: 0, offset: s.frame });
    return { got: got.map((g) => Buffer.concat(g)), gaps, rs };
  };

  const inOrder = run(segments);
  t.ok(expected[1]!.length > 300_000, `${expected[1]!.length} bytes camera->client`);
  t.ok(inOrder.got[0]!.equals(expected[0]!), 'client->camera bytes');
  t.ok(inOrder.got[1]!.equals(expected[1]!), 'camera->client bytes');
  t.same(inOrder.gaps, [0, 0]);
  t.ok(inOrder.rs[0]!.ended, 'the client RST after TEARDOWN ends its direction');
  t.notOk(inOrder.rs[1]!.ended, 'the capture stops before the camera FIN');

  // Same capture with segments shuffled within windows of 8 and every 5th one sent twice.
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const mixed: typeof segments = [];
  const syns = segments.filter((s) => s.flags & SYN);
  const rest = segments.filter((s) => !(s.flags & SYN));
  for (let i = 0; i < rest.length; i += 8) {
    const win = rest.slice(i, i + 8);
    for (let j = win.length - 1; j > 0; j--) {
      const k = Math.floor(rand() * (j + 1));
      [win[j], win[k]] = [win[k]!, win[j]!];
    }
    win.forEach((s, j) => {
      mixed.push(s);
      if ((i + j) % 5 === 0) mixed.push(s);
    });
  }
  const shuffled = run([...syns, ...mixed]);
  t.ok(shuffled.got[1]!.equals(expected[1]!), 'camera->client bytes after reordering and duplication');
  t.ok(shuffled.got[0]!.equals(expected[0]!), 'client->camera bytes after reordering and duplication');
  t.ok(shuffled.rs[1]!.retransmitted > 100, 'duplicates were counted');
});

t.test('bounds the number of held segments, not only their bytes', async (t) => {
  const { r, seg, text, gaps } = recorder({ maxBufferedSegments: 3 });
  seg(0, '', SYN);
  seg(3, 'b'); // hole of 2 at 1
  seg(5, 'c');
  seg(7, 'd'); // 3 held, 3 bytes
  seg(9, 'e'); // a 4th would exceed: the first hole is given up, then 'e' is held
  t.equal(text(), '~~b');
  t.same(gaps, [2]);
  t.equal(r.buffered, 3, 'c d e');
  r.flush();
  t.equal(text(), '~~b~c~d~e');
});
