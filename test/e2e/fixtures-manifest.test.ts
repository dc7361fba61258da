/**
 * Ground truth: for every lab capture, the RTP streams and RTSP sessions camtap finds
 * equal the manifest tshark made beside it (SSRC, endpoints, packet counts, first/last
 * sequence, loss, duplicates; URL, session id, transport, ports).
 */
import t from 'tap';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { CAPTURES, camtap, camtapJson, tempDir } from '../helpers/camtap.js';
import type { SessionRecord, StreamRecord } from '../../core/contracts/records.js';
import { readManifest } from '../helpers/manifest.js';

const manifests = readdirSync(CAPTURES).filter((f) => f.endsWith('.manifest.json')).sort();

for (const mf of manifests) {
  const m = readManifest(mf);
  t.test(`${m.file}: streams and sessions equal tshark's manifest`, async (t) => {
    const data = tempDir(t);
    const imp = await camtap(['import', '--in-place', path.join(CAPTURES, m.file)], { data });
    t.equal(imp.code, 0, `import exits 0 (${imp.stderr.trim().split('\n').pop()})`);
    const streams = await camtapJson<StreamRecord[]>(['streams'], data);
    const sessions = await camtapJson<SessionRecord[]>(['sessions'], data);

    t.equal(streams.length, m.rtp_streams.length, 'same number of RTP streams');
    for (const ms of m.rtp_streams) {
      const ssrc = parseInt(ms.ssrc, 16);
      const s = streams.find((x) => x.src === ms.src && x.dst === ms.dst && x.ssrc === ssrc && x.transport === ms.transport);
      t.ok(s, `stream ${ms.transport} ${ms.src} -> ${ms.dst} ssrc ${ms.ssrc} found`);
      if (!s) continue;
      t.match(
        { packets: s.packets, duplicates: s.duplicates, firstSeq: s.firstSeq, lastSeq: s.lastSeq, lost: s.lost, outOfOrder: s.outOfOrder, payloadType: s.payloadType },
        { packets: ms.unique_packets, duplicates: ms.duplicates, firstSeq: ms.first_seq, lastSeq: ms.last_seq, lost: ms.lost, outOfOrder: ms.out_of_order, payloadType: ms.payload_types[0] },
        `${ms.ssrc} counts`,
      );
      t.equal(s.session, ms.rtsp_session, `${ms.ssrc} linked to RTSP session ${ms.rtsp_session}`);
      if (ms.interleaved_channel !== undefined) t.equal(s.channel, ms.interleaved_channel, 'interleaved channel');
    }

    t.equal(sessions.length, m.rtsp_sessions.length, 'same number of RTSP sessions');
    for (const ms of m.rtsp_sessions) {
      const s = sessions.find((x) => x.sessionId === ms.session_id && x.client === ms.client);
      t.ok(s, `session ${ms.session_id} of ${ms.client} found`);
      if (!s) continue;
      t.equal(s.server, ms.server, 'server');
      t.equal(s.url, ms.url, 'url');
      t.equal(s.timeout, ms.timeout, 'session timeout');
      t.equal(s.auth !== null, ms.auth !== null, 'auth used');
      t.same(s.requests.map((r) => [r.method, r.cseq, r.status]), ms.requests.map((r) => [r.method, r.cseq, r.status]), 'requests, CSeq and status');
      t.equal(s.tracks.length, ms.tracks.length, 'tracks');
      ms.tracks.forEach((mt, i) => {
        const st = s.tracks[i]!;
        t.equal(st.controlUrl, mt.control_url, 'track control URL');
        t.equal(st.transport, mt.transport?.raw ?? null, 'negotiated Transport');
        t.same(st.clientPorts, mt.transport?.client_port ?? null, 'client ports');
        t.same(st.serverPorts, mt.transport?.server_port ?? null, 'server ports');
        t.same(st.interleaved, mt.transport?.interleaved ?? null, 'interleaved channels');
      });
    }
  });
}
