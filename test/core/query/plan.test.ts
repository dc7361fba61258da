/**
 * planReplay on netns_multi (four cameras, two VMSs; camera 10.77.0.11 streams to both)
 * against its tshark manifest: which stream each selector picks, the range rules and
 * their errors, the dialog and SDP, and the segments the plan reads.
 */
import t from 'tap';
import { planReplay, describeSelector } from '../../../core/query/plan.js';
import { parseSdp } from '../../../core/wire/sdp.js';
import { importCaptures, iso, manifest, mediaStreams, recordOf, type ManifestStream } from './fixture.js';

const FILE = 'netns_multi.pcap';
const M = manifest(FILE);
const media = mediaStreams(M);
const by = (src: string, dst: string) => media.find((s) => s.src === src && s.dst === dst) as ManifestStream;
const CAM1_A = by('10.77.0.11:47540', '10.77.0.101:14104');
const CAM1_B = by('10.77.0.11:47540', '10.77.0.102:34612');
const CAM3 = media.find((s) => s.transport === 'tcp')!;
const CAM4 = media.find((s) => s.payload_types[0] === 26)!;
const secNs = (x: number) => BigInt(Math.round(x * 1e6)) * 1000n; // manifest times are µs-exact floats

t.test('planReplay on netns_multi', async (t) => {
  const imp = await importCaptures(t, [FILE], {
    tune: (c) => {
      c.cameras = [{ name: 'lobby', address: '10.77.0.11' }];
      c.vms = [{ name: 'vms-b', address: '10.77.0.102' }];
    },
  });
  const id = (ms: ManifestStream) => recordOf(imp.streams, ms)!.id;
  const pick = async (sel: Parameters<typeof planReplay>[1]) => (await planReplay(imp.catalog, sel)).stream.id;

  await t.test('selectors pick the stream they describe', async (t) => {
    t.equal(await pick({ id: id(CAM3) }), id(CAM3), 'by id');
    t.equal(await pick({ camera: '10.77.0.14' }), id(CAM4), 'by camera address');
    t.equal(await pick({ camera: '10.77.0.11', dst: '10.77.0.102' }), id(CAM1_B), 'by camera and destination address');
    t.equal(await pick({ camera: 'lobby', dst: 'vms-b' }), id(CAM1_B), 'by inventory names from the config');
    t.equal(await pick({ dst: '10.77.0.101:14104' }), id(CAM1_A), 'by destination ip:port');
    t.equal(await pick({ codec: 'h265' }), id(CAM3), 'by codec, case-insensitive');
    t.equal(await pick({ codec: 'JPEG' }), id(CAM4), 'JPEG');
    t.equal(await pick({ url: 'rtsp://10.77.0.13:554/stream1' }), id(CAM3), 'by full URL');
    t.equal(await pick({ url: 'rtsp://10.77.0.13:554/stream1/' }), id(CAM3), 'a trailing slash does not matter');
    t.equal(await pick({ ssrc: parseInt(CAM4.ssrc, 16) }), id(CAM4), 'by SSRC');
  });

  await t.test('several matches: the one with the most packets in the range', async (t) => {
    // Both cam1 streams share camera, SSRC and URL; over their whole lives the one to .101 has more packets.
    t.ok(CAM1_A.unique_packets > CAM1_B.unique_packets, 'manifest: the stream to .101 is the bigger one');
    t.equal(await pick({ camera: '10.77.0.11' }), id(CAM1_A));
    t.equal(await pick({ ssrc: parseInt(CAM1_A.ssrc, 16) }), id(CAM1_A), 'same SSRC to two VMSs');
    // The path /stream1 matches every camera: the biggest stream wins.
    const most = [...media].sort((a, b) => b.unique_packets - a.unique_packets)[0]!;
    t.equal(await pick({ url: '/stream1' }), id(most), 'by path: the stream with the most packets');
    // After the stream to .102 ended only the one to .101 has packets.
    const after = secNs(CAM1_B.last_time) + 1_000_000_000n;
    t.ok(after < secNs(CAM1_A.last_time), 'manifest: .101 outlives .102');
    t.equal(await pick({ camera: '10.77.0.11', start: iso(after) }), id(CAM1_A), 'a range only one of them covers');
  });

  await t.test('no match is CAMTAP_ERR_NOT_FOUND naming the selector', async (t) => {
    await t.rejects(planReplay(imp.catalog, { camera: 'nosuchcam' }), { code: 'CAMTAP_ERR_NOT_FOUND', http: 404, details: { what: 'stream', id: 'camera=nosuchcam' } });
    await t.rejects(planReplay(imp.catalog, { camera: '10.77.0.14', codec: 'H264' }), { code: 'CAMTAP_ERR_NOT_FOUND' }, 'every field must match');
    // The NAT-punch packets (client -> camera, SSRC 0) are streams in the catalog but never served.
    await t.rejects(planReplay(imp.catalog, { ssrc: 0 }), { code: 'CAMTAP_ERR_NOT_FOUND' }, 'client->server packets are not candidates');
  });

  await t.test('bad ranges are CAMTAP_ERR_RANGE (RTSP 457)', async (t) => {
    const s = iso(secNs(CAM1_A.first_time) + 5_000_000_000n);
    const e = iso(secNs(CAM1_A.first_time) + 2_000_000_000n);
    await t.rejects(planReplay(imp.catalog, { id: id(CAM1_A), start: s, end: e }), { code: 'CAMTAP_ERR_RANGE', http: 457, exit: 64 }, 'end before start');
    await t.rejects(planReplay(imp.catalog, { id: id(CAM1_A), start: s, end: s }), { code: 'CAMTAP_ERR_RANGE' }, 'end equal to start');
    await t.rejects(planReplay(imp.catalog, { id: id(CAM1_A), start: 'last tuesday' }), { code: 'CAMTAP_ERR_RANGE' }, 'unparsable');
    const hourAfter = new Date(Number(secNs(CAM1_A.last_time) / 1_000_000n) + 3_600_000);
    await t.rejects(planReplay(imp.catalog, { id: id(CAM1_A), start: '-10m' }, hourAfter), { code: 'CAMTAP_ERR_RANGE' }, 'ten minutes before an hour after the end: after the recording');
    await t.rejects(planReplay(imp.catalog, { id: id(CAM1_A), end: '2020-01-01T00:00:00Z' }), { code: 'CAMTAP_ERR_RANGE' }, 'before the recording');
    await t.rejects(planReplay(imp.catalog, { camera: 'nosuchcam', start: s, end: e }), { code: 'CAMTAP_ERR_RANGE' }, 'the range is checked first');
  });

  await t.test('times: clamped to the stream, relative ones from the given now', async (t) => {
    const first = secNs(CAM1_A.first_time);
    const last = secNs(CAM1_A.last_time);
    const whole = await planReplay(imp.catalog, { id: id(CAM1_A) });
    t.equal(whole.startNs, first, 'no start: the first packet');
    t.equal(whole.endNs, last, 'no end: the last packet');
    t.equal(whole.openEnd, true, 'no end: open-ended');
    const wide = await planReplay(imp.catalog, { id: id(CAM1_A), start: '2020-01-01T00:00:00Z', end: '2030-01-01T00:00:00Z' });
    t.equal(wide.startNs, first, 'clamped start');
    t.equal(wide.endNs, last, 'clamped end');
    const now = new Date(Number((last + 2_000_000_000n) / 1_000_000n));
    const rel = await planReplay(imp.catalog, { id: id(CAM1_A), start: '-10s', end: '-4s' }, now);
    t.equal(rel.startNs, BigInt(now.getTime()) * 1_000_000n - 10_000_000_000n, '-10s');
    t.equal(rel.endNs, BigInt(now.getTime()) * 1_000_000n - 4_000_000_000n, '-4s');
    t.equal(rel.openEnd, false, 'an end inside the recording is not open');
  });

  await t.test('the dialog and its SDP, cut to the stream', async (t) => {
    for (const ms of [CAM1_A, CAM1_B, CAM3, CAM4]) {
      const plan = await planReplay(imp.catalog, { id: id(ms) });
      const truth = M.rtsp_sessions.find((s) => s.session_id === ms.rtsp_session)!;
      t.equal(plan.session?.sessionId, truth.session_id, `${ms.src} -> ${ms.dst}: session ${truth.session_id}`);
      t.equal(plan.session?.client, truth.client, 'the dialog of the client the stream goes to');
      const sdp = parseSdp(plan.sdp)!;
      t.equal(sdp.media.length, 1, 'one media section');
      t.ok(sdp.media[0]!.formats.includes(ms.payload_types[0]!), 'with the stream\'s payload type');
      t.equal(sdp.media[0]!.control, 'trackID=0');
      t.ok(plan.sdp.endsWith('\r\n') && !/[^\r]\n/.test(plan.sdp), 'CRLF lines');
      t.notMatch(plan.sdp, /a=ssrc:/, 'no captured SSRC line');
    }
  });

  await t.test('describeSelector writes the fields given', async (t) => {
    t.equal(describeSelector({ camera: 'lobby', ssrc: 0x5eb04182, start: '-10m' }), 'camera=lobby ssrc=0x5EB04182 start=-10m');
    t.equal(describeSelector({}), '(any)');
  });
});

t.test('segments: the range plus the lookback before it, only those holding the stream', async (t) => {
  const imp = await importCaptures(t, [FILE], { inPlace: false, tune: (c) => (c.store.maxSegmentBytes = 1 << 16) });
  const rec = recordOf(imp.streams, CAM4)!;
  const start = secNs(CAM4.first_time) + 6_000_000_000n;
  const end = start + 2_000_000_000n;
  const plan = await planReplay(imp.catalog, { id: rec.id, start: iso(start), end: iso(end) }, new Date(), { keyframeLookbackMs: 3000 });
  const want = imp.segments
    .filter((g) => g.streams.includes(rec.id) && BigInt(g.endNs) >= start - 3_000_000_000n && BigInt(g.startNs) <= end)
    .map((g) => g.id);
  t.ok(want.length > 2, `${want.length} segments expected`);
  t.same(plan.segments.map((g) => g.id), want, 'exactly the segments with the stream from 3 s before the start to the end');
  const before = plan.segments.filter((g) => BigInt(g.endNs) < start).length;
  t.equal(plan.lookbackSegments, before, 'lookbackSegments counts those wholly before the range');
});
