import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient } from '@keyv/redis';
import { Catalog } from '../../../core/catalog/catalog.js';
import { bucketOf, segmentSpan, MAX_SEGMENT_BUCKETS } from '../../../core/catalog/time-buckets.js';
import { isCamtapError } from '../../../core/errors.js';
import type { SegmentRecord, SessionRecord, StreamRecord, CameraRecord, VmsRecord, HttpTransaction } from '../../../core/contracts/records.js';
import { freePort, startPostgres, startRedis, type RunningService } from '../../helpers/services.js';

// ---------------------------------------------------------------------------------------
// Realistic records: streams and RTSP dialogs of a real 5-camera capture, from the
// tshark-made manifest (fixtures/captures/netns_multi.manifest.json).

interface ManifestStream {
  transport: 'udp' | 'tcp'; src: string; dst: string; ssrc: string; payload_types: number[];
  packets: number; unique_packets: number; duplicates: number; out_of_order: number;
  first_seq: number; last_seq: number; min_ext_seq: number; max_ext_seq: number; lost: number;
  first_time: number; last_time: number; markers: number; access_units: number; payload_bytes: number;
  rtsp_session: string | null; direction?: string; interleaved_channel?: number; decode: { codec: string; clock_rate: number } | null;
}
interface ManifestSession {
  client: string; server: string; url: string; session_id: string | null; timeout: number | null;
  requests: Array<{ method: string; url: string; cseq: number; time: number; status: number | null }>;
}
const manifest = JSON.parse(readFileSync(new URL('../../../fixtures/captures/netns_multi.manifest.json', import.meta.url), 'utf8')) as {
  rtp_streams: ManifestStream[];
  rtsp_sessions: ManifestSession[];
};

/** Seconds with microseconds (as tshark prints them) to an exact decimal ns string. */
const secNs = (s: number): string => s.toFixed(6).replace('.', '') + '000';
const iso = (s: number): string => new Date(Math.floor(s * 1000)).toISOString().replace(/\.\d+Z$/, `.${s.toFixed(6).split('.')[1]}Z`);

const streams: StreamRecord[] = manifest.rtp_streams.map((m) => ({
  id: `${m.transport}:${m.src}>${m.dst}:${m.ssrc.toLowerCase()}`,
  camera: m.direction === 'client->server' ? m.dst.split(':')[0]! : m.src.split(':')[0]!,
  src: m.src,
  dst: m.dst,
  transport: m.transport,
  ...(m.interleaved_channel === undefined ? {} : { channel: m.interleaved_channel }),
  ssrc: Number.parseInt(m.ssrc, 16),
  payloadType: m.payload_types[0]!,
  codec: m.decode?.codec ?? null,
  clockRate: m.decode?.clock_rate ?? null,
  direction: m.direction === undefined ? 'unknown' : m.direction.startsWith('server->client') ? 'server->client' : 'client->server',
  session: m.rtsp_session,
  url: null,
  packets: m.unique_packets,
  duplicates: m.duplicates,
  outOfOrder: m.out_of_order,
  firstSeq: m.first_seq,
  lastSeq: m.last_seq,
  minExtSeq: m.min_ext_seq,
  maxExtSeq: m.max_ext_seq,
  lost: m.lost,
  markers: m.markers,
  frames: m.access_units,
  keyframes: 1,
  payloadBytes: m.payload_bytes,
  start: iso(m.first_time),
  end: iso(m.last_time),
  startNs: secNs(m.first_time),
  endNs: secNs(m.last_time),
  srNtpMs: null,
  srRtpTs: null,
  taps: [0],
  malformed: 0,
}));
/** The manifest's own first_time order (tshark's numbers, not the catalog's comparator). */
const streamsByTime = [...manifest.rtp_streams]
  .map((m, i) => ({ t: m.first_time, rec: streams[i]! }))
  .sort((a, b) => a.t - b.t || (a.rec.id < b.rec.id ? -1 : 1))
  .map((x) => x.rec);

