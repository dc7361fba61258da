/**
 * Malformed RTP, RTSP and SDP inside an otherwise good capture: counted, never fatal.
 * The damage is made by hand in a real capture, so the expected counts are known.
 */
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CAPTURES, camtap, camtapJson, tempDir } from '../helpers/camtap.js';
import type { SessionRecord, StreamRecord } from '../../core/contracts/records.js';

const CAMERA_RTP_PORT = 54872; // lo_udp_h264: the camera's RTP source port (manifest)

t.test('a capture with broken RTP headers, a garbled RTSP request and a damaged SDP imports', async (t) => {
  const b = Buffer.from(readFileSync(path.join(CAPTURES, 'lo_udp_h264.pcap')));
  let rtpSeen = 0;
  let broken = 0;
  let rtspBroken = false;
  let sdpBroken = false;
  for (let o = 24; o + 16 <= b.length; ) {
    const len = b.readUInt32LE(o + 8);
    const d = o + 16; // Ethernet + IPv4 (no options in this capture) + UDP/TCP
    const proto = b[d + 23];
    if (proto === 17 && b.readUInt16BE(d + 34) === CAMERA_RTP_PORT && ++rtpSeen % 50 === 0 && broken < 10) {
      b[d + 42] = 0x00; // RTP version 0: not RTP
      broken++;
    }
    if (proto === 6) {
      const payload = d + 14 + 20 + ((b[d + 14 + 20 + 12]! >> 4) * 4);
      const text = b.toString('latin1', payload, d + len);
      if (!rtspBroken && text.startsWith('OPTIONS ')) {
        b.write('\x00\x01garbage', payload, 'latin1');
        rtspBroken = true;
      }
      const f = text.indexOf('a=fmtp:');
      if (!sdpBroken && f >= 0) {
        b.write('a=fmtp:\xff\xfe\x00 junk', payload + f, 'latin1');
        sdpBroken = true;
      }
    }
    o = d + len;
  }
  t.equal(broken, 10, '10 camera RTP packets broken');
  t.ok(rtspBroken && sdpBroken, 'an RTSP request and the SDP garbled');
  const dir = tempDir(t);
  const file = path.join(dir, 'damaged.pcap');
  writeFileSync(file, b);
  const data = path.join(dir, 'data');
  const r = await camtap(['import', '--json', file], { data });
  t.equal(r.code, 0, 'the capture file itself is sound: import exits 0');
  const res = JSON.parse(r.stdout) as { counters: Record<string, number> };
  t.equal(res.counters.rtpMalformed, 10, 'the broken RTP packets are counted');
  t.ok(res.counters.messageErrors! >= 1, 'the garbled RTSP request is counted');
  const streams = await camtapJson<StreamRecord[]>(['streams'], data);
  const cam = streams.find((s) => s.src.endsWith(`:${CAMERA_RTP_PORT}`));
  t.ok(cam, 'the camera stream is still found');
  t.equal(cam?.packets, 853 - 10, 'the other 843 packets (manifest: 853)');
  t.equal(cam?.lost, 10, 'the broken ones are missing from the sequence');
  t.equal(cam?.malformed, 10, 'and attributed to the stream');
  t.equal(cam?.codec, 'H264', 'the codec still comes from the damaged SDP');
  const sessions = await camtapJson<SessionRecord[]>(['sessions'], data);
  t.equal(sessions.length, 1);
  t.same(sessions[0]?.requests.map((x) => x.method), ['DESCRIBE', 'SETUP', 'PLAY', 'TEARDOWN'], 'every request but the garbled OPTIONS');
});
