import t, { type Test } from 'tap';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import driver, { meta, type FileResult } from '../../../tap-drivers/pcap-file/index.js';
import type { CaptureRecord } from '../../../core/wire/capture-file.js';
import type { TapFrame } from '../../../core/contracts/frame.js';
import type { CamtapError } from '../../../core/errors.js';
import { silentLogger } from '../../../core/logger.js';
import { have, run } from '../../helpers/peers.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const fx = (name: string) => path.join(root, 'fixtures/captures', name);
const USEC = fx('lo_udp_h264.pcap');
const NSEC = fx('lo_tcp_interleaved_h264_nsec.pcap');
const PCAPNG = fx('lo_dumpcap_udp_h264.pcapng');
const BIG = fx('netns_multi.pcap');

const toolsMissing = ['tshark', 'capinfos'].filter((c) => !have(c));
const skip = toolsMissing.length ? `not installed: ${toolsMissing.join(', ')}` : false;

function tmp(t: Test): string {
  const d = mkdtempSync(path.join(tmpdir(), 'camtap-pcapfile-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** Per frame: "sec.nnnnnnnnn caplen origlen" as tshark reports them (ground truth). */
async function tsharkFrames(file: string): Promise<string[]> {
  const r = await run('tshark', ['-r', file, '-T', 'fields', '-e', 'frame.time_epoch', '-e', 'frame.cap_len', '-e', 'frame.len']);
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [ts, cap, len] = l.split('\t');
      const [s, frac = ''] = ts!.split('.');
      return `${s}.${frac.padEnd(9, '0')} ${cap} ${len}`;
    });
}

async function capinfosCount(file: string): Promise<number> {
  const r = await run('capinfos', ['-c', '-M', file]);
  const m = /Number of packets:\s+(\d+)/.exec(r.stdout);
  if (!m) throw new Error(`capinfos ${file}: ${r.stdout}${r.stderr}`);
  return Number(m[1]);
}

const frameLine = (f: TapFrame) => `${f.tsSec}.${String(f.tsNsec).padStart(9, '0')} ${f.capLen} ${f.origLen}`;

function openTap(options: Record<string, unknown>, opts: { name?: string; dataDir?: string; id?: number } = {}) {
  const lines: string[] = [];
  const files: Array<{ file: string; phase: string; result?: FileResult }> = [];
  const errors: Array<{ file: string; errors: CamtapError[] }> = [];
  const offsets: Array<{ file: string; off: number }> = [];
  let currentFile = '';
  const tap = driver.create(
    {
      id: opts.id ?? 3,
      name: opts.name ?? 'files',
      driver: 'pcap-file',
      filter: {},
      options: {
        ...options,
        onFile: (file: string, phase: 'start' | 'end', result?: FileResult) => {
          files.push({ file, phase, result });
          if (phase === 'start') currentFile = file;
        },
        onFileError: (file: string, errs: CamtapError[]) => errors.push({ file, errors: errs }),
      },
    },
    { log: silentLogger, options: {}, dataDir: opts.dataDir ?? '/nonexistent' },
  );
  const tapIds = new Set<number>();
  const sink = (f: TapFrame) => {
    lines.push(frameLine(f));
    tapIds.add(f.tapId);
    offsets.push({ file: currentFile, off: (f as CaptureRecord).fileOffset });
  };
  return { tap, lines, files, errors, offsets, tapIds, sink };
}

t.test('exports a tap-driver plugin for core ^0.1.0', async (t) => {
  t.match(meta, { name: 'pcap-file', kind: 'tap-driver', core: '^0.1.0' });
  t.equal(driver.translate({ ports: [554] }), '((port 554)) or (vlan and ((port 554)))');
});

t.test('needs paths or a watch folder', async (t) => {
  const ctx = { log: silentLogger, options: {}, dataDir: '/x' };
  t.throws(() => driver.create({ id: 1, name: 'f', driver: 'pcap-file', filter: {}, options: {} }, ctx), { code: 'CAMTAP_ERR_TAP', message: /options.paths .* or options.watch/ });
  t.throws(() => driver.create({ id: 1, name: 'f', driver: 'pcap-file', filter: {}, options: { paths: [3] } }, ctx), { code: 'CAMTAP_ERR_TAP', message: /options.paths/ });
  t.throws(() => driver.create({ id: 1, name: 'f', driver: 'pcap-file', filter: {}, options: { watch: '/x', settleMs: -1 } }, ctx), { code: 'CAMTAP_ERR_TAP', message: /options.settleMs/ });
});

t.test('reads files once with their own timestamps and lengths (pcap µs, pcap ns, pcapng)', { skip }, async (t) => {
  const { tap, lines, files, errors, offsets, tapIds, sink } = openTap({ paths: [USEC, NSEC, PCAPNG] });
  await tap.open(sink, new AbortController().signal);
  const expected = [...(await tsharkFrames(USEC)), ...(await tsharkFrames(NSEC)), ...(await tsharkFrames(PCAPNG))];
  t.equal(lines.length, expected.length, `${expected.length} frames`);
  t.same(lines, expected, 'every frame has tshark’s time, captured and original length');
  t.same([...tapIds], [3]);
  t.same(errors, []);
  t.same(
    files.map((f) => [path.basename(f.file), f.phase, f.result?.records]),
    [
      ['lo_udp_h264.pcap', 'start', undefined],
      ['lo_udp_h264.pcap', 'end', await capinfosCount(USEC)],
      ['lo_tcp_interleaved_h264_nsec.pcap', 'start', undefined],
      ['lo_tcp_interleaved_h264_nsec.pcap', 'end', await capinfosCount(NSEC)],
      ['lo_dumpcap_udp_h264.pcapng', 'start', undefined],
      ['lo_dumpcap_udp_h264.pcapng', 'end', await capinfosCount(PCAPNG)],
    ],
  );
  // pcap: a 24-byte file header, then records of 16 + caplen (draft-ietf-opsawg-pcap §4, §5).
  const usec = offsets.filter((o) => o.file === USEC).map((o) => o.off);
  const caplens = (await tsharkFrames(USEC)).map((l) => Number(l.split(' ')[1]));
  const want: number[] = [];
  let off = 24;
  for (const c of caplens) {
    want.push(off);
    off += 16 + c;
  }
  t.same(usec, want, 'frames carry the file offset of their record');
  t.match(tap.status(), { state: 'stopped', packets: expected.length, drops: null });
});

t.test('a folder in paths gives its capture files, oldest first', { skip }, async (t) => {
  const dir = tmp(t);
  copyFileSync(USEC, path.join(dir, 'b.pcap'));
  copyFileSync(PCAPNG, path.join(dir, 'a.pcapng'));
  writeFileSync(path.join(dir, 'notes.txt'), 'not a capture');
  writeFileSync(path.join(dir, '.hidden.pcap'), 'partial');
  utimesSync(path.join(dir, 'b.pcap'), 1000, 1000);
  utimesSync(path.join(dir, 'a.pcapng'), 2000, 2000);
  const { tap, files, errors, sink, lines } = openTap({ paths: [dir] });
  await tap.open(sink, new AbortController().signal);
  t.same(
    files.filter((f) => f.phase === 'end').map((f) => path.basename(f.file)),
    ['b.pcap', 'a.pcapng'],
  );
  t.same(errors, []);
  t.equal(lines.length, (await capinfosCount(USEC)) + (await capinfosCount(PCAPNG)));
});

t.test('bad files are reported by name and offset, and the good ones still read', { skip }, async (t) => {
  const dir = tmp(t);
  // Cut lo_udp_h264.pcap inside its 11th record.
  const caplens = (await tsharkFrames(USEC)).map((l) => Number(l.split(' ')[1]));
  let off = 24;
  for (let i = 0; i < 10; i++) off += 16 + caplens[i]!;
  const cut = off + 16 + 5;
  writeFileSync(path.join(dir, 'torn.pcap'), readFileSync(USEC).subarray(0, cut));
  writeFileSync(path.join(dir, 'junk.pcap'), Buffer.from('this is not a capture file at all'));
  const { tap, files, errors, sink, lines } = openTap({ paths: [path.join(dir, 'torn.pcap'), path.join(dir, 'junk.pcap'), path.join(dir, 'missing.pcap'), USEC] });
  await tap.open(sink, new AbortController().signal);
  t.equal(lines.length, 10 + caplens.length, 'the 10 whole records before the cut, then the good file');
  t.same(
    errors.map((e) => [path.basename(e.file), e.errors.map((x) => x.code)]),
    [
      ['torn.pcap', ['CAMTAP_ERR_CAPTURE_TRUNCATED']],
      ['junk.pcap', ['CAMTAP_ERR_CAPTURE_MAGIC']],
      ['missing.pcap', ['CAMTAP_ERR_CAPTURE_OPEN']],
    ],
  );
  t.match(errors[0]!.errors[0]!.message, new RegExp(`torn.pcap: offset ${off}`), 'the error names the file and the torn record’s offset');
  t.match(tap.status(), { state: 'stopped', error: /missing.pcap/ });
  t.equal(files.filter((f) => f.phase === 'end').length, 4, 'every file ends, bad or not');
});

t.test('close() during a file stops between reads and open() resolves', { skip }, async (t) => {
  const { tap, lines, sink } = openTap({ paths: [BIG], chunkKiB: 64 });
  const opened = tap.open((f) => {
    sink(f);
    if (lines.length === 100) void tap.close();
  }, new AbortController().signal);
  await opened;
  await tap.close();
  t.ok(lines.length >= 100 && lines.length < (await capinfosCount(BIG)), `stopped early (${lines.length} frames)`);
  t.equal(tap.status().state, 'stopped');
});
