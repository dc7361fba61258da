/**
 * The in-order stages on hand-made packet sequences: extended sequence numbers across
 * the 16-bit wrap (RFC 3550 §A.1), duplicate removal, bounded reordering, the start
 * gate, and access units.
 */
import t from 'tap';
import { AccessUnits, SeqExtender, SeqReorderer, StartGate, type StreamPacket } from '../../../core/query/reorder.js';
import { FrameFlags } from '../../../core/wire/codecs.js';

const MS = 1_000_000n;

function pkt(ext: number, over: Partial<StreamPacket> = {}): StreamPacket {
  return { tsNs: BigInt(ext) * MS, ext, seq: ext & 0xffff, timestamp: ext * 10, marker: false, payloadType: 96, flags: 0, data: Buffer.alloc(12), ...over };
}

t.test('SeqExtender unwraps across 65535 -> 0 and back, from a seed', async (t) => {
  const x = new SeqExtender(null);
  t.same([65534, 65535, 0, 1, 65535, 2].map((s) => x.extend(s)), [131070, 131071, 131072, 131073, 131071, 131074], 'first + 65536, then unwrapped');
  const y = new SeqExtender(200_000);
  t.equal(y.extend(200_000 & 0xffff), 200_000, 'the seed packet gets the seed');
  t.equal(y.extend((200_000 - 3) & 0xffff), 199_997, 'an earlier one stays earlier');
});

t.test('SeqReorderer puts a wrap-around burst back in order and drops duplicates', async (t) => {
  const out: number[] = [];
  const r = new SeqReorderer(64, 500n * MS, (p) => out.push(p.ext));
  r.start(131070);
  for (const e of [131071, 131070, 131073, 131072, 131072, 131071, 131074]) r.push(pkt(e));
  r.flush();
  t.same(out, [131070, 131071, 131072, 131073, 131074]);
  t.equal(r.dropped, 2, 'two duplicates dropped');
});

t.test('packets before the start are dropped', async (t) => {
  const out: number[] = [];
  const r = new SeqReorderer(64, 500n * MS, (p) => out.push(p.ext));
  r.start(100);
  for (const e of [99, 100, 98, 101]) r.push(pkt(e));
  t.same(out, [100, 101], 'released at once when in line');
});

t.test('a hole is waited for at most `window` packets, then counted lost', async (t) => {
  const out: number[] = [];
  const r = new SeqReorderer(3, 10_000n * MS, (p) => out.push(p.ext));
  r.start(10);
  r.push(pkt(10));
  for (const e of [12, 13, 14]) r.push(pkt(e));
  t.same(out, [10], 'three held behind the hole');
  r.push(pkt(15));
  t.same(out, [10, 12, 13, 14, 15], 'the fourth releases them: 11 is lost');
  r.push(pkt(11));
  t.same(out, [10, 12, 13, 14, 15], '11 coming after its place passed is dropped');
});

t.test('a hole is waited for at most maxHoldNs of capture time', async (t) => {
  const out: number[] = [];
  const r = new SeqReorderer(64, 100n * MS, (p) => out.push(p.ext));
  r.start(1);
  r.push(pkt(1, { tsNs: 0n }));
  r.push(pkt(3, { tsNs: 10n * MS }));
  r.push(pkt(4, { tsNs: 50n * MS }));
  t.same(out, [1], 'within 100 ms: held');
  r.push(pkt(5, { tsNs: 111n * MS }));
  t.same(out, [1, 3, 4, 5], '101 ms after the first held one: released');
});

t.test('StartGate: an indexed keyframe start brings the rest of its access unit before it', async (t) => {
  const g = new StartGate({ kind: 'ext', ext: 53 });
  const aud = pkt(51, { timestamp: 7 });
  const sps = pkt(52, { timestamp: 7 });
  t.equal(g.offer(pkt(49, { timestamp: 6 })), null);
  t.equal(g.offer(pkt(50, { timestamp: 6, marker: true })), null);
  t.equal(g.offer(aud), null);
  t.equal(g.offer(sps), null);
  const r = g.offer(pkt(53, { timestamp: 7, flags: FrameFlags.KEYFRAME }));
  t.equal(r?.startExt, 51, 'starts at the unit\'s first packet');
  t.same(r?.packets.map((p) => p.ext), [51, 52, 53]);
});

t.test('StartGate: the first keyframe at or after a time', async (t) => {
  const g = new StartGate({ kind: 'keyframe', minTsNs: 20n * MS });
  t.equal(g.offer(pkt(10, { timestamp: 1, flags: FrameFlags.KEYFRAME })), null, 'a keyframe before the time');
  t.equal(g.offer(pkt(21, { timestamp: 2 })), null, 'not a keyframe');
  t.equal(g.offer(pkt(22, { timestamp: 3 })), null);
  const r = g.offer(pkt(23, { timestamp: 3, flags: FrameFlags.KEYFRAME }));
  t.equal(r?.startExt, 22);
});

t.test('StartGate: streams without keyframes start at the first packet at or after the time', async (t) => {
  const g = new StartGate({ kind: 'time', minTsNs: 20n * MS });
  t.equal(g.offer(pkt(19)), null);
  t.same(g.offer(pkt(20))?.packets.map((p) => p.ext), [20]);
});

t.test('AccessUnits flags the first packet of a unit holding a keyframe, closes units on marker or new timestamp', async (t) => {
  const out: Array<[number, boolean]> = [];
  const a = new AccessUnits((p, k) => out.push([p.ext, k]));
  a.push(pkt(1, { timestamp: 100 })); // AUD
  a.push(pkt(2, { timestamp: 100, flags: FrameFlags.KEYFRAME })); // SPS
  t.same(out, [], 'held until the unit ends');
  a.push(pkt(3, { timestamp: 100, marker: true }));
  t.same(out, [[1, true], [2, false], [3, false]], 'the marker ends the unit; its first packet is flagged');
  a.push(pkt(4, { timestamp: 200 }));
  a.push(pkt(5, { timestamp: 300 }));
  t.same(out.slice(3), [[4, false]], 'a new timestamp ends the unit too');
  a.flush();
  t.same(out.slice(4), [[5, false]]);
});
