/**
 * Pairs what the receiver read with what the camera sent, packet by packet, by payload key
 * (bench/relay/packet-key.ts) and order: a received packet is the first sent packet with
 * its key that comes after the previous match. Every relay here keeps a stream's order
 * (TCP, or ffmpeg's single-threaded muxer on loopback UDP), so the one packet a key can
 * name is found in amortized constant time (a cursor per key walks a chain of equal keys),
 * and sent packets passed over were lost. Keys repeat for identical payloads only (AUD,
 * SPS, PPS), whose order disambiguates them unless one is lost next to another.
 */
import { key53 } from './packet-key.js';
import type { LogRecord } from './packet-log.js';

export interface StreamJoin {
  /** Latency (arrival − send, ms) by sent-packet index; NaN for a packet never read. */
  latency: Float64Array;
  /** Received packets that no sent packet explains (a relay that re-packetized differently). */
  unmatched: number;
  matched: number;
}

/** Latency of each packet of `sent` that `recv` holds. */
export function joinStream(sent: LogRecord, recv: LogRecord): StreamJoin {
  const n = sent.time.length;
  const next = new Int32Array(n).fill(-1);
  const cursor = new Map<number, number>();
  const lastOf = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const k = key53(sent.keyA[i]!, sent.keyB[i]!);
    const l = lastOf.get(k);
    if (l === undefined) cursor.set(k, i);
    else next[l] = i;
    lastOf.set(k, i);
  }
  const latency = new Float64Array(n).fill(Number.NaN);
  let j = 0;
  let matched = 0;
  let unmatched = 0;
  for (let r = 0; r < recv.time.length; r++) {
    const k = key53(recv.keyA[r]!, recv.keyB[r]!);
    let idx = cursor.get(k);
    while (idx !== undefined && idx >= 0 && idx < j) idx = next[idx]!;
    if (idx === undefined || idx < 0) {
      if (idx !== undefined) cursor.set(k, -1);
      unmatched++;
      continue;
    }
    latency[idx] = recv.time[r]! - sent.time[idx]!;
    matched++;
    j = idx + 1;
    cursor.set(k, next[idx]!);
  }
  return { latency, unmatched, matched };
}
