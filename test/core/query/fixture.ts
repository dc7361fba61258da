/**
 * Shared by the query and export tests (not a test itself: tap runs *.test.ts only):
 * import lab captures into a temporary data dir through the library (the sources under
 * test, not a possibly stale dist/), and ground truth from tshark: a stream's RTP packets
 * as tshark dissects them, and which access units hold a keyframe, decided from the
 * payload bytes by the payload format RFCs (nothing here uses camtap's parsers).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig, catalogUrl, type Config } from '../../../core/config.js';
import { createCamtap } from '../../../core/container.js';
import { Catalog } from '../../../core/catalog/catalog.js';
import { silentLogger } from '../../../core/logger.js';
import type { SegmentRecord, StreamRecord } from '../../../core/contracts/records.js';
import type { ReplayDeps } from '../../../core/query/segment-scan.js';

export const CAPTURES = fileURLToPath(new URL('../../../fixtures/captures/', import.meta.url));

/** Why tshark cannot be used, or false. */
export const noTshark: string | false = (() => {
  const r = spawnSync('tshark', ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? false : 'tshark is not installed';
})();

import { readManifest, type Manifest, type ManifestStream } from '../../helpers/manifest.js';

export type { Manifest, ManifestSession, ManifestStream } from '../../helpers/manifest.js';

export function manifest(file: string): Manifest {
  return readManifest(file);
}

/** Media streams a camera sends (the NAT-punch packets have SSRC 0 and go the other way). */
export function mediaStreams(m: Manifest): ManifestStream[] {
  return m.rtp_streams.filter((s) => s.ssrc !== '0x00000000' && !(s.direction ?? '').startsWith('client->server'));
}

export interface Imported {
  dataDir: string;
  catalog: Catalog;
  deps: ReplayDeps;
  segments: SegmentRecord[];
  streams: StreamRecord[];
}

/**
 * Imports `files` (names in fixtures/captures) into a new data dir, as `camtap import
 * [--in-place]` does, then opens the catalog for reading. Everything is removed at teardown.
 */
export async function importCaptures(
  t: { teardown(fn: () => unknown): void },
  files: string[],
  opts: { inPlace?: boolean; tune?: (c: Config) => void } = {},
): Promise<Imported> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'camtap-query-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const { config } = loadConfig({ dataDir, env: {} });
  opts.tune?.(config);
  const c = await createCamtap(config, silentLogger, { command: 'test import' });
  try {
    const { ingest, catalog, pipeline } = c.cradle;
    const tapId = await catalog.tapId('import');
    for (const f of files) {
      const r = await ingest.ingestFile(path.join(CAPTURES, f), { tapId, tapName: 'import', inPlace: opts.inPlace ?? true });
      if (r.errors.length > 0) throw r.errors[0];
    }
    pipeline.finish();
    ingest.checkpoint();
    await ingest.drain();
  } finally {
    await c.close();
  }
  const catalog = await Catalog.open({ url: catalogUrl(config), namespace: config.catalog.namespace });
  t.teardown(() => catalog.close());
  const segments = await catalog.listSegments();
  const deps: ReplayDeps = { indexDir: path.join(dataDir, 'index'), segments: (id) => segments.find((s) => s.id === id) };
  return { dataDir, catalog, deps, segments, streams: await catalog.listStreams() };
}

/** The catalog record of a manifest stream. */
export function recordOf(streams: StreamRecord[], ms: ManifestStream): StreamRecord | undefined {
  const ssrc = parseInt(ms.ssrc, 16);
  return streams.find((s) => s.src === ms.src && s.dst === ms.dst && s.ssrc === ssrc && s.transport === ms.transport);
}

export interface TruthPacket {
  frame: number;
  tsNs: bigint;
  seq: number;
  timestamp: number;
  marker: boolean;
  payload: Buffer;
  /** Extended seq (RFC 3550 A.1 unwrapping, first packet + 65536, as the manifest counts). */
  ext: number;
}

/** `1795468003.016946000` -> ns, exactly. */
export function epochNs(s: string): bigint {
  const [sec, frac = ''] = s.split('.') as [string, string?];
  return BigInt(sec) * 1_000_000_000n + BigInt(frac.padEnd(9, '0').slice(0, 9));
}

function hostPort(ep: string): [string, string] {
  const i = ep.lastIndexOf(':');
  return [ep.slice(0, i), ep.slice(i + 1)];
}

/** tshark's display filter for one manifest stream's packets. */
export function streamFilter(ms: ManifestStream): string {
  const [sh, sp] = hostPort(ms.src);
  const [dh, dp] = hostPort(ms.dst);
  const l4 = ms.transport === 'tcp' ? 'tcp' : 'udp';
  return `ip.src==${sh} && ${l4}.srcport==${sp} && ip.dst==${dh} && ${l4}.dstport==${dp} && rtp.ssrc==${ms.ssrc}`;
}

