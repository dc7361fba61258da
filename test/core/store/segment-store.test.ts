import t from 'tap';
import * as fs from 'node:fs';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SegmentStore, type SegmentInfo, type StoreAlert } from '../../../core/store/segment-store.js';
import { isCamtapError } from '../../../core/errors.js';
import type { StoreLocation } from '../../../core/contracts/frame.js';
import { CAPTURES, type FixturePacket, epochToNs, frameOf, hasTool, newFrame, pktNs, readClassicPcap, tshark } from './pcap-fixture.js';

const HAVE_TSHARK = hasTool('tshark');
const needTshark = HAVE_TSHARK ? {} : { skip: 'tshark not installed' };

function tmp(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'camtap-store-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** What tshark sees in one segment: one row per frame. */
function tsharkRows(file: string): { rows: Array<{ ns: bigint; len: number; capLen: number; ifName: string; ifDesc: string }>; stderr: string; status: number | null } {
  const r = tshark(['-r', file, '-T', 'fields', '-e', 'frame.time_epoch', '-e', 'frame.len', '-e', 'frame.cap_len', '-e', 'frame.interface_name', '-e', 'frame.interface_description']);
  const rows = r.lines.map((l) => {
    const [ts, len, cap, ifName, ifDesc] = l.split('\t');
    return { ns: epochToNs(ts!), len: Number(len), capLen: Number(cap), ifName: ifName!, ifDesc: ifDesc! };
  });
  return { rows, stderr: r.stderr, status: r.status };
}

function idbLinkTypes(file: string): number[] {
  const r = tshark(['-r', file, '-X', 'read_format:MIME Files Format', '-Y', 'pcapng.interface_description.link_type', '-T', 'fields', '-e', 'pcapng.interface_description.link_type']);
  return r.lines.join(',').split(',').filter(Boolean).map(Number);
}

const udp = readClassicPcap(join(CAPTURES, 'lo_udp_h264.pcap'));
const tcpNs = readClassicPcap(join(CAPTURES, 'lo_tcp_interleaved_h264_nsec.pcap'));

/**
 * Two taps: tap 1 (Ethernet) carries the nanosecond TCP capture, tap 2 carries the UDP
 * capture as raw IP (Ethernet header stripped, LINKTYPE_RAW 101), merged in time order.
 */
interface Fed {
  tap: number;
  linkType: number;
  pkt: FixturePacket;
}
function mergedFeed(): Fed[] {
  const a: Fed[] = tcpNs.packets.map((pkt) => ({ tap: 1, linkType: 1, pkt }));
  // The two captures were made 16 s apart: shift the UDP one so both taps interleave.
  const shift = tcpNs.packets[0]!.tsSec - udp.packets[0]!.tsSec;
  const b: Fed[] = udp.packets.map((p) => ({ tap: 2, linkType: 101, pkt: { ...p, tsSec: p.tsSec + shift, data: p.data.subarray(14), capLen: p.capLen - 14, origLen: p.origLen - 14 } }));
  return [...a, ...b].sort((x, y) => (pktNs(x.pkt) < pktNs(y.pkt) ? -1 : pktNs(x.pkt) > pktNs(y.pkt) ? 1 : 0));
}

function feed(store: SegmentStore, items: Fed[], shiftSec = 0): StoreLocation[] {
  const f = newFrame();
  return items.map((it) => store.append(frameOf(f, it.pkt, it.tap, it.linkType, shiftSec), it.tap === 1 ? 'cam-tcp' : 'cam-udp'));
}

t.test('packets written across size-rotated segments read back with tshark exactly as captured', needTshark, async (t) => {
  const dataDir = tmp(t);
  const sealed: SegmentInfo[] = [];
  // Small buffers and write-behind syncs so every path runs: background and synchronous writes, fdatasync beside them, seals.
  const store = new SegmentStore({ dataDir, maxSegmentBytes: 100_000, writeBufferBytes: 16 * 1024, writeBehindBytes: 32 * 1024, flushIntervalMs: 0, onSeal: (s) => sealed.push(s) });
  t.same(await store.open(), { recovered: [] });
  const items = mergedFeed();
  const locs = feed(store, items);
  await store.close();
  await store.close(); // safe twice

  const segs = store.segments();
  t.ok(segs.length >= 7, `rotated into ${segs.length} segments`);
  t.same(sealed.map((s) => s.id), segs.map((s) => s.id), 'onSeal once per segment, in order');
  t.same(readdirSync(join(dataDir, 'segments')).filter((n) => n.endsWith('.open')), [], 'nothing left open');

  const all: Array<{ ns: bigint; len: number; capLen: number; ifName: string; ifDesc: string }> = [];
  for (const s of segs) {
    t.equal(s.path, join(dataDir, 'segments', `seg-${String(s.id).padStart(8, '0')}.pcapng`));
    t.ok(statSync(s.path).size <= 100_000, `segment ${s.id} within maxSegmentBytes`);
    t.equal(statSync(s.path).size, s.bytes);
    const r = tsharkRows(s.path);
    t.equal(r.status, 0);
    t.equal(r.stderr, '', `tshark reads segment ${s.id} without complaint`);
    t.equal(s.packets, r.rows.length, `segment ${s.id} packet count`);
    const times = r.rows.map((x) => x.ns).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    t.equal(s.firstTsNs, times[0]);
    t.equal(s.lastTsNs, times[times.length - 1]);
    // Both taps appear in every segment here: one IDB per (tap, link type), in order of first appearance.
    const lt = idbLinkTypes(s.path);
    t.same([...lt].sort(), [1, 101], `segment ${s.id} declares Ethernet and raw IP interfaces`);
    all.push(...r.rows);
  }
  t.equal(all.length, items.length, 'every packet stored once');
  t.same(
    all.map((x) => `${x.ns} ${x.len} ${x.capLen} ${x.ifName} ${x.ifDesc}`),
    items.map((it) => `${pktNs(it.pkt)} ${it.pkt.origLen} ${it.pkt.capLen} ${it.tap === 1 ? 'cam-tcp' : 'cam-udp'} camtap tap ${it.tap}`),
    'times to the ns, lengths, and interface names per tap',
  );

  // Each returned location is the byte offset of that packet's EPB in its segment.
  const files = new Map(segs.map((s) => [s.id, readFileSync(s.path)]));
  let bad = 0;
  locs.forEach((loc, i) => {
    const b = files.get(loc.segment)!;
    const it = items[i]!;
    const ok =
      b.readUInt32LE(loc.offset) === 6 &&
      b.readUInt32LE(loc.offset + 20) === it.pkt.capLen &&
      b.subarray(loc.offset + 28, loc.offset + 28 + it.pkt.capLen).equals(it.pkt.data.subarray(0, it.pkt.capLen));
    if (!ok) bad++;
  });
  t.equal(bad, 0, 'all locations point at their packet');
});

t.test('segments rotate on capture time, so an import keeps the capture time layout', needTshark, async (t) => {
  const dataDir = tmp(t);
  const store = new SegmentStore({ dataDir, maxSegmentSeconds: 2, flushIntervalMs: 0 });
  await store.open();
  const f = newFrame();
  for (const p of udp.packets) store.append(frameOf(f, p, 1, 1));
  await store.close();

  // Expected cut points from the source times: a new segment when the span would pass 2 s.
  const expected: number[] = [];
  let start = -1n;
  for (const p of udp.packets) {
    const ns = pktNs(p);
    if (start < 0n || ns - start > 2_000_000_000n) {
      expected.push(0);
      start = ns;
    }
    expected[expected.length - 1]!++;
  }
  const segs = store.segments();
  t.ok(expected.length >= 5);
  t.same(
    segs.map((s) => tsharkRows(s.path).rows.length),
    expected,
    'packets per segment as the 2 s capture-time windows predict',
  );
  for (const s of segs) t.ok(s.lastTsNs! - s.firstTsNs! <= 2_000_000_000n, `segment ${s.id} spans at most 2 s`);
});

t.test('the open segment is readable up to the last flush, and current() reports the flushed part', needTshark, async (t) => {
  const dataDir = tmp(t);
  const store = new SegmentStore({ dataDir, flushIntervalMs: 0 });
  await store.open();
  t.equal(store.current(), null, 'no segment before the first packet');
  const f = newFrame();
  for (const p of udp.packets.slice(0, 100)) store.append(frameOf(f, p, 1, 1));
  const before = store.current()!;
  t.equal(before.packets, 0, 'nothing flushed yet');
  t.equal(before.sealed, false);
  store.flush();
  const cur = store.current()!;
  t.equal(cur.path, join(dataDir, 'segments', 'seg-00000001.pcapng.open'));
  t.equal(cur.packets, 100);
  t.equal(cur.bytes, statSync(cur.path).size);
  t.equal(cur.firstTsNs, pktNs(udp.packets[0]!));
  t.equal(cur.lastTsNs, pktNs(udp.packets[99]!));
  const r = tsharkRows(cur.path);
  t.equal(r.stderr, '');
  t.equal(r.rows.length, 100);
  t.same(store.segment(cur.id), cur);
  t.equal(store.totalBytes(), cur.bytes);
  await store.close();
  t.equal(store.current(), null);
  t.equal(store.segment(1)!.sealed, true);
});

t.test('a restart keeps segment info (from the meta cache or from the pcapng) and never reuses ids', needTshark, async (t) => {
  const dataDir = tmp(t);
  const s1 = new SegmentStore({ dataDir, maxSegmentBytes: 150_000, flushIntervalMs: 0 });
  await s1.open();
  feed(s1, mergedFeed());
  await s1.close();
  const first = s1.segments();
  t.ok(first.length >= 4);

  const s2 = new SegmentStore({ dataDir, flushIntervalMs: 0 });
  await s2.open();
  t.same(s2.segments(), first, 'same info after restart');
  await s2.close();

  for (const n of readdirSync(join(dataDir, 'segments'))) if (n.endsWith('.meta.json')) rmSync(join(dataDir, 'segments', n));
  const s3 = new SegmentStore({ dataDir, flushIntervalMs: 0 });
  await s3.open();
  t.same(s3.segments(), first, 'same info derived from the pcapng files alone');
  const ext = s3.addExternal(join(CAPTURES, 'lo_udp_h264.pcap'), 'pcap', 447504);
  t.equal(ext.id, first[first.length - 1]!.id + 1, 'one counter for own and external ids');
  const f = newFrame();
  const loc = s3.append(frameOf(f, udp.packets[0]!, 1, 1));
  t.equal(loc.segment, ext.id + 1);
  await s3.close();

  // Remove every segment: ids still continue (segments/next-id).
  for (const n of readdirSync(join(dataDir, 'segments'))) if (n.startsWith('seg-')) rmSync(join(dataDir, 'segments', n));
  rmSync(join(dataDir, 'external.json'));
  const s4 = new SegmentStore({ dataDir, flushIntervalMs: 0 });
  await s4.open();
  t.same(s4.segments(), []);
  t.equal(s4.append(frameOf(f, udp.packets[0]!, 1, 1)).segment, ext.id + 2);
  await s4.close();
});

t.test('external captures: same path gives the same id, persisted, never deleted by retention', async (t) => {
  const dataDir = tmp(t);
  const s1 = new SegmentStore({ dataDir, flushIntervalMs: 0, retentionBytes: 1, retentionSeconds: 1 });
  await s1.open();
  const a = s1.addExternal(join(CAPTURES, 'lo_udp_h264.pcap'), 'pcap', 447504, { packets: 879, firstTsNs: pktNs(udp.packets[0]!), lastTsNs: pktNs(udp.packets[878]!) });
  const b = s1.addExternal(join(CAPTURES, 'lo_dumpcap_udp_h264.pcapng'), 'pcapng', 284556);
  const a2 = s1.addExternal(join(CAPTURES, '..', 'captures', 'lo_udp_h264.pcap'), 'pcap', 447504);
  t.equal(a.id, 1);
  t.equal(b.id, 2);
  t.equal(a2.id, 1, 'same file, same id');
  t.equal(a.external, true);
  t.same(s1.enforceRetention(Date.now() + 1e12), [], 'retention leaves external segments alone');
  await s1.close();
  const reg = JSON.parse(readFileSync(join(dataDir, 'external.json'), 'utf8')) as { segments: Array<{ id: number; path: string }> };
  t.same(reg.segments.map((x) => x.id), [1, 2]);

  const s2 = new SegmentStore({ dataDir, flushIntervalMs: 0 });
  await s2.open();
  t.same(s2.segments(), [
    { id: 1, path: join(CAPTURES, 'lo_udp_h264.pcap'), format: 'pcap', external: true, sealed: true, bytes: 447504, packets: 879, firstTsNs: pktNs(udp.packets[0]!), lastTsNs: pktNs(udp.packets[878]!) },
    { id: 2, path: join(CAPTURES, 'lo_dumpcap_udp_h264.pcapng'), format: 'pcapng', external: true, sealed: true, bytes: 284556, packets: 0, firstTsNs: null, lastTsNs: null },
  ]);
  await s2.close();

  writeFileSync(join(dataDir, 'external.json'), '{"segments": [{"id": "x"}]}');
  const s3 = new SegmentStore({ dataDir, flushIntervalMs: 0 });
  await t.rejects(s3.open(), { code: 'CAMTAP_ERR_STORE_CORRUPT', details: { file: join(dataDir, 'external.json') } }, 'a damaged registry is reported, not forgotten');
});

t.test('retention by bytes deletes the oldest own segments until the budget holds', async (t) => {
  const dataDir = tmp(t);
  const deleted: SegmentInfo[] = [];
  const store = new SegmentStore({ dataDir, maxSegmentBytes: 60_000, retentionBytes: 200_000, flushIntervalMs: 0, onDelete: (s) => deleted.push(s) });
  await store.open();
  const items = mergedFeed();
  feed(store, items);
  await store.close();
  const left = store.segments();
  const total = left.reduce((n, s) => n + statSync(s.path).size, 0);
  t.ok(total <= 200_000, `kept ${total} bytes`);
  t.equal(store.totalBytes(), total);
  t.ok(total > 200_000 - 60_000, 'deleted no more than needed');
  t.ok(deleted.length > 0);
  const maxDeleted = Math.max(...deleted.map((s) => s.id));
  t.ok(left.every((s) => s.id > maxDeleted), 'the survivors are the newest');
  for (const d of deleted) {
    t.notOk(existsSync(d.path), `segment ${d.id} file removed`);
    t.notOk(existsSync(join(dataDir, 'segments', `seg-${String(d.id).padStart(8, '0')}.meta.json`)));
  }
  // The survivors hold the newest packets, contiguous up to the last one.
  const kept = left.reduce((n, s) => n + s.packets, 0);
  t.equal(left[left.length - 1]!.lastTsNs, pktNs(items[items.length - 1]!.pkt));
  t.equal(deleted.reduce((n, s) => n + s.packets, 0) + kept, items.length);
});

t.test('retention by age deletes segments whose last packet is older than retentionSeconds', async (t) => {
  const dataDir = tmp(t);
  const tenYears = 10 * 365 * 86400;
  const store = new SegmentStore({ dataDir, maxSegmentSeconds: 2, retentionSeconds: tenYears, flushIntervalMs: 0 });
  await store.open();
  const f = newFrame();
  for (const p of udp.packets) store.append(frameOf(f, p, 1, 1));
  await store.close();
  const segs = store.segments();
  t.ok(segs.length >= 5, 'nothing deleted at the real wall clock');
  // At a wall clock 10 years + 1 ms after segment 3's last packet, segments 1..3 are too old.
  const nowMs = Number(segs[2]!.lastTsNs! / 1_000_000n) + tenYears * 1000 + 1;
  const gone = store.enforceRetention(nowMs);
  t.same(gone.map((s) => s.id), segs.slice(0, 3).map((s) => s.id));
  t.same(store.segments().map((s) => s.id), segs.slice(3).map((s) => s.id));
  for (const g of gone) t.notOk(existsSync(g.path));
});

/** Half a block, the way a kill -9 in the middle of a write leaves a file: an EPB header promising 1500 bytes, 700 present. */
function tornBlock(): Buffer {
  const b = Buffer.alloc(700, 0x5a);
  b.writeUInt32LE(6, 0);
  b.writeUInt32LE(1500, 4);
  b.writeUInt32LE(0, 8);
  return b;
}

t.test('after a crash, open() cuts the torn tail of the open segment and seals it', needTshark, async (t) => {
  const dataDir = tmp(t);
  const crashed = new SegmentStore({ dataDir, flushIntervalMs: 0 });
  await crashed.open();
  const f = newFrame();
  for (const p of udp.packets.slice(0, 300)) crashed.append(frameOf(f, p, 1, 1));
  crashed.flush();
  for (const p of udp.packets.slice(300, 320)) crashed.append(frameOf(f, p, 1, 1)); // still in the buffer: lost with the process
  const openPath = join(dataDir, 'segments', 'seg-00000001.pcapng.open');
  const flushedSize = statSync(openPath).size;
  appendFileSync(openPath, tornBlock());
  // "kill -9": the crashed store is never closed.

  const store = new SegmentStore({ dataDir, flushIntervalMs: 0 });
  const res = await store.open();
  const finalPath = join(dataDir, 'segments', 'seg-00000001.pcapng');
  t.same(res.recovered, [{ segment: 1, path: finalPath, cutBytes: 700, packets: 300 }]);
  t.notOk(existsSync(openPath));
  t.equal(statSync(finalPath).size, flushedSize, 'cut exactly at the last complete block');
  const r = tsharkRows(finalPath);
  t.equal(r.status, 0);
  t.equal(r.stderr, '', 'tshark reads the recovered segment clean');
  t.same(
    r.rows.map((x) => x.ns),
    udp.packets.slice(0, 300).map((p) => pktNs(p)),
  );
  const info = store.segment(1)!;
  t.equal(info.sealed, true);
  t.equal(info.packets, 300);
  t.equal(info.firstTsNs, pktNs(udp.packets[0]!));
  t.equal(info.lastTsNs, pktNs(udp.packets[299]!));
  t.equal(store.append(frameOf(f, udp.packets[400]!, 1, 1)).segment, 2, 'writing resumes in a new segment');
  await store.close();
});

t.test('recovery cuts a tail of garbage that is not even a block header, and drops a file with a torn section header', needTshark, async (t) => {
  const dataDir = tmp(t);
  const crashed = new SegmentStore({ dataDir, flushIntervalMs: 0 });
  await crashed.open();
  const f = newFrame();
  for (const p of udp.packets.slice(0, 50)) crashed.append(frameOf(f, p, 1, 1));
  crashed.flush();
  appendFileSync(join(dataDir, 'segments', 'seg-00000001.pcapng.open'), Buffer.from([6, 0, 0]));
  mkdirSync(join(dataDir, 'segments'), { recursive: true });
  writeFileSync(join(dataDir, 'segments', 'seg-00000002.pcapng.open'), Buffer.from('0a0d0d0a1c0000004d3c', 'hex'));

  const store = new SegmentStore({ dataDir, flushIntervalMs: 0 });
  const res = await store.open();
  t.same(res.recovered, [
    { segment: 1, path: join(dataDir, 'segments', 'seg-00000001.pcapng'), cutBytes: 3, packets: 50 },
    { segment: 2, path: join(dataDir, 'segments', 'seg-00000002.pcapng.open'), cutBytes: 10, packets: 0 },
  ]);
  t.notOk(existsSync(join(dataDir, 'segments', 'seg-00000002.pcapng.open')));
  t.equal(tsharkRows(join(dataDir, 'segments', 'seg-00000001.pcapng')).rows.length, 50);
  t.same(store.segments().map((s) => s.id), [1]);
  t.equal(store.append(frameOf(f, udp.packets[0]!, 1, 1)).segment, 3, 'id 2 is not reused');
  await store.close();
});

function mountTmpfs(dir: string, size: string): boolean {
  return spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]).status === 0;
}

