/**
 * Camera credentials at rest. camtap keeps no credential in the clear: captured ones are
 * redacted in the catalog; the few failover needs (to talk to a camera on a failed VMS's
 * behalf) are sealed with AES-256-GCM (NIST SP 800-38D) under a key from the config or
 * the environment (`CAMTAP_SECRET_KEY`), never stored beside the data.
 *
 * Sealed form: `camtap:v1:<key id>:<base64url(iv[12] | ciphertext | tag[16])>`. The key id
 * (8 hex digits of an HMAC of the key, which reveals nothing of it) tells "sealed with
 * another key" apart from "altered"; an optional context (e.g. the camera name) is bound
 * as additional authenticated data so a sealed secret cannot be moved to another camera.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { CamtapError } from '../errors.js';

/** The environment variable holding the key. */
export const SECRET_KEY_ENV = 'CAMTAP_SECRET_KEY';

const PREFIX = 'camtap:v1:';
const KEY_BYTES = 32;
const IV_BYTES = 12; // SP 800-38D §8.2: 96-bit random IVs
const TAG_BYTES = 16;

/**
 * Parses a 32-byte key written as 64 hex digits or as base64/base64url (44 characters with
 * padding, 43 without). `source` names where it came from, for the error.
 */
export function parseSecretKey(text: string, source: string): Buffer {
  const t = text.trim();
  if (t.length === 0) throw new CamtapError('CAMTAP_ERR_SECRET_KEY', { source, reason: 'empty' });
  if (/^[0-9a-fA-F]+$/.test(t) && t.length === KEY_BYTES * 2) return Buffer.from(t, 'hex');
  if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(t)) {
    const b = Buffer.from(t.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    if (b.length === KEY_BYTES) return b;
    throw new CamtapError('CAMTAP_ERR_SECRET_KEY', {
      source,
      reason: `decodes to ${b.length} bytes, need ${KEY_BYTES} (64 hex digits or 44 base64 characters; make one with: openssl rand -base64 32)`,
    });
  }
  throw new CamtapError('CAMTAP_ERR_SECRET_KEY', { source, reason: `not hex or base64 (need ${KEY_BYTES} bytes; make one with: openssl rand -base64 32)` });
}

/**
 * The key from the environment (`CAMTAP_SECRET_KEY`, which wins: a deployment can keep it
 * out of the config file) or else from the config value; null when neither is set.
 * A set but malformed key is an error, never ignored.
 */
export function loadSecretKey(opts: { config?: string | null; env?: Record<string, string | undefined> } = {}): Buffer | null {
  const env = (opts.env ?? process.env)[SECRET_KEY_ENV];
  if (env !== undefined && env !== '') return parseSecretKey(env, `environment ${SECRET_KEY_ENV}`);
  if (opts.config) return parseSecretKey(opts.config, 'config secretKey');
  return null;
}

/** Like {@link loadSecretKey}, but a missing key is an error naming what needs it. */
export function requireSecretKey(purpose: string, opts: { config?: string | null; env?: Record<string, string | undefined> } = {}): Buffer {
  const key = loadSecretKey(opts);
  if (!key) {
    throw new CamtapError('CAMTAP_ERR_SECRET_KEY', {
      source: `environment ${SECRET_KEY_ENV} or config secretKey`,
      reason: `not set, and ${purpose} needs it (make one with: openssl rand -base64 32)`,
    });
  }
  return key;
}

function checkKey(key: Buffer): void {
  if (!Buffer.isBuffer(key) || key.length !== KEY_BYTES) {
    throw new CamtapError('CAMTAP_ERR_SECRET_KEY', { source: 'argument', reason: `key must be ${KEY_BYTES} bytes, got ${Buffer.isBuffer(key) ? key.length : typeof key}` });
  }
}

/** 8 hex digits naming a key without revealing it (HMAC-SHA-256 of a fixed label). */
export function secretKeyId(key: Buffer): string {
  checkKey(key);
  return createHmac('sha256', key).update('camtap secret key id').digest('hex').slice(0, 8);
}

/** Encrypts `plain` under `key` (fresh random IV each time); `context`, if given, must be given again to open it. */
export function sealSecret(plain: string, key: Buffer, context = ''): string {
  checkKey(key);
  const iv = randomBytes(IV_BYTES);
  const c = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
  c.setAAD(Buffer.from(`camtap:v1:${context}`, 'utf8'));
  const ct = Buffer.concat([c.update(plain, 'utf8'), c.final()]);
  return `${PREFIX}${secretKeyId(key)}:${Buffer.concat([iv, ct, c.getAuthTag()]).toString('base64url')}`;
}

/** True when `s` looks like a sealed secret (to tell one from a plain value in a config). */
export function isSealedSecret(s: string): boolean {
  return s.startsWith(PREFIX);
}

/**
 * Decrypts a {@link sealSecret} result. Throws CAMTAP_ERR_SECRET when it is not a sealed
 * secret, was sealed with another key (both key ids named), or does not authenticate
 * (altered, cut, or another context).
 */
export function openSecret(sealed: string, key: Buffer, context = ''): string {
  checkKey(key);
  const m = /^camtap:v1:([0-9a-f]{8}):([A-Za-z0-9_-]+)$/.exec(sealed.trim());
  if (!m) throw new CamtapError('CAMTAP_ERR_SECRET', { reason: 'not a camtap sealed secret (expected camtap:v1:<key id>:<data>)' });
  const kid = secretKeyId(key);
  if (m[1] !== kid) throw new CamtapError('CAMTAP_ERR_SECRET', { reason: `sealed with key ${m[1]}, but the key given is ${kid} (wrong ${SECRET_KEY_ENV}?)` });
  const raw = Buffer.from(m[2]!, 'base64url');
  if (raw.length < IV_BYTES + TAG_BYTES) throw new CamtapError('CAMTAP_ERR_SECRET', { reason: `too short (${raw.length} bytes): cut or altered` });
  const iv = raw.subarray(0, IV_BYTES);
  const tag = raw.subarray(raw.length - TAG_BYTES);
  const ct = raw.subarray(IV_BYTES, raw.length - TAG_BYTES);
  const d = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
  d.setAAD(Buffer.from(`camtap:v1:${context}`, 'utf8'));
  d.setAuthTag(tag);
  try {
    return Buffer.concat([d.update(ct), d.final()]).toString('utf8');
  } catch {
    throw new CamtapError('CAMTAP_ERR_SECRET', { reason: 'authentication failed: altered, cut, or sealed for another context' });
  }
}
