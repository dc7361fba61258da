/**
 * The player: RTCP packets it writes (bytes worked out from RFC 3550 §6.5, §6.6), and what
 * it sends from a real capture into an output that records: every packet in order, the
 * cut last access unit held back, sender reports, BYE at the end, PAUSE/stop.
 */
import t from 'tap';
import { silentLogger } from '../../../core/logger.js';
import { Player, writeBye, writeSdesCname, type PlayerEnd } from '../../../core/serve/pacer.js';
import type { MediaOutput } from '../../../core/serve/rtp-output.js';
import { RtcpType, walkRtcp } from '../../../core/wire/rtcp.js';
import { RtpHeader, parseRtp } from '../../../core/wire/rtp.js';
import { PcapReplaySource } from './pcap-replay-source.js';
import { h264Stream } from './serve-fixture.js';

t.test('SDES with one CNAME and BYE, byte for byte', async (t) => {
  const b = Buffer.alloc(32, 0xff);
  t.equal(writeSdesCname(b, 0, 0x01020304, Buffer.from('ab')), 16);
  // V=2 SC=1, PT 202, length 3 words; SSRC; CNAME(1) len 2 'a' 'b'; END + pad to 32 bits.
  t.same([...b.subarray(0, 16)], [0x81, 0xca, 0, 3, 1, 2, 3, 4, 1, 2, 0x61, 0x62, 0, 0, 0, 0]);
  const c = Buffer.alloc(8);
  t.equal(writeBye(c, 0, 0xdeadbeef), 8);
  t.same([...c], [0x81, 0xcb, 0, 1, 0xde, 0xad, 0xbe, 0xef]);
});

class Recorder implements MediaOutput {
  readonly kind = 'tcp' as const;
  rtp: Buffer[] = [];
  rtcp: Buffer[] = [];
  closed = false;
  transport(): string {
    return '';
  }
  sendRtp(p: Buffer): boolean {
    this.rtp.push(Buffer.from(p));
    return true;
  }
  sendRtcp(p: Buffer): boolean {
    this.rtcp.push(Buffer.from(p));
    return true;
  }
  backpressure(): Promise<void> | null {
    return null;
  }
  congested(): boolean {
    return false;
  }
  close(): void {
    this.closed = true;
  }
}

async function player(speed: number) {
  const s = await h264Stream();
  const source = new PcapReplaySource(new Map([['test', s]]));
  const plan = await source.plan('/replay/test', new URLSearchParams(), null);
  const abort = new AbortController();
  const out = new Recorder();
  let ended: PlayerEnd | null = null;
  const p = new Player({ iterator: source.packets(plan, { ssrc: 7, signal: abort.signal })[Symbol.asyncIterator](), output: out, ssrc: 7, speed, cname: 'camtap@test', log: silentLogger, onEnd: (w) => (ended = w) });
  return { s, source, out, p, ended: () => ended };
}

t.test('unpaced: every packet in order, the cut last access unit not sent, SR first and SR+BYE last', async (t) => {
  const { s, out, p, ended } = await player(Infinity);
  const first = await p.prime();
  t.same(first && [first.seq, first.tsNs], [1000, s.packets[0]!.tsNs], 'prime gives the first packet');
  p.start();
  while (!ended()) await new Promise((r) => setTimeout(r, 10));
  t.equal(ended(), 'eos');
  const last = s.packets.map((x) => x.marker).lastIndexOf(true);
  t.equal(out.rtp.length, last + 1, 'up to the last marker packet');
  const h = new RtpHeader();
  t.ok(out.rtp.every((b, i) => parseRtp(b, 0, b.length, h) && h.seq === 1000 + i && h.ssrc === 7 && b.subarray(12).equals(s.packets[i]!.payload)), 'in order, rewritten, payload intact');
  const types = out.rtcp.map((b) => {
    const pts: number[] = [];
    walkRtcp(b, 0, b.length, (pt) => pts.push(pt));
    return pts;
  });
  t.same(types[0], [RtcpType.SR, RtcpType.SDES], 'an SR (+ CNAME) after the first packet');
  t.same(types[types.length - 1], [RtcpType.SR, RtcpType.SDES, RtcpType.BYE], 'SR + BYE at the end');
});

t.test('pause holds, resume goes on from the held position, stop ends and closes the source', async (t) => {
  const { source, out, p, ended } = await player(1);
  await p.prime();
  p.start();
  while (out.rtp.length < 20) await new Promise((r) => setTimeout(r, 10));
  p.pause();
  await new Promise((r) => setTimeout(r, 100));
  const n = out.rtp.length;
  const pos = p.position()!;
  const h = new RtpHeader();
  const lastSent = out.rtp[n - 1]!;
  parseRtp(lastSent, 0, lastSent.length, h);
  t.equal(pos.seq, (h.seq + 1) & 0xffff, 'position = the packet after the last one sent');
  await new Promise((r) => setTimeout(r, 200));
  t.equal(out.rtp.length, n, 'nothing sent while paused');
  p.resume(Infinity);
  while (out.rtp.length <= n) await new Promise((r) => setTimeout(r, 10));
  const next = out.rtp[n]!;
  parseRtp(next, 0, next.length, h);
  t.equal(h.seq, pos.seq, 'resumes there');
  p.stop();
  while (!ended()) await new Promise((r) => setTimeout(r, 10));
  t.ok(ended() === 'stopped' || ended() === 'eos');
  while (source.open > 0) await new Promise((r) => setTimeout(r, 10));
  t.equal(source.open, 0, 'the source iterator is closed');
});
