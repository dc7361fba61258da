import t from 'tap';
import { readFileSync } from 'node:fs';
import { inspectPayload, codecKind, FrameFlags } from '../../../core/wire/codecs.js';
import { CAPTURES, noTshark, tsharkFields } from './tshark-truth.js';

const { FRAME_START: START, KEYFRAME: KEY, PARAMETER_SETS: PSETS } = FrameFlags;
const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const flags = (codec: string, s: string) => inspectPayload(codec, hex(s), 0, hex(s).length);

function manifestStream(name: string, pt: number) {
  const m = JSON.parse(readFileSync(`${CAPTURES}${name}.manifest.json`, 'utf8'));
  return m.rtp_streams.find((s: { payload_types: number[] }) => s.payload_types.includes(pt));
}

/** Distinct RTP timestamps among packets whose flags include `bit`. */
function accessUnitsWith(rows: Array<{ ts: string; f: number }>, bit: number): number {
  return new Set(rows.filter((r) => r.f & bit).map((r) => r.ts)).size;
}

t.test('H.264 packets are flagged as tshark dissects their NAL units (lo_udp_h264)', { skip: noTshark }, async (t) => {
  const rows = tsharkFields(
    'lo_udp_h264.pcap',
    'rtp.p_type == 96',
    ['rtp.seq', 'rtp.timestamp', 'rtp.payload', 'h264.nal_unit_hdr', 'h264.nal_unit_type', 'h264.start.bit', 'h264.first_mb_in_slice'],
    ['-d', 'rtp.pt==96,h264'],
  );
  t.equal(rows.length, manifestStream('lo_udp_h264', 96).packets);
  const got: Array<{ ts: string; f: number }> = [];
  const wrong: string[] = [];
  for (const [seq, ts, payload, outerText, inner, start, firstMb] of rows) {
    const outer = Number(outerText);
    const buf = Buffer.from(payload!, 'hex');
    const f = inspectPayload('H264', buf, 0, buf.length);
    got.push({ ts: ts!, f });
    // What RFC 6184 + H.264 §7.4.1.2.3 say, from tshark's fields:
    const fuStart = outer === 28 && (start === '1' || start === 'True');
    const nal = outer === 28 ? (fuStart ? Number(inner) : -1) : outer;
    let want = 0;
    if (nal === 5) want |= KEY;
    if (nal === 7) want |= KEY | PSETS;
    if (nal === 8) want |= PSETS;
    if ([6, 7, 8, 9].includes(nal) || ((nal === 1 || nal === 5) && firstMb === '0')) want |= START;
    if (f !== want) wrong.push(`seq ${seq}: NAL ${outer}/${inner} start=${start} first_mb=${firstMb}: got ${f}, want ${want}`);
  }
  t.same(wrong.slice(0, 10), [], 'per-packet flags');
  t.equal(accessUnitsWith(got, START), manifestStream('lo_udp_h264', 96).access_units, 'every access unit has a start packet');
  const idrAus = new Set(rows.filter((r) => r[3] === '5' || (r[3] === '28' && r[4] === '5')).map((r) => r[1])).size;
  t.equal(accessUnitsWith(got, KEY), idrAus, 'keyframe access units = access units with an IDR slice');
  t.ok(idrAus > 5, `${idrAus} IDR access units`);
});

t.test('H.265 IRAP access units are keyframes (lo_udp_h265)', { skip: noTshark }, async (t) => {
  const rows = tsharkFields('lo_udp_h265.pcap', 'rtp.p_type == 96', ['rtp.seq', 'rtp.timestamp', 'rtp.payload', 'h265.nal_unit_type', 'h265.start.bit'], [
    '-d',
    'rtp.pt==96,h265',
  ]);
  const stream = manifestStream('lo_udp_h265', 96);
  t.equal(rows.length, stream.packets);
  const got: Array<{ ts: string; f: number }> = [];
  const irapTs = new Set<string>();
  const wrong: string[] = [];
  for (const [seq, ts, payload, types, start] of rows) {
    const buf = Buffer.from(payload!, 'hex');
    const f = inspectPayload('H265', buf, 0, buf.length);
    got.push({ ts: ts!, f });
    const [outer, inner] = types!.split('|').map(Number);
    // tshark 4.0 shows an FU's type masked to 5 bits; IRAP 16..23 survive that.
    const nal = outer === 49 ? (start === '1' || start === 'True' ? inner! : -1) : outer!;
    const irap = nal >= 16 && nal <= 23;
    if (irap) irapTs.add(ts!);
    if (Boolean(f & KEY) !== irap) wrong.push(`seq ${seq}: type ${types} start=${start}: flags ${f}`);
    if (outer! >= 32 && outer! <= 34 && f !== (START | PSETS)) wrong.push(`seq ${seq}: parameter set flags ${f}`);
  }
  t.same(wrong, []);
  t.ok(irapTs.size >= 2, `${irapTs.size} IRAP access units`);
  t.equal(accessUnitsWith(got, KEY), irapTs.size);
  t.equal(accessUnitsWith(got, START), stream.access_units, 'every access unit has a start packet');
});

