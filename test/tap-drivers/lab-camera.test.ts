/**
 * Acceptance: the live taps capture a real camera <-> VMS session on lo. The lab camera
 * (gst-rtsp-server) serves H.264; ffmpeg pulls it like a VMS. The libpcap tap, the
 * tcpdump tap and a plain tcpdump writing a file (the reference) capture the same
 * traffic with a port filter: the RTSP port, and the client's RTP/RTCP ports pinned
 * with ffmpeg's -min_port/-max_port.
 */
import t, { type Test } from 'tap';
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import libpcap from '../../tap-drivers/libpcap/index.js';
import tcpdump from '../../tap-drivers/tcpdump/index.js';
import type { TapFrame } from '../../core/contracts/frame.js';
import type { Tap, TapDriver } from '../../core/contracts/plugin.js';
import type { FilterSpec } from '../../core/contracts/filter.js';
import { silentLogger } from '../../core/logger.js';
import { cameraMissing, freePort, freeUdpPair, have, run, startCamera, startTcpdump, startVms } from '../helpers/peers.js';
import { sendUdp, sleep, until } from './live-udp.js';

function pcapMissing(): string | null {
  try {
    createRequire(import.meta.url)('pcap');
    return null;
  } catch (e) {
    return `the native pcap module does not load: ${(e as Error).message.split('\n')[0]}`;
  }
}

const missing = ['tcpdump', 'ffmpeg', 'capinfos'].filter((c) => !have(c));
const skip = missing.length > 0 ? `not installed: ${missing.join(', ')}` : (pcapMissing() ?? (await cameraMissing()) ?? false);

/** What a tap saw, counted from Ethernet/IPv4 headers by hand (lo, no options). */
interface Tally {
  frames: number;
  rtspFrames: number;
  rtspText: string;
  rtpToClient: number;
  interleaved: number;
}

function tally(rtspPort: number, rtpPort: number): { t: Tally; sink: (f: TapFrame) => void } {
  const t: Tally = { frames: 0, rtspFrames: 0, rtspText: '', rtpToClient: 0, interleaved: 0 };
  const sink = (f: TapFrame) => {
    t.frames++;
    const b = f.buf.subarray(f.off, f.off + f.capLen);
    if (b.length < 34 || b.readUInt16BE(12) !== 0x0800) return;
    const ihl = (b[14]! & 0x0f) * 4;
    const proto = b[23];
    const l4 = 14 + ihl;
    const sport = b.readUInt16BE(l4);
    const dport = b.readUInt16BE(l4 + 2);
    if (proto === 6 && (sport === rtspPort || dport === rtspPort)) {
      t.rtspFrames++;
      const payload = b.subarray(l4 + ((b[l4 + 12]! >> 4) * 4));
      if (payload.length > 0 && t.rtspText.length < 1 << 20) t.rtspText += payload.toString('latin1');
      if (sport === rtspPort && payload.length > 4 && payload[0] === 0x24) t.interleaved++; // '$' (RFC 2326 10.12)
    }
    // RTP version 2 in the first byte of the UDP payload (RFC 3550 5.1).
    if (proto === 17 && dport === rtpPort && b.length > l4 + 8 && (b[l4 + 8]! & 0xc0) === 0x80) t.rtpToClient++;
  };
  return { t, sink };
}

async function session(t: Test, transport: 'udp' | 'tcp') {
  const dir = mkdtempSync(path.join(tmpdir(), 'camtap-lab-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const rtspPort = await freePort('tcp');
  const rtpPort = await freeUdpPair();
  const camera = await startCamera({ port: rtspPort, codec: 'h264' });
  t.teardown(() => camera.stop());
  const filter: FilterSpec = { ports: [rtspPort, `${rtpPort}-${rtpPort + 1}`] };

  const taps: Array<{ name: string; tap: Tap; tally: Tally; opened: Promise<void> }> = [];
  for (const [i, driver] of [libpcap, tcpdump].entries() as Iterable<[number, TapDriver]>) {
    const { t: tl, sink } = tally(rtspPort, rtpPort);
    const tap = driver.create({ id: i + 1, name: `lab-${driver.meta.name}`, driver: driver.meta.name, filter, options: { interface: 'lo' } }, { log: silentLogger, options: {}, dataDir: dir });
    const opened = tap.open(sink, new AbortController().signal);
    opened.catch(() => {});
    taps.push({ name: driver.meta.name, tap, tally: tl, opened });
    t.teardown(() => tap.close());
  }
  for (const x of taps) t.ok(await until(() => x.tap.status().state === 'running', 15000), `${x.name} tap running (${x.tap.status().error ?? ''})`);
  const refFile = path.join(dir, 'reference.pcap');
  const reference = await startTcpdump({ iface: 'lo', out: refFile, filter: `port ${rtspPort} or portrange ${rtpPort}-${rtpPort + 1}` });

  const vms = startVms({ url: camera.url, transport, seconds: 4, inputArgs: ['-min_port', String(rtpPort), '-max_port', String(rtpPort + 1)] });
  const code = await vms.exited;
  t.equal(code, 0, `ffmpeg pulled the stream over ${transport}`);
  t.match(vms.log(), /Stream #0:0.*Video: h264/, 'ffmpeg saw an H.264 video stream');
  await sleep(1000); // the camera's last packets after TEARDOWN
  await reference.stop('SIGINT');
  for (const x of taps) await x.tap.close();
  await sendUdp(rtpPort, 1); // lets node_pcap release its poll handle (see the libpcap driver)
  for (const x of taps) await x.opened;

  const refCount = Number(/Number of packets:\s+(\d+)/.exec((await run('capinfos', ['-c', '-M', refFile])).stdout)?.[1]);
  for (const x of taps) {
    const st = x.tap.status();
    t.equal(st.state, 'stopped', `${x.name}: stopped cleanly`);
    t.equal(st.drops, 0, `${x.name}: no drops`);
    t.equal(x.tally.frames, refCount, `${x.name}: the same ${refCount} frames as the reference tcpdump`);
    t.equal(st.packets, x.tally.frames, `${x.name}: status counts what it delivered`);
    t.ok(x.tally.rtspFrames > 5, `${x.name}: the RTSP connection (${x.tally.rtspFrames} frames)`);
    for (const m of ['DESCRIBE', 'SETUP', 'PLAY', 'TEARDOWN', 'RTSP/1.0 200 OK', 'm=video']) t.ok(x.tally.rtspText.includes(m), `${x.name}: the dialog has ${m}`);
    if (transport === 'udp') {
      t.ok(x.tally.rtpToClient > 100, `${x.name}: RTP over UDP to the client (${x.tally.rtpToClient} packets)`);
      t.match(x.tally.rtspText, new RegExp(`client_port=${rtpPort}-${rtpPort + 1}`), `${x.name}: SETUP asked for the pinned ports`);
    } else {
      t.ok(x.tally.interleaved > 20, `${x.name}: interleaved RTP in the RTSP connection (${x.tally.interleaved} segments starting with $)`);
      t.equal(x.tally.rtpToClient, 0, `${x.name}: no RTP over UDP`);
    }
  }
}

t.test('the libpcap and tcpdump taps capture a lab camera streaming to ffmpeg over UDP', { skip }, async (t) => {
  await session(t, 'udp');
});

t.test('the libpcap and tcpdump taps capture a lab camera streaming to ffmpeg over TCP (interleaved)', { skip }, async (t) => {
  await session(t, 'tcp');
});
