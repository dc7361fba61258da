/**
 * The inline gateway with real peers on loopback: GStreamer's RTSP server is the camera,
 * ffmpeg the VMS, pointed at `rtsp://camtap/<alias>` instead of the camera.
 *
 * - Every combination of camera-leg and VMS-leg transport (UDP, TCP): the VMS records with
 *   no error; then the camera goes away and, with `maxReconnects: 0`, the VMS session ends
 *   cleanly (RTCP BYE), so the VMS file holds everything the VMS received. camtap's
 *   recording of the VMS leg, replayed through /replay, decodes to the same frame count.
 * - Three VMSs on one camera: the camera sees one client.
 * - The camera disappears and comes back (retry forever, the default): the VMS session
 *   survives and keeps decoding; the reconnect is logged.
 */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { camtapJson, tempDir } from '../helpers/camtap.js';
import { startServe } from '../helpers/serve.js';
import { freePort, have, run, startCamera } from '../helpers/peers.js';
import type { StreamRecord } from '../../core/contracts/records.js';
import { Cam } from 'onvif';
import { startSim } from '../core/inline/http-peers.js';

const missing = ['ffmpeg', 'ffprobe', 'gst-launch-1.0'].filter((c) => !have(c));
const skip = missing.length ? `needs ${missing.join(', ')} (scripts/install-deps.sh installs them)` : false;

function config(dir: string, camPort: number, transport: 'udp' | 'tcp', maxReconnects: number | null): string {
  const file = path.join(dir, `camtap-${transport}.yaml`);
  writeFileSync(
    file,
    [
      'cameras:',
      `  - { name: cam1, address: 127.0.0.1, url: "rtsp://127.0.0.1:${camPort}/stream1", transport: ${transport} }`,
      'serve:',
      `  maxReconnects: ${maxReconnects === null ? 'null' : maxReconnects}`,
      '',
    ].join('\n'),
  );
  return file;
}

async function frames(file: string): Promise<{ codec: string; frames: number }> {
  const r = await run('ffprobe', ['-v', 'error', '-count_frames', '-select_streams', 'v:0', '-show_entries', 'stream=codec_name,nb_read_frames', '-of', 'json', file]);
  const s = (JSON.parse(r.stdout || '{}') as { streams?: Array<{ codec_name: string; nb_read_frames: string }> }).streams?.[0];
  return { codec: s?.codec_name ?? '', frames: Number(s?.nb_read_frames ?? 0) };
}

