/**
 * Bad capture files: a clear error naming the file and byte offset, every good packet
 * before it kept, and a non-zero exit. Ground truth for "good packets" is tshark.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CAPTURES, camtap, camtapJson, tempDir } from '../helpers/camtap.js';
import { have } from '../helpers/peers.js';
import type { SegmentInfo } from '../../core/store/segment-store.js';

const src = readFileSync(path.join(CAPTURES, 'lo_udp_h264.pcap'));

/** Offsets of the classic-pcap records of `buf` (little-endian, 24-byte file header). */
function recordOffsets(buf: Buffer): number[] {
  const offs: number[] = [];
  for (let o = 24; o + 16 <= buf.length; ) {
    offs.push(o);
    o += 16 + buf.readUInt32LE(o + 8);
  }
  return offs;
}
const offsets = recordOffsets(src);

function tsharkCount(file: string): number {
  let out = '';
  try {
    out = execFileSync('tshark', ['-r', file, '-T', 'fields', '-e', 'frame.number'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch (e) {
    out = String((e as { stdout?: string }).stdout ?? '');
  }
  return out.split('\n').filter(Boolean).length;
}

async function importBad(t: { teardown(fn: () => void): void }, name: string, bytes: Buffer) {
  const dir = tempDir(t);
  const file = path.join(dir, name);
  writeFileSync(file, bytes);
  const data = path.join(dir, 'data');
  const r = await camtap(['import', '--in-place', file], { data });
  const segs = await camtapJson<SegmentInfo[]>(['segments'], data);
  return { file, r, kept: segs.reduce((n, s) => n + s.packets, 0) };
}


const skip = have('tshark') ? false : 'tshark (Debian package tshark) is the ground truth here';

t.test('truncated file: error at the cut record, every complete packet kept', { skip }, async (t) => {
  const k = 500;
  const cut = offsets[k]! + 30; // inside record k's data
  const { file, r, kept } = await importBad(t, 'truncated.pcap', src.subarray(0, cut));
  t.equal(r.code, 65, 'import exits 65');
  t.match(r.stderr, `CAMTAP_ERR_CAPTURE_TRUNCATED: ${file}: offset ${offsets[k]}`);
  t.equal(kept, tsharkCount(file), 'packets kept = what tshark reads before the cut');
  t.equal(kept, k);
});

t.test('empty file and wrong magic: clear errors, non-zero exit', async (t) => {
  const e = await importBad(t, 'empty.pcap', Buffer.alloc(0));
  t.equal(e.r.code, 65);
  t.match(e.r.stderr, `CAMTAP_ERR_CAPTURE_EMPTY: ${e.file}: empty file`);
  const garbage = Buffer.from('this is not a capture file at all, just text\n'.repeat(10));
  const w = await importBad(t, 'text.pcap', garbage);
  t.equal(w.r.code, 65);
  t.match(w.r.stderr, `CAMTAP_ERR_CAPTURE_MAGIC: ${w.file}: offset 0: not a pcap or pcapng file`);
  t.equal(w.kept, 0);
});

t.test('oversized record length: error names the record offset, packets before kept', { skip }, async (t) => {
  const k = 300;
  const b = Buffer.from(src);
  b.writeUInt32LE(0x7fffffff, offsets[k]! + 8);
  b.writeUInt32LE(0x7fffffff, offsets[k]! + 12);
  const { file, r, kept } = await importBad(t, 'oversized.pcap', b);
  t.equal(r.code, 65);
  t.match(r.stderr, `CAMTAP_ERR_CAPTURE_RECORD: ${file}: offset ${offsets[k]}`);
  t.ok(kept >= k, `kept ${kept} >= the ${k} packets before the bad record`);
  t.equal(tsharkCount(file), k, 'tshark agrees on the good prefix');
});

t.test('garbage in the middle: error names the offset, the good packets on both sides are kept', { skip }, async (t) => {
  const k = 400;
  const b = Buffer.from(src);
  const start = offsets[k]!;
  for (let i = 0; i < 3000; i++) b[start + i] = (i * 131 + 7) & 0xff;
  const { file, r, kept } = await importBad(t, 'garbage.pcap', b);
  t.equal(r.code, 65);
  const m = /CAMTAP_ERR_CAPTURE_RECORD: (\S+): offset (\d+)/.exec(r.stderr);
  t.ok(m, `error with file and offset: ${r.stderr.trim()}`);
  t.equal(m?.[1], `${file}:`.slice(0, -1));
  t.equal(Number(m?.[2]), start, 'offset of the first damaged record');
  const lostRecords = offsets.filter((o) => o >= start && o < start + 3000).length + 1;
  t.ok(kept >= k, 'every packet before the damage kept');
  t.ok(kept >= offsets.length - lostRecords - 1, `resynced after the damage: kept ${kept} of ${offsets.length}`);
});
