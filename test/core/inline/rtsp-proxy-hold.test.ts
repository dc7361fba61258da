/**
 * The inline gateway keeps a camera when its VMS dies (serve.holdOnVmsLoss): a VMS whose
 * RTSP connection to camtap closes without TEARDOWN leaves its camera session open and
 * recorded until a VMS client of that camera plays it again or an operator releases it;
 * a VMS that leaves with TEARDOWN holds nothing (the session closes after the grace period).
 *
 * With real peers on loopback: the lab GStreamer camera, ffmpeg as the VMS pulling
 * `rtsp://camtap/<alias>` from `camtap serve --camera NAME=URL`, killed with SIGKILL.
 * Ground truth for what the camera sent camtap: tcpdump on lo at the camera's port,
 * read by tshark. The first part drives the proxy with a stand-in camera session.
 */
import t from 'tap';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { LiveChannel } from '../../../core/live/channel.js';
import { RtspProxySource, type Upstream } from '../../../core/inline/rtsp-proxy.js';
import type { StreamRecord } from '../../../core/contracts/records.js';
import { camtapJson, tempDir } from '../../helpers/camtap.js';
import { startServe } from '../../helpers/serve.js';
import { freePort, have, run, startCamera, startTcpdump, startVms } from '../../helpers/peers.js';
import { RtspTcpClient } from '../../helpers/rtsp-client.js';

function standIn(graceMs: number) {
  const started: Array<{ stopped: boolean; channel: LiveChannel }> = [];
  const proxy = new RtspProxySource({
    cameras: () => [{ name: 'door', address: '10.0.0.11', url: 'rtsp://admin:pw@10.0.0.11:554/stream1', transport: 'tcp' }],
    graceMs,
    start: (o): Upstream => {
      const rec = { stopped: false, channel: new LiveChannel({ key: o.key, sdp: '', camera: o.camera, payloadType: 96, codec: 'H264', clockRate: 90000 }) };
      started.push(rec);
      return {
        start: async () => rec.channel,
        stop: async () => {
          rec.stopped = true;
          rec.channel.end('stopped');
        },
      };
    },
  });
  t.teardown(() => proxy.close());
  return { proxy, started };
}

const noop = { onPacket: () => {}, onEnd: () => {} };

t.test('a lost VMS client holds the camera session past the grace period; a client that plays it again ends the hold', async (t) => {
  const { proxy, started } = standIn(30);
  const feed = (await proxy.resolve('/door', new URLSearchParams()))!;
  const off = feed.subscribe(noop);
  off();
  t.ok(proxy.clientLost({ path: '/door', query: new URLSearchParams(), peer: '10.0.0.101:40000', why: 'connection closed' }), 'the camera session is held');
  t.equal(proxy.clientLost({ path: '/nope', query: new URLSearchParams() }), false, 'a path that names no camera holds nothing');
  await sleep(1300);
  t.notOk(started[0]!.stopped, 'kept with no client, beyond the grace period');
  const holds = proxy.holds();
  t.equal(holds.length, 1);
  t.equal(holds[0]!.key, 'tcp|rtsp://10.0.0.11:554/stream1', 'listed without the credentials');
  t.match(holds[0]!.reason, /10\.0\.0\.101:40000/);
  // The VMS comes back: DESCRIBE (resolve) alone does not end the hold, PLAY (a subscriber) does.
  const again = (await proxy.resolve('/door', new URLSearchParams()))!;
  t.equal(again, feed, 'the returning client shares the held session');
  await sleep(1100);
  t.equal(proxy.holds().length, 1, 'still held before the client plays');
  const off2 = again.subscribe(noop);
  await sleep(1100);
  t.equal(proxy.holds().length, 0, 'the hold ends once the client plays');
  off2();
  await sleep(1300);
  t.ok(started[0]!.stopped, 'then the session closes after the grace period like any other');
  t.equal(started.length, 1, 'one camera session throughout');
});

t.test('an operator releases a hold by camera name; the session then closes when nobody watches', async (t) => {
  const { proxy, started } = standIn(30);
  await proxy.resolve('/door', new URLSearchParams());
  proxy.clientLost({ path: '/door', query: new URLSearchParams(), why: 'timeout' });
  t.equal(proxy.release('yard'), 0, 'another camera: nothing released');
  t.equal(proxy.release('door'), 1);
  await sleep(1300);
  t.ok(started[0]!.stopped);
  t.equal(proxy.upstreams, 0);
});

const missing = ['ffmpeg', 'tshark', 'tcpdump', 'gst-launch-1.0'].filter((c) => !have(c));
const skip = missing.length ? `needs ${missing.join(', ')}` : process.getuid?.() !== 0 ? 'tcpdump on lo needs root' : false;

/** Polls `fn` every 250 ms until it returns something truthy; throws naming `what` after `ms`. */
async function until<T>(what: string, ms: number, fn: () => Promise<T | null | false | undefined> | T | null | false | undefined): Promise<NonNullable<T>> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(250);
  }
}

