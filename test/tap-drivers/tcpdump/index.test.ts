import t from 'tap';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import driver, { meta, parseTcpdumpDrops } from '../../../tap-drivers/tcpdump/index.js';
import { isCamtapError } from '../../../core/errors.js';
import { silentLogger } from '../../../core/logger.js';
import { freePort, have, run } from '../../helpers/peers.js';
import { liveUdpCase, recorder, sendUdp, until } from '../live-udp.js';

const ctx = { log: silentLogger, options: {}, dataDir: '/nonexistent' };
const skip = have('tcpdump') ? false : 'tcpdump is not installed';

t.test('exports a tap-driver plugin for core ^0.1.0', async (t) => {
  t.match(meta, { name: 'tcpdump', kind: 'tap-driver', core: '^0.1.0' });
  t.equal(driver.meta, meta);
});

t.test('translate() gives the BPF that tcpdump itself accepts', { skip }, async (t) => {
  const bpf = driver.translate({ hosts: ['10.77.0.11'], protocols: ['rtsp', 'rtp'] });
  t.equal(bpf, '((ip host 10.77.0.11) and (tcp port 554 or tcp port 8554 or udp)) or (vlan and ((ip host 10.77.0.11) and (tcp port 554 or tcp port 8554 or udp)))');
  const r = await run('tcpdump', ['-i', 'lo', '-d', bpf]);
  t.equal(r.code, 0, r.stderr);
});

t.test('captures every datagram sent to the filtered port on lo', { skip }, async (t) => {
  const { seen } = await liveUdpCase(t, driver, {});
  t.ok(seen.tsNsecs.some((n) => n % 1000 !== 0), 'nanosecond timestamps (--time-stamp-precision=nano)');
});

t.test('in immediate mode with slots for the burst, microsecond timestamps', { skip }, async (t) => {
  const { seen } = await liveUdpCase(t, driver, { immediate: true, nanoseconds: false, snaplen: 2048, bufferKiB: 4096 });
  t.ok(seen.tsNsecs.every((n) => n % 1000 === 0), 'whole microseconds');
});

t.test('reads the kernel drop count from the summary tcpdump prints at exit', async (t) => {
  const tail = '1200 packets captured\n1300 packets received by filter\n17 packets dropped by kernel\n';
  t.equal(parseTcpdumpDrops(tail), 17);
  t.equal(parseTcpdumpDrops(tail + '3 packets dropped by interface\n'), 20);
  t.equal(parseTcpdumpDrops('tcpdump: listening on lo'), null);
});

t.test('a missing interface option is refused when the tap is created', async (t) => {
  t.throws(() => driver.create({ id: 1, name: 'bad', driver: 'tcpdump', filter: {}, options: {} }, ctx), { code: 'CAMTAP_ERR_TAP', message: /tap bad: options.interface is required/ });
  t.throws(() => driver.create({ id: 1, name: 'bad', driver: 'tcpdump', filter: {}, options: { interface: 'lo', snaplen: 0 } }, ctx), { code: 'CAMTAP_ERR_TAP', message: /options.snaplen/ });
});

t.test('a bad interface fails open() naming the tap and tcpdump’s reason', { skip }, async (t) => {
  for (const filter of [{}, { ports: [5004] }]) {
    const tap = driver.create({ id: 2, name: 'ghost', driver: 'tcpdump', filter, options: { interface: 'nosuch0' } }, ctx);
    const err = await tap.open(() => {}, new AbortController().signal).then(
      () => null,
      (e: unknown) => e,
    );
    t.ok(isCamtapError(err, 'CAMTAP_ERR_TAP'), `CAMTAP_ERR_TAP (filter ${JSON.stringify(filter)})`);
    t.match((err as Error).message, /^tap ghost: .*nosuch0: No such device/);
    const st = tap.status();
    t.equal(st.state, 'failed');
    t.match(st.error, /No such device/);
    await tap.close(); // closing a failed tap is fine
  }
});

t.test('tcpdump ending on its own marks the tap failed with its last words', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'camtap-tcpdump-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const fake = path.join(dir, 'fake-tcpdump');
  writeFileSync(fake, "#!/bin/sh\necho 'tcpdump: listening on lo, link-type EN10MB (Ethernet)' >&2\nsleep 0.3\necho 'tcpdump: pcap_loop: The interface disappeared' >&2\nexit 1\n");
  chmodSync(fake, 0o755);
  const tap = driver.create({ id: 3, name: 'flaky', driver: 'tcpdump', filter: {}, options: { interface: 'lo', tcpdumpPath: fake } }, ctx);
  const err = await tap.open(() => {}, new AbortController().signal).then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(isCamtapError(err, 'CAMTAP_ERR_TAP'));
  t.equal((err as Error).message, 'tap flaky: tcpdump exited with code 1: tcpdump: pcap_loop: The interface disappeared');
  t.match(tap.status(), { state: 'failed', error: /The interface disappeared/ });
});

t.test('a missing tcpdump program fails open()', async (t) => {
  const tap = driver.create({ id: 4, name: 'none', driver: 'tcpdump', filter: { ports: [1] }, options: { interface: 'lo', tcpdumpPath: '/nonexistent/tcpdump' } }, ctx);
  await t.rejects(tap.open(() => {}, new AbortController().signal), { code: 'CAMTAP_ERR_TAP', message: /tap none: cannot run \/nonexistent\/tcpdump/ });
  t.equal(tap.status().state, 'failed');
});

t.test('aborting the signal stops the capture and open() resolves', { skip }, async (t) => {
  const port = await freePort('udp');
  const { seen, sink } = recorder(port);
  const tap = driver.create({ id: 5, name: 'abortable', driver: 'tcpdump', filter: { ports: [port] }, options: { interface: 'lo' } }, ctx);
  const ac = new AbortController();
  const opened = tap.open(sink, ac.signal);
  t.ok(await until(() => tap.status().state === 'running', 15000));
  await sendUdp(port, 10);
  t.ok(await until(() => seen.seqs.length === 10, 15000));
  ac.abort();
  await opened;
  t.equal(tap.status().state, 'stopped');
  t.equal(tap.status().drops, 0);
});

t.test('a sink that throws fails the tap instead of the process', { skip }, async (t) => {
  const port = await freePort('udp');
  const tap = driver.create({ id: 6, name: 'fragile', driver: 'tcpdump', filter: { ports: [port] }, options: { interface: 'lo' } }, ctx);
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
