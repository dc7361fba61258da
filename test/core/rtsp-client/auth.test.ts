/**
 * Basic and Digest against the worked examples of the RFCs: RFC 7616 §3.9.1 (MD5 and
 * SHA-256, Mufasa / "Circle of Life"), RFC 2617 §3.5 (MD5 with qop=auth, "Circle Of
 * Life"), the RFC 2069 form without qop (RFC 2069 §2.4's example, password
 * "CircleOfLife"), and RFC 7617 §2's Basic example. The `-sess` values were computed by
 * hand with coreutils' md5sum/sha256sum from RFC 7616 §3.4.2's definition of A1.
 */
import t from 'tap';
import { Authenticator, basicAuthorization, digestAuthorization, digestResponse, parseChallenges, pickChallenge, type DigestChallenge } from '../../../core/rtsp-client/auth.js';

const RFC7616 = {
  username: 'Mufasa',
  password: 'Circle of Life',
  realm: 'http-auth@example.org',
  nonce: '7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v',
  opaque: 'FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS',
  cnonce: 'f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ',
  method: 'GET',
  uri: '/dir/index.html',
};

/** Parameters of an Authorization value, unquoted. */
function params(header: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of header.replace(/^Digest\s+/, '').matchAll(/([\w*-]+)=("(?:[^"\\]|\\.)*"|[^,\s]*)/g)) out[m[1]!] = m[2]!.startsWith('"') ? m[2]!.slice(1, -1) : m[2]!;
  return out;
}

t.test('RFC 7616 §3.9.1: the MD5 and SHA-256 answers to the same challenge', async (t) => {
  for (const [algorithm, expected] of [
    ['MD5', '8ca523f5e9506fed4657c9700eebdbec'],
    ['SHA-256', '753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1'],
  ] as const) {
    // The two WWW-Authenticate headers of the example's 401.
    const [c] = parseChallenges([`Digest realm="${RFC7616.realm}", qop="auth, auth-int", algorithm=${algorithm}, nonce="${RFC7616.nonce}", opaque="${RFC7616.opaque}"`]);
    t.equal(c?.scheme, 'digest');
    const header = digestAuthorization(c as DigestChallenge, { username: RFC7616.username, password: RFC7616.password, method: 'GET', uri: RFC7616.uri, nc: 1, cnonce: RFC7616.cnonce })!;
    const p = params(header);
    t.equal(p.response, expected, `${algorithm} response`);
    t.same(
      { username: p.username, realm: p.realm, uri: p.uri, algorithm: p.algorithm, nonce: p.nonce, nc: p.nc, cnonce: p.cnonce, qop: p.qop, opaque: p.opaque },
      { username: 'Mufasa', realm: RFC7616.realm, uri: RFC7616.uri, algorithm, nonce: RFC7616.nonce, nc: '00000001', cnonce: RFC7616.cnonce, qop: 'auth', opaque: RFC7616.opaque },
      'the other parameters as in the example',
    );
  }
});

t.test('RFC 2617 §3.5: MD5 with qop=auth', async (t) => {
  const r = digestResponse({ algorithm: 'MD5', username: 'Mufasa', password: 'Circle Of Life', realm: 'testrealm@host.com', nonce: 'dcd98b7102dd2f0e8b11d0f600bfb0c093', method: 'GET', uri: '/dir/index.html', qop: 'auth', nc: 1, cnonce: '0a4f113b' });
  t.equal(r, '6629fae49393a05397450978507c4ef1');
});

t.test('RFC 2069 form (no qop): KD(H(A1), nonce:H(A2)), no nc or cnonce sent', async (t) => {
  const [c] = parseChallenges(['Digest realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"']);
  const header = digestAuthorization(c as DigestChallenge, { username: 'Mufasa', password: 'CircleOfLife', method: 'GET', uri: '/dir/index.html', nc: 1, cnonce: 'unused' })!;
  const p = params(header);
  t.equal(p.response, '1949323746fe6a43ef61f9606e7febea');
  t.notOk('nc' in p || 'cnonce' in p || 'qop' in p, 'no qop parameters for an RFC 2069 server');
});

t.test('-sess algorithms hash the nonce and cnonce into A1 (RFC 7616 §3.4.2)', async (t) => {
  const base = { username: RFC7616.username, password: RFC7616.password, realm: RFC7616.realm, nonce: RFC7616.nonce, method: 'GET', uri: RFC7616.uri, qop: 'auth' as const, nc: 1, cnonce: RFC7616.cnonce };
  t.equal(digestResponse({ ...base, algorithm: 'MD5-sess' }), 'e783283f46242139c486a698fec7211d');
  t.equal(digestResponse({ ...base, algorithm: 'SHA-256-sess' }), '2fd51b3a77ad75bad6afad6003e818d767133c46d9e2749e7f5232ae1ea3efd7');
  t.equal(digestResponse({ ...base, algorithm: 'SHA-512-256' }), null, 'an algorithm it does not compute');
});

