import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { readCapturedRequest } from '../../../core/failover/captured-http.js';
import type { HttpTransaction } from '../../../core/contracts/records.js';
import { isCamtapError } from '../../../core/errors.js';
import { CAPTURES, importCaptures, type Imported } from '../query/fixture.js';

/** tshark's view of the capture (fixtures/failover/failover-http-push.gen.mjs made both). */
interface Truth {
  vms: string;
  camera: string;
  requests: Array<{ frame: number; client: string; server: string; method: string; uri: string; headers: string[]; body: string; authorization: string | null; status: number | null }>;
}
const truth = JSON.parse(readFileSync(`${CAPTURES}../failover/failover-http-push.json`, 'utf8')) as Truth;

/** The error `p` rejects with (fails the test when it resolves). */
async function errorOf(t: Test, p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  t.fail('resolved, an error was expected');
  return null;
}

async function transactions(imp: Imported): Promise<HttpTransaction[]> {
  return (await imp.catalog.listTransactions()).sort((a, b) => (a.time < b.time ? -1 : 1));
}

for (const inPlace of [true, false]) {
  const where = inPlace ? 'the pcap where it lies' : "camtap's own pcapng segments";
  t.test(`reads every captured HTTP request back as tshark shows it, from ${where}`, async (t) => {
    const imp = await importCaptures(t, ['../failover/failover-http-push.pcap'], { inPlace });
    t.equal(imp.segments[0]!.format, inPlace ? 'pcap' : 'pcapng');
    const txs = await transactions(imp);
    t.equal(txs.length, truth.requests.length, 'one transaction per request tshark sees');
    for (const [i, want] of truth.requests.entries()) {
      const tx = txs[i]!;
      const got = await readCapturedRequest((id) => imp.segments.find((s) => s.id === id), tx);
      t.equal(got.method, want.method, `frame ${want.frame}: method`);
      t.equal(got.target, want.uri, `frame ${want.frame}: request-target`);
      t.same(
        got.headers.map(([k, v]) => `${k}: ${v}`),
        want.headers,
        `frame ${want.frame}: headers in order, names as sent`,
      );
      t.equal(got.body.toString('utf8'), want.body, `frame ${want.frame}: body${want.headers.some((h) => /chunked/i.test(h)) ? ' (chunked coding removed)' : ''}`);
      const auth = got.headers.find(([k]) => k.toLowerCase() === 'authorization')?.[1] ?? null;
      t.equal(auth, want.authorization, `frame ${want.frame}: Authorization kept as sent (the plan drops it)`);
    }
  });
}

t.test('a request that spans two packets is put together from both', async (t) => {
  const imp = await importCaptures(t, ['../failover/failover-http-push.pcap']);
  const put = (await transactions(imp)).find((x) => x.method === 'PUT')!;
  t.equal(put.requestAt.length, 2, 'the chunked PUT was sent in two packets');
  const got = await readCapturedRequest((id) => imp.segments.find((s) => s.id === id), put);
  t.equal(got.body.toString(), truth.requests.find((r) => r.method === 'PUT')!.body);
});

function check(e: unknown, ok: (e: unknown) => boolean): boolean {
  if (!ok(e)) console.error(e);
  return ok(e);
}

t.test('bad store locations give an error naming the segment file and offset', async (t) => {
  const imp = await importCaptures(t, ['../failover/failover-http-push.pcap']);
  const seg = (id: number) => imp.segments.find((s) => s.id === id);
  const txs = await transactions(imp);
  const post = txs.find((x) => x.method === 'POST')!;
  const file = imp.segments[0]!.path;

  // The response's packets hold no request.
  const wrong: HttpTransaction = { ...post, requestAt: post.responseAt };
  t.ok(check(await errorOf(t, readCapturedRequest(seg, wrong)), (e) => isCamtapError(e, 'CAMTAP_ERR_STORE_CORRUPT') && e.details.file === file && e.details.offset === post.responseAt[0]!.offset && /no complete HTTP request POST/.test(e.message)));

  // Only the second packet of the PUT: its first bytes are missing.
  const put = txs.find((x) => x.method === 'PUT')!;
  t.ok(check(await errorOf(t, readCapturedRequest(seg, { ...put, requestAt: [put.requestAt[1]!] })), (e) => isCamtapError(e, 'CAMTAP_ERR_STORE_CORRUPT') && e.details.file === file && e.details.offset === put.requestAt[1]!.offset));

  // An offset that is not a record start: pcap record header at 24 (file header) is the first; 25 is inside it.
  t.ok(check(await errorOf(t, readCapturedRequest(seg, { ...post, requestAt: [{ segment: 1, offset: 25 }] })), (e) => isCamtapError(e) && e.details.file === file && e.details.offset === 25));

  // A segment retention deleted.
  t.ok(check(await errorOf(t, readCapturedRequest(() => undefined, post)), (e) => isCamtapError(e, 'CAMTAP_ERR_NOT_FOUND') && /segment 1/.test(e.message)));
});
