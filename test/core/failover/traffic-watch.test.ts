/**
 * The traffic watch: what the capture pipeline reports as a VMS's signs of life toward
 * its cameras, checked against tshark on the lab's failover capture (VMS1 10.77.0.101
 * streams camera 10.77.0.11 over UDP with ffmpeg and is killed; VMS2 10.77.0.102 replays
 * the set-up and keeps it alive with GET_PARAMETER), and its silence verdicts.
 */
import t from 'tap';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { readCaptureFile } from '../../../core/wire/capture-file.js';
import { CapturePipeline } from '../../../core/capture/pipeline.js';
import { silentLogger } from '../../../core/logger.js';
import { loadConfig } from '../../../core/config.js';
import { TrafficWatch, canonicalAddress, MAX_CADENCE_MS } from '../../../core/failover/traffic-watch.js';
import { CAPTURES, tempDir } from '../../helpers/camtap.js';

const FILE = path.join(CAPTURES, 'netns_failover_replay_h264.pcap');
const VMS1 = '10.77.0.101';
const VMS2 = '10.77.0.102';

function hasTshark(): boolean {
  try {
    execFileSync('tshark', ['-v'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** tshark's rows for a display filter: fields split by tab. */
function tshark(filter: string, fields: string[]): string[][] {
  const args = ['-r', FILE, '-Y', filter, '-T', 'fields', '-E', 'occurrence=a', '-E', 'aggregator=,'];
  for (const f of fields) args.push('-e', f);
  const out = execFileSync('tshark', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return out.split('\n').filter(Boolean).map((l) => l.split('\t'));
}

/** frame.time_epoch ("1795468828.571350000") as integer microseconds, exactly (the capture has µs precision). */
const epochUs = (s: string): number => {
  const [sec, frac = ''] = s.split('.');
  return Number(sec) * 1e6 + Number(frac.padEnd(6, '0').slice(0, 6));
};
/** The watch's ms (fractional) as integer microseconds. */
const msToUs = (ms: number | null): number | null => (ms === null ? null : Math.round(ms * 1000));

interface Truth {
  lastRtsp: number | null;
  rtsp: number;
  lastRr: number | null;
  rr: number;
  lastTcp: number | null;
  tcp: number;
}

/**
 * Ground truth for one VMS address, from tshark alone: its RTSP requests; the RR
 * packets (PT 201) inside its RTCP compounds; and the TCP segments it sent on the
 * RTSP connections it opened (to port 554), up to its first FIN or RST on each
 * connection, without zero-window segments.
 */
function truth(ip: string): Truth {
  const rtsp = tshark(`ip.src==${ip} and rtsp.request`, ['frame.time_epoch']).map((r) => epochUs(r[0]!));
  const rr: number[] = [];
  for (const [ts, pts] of tshark(`ip.src==${ip} and rtcp`, ['frame.time_epoch', 'rtcp.pt'])) {
    for (const pt of pts!.split(',')) if (pt === '201') rr.push(epochUs(ts!));
  }
  const tcp: number[] = [];
  const closed = new Set<string>();
  for (const [ts, stream, fin, rst, win] of tshark(`ip.src==${ip} and tcp.dstport==554`, ['frame.time_epoch', 'tcp.stream', 'tcp.flags.fin', 'tcp.flags.reset', 'tcp.window_size_value'])) {
    if (closed.has(stream!)) continue;
    if (fin === '1' || fin === 'True' || rst === '1' || rst === 'True') {
      closed.add(stream!);
      continue;
    }
    if (Number(win) === 0) continue;
    tcp.push(epochUs(ts!));
  }
  const last = (xs: number[]) => (xs.length ? Math.max(...xs) : null);
  return { lastRtsp: last(rtsp), rtsp: rtsp.length, lastRr: last(rr), rr: rr.length, lastTcp: last(tcp), tcp: tcp.length };
}

t.test('the pipeline reports each VMS sign of life exactly where tshark sees it', { skip: hasTshark() ? false : 'tshark is not installed' }, async (t) => {
  const { config } = loadConfig({ env: {} });
  const watch = new TrafficWatch();
  watch.watch('vms1', VMS1);
  watch.watch('vms2', VMS2);
  const p = new CapturePipeline({ config, log: silentLogger, indexDir: tempDir(t), trafficWatch: watch });
  const loc = { segment: 1, offset: 0 };
  await readCaptureFile(FILE, (r) => {
    loc.offset = r.fileOffset;
    p.process(r, loc);
  });
  p.finish();

  for (const [name, ip] of [['vms1', VMS1], ['vms2', VMS2]] as const) {
    const want = truth(ip);
    const seen = watch.seen(name)!;
    t.equal(msToUs(seen.lastRtsp), want.lastRtsp, `${name}: last RTSP request at tshark's time`);
    t.equal(seen.counts.rtsp, want.rtsp, `${name}: as many RTSP requests as tshark (${want.rtsp})`);
    t.equal(msToUs(seen.lastRtcpRr), want.lastRr, `${name}: last RTCP receiver report at tshark's time`);
    t.equal(seen.counts.rtcpRr, want.rr, `${name}: as many receiver reports as tshark (${want.rr})`);
    t.equal(msToUs(seen.lastTcp), want.lastTcp, `${name}: last live TCP segment on its RTSP connections at tshark's time`);
    t.equal(seen.counts.tcp, want.tcp, `${name}: as many live TCP segments as tshark (${want.tcp})`);
  }

  // The brief's check, verbatim: VMS1's last RR or RTSP request.
  const rows = tshark(`ip.src==${VMS1} and (rtcp.pt==201 or rtsp.request)`, ['frame.time_epoch']);
  const lastSignal = epochUs(rows[rows.length - 1]![0]!);
  const seen1 = watch.seen('vms1')!;
  t.equal(Math.max(msToUs(seen1.lastRtsp)!, msToUs(seen1.lastRtcpRr)!), lastSignal, 'VMS1: last RR / RTSP request = tshark');
  t.ok(seen1.counts.rtcpRr > 0 && seen1.counts.rtsp > 0, 'VMS1 sent both kinds');

  // Silence is measured from the last sign of any kind.
  const lastAny = seen1.last!;
  t.equal(watch.silentFor('vms1', lastAny + 5000), 5000, 'silent for 5 s, 5 s after its last sign');
  // VMS1 was killed -9: its kernel closed its RTSP connection (FIN) with no TEARDOWN before; nothing came after.
  const fins = tshark(`ip.src==${VMS1} and tcp.dstport==554 and (tcp.flags.fin==1 or tcp.flags.reset==1)`, ['frame.time_epoch']).map((r) => epochUs(r[0]!));
  const closedAt = lastAny + 5000 - watch.closedFor('vms1', lastAny + 5000)!;
  t.equal(msToUs(closedAt), fins[fins.length - 1], "VMS1 closed without TEARDOWN at tshark's FIN time");
  t.equal(watch.isSilent('vms1', lastAny + 1, 2000), true, 'a VMS that closed without TEARDOWN and said nothing since is silent at once, before any timeout');
  // VMS2 closed its first connection (the verbatim replay refused with 401) and then spoke again on a new one.
  const seen2 = watch.seen('vms2')!;
  t.equal(watch.closedFor('vms2', seen2.last! + 1), null, 'a close followed by new traffic is not a VMS gone');
});

t.test('observe ignores addresses not watched and never moves time backwards', async (t) => {
  const w = new TrafficWatch();
  t.equal(w.silentFor('vms1', 1000), null, 'an unknown VMS has no verdict');
  w.watch('vms1', '10.0.0.1');
  t.equal(w.silentFor('vms1', 1000), null, 'a watched VMS never seen has no verdict');
  t.equal(w.isSilent('vms1', 1000, 10), null, 'and is not judged silent');
  w.observe('10.0.0.2', 'rtsp', 500);
  t.equal(w.seen('vms1')!.last, null, 'another address is ignored');
  w.observe('10.0.0.1', 'tcp', 1000);
  w.observe('10.0.0.1', 'rtcp-rr', 900); // from a second tap, late
  const s = w.seen('vms1')!;
  t.same([s.last, s.lastTcp, s.lastRtcpRr, s.counts], [1000, 1000, 900, { rtsp: 0, rtcpRr: 1, tcp: 1 }]);
  t.equal(w.silentFor('vms1', 1500), 500);
  t.ok(w.seenSince('10.0.0.1', 1000) && !w.seenSince('10.0.0.1', 1001), 'seenSince by address');
  w.unwatch('vms1');
  w.observe('10.0.0.1', 'rtsp', 2000);
  t.equal(w.seen('vms1'), null, 'unwatched');
  t.same(w.watched(), []);
});

t.test('two VMSs on one address share what is seen; unwatching one keeps the other', async (t) => {
  const w = new TrafficWatch();
  w.watch('a', '10.0.0.9');
  w.watch('b', '10.0.0.9');
  w.observe('10.0.0.9', 'rtsp', 10);
  t.equal(w.seen('a')!.lastRtsp, 10);
  t.equal(w.seen('b')!.lastRtsp, 10);
  w.unwatch('a');
  w.observe('10.0.0.9', 'rtsp', 20);
  t.equal(w.seen('b')!.lastRtsp, 20, 'b still watched');
  w.watch('b', '10.0.0.10');
  w.observe('10.0.0.9', 'rtsp', 30);
  t.equal(w.seen('b')!.address, '10.0.0.10', 're-watching moves the VMS');
  t.equal(w.seen('b')!.last, null, 'and starts afresh at the new address');
});

t.test('a VMS is silent only past twice its own rhythm, and outages are not rhythm', async (t) => {
  const w = new TrafficWatch();
  w.watch('v', '10.0.0.1');
  // A VMS streaming over UDP: a keepalive every 30 s.
  for (let i = 0; i <= 4; i++) w.observe('10.0.0.1', 'rtsp', i * 30_000);
  const last = 4 * 30_000;
  t.equal(w.cadenceMs('v'), 30_000, 'rhythm: 30 s between keepalives');
  t.equal(w.thresholdMs('v', 2000), 60_000, 'threshold: twice the rhythm, above the 2 s timeout');
  t.equal(w.isSilent('v', last + 59_000, 2000), false, '59 s after a keepalive: not silent');
  t.equal(w.isSilent('v', last + 61_000, 2000), true, '61 s: silent');
  // An outage of 10 minutes is not learned as rhythm.
  w.observe('10.0.0.1', 'rtsp', last + 600_000);
  t.ok(MAX_CADENCE_MS < 600_000);
  t.equal(w.cadenceMs('v'), 30_000, 'the outage did not become the rhythm');
  // A dense VMS (interleaved ACKs every 20 ms): the configured timeout rules.
  const d = new TrafficWatch();
  d.watch('d', '10.0.0.2');
  for (let i = 0; i < 100; i++) d.observe('10.0.0.2', 'tcp', i * 20);
  t.equal(d.thresholdMs('d', 2000), 2000);
});

t.test('an old rhythm is forgotten after two windows of denser traffic', async (t) => {
  const w = new TrafficWatch();
  w.watch('v', '10.0.0.1');
  w.observe('10.0.0.1', 'rtsp', 0);
  w.observe('10.0.0.1', 'rtsp', 60_000); // one 60 s gap
  t.equal(w.cadenceMs('v'), 60_000);
  // Then a sign every second for 11 minutes: two windows later the 60 s gap is gone.
  for (let ms = 61_000; ms <= 60_000 + 660_000; ms += 1000) w.observe('10.0.0.1', 'tcp', ms);
  t.equal(w.cadenceMs('v'), 1000, 'only the recent 1 s rhythm remains');
});

t.test('addresses are matched in the form the pipeline writes them (RFC 5952)', async (t) => {
  t.equal(canonicalAddress('2001:DB8:0:0:0:0:0:1'), '2001:db8::1');
  t.equal(canonicalAddress('[2001:db8::1]'), '2001:db8::1');
  t.equal(canonicalAddress('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1', 'first longest zero run');
  t.equal(canonicalAddress('::ffff:10.0.0.1'), '::ffff:10.0.0.1', 'IPv4-mapped in mixed notation');
  t.equal(canonicalAddress('10.77.0.101'), '10.77.0.101');
  const w = new TrafficWatch();
  w.watch('v6', '2001:DB8::0:1');
  w.observe('2001:db8::1', 'rtsp', 5);
  t.equal(w.seen('v6')!.lastRtsp, 5);
});
