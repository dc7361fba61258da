/**
 * pcap / pcapng export checked by tshark: the exported file holds exactly the stream's
 * packets as captured (same capture times, sequence numbers, SSRC, in capture order,
 * duplicates and reordering kept), plus the RTSP dialog that set the stream up, and
 * nothing else.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { planReplay } from '../../core/query/plan.js';
import { exportPcap, type ExportOptions } from '../../core/serve/export.js';
import type { ReplayPlan } from '../../core/query/types.js';
import type { ReplayDeps } from '../../core/query/segment-scan.js';
import { CAPTURES, importCaptures, iso, manifest, mediaStreams, noTshark, recordOf, streamFilter, type ManifestStream } from '../core/query/fixture.js';

function tmpDir(t: { teardown(fn: () => void): void }): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'camtap-export-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

async function exportTo(file: string, deps: ReplayDeps, plan: ReplayPlan, opts: ExportOptions) {
  const out = createWriteStream(file);
  const r = await exportPcap(deps, plan, out, opts);
  out.end();
  await once(out, 'finish');
  return r;
}

function tshark(file: string, filter: string, fields: string[]): string[] {
  const args = ['-r', file, '-o', 'rtp.heuristic_rtp:TRUE', '-Y', filter, '-T', 'fields', '-E', 'occurrence=a', '-E', 'aggregator=|'];
  for (const f of fields) args.push('-e', f);
  return execFileSync('tshark', args, { encoding: 'utf8', maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'ignore'] })
    .split('\n')
    .filter((l) => l !== '');
}

/** One row per RTP packet of `ms`: capture time, seq, SSRC (a TCP frame with several RTP PDUs gives several rows). */
function rtpRows(file: string, ms: ManifestStream): string[] {
  const ssrc = ms.ssrc.toLowerCase();
  const rows: string[] = [];
  for (const line of tshark(file, streamFilter(ms), ['frame.time_epoch', 'rtp.seq', 'rtp.ssrc'])) {
    const [time, seqs, ssrcs] = line.split('\t') as [string, string, string];
    const ss = ssrcs.split('|');
    seqs.split('|').forEach((q, i) => {
      if (ss[i]!.toLowerCase() === ssrc) rows.push(`${time} ${q} ${ss[i]}`);
    });
  }
  return rows;
}

/** RTSP request methods in `file` between the session's client and server, in capture order. */
function rtspRequests(file: string, client: string): string[] {
  const i = client.lastIndexOf(':');
  return tshark(file, `rtsp.request && ip.src==${client.slice(0, i)} && tcp.srcport==${client.slice(i + 1)}`, ['rtsp.method']).flatMap((l) => l.split('|'));
}

/** Every frame of `file`. */
function frameCount(file: string): number {
  return tshark(file, 'frame', ['frame.number']).length;
}

const MULTI = 'netns_multi.pcap';
const CAM1 = mediaStreams(manifest(MULTI)).find((s) => s.src === '10.77.0.11:47540' && s.dst === '10.77.0.101:14104')!;

t.test('a UDP stream to pcap: its packets as captured, its dialog, nothing else', { skip: noTshark }, async (t) => {
  const imp = await importCaptures(t, [MULTI]);
  const plan = await planReplay(imp.catalog, { id: recordOf(imp.streams, CAM1)!.id });
  const dir = tmpDir(t);
  const out = path.join(dir, 'cam1.pcap');
  const r = await exportTo(out, imp.deps, plan, { format: 'pcap' });
  const want = rtpRows(path.join(CAPTURES, MULTI), CAM1);
  t.equal(want.length, CAM1.packets, 'tshark: the manifest\'s packets in the original');
  t.same(rtpRows(out, CAM1), want, 'same capture times, seqs and SSRC, same order');
  t.equal(r.packets, CAM1.packets, 'export counts the stream packets');
  const ssrcs = new Set(tshark(out, 'rtp', ['rtp.ssrc']));
  t.same([...ssrcs], [CAM1.ssrc.toLowerCase()], 'no other stream\'s RTP');
  const session = manifest(MULTI).rtsp_sessions.find((s) => s.session_id === CAM1.rtsp_session)!;
  t.same(rtspRequests(out, session.client), session.requests.map((x) => x.method), 'tshark -Y rtsp.request: the dialog\'s requests');
  t.same(rtspRequests(path.join(CAPTURES, MULTI), session.client), session.requests.map((x) => x.method), 'as in the original');
  const dialogFrames = tshark(path.join(CAPTURES, MULTI), `(rtsp.request || rtsp.response) && tcp.stream==${tshark(path.join(CAPTURES, MULTI), `rtsp.session=="${session.session_id}"`, ['tcp.stream'])[0]}`, ['frame.number']).length;
  t.equal(r.dialogPackets, dialogFrames, 'dialog packets = the frames tshark sees carrying the dialog');
  t.equal(frameCount(out), r.packets + r.dialogPackets, 'and nothing else in the file');
});

