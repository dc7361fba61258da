/**
 * Ground truth from tshark for the application-protocol parser tests: field rows of
 * a fixture capture, and the per-direction TCP payload of a connection. Not a test
 * itself (tap only runs *.test.ts).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const CAPTURES = fileURLToPath(new URL('../../../fixtures/captures/', import.meta.url));

/** Why tshark cannot be used here, or false when it can. For `{ skip: ... }`. */
export const noTshark: string | false = (() => {
  const r = spawnSync('tshark', ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? false : 'tshark is not installed';
})();

/** Base options every manifest was made with (lab README §4). */
export const HEURISTICS = ['-o', 'rtp.heuristic_rtp:TRUE', '-o', 'rtcp.heuristic_rtcp:TRUE'];

/**
 * `tshark -T fields` rows for `filter`, one string array per frame (fields in order;
 * repeated occurrences joined with `|`).
 */
export function tsharkFields(file: string, filter: string, fields: string[], extra: string[] = []): string[][] {
  const args = ['-r', CAPTURES + file, ...HEURISTICS, ...extra, '-Y', filter, '-T', 'fields', '-E', 'occurrence=a', '-E', 'aggregator=|'];
  for (const f of fields) args.push('-e', f);
  const out = execFileSync('tshark', args, { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, stdio: ['ignore', 'pipe', 'ignore'] });
  return out
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => l.split('\t'));
}

/** One TCP segment's payload as `tshark -z follow,tcp,raw` lists it. */
export interface FollowChunk {
  /** 0 = the connection's first sender (node 0), 1 = the other side. */
  dir: 0 | 1;
  data: Buffer;
}

/** The payload of TCP stream `stream`, chunk by chunk as tshark reassembled it. */
export function tsharkFollow(file: string, stream = 0): FollowChunk[] {
  const out = execFileSync('tshark', ['-r', CAPTURES + file, '-q', '-z', `follow,tcp,raw,${stream}`], {
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const chunks: FollowChunk[] = [];
  const lines = out.split('\n');
  let i = lines.findIndex((l) => l.startsWith('Node 1:'));
  for (i++; i < lines.length; i++) {
    const l = lines[i]!;
    if (l.startsWith('=====')) break;
    if (!/^\t?[0-9a-f]+$/.test(l)) continue;
    chunks.push({ dir: l.startsWith('\t') ? 1 : 0, data: Buffer.from(l.trim(), 'hex') });
  }
  return chunks;
}
