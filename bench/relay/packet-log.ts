/**
 * Per-packet logs of the relay benchmark, written by one process and read by the harness:
 * the camera simulator logs each packet it sends (payload key and send time), the
 * receiver each packet it reads (payload key and arrival time), one log per stream.
 * Times are CLOCK_MONOTONIC ms (bench/lib/mono-clock.ts), the same clock in every process.
 *
 * File format (little-endian): `CTPL`, u32 version 1, u32 count, then per log: u32 stream,
 * u32 role, u32 n, n × u32 keyA, n × u32 keyB, n × f64 time.
 */
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { Samples, U32Samples } from '../lib/stats.js';

/** One stream's packets in the order they were sent or read. */
export class PacketLog {
  readonly keyA = new U32Samples(1 << 13);
  readonly keyB = new U32Samples(1 << 13);
  readonly time = new Samples(1 << 13);
  get length(): number {
    return this.time.n;
  }
  push(a: number, b: number, t: number): void {
    this.keyA.push(a);
    this.keyB.push(b);
    this.time.push(t);
  }
}

export interface LogRecord {
  /** Camera path index (stream N of the simulator). */
  stream: number;
  /** What the log is of: the receiver's role tag (0 direct or the only session, 1 through camtap in paired runs); 0 for the camera. */
  role: number;
  keyA: Uint32Array;
  keyB: Uint32Array;
  time: Float64Array;
}

const MAGIC = 0x4c505443; // 'CTPL' little-endian

export function writeLogs(file: string, logs: Array<{ stream: number; role: number; log: PacketLog }>): void {
  const fd = openSync(file, 'w');
  try {
    const head = Buffer.alloc(12);
    head.writeUInt32LE(MAGIC, 0);
    head.writeUInt32LE(1, 4);
    head.writeUInt32LE(logs.length, 8);
    writeSync(fd, head);
    for (const { stream, role, log } of logs) {
      const n = log.length;
      const h = Buffer.alloc(12);
      h.writeUInt32LE(stream, 0);
      h.writeUInt32LE(role, 4);
      h.writeUInt32LE(n, 8);
      writeSync(fd, h);
      const a = log.keyA.view();
      const b = log.keyB.view();
      const t = log.time.view();
      writeSync(fd, Buffer.from(a.buffer, a.byteOffset, n * 4));
      writeSync(fd, Buffer.from(b.buffer, b.byteOffset, n * 4));
      writeSync(fd, Buffer.from(t.buffer, t.byteOffset, n * 8));
    }
  } finally {
    closeSync(fd);
  }
}

export function readLogs(file: string): LogRecord[] {
  const buf = readFileSync(file);
  if (buf.length < 12 || buf.readUInt32LE(0) !== MAGIC) throw new Error(`${file}: not a packet log`);
  const count = buf.readUInt32LE(8);
  const out: LogRecord[] = [];
  let p = 12;
  // Copies, so the typed arrays are aligned whatever the offsets in the file.
  const u32 = (n: number) => {
    const a = new Uint32Array(n);
    new Uint8Array(a.buffer).set(buf.subarray(p, p + n * 4));
    p += n * 4;
    return a;
  };
  for (let i = 0; i < count; i++) {
    const stream = buf.readUInt32LE(p);
    const role = buf.readUInt32LE(p + 4);
    const n = buf.readUInt32LE(p + 8);
    p += 12;
    const keyA = u32(n);
    const keyB = u32(n);
    const time = new Float64Array(n);
    new Uint8Array(time.buffer).set(buf.subarray(p, p + n * 8));
    p += n * 8;
    out.push({ stream, role, keyA, keyB, time });
  }
  return out;
}
