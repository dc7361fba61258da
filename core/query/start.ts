/**
 * Where a read of a plan begins, from the segments' index sidecars (never by scanning):
 * the segment, the byte offset of a record to read from, the extended sequence number
 * of the stream's packet there (so the reader's unwrapping agrees with the index), and
 * the condition that makes a packet the first one out.
 *
 * Replays start at the keyframe that precedes the range (a decoder can start there):
 * the index entry of the latest keyframe-start packet at or before `startNs`, looked for
 * in the segment holding `startNs` and then in the lookback segments before it. The read
 * begins at an entry before that keyframe's access unit, so the access unit's leading
 * packets (AUD, SEI, parameter sets: same RTP timestamp, no keyframe flag of their own)
 * are seen and output too. When no keyframe precedes the range, the replay starts at the
 * first keyframe inside it; a stream with no keyframes at all (audio, unknown codec)
 * starts at its first packet at or after `startNs`.
 */
import type { SegmentRecord } from '../contracts/records.js';
import { isCamtapError } from '../errors.js';
import { SegmentIndexReader, type IndexEntry } from '../index/segment-index.js';
import type { ReplayPlan } from './types.js';

/** What makes a stream packet the first one out. */
export type StartTarget =
  /** The packet with this extended seq (an indexed keyframe start), preceded by the rest of its access unit. */
  | { kind: 'ext'; ext: number }
  /** The first keyframe-start packet captured at or after `minTsNs`, preceded by the rest of its access unit. */
  | { kind: 'keyframe'; minTsNs: bigint }
  /** The first packet captured at or after `minTsNs`. */
  | { kind: 'time'; minTsNs: bigint };

export interface StartPoint {
  /** Index into `plan.segments`. */
  index: number;
  /** Record offset to read from; null: the segment's first record (no index for it). */
  offset: number | null;
  /** Extended seq of the stream's packet at `offset` as the index has it; null when unknown. */
  seedExt: number | null;
  target: StartTarget;
}

/** Keyframe entries closer than this before the chosen one are taken as the same access unit (SPS then IDR). */
const SAME_AU_NS = 200_000_000n;
const SAME_AU_STEPS = 8;

function nsOf(s: string): bigint {
  return /^\d{1,30}$/.test(s) ? BigInt(s) : 0n;
}

async function openIndex(indexDir: string, seg: SegmentRecord, offsetsOf: string | undefined): Promise<SegmentIndexReader | null> {
  try {
    return await SegmentIndexReader.open(indexDir, seg.id, { offsetsOf });
  } catch (e) {
    // The open segment has no sidecar until it is sealed: it is read from its start.
    if (isCamtapError(e, 'CAMTAP_ERR_INDEX') && !seg.sealed) return null;
    throw e;
  }
}

/** The stream's last entry (capture order) captured at or before `tsNs`, else its first; null when it has none. */
function entryBefore(entries: IndexEntry[], tsNs: bigint): IndexEntry | null {
  let best: IndexEntry | null = null;
  for (const e of entries) if (e.tsNs <= tsNs) best = e;
  return best ?? entries[0] ?? null;
}

/**
 * Where to begin reading `plan` (rules in the file comment). `mode` 'time' skips the
 * keyframe search (an export of exactly the range). Null when the plan has no segments.
 * The index readers it opens are left in `readers` (by position in `plan.segments`), so
 * the read that follows does not open them again; with `preloadOffsets` they have read
 * the stream's per-packet offsets too (for an indexed read).
 * @throws CamtapError CAMTAP_ERR_INDEX when a sealed segment's sidecar is missing or corrupt.
 */
export async function locateStart(
  indexDir: string,
  plan: ReplayPlan,
  mode: 'keyframe' | 'time',
  readers: Map<number, SegmentIndexReader | null> = new Map(),
  opts: { preloadOffsets?: boolean } = {},
): Promise<StartPoint | null> {
  const segs = plan.segments;
  if (segs.length === 0) return null;
  const id = plan.stream.id;
  const startNs = plan.startNs;
  let k = segs.findIndex((g) => !g.sealed || nsOf(g.endNs) >= startNs);
  if (k < 0) k = segs.length - 1;
  const reader = async (i: number) => {
    if (!readers.has(i)) readers.set(i, await openIndex(indexDir, segs[i]!, opts.preloadOffsets ? id : undefined));
    return readers.get(i)!;
  };
  const keyframes = mode === 'keyframe' && plan.stream.keyframes > 0;

  if (keyframes) {
    for (let i = k; i >= 0; i--) {
      if (nsOf(segs[i]!.startNs) > startNs) continue;
      const r = await reader(i);
      if (r === null) continue;
      const e = r.seekKeyframe(id, startNs);
      if (e === null || !e.keyframe || e.tsNs > startNs) continue;
      const entries = r.entries(id);
      const j = entries.findIndex((x) => x.offset === e.offset);
      let j0 = j - 1;
      for (let steps = 0; j0 >= 0 && steps < SAME_AU_STEPS && entries[j0]!.keyframe && e.tsNs - entries[j0]!.tsNs < SAME_AU_NS; steps++) j0--;
      const from = j0 >= 0 ? entries[j0]! : entries[0]!;
      return { index: i, offset: from.offset, seedExt: from.extSeq, target: { kind: 'ext', ext: e.extSeq } };
    }
  }

  const target: StartTarget = keyframes ? { kind: 'keyframe', minTsNs: startNs } : { kind: 'time', minTsNs: startNs };
  const r = await reader(k);
  const from = r === null ? null : entryBefore(r.entries(id), startNs);
  if (from === null) return { index: k, offset: null, seedExt: null, target };
  return { index: k, offset: from.offset, seedExt: from.extSeq, target };
}
