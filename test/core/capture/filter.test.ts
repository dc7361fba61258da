import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { toBpf, toPredicate, validateFilter, parseV4, parseV6, type FilterMeta } from '../../../core/capture/filter.js';
import { isCamtapError } from '../../../core/errors.js';
import type { FilterSpec } from '../../../core/contracts/filter.js';
import { have, run } from '../../helpers/peers.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const NETNS = path.join(root, 'fixtures/captures/netns_multi.pcap');
const LO = path.join(root, 'fixtures/filter/lo_v4v6_vlan.pcap');

/** The lab's netns addresses: cameras 10.77.0.11-14, VMSs 10.77.0.101-102. */
const inventory: Record<string, string[]> = {
  'camera:cam11': ['10.77.0.11'],
  'camera:cam13': ['10.77.0.13'],
  'camera:lo6': ['::1'],
  'vms:vms101': ['10.77.0.101'],
  'vms:vmsnet': ['10.77.0.96/28'],
};
const resolve = (name: string, kind: 'camera' | 'vms') => inventory[`${kind}:${name}`] ?? [];

function filterError(t: Test, fn: () => unknown, field: string, reason: RegExp) {
  try {
    fn();
    t.fail(`expected CAMTAP_ERR_FILTER for ${field}`);
  } catch (e) {
    t.ok(isCamtapError(e, 'CAMTAP_ERR_FILTER'), `CAMTAP_ERR_FILTER for ${field}`);
    const ce = e as { details: { field: string }; message: string };
    t.equal(ce.details.field, field);
    t.match(ce.message, reason);
  }
}

t.test('validateFilter names the bad field and why', async (t) => {
  filterError(t, () => validateFilter({ ports: [554, 8554, '70000'] }), 'ports[2]', /^filter ports\[2\]: "70000" is not a port$/);
  filterError(t, () => validateFilter({ ports: ['6000-5000'] }), 'ports[0]', /range start is above its end/);
  filterError(t, () => validateFilter({ ports: [0] }), 'ports[0]', /0 is not a port/);
  filterError(t, () => validateFilter({ ports: ['rtsp'] }), 'ports[0]', /not a port or a range/);
  filterError(t, () => validateFilter({ hosts: ['10.0.0.1', 'camera-1.local'] }), 'hosts[1]', /not an IPv4\/IPv6 address or a CIDR network/);
  filterError(t, () => validateFilter({ hosts: ['10.1.2.3/16'] }), 'hosts[0]', /host bits set \(did you mean 10\.1\.0\.0\/16\?\)/);
  filterError(t, () => validateFilter({ hosts: ['10.0.0.0/33'] }), 'hosts[0]', /prefix length must be 0\.\.32/);
  filterError(t, () => validateFilter({ hosts: ['2001:db8::1/32'] }), 'hosts[0]', /host bits set/);
  filterError(t, () => validateFilter({ hosts: ['fe80::1%eth0'] }), 'hosts[0]', /zone ids/);
  filterError(t, () => validateFilter({ hosts: '10.0.0.1' }), 'hosts', /must be a list/);
  filterError(t, () => validateFilter({ protocols: ['rtsp', 'sip'] }), 'protocols[1]', /"sip" is not one of rtp, rtcp, rtsp, http, onvif/);
  filterError(t, () => validateFilter({ direction: 'in' }), 'direction', /not src, dst or both/);
  filterError(t, () => validateFilter({ rtspPorts: [554, 65536] }), 'rtspPorts[1]', /65536 is not a port/);
  filterError(t, () => validateFilter({ cameras: ['cam1', ''] }), 'cameras[1]', /is not a name/);
  filterError(t, () => validateFilter({ raw: 5 }), 'raw', /must be a string/);
  filterError(t, () => validateFilter({ host: ['10.0.0.1'] }), 'host', /unknown field/);
  filterError(t, () => validateFilter('udp'), '(filter)', /must be an object/);
  t.same(validateFilter(undefined), {});
  t.same(validateFilter({ ports: ['554', 8554, '5000-5999'], hosts: [' 10.0.0.0/8 '], raw: '  ' }), { ports: ['554', 8554, '5000-5999'], hosts: ['10.0.0.0/8'] });
});

