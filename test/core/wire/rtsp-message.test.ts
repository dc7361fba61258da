import t from 'tap';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import {
  MessageStreamParser,
  serializeMessage,
  redactHeaders,
  type WireMessage,
  type MessageStreamOptions,
} from '../../../core/wire/rtsp-message.js';
import type { StoreLocation } from '../../../core/contracts/frame.js';
import { RtpHeader, parseRtp } from '../../../core/wire/rtp.js';
import { walkRtcp } from '../../../core/wire/rtcp.js';
import { parseSdp } from '../../../core/wire/sdp.js';
import { CAPTURES, noTshark, tsharkFields, tsharkFollow } from './tshark-truth.js';

/** A parser that records every event as a comparable string (locations optional). */
function recorder(opts?: MessageStreamOptions, withLocs = false) {
  const events: string[] = [];
  const messages: WireMessage[] = [];
  const frames: Array<{ channel: number; payload: Buffer; loc: StoreLocation | null }> = [];
  const errors: Array<[string, number]> = [];
  const p = new MessageStreamParser(
    {
      onMessage: (m) => {
        messages.push(m);
        const what = m.kind === 'request' ? `${m.method} ${m.url}` : `${m.status} ${m.reason}`;
        const locs = withLocs ? ` @${m.locations.map((l) => l.offset).join(',')}` : '';
        events.push(`M ${m.protocol}/${m.version} ${what} cseq=${m.cseq} ${JSON.stringify(m.headers)} body=${m.body.toString('latin1')}${m.bodyTruncated ? ' TRUNCATED' : ''}${locs}`);
      },
      onInterleaved: (channel, payload, loc) => {
        frames.push({ channel, payload: Buffer.from(payload), loc });
        events.push(`F ${channel} ${payload.toString('hex')}${withLocs ? ` @${loc?.offset}` : ''}`);
      },
      onError: (reason, at) => {
        errors.push([reason, at]);
        events.push(`E ${at}`);
      },
    },
    opts,
  );
  return { p, events, messages, frames, errors };
}

const loc = (offset: number): StoreLocation => ({ segment: 7, offset });
const rtp = (seq: number, extra = '') => Buffer.from(`80e0${seq.toString(16).padStart(4, '0')}0000000100000002${extra}`, 'hex');
const frame = (ch: number, payload: Buffer) => Buffer.concat([Buffer.from([0x24, ch, payload.length >> 8, payload.length & 0xff]), payload]);

/** A small dialog mixing everything the parser must handle in one direction. */
const dialog = Buffer.concat([
  Buffer.from('RTSP/1.0 200 OK\r\nCSeq: 1\r\nPublic: OPTIONS, DESCRIBE\r\n\r\n'),
  Buffer.from('RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Type: application/sdp\r\nContent-Length: 10\r\n\r\nv=0\r\ns=x\r\n'),
  frame(0, rtp(1, 'aabbcc')),
  frame(1, Buffer.from('80c8000600000001' + '00'.repeat(20), 'hex')),
  Buffer.from('\r\n'), // a stray empty line between messages is allowed
  Buffer.from('SET_PARAMETER rtsp://cam/ RTSP/1.0\r\nCSeq: 3\r\nX-Folded: a\r\n  b\r\nContent-Length: 3\r\n\r\nk=v'),
  frame(0, rtp(2)),
  Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Trailer: 1\r\n\r\n'),
  Buffer.from('GET /onvif/device_service HTTP/1.1\r\nHost: cam\r\n\r\n'),
  Buffer.from('RTSP/1.0 200 OK\r\nCSeq: 4\r\n\r\n'),
]);

