/**
 * Ground truth for pacing: every RTP packet of a capture as tshark dissects it (SSRC,
 * sequence number, RTP timestamp, marker, capture time), per SSRC in extended sequence
 * order, cached in a binary file beside the capture (tshark takes about 30 s on the 1x
 * capture; the cache is keyed by the capture's size and mtime).
 *
 * The serving benchmark's client uses it to know, for each packet a replay sends, the
 * capture time it was recorded at and so when camtap should send it.
 *
 * Cache layout: u32 LE length of a JSON header, the header ({size, mtimeMs, command,
 * streams: [{ssrc, minExt, count}]}), then per stream in header order: count f64 capture
 * times (ms since the epoch), count u32 RTP timestamps, count u8 marker bits (255: no
 * packet with that sequence number in the capture), each array 8-byte aligned.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, renameSync, statSync, writeSync } from 'node:fs';
import { createInterface } from 'node:readline';

/** One SSRC's packets indexed by `extSeq - minExt`. */
export interface TruthStream {
  ssrc: number;
  minExt: number;
  count: number;
  /** Capture time, ms since the epoch (NaN: no packet with that sequence number). */
  timeMs: Float64Array;
  rtpTs: Uint32Array;
  /** 1: marker set, 0: not set, 255: missing. */
  marker: Uint8Array;
}

export interface Truth {
  streams: Map<number, TruthStream>;
  command: string[];
}

const MISSING = 255;

export function tsharkTruthCommand(capture: string): string[] {
  return ['tshark', '-r', capture, '-Y', 'rtp', '-T', 'fields', '-E', 'separator=,', '-e', 'rtp.ssrc', '-e', 'rtp.seq', '-e', 'rtp.timestamp', '-e', 'rtp.marker', '-e', 'frame.time_epoch'];
}

/** `1700000000.509239000` -> ms since the epoch (a double keeps 0.25 µs at this magnitude). */
function epochMs(s: string): number {
  const dot = s.indexOf('.');
  if (dot < 0) return Number(s) * 1000;
  return Number(s.slice(0, dot)) * 1000 + Number(s.slice(dot + 1, dot + 10).padEnd(9, '0')) / 1e6;
}

/** Runs tshark over the capture and groups its RTP packets by SSRC (SSRC 0, NAT punch packets, left out). */
async function runTshark(capture: string): Promise<Map<number, TruthStream>> {
  const cmd = tsharkTruthCommand(capture);
  const child = spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr = (stderr + b.toString()).slice(-4000)));
  const raw = new Map<number, { seq: number[]; ts: number[]; mk: number[]; t: number[] }>();
  const rl = createInterface({ input: child.stdout, crlfDelay: Infinity });
  for await (const line of rl) {
    const f = line.split(',');
    if (f.length < 5) continue;
    const ssrc = parseInt(f[0]!, 16) >>> 0;
    if (!ssrc) continue;
    let r = raw.get(ssrc);
    if (!r) raw.set(ssrc, (r = { seq: [], ts: [], mk: [], t: [] }));
    r.seq.push(Number(f[1]));
    r.ts.push(Number(f[2]) >>> 0);
    r.mk.push(f[3] === '1' || f[3] === 'True' ? 1 : 0);
    r.t.push(epochMs(f[4]!));
  }
  const code: number = await new Promise((res) => (child.exitCode !== null ? res(child.exitCode) : child.on('close', (c) => res(c ?? 1))));
  if (code !== 0) throw new Error(`${cmd.join(' ')} exited ${code}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`);
  const out = new Map<number, TruthStream>();
  for (const [ssrc, r] of raw) {
    // Sequence numbers unwrapped in capture order (RFC 3550 §A.1 style: the nearest of the three candidates).
    const ext = new Array<number>(r.seq.length);
    let prev = -1;
    for (let i = 0; i < r.seq.length; i++) {
      const s = r.seq[i]!;
      if (prev < 0) ext[i] = s + 65536;
      else {
        let e = (prev & ~0xffff) + s;
        if (e - prev > 32768) e -= 65536;
        else if (prev - e > 32768) e += 65536;
        ext[i] = e;
      }
      prev = ext[i]!;
    }
    let minExt = Infinity;
    let maxExt = -Infinity;
    for (const e of ext) {
      if (e < minExt) minExt = e;
      if (e > maxExt) maxExt = e;
    }
    const count = maxExt - minExt + 1;
    const timeMs = new Float64Array(count).fill(Number.NaN);
    const rtpTs = new Uint32Array(count);
    const marker = new Uint8Array(count).fill(MISSING);
    for (let i = 0; i < ext.length; i++) {
      const k = ext[i]! - minExt;
      if (marker[k] !== MISSING) continue; // a duplicate: the first copy counts
      timeMs[k] = r.t[i]!;
      rtpTs[k] = r.ts[i]!;
      marker[k] = r.mk[i]!;
    }
    out.set(ssrc, { ssrc, minExt, count, timeMs, rtpTs, marker });
  }
  return out;
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

