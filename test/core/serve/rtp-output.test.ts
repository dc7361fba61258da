/**
 * Packet outputs: `$` framing (RFC 2326 §10.12) with bytes worked out by hand, copies
 * that outlive the caller's buffer, the even/odd UDP port pair (RFC 3550 §11).
 */
import t from 'tap';
import { InterleavedOutput, SendSlab, bindUdpPair, type InterleavedLink } from '../../../core/serve/rtp-output.js';

class Link implements InterleavedLink {
  frames: Buffer[] = [];
  closed = false;
  congested = false;
  writeFrame(f: Buffer): boolean {
    this.frames.push(f);
    return true;
  }
  drained(): Promise<void> | null {
    return null;
  }
}

t.test('interleaved frames: $, channel, 16-bit length, the packet; RTP on the even channel, RTCP on the odd', async (t) => {
  const link = new Link();
  const out = new InterleavedOutput(link, [2, 3]);
  const pkt = Buffer.from([0x80, 0x60, 0x00, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0xaa]);
  t.ok(out.sendRtp(pkt));
  t.ok(out.sendRtcp(Buffer.from([0x80, 0xc8, 0, 0])));
  pkt.fill(0); // the caller reuses its buffer at once
  t.same([...link.frames[0]!], [0x24, 2, 0, 13, 0x80, 0x60, 0x00, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0xaa], 'a copy, framed');
  t.same([...link.frames[1]!], [0x24, 3, 0, 4, 0x80, 0xc8, 0, 0]);
  t.equal(out.transport(0x28f14659), 'RTP/AVP/TCP;unicast;interleaved=2-3;ssrc=28F14659;mode="PLAY"');
  out.close();
  t.notOk(out.sendRtp(pkt), 'nothing after close');
});

t.test('slab views never overlap', async (t) => {
  const slab = new SendSlab(1024);
  const views = Array.from({ length: 50 }, (_, i) => slab.take(100).fill(i));
  t.ok(views.every((v, i) => v.every((b) => b === i)), 'each view kept its bytes');
  t.equal(slab.take(600).length, 600, 'larger than a quarter slab: own buffer');
});

t.test('UDP port pairs are even/odd and adjacent', async (t) => {
  for (let i = 0; i < 5; i++) {
    const [a, b] = await bindUdpPair('127.0.0.1');
    const p = a.address().port;
    t.ok(p % 2 === 0 && b.address().port === p + 1, `${p}/${b.address().port}`);
    a.close();
    b.close();
  }
});
