import t from 'tap';
import { readFileSync } from 'node:fs';
import { ERRORS, CamtapError } from '../../core/errors.js';

t.test('every error code is documented in docs/ERRORS.md', async (t) => {
  const doc = readFileSync(new URL('../../docs/ERRORS.md', import.meta.url), 'utf8');
  for (const code of Object.keys(ERRORS)) t.ok(doc.includes(`\`${code}\``), `${code} documented`);
});

t.test('messages name what the details give', async (t) => {
  const e = new CamtapError('CAMTAP_ERR_CAPTURE_TRUNCATED', { file: 'x.pcap', offset: 40, what: 'record', reason: 'needs 100 bytes, 12 left' });
  t.equal(e.message, 'x.pcap: offset 40: truncated record: needs 100 bytes, 12 left');
  t.equal(e.exit, 65);
  t.same(e.toJSON(), { code: 'CAMTAP_ERR_CAPTURE_TRUNCATED', message: e.message, file: 'x.pcap', offset: 40, what: 'record', reason: 'needs 100 bytes, 12 left' });
});