const sessions: SessionRecord[] = manifest.rtsp_sessions.map((m, i) => ({
  id: `${m.client}>${m.server}#${i}`,
  sessionId: m.session_id,
  timeout: m.timeout,
  client: m.client,
  server: m.server,
  url: m.url,
  contentBase: `${m.url}/`,
  sdp: 'v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n',
  auth: null,
  userAgent: 'Lavf60.16.100',
  tracks: [],
  requests: m.requests.map((r) => ({
    method: r.method,
    url: r.url,
    cseq: r.cseq,
    status: r.status,
    time: iso(r.time),
    requestAt: [{ segment: 1, offset: 1024 + r.cseq * 300 }],
    responseAt: [{ segment: 1, offset: 1200 + r.cseq * 300 }],
    headers: { CSeq: String(r.cseq), 'User-Agent': 'Lavf60.16.100' },
    responseHeaders: { CSeq: String(r.cseq) },
  })),
  camera: m.server.split(':')[0]!,
  vms: m.client.split(':')[0]!,
  start: iso(m.requests[0]!.time),
  end: iso(m.requests[m.requests.length - 1]!.time),
  taps: [0],
}));

const cameras: CameraRecord[] = [
  { name: 'cam-lobby', address: '10.77.0.11', urls: ['rtsp://10.77.0.11:554/stream1'], codecs: ['H264'], vms: ['10.77.0.101', '10.77.0.102'], firstSeen: '2026-11-23T21:06:42.918Z', lastSeen: '2026-11-23T21:06:49.000Z' },
  { name: 'cam-dock', address: '10.77.0.14', urls: ['rtsp://10.77.0.14:554/stream1'], codecs: ['JPEG'], vms: ['10.77.0.102'], firstSeen: '2026-11-23T21:06:45.397Z', lastSeen: '2026-11-23T21:06:49.000Z' },
];
const vmses: VmsRecord[] = [
  { name: 'vms-b', address: '10.77.0.102', userAgents: ['Lavf60.16.100'], cameras: ['cam-lobby', 'cam-dock'], firstSeen: '2026-11-23T21:06:44.909Z', lastSeen: '2026-11-23T21:06:49.000Z' },
  { name: 'vms-a', address: '10.77.0.101', userAgents: ['Lavf60.16.100'], cameras: ['cam-lobby'], firstSeen: '2026-11-23T21:06:42.918Z', lastSeen: '2026-11-23T21:06:49.000Z' },
];
const transactions: HttpTransaction[] = [
  { id: 'tx-2', kind: 'onvif', client: '10.77.0.101:40000', server: '10.77.0.11:80', method: 'POST', url: '/onvif/media_service', status: 200, operation: 'GetStreamUri', time: '2026-11-23T21:06:42.500Z', requestAt: [{ segment: 1, offset: 24 }], responseAt: [{ segment: 1, offset: 900 }], headers: { 'Content-Type': 'application/soap+xml' }, camera: 'cam-lobby', vms: 'vms-a' },
  { id: 'tx-1', kind: 'http', client: '10.77.0.101:40001', server: '10.77.0.11:80', method: 'GET', url: '/cgi-bin/param.cgi', status: 401, operation: null, time: '2026-11-23T21:06:42.25Z', requestAt: [{ segment: 1, offset: 2000 }], responseAt: [], headers: {}, camera: 'cam-lobby', vms: 'vms-a' },
];

// ---------------------------------------------------------------------------------------
// Segments on hand-computed minute boundaries. Minute M starts at T0 = M * 60 s.

const M = 29_924_466n; // 2026-11-23T21:06:00Z: Date.UTC(2026, 10, 23, 21, 6) / 60000
const T0 = M * 60_000_000_000n;
const s = (sec: number): bigint => T0 + BigInt(Math.round(sec * 1e9));
const seg = (id: number, fromSec: number, toSec: number, sealed = true): SegmentRecord => ({
  id,
  path: `segments/${String(id).padStart(8, '0')}.pcapng`,
  format: 'pcapng',
  external: false,
  sealed,
  bytes: 1_000_000 + id,
  packets: 1000 + id,
  startNs: String(s(fromSec)),
  endNs: String(s(toSec)),
  streams: [streams[1]!.id],
});

