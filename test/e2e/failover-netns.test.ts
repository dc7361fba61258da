/**
 * VMS failover end to end, with real peers in network namespaces this test creates
 * (test/helpers/netns.ts): the lab GStreamer camera in its namespace, ffmpeg as the VMS
 * in another, and `camtap serve` on a third host whose eth0 sees the camera<->VMS link
 * (the bridge floods like a hub; its tcpdump tap captures there).
 *
 * For the VMS pulling over UDP and over TCP interleaved: the VMS is killed (-9); camtap
 * notices by traffic cessation, replays the captured set-up from its own address (the
 * camera says which client connected), records; the VMS starts again, camtap gives the
 * camera back (TEARDOWN), sees the VMS's traffic again, and offers the gap. Ground truth
 * for what the camera sent during the outage: a capture in the camera's namespace, read
 * by tshark; for what was recorded: ffprobe decoding the gap's replay URL.
 */
import t from 'tap';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CLI } from '../helpers/camtap.js';
import { CAMERA_PY, PYTHON, cameraMissing, have } from '../helpers/peers.js';
import { fileURLToPath } from 'node:url';
import { netnsMissing, netnsTopology, type Topology } from '../helpers/netns.js';
import { tempDir } from '../helpers/camtap.js';

const PUSH_CAMERA_PY = path.join(path.dirname(fileURLToPath(import.meta.url)), '../helpers/push_camera.py');

