/**
 * pcapng block encoders (draft-ietf-opsawg-pcapng), little-endian, writing into a
 * caller's Buffer so the packet path never allocates: the caller asks for a block's size,
 * makes room, and gets the new write position back.
 *
 * Only the three blocks camtap's segments are made of: Section Header (SHB, §4.1),
 * Interface Description (IDB, §4.2) and Enhanced Packet (EPB, §4.3). Every block is
 *
 * ```
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +---------------------------------------------------------------+
 * |                          Block Type                           |
 * +---------------------------------------------------------------+
 * |                      Block Total Length                       |
 * +---------------------------------------------------------------+
 * /                          Block Body                           /
 * +---------------------------------------------------------------+
 * |                      Block Total Length                       |
 * +---------------------------------------------------------------+
 * ```
 *
 * with the length repeated at the end, which is what lets a reader (and our crash
 * recovery) tell a complete block from a torn one.
 */

export const BLOCK_SHB = 0x0a0d0d0a;
export const BLOCK_IDB = 0x00000001;
export const BLOCK_EPB = 0x00000006;
/** §4.1: written in the writer's byte order; reads as 0x1A2B3C4D when the reader's order matches. */
export const BYTE_ORDER_MAGIC = 0x1a2b3c4d;

/** §3.5 option codes used here. */
const OPT_ENDOFOPT = 0;
const SHB_USERAPPL = 4;
const IF_NAME = 2;
const IF_DESCRIPTION = 3;
const IF_TSRESOL = 9;

/** EPB fixed part: type, length, interface id, ts high, ts low, captured len, original len, trailing length. */
export const EPB_OVERHEAD = 32;

const TWO32 = 4294967296;
const TWO16 = 65536;
const NS_PER_S = 1_000_000_000;

/** Values (packet data, option values) are padded to 32 bits (§3.1). */
function pad4(n: number): number {
  return (n + 3) & ~3;
}

/** One option's size: code + length + padded value (§3.5). */
function optSize(valueBytes: number): number {
  return 4 + pad4(valueBytes);
}

function writeStringOpt(buf: Buffer, pos: number, code: number, value: string): number {
  const len = Buffer.byteLength(value, 'utf8');
  buf.writeUInt16LE(code, pos);
  buf.writeUInt16LE(len, pos + 2);
  buf.write(value, pos + 4, len, 'utf8');
  const end = pos + 4 + pad4(len);
  buf.fill(0, pos + 4 + len, end);
  return end;
}

/** Option values are limited to 65535 bytes by the 16-bit length field. */
function checkOpt(name: string, value: string): void {
  if (Buffer.byteLength(value, 'utf8') > 0xffff) throw new RangeError(`pcapng option ${name} longer than 65535 bytes`);
}

export interface ShbOptions {
  /** shb_userappl: the application that wrote the section. */
  userAppl?: string;
}

/** Size of the SHB {@link writeShb} writes for the same options (28 bytes without options). */
export function shbSize(opts?: ShbOptions): number {
  if (opts?.userAppl === undefined) return 28;
  return 28 + optSize(Buffer.byteLength(opts.userAppl, 'utf8')) + 4;
}

/**
 * Section Header Block (§4.1), version 1.0, section length -1 ("not specified": the
 * writer appends without knowing where the section ends).
 */
export function writeShb(buf: Buffer, pos: number, opts?: ShbOptions): number {
  if (opts?.userAppl !== undefined) checkOpt('shb_userappl', opts.userAppl);
  const size = shbSize(opts);
  buf.writeUInt32LE(BLOCK_SHB, pos);
  buf.writeUInt32LE(size, pos + 4);
  buf.writeUInt32LE(BYTE_ORDER_MAGIC, pos + 8);
  buf.writeUInt16LE(1, pos + 12);
  buf.writeUInt16LE(0, pos + 14);
  buf.writeUInt32LE(0xffffffff, pos + 16);
  buf.writeUInt32LE(0xffffffff, pos + 20);
  let p = pos + 24;
  if (opts?.userAppl !== undefined) {
    p = writeStringOpt(buf, p, SHB_USERAPPL, opts.userAppl);
    buf.writeUInt32LE(OPT_ENDOFOPT, p);
    p += 4;
  }
  buf.writeUInt32LE(size, p);
  return p + 4;
}

