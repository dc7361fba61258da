/**
 * The live fan-out: one feed, many players, each with its own output. Packets are hand
 * made RTP (RFC 3550 §5.1) with H.264 payloads whose NAL types (RFC 6184 §5.2) say what
 * is a keyframe; what a player sends is checked byte by byte.
 */
import t from 'tap';
import { LiveChannel, type LivePacket } from '../../../core/live/channel.js';
import { LivePlayer } from '../../../core/live/live-player.js';
import type { MediaOutput } from '../../../core/serve/rtp-output.js';
import { silentLogger } from '../../../core/logger.js';

class Out implements MediaOutput {
  readonly kind = 'tcp' as const;
  rtp: Buffer[] = [];
  rtcp: Buffer[] = [];
  closed = false;
  busy = false;
  transport(): string {
    return '';
  }
  sendRtp(p: Buffer): boolean {
    if (this.closed) return false;
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
    return this.busy;
  }
  close(): void {
    this.closed = true;
  }
}

/** RTP packet: V=2, PT 96, marker, seq, ts, SSRC 0x11223344, one NAL unit of `nalType`. */
function rtp(seq: number, ts: number, nalType: number, marker = true): Buffer {
  const b = Buffer.alloc(12 + 4);
  b[0] = 0x80;
  b[1] = (marker ? 0x80 : 0) | 96;
  b.writeUInt16BE(seq & 0xffff, 2);
  b.writeUInt32BE(ts >>> 0, 4);
  b.writeUInt32BE(0x11223344, 8);
  b[12] = 0x60 | nalType;
  b[13] = 0x88;
  return b;
}

function channel(): LiveChannel {
  return new LiveChannel({ key: 'k', sdp: '', camera: 'cam', payloadType: 96, codec: 'H264', clockRate: 90000 });
}

function pkt(seq: number, ts: number, nalType: number): LivePacket {
  return { rtp: rtp(seq, ts, nalType), tsNs: BigInt(1_700_000_000_000 + seq) * 1_000_000n, keyframe: nalType === 5 || nalType === 7 };
}

function player(ch: LiveChannel, out: Out, ends: string[], maxThinMs = 10_000): LivePlayer {
  return new LivePlayer({ feed: ch, output: out, ssrc: 0xaabbccdd, cname: 'camtap@test', log: silentLogger, onEnd: (w) => ends.push(w), initialSeq: 1000, initialTimestamp: 5000, maxThinMs });
}

t.test('a player starts at the first keyframe and rewrites SSRC, sequence numbers and timestamps from its own bases', async (t) => {
  const ch = channel();
  const out = new Out();
  const p = player(ch, out, []);
  p.start();
  ch.publish(pkt(65534, 100, 1)); // a P slice: not sent, no keyframe yet
  ch.publish(pkt(65535, 3100, 7)); // SPS: the keyframe starts here
  ch.publish(pkt(0, 3100, 5)); // IDR, seq wraps
  ch.publish(pkt(1, 6100, 1));
  t.equal(out.rtp.length, 3, 'three packets from the keyframe on');
  t.same(out.rtp.map((b) => b.readUInt16BE(2)), [1000, 1001, 1002], 'sequence numbers from the base, continuous across the wrap');
  t.same(out.rtp.map((b) => b.readUInt32BE(4)), [5000, 5000, 8000], 'timestamps from the base, spacing kept');
  t.ok(out.rtp.every((b) => b.readUInt32BE(8) === 0xaabbccdd), 'the session SSRC');
  t.same(out.rtp.map((b) => b[12]! & 0x1f), [7, 5, 1], 'payloads untouched');
  t.equal(p.stats.waitedForKey, 1);
  t.equal(out.rtcp.length, 1, 'a sender report follows the first packet');
  t.equal(out.rtcp[0]![1], 200, 'SR first in the compound (RFC 3550 §6.1)');
  t.equal(out.rtcp[0]!.readUInt32BE(16), 5000, 'the SR maps the first packet timestamp');
});

t.test('a congested client is thinned and resumes at the next keyframe; the others get everything', async (t) => {
  const ch = channel();
  const slow = new Out();
  const fast = new Out();
  const ends: string[] = [];
  const ps = player(ch, slow, ends);
  const pf = player(ch, fast, ends);
  ps.start();
  pf.start();
  let seq = 10;
  ch.publish(pkt(seq++, 0, 5));
  ch.publish(pkt(seq++, 3000, 1));
  slow.busy = true;
  ch.publish(pkt(seq++, 6000, 1));
  ch.publish(pkt(seq++, 9000, 1));
  slow.busy = false;
  ch.publish(pkt(seq++, 12000, 1)); // drained, but mid-GOP: still dropped
  ch.publish(pkt(seq++, 15000, 5)); // resumes here
  ch.publish(pkt(seq++, 18000, 1));
  t.equal(fast.rtp.length, 7, 'the fast client got every packet');
  t.same(slow.rtp.map((b) => b[12]! & 0x1f), [5, 1, 5, 1], 'the slow client: up to the congestion, then from the next keyframe');
  t.same(slow.rtp.map((b) => b.readUInt16BE(2)), [1000, 1001, 1002, 1003], 'its sequence numbers stay continuous (a decoder sees no loss)');
  t.same(slow.rtp.map((b) => b.readUInt32BE(4)), [5000, 8000, 20000, 23000], 'its timestamps show the time that passed');
  t.equal(ps.stats.thinned, 2);
  t.equal(ps.stats.thinEpisodes, 1);
  t.same(ends, [], 'nobody dropped');
});

