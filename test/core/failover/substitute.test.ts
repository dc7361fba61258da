import t from 'tap';
import { containsAddress, findPortRefs, rewriteTransport, substituteAddress, substitutePorts } from '../../../core/failover/substitute.js';

t.test('substituteAddress replaces an IPv4 address only as a whole token', async (t) => {
  const text = 'a=10.77.0.1;b=10.77.0.11;c=110.77.0.1;d=10.77.0.1.5;e=1.10.77.0.1;f=10.77.0.1';
  t.equal(substituteAddress(text, '10.77.0.1', '10.77.0.200'), 'a=10.77.0.200;b=10.77.0.11;c=110.77.0.1;d=10.77.0.1.5;e=1.10.77.0.1;f=10.77.0.200');
  t.equal(substituteAddress('sent to 10.77.0.1.', '10.77.0.1', '10.0.0.9'), 'sent to 10.0.0.9.', 'a full stop after the address is not part of it');
  t.equal(substituteAddress('dest=127.0.0.50&x=127.0.0.5', '127.0.0.5', '127.0.0.1'), 'dest=127.0.0.50&x=127.0.0.1');
  t.equal(substituteAddress('dest%3D127.0.0.5%26', '127.0.0.5', '127.0.0.1'), 'dest%3D127.0.0.1%26', 'inside a percent-encoded query');
  t.equal(substituteAddress('no address here', '10.77.0.1', '10.0.0.9'), 'no address here');
});

t.test('containsAddress tells a longer address from the VMS address', async (t) => {
  t.notOk(containsAddress('server=127.0.0.50', '127.0.0.5'));
  t.notOk(containsAddress('server=2127.0.0.5', '127.0.0.5'));
  t.ok(containsAddress('{"url":"http://127.0.0.5:8080/events"}', '127.0.0.5'));
  t.ok(containsAddress('x=[FD00:0:0::1]', 'fd00::1'), 'another textual form of the same IPv6 address (RFC 4291 §2.2)');
});

t.test('substituteAddress handles IPv6 bare, bracketed and percent-encoded', async (t) => {
  const text = 'a=[fd00::1]:554 b=fd00::10 c=FD00:0:0::1 d=fd00::1:2 e=fd00%3A%3A1 f=abcfd00::1';
  t.equal(substituteAddress(text, 'fd00::1', 'fd00::5'), 'a=[fd00::5]:554 b=fd00::10 c=fd00::5 d=fd00::1:2 e=fd00%3A%3A5 f=abcfd00::1');
  t.equal(substituteAddress('rtsp://[fd00::1]:554/x', '[fd00::1]', '10.0.0.5'), 'rtsp://10.0.0.5:554/x', 'an IPv4 replacement loses the brackets (RFC 3986 §3.2.2)');
  t.equal(substituteAddress('dest%3Dfd00%3A%3A1&p=1', 'fd00::1', 'fd00::5'), 'dest%3Dfd00%3A%3A5&p=1', 'a run that starts inside a %XX escape');
});

t.test('substituteAddress brackets an IPv6 replacement where a port or URL authority needs it', async (t) => {
  t.equal(substituteAddress('rtsp://10.77.0.1:554/s', '10.77.0.1', 'fd00::5'), 'rtsp://[fd00::5]:554/s');
  t.equal(substituteAddress('http://10.77.0.1/s', '10.77.0.1', 'fd00::5'), 'http://[fd00::5]/s');
  t.equal(substituteAddress('dest=10.77.0.1&port=5004', '10.77.0.1', 'fd00::5'), 'dest=fd00::5&port=5004');
});

t.test('substituteAddress matches a host name case-insensitively and not inside a longer name', async (t) => {
  t.equal(substituteAddress('http://VMS.local/x vms.local.example myvms.local vms.local', 'vms.local', 'cam.tap'), 'http://cam.tap/x vms.local.example myvms.local cam.tap');
});

