/**
 * exportMedia's failure paths: ffmpeg failing (its stderr in the error, no half file
 * left), an abort in the middle of the replay (ffmpeg killed, CAMTAP_ERR_INTERRUPTED),
 * and planning errors before ffmpeg ever runs. The happy path is judged by ffprobe in
 * test/e2e/export-media.test.ts.
 */
import t from 'tap';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { exportMedia, ffmpegArgs } from '../../../core/serve/export-media.js';
import { CatalogReplaySource } from '../../../core/serve/replay-source.js';
import type { ReplaySource } from '../../../core/serve/rtsp-server.js';
import { have } from '../../helpers/peers.js';
import { importCaptures } from '../query/fixture.js';

function tmp(t: { teardown(fn: () => void): void }): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'camtap-media-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** A stand-in for ffmpeg: writes `lines` to stderr (and touches `marker`), exits `code`. */
function fakeFfmpeg(dir: string, lines: string[], code: number, marker: string): string {
  const f = path.join(dir, 'fake-ffmpeg');
  writeFileSync(f, `#!/bin/sh\ntouch '${marker}'\n${lines.map((l) => `echo '${l}' >&2`).join('\n')}\nexit ${code}\n`);
  chmodSync(f, 0o755);
  return f;
}

t.test('ffmpeg arguments: RTSP over TCP, video copied, faststart file or fragmented pipe, file: names', async (t) => {
  const url = 'rtsp://127.0.0.1:5554/replay/s1?speed=max';
  const file = ffmpegArgs(url, 'mp4', 'file', '/tmp/x.mp4');
  t.same(file.slice(0, 8), ['-nostdin', '-hide_banner', '-v', 'error', '-rtsp_transport', 'tcp', '-i', url]);
  t.same(file.slice(-6), ['-movflags', '+faststart', '-f', 'mp4', '-y', 'file:/tmp/x.mp4']);
  t.ok(file.includes('-copyts'), 'RTP-derived timestamps kept');
  t.same(ffmpegArgs(url, 'mp4', 'pipe').slice(-5), ['-movflags', 'frag_keyframe+empty_moov+default_base_moof', '-f', 'mp4', 'pipe:1']);
  t.same(ffmpegArgs(url, 'mkv', 'file', 'pipe:1').slice(-3), ['matroska', '-y', `file:${path.resolve('pipe:1')}`], 'a file named like a protocol stays a file');
});

t.test('ffmpeg failing: CAMTAP_ERR_TOOL_FAILED with the end of its stderr, the old file untouched, no partial file', async (t) => {
  const imp = await importCaptures(t, ['lo_udp_h265.pcap']);
  const dir = tmp(t);
  const marker = path.join(dir, 'ran');
  const bin = fakeFfmpeg(dir, ['line 1', 'Could not write header for output file #0', 'Invalid argument'], 1, marker);
  const out = path.join(dir, 'x.mp4');
  writeFileSync(out, 'old');
  const source = new CatalogReplaySource({ catalog: imp.catalog, indexDir: path.join(imp.dataDir, 'index') });
  await t.rejects(exportMedia({ source, path: `/replay/${imp.streams.find((s) => s.codec === 'H265')!.id}`, query: new URLSearchParams(), format: 'mp4', out, ffmpeg: bin }), {
    code: 'CAMTAP_ERR_TOOL_FAILED',
    message: /exit 1.*Could not write header for output file #0 \| Invalid argument/,
  });
  t.ok(existsSync(marker), 'ffmpeg ran');
  t.equal(readFileSync(out, 'utf8'), 'old', 'a file already there is left as it was');
  t.same(readdirSync(dir).sort(), ['fake-ffmpeg', 'ran', 'x.mp4'], 'no partial file left beside it');
});

t.test('an unknown stream or a range outside the recording fails before ffmpeg runs', async (t) => {
  const imp = await importCaptures(t, ['lo_udp_h265.pcap']);
  const dir = tmp(t);
  const marker = path.join(dir, 'ran');
  const bin = fakeFfmpeg(dir, [], 0, marker);
  const source = new CatalogReplaySource({ catalog: imp.catalog, indexDir: path.join(imp.dataDir, 'index') });
  const id = imp.streams.find((s) => s.codec === 'H265')!.id;
  await t.rejects(exportMedia({ source, path: '/replay/s000000000000', query: new URLSearchParams(), format: 'mkv', out: path.join(dir, 'a.mkv'), ffmpeg: bin }), { code: 'CAMTAP_ERR_NOT_FOUND' });
  await t.rejects(exportMedia({ source, path: `/replay/${id}`, query: new URLSearchParams({ start: '2035-01-01T00:00:00Z' }), format: 'mkv', out: path.join(dir, 'b.mkv'), ffmpeg: bin }), { code: 'CAMTAP_ERR_RANGE' });
  t.notOk(existsSync(marker), 'ffmpeg never started');
});

t.test('an abort in the middle of the replay kills ffmpeg: CAMTAP_ERR_INTERRUPTED, no partial file left', { skip: have('ffmpeg') ? false : 'needs ffmpeg' }, async (t) => {
  const imp = await importCaptures(t, ['lo_udp_h265.pcap']);
  const dir = tmp(t);
  const inner = new CatalogReplaySource({ catalog: imp.catalog, indexDir: path.join(imp.dataDir, 'index') });
  const ac = new AbortController();
  let sent = 0;
  // Aborts once ffmpeg has been sent 100 packets: the export is surely under way.
  const source: ReplaySource = {
    plan: (p, q, r) => inner.plan(p, q, r),
    packets: (plan, o) => ({
      async *[Symbol.asyncIterator]() {
        for await (const p of inner.packets(plan, o)) {
          if (++sent === 100) ac.abort();
          yield p;
        }
      },
    }),
  };
  const out = path.join(dir, 'x.mkv');
  const id = imp.streams.find((s) => s.codec === 'H265')!.id;
  await t.rejects(exportMedia({ source, path: `/replay/${id}`, query: new URLSearchParams(), format: 'mkv', out, signal: ac.signal }), { code: 'CAMTAP_ERR_INTERRUPTED' });
  t.ok(sent >= 100, 'the replay was under way');
  t.notOk(existsSync(out), 'no file');
  t.same(readdirSync(dir), [], 'and no partial file');
});