/** Size of the IDB {@link writeIdb} writes: 20 fixed bytes + if_name + if_description + if_tsresol + end of options. */
export function idbSize(name: string, description?: string): number {
  let size = 20 + optSize(Buffer.byteLength(name, 'utf8')) + optSize(1) + 4;
  if (description !== undefined) size += optSize(Buffer.byteLength(description, 'utf8'));
  return size;
}

/**
 * Interface Description Block (§4.2). `if_tsresol` = 9 (§4.2, option 9: most significant
 * bit clear, 10^-9 s) because taps deliver nanoseconds and the EPB timestamp is in
 * units of the interface's resolution. `snapLen` 0 means "no limit".
 */
export function writeIdb(buf: Buffer, pos: number, linkType: number, snapLen: number, name: string, description?: string): number {
  checkOpt('if_name', name);
  if (description !== undefined) checkOpt('if_description', description);
  const size = idbSize(name, description);
  buf.writeUInt32LE(BLOCK_IDB, pos);
  buf.writeUInt32LE(size, pos + 4);
  buf.writeUInt16LE(linkType, pos + 8);
  buf.writeUInt16LE(0, pos + 10);
  buf.writeUInt32LE(snapLen >>> 0, pos + 12);
  let p = writeStringOpt(buf, pos + 16, IF_NAME, name);
  if (description !== undefined) p = writeStringOpt(buf, p, IF_DESCRIPTION, description);
  buf.writeUInt16LE(IF_TSRESOL, p);
  buf.writeUInt16LE(1, p + 2);
  buf.writeUInt32LE(9, p + 4); // value byte 9, then 3 padding zero bytes
  p += 8;
  buf.writeUInt32LE(OPT_ENDOFOPT, p);
  buf.writeUInt32LE(size, p + 4);
  return p + 8;
}

/** Size of an EPB carrying `capLen` bytes of packet data: 32 + capLen padded to 4. */
export function epbSize(capLen: number): number {
  return EPB_OVERHEAD + pad4(capLen);
}

/**
 * Enhanced Packet Block (§4.3) with no options. The timestamp is one 64-bit count of
 * nanoseconds (the interface has if_tsresol 9) split into high and low 32 bits.
 * `tsSec * 1e9 + tsNsec` is above 2^53 for any current date, so it is computed on
 * 16-bit pieces of `tsSec` where every intermediate stays an exact integer below 2^53
 * (valid for every time a 64-bit ns count holds: tsSec < 18_446_744_073, year 2554).
 */
export function writeEpb(
  buf: Buffer,
  pos: number,
  interfaceId: number,
  tsSec: number,
  tsNsec: number,
  data: Buffer,
  dataOff: number,
  capLen: number,
  origLen: number,
): number {
  const padded = pad4(capLen);
  const size = EPB_OVERHEAD + padded;
  // ns = tsSec * 1e9 + tsNsec = (secHi * 2^16 + secLo) * 1e9 + tsNsec
  const secHi = Math.floor(tsSec / TWO16);
  const secLo = tsSec - secHi * TWO16;
  const q = secHi * NS_PER_S; // secHi < 2^19 for 64-bit ns times, so q < 2^49
  const qHi = Math.floor(q / TWO16);
  const qLo = q - qHi * TWO16;
  // ns = qHi * 2^32 + (qLo * 2^16 + secLo * 1e9 + tsNsec); the bracket is < 2^32 + 2^46
  const r = qLo * TWO16 + secLo * NS_PER_S + tsNsec;
  const rHi = Math.floor(r / TWO32);
  const tsHigh = qHi + rHi;
  const tsLow = r - rHi * TWO32;
  buf.writeUInt32LE(BLOCK_EPB, pos);
  buf.writeUInt32LE(size, pos + 4);
  buf.writeUInt32LE(interfaceId, pos + 8);
  buf.writeUInt32LE(tsHigh, pos + 12);
  buf.writeUInt32LE(tsLow, pos + 16);
  buf.writeUInt32LE(capLen, pos + 20);
  buf.writeUInt32LE(origLen, pos + 24);
  data.copy(buf, pos + 28, dataOff, dataOff + capLen);
  for (let i = pos + 28 + capLen; i < pos + 28 + padded; i++) buf[i] = 0;
  buf.writeUInt32LE(size, pos + 28 + padded);
  return pos + size;
}
