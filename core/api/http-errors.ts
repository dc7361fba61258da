/**
 * Errors over HTTP: every error answer is JSON `{ error: CODE, message }` with a code
 * from the catalog (core/errors.ts, docs/ERRORS.md) and its HTTP status, so a client
 * branches on `error` and a person reads `message`.
 *
 * Status mapping, where HTTP differs from the catalog:
 * - CAMTAP_ERR_RANGE is 457 in the catalog (RTSP's Invalid Range, RFC 2326 §11.3.7),
 *   which HTTP does not have: a range outside the recording is 416 Range Not
 *   Satisfiable; a malformed or empty one is a bad request (400), marked by the route
 *   with {@link withStatus}.
 * - Fastify's own errors: schema validation 400 (CAMTAP_ERR_USAGE), unknown route 404
 *   (CAMTAP_ERR_NOT_FOUND); anything without a code 500 (CAMTAP_ERR_INTERNAL, logged).
 */
import type { FastifyError, FastifyInstance } from 'fastify';
import type { Logger } from '../contracts/logger.js';
import { CamtapError, isCamtapError, type ErrorCode } from '../errors.js';

export interface ErrorBody {
  error: ErrorCode;
  message: string;
}

const STATUS = Symbol('camtap.httpStatus');

/** Marks `e` to be answered with `status` (e.g. a malformed range: 400 rather than 416). */
export function withStatus<E extends Error>(e: E, status: number): E {
  (e as E & { [STATUS]?: number })[STATUS] = status;
  return e;
}

/** The HTTP status of a CamtapError (see the file comment). */
export function httpStatusOf(e: CamtapError): number {
  const forced = (e as CamtapError & { [STATUS]?: number })[STATUS];
  if (forced !== undefined) return forced;
  if (e.code === 'CAMTAP_ERR_RANGE') return 416;
  return e.http >= 400 && e.http <= 599 ? e.http : 500;
}

/** Status and body for any error a route throws. */
export function errorReply(e: unknown, log: Logger): { status: number; body: ErrorBody } {
  if (isCamtapError(e)) return { status: httpStatusOf(e), body: { error: e.code, message: e.message } };
  const fe = e as Partial<FastifyError>;
  if (fe.validation !== undefined) {
    return { status: 400, body: { error: 'CAMTAP_ERR_USAGE', message: `bad request: ${fe.message ?? 'invalid parameters'}` } };
  }
  // Fastify's client errors (bad JSON, unsupported media type, ...) keep their status.
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return { status: fe.statusCode, body: { error: fe.statusCode === 404 ? 'CAMTAP_ERR_NOT_FOUND' : 'CAMTAP_ERR_USAGE', message: fe.message ?? 'bad request' } };
  }
  const err = new CamtapError('CAMTAP_ERR_INTERNAL', { reason: (e as Error)?.message ?? String(e) });
  log.error({ err: (e as Error)?.stack ?? String(e) }, 'http api: unexpected error');
  return { status: 500, body: { error: err.code, message: err.message } };
}

/** Installs the JSON error answers (errors thrown by routes, validation, unknown routes). */
export function installErrorHandling(app: FastifyInstance, log: Logger): void {
  app.setErrorHandler((e, _req, reply) => {
    const { status, body } = errorReply(e, log);
    return reply.code(status).type('application/json; charset=utf-8').send(body);
  });
  app.setNotFoundHandler((req, reply) => {
    const e = new CamtapError('CAMTAP_ERR_NOT_FOUND', { what: 'route', id: `${req.method} ${req.url.split('?')[0]}` });
    return reply.code(404).send({ error: e.code, message: e.message } satisfies ErrorBody);
  });
}
