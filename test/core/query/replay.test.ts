/**
 * replayPackets against tshark's dissection of the lab captures: every camera stream
 * replayed whole comes out as exactly its unique packets in sequence order (duplicates
 * and reordering of the impaired capture undone), starting at a keyframe access unit,
 * with continuous output sequence numbers except where the capture lost packets, RTP
 * time differences and payloads untouched; a window from the middle starts at the
 * keyframe before it and ends at the last packet before its end.
 */
import t, { type Test } from 'tap';
import { readdirSync } from 'node:fs';
import { planReplay } from '../../../core/query/plan.js';
import { replayPackets } from '../../../core/query/replay.js';
import type { ReplayPacket, ReplayPlan } from '../../../core/query/types.js';
import type { ReplayDeps } from '../../../core/query/segment-scan.js';
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
  type TruthPacket,
} from './fixture.js';

async function collect(deps: ReplayDeps, plan: ReplayPlan, opts: Parameters<typeof replayPackets>[2] = {}): Promise<ReplayPacket[]> {
  const out: ReplayPacket[] = [];
  for await (const p of replayPackets(deps, plan, opts)) out.push(p);
  return out;
}

/** Checks the rewritten fields of `got` against the truth packets they come from. */
function checkRewrite(t: Test, got: ReplayPacket[], want: TruthPacket[], ssrc: number): void {
  let seqBreaks = 0;
  let tsBreaks = 0;
  let headerBreaks = 0;
  let payloadBreaks = 0;
  let gaps = 0;
  for (let i = 0; i < got.length; i++) {
    const p = got[i]!;
    const w = want[i]!;
    if (i > 0) {
      const prev = got[i - 1]!;
      if (((prev.seq + 1 + p.gapBefore) & 0xffff) !== p.seq || p.gapBefore !== w.ext - want[i - 1]!.ext - 1) seqBreaks++;
      gaps += p.gapBefore;
    }
    if (i > 0) {
      // Packet to packet, RTP time advances as captured, except across a step of the
      // camera's clock (over 1 s back, or 2 s beyond the capture time that elapsed), where
      // the output advances by the capture time instead and stays continuous.
      const srcDelta = (w.timestamp - want[i - 1]!.timestamp) | 0;
      const outDelta = (p.timestamp - got[i - 1]!.timestamp) | 0;
      const elapsed = Math.round((Number(w.tsNs - want[i - 1]!.tsNs) / 1e9) * 90000);
      const step = srcDelta < -90000 || srcDelta > elapsed + 180000;
      if (step ? outDelta !== Math.max(1, elapsed) : outDelta !== srcDelta) tsBreaks++;
    }
    if (p.rtp.readUInt16BE(2) !== p.seq || p.rtp.readUInt32BE(4) !== p.timestamp || p.rtp.readUInt32BE(8) !== ssrc || ((p.rtp[1]! & 0x80) !== 0) !== w.marker) headerBreaks++;
    if (!p.rtp.subarray(12).toString('hex').includes(w.payload.toString('hex'))) payloadBreaks++;
  }
  t.equal(seqBreaks, 0, 'output seq advances by 1 + gapBefore, and gapBefore is the capture gap');
  t.equal(tsBreaks, 0, 'RTP time differences are kept (a step in the camera clock is smoothed to the capture time)');
  t.equal(headerBreaks, 0, 'the rewritten header carries seq, timestamp, the given SSRC and the marker');
  t.equal(payloadBreaks, 0, 'payloads are the captured ones');
  t.equal(gaps, got.length > 0 ? want[want.length - 1]!.ext - want[0]!.ext + 1 - want.length : 0, 'gaps add up to the packets missing in between');
}

const fixtures = readdirSync(CAPTURES)
  .filter((f) => /\.pcap(ng)?$/.test(f))
  .filter((f) => mediaStreams(manifest(f)).length > 0)
  .sort();

