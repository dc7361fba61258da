/**
 * Live capture with real peers: GStreamer's RTSP server as the camera, ffmpeg as the VMS,
 * on loopback. camtap captures with its libpcap tap and with its tcpdump tap; the stream
 * shows in `camtap streams` while the capture runs, and when it is done camtap's numbers
 * equal tshark's on an independent tcpdump capture of the same traffic. The independent
 * capture imported with `camtap import` gives the same numbers too (UDP and TCP-interleaved).
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLI, camtap, camtapJson, tempDir } from '../helpers/camtap.js';
import { freePort, have, startCamera, startTcpdump, startVms } from '../helpers/peers.js';
import { tsharkRtpStreams, tsharkRtspSessions } from '../helpers/tshark-truth.js';
import type { SessionRecord, StreamRecord } from '../../core/contracts/records.js';

const missing = ['tcpdump', 'tshark', 'ffmpeg', 'gst-launch-1.0'].filter((c) => !have(c));
const skip = missing.length ? `needs ${missing.join(', ')} (scripts/install-deps.sh installs them)` : false;

for (const driver of ['libpcap', 'tcpdump'] as const) {
  for (const transport of ['udp', 'tcp'] as const) {
    t.test(`${driver} tap, camera -> ffmpeg over ${transport}: stream visible while capturing, counts equal tshark`, { skip }, async (t) => {
      const dir = tempDir(t);
      const data = path.join(dir, 'data');
      const port = await freePort('tcp');
      const cam = await startCamera({ port, bind: '127.0.0.1', codec: 'h264' });
      t.teardown(() => cam.stop());
      const cfg = path.join(dir, 'camtap.yaml');
      const filter = `{ protocols: [rtsp, rtp, rtcp], rtspPorts: [${port}] }`;
      writeFileSync(cfg, `taps:\n  - name: lo\n    driver: ${driver}\n    options: { interface: lo }\n    filter: ${filter}\n`);
      const bpf = `tcp port ${port} or udp`;
      // A big kernel buffer: with --immediate-mode each packet takes a whole snaplen slot, and
      // the ground truth must not drop what camtap's tap kept while other tests load the machine.
      const ref = await startTcpdump({ iface: 'lo', out: path.join(dir, 'ref.pcap'), filter: bpf, extra: ['-B', '65536'] });
      const cap = spawn(process.execPath, [CLI, 'capture', '--config', cfg, '--data', data, '--duration', '16'], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, CAMTAP_LOG_LEVEL: 'info' } });
      let capErr = '';
      cap.stderr.on('data', (d) => (capErr += d));
      const capDone = new Promise<number | null>((r) => cap.on('close', r));
      t.teardown(() => void cap.kill('SIGKILL'));
      // Wait for the tap to be open (a loaded CI machine can take seconds to start camtap),
      // then give tcpdump its second to print 'listening'.
      for (let i = 0; i < 300 && !/libpcap capture started|starting tcpdump/.test(capErr); i++) await sleep(100);
      t.match(capErr, /libpcap capture started|starting tcpdump/, 'the tap opened');
      await sleep(1500);
      const vms = startVms({ url: cam.url, transport, seconds: 8 });
      await sleep(5000);
      const live = await camtapJson<StreamRecord[]>(['streams'], data);
      const during = live.find((s) => s.codec === 'H264' && s.packets > 0);
      t.ok(during, `an H264 stream shows while capturing (${live.length} streams)`);
      await vms.exited;
      await sleep(1000);
      cap.kill('SIGINT');
      t.equal(await capDone, 0, `capture exits 0 ${capErr.split('\n').filter((l) => /error/i.test(l)).join(' ')}`);
      await ref.stop('SIGINT');

      // Other tests may stream on loopback at the same time: take the media of this camera's
      // session (its RTSP connection for TCP, the client port SETUP gave for UDP).
      const ts = tsharkRtspSessions(path.join(dir, 'ref.pcap'), [`tcp.port==${port},rtsp`]);
      const clientPort = /client_port=(\d+)/.exec(ts[0]?.transports[0] ?? '')?.[1];
      const truth = tsharkRtpStreams(path.join(dir, 'ref.pcap'), [`tcp.port==${port},rtsp`]).filter(
        (s) => s.ssrc !== 0 && (transport === 'tcp' ? s.src.endsWith(`:${port}`) : s.dst.endsWith(`:${clientPort}`)),
      );
      t.equal(truth.length, 1, 'tshark sees one media stream of this camera');
      const tr = truth[0]!;
      const check = (streams: StreamRecord[], what: string) => {
        const s = streams.find((x) => x.src === tr.src && x.dst === tr.dst && x.ssrc === tr.ssrc);
        t.ok(s, `${what}: stream ${tr.src} -> ${tr.dst} found`);
        if (!s) return;
        t.same({ transport: s.transport, packets: s.packets, duplicates: s.duplicates, firstSeq: s.firstSeq, lastSeq: s.lastSeq, lost: s.lost }, { transport: tr.transport, packets: tr.unique, duplicates: tr.duplicates, firstSeq: tr.firstSeq, lastSeq: tr.lastSeq, lost: tr.lost }, `${what}: counts equal tshark's`);
        t.equal(s.codec, 'H264', `${what}: codec from the SDP`);
        t.ok(s.keyframes >= 4, `${what}: keyframes found (${s.keyframes})`);
      };
      check(await camtapJson<StreamRecord[]>(['streams'], data), `live ${driver}`);
      const sess = await camtapJson<SessionRecord[]>(['sessions'], data);

      t.same(sess.map((s) => [s.sessionId, s.client, s.server, s.tracks.map((k) => k.transport)]), ts.map((s) => [s.sessionId, s.client, s.server, s.transports]), 'RTSP session, endpoints and transport equal tshark');
      // The independent capture, imported: same result.
      const data2 = path.join(dir, 'data2');
      const imp = await camtap(['import', path.join(dir, 'ref.pcap')], { data: data2 });
      t.equal(imp.code, 0);
      check(await camtapJson<StreamRecord[]>(['streams'], data2), 'imported tcpdump capture');
    });
  }
}