// ---------------------------------------------------------------------------------------
// Real servers for this file (started before the first test: tap ends a root test that
// goes idle once a subtest has run).

const redis = await startRedis();
const postgres = await startPostgres();
t.teardown(async () => {
  await redis?.stop();
  await postgres?.stop();
});

// ---------------------------------------------------------------------------------------

t.test('minute buckets are floor(ns / 60 s), before the epoch too', async (t) => {
  t.equal(M * 60_000n, BigInt(Date.UTC(2026, 10, 23, 21, 6)), 'the fixture minute is what the comment says');
  t.equal(bucketOf(0n), 0n);
  t.equal(bucketOf(59_999_999_999n), 0n);
  t.equal(bucketOf(60_000_000_000n), 1n);
  t.equal(bucketOf(-1n), -1n);
  t.equal(bucketOf(-60_000_000_000n), -1n);
  t.equal(bucketOf(-60_000_000_001n), -2n);
  t.same(segmentSpan(s(30), s(150)), { first: M, last: M + 2n });
  t.same(segmentSpan(s(150), s(30)), { first: M, last: M + 2n }, 'ends in either order');
  t.same(segmentSpan(s(0), s(Number(MAX_SEGMENT_BUCKETS) * 60 - 1)), { first: M, last: M + MAX_SEGMENT_BUCKETS - 1n }, 'exactly a day of buckets is still bucketed');
  t.equal(segmentSpan(s(0), s(Number(MAX_SEGMENT_BUCKETS) * 60)), 'wide', 'one bucket more goes on the wide list');
});

const sqliteDir = mkdtempSync(join(tmpdir(), 'camtap-catalog-'));
t.teardown(() => rmSync(sqliteDir, { recursive: true, force: true }));


interface Backend {
  name: string;
  url: string | null;
  skip: string | false;
}
const backends: Backend[] = [
  { name: 'sqlite', url: `sqlite://${join(sqliteDir, 'catalog.sqlite')}`, skip: false },
  { name: 'redis', url: redis?.url ?? null, skip: redis === null ? 'redis-server is not installed' : false },
  { name: 'postgresql', url: postgres?.url ?? null, skip: postgres === null ? 'PostgreSQL (initdb, postgres) is not installed' : false },
];

let nsCounter = 0;
/** A namespace of its own per subtest: the backends are shared across subtests. */
const freshNs = (): string => `t${process.pid}-${++nsCounter}`;