function write(file: string, capture: string, streams: Map<number, TruthStream>): void {
  const st = statSync(capture);
  const list = [...streams.values()];
  const head = Buffer.from(JSON.stringify({ size: st.size, mtimeMs: st.mtimeMs, command: tsharkTruthCommand(capture), streams: list.map((s) => ({ ssrc: s.ssrc, minExt: s.minExt, count: s.count })) }));
  const tmp = `${file}.part`;
  const fd = openSync(tmp, 'w');
  try {
    const len = Buffer.alloc(4);
    len.writeUInt32LE(head.length);
    let pos = 0;
    const put = (b: Uint8Array) => {
      writeSync(fd, b, 0, b.length, pos);
      pos += b.length;
      const pad = align8(pos) - pos;
      if (pad) {
        writeSync(fd, Buffer.alloc(pad), 0, pad, pos);
        pos += pad;
      }
    };
    put(Buffer.concat([len, head]));
    for (const s of list) {
      put(new Uint8Array(s.timeMs.buffer, s.timeMs.byteOffset, s.timeMs.byteLength));
      put(new Uint8Array(s.rtpTs.buffer, s.rtpTs.byteOffset, s.rtpTs.byteLength));
      put(s.marker);
    }
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}

/** Reads the cache; null when it is missing or was made from another version of the capture. */
export function loadTruth(file: string, capture?: string): Truth | null {
  if (!existsSync(file)) return null;
  const b = readFileSync(file);
  const hl = b.readUInt32LE(0);
  const head = JSON.parse(b.toString('utf8', 4, 4 + hl)) as { size: number; mtimeMs: number; command: string[]; streams: Array<{ ssrc: number; minExt: number; count: number }> };
  if (capture) {
    const st = statSync(capture);
    if (st.size !== head.size || st.mtimeMs !== head.mtimeMs) return null;
  }
  // A fresh ArrayBuffer: typed arrays need aligned offsets.
  const ab = b.buffer.slice(b.byteOffset, b.byteOffset + b.length);
  let pos = align8(4 + hl);
  const streams = new Map<number, TruthStream>();
  for (const s of head.streams) {
    const timeMs = new Float64Array(ab, pos, s.count);
    pos = align8(pos + s.count * 8);
    const rtpTs = new Uint32Array(ab, pos, s.count);
    pos = align8(pos + s.count * 4);
    const marker = new Uint8Array(ab, pos, s.count);
    pos = align8(pos + s.count);
    streams.set(s.ssrc, { ssrc: s.ssrc, minExt: s.minExt, count: s.count, timeMs, rtpTs, marker });
  }
  return { streams, command: head.command };
}

/** The cached truth of `capture`, made with tshark when missing or stale. */
export async function ensureTruth(capture: string, file: string, log: (m: string) => void): Promise<Truth> {
  const have = loadTruth(file, capture);
  if (have) return have;
  log(`tshark: RTP packet table of ${capture} (once; cached in ${file})`);
  write(file, capture, await runTshark(capture));
  return loadTruth(file, capture)!;
}

/**
 * When camtap's pacer sends each packet, as a capture time (ms): a replay holds the
 * packets of an access unit until its marker packet (or the next unit's first packet)
 * is due and sends them together (core/serve/pacer.ts), so a packet's due time is the
 * capture time of its unit's marker packet, else of the next unit's first packet.
 * Also returns which packets start an access unit (the RTP timestamp changes).
 */
export function dueTimes(s: TruthStream): { dueMs: Float64Array; auStart: Uint8Array } {
  const n = s.count;
  const dueMs = new Float64Array(n).fill(Number.NaN);
  const auStart = new Uint8Array(n);
  let i = 0;
  while (i < n) {
    if (s.marker[i] === MISSING) {
      i++;
      continue;
    }
    let j = i;
    const ts = s.rtpTs[i]!;
    auStart[i] = 1;
    // The unit: consecutive packets with the same timestamp, up to and including a marker.
    while (j + 1 < n && s.marker[j] !== 1 && s.marker[j + 1] !== MISSING && s.rtpTs[j + 1] === ts) j++;
    const due = s.marker[j] === 1 || j + 1 >= n || s.marker[j + 1] === MISSING ? s.timeMs[j]! : s.timeMs[j + 1]!;
    for (let k = i; k <= j; k++) dueMs[k] = due;
    i = j + 1;
  }
  return { dueMs, auStart };
}
