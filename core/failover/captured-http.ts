/**
 * Reads one captured HTTP request back from the store, as the VMS sent it: the packets
 * the catalog recorded for the transaction (`HttpTransaction.requestAt`) are read from
 * their segment files, their TCP payloads put back in sequence order, and the request
 * parsed (RFC 9112: Content-Length or chunked body). The catalog keeps headers with
 * credentials redacted and no body; failover needs the body (the push destination is in
 * it) and every header as sent, so it goes back to the packets.
 *
 * The result still holds the `Authorization` header the VMS sent: it is the caller's
 * to drop (the failover plan never carries it).
 */
import type { HttpTransaction, SegmentRecord } from '../contracts/records.js';
import { CamtapError } from '../errors.js';
import { CaptureFileReader } from '../wire/capture-file.js';
import { DecodeStatus, PacketDecoder, PacketMeta } from '../wire/packet.js';
import { MessageStreamParser, type WireMessage } from '../wire/rtsp-message.js';

/** One HTTP request as captured. */
export interface CapturedHttpRequest {
  method: string;
  /** The request-target as sent (origin form `/path?query`, or absolute form). */
  target: string;
  /** In order, names as sent (repeated headers stay repeated). */
  headers: Array<[string, string]>;
  /** The body, chunked transfer coding removed. */
  body: Buffer;
}

/** Largest request body read back (a configuration request, not an upload). */
const MAX_BODY = 4 * 1024 * 1024;
const TCP = 6;

interface Piece {
  seq: number;
  data: Buffer;
  file: string;
  offset: number;
}

/**
 * Reads the request of `tx` from the segments. `segments` resolves a segment id (the
 * catalog's segment list).
 * @throws CamtapError CAMTAP_ERR_NOT_FOUND when a segment is gone (retention deleted it);
 *   CAMTAP_ERR_STORE_CORRUPT naming the segment file and record offset when a record is
 *   missing or not a TCP packet, when bytes of the request are missing, or when the bytes
 *   are not the HTTP request the catalog says.
 */
export async function readCapturedRequest(segments: (id: number) => SegmentRecord | undefined, tx: HttpTransaction): Promise<CapturedHttpRequest> {
  if (tx.requestAt.length === 0) throw new CamtapError('CAMTAP_ERR_NOT_FOUND', { what: 'captured request of HTTP transaction', id: tx.id });
  const pieces = await readPieces(segments, tx);
  const first = pieces[0]!;
  const stream = reassemble(pieces);
  const msg = parseRequest(stream, tx, first);
  return { method: msg.method ?? tx.method, target: msg.url ?? tx.url, headers: msg.headers.map(([k, v]) => [k, v]), body: Buffer.from(msg.body) };
}

/** The TCP payloads of the request's packets, in `requestAt` order. */
async function readPieces(segments: (id: number) => SegmentRecord | undefined, tx: HttpTransaction): Promise<Piece[]> {
  const decoder = new PacketDecoder();
  const meta = new PacketMeta();
  const pieces: Piece[] = [];
  const readers = new Map<number, CaptureFileReader>();
  try {
    for (const loc of tx.requestAt) {
      const seg = segments(loc.segment);
      if (seg === undefined) throw new CamtapError('CAMTAP_ERR_NOT_FOUND', { what: 'segment', id: `${loc.segment} (holding HTTP transaction ${tx.id}; deleted by retention?)` });
      let reader = readers.get(loc.segment);
      if (!reader) {
        reader = await CaptureFileReader.open(seg.path);
        readers.set(loc.segment, reader);
      }
      const rec = await reader.readAt(loc.offset);
      if (rec === null) throw corrupt(seg.path, loc.offset, `no packet record here (HTTP transaction ${tx.id})`);
      const st = decoder.decode(rec, meta);
      if (st !== DecodeStatus.OK || meta.protocol !== TCP) throw corrupt(seg.path, loc.offset, `not a TCP packet (HTTP transaction ${tx.id})`);
      if (meta.truncated) throw corrupt(seg.path, loc.offset, `packet cut by the snap length (HTTP transaction ${tx.id})`);
      pieces.push({ seq: meta.tcpSeq >>> 0, data: Buffer.from(meta.buf.subarray(meta.payloadOff, meta.payloadOff + meta.payloadLen)), file: seg.path, offset: loc.offset });
    }
  } finally {
    for (const r of readers.values()) await r.close();
  }
  return pieces;
}

/**
 * The bytes from the first packet's sequence number on, in sequence order: a
 * retransmitted segment's bytes count once (RFC 9293 §3.10.7.4 trims overlaps the same
 * way). Sequence numbers wrap at 2^32, so positions are taken relative to the first.
 */
function reassemble(pieces: Piece[]): { data: Buffer; gapAt: Piece | null } {
  const base = pieces[0]!.seq;
  const rel = pieces.map((p) => ({ p, at: (p.seq - base) >>> 0 })).filter((x) => x.at < 0x80000000);
  rel.sort((a, b) => a.at - b.at);
  const parts: Buffer[] = [];
  let next = 0;
  for (const { p, at } of rel) {
    const end = at + p.data.length;
    if (end <= next) continue;
    if (at > next) return { data: Buffer.concat(parts), gapAt: p };
    parts.push(p.data.subarray(next - at));
    next = end;
  }
  return { data: Buffer.concat(parts), gapAt: null };
}

/** The first HTTP request in `stream` with the transaction's method and target. */
function parseRequest(stream: { data: Buffer; gapAt: Piece | null }, tx: HttpTransaction, first: Piece): WireMessage {
  const found: WireMessage[] = [];
  const parser = new MessageStreamParser(
    {
      onMessage: (m) => {
        if (m.kind === 'request' && m.protocol === 'HTTP') found.push(m);
      },
      onInterleaved: () => {},
      onError: () => {},
    },
    { maxBodyBytes: MAX_BODY },
  );
  parser.push(stream.data, null);
  const msg = found.find((m) => m.method === tx.method && m.url === tx.url) ?? null;
  if (msg === null) {
    if (stream.gapAt) throw corrupt(stream.gapAt.file, stream.gapAt.offset, `bytes of HTTP request ${tx.method} ${tx.url} (transaction ${tx.id}) are missing before this packet`);
    const why = found.length > 0 ? `hold ${found[0]!.method} ${found[0]!.url}, not the` : 'hold no complete';
    throw corrupt(first.file, first.offset, `the captured packets ${why} HTTP request ${tx.method} ${tx.url} (transaction ${tx.id})`);
  }
  if (msg.bodyTruncated) throw corrupt(first.file, first.offset, `HTTP request ${tx.method} ${tx.url} (transaction ${tx.id}) has a body over ${MAX_BODY} bytes or an unusable length`);
  return msg;
}

function corrupt(file: string, offset: number, reason: string): CamtapError {
  return new CamtapError('CAMTAP_ERR_STORE_CORRUPT', { file, offset, reason });
}