t.test('disk full on a real tmpfs (synchronous writes): one alert, CAMTAP_ERR_STORE_FULL, halted, everything before intact', needTshark, async (t) => {
  const mnt = mkdtempSync(join(tmpdir(), 'camtap-full-'));
  if (!mountTmpfs(mnt, '1m')) {
    rmSync(mnt, { recursive: true, force: true });
    t.skip('cannot mount a tmpfs here (needs root)');
    return;
  }
  t.teardown(() => {
    spawnSync('umount', [mnt]);
    rmSync(mnt, { recursive: true, force: true });
  });
  const alerts: StoreAlert[] = [];
  const sealed: SegmentInfo[] = [];
  // One buffer: every write is synchronous, so the append that fills the disk throws and the halt completes at once.
  const store = new SegmentStore({ dataDir: mnt, writeBufferBytes: 64 * 1024, writeBuffers: 1, flushIntervalMs: 0, onAlert: (a) => alerts.push(a), onSeal: (s) => sealed.push(s) });
  await store.open();
  const f = newFrame();
  const appended: FixturePacket[] = [];
  let err: unknown = null;
  outer: for (let round = 0; round < 10; round++) {
    for (const p of udp.packets) {
      try {
        store.append(frameOf(f, p, 1, 1, round * 20));
      } catch (e) {
        err = e;
        break outer;
      }
      appended.push({ ...p, tsSec: p.tsSec + round * 20 });
    }
  }
  t.ok(isCamtapError(err, 'CAMTAP_ERR_STORE_FULL'), 'append throws CAMTAP_ERR_STORE_FULL');
  t.equal(store.halted, true);
  t.equal(alerts.length, 1);
  t.equal(alerts[0]!.kind, 'disk-full');
  t.throws(() => store.append(frameOf(f, udp.packets[0]!, 1, 1)), { code: 'CAMTAP_ERR_STORE_FULL' }, 'later appends throw the same code');
  t.throws(() => store.append(frameOf(f, udp.packets[1]!, 1, 1)), { code: 'CAMTAP_ERR_STORE_FULL' });
  t.equal(alerts.length, 1, 'still one alert');
  store.flush(); // no-op when halted
  await store.close();

  const segs = store.segments();
  t.equal(segs.length, 1);
  const seg = segs[0]!;
  t.equal(seg.sealed, true, 'the segment is sealed with what made it to disk');
  t.same(sealed.map((s) => s.id), [seg.id]);
  const r = tsharkRows(seg.path);
  t.equal(r.status, 0);
  t.equal(r.stderr, '', 'tshark reads the segment without error');
  t.ok(r.rows.length > 1000, `${r.rows.length} packets kept`);
  t.equal(seg.packets, r.rows.length);
  t.equal(seg.bytes, statSync(seg.path).size);
  t.same(
    r.rows.map((x) => `${x.ns} ${x.len}`),
    appended.slice(0, r.rows.length).map((p) => `${pktNs(p)} ${p.origLen}`),
    'what is kept is exactly the first packets appended',
  );
  t.ok(appended.length - r.rows.length < 200, 'only the last buffer batch is lost');
  t.equal(alerts[0]!.details.keptBytes, seg.bytes, 'the alert tells what was kept');
  t.ok((alerts[0]!.details.lostBytes as number) > 0);
  t.ok((alerts[0]!.details.lostBytes as number) <= 64 * 1024 + 2000, 'at most one buffer (+ the block that did not fit) lost');
});