for (const b of backends) {
  t.test(`catalog on ${b.name}`, { skip: b.skip }, async (t) => {
    const url = b.url!;
    const open = async (t: Tap, namespace: string): Promise<Catalog> => {
      const c = await Catalog.open({ url, namespace });
      t.teardown(() => c.close());
      return c;
    };
    type Tap = typeof t;

    t.test('streams, sessions, transactions and inventory round-trip and list in order', async (t) => {
      const c = await open(t, freshNs());
      t.equal(c.url, url);
      t.same(await c.listStreams(), [], 'empty at first');
      t.equal(await c.getStream(streams[0]!.id), undefined);
      await c.putStreams([...streams].reverse());
      await c.putSessions(sessions);
      await c.putTransactions(transactions);
      await c.putCameras(cameras);
      await c.putVms(vmses);
      t.strictSame(await c.listStreams(), streamsByTime, 'streams by first packet time (the manifest order)');
      t.strictSame(await c.getStream(streams[4]!.id), streams[4], 'the TCP interleaved H.265 stream as it was put');
      t.equal((await c.getStream(streams[4]!.id))?.startNs, '1795468004362675000', 'ns time exact as a string');
      t.strictSame(await c.listSessions(), sessions, 'sessions by start (the capture order)');
      t.strictSame(await c.getSession(sessions[2]!.id), sessions[2]);
      t.equal(await c.getSession('nope'), undefined);
      t.strictSame(await c.listTransactions(), [transactions[1], transactions[0]], '21:06:42.25 before 21:06:42.500 (not string order)');
      t.strictSame(await c.listCameras(), [cameras[1], cameras[0]], 'cameras by name');
      t.strictSame(await c.listVms(), [vmses[1], vmses[0]], 'VMSs by name');
    });

    t.test('a later put replaces a record without listing it twice', async (t) => {
      const c = await open(t, freshNs());
      await c.putStreams(streams.slice(0, 3));
      const updated = { ...streams[1]!, packets: streams[1]!.packets + 250, endNs: '1795468010000000000' };
      await c.putStreams([updated, streams[3]!]);
      const list = await c.listStreams();
      t.equal(list.length, 4);
      t.strictSame(list.find((x) => x.id === updated.id), updated);
      await c.putStreams([streams[0]!, { ...streams[0]!, packets: 7 }]);
      t.equal((await c.getStream(streams[0]!.id))?.packets, 7, 'within one batch the later duplicate wins');
      t.equal((await c.listStreams()).length, 4);
    });

    t.test('overlapping batches keep every id and the last write of each record', async (t) => {
      const c = await open(t, freshNs());
      const many = Array.from({ length: 40 }, (_, i) => ({ ...streams[i % streams.length]!, id: `s-${String(i).padStart(2, '0')}`, packets: i }));
      // 20 batches in flight at once, each overlapping the next by one id.
      await Promise.all(Array.from({ length: 20 }, (_, k) => c.putStreams(many.slice(2 * k, 2 * k + 3).map((r) => ({ ...r, packets: r.packets * 100 + k })))));
      const ids = (await c.listStreams()).map((x) => x.id).sort();
      t.strictSame(ids, many.map((x) => x.id), 'all 40 ids listed once');
      t.equal((await c.getStream('s-02'))?.packets, 201, 's-02 was in batches 0 and 1: batch 1 (called later) wins');
      await Promise.all([c.putCameras([cameras[0]!]), c.putCameras([cameras[1]!]), c.putVms([vmses[0]!]), c.putVms([vmses[1]!])]);
      t.equal((await c.listCameras()).length, 2);
      t.equal((await c.listVms()).length, 2);
    });

    t.test('segmentsInRange finds segments by the minutes they touch', async (t) => {
      const c = await open(t, freshNs());
      const a = seg(1, 30, 150); // minutes M, M+1, M+2
      const bSeg = seg(2, 200, 230); // minute M+3
      const before = seg(3, -120, -50); // minutes M-2, M-1
      const day2 = seg(4, 86_400 + 10, 86_400 + 20);
      await c.putSegments([bSeg, a, before, day2]);
      t.strictSame(await c.listSegments(), [a, bSeg, before, day2], 'manifest by id');
      t.strictSame(await c.segmentsInRange(s(125), s(130)), [a], 'a range touching only the last minute of a 3-minute segment');
      t.strictSame(await c.segmentsInRange(s(150), s(150)), [a], 'its end is inclusive');
      t.strictSame(await c.segmentsInRange(s(150.000000001), s(199.999999999)), [], 'the gap between two segments holds none, though it shares their minutes');
      t.strictSame(await c.segmentsInRange(s(0), s(59)), [a], 'the segment before ends a minute earlier: read as slack, filtered out');
      t.strictSame(await c.segmentsInRange(s(-100), s(210)), [before, a, bSeg], 'several, by start');
      t.strictSame(await c.segmentsInRange(s(86_400), s(86_400 + 15)), [day2]);
      t.strictSame(await c.segmentsInRange(s(130), s(125)), [], 'an inverted range is empty');
      t.strictSame(await c.segmentsInRange(s(-86_400 * 30), s(86_400 * 30)), [before, a, bSeg, day2], 'a range over a week wide reads the manifest');
      await t.rejects(c.putSegments([{ ...a, id: 9, endNs: '1.5e18' }]), TypeError, 'a non-decimal ns time is refused');
      t.equal((await c.listSegments()).length, 4, 'and nothing of that batch was written');
    });

    t.test('an open segment counts as reaching one bucket past its recorded end', async (t) => {
      const c = await open(t, freshNs());
      await c.putSegments([seg(10, 100, 170, false), seg(11, 300, 370, true)]);
      t.strictSame((await c.segmentsInRange(s(190), s(200))).map((x) => x.id), [10], 'the open one: its manifest lags its packets');
      t.strictSame((await c.segmentsInRange(s(390), s(400))).map((x) => x.id), [], 'a sealed one ends where it says');
      t.strictSame((await c.segmentsInRange(s(231), s(240))).map((x) => x.id), [], 'not more than a bucket past');
    });

    t.test('a growing segment moves to its new buckets, a shrunk one leaves the old', async (t) => {
      const c = await open(t, freshNs());
      await c.putSegments([seg(5, 10, 50)]);
      t.strictSame((await c.segmentsInRange(s(140), s(145))).map((x) => x.id), []);
      await c.putSegments([seg(5, 10, 150)]);
      t.strictSame((await c.segmentsInRange(s(140), s(145))).map((x) => x.id), [5], 'found in the minute it grew into');
      await c.putSegments([seg(5, 130, 150)]);
      t.strictSame((await c.segmentsInRange(s(10), s(50))).map((x) => x.id), [], 'gone from minutes it no longer touches');
      t.strictSame((await c.segmentsInRange(s(131), s(132))).map((x) => x.id), [5]);
      const wide = seg(6, 0, 3 * 86_400);
      await c.putSegments([wide]);
      t.strictSame((await c.segmentsInRange(s(86_400 + 7), s(86_400 + 8))).map((x) => x.id), [6], 'a segment over a day is found from its wide list');
      await c.putSegments([seg(6, 0, 40)]);
      t.strictSame((await c.segmentsInRange(s(86_400 + 7), s(86_400 + 8))).map((x) => x.id), [], 'and leaves it when it shrinks');
      t.strictSame((await c.segmentsInRange(s(20), s(21))).map((x) => x.id), [6]);
    });

    t.test('deleteSegment removes it from the manifest and its buckets', async (t) => {
      const c = await open(t, freshNs());
      await c.putSegments([seg(1, 30, 150), seg(2, 100, 110), seg(3, 0, 2 * 86_400)]);
      await c.deleteSegment(1);
      t.strictSame((await c.listSegments()).map((x) => x.id), [2, 3]);
      t.strictSame((await c.segmentsInRange(s(100), s(140))).map((x) => x.id), [3, 2], 'the others stay, by start');
      await c.deleteSegment(3);
      t.strictSame((await c.segmentsInRange(s(0), s(200))).map((x) => x.id), [2]);
      await c.deleteSegment(99);
      await c.deleteSegment(1);
      t.strictSame((await c.listSegments()).map((x) => x.id), [2], 'unknown and already deleted ids are no-ops');
    });

    t.test('tap ids are assigned once and survive close and reopen', async (t) => {
      const ns = freshNs();
      const c1 = await Catalog.open({ url, namespace: ns });
      t.equal(await c1.tapId('eth0'), 0);
      t.equal(await c1.tapId('span-port'), 1);
      t.equal(await c1.tapId('eth0'), 0);
      const concurrent = await Promise.all(['a', 'b', 'a', 'c', 'b'].map((n) => c1.tapId(n)));
      t.strictSame(concurrent, [2, 3, 2, 4, 3], 'concurrent first sightings get one id each');
      await c1.close();
      await c1.close();
      const c2 = await open(t, ns);
      t.equal(await c2.tapId('span-port'), 1);
      t.equal(await c2.tapId('inline-gw'), 5);
      t.strictSame(await c2.listTaps(), [
        { id: 0, name: 'eth0' }, { id: 1, name: 'span-port' }, { id: 2, name: 'a' },
        { id: 3, name: 'b' }, { id: 4, name: 'c' }, { id: 5, name: 'inline-gw' },
      ]);
    });

    t.test('meta values round-trip, long keys included', async (t) => {
      const c = await open(t, freshNs());
      t.equal(await c.getMeta('import:x'), undefined);
      const longKey = `import:${'/srv/captures/site-42/'.repeat(20)}cam.pcap`;
      t.ok(longKey.length > 255, 'longer than a keyv SQL key column');
      await c.setMeta(longKey, { offset: 123456789, packets: 42 });
      await c.setMeta('config:tx', ['a', { b: null }]);
      t.strictSame(await c.getMeta(longKey), { offset: 123456789, packets: 42 });
      t.strictSame(await c.getMeta('config:tx'), ['a', { b: null }]);
      await c.setMeta('config:tx', undefined);
      t.equal(await c.getMeta('config:tx'), undefined, 'undefined deletes');
    });

    t.test('clear() empties the namespace and nothing else', async (t) => {
      const ns = freshNs();
      const c = await open(t, ns);
      // A namespace that extends this one, and one differing only in case: SQL LIKE
      // (keyv's own clear) would match both.
      const longer = await open(t, `${ns}x`);
      const upper = await open(t, ns.toUpperCase());
      for (const x of [c, longer, upper]) {
        await x.putStreams(streams);
        await x.putSessions(sessions);
        await x.putSegments([seg(1, 30, 150)]);
        await x.tapId('eth0');
        await x.setMeta('k', 1);
      }
      await c.tapId('eth1');
      await c.clear();
      t.same(await c.listStreams(), []);
      t.same(await c.listSessions(), []);
      t.same(await c.listSegments(), []);
      t.same(await c.segmentsInRange(s(0), s(200)), []);
      t.same(await c.listTaps(), []);
      t.equal(await c.getMeta('k'), undefined);
      t.equal(await c.tapId('eth1'), 0, 'tap ids start over');
      for (const x of [longer, upper]) {
        t.equal((await x.listStreams()).length, streams.length, `${x === longer ? 'longer' : 'upper-case'} namespace untouched`);
        t.equal((await x.segmentsInRange(s(140), s(141))).length, 1);
        t.equal(await x.getMeta('k'), 1);
      }
    });

    t.test('two namespaces on one backend do not see each other', async (t) => {
      const a = await open(t, freshNs());
      const bCat = await open(t, freshNs());
      await a.putStreams(streams.slice(0, 2));
      await bCat.putStreams(streams.slice(2, 5));
      await a.putSegments([seg(1, 0, 10)]);
      t.equal(await a.tapId('x'), 0);
      t.equal(await bCat.tapId('y'), 0, 'each namespace numbers its own taps');
      t.strictSame((await a.listStreams()).map((x) => x.id).sort(), streams.slice(0, 2).map((x) => x.id).sort());
      t.strictSame((await bCat.listStreams()).map((x) => x.id).sort(), streams.slice(2, 5).map((x) => x.id).sort());
      t.same(await bCat.segmentsInRange(s(0), s(10)), []);
    });

    t.test('a closed catalog refuses work with CAMTAP_ERR_CATALOG', async (t) => {
      const c = await Catalog.open({ url, namespace: freshNs() });
      const pending = c.putStreams(streams);
      await c.close();
      await pending;
      await t.rejects(c.listStreams(), { code: 'CAMTAP_ERR_CATALOG' });
      await t.rejects(c.putStreams(streams), { code: 'CAMTAP_ERR_CATALOG' });
      await c.close();
    });
  });
}

