/**
 * Drop-folder watching for the pcap-file tap: hardware taps, `tcpdump -G`/`-C` and
 * packet brokers write rotated capture files into a folder, and each file must be
 * taken exactly once, and only when its writer is done with it.
 *
 * A file is complete when
 * - no process has it open for writing (Linux: /proc/<pid>/fd + fdinfo flags; skipped
 *   where /proc is missing or other writers are invisible, e.g. over NFS/SMB), and
 * - either a newer matching file has appeared (rotation: the writer moved on) and the
 *   file looked the same in two scans, or its size and mtime have not changed for
 *   `settleMs`.
 *
 * Taken files are remembered by name + size + mtime + inode in a small JSON state file,
 * so a restart does not take them again, while a ring-buffer file rewritten under the
 * same name (`tcpdump -C -W`) is new and is taken again. A file interrupted by close()
 * keeps its resume offset there. Entries for files gone from the folder are dropped.
 *
 * fs.watch is a hint only (it misses events on network and some overlay file systems):
 * a periodic rescan is what guarantees progress.
 */
import { watch, type FSWatcher } from 'node:fs';
import { mkdir, readFile, readdir, readlink, rename, stat, writeFile, copyFile, unlink } from 'node:fs/promises';
import path from 'node:path';

/** The identity of one version of a file in the folder. */
export interface FileIdentity {
  name: string;
  size: number;
  mtimeMs: number;
  ino: number;
}

/** What the state file keeps per taken (or partly taken) file. */
export interface TakenEntry {
  size: number;
  mtimeMs: number;
  ino: number;
  /** True when read to its end; false with `offset` when close() interrupted it. */
  done: boolean;
  /** File offset of the first record not yet delivered (a record start). */
  offset?: number;
}

interface StateFile {
  version: 1;
  files: Record<string, TakenEntry>;
}

/** A complete file ready to be taken, with the offset to resume at (0 = from the start). */
export interface ReadyFile extends FileIdentity {
  path: string;
  resumeAt: number;
}

/** What the watcher remembers between scans about a file it has not taken yet. */
export interface Observation {
  size: number;
  mtimeMs: number;
  ino: number;
  /** When this size/mtime/inode was first seen. */
  since: number;
  /** How many scans have seen it unchanged (1 = only the first). */
  scans: number;
}

/**
 * Default names: `.pcap`, `.pcapng`, `.cap`, `.dmp`, with the numeric suffix
 * `tcpdump -C`/`-W` appends (`x.pcap0`, `x.pcap12`) or a rotation suffix (`x.pcap.1`);
 * `-G` strftime names end in one of those too.
 */
const DEFAULT_MATCH = /\.(?:pcapng|pcap|cap|dmp)\d*(?:\.\d+)?$/i;

/**
 * A name matcher from glob-ish patterns (`*` any run, `?` one character, the rest
 * literal, case-insensitive), or the default extensions when none are given.
 * Hidden files (a leading dot, as editors and rsync write temporaries) never match.
 */
export function nameMatcher(patterns?: string[] | null): (name: string) => boolean {
  if (!patterns || patterns.length === 0) return (n) => !n.startsWith('.') && DEFAULT_MATCH.test(n);
  const res = patterns.map((p) => new RegExp(`^${p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`, 'i'));
  return (n) => !n.startsWith('.') && res.some((r) => r.test(n));
}

/**
 * The pure completeness rule (see the module comment). `files` are the matching files
 * now in the folder and not taken; `seen` the observations updated by this scan;
 * `allMtimes` the mtimes of every matching file (taken or not) for the rotation rule.
 */
