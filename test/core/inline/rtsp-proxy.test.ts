/**
 * The RTSP proxy's mapping and sharing, with a stand-in camera session: which camera URL a
 * request path (or, in transparent mode, the request's host) means, one upstream per URL
 * and transport shared by every client, and the upstream closed once nobody watches.
 */
import t from 'tap';
import { LiveChannel } from '../../../core/live/channel.js';
import { RtspProxySource, redactUrl, type Upstream } from '../../../core/inline/rtsp-proxy.js';

function harness(opts: { transparent?: boolean; graceMs?: number } = {}) {
  const started: Array<{ url: string; transport: string; stopped: boolean; channel: LiveChannel }> = [];
  const cameras = [
    { name: 'door', address: '10.0.0.11', url: 'rtsp://admin:pw@10.0.0.11:554/stream1', transport: 'tcp' as const },
    { name: 'yard', address: '10.0.0.12', url: 'rtsp://10.0.0.12/live', transport: 'udp' as const },
  ];
  const proxy = new RtspProxySource({
    cameras: () => cameras,
    transparent: opts.transparent ?? false,
    graceMs: opts.graceMs ?? 50,
    start: (o): Upstream => {
      const rec = { url: o.url, transport: o.transport, stopped: false, channel: new LiveChannel({ key: o.key, sdp: '', camera: o.camera, payloadType: 96, codec: 'H264', clockRate: 90000 }) };
      started.push(rec);
      return {
        start: async () => rec.channel,
        stop: async () => {
          rec.stopped = true;
          rec.channel.end('stopped');
        },
      };
    },
  });
  t.teardown(() => proxy.close());
  return { proxy, started };
}

t.test('/<alias> is the camera URL; /<alias>/<path> the same camera host with that path and query', async (t) => {
  const { proxy, started } = harness();
  await proxy.resolve('/door', new URLSearchParams());
  await proxy.resolve('/door/axis-media/media.amp', new URLSearchParams('resolution=640x360&codec=h264'));
  t.same(
    started.map((s) => [s.url, s.transport]),
    [
      ['rtsp://admin:pw@10.0.0.11:554/stream1', 'tcp'],
      ['rtsp://admin:pw@10.0.0.11:554/axis-media/media.amp?resolution=640x360', 'tcp'],
    ],
    "credentials kept for the camera, camtap's own codec= not passed on",
  );
  t.equal(await proxy.resolve('/replay/door', new URLSearchParams()), null, 'camtap paths are never aliases');
  t.equal(await proxy.resolve('/nope', new URLSearchParams()), null, 'an unknown alias is not proxied');
  t.ok(proxy.proxies('/door/x'));
  t.notOk(proxy.proxies('/live/door'));
});

t.test('every client of one camera URL shares one upstream, closed after the last leaves', async (t) => {
  const { proxy, started } = harness({ graceMs: 30 });
  const a = await proxy.resolve('/door', new URLSearchParams());
  const b = await proxy.resolve('/door', new URLSearchParams());
  t.equal(a, b, 'the same feed');
  t.equal(started.length, 1, 'one camera session');
  const off = a!.subscribe({ onPacket: () => {}, onEnd: () => {} });
  await new Promise((r) => setTimeout(r, 1200));
  t.notOk(started[0]!.stopped, 'kept while a client watches');
  off();
  await new Promise((r) => setTimeout(r, 1300));
  t.ok(started[0]!.stopped, 'closed after the grace period with no client');
  t.equal(proxy.upstreams, 0);
  await proxy.resolve('/door', new URLSearchParams());
  t.equal(started.length, 2, 'a new client opens a new session');
});

t.test('transparent mode maps a request for the camera\'s own address to that camera', async (t) => {
  const { proxy, started } = harness({ transparent: true });
  await proxy.resolve('/live', new URLSearchParams(), '10.0.0.12:554');
  t.same(started.map((s) => s.url), ['rtsp://10.0.0.12:554/live']);
  t.equal(await proxy.resolve('/live', new URLSearchParams(), '10.0.0.99:554'), null, 'another host is not proxied');
  const off = harness({ transparent: false });
  t.equal(await off.proxy.resolve('/live', new URLSearchParams(), '10.0.0.12:554'), null, 'off by default');
});

t.test('credentials never show in what is logged', async (t) => {
  t.equal(redactUrl('rtsp://admin:pw@10.0.0.11:554/stream1'), 'rtsp://10.0.0.11:554/stream1');
  t.equal(redactUrl('rtsp://10.0.0.11/x'), 'rtsp://10.0.0.11/x');
});