/** The stream's RTP packets in capture order, duplicates included, as tshark dissects `file` (a fixture name or a path). */
export function tsharkStream(file: string, ms: ManifestStream, extra: string[] = []): TruthPacket[] {
  const f = path.isAbsolute(file) ? file : path.join(CAPTURES, file);
  const args = ['-r', f, '-o', 'rtp.heuristic_rtp:TRUE', ...extra, '-Y', streamFilter(ms), '-T', 'fields', '-E', 'occurrence=a', '-E', 'aggregator=|'];
  for (const x of ['frame.number', 'frame.time_epoch', 'rtp.ssrc', 'rtp.seq', 'rtp.timestamp', 'rtp.marker', 'rtp.payload']) args.push('-e', x);
  const out = execFileSync('tshark', args, { encoding: 'utf8', maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'ignore'] });
  const ssrc = parseInt(ms.ssrc, 16);
  const pkts: TruthPacket[] = [];
  let max: number | null = null;
  for (const line of out.split('\n')) {
    if (!line) continue;
    const [frame, time, ssrcs, seqs, tss, markers, payloads] = line.split('\t') as string[];
    const ss = ssrcs!.split('|');
    const qs = seqs!.split('|');
    const ts = tss!.split('|');
    const mk = markers!.split('|');
    const pl = payloads!.split('|');
    ss.forEach((x, i) => {
      if (parseInt(x, 16) !== ssrc) return;
      const seq = Number(qs[i]);
      let ext: number;
      if (max === null) ext = seq + 0x10000;
      else {
        const d = (seq - (max & 0xffff)) & 0xffff;
        ext = d < 0x8000 ? max + d : max - (0x10000 - d);
      }
      max = max === null ? ext : Math.max(max, ext);
      pkts.push({
        frame: Number(frame),
        tsNs: epochNs(time!),
        seq,
        timestamp: Number(ts[i]),
        marker: mk[i] === '1' || mk[i] === 'True',
        payload: Buffer.from((pl[i] ?? '').replace(/:/g, ''), 'hex'),
        ext,
      });
    });
  }
  return pkts;
}

/** H.264 NAL unit types in one RTP payload (RFC 6184 §5.6-5.8: single NAL, STAP-A, FU-A start). */
function h264Types(p: Buffer): number[] {
  if (p.length === 0) return [];
  const t = p[0]! & 0x1f;
  if (t >= 1 && t <= 23) return [t];
  if (t === 24) {
    const out: number[] = [];
    for (let i = 1; i + 2 < p.length; ) {
      const n = p.readUInt16BE(i);
      if (i + 2 < p.length) out.push(p[i + 2]! & 0x1f);
      i += 2 + n;
    }
    return out;
  }
  if (t === 28 && p.length > 1 && p[1]! & 0x80) return [p[1]! & 0x1f];
  return [];
}

/** H.265 NAL unit types in one RTP payload (RFC 7798 §4.4: single NAL, AP 48, FU 49 start). */
function h265Types(p: Buffer): number[] {
  if (p.length < 2) return [];
  const t = (p[0]! >> 1) & 0x3f;
  if (t < 48) return [t];
  if (t === 48) {
    const out: number[] = [];
    for (let i = 2; i + 2 < p.length; ) {
      const n = p.readUInt16BE(i);
      out.push((p[i + 2]! >> 1) & 0x3f);
      i += 2 + n;
    }
    return out;
  }
  if (t === 49 && p.length > 2 && p[2]! & 0x80) return [p[2]! & 0x3f];
  return [];
}

/** Whether an access unit (its packets' payloads) holds a picture a decoder can start from: H.264 IDR (5), H.265 IRAP (16..21), any JPEG frame. */
export function keyframeUnit(codec: string, payloads: Buffer[]): boolean {
  const c = codec.toUpperCase();
  if (c === 'JPEG') return true;
  if (c === 'H264') return payloads.some((p) => h264Types(p).includes(5));
  if (c === 'H265') return payloads.some((p) => h265Types(p).some((x) => x >= 16 && x <= 21));
  return false;
}

export interface TruthUnit {
  timestamp: number;
  /** Unique packets of the unit, in sequence order. */
  packets: TruthPacket[];
  keyframe: boolean;
}

/** Unique packets (first copy of each extended seq) in sequence order. */
export function uniqueInOrder(pkts: TruthPacket[]): TruthPacket[] {
  const seen = new Map<number, TruthPacket>();
  for (const p of pkts) if (!seen.has(p.ext)) seen.set(p.ext, p);
  return [...seen.values()].sort((a, b) => a.ext - b.ext);
}

/** Access units: runs of one RTP timestamp in sequence order. */
export function accessUnits(codec: string, unique: TruthPacket[]): TruthUnit[] {
  const units: TruthUnit[] = [];
  for (const p of unique) {
    const u = units[units.length - 1];
    if (u && u.timestamp === p.timestamp) u.packets.push(p);
    else units.push({ timestamp: p.timestamp, packets: [p], keyframe: false });
  }
  for (const u of units) u.keyframe = keyframeUnit(codec, u.packets.map((p) => p.payload));
  return units;
}

/** ISO 8601 UTC with nine fraction digits for ns since the epoch (computed here, not by the code under test). */
export function iso(ns: bigint): string {
  const sec = ns / 1_000_000_000n;
  const frac = (ns % 1_000_000_000n).toString().padStart(9, '0');
  return `${new Date(Number(sec) * 1000).toISOString().slice(0, 19)}.${frac}Z`;
}
