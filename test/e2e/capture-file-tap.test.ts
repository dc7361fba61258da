/**
 * `camtap capture` with a pcap-file tap (what a hardware tap's drop folder looks like to
 * camtap) and `camtap taps explain`: the filter spec becomes a predicate for the file tap
 * and BPF for live taps; what the tap keeps equals tshark's ground truth.
 */
import t from 'tap';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CAPTURES, camtap, camtapJson, tempDir } from '../helpers/camtap.js';
import type { StreamRecord } from '../../core/contracts/records.js';

const manifest = JSON.parse(readFileSync(path.join(CAPTURES, 'netns_multi.manifest.json'), 'utf8')) as { rtp_streams: Array<{ src: string; dst: string; ssrc: string; unique_packets: number; lost: number }> };

for (const inPlace of [false, true]) {
  t.test(`pcap-file tap${inPlace ? ' in place' : ''}: a filter on one camera keeps exactly its streams`, async (t) => {
    const dir = tempDir(t);
    const drop = path.join(dir, 'drop');
    mkdirSync(drop);
    copyFileSync(path.join(CAPTURES, 'netns_multi.pcap'), path.join(drop, 'netns_multi.pcap'));
    const cfg = path.join(dir, 'camtap.yaml');
    writeFileSync(
      cfg,
      `cameras:\n  - { name: lobby, address: 10.77.0.12 }\ntaps:\n  - name: hw\n    driver: pcap-file\n    options: { paths: [${drop}], inPlace: ${inPlace} }\n    filter: { cameras: [lobby] }\n`,
    );
    const data = path.join(dir, 'data');
    const ex = await camtap(['taps', 'explain', 'hw', '--config', cfg], { data });
    t.equal(ex.code, 0, ex.stderr);
    t.match(ex.stdout, /ip host 10\.77\.0\.12/, 'the camera name is resolved through the inventory');
    const r = await camtap(['capture', '--config', cfg], { data });
    t.equal(r.code, 0, `capture ends when the files are read ${r.stderr}`);
    const streams = await camtapJson<StreamRecord[]>(['streams', '--config', cfg], data);
    const want = manifest.rtp_streams.filter((s) => s.src.startsWith('10.77.0.12:') || s.dst.startsWith('10.77.0.12:'));
    t.equal(streams.length, want.length, 'only the camera\'s streams');
    for (const w of want) {
      const s = streams.find((x) => x.src === w.src && x.dst === w.dst && x.ssrc === parseInt(w.ssrc, 16));
      t.ok(s, `${w.src} -> ${w.dst}`);
      t.same([s?.packets, s?.lost], [w.unique_packets, w.lost], 'counts equal the manifest');
    }
    t.ok(streams.every((s) => s.camera === 'lobby'), 'named by the inventory');
  });
}