t.test('disk full with background writes racing synchronous ones: one alert, exactly a prefix kept, every lost byte accounted for', needTshark, async (t) => {
  const mnt = mkdtempSync(join(tmpdir(), 'camtap-full-'));
  if (!mountTmpfs(mnt, '1m')) {
    rmSync(mnt, { recursive: true, force: true });
    t.skip('cannot mount a tmpfs here (needs root)');
    return;
  }
  t.teardown(() => {
    spawnSync('umount', [mnt]);
    rmSync(mnt, { recursive: true, force: true });
  });
  const alerts: StoreAlert[] = [];
  const sealed: SegmentInfo[] = [];
  const store = new SegmentStore({ dataDir: mnt, writeBufferBytes: 64 * 1024, flushIntervalMs: 0, onAlert: (a) => alerts.push(a), onSeal: (s) => sealed.push(s) });
  await store.open();
  const f = newFrame();
  const appended: FixturePacket[] = [];
  let err: unknown = null;
  // The loop never yields: the first buffers go to the thread pool, the later ones are written
  // synchronously; which of them meets the full disk first depends on the scheduler.
  outer: for (let round = 0; round < 10; round++) {
    for (const p of udp.packets) {
      try {
        store.append(frameOf(f, p, 1, 1, round * 20));
      } catch (e) {
        err = e;
        break outer;
      }
      appended.push({ ...p, tsSec: p.tsSec + round * 20 });
    }
  }
  t.ok(isCamtapError(err, 'CAMTAP_ERR_STORE_FULL'), 'append throws CAMTAP_ERR_STORE_FULL');
  t.equal(store.halted, true);
  t.ok(alerts.length <= 1);
  await store.flushAsync(); // the cut, the seal and the alert wait for the background writes
  t.equal(alerts.length, 1);
  t.equal(alerts[0]!.kind, 'disk-full');
  t.throws(() => store.append(frameOf(f, udp.packets[0]!, 1, 1)), { code: 'CAMTAP_ERR_STORE_FULL' }, 'later appends throw the same code');
  await store.close();
  t.equal(alerts.length, 1, 'still one alert');

  const segs = store.segments();
  t.ok(segs.length <= 1);
  const seg = segs[0];
  const kept = seg ? tsharkRows(seg.path) : { rows: [], stderr: '', status: 0 };
  if (seg) {
    t.equal(seg.sealed, true);
    t.same(sealed.map((s) => s.id), [seg.id]);
    t.equal(kept.status, 0);
    t.equal(kept.stderr, '', 'tshark reads the segment without error');
    t.equal(seg.packets, kept.rows.length);
    t.equal(seg.bytes, statSync(seg.path).size);
  }
  t.same(
    kept.rows.map((x) => `${x.ns} ${x.len}`),
    appended.slice(0, kept.rows.length).map((p) => `${pktNs(p)} ${p.origLen}`),
    'what is kept is exactly the first packets appended',
  );
  // pcapng §4.3: an EPB is 32 bytes + the packet padded to 4. The bytes before the first EPB
  // (SHB, IDB) are what the file holds beyond its EPBs.
  const epb = (p: FixturePacket) => 32 + ((p.capLen + 3) & ~3);
  const keptBytes = seg ? seg.bytes : 0;
  const headBytes = seg ? keptBytes - appended.slice(0, kept.rows.length).reduce((n, p) => n + epb(p), 0) : 0;
  // (When the thread pool ran the first writes only after the disk was full, nothing is kept:
  // later bytes without the earlier ones would not be a prefix.)
  t.equal(alerts[0]!.details.keptBytes, keptBytes, 'the alert tells what was kept');
  if (seg) {
    const appendedBytes = headBytes + appended.reduce((n, p) => n + epb(p), 0);
    t.equal(alerts[0]!.details.lostBytes, appendedBytes - keptBytes, 'the alert counts every appended byte that is not kept');
  } else {
    t.ok((alerts[0]!.details.lostBytes as number) > 0);
  }
});