t.test('namespace isolation on one Redis, checked at the keys', { skip: redis === null ? 'redis-server is not installed' : false }, async (t) => {
  const url = redis!.url;
  const a = await Catalog.open({ url, namespace: 'site-a' });
  const bCat = await Catalog.open({ url, namespace: 'site-b' });
  t.teardown(async () => {
    await a.close();
    await bCat.close();
  });
  await a.putSegments([seg(1, 30, 150), seg(2, 0, 3 * 86_400)]);
  await bCat.putSegments([seg(1, 200, 230)]);
  const raw = createClient({ url });
  await raw.connect();
  t.teardown(() => raw.close());
  const keys = async (pattern: string): Promise<string[]> => (await raw.keys(pattern)).sort();
  t.strictSame(await keys('site-a:segments:minute:*'), [M, M + 1n, M + 2n].map((m) => `site-a:segments:minute:${m}`), 'segment 1 filed under exactly its three minutes');
  t.strictSame(JSON.parse((await raw.get('site-a:segments:wide'))!).value, [2], 'the 3-day segment on the wide list, not in 4320 buckets');
  t.strictSame(await keys('site-b:segments:minute:*'), [`site-b:segments:minute:${M + 3n}`]);
  await a.clear();
  t.strictSame(await keys('site-a:*'), [], 'clear() left no key of site-a');
  t.ok((await keys('site-b:*')).length > 0, 'site-b untouched');
  t.strictSame((await bCat.segmentsInRange(s(200), s(201))).map((x) => x.id), [1]);
});

