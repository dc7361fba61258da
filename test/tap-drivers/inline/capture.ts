/**
 * Shared by the inline tap tests (not a test itself): an InlineTap opened on a sink that
 * keeps copies of its frames, a pcapng writer for them (the project's block encoders),
 * real RTSP/RTP bytes from a lab capture, and tshark as the judge.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { InlineTap } from '../../../tap-drivers/inline/index.js';
import { silentLogger } from '../../../core/logger.js';
import { epbSize, idbSize, shbSize, writeEpb, writeIdb, writeShb } from '../../../core/wire/pcapng-writer.js';
import type { TapFrame } from '../../../core/contracts/frame.js';
import type { FilterSpec } from '../../../core/contracts/filter.js';
import type { InlineRecorder } from '../../../core/contracts/inline.js';

export const CAPTURES = fileURLToPath(new URL('../../../fixtures/captures/', import.meta.url));

export const noTshark: string | false = (() => {
  const r = spawnSync('tshark', ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? false : 'tshark is not installed';
})();

/** A copy of one delivered frame. */
export interface Kept {
  tsSec: number;
  tsNsec: number;
  linkType: number;
  tapId: number;
  data: Buffer;
}

export interface OpenTap {
  tap: InlineTap;
  frames: Kept[];
  done: Promise<void>;
}

/** An inline tap opened on a sink that copies every frame (frames are only valid during the call). */
export function openTap(t: { teardown(fn: () => unknown): void }, filter: FilterSpec = {}, id = 7): OpenTap {
  const tap = new InlineTap({ id, name: 'inline', driver: 'inline', filter, options: {} }, { log: silentLogger, options: {}, dataDir: '/nonexistent' });
  const frames: Kept[] = [];
  const ac = new AbortController();
  const done = tap.open((f: TapFrame) => {
    frames.push({ tsSec: f.tsSec, tsNsec: f.tsNsec, linkType: f.linkType, tapId: f.tapId, data: Buffer.from(f.buf.subarray(f.off, f.off + f.capLen)) });
  }, ac.signal);
  t.teardown(() => tap.close());
  return { tap, frames, done };
}

/** A temporary folder removed at teardown. */
export function tempDir(t: { teardown(fn: () => unknown): void }): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'camtap-inline-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** Writes frames as a pcapng file with one LINKTYPE_RAW interface (core/wire/pcapng-writer.ts). */
export function writePcapng(file: string, frames: Kept[]): void {
  const linkType = frames[0]?.linkType ?? 101;
  let size = shbSize() + idbSize('inline');
  for (const f of frames) size += epbSize(f.data.length);
  const buf = Buffer.alloc(size);
  let p = writeShb(buf, 0);
  p = writeIdb(buf, p, linkType, 0, 'inline');
  for (const f of frames) p = writeEpb(buf, p, 0, f.tsSec, f.tsNsec, f.data, 0, f.data.length, f.data.length);
  writeFileSync(file, buf.subarray(0, p));
}

export function tshark(args: string[]): string {
  return execFileSync('tshark', args, { encoding: 'utf8', maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'ignore'] });
}

/** tshark's field output as rows of columns. */
export function tsharkFields(file: string, fields: string[], extra: string[] = []): string[][] {
  const args = ['-r', file, ...extra, '-T', 'fields', '-E', 'occurrence=f'];
  for (const f of fields) args.push('-e', f);
  return tshark(args)
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split('\t'));
}

/**
 * `-z follow,tcp,raw,N`: the bytes of one TCP stream each way, as tshark reassembles
 * them. Lines of the second direction (the server's) are indented by a tab.
 */
export function tsharkFollow(file: string, stream: number, extra: string[] = []): { client: Buffer; server: Buffer } {
  const out = tshark(['-r', file, ...extra, '-q', '-z', `follow,tcp,raw,${stream}`]);
  const client: Buffer[] = [];
  const server: Buffer[] = [];
  let inBody = false;
  for (const line of out.split('\n')) {
    if (line.startsWith('Node 1:')) {
      inBody = true;
      continue;
    }
    if (!inBody || line.startsWith('====')) continue;
    if (line === '') continue;
    if (line.startsWith('\t')) server.push(Buffer.from(line.trim(), 'hex'));
    else client.push(Buffer.from(line.trim(), 'hex'));
  }
  return { client: Buffer.concat(client), server: Buffer.concat(server) };
}

/** One TCP payload of the lab capture, in capture order. */
export interface Write {
  fromClient: boolean;
  data: Buffer;
}

let lab: { writes: Write[]; rtp: Buffer[] } | null = null;

/**
 * The RTSP dialog of fixtures/captures/lo_udp_h264.pcap (OPTIONS, DESCRIBE, SETUP with
 * client_port=12260-12261, PLAY, TEARDOWN) as tshark reads it, one entry per TCP
 * segment with payload, and the camera's first `rtpCount` RTP payloads to 12260.
 */
export function labDialog(rtpCount: number): { writes: Write[]; rtp: Buffer[]; clientPort: number; serverPort: number; rtpSrcPort: number; rtpDstPort: number } {
  if (lab === null) {
    const file = path.join(CAPTURES, 'lo_udp_h264.pcap');
    const writes = tsharkFields(file, ['tcp.srcport', 'tcp.payload'], ['-Y', 'tcp.len > 0']).map(([sport, hex]) => ({ fromClient: sport !== '8554', data: Buffer.from(hex!.replace(/:/g, ''), 'hex') }));
    const rtp = tsharkFields(file, ['udp.payload'], ['-Y', 'udp.srcport == 54872 && udp.dstport == 12260']).map(([hex]) => Buffer.from(hex!.replace(/:/g, ''), 'hex'));
    lab = { writes, rtp };
  }
  return { writes: lab.writes, rtp: lab.rtp.slice(0, rtpCount), clientPort: 45466, serverPort: 8554, rtpSrcPort: 54872, rtpDstPort: 12260 };
}

/** Replays the lab capture's RTSP dialog and `rtpCount` of its RTP datagrams through a recorder. */
export function recordLab(rec: InlineRecorder, v6: boolean, rtspPort: number, rtpCount: number) {
  const lab = labDialog(rtpCount);
  const client = { ip: v6 ? '::1' : '127.0.0.1', port: lab.clientPort };
  const server = { ip: v6 ? '::1' : '127.0.1.11', port: rtspPort };
  const cam = { ip: v6 ? '::1' : '127.0.0.1', port: lab.rtpSrcPort };
  const vms = { ip: v6 ? '::1' : '127.0.0.1', port: lab.rtpDstPort };
  const conn = rec.tcp(client, server);
  let rtpAt = 0;
  for (const w of lab.writes) {
    if (w.fromClient) conn.fromClient(w.data);
    else conn.fromServer(w.data);
    // The media flows between PLAY's answer and TEARDOWN.
    if (!w.fromClient && w.data.toString('latin1').includes('RTP-Info')) {
      for (; rtpAt < lab.rtp.length; rtpAt++) rec.udp(cam, vms, lab.rtp[rtpAt]!);
    }
  }
  conn.close();
  return lab;
}
