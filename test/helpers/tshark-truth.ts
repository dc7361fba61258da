/**
 * Ground truth from tshark for captures the tests make themselves: the same per-stream
 * numbers the lab's manifest.py computes (unique packets, duplicates, first/last
 * sequence in capture order, lost = expected - unique with RFC 3550 unwrapping), taken
 * from tshark's RTP dissection with heuristics on, and RTSP sessions from its RTSP
 * dissector. Nothing here uses camtap's code.
 */
import { execFileSync } from 'node:child_process';

export interface TruthStream {
  transport: 'udp' | 'tcp';
  src: string;
  dst: string;
  ssrc: number;
  packets: number;
  unique: number;
  duplicates: number;
  firstSeq: number;
  lastSeq: number;
  lost: number;
}

const ep = (ip: string, port: string) => (ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`);

export function tsharkRtpStreams(file: string, decodeAs: string[] = []): TruthStream[] {
  const fields = ['ip.src', 'ip.dst', 'ipv6.src', 'ipv6.dst', 'udp.srcport', 'udp.dstport', 'tcp.srcport', 'tcp.dstport', 'rtp.ssrc', 'rtp.seq'];
  const args = ['-r', file, '-o', 'rtp.heuristic_rtp:TRUE', '-o', 'rtcp.heuristic_rtcp:TRUE', ...decodeAs.flatMap((d) => ['-d', d]), '-Y', 'rtp and not icmp', '-T', 'fields', '-E', 'occurrence=a', '-E', "aggregator=|"];
  for (const f of fields) args.push('-e', f);
  const out = execFileSync('tshark', args, { encoding: 'utf8', maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'ignore'] });
  const groups = new Map<string, { key: Omit<TruthStream, 'packets' | 'unique' | 'duplicates' | 'firstSeq' | 'lastSeq' | 'lost'>; seqs: number[] }>();
  for (const line of out.split('\n')) {
    if (!line) continue;
    const [s4, d4, s6, d6, us, ud, ts, td, ssrcs, seqs] = line.split('\t') as string[];
    const tcp = Boolean(ts);
    const src = ep((s4 || s6)!.split('|')[0]!, (tcp ? ts : us)!.split('|')[0]!);
    const dst = ep((d4 || d6)!.split('|')[0]!, (tcp ? td : ud)!.split('|')[0]!);
    const ss = ssrcs!.split('|');
    const qs = seqs!.split('|');
    ss.forEach((x, i) => {
      const ssrc = parseInt(x, 16);
      const k = `${tcp ? 'tcp' : 'udp'}|${src}|${dst}|${ssrc}`;
      let g = groups.get(k);
      if (!g) groups.set(k, (g = { key: { transport: tcp ? 'tcp' : 'udp', src, dst, ssrc }, seqs: [] }));
      g.seqs.push(Number(qs[i]));
    });
  }
  const res: TruthStream[] = [];
  for (const { key, seqs } of groups.values()) {
    const seen = new Set<number>();
    let max: number | null = null;
    let dups = 0;
    for (const q of seqs) {
      let ext: number;
      if (max === null) ext = q + 0x10000;
      else {
        const d = (q - (max & 0xffff)) & 0xffff;
        ext = d < 0x8000 ? max + d : max - (0x10000 - d);
      }
      if (seen.has(ext)) dups++;
      else seen.add(ext);
      max = max === null ? ext : Math.max(max, ext);
    }
    const lo = Math.min(...seen), hi = Math.max(...seen);
    res.push({ ...key, packets: seqs.length, unique: seen.size, duplicates: dups, firstSeq: seqs[0]!, lastSeq: seqs[seqs.length - 1]!, lost: hi - lo + 1 - seen.size });
  }
  return res;
}

export interface TruthSession {
  sessionId: string;
  client: string;
  server: string;
  transports: string[];
}

/** RTSP sessions: session id, client/server endpoints and every negotiated Transport (SETUP replies). */
export function tsharkRtspSessions(file: string, decodeAs: string[] = []): TruthSession[] {
  const out = execFileSync('tshark', ['-r', file, ...decodeAs.flatMap((d) => ['-d', d]), '-Y', 'rtsp.response and rtsp.transport', '-T', 'fields', '-e', 'ip.src', '-e', 'tcp.srcport', '-e', 'ip.dst', '-e', 'tcp.dstport', '-e', 'rtsp.session', '-e', 'rtsp.transport', '-E', 'occurrence=f'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const m = new Map<string, TruthSession>();
  for (const line of out.split('\n')) {
    if (!line) continue;
    const [sip, sp, cip, cp, sid, tr] = line.split('\t') as string[];
    const id = sid!.split(';')[0]!;
    let s = m.get(id);
    if (!s) m.set(id, (s = { sessionId: id, client: ep(cip!, cp!), server: ep(sip!, sp!), transports: [] }));
    s.transports.push(tr!.replace(/\\r\\n$/, ''));
  }
  return [...m.values()];
}