t.test('names resolve through the inventory, and unknown names are errors', async (t) => {
  filterError(t, () => toBpf({ cameras: ['cam11'] }), 'cameras[0]', /no inventory/);
  filterError(t, () => toBpf({ vms: ['vms101', 'nope'] }, resolve), 'vms[1]', /unknown vms "nope"/);
  t.equal(toBpf({ cameras: ['cam11'], vms: ['vmsnet'] }, resolve, { vlan: false }), '(ip host 10.77.0.11) and (ip net 10.77.0.96/28)');
});

t.test('translates each field to the BPF primitives of pcap-filter(7)', async (t) => {
  const f = (s: FilterSpec) => toBpf(s, resolve, { vlan: false });
  t.equal(f({}), '');
  t.equal(toBpf({}), '', 'an empty spec is everything, with no VLAN wrapper');
  t.equal(f({ hosts: ['10.77.0.11', '10.77.0.0/24'] }), '(ip host 10.77.0.11 or ip net 10.77.0.0/24)');
  t.equal(f({ hosts: ['10.77.0.11', '2001:DB8::1'], direction: 'src' }), '(ip src host 10.77.0.11 or src host 2001:db8::1)');
  t.equal(f({ hosts: ['2001:db8::/32'], direction: 'dst' }), '(dst net 2001:db8::/32)');
  t.equal(f({ ports: [554, '5000-5999', '7000-7000'] }), '(port 554 or portrange 5000-5999 or port 7000)');
  t.equal(f({ protocols: ['rtsp'] }), '(tcp port 554 or tcp port 8554)');
  t.equal(f({ protocols: ['rtsp', 'onvif', 'rtp'], rtspPorts: [10554], httpPorts: [8000] }), '(tcp port 554 or tcp port 8554 or tcp port 10554 or tcp port 80 or tcp port 8080 or tcp port 8000 or udp)');
  t.equal(f({ protocols: ['http', 'onvif'] }), '(tcp port 80 or tcp port 8080)', 'http and onvif share ports');
  t.equal(f({ hosts: ['10.77.0.11'], raw: 'not icmp' }), '(ip host 10.77.0.11) and (not icmp)');
  t.equal(
    toBpf({ hosts: ['10.77.0.11'], ports: [554] }),
    '((ip host 10.77.0.11) and (port 554)) or (vlan and ((ip host 10.77.0.11) and (port 554)))',
    'the same traffic inside one VLAN tag',
  );
});

/** The specs the behavioural comparison runs (on both fixtures). */
const specs: Array<[string, FilterSpec]> = [
  ['everything', {}],
  ['one camera host', { hosts: ['10.77.0.11'] }],
  ['from one host', { hosts: ['10.77.0.11'], direction: 'src' }],
  ['to a network', { hosts: ['10.77.0.0/28'], direction: 'dst' }],
  ['two hosts', { hosts: ['10.77.0.12', '10.77.0.101'] }],
  ['a port', { ports: [554] }],
  ['a port range', { ports: ['14000-30000'] }],
  ['several ports', { ports: [5004, '5006', 6970] }],
  ['rtsp', { protocols: ['rtsp'] }],
  ['rtp', { protocols: ['rtp'] }],
  ['rtsp and rtcp', { protocols: ['rtsp', 'rtcp'] }],
  ['http with an extra port', { protocols: ['http'], httpPorts: [9000] }],
  ['rtsp with an extra port', { protocols: ['rtsp'], rtspPorts: [9000, 5004] }],
  ['camera to vms', { cameras: ['cam11'], vms: ['vms101'] }],
  ['camera over rtsp', { cameras: ['cam13'], protocols: ['rtsp'] }],
  ['vms network and rtp', { vms: ['vmsnet'], protocols: ['rtp'] }],
  ['ipv6 loopback', { hosts: ['::1'] }],
  ['from ipv6 loopback to a port', { hosts: ['::1'], direction: 'src', ports: ['5006'] }],
  ['ipv6 camera over rtsp', { cameras: ['lo6'], protocols: ['rtsp'] }],
  ['ipv4 loopback (ARP stays out)', { hosts: ['127.0.0.1'] }],
  ['loopback net, onvif', { hosts: ['127.0.0.0/8'], protocols: ['onvif'] }],
  ['all of ipv4 and ipv6', { hosts: ['0.0.0.0/0', '::/0'] }],
  ['ipv6 net', { hosts: ['::/64'], direction: 'dst' }],
];

