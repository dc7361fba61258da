/**
 * Camera credentials sealed at rest (AES-256-GCM, NIST SP 800-38D). Ground truth for the
 * format is an independent implementation: Python's `cryptography` AESGCM opens what
 * camtap seals and seals what camtap must open, and Python's hmac gives the key id.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { isCamtapError } from '../../../core/errors.js';
import { isSealedSecret, loadSecretKey, openSecret, parseSecretKey, requireSecretKey, sealSecret, secretKeyId, SECRET_KEY_ENV } from '../../../core/inline/credentials.js';

const PY = '/usr/bin/python3';
const noPyCrypto = spawnSync(PY, ['-c', 'import cryptography.hazmat.primitives.ciphers.aead'], { encoding: 'utf8' }).status === 0 ? false : 'python3 with the cryptography package is not installed';

function py(script: string, input: string): string {
  const r = spawnSync(PY, ['-c', script], { input, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`python failed: ${r.stderr}`);
  return r.stdout.trim();
}

const KEY = Buffer.from('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', 'hex');

t.test('seal then open gives the secret back; every seal differs', async (t) => {
  for (const plain of ['secret', '', 'pässwörd €', 'x'.repeat(10_000)]) {
    const sealed = sealSecret(plain, KEY);
    t.ok(isSealedSecret(sealed));
    t.notOk(sealed.includes(plain) && plain.length > 0, 'no plaintext in the sealed form');
    t.equal(openSecret(sealed, KEY), plain);
  }
  t.not(sealSecret('same', KEY), sealSecret('same', KEY), 'fresh IV each time');
  t.equal(openSecret(sealSecret('pw', KEY, 'camera door'), KEY, 'camera door'), 'pw', 'with a context');
});

t.test('a wrong key, altered data or another context is a clear error', async (t) => {
  const sealed = sealSecret('secret', KEY, 'door');
  const other = randomBytes(32);
  t.throws(() => openSecret(sealed, other, 'door'), { code: 'CAMTAP_ERR_SECRET', message: new RegExp(`sealed with key ${secretKeyId(KEY)}, but the key given is ${secretKeyId(other)}`) }, 'wrong key names both key ids');

  const [prefix, data] = [sealed.slice(0, sealed.lastIndexOf(':') + 1), sealed.slice(sealed.lastIndexOf(':') + 1)];
  const raw = Buffer.from(data, 'base64url');
  for (const at of [0, 12, raw.length - 1]) {
    const bad = Buffer.from(raw);
    bad[at]! ^= 0x01;
    t.throws(() => openSecret(prefix + bad.toString('base64url'), KEY, 'door'), { code: 'CAMTAP_ERR_SECRET', message: /authentication failed/ }, `bit flipped at ${at}`);
  }
  t.throws(() => openSecret(prefix + raw.subarray(0, raw.length - 1).toString('base64url'), KEY, 'door'), { code: 'CAMTAP_ERR_SECRET' }, 'cut by a byte');
  t.throws(() => openSecret(prefix + raw.subarray(0, 20).toString('base64url'), KEY, 'door'), { code: 'CAMTAP_ERR_SECRET', message: /too short/ });
  t.throws(() => openSecret(sealed, KEY, 'gate'), { code: 'CAMTAP_ERR_SECRET', message: /another context/ }, 'moved to another camera');
  t.throws(() => openSecret('secret', KEY), { code: 'CAMTAP_ERR_SECRET', message: /not a camtap sealed secret/ });
  t.throws(() => sealSecret('x', Buffer.alloc(16)), { code: 'CAMTAP_ERR_SECRET_KEY' }, 'a 16-byte key is refused');
});

t.test('keys are read as hex or base64 and checked', async (t) => {
  t.same(parseSecretKey(KEY.toString('hex'), 'test'), KEY);
  t.same(parseSecretKey(KEY.toString('hex').toUpperCase(), 'test'), KEY);
  t.same(parseSecretKey(KEY.toString('base64'), 'test'), KEY);
  t.same(parseSecretKey(KEY.toString('base64url'), 'test'), KEY);
  t.same(parseSecretKey(`  ${KEY.toString('base64')}\n`, 'test'), KEY, 'surrounding whitespace (a file read) is ignored');
  t.throws(() => parseSecretKey(randomBytes(16).toString('base64'), 'environment CAMTAP_SECRET_KEY'), { code: 'CAMTAP_ERR_SECRET_KEY', message: /secret key \(environment CAMTAP_SECRET_KEY\): decodes to 16 bytes, need 32/ });
  t.throws(() => parseSecretKey('correct horse battery staple', 'config secretKey'), { code: 'CAMTAP_ERR_SECRET_KEY', message: /config secretKey.*not hex or base64/ });
  t.throws(() => parseSecretKey('', 'x'), { code: 'CAMTAP_ERR_SECRET_KEY', message: /empty/ });
});

t.test('the environment key wins over the config; missing is null, or an error where needed', async (t) => {
  const a = randomBytes(32);
  const b = randomBytes(32);
  t.same(loadSecretKey({ config: a.toString('hex'), env: { [SECRET_KEY_ENV]: b.toString('base64') } }), b, 'environment first');
  t.same(loadSecretKey({ config: a.toString('hex'), env: {} }), a, 'config otherwise');
  t.equal(loadSecretKey({ config: null, env: {} }), null);
  t.throws(() => loadSecretKey({ env: { [SECRET_KEY_ENV]: 'short' } }), { code: 'CAMTAP_ERR_SECRET_KEY' }, 'a malformed key is never ignored');
  try {
    requireSecretKey('failover to camera door', { env: {} });
    t.fail('should throw');
  } catch (e) {
    t.ok(isCamtapError(e, 'CAMTAP_ERR_SECRET_KEY'));
    t.match((e as Error).message, /not set, and failover to camera door needs it \(make one with: openssl rand -base64 32\)/);
    t.equal((e as { exit: number }).exit, 78, 'a configuration error for the CLI');
  }
});

t.test('the sealed form is standard AES-256-GCM: Python’s cryptography opens and makes it', { skip: noPyCrypto }, async (t) => {
  const key = randomBytes(32);
  const sealed = sealSecret('camera pässword', key, 'door');
  const opened = py(
    [
      'import sys, base64, hmac, hashlib',
      'from cryptography.hazmat.primitives.ciphers.aead import AESGCM',
      'key_hex, sealed = sys.stdin.read().split()',
      'key = bytes.fromhex(key_hex)',
      '_, v, kid, data = sealed.split(":")',
      'raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))',
      'assert kid == hmac.new(key, b"camtap secret key id", hashlib.sha256).hexdigest()[:8], "key id"',
      'print(AESGCM(key).decrypt(raw[:12], raw[12:], b"camtap:v1:door").decode("utf-8"))',
    ].join('\n'),
    `${key.toString('hex')} ${sealed}`,
  );
  t.equal(opened, 'camera pässword', 'Python decrypts camtap’s sealed secret (key id, IV | ciphertext | tag, AAD)');

  const made = py(
    [
      'import sys, os, base64, hmac, hashlib',
      'from cryptography.hazmat.primitives.ciphers.aead import AESGCM',
      'key = bytes.fromhex(sys.stdin.read().strip())',
      'iv = os.urandom(12)',
      'ct = AESGCM(key).encrypt(iv, "zweites €".encode("utf-8"), b"camtap:v1:gate")',
      'kid = hmac.new(key, b"camtap secret key id", hashlib.sha256).hexdigest()[:8]',
      'print("camtap:v1:" + kid + ":" + base64.urlsafe_b64encode(iv + ct).decode().rstrip("="))',
    ].join('\n'),
    key.toString('hex'),
  );
  t.equal(openSecret(made, key, 'gate'), 'zweites €', 'camtap opens what Python sealed');
});
