/**
 * Test helpers shared by the store and pcapng-writer tests: a classic-pcap reader written
 * by hand from the format (24-byte file header, 16-byte record headers; independent of
 * camtap's readers), and a tshark runner used as ground truth.
 */
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import type { TapFrame } from '../../../core/contracts/frame.js';

export const CAPTURES = new URL('../../../fixtures/captures/', import.meta.url).pathname;

export interface FixturePacket {
  tsSec: number;
  tsNsec: number;
  capLen: number;
  origLen: number;
  data: Buffer;
}

/** Classic pcap (little-endian, µs magic a1b2c3d4 or ns magic a1b23c4d). */
export function readClassicPcap(file: string): { linkType: number; packets: FixturePacket[] } {
  const b = readFileSync(file);
  const magic = b.readUInt32LE(0);
  if (magic !== 0xa1b2c3d4 && magic !== 0xa1b23c4d) throw new Error(`${file}: not a little-endian classic pcap`);
  const nsec = magic === 0xa1b23c4d;
  const linkType = b.readUInt32LE(20) & 0xffff;
  const packets: FixturePacket[] = [];
  let p = 24;
  while (p + 16 <= b.length) {
    const sec = b.readUInt32LE(p);
    const frac = b.readUInt32LE(p + 4);
    const capLen = b.readUInt32LE(p + 8);
    const origLen = b.readUInt32LE(p + 12);
    packets.push({ tsSec: sec, tsNsec: nsec ? frac : frac * 1000, capLen, origLen, data: b.subarray(p + 16, p + 16 + capLen) });
    p += 16 + capLen;
  }
  return { linkType, packets };
}

/** A reusable TapFrame over a fixture packet, the way a tap driver hands frames over. */
export function frameOf(f: TapFrame, pkt: FixturePacket, tapId: number, linkType: number, shiftSec = 0): TapFrame {
  f.tapId = tapId;
  f.tsSec = pkt.tsSec + shiftSec;
  f.tsNsec = pkt.tsNsec;
  f.linkType = linkType;
  f.buf = pkt.data;
  f.off = 0;
  f.capLen = pkt.capLen;
  f.origLen = pkt.origLen;
  return f;
}

export function newFrame(): TapFrame {
  return { tapId: 0, tsSec: 0, tsNsec: 0, linkType: 1, buf: Buffer.alloc(0), off: 0, capLen: 0, origLen: 0 };
}

export function hasTool(name: string): boolean {
  return spawnSync(name, ['--version'], { encoding: 'utf8' }).status === 0;
}

/** Runs tshark; returns stdout lines, stderr (the "Running as root" notice removed) and the exit status. */
export function tshark(args: string[]): { lines: string[]; stderr: string; status: number | null } {
  const r = spawnSync('tshark', args, { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  const stderr = r.stderr
    .split('\n')
    .filter((l) => l.trim() !== '' && !l.includes('Running as user "root"'))
    .join('\n');
  return { lines: r.stdout.split('\n').filter((l) => l !== ''), stderr, status: r.status };
}

/** tshark's frame.time_epoch ("1795467919.675101000") as exact ns. */
export function epochToNs(s: string): bigint {
  const [sec, frac = ''] = s.split('.');
  return BigInt(sec!) * 1_000_000_000n + BigInt((frac + '000000000').slice(0, 9));
}

export function pktNs(p: { tsSec: number; tsNsec: number }, shiftSec = 0): bigint {
  return BigInt(p.tsSec + shiftSec) * 1_000_000_000n + BigInt(p.tsNsec);
}
