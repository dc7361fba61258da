import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SegmentIndexReader, SegmentIndexWriter, indexFileNames, readSummary, removeIndexFiles, type IndexEntry } from '../../../core/index/segment-index.js';
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

  // Hand-computed size: 24 header + per stream (2 + id, padded to 4) + 64 fixed, 20 per entry, 4 CRC
  const pad = (n: number): number => (n + 3) & ~3;
  t.equal(statSync(join(dir, 'seg-00000007.idx')).size, 24 + pad(2 + CAM.length) + 64 + pad(2 + CAM2.length) + 64 + 8 * 20 + 4);
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
    const fixed = sumBytes + (idxBytes - 20 * gotEntries);
    const projected = (fixed + 20 * gotEntries * (300 / secs)) / (seg.bytes * (300 / secs));
    t.comment(
      `${name}: ${keys.size} streams, ${w.packets} RTP packets in ${secs.toFixed(1)} s, segment ${seg.bytes} B, .idx ${idxBytes} B (${((idxBytes / seg.bytes) * 100).toFixed(3)}%), ` +
        `summary ${sumBytes} B (${((sumBytes / seg.bytes) * 100).toFixed(3)}%); projected to a 300 s segment: ${(projected * 100).toFixed(3)}%`,
    );
    t.ok(idxBytes / seg.bytes <= 0.001, `${name}: .idx within 0.1% of the capture`);
    t.ok(sumBytes <= 300 * keys.size + 100, `${name}: summary ${sumBytes} B for ${keys.size} streams`);
    t.ok(projected <= 0.001, `${name}: index + summary ${(projected * 100).toFixed(3)}% of a 300 s segment`);
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
  }
});