t.test('an I/O error other than disk full halts with CAMTAP_ERR_STORE_IO and an io-error alert', async (t) => {
  const dataDir = tmp(t);
  const alerts: StoreAlert[] = [];
  let failing = false;
  const store = new SegmentStore({
    dataDir,
    flushIntervalMs: 0,
    onAlert: (a) => alerts.push(a),
    writeSync: (fd, b, o, l, p) => {
      if (failing) throw Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
      return fs.writeSync(fd, b, o, l, p);
    },
  });
  await store.open();
  const f = newFrame();
  for (const p of udp.packets.slice(0, 10)) store.append(frameOf(f, p, 1, 1));
  store.flush();
  failing = true;
  store.append(frameOf(f, udp.packets[10]!, 1, 1));
  t.throws(() => store.flush(), { code: 'CAMTAP_ERR_STORE_IO' });
  t.equal(store.halted, true);
  t.same(alerts.map((a) => a.kind), ['io-error']);
  t.throws(() => store.append(frameOf(f, udp.packets[11]!, 1, 1)), { code: 'CAMTAP_ERR_STORE_IO' });
  await store.close();
  t.equal(store.segment(1)!.packets, 10, 'the flushed packets are kept and sealed');
});

t.test('disk full noticed by a background write: the next append throws, one alert, exactly a prefix is kept', needTshark, async (t) => {
  const mnt = mkdtempSync(join(tmpdir(), 'camtap-full-'));
  if (!mountTmpfs(mnt, '1m')) {
    rmSync(mnt, { recursive: true, force: true });
    t.skip('cannot mount a tmpfs here (needs root)');
    return;
  }
  t.teardown(() => {
    spawnSync('umount', [mnt]);
    rmSync(mnt, { recursive: true, force: true });
  });
  const alerts: StoreAlert[] = [];
  let syncWrites = 0;
  const asyncErrors: string[] = [];
  const store = new SegmentStore({
    dataDir: mnt,
    writeBufferBytes: 64 * 1024,
    flushIntervalMs: 0,
    onAlert: (a) => alerts.push(a),
    writeSync: (fd, b, o, l, p) => {
      syncWrites++;
      return fs.writeSync(fd, b, o, l, p);
    },
    writeAsync: (fd, b, o, l, p, cb) =>
      fs.write(fd, b, o, l, p, (e, n) => {
        if (e) asyncErrors.push(e.code ?? '?');
        cb(e, n);
      }),
  });
  await store.open();
  const f = newFrame();
  const appended: FixturePacket[] = [];
  let err: unknown = null;
  let batch = 0;
  outer: for (let round = 0; round < 10; round++) {
    for (const p of udp.packets) {
      try {
        store.append(frameOf(f, p, 1, 1, round * 20));
      } catch (e) {
        err = e;
        break outer;
      }
      appended.push({ ...p, tsSec: p.tsSec + round * 20 });
      // Every 16 packets (less than a buffer) go to the file in the background and are waited for.
      if (++batch % 16 === 0) await store.flushAsync();
    }
  }
  t.ok(isCamtapError(err, 'CAMTAP_ERR_STORE_FULL'), 'the append after the failed write throws CAMTAP_ERR_STORE_FULL');
  t.equal(syncWrites, 0, 'no write was synchronous');
  t.equal(asyncErrors[0], 'ENOSPC', 'a background write hit the full disk');
  t.equal(store.halted, true);
  t.equal(alerts.length, 1, 'one alert, raised before the next append');
  t.equal(alerts[0]!.kind, 'disk-full');
  t.throws(() => store.append(frameOf(f, udp.packets[0]!, 1, 1)), { code: 'CAMTAP_ERR_STORE_FULL' });
  await store.close();
  t.equal(alerts.length, 1, 'still one alert');

  const segs = store.segments();
  t.equal(segs.length, 1);
  const seg = segs[0]!;
  t.equal(seg.sealed, true);
  const r = tsharkRows(seg.path);
  t.equal(r.status, 0);
  t.equal(r.stderr, '', 'tshark reads the segment without error');
  t.ok(r.rows.length > 1000, `${r.rows.length} packets kept`);
  t.equal(seg.packets, r.rows.length);
  t.equal(seg.bytes, statSync(seg.path).size);
  t.same(
    r.rows.map((x) => `${x.ns} ${x.len}`),
    appended.slice(0, r.rows.length).map((p) => `${pktNs(p)} ${p.origLen}`),
    'what is kept is exactly the first packets appended',
  );
  t.ok(appended.length - r.rows.length <= 16, 'only the batch whose write failed is lost');
  t.equal(alerts[0]!.details.keptBytes, seg.bytes, 'the alert tells what was kept');
});

