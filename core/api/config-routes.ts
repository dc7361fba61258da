/**
 *   GET /api/config   the configuration in force (file + defaults + command-line overrides), secrets redacted   admin
 *
 * Redacted (the value becomes `"***"`): every scalar under a key that names a secret
 * (password, passwordHash, token, tokenHash, secret, key, apiKey, privateKey, ha1 /
 * rtspHa1, credentials, authorization, cookie, ...), and in every URL-looking string the
 * userinfo (`rtsp://user:pass@cam` -> `rtsp://cam`) and query parameters that carry secrets
 * on some cameras (core/rtsp-client/url.ts redactUrl). Names, roles, addresses and
 * ports are shown: they are what an admin checks.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { Config } from '../config.js';
import { CamtapError } from '../errors.js';
import { redactUrl } from '../rtsp-client/url.js';
import { errorBodySchema } from './openapi.js';

export interface ConfigRoutesOptions {
  /** The effective config of the process, or null when there is none to show. */
  config: () => Config | null;
}

export const REDACTED = '***';

const SECRET_PART = /(password|passwd|passphrase|secret|token|credential|privatekey|private_key|apikey|api_key|accesskey|access_key|ha1|authorization|cookie|signature)/i;
const SECRET_WHOLE = /^(key|pass|pwd|pw|psk|auth|sig)$/i;
const URLISH = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//;

/** Whether a key's value is a secret. */
export function isSecretKey(key: string): boolean {
  return SECRET_PART.test(key) || SECRET_WHOLE.test(key);
}

/** A deep copy of `v` with secrets replaced (see the file comment). */
export function redactSecrets(v: unknown, key: string | null = null): unknown {
  if (v === null || v === undefined) return v;
  if (Array.isArray(v)) return v.map((x) => redactSecrets(x, key));
  if (typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      if (typeof x === 'function') continue;
      out[k] = redactSecrets(x, k);
    }
    return out;
  }
  if (key !== null && isSecretKey(key)) return REDACTED;
  if (typeof v === 'string' && URLISH.test(v)) return redactUrl(v);
  return v;
}

export const configRoutes: FastifyPluginAsync<ConfigRoutesOptions> = async (app, opts) => {
  app.get(
    '/config',
    {
      config: { role: 'admin' },
      schema: {
        tags: ['config'],
        description:
          'The configuration in force (the file, its defaults and command-line overrides) with secrets redacted: passwords, password hashes, tokens, keys and secrets read `***`, and URLs lose their userinfo.',
        querystring: { type: 'object', additionalProperties: false, properties: {} },
        response: {
          200: { type: 'object', additionalProperties: true, description: 'the config (core/config.ts configSchema), redacted' },
          409: { description: 'error', ...errorBodySchema },
        },
      },
    },
    async () => {
      const c = opts.config();
      if (!c) throw new CamtapError('CAMTAP_ERR_CONFLICT', { what: 'config', reason: 'this API was started without a configuration to show' });
      return redactSecrets(c);
    },
  );
};
