import t from 'tap';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PluginHost, checkMeta } from '../../core/plugin-host.js';
import { silentLogger } from '../../core/logger.js';
import { tempDir } from '../helpers/camtap.js';

function plugin(dir: string, name: string, body: string): string {
  const p = path.join(dir, name);
  mkdirSync(p, { recursive: true });
  writeFileSync(path.join(p, 'package.json'), JSON.stringify({ name, type: 'module', main: 'index.js' }));
  writeFileSync(path.join(p, 'index.js'), body);
  return p;
}

t.test('loads an external tap driver from a folder and checks its meta', async (t) => {
  const d = tempDir(t);
  const p = plugin(d, 'tap-x', `export const meta = { name: 'tap-x', kind: 'tap-driver', version: '1.0.0', core: '^0.1.0' };
export default (ctx) => ({ translate: (s) => 'udp', create: () => ({ open: async () => {}, close: async () => {}, status: () => ({ state: 'idle', packets: 0, bytes: 0, drops: null }) }), opts: ctx.options });`);
  const host = new PluginHost({ log: silentLogger, dataDir: d });
  const meta = await host.load(p);
  t.equal(meta.name, 'tap-x');
  t.equal(host.tapDriver('tap-x', 't1').translate({}), 'udp');
  t.throws(() => host.tapDriver('nope', 't1'), { code: 'CAMTAP_ERR_TAP_DRIVER', message: /tap t1: unknown driver nope \(known: tap-x\)/ });
});

t.test('rejects a plugin for another core range, with bad meta, or that does not import', async (t) => {
  const d = tempDir(t);
  const host = new PluginHost({ log: silentLogger, dataDir: d });
  const old = plugin(d, 'old', `export const meta = { name: 'old', kind: 'vms', version: '1.0.0', core: '^2.0.0' }; export default {};`);
  await t.rejects(host.load(old), { code: 'CAMTAP_ERR_PLUGIN_CORE_RANGE', message: 'plugin old needs core ^2.0.0, this is 0.1.0' });
  const bad = plugin(d, 'bad', `export const meta = { name: 'bad', kind: 'gadget', version: '1.0.0', core: '*' }; export default {};`);
  await t.rejects(host.load(bad), { code: 'CAMTAP_ERR_PLUGIN_META', message: /meta.kind "gadget"/ });
  const broken = plugin(d, 'broken', `export const meta = ; syntax error`);
  await t.rejects(host.load(broken), { code: 'CAMTAP_ERR_PLUGIN_LOAD', message: /plugin .*broken: cannot load/ });
  await t.rejects(host.load('camtap-no-such-package'), { code: 'CAMTAP_ERR_PLUGIN_LOAD' });
  t.throws(() => checkMeta(undefined, 'x'), { code: 'CAMTAP_ERR_PLUGIN_META', message: /no `meta` export/ });
});

t.test('a throwing camera profile hook is tagged and does not stop classification', async (t) => {
  const d = tempDir(t);
  const host = new PluginHost({ log: silentLogger, dataDir: d });
  await host.load(plugin(d, 'boom', `export const meta = { name: 'boom', kind: 'camera-profile', version: '0.0.1', core: '*' };
export default { match() { throw new Error('vendor bug'); } };`));
  await host.load(plugin(d, 'ok', `export const meta = { name: 'ok', kind: 'camera-profile', version: '0.0.1', core: '*' };
export default { match(flow) { return flow.dport === 9999 ? 'rtsp' : null; } };`));
  const flow = { transport: 'tcp' as const, src: '10.0.0.1', sport: 40000, dst: '10.0.0.2', dport: 9999 };
  t.equal(host.matchFlow(flow, Buffer.from('x')), 'rtsp');
  t.throws(() => PluginHost.call(host.cameraProfiles[0]!, 'match', () => host.cameraProfiles[0]!.match!(flow, Buffer.alloc(0))), { code: 'CAMTAP_ERR_PLUGIN_HOOK', message: 'plugin boom: hook match failed: vendor bug' });
});
