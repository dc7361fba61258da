/**
 * Replays that read only the stream's own records, by the per-packet offsets of the
 * segment index: against tshark (what the stream holds), against the kernel's count of
 * bytes the process read (/proc/self/io rchar: what was read), and against the same
 * replay reading every segment sequentially (so nothing else changes): every stream of
 * every lab capture, windows, IP fragments (a record that cannot be decoded alone), and
 * sidecars of the first format (no offsets).
 */
import t, { type Test } from 'tap';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { planReplay } from '../../../core/query/plan.js';
import { replayPackets, type ReplayOptions, type ReplayStats } from '../../../core/query/replay.js';
import type { ReplayPacket, ReplayPlan } from '../../../core/query/types.js';
import type { ReplayDeps } from '../../../core/query/segment-scan.js';
import { indexFileNames } from '../../../core/index/segment-index.js';
import {
  CAPTURES,
  accessUnits,
  importCaptures,
  iso,
  manifest,
  mediaStreams,
  noTshark,
  recordOf,
  tsharkStream,
  uniqueInOrder,
  type ManifestStream,
} from './fixture.js';

const FIXED = { ssrc: 0x01020304, seq: 65530, timestamp: 0xfffffff0 };

function newStats(): ReplayStats {
  return { bytesRead: 0, indexedSegments: 0, rescans: 0 };
}

async function collect(deps: ReplayDeps, plan: ReplayPlan, opts: ReplayOptions = {}): Promise<ReplayPacket[]> {
  const out: ReplayPacket[] = [];
  for await (const p of replayPackets(deps, plan, { ...FIXED, ...opts })) out.push({ ...p, rtp: Buffer.from(p.rtp) });
  return out;
}

/** Everything a consumer sees of each packet, as text (so a difference shows in the diff). */
function view(ps: ReplayPacket[]): string[] {
  return ps.map((p) => `${p.tsNs} ${p.origExtSeq} ${p.origTimestamp} ${p.seq} ${p.timestamp} ${p.marker ? 'M' : '-'} ${p.payloadType} ${p.keyframe ? 'K' : '-'} ${p.gapBefore} ${p.rtp.toString('hex')}`);
}