/** Per packet metadata from tshark (not the project's decoder), first occurrence = outer headers. */
async function tsharkMeta(file: string): Promise<FilterMeta[]> {
  const fields = ['ip.src', 'ip.dst', 'ipv6.src', 'ipv6.dst', 'ip.proto', 'ipv6.nxt', 'tcp.srcport', 'tcp.dstport', 'udp.srcport', 'udp.dstport', 'ip.frag_offset'];
  const r = await run('tshark', ['-n', '-r', file, '-T', 'fields', '-E', 'occurrence=f', '-E', 'separator=\t', ...fields.flatMap((f) => ['-e', f])]);
  if (r.code !== 0) throw new Error(`tshark: ${r.stderr}`);
  return r.stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((line) => {
      const [ipSrc, ipDst, v6Src, v6Dst, ipProto, v6Nxt, tsp, tdp, usp, udp, frag] = line.split('\t');
      const ipVersion = ipSrc ? 4 : v6Src ? 6 : 0;
      const protocol = Number(ipVersion === 4 ? ipProto : ipVersion === 6 ? v6Nxt : 0) || 0;
      // Ports belong to the outer transport only (an ICMP error quotes the inner UDP header).
      const firstFrag = !frag || frag === '0';
      const sport = protocol === 6 && firstFrag ? Number(tsp) : protocol === 17 && firstFrag ? Number(usp) : 0;
      const dport = protocol === 6 && firstFrag ? Number(tdp) : protocol === 17 && firstFrag ? Number(udp) : 0;
      return { ipVersion, srcAddr: (ipSrc || v6Src) ?? '', dstAddr: (ipDst || v6Dst) ?? '', protocol, sport, dport };
    });
}

async function capinfosCount(file: string): Promise<number> {
  const r = await run('capinfos', ['-c', '-M', file]);
  const m = /Number of packets:\s+(\d+)/.exec(r.stdout);
  if (!m) throw new Error(`capinfos ${file}: ${r.stdout}${r.stderr}`);
  return Number(m[1]);
}

const missing = ['tcpdump', 'tshark', 'capinfos'].filter((c) => !have(c));
const skip = missing.length > 0 ? `not installed: ${missing.join(', ')}` : false;

t.test('tcpdump compiles every translation', { skip }, async (t) => {
  const extra: FilterSpec[] = [{ hosts: ['10.77.0.11'], raw: 'not icmp' }, { protocols: ['rtsp', 'http', 'onvif', 'rtp', 'rtcp'], rtspPorts: [10554], httpPorts: [8000] }];
  for (const [name, spec] of [...specs, ...extra.map((s, i) => [`extra ${i}`, s] as const)]) {
    const bpf = toBpf(spec, resolve);
    if (bpf === '') continue;
    const file = await run('tcpdump', ['-r', NETNS, '-d', bpf]);
    t.equal(file.code, 0, `${name}: compiles for an Ethernet file: ${bpf}${file.stderr}`);
    const lo = await run('tcpdump', ['-i', 'lo', '-d', bpf]);
    t.equal(lo.code, 0, `${name}: compiles for live lo ${lo.stderr}`);
    const cooked = await run('tcpdump', ['-i', 'any', '-d', toBpf(spec, resolve, { vlan: false })]);
    t.equal(cooked.code, 0, `${name}: compiles without the VLAN part for -i any ${cooked.stderr}`);
  }
});

t.test('the predicate keeps exactly what tcpdump keeps with the BPF', { skip }, async (t) => {
  const tmp = mkdtempSync(path.join(tmpdir(), 'camtap-filter-'));
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
  for (const file of [NETNS, LO]) {
    const metas = await tsharkMeta(file);
    const total = await capinfosCount(file);
    t.equal(metas.length, total, `tshark decoded every frame of ${path.basename(file)}`);
    for (const [name, spec] of specs) {
      const bpf = toBpf(spec, resolve);
      const out = path.join(tmp, 'out.pcap');
      const r = await run('tcpdump', ['-r', file, '-w', out, ...(bpf ? [bpf] : [])]);
      t.equal(r.code, 0, `tcpdump ran (${r.stderr.trim()})`);
      const expected = await capinfosCount(out);
      const keep = toPredicate(spec, resolve);
      const got = metas.filter((m) => keep(m)).length;
      t.equal(got, expected, `${path.basename(file)}: ${name}: ${expected} packets`);
    }
  }
});

