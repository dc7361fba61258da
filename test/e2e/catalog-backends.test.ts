/**
 * The catalog on real Redis and PostgreSQL servers: importing a capture and rebuilding it
 * with `reindex` gives the same streams, sessions and inventory as the SQLite default.
 */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { CAPTURES, camtap, tempDir } from '../helpers/camtap.js';
import { startPostgres, startRedis, type RunningService } from '../helpers/services.js';

const capture = path.join(CAPTURES, 'netns_multi.pcap');

async function learned(data: string, config?: string) {
  const cfg = config ? ['--config', config] : [];
  const get = async (what: string) => {
    const r = await camtap([what, '--json', ...cfg], { data });
    if (r.code !== 0) throw new Error(`${what}: ${r.stderr}`);
    return JSON.parse(r.stdout) as unknown;
  };
  return { streams: await get('streams'), sessions: await get('sessions'), inventory: await get('inventory') };
}

t.test('Redis and PostgreSQL catalogs hold what the SQLite one does', async (t) => {
  const base = tempDir(t);
  const sqlite = path.join(base, 'sqlite');
  t.equal((await camtap(['import', capture], { data: sqlite })).code, 0);
  const expected = await learned(sqlite);

  for (const [name, start] of [['redis', startRedis], ['postgresql', startPostgres]] as const) {
    await t.test(name, async (t) => {
      const svc: RunningService | null = await start();
      if (!svc) {
        t.skip(`${name} server binary not installed (scripts/install-deps.sh installs it)`);
        return;
      }
      t.teardown(() => svc.stop());
      const data = path.join(base, name);
      const cfg = path.join(base, `${name}.yaml`);
      writeFileSync(cfg, `catalog:\n  url: ${svc.url}\n  namespace: e2e\n`);
      const imp = await camtap(['import', capture, '--config', cfg], { data });
      t.equal(imp.code, 0, `import with the ${name} catalog ${imp.stderr}`);
      t.same(await learned(data, cfg), expected, 'same streams, sessions and inventory as SQLite');
      const re = await camtap(['reindex', '--config', cfg], { data });
      t.equal(re.code, 0, `reindex ${re.stderr}`);
      t.same(await learned(data, cfg), expected, 'and after reindex');
    });
  }
});
