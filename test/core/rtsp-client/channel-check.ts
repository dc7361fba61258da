/**
 * Test helper: what a LiveChannel carries, checked by an independent decoder. Packets
 * are collected from the channel's first keyframe (a copy of each: the published view
 * is valid only during the call), then sent over UDP to an ffmpeg that reads the
 * channel's SDP from a file (pointed at a local port), as
 * test/core/live/transcoder.test.ts does; an RTCP BYE ends its input (RFC 3550 §6.6).
 * The RTP header fields are read here with plain Buffer reads (RFC 3550 §5.1), not with
 * the code under test.
 */
import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { LiveChannel } from '../../../core/live/channel.js';

/** One packet as the channel published it, with when it came (performance.now() ms). */
export interface Seen {
  rtp: Buffer;
  keyframe: boolean;
  at: number;
}

/** Subscribes and keeps copies of every packet (from the first keyframe when `fromKey`); `stop()` unsubscribes. */
export function record(ch: LiveChannel, fromKey = true): { packets: Seen[]; ended: Promise<string>; stop: () => void } {
  const packets: Seen[] = [];
  let started = !fromKey;
  let resolveEnd: (r: string) => void = () => {};
  const ended = new Promise<string>((r) => (resolveEnd = r));
  const stop = ch.subscribe({
    onPacket: (p) => {
      if (!started && !p.keyframe) return;
      started = true;
      packets.push({ rtp: Buffer.from(p.rtp), keyframe: p.keyframe, at: performance.now() });
    },
    onEnd: (reason) => resolveEnd(reason),
  });
  return { packets, ended, stop };
}

export const seqOf = (b: Buffer) => b.readUInt16BE(2);
export const tsOf = (b: Buffer) => b.readUInt32BE(4);
export const ssrcOf = (b: Buffer) => b.readUInt32BE(8);

/**
 * `packets` up to the last one with the marker bit (RFC 6184 §5.1: the last packet of
 * an access unit): collection stops at an arbitrary packet, and a cut frame would decode
 * as a corrupt one.
 */
export function wholeUnits(packets: Buffer[]): Buffer[] {
  let end = packets.length;
  while (end > 0 && (packets[end - 1]![1]! & 0x80) === 0) end--;
  return packets.slice(0, end);
}

/** Access units: runs of one RTP timestamp (what a decoder turns into one frame). */
export function accessUnits(packets: Buffer[]): number {
  let n = 0;
  let last: number | null = null;
  for (const p of packets) {
    const ts = tsOf(p);
    if (ts !== last) n++;
    last = ts;
  }
  return n;
}

/** Is something bound to UDP `port` on this host (/proc/net/udp, local address column)? */
function udpBound(port: number): boolean {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return readFileSync('/proc/net/udp', 'utf8').split('\n').some((l) => l.trim().split(/\s+/)[1]?.endsWith(hex));
}

async function freePortPair(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const p = 20000 + 2 * Math.floor(Math.random() * 20000);
    if (!udpBound(p) && !udpBound(p + 1)) return p;
  }
  throw new Error('no free UDP port pair');
}

export interface Decoded {
  code: number | null;
  /** Frames ffmpeg decoded (framecrc lines). */
  frames: number;
  /** The codec ffmpeg found (`h264`, `hevc`, `mjpeg`) and the decoded size. */
  codecId: string;
  dimensions: string;
  /** Warnings and errors ffmpeg logged (decoder, RTP loss). */
  problems: string;
}

/** Sends `packets` to an ffmpeg reading `sdp` and decoding to framecrc; resolves when it has exited. */
export async function decode(sdp: string, packets: Buffer[], dir: string): Promise<Decoded> {
  const port = await freePortPair();
  const sdpFile = path.join(dir, `recv-${port}.sdp`);
  let text = sdp.replace(/^m=(\w+) 0 /m, `m=$1 ${port} `).replace(/^c=IN IP(4|6) \S+/gm, 'c=IN IP4 127.0.0.1');
  if (!/^c=/m.test(text)) text = text.replace(/^(t=.*)$/m, '$1\r\nc=IN IP4 127.0.0.1');
  writeFileSync(sdpFile, text);
  const rx = spawn('ffmpeg', ['-nostdin', '-hide_banner', '-loglevel', 'level+info', '-nostats', '-protocol_whitelist', 'file,udp,rtp', '-buffer_size', String(4 << 20), '-i', sdpFile, '-map', '0:v', '-f', 'framecrc', '-'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  rx.stdout.on('data', (d) => (stdout += d));
  rx.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => rx.on('close', (c) => r(c)));
  const watchdog = setTimeout(() => rx.kill('SIGKILL'), 60_000);
  const tx = createSocket('udp4');
  try {
    while (!udpBound(port) && rx.exitCode === null) await new Promise((r) => setTimeout(r, 20));
    let n = 0;
    for (const b of packets) {
      await new Promise<void>((r) => tx.send(b, port, '127.0.0.1', () => r()));
      // Loopback UDP drops what the receiver's socket buffer cannot hold: let it read.
      if (++n % 16 === 0) await new Promise((r) => setTimeout(r, 1));
    }
    const bye = Buffer.from([0x80, 201, 0, 1, 0, 0, 0, 1, 0x81, 203, 0, 1, 0, 0, 0, 1]);
    for (let i = 0; i < 3 && rx.exitCode === null; i++) {
      await new Promise<void>((r) => tx.send(bye, port, '127.0.0.1', () => r()));
      await Promise.race([exited, new Promise((r) => setTimeout(r, 2000))]);
    }
    if (rx.exitCode === null) rx.kill('SIGKILL');
    const code = await exited;
    return {
      code,
      frames: stdout.split('\n').filter((l) => /^0,/.test(l)).length,
      codecId: /Stream #0:0: Video: (\w+)/.exec(stderr)?.[1] ?? '?',
      dimensions: /^#dimensions 0: (\S+)/m.exec(stdout)?.[1] ?? '?',
      problems: stderr.split('\n').filter((l) => /\[(warning|error|fatal|panic)\]/.test(l)).join('\n'),
    };
  } finally {
    clearTimeout(watchdog);
    tx.close();
  }
}
