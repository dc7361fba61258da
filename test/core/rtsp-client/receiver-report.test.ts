/**
 * The receiver report (RFC 3550 §6.4.2, §A.3) as tshark reads it: the bytes are put in
 * a UDP packet with text2pcap and decoded as RTCP by tshark, which is the ground truth
 * for every field (loss, highest sequence number, jitter, LSR/DLSR, CNAME).
 */
import t, { type Test } from 'tap';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { ReceptionStats } from '../../../core/rtsp-client/receiver-report.js';
import { have, run } from '../../helpers/peers.js';

const skip = have('text2pcap') && have('tshark') ? false : 'text2pcap or tshark is missing';

/** tshark's RTCP fields of one datagram carrying `payload`. */
async function tsharkRtcp(t: Test, payload: Buffer): Promise<Record<string, string>> {
  const dir = t.testdir({});
  const hex = path.join(dir, 'rr.txt');
  const pcap = path.join(dir, 'rr.pcap');
  // text2pcap's hex dump format: an offset, then bytes.
  writeFileSync(hex, `000000 ${[...payload].map((b) => b.toString(16).padStart(2, '0')).join(' ')}\n`);
  const a = await run('text2pcap', ['-q', '-u', '5001,5003', hex, pcap]);
  if (a.code !== 0) throw new Error(a.stderr);
  const fields = ['rtcp.pt', 'rtcp.senderssrc', 'rtcp.ssrc.identifier', 'rtcp.ssrc.fraction', 'rtcp.ssrc.cum_nr', 'rtcp.ssrc.ext_high', 'rtcp.ssrc.jitter', 'rtcp.ssrc.lsr', 'rtcp.ssrc.dlsr', 'rtcp.sdes.text', 'rtcp.length_check'];
  const r = await run('tshark', ['-r', pcap, '-d', 'udp.port==5003,rtcp', '-T', 'fields', '-E', 'separator=|', ...fields.flatMap((f) => ['-e', f])]);
  const values = r.stdout.trim().split('|');
  return Object.fromEntries(fields.map((f, i) => [f, values[i] ?? '']));
}

t.test('ten packets with one lost, an SR echoed 1.5 s later: every field as tshark reads it', { skip }, async (t) => {
  const s = new ReceptionStats(90000);
  // Arrivals exactly on the RTP clock (40 ms = 3600 ticks): no jitter.
  for (let i = 0; i < 10; i++) if (i !== 5) s.onRtp(0xcafe0001, 65530 + i, 1000 + i * 3600, 10_000 + i * 40);
  // An SR from the camera: NTP 0x12345678.9abcdef0 -> LSR = the middle 32 bits 0x56789abc.
  const sr = Buffer.from('80c80006cafe00011234567 89abcdef0000003e8000000090000057e'.replace(/ /g, ''), 'hex');
  s.onRtcp(sr, 20_000);
  const out = Buffer.alloc(300);
  const n = s.writeReport(out, 0x00c0ffee, Buffer.from('cam'), 21_500);
  t.equal(n, 48, '32-byte RR + 16-byte SDES');
  const f = await tsharkRtcp(t, out.subarray(0, n));
  t.equal(f['rtcp.length_check'], '1', 'lengths consistent');
  t.equal(f['rtcp.pt'], '201,202', 'RR then SDES');
  t.equal(f['rtcp.senderssrc'], '0x00c0ffee');
  t.equal(f['rtcp.ssrc.identifier'], '0xcafe0001,0x00c0ffee', 'the camera source reported on; our SSRC in the SDES chunk');
  t.equal(f['rtcp.ssrc.fraction'], String(Math.floor((1 * 256) / 10)), '1 of 10 lost');
  t.equal(f['rtcp.ssrc.cum_nr'], '1');
  // 65530 + 9 wraps to 3: one cycle (RFC 3550 §A.1 extended highest = 65536 + 3).
  t.equal(f['rtcp.ssrc.ext_high'], String(65536 + 3));
  t.equal(f['rtcp.ssrc.jitter'], '0');
  t.equal(f['rtcp.ssrc.lsr'], String(0x56789abc));
  t.equal(f['rtcp.ssrc.dlsr'], String(1.5 * 65536), 'DLSR in 1/65536 s');
  t.equal(f['rtcp.sdes.text'], 'cam');

  // The next report covers only what came since: nothing lost in between.
  for (let i = 10; i < 20; i++) s.onRtp(0xcafe0001, (65530 + i) & 0xffff, 1000 + i * 3600, 10_000 + i * 40);
  const m = s.writeReport(out, 0x00c0ffee, Buffer.from('cam'), 22_000);
  const g = await tsharkRtcp(t, out.subarray(0, m));
  t.equal(g['rtcp.ssrc.fraction'], '0', 'fraction lost is per interval');
  t.equal(g['rtcp.ssrc.cum_nr'], '1', 'cumulative lost is not');
});

t.test('nothing received: no report', async (t) => {
  t.equal(new ReceptionStats(90000).writeReport(Buffer.alloc(300), 1, Buffer.from('x'), 0), 0);
});