for (const camLeg of ['udp', 'tcp'] as const) {
  for (const vmsLeg of ['udp', 'tcp'] as const) {
    t.test(`camera leg ${camLeg}, VMS leg ${vmsLeg}: the VMS records through camtap; the recording replays to the same frames`, { skip }, async (t) => {
      const dir = tempDir(t);
      const camPort = await freePort('tcp');
      const cam = await startCamera({ port: camPort, bind: '127.0.0.1', codec: 'h264', fps: 25 });
      t.teardown(() => cam.stop('SIGKILL'));
      const data = path.join(dir, 'data');
      const serve = await startServe(t, ['--config', config(dir, camPort, camLeg, 0), '--data', data]);
      const vmsFile = path.join(dir, 'vms.mkv');
      const vms = run('ffmpeg', ['-nostdin', '-v', 'error', '-rtsp_transport', vmsLeg, '-i', `rtsp://127.0.0.1:${serve.rtsp}/cam1`, '-map', '0:v', '-c', 'copy', '-y', vmsFile], { timeoutMs: 60_000 });
      await sleep(6000);
      await cam.stop('SIGKILL'); // the camera goes away: maxReconnects 0 ends the VMS session
      const r = await vms;
      t.equal(r.code, 0, `the VMS (ffmpeg) ends cleanly when the camera is gone ${r.stderr.slice(-300)}`);
      const got = await frames(vmsFile);
      t.equal(got.codec, 'h264');
      t.ok(got.frames >= 50, `the VMS recorded ${got.frames} frames`);
      t.match(serve.log(), /camera/i, 'the camera loss is logged');

      // What camtap recorded of the VMS leg: the stream camtap -> VMS, replayed once the
      // store has flushed and the catalog has checkpointed its last packets (each once a second).
      let streams = await camtapJson<StreamRecord[]>(['streams'], data);
      for (let i = 0; i < 20; i++) {
        await sleep(1200);
        const again = await camtapJson<StreamRecord[]>(['streams'], data);
        const same = JSON.stringify(again.map((s) => [s.id, s.packets])) === JSON.stringify(streams.map((s) => [s.id, s.packets]));
        streams = again;
        if (same) break;
      }
      const toVms = streams.filter((s) => s.src.endsWith(`:${serve.rtsp}`) || (s.url ?? '').includes('/cam1'));
      const leg = toVms.find((s) => s.direction !== 'client->server' && s.codec === 'H264' && !s.src.endsWith(`:${camPort}`));
      t.ok(leg, `the VMS leg is a recorded stream (${streams.map((s) => `${s.src}->${s.dst} ${s.codec}`).join(', ')})`);
      if (!leg) return;
      const replay = await run('ffmpeg', ['-nostdin', '-v', 'error', '-rtsp_transport', 'tcp', '-i', `rtsp://127.0.0.1:${serve.rtsp}/replay/${leg.id}?speed=max`, '-map', '0:v', '-c', 'copy', '-y', path.join(dir, 'replay.mkv')], { timeoutMs: 60_000 });
      t.equal(replay.code, 0, `replay of the recording exits 0 ${replay.stderr.slice(-300)}`);
      // The camera is killed mid-frame: whether a depacketizer writes the truncated last
      // access unit depends on how its input ends (a UDP timeout for the VMS, the end of a TCP
      // replay here), so that one frame may differ; every other frame must be there.
      const replayed = (await frames(path.join(dir, 'replay.mkv'))).frames;
      t.ok(Math.abs(replayed - got.frames) <= 1, `the recording replays to the frames the VMS recorded (${replayed} replayed, ${got.frames} at the VMS; the frame cut by the camera's death may differ)`);
      const dec = await run('ffmpeg', ['-nostdin', '-v', 'error', '-i', vmsFile, '-f', 'null', '-']);
      t.equal(dec.stderr.trim(), '', 'the VMS file decodes with no error');
    });
  }
}

t.test('three VMSs on one camera: the camera sees one client', { skip }, async (t) => {
  const dir = tempDir(t);
  const camPort = await freePort('tcp');
  const cam = await startCamera({ port: camPort, bind: '127.0.0.1', codec: 'h264', fps: 25 });
  t.teardown(() => cam.stop('SIGKILL'));
  const serve = await startServe(t, ['--config', config(dir, camPort, 'tcp', null), '--data', path.join(dir, 'data')]);
  const pull = (transport: string) => run('ffmpeg', ['-nostdin', '-v', 'error', '-rtsp_transport', transport, '-i', `rtsp://127.0.0.1:${serve.rtsp}/cam1`, '-t', '5', '-map', '0:v', '-f', 'framemd5', '-'], { timeoutMs: 60_000 });
  const rs = await Promise.all([pull('tcp'), pull('udp'), pull('tcp')]);
  rs.forEach((r, i) => {
    t.equal(r.code, 0, `VMS ${i + 1} exits 0`);
    t.equal(r.stderr.trim(), '', `VMS ${i + 1} decodes with no error`);
    t.ok(r.stdout.split('\n').filter((l) => /^\s*0,/.test(l)).length >= 50, `VMS ${i + 1} decoded video`);
  });
  t.equal((cam.log().match(/client connected/g) ?? []).length, 1, 'the camera saw one RTSP client');
  await sleep(2500); // a checkpoint
  const inv = await camtapJson<{ vms: Array<{ address: string; cameras: string[] }> }>(['inventory'], path.join(dir, 'data'));
  t.ok(inv.vms.some((v) => v.cameras.includes('cam1')), `the inventory learned the VMSs use cam1 through camtap (${JSON.stringify(inv.vms.map((v) => [v.address, v.cameras]))})`);
});

