/**
 * End to end: relayed traffic reported to an inline tap that the TapRunner runs on the
 * real store and pipeline (createCamtap in write mode) becomes stored segments that
 * tshark reads, and the session, stream and counts camtap learns from them equal
 * tshark's reading of those segments and what was sent.
 */
import t from 'tap';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { loadConfig, catalogUrl } from '../../../core/config.js';
import { createCamtap } from '../../../core/container.js';
import { Catalog } from '../../../core/catalog/catalog.js';
import { TapRunner, inventoryResolver } from '../../../core/capture/tap-runner.js';
import { silentLogger } from '../../../core/logger.js';
import type { InlineRecorder } from '../../../core/contracts/inline.js';
import { noTshark, recordLab, tempDir, tsharkFields } from './capture.js';

const RTP_COUNT = 200;
const CHECKS = ['-o', 'ip.check_checksum:TRUE', '-o', 'tcp.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE'];

for (const v6 of [false, true]) {
  const family = v6 ? 'IPv6' : 'IPv4';
  t.test(`${family}: a relayed DESCRIBE/SETUP/PLAY dialog and its RTP: camtap learns the session and the H264 stream, every packet counted`, { skip: noTshark }, async (t) => {
    const dataDir = tempDir(t);
    const { config } = loadConfig({ dataDir, env: {} });
    const c = await createCamtap(config, silentLogger, { command: 'test inline' });
    let closed = false;
    t.teardown(async () => {
      if (!closed) await c.close();
    });
    const { store, pipeline, ingest, catalog, plugins } = c.cradle;
    const tapId = await catalog.tapId('gw');
    const runner = new TapRunner({ config, log: silentLogger, plugins, store, pipeline, ingest, resolve: inventoryResolver(config) });
    let recorder: InlineRecorder | null = null;
    const ac = new AbortController();
    runner.start([{ id: tapId, name: 'gw', driver: 'inline', filter: {}, options: { onRecorder: (r: InlineRecorder) => (recorder = r) } }], ac.signal);
    t.ok(recorder, 'the recorder is handed out when the runner creates the tap');
    const lab = recordLab(recorder!, v6, 8554, RTP_COUNT);
    await runner.stop();
    const st = runner.status()[0]!;
    t.match(st, { name: 'gw', driver: 'inline', state: 'stopped', drops: 0 });
    t.same(runner.failed(), []);
    closed = true;
    await c.close();

    // tshark's reading of the segments the store wrote.
    const segDir = path.join(dataDir, 'segments');
    const files = readdirSync(segDir).filter((f) => f.endsWith('.pcapng')).map((f) => path.join(segDir, f));
    t.equal(files.length, 1, 'one sealed segment');
    const seg = files[0]!;
    const decode = ['-d', 'udp.port==12260,rtp'];
    const ip = v6 ? 'ipv6' : 'ip';
    const frames = tsharkFields(seg, ['frame.len', 'tcp.checksum.status', 'udp.checksum.status'], CHECKS);
    t.equal(frames.length, st.packets, 'the store holds every frame the tap delivered');
    t.ok(frames.every((r) => r[1] === '1' || r[2] === '1'), 'with good checksums');
    const rtp = tsharkFields(seg, [`${ip}.src`, 'udp.srcport', `${ip}.dst`, 'udp.dstport', 'rtp.ssrc'], [...decode, '-Y', 'rtp']);
    t.equal(rtp.length, RTP_COUNT, 'tshark sees every RTP packet sent');
    const [rs] = tsharkFields(seg, [`${ip}.src`, 'tcp.srcport', `${ip}.dst`, 'tcp.dstport', 'rtsp.session'], ['-Y', 'rtsp.response && rtsp.transport']);
    const [mime] = tsharkFields(seg, ['sdp.mime.type'], ['-Y', 'sdp']);
    const ep = (a: string, p: string) => (a.includes(':') ? `[${a}]:${p}` : `${a}:${p}`);

    // What camtap learned.
    const cat = await Catalog.open({ url: catalogUrl(config), namespace: config.catalog.namespace });
    t.teardown(() => cat.close());
    const sessions = await cat.listSessions();
    t.equal(sessions.length, 1, 'one RTSP session');
    const s = sessions[0]!;
    t.same([s.sessionId, s.server, s.client], [rs![4]!.split(';')[0], ep(rs![0]!, rs![1]!), ep(rs![2]!, rs![3]!)], 'its id and endpoints as tshark reads them');
    t.match(s.sdp, /a=rtpmap:96 H264\/90000/, 'the DESCRIBE SDP');
    t.ok(s.taps.includes(tapId), 'seen by the inline tap');
    const streams = (await cat.listStreams()).filter((x) => x.transport === 'udp');
    t.equal(streams.length, 1, 'one RTP stream');
    const x = streams[0]!;
    t.same(
      [x.src, x.dst, x.ssrc, x.codec, x.session, x.direction],
      [ep(rtp[0]![0]!, rtp[0]![1]!), ep(rtp[0]![2]!, rtp[0]![3]!), parseInt(rtp[0]![4]!, 16), mime![0], s.sessionId, 'server->client'],
      'the stream of the SETUP, with the SDP codec',
    );
    t.equal(x.packets, lab.rtp.length, 'packet count = datagrams sent');
    t.equal(x.lost, 0);
  });
}
