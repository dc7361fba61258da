/**
 * Losing the camera: the lab camera is killed mid-stream and started again on the same
 * port; the upstream session sets up a new camera session and the SAME channel goes on
 * (its subscribers keep their subscription) as one continuous RTP stream: sequence
 * numbers follow on, the SSRC stays, timestamps move forward, and the first packet
 * after the outage starts a keyframe. A camera that freezes (SIGSTOP: TCP open, no RTP)
 * is lost by the RTP watchdog. With `maxReconnects` the channel ends instead.
 */
import t, { type Test } from 'tap';
import { UpstreamSession } from '../../../core/rtsp-client/upstream.js';
import { cameraMissing, freePort, startCamera } from '../../helpers/peers.js';
import { record, seqOf, ssrcOf, tsOf, type Seen } from './channel-check.js';

const skip = (await cameraMissing()) ?? false;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every 50 ms for at most `ms`; true when it held. */
async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    if (cond()) return true;
    await sleep(50);
  }
  return cond();
}

/**
 * Checks the packets around the outage form one stream. The first packet after it is
 * found by arrival time (the outage is the only pause over a second): packets already
 * on their way when the camera was killed or frozen still arrive after that moment.
 */
function checkContinuity(t: Test, packets: Seen[]): void {
  const cut = packets.findIndex((p, i) => i > 0 && p.at - packets[i - 1]!.at > 1000);
  t.ok(cut > 0, `the outage is at packet ${cut}`);
  if (cut <= 0) return;
  const before = packets[cut - 1]!.rtp;
  const after = packets[cut]!.rtp;
  t.equal(seqOf(after), (seqOf(before) + 1) & 0xffff, 'the sequence numbers follow on across the outage');
  t.equal(ssrcOf(after), ssrcOf(before), 'the same SSRC');
  const dt = (tsOf(after) - tsOf(before)) >>> 0;
  t.ok(dt > 0 && dt < 0x8000_0000, 'the timestamp moves forward');
  t.ok(packets[cut]!.keyframe, 'the new camera session starts at a keyframe');
  const gaps = packets.slice(1).filter((p, i) => ((seqOf(p.rtp) - seqOf(packets[i]!.rtp)) & 0xffff) !== 1).length;
  t.equal(gaps, 0, 'no gap in the sequence anywhere');
}

for (const transport of ['udp', 'tcp'] as const) {
  t.test(`${transport}: the camera killed and restarted on its port; the channel goes on`, { skip }, async (t) => {
    const port = await freePort();
    let cam = await startCamera({ port });
    t.teardown(() => cam.stop());
    const s = new UpstreamSession({ url: cam.url, transport, key: 'k', camera: 'cam', reconnect: { minMs: 200, maxMs: 1000 } });
    t.teardown(() => s.stop());
    const ch = await s.start();
    const rec = record(ch);
    t.ok(await until(() => rec.packets.length > 50, 10_000), 'packets before');
    await cam.stop('SIGKILL');
    const cut = rec.packets.length;
    t.ok(await until(() => s.state === 'reconnecting', 5000), 'reconnecting once the camera is gone');
    await sleep(500); // a few attempts fail (connection refused) meanwhile
    cam = await startCamera({ port });
    t.ok(await until(() => s.state === 'playing' && rec.packets.length > cut + 50, 20_000), 'packets again');
    t.equal(s.reconnects, 1);
    t.equal(ch.ended, false, 'the same channel, never ended');
    t.equal(s.channel, ch);
    checkContinuity(t, rec.packets);
    await s.stop();
    t.equal(await rec.ended, 'stopped');
  });
}

t.test('a frozen camera (TCP open, no RTP) is lost by the RTP watchdog and found again', { skip }, async (t) => {
  const port = await freePort();
  const cam = await startCamera({ port });
  t.teardown(() => {
    try {
      process.kill(cam.pid, 'SIGCONT');
    } catch {
      /* gone */
    }
    return cam.stop();
  });
  const s = new UpstreamSession({ url: cam.url, transport: 'tcp', key: 'k', camera: 'cam', rtpTimeoutMs: 1500, timeoutMs: 1000, reconnect: { minMs: 200, maxMs: 500 } });
  t.teardown(() => s.stop());
  const ch = await s.start();
  const rec = record(ch);
  t.ok(await until(() => rec.packets.length > 50, 10_000), 'packets before');
  process.kill(cam.pid, 'SIGSTOP');
  const cut = rec.packets.length;
  t.ok(await until(() => s.state === 'reconnecting', 10_000), 'lost');
  await sleep(1500); // attempts time out while it is frozen
  process.kill(cam.pid, 'SIGCONT');
  t.ok(await until(() => s.state === 'playing' && rec.packets.length > cut + 50, 20_000), 'packets again');
  t.ok(s.reconnects >= 1, `${s.reconnects} reconnect(s)`);
  checkContinuity(t, rec.packets);
});

t.test('maxReconnects 0: the channel ends when the camera is lost', { skip }, async (t) => {
  const port = await freePort();
  const cam = await startCamera({ port });
  t.teardown(() => cam.stop());
  let endReason: string | null = null;
  const s = new UpstreamSession({ url: cam.url, transport: 'udp', key: 'k', camera: 'cam', maxReconnects: 0, onEnd: (r) => (endReason = r) });
  t.teardown(() => s.stop());
  const ch = await s.start();
  const rec = record(ch, false);
  t.ok(await until(() => rec.packets.length > 10, 10_000));
  await cam.stop('SIGKILL');
  t.match(await rec.ended, /^camera lost: connection /, 'subscribers are told why');
  t.equal(s.state, 'closed');
  t.equal(s.reconnects, 0);
  t.equal(ch.ended, true);
  t.equal(endReason, await rec.ended, 'onEnd with the same reason');
});

t.test('maxReconnects 2: gives up after two failed attempts and ends the channel', { skip }, async (t) => {
  const port = await freePort();
  const cam = await startCamera({ port });
  t.teardown(() => cam.stop());
  const s = new UpstreamSession({ url: cam.url, transport: 'tcp', key: 'k', camera: 'cam', maxReconnects: 2, reconnect: { minMs: 50, maxMs: 100 } });
  t.teardown(() => s.stop());
  const ch = await s.start();
  const rec = record(ch, false);
  t.ok(await until(() => rec.packets.length > 10, 10_000));
  await cam.stop('SIGKILL');
  t.match(await rec.ended, /^camera lost: .*; gave up after 2 attempts \(camera rtsp:\/\/127\.0\.0\.1:\d+\/stream1: cannot connect: ECONNREFUSED\)$/);
  t.equal(s.state, 'closed');
});
