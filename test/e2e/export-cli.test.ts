/**
 * `camtap export` as a user runs it: the pcap holds exactly the stream's packets and its
 * RTSP dialog (tshark is the judge); an unknown camera is a clear error.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { CAPTURES, camtap, tempDir } from '../helpers/camtap.js';
import { have } from '../helpers/peers.js';

t.test('export a camera stream to pcap and pcapng', { skip: have('tshark') ? false : 'tshark is the judge' }, async (t) => {
  const data = tempDir(t);
  t.equal((await camtap(['import', path.join(CAPTURES, 'netns_multi.pcap')], { data })).code, 0);
  for (const format of ['pcap', 'pcapng']) {
    const out = path.join(data, `cam4.${format}`);
    const r = await camtap(['export', '--camera', '10.77.0.14', '--format', format, '--out', out], { data });
    t.equal(r.code, 0, r.stderr);
    const rtp = execFileSync('tshark', ['-r', out, '-o', 'rtp.heuristic_rtp:TRUE', '-Y', 'rtp and not icmp', '-T', 'fields', '-e', 'rtp.ssrc'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split('\n');
    // netns_multi manifest: cam4 (MJPEG) 10.77.0.14:41828 -> 10.77.0.102:20992, SSRC 0x44C4D52B, 605 packets.
    t.equal(rtp.length, 605, `${format}: the stream's 605 packets`);
    t.ok(rtp.every((s) => s === '0x44c4d52b'), `${format}: only that SSRC`);
    const req = execFileSync('tshark', ['-r', out, '-Y', 'rtsp.request', '-T', 'fields', '-e', 'rtsp.method'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split('\n');
    t.same(req, ['OPTIONS', 'DESCRIBE', 'SETUP', 'PLAY', 'GET_PARAMETER', 'GET_PARAMETER', 'TEARDOWN'], `${format}: the RTSP dialog`);
  }
  const bad = await camtap(['export', '--camera', 'nosuch', '--out', path.join(data, 'x.pcap')], { data });
  t.equal(bad.code, 1);
  t.match(bad.stderr, 'CAMTAP_ERR_NOT_FOUND: stream camera=nosuch not found');
  const range = await camtap(['export', '--camera', '10.77.0.14', '--start', '2026-11-23T21:07:00Z', '--end', '2026-11-23T21:06:00Z', '--out', path.join(data, 'y.pcap')], { data });
  t.equal(range.code, 64);
  t.match(range.stderr, 'CAMTAP_ERR_RANGE');
});