t.test('findPortRefs finds media port parameters and ports after the address, not service ports', async (t) => {
  const form = 'dest=10.0.0.5&port=5004&http_port=80&rtcp_port=5005';
  t.same(
    findPortRefs(form, '10.0.0.5').map((r) => [r.port, r.kind, r.name]),
    [
      [5004, 'param', 'port'],
      [5005, 'param', 'rtcp_port'],
    ],
  );
  const json = '{"rtpPort": 5004, "rtspPort": 554, "target":"10.0.0.5:6000"}';
  t.same(
    findPortRefs(json, '10.0.0.5').map((r) => [r.port, r.kind]),
    [
      [5004, 'param'],
      [6000, 'endpoint'],
    ],
  );
  t.same(findPortRefs('<tt:Port>5004</tt:Port><Address>10.0.0.5</Address>', '10.0.0.5').map((r) => r.port), [5004]);
  t.same(findPortRefs('to [fd00::5]:5004', 'fd00::5').map((r) => [r.port, r.kind]), [[5004, 'endpoint']]);
});

t.test('substitutePorts replaces the mapped ports at their places only', async (t) => {
  const text = 'dest=10.0.0.5&port=5004&id=5004&rtcp_port=5005';
  const refs = findPortRefs(text, '10.0.0.5');
  t.equal(
    substitutePorts(
      text,
      refs,
      new Map([
        [5004, 50000],
        [5005, 50001],
      ]),
    ),
    'dest=10.0.0.5&port=50000&id=5004&rtcp_port=50001',
    'id=5004 is not a port parameter and stays',
  );
});

t.test('rewriteTransport follows RFC 2326 §12.39', async (t) => {
  // The RFC's own example: a multicast alternative and a unicast one.
  t.equal(
    rewriteTransport('RTP/AVP;multicast;ttl=127;mode="PLAY",RTP/AVP;unicast;client_port=3456-3457;mode="PLAY"', { clientPorts: [50000, 50001] }),
    'RTP/AVP;multicast;ttl=127;mode="PLAY",RTP/AVP;unicast;client_port=50000-50001;mode="PLAY"',
    'the multicast alternative keeps its group parameters, the unicast one gets camtap\'s ports',
  );
  t.equal(rewriteTransport('RTP/AVP/UDP;unicast;client_port=14104-14105', { clientPorts: [50000, 50001] }), 'RTP/AVP/UDP;unicast;client_port=50000-50001');
  t.equal(rewriteTransport('RTP/AVP/TCP;unicast;interleaved=0-1', { clientPorts: [50000, 50001] }), 'RTP/AVP/TCP;unicast;interleaved=0-1', 'TCP keeps interleaved and gets no client_port');
  t.equal(
    rewriteTransport('RTP/AVP;unicast;destination=10.77.0.101;client_port=4588-4589;server_port=6256-6257;ssrc=2FA32A50', { clientPorts: [50002, 50003], destination: '10.77.0.100' }),
    'RTP/AVP;unicast;destination=10.77.0.100;client_port=50002-50003',
    'destination -> camtap; server_port and ssrc belonged to the old session',
  );
  t.equal(rewriteTransport('RTP/AVP;unicast', { clientPorts: [50000, 50001] }), 'RTP/AVP;unicast;client_port=50000-50001', 'a UDP unicast SETUP without client_port gets one');
  t.equal(rewriteTransport('RTP/AVP;unicast;client_port=4588', { clientPorts: [50000, 50001] }), 'RTP/AVP;unicast;client_port=50000', 'a single port stays single');
  t.equal(rewriteTransport('RTP/AVP;unicast;Client_Port=1-2;x-vendor=on', { clientPorts: [50000, 50001] }), 'RTP/AVP;unicast;Client_Port=50000-50001;x-vendor=on', 'parameter names as written, vendor parameters kept');
  t.equal(rewriteTransport('RTP/AVP;unicast;destination="10.77.0.101"', { destination: '10.77.0.100' }), 'RTP/AVP;unicast;destination="10.77.0.100"');
  t.equal(rewriteTransport('RTP/AVP;multicast;destination=232.1.1.1;port=5000-5001', { clientPorts: [50000, 50001], destination: '10.77.0.100' }), 'RTP/AVP;multicast;destination=232.1.1.1;port=5000-5001', 'a multicast group is the camera\'s');
});
