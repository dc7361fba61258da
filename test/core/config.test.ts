import t from 'tap';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadConfig, catalogUrl } from '../../core/config.js';
import { CamtapError } from '../../core/errors.js';
import { tempDir } from '../helpers/camtap.js';

t.test('runs on embedded defaults with no file at all', async (t) => {
  const { config, file } = loadConfig({ env: {} });
  t.equal(file, null);
  t.equal(config.dataDir, path.resolve('data'));
  t.equal(catalogUrl(config), `sqlite://${path.resolve('data', 'catalog.sqlite')}`);
  t.same(config.classify.rtspPorts, [554, 8554]);
});

t.test('--data and CAMTAP_DATA override the file', async (t) => {
  const d = tempDir(t);
  const f = path.join(d, 'c.yaml');
  writeFileSync(f, 'dataDir: ./here\n');
  t.equal(loadConfig({ file: f, env: {} }).config.dataDir, path.join(d, 'here'), 'relative to the config file');
  t.equal(loadConfig({ file: f, env: { CAMTAP_DATA: '/x/y' } }).config.dataDir, '/x/y');
  t.equal(loadConfig({ file: f, dataDir: '/a', env: { CAMTAP_DATA: '/x/y' } }).config.dataDir, '/a');
});

t.test('a wrong value names the file, the key path and the reason', async (t) => {
  const d = tempDir(t);
  const f = path.join(d, 'c.yaml');
  writeFileSync(f, 'taps:\n  - name: a\n    driver: libpcap\n    filter:\n      ports: [554, 70000]\n');
  const e = t.throws(() => loadConfig({ file: f, env: {} })) as unknown as CamtapError;
  t.equal(e.code, 'CAMTAP_ERR_CONFIG');
  t.match(e.message, `${f}: taps[0].filter.ports[1]:`);
});

t.test('unknown keys, duplicate tap names and broken YAML are errors', async (t) => {
  const d = tempDir(t);
  const f = path.join(d, 'c.yaml');
  writeFileSync(f, 'stroe: {}\n');
  t.throws(() => loadConfig({ file: f, env: {} }), { code: 'CAMTAP_ERR_CONFIG', message: /stroe/ });
  writeFileSync(f, 'taps:\n  - {name: a, driver: x}\n  - {name: a, driver: y}\n');
  t.throws(() => loadConfig({ file: f, env: {} }), { code: 'CAMTAP_ERR_CONFIG', message: /taps\[1\]\.name: duplicate tap name "a"/ });
  writeFileSync(f, 'taps: [\n');
  t.throws(() => loadConfig({ file: f, env: {} }), { code: 'CAMTAP_ERR_CONFIG_READ', message: /YAML error at line/ });
  t.throws(() => loadConfig({ file: path.join(d, 'missing.yaml'), env: {} }), { code: 'CAMTAP_ERR_CONFIG_READ', message: /missing\.yaml: cannot read/ });
});
