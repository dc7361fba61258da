/**
 * The store's small files beside the segments: names, atomic JSON writes, the per-segment
 * meta cache, the id counter and the external-segment registry. The pcapng segments are
 * the truth; these files only save re-reading them (meta) or record what is not in any
 * segment (external captures, the next id).
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';

/** `seg-00000001`: ids are zero-padded so names sort in id order. */
export function segmentBase(id: number): string {
  return `seg-${String(id).padStart(8, '0')}`;
}

export const SEGMENT_RE = /^seg-(\d+)\.pcapng(\.open)?$/;
export const OPEN_SUFFIX = '.open';

/**
 * Writes a file so that a reader sees the old or the new content, never a mix: temp file
 * in the same directory, fsync, rename over the target (rename is atomic within a file
 * system), then fsync the directory so the rename itself survives a crash.
 */
export function writeFileAtomic(file: string, content: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, content);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  try {
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fsyncDir(path.dirname(file));
}

/**
 * {@link writeFileAtomic} on libuv's thread pool, for the store's background seal work
 * (a small file's fsync can wait for a journal commit behind a big segment's writeback,
 * which must not stall the packet path). With `durable` false there is no fsync: after a
 * crash the file may hold the old content, the new, or (the rename having outlived the
 * data) an empty or zeroed file, never a mix of old and new; enough for a cache whose
 * reader rejects what it cannot parse and falls back to the source.
 */
export async function writeFileAtomicAsync(file: string, content: string, durable = true): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  const fh = await fsp.open(tmp, 'w');
  try {
    await fh.writeFile(content);
    if (durable) await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await fsp.rename(tmp, file);
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw e;
  }
  if (durable) await fsyncDirAsync(path.dirname(file));
}

/** {@link fsyncDir} on the thread pool. */
export async function fsyncDirAsync(dir: string): Promise<void> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(dir, 'r');
    await fh.sync();
  } catch {
    // Some file systems refuse fsync on directories; the rename is still atomic.
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

/** fsync a directory (makes renames and creations durable); ignored where unsupported. */
export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // Some file systems refuse fsync on directories; the rename is still atomic.
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** Segment facts as cached in `seg-N.meta.json` (timestamps as decimal ns strings: JSON has no 64-bit ints). */
export interface SegmentMeta {
  id: number;
  bytes: number;
  packets: number;
  firstTsNs: bigint | null;
  lastTsNs: bigint | null;
}

function nsToJson(v: bigint | null): string | null {
  return v === null ? null : v.toString();
}

function nsFromJson(v: unknown): bigint | null | undefined {
  if (v === null) return null;
  if (typeof v === 'string' && /^-?\d+$/.test(v)) return BigInt(v);
  return undefined;
}

function metaJson(m: SegmentMeta): string {
  return JSON.stringify({ id: m.id, bytes: m.bytes, packets: m.packets, firstTsNs: nsToJson(m.firstTsNs), lastTsNs: nsToJson(m.lastTsNs) }) + '\n';
}

export function writeMeta(file: string, m: SegmentMeta): void {
  writeFileAtomic(file, metaJson(m));
}

/** {@link writeMeta} on the thread pool (the store's background seal); `durable` as for {@link writeFileAtomicAsync}. */
export function writeMetaAsync(file: string, m: SegmentMeta, durable = true): Promise<void> {
  return writeFileAtomicAsync(file, metaJson(m), durable);
}

/** The cached meta, or null when missing or unreadable (the caller derives it from the segment). */
export function readMeta(file: string): SegmentMeta | null {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    return null;
  }
  if (typeof raw !== 'object' || raw === null) return null;
  const o = raw as Record<string, unknown>;
  const first = nsFromJson(o.firstTsNs);
  const last = nsFromJson(o.lastTsNs);
  if (typeof o.id !== 'number' || typeof o.bytes !== 'number' || typeof o.packets !== 'number' || first === undefined || last === undefined) return null;
  return { id: o.id, bytes: o.bytes, packets: o.packets, firstTsNs: first, lastTsNs: last };
}

/** The `next-id` file: the lowest id never handed out. 0 when missing or unreadable. */
export function readNextId(file: string): number {
  try {
    const n = Number.parseInt(fs.readFileSync(file, 'utf8').trim(), 10);
    return Number.isSafeInteger(n) && n > 0 ? n : 0;
  } catch {
    return 0;
  }
}

export function writeNextId(file: string, next: number): void {
  writeFileAtomic(file, `${next}\n`);
}

/** One capture indexed where it lies. */
export interface ExternalEntry {
  id: number;
  path: string;
  format: 'pcap' | 'pcapng';
  bytes: number;
  packets: number;
  firstTsNs: bigint | null;
  lastTsNs: bigint | null;
}

/**
 * Reads `external.json`. Missing = empty registry; unparsable = an error (the caller
 * reports it: silently forgetting registered captures would reuse nothing but lose
 * their segments from every query).
 */
export function readExternal(file: string): ExternalEntry[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const raw = JSON.parse(text) as unknown;
  const list = (raw as { segments?: unknown }).segments;
  if (!Array.isArray(list)) throw new Error('no "segments" array');
  return list.map((x: unknown, i: number) => {
    const o = x as Record<string, unknown>;
    const first = nsFromJson(o.firstTsNs ?? null);
    const last = nsFromJson(o.lastTsNs ?? null);
    if (typeof o.id !== 'number' || typeof o.path !== 'string' || (o.format !== 'pcap' && o.format !== 'pcapng') || typeof o.bytes !== 'number' || first === undefined || last === undefined) {
      throw new Error(`segments[${i}] is malformed`);
    }
    return { id: o.id, path: o.path, format: o.format, bytes: o.bytes, packets: typeof o.packets === 'number' ? o.packets : 0, firstTsNs: first, lastTsNs: last };
  });
}

export function writeExternal(file: string, entries: readonly ExternalEntry[]): void {
  const segments = entries.map((e) => ({ id: e.id, path: e.path, format: e.format, bytes: e.bytes, packets: e.packets, firstTsNs: nsToJson(e.firstTsNs), lastTsNs: nsToJson(e.lastTsNs) }));
  writeFileAtomic(file, JSON.stringify({ version: 1, segments }, null, 1) + '\n');
}
