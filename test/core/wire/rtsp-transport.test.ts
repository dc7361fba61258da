import t from 'tap';
import { readFileSync, readdirSync } from 'node:fs';
import { parseTransport, formatTransport } from '../../../core/wire/rtsp-transport.js';
import { CAPTURES } from './tshark-truth.js';

t.test('every negotiated Transport in the fixture manifests parses as the manifest reads it', async (t) => {
  let n = 0;
  for (const f of readdirSync(CAPTURES).filter((x) => x.endsWith('.manifest.json'))) {
    const m = JSON.parse(readFileSync(CAPTURES + f, 'utf8'));
    for (const s of m.rtsp_sessions ?? []) {
      for (const tr of s.tracks) {
        const want = tr.transport;
        if (!want) continue;
        n++;
        const [spec, ...rest] = parseTransport(want.raw);
        t.equal(rest.length, 0, `${f}: one alternative`);
        t.same(
          spec && {
            profile: spec.profile,
            lower: spec.lower,
            multicast: spec.multicast,
            clientPorts: spec.clientPorts,
            serverPorts: spec.serverPorts,
            interleaved: spec.interleaved,
            ssrc: spec.ssrc,
            mode: spec.mode,
          },
          {
            profile: want.profile,
            lower: want.profile.endsWith('/TCP') ? 'tcp' : 'udp',
            multicast: !want.unicast,
            clientPorts: want.client_port ?? null,
            serverPorts: want.server_port ?? null,
            interleaved: want.interleaved ?? null,
            ssrc: want.ssrc ? Number.parseInt(want.ssrc, 16) : null,
            mode: want.mode ?? null,
          },
          `${f}: ${want.raw}`,
        );
        // The requested transport names the same lower transport and ports/channels.
        const [req] = parseTransport(tr.requested_transport);
        t.same([req?.lower, req?.clientPorts ?? req?.interleaved], [spec?.lower, spec?.clientPorts ?? spec?.interleaved], `${f}: request`);
      }
    }
  }
  t.ok(n >= 10, `${n} transports checked`);
});

t.test('the SETUP answer of lo_udp_h264 names the ports its RTP stream used', async (t) => {
  const m = JSON.parse(readFileSync(`${CAPTURES}lo_udp_h264.manifest.json`, 'utf8'));
  const [spec] = parseTransport(m.rtsp_sessions[0].tracks[0].transport.raw);
  const stream = m.rtp_streams.find((s: { payload_types: number[] }) => s.payload_types.includes(96));
  t.equal(`${spec!.serverPorts![0]}`, stream.src.split(':')[1], 'server_port[0] = RTP source port');
  t.equal(`${spec!.clientPorts![0]}`, stream.dst.split(':')[1], 'client_port[0] = RTP destination port');
  t.equal(spec!.ssrc, Number(stream.ssrc));
});

t.test('reads RFC 2326 §12.39 parameters', async (t) => {
  const [a, b] = parseTransport(
    'RTP/AVP;multicast;destination=239.0.0.1;ttl=16;port=5000-5001;source=192.0.2.1,rtp/avp/tcp;interleaved=4;ssrc=1a2b;mode="PLAY,RECORD";append',
  );
  t.same(
    [a!.profile, a!.lower, a!.multicast, a!.destination, a!.ttl, a!.port, a!.source, a!.clientPorts],
    ['RTP/AVP', 'udp', true, '239.0.0.1', 16, [5000, 5001], '192.0.2.1', null],
  );
  t.same([b!.profile, b!.lower, b!.interleaved, b!.ssrc, b!.mode], ['RTP/AVP/TCP', 'tcp', [4, 5], 0x1a2b, 'PLAY,RECORD'], 'single channel n gives [n, n+1]; quoted comma does not split');
  t.equal(b!.params.get('append'), true);
  const [c] = parseTransport(' RTP/AVP/UDP ; unicast ; client_port = 5000 ');
  t.same([c!.lower, c!.multicast, c!.clientPorts, c!.raw], ['udp', false, [5000, 5001], 'RTP/AVP/UDP ; unicast ; client_port = 5000'], 'single port n gives [n, n+1]');
});

t.test('reads RTSP 2.0 dest_addr/src_addr (RFC 7826 §18.54)', async (t) => {
  const [s] = parseTransport('RTP/AVP;unicast;dest_addr="192.0.2.5:3456"/"192.0.2.5:3457";src_addr="198.51.100.1:6256"/"198.51.100.1:6257";ssrc=93CB001E/A1B2C3D4');
  t.same([s!.destination, s!.clientPorts, s!.source, s!.serverPorts, s!.ssrc], ['192.0.2.5', [3456, 3457], '198.51.100.1', [6256, 6257], 0x93cb001e]);
  const [v6] = parseTransport('RTP/AVP;unicast;dest_addr="[2001:db8::1]:4000"');
  t.same([v6!.destination, v6!.clientPorts], ['2001:db8::1', [4000, 4001]]);
});

t.test('leaves malformed values null instead of failing', async (t) => {
  const [s] = parseTransport('RTP/AVP;client_port=99999-100000;server_port=abc;interleaved=300-301;ssrc=xyz;ttl=-1');
  t.same([s!.clientPorts, s!.serverPorts, s!.interleaved, s!.ssrc, s!.ttl], [null, null, null, null, null]);
  t.same(parseTransport(''), []);
  t.same(parseTransport('garbage;client_port=1'), [], 'no profile/transport');
  t.equal(parseTransport('RTP/AVP,,;;,RTP/AVP/TCP').length, 2);
});

t.test('formats Transport values that servers and parsers accept', async (t) => {
  t.equal(
    formatTransport({ profile: 'RTP/AVP', multicast: false, clientPorts: [5000, 5001], serverPorts: [6970, 6971], ssrc: 0xbe83cf09, mode: 'PLAY' }),
    'RTP/AVP;unicast;client_port=5000-5001;server_port=6970-6971;ssrc=BE83CF09;mode="PLAY"',
  );
  t.equal(formatTransport({ profile: 'RTP/AVP/TCP', multicast: false, interleaved: [0, 1] }), 'RTP/AVP/TCP;unicast;interleaved=0-1');
  t.equal(formatTransport({ profile: 'RTP/AVP', ssrc: 1 }), 'RTP/AVP;ssrc=00000001');
  const raw = 'RTP/AVP;multicast;destination=239.0.0.1;ttl=16;port=5000-5001;ssrc=0000ABCD;mode="PLAY";x-vendor=1;x-flag';
  const [s] = parseTransport(raw);
  t.equal(formatTransport(s!), raw, 'round trip keeps unknown parameters');
});