t.test('deleting a segment removes its now-empty bucket keys', { skip: redis === null ? 'redis-server is not installed' : false }, async (t) => {
  const url = redis!.url;
  const c = await Catalog.open({ url, namespace: 'del-buckets' });
  t.teardown(() => c.close());
  await c.putSegments([seg(1, 30, 150), seg(2, 100, 110)]);
  await c.deleteSegment(1);
  const raw = createClient({ url });
  await raw.connect();
  t.teardown(() => raw.close());
  t.strictSame((await raw.keys('del-buckets:segments:minute:*')).sort(), [`del-buckets:segments:minute:${M + 1n}`], 'only segment 2\'s minute is left');
  t.equal(await raw.exists('del-buckets:segments:rec:1'), 0);
});

t.test('a catalog that cannot connect fails with CAMTAP_ERR_CATALOG naming the url', async (t) => {
  const port = await freePort(); // nothing listens there
  const expectFail = async (url: string, shown: string, hidden?: string): Promise<void> => {
    try {
      const c = await Catalog.open({ url });
      await c.close();
      t.fail(`${url} opened`);
    } catch (e) {
      t.ok(isCamtapError(e, 'CAMTAP_ERR_CATALOG'), `${shown}: CAMTAP_ERR_CATALOG (${(e as Error).message})`);
      t.match((e as Error).message, shown, 'names the url');
      if (hidden !== undefined) t.notMatch((e as Error).message, hidden, 'without the password');
    }
  };
  await expectFail(`redis://127.0.0.1:${port}/0`, `catalog redis://127.0.0.1:${port}/0:`);
  await expectFail(`redis://:s3cret@127.0.0.1:${port}/0`, `redis://:***@127.0.0.1:${port}/0`, 's3cret');
  await expectFail(`postgresql://camtap:pw-xyz@127.0.0.1:${port}/camtap`, `postgresql://camtap:***@127.0.0.1:${port}/camtap`, 'pw-xyz');
  await expectFail('sqlite:///dev/null/catalog.sqlite', 'sqlite:///dev/null/catalog.sqlite');
  await expectFail('mysql://127.0.0.1/camtap', 'unsupported URL');
  await t.rejects(Catalog.open({ url: `sqlite://${join(sqliteDir, 'x.sqlite')}`, namespace: 'a:b' }), { code: 'CAMTAP_ERR_CATALOG', message: /bad namespace/ });
});

