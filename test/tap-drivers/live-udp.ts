/**
 * Shared live-capture check for the libpcap and tcpdump drivers: a bounded burst of UDP
 * datagrams to 127.0.0.1 on a free port, captured on `lo` with a filter for that port.
 */
import type { Test } from 'tap';
import { createSocket } from 'node:dgram';
import { LinkType, type TapFrame } from '../../core/contracts/frame.js';
import type { TapDriver, TapStatus } from '../../core/contracts/plugin.js';
import { silentLogger } from '../../core/logger.js';
import { freePort, run } from '../helpers/peers.js';

/** Bytes on the wire for one datagram on lo: Ethernet 14 + IPv4 20 + UDP 8 + payload. */
export const PAYLOAD = 100;
export const FRAME_LEN = 14 + 20 + 8 + PAYLOAD;

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `cond` every 20 ms until it holds or `ms` pass; returns whether it held. */
export async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await sleep(20);
  }
  return true;
}

/** Sends `count` datagrams numbered 0..count-1 (a 4-byte big-endian counter then filler), one at a time. */
export async function sendUdp(port: number, count: number, tag = 0xca): Promise<void> {
  const s = createSocket('udp4');
  const msg = Buffer.alloc(PAYLOAD, tag);
  for (let i = 0; i < count; i++) {
    msg.writeUInt32BE(i, 0);
    await new Promise<void>((resolve, reject) => s.send(msg, port, '127.0.0.1', (e) => (e ? reject(e) : resolve())));
  }
  await new Promise<void>((r) => s.close(() => r()));
}

export interface Seen {
  seqs: number[];
  linkTypes: Set<number>;
  tapIds: Set<number>;
  capLens: Set<number>;
  origLens: Set<number>;
  tsSecs: number[];
  tsNsecs: number[];
  other: number;
}

/** A sink that copies what it checks out of each (reused) frame. */
export function recorder(port: number): { seen: Seen; sink: (f: TapFrame) => void } {
  const seen: Seen = { seqs: [], linkTypes: new Set(), tapIds: new Set(), capLens: new Set(), origLens: new Set(), tsSecs: [], tsNsecs: [], other: 0 };
  const sink = (f: TapFrame) => {
    seen.linkTypes.add(f.linkType);
    seen.tapIds.add(f.tapId);
    seen.capLens.add(f.capLen);
    seen.origLens.add(f.origLen);
    seen.tsSecs.push(f.tsSec + f.tsNsec / 1e9);
    seen.tsNsecs.push(f.tsNsec);
    const b = f.buf.subarray(f.off, f.off + f.capLen);
    // Ethernet(14) IPv4(20) UDP(8): destination port at 14+20+2, payload at 42.
    if (b.length >= 46 && b.readUInt16BE(12) === 0x0800 && b[23] === 17 && b.readUInt16BE(36) === port) seen.seqs.push(b.readUInt32BE(42));
    else seen.other++;
  };
  return { seen, sink };
}

/**
 * Opens a tap of `driver` on lo filtered to a free UDP port, sends `count` datagrams,
 * and checks that exactly those arrive, numbered and sized as sent, with the status
 * counting them.
 */
export async function liveUdpCase(t: Test, driver: TapDriver, options: Record<string, unknown>, count = 300): Promise<{ status: TapStatus; seen: Seen }> {
  const port = await freePort('udp');
  const { seen, sink } = recorder(port);
  const tap = driver.create({ id: 7, name: 'lo-test', driver: driver.meta.name, filter: { ports: [port] }, options: { interface: 'lo', ...options } }, { log: silentLogger, options: {}, dataDir: '/nonexistent' });
  const ac = new AbortController();
  const t0 = Date.now() / 1000;
  const opened = tap.open(sink, ac.signal);
  let openError: unknown = null;
  opened.catch((e) => (openError = e));
  t.ok(await until(() => tap.status().state === 'running' || openError !== null, 15000), 'the tap starts running');
  if (openError) throw openError;
  const filter = tap.status().filter ?? '';
  t.match(filter, new RegExp(`port ${port}`), 'status shows the filter in effect');
  const compiled = await run('tcpdump', ['-i', 'lo', '-d', filter]);
  t.equal(compiled.code, 0, `tcpdump accepts the filter ${filter}`);

  await sendUdp(port, count);
  t.ok(await until(() => seen.seqs.length >= count, 15000), `all ${count} datagrams arrive`);
  await tap.close();
  await tap.close(); // safe twice
  await opened;
  const t1 = Date.now() / 1000;
  // One more datagram after close: none may be delivered (and node_pcap releases its
  // poll handle only when a packet passing the filter arrives after close).
  await sendUdp(port, 1);

  t.equal(seen.seqs.length, count, 'exactly as many frames as datagrams sent');
  t.equal(seen.other, 0, 'nothing outside the filter');
  t.same([...new Set(seen.seqs)].sort((a, b) => a - b), Array.from({ length: count }, (_, i) => i), 'each datagram once');
  t.same([...seen.linkTypes], [LinkType.ETHERNET], 'lo is Ethernet-framed');
  t.same([...seen.tapIds], [7], 'frames carry the tap id');
  t.same([...seen.capLens], [FRAME_LEN], `captured length ${FRAME_LEN} (14 + 20 + 8 + ${PAYLOAD})`);
  t.same([...seen.origLens], [FRAME_LEN], 'original length');
  t.ok(seen.tsSecs.every((s) => s >= t0 - 1 && s <= t1 + 1), 'timestamps are capture times');
  t.ok(seen.tsSecs.every((s, i) => i === 0 || s >= seen.tsSecs[i - 1]!), 'timestamps do not go backwards');
  t.ok(seen.tsNsecs.every((n) => Number.isInteger(n) && n >= 0 && n < 1e9), 'nanoseconds within the second');
  const st = tap.status();
  t.equal(st.state, 'stopped');
  t.equal(st.packets, count, 'status counts packets');
  t.equal(st.bytes, count * FRAME_LEN, 'status counts captured bytes');
  t.equal(st.drops, 0, 'no drops on lo at this rate');
  return { status: st, seen };
}