/** Bytes this process read so far (kernel count, all threads), or null where /proc is not there. */
function rchar(): number | null {
  try {
    const m = /^rchar:\s*(\d+)$/m.exec(readFileSync('/proc/self/io', 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

const fixtures = readdirSync(CAPTURES)
  .filter((f) => /\.pcap(ng)?$/.test(f))
  .filter((f) => mediaStreams(manifest(f)).length > 0)
  .sort();

/** Whole stream and a window around its middle third: the indexed replay equals the sequential one. */
async function sameAsSequential(t: Test, deps: ReplayDeps, plans: ReplayPlan[], ms: ManifestStream, extra: ReplayOptions = {}): Promise<void> {
  for (const plan of plans) {
    const what = plan.startNs === BigInt(plan.stream.startNs) && plan.endNs === BigInt(plan.stream.endNs) ? 'whole stream' : 'window';
    const seq = newStats();
    const idx = newStats();
    const want = await collect(deps, plan, { useOffsets: false, stats: seq });
    const got = await collect(deps, plan, { ...extra, stats: idx });
    // (RTP in TCP from mid-stream can miss its anchor frame and output nothing: core/query/interleaved.ts, either way.)
    if (ms.transport === 'udp' || what === 'whole stream') t.ok(want.length > 0, `${what}: packets out`);
    t.same(view(got), view(want), `${what}: ${got.length} packets, the same as the sequential read's`);
    t.equal(seq.indexedSegments, 0, `${what}: useOffsets false reads sequentially`);
    if (ms.transport === 'udp') {
      t.ok(idx.indexedSegments > 0, `${what}: read by offsets (${idx.indexedSegments} segments, ${idx.bytesRead} B against ${seq.bytesRead} B)`);
      t.equal(idx.rescans, 0, `${what}: no record needed a sequential read`);
    } else {
      t.equal(idx.indexedSegments, 0, `${what}: RTP in TCP is read sequentially`);
    }
  }
}

async function plansOf(imp: Awaited<ReturnType<typeof importCaptures>>, ms: ManifestStream): Promise<ReplayPlan[] | null> {
  const rec = recordOf(imp.streams, ms);
  if (!rec) return null;
  const whole = await planReplay(imp.catalog, { id: rec.id });
  const a = BigInt(rec.startNs);
  const b = BigInt(rec.endNs);
  const third = (b - a) / 3n;
  const window = await planReplay(imp.catalog, { id: rec.id, start: iso(a + third), end: iso(b - third) });
  return [whole, window];
}

t.test('reading only the stream\'s records gives the sequential replay, packet for packet, for every stream of every lab capture', async (t) => {
  for (const file of fixtures) {
    await t.test(`${file} (indexed in place)`, async (t) => {
      const imp = await importCaptures(t, [file]);
      for (const ms of mediaStreams(manifest(file))) {
        const plans = await plansOf(imp, ms);
        if (!t.ok(plans, `${ms.src} -> ${ms.dst} ${ms.ssrc} in the catalog`)) continue;
        await t.test(`${ms.transport} ${ms.src} -> ${ms.dst} ${ms.ssrc}`, (t) => sameAsSequential(t, imp.deps, plans!, ms));
      }
    });
  }
  for (const file of ['netns_multi.pcap', 'gen_8cam_360p.pcap']) {
    await t.test(`${file} (copied into 256 KiB pcapng segments)`, async (t) => {
      const imp = await importCaptures(t, [file], { inPlace: false, tune: (c) => (c.store.maxSegmentBytes = 1 << 18) });
      t.ok(imp.segments.length > 5, `${imp.segments.length} segments`);
      for (const ms of mediaStreams(manifest(file))) {
        const plans = await plansOf(imp, ms);
        if (!t.ok(plans, `${ms.src} -> ${ms.dst} ${ms.ssrc} in the catalog`)) continue;
        await t.test(`${ms.transport} ${ms.src} -> ${ms.dst} ${ms.ssrc}`, (t) => sameAsSequential(t, imp.deps, plans!, ms));
      }
    });
  }
});

t.test('read tuning changes how, not what: one record per read with a 64-byte guess (every record read twice), one read in flight, blocking reads', async (t) => {
  const file = 'netns_multi.pcap';
  const imp = await importCaptures(t, [file]);
  const ms = mediaStreams(manifest(file)).find((s) => s.transport === 'udp')!;
  const plans = (await plansOf(imp, ms))!;
  await t.test('gap 0, guess 64, 1 in flight', (t) => sameAsSequential(t, imp.deps, plans, ms, { indexed: { gapBytes: 0, guessBytes: 64, inFlight: 1 } }));
  await t.test('blocking reads', (t) => sameAsSequential(t, imp.deps, plans, ms, { indexed: { sync: true } }));
  await t.test('16 in flight, 4 KiB reads', (t) => sameAsSequential(t, imp.deps, plans, ms, { indexed: { inFlight: 16, maxReadBytes: 4096 } }));
});

t.test('one camera of eight from a capture indexed in place: the replay reads a small part of the file and is tshark\'s stream', { skip: noTshark }, async (t) => {
  const file = 'gen_8cam_360p.pcap';
  const size = readFileSync(path.join(CAPTURES, file)).length;
  const imp = await importCaptures(t, [file]);
  t.equal(imp.segments.length, 1, 'one segment: the capture itself');
  const media = mediaStreams(manifest(file));
  t.equal(media.length, 8, 'eight camera streams');
  const ms = media[3]!;
  const rec = recordOf(imp.streams, ms)!;
  const unique = uniqueInOrder(tsharkStream(file, ms));
  const units = accessUnits(ms.decode?.codec ?? rec.codec ?? 'H264', unique);

  for (const [what, startNs, endNs] of [
    ['whole stream', null, null],
    ['3 s from the middle', BigInt(rec.startNs) + 3_000_000_000n, BigInt(rec.startNs) + 6_000_000_000n],
  ] as const) {
    await t.test(what, async (t) => {
      const plan = await planReplay(imp.catalog, startNs === null ? { id: rec.id } : { id: rec.id, start: iso(startNs), end: iso(endNs!) });
      // Sequential first: it reads the same index sidecar, so the difference is the segment reads.
      const r0 = rchar();
      if (r0 === null) {
        t.skip('/proc/self/io not available');
        return;
      }
      const seq = await collect(imp.deps, plan, { useOffsets: false });
      const r1 = rchar()!;
      const stats = newStats();
      const got = await collect(imp.deps, plan, { stats });
      const r2 = rchar()!;
      const seqBytes = r1 - r0;
      const idxBytes = r2 - r1;
      t.comment(`${file} ${size} B: sequential replay read ${seqBytes} B, indexed ${idxBytes} B (${((idxBytes / size) * 100).toFixed(1)}% of the file; the stream's own records are 12%)`);
      t.ok(stats.indexedSegments === 1 && stats.rescans === 0, 'read by offsets');
      t.ok(idxBytes < size * (startNs === null ? 0.5 : 0.25), `read ${idxBytes} B of a ${size} B file`);
      t.ok(idxBytes * 2 < seqBytes, `less than half of what the sequential replay read (${seqBytes} B)`);
      t.same(view(got), view(seq), 'the same packets as the sequential replay');
      // Ground truth: tshark's unique packets of the stream from the keyframe unit at or before the start, to the end.
      const from = startNs === null ? units.find((u) => u.keyframe)! : units.filter((u) => u.keyframe && u.packets[0]!.tsNs <= startNs).pop()!;
      const want = unique.filter((p) => p.ext >= from.packets[0]!.ext && (endNs === null || p.tsNs <= endNs));
      t.same(got.map((p) => p.origExtSeq), want.map((p) => p.ext), `tshark's ${want.length} packets, in order`);
      t.same(
        got.map((p) => p.rtp.subarray(12).toString('hex')),
        want.map((p) => p.payload.toString('hex')),
        'with tshark\'s payloads',
      );
    });
  }
});

/** RFC 791 header checksum. */
function ipChecksum(h: Buffer): number {
  let s = 0;
  for (let i = 0; i < h.length; i += 2) s += h.readUInt16BE(i);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/**
 * gen_8cam_360p.pcap with every 5th packet of `ms` sent as two IPv4 fragments (RFC 791
 * §2.3: offset in 8-byte units, MF on the first), the first fragment written two
 * records earlier, behind another camera's packet. Returns the file's path.
 */
function fragmented(dir: string, ms: ManifestStream): string {
  const b = readFileSync(path.join(CAPTURES, 'gen_8cam_360p.pcap'));
  if (b.readUInt32LE(0) !== 0xa1b2c3d4 || (b.readUInt32LE(20) & 0xffff) !== 1) throw new Error('expected a little-endian µs Ethernet pcap');
  const recs: Buffer[] = [];
  for (let p = 24; p + 16 <= b.length; ) {
    const len = 16 + b.readUInt32LE(p + 8);
    recs.push(b.subarray(p, p + len));
    p += len;
  }
  const sport = Number(ms.src.slice(ms.src.lastIndexOf(':') + 1));
  const dport = Number(ms.dst.slice(ms.dst.lastIndexOf(':') + 1));
  const out: Buffer[] = [];
  let n = 0;
  let split = 0;
  for (const r of recs) {
    const f = r.subarray(16);
    const ihl = (f[14]! & 0x0f) * 4;
    const isStream = f.readUInt16BE(12) === 0x0800 && f[23] === 17 && f.readUInt16BE(14 + ihl) === sport && f.readUInt16BE(16 + ihl) === dport;
    const payload = f.subarray(14 + ihl);
    if (!isStream || n++ % 5 !== 0 || payload.length < 64) {
      out.push(r);
      continue;
    }
    const cut = Math.floor(payload.length / 16) * 8;
    const frag = (data: Buffer, offset8: number, more: boolean): Buffer => {
      const ip = Buffer.from(f.subarray(14, 14 + ihl));
      ip.writeUInt16BE(ihl + data.length, 2);
      ip.writeUInt16BE((more ? 0x2000 : 0) | offset8, 6);
      ip.writeUInt16BE(0, 10);
      ip.writeUInt16BE(ipChecksum(ip), 10);
      const frame = Buffer.concat([f.subarray(0, 14), ip, data]);
      const hdr = Buffer.from(r.subarray(0, 16));
      hdr.writeUInt32LE(frame.length, 8);
      hdr.writeUInt32LE(frame.length, 12);
      return Buffer.concat([hdr, frame]);
    };
    const first = frag(payload.subarray(0, cut), 0, true);
    const second = frag(payload.subarray(cut), cut / 8, false);
    // The first fragment goes before the last record written (another camera's, mostly); same timestamp bytes are fine.
    out.splice(Math.max(0, out.length - 1), 0, first);
    out.push(second);
    split++;
  }
  if (split < 10) throw new Error('too few packets fragmented');
  const file = path.join(dir, 'gen_8cam_fragmented.pcap');
  writeFileSync(file, Buffer.concat([b.subarray(0, 24), ...out]));
  return file;
}

t.test('IP fragments: a record the index points at that needs the fragments before it makes the rest of the segment sequential, and the stream is still tshark\'s', { skip: noTshark }, async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'camtap-frag-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ms = mediaStreams(manifest('gen_8cam_360p.pcap'))[2]!;
  const file = fragmented(dir, ms);
  const imp = await importCaptures(t, [path.relative(CAPTURES, file)]);
  const rec = recordOf(imp.streams, ms)!;
  const plan = await planReplay(imp.catalog, { id: rec.id });
  const stats = newStats();
  const got = await collect(imp.deps, plan, { stats });
  const seq = await collect(imp.deps, plan, { useOffsets: false });
  t.ok(stats.rescans >= 1, `went sequential part way (${stats.rescans})`);
  t.same(view(got), view(seq), 'the same packets as the sequential replay');
  // tshark reassembles the fragments (ip.defragment is on by default).
  const unique = uniqueInOrder(tsharkStream(file, ms));
  const units = accessUnits(rec.codec ?? 'H264', unique);
  const from = units.find((u) => u.keyframe)!;
  const want = unique.filter((p) => p.ext >= from.packets[0]!.ext);
  t.equal(want.length, uniqueInOrder(tsharkStream('gen_8cam_360p.pcap', ms)).filter((p) => p.ext >= from.packets[0]!.ext).length, 'tshark sees every packet of the unfragmented capture');
  t.same(got.map((p) => p.origExtSeq), want.map((p) => p.ext), `tshark's ${want.length} packets, in order`);
  t.same(got.map((p) => p.rtp.subarray(12).toString('hex')), want.map((p) => p.payload.toString('hex')), 'with tshark\'s payloads');
});

/**
 * Rewrites a version 2 sidecar as version 1 (the layout in core/index/segment-index.ts,
 * written out here by hand): no core size, 64-byte stream entries without the offsets
 * section's place, no offsets sections, one CRC over the file.
 */
function toVersion1(v2: Buffer): Buffer {
  const nStreams = v2.readUInt32LE(12);
  const coreSize = v2.readUInt32LE(20);
  const parts: Buffer[] = [];
  const header = Buffer.from(v2.subarray(0, 24));
  header.writeUInt16LE(1, 4);
  header.writeUInt32LE(0, 20);
  parts.push(header);
  let p = 24;
  for (let i = 0; i < nStreams; i++) {
    const idPart = ((2 + v2.readUInt16LE(p) + 3) & ~3);
    parts.push(v2.subarray(p, p + idPart + 64));
    p += idPart + 80;
  }
  parts.push(v2.subarray(p, coreSize - 4));
  const body = Buffer.concat(parts);
  const crc = Buffer.alloc(4);
  crc.writeUInt32LE(crc32(body));
  return Buffer.concat([body, crc]);
}

function crc32(b: Buffer): number {
  let c = 0xffffffff;
  for (const x of b) {
    c ^= x;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

t.test('a sidecar of the first format (no offsets) is still read: the segment is read sequentially, with the same result', { skip: noTshark }, async (t) => {
  const file = 'netns_multi.pcap';
  const imp = await importCaptures(t, [file]);
  const ms = mediaStreams(manifest(file)).find((s) => s.transport === 'udp')!;
  const plans = (await plansOf(imp, ms))!;
  const before = await collect(imp.deps, plans[1]!);
  const idx = path.join(imp.deps.indexDir, indexFileNames(imp.segments[0]!.id).idx);
  const v2 = readFileSync(idx);
  t.equal(v2.readUInt16LE(4), 2, 'written as version 2');
  writeFileSync(idx, toVersion1(v2));
  for (const plan of plans) {
    const stats = newStats();
    const got = await collect(imp.deps, plan, { stats });
    t.equal(stats.indexedSegments, 0, 'read sequentially');
    const seq = await collect(imp.deps, plan, { useOffsets: false });
    t.same(view(got), view(seq), 'what the sequential replay gives');
  }
  t.same(view(await collect(imp.deps, plans[1]!)), view(before), 'and what the replay by offsets gave before');
});
