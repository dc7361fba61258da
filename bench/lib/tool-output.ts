/**
 * Parsers for the text the peer tools print: dd's summary line, `tshark -z rtp,streams`
 * and `capinfos -T`. Pure functions, so a format change shows up as a null, not a crash.
 */

/** dd's last line: `2147483648 bytes (2.1 GB, 2.0 GiB) copied, 3.1 s, 693 MB/s`. */
export interface DdResult {
  bytes: number;
  seconds: number;
  /** bytes / seconds / 1e6, computed here (dd rounds its own figure). */
  mbPerS: number;
  /** dd's own rate text, e.g. `693 MB/s`. */
  ddRate: string;
}

export function parseDd(stderr: string): DdResult | null {
  const m = /(\d+) bytes .*copied, ([\d.,]+) s, ([\d.,]+ [kMGT]?B\/s)/.exec(stderr);
  if (!m) return null;
  const bytes = Number(m[1]);
  const seconds = Number(m[2]!.replace(',', '.'));
  if (!(seconds > 0)) return null;
  return { bytes, seconds, mbPerS: bytes / seconds / 1e6, ddRate: m[3]! };
}

/** One row of `tshark -q -z rtp,streams`. */
export interface TsharkRtpStream {
  src: string;
  srcPort: number;
  dst: string;
  dstPort: number;
  ssrc: number;
  payload: string;
  packets: number;
  lost: number;
}

/**
 * Rows of the `rtp,streams` table (tshark 4.0 layout: start, end, src, port, dst, port,
 * SSRC, payload, packets, lost, ...). The payload name has no spaces in 4.0.
 */
export function parseTsharkRtpStreams(stdout: string): TsharkRtpStream[] {
  const rows: TsharkRtpStream[] = [];
  const re = /^\s*[\d.]+\s+[\d.]+\s+(\S+)\s+(\d+)\s+(\S+)\s+(\d+)\s+0x([0-9A-Fa-f]+)\s+(\S+)\s+(\d+)\s+(-?\d+)/;
  for (const line of stdout.split('\n')) {
    const m = re.exec(line);
    if (!m) continue;
    rows.push({ src: m[1]!, srcPort: Number(m[2]), dst: m[3]!, dstPort: Number(m[4]), ssrc: parseInt(m[5]!, 16), payload: m[6]!, packets: Number(m[7]), lost: Number(m[8]) });
  }
  return rows;
}

/** `capinfos -T -M -c -s -u FILE`: a header line and a value line, tab-separated. */
export interface CapInfo {
  packets: number;
  bytes: number;
  durationS: number | null;
}

export function parseCapinfosTable(stdout: string): CapInfo | null {
  const lines = stdout.trim().split('\n');
  if (lines.length < 2) return null;
  const head = lines[0]!.split('\t');
  const vals = lines[lines.length - 1]!.split('\t');
  const get = (name: string) => {
    const i = head.findIndex((h) => h.startsWith(name));
    return i >= 0 ? vals[i] : undefined;
  };
  const packets = Number(get('Number of packets'));
  const bytes = Number(get('File size'));
  const dur = get('Capture duration');
  if (!Number.isFinite(packets) || !Number.isFinite(bytes)) return null;
  return { packets, bytes, durationS: dur !== undefined && dur !== '' ? Number(dur) : null };
}

/**
 * camtap's progress line (stderr, one line every 2 s when not a terminal):
 * `[####] 100.0%  1.16 M pkts  1.05 M pkt/s  1.17 GB/s  ETA 0s  big.pcap`. Returns the last one.
 */
export function lastProgressLine(stderr: string): string | null {
  const lines = stderr.split(/[\r\n]+/).filter((l) => /pkt\/s/.test(l));
  const last = lines[lines.length - 1];
  return last ? last.replace(/\x1b\[K/g, '').trim() : null;
}
