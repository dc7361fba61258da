/**
 * What the captures say, read by tshark (the ground truth of the failover benchmark):
 * every RTP packet with its capture time, addresses, sequence number and marker bit.
 *
 * A TCP segment may carry several interleaved RTP packets (RFC 2326 §10.12), so the RTP
 * fields are read with every occurrence per frame; RTSP is decoded on port 8554 (the
 * camera's and camtap's), RTP over UDP by tshark's heuristic. Only dynamic payload types
 * (96-127, the camera's H.264) count: the heuristic can take an RTCP packet for RTP.
 */
import { run } from './proc.js';

export interface RtpSeen {
  /** Capture time, ms since the epoch. */
  t: number;
  src: string;
  dst: string;
  seq: number;
  /** The last packet of a frame (RFC 6184 §5.1: the marker bit ends an access unit). */
  marker: boolean;
}

export async function readRtp(pcap: string, opts: { exec?: (cmd: string, args: string[]) => Promise<{ code: number | null; stdout: string; stderr: string }> } = {}): Promise<RtpSeen[]> {
  const args = ['-r', pcap, '-n', '-o', 'rtp.heuristic_rtp:TRUE', '-d', 'tcp.port==8554,rtsp', '-Y', 'rtp', '-T', 'fields', '-E', 'occurrence=a', '-E', 'aggregator=,', '-e', 'frame.time_epoch', '-e', 'ip.src', '-e', 'ip.dst', '-e', 'rtp.seq', '-e', 'rtp.marker', '-e', 'rtp.p_type'];
  const r = opts.exec ? await opts.exec('tshark', args) : await run('tshark', args, { timeoutMs: 300_000 });
  if (r.code !== 0) throw new Error(`tshark -r ${pcap}: exit ${r.code}: ${r.stderr.slice(-500)}`);
  const out: RtpSeen[] = [];
  for (const line of r.stdout.split('\n')) {
    if (!line.trim()) continue;
    const [time, src, dst, seqs, marks, pts] = line.split('\t');
    const seq = (seqs ?? '').split(',');
    const mark = (marks ?? '').split(',');
    const pt = (pts ?? '').split(',');
    const t = Number(time) * 1000;
    for (let i = 0; i < seq.length; i++) {
      if (seq[i] === '' || seq[i] === undefined) continue;
      const p = Number(pt[i]);
      if (!(p >= 96 && p <= 127)) continue;
      const m = mark[i];
      out.push({ t, src: src!.split(',')[0]!, dst: dst!.split(',')[0]!, seq: Number(seq[i]), marker: m === '1' || m === 'True' || m === 'true' });
    }
  }
  out.sort((a, b) => a.t - b.t);
  return out;
}

/** Largest time between consecutive packets in [from, to] (ms), and where it starts; the edges count as packets. */
export function largestGap(pkts: RtpSeen[], from: number, to: number): { gapMs: number; at: number } {
  let prev = from;
  let best = { gapMs: 0, at: from };
  for (const p of pkts) {
    if (p.t < from) continue;
    if (p.t > to) break;
    if (p.t - prev > best.gapMs) best = { gapMs: p.t - prev, at: prev };
    prev = p.t;
  }
  if (to - prev > best.gapMs) best = { gapMs: to - prev, at: prev };
  return best;
}

/**
 * Breaks in one RTP flow within [from, to]: consecutive packets whose sequence numbers do
 * not follow (RFC 3550 §5.1, modulo 2^16): a lost packet or a new camera session. Each
 * break's time span, in ms.
 */
export function sequenceBreaks(pkts: RtpSeen[], from: number, to: number): number[] {
  const spans: number[] = [];
  let prev: RtpSeen | null = null;
  for (const p of pkts) {
    if (p.t < from) continue;
    if (p.t > to) break;
    if (prev && p.seq !== ((prev.seq + 1) & 0xffff)) spans.push(p.t - prev.t);
    prev = p;
  }
  return spans;
}