export function completeNames(
  files: FileIdentity[],
  seen: ReadonlyMap<string, Observation>,
  allMtimes: number[],
  now: number,
  settleMs: number,
  openForWrite: ReadonlySet<string>,
): string[] {
  const newest = allMtimes.length > 0 ? Math.max(...allMtimes) : -Infinity;
  const out: FileIdentity[] = [];
  for (const f of files) {
    if (openForWrite.has(f.name)) continue;
    const o = seen.get(f.name);
    if (!o) continue;
    const settled = now - o.since >= settleMs;
    const rotated = newest > f.mtimeMs && o.scans >= 2;
    if (settled || rotated) out.push(f);
  }
  out.sort((a, b) => a.mtimeMs - b.mtimeMs || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return out.map((f) => f.name);
}

/**
 * Which of `files` (absolute paths) some process holds open for writing, from
 * /proc/<pid>/fd links and the access mode in /proc/<pid>/fdinfo/<fd>. Empty where
 * /proc is not there. Costs a readlink per open descriptor on the host, so it runs only
 * when a file is about to be taken.
 */
export async function openForWriting(files: string[]): Promise<Set<string>> {
  const wanted = new Set(files);
  const found = new Set<string>();
  if (wanted.size === 0) return found;
  let pids: string[];
  try {
    pids = (await readdir('/proc')).filter((p) => /^\d+$/.test(p));
  } catch {
    return found;
  }
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = await readdir(`/proc/${pid}/fd`);
    } catch {
      continue; // gone, or not ours to see
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = await readlink(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      if (!wanted.has(target)) continue;
      try {
        const info = await readFile(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
        const m = /^flags:\s*([0-7]+)/m.exec(info);
        // O_ACCMODE: 0 read-only, 1 write-only, 2 read-write.
        if (!m || (parseInt(m[1]!, 8) & 3) !== 0) found.add(target);
      } catch {
        found.add(target); // cannot tell: assume a writer
      }
    }
  }
  return found;
}

export interface DropFolderOptions {
  dir: string;
  match: (name: string) => boolean;
  settleMs: number;
  /** Where taken files are remembered; null keeps them in memory only. */
  stateFile: string | null;
  /** Look for writers in /proc before taking a file (Linux). */
  checkOpen: boolean;
}

/** The taken-files memory and the completeness scan of one drop folder. */
export class DropFolder {
  readonly #o: DropFolderOptions;
  #taken = new Map<string, TakenEntry>();
  readonly #seen = new Map<string, Observation>();
  #fsWatcher: FSWatcher | null = null;
  #timer: NodeJS.Timeout | null = null;

  constructor(opts: DropFolderOptions) {
    this.#o = opts;
  }

  /** Loads the taken-files state (a missing or unreadable file starts empty). */
  async load(): Promise<void> {
    if (!this.#o.stateFile) return;
    try {
      const s = JSON.parse(await readFile(this.#o.stateFile, 'utf8')) as StateFile;
      if (s && s.version === 1 && s.files && typeof s.files === 'object') this.#taken = new Map(Object.entries(s.files));
    } catch {
      /* first run */
    }
  }

  async #save(): Promise<void> {
    if (!this.#o.stateFile) return;
    const body: StateFile = { version: 1, files: Object.fromEntries(this.#taken) };
    await mkdir(path.dirname(this.#o.stateFile), { recursive: true });
    const tmp = `${this.#o.stateFile}.${process.pid}.tmp`;
    await writeFile(tmp, JSON.stringify(body, null, 1));
    await rename(tmp, this.#o.stateFile); // atomic: a crash leaves the old or the new state
  }

  /** Is this version of the file taken completely? */
  isDone(f: FileIdentity): boolean {
    const e = this.#taken.get(f.name);
    return !!e && e.done && e.ino === f.ino && e.size === f.size && e.mtimeMs === f.mtimeMs;
  }

  /** Where to resume this version of the file (0 when it was never started). */
  resumeAt(f: FileIdentity): number {
    const e = this.#taken.get(f.name);
    return e && !e.done && e.ino === f.ino && e.size === f.size && e.mtimeMs === f.mtimeMs ? (e.offset ?? 0) : 0;
  }

  /** Records a file as taken (done) or interrupted at `offset`, and saves the state. */
  async mark(f: FileIdentity, done: boolean, offset?: number): Promise<void> {
    const e: TakenEntry = { size: f.size, mtimeMs: f.mtimeMs, ino: f.ino, done };
    if (!done && offset !== undefined) e.offset = offset;
    this.#taken.set(f.name, e);
    this.#seen.delete(f.name);
    await this.#save();
  }

  /** Lists the folder, updates observations and returns the complete files not yet taken, oldest first. */
  async scan(now = Date.now()): Promise<ReadyFile[]> {
    let names: string[];
    try {
      names = (await readdir(this.#o.dir)).filter(this.#o.match);
    } catch {
      return [];
    }
    const present: FileIdentity[] = [];
    for (const name of names) {
      try {
        const st = await stat(path.join(this.#o.dir, name));
        if (st.isFile()) present.push({ name, size: st.size, mtimeMs: st.mtimeMs, ino: st.ino });
      } catch {
        /* vanished between readdir and stat */
      }
    }
    const here = new Set(present.map((f) => f.name));
    let pruned = false;
    for (const name of this.#taken.keys()) {
      if (!here.has(name)) {
        this.#taken.delete(name);
        pruned = true;
      }
    }
    for (const name of this.#seen.keys()) if (!here.has(name)) this.#seen.delete(name);
    if (pruned) await this.#save();

    const pending = present.filter((f) => !this.isDone(f));
    for (const f of pending) {
      const o = this.#seen.get(f.name);
      if (o && o.size === f.size && o.mtimeMs === f.mtimeMs && o.ino === f.ino) o.scans++;
      else this.#seen.set(f.name, { size: f.size, mtimeMs: f.mtimeMs, ino: f.ino, since: now, scans: 1 });
    }
    let ready = completeNames(pending, this.#seen, present.map((f) => f.mtimeMs), now, this.#o.settleMs, new Set());
    if (ready.length > 0 && this.#o.checkOpen) {
      const abs = new Map(ready.map((n) => [path.resolve(this.#o.dir, n), n]));
      const busy = await openForWriting([...abs.keys()]);
      ready = ready.filter((n) => !busy.has(path.resolve(this.#o.dir, n)));
    }
    const byName = new Map(pending.map((f) => [f.name, f]));
    return ready.map((n) => {
      const f = byName.get(n)!;
      return { ...f, path: path.join(this.#o.dir, n), resumeAt: this.resumeAt(f) };
    });
  }

  /** Calls `onChange` on folder events and every `rescanMs`. */
  start(onChange: () => void, rescanMs: number): void {
    try {
      this.#fsWatcher = watch(this.#o.dir, { persistent: false }, () => onChange());
      this.#fsWatcher.on('error', () => {
        this.#fsWatcher?.close();
        this.#fsWatcher = null; // the rescan carries on
      });
    } catch {
      this.#fsWatcher = null;
    }
    this.#timer = setInterval(onChange, rescanMs);
  }

  stop(): void {
    this.#fsWatcher?.close();
    this.#fsWatcher = null;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }
}

/**
 * Moves a taken file into `doneDir` (made if missing), keeping its name, or the name
 * with `.1`, `.2`... when taken. Falls back to copy + unlink across file systems.
 * Returns the new path.
 */
export async function moveToDone(file: string, doneDir: string): Promise<string> {
  await mkdir(doneDir, { recursive: true });
  const base = path.basename(file);
  let target = path.join(doneDir, base);
  for (let i = 1; ; i++) {
    try {
      await stat(target);
      target = path.join(doneDir, `${base}.${i}`);
    } catch {
      break;
    }
  }
  try {
    await rename(file, target);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
    await copyFile(file, target);
    await unlink(file);
  }
  return target;
}
