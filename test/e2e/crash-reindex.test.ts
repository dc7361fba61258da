/**
 * kill -9 during an import, then restart with `camtap reindex`: the open segment's torn
 * tail is cut, tshark reads every segment cleanly, and the catalog equals that of a clean
 * import of the same stored packets.
 */
import t from 'tap';
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CAPTURES, CLI, camtap, camtapJson, tempDir } from '../helpers/camtap.js';
import type { SessionRecord, StreamRecord } from '../../core/contracts/records.js';
import { have } from '../helpers/peers.js';

const skip = !have('editcap') || !have('mergecap') || !have('tshark') ? 'editcap, mergecap and tshark (Debian package tshark) are needed' : false;

function bigCapture(dir: string, copies: number): string {
  const src = path.join(CAPTURES, 'netns_multi.pcap');
  const parts: string[] = [];
  for (let i = 0; i < copies; i++) {
    const p = path.join(dir, `part${i}.pcap`);
    execFileSync('editcap', ['-t', String(i * 20), src, p]);
    parts.push(p);
  }
  const out = path.join(dir, 'big.pcap');
  execFileSync('mergecap', ['-a', '-F', 'pcap', '-w', out, ...parts]);
  return out;
}

const strip = <T extends object>(x: T[], drop: string[]) => JSON.parse(JSON.stringify(x, (k, v) => (drop.includes(k) ? undefined : v)));

t.test('kill -9 mid-import, reindex: catalog equals a clean import of what was stored', { skip }, async (t) => {
  const work = tempDir(t);
  const big = bigCapture(work, 24);
  const dataA = path.join(work, 'a');
  const cfg = path.join(work, 'c.yaml');
  writeFileSync(cfg, 'store:\n  maxSegmentBytes: 2000000\n');
  const p = spawn(process.execPath, [CLI, 'import', big, '--data', dataA, '--config', cfg], { stdio: 'ignore', env: { ...process.env, CAMTAP_LOG_LEVEL: 'silent' } });
  const segDir = path.join(dataA, 'segments');
  // Kill once a few segments are sealed and the next one is being written.
  await new Promise<void>((resolve, reject) => {
    const iv = setInterval(() => {
      const files = existsSync(segDir) ? readdirSync(segDir) : [];
      const sealed = files.filter((f) => f.endsWith('.pcapng')).length;
      const open = files.find((f) => f.endsWith('.open'));
      if (sealed >= 3 && open && statSync(path.join(segDir, open)).size > 0) {
        clearInterval(iv);
        p.kill('SIGKILL');
        resolve();
      }
    }, 5);
    p.on('exit', (code, sig) => {
      clearInterval(iv);
      if (sig !== 'SIGKILL') reject(new Error(`import ended (${code}) before it could be killed: make the input bigger`));
    });
  });
  await new Promise((r) => p.once('close', r));
  t.ok(readdirSync(segDir).some((f) => f.endsWith('.open')), 'an unsealed segment was left behind');

  const re = await camtap(['reindex'], { data: dataA });
  t.equal(re.code, 0, `reindex exits 0 ${re.stderr}`);
  const segs = readdirSync(segDir).filter((f) => f.endsWith('.pcapng')).sort();
  t.notOk(readdirSync(segDir).some((f) => f.endsWith('.open')), 'no unsealed segment after restart');
  let stored = 0;
  for (const s of segs) {
    // tshark must read every segment to its end without complaint.
    const out = execFileSync('tshark', ['-r', path.join(segDir, s), '-T', 'fields', '-e', 'frame.number'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    stored += out.trim().split('\n').filter(Boolean).length;
  }
  t.ok(stored > 0, `${stored} packets survived the crash`);

  const dataB = path.join(work, 'b');
  const imp = await camtap(['import', ...segs.map((s) => path.join(segDir, s))], { data: dataB });
  t.equal(imp.code, 0, 'clean import of the stored segments');

  const sa = await camtapJson<StreamRecord[]>(['streams'], dataA);
  const sb = await camtapJson<StreamRecord[]>(['streams'], dataB);
  t.ok(sa.length >= 4, `${sa.length} streams`);
  t.same(strip(sa, []), strip(sb, []), 'streams equal');
  t.equal(sa.reduce((n, s) => n + s.packets + s.duplicates, 0) > 0, true);
  const ea = await camtapJson<SessionRecord[]>(['sessions'], dataA);
  const eb = await camtapJson<SessionRecord[]>(['sessions'], dataB);
  // Store locations differ (B renumbers segments); everything learned must not.
  t.same(strip(ea, ['requestAt', 'responseAt']), strip(eb, ['requestAt', 'responseAt']), 'sessions equal');
  const ia = await camtapJson<unknown>(['inventory'], dataA);
  const ib = await camtapJson<unknown>(['inventory'], dataB);
  t.same(ia, ib, 'inventory equal');
});