t.test('every camera stream of every lab capture replays as its unique packets in order', { skip: noTshark }, async (t) => {
  for (const file of fixtures) {
    await t.test(file, async (t) => {
      const m = manifest(file);
      const imp = await importCaptures(t, [file]);
      for (const ms of mediaStreams(m)) {
        await t.test(`${ms.transport} ${ms.src} -> ${ms.dst} ${ms.ssrc}`, async (t) => {
          const rec = recordOf(imp.streams, ms);
          if (!t.ok(rec, 'stream in the catalog')) return;
          const plan = await planReplay(imp.catalog, { id: rec!.id });
          const got = await collect(imp.deps, plan, { ssrc: 0x01020304, seq: 65530, timestamp: 0xfffffff0 });
          const codec = ms.decode?.codec ?? rec!.codec ?? '';
          const unique = uniqueInOrder(tsharkStream(file, ms));
          t.equal(unique.length, ms.unique_packets, 'tshark sees the manifest\'s unique packets');
          const units = accessUnits(codec, unique);
          const firstKey = units.find((u) => u.keyframe);
          if (!t.ok(firstKey, 'the stream has a keyframe')) return;
          const want = unique.filter((p) => p.ext >= firstKey!.packets[0]!.ext);
          if (firstKey === units[0]) t.equal(got.length, ms.unique_packets, 'count = manifest unique packets (the capture starts at a keyframe)');
          t.equal(got.length, want.length, 'count = unique packets from the first keyframe access unit on');
          t.same(got.map((p) => p.origExtSeq), want.map((p) => p.ext), 'original extended seqs are the unique ones, strictly increasing');
          t.ok(got.every((p, i) => i === 0 || p.origExtSeq > got[i - 1]!.origExtSeq), 'strictly increasing');
          if (firstKey === units[0]) t.equal(got.reduce((a, p) => a + p.gapBefore, 0), ms.lost, 'gaps = manifest lost');
          t.equal(got[0]?.origExtSeq, firstKey!.packets[0]!.ext, 'the first packet is the first of a keyframe access unit');
          // RTP pushed with no SDP (lo_push_rtp_h264): camtap does not know the codec, so it cannot see keyframes.
          const flags = rec!.codec !== null;
          if (flags) t.equal(got[0]?.keyframe, true, 'the first packet is flagged keyframe');
          t.equal(got[0]?.seq, 65530, 'the first seq is the one asked for');
          t.equal(got[0]?.timestamp, 0xfffffff0, 'the first timestamp is the one asked for');
          checkRewrite(t, got, want, 0x01020304);
          // Keyframe flags: on the first packet of exactly the keyframe access units.
          const keyStarts = units.filter((u) => u.keyframe && u.packets[0]!.ext >= want[0]!.ext).map((u) => u.packets[0]!.ext);
          t.same(got.filter((p) => p.keyframe).map((p) => p.origExtSeq), flags ? keyStarts : [], flags ? 'keyframe flags mark the first packet of each keyframe access unit' : 'no keyframe flags without a codec');
        });
      }
    });
  }
});

t.test('the impaired capture (reordered, duplicated, lost) comes out in order without duplicates', { skip: noTshark }, async (t) => {
  const file = 'lo_udp_h264_impaired.pcap';
  const [ms] = mediaStreams(manifest(file));
  const imp = await importCaptures(t, [file]);
  const plan = await planReplay(imp.catalog, { id: recordOf(imp.streams, ms!)!.id });
  const got = await collect(imp.deps, plan);
  const captured = tsharkStream(file, ms!);
  t.ok(captured.some((p, i) => i > 0 && p.ext < captured[i - 1]!.ext), 'the capture has packets out of order');
  t.ok(new Set(captured.map((p) => p.ext)).size < captured.length, 'the capture has duplicates');
  t.equal(new Set(got.map((p) => p.origExtSeq)).size, got.length, 'no duplicates out');
  t.ok(got.every((p, i) => i === 0 || p.origExtSeq > got[i - 1]!.origExtSeq), 'in sequence order');
  t.equal(got.length, ms!.unique_packets, 'every unique packet once');
  t.equal(got.reduce((a, p) => a + p.gapBefore, 0), ms!.lost, 'the lost packets are gaps');
});

t.test('a reorder window of 0 still drops duplicates but lets reordered packets go (they arrive late)', { skip: noTshark }, async (t) => {
  const file = 'lo_udp_h264_impaired.pcap';
  const [ms] = mediaStreams(manifest(file));
  const imp = await importCaptures(t, [file]);
  const plan = await planReplay(imp.catalog, { id: recordOf(imp.streams, ms!)!.id });
  const got = await collect(imp.deps, plan, { reorderWindow: 0 });
  t.ok(got.every((p, i) => i === 0 || p.origExtSeq > got[i - 1]!.origExtSeq), 'output is still increasing');
  t.ok(got.length < ms!.unique_packets, 'packets that came after a later one are dropped');
});

