/**
 * pcap / pcapng export of one stream: the stream's packets in the plan's range exactly
 * as captured (original frames with their link layer and capture times, nothing
 * rewritten, nothing reordered or deduplicated: a packet two taps saw is there twice, as
 * it was captured), in capture order, plus the packets that carried the RTSP dialog
 * that set the stream up, so Wireshark/tshark see the SETUP (and so decode the RTP
 * without being told ports or channels) and the stream in one file.
 *
 * What "the stream's packets" are:
 * - RTP over UDP: datagrams from the stream's sender to its receiver with its SSRC;
 * - RTP interleaved in RTSP/TCP: every camera -> client TCP segment of the connection
 *   that carries payload (the `$` frames span segments, and share them with RTCP and
 *   the odd RTSP response: a reader needs them all to reassemble).
 *
 * The range is exactly [startNs, endNs]: no keyframe lead-in (a replay adds one, an
 * export is the evidence of what was captured in the range). Dialog packets are written
 * wherever they fall in time (before the range, inside it, or after: a TEARDOWN).
 *
 * Formats (draft-ietf-opsawg-pcap, draft-ietf-opsawg-pcapng): pcap with nanosecond
 * timestamps (magic 0xA1B23C4D) and the link type of the first packet (packets of
 * another link type cannot go in one pcap file: they are skipped and counted); pcapng
 * with one interface per captured interface name and link type, nanosecond resolution.
 * Output is written in batches of one segment read (1 MiB) and waits for 'drain'.
 */
import { CaptureFileReader, type CaptureRecord } from '../wire/capture-file.js';
import { DecodeStatus, PacketDecoder, PacketMeta } from '../wire/packet.js';
import { RtpHeader, parseRtp } from '../wire/rtp.js';
import { epbSize, idbSize, shbSize, writeEpb, writeIdb, writeShb } from '../wire/pcapng-writer.js';
import type { SessionRecord } from '../contracts/records.js';
import { SegmentScanner, type ReplayDeps } from '../query/segment-scan.js';
import { locateStart } from '../query/start.js';
import { StreamMatcher } from '../query/stream-match.js';
import { STOP_SLACK_NS, splitNs } from '../query/replay.js';
import type { ReplayPlan } from '../query/types.js';

export interface ExportOptions {
  format: 'pcap' | 'pcapng';
  /** Add the packets of the RTSP dialog that set the stream up. Default true. */
  includeDialog?: boolean;
  signal?: AbortSignal;
}

export interface ExportResult {
  /** Packets of the stream written. */
  packets: number;
  /** Packets of the dialog written. */
  dialogPackets: number;
  /** Packets left out of a pcap file because their link type differs from the file's. */
  skipped: number;
}

const NS = 1_000_000_000n;
const PCAP_MAGIC_NS = 0xa1b23c4d;
const PCAP_SNAPLEN = 262144;
const USER_APPL = 'camtap export';

/** One packet kept in memory (dialog packets are read before the stream). */
interface HeldRecord {
  tsNs: bigint;
  tsSec: number;
  tsNsec: number;
  linkType: number;
  ifName: string;
  data: Buffer;
  origLen: number;
}

/** Encodes records into pcap or pcapng bytes, batch by batch. */
class CaptureWriter {
  readonly #format: 'pcap' | 'pcapng';
  #buf: Buffer = Buffer.allocUnsafe(1 << 20);
  #len = 0;
  #started = false;
  #pcapLink = -1;
  readonly #ifaces = new Map<string, number>();
  skipped = 0;

  constructor(format: 'pcap' | 'pcapng') {
    this.#format = format;
  }

