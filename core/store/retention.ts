/**
 * Retention policy as a pure function: which sealed segments to delete so the store
 * stays within its byte budget and maximum age. The store does the deleting.
 */

/** The fields of a segment the policy looks at. */
export interface RetainedSegment {
  id: number;
  bytes: number;
  external: boolean;
  sealed: boolean;
  lastTsNs: bigint | null;
}

export interface RetentionPolicy {
  /** Budget for camtap's own segments (sealed + the open one); null = unlimited. */
  retentionBytes: number | null;
  /** Maximum age of a segment's latest packet against `nowMs`; null = unlimited. */
  retentionSeconds: number | null;
  nowMs: number;
}

/** Oldest first by capture time of the latest packet (a segment without packets counts as oldest), then by id. */
function oldestFirst(a: RetainedSegment, b: RetainedSegment): number {
  if (a.lastTsNs !== b.lastTsNs) {
    if (a.lastTsNs === null) return -1;
    if (b.lastTsNs === null) return 1;
    return a.lastTsNs < b.lastTsNs ? -1 : 1;
  }
  return a.id - b.id;
}

/**
 * Segments to delete, oldest first. Only camtap's own sealed segments are candidates:
 * external captures (indexed in place) belong to the user, and the open segment is
 * still being written. `totalBytes` is what own segments use now, the open one included.
 *
 * Age is judged on capture time, so an imported old capture is old at once; byte
 * pressure removes the oldest capture time first for the same reason.
 */
export function selectForRetention<S extends RetainedSegment>(segments: readonly S[], totalBytes: number, policy: RetentionPolicy): S[] {
  const candidates = segments.filter((s) => !s.external && s.sealed).sort(oldestFirst);
  const victims: S[] = [];
  const chosen = new Set<number>();
  let total = totalBytes;
  if (policy.retentionSeconds !== null) {
    const limitNs = BigInt(Math.floor(policy.nowMs)) * 1_000_000n - BigInt(Math.round(policy.retentionSeconds * 1000)) * 1_000_000n;
    for (const s of candidates) {
      if (s.lastTsNs !== null && s.lastTsNs < limitNs) {
        victims.push(s);
        chosen.add(s.id);
        total -= s.bytes;
      }
    }
  }
  if (policy.retentionBytes !== null) {
    for (const s of candidates) {
      if (total <= policy.retentionBytes) break;
      if (chosen.has(s.id)) continue;
      victims.push(s);
      chosen.add(s.id);
      total -= s.bytes;
    }
  }
  return victims.sort(oldestFirst);
}