/** A 10 s window from the middle of netns_multi's first camera stream. */
async function checkWindow(t: Test, inPlace: boolean): Promise<void> {
  const file = 'netns_multi.pcap';
  const ms = mediaStreams(manifest(file)).find((s) => s.src === '10.77.0.11:47540' && s.dst === '10.77.0.101:14104') as ManifestStream;
  const imp = await importCaptures(t, [file], inPlace ? {} : { inPlace: false, tune: (c) => (c.store.maxSegmentBytes = 1 << 16) });
  if (!inPlace) t.ok(imp.segments.length > 20, `copied into ${imp.segments.length} small segments`);
  const rec = recordOf(imp.streams, ms)!;
  const captured = tsharkStream(file, ms);
  const unique = uniqueInOrder(captured);
  const units = accessUnits('H264', unique);
  const first = captured[0]!.tsNs;
  const last = captured[captured.length - 1]!.tsNs;
  let startNs = (first + last) / 2n - 5_000_000_000n;
  // Keep the window start off the few ms a keyframe unit takes to arrive (either answer would be defensible there).
  const inUnit = (x: bigint) => units.some((u) => u.keyframe && u.packets[0]!.tsNs <= x && x <= u.packets[u.packets.length - 1]!.tsNs);
  while (inUnit(startNs)) startNs += 100_000_000n;
  const endNs = startNs + 10_000_000_000n;

  const plan = await planReplay(imp.catalog, { camera: '10.77.0.11', dst: '10.77.0.101', start: iso(startNs), end: iso(endNs) });
  t.equal(plan.stream.id, rec.id, 'camera + destination pick the stream');
  t.equal(plan.startNs, startNs, 'plan start is the requested start');
  t.equal(plan.endNs, endNs, 'plan end is the requested end');
  if (!inPlace) t.ok((plan.lookbackSegments ?? 0) > 0, 'the plan holds segments before the range to find the keyframe in');
  const opened = new Set<number>();
  const deps = { ...imp.deps, segments: (id: number) => (opened.add(id), imp.deps.segments(id)) };
  const got = await collect(deps, plan);
  const planned = new Set(plan.segments.map((g) => g.id));
  t.ok([...opened].every((id) => planned.has(id)), 'only the plan\'s segments are opened');
  if (!inPlace) {
    // Read from the keyframe's segment to the end of the window, no further (2 s: the read starts a few entries before the keyframe).
    const from = got[0]!.tsNs - 2_000_000_000n;
    const beyond = imp.segments.filter((g) => opened.has(g.id) && (BigInt(g.endNs) < from || BigInt(g.startNs) > endNs + 500_000_000n));
    t.same(beyond.map((g) => g.id), [], `the ${opened.size} of ${imp.segments.length} segments read lie between the keyframe and the window end`);
  }

  const keyUnit = units.filter((u) => u.keyframe && u.packets[0]!.tsNs <= startNs).pop()!;
  t.ok(keyUnit, 'a keyframe precedes the window');
  t.equal(got[0]?.origExtSeq, keyUnit.packets[0]!.ext, 'starts at the first packet of the last keyframe unit at or before the window start');
  t.ok(got[0]!.tsNs <= startNs, 'which was captured at or before the start');
  t.equal(got[0]?.keyframe, true, 'flagged keyframe');
  const want = unique.filter((p) => p.ext >= keyUnit.packets[0]!.ext && p.tsNs <= endNs);
  t.same(got.map((p) => p.origExtSeq), want.map((p) => p.ext), 'every packet from there to the end of the window, in order');
  const lastOut = got[got.length - 1]!;
  t.ok(lastOut.tsNs <= endNs, 'the last packet was captured before the end');
  const next = captured.find((p) => p.tsNs > lastOut.tsNs);
  t.ok(next === undefined || next.tsNs > endNs, 'the packet captured after it is past the end');
}

t.test('a 10 s window from the middle starts at the keyframe before it and ends at the last packet before its end', { skip: noTshark }, async (t) => {
  await t.test('capture indexed in place (one segment)', (t) => checkWindow(t, true));
  await t.test('capture copied into 64 KiB segments (keyframe in an earlier segment)', (t) => checkWindow(t, false));
});

t.test('RTP interleaved over TCP read across many small segments is the whole stream', { skip: noTshark }, async (t) => {
  const file = 'lo_tcp_interleaved_h264.pcap';
  const [ms] = mediaStreams(manifest(file));
  const imp = await importCaptures(t, [file], { inPlace: false, tune: (c) => (c.store.maxSegmentBytes = 1 << 16) });
  t.ok(imp.segments.length > 5, `${imp.segments.length} segments`);
  const plan = await planReplay(imp.catalog, { id: recordOf(imp.streams, ms!)!.id });
  const got = await collect(imp.deps, plan);
  const want = uniqueInOrder(tsharkStream(file, ms!));
  t.same(got.map((p) => p.origExtSeq), want.map((p) => p.ext), 'every packet once, in order');
  checkRewrite(t, got, want, got[0]!.rtp.readUInt32BE(8));
});

t.test('the first packet comes out before the range is read to its end', { skip: noTshark }, async (t) => {
  const file = 'netns_multi.pcap';
  const ms = mediaStreams(manifest(file))[0]!;
  const imp = await importCaptures(t, [file]);
  const plan = await planReplay(imp.catalog, { id: recordOf(imp.streams, ms)!.id });
  // 64 KiB reads: the stream spans the whole ~5 MB file, so the first packet must come after one or two reads.
  const it = replayPackets(imp.deps, plan, { chunkBytes: 1 << 16 })[Symbol.asyncIterator]();
  const first = await it.next();
  t.notOk(first.done, 'a first packet');
  const captured = tsharkStream(file, ms);
  t.ok(first.value!.tsNs < captured[captured.length - 1]!.tsNs, 'it was captured before the range end');
  await it.return?.();
  t.pass('the iterator can be closed early');
});

t.test('an aborted signal stops the read with CAMTAP_ERR_INTERRUPTED', async (t) => {
  const file = 'netns_multi.pcap';
  const imp = await importCaptures(t, [file]);
  const plan = await planReplay(imp.catalog, { camera: '10.77.0.12' });
  const ac = new AbortController();
  ac.abort();
  await t.rejects(collect(imp.deps, plan, { signal: ac.signal }), { code: 'CAMTAP_ERR_INTERRUPTED' });
});