t.test('the fixtures exercise what they are for', { skip }, async (t) => {
  // Guard against a comparison that passes because nothing matched on either side.
  const tmp = mkdtempSync(path.join(tmpdir(), 'camtap-filter-'));
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
  const count = async (file: string, bpf: string) => {
    await run('tcpdump', ['-r', file, '-w', path.join(tmp, 'c.pcap'), bpf]);
    return capinfosCount(path.join(tmp, 'c.pcap'));
  };
  t.ok((await count(LO, 'vlan and ip6')) > 0, 'IPv6 inside VLAN tags');
  t.ok((await count(LO, 'vlan and ip')) > 0, 'IPv4 inside VLAN tags');
  t.ok((await count(LO, 'arp')) > 0, 'an ARP frame');
  t.ok((await count(LO, 'icmp or icmp6')) > 0, 'ICMP errors');
  t.ok((await count(NETNS, 'ip host 10.77.0.11 and ip host 10.77.0.101')) > 0, 'camera <-> VMS traffic');
});

t.test('address parsing for predicates follows RFC 4291 2.2 text forms', async (t) => {
  t.equal(parseV4('10.77.0.11'), 0x0a4d000b);
  t.equal(parseV4('255.255.255.255'), 0xffffffff);
  for (const bad of ['10.77.0', '10.77.0.256', '1..2.3', '1.2.3.4.5', '01234.1.1.1', 'a.b.c.d', '']) t.equal(parseV4(bad), -1, bad);
  const w = new Uint16Array(8);
  const words = (s: string) => (parseV6(s, w) ? Array.from(w) : null);
  t.same(words('::1'), [0, 0, 0, 0, 0, 0, 0, 1]);
  t.same(words('::'), [0, 0, 0, 0, 0, 0, 0, 0]);
  t.same(words('2001:DB8::8:800:200C:417A'), [0x2001, 0xdb8, 0, 0, 0x8, 0x800, 0x200c, 0x417a]);
  t.same(words('FF01::101'), [0xff01, 0, 0, 0, 0, 0, 0, 0x101]);
  t.same(words('::13.1.68.3'), [0, 0, 0, 0, 0, 0, 0x0d01, 0x4403]);
  t.same(words('::FFFF:129.144.52.38'), [0, 0, 0, 0, 0, 0xffff, 0x8190, 0x3426]);
  t.same(words('1:2:3:4:5:6:7:8'), [1, 2, 3, 4, 5, 6, 7, 8]);
  t.same(words('1:2:3:4:5:6:7::'), [1, 2, 3, 4, 5, 6, 7, 0]);
  t.same(words('fe80::1%eth0'), [0xfe80, 0, 0, 0, 0, 0, 0, 1]);
  for (const bad of ['1:2:3:4:5:6:7:8:9', ':1', '1:::2', '1::2::3', 'g::', '12345::', '1:2:3:4:5:6:7', '1:', '::1.2.3']) t.equal(words(bad), null, bad);
});

t.test('a predicate compares addresses by value, not by spelling', async (t) => {
  const keep = toPredicate({ hosts: ['2001:db8::1', '10.0.0.0/8'] });
  const m = (ipVersion: number, srcAddr: string, dstAddr: string): FilterMeta => ({ ipVersion, srcAddr, dstAddr, protocol: 17, sport: 1, dport: 2 });
  t.ok(keep(m(6, '2001:0db8:0000::0001', 'ff02::1')));
  t.ok(keep(m(6, 'ff02::1', '2001:DB8:0:0:0:0:0:1')));
  t.notOk(keep(m(6, '2001:db8::2', 'ff02::1')));
  t.ok(keep(m(4, '192.168.1.1', '10.200.3.4')));
  t.notOk(keep(m(4, '192.168.1.1', '11.0.0.1')));
  t.notOk(keep(m(6, '::ffff:10.0.0.1', '::1')), 'an IPv4-mapped IPv6 address is IPv6, as in BPF');
});
