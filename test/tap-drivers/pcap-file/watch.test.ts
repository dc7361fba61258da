import t, { type Test } from 'tap';
import { closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import driver, { takenStatePath, type FileResult } from '../../../tap-drivers/pcap-file/index.js';
import { completeNames, nameMatcher, openForWriting, type FileIdentity, type Observation } from '../../../tap-drivers/pcap-file/watch.js';
import type { TapFrame } from '../../../core/contracts/frame.js';
import type { CamtapError } from '../../../core/errors.js';
import { silentLogger } from '../../../core/logger.js';
import { freePort, have, run, startTcpdump } from '../../helpers/peers.js';
import { sendUdp, sleep, until } from '../live-udp.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const USEC = path.join(root, 'fixtures/captures/lo_udp_h264.pcap');
const PCAPNG = path.join(root, 'fixtures/captures/lo_dumpcap_udp_h264.pcapng');
const BIG = path.join(root, 'fixtures/captures/netns_multi.pcap');

const toolsMissing = ['tshark', 'capinfos', 'tcpdump'].filter((c) => !have(c));
const skip = toolsMissing.length ? `not installed: ${toolsMissing.join(', ')}` : false;

function tmp(t: Test): string {
  const d = mkdtempSync(path.join(tmpdir(), 'camtap-watch-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

async function capinfosCount(file: string): Promise<number> {
  const r = await run('capinfos', ['-c', '-M', file]);
  const m = /Number of packets:\s+(\d+)/.exec(r.stdout);
  if (!m) throw new Error(`capinfos ${file}: ${r.stdout}${r.stderr}`);
  return Number(m[1]);
}

async function tsharkLines(file: string): Promise<string[]> {
  const r = await run('tshark', ['-r', file, '-T', 'fields', '-e', 'frame.time_epoch', '-e', 'frame.cap_len']);
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [ts, cap] = l.split('\t');
      const [s, frac = ''] = ts!.split('.');
      return `${s}.${frac.padEnd(9, '0')} ${cap}`;
    });
}

/** A watch tap with recorders for frames, file events and errors. */
function watchTap(t: Test, options: Record<string, unknown>, dataDir: string, onFrame?: (n: number) => void) {
  const frames: string[] = [];
  const started: string[] = [];
  const ended: Array<{ file: string; result: FileResult }> = [];
  const errors: Array<{ file: string; errors: CamtapError[] }> = [];
  const tap = driver.create(
    {
      id: 4,
      name: 'drop',
      driver: 'pcap-file',
      filter: {},
      options: {
        settleMs: 500,
        rescanMs: 50,
        ...options,
        onFile: (file: string, phase: 'start' | 'end', result?: FileResult) => {
          if (phase === 'start') started.push(path.basename(file));
          else ended.push({ file: path.basename(file), result: result! });
        },
        onFileError: (file: string, errs: CamtapError[]) => errors.push({ file: path.basename(file), errors: errs }),
      },
    },
    { log: silentLogger, options: {}, dataDir },
  );
  const sink = (f: TapFrame) => {
    frames.push(`${f.tsSec}.${String(f.tsNsec).padStart(9, '0')} ${f.capLen}`);
    onFrame?.(frames.length);
  };
  const opened = tap.open(sink, new AbortController().signal);
  t.teardown(() => tap.close());
  return { tap, frames, started, ended, errors, opened };
}

t.test('default names: capture extensions and tcpdump rotation suffixes', async (t) => {
  const m = nameMatcher();
  for (const n of ['x.pcap', 'x.pcapng', 'X.CAP', 'x.dmp', 'x.pcap0', 'x.pcap12', 'x.pcap.1', 'dump-20260101.pcap', 'dump-1795473017.pcap']) t.ok(m(n), n);
  for (const n of ['x.pcap.tmp', '.x.pcap', 'x.txt', 'x.pcapng.gz', 'pcap']) t.notOk(m(n), n);
  const p = nameMatcher(['*.dmp', 'cap-??.bin']);
  t.ok(p('a.dmp'));
  t.ok(p('CAP-01.bin'));
  t.notOk(p('cap-001.bin'));
  t.notOk(p('a.pcap'));
});

t.test('completeness: settled, or rotated and seen unchanged twice, and never while open for writing', async (t) => {
  const f = (name: string, mtimeMs: number): FileIdentity => ({ name, size: 100, mtimeMs, ino: 1 });
  const o = (since: number, scans: number): Observation => ({ size: 100, mtimeMs: 0, ino: 1, since, scans });
  const files = [f('b.pcap', 2000), f('a.pcap', 1000), f('c.pcap', 3000)];
  const seen = new Map([
    ['a.pcap', o(10_000, 2)],
    ['b.pcap', o(10_000, 1)],
    ['c.pcap', o(10_000, 5)],
  ]);
  const mtimes = [1000, 2000, 3000];
  t.same(completeNames(files, seen, mtimes, 10_100, 2000, new Set()), ['a.pcap'], 'a: a newer file exists and two scans agree; b: one scan only; c: newest');
  t.same(completeNames(files, seen, mtimes, 12_000, 2000, new Set()), ['a.pcap', 'b.pcap', 'c.pcap'], 'all settled after settleMs, oldest first');
  t.same(completeNames(files, seen, mtimes, 12_000, 2000, new Set(['b.pcap'])), ['a.pcap', 'c.pcap'], 'not while a writer has it open');
  t.same(completeNames([f('d.pcap', 5)], new Map(), [5], 99_999, 0, new Set()), [], 'never observed: not complete');
});

t.test('finds files that a process holds open for writing, not for reading', async (t) => {
  const dir = tmp(t);
  const w = path.join(dir, 'w.pcap');
  const r = path.join(dir, 'r.pcap');
  writeFileSync(w, 'x');
  writeFileSync(r, 'x');
  const fw = openSync(w, 'a');
  const fr = openSync(r, 'r');
  t.teardown(() => {
    closeSync(fw);
    closeSync(fr);
  });
  const busy = await openForWriting([w, r]);
  if (!existsSync('/proc/self/fdinfo')) {
    t.same([...busy], [], 'no /proc here');
    return;
  }
  t.same([...busy], [w]);
});

t.test('takes every file tcpdump -G rotates into the folder once, and none again after a restart', { skip }, async (t) => {
  const dir = tmp(t);
  const drop = path.join(dir, 'drop');
  const data = path.join(dir, 'data');
  mkdirSync(drop);
  const port = await freePort('udp');
  // A settle time longer than the test: only rotation (a newer file) completes a file.
  const w = watchTap(t, { watch: drop, settleMs: 600_000 }, data);
  // -Z root: the rotated files are created after tcpdump would drop privileges.
  const dump = await startTcpdump({ iface: 'lo', out: path.join(drop, 'dump-%s.pcap'), filter: `udp port ${port}`, extra: ['-G', '1', '-Z', 'root'] });
  const sent = 40;
  for (let i = 0; i < sent / 4; i++) {
    await sendUdp(port, 4);
    await sleep(400); // traffic across 4 s, so tcpdump rotates several times
  }
  const takenWhileRunning = w.ended.length;
  await dump.stop('SIGINT');
  const names = readdirSync(drop).sort();
  t.ok(names.length >= 3, `tcpdump rotated (${names.length} files)`);
  t.ok(takenWhileRunning >= 1 && takenWhileRunning < names.length, `rotated files were taken while tcpdump ran (${takenWhileRunning}), not the one it was writing`);
  // The last file has no successor: a newer file marks it complete.
  const marker = path.join(drop, 'zz-marker.pcap');
  copyFileSync(USEC, marker);
  const future = Date.now() / 1000 + 5;
  utimesSync(marker, future, future); // newest: anything retaken later would be taken before it
  t.ok(await until(() => w.ended.length >= names.length, 30000), 'the tap took every tcpdump file');
  let written = 0;
  for (const n of names) written += await capinfosCount(path.join(drop, n));
  t.equal(written, sent, 'tcpdump wrote every datagram');
  t.equal(w.frames.length, written, 'the tap delivered what tcpdump wrote');
  t.same([...w.started].sort(), names, 'each file started once (the marker still settling)');
  t.same(w.ended.map((e) => e.file).sort(), names, 'each file ended once');
  t.same(w.errors, [], 'no errors');
  const state = JSON.parse(readFileSync(takenStatePath(data, 'drop'), 'utf8')) as { files: Record<string, { done: boolean }> };
  t.same(Object.keys(state.files).sort(), names, 'the state file remembers them');
  await w.tap.close();
  await w.opened;

  // Restart with the same data dir and no settle time: only the marker is new.
  const w2 = watchTap(t, { watch: drop, settleMs: 0 }, data);
  t.ok(await until(() => w2.ended.length >= 1, 30000), 'the new file is taken');
  await w2.tap.close();
  t.same(w2.started, ['zz-marker.pcap'], 'nothing taken twice across the restart');
  t.equal(w2.frames.length, await capinfosCount(USEC));
});

t.test('a file interrupted by close() resumes at the next record after a restart', { skip }, async (t) => {
  const dir = tmp(t);
  const drop = path.join(dir, 'drop');
  const data = path.join(dir, 'data');
  mkdirSync(drop);
  copyFileSync(BIG, path.join(drop, 'big.pcap'));
  let first: ReturnType<typeof watchTap> | null = null;
  first = watchTap(t, { watch: drop, settleMs: 0, chunkKiB: 64 }, data, (n) => {
    if (n === 500) void first!.tap.close();
  });
  await first.opened;
  t.ok(first.frames.length >= 500, `interrupted after ${first.frames.length} frames`);
  t.same(first.ended, [], 'the file did not end');
  const second = watchTap(t, { watch: drop, settleMs: 0, chunkKiB: 64 }, data);
  t.ok(await until(() => second.ended.length === 1, 30000));
  await second.tap.close();
  t.same([...first.frames, ...second.frames], await tsharkLines(BIG), 'every frame once, in order');
  t.equal(second.ended[0]!.result.startOffset > 24, true, 'the second run started mid-file');
});

t.test('doneDir receives taken files; pattern limits what is taken', { skip }, async (t) => {
  const dir = tmp(t);
  const drop = path.join(dir, 'drop');
  const done = path.join(dir, 'done');
  mkdirSync(drop);
  copyFileSync(USEC, path.join(drop, 'a.cap'));
  copyFileSync(PCAPNG, path.join(drop, 'b.pcapng'));
  const w = watchTap(t, { watch: drop, doneDir: done, pattern: '*.cap', settleMs: 0 }, path.join(dir, 'data'));
  t.ok(await until(() => w.ended.length === 1, 30000));
  await w.tap.close();
  t.equal(w.ended[0]!.file, 'a.cap');
  t.equal(w.ended[0]!.result.movedTo, path.join(done, 'a.cap'));
  t.same(readdirSync(done), ['a.cap']);
  t.same(readdirSync(drop), ['b.pcapng'], 'the other file stays');
  t.equal(w.frames.length, await capinfosCount(USEC));
});

t.test('a ring-buffer file rewritten under the same name is taken again', { skip }, async (t) => {
  const dir = tmp(t);
  const drop = path.join(dir, 'drop');
  mkdirSync(drop);
  const ring = path.join(drop, 'ring.pcap0');
  copyFileSync(USEC, ring);
  const w = watchTap(t, { watch: drop, settleMs: 0 }, path.join(dir, 'data'));
  t.ok(await until(() => w.ended.length === 1, 30000));
  writeFileSync(ring, readFileSync(PCAPNG)); // like tcpdump -C -W reopening the file with "w"
  t.ok(await until(() => w.ended.length === 2, 30000));
  await w.tap.close();
  t.same(w.ended.map((e) => e.file), ['ring.pcap0', 'ring.pcap0']);
  t.equal(w.frames.length, (await capinfosCount(USEC)) + (await capinfosCount(PCAPNG)));
});

t.test('a file still open for writing waits, even when it looks settled', { skip: skip || (existsSync('/proc/self/fdinfo') ? false : 'no /proc') }, async (t) => {
  const dir = tmp(t);
  const drop = path.join(dir, 'drop');
  mkdirSync(drop);
  const busy = path.join(drop, 'busy.pcap');
  const free = path.join(drop, 'free.pcap');
  copyFileSync(USEC, busy);
  copyFileSync(USEC, free);
  utimesSync(busy, 1000, 1000); // older: taken first if it were complete
  utimesSync(free, 2000, 2000);
  const fd = openSync(busy, 'a');
  let fdOpen = true;
  t.teardown(() => {
    if (fdOpen) closeSync(fd);
  });
  const w = watchTap(t, { watch: drop, settleMs: 0 }, path.join(dir, 'data'));
  t.ok(await until(() => w.ended.length === 1, 30000));
  t.equal(w.ended[0]!.file, 'free.pcap', 'the open file was skipped');
  closeSync(fd);
  fdOpen = false;
  t.ok(await until(() => w.ended.length === 2, 30000));
  t.equal(w.ended[1]!.file, 'busy.pcap', 'taken once its writer closed it');
  await w.tap.close();
});