function eio(): NodeJS.ErrnoException {
  return Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
}

/** A store whose background writes fail with EIO once `failing.on` is set; 10 packets flushed before. */
async function storeWithFailingBackgroundWrites(t: { teardown(fn: () => void): void }) {
  const dataDir = tmp(t);
  const alerts: StoreAlert[] = [];
  const failing = { on: false };
  const store = new SegmentStore({
    dataDir,
    writeBufferBytes: 4096,
    flushIntervalMs: 0,
    onAlert: (a) => alerts.push(a),
    writeAsync: (fd, b, o, l, p, cb) => (failing.on ? process.nextTick(() => cb(eio(), 0)) : fs.write(fd, b, o, l, p, cb)),
  });
  await store.open();
  const f = newFrame();
  for (const p of udp.packets.slice(0, 10)) store.append(frameOf(f, p, 1, 1));
  store.flush();
  failing.on = true;
  // Several buffers' worth: the first full ones go to the background (and fail), the
  // rest are written synchronously behind them (and succeed, but lie after the failure).
  for (const p of udp.packets.slice(10, 40)) store.append(frameOf(f, p, 1, 1));
  return { store, alerts, f };
}

t.test('a background write error is thrown by the next append, and only what precedes it is kept', needTshark, async (t) => {
  const { store, alerts, f } = await storeWithFailingBackgroundWrites(t);
  t.equal(store.halted, false, 'not noticed before the write completes');
  await store.flushAsync();
  t.equal(store.halted, true);
  t.same(alerts.map((a) => a.kind), ['io-error']);
  t.throws(() => store.append(frameOf(f, udp.packets[40]!, 1, 1)), { code: 'CAMTAP_ERR_STORE_IO' });
  await store.close();
  const seg = store.segment(1)!;
  t.equal(seg.sealed, true);
  t.equal(seg.packets, 10, 'the packets before the failed write are kept and sealed');
  const r = tsharkRows(seg.path);
  t.equal(r.stderr, '');
  t.same(
    r.rows.map((x) => x.ns),
    udp.packets.slice(0, 10).map((p) => pktNs(p)),
  );
});

