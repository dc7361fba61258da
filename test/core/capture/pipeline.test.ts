/**
 * The pipeline as a library: a long live capture does not keep every stream and dialog
 * it ever saw in memory, and a stream that comes back after eviction continues its counts.
 */
import t from 'tap';
import path from 'node:path';
import { readCaptureFile } from '../../../core/wire/capture-file.js';
import { CapturePipeline } from '../../../core/capture/pipeline.js';
import { silentLogger } from '../../../core/logger.js';
import { loadConfig } from '../../../core/config.js';
import { CAPTURES, tempDir } from '../../helpers/camtap.js';
import type { StreamRecord } from '../../../core/contracts/records.js';

t.test('idle, persisted streams leave memory; a stream that comes back continues its counts', async (t) => {
  const { config } = loadConfig({ env: {} });
  const p = new CapturePipeline({ config, log: silentLogger, indexDir: tempDir(t) });
  const file = path.join(CAPTURES, 'lo_udp_h264.pcap');
  const loc = { segment: 1, offset: 0 };
  // The first half of the capture, then (an hour of silence later) the second half.
  const feed = (from: number, to: number, shiftSec: number) => {
    let i = 0;
    return readCaptureFile(file, (r) => {
      if (i >= from && i < to) {
        r.tsSec += shiftSec;
        loc.offset = r.fileOffset;
        p.process(r, loc);
      }
      i++;
    });
  };
  await feed(0, 440, 0);
  p.snapshot(true); // persisted: nothing is dirty now
  t.equal(p.memory.streams, 2, 'camera stream and the NAT punch');
  await feed(440, 1e9, 3600);
  t.equal(p.memory.streams, 1, 'the idle punch stream left memory, the camera stream came back');
  p.finish();
  const cam = p.snapshot(false).streams.find((s) => s.ssrc === 0x28f14659) as StreamRecord;
  // Manifest of the whole capture: 853 packets, seq 16148..17000, none lost.
  t.same([cam.packets, cam.firstSeq, cam.lastSeq, cam.lost, cam.codec, cam.session], [853, 16148, 17000, 0, 'H264', 'erM0yHHC6K0vHcNN']);
});