t.test('RFC 7617 §2: Basic for Aladdin / open sesame', async (t) => {
  t.equal(basicAuthorization('Aladdin', 'open sesame'), 'Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==');
});

t.test('challenges: several per header and per response, quoted commas, stale, no commas', async (t) => {
  const cs = parseChallenges([
    'Digest realm="cam, 1", nonce="a\\"b", algorithm=MD5, stale=TRUE, Basic realm="cam"',
    'Digest qop="auth" realm="IP Camera(C2183)" nonce="4e54"',
    'Negotiate abc==',
    'Digest realm="no nonce"',
  ]);
  t.equal(cs.length, 3, 'Negotiate and a Digest challenge without a nonce are left out');
  t.match(cs[0], { scheme: 'digest', realm: 'cam, 1', nonce: 'a"b', algorithm: 'MD5', stale: true, qop: [] });
  t.match(cs[1], { scheme: 'basic', realm: 'cam' });
  t.match(cs[2], { scheme: 'digest', realm: 'IP Camera(C2183)', nonce: '4e54', qop: ['auth'] });
});

t.test('the strongest challenge is answered: SHA-256 over MD5 over Basic', async (t) => {
  const cs = parseChallenges(['Basic realm="r"', 'Digest realm="r", nonce="n1", algorithm=MD5, qop="auth"', 'Digest realm="r", nonce="n2", algorithm=SHA-256, qop="auth"', 'Digest realm="r", nonce="n3", algorithm=SHA-512-256']);
  t.match(pickChallenge(cs), { scheme: 'digest', nonce: 'n2' });
  t.match(pickChallenge(parseChallenges(['Basic realm="r"'])), { scheme: 'basic' });
  t.equal(pickChallenge(parseChallenges(['Digest realm="r", nonce="x", algorithm=SHA-512-256'])), null);
});

t.test('the authenticator counts nonces, retries a stale nonce once, and gives up on a refused password', async (t) => {
  const a = new Authenticator('u', 'p', { cnonce: () => 'cn' });
  t.equal(a.authorization('DESCRIBE', 'rtsp://cam/x'), null, 'nothing before a challenge');
  const first = parseChallenges(['Digest realm="r", nonce="n1", qop="auth"']);
  t.equal(a.challenge(first, false, false), 'retry', 'first 401: answer it');
  t.equal(params(a.authorization('DESCRIBE', 'rtsp://cam/x')!).nc, '00000001');
  t.equal(params(a.authorization('SETUP', 'rtsp://cam/x/trackID=0')!).nc, '00000002', 'nc advances per request (RFC 7616 §3.4)');
  t.equal(a.challenge(first, true, false), 'refused', 'a 401 to credentials without stale=true: the password is wrong');
  const stale = parseChallenges(['Digest realm="r", nonce="n2", qop="auth", stale=true']);
  t.equal(a.challenge(stale, true, false), 'retry', 'stale nonce: retried');
  t.equal(params(a.authorization('PLAY', 'rtsp://cam/x')!).nc, '00000001', 'a new nonce starts counting again');
  t.equal(a.challenge(stale, true, true), 'refused', 'but only once');
});

t.test('auth-int hashes the body into A2; userhash hides the user name (RFC 7616 §3.4.3, §3.4.4)', async (t) => {
  const [c] = parseChallenges([`Digest realm="${RFC7616.realm}", qop="auth-int", algorithm=SHA-256, nonce="${RFC7616.nonce}", userhash=true`]);
  const header = digestAuthorization(c as DigestChallenge, { username: 'Mufasa', password: RFC7616.password, method: 'SET_PARAMETER', uri: 'rtsp://cam/x', nc: 1, cnonce: 'c', body: Buffer.from('x: 1\r\n') })!;
  const p = params(header);
  t.equal(p.qop, 'auth-int');
  t.equal(p.userhash, 'true');
  // RFC 7616 §3.4.4: username = H(unq(username) ":" unq(realm)); sha256sum of "Mufasa:http-auth@example.org".
  t.equal(p.username, 'a947aad205e80e429958a387394944c6b496301e79f89d35a4cc23b6ee12b5b6');
  t.notMatch(header, /Mufasa/);
});
