/**
 * The benchmark captures: made once by the lab generator (/work/shared/lab/gen_large.py,
 * 60 cameras, 2 VMSs, the 720p H.264 template) into the bench directory and reused by
 * every script. Same generator arguments and cache files as bench/ingest/run.ts (which
 * keeps its own copy), so whichever script runs first makes the files for both:
 * `big.pcap` (`--target-bytes 1.2G`) and `big4x.pcap` (`4.8G`), each with its
 * `*.truth.json`, and `capinfos` answers cached in `*.capinfos.json`.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { measure, succeeded, type Measurement } from './measure.js';
import { parseCapinfosTable, type CapInfo } from './tool-output.js';

export const LAB = '/work/shared/lab';
export const PYTHON = '/usr/bin/python3';
export const TEMPLATE = `${LAB}/templates/template_720p.pcap`;

export interface Capture {
  label: string;
  file: string;
  truthFile: string;
  bytes: number;
  packets: number;
  durationS: number | null;
  cameras: number;
  generatorCommand: string[];
  generatedNow: boolean;
  generateWallS: number | null;
}

/** The two standard captures: label, base name, seconds per camera before the cut, target size. */
export const STANDARD_CAPTURES = {
  big: { label: '1x', name: 'big', duration: 130, target: '1.2G' },
  // 330 s per camera is about 5 GiB before the cut, so --target-bytes (4x the 1x target) ends it.
  big4x: { label: '4x', name: 'big4x', duration: 330, target: '4.8G' },
} as const;

export function generatorArgs(out: string, truth: string, duration: number, target: string): string[] {
  return [`${LAB}/gen_large.py`, 'build', '--template', TEMPLATE, '--cameras', '60', '--vms', '2', '--duration', String(duration), '--target-bytes', target, '--out', out, '--truth', truth, '--net', '10.77', '--no-udp-checksum'];
}

/** capinfos reads the whole file: its answer is cached beside the capture, keyed by size and mtime. */
export function capInfo(file: string, log: (m: string) => void): CapInfo {
  const st = statSync(file);
  const cache = `${file}.capinfos.json`;
  if (existsSync(cache)) {
    const c = JSON.parse(readFileSync(cache, 'utf8')) as { size: number; mtimeMs: number; info: CapInfo };
    if (c.size === st.size && c.mtimeMs === st.mtimeMs) return c.info;
  }
  log(`capinfos ${path.basename(file)} (once; cached in ${path.basename(cache)})`);
  const r = spawnSync('capinfos', ['-T', '-M', '-c', '-s', '-u', file], { encoding: 'utf8', maxBuffer: 1 << 20 });
  const info = r.status === 0 ? parseCapinfosTable(r.stdout) : null;
  if (!info) throw new Error(`capinfos failed on ${file}: ${r.stderr || r.error}`);
  writeFileSync(cache, JSON.stringify({ size: st.size, mtimeMs: st.mtimeMs, info }));
  return info;
}

/**
 * The capture `name` in `benchDir`, generated when missing (under `.part` names, renamed
 * when complete, so an interrupted run never leaves a short file to reuse). Null when the
 * generator failed; `onFail` gets its measurement.
 */
export async function ensureCapture(benchDir: string, spec: { label: string; name: string; duration: number; target: string }, log: (m: string) => void, onFail: (what: string, m: Measurement) => void): Promise<Capture | null> {
  const file = path.join(benchDir, `${spec.name}.pcap`);
  const truthFile = path.join(benchDir, `${spec.name}.truth.json`);
  const args = generatorArgs(file, truthFile, spec.duration, spec.target);
  let generatedNow = false;
  let generateWallS: number | null = null;
  if (!existsSync(file) || !existsSync(truthFile)) {
    log(`generating ${spec.label} capture ${file} (${spec.target}, 60 cameras)`);
    const m = await measure(PYTHON, generatorArgs(`${file}.part`, `${truthFile}.part`, spec.duration, spec.target), { timeoutMs: 3_600_000 });
    if (!succeeded(m)) {
      onFail(`gen_large.py (${spec.label})`, m);
      return null;
    }
    renameSync(`${truthFile}.part`, truthFile);
    renameSync(`${file}.part`, file);
    generatedNow = true;
    generateWallS = m.wallS;
  } else log(`reusing ${spec.label} capture ${file}`);
  const info = capInfo(file, log);
  const truth = JSON.parse(readFileSync(truthFile, 'utf8')) as { cameras: unknown[] };
  return { label: spec.label, file, truthFile, bytes: info.bytes, packets: info.packets, durationS: info.durationS, cameras: truth.cameras.length, generatorCommand: [PYTHON, ...args], generatedNow, generateWallS };
}
