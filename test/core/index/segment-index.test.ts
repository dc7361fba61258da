import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SegmentIndexReader, SegmentIndexWriter, clearIndexReaderCache, indexFileNames, readSummary, removeIndexFiles, type IndexEntry } from '../../../core/index/segment-index.js';
import { SegmentStore } from '../../../core/store/segment-store.js';
import { isCamtapError } from '../../../core/errors.js';
import { CAPTURES, frameOf, hasTool, newFrame, readClassicPcap, tshark } from '../store/pcap-fixture.js';

function tmp(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'camtap-index-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const BASE_SEC = 1_795_467_919;
const BASE_NSEC = 999_999_990; // the first steps carry into the next second
/** Packet i of the synthetic streams: every 40 ms; exact ns by BigInt. */
function tsOf(i: number): { sec: number; nsec: number; ns: bigint } {
  const ns = BigInt(BASE_SEC) * 1_000_000_000n + BigInt(BASE_NSEC) + BigInt(i) * 40_000_000n;
  return { sec: Number(ns / 1_000_000_000n), nsec: Number(ns % 1_000_000_000n), ns };
}

const CAM = 'udp:10.0.0.1:5000>10.0.0.9:6000/ssrc=0x0badcafe';
const CAM2 = 'tcp:10.0.0.2:554>10.0.0.9:40000/ch=0/ssrc=0x00000001';

/** Stream CAM: 20 packets, keyframes at 5 and 13, offsets beyond 4 GiB. Stream CAM2: 6 packets, no keyframe, registered after its first packet. */
function buildWriter(): SegmentIndexWriter {
  const w = new SegmentIndexWriter(7, { every: 4 });
  w.registerStream(0, CAM);
  for (let i = 0; i < 20; i++) {
    const ts = tsOf(i);
    w.add(0, ts.sec, ts.nsec, 65_536 + 100 + i, 5_000_000_000 + i * 1000, i === 5 || i === 13);
    if (i < 6) {
      const t2 = tsOf(i * 3);
      w.add(3, t2.sec, t2.nsec, 131_072 + 65_530 + i, 100 + i * 64, false); // crosses a 16-bit wrap in ext terms
    }
  }
  w.registerStream(3, CAM2);
  return w;
}

function camEntry(i: number, keyframe: boolean): IndexEntry {
  return { tsNs: tsOf(i).ns, extSeq: 65_536 + 100 + i, offset: 5_000_000_000 + i * 1000, keyframe };
}

t.test('round trip: entries are the first packet, every keyframe start and one at most N packets after the last, times exact to the ns', async (t) => {
  const dir = tmp(t);
  const w = buildWriter();
  t.equal(w.packets, 26);
  w.writeSync(dir);
  const r = await SegmentIndexReader.open(dir, 7);
  t.equal(r.segmentId, 7);
  t.same(r.streams(), [CAM, CAM2]);
  // every = 4: the first packet, keyframes 5 and 13, and a packet 4 after the last kept one (4, 9, 17)
  t.same(r.entries(CAM), [camEntry(0, false), camEntry(4, false), camEntry(5, true), camEntry(9, false), camEntry(13, true), camEntry(17, false)]);
  t.same(
    r.entries(CAM2),
    [0, 4].map((i) => ({ tsNs: tsOf(i * 3).ns, extSeq: 131_072 + 65_530 + i, offset: 100 + i * 64, keyframe: false })),
  );
  t.same(r.entries('nope'), []);
  const cam = r.summary.streams.find((s) => s.streamId === CAM)!;
  t.same(cam, { streamId: CAM, entries: 6, keyframes: 2, packets: 20, firstTsNs: tsOf(0).ns, lastTsNs: tsOf(19).ns, minExtSeq: 65_636, maxExtSeq: 65_655, firstExtSeq: 65_636, lastExtSeq: 65_655 });
  t.equal(r.summary.packets, 26);
  t.equal(r.summary.firstTsNs, tsOf(0).ns);
  t.equal(r.summary.lastTsNs, tsOf(19).ns);

  const s = await readSummary(dir, 7);
  t.same(s, r.summary, 'summary.json says what the .idx says');
  t.same(readdirSync(dir).sort(), ['seg-00000007.idx', 'seg-00000007.summary.json'], 'no temp files left');

  const dir2 = tmp(t);
  await buildWriter().write(dir2);
  t.same(readFileSync(join(dir2, 'seg-00000007.idx')), readFileSync(join(dir, 'seg-00000007.idx')), 'write() and writeSync() write the same bytes');

  // Hand-computed size: 24 header + per stream (2 + id, padded to 4) + 80 fixed, 20 per entry, 4 CRC;
  // then per stream an offsets section (see below).
  const pad = (n: number): number => (n + 3) & ~3;
  const core = 24 + pad(2 + CAM.length) + 80 + pad(2 + CAM2.length) + 80 + 8 * 20 + 4;
  // Sections: 16 + one 16-byte checkpoint + LEB128 distances (CAM: 19 x 1000 = 2 bytes each; CAM2: 5 x 64 = 1 byte each), padded, + CRC.
  t.equal(statSync(join(dir, 'seg-00000007.idx')).size, core + (16 + 16 + 40 + 4) + (16 + 16 + 8 + 4));
  t.equal(readFileSync(join(dir, 'seg-00000007.idx')).readUInt16LE(4), 2, 'version 2');
  t.equal(readFileSync(join(dir, 'seg-00000007.idx')).readUInt32LE(20), core, 'the header gives the core size');
});

t.test('seekKeyframe: the latest keyframe at or before the time, else the stream\'s first entry, null when absent', async (t) => {
  const dir = tmp(t);
  buildWriter().writeSync(dir);
  const r = await SegmentIndexReader.open(dir, 7);
  t.same(r.seekKeyframe(CAM, tsOf(0).ns - 1n), camEntry(0, false), 'before everything: first entry');
  t.same(r.seekKeyframe(CAM, tsOf(3).ns), camEntry(0, false), 'before the first keyframe: first entry');
  t.same(r.seekKeyframe(CAM, tsOf(5).ns - 1n), camEntry(0, false), '1 ns before the keyframe');
  t.same(r.seekKeyframe(CAM, tsOf(5).ns), camEntry(5, true), 'exactly at the keyframe');
  t.same(r.seekKeyframe(CAM, tsOf(12).ns), camEntry(5, true), 'between keyframes: the preceding one');
  t.same(r.seekKeyframe(CAM, tsOf(13).ns), camEntry(13, true));
  t.same(r.seekKeyframe(CAM, tsOf(10_000).ns), camEntry(13, true), 'after the end: the last keyframe');
  t.same(r.seekKeyframe(CAM2, tsOf(15).ns), { tsNs: tsOf(0).ns, extSeq: 196_602, offset: 100, keyframe: false }, 'no keyframes: first entry');
  t.equal(r.seekKeyframe('udp:1.2.3.4:1>5.6.7.8:2/ssrc=0x1', tsOf(5).ns), null);
});

t.test('a stream that arrives out of time order still seeks by time', async (t) => {
  const dir = tmp(t);
  const w = new SegmentIndexWriter(1, { every: 1000 });
  w.registerStream(0, 's');
  const order = [2, 0, 1, 4, 3]; // keyframes all, written out of time order
  for (const i of order) w.add(0, tsOf(i * 10).sec, tsOf(i * 10).nsec, 70_000 + i, i * 100, true);
  w.writeSync(dir);
  const r = await SegmentIndexReader.open(dir, 1);
  t.same(r.entries('s').map((e) => e.offset), [200, 0, 100, 400, 300], 'entries stay in capture order');
  t.equal(r.seekKeyframe('s', tsOf(35).ns)!.offset, 300);
  t.equal(r.seekKeyframe('s', tsOf(5).ns)!.offset, 0);
  t.equal(r.summary.streams[0]!.firstTsNs, tsOf(0).ns);
  t.equal(r.summary.streams[0]!.lastTsNs, tsOf(40).ns);
  t.equal(r.summary.streams[0]!.firstExtSeq, 70_002);
  t.equal(r.summary.streams[0]!.minExtSeq, 70_000);
});

t.test('a damaged or missing sidecar is CAMTAP_ERR_INDEX naming the file', async (t) => {
  const dir = tmp(t);
  buildWriter().writeSync(dir);
  const file = join(dir, 'seg-00000007.idx');
  const good = readFileSync(file);
  const expectIndexError = async (what: string, p: Promise<unknown>, f: string, reason: RegExp): Promise<void> => {
    try {
      await p;
      t.fail(`${what}: no error`);
    } catch (e) {
      t.ok(isCamtapError(e, 'CAMTAP_ERR_INDEX'), `${what}: CAMTAP_ERR_INDEX`);
      if (isCamtapError(e)) {
        t.equal(e.details.file, f, `${what}: names the file`);
        t.ok(e.message.includes(f), `${what}: message names the file`);
        t.match(String(e.details.reason), reason, `${what}: says why`);
      }
    }
  };

  const flipped = Buffer.from(good);
  flipped[100] = flipped[100]! ^ 0x40;
  writeFileSync(file, flipped);
  await expectIndexError('one flipped bit', SegmentIndexReader.open(dir, 7), file, /checksum/);

  writeFileSync(file, good.subarray(0, good.length - 30));
  await expectIndexError('truncated', SegmentIndexReader.open(dir, 7), file, /checksum|truncated/);

  writeFileSync(file, good.subarray(0, 10));
  await expectIndexError('shorter than a header', SegmentIndexReader.open(dir, 7), file, /shorter/);

  const magic = Buffer.from(good);
  magic.write('PK', 0);
  writeFileSync(file, magic);
  await expectIndexError('bad magic', SegmentIndexReader.open(dir, 7), file, /magic/);

  writeFileSync(file, good);
  const other = join(dir, 'seg-00000008.idx');
  writeFileSync(other, good);
  await expectIndexError('another segment\'s index', SegmentIndexReader.open(dir, 8), other, /segment 7/);

  await expectIndexError('missing', SegmentIndexReader.open(dir, 9), join(dir, 'seg-00000009.idx'), /ENOENT/);

  const sum = join(dir, 'seg-00000007.summary.json');
  writeFileSync(sum, '{"segment": 7, "packets": 2');
  await expectIndexError('summary not JSON', readSummary(dir, 7), sum, /not JSON/);
  writeFileSync(sum, JSON.stringify({ segment: 7, packets: 1, firstTsNs: '1', lastTsNs: '2', streams: [{ streamId: 's', packets: 'many' }] }));
  await expectIndexError('summary field', readSummary(dir, 7), sum, /streams\[0\]\.packets/);

  await removeIndexFiles(dir, 7);
  t.notOk(existsSync(file));
  t.notOk(existsSync(sum));
  t.same(indexFileNames(123_456_789), { idx: 'seg-123456789.idx', summary: 'seg-123456789.summary.json' });
});

/**
 * H.264 keyframe start (RFC 6184), one per access unit (RTP timestamp): the first packet
 * of the AU that carries an SPS (single NAL or first NAL of a STAP-A) or an IDR slice
 * start (single NAL or FU-A start). These captures send SPS/PPS only before IDRs.
 */
function h264KeyStart(payload: Buffer, keySeenInAu: boolean): boolean {
  const type = payload[0]! & 0x1f;
  const sps = type === 7 || (type === 24 && payload.length > 3 && (payload[3]! & 0x1f) === 7);
  const idrStart = type === 5 || (type === 28 && payload.length > 1 && (payload[1]! & 0x80) !== 0 && (payload[1]! & 0x1f) === 5);
  return (sps || idrStart) && !keySeenInAu;
}

t.test('size: index + summary of real H.264 captures stay around 0.1% of the capture', { skip: hasTool('tshark') ? false : 'tshark not installed' }, async (t) => {
  for (const name of ['gen_8cam_360p.pcap', 'lo_udp_h264.pcap']) {
    const dataDir = tmp(t);
    const src = readClassicPcap(join(CAPTURES, name));
    const store = new SegmentStore({ dataDir, flushIntervalMs: 0 });
    await store.open();
    const f = newFrame();
    const offsets = src.packets.map((p) => store.append(frameOf(f, p, 1, src.linkType)).offset);
    await store.close();
    const seg = store.segments()[0]!;

    // RTP per frame from tshark (ground truth for streams, seq, timestamps); SSRC 0 is ffmpeg's NAT punch packet.
    const r = tshark(['-r', join(CAPTURES, name), '-o', 'rtp.heuristic_rtp:TRUE', '-Y', 'rtp and not icmp and rtp.ssrc != 0 and rtp.p_type == 96', '-T', 'fields', '-e', 'frame.number', '-e', 'rtp.ssrc', '-e', 'udp.dstport', '-e', 'rtp.seq', '-e', 'rtp.timestamp', '-e', 'rtp.payload']);
    t.equal(r.status, 0);
    const w = new SegmentIndexWriter(seg.id);
    let expectedEntries = 0;
    const keys = new Map<string, { key: number; cycles: number; last: number; au: number; sps: boolean; n: number; kf: number; since: number }>();
    const expectOffsets = new Map<string, number[]>();
    for (const line of r.lines) {
      const [num, ssrc, port, seqS, rtpTs, hex] = line.split('\t');
      const id = `${ssrc}/${port}`;
      let st = keys.get(id);
      if (!st) {
        st = { key: keys.size, cycles: 1, last: -1, au: -1, sps: false, n: 0, kf: 0, since: 0 };
        keys.set(id, st);
        w.registerStream(st.key, id);
      }
      const seq = Number(seqS);
      if (st.last >= 0 && seq < st.last && st.last - seq > 32768) st.cycles++;
      st.last = seq;
      if (Number(rtpTs) !== st.au) {
        st.au = Number(rtpTs);
        st.sps = false;
      }
      const key = h264KeyStart(Buffer.from(hex!.replace(/:/g, '').slice(0, 8), 'hex'), st.sps);
      if (key) {
        st.sps = true;
        st.kf++;
      }
      const pk = src.packets[Number(num) - 1]!;
      w.add(st.key, pk.tsSec, pk.tsNsec, st.cycles * 65536 + seq, offsets[Number(num) - 1]!, key);
      if (!expectOffsets.has(id)) expectOffsets.set(id, []);
      expectOffsets.get(id)!.push(offsets[Number(num) - 1]!);
      // The sampling rule: the first packet, keyframe starts, and a packet 64 after the last kept one.
      if (key || st.n === 0 || st.since >= 64) {
        expectedEntries++;
        st.since = 1;
      } else st.since++;
      st.n++;
    }
    const idxDir = join(dataDir, 'index');
    w.writeSync(idxDir);
    const names = indexFileNames(seg.id);
    const idxBytes = statSync(join(idxDir, names.idx)).size;
    const sumBytes = statSync(join(idxDir, names.summary)).size;
    const rd = await SegmentIndexReader.open(idxDir, seg.id);
    const gotEntries = rd.streams().reduce((n, s) => n + rd.entries(s).length, 0);
    t.equal(gotEntries, expectedEntries, `${name}: ${gotEntries} entries (keyframes + at most 64 packets apart)`);
    t.same(rd.summary.streams.map((x) => x.keyframes), [...keys.values()].map((x) => x.kf), `${name}: keyframes per stream`);
    // The summary and the stream table are a fixed cost per segment and stream; the entries grow with the capture.
    // Project both to a default 300 s segment of the same traffic.
    const secs = Number(seg.lastTsNs! - seg.firstTsNs!) / 1e9;
    // Besides the sampled table, per stream: 16 bytes in the stream table (where its section is) and the section:
    // 16 + 16 per checkpoint (every 256 packets) + the LEB128 distances between its packets' offsets, padded to 4, + 4.
    const lebLen = (x: number): number => (x < 128 ? 1 : x < 16384 ? 2 : x < 2097152 ? 3 : 4);
    let offsetBytes = 0;
    for (const offs of expectOffsets.values()) {
      let v = 0;
      for (let i = 1; i < offs.length; i++) if (i % 256 !== 0) v += lebLen(offs[i]! - offs[i - 1]!);
      offsetBytes += 16 + 16 + 16 * Math.ceil(offs.length / 256) + ((v + 3) & ~3) + 4;
    }
    const fixed = sumBytes + (idxBytes - 20 * gotEntries - offsetBytes);
    const projected = (fixed + 20 * gotEntries * (300 / secs)) / (seg.bytes * (300 / secs));
    t.comment(
      `${name}: ${keys.size} streams, ${w.packets} RTP packets in ${secs.toFixed(1)} s, segment ${seg.bytes} B, .idx ${idxBytes} B (${((idxBytes / seg.bytes) * 100).toFixed(3)}%), ` +
        `summary ${sumBytes} B (${((sumBytes / seg.bytes) * 100).toFixed(3)}%); projected to a 300 s segment: ${(projected * 100).toFixed(3)}%`,
    );
    const sampled = idxBytes - offsetBytes;
    t.ok(sampled / seg.bytes <= 0.001, `${name}: sampled table ${sampled} B within 0.1% of the capture`);
    t.ok(idxBytes / seg.bytes <= 0.005, `${name}: .idx with every packet's offset ${((idxBytes / seg.bytes) * 100).toFixed(3)}% of the capture, within the 1% budget of index + catalog`);
    t.ok(sumBytes <= 300 * keys.size + 100, `${name}: summary ${sumBytes} B for ${keys.size} streams`);
    t.ok(projected <= 0.001, `${name}: sampled table + summary ${(projected * 100).toFixed(3)}% of a 300 s segment`);
    // Every kept entry points at its packet's EPB, whose time is the entry's time.
    const segBuf = readFileSync(seg.path);
    let bad = 0;
    for (const s of rd.streams()) {
      for (const e of rd.entries(s)) {
        const ts = (BigInt(segBuf.readUInt32LE(e.offset + 12)) << 32n) | BigInt(segBuf.readUInt32LE(e.offset + 16));
        if (segBuf.readUInt32LE(e.offset) !== 6 || ts !== e.tsNs) bad++;
      }
    }
    t.equal(bad, 0, `${name}: entries point at their packets`);
    // Every RTP packet tshark sees in a stream has its record offset in the stream's list, in capture order.
    for (const [id, want] of expectOffsets) {
      const offs = await rd.offsets(id);
      const got = offs === null ? null : Array.from({ length: offs.count }, (_, i) => offs.at(i));
      t.same(got, want, `${name}: stream ${id}: the offsets of its ${want.length} packets`);
    }
  }
});

/** Offsets as a plain array. */
async function offsetsOf(r: SegmentIndexReader, id: string): Promise<number[] | null> {
  const o = await r.offsets(id);
  return o === null ? null : Array.from({ length: o.count }, (_, i) => o.at(i));
}

t.test('every packet\'s record offset is kept, in capture order, with exact lookups', async (t) => {
  const dir = tmp(t);
  buildWriter().writeSync(dir);
  const r = await SegmentIndexReader.open(dir, 7);
  t.equal(r.version, 2);
  t.same(await offsetsOf(r, CAM), Array.from({ length: 20 }, (_, i) => 5_000_000_000 + i * 1000), 'CAM: all 20, beyond 4 GiB');
  t.same(await offsetsOf(r, CAM2), [100, 164, 228, 292, 356, 420], 'CAM2: all 6 (registered after its first packet)');
  t.same(await offsetsOf(r, 'nope'), [], 'a stream not in the segment has none to read');
  const o = (await r.offsets(CAM))!;
  t.equal(o.indexOf(5_000_003_000), 3);
  t.equal(o.indexOf(5_000_003_001), -1, 'not a record of the stream');
  t.equal(o.lowerBound(5_000_003_001), 4);
  t.equal(o.lowerBound(0), 0);
  t.equal(o.lowerBound(6_000_000_000), 20);
  const again = (await r.offsets(CAM))!;
  t.not(again, o, 'each caller gets its own cursor');
  t.same([again.at(19), o.at(0), again.at(0), o.at(19)], [5_000_019_000, 5_000_000_000, 5_000_000_000, 5_000_019_000], 'over the same offsets');
});

t.test('offsets of any distance (past 4 GiB) are kept exactly; a stream whose offsets go back keeps none (read sequentially)', async (t) => {
  const dir = tmp(t);
  const w = new SegmentIndexWriter(3);
  w.registerStream(0, 'far');
  w.registerStream(1, 'back');
  const far = [0, 10, 4_294_967_295, 4_294_967_296, 4_294_967_306, 9_000_000_000, 9_000_000_001, 20_000_000_000];
  far.forEach((off, i) => w.add(0, tsOf(i).sec, tsOf(i).nsec, 70_000 + i, off, i === 0));
  [100, 200, 150, 300].forEach((off, i) => w.add(1, tsOf(i).sec, tsOf(i).nsec, 80_000 + i, off, false));
  w.writeSync(dir);
  const r = await SegmentIndexReader.open(dir, 3);
  t.same(await offsetsOf(r, 'far'), far, 'exact');
  const o = (await r.offsets('far'))!;
  t.same(far.map((x) => o.indexOf(x)), far.map((_, i) => i), 'indexOf finds each');
  t.same([7, 0, 5, 5, 3].map((i) => o.at(i)), [20_000_000_000, 0, 9_000_000_000, 9_000_000_000, 4_294_967_296], 'in any order');
  t.equal(o.indexOf(4_294_967_297), -1);
  t.equal(await r.offsets('back'), null, 'not ascending: no offsets');
  t.equal(r.entries('back').length, 1, 'its sampled entries are still there');
  // Hand-computed section of 'far': one checkpoint (packet 0 at offset 0), then the distances
  // 10, 4294967285, 1, 10, 4705032694, 1, 10999999999 as unsigned LEB128.
  const leb = (x: number): number[] => {
    const out: number[] = [];
    for (; x >= 128; x = Math.floor(x / 128)) out.push((x % 128) | 128);
    out.push(x);
    return out;
  };
  const varints = [10, 4_294_967_285, 1, 10, 4_705_032_694, 1, 10_999_999_999].flatMap(leb);
  t.same(leb(4_294_967_285), [0xf5, 0xff, 0xff, 0xff, 0x0f], 'LEB128 of 2^32 - 11, by the rule');
  const b = readFileSync(join(dir, indexFileNames(3).idx));
  const core = b.readUInt32LE(20);
  t.equal(b.readUInt32LE(core), 8, 'section: 8 packets');
  t.equal(b.readUInt32LE(core + 4), 1, 'section: 1 checkpoint');
  t.equal(b.readUInt32LE(core + 8), varints.length, `section: ${varints.length} varint bytes`);
  t.same([b.readDoubleLE(core + 16), b.readUInt32LE(core + 24)], [0, 0], 'checkpoint: offset 0, varints from byte 0');
  t.same([...b.subarray(core + 32, core + 32 + varints.length)], varints, 'the varints');
  const padded = (varints.length + 3) & ~3;
  t.same([...b.subarray(core + 32 + varints.length, core + 32 + padded)], new Array(padded - varints.length).fill(0), 'zero padding');
  t.equal(b.readUInt32LE(core + 32 + padded), crc32Ref(b.subarray(core, core + 32 + padded)), 'the section\'s CRC');
  t.equal(b.length, core + 32 + padded + 4, 'only the one section');
});

t.test('checkpoints every 256 packets: lookups anywhere in a long stream, in order or not', async (t) => {
  const dir = tmp(t);
  const w = new SegmentIndexWriter(5);
  w.registerStream(0, 'long');
  const want: number[] = [];
  let off = 24;
  for (let i = 0; i < 1000; i++) {
    off += i % 7 === 0 ? 300_000 + i : 1_400 + (i % 13); // bursts and gaps, 2 and 3 byte varints
    want.push(off);
    w.add(0, tsOf(i).sec, tsOf(i).nsec, 70_000 + i, off, i % 100 === 0);
  }
  w.writeSync(dir);
  const r = await SegmentIndexReader.open(dir, 5);
  t.same(await offsetsOf(r, 'long'), want, 'in order');
  const o = (await r.offsets('long'))!;
  const order = [999, 0, 256, 255, 257, 512, 511, 300, 768, 767, 1, 998];
  t.same(order.map((i) => o.at(i)), order.map((i) => want[i]), 'out of order');
  t.same(want.map((x) => o.indexOf(x)), want.map((_, i) => i), 'indexOf finds each');
  t.equal(o.lowerBound(want[600]! + 1), 601);
  t.equal(o.lowerBound(want[999]! + 1), 1000);
  const b = readFileSync(join(dir, indexFileNames(5).idx));
  t.equal(b.readUInt32LE(b.readUInt32LE(20) + 4), 4, '4 checkpoints for 1000 packets');
});

t.test('a stream the pipeline gives a new key (evicted, then resumed) stays one stream with all its offsets', async (t) => {
  const dir = tmp(t);
  const w = new SegmentIndexWriter(4, { every: 2 });
  w.registerStream(0, 'cam');
  for (let i = 0; i < 3; i++) w.add(0, tsOf(i).sec, tsOf(i).nsec, 70_000 + i, 1000 + i * 100, i === 0);
  w.registerStream(5, 'cam');
  for (let i = 3; i < 6; i++) w.add(5, tsOf(i).sec, tsOf(i).nsec, 70_000 + i, 1000 + i * 100, false);
  w.writeSync(dir);
  const r = await SegmentIndexReader.open(dir, 4);
  t.same(r.streams(), ['cam']);
  t.equal(r.summary.streams[0]!.packets, 6);
  t.same(await offsetsOf(r, 'cam'), [1000, 1100, 1200, 1300, 1400, 1500]);
  t.same(r.entries('cam').map((e) => e.offset), [1000, 1200, 1400]);
});

t.test('a large sidecar: the core is read on open, a stream\'s offsets section only when asked, checked by its own CRC', async (t) => {
  const dir = tmp(t);
  const w = new SegmentIndexWriter(9);
  const n = 600_000; // 3 streams x 400 KB of offsets: past the first read
  for (let k = 0; k < 3; k++) w.registerStream(k, `s${k}`);
  for (let i = 0; i < n; i++) {
    const k = i % 3;
    w.add(k, tsOf(i).sec, tsOf(i).nsec, 70_000 + Math.floor(i / 3), 24 + i * 1500, i % 300 < 3);
  }
  w.writeSync(dir);
  const file = join(dir, indexFileNames(9).idx);
  const size = statSync(file).size;
  t.ok(size > 1_300_000, `${size} bytes`);
  const r = await SegmentIndexReader.open(dir, 9);
  const got = await offsetsOf(r, 's2');
  t.equal(got!.length, n / 3);
  t.ok(got!.every((o, i) => o === 24 + (3 * i + 2) * 1500), 'every offset of s2');
  t.equal(r.seekKeyframe('s1', tsOf(1000).ns)!.offset, 24 + 901 * 1500, 'entries decode lazily too');

  // One flipped bit in s0's section: opening still works (the core is fine), reading s0's offsets fails naming the file.
  const b = readFileSync(file);
  const core = b.readUInt32LE(20);
  b[core + 100] = b[core + 100]! ^ 1;
  writeFileSync(file, b);
  const r2 = await SegmentIndexReader.open(dir, 9);
  try {
    await r2.offsets('s0');
    t.fail('no error');
  } catch (e) {
    t.ok(isCamtapError(e, 'CAMTAP_ERR_INDEX') && e.details.file === file && /checksum/.test(String(e.details.reason)), 'CAMTAP_ERR_INDEX: checksum of the offsets of s0');
  }
  t.equal((await r2.offsets('s1'))!.count, n / 3, 'the other streams\' offsets are fine');

  // Replaced after opening (camtap reindex renames a new file over it): the reader does not mix files.
  clearIndexReaderCache();
  const r3 = await SegmentIndexReader.open(dir, 9);
  t.equal(await SegmentIndexReader.open(dir, 9), r3, 'the same file opened again: the reader kept');
  w.registerStream(3, 's3');
  w.add(3, tsOf(0).sec, tsOf(0).nsec, 70_000, 1, true);
  w.writeSync(dir);
  t.equal(await r3.offsets('s1'), null, 'offsets of a replaced sidecar: none (the caller reads sequentially)');
  const r4 = await SegmentIndexReader.open(dir, 9);
  t.not(r4, r3, 'a replaced file gets a new reader');
  t.equal((await r4.offsets('s1'))!.count, n / 3, 'which reads the new file');

  // Cut short: the sections end past the file's end.
  writeFileSync(file, b.subarray(0, b.length - 8));
  try {
    await SegmentIndexReader.open(dir, 9);
    t.fail('no error');
  } catch (e) {
    t.ok(isCamtapError(e, 'CAMTAP_ERR_INDEX') && /truncated/.test(String(e.details.reason)), 'truncated in the offsets: CAMTAP_ERR_INDEX on open');
  }
});

t.test('a version 1 sidecar (written here byte by byte from its layout) is read: entries and summary, no offsets', async (t) => {
  const dir = tmp(t);
  const id = Buffer.from('v1stream', 'utf8');
  const entries = [
    { hi: 0x1234, lo: 0x9abcdef0, off: 6_000_000_000, w: (0x80000000 | 0) >>> 0 },
    { hi: 0x1234, lo: 0x9abcdef1, off: 6_000_001_000, w: 64 },
  ];
  const parts: Buffer[] = [];
  const h = Buffer.alloc(24);
  h.write('CTIX', 0, 'latin1');
  h.writeUInt16LE(1, 4);
  h.writeUInt16LE(24, 6);
  h.writeUInt32LE(11, 8);
  h.writeUInt32LE(1, 12);
  h.writeUInt32LE(64, 16);
  parts.push(h);
  const st = Buffer.alloc(((2 + id.length + 3) & ~3) + 64);
  st.writeUInt16LE(id.length, 0);
  id.copy(st, 2);
  let p = (2 + id.length + 3) & ~3;
  st.writeUInt32LE(2, p);
  st.writeUInt32LE(1, p + 4);
  st.writeDoubleLE(65, p + 8);
  st.writeUInt32LE(0x1234, p + 16);
  st.writeUInt32LE(0x9abcdef0, p + 20);
  st.writeUInt32LE(0x1234, p + 24);
  st.writeUInt32LE(0x9abcdef1, p + 28);
  for (const [k, v] of [70_000, 70_064, 70_000, 70_064].entries()) st.writeDoubleLE(v, p + 32 + 8 * k);
  parts.push(st);
  for (const e of entries) {
    const b = Buffer.alloc(20);
    b.writeUInt32LE(e.hi, 0);
    b.writeUInt32LE(e.lo, 4);
    b.writeDoubleLE(e.off, 8);
    b.writeUInt32LE(e.w, 16);
    parts.push(b);
  }
  const body = Buffer.concat(parts);
  const crc = Buffer.alloc(4);
  crc.writeUInt32LE(crc32Ref(body));
  writeFileSync(join(dir, indexFileNames(11).idx), Buffer.concat([body, crc]));
  const r = await SegmentIndexReader.open(dir, 11);
  t.equal(r.version, 1);
  t.same(r.entries('v1stream'), [
    { tsNs: (0x1234n << 32n) | 0x9abcdef0n, extSeq: 70_000, offset: 6_000_000_000, keyframe: true },
    { tsNs: (0x1234n << 32n) | 0x9abcdef1n, extSeq: 70_064, offset: 6_000_001_000, keyframe: false },
  ]);
  t.equal(r.summary.streams[0]!.packets, 65);
  t.equal(await r.offsets('v1stream'), null, 'no offsets: read sequentially');
  t.equal(await r.offsets('other'), null, 'nor for a stream it does not list (it cannot tell)');
});

/** CRC-32 (IEEE 802.3), bit by bit. */
function crc32Ref(b: Buffer): number {
  let c = 0xffffffff;
  for (const x of b) {
    c ^= x;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}