t.test('close() throws a background write error that no append has seen', async (t) => {
  const { store, alerts } = await storeWithFailingBackgroundWrites(t);
  await t.rejects(store.close(), { code: 'CAMTAP_ERR_STORE_IO' });
  t.same(alerts.map((a) => a.kind), ['io-error']);
  t.equal(store.segment(1)!.packets, 10);
});

t.test('flush() then flushAsync() make everything appended readable, background writes included', needTshark, async (t) => {
  const dataDir = tmp(t);
  const store = new SegmentStore({ dataDir, writeBufferBytes: 16 * 1024, flushIntervalMs: 0 });
  await store.open();
  const f = newFrame();
  for (const p of udp.packets.slice(0, 300)) store.append(frameOf(f, p, 1, 1));
  store.flush(); // full buffers are still being written: the tail joins them instead of blocking
  await store.flushAsync();
  const cur = store.current()!;
  t.equal(cur.packets, 300);
  t.equal(cur.bytes, statSync(cur.path).size);
  t.equal(cur.lastTsNs, pktNs(udp.packets[299]!));
  const r = tsharkRows(cur.path);
  t.equal(r.stderr, '');
  t.same(
    r.rows.map((x) => x.ns),
    udp.packets.slice(0, 300).map((p) => pktNs(p)),
  );
  await store.close();
});

