/**
 * Disk helpers: how many bytes a camtap data directory holds, by kind, and the page-cache
 * warm-up that makes every tool read the capture from memory.
 */
import { spawnSync } from 'node:child_process';
import { lstatSync, readdirSync } from 'node:fs';
import path from 'node:path';

/** Apparent sizes (st_size, not blocks) of a camtap data directory, by what the bytes are. */
export interface DataDirSize {
  /** `<data>/index/` (per-segment sidecars). */
  index: number;
  /** `<data>/catalog.sqlite` plus its `-wal`/`-shm`/`-journal` files. */
  catalog: number;
  /** pcapng segments the store wrote (`*.pcapng`, `*.pcapng.open`); 0 for an in-place import. */
  segments: number;
  /** Everything else (segment meta JSON, id counter, external-segment registry, ...). */
  other: number;
  total: number;
  /** Bytes per top-level entry, for the JSON report. */
  entries: Record<string, number>;
}

function treeBytes(p: string, onFile?: (file: string, bytes: number) => void): number {
  const st = lstatSync(p);
  if (st.isDirectory()) {
    let n = 0;
    for (const name of readdirSync(p)) n += treeBytes(path.join(p, name), onFile);
    return n;
  }
  if (st.isFile()) {
    onFile?.(p, st.size);
    return st.size;
  }
  return 0;
}

export function dataDirSize(dir: string): DataDirSize {
  const r: DataDirSize = { index: 0, catalog: 0, segments: 0, other: 0, total: 0, entries: {} };
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (name === 'index') {
      r.index += r.entries[name] = treeBytes(p);
      continue;
    }
    if (/^catalog\.sqlite(-wal|-shm|-journal)?$/.test(name)) {
      r.catalog += r.entries[name] = treeBytes(p);
      continue;
    }
    r.entries[name] = treeBytes(p, (file, bytes) => {
      if (/\.pcapng(\.open)?$/.test(file)) r.segments += bytes;
      else r.other += bytes;
    });
  }
  r.total = r.index + r.catalog + r.segments + r.other;
  return r;
}

/** Reads a file once so that the timed runs find it in the page cache. */
export function warmPageCache(file: string): void {
  spawnSync('dd', [`if=${file}`, 'of=/dev/null', 'bs=8M', 'status=none'], { stdio: 'ignore' });
}