t.test('parses a mixed dialog: responses, bodies, interleaved frames, folding, chunked HTTP', async (t) => {
  const r = recorder();
  r.p.push(dialog, null);
  t.same(r.errors, []);
  t.same(
    r.messages.map((m) => [m.kind, m.protocol, m.method ?? m.status, m.cseq, m.body.toString()]),
    [
      ['response', 'RTSP', 200, 1, ''],
      ['response', 'RTSP', 200, 2, 'v=0\r\ns=x\r\n'],
      ['request', 'RTSP', 'SET_PARAMETER', 3, 'k=v'],
      ['response', 'HTTP', 200, null, 'Wikipedia'],
      ['request', 'HTTP', 'GET', null, ''],
      ['response', 'RTSP', 200, 4, ''],
    ],
  );
  t.same(r.messages[2]!.headers, [
    ['CSeq', '3'],
    ['X-Folded', 'a b'],
    ['Content-Length', '3'],
  ]);
  t.equal(r.messages[1]!.header('content-type'), 'application/sdp', 'header() is case-insensitive');
  t.equal(r.messages[1]!.header('Session'), null);
  t.equal(r.messages[3]!.version, '1.1');
  t.same(
    r.frames.map((f) => [f.channel, f.payload.length]),
    [
      [0, 15],
      [1, 28],
      [0, 12],
    ],
  );
  t.same([r.p.messages, r.p.interleavedFrames, r.p.errors, r.p.streamOffset], [6, 3, 0, dialog.length]);
});

t.test('gives the same events however the stream is split', async (t) => {
  const whole = recorder();
  whole.p.push(dialog, null);
  const want = whole.events.join('\n');
  const bad: number[] = [];
  for (let k = 1; k < dialog.length; k++) {
    const r = recorder();
    r.p.push(dialog.subarray(0, k), null);
    r.p.push(dialog.subarray(k), null);
    if (r.events.join('\n') !== want) bad.push(k);
  }
  t.same(bad, [], 'every split point');
  const bytes = recorder();
  for (let i = 0; i < dialog.length; i++) bytes.p.push(dialog.subarray(i, i + 1), null);
  t.equal(bytes.events.join('\n'), want, 'one byte at a time');
});

t.test('interleaved frames inside one push are views of it; split frames are copied', async (t) => {
  const data = Buffer.concat([frame(0, rtp(1)), frame(0, rtp(2))]);
  const views: boolean[] = [];
  const p = new MessageStreamParser({
    onMessage: () => {},
    onInterleaved: (_ch, payload) =>
      views.push(payload.buffer === data.buffer && payload.byteOffset >= data.byteOffset && payload.byteOffset < data.byteOffset + data.length),
    onError: () => {},
  });
  p.push(data.subarray(0, 20), null); // first frame whole, second cut
  p.push(data.subarray(20), null);
  t.same(views, [true, false]);
});

t.test('records the store locations of the packets that carried each message and frame', async (t) => {
  const r = recorder(undefined, true);
  const m1 = Buffer.from('RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Length: 4\r\n\r\nbody');
  const f = frame(0, rtp(9));
  r.p.push(m1.subarray(0, 10), loc(100));
  r.p.push(m1.subarray(10, 50), loc(200));
  r.p.push(Buffer.concat([m1.subarray(50), f.subarray(0, 2)]), loc(300));
  r.p.push(f.subarray(2), loc(400));
  t.same(r.messages[0]!.locations, [loc(100), loc(200), loc(300)]);
  t.same(r.frames[0]!.loc, loc(300), "the packet holding the '$'");
});

t.test('reports garbage between messages once per run and resyncs', async (t) => {
  const r = recorder();
  const junk = Buffer.from('\x00\x01\x02 not a message at all \xff\xfe\r\n123 456\r\n');
  const ok = Buffer.from('RTSP/1.0 200 OK\r\nCSeq: 9\r\n\r\n');
  r.p.push(Buffer.concat([ok, junk, ok, junk]), null);
  t.same(
    r.errors.map((e) => e[1]),
    [ok.length, 2 * ok.length + junk.length],
    'one error per run, at the offset where it starts',
  );
  t.equal(r.messages.length, 2);
  const more = recorder();
  more.p.push(Buffer.from('xxxxRTSP/1.0 200 OK\r\nCSeq: 5\r\n\r\n'), null);
  t.same(
    more.messages.map((m) => m.cseq),
    [5],
    'a status line found mid-line',
  );
  t.equal(more.errors.length, 1);
  const req = recorder();
  req.p.push(Buffer.from('garbage\r\nmore garbage\r\nPLAY rtsp://c/ RTSP/1.0\r\nCSeq: 6\r\n\r\n'), null);
  t.same(
    req.messages.map((m) => [m.method, m.cseq]),
    [['PLAY', 6]],
    'a request line at a line start',
  );
  t.same(req.errors, [['malformed start line', 0]]);
});