const why = netnsMissing() ?? (await cameraMissing()) ?? (['tcpdump', 'tshark', 'ffmpeg', 'ffprobe', 'curl'].find((x) => !have(x)) ? 'tcpdump, tshark, ffmpeg and ffprobe are needed' : null);
if (why) {
  t.comment(`skipped: ${why}`);
  t.pass(`skipped: ${why}`, { skip: why });
} else {
  for (const transport of ['udp', 'tcp'] as const) {
    t.test(`VMS pulling over ${transport} is killed: camtap takes the camera over, records the outage and gives it back`, async (t) => {
      const work = tempDir(t, 'camtap-fo-');
      const topo = netnsTopology(t, { cameras: 1, vms: 1 });
      const camIp = topo.camIp(1);
      const vmsIp = topo.vmsIp(1);
      const camUrl = `rtsp://${camIp}:8554/stream1`;
      const camera = topo.spawnIn(topo.cam(1), 'camera', PYTHON, ['-u', CAMERA_PY, '--bind', camIp, '--port', '8554', '--path', '/stream1', '--codec', 'h264', '--fps', '25']);
      await camera.waitFor(/ready: rtsp:\/\//, 30_000);
      // What the camera sends camtap, seen at the camera.
      const camPcap = path.join(work, 'camera-side.pcap');
      const camCap = topo.spawnIn(topo.cam(1), 'tcpdump', 'tcpdump', ['-i', 'eth0', '-U', '-n', '-w', camPcap, 'host', topo.hostIp]);
      await camCap.waitFor(/listening on/, 10_000);

      const data = path.join(work, 'data');
      mkdirSync(data, { recursive: true });
      const config = path.join(work, 'camtap.yaml');
      writeFileSync(
        config,
        [
          `dataDir: ${data}`,
          'taps:',
          '  - name: span',
          '    driver: tcpdump',
          '    options: { interface: eth0 }',
          'serve: { rtspPort: 8554, httpPort: 8080, host: 0.0.0.0 }',
          'cameras:',
          `  - { name: cam1, address: ${camIp} }`,
          'vms:',
          `  - { name: vms1, address: ${vmsIp} }`,
          'failover:',
          '  auto: true',
          `  host: ${topo.hostIp}`,
          '  trafficTimeoutMs: 2000',
          '  recoverAfterMs: 3000',
          '  confirmMs: 10000',
          '  vms:',
          `    - { name: vms1, address: ${vmsIp} }`,
          '',
        ].join('\n'),
      );
      const ct = topo.spawnIn(topo.host, 'camtap', process.execPath, [CLI, 'serve', '--config', config], { ...process.env, CAMTAP_LOG_LEVEL: 'info' });
      await ct.waitFor(/camtap serving RTSP/, 60_000);
      const api = 'http://127.0.0.1:8080';
      const cli = (...args: string[]) => topo.exec(topo.host, process.execPath, [CLI, ...args, '--config', config]);
      const status = () => {
        const r = cli('failover', 'status', 'vms1', '--json', '--api', api);
        return r.code === 0 ? (JSON.parse(r.stdout) as Array<{ active: boolean; current: Record<string, any> | null }> | { active: boolean; current: Record<string, any> | null }) : null;
      };
      const one = () => {
        const s = status();
        return Array.isArray(s) ? (s[0] ?? null) : s;
      };

      // The VMS pulls the camera; camtap learns the dialog through its tap.
      const vmsOut1 = path.join(work, 'vms-before.mkv');
      const vms1 = topo.spawnIn(topo.vms(1), 'vms', 'ffmpeg', ['-nostdin', '-loglevel', 'info', '-rtsp_transport', transport, '-i', camUrl, '-c', 'copy', '-f', 'matroska', '-y', vmsOut1]);
      await until(t, 'camtap learned the VMS dialog', 30_000, () => {
        const r = cli('sessions', '--json');
        if (r.code !== 0) return false;
        const ss = JSON.parse(r.stdout) as Array<{ client: string; requests: Array<{ method: string; status: number | null }> }>;
        return ss.some((s) => s.client.startsWith(`${vmsIp}:`) && s.requests.some((q) => q.method === 'PLAY' && q.status === 200));
      });
      // A dry run lists every request and sends nothing (the camera-side capture shows nothing from camtap before the kill).
      const dry = cli('failover', 'start', 'vms1', '--dry-run', '--json');
      t.equal(dry.code, 0, `dry run exits 0 ${dry.stderr.slice(-300)}`);
      const dryRec = JSON.parse(dry.stdout) as { dryRun: boolean; redirect: Array<{ steps: Array<{ request: string; answer: string }> }> };
      t.ok(dryRec.dryRun, 'the record says dry run');
      t.same(
        dryRec.redirect[0]!.steps.map((x) => x.request.split(' ')[0]),
        ['OPTIONS', 'DESCRIBE', 'SETUP', 'PLAY'],
        'it lists the replayed set-up, request by request',
      );
      await sleep(3000);
      const killedAt = Date.now();
      await vms1.stop('SIGKILL');

      const started = await until(t, 'camtap failed the VMS over', 30_000, () => {
        const s = one();
        return s?.active && s.current?.redirect?.length ? s : null;
      });
      const rec = started.current!;
      t.ok(rec.redirect.every((c: { ok: boolean }) => c.ok), `every camera taken over: ${JSON.stringify(rec.redirect.map((c: { camera: string; ok: boolean; reason?: string }) => [c.camera, c.ok, c.reason]))}`);
      t.equal(rec.redirect[0].strategy, 'rtsp-replay', 'by replaying the captured RTSP set-up');
      await until(t, 'the camera sees camtap connect', 10_000, () => camera.log().includes(`client connected: ${topo.hostIp}`));
      t.comment(`detection: failover started ${Date.parse(rec.start) - killedAt} ms after the VMS was killed`);

      await sleep(6000);
      // The VMS comes back; camtap gives the camera back once it has been healthy for recoverAfterMs.
      const vmsOut2 = path.join(work, 'vms-after.mkv');
      const vms2 = topo.spawnIn(topo.vms(1), 'vms', 'ffmpeg', ['-nostdin', '-loglevel', 'info', '-rtsp_transport', transport, '-i', camUrl, '-t', '20', '-c', 'copy', '-f', 'matroska', '-y', vmsOut2]);
      const ended = await until(t, 'camtap restored the VMS', 60_000, () => {
        const s = one();
        return s && !s.active && s.current?.end ? s : null;
      });
      const done = ended.current!;
      t.ok(done.restore.every((c: { ok: boolean }) => c.ok), `give-back ok: ${JSON.stringify(done.restore.map((c: { camera: string; ok: boolean; reason?: string }) => [c.camera, c.ok, c.reason]))}`);
      t.equal(done.resumed, true, "the VMS's traffic to the camera was seen again");
      t.equal(done.gap.length, 1, 'the gap is offered for the camera');
      const gap = done.gap[0] as { replayUrl: string; packets: number; start: string; end: string };
      t.ok(gap.packets > 0, `camtap recorded ${gap.packets} packets over the outage`);
      await vms2.stop('SIGINT');
      await camCap.stop('SIGINT');

      // Ground truth: access units the camera sent to camtap before the give-back (tshark on the camera-side capture).
      const fromCamtapBefore = topo.exec(topo.host, 'tshark', ['-r', camPcap, '-Y', `ip.src==${topo.hostIp} and frame.time_epoch < ${killedAt / 1000}`, '-T', 'fields', '-e', 'frame.number']);
      t.equal(fromCamtapBefore.stdout.trim(), '', 'nothing reached the camera from camtap before the VMS died (the dry run sent nothing)');
      // A frame ends with the RTP marker bit (RFC 6184 §5.1); a TCP segment may carry several
      // interleaved RTP packets, so every occurrence counts. (This camera's encoder gives
      // some consecutive frames one RTP timestamp: timestamps do not count frames here.)
      const fields = topo.exec(topo.host, 'tshark', ['-r', camPcap, '-o', 'rtp.heuristic_rtp:TRUE', '-Y', `rtp and ip.src==${camIp} and ip.dst==${topo.hostIp} and not icmp`, '-T', 'fields', '-E', 'occurrence=a', '-E', 'aggregator=,', '-e', 'frame.time_epoch', '-e', 'rtp.marker']);
      const frameEnds: number[] = [];
      let rtpPackets = 0;
      for (const line of fields.stdout.trim().split('\n').filter(Boolean)) {
        const [time, marks] = line.split('\t');
        for (const m of (marks ?? '').split(',').filter(Boolean)) {
          rtpPackets++;
          if (m === '1' || m === 'True') frameEnds.push(Number(time) * 1000);
        }
      }
      t.comment(`camera side: ${rtpPackets} RTP packets, ${frameEnds.length} frames to camtap`);
      const endMs = Date.parse(gap.end);
      const sent = frameEnds.filter((ms) => ms <= endMs);
      const firstMs = Math.min(...frameEnds);
      t.ok(sent.length > 25, `the camera sent camtap ${sent.length} frames before the give-back`);
      t.comment(`first packet at camtap ${Math.round(firstMs - killedAt)} ms after the VMS was killed`);
      // What camtap recorded over the outage, decoded.
      const url = gap.replayUrl.replace(/^rtsp:\/\/[^/]+/, 'rtsp://127.0.0.1:8554') + '&speed=4';
      const probe = topo.exec(topo.host, 'ffprobe', ['-v', 'error', '-rtsp_transport', 'tcp', '-count_frames', '-select_streams', 'v:0', '-show_entries', 'stream=nb_read_frames', '-of', 'csv=p=0', url], { timeoutMs: 120_000 });
      const recorded = Number(probe.stdout.trim().split('\n')[0]);
      const streams = JSON.parse(cli('streams', '--json').stdout) as Array<{ id: string; src: string; dst: string; packets: number; frames: number; duplicates: number; start: string; end: string; taps: number[] }>;
      t.comment(`streams: ${JSON.stringify(streams.map((s) => [s.id, s.src, s.dst, s.packets, s.frames, s.duplicates, s.start, s.end, s.taps]))}; gap ${gap.start}..${gap.end} ${url}`);
      t.ok(Math.abs(recorded - sent.length) <= 2, `the gap's replay decodes ${recorded} frames; the camera sent ${sent.length} (ffprobe vs tshark, ±2 at the period's edges)`);
      const after = topo.exec(topo.vms(1), 'ffprobe', ['-v', 'error', '-count_frames', '-select_streams', 'v:0', '-show_entries', 'stream=nb_read_frames', '-of', 'csv=p=0', vmsOut2]);
      t.ok(Number(after.stdout.trim()) > 25, `the VMS records again after the restore (${after.stdout.trim()} frames)`);
      await ct.stop('SIGTERM');
      await camera.stop();
    });
  }

  t.test('Digest-auth cameras: the replay answers the new challenge with the configured credentials; without them the reason is reported', async (t) => {
    const work = tempDir(t, 'camtap-fo-auth-');
    const topo = netnsTopology(t, { cameras: 2, vms: 1 });
    const vmsIp = topo.vmsIp(1);
    const cams = [1, 2].map((i) => topo.spawnIn(topo.cam(i), `camera${i}`, PYTHON, ['-u', CAMERA_PY, '--bind', topo.camIp(i), '--port', '8554', '--path', '/stream1', '--codec', 'h264', '--auth', 'digest', '--user', 'admin', '--password', `secret${i}`]));
    for (const c of cams) await c.waitFor(/ready: rtsp:\/\//, 30_000);
    const { cli } = await startCamtap(t, topo, work, [
      'cameras:',
      `  - { name: cam1, address: ${topo.camIp(1)}, user: admin, password: secret1 }`,
      `  - { name: cam2, address: ${topo.camIp(2)} }`,
      'vms:',
      `  - { name: vms1, address: ${vmsIp} }`,
      'failover:',
      `  host: ${topo.hostIp}`,
    ]);
    for (const i of [1, 2]) topo.spawnIn(topo.vms(1), `vms-cam${i}`, 'ffmpeg', ['-nostdin', '-loglevel', 'error', '-rtsp_transport', 'tcp', '-i', `rtsp://admin:secret${i}@${topo.camIp(i)}:8554/stream1`, '-c', 'copy', '-f', 'null', '-']);
    await until(t, 'camtap learned both dialogs', 30_000, () => {
      const r = cli('sessions', '--json');
      const ss = r.code === 0 ? (JSON.parse(r.stdout) as Array<{ server: string; requests: Array<{ method: string; status: number | null }> }>) : [];
      return [1, 2].every((i) => ss.some((x) => x.server.startsWith(`${topo.camIp(i)}:`) && x.requests.some((q) => q.method === 'PLAY' && q.status === 200)));
    });
    const r = cli('failover', 'start', 'vms1', '--json', '--api', 'http://127.0.0.1:8080');
    const rec = JSON.parse(r.stdout) as { redirect: Array<{ camera: string; ok: boolean; reason?: string; steps: Array<{ request: string; status: number | null }> }> };
    const byCam = new Map(rec.redirect.map((c) => [c.camera, c]));
    t.equal(byCam.get('cam1')?.ok, true, `cam1 (credentials configured) taken over: ${byCam.get('cam1')?.reason ?? ''}`);
    t.ok(byCam.get('cam1')?.steps.some((x) => x.request.startsWith('PLAY') && x.status === 200), 'its PLAY was answered 200 after the fresh Digest answer');
    await until(t, 'camera 1 sees camtap connect', 10_000, () => cams[0]!.log().includes(`client connected: ${topo.hostIp}`));
    t.equal(byCam.get('cam2')?.ok, false, 'cam2 (no credentials) is not taken over');
    t.match(byCam.get('cam2')?.reason ?? '', /401/, `and the reason says why: ${byCam.get('cam2')?.reason}`);
    t.match(byCam.get('cam2')?.reason ?? '', /credential/i, 'naming the missing credentials');
    t.equal(r.code, 1, 'the command exits 1 when a camera could not be taken over');
    const end = cli('failover', 'end', 'vms1', '--json', '--api', 'http://127.0.0.1:8080');
    const endRec = JSON.parse(end.stdout) as { restore: Array<{ camera: string; ok: boolean; steps: Array<{ request: string; status: number | null }> }> };
    t.ok(endRec.restore.find((c) => c.camera === 'cam1')?.steps.some((x) => x.request.startsWith('TEARDOWN') && x.status === 200), 'the give-back tears camtap\'s session down');
  });

  t.test('a push camera configured over HTTP: the captured request is replayed with camtap\'s address, and restore points it back', async (t) => {
    const work = tempDir(t, 'camtap-fo-push-');
    const topo = netnsTopology(t, { cameras: 1, vms: 1 });
    const camIp = topo.camIp(1);
    const vmsIp = topo.vmsIp(1);
    const cam = topo.spawnIn(topo.cam(1), 'push-camera', PYTHON, ['-u', PUSH_CAMERA_PY, '--bind', camIp, '--port', '80']);
    await cam.waitFor(/ready: http/, 15_000);
    const { cli } = await startCamtap(t, topo, work, [
      'classify: { rtpPorts: [5004] }',
      'cameras:',
      `  - { name: pushcam, address: ${camIp} }`,
      'vms:',
      `  - { name: vms1, address: ${vmsIp} }`,
      'failover:',
      `  host: ${topo.hostIp}`,
    ]);
    // The VMS points the camera at itself, as a VMS adopting a push camera does.
    const set = topo.exec(topo.vms(1), 'curl', ['-sS', '-X', 'POST', '--data', `dest=${vmsIp}&port=5004`, `http://${camIp}/cgi-bin/stream.cgi`]);
    t.equal(set.code, 0, `the VMS configured the camera ${set.stderr}`);
    await cam.waitFor(new RegExp(`pushing to ${vmsIp.replace(/\./g, '\\.')}:5004`), 10_000);
    await until(t, 'camtap learned the configuration request and the pushed stream', 30_000, () => {
      const tx = cli('transactions', '--json');
      const st = cli('streams', '--json');
      return tx.code === 0 && tx.stdout.includes('stream.cgi') && st.code === 0 && st.stdout.includes(`${vmsIp}:5004`);
    });
    const plan = cli('failover', 'plan', 'vms1', '--json');
    const p = JSON.parse(plan.stdout) as { cameras: Array<{ camera: string; strategy: string; steps: Array<{ kind: string; body?: string }> }> };
    t.equal(p.cameras[0]?.strategy, 'http-replay', 'the plan replays the captured HTTP request');
    t.match(p.cameras[0]?.steps[0]?.body ?? '', new RegExp(`dest=${topo.hostIp.replace(/\./g, '\\.')}`), 'with camtap\'s address in place of the VMS\'s');
    const r = cli('failover', 'start', 'vms1', '--json', '--api', 'http://127.0.0.1:8080');
    t.equal(r.code, 0, `failover start ok ${r.stdout.slice(0, 600)}`);
    const now = topo.exec(topo.cam(1), 'curl', ['-sS', `http://${camIp}/cgi-bin/stream.cgi`]).stdout.trim();
    t.match(now, new RegExp(`^dest=${topo.hostIp.replace(/\./g, '\\.')}&port=\\d+`), `the camera now pushes to camtap (${now})`);
    const port = Number(/port=(\d+)/.exec(now)?.[1]);
    await until(t, 'camtap records what the camera pushes', 20_000, () => {
      const st = JSON.parse(cli('streams', '--json').stdout) as Array<{ dst: string; packets: number }>;
      return st.some((x) => x.dst === `${topo.hostIp}:${port}` && x.packets > 50);
    });
    t.pass('camtap records the pushed stream on the port it asked for');
    const end = cli('failover', 'end', 'vms1', '--json', '--api', 'http://127.0.0.1:8080');
    t.equal(end.code, 0, `failover end ok ${end.stdout.slice(0, 600)}`);
    const back = topo.exec(topo.cam(1), 'curl', ['-sS', `http://${camIp}/cgi-bin/stream.cgi`]).stdout.trim();
    t.equal(back, `dest=${vmsIp}&port=5004`, 'restore points the camera back at the VMS');
  });
}

/** `camtap serve` on the camtap host of `topo` (RTSP 8554, API 8080 there), tapping its eth0, with extra config lines. */
async function startCamtap(t: { teardown(fn: () => unknown): void }, topo: Topology, work: string, extra: string[]) {
  const data = path.join(work, 'data');
  mkdirSync(data, { recursive: true });
  const config = path.join(work, 'camtap.yaml');
  writeFileSync(config, [`dataDir: ${data}`, 'taps:', '  - name: span', '    driver: tcpdump', '    options: { interface: eth0 }', 'serve: { rtspPort: 8554, httpPort: 8080, host: 0.0.0.0 }', ...extra, ''].join('\n'));
  const ct = topo.spawnIn(topo.host, 'camtap', process.execPath, [CLI, 'serve', '--config', config], { ...process.env, CAMTAP_LOG_LEVEL: 'info' });
  t.teardown(() => ct.stop('SIGTERM'));
  await ct.waitFor(/camtap serving RTSP/, 60_000);
  const cli = (...args: string[]) => topo.exec(topo.host, process.execPath, [CLI, ...args, '--config', config]);
  return { ct, cli, config };
}

async function until<T>(t: { comment(s: string): void }, what: string, ms: number, fn: () => T | null | undefined | false): Promise<NonNullable<T>> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(500);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export type { Topology };
