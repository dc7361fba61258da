import t from 'tap';
import {
  walkRtcp,
  parseSenderReport,
  ntpToUnixMs,
  unixMsToNtp,
  writeSenderReport,
  type RtcpSenderReport,
} from '../../../core/wire/rtcp.js';
import { noTshark, tsharkFields } from './tshark-truth.js';

const newSr = (): RtcpSenderReport => ({ ssrc: 0, ntpSec: 0, ntpFrac: 0, rtpTs: 0, packetCount: 0, octetCount: 0 });

// A GStreamer SR + SDES compound from lo_udp_h264.pcap, frame 18 area (RFC 3550 §6.4.1, §6.5).
const srSdes = Buffer.from(
  '80c8000628f14659eeaf29113e906898255c6ca20000007f0000cde7' +
    '81ca000c28f14659011c757365723430353635323030343840686f73742d323138613664323106094753747265616d6572000000',
  'hex',
);

t.test('walks a compound packet sub-packet by sub-packet', async (t) => {
  const seen: Array<[number, number, number, number]> = [];
  t.ok(walkRtcp(srSdes, 0, srSdes.length, (pt, count, off, len) => seen.push([pt, count, off, len])));
  t.same(seen, [
    [200, 0, 0, 28],
    [202, 1, 28, 52],
  ]);
});

t.test('reports nothing from a compound whose lengths do not add up', async (t) => {
  let calls = 0;
  const cb = () => calls++;
  t.notOk(walkRtcp(srSdes, 0, srSdes.length - 4, cb), 'last sub-packet cut short');
  t.notOk(walkRtcp(Buffer.concat([srSdes, Buffer.from([0x80])]), 0, srSdes.length + 1, cb), 'trailing byte');
  const v1 = Buffer.from(srSdes);
  v1[28] = 0x41; // SDES header with version 1
  t.notOk(walkRtcp(v1, 0, v1.length, cb), 'bad version in the second sub-packet');
  const long = Buffer.from(srSdes);
  long.writeUInt16BE(0xffff, 2);
  t.notOk(walkRtcp(long, 0, long.length, cb), 'length word past the end');
  t.notOk(walkRtcp(srSdes, 0, 3, cb), 'shorter than a header');
  t.notOk(walkRtcp(srSdes, 10, srSdes.length, cb), 'range past the buffer');
  t.equal(calls, 0);
});

t.test('skips sub-packet types outside 200..207 inside a consistent compound', async (t) => {
  const other = Buffer.from('80c00000', 'hex'); // PT 192 (FIR, RFC 2032), 4 bytes
  const b = Buffer.concat([other, srSdes.subarray(0, 28)]);
  const pts: number[] = [];
  t.ok(walkRtcp(b, 0, b.length, (pt) => pts.push(pt)));
  t.same(pts, [200]);
});

t.test('reads the sender info of an SR', async (t) => {
  const sr = newSr();
  t.ok(parseSenderReport(srSdes, 0, 28, sr));
  // Values as tshark 4.0 shows them for this packet.
  t.same(sr, { ssrc: 0x28f14659, ntpSec: 4004456721, ntpFrac: 1049651352, rtpTs: 626814114, packetCount: 127, octetCount: 52711 });
  t.notOk(parseSenderReport(srSdes, 28, 52, sr), 'an SDES is not an SR');
  t.notOk(parseSenderReport(srSdes, 0, 27, sr), 'shorter than the sender info');
  const short = Buffer.from(srSdes.subarray(0, 28));
  short.writeUInt16BE(5, 2);
  t.notOk(parseSenderReport(short, 0, 28, sr), 'length word says less than 28 bytes');
});

t.test('converts NTP time to Unix ms, including NTP era 1 (after Feb 2036)', async (t) => {
  t.equal(ntpToUnixMs(2_208_988_800, 0), 0, 'NTP 2208988800 is the Unix epoch');
  t.equal(ntpToUnixMs(2_208_988_800, 0x8000_0000), 500, 'half a second of fraction');
  t.equal(ntpToUnixMs(0, 0), Date.UTC(2036, 1, 7, 6, 28, 16), 'NTP 0 with the top bit clear is era 1');
  t.equal(ntpToUnixMs(0xffff_ffff, 0), Date.UTC(2036, 1, 7, 6, 28, 15), 'the last second of era 0');
  for (const ms of [0, 1795467935796.298, Date.UTC(2040, 0, 1)]) {
    const n = unixMsToNtp(ms);
    t.ok(Math.abs(ntpToUnixMs(n.ntpSec, n.ntpFrac) - ms) < 1e-6, `round trip ${ms}`);
  }
});

t.test('writes an SR that parses back, in RFC 3550 layout', async (t) => {
  const b = Buffer.alloc(30);
  const sr = { ssrc: 0x28f14659, ntpSec: 4004456721, ntpFrac: 1049651352, rtpTs: 626814114, packetCount: 127, octetCount: 52711 };
  t.equal(writeSenderReport(b, 2, sr), 28);
  t.equal(b.subarray(2).toString('hex'), srSdes.subarray(0, 28).toString('hex'));
  t.equal(writeSenderReport(Buffer.alloc(27), 0, sr), 0, 'does not fit');
});

t.test('every RTCP SR of lo_udp_h264 reads as tshark dissects it', { skip: noTshark }, async (t) => {
  const rows = tsharkFields('lo_udp_h264.pcap', 'rtcp.pt == 200', [
    'udp.payload',
    'rtcp.senderssrc',
    'rtcp.timestamp.ntp.msw',
    'rtcp.timestamp.ntp.lsw',
    'rtcp.timestamp.rtp',
    'rtcp.sender.packetcount',
    'rtcp.sender.octetcount',
    'rtcp.timestamp.ntp',
  ]);
  t.equal(rows.length, 3);
  for (const [hex, ssrc, msw, lsw, rtpTs, pc, oc, date] of rows) {
    const buf = Buffer.from(hex!, 'hex');
    const srs: RtcpSenderReport[] = [];
    t.ok(
      walkRtcp(buf, 0, buf.length, (pt, _count, off, len) => {
        const sr = newSr();
        if (pt === 200 && parseSenderReport(buf, off, len, sr)) srs.push(sr);
      }),
    );
    t.same(srs, [
      { ssrc: Number(ssrc), ntpSec: Number(msw), ntpFrac: Number(lsw), rtpTs: Number(rtpTs), packetCount: Number(pc), octetCount: Number(oc) },
    ]);
    // tshark prints e.g. "Nov 23, 2026 21:05:21.244390999 UTC"
    const m = /^(\w{3}) +(\d+), (\d{4}) (\d\d):(\d\d):(\d\d)\.(\d+) UTC$/.exec(date!)!;
    const month = 'JanFebMarAprMayJunJulAugSepOctNovDec'.indexOf(m[1]!) / 3;
    const want = Date.UTC(Number(m[3]), month, Number(m[2]), Number(m[4]), Number(m[5]), Number(m[6])) + Number(`0.${m[7]}`) * 1000;
    t.ok(Math.abs(ntpToUnixMs(srs[0]!.ntpSec, srs[0]!.ntpFrac) - want) < 0.001, `NTP time ${date}`);
  }
});
