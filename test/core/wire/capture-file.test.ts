import t, { type Test } from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CaptureFileReader, CaptureParser, readCaptureFile, type CaptureRecord } from '../../../core/wire/capture-file.js';
import { CamtapError, isCamtapError, type ErrorCode } from '../../../core/errors.js';
import { DecodeStatus, PacketDecoder, PacketMeta } from '../../../core/wire/packet.js';

// ---------------------------------------------------------------------------------------
// Ground truth: tshark/capinfos for real captures, layouts walked straight from the specs
// (pcap record header / pcapng block length) for the bad files made from them.

const CAPTURES = fileURLToPath(new URL('../../../fixtures/captures/', import.meta.url));
const HAVE_TSHARK = spawnSync('tshark', ['--version'], { stdio: 'ignore' }).status === 0;
const noTshark = HAVE_TSHARK ? false : 'tshark is not installed';

const tmp = mkdtempSync(join(tmpdir(), 'camtap-capture-file-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

interface TruthFrame {
  epoch: string;
  capLen: number;
  len: number;
  ifid: number;
  protocols: string;
}

/** Frames tshark reads from `file`, up to any error (tshark exits non-zero on a damaged file but prints what it read). */
function tsharkFrames(file: string): TruthFrame[] {
  const args = ['-r', file, '-T', 'fields', '-e', 'frame.time_epoch', '-e', 'frame.cap_len', '-e', 'frame.len', '-e', 'frame.interface_id', '-e', 'frame.protocols'];
  let out: string;
  try {
    out = execFileSync('tshark', args, { encoding: 'utf8', maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'ignore'] });
  } catch (e) {
    out = String((e as { stdout?: string }).stdout ?? '');
  }
  return out
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [epoch, cap, len, ifid, protocols] = l.split('\t');
      return { epoch: epoch!, capLen: Number(cap), len: Number(len), ifid: ifid ? Number(ifid) : 0, protocols: protocols ?? '' };
    });
}

const epochOf = (r: CaptureRecord): string => `${r.tsSec}.${String(r.tsNsec).padStart(9, '0')}`;

/** Record offsets of a classic pcap, from the 16-byte record headers (pcap §5). */
function pcapLayout(b: Buffer): number[] {
  const offs: number[] = [];
  for (let p = 24; p + 16 <= b.length; p += 16 + b.readUInt32LE(p + 8)) offs.push(p);
  return offs;
}

/** Block offsets and types of a little-endian pcapng, from the block total lengths (pcapng §3.1). */
function pcapngLayout(b: Buffer): Array<{ at: number; type: number; len: number }> {
  const blocks: Array<{ at: number; type: number; len: number }> = [];
  for (let p = 0; p + 8 <= b.length; ) {
    const len = b.readUInt32LE(p + 4);
    blocks.push({ at: p, type: b.readUInt32LE(p), len });
    p += len;
  }
  return blocks;
}

async function readAll(file: string, opts: Parameters<typeof readCaptureFile>[2] = {}) {
  const recs: Array<{ epoch: string; capLen: number; origLen: number; fileOffset: number; ifid: number; linkType: number; recordLen: number; data: Buffer }> = [];
  const res = await readCaptureFile(
    file,
    (r) => recs.push({ epoch: epochOf(r), capLen: r.capLen, origLen: r.origLen, fileOffset: r.fileOffset, ifid: r.interfaceId, linkType: r.linkType, recordLen: r.recordLen, data: Buffer.from(r.buf.subarray(r.off, r.off + r.capLen)) }),
    opts,
  );
  return { res, recs };
}

async function expectError(t: Test, p: Promise<unknown>, code: ErrorCode, file: string, offset: number): Promise<CamtapError | null> {
  try {
    await p;
    t.fail(`expected ${code}`);
    return null;
  } catch (e) {
    t.ok(isCamtapError(e, code), `${code}: got ${(e as Error).message}`);
    const ce = e as CamtapError;
    t.ok(ce.message.includes(file), 'the message names the file');
    if (code !== 'CAMTAP_ERR_CAPTURE_EMPTY') t.ok(ce.message.includes(`offset ${offset}`), `the message names offset ${offset}: ${ce.message}`);
    t.equal(ce.details.offset, offset, 'details.offset');
    return ce;
  }
}