t.test('the camera disappears and returns: the VMS session survives, the reconnect is logged', { skip }, async (t) => {
  const dir = tempDir(t);
  const camPort = await freePort('tcp');
  let cam = await startCamera({ port: camPort, bind: '127.0.0.1', codec: 'h264', fps: 25 });
  t.teardown(() => cam.stop('SIGKILL'));
  const serve = await startServe(t, ['--config', config(dir, camPort, 'tcp', null), '--data', path.join(dir, 'data')]);
  const vms = run('ffmpeg', ['-nostdin', '-v', 'error', '-rtsp_transport', 'tcp', '-i', `rtsp://127.0.0.1:${serve.rtsp}/cam1`, '-t', '16', '-map', '0:v', '-f', 'framemd5', '-'], { timeoutMs: 60_000 });
  await sleep(4000);
  await cam.stop('SIGKILL');
  await sleep(2000);
  cam = await startCamera({ port: camPort, bind: '127.0.0.1', codec: 'h264', fps: 25 });
  const r = await vms;
  t.equal(r.code, 0, 'the VMS ran its 16 s to the end');
  const n = r.stdout.split('\n').filter((l) => /^\s*0,/.test(l)).length;
  t.ok(n >= 150, `frames before and after the outage reached the VMS (${n})`);
  t.match(serve.log(), /reconnect/i, 'the reconnect is logged');
  t.notMatch(serve.log(), /"level":(50|60)/, 'no error logged');
});

t.test('ONVIF: a VMS adopts the camera through camtap; GetStreamUri gives camtap\'s URI, and it plays', { skip }, async (t) => {
  const dir = tempDir(t);
  const camPort = await freePort('tcp');
  const cam = await startCamera({ port: camPort, bind: '127.0.0.1', codec: 'h264', fps: 25 });
  t.teardown(() => cam.stop('SIGKILL'));
  const sim = await startSim(t, { rtsp: `rtsp://127.0.0.1:${camPort}/stream1`, user: 'admin', password: 'onvif-secret' });
  const cfg = path.join(dir, 'camtap.yaml');
  writeFileSync(cfg, ['cameras:', `  - { name: door, address: 127.0.0.1, url: "rtsp://127.0.0.1:${camPort}/stream1", http: "${sim.base}" }`, ''].join('\n'));
  const serve = await startServe(t, ['--config', cfg, '--data', path.join(dir, 'data')]);
  const ports = { rtsp: serve.rtsp, http: serve.http! };
  const onvifCam = await new Promise<Cam>((resolve, reject) => {
    const c: Cam = new Cam({ hostname: '127.0.0.1', port: ports.http, path: '/cam/door/onvif/device_service', username: 'admin', password: 'onvif-secret', timeout: 5000 }, (err) => (err ? reject(err) : resolve(c)));
  });
  const info = await new Promise<{ manufacturer: string }>((resolve, reject) => onvifCam.getDeviceInformation((e, r) => (e ? reject(e) : resolve(r as { manufacturer: string }))));
  t.ok(info.manufacturer, `device information through camtap (${info.manufacturer})`);
  const uri = await new Promise<{ uri: string }>((resolve, reject) => onvifCam.getStreamUri({ protocol: 'RTSP' }, (e, r) => (e ? reject(e) : resolve(r as { uri: string }))));
  t.equal(uri.uri, `rtsp://127.0.0.1:${ports.rtsp}/door/stream1`, "GetStreamUri answers camtap's URI");
  const r = await run('ffmpeg', ['-nostdin', '-v', 'error', '-rtsp_transport', 'tcp', '-i', uri.uri, '-t', '3', '-map', '0:v', '-f', 'framemd5', '-'], { timeoutMs: 60_000 });
  t.equal(r.code, 0, 'ffmpeg plays that URI');
  t.ok(r.stdout.split('\n').filter((l) => /^\s*0,/.test(l)).length >= 25, 'and decodes video from the camera');
  t.equal((cam.log().match(/client connected/g) ?? []).length, 1, 'the camera was pulled by camtap alone');
  await sleep(1500); // a checkpoint: the catalog has the transactions
  const tx = await camtapJson<Array<{ operation?: string; request?: unknown }>>(['transactions'], path.join(dir, 'data'));
  t.ok(tx.some((x) => x.operation === 'GetStreamUri'), `the ONVIF exchanges are recorded as configuration transactions (${[...new Set(tx.map((x) => x.operation))].join(', ')})`);
  t.notMatch(JSON.stringify(tx), /onvif-secret/, 'no password in them');
});
