/**
 * The transcode pool with real ffmpeg against `camtap serve` replaying the lab capture:
 * acquirers of one key share one ffmpeg process, the process is gone (ESRCH) once the
 * last subscriber left and the grace passed, a reconnect within the grace keeps it, and
 * a failed start leaves no child behind. Spawns are counted through the injected start.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { CAPTURES, CLI, camtap, camtapJson, tempDir } from '../../helpers/camtap.js';
import { have } from '../../helpers/peers.js';
import type { StreamRecord } from '../../../core/contracts/records.js';
import type { LivePacket } from '../../../core/live/channel.js';
import { TranscodePool } from '../../../core/live/transcode-pool.js';
import { Transcoder, type TranscoderOptions } from '../../../core/live/transcoder.js';
import { isCamtapError } from '../../../core/errors.js';

const skip = have('ffmpeg') ? false : 'ffmpeg is missing (scripts/install-deps.sh installs it)';

/** ffmpeg processes whose parent is this test process. */
function ffmpegChildren(): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === process.pid && comm === 'ffmpeg') out.push(Number(d));
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw e;
  }
}

/** Waits (bounded) until `cond` holds; the caller asserts the outcome, not the time it took. */
async function until(cond: () => boolean, maxMs = 20_000): Promise<void> {
  const end = Date.now() + maxMs;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 25));
}

let served: Promise<{ port: number; streams: StreamRecord[] }> | null = null;
/** One `camtap serve` for the whole file (an import takes seconds), stopped when the file ends. */
function serveFixture(): Promise<{ port: number; streams: StreamRecord[] }> {
  served ??= startServe(t);
  return served;
}

async function startServe(tt: typeof t): Promise<{ port: number; streams: StreamRecord[] }> {
  const data = tempDir(tt, 'camtap-pool-');
  const imp = await camtap(['import', path.join(CAPTURES, 'netns_multi.pcap')], { data });
  if (imp.code !== 0) throw new Error(`import failed: ${imp.stderr}`);
  const streams = await camtapJson<StreamRecord[]>(['streams'], data);
  const srv = spawn(process.execPath, [CLI, 'serve', '--data', data, '--rtsp-port', '0', '--http-port', '0'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, CAMTAP_LOG_LEVEL: 'warn' } });
  tt.teardown(() => void srv.kill('SIGKILL'));
  let text = '';
  const port = await new Promise<number>((resolve, reject) => {
    srv.stdout.on('data', (d) => {
      text += d;
      const m = /serving RTSP on port (\d+)/.exec(text);
      if (m) resolve(Number(m[1]));
    });
    srv.on('exit', (c) => reject(new Error(`serve exited ${c}`)));
  });
  return { port, streams };
}

/** A subscriber that counts packets and remembers how the feed ended. */
function counter(): { onPacket(p: LivePacket): void; onEnd(r: string): void; packets: number; ended: string | null } {
  return {
    packets: 0,
    ended: null,
    onPacket() {
      this.packets++;
    },
    onEnd(r: string) {
      this.ended = r;
    },
  };
}

t.test('acquirers of one key share one ffmpeg, stopped after the last leaves and the grace', { skip }, async (t) => {
  const { port, streams } = await serveFixture();
  const jpeg = streams.find((s) => s.codec === 'JPEG' && s.direction !== 'client->server')!;
  const h264 = streams.find((s) => s.src === '10.77.0.12:39134')!;
  const started: Transcoder[] = [];
  const start = async (o: TranscoderOptions) => {
    const tr = await Transcoder.start(o);
    started.push(tr);
    return tr;
  };
  const pool = new TranscodePool({ graceMs: 300, start });
  t.teardown(() => pool.close());
  // speed=1: the replays outlast the test, so only the pool ends them.
  const opts = (id: string): TranscoderOptions => ({ inputUrl: `rtsp://127.0.0.1:${port}/replay/${id}?speed=1`, codec: 'h264', key: '', camera: id });
  const key = `${jpeg.id}/h264`;

  const [a, b] = await Promise.all([pool.acquire(key, opts(jpeg.id)), pool.acquire(key, opts(jpeg.id))]);
  t.equal(started.length, 1, 'two concurrent acquires start one transcoder');
  t.equal(a, b, 'and get the same channel');
  t.equal(a.key, key);
  t.equal(pool.size, 1);
  const pid = started[0]!.pid;
  t.same(ffmpegChildren(), [pid], 'one ffmpeg process');

  const c1 = counter();
  const c2 = counter();
  const off1 = a.subscribe(c1);
  const off2 = b.subscribe(c2);
  await until(() => c1.packets > 0 && c2.packets > 0);
  t.ok(c1.packets > 0 && c2.packets > 0, 'both subscribers receive packets');

  // A third acquirer of another key gets its own transcoder.
  const other = await pool.acquire(`${h264.id}/h264`, opts(h264.id));
  t.not(other, a, 'another key, another channel');
  t.equal(started.length, 2);
  t.equal(pool.size, 2);

  off1();
  await new Promise((r) => setTimeout(r, 600)); // past the grace: one subscriber remains
  t.ok(alive(pid), 'still running while one subscriber remains');
  off2();
  // Back within the grace: the same transcoder.
  const again = await pool.acquire(key, opts(jpeg.id));
  t.equal(again, a, 'an acquire during the grace gets the running channel');
  t.equal(started.length, 2, 'and starts nothing');
  const off3 = again.subscribe(counter());
  await new Promise((r) => setTimeout(r, 600));
  t.ok(alive(pid), 'a subscriber that came back within the grace keeps it running');
  off3();

  await until(() => !alive(pid));
  t.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, 'the ffmpeg process is gone after the last release and the grace');
  t.equal(c1.ended, null, 'a subscriber that left is not told the feed ended');
  t.ok(a.ended, 'the channel ended');
  t.equal(pool.size, 1, 'only the other key remains');

  const fresh = await pool.acquire(key, opts(jpeg.id));
  t.equal(started.length, 3, 'an acquire after the stop starts a new transcoder');
  t.not(fresh, a, 'with a new channel');
  t.not(started[2]!.pid, pid, 'and a new ffmpeg process');
  t.notOk(fresh.ended);

  // An acquirer that never subscribes does not keep ffmpeg running forever.
  const claimPool = new TranscodePool({ graceMs: 100, claimMs: 200, start });
  t.teardown(() => claimPool.close());
  await claimPool.acquire('unclaimed', opts(jpeg.id));
  const unclaimed = started.at(-1)!;
  await until(() => !alive(unclaimed.pid));
  t.notOk(alive(unclaimed.pid), 'an acquired channel nobody subscribes to is stopped after the claim window');
  t.equal(claimPool.size, 0);

  await pool.close();
  t.equal(pool.size, 0, 'close() stops everything');
  t.same(ffmpegChildren(), [], 'no ffmpeg left after close()');
  await t.rejects(pool.acquire(key, opts(jpeg.id)), { code: 'CAMTAP_ERR_INTERRUPTED' }, 'a closed pool refuses new acquires');
});