t.test('onRotate reports each segment complete before the next one gets a packet; onSeal follows in segment order', needTshark, async (t) => {
  const dataDir = tmp(t);
  const events: string[] = [];
  const locs: StoreLocation[] = [];
  const store = new SegmentStore({
    dataDir,
    maxSegmentBytes: 100_000,
    writeBufferBytes: 16 * 1024,
    writeBehindBytes: 32 * 1024,
    flushIntervalMs: 0,
    onRotate: (s) => events.push(`rotate ${s.id} ${s.packets} ${locs.filter((l) => l.segment === s.id).length} ${locs.some((l) => l.segment > s.id)}`),
    onSeal: (s) => events.push(`seal ${s.id} ${s.packets}`),
  });
  await store.open();
  const f = newFrame();
  for (const [i, p] of udp.packets.entries()) {
    locs.push(store.append(frameOf(f, p, 1, 1)));
    if (i % 100 === 0) await new Promise((r) => setImmediate(r)); // let seals run beside the appends
  }
  await store.close();
  const segs = store.segments();
  t.ok(segs.length >= 4);
  const counts = segs.map((s) => tsharkRows(s.path).rows.length);
  t.same(events.filter((e) => e.startsWith('rotate')), segs.map((s, i) => `rotate ${s.id} ${counts[i]} ${counts[i]} false`), 'rotate: all packets of the segment returned, none of a later one');
  t.same(events.filter((e) => e.startsWith('seal')), segs.map((s, i) => `seal ${s.id} ${counts[i]}`), 'seal: in order, with the packet counts tshark sees');
  for (const s of segs) t.ok(events.indexOf(`rotate ${s.id} ${counts[segs.indexOf(s)]} ${counts[segs.indexOf(s)]} false`) < events.findIndex((e) => e.startsWith(`seal ${s.id} `)), `segment ${s.id} rotates before it seals`);
});