t.test('a Redis that goes away makes calls fail with CAMTAP_ERR_CATALOG instead of queueing', { skip: redis === null ? 'redis-server is not installed' : false }, async (t) => {
  const own: RunningService | null = await startRedis();
  if (own === null) throw new Error('redis-server vanished');
  t.teardown(() => own.stop());
  const c = await Catalog.open({ url: own.url });
  await c.putStreams(streams.slice(0, 1));
  await own.stop();
  await t.rejects(c.putStreams(streams.slice(1, 2)), { code: 'CAMTAP_ERR_CATALOG', message: new RegExp(own.url.replace(/[/.]/g, '\\$&')) });
  await t.rejects(c.listStreams(), { code: 'CAMTAP_ERR_CATALOG' });
  await c.close();
});

t.test('a PostgreSQL that goes away makes calls fail with CAMTAP_ERR_CATALOG', { skip: postgres === null ? 'PostgreSQL (initdb, postgres) is not installed' : false }, async (t) => {
  const own: RunningService | null = await startPostgres();
  if (own === null) throw new Error('PostgreSQL vanished');
  t.teardown(() => own.stop());
  const c = await Catalog.open({ url: own.url });
  await c.putStreams(streams.slice(0, 1));
  await own.stop();
  await t.rejects(c.putStreams(streams.slice(1, 2)), { code: 'CAMTAP_ERR_CATALOG' });
  await c.close();
});