t.test('every RTP/JPEG frame starts at fragment offset 0 and is a keyframe (lo_udp_mjpeg)', { skip: noTshark }, async (t) => {
  const rows = tsharkFields('lo_udp_mjpeg.pcap', 'rtp.p_type == 26', ['rtp.timestamp', 'rtp.payload', 'jpeg.main_hdr.offset']);
  const stream = manifestStream('lo_udp_mjpeg', 26);
  t.equal(rows.length, stream.packets);
  let starts = 0;
  const wrong: string[] = [];
  for (const [, payload, offset] of rows) {
    const buf = Buffer.from(payload!, 'hex');
    const f = inspectPayload('JPEG', buf, 0, buf.length);
    const want = offset === '0' ? START | KEY : 0;
    if (f !== want) wrong.push(`offset ${offset}: ${f}`);
    if (f & START) starts++;
  }
  t.same(wrong, []);
  t.equal(starts, stream.access_units, 'frames = manifest access units');
});

t.test('H.264 aggregation and fragmentation units (RFC 6184 §5.7, §5.8)', async (t) => {
  // STAP-A: SPS (67 ..), PPS (68 ..), IDR slice with first_mb_in_slice = 0 (65 88 ..)
  t.equal(flags('H264', '18 0003 6742c0 0002 68ce 0003 658884'), START | KEY | PSETS);
  // STAP-B: the same behind a 16-bit DON
  t.equal(flags('H264', '19 0007 0003 6742c0 0002 68ce'), START | KEY | PSETS);
  // STAP-A with a size running past the end: the NAL units before it still count
  t.equal(flags('H264', '18 0002 68ce 00ff 65'), START | PSETS);
  // FU-A start of an IDR slice, first_mb 0 / first_mb != 0 (second slice: ue(v) '010' = 1)
  t.equal(flags('H264', '7c 85 88'), START | KEY);
  t.equal(flags('H264', '7c 85 40'), KEY);
  t.equal(flags('H264', '7c 45 88'), 0, 'end fragment says nothing');
  t.equal(flags('H264', '7c 05 88'), 0, 'middle fragment says nothing');
  // FU-B: DON before the fragment
  t.equal(flags('H264', '7d 81 0001 9a'), START);
  t.equal(flags('H264', '41 9a'), START, 'non-IDR slice, first_mb 0');
  t.equal(flags('H264', '41 5a'), 0, 'non-IDR slice, first_mb > 0');
  t.equal(flags('H264', '09 10'), START, 'access unit delimiter');
  t.equal(flags('H264', '0c ff'), 0, 'filler data');
  t.equal(flags('H264', '1a 00'), 0, 'MTAP16 not inspected');
  t.equal(flags('H264', '7c'), 0, 'FU-A without FU header');
  t.equal(flags('H264', '65'), KEY, 'IDR slice with no slice header byte');
});

t.test('H.265 aggregation and fragmentation units (RFC 7798 §4.4.2, §4.4.3)', async (t) => {
  // AP: VPS (40 01 ..), SPS (42 01 ..), PPS (44 01 ..), IDR_W_RADL (26 01, first slice flag 1)
  t.equal(flags('H265', '6001 0003 40010c 0003 420101 0003 4401c0 0003 2601af'), START | KEY | PSETS);
  // FU start of CRA (21): FU header 0x80|21
  t.equal(flags('H265', '6201 95 ac'), START | KEY);
  t.equal(flags('H265', '6201 95 2c'), KEY, 'not the first slice segment of the picture');
  t.equal(flags('H265', '6201 55 ac'), 0, 'end fragment');
  // FU start of prefix SEI (39): tshark 4.0 would show type 7 here
  t.equal(flags('H265', '6201 a7 05'), START);
  t.equal(flags('H265', '0201 d0'), START, 'TRAIL_R, first slice segment');
  t.equal(flags('H265', '4601 50'), START, 'access unit delimiter');
  t.equal(flags('H265', '62'), 0, 'shorter than the payload header');
  t.equal(flags('H265', '6001 0009 40'), 0, 'AP with a size past the end');
});

t.test('JPEG and MPEG-4 headers; bounds and unknown codecs', async (t) => {
  t.equal(flags('JPEG', '00 000000 01 50 50 2d'), START | KEY);
  t.equal(flags('JPEG', '00 0005c8 01 50 50 2d'), 0);
  t.equal(flags('JPEG', '00 000000 01 50 50'), 0, 'shorter than the main header');
  t.equal(flags('MP4V-ES', '000001b0 01'), START | KEY | PSETS, 'visual object sequence');
  t.equal(flags('MP4V-ES', '000001b6 10'), START | KEY, 'I-VOP');
  t.equal(flags('MP4V-ES', '000001b6 50'), START, 'P-VOP');
  t.equal(flags('MP4V-ES', '12345678'), 0);
  t.equal(flags('h264', '09 10'), START, 'lower-case codec names are matched too');
  t.equal(flags('PCMU', 'ffffffff'), 0);
  const b = hex('7c85880000');
  t.equal(inspectPayload('H264', b, 3, 5), 0, 'range past the buffer');
  t.equal(inspectPayload('H264', b, 0, 0), 0, 'empty');
});

t.test('codec kinds', async (t) => {
  t.same(
    ['H264', 'h264', 'H265', 'HEVC', 'JPEG', 'MP4V-ES', 'PCMA', 'MP2T', null].map(codecKind),
    ['H264', 'H264', 'H265', 'H265', 'JPEG', 'MP4V', 'other', 'other', 'other'],
  );
});