t.test('rejects junk $ frames and finds the real frame after them', async (t) => {
  const r = recorder();
  const good = frame(0, rtp(5));
  const stream = Buffer.concat([
    Buffer.from('$\x00\x00\x02ab'), // 2-byte "frame": too short for RTP/RTCP
    Buffer.from('$\x01\x00\x10' + 'x'.repeat(16)), // payload is not RTP v2
    good,
    Buffer.from('RTSP/1.0 200 OK\r\nCSeq: 3\r\n\r\n'),
  ]);
  r.p.push(stream, null);
  t.equal(r.errors.length, 1, 'one garbage run');
  t.equal(r.errors[0]![1], 0);
  t.same(
    r.frames.map((f) => f.payload.toString('hex')),
    [rtp(5).toString('hex')],
  );
  t.same(
    r.messages.map((m) => m.cseq),
    [3],
  );
  // Byte by byte gives the same result.
  const b = recorder();
  for (let i = 0; i < stream.length; i++) b.p.push(stream.subarray(i, i + 1), null);
  t.same(b.events, r.events);
});

t.test('a $ inside garbage needs a plausible channel to resync', async (t) => {
  const r = recorder();
  const stream = Buffer.concat([Buffer.from('\x01\x02'), frame(200, rtp(1)), frame(2, rtp(2))]);
  r.p.push(stream, null);
  t.same(
    r.frames.map((f) => f.channel),
    [2],
  );
  t.equal(r.errors.length, 1);
});

t.test('a message without CSeq is delivered with cseq null', async (t) => {
  const r = recorder();
  r.p.push(Buffer.from('RTSP/1.0 200 OK\r\nServer: x\r\n\r\nRTSP/1.0 200 OK\r\nCSeq: x1\r\n\r\n'), null);
  t.same(
    r.messages.map((m) => m.cseq),
    [null, null],
  );
  t.equal(r.errors.length, 0);
});

t.test('a 1 MB header is reported once, never buffered past the limit, and the next message parses', async (t) => {
  const r = recorder();
  const huge = Buffer.from(`RTSP/1.0 200 OK\r\nCSeq: 1\r\n${'X-Pad: '.concat('a'.repeat(1000), '\r\n').repeat(1000)}\r\n`);
  const next = Buffer.from('RTSP/1.0 200 OK\r\nCSeq: 2\r\n\r\n');
  const stream = Buffer.concat([huge, next]);
  let maxHeld = 0;
  for (let i = 0; i < stream.length; i += 1460) {
    r.p.push(stream.subarray(i, i + 1460), null);
    maxHeld = Math.max(maxHeld, r.p.buffered);
  }
  t.ok(huge.length > 1_000_000);
  t.same(r.errors, [['header section exceeds 65536 bytes', 0]]);
  t.ok(maxHeld <= 64 * 1024 + 65539, `held at most ${maxHeld} bytes`);
  t.same(
    r.messages.map((m) => m.cseq),
    [2],
  );
  const one = recorder();
  one.p.push(stream, null);
  t.same(one.events, r.events, 'pushed whole');
});

t.test('a body over maxBodyBytes is skipped; the message is delivered marked truncated', async (t) => {
  const r = recorder({ maxBodyBytes: 16 });
  r.p.push(Buffer.from('RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: 40\r\n\r\n'), null);
  r.p.push(Buffer.from('$'.repeat(40)), null); // body bytes that look like frames must not be parsed
  r.p.push(Buffer.from('RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Length: 16\r\n\r\n0123456789abcdef'), null);
  t.same(
    r.messages.map((m) => [m.cseq, m.body.length, m.bodyTruncated]),
    [
      [1, 0, true],
      [2, 16, false],
    ],
  );
  t.same(r.errors, [['Content-Length 40 exceeds 16; body skipped', 48]]);
  t.equal(r.p.interleavedFrames, 0);
});