t.test('duplicates and reordering are kept: the export is what was captured', { skip: noTshark }, async (t) => {
  const file = 'lo_udp_h264_impaired.pcap';
  const [ms] = mediaStreams(manifest(file));
  const imp = await importCaptures(t, [file]);
  const plan = await planReplay(imp.catalog, { id: recordOf(imp.streams, ms!)!.id });
  const out = path.join(tmpDir(t), 'impaired.pcap');
  const r = await exportTo(out, imp.deps, plan, { format: 'pcap', includeDialog: false });
  t.equal(r.packets, ms!.packets, 'packets = manifest packets, duplicates included');
  t.same(rtpRows(out, ms!), rtpRows(path.join(CAPTURES, file), ms!), 'same rows in the same order');
  t.same(tshark(out, 'rtsp', ['frame.number']), [], 'includeDialog false: no RTSP');
});

t.test('RTP interleaved over TCP to pcapng: tshark reassembles every RTP packet', { skip: noTshark }, async (t) => {
  const file = 'lo_tcp_interleaved_h264.pcap';
  const [ms] = mediaStreams(manifest(file));
  const imp = await importCaptures(t, [file]);
  const plan = await planReplay(imp.catalog, { id: recordOf(imp.streams, ms!)!.id });
  const out = path.join(tmpDir(t), 'tcp.pcapng');
  await exportTo(out, imp.deps, plan, { format: 'pcapng' });
  t.equal(execFileSync('capinfos', ['-t', '-M', out], { encoding: 'utf8' }).includes('pcapng'), true, 'capinfos: a pcapng file');
  const want = rtpRows(path.join(CAPTURES, file), ms!);
  t.equal(want.length, ms!.packets);
  t.same(rtpRows(out, ms!), want, 'every RTP packet, same times, in order');
  const session = manifest(file).rtsp_sessions[0]!;
  t.same(rtspRequests(out, session.client), session.requests.map((x) => x.method), 'the dialog\'s requests');
});

t.test('pcapng from camtap\'s own segments (many of them) matches the pcap from the original', { skip: noTshark }, async (t) => {
  const imp = await importCaptures(t, [MULTI], { inPlace: false, tune: (c) => (c.store.maxSegmentBytes = 1 << 16) });
  t.ok(imp.segments.length > 20, `${imp.segments.length} segments`);
  const plan = await planReplay(imp.catalog, { id: recordOf(imp.streams, CAM1)!.id });
  const out = path.join(tmpDir(t), 'cam1.pcapng');
  const r = await exportTo(out, imp.deps, plan, { format: 'pcapng' });
  t.same(rtpRows(out, CAM1), rtpRows(path.join(CAPTURES, MULTI), CAM1), 'same RTP rows');
  const session = manifest(MULTI).rtsp_sessions.find((s) => s.session_id === CAM1.rtsp_session)!;
  t.same(rtspRequests(out, session.client), session.requests.map((x) => x.method), 'the dialog\'s requests');
  t.equal(frameCount(out), r.packets + r.dialogPackets, 'nothing else');
});

t.test('a window exports exactly the packets captured inside it', { skip: noTshark }, async (t) => {
  const imp = await importCaptures(t, [MULTI]);
  const all = rtpRows(path.join(CAPTURES, MULTI), CAM1);
  const times = all.map((r) => r.split(' ')[0]!);
  const ns = (s: string) => BigInt(s.replace('.', '').padEnd(19, '0').slice(0, 19));
  const start = ns(times[400]!) - 1000n;
  const end = ns(times[900]!);
  const plan = await planReplay(imp.catalog, { id: recordOf(imp.streams, CAM1)!.id, start: iso(start), end: iso(end) });
  const out = path.join(tmpDir(t), 'window.pcap');
  const r = await exportTo(out, imp.deps, plan, { format: 'pcap', includeDialog: false });
  const want = all.filter((row) => ns(row.split(' ')[0]!) >= start && ns(row.split(' ')[0]!) <= end);
  t.equal(want.length, 501, 'rows 400..900 of the stream');
  t.same(rtpRows(out, CAM1), want, 'exactly those');
  t.equal(r.packets, 501);
});

t.test('a slow reader gets the same bytes: the export waits for drain', { skip: noTshark }, async (t) => {
  const imp = await importCaptures(t, [MULTI]);
  const plan = await planReplay(imp.catalog, { id: recordOf(imp.streams, CAM1)!.id });
  const chunks: Buffer[] = [];
  let waits = 0;
  const slow = new Writable({
    highWaterMark: 4096,
    write(chunk: Buffer, _enc, cb) {
      chunks.push(Buffer.from(chunk));
      setTimeout(cb, 2);
    },
  });
  slow.on('drain', () => waits++);
  await exportPcap(imp.deps, plan, slow, { format: 'pcap' });
  t.ok(waits > 0, 'the export waited for drain');
  const file = path.join(tmpDir(t), 'slow.pcap');
  writeFileSync(file, Buffer.concat(chunks));
  t.same(rtpRows(file, CAM1), rtpRows(path.join(CAPTURES, MULTI), CAM1), 'a complete, valid file');
});