  #reserve(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#len + n));
    this.#buf.copy(next, 0, 0, this.#len);
    this.#buf = next;
  }

  #pcapHeader(linkType: number): void {
    this.#reserve(24);
    const b = this.#buf;
    const p = this.#len;
    b.writeUInt32LE(PCAP_MAGIC_NS, p);
    b.writeUInt16LE(2, p + 4);
    b.writeUInt16LE(4, p + 6);
    b.writeInt32LE(0, p + 8); // thiszone
    b.writeUInt32LE(0, p + 12); // sigfigs
    b.writeUInt32LE(PCAP_SNAPLEN, p + 16);
    b.writeUInt32LE(linkType, p + 20);
    this.#len += 24;
    this.#pcapLink = linkType;
  }

  #start(linkType: number): void {
    if (this.#started) return;
    this.#started = true;
    if (this.#format === 'pcap') {
      this.#pcapHeader(linkType);
    } else {
      this.#reserve(shbSize({ userAppl: USER_APPL }));
      this.#len = writeShb(this.#buf, this.#len, { userAppl: USER_APPL });
    }
  }

  /** Appends one packet; false when a pcap file cannot hold its link type. */
  add(tsSec: number, tsNsec: number, linkType: number, ifName: string, data: Buffer, off: number, capLen: number, origLen: number): boolean {
    this.#start(linkType);
    if (this.#format === 'pcap') {
      if (linkType !== this.#pcapLink) {
        this.skipped++;
        return false;
      }
      this.#reserve(16 + capLen);
      const b = this.#buf;
      const p = this.#len;
      b.writeUInt32LE(tsSec >>> 0, p);
      b.writeUInt32LE(tsNsec >>> 0, p + 4);
      b.writeUInt32LE(capLen, p + 8);
      b.writeUInt32LE(Math.max(origLen, capLen), p + 12);
      data.copy(b, p + 16, off, off + capLen);
      this.#len += 16 + capLen;
      return true;
    }
    const key = `${linkType}|${ifName}`;
    let id = this.#ifaces.get(key);
    if (id === undefined) {
      id = this.#ifaces.size;
      this.#ifaces.set(key, id);
      this.#reserve(idbSize(ifName));
      this.#len = writeIdb(this.#buf, this.#len, linkType, 0, ifName);
    }
    this.#reserve(epbSize(capLen));
    this.#len = writeEpb(this.#buf, this.#len, id, tsSec, tsNsec, data, off, capLen, Math.max(origLen, capLen));
    return true;
  }

  /** The bytes encoded since the last call (a file with no packet still gets its header). */
  take(final: boolean): Buffer | null {
    if (final) this.#start(1);
    if (this.#len === 0) return null;
    const out = Buffer.from(this.#buf.subarray(0, this.#len));
    this.#len = 0;
    return out;
  }
}

/** Writes `buf` to `out`, waiting for 'drain' when the stream asks for it. */
async function writeOut(out: NodeJS.WritableStream, buf: Buffer): Promise<void> {
  if (out.write(buf)) return;
  await new Promise<void>((resolve, reject) => {
    const done = (err?: Error) => {
      out.off('drain', onDrain);
      out.off('error', onError);
      out.off('close', onClose);
      if (err) reject(err);
      else resolve();
    };
    const onDrain = () => done();
    const onError = (e: Error) => done(e);
    const onClose = () => done(new Error('output closed before the export finished'));
    out.on('drain', onDrain);
    out.on('error', onError);
    out.on('close', onClose);
  });
}

/** Reads the packets that carried the dialog's requests and responses (each once), in time order. */
async function readDialog(deps: ReplayDeps, session: SessionRecord): Promise<{ records: HeldRecord[]; keys: Set<string> }> {
  const bySeg = new Map<number, Set<number>>();
  for (const x of session.requests) {
    for (const loc of [...x.requestAt, ...x.responseAt]) {
      let s = bySeg.get(loc.segment);
      if (!s) bySeg.set(loc.segment, (s = new Set()));
      s.add(loc.offset);
    }
  }
  const records: Array<HeldRecord & { seg: number; offset: number }> = [];
  const keys = new Set<string>();
  for (const [seg, offsets] of bySeg) {
    const loc = deps.segments(seg);
    if (loc === undefined) continue; // deleted by retention: the dialog is partly gone
    const reader = await CaptureFileReader.open(loc.path);
    try {
      for (const offset of [...offsets].sort((a, b) => a - b)) {
        const r = await reader.readAt(offset);
        if (r === null) continue;
        keys.add(`${seg}:${offset}`);
        records.push({
          seg,
          offset,
          tsNs: BigInt(r.tsSec) * NS + BigInt(r.tsNsec),
          tsSec: r.tsSec,
          tsNsec: r.tsNsec,
          linkType: r.linkType,
          ifName: reader.interfaces()[r.interfaceId]?.name ?? `if${r.interfaceId}`,
          data: Buffer.from(r.buf.subarray(r.off, r.off + r.capLen)),
          origLen: r.origLen,
        });
      }
    } finally {
      await reader.close();
    }
  }
  records.sort((a, b) => (a.tsNs < b.tsNs ? -1 : a.tsNs > b.tsNs ? 1 : a.seg - b.seg || a.offset - b.offset));
  return { records, keys };
}

/**
 * Writes the stream of `plan` (and its dialog) to `out` as a capture file (see the file
 * comment). Does not end `out`.
 * @throws CamtapError CAMTAP_ERR_INTERRUPTED when `signal` fires; write errors of `out` as they come.
 */
export async function exportPcap(deps: ReplayDeps, plan: ReplayPlan, out: NodeJS.WritableStream, opts: ExportOptions): Promise<ExportResult> {
  const writer = new CaptureWriter(opts.format);
  const dialog = opts.includeDialog !== false && plan.session !== null ? await readDialog(deps, plan.session) : { records: [], keys: new Set<string>() };
  let di = 0;
  let dialogPackets = 0;
  let packets = 0;
  const writeDialogUpTo = (tsNs: bigint | null): void => {
    const recs = dialog.records;
    while (di < recs.length && (tsNs === null || recs[di]!.tsNs <= tsNs)) {
      const d = recs[di++]!;
      if (writer.add(d.tsSec, d.tsNsec, d.linkType, d.ifName, d.data, 0, d.data.length, d.origLen)) dialogPackets++;
    }
  };

  const start = await locateStart(deps.indexDir, plan, 'time');
  if (start !== null) {
    const matcher = new StreamMatcher(plan.stream);
    const udp = matcher.transport === 'udp';
    const decoder = new PacketDecoder();
    const meta = new PacketMeta();
    const h = new RtpHeader();
    const [startSec, startNsec] = splitNs(plan.startNs);
    const [endSec, endNsec] = splitNs(plan.endNs);
    const [stopSec, stopNsec] = splitNs(plan.endNs + STOP_SLACK_NS);
    const onRecord = (r: CaptureRecord, seg: number): boolean => {
      const s = r.tsSec;
      if (s > stopSec || (s === stopSec && r.tsNsec > stopNsec)) return false;
      if (s < startSec || (s === startSec && r.tsNsec < startNsec) || s > endSec || (s === endSec && r.tsNsec > endNsec)) return true;
      if (dialog.keys.has(`${seg}:${r.fileOffset}`)) return true; // written from the dialog list, in time order
      if (decoder.decode(r, meta) !== DecodeStatus.OK || !matcher.matches(meta)) return true;
      if (udp) {
        if (!parseRtp(meta.buf, meta.payloadOff, meta.payloadLen, h) || h.ssrc >>> 0 !== matcher.ssrc) return true;
      } else if (meta.payloadLen <= 0) {
        return true;
      }
      writeDialogUpTo(BigInt(s) * NS + BigInt(r.tsNsec));
      if (writer.add(s, r.tsNsec, r.linkType, scanner.interfaceName(r.interfaceId), r.buf, r.off, r.capLen, r.origLen)) packets++;
      return true;
    };
    const scanner = new SegmentScanner(deps, plan.segments, start.index, start.offset, { signal: opts.signal });
    try {
      for (;;) {
        const more = await scanner.next(onRecord);
        const bytes = writer.take(false);
        if (bytes !== null) await writeOut(out, bytes);
        if (!more) break;
      }
    } finally {
      await scanner.close();
    }
  }
  writeDialogUpTo(null);
  const rest = writer.take(true);
  if (rest !== null) await writeOut(out, rest);
  return { packets, dialogPackets, skipped: writer.skipped };
}