t.test('a bad Content-Length is reported and the parser resyncs after the body', async (t) => {
  const r = recorder();
  r.p.push(Buffer.from('RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: -5\r\n\r\nv=0\r\na=x\r\nRTSP/1.0 200 OK\r\nCSeq: 2\r\n\r\n'), null);
  t.same(
    r.messages.map((m) => [m.cseq, m.bodyTruncated]),
    [
      [1, true],
      [2, false],
    ],
  );
  t.equal(r.errors.length, 1);
});

t.test('HTTP: body until close, bodiless statuses, chunk errors', async (t) => {
  const r = recorder();
  r.p.push(Buffer.from('HTTP/1.1 204 No Content\r\n\r\nHTTP/1.0 200 OK\r\nContent-Type: text/xml\r\n\r\n<a>'), null);
  r.p.push(Buffer.from('</a>'), null);
  t.equal(r.messages.length, 1, 'the 204 has no body; the 200 waits for close');
  r.p.end();
  t.same(
    r.messages.map((m) => [m.status, m.body.toString()]),
    [
      [204, ''],
      [200, '<a></a>'],
    ],
  );
  const c = recorder();
  c.p.push(Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nRTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n'), null);
  t.same(
    c.messages.map((m) => m.protocol),
    ['RTSP'],
  );
  t.match(c.errors[0]![0], /bad chunk size/);
  const cut = recorder();
  cut.p.push(Buffer.from('RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: 10\r\n\r\nabc'), null);
  cut.p.end();
  t.same(cut.errors, [['stream ended inside message body', 51]]);
  t.equal(cut.messages.length, 0);
});

t.test('a gap inside an interleaved frame keeps the parser in step', async (t) => {
  const r = recorder();
  const f1 = frame(0, rtp(1, 'ff'.repeat(100)));
  const f2 = frame(0, rtp(2));
  r.p.push(f1.subarray(0, 30), null);
  r.p.gap(50); // bytes 30..80 of f1 lost
  r.p.push(Buffer.concat([f1.subarray(80), f2]), null);
  t.same(
    r.frames.map((f) => f.payload.readUInt16BE(2)),
    [2],
    'f1 dropped, f2 delivered',
  );
  t.equal(r.errors.length, 1);
  t.equal(r.p.streamOffset, f1.length + f2.length);
});

t.test('serializes messages the parser reads back', async (t) => {
  const req = serializeMessage({ kind: 'request', method: 'SETUP', url: 'rtsp://cam/s/stream=0', headers: [['CSeq', '3'], ['Transport', 'RTP/AVP/TCP;unicast;interleaved=0-1']] });
  t.equal(req.toString(), 'SETUP rtsp://cam/s/stream=0 RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n');
  const res = serializeMessage({ kind: 'response', status: 200, headers: [['CSeq', '2']], body: Buffer.from('v=0\r\n') });
  t.equal(res.toString(), 'RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Length: 5\r\n\r\nv=0\r\n');
  const http = serializeMessage({ kind: 'response', protocol: 'HTTP', status: 401, headers: [] });
  t.equal(http.toString(), 'HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n');
  const r = recorder();
  r.p.push(Buffer.concat([req, res, http]), null);
  t.same(
    r.messages.map((m) => [m.method ?? m.status, m.cseq, m.body.toString()]),
    [
      ['SETUP', 3, ''],
      [200, 2, 'v=0\r\n'],
      [401, null, ''],
    ],
  );
  t.throws(() => serializeMessage({ kind: 'response', headers: [['X', 'a\r\nInjected: 1']] }), TypeError);
});

t.test('redacts credentials from headers', async (t) => {
  const h = redactHeaders([
    ['Authorization', 'Basic YWRtaW46c2VjcmV0'],
    ['Proxy-Authorization', 'Bearer abc.def'],
    ['Cookie', 'sid=123; theme=dark'],
    ['Set-Cookie', 'sid=456; Path=/; HttpOnly'],
    ['WWW-Authenticate', 'Digest realm="r", nonce="n1"'],
    ['X-A', '1'],
    ['x-a', '2'],
  ]);
  t.same(h, {
    authorization: 'Basic <redacted>',
    'proxy-authorization': 'Bearer <redacted>',
    cookie: 'sid=<redacted>; theme=<redacted>',
    'set-cookie': 'sid=<redacted>; Path=/; HttpOnly',
    'www-authenticate': 'Digest realm="r", nonce="n1"',
    'x-a': '1, 2',
  });
});

t.test('redacts the Digest proof in lo_digest_auth_udp_h264 but keeps who and where', { skip: noTshark }, async (t) => {
  const r = recorder();
  for (const c of tsharkFollow('lo_digest_auth_udp_h264.pcap', 0).filter((c) => c.dir === 0)) r.p.push(c.data, null);
  const withAuth = r.messages.filter((m) => m.header('Authorization'));
  t.ok(withAuth.length >= 3);
  for (const m of withAuth) {
    const raw = m.header('Authorization')!;
    const red = redactHeaders(m.headers).authorization!;
    for (const k of ['username', 'realm', 'uri']) t.equal(new RegExp(`${k}="[^"]*"`).exec(red)?.[0], new RegExp(`${k}="[^"]*"`).exec(raw)?.[0], `${m.method}: ${k} kept`);
    for (const k of ['response', 'nonce']) {
      const secret = new RegExp(`${k}="([^"]*)"`).exec(raw)![1]!;
      t.notOk(red.includes(secret), `${m.method}: ${k} removed`);
      t.match(red, new RegExp(`${k}="<redacted>"`));
    }
  }
});

t.test('lo_tcp_interleaved_h264: frames and messages match tshark and the manifest', { skip: noTshark }, async (t) => {
  const manifest = JSON.parse(readFileSync(`${CAPTURES}lo_tcp_interleaved_h264.manifest.json`, 'utf8'));
  const stream = manifest.rtp_streams[0];
  const session = manifest.rtsp_sessions[0];
  // Per-packet payloads with frame numbers (as store locations); in-order on loopback,
  // which the check against tshark's own reassembly below confirms.
  const packets = tsharkFields('lo_tcp_interleaved_h264.pcap', 'tcp.len > 0', ['frame.number', 'tcp.srcport', 'tcp.payload']);
  const follow = tsharkFollow('lo_tcp_interleaved_h264.pcap', 0);
  const server = '8554';
  const dirBytes = (toClient: boolean) => Buffer.concat(packets.filter((p) => (p[1] === server) === toClient).map((p) => Buffer.from(p[2]!, 'hex')));
  t.ok(dirBytes(true).equals(Buffer.concat(follow.filter((c) => c.dir === 1).map((c) => c.data))), 'camera->client bytes = tshark follow');
  t.ok(dirBytes(false).equals(Buffer.concat(follow.filter((c) => c.dir === 0).map((c) => c.data))), 'client->camera bytes = tshark follow');

  const toClient = recorder(undefined, true);
  const toServer = recorder(undefined, true);
  for (const [frameNo, port, hex] of packets) (port === server ? toClient : toServer).p.push(Buffer.from(hex!, 'hex'), loc(Number(frameNo)));
  t.same([toClient.errors, toServer.errors], [[], []], 'no errors');

  // Interleaved frames: channel 0 = RTP of the one stream, channel 1 = RTCP.
  const h = new RtpHeader();
  const rtpFrames = toClient.frames.filter((f) => f.channel === 0);
  t.equal(rtpFrames.length, stream.packets, 'RTP frames = manifest packets (853)');
  t.ok(rtpFrames.every((f) => parseRtp(f.payload, 0, f.payload.length, h) && h.ssrc === Number(stream.ssrc)), 'all RTP, one SSRC');
  parseRtp(rtpFrames[0]!.payload, 0, rtpFrames[0]!.payload.length, h);
  t.equal(h.seq, stream.first_seq);
  t.equal(rtpFrames[0]!.loc!.offset, stream.first_frame, 'first RTP frame located in the packet tshark names');
  let markers = 0;
  let payloadBytes = 0;
  for (const f of rtpFrames) {
    parseRtp(f.payload, 0, f.payload.length, h);
    if (h.marker) markers++;
    payloadBytes += h.payloadLen;
  }
  t.same([markers, payloadBytes], [stream.markers, stream.payload_bytes]);
  const rtcpFrames = toClient.frames.filter((f) => f.channel === 1);
  const srs = manifest.rtcp.find((x: { type: string }) => x.type === 'SR').count;
  t.equal(rtcpFrames.filter((f) => walkRtcp(f.payload, 0, f.payload.length, () => {})).length, srs, 'RTCP compounds = manifest SRs');
  t.equal(toClient.frames.length, rtpFrames.length + rtcpFrames.length);

  // RTSP: requests and responses as the manifest lists them.
  t.same(
    toServer.messages.map((m) => ({ method: m.method, url: m.url, cseq: m.cseq, frame: m.locations[0]!.offset })),
    session.requests.map((q: { method: string; url: string; cseq: number; frame: number }) => ({ method: q.method, url: q.url, cseq: q.cseq, frame: q.frame })),
  );
  t.same(
    toClient.messages.map((m) => ({ cseq: m.cseq, status: m.status, frame: m.locations[0]!.offset })),
    session.requests
      .filter((q: { status: number | null }) => q.status !== null)
      .map((q: { cseq: number; status: number; response_frame: number }) => ({ cseq: q.cseq, status: q.status, frame: q.response_frame })),
  );
  const describe = toClient.messages.find((m) => m.cseq === 2)!;
  t.same(parseSdp(describe.body.toString())!.media[0]!.attributes, session.sdp.attributes, 'DESCRIBE body is the SDP');
  t.equal(describe.header('Content-Base'), session.content_base);
  t.equal(toClient.p.streamOffset, dirBytes(true).length);

  // The whole camera->client direction one byte at a time gives the same events.
  const all = dirBytes(true);
  const bytewise = recorder();
  const plain = recorder();
  plain.p.push(all, null);
  for (let i = 0; i < all.length; i++) bytewise.p.push(all.subarray(i, i + 1), null);
  const digest = (ev: string[]) => createHash('sha1').update(ev.join('\n')).digest('hex');
  t.equal(bytewise.events.length, plain.events.length);
  t.equal(digest(bytewise.events), digest(plain.events), 'byte-at-a-time = whole');
});

t.test('random streams of messages, frames and garbage: same events for any split, never a throw', async (t) => {
  let seed = 7;
  const rand = (n: number) => (seed = (seed * 1103515245 + 12345) >>> 0) % n;
  const units = [
    () => Buffer.from(`RTSP/1.0 200 OK\r\nCSeq: ${rand(100)}\r\n\r\n`),
    () => Buffer.from(`PLAY rtsp://c/${rand(9)} RTSP/1.0\r\nCSeq: ${rand(100)}\r\nContent-Length: 3\r\n\r\nabc`),
    () => frame(rand(4), rtp(rand(65536), 'ab'.repeat(rand(40)))),
    () => Buffer.from(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n`),
    () => Buffer.from(Array.from({ length: 1 + rand(30) }, () => rand(256))), // binary garbage
    () => Buffer.from(['$', 'R', 'RTSP/', 'HTTP/1.', '\r\n', 'GET ', 'GET / RTSP/9', 'RTSP/1.0 2', '$\x00\x00'][rand(9)]!), // near misses
  ];
  let totalMessages = 0;
  for (let round = 0; round < 150; round++) {
    const parts: Buffer[] = [];
    for (let i = 0; i < 12; i++) parts.push(units[rand(units.length)]!());
    const stream = Buffer.concat(parts);
    const whole = recorder({ maxHeaderBytes: 256, maxBodyBytes: 64 });
    whole.p.push(stream, null);
    whole.p.end();
    totalMessages += whole.messages.length;
    const split = recorder({ maxHeaderBytes: 256, maxBodyBytes: 64 });
    for (let i = 0; i < stream.length; ) {
      const n = 1 + rand(7);
      split.p.push(stream.subarray(i, i + n), null);
      i += n;
    }
    split.p.end();
    if (split.events.join('\n') !== whole.events.join('\n')) {
      t.fail(`round ${round}: split differs\n${stream.toString('hex')}`);
      break;
    }
    if (whole.p.streamOffset !== stream.length) t.fail(`round ${round}: offset ${whole.p.streamOffset} != ${stream.length}`);
  }
  t.ok(totalMessages > 300, `${totalMessages} messages recovered`);
});
