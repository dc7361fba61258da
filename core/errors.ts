/**
 * The one error catalog. Every error camtap reports to a user carries a code from here,
 * a message built from the template, and the exit status (CLI) and HTTP status (API)
 * it maps to. test/core/errors.test.ts fails when a code is not documented in
 * docs/ERRORS.md.
 */

export interface ErrorDef {
  /** Message template; `{name}` is replaced from the details object. */
  message: string;
  exit: number;
  http: number;
}

export const ERRORS = {
  CAMTAP_ERR_CONFIG: { message: 'config {file}: {key}: {reason}', exit: 78, http: 500 },
  CAMTAP_ERR_CONFIG_READ: { message: 'config {file}: cannot read: {reason}', exit: 78, http: 500 },
  CAMTAP_ERR_USAGE: { message: '{reason}', exit: 64, http: 400 },
  CAMTAP_ERR_PLUGIN_LOAD: { message: 'plugin {plugin}: cannot load: {reason}', exit: 70, http: 500 },
  CAMTAP_ERR_PLUGIN_META: { message: 'plugin {plugin}: bad meta: {reason}', exit: 70, http: 500 },
  CAMTAP_ERR_PLUGIN_CORE_RANGE: { message: 'plugin {plugin} needs core {range}, this is {core}', exit: 70, http: 500 },
  CAMTAP_ERR_PLUGIN_HOOK: { message: 'plugin {plugin}: hook {hook} failed: {reason}', exit: 70, http: 500 },
  CAMTAP_ERR_CAPTURE_OPEN: { message: '{file}: cannot open: {reason}', exit: 66, http: 404 },
  CAMTAP_ERR_CAPTURE_EMPTY: { message: '{file}: empty file (0 bytes), not a capture', exit: 65, http: 422 },
  CAMTAP_ERR_CAPTURE_MAGIC: { message: '{file}: offset {offset}: not a pcap or pcapng file (magic {magic})', exit: 65, http: 422 },
  CAMTAP_ERR_CAPTURE_TRUNCATED: { message: '{file}: offset {offset}: truncated {what}: {reason}', exit: 65, http: 422 },
  CAMTAP_ERR_CAPTURE_RECORD: { message: '{file}: offset {offset}: bad {what}: {reason}', exit: 65, http: 422 },
  CAMTAP_ERR_CAPTURE_LINKTYPE: { message: '{file}: offset {offset}: link type {linkType} is not supported', exit: 65, http: 422 },
  CAMTAP_ERR_TAP: { message: 'tap {tap}: {reason}', exit: 69, http: 503 },
  CAMTAP_ERR_TAP_DRIVER: { message: 'tap {tap}: unknown driver {driver} (known: {known})', exit: 78, http: 400 },
  CAMTAP_ERR_FILTER: { message: 'filter {field}: {reason}', exit: 78, http: 400 },
  CAMTAP_ERR_STORE_FULL: { message: 'store {dir}: disk full after {bytes} bytes; capture halted, everything before is kept', exit: 74, http: 507 },
  CAMTAP_ERR_STORE_IO: { message: 'store {file}: {reason}', exit: 74, http: 500 },
  CAMTAP_ERR_STORE_CORRUPT: { message: 'store {file}: offset {offset}: {reason}', exit: 74, http: 500 },
  CAMTAP_ERR_DATA_LOCKED: { message: 'data dir {dir} is in use by camtap pid {pid} ({command}); read-only commands (streams, sessions, inventory) work meanwhile', exit: 75, http: 409 },
  CAMTAP_ERR_INDEX: { message: 'index {file}: {reason}', exit: 74, http: 500 },
  CAMTAP_ERR_CATALOG: { message: 'catalog {url}: {reason}', exit: 69, http: 503 },
  CAMTAP_ERR_NOT_FOUND: { message: '{what} {id} not found', exit: 1, http: 404 },
  CAMTAP_ERR_RANGE: { message: 'range {range}: {reason}', exit: 64, http: 457 },
  CAMTAP_ERR_INTERRUPTED: { message: 'interrupted: {reason}', exit: 130, http: 503 },
  CAMTAP_ERR_TOOL_MISSING: { message: '{tool} is needed to {purpose} but is not installed or not on PATH: {fix}', exit: 69, http: 503 },
  CAMTAP_ERR_TOOL_FAILED: { message: '{tool} failed ({status}) while {purpose}: {stderr}', exit: 70, http: 500 },
  CAMTAP_ERR_EXPORT_CODEC: { message: 'stream {stream}: codec {codec} cannot be exported as {format} ({reason})', exit: 65, http: 422 },
  CAMTAP_ERR_UPSTREAM: { message: 'camera {url}: {reason}', exit: 69, http: 502 },
  CAMTAP_ERR_UPSTREAM_REFUSED: { message: 'camera {url} refused {method}: {status} {reason}', exit: 69, http: 502 },
  CAMTAP_ERR_CAMERA_API: { message: 'camera {camera}: {operation} failed: {reason}', exit: 69, http: 502 },
  CAMTAP_ERR_CAMERA_AUTH: { message: 'camera {camera}: {operation}: credentials refused for user {user}', exit: 77, http: 502 },
  CAMTAP_ERR_PROFILE_UNSUPPORTED: { message: 'camera {camera}: profile {profile} cannot {operation}: {reason}', exit: 69, http: 501 },
  CAMTAP_ERR_HTTP_REQUEST: { message: 'http proxy: {peer}: bad request: {reason}', exit: 64, http: 400 },
  CAMTAP_ERR_HTTP_TOO_LARGE: { message: 'http proxy: {peer}: {what} too large: {reason}', exit: 64, http: 413 },
  CAMTAP_ERR_UPSTREAM_TIMEOUT: { message: 'camera {url}: no answer within {ms} ms', exit: 69, http: 504 },
  CAMTAP_ERR_SECRET_KEY: { message: 'secret key ({source}): {reason}', exit: 78, http: 500 },
  CAMTAP_ERR_SECRET: { message: 'sealed secret: {reason}', exit: 78, http: 500 },
  CAMTAP_ERR_FAILOVER: { message: 'failover of VMS {vms}: {reason}', exit: 69, http: 409 },
  CAMTAP_ERR_AUTH_REQUIRED: { message: 'HTTP API on {host}: an open API (no `auth` in the config, no CAMTAP_ADMIN_TOKEN) listens on loopback only; add `auth` users or tokens, or listen on 127.0.0.1 (docs/API.md)', exit: 78, http: 500 },
  CAMTAP_ERR_UNAUTHORIZED: { message: '{reason}', exit: 77, http: 401 },
  CAMTAP_ERR_FORBIDDEN: { message: 'role {role} may not {action} (needs {need})', exit: 77, http: 403 },
  CAMTAP_ERR_CONFLICT: { message: '{what}: {reason}', exit: 75, http: 409 },
  CAMTAP_ERR_FAILOVER_RECEIVE: { message: 'failover: cannot receive RTP on {address}: {reason}', exit: 69, http: 503 },
  CAMTAP_ERR_BUSY: { message: '{what}: {limit} running already; {reason}', exit: 75, http: 503 },
  CAMTAP_ERR_INTERNAL: { message: 'internal error: {reason}', exit: 70, http: 500 },
} as const satisfies Record<string, ErrorDef>;

export type ErrorCode = keyof typeof ERRORS;

function render(template: string, details: Record<string, unknown>): string {
  return template.replace(/\{(\w+)\}/g, (_m, k: string) => (k in details ? String(details[k]) : `{${k}}`));
}

/** A user-facing error with a catalog code. `details` names the file, offset, peer or field. */
export class CamtapError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;
  readonly exit: number;
  readonly http: number;

  constructor(code: ErrorCode, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    const def: ErrorDef = ERRORS[code];
    super(render(def.message, details), options);
    this.name = 'CamtapError';
    this.code = code;
    this.details = details;
    this.exit = def.exit;
    this.http = def.http;
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, ...this.details };
  }
}

export function isCamtapError(e: unknown, code?: ErrorCode): e is CamtapError {
  return e instanceof CamtapError && (code === undefined || e.code === code);
}
