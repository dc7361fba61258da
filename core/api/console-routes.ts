/**
 * The web console: a static page (core/api/console/: index.html, app.js, style.css; plain
 * ES modules, no build step, nothing fetched from elsewhere) that drives the API:
 *
 *   GET /                      the console
 *   GET /console/              the console
 *   GET /console/<file>        its scripts and styles
 *
 * The files are public: they hold no data. The page asks for a token when the API answers
 * 401 and sends it on every request (core/api/console/app.js), so the routes' roles guard
 * the data. A fixed list of files is read once at registration and served from memory:
 * no path from a request ever reaches the file system.
 *
 * Where the files are: beside this module when it runs from the sources (`core/api/`),
 * or in the package's `core/api/console/` when it runs compiled from `dist/core/api/`
 * (tsc does not copy them; package.json's `files` must list `core/api/console`).
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyPluginAsync } from 'fastify';
import { CamtapError } from '../errors.js';

export interface ConsoleRoutesOptions {
  /** The folder holding the console's files (default: found as the file comment says). */
  dir?: string;
}

/** The files served, with their types. */
export const CONSOLE_FILES: Readonly<Record<string, string>> = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
  'favicon.svg': 'image/svg+xml',
};

/**
 * Everything the page loads comes from camtap itself: scripts and styles from here,
 * video from the API as `blob:` (MSE), the token never leaves for another origin.
 */
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/** The console's folder: beside this module (sources), else the package's core/api/console (compiled into dist/). */
export function consoleDir(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [path.join(here, 'console'), path.resolve(here, '../../../core/api/console')];
  for (const c of candidates) if (existsSync(path.join(c, 'index.html'))) return c;
  return candidates[0]!;
}

export const consoleRoutes: FastifyPluginAsync<ConsoleRoutesOptions> = async (app, opts) => {
  const dir = opts.dir ?? consoleDir();
  const files = new Map<string, Buffer>();
  for (const name of Object.keys(CONSOLE_FILES)) {
    try {
      files.set(name, await readFile(path.join(dir, name)));
    } catch {
      // favicon is optional; without index.html the console answers 404 with where it looked.
    }
  }
  const tags = ['console'];
  const send = (name: string) => {
    const body = files.get(name);
    if (!body) throw new CamtapError('CAMTAP_ERR_NOT_FOUND', { what: 'console file', id: `${name} (in ${dir})` });
    return body;
  };
  const html = async (_req: unknown, reply: import('fastify').FastifyReply) =>
    reply
      .type(CONSOLE_FILES['index.html']!)
      .header('cache-control', 'no-cache')
      .header('content-security-policy', CSP)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .send(send('index.html'));

  app.get('/', { config: { role: 'public' }, schema: { tags, description: 'The web console (a static page; it asks for a token when the API needs one).', hide: true } }, html);
  app.get('/console', { config: { role: 'public' }, schema: { tags, description: 'Redirects to /console/.', hide: true } }, async (_req, reply) => reply.redirect('/console/'));
  app.get('/console/', { config: { role: 'public' }, schema: { tags, description: 'The web console.', hide: true } }, html);
  app.get<{ Params: { file: string } }>(
    '/console/:file',
    {
      config: { role: 'public' },
      schema: { tags, description: "The console's scripts and styles.", hide: true, params: { type: 'object', required: ['file'], properties: { file: { type: 'string', maxLength: 64 } } } },
    },
    async (req, reply) => {
      const type = Object.hasOwn(CONSOLE_FILES, req.params.file) ? CONSOLE_FILES[req.params.file] : undefined;
      if (type === undefined) throw new CamtapError('CAMTAP_ERR_NOT_FOUND', { what: 'console file', id: req.params.file });
      return reply.type(type).header('cache-control', 'no-cache').header('x-content-type-options', 'nosniff').send(send(req.params.file));
    },
  );
};