/** RTP packets the camera sent on its RTSP connection (interleaved, RFC 2326 §10.12), counted by tshark. */
async function cameraRtp(pcap: string, camPort: number): Promise<number> {
  const r = await run('tshark', ['-r', pcap, '-d', `tcp.port==${camPort},rtsp`, '-Y', `rtp && tcp.srcport==${camPort}`, '-T', 'fields', '-E', 'occurrence=a', '-E', 'aggregator=,', '-e', 'rtp.seq'], { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`tshark: ${r.stderr}`);
  let n = 0;
  for (const line of r.stdout.split('\n')) if (line.trim()) n += line.split(',').filter(Boolean).length;
  return n;
}

t.test('a VMS killed with SIGKILL: camtap keeps the camera session and records everything the camera sends', { skip }, async (t) => {
  const dir = tempDir(t);
  const data = path.join(dir, 'data');
  const camPort = await freePort('tcp');
  const cam = await startCamera({ port: camPort, bind: '127.0.0.1', codec: 'h264', fps: 25 });
  t.teardown(() => cam.stop('SIGKILL'));
  const pcap = path.join(dir, 'camera-side.pcap');
  const dump = await startTcpdump({ iface: 'lo', out: pcap, filter: `tcp port ${camPort}` });
  t.teardown(() => dump.stop('SIGINT'));
  const serve = await startServe(t, ['--camera', `cam1=${cam.url}`, '--data', data]);
  const vms = startVms({ url: `rtsp://127.0.0.1:${serve.rtsp}/cam1`, transport: 'tcp', seconds: 120 });
  t.teardown(() => vms.stop('SIGKILL'));
  const cameraLeg = async () => (await camtapJson<StreamRecord[]>(['streams'], data)).find((s) => s.src.endsWith(`:${camPort}`) && s.direction !== 'client->server') ?? null;
  await until('the VMS plays through camtap', 30_000, () => /frame=\s*\d+/.test(vms.log()) || /Output #0/.test(vms.log()));
  await until('camtap recorded the camera leg', 30_000, cameraLeg);
  await sleep(2000);

  await vms.stop('SIGKILL');
  await until('camtap logged the VMS lost without TEARDOWN', 15_000, () => serve.log().includes('VMS lost without TEARDOWN: camera session kept and recorded'));
  const before = (await cameraLeg())!.packets;
  await sleep(5000);
  const after = (await cameraLeg())!.packets;
  t.ok(after > before, `the camera leg's recording keeps growing after the kill (${before} -> ${after} packets over 5 s)`);
  // Past the 5 s grace period a session nobody watches would have been closed.
  await sleep(5000);
  const later = (await cameraLeg())!.packets;
  t.ok(later > after, `and past the grace period (${after} -> ${later} packets over the next 5 s)`);
  t.notMatch(serve.log(), /no VMS client left: camera session closed/, 'the camera session was not closed');
  t.equal((cam.log().match(/client connected/g) ?? []).length, 1, 'the camera saw one client (camtap), never dropped');

  // Stop the camera so nothing is in flight, let camtap flush, then compare with the wire.
  await cam.stop('SIGKILL');
  let last = -1;
  const recorded = await until('camtap flushed the camera leg', 30_000, async () => {
    await sleep(1200);
    const n = (await cameraLeg())!.packets;
    const stable = n === last;
    last = n;
    return stable ? n : null;
  });
  await dump.stop('SIGINT');
  const sent = await cameraRtp(pcap, camPort);
  t.ok(sent > 200, `the camera sent ${sent} RTP packets to camtap`);
  t.equal(recorded, sent, 'camtap recorded every RTP packet the camera sent (tshark on the camera-side capture)');
});

t.test('an orderly TEARDOWN holds nothing; a VMS returning after a loss shares the held session and ends the hold', { skip }, async (t) => {
  const dir = tempDir(t);
  const camPort = await freePort('tcp');
  const cam = await startCamera({ port: camPort, bind: '127.0.0.1', codec: 'h264', fps: 25 });
  t.teardown(() => cam.stop('SIGKILL'));
  const serve = await startServe(t, ['--camera', `cam1=${cam.url}`, '--data', path.join(dir, 'data')]);
  const url = `rtsp://127.0.0.1:${serve.rtsp}/cam1`;
  const connects = () => (cam.log().match(/client connected/g) ?? []).length;

  // A VMS plays 3 s and leaves with a TEARDOWN it waits the answer to, then closes: today's
  // behaviour. (ffmpeg's own end sends TEARDOWN and closes at once with unread media in its
  // socket, which its kernel may turn into a reset that races the TEARDOWN: not what this checks.)
  const vms0 = await RtspTcpClient.connect(serve.rtsp);
  const prepared = await vms0.setup(url, 1);
  vms0.playBlind(prepared);
  await sleep(3000);
  const bye = await vms0.request('TEARDOWN', prepared.url, [['Session', prepared.session]]);
  t.equal(bye?.status, 200, 'VMS 0 tore its session down');
  vms0.close();
  await until('the camera session closed after the orderly TEARDOWN', 30_000, () => serve.log().includes('no VMS client left: camera session closed')).catch((e: Error) => {
    throw new Error(`${e.message}; camtap log:\n${serve.log().slice(-3000)}`);
  });
  t.notMatch(serve.log(), /VMS lost without TEARDOWN/, 'the TEARDOWN was not taken for a loss');

  // A VMS over UDP, killed: its UDP session outlives the connection, the loss is seen at the close.
  const vms1 = startVms({ url, transport: 'udp', seconds: 120 });
  t.teardown(() => vms1.stop('SIGKILL'));
  await until('VMS 1 plays', 30_000, () => /Output #0/.test(vms1.log()));
  await sleep(1500);
  await vms1.stop('SIGKILL');
  await until('camtap logged the loss', 15_000, () => serve.log().includes('VMS lost without TEARDOWN: camera session kept and recorded'));

  // A VMS comes back for 4 s: it shares the held camera session, and playing ends the hold.
  const vms2 = startVms({ url, transport: 'tcp', seconds: 4 });
  t.equal(await vms2.exited, 0, 'VMS 2 ran to its end');
  await until('the hold ended when VMS 2 played', 15_000, () => serve.log().includes('VMS client back: camera session shared, hold ended'));
  t.equal(connects(), 2, 'the camera saw two camtap sessions: VMS 0\'s, and the one VMS 1 opened and VMS 2 shared');
});