/** Deterministic garbage (xorshift32), so a failure can be reproduced. */
function garbage(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

// ---------------------------------------------------------------------------------------
// Hand-built pcapng (draft-ietf-opsawg-pcapng), either byte order.

class Pcapng {
  readonly parts: Buffer[] = [];
  size = 0;
  le = true;

  #u32(v: number): Buffer {
    const b = Buffer.alloc(4);
    if (this.le) b.writeUInt32LE(v >>> 0);
    else b.writeUInt32BE(v >>> 0);
    return b;
  }
  #u16(v: number): Buffer {
    const b = Buffer.alloc(2);
    if (this.le) b.writeUInt16LE(v);
    else b.writeUInt16BE(v);
    return b;
  }
  #opt(code: number, value: Buffer): Buffer {
    const pad = Buffer.alloc((4 - (value.length % 4)) % 4);
    return Buffer.concat([this.#u16(code), this.#u16(value.length), value, pad]);
  }
  /** Appends a block; returns its offset. */
  block(type: number, body: Buffer): number {
    const pad = Buffer.alloc((4 - (body.length % 4)) % 4);
    const len = 12 + body.length + pad.length;
    const at = this.size;
    const b = Buffer.concat([this.#u32(type), this.#u32(len), body, pad, this.#u32(len)]);
    this.parts.push(b);
    this.size += b.length;
    return at;
  }
  shb(le: boolean): number {
    this.le = le;
    return this.block(0x0a0d0d0a, Buffer.concat([this.#u32(0x1a2b3c4d), this.#u16(1), this.#u16(0), this.#u32(0xffffffff), this.#u32(0xffffffff)]));
  }
  idb(linkType: number, snapLen: number, opts: { name?: string; tsresol?: number; tsoffset?: bigint } = {}): number {
    const o: Buffer[] = [];
    if (opts.name !== undefined) o.push(this.#opt(2, Buffer.from(opts.name)));
    if (opts.tsresol !== undefined) o.push(this.#opt(9, Buffer.from([opts.tsresol])));
    if (opts.tsoffset !== undefined) {
      const v = Buffer.alloc(8);
      if (this.le) v.writeBigInt64LE(opts.tsoffset);
      else v.writeBigInt64BE(opts.tsoffset);
      o.push(this.#opt(14, v));
    }
    if (o.length) o.push(Buffer.alloc(4));
    return this.block(1, Buffer.concat([this.#u16(linkType), this.#u16(0), this.#u32(snapLen), ...o]));
  }
  epb(ifid: number, ticks: bigint, data: Buffer, origLen = data.length): number {
    return this.block(6, Buffer.concat([this.#u32(ifid), this.#u32(Number(ticks >> 32n)), this.#u32(Number(ticks & 0xffffffffn)), this.#u32(data.length), this.#u32(origLen), data]));
  }
  /** Obsolete Packet Block (type 2): 16-bit interface id and drops count. */
  pb(ifid: number, ticks: bigint, data: Buffer): number {
    return this.block(2, Buffer.concat([this.#u16(ifid), this.#u16(0), this.#u32(Number(ticks >> 32n)), this.#u32(Number(ticks & 0xffffffffn)), this.#u32(data.length), this.#u32(data.length), data]));
  }
  spb(data: Buffer, origLen = data.length): number {
    return this.block(3, Buffer.concat([this.#u32(origLen), data]));
  }
  /** Name Resolution Block with one IPv4 record, then end of records. */
  nrb(): number {
    const rec = Buffer.concat([Buffer.from([127, 0, 0, 1]), Buffer.from('cam\0')]);
    return this.block(4, Buffer.concat([this.#u16(1), this.#u16(rec.length), rec, this.#u16(0), this.#u16(0)]));
  }
  isb(ifid: number): number {
    return this.block(5, Buffer.concat([this.#u32(ifid), this.#u32(0), this.#u32(0)]));
  }
  custom(): number {
    return this.block(0x00000bad, Buffer.concat([this.#u32(32473), Buffer.from('camtap custom block')]));
  }
  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** Ethernet + IPv4 + UDP, `tag` in the payload so records can be told apart. */
function ethUdp(tag: number, payload = 20): Buffer {
  const b = Buffer.alloc(14 + 20 + 8 + payload);
  b.writeUInt16BE(0x0800, 12);
  b.writeUInt8(0x45, 14);
  b.writeUInt16BE(20 + 8 + payload, 16);
  b.writeUInt8(64, 22);
  b.writeUInt8(17, 23);
  Buffer.from([127, 0, 0, 1]).copy(b, 26);
  Buffer.from([127, 0, 0, 2]).copy(b, 30);
  b.writeUInt16BE(5004, 34);
  b.writeUInt16BE(5006, 36);
  b.writeUInt16BE(8 + payload, 38);
  b.writeUInt32BE(tag, 42);
  return b;
}

/** Linux cooked (SLL, link type 113) + IPv4 + UDP. */
function sllUdp(tag: number): Buffer {
  const ip = ethUdp(tag).subarray(14);
  const h = Buffer.alloc(16);
  h.writeUInt16BE(0, 0); // to us
  h.writeUInt16BE(772, 2); // ARPHRD_LOOPBACK
  h.writeUInt16BE(6, 4);
  h.writeUInt16BE(0x0800, 14);
  return Buffer.concat([h, ip]);
}

// ---------------------------------------------------------------------------------------

const fixtures = readdirSync(CAPTURES).filter((f) => /\.pcap(ng)?$/.test(f));

t.test('every fixture reads with the packet count and start/end time capinfos reports', async (t) => {
  t.ok(fixtures.length >= 10, 'fixtures present');
  for (const f of fixtures) {
    const manifest = JSON.parse(readFileSync(join(CAPTURES, f.replace(/\.pcap(ng)?$/, '.manifest.json')), 'utf8')) as { capinfos: Record<string, string> };
    const ci = manifest.capinfos;
    let min = '';
    let max = '';
    let minKey = Infinity;
    let maxKey = -Infinity;
    const res = await readCaptureFile(join(CAPTURES, f), (r) => {
      const k = r.tsSec * 1e9 + r.tsNsec; // ordering only
      const digits = (ci['Start time'] ?? '').split('.')[1]?.length ?? 6;
      const iso = new Date(r.tsSec * 1000).toISOString();
      const s = `${iso.slice(0, 10)} ${iso.slice(11, 19)}.${String(r.tsNsec).padStart(9, '0').slice(0, digits)}`;
      if (k < minKey) [minKey, min] = [k, s];
      if (k > maxKey) [maxKey, max] = [k, s];
    });
    t.equal(res.records, Number(ci['Number of packets']), `${f}: packets`);
    t.equal(res.format, ci['File type'] === 'pcapng' ? 'pcapng' : 'pcap', `${f}: format`);
    t.equal(min, ci['Start time'], `${f}: start time`);
    t.equal(max, ci['End time'], `${f}: end time`);
    t.equal(res.errors.length, 0, `${f}: no errors`);
    t.equal(res.endOffset, Number(ci['File size (bytes)']), `${f}: read to the end`);
  }
});

t.test('per-record times and lengths equal tshark, at nanosecond precision, whatever the chunk size', { skip: noTshark }, async (t) => {
  for (const f of ['lo_tcp_interleaved_h264_nsec.pcap', 'lo_dumpcap_udp_h264.pcapng', 'lo_udp_h264.pcap']) {
    const truth = tsharkFrames(join(CAPTURES, f));
    for (const chunkSize of [4096, 4 * 1024 * 1024]) {
      const { recs } = await readAll(join(CAPTURES, f), { chunkSize });
      t.equal(recs.length, truth.length, `${f} @${chunkSize}: count`);
      let bad = 0;
      recs.forEach((r, i) => {
        const w = truth[i]!;
        if (r.epoch !== w.epoch || r.capLen !== w.capLen || r.origLen !== w.len || r.ifid !== w.ifid) bad++;
      });
      t.equal(bad, 0, `${f} @${chunkSize}: every record's time, caplen, len and interface match`);
    }
  }
  // Straight from the file: the first record of the nanosecond pcap, as bytes.
  const raw = readFileSync(join(CAPTURES, 'lo_tcp_interleaved_h264_nsec.pcap'));
  t.equal(raw.readUInt32LE(0), 0xa1b23c4d, 'the nsec fixture has the nanosecond magic');
  const { recs } = await readAll(join(CAPTURES, 'lo_tcp_interleaved_h264_nsec.pcap'));
  t.equal(recs[0]!.epoch, `${raw.readUInt32LE(24)}.${String(raw.readUInt32LE(28)).padStart(9, '0')}`);
});

t.test('the push parser gives the same records for random chunk boundaries (carry-over across chunks)', { skip: noTshark }, async (t) => {
  for (const f of ['lo_dumpcap_udp_h264.pcapng', 'lo_udp_h264.pcap']) {
    const file = join(CAPTURES, f);
    const bytes = readFileSync(file);
    const truth = tsharkFrames(file);
    const expectOffsets = f.endsWith('ng') ? pcapngLayout(bytes).filter((b) => b.type === 6).map((b) => b.at) : pcapLayout(bytes);
    const p = new CaptureParser({ file });
    const got: Array<{ epoch: string; capLen: number; at: number; first: number }> = [];
    const g = garbage(bytes.length, 7);
    for (let pos = 0, i = 0; pos < bytes.length; i++) {
      const n = 1 + (g[i % g.length]! % 700);
      p.push(bytes.subarray(pos, pos + n), (r) => got.push({ epoch: epochOf(r), capLen: r.capLen, at: r.fileOffset, first: r.buf[r.off]! }));
      pos += n;
    }
    p.end();
    t.equal(got.length, truth.length, `${f}: count`);
    t.same(
      got.map((r) => `${r.epoch}/${r.capLen}`),
      truth.map((w) => `${w.epoch}/${w.capLen}`),
      `${f}: times and lengths`,
    );
    t.same(got.map((r) => r.at), expectOffsets, `${f}: file offsets`);
    t.same(got.map((r) => r.first), expectOffsets.map((o) => bytes[o + (f.endsWith('ng') ? 28 : 16)]), `${f}: buf/off point at the packet bytes`);
    t.equal(p.offset, bytes.length);
    t.equal(p.records, truth.length);
  }
});

t.test('a big-endian pcap reads like its little-endian original', { skip: noTshark }, async (t) => {
  const src = readFileSync(join(CAPTURES, 'lo_udp_h264.pcap'));
  const be = Buffer.from(src);
  // File header (pcap §4): magic, u16 major, u16 minor, then four u32.
  be.writeUInt32BE(src.readUInt32LE(0), 0);
  be.writeUInt16BE(src.readUInt16LE(4), 4);
  be.writeUInt16BE(src.readUInt16LE(6), 6);
  for (let o = 8; o < 24; o += 4) be.writeUInt32BE(src.readUInt32LE(o), o);
  for (const p of pcapLayout(src)) for (let o = p; o < p + 16; o += 4) be.writeUInt32BE(src.readUInt32LE(o), o);
  const file = join(tmp, 'big-endian.pcap');
  writeFileSync(file, be);
  const truth = tsharkFrames(file);
  t.equal(truth.length, 879, 'tshark reads the hand-swapped file');
  const { res, recs } = await readAll(file);
  t.equal(res.records, 879);
  t.same(recs.map((r) => `${r.epoch}/${r.capLen}/${r.origLen}`), truth.map((w) => `${w.epoch}/${w.capLen}/${w.len}`));
  t.same(res.interfaces, [{ id: 0, linkType: 1, snapLen: 262144, tsResolNs: 1000, name: null }]);
});

t.test('a hand-built pcapng: several interfaces and link types, tsresol, SPB, PB, skipped blocks, a big-endian second section', { skip: noTshark }, async (t) => {
  const b = new Pcapng();
  const sec = 1795467919;
  b.shb(true);
  b.idb(1, 262144, { name: 'eth0' }); // default resolution 10^-6
  b.nrb();
  b.idb(113, 65535, { name: 'any', tsresol: 0x80 | 20 }); // 2^-20 s
  b.idb(1, 0, { tsresol: 9 }); // ns, snaplen 0 = unlimited
  const data = [ethUdp(1), sllUdp(2), ethUdp(3, 300), ethUdp(4), sllUdp(5), ethUdp(6), sllUdp(7), ethUdp(8)];
  const offs: number[] = [];
  offs.push(b.epb(0, BigInt(sec) * 1_000_000n + 675101n, data[0]!));
  offs.push(b.epb(1, (BigInt(sec) << 20n) + 777777n, data[1]!));
  b.custom();
  offs.push(b.epb(2, BigInt(sec) * 1_000_000_000n + 999_999_999n, data[2]!.subarray(0, 100), data[2]!.length)); // snapped
  offs.push(b.pb(0, BigInt(sec + 1) * 1_000_000n, data[3]!));
  b.isb(0);
  // Second section, big-endian, its own interface numbering (global ids continue: 3).
  b.shb(false);
  b.idb(113, 262144, { tsresol: 3 }); // ms
  b.idb(1, 262144, { tsresol: 6 });
  offs.push(b.epb(0, BigInt(sec + 2) * 1000n + 5n, data[4]!));
  offs.push(b.epb(1, BigInt(sec + 3) * 1_000_000n + 1n, data[5]!));
  offs.push(b.spb(data[6]!)); // interface 0 of this section (SLL), no timestamp
  // A third section, little-endian again.
  b.shb(true);
  b.idb(1, 262144, { tsresol: 9 });
  offs.push(b.epb(0, BigInt(sec + 4) * 1_000_000_000n + 123n, data[7]!));
  const file = join(tmp, 'hand.pcapng');
  writeFileSync(file, b.bytes());

  const expected = [
    { ifid: 0, linkType: 1, epoch: `${sec}.675101000`, capLen: data[0]!.length, origLen: data[0]!.length, data: data[0]! },
    // 777777 / 2^20 s = 741,746,902.4... ns -> floor
    { ifid: 1, linkType: 113, epoch: `${sec}.${Math.floor((777777 * 1e9) / 2 ** 20)}`, capLen: data[1]!.length, origLen: data[1]!.length, data: data[1]! },
    { ifid: 2, linkType: 1, epoch: `${sec}.999999999`, capLen: 100, origLen: data[2]!.length, data: data[2]!.subarray(0, 100) },
    { ifid: 0, linkType: 1, epoch: `${sec + 1}.000000000`, capLen: data[3]!.length, origLen: data[3]!.length, data: data[3]! },
    { ifid: 3, linkType: 113, epoch: `${sec + 2}.005000000`, capLen: data[4]!.length, origLen: data[4]!.length, data: data[4]! },
    { ifid: 4, linkType: 1, epoch: `${sec + 3}.000001000`, capLen: data[5]!.length, origLen: data[5]!.length, data: data[5]! },
    { ifid: 3, linkType: 113, epoch: '0.000000000', capLen: data[6]!.length, origLen: data[6]!.length, data: data[6]! },
    { ifid: 5, linkType: 1, epoch: `${sec + 4}.000000123`, capLen: data[7]!.length, origLen: data[7]!.length, data: data[7]! },
  ];
  const { res, recs } = await readAll(file);
  t.equal(res.format, 'pcapng');
  t.equal(res.records, expected.length);
  t.same(
    recs.map(({ ifid, linkType, epoch, capLen, origLen, data }) => ({ ifid, linkType, epoch, capLen, origLen, data })),
    expected,
    'interfaces, link types, timestamps, lengths and bytes',
  );
  t.same(recs.map((r) => r.fileOffset), offs, 'file offsets are block starts');
  t.same(
    res.interfaces.map((i) => [i.id, i.linkType, i.snapLen, i.tsResolNs, i.name]),
    [
      [0, 1, 262144, 1000, 'eth0'],
      [1, 113, 65535, 1e9 / 2 ** 20, 'any'],
      [2, 1, 0, 1, null],
      [3, 113, 262144, 1e6, null],
      [4, 1, 262144, 1000, null],
      [5, 1, 262144, 1, null],
    ],
  );
  // tshark agrees on count, times and lengths. Where it differs by design: it shows the
  // custom block as a "data" record, an SPB without a time, and tshark 4.0 numbers
  // interfaces per section (camtap numbers them across the file).
  const truth = tsharkFrames(file).filter((w) => !(w.protocols === 'data' && w.epoch === ''));
  const sectionLocal = [0, 1, 2, 0, 0, 1, 0, 0];
  t.same(
    truth.map((w) => `${w.ifid} ${w.epoch || '0.000000000'} ${w.capLen}/${w.len}`),
    recs.map((r, i) => `${sectionLocal[i]} ${r.epoch} ${r.capLen}/${r.origLen}`),
    'tshark reads the same',
  );
  t.same(truth.map((w) => w.protocols.split(':')[0]), ['eth', 'sll', 'eth', 'eth', 'sll', 'eth', 'sll', 'eth'], 'tshark: link types');
  // Both link types decode down to the UDP payload carrying the tag each frame was built with.
  const dec = new PacketDecoder();
  const m = new PacketMeta();
  const tags: number[] = [];
  await readCaptureFile(file, (r) => {
    t.equal(dec.decode(r, m), DecodeStatus.OK, `record at ${r.fileOffset} decodes`);
    tags.push(m.buf.readUInt32BE(m.payloadOff));
  });
  t.same(tags, [1, 2, 3, 4, 5, 6, 7, 8]);
});

t.test('if_tsoffset is added to every timestamp of its interface', async (t) => {
  const b = new Pcapng();
  b.shb(true);
  b.idb(1, 0, { tsresol: 9, tsoffset: 1_700_000_000n });
  b.epb(0, 5n * 1_000_000_000n + 42n, ethUdp(1));
  const file = join(tmp, 'tsoffset.pcapng');
  writeFileSync(file, b.bytes());
  const { recs } = await readAll(file);
  t.equal(recs[0]!.epoch, '1700000005.000000042');
});

t.test('an IDB after the first packets: a mid-file start learns it from the blocks before', { skip: noTshark }, async (t) => {
  const b = new Pcapng();
  const sec = 1795467919n;
  b.shb(true);
  b.idb(1, 262144, { tsresol: 9 });
  const offs: number[] = [];
  for (let i = 0; i < 3; i++) offs.push(b.epb(0, sec * 1_000_000_000n + BigInt(i), ethUdp(i)));
  b.idb(113, 262144, { tsresol: 9, name: 'tap-2' }); // a new tap appeared
  offs.push(b.epb(1, sec * 1_000_000_000n + 10n, sllUdp(10)));
  offs.push(b.epb(0, sec * 1_000_000_000n + 11n, ethUdp(11)));
  offs.push(b.epb(1, sec * 1_000_000_000n + 12n, sllUdp(12)));
  const file = join(tmp, 'late-idb.pcapng');
  writeFileSync(file, b.bytes());
  const truth = tsharkFrames(file);
  t.same(truth.map((w) => w.ifid), [0, 0, 0, 1, 0, 1], 'tshark: interface ids');

  const { res, recs } = await readAll(file, { startOffset: offs[3]! });
  t.same(recs.map((r) => [r.ifid, r.linkType, r.epoch]), [
    [1, 113, `${sec}.000000010`],
    [0, 1, `${sec}.000000011`],
    [1, 113, `${sec}.000000012`],
  ]);
  t.equal(res.records, 3);
  t.same(res.interfaces.map((i) => i.name), [null, 'tap-2']);

  // Same through the random-access reader: it only knows interface 0 at first.
  const reader = await CaptureFileReader.open(file);
  t.equal(reader.interfaces().length, 1, 'open reads the header region only');
  const r = await reader.readAt(offs[5]!);
  t.ok(r, 'record read');
  t.same([r!.interfaceId, r!.linkType, epochOf(r!)], [1, 113, `${sec}.000000012`]);
  t.equal(reader.interfaces().length, 2, 'the late IDB is now known');
  const r0 = await reader.readAt(offs[1]!);
  t.same([r0!.interfaceId, r0!.linkType], [0, 1], 'an earlier record after that');
  const seen: number[] = [];
  t.same(await reader.scanFrom(offs[0]!, (x) => void seen.push(x.interfaceId)), { endOffset: b.size });
  t.same(seen, [0, 0, 0, 1, 0, 1], 'a scan from the start crosses the IDB without counting it twice');
  t.equal(reader.interfaces().length, 2);
  await reader.close();
  await reader.close(); // twice is fine
});

t.test('byte ranges: startOffset/endOffset read exactly the records that start inside', { skip: noTshark }, async (t) => {
  for (const f of ['lo_udp_h264.pcap', 'lo_dumpcap_udp_h264.pcapng']) {
    const file = join(CAPTURES, f);
    const bytes = readFileSync(file);
    const offs = f.endsWith('ng') ? pcapngLayout(bytes).filter((b) => b.type === 6).map((b) => b.at) : pcapLayout(bytes);
    const truth = tsharkFrames(file);
    const { res, recs } = await readAll(file, { startOffset: offs[100]!, endOffset: offs[200]!, chunkSize: 8192 });
    t.equal(res.records, 100, `${f}: records`);
    t.same(recs.map((r) => r.epoch), truth.slice(100, 200).map((w) => w.epoch), `${f}: the right ones`);
    t.equal(res.endOffset, offs[200], `${f}: endOffset`);
    t.equal(res.bytes, offs[200]! - offs[100]!, `${f}: bytes`);
    const tail = await readAll(file, { startOffset: offs[offs.length - 3]! });
    t.same(tail.recs.map((r) => r.epoch), truth.slice(-3).map((w) => w.epoch), `${f}: the last three`);
  }
});

t.test('random access: readAt and scanFrom', { skip: noTshark }, async (t) => {
  const file = join(CAPTURES, 'lo_udp_h264.pcap');
  const bytes = readFileSync(file);
  const offs = pcapLayout(bytes);
  const truth = tsharkFrames(file);
  const reader = await CaptureFileReader.open(file);
  t.equal(reader.format, 'pcap');
  for (const i of [0, 1, 500, 878]) {
    const r = await reader.readAt(offs[i]!);
    t.ok(r, `record ${i}`);
    t.equal(epochOf(r!), truth[i]!.epoch, `record ${i}: time`);
    t.equal(r!.capLen, truth[i]!.capLen, `record ${i}: caplen`);
    t.same(Buffer.from(r!.buf.subarray(r!.off, r!.off + r!.capLen)), bytes.subarray(offs[i]! + 16, offs[i]! + 16 + r!.capLen), `record ${i}: bytes`);
    t.equal(r!.fileOffset, offs[i]);
  }
  const big = truth.findIndex((w) => w.capLen > 3000);
  if (big >= 0) t.equal((await reader.readAt(offs[big]!))!.capLen, truth[big]!.capLen, 'a record bigger than the first read');
  t.equal(await reader.readAt(bytes.length), null, 'at the end: null');
  let n = 0;
  const { endOffset } = await reader.scanFrom(offs[10]!, (r) => {
    n++;
    return r.fileOffset < offs[20]!;
  });
  t.equal(n, 11, 'delivered up to and including the refused record');
  t.equal(endOffset, offs[20], 'endOffset is the refused record, so a later scan sees it again');
  const times: string[] = [];
  t.same(await reader.scanFrom(offs[870]!, (r) => void times.push(epochOf(r)), { chunkSize: 4096 }), { endOffset: bytes.length });
  t.same(times, truth.slice(870).map((w) => w.epoch));
  const limited: string[] = [];
  t.same(await reader.scanFrom(offs[5]!, (r) => void limited.push(epochOf(r)), { endOffset: offs[8]! }), { endOffset: offs[8] });
  t.equal(limited.length, 3);
  await reader.close();

  // A torn last record (a segment still being written) is no record, and no error.
  const torn = join(tmp, 'torn.pcap');
  writeFileSync(torn, bytes.subarray(0, offs[300]! + 30));
  const r2 = await CaptureFileReader.open(torn);
  t.equal(await r2.readAt(offs[300]!), null, 'torn record: null');
  t.equal((await r2.readAt(offs[299]!))!.fileOffset, offs[299], 'the one before is whole');
  let m = 0;
  t.same(await r2.scanFrom(offs[290]!, () => void m++), { endOffset: offs[300] });
  t.equal(m, 10);
  await r2.close();
});

// ---------------------------------------------------------------------------------------
// Bad input: an error naming file and offset, every good record before it kept.

const UDP = join(CAPTURES, 'lo_udp_h264.pcap');
const udpBytes = readFileSync(UDP);
const udpOffs = pcapLayout(udpBytes);
const NG = join(CAPTURES, 'lo_dumpcap_udp_h264.pcapng');
const ngBytes = readFileSync(NG);
const ngBlocks = pcapngLayout(ngBytes);

t.test('empty file: CAMTAP_ERR_CAPTURE_EMPTY', async (t) => {
  const file = join(tmp, 'empty.pcap');
  writeFileSync(file, Buffer.alloc(0));
  await expectError(t, readCaptureFile(file, () => t.fail('no record')), 'CAMTAP_ERR_CAPTURE_EMPTY', file, 0);
  await expectError(t, CaptureFileReader.open(file), 'CAMTAP_ERR_CAPTURE_EMPTY', file, 0);
  t.throws(() => new CaptureParser({ file }).end(), { code: 'CAMTAP_ERR_CAPTURE_EMPTY' });
});

t.test('wrong magic: CAMTAP_ERR_CAPTURE_MAGIC with the magic shown', async (t) => {
  const file = join(tmp, 'http.txt');
  writeFileSync(file, 'GET / HTTP/1.1\r\nHost: cam\r\n\r\n');
  const e = await expectError(t, readCaptureFile(file, () => t.fail('no record')), 'CAMTAP_ERR_CAPTURE_MAGIC', file, 0);
  t.match(e?.message, /0x47455420/, 'magic "GET " in hex');
  // Even with resync: there is no format to resync in.
  await expectError(t, readCaptureFile(file, () => {}, { resync: true }), 'CAMTAP_ERR_CAPTURE_MAGIC', file, 0);
});

t.test('a file shorter than its header: truncated file header', async (t) => {
  const file = join(tmp, 'short.pcap');
  writeFileSync(file, udpBytes.subarray(0, 10));
  const e = await expectError(t, readCaptureFile(file, () => {}, { resync: true }), 'CAMTAP_ERR_CAPTURE_TRUNCATED', file, 0);
  t.equal(e?.details.what, 'file header');
  const ng = join(tmp, 'short.pcapng');
  writeFileSync(ng, ngBytes.subarray(0, 40));
  await expectError(t, readCaptureFile(ng, () => {}), 'CAMTAP_ERR_CAPTURE_TRUNCATED', ng, 0);
});

t.test('truncated pcap: CAMTAP_ERR_CAPTURE_TRUNCATED at the torn record, every record before delivered', { skip: noTshark }, async (t) => {
  for (const [k, into] of [
    [100, 16 + 10], // inside the packet data
    [400, 5], // inside the record header
  ] as const) {
    const file = join(tmp, `cut-${k}.pcap`);
    writeFileSync(file, udpBytes.subarray(0, udpOffs[k]! + into));
    const truth = tsharkFrames(file);
    t.equal(truth.length, k, 'tshark reads the good prefix');
    let n = 0;
    const e = await expectError(t, readCaptureFile(file, () => void n++), 'CAMTAP_ERR_CAPTURE_TRUNCATED', file, udpOffs[k]!);
    t.equal(n, truth.length, 'records delivered before the error = what tshark reads');
    t.equal(e?.details.what, into < 16 ? 'record header' : 'record');
    // resync: the error is returned instead, records the same
    const { res, recs } = await readAll(file, { resync: true });
    t.equal(recs.length, k);
    t.equal(res.errors.length, 1);
    t.equal(res.errors[0]!.code, 'CAMTAP_ERR_CAPTURE_TRUNCATED');
    t.equal(res.errors[0]!.details.offset, udpOffs[k]);
  }
});

t.test('truncated pcapng: CAMTAP_ERR_CAPTURE_TRUNCATED at the torn block', { skip: noTshark }, async (t) => {
  const epbs = ngBlocks.filter((b) => b.type === 6);
  const cutAt = epbs[250]!.at + 40;
  const file = join(tmp, 'cut.pcapng');
  writeFileSync(file, ngBytes.subarray(0, cutAt));
  const truth = tsharkFrames(file);
  t.equal(truth.length, 250);
  let n = 0;
  const e = await expectError(t, readCaptureFile(file, () => void n++), 'CAMTAP_ERR_CAPTURE_TRUNCATED', file, epbs[250]!.at);
  t.equal(e?.details.what, 'block');
  t.equal(n, 250);
});

t.test('oversized record: CAMTAP_ERR_CAPTURE_RECORD, every record before delivered', { skip: noTshark }, async (t) => {
  const k = 321;
  const bad = Buffer.from(udpBytes);
  bad.writeUInt32LE(300_000, udpOffs[k]! + 8); // caplen > 262144 = max(snaplen, 262144)
  const file = join(tmp, 'oversized.pcap');
  writeFileSync(file, bad);
  const truth = tsharkFrames(file);
  t.equal(truth.length, k, 'tshark stops there too');
  let n = 0;
  const e = await expectError(t, readCaptureFile(file, () => void n++), 'CAMTAP_ERR_CAPTURE_RECORD', file, udpOffs[k]!);
  t.equal(n, k);
  t.match(e?.message, /300000/, 'says the length');

  const ng = Buffer.from(ngBytes);
  const epbs = ngBlocks.filter((b) => b.type === 6);
  ng.writeUInt32LE(0x10000000, epbs[77]!.at + 4); // a 256 MiB block
  const ngFile = join(tmp, 'oversized.pcapng');
  writeFileSync(ngFile, ng);
  let m = 0;
  await expectError(t, readCaptureFile(ngFile, () => void m++), 'CAMTAP_ERR_CAPTURE_RECORD', ngFile, epbs[77]!.at);
  t.equal(m, 77);
  t.equal(tsharkFrames(ngFile).length, 77, 'tshark agrees');
});

t.test('garbage in the middle of a pcap: error at its offset; with resync, skipped to the next record', { skip: noTshark }, async (t) => {
  const k = 200;
  const start = udpOffs[k]!;
  const len = 1500;
  const bad = Buffer.from(udpBytes);
  garbage(len, 0xc0ffee).copy(bad, start);
  const file = join(tmp, 'garbage.pcap');
  writeFileSync(file, bad);
  t.equal(tsharkFrames(file).length, k, 'tshark reads the good prefix');
  let n = 0;
  await expectError(t, readCaptureFile(file, () => void n++), 'CAMTAP_ERR_CAPTURE_RECORD', file, start);
  t.equal(n, k, 'records before kept');

  // The first record that starts at or after the end of the garbage is the next good one.
  const j = udpOffs.findIndex((o) => o >= start + len);
  const { res, recs } = await readAll(file, { resync: true });
  t.equal(res.errors.length, 1, 'one error for the skipped range');
  const e = res.errors[0]!;
  t.equal(e.code, 'CAMTAP_ERR_CAPTURE_RECORD');
  t.equal(e.details.offset, start);
  t.equal(e.details.length, udpOffs[j]! - start, 'skipped exactly up to the next record');
  t.ok(e.message.includes(file) && e.message.includes(`offset ${start}`));
  t.equal(recs.length, udpOffs.length - (j - k), 'every record outside the damage delivered');
  t.equal(recs[k]!.fileOffset, udpOffs[j], 'resumed at the right record');
  const truth = tsharkFrames(UDP);
  t.same(recs.map((r) => r.epoch), [...truth.slice(0, k), ...truth.slice(j)].map((w) => w.epoch), 'the right records');
});

t.test('garbage inserted between pcap records: resync skips exactly the inserted bytes', async (t) => {
  const k = 500;
  const ins = garbage(777, 42);
  const file = join(tmp, 'inserted.pcap');
  writeFileSync(file, Buffer.concat([udpBytes.subarray(0, udpOffs[k]!), ins, udpBytes.subarray(udpOffs[k]!)]));
  for (const chunkSize of [4096, 1 << 22]) {
    const { res, recs } = await readAll(file, { resync: true, chunkSize });
    t.equal(recs.length, udpOffs.length, `all records (chunk ${chunkSize})`);
    t.same(res.errors.map((e) => [e.details.offset, e.details.length]), [[udpOffs[k], 777]]);
  }
});

t.test('garbage at the end of a pcap with resync: one error to the end of the file', async (t) => {
  const file = join(tmp, 'garbage-tail.pcap');
  writeFileSync(file, Buffer.concat([udpBytes, Buffer.alloc(100, 0xff)]));
  const { res, recs } = await readAll(file, { resync: true });
  t.equal(recs.length, udpOffs.length);
  t.same(res.errors.map((e) => [e.code, e.details.offset, e.details.length]), [['CAMTAP_ERR_CAPTURE_RECORD', udpBytes.length, 100]]);
});

t.test('garbage in the middle of a pcapng: error at the block; with resync, skipped to the next block', { skip: noTshark }, async (t) => {
  const epbs = ngBlocks.filter((b) => b.type === 6);
  const start = epbs[300]!.at;
  const len = 2000;
  const bad = Buffer.from(ngBytes);
  garbage(len, 99).copy(bad, start);
  const file = join(tmp, 'garbage.pcapng');
  writeFileSync(file, bad);
  t.equal(tsharkFrames(file).length, 300, 'tshark reads the good prefix');
  let n = 0;
  await expectError(t, readCaptureFile(file, () => void n++), 'CAMTAP_ERR_CAPTURE_RECORD', file, start);
  t.equal(n, 300);

  const j = epbs.findIndex((b) => b.at >= start + len);
  const { res, recs } = await readAll(file, { resync: true, chunkSize: 1000 });
  t.same(res.errors.map((e) => [e.code, e.details.offset, e.details.length]), [['CAMTAP_ERR_CAPTURE_RECORD', start, epbs[j]!.at - start]]);
  t.equal(recs.length, epbs.length - (j - 300));
  t.same(recs.map((r) => r.fileOffset), [...epbs.slice(0, 300), ...epbs.slice(j)].map((b) => b.at));
});

t.test('the push parser: a fatal error is thrown after the good records, and resync keeps going', async (t) => {
  const bad = Buffer.from(udpBytes);
  bad.writeUInt32LE(0xffffffff, udpOffs[3]! + 8);
  const p = new CaptureParser({ file: 'x.pcap', baseOffset: 0 });
  let n = 0;
  t.throws(() => p.push(bad, () => void n++), { code: 'CAMTAP_ERR_CAPTURE_RECORD', message: `x.pcap: offset ${udpOffs[3]}: bad record header: captured length 4294967295 exceeds 262144` });
  t.equal(n, 3);
  t.equal(p.offset, udpOffs[3]);
  const r = new CaptureParser({ file: 'x.pcap', resync: true });
  let m = 0;
  r.push(bad, () => void m++);
  r.end();
  t.equal(m, udpOffs.length - 1);
  t.same(r.errors.map((e) => [e.details.offset, e.details.length]), [[udpOffs[3], udpOffs[4]! - udpOffs[3]!]]);
});

t.test('abort signal and progress', async (t) => {
  const ac = new AbortController();
  ac.abort();
  await t.rejects(readCaptureFile(UDP, () => {}, { signal: ac.signal }), { code: 'CAMTAP_ERR_INTERRUPTED' });
  const seen: Array<[number, number]> = [];
  await readCaptureFile(UDP, () => {}, { chunkSize: 100_000, onProgress: (a, b) => seen.push([a, b]) });
  t.ok(seen.length >= 4, 'called per chunk');
  t.same(seen.at(-1), [udpBytes.length, udpBytes.length], 'ends at the file size');
  await t.rejects(readCaptureFile(join(tmp, 'missing.pcap'), () => {}), { code: 'CAMTAP_ERR_CAPTURE_OPEN' });
});