t.test('a client congested longer than maxThinMs is dropped; the feed goes on for the others', async (t) => {
  const ch = channel();
  const slow = new Out();
  const fast = new Out();
  const ends: string[] = [];
  player(ch, slow, ends, 20).start();
  player(ch, fast, []).start();
  ch.publish(pkt(1, 0, 5));
  slow.busy = true;
  ch.publish(pkt(2, 3000, 1));
  await new Promise((r) => setTimeout(r, 40));
  ch.publish(pkt(3, 6000, 1));
  t.same(ends, ['dropped'], 'the slow one ended as dropped');
  t.equal(ch.subscribers, 1, 'and left the feed');
  ch.publish(pkt(4, 9000, 1));
  t.equal(fast.rtp.length, 4, 'the other still gets every packet');
});

t.test('pause leaves the feed; play again resumes at a keyframe; the end of the feed sends BYE', async (t) => {
  const ch = channel();
  const out = new Out();
  const ends: string[] = [];
  const p = player(ch, out, ends);
  p.start();
  ch.publish(pkt(1, 0, 5));
  p.pause();
  t.equal(ch.subscribers, 0, 'paused: not subscribed');
  ch.publish(pkt(2, 3000, 1));
  p.start();
  ch.publish(pkt(3, 6000, 1));
  ch.publish(pkt(4, 9000, 5));
  t.same(out.rtp.map((b) => b[12]! & 0x1f), [5, 5]);
  t.same(out.rtp.map((b) => b.readUInt16BE(2)), [1000, 1001]);
  ch.end('camera stopped');
  t.same(ends, ['eos']);
  const last = out.rtcp.at(-1)!;
  let off = 0;
  const types: number[] = [];
  while (off + 4 <= last.length) {
    types.push(last[off + 1]!);
    off += (last.readUInt16BE(off + 2) + 1) * 4;
  }
  t.same(types, [200, 202, 203], 'SR, SDES, BYE');
});

t.test('a codec without keyframe marks (audio, unknown) starts at once', async (t) => {
  const ch = new LiveChannel({ key: 'a', sdp: '', camera: 'cam', payloadType: 0, codec: 'PCMU', clockRate: 8000 });
  const out = new Out();
  player(ch, out, []).start();
  ch.publish({ rtp: rtp(7, 160, 1), tsNs: 1n, keyframe: false });
  t.equal(out.rtp.length, 1);
});

t.test('a channel isolates subscribers: one that throws is removed, the rest still get the packet', async (t) => {
  const ch = channel();
  const got: number[] = [];
  const ended: string[] = [];
  let idle = 0;
  const ch2 = new LiveChannel({ key: 'x', sdp: '', camera: 'c', payloadType: 96, codec: 'H264', clockRate: 90000, onIdle: () => idle++ });
  ch2.subscribe({ onPacket: () => { throw new Error('boom'); }, onEnd: (r) => ended.push(r) });
  const off = ch2.subscribe({ onPacket: (p) => got.push(p.rtp.readUInt16BE(2)), onEnd: () => {} });
  ch2.publish(pkt(5, 0, 5));
  ch2.publish(pkt(6, 0, 1));
  t.same(got, [5, 6]);
  t.match(ended[0], /subscriber failed: boom/);
  off();
  t.equal(idle, 1, 'the last subscriber leaving makes the channel idle');
  t.equal(ch.subscribers, 0);
});

t.test('a discontinuity (the camera session reconnected) re-bases numbering and waits for a keyframe', async (t) => {
  const ch = channel();
  const out = new Out();
  player(ch, out, []).start();
  ch.publish(pkt(100, 1000, 5));
  ch.publish(pkt(101, 4000, 1));
  ch.publish({ ...pkt(7, 90_000_000, 1), discontinuity: true }); // new source, mid-GOP: dropped
  ch.publish(pkt(8, 90_003_000, 5));
  ch.publish(pkt(9, 90_006_000, 1));
  t.same(out.rtp.map((b) => b.readUInt16BE(2)), [1000, 1001, 1002, 1003], 'sequence numbers continue');
  t.same(out.rtp.map((b) => b.readUInt32BE(4)), [5000, 8000, 11000, 14000], 'timestamps continue a frame later, not at the new source clock');
  t.same(out.rtp.map((b) => b[12]! & 0x1f), [5, 1, 5, 1], 'the new source from its keyframe');
});
