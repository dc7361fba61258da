/**
 * RTCP sender reports give each stream its NTP <-> RTP timestamp mapping (absolute time,
 * RFC 3550 §6.4.1). Ground truth: tshark's RTCP dissection of the same capture.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { CAPTURES, camtap, camtapJson, tempDir } from '../helpers/camtap.js';
import { have } from '../helpers/peers.js';
import type { StreamRecord } from '../../core/contracts/records.js';

const NTP_UNIX_OFFSET = 2208988800;

t.test('the last sender report of each camera stream maps NTP to RTP time', { skip: have('tshark') ? false : 'tshark is the ground truth' }, async (t) => {
  for (const f of ['lo_udp_h264.pcap', 'netns_multi.pcap']) {
    const file = path.join(CAPTURES, f);
    const out = execFileSync('tshark', ['-r', file, '-o', 'rtcp.heuristic_rtcp:TRUE', '-Y', 'rtcp.pt==200 and not icmp', '-T', 'fields', '-E', 'occurrence=f', '-e', 'rtcp.senderssrc', '-e', 'rtcp.timestamp.ntp.msw', '-e', 'rtcp.timestamp.ntp.lsw', '-e', 'rtcp.timestamp.rtp'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const last = new Map<number, { ms: number; rtp: number }>();
    for (const line of out.trim().split('\n').filter(Boolean)) {
      const [ssrc, msw, lsw, rtp] = line.split('\t');
      last.set(parseInt(ssrc!, 16), { ms: (Number(msw) - NTP_UNIX_OFFSET) * 1000 + (Number(lsw) / 2 ** 32) * 1000, rtp: Number(rtp) });
    }
    t.ok(last.size > 0, `${f}: tshark finds sender reports`);
    const data = tempDir(t);
    t.equal((await camtap(['import', '--in-place', file], { data })).code, 0);
    const streams = await camtapJson<StreamRecord[]>(['streams'], data);
    for (const [ssrc, sr] of last) {
      for (const s of streams.filter((x) => x.ssrc === ssrc && x.direction === 'server->client')) {
        t.equal(s.srRtpTs, sr.rtp, `${f} ${s.src} -> ${s.dst}: RTP time of the last SR`);
        t.ok(Math.abs((s.srNtpMs ?? 0) - sr.ms) < 0.001, `${f} ${s.src} -> ${s.dst}: its NTP time (${s.srNtpMs} vs ${sr.ms})`);
      }
    }
  }
});