t.test('several segments left open by a crash during background seals are all recovered', needTshark, async (t) => {
  const dataDir = tmp(t);
  const store = new SegmentStore({ dataDir, maxSegmentBytes: 100_000, writeBuffers: 1, flushIntervalMs: 0 });
  await store.open();
  const f = newFrame();
  for (const p of udp.packets) store.append(frameOf(f, p, 1, 1));
  store.flush();
  // The loop never yielded, so no background seal has run: a crash now leaves every segment `.open`.
  const crashDir = tmp(t);
  fs.cpSync(join(dataDir, 'segments'), join(crashDir, 'segments'), { recursive: true });
  await store.close();
  const open = readdirSync(join(crashDir, 'segments')).filter((n) => n.endsWith('.pcapng.open')).sort();
  t.ok(open.length >= 4, `${open.length} segments left open`);

  const rec = new SegmentStore({ dataDir: crashDir, flushIntervalMs: 0 });
  const res = await rec.open();
  t.same(res.recovered.map((r) => [r.segment, r.cutBytes]), open.map((_, i) => [i + 1, 0]), 'each one recovered, nothing to cut');
  t.same(readdirSync(join(crashDir, 'segments')).filter((n) => n.endsWith('.open')), []);
  const all: bigint[] = [];
  for (const s of rec.segments()) {
    const r = tsharkRows(s.path);
    t.equal(r.stderr, '', `tshark reads recovered segment ${s.id}`);
    t.equal(s.packets, r.rows.length);
    all.push(...r.rows.map((x) => x.ns));
  }
  t.same(all, udp.packets.map((p) => pktNs(p)), 'every packet, in order');
  await rec.close();
});

t.test('flush() between appends (tail writes in flight while appending goes on in the same buffer) loses, moves and reorders nothing', needTshark, async (t) => {
  for (const yieldEvery of [0, 5]) {
    const dataDir = tmp(t);
    const store = new SegmentStore({ dataDir, maxSegmentBytes: 150_000, writeBufferBytes: 8 * 1024, flushIntervalMs: 0 });
    await store.open();
    const items = mergedFeed();
    const f = newFrame();
    const locs: StoreLocation[] = [];
    for (const [i, it] of items.entries()) {
      locs.push(store.append(frameOf(f, it.pkt, it.tap, it.linkType), it.tap === 1 ? 'cam-tcp' : 'cam-udp'));
      if (i % 3 === 0) store.flush();
      if (yieldEvery > 0 && i % yieldEvery === 0) await new Promise((r) => setImmediate(r));
    }
    await store.close();
    const segs = store.segments();
    t.ok(segs.length >= 4, `${segs.length} segments`);
    const rows: bigint[] = [];
    for (const s of segs) {
      const r = tsharkRows(s.path);
      t.equal(r.stderr, '', `tshark reads segment ${s.id} (${yieldEvery ? 'with' : 'without'} event loop turns)`);
      t.equal(s.bytes, statSync(s.path).size);
      rows.push(...r.rows.map((x) => x.ns));
    }
    t.same(rows, items.map((it) => pktNs(it.pkt)), 'every packet once, in order');
    const files = new Map(segs.map((s) => [s.id, readFileSync(s.path)]));
    const bad = locs.filter((loc, i) => {
      const b = files.get(loc.segment)!;
      const it = items[i]!;
      return !(b.readUInt32LE(loc.offset) === 6 && b.subarray(loc.offset + 28, loc.offset + 28 + it.pkt.capLen).equals(it.pkt.data.subarray(0, it.pkt.capLen)));
    }).length;
    t.equal(bad, 0, 'all locations point at their packet');
  }
});
