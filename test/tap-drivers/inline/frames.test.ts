/**
 * The synthesized headers against hand-computed bytes from the RFCs (tshark judges whole
 * captures in index.test.ts).
 */
import t from 'tap';
import { FrameWriter, TCP_ACK, TCP_SYN } from '../../../tap-drivers/inline/frames.js';
import { toIpAddr } from '../../../tap-drivers/inline/addresses.js';

t.test('an IPv4/UDP header equals the worked checksum example (RFC 1071 sum: 0xB861)', async (t) => {
  // The classic example header 4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7:
  // 115 bytes in all, ID 0, DF, TTL 64, UDP, 192.168.0.1 -> 192.168.0.199.
  const w = new FrameWriter(0);
  const len = w.udp(toIpAddr('192.168.0.1')!, 1000, toIpAddr('192.168.0.199')!, 2000, Buffer.alloc(87), 0, 87);
  t.equal(len, 115);
  t.equal(w.buf.subarray(0, 20).toString('hex'), '450000730000400040' + '11b861c0a80001c0a800c7');
  t.equal(w.buf.subarray(20, 26).toString('hex'), '03e807d0005f', 'UDP ports 1000 -> 2000, length 8 + 87');
});

t.test('the IPv4 Identification increments per datagram and wraps at 16 bits', async (t) => {
  const w = new FrameWriter(0xfffe);
  const a = toIpAddr('10.0.0.1')!;
  const ids: number[] = [];
  for (let i = 0; i < 3; i++) {
    w.udp(a, 1, a, 2, Buffer.alloc(1), 0, 1);
    ids.push(w.buf.readUInt16BE(4));
  }
  t.same(ids, [0xfffe, 0xffff, 0]);
});

t.test('a SYN carries the MSS option in a 24-byte header (RFC 9293 §3.2); other segments a 20-byte one', async (t) => {
  const w = new FrameWriter(0);
  const c = toIpAddr('2001:db8::1')!;
  const s = toIpAddr('2001:db8::2')!;
  let len = w.tcp(c, 40000, s, 554, 0x01020304, 0, TCP_SYN, 1440, null, 0, 0);
  t.equal(len, 40 + 24);
  t.equal(w.buf.subarray(0, 8).toString('hex'), '6000000000180640', 'version 6, payload length 24, next header TCP, hop limit 64');
  t.equal(w.buf.subarray(40, 48).toString('hex'), '9c40022a01020304', 'ports 40000 -> 554, sequence number');
  t.equal(w.buf.subarray(40 + 12, 40 + 14).toString('hex'), '6002', 'data offset 6 words, SYN');
  t.equal(w.buf.readUInt32BE(40 + 8), 0, 'no acknowledgment number without ACK');
  t.equal(w.buf.subarray(40 + 20, 40 + 24).toString('hex'), '020405a0', 'MSS 1440');
  len = w.tcp(c, 40000, s, 554, 5, 9, TCP_ACK, 0, Buffer.from('hi'), 0, 2);
  t.equal(len, 40 + 20 + 2);
  t.equal(w.buf.subarray(40 + 12, 40 + 14).toString('hex'), '5010', 'data offset 5 words, ACK');
  t.equal(w.buf.readUInt32BE(40 + 8), 9);
  t.equal(w.buf.subarray(60, 62).toString(), 'hi');
});

t.test('addresses: IPv4-mapped IPv6 becomes IPv4; IPv6 text is canonical (RFC 5952); names are refused', async (t) => {
  t.match(toIpAddr('::ffff:10.1.2.3'), { version: 4, text: '10.1.2.3' });
  t.match(toIpAddr('2001:DB8:0:0:0:0:0:1'), { version: 6, text: '2001:db8::1' });
  t.match(toIpAddr('[fe80::1%eth0]'), { version: 6, text: 'fe80::1' });
  t.equal(toIpAddr('camera.local'), null);
  t.equal(toIpAddr('10.0.0.256'), null);
});