t.test('a transcoder that ended is replaced by the next acquire', { skip }, async (t) => {
  const { port, streams } = await serveFixture();
  const jpeg = streams.find((s) => s.codec === 'JPEG' && s.direction !== 'client->server')!;
  let spawns = 0;
  const pool = new TranscodePool({ start: (o) => (spawns++, Transcoder.start(o)) });
  t.teardown(() => pool.close());
  // speed=max: the replay ends within a second or two, and ffmpeg with it.
  const o: TranscoderOptions = { inputUrl: `rtsp://127.0.0.1:${port}/replay/${jpeg.id}?speed=max`, codec: 'h264', key: '', camera: 'cam' };
  const ch = await pool.acquire('k', o);
  const c = counter();
  ch.subscribe(c);
  await until(() => c.ended !== null, 60_000);
  t.match(c.ended, /input ended/, 'the channel ends with the input');
  t.equal(pool.size, 0, 'the ended transcoder is forgotten');
  const ch2 = await pool.acquire('k', o);
  t.not(ch2, ch);
  t.equal(spawns, 2, 'the next acquire starts a fresh one');
});

t.test("a failing input rejects every acquirer with ffmpeg's message and leaves no child", { skip }, async (t) => {
  const { port } = await serveFixture();
  let spawns = 0;
  const pool = new TranscodePool({ start: (o) => (spawns++, Transcoder.start(o)) });
  t.teardown(() => pool.close());
  const o: TranscoderOptions = { inputUrl: `rtsp://127.0.0.1:${port}/replay/nosuchcamera`, codec: 'h264', key: '', camera: 'nosuchcamera' };
  const results = await Promise.allSettled([pool.acquire('bad', o), pool.acquire('bad', o)]);
  t.equal(spawns, 1, 'one start for both');
  for (const r of results) {
    t.equal(r.status, 'rejected');
    const e = (r as PromiseRejectedResult).reason;
    t.ok(isCamtapError(e, 'CAMTAP_ERR_TOOL_FAILED'), String(e));
    t.match((e as Error).message, /404 Not Found/, "the error carries ffmpeg's message");
  }
  t.equal(pool.size, 0);
  t.same(ffmpegChildren(), [], 'no ffmpeg left');
  await t.rejects(pool.acquire('bad', o));
  t.equal(spawns, 2, 'a failed start is not cached: the next acquire tries again');
});

t.test('the pool shares one start between concurrent acquires and forgets a failed one (no ffmpeg)', async (t) => {
  let spawns = 0;
  const pool = new TranscodePool({
    start: async () => {
      spawns++;
      await new Promise((r) => setTimeout(r, 20));
      throw new Error('boom');
    },
  });
  const o: TranscoderOptions = { inputUrl: 'x', codec: 'h264', key: '', camera: 'c' };
  const rs = await Promise.allSettled([pool.acquire('a', o), pool.acquire('a', o), pool.acquire('a', o)]);
  t.same(rs.map((r) => r.status), ['rejected', 'rejected', 'rejected']);
  t.equal(spawns, 1);
  t.equal(pool.size, 0);
  await t.rejects(pool.acquire('a', o), /boom/);
  t.equal(spawns, 2, 'the next acquire starts again');
  await pool.close();
});
