import t from 'tap';
import { createRequire } from 'node:module';
import driver, { linkTypeNumber, meta } from '../../../tap-drivers/libpcap/index.js';
import { isCamtapError } from '../../../core/errors.js';
import { silentLogger } from '../../../core/logger.js';
import { freePort, have, run } from '../../helpers/peers.js';
import { liveUdpCase, recorder, sendUdp, until } from '../live-udp.js';

const ctx = { log: silentLogger, options: {}, dataDir: '/nonexistent' };

function pcapMissing(): string | false {
  try {
    createRequire(import.meta.url)('pcap');
    return false;
  } catch (e) {
    return `the native pcap module does not load here: ${(e as Error).message.split('\n')[0]}`;
  }
}
const skip = pcapMissing() || (have('tcpdump') ? false : 'tcpdump (to check filters) is not installed');

t.test('exports a tap-driver plugin for core ^0.1.0', async (t) => {
  t.match(meta, { name: 'libpcap', kind: 'tap-driver', core: '^0.1.0' });
  t.equal(driver.meta, meta);
});

t.test('maps node_pcap link type names to LINKTYPE numbers', async (t) => {
  t.equal(linkTypeNumber('LINKTYPE_ETHERNET'), 1);
  t.equal(linkTypeNumber('LINKTYPE_NULL'), 0);
  t.equal(linkTypeNumber('LINKTYPE_RAW'), 101);
  t.equal(linkTypeNumber('LINKTYPE_LINUX_SLL'), 113);
  t.equal(linkTypeNumber('Unknown linktype 276'), 276, 'SLL2 (-i any on libpcap >= 1.10)');
  t.equal(linkTypeNumber('something else'), -1);
});

t.test('translate() gives the BPF that libpcap compiles', { skip: have('tcpdump') ? false : 'tcpdump is not installed' }, async (t) => {
  const bpf = driver.translate({ ports: ['5000-5999'], hosts: ['::1'] });
  t.equal(bpf, '((host ::1) and (portrange 5000-5999)) or (vlan and ((host ::1) and (portrange 5000-5999)))');
  const r = await run('tcpdump', ['-i', 'lo', '-d', bpf]);
  t.equal(r.code, 0, r.stderr);
});

t.test('captures every datagram sent to the filtered port on lo', { skip }, async (t) => {
  await liveUdpCase(t, driver, {});
});

t.test('in immediate mode (timeoutMs 0) with slots for the burst', { skip }, async (t) => {
  await liveUdpCase(t, driver, { timeoutMs: 0, snaplen: 2048, promiscuous: false });
});

t.test('without the native module open() says why and suggests the tcpdump driver', async (t) => {
  const tap = driver.create({ id: 1, name: 'nolib', driver: 'libpcap', filter: {}, options: { interface: 'lo', module: 'pcap-not-installed-here' } }, ctx);
  const err = await tap.open(() => {}, new AbortController().signal).then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(isCamtapError(err, 'CAMTAP_ERR_TAP'));
  t.match((err as Error).message, /^tap nolib: the libpcap driver needs the native "pcap-not-installed-here" module, which did not load \(Cannot find module/);
  t.match((err as Error).message, /use the tcpdump driver/);
  t.match(tap.status(), { state: 'failed', error: /tcpdump driver/ });
  await tap.close();
});

t.test('a bad interface fails open() naming the tap and libpcap’s reason', { skip }, async (t) => {
  const tap = driver.create({ id: 2, name: 'ghost', driver: 'libpcap', filter: { ports: [5004] }, options: { interface: 'nosuch0' } }, ctx);
  await t.rejects(tap.open(() => {}, new AbortController().signal), { code: 'CAMTAP_ERR_TAP', message: /^tap ghost: cannot capture on nosuch0: .*No such device/ });
  t.equal(tap.status().state, 'failed');
});

t.test('a missing interface option is refused when the tap is created', async (t) => {
  t.throws(() => driver.create({ id: 1, name: 'bad', driver: 'libpcap', filter: {}, options: {} }, ctx), { code: 'CAMTAP_ERR_TAP', message: /options.interface is required/ });
  t.throws(() => driver.create({ id: 1, name: 'bad', driver: 'libpcap', filter: {}, options: { interface: 'lo', promiscuous: 'yes' } }, ctx), { code: 'CAMTAP_ERR_TAP', message: /options.promiscuous/ });
});

t.test('the any interface (cooked, no VLAN support) keeps the filter without its VLAN part', { skip }, async (t) => {
  const port = await freePort('udp');
  const { seen, sink } = recorder(port);
  const tap = driver.create({ id: 9, name: 'all', driver: 'libpcap', filter: { ports: [port] }, options: { interface: 'any' } }, ctx);
  const ac = new AbortController();
  const opened = tap.open(sink, ac.signal);
  t.ok(await until(() => tap.status().state !== 'opening', 10000));
  t.equal(tap.status().state, 'running', tap.status().error ?? '');
  t.equal(tap.status().filter, `(port ${port})`);
  await sendUdp(port, 5);
  // Cooked frames: the recorder (Ethernet offsets) counts them as other.
  t.ok(await until(() => seen.other >= 5, 10000), 'frames arrive');
  t.equal(seen.seqs.length, 0);
  t.notOk(seen.linkTypes.has(1), `a cooked link type (${[...seen.linkTypes]})`);
  ac.abort();
  await opened;
  await sendUdp(port, 1); // lets node_pcap release its poll handle
  t.equal(tap.status().state, 'stopped');
});

t.test('a sink that throws fails the tap instead of the process', { skip }, async (t) => {
  const port = await freePort('udp');
  const tap = driver.create({ id: 6, name: 'fragile', driver: 'libpcap', filter: { ports: [port] }, options: { interface: 'lo' } }, ctx);
  const opened = tap.open(() => {
    throw new Error('boom');
  }, new AbortController().signal);
  opened.catch(() => {});
  t.ok(await until(() => tap.status().state === 'running', 15000));
  await sendUdp(port, 3);
  await t.rejects(opened, { code: 'CAMTAP_ERR_TAP', message: /^tap fragile: .*boom/ });
  await sendUdp(port, 1); // lets node_pcap release its poll handle
  t.equal(tap.status().state, 'failed');
  await tap.close();
});
