/**
 * A capture split in two files (as tcpdump -C rotates them) imported one after the other
 * gives the same streams and inventory as the whole capture imported at once.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { CAPTURES, camtap, camtapJson, tempDir } from '../helpers/camtap.js';
import { have } from '../helpers/peers.js';
import type { StreamRecord } from '../../core/contracts/records.js';

t.test('two consecutive imports continue the same streams', { skip: have('editcap') ? false : 'editcap (Debian package tshark) splits the capture' }, async (t) => {
  const dir = tempDir(t);
  const whole = path.join(CAPTURES, 'netns_multi.pcap');
  const a = path.join(dir, 'a.pcap');
  const b = path.join(dir, 'b.pcap');
  execFileSync('editcap', ['-r', whole, a, '1-2800']);
  execFileSync('editcap', ['-r', whole, b, '2801-5616']);
  const split = path.join(dir, 'split');
  t.equal((await camtap(['import', a], { data: split })).code, 0);
  const again = await camtap(['import', a], { data: split });
  t.equal(again.code, 0);
  t.match(again.stderr, `${a}: already imported, skipped`, 'importing a file twice does not count its packets twice');
  t.equal((await camtap(['import', b], { data: split })).code, 0);
  const once = path.join(dir, 'once');
  t.equal((await camtap(['import', whole], { data: once })).code, 0);
  const s1 = await camtapJson<StreamRecord[]>(['streams'], split);
  const s2 = await camtapJson<StreamRecord[]>(['streams'], once);
  t.same(s1, s2, 'streams equal');
  t.same(await camtapJson(['inventory'], split), await camtapJson(['inventory'], once), 'inventory equal');
});
