/**
 * The ONVIF device client under the `onvif` profile: the npm `onvif` package (agsh,
 * callback API) turned into promises with a deadline, an abort signal and camtap's
 * error codes, plus a cache of connected devices (connecting costs four SOAP calls:
 * GetSystemDateAndTime, GetServices or GetCapabilities, GetProfiles, GetVideoSources).
 *
 * The package parses answers with xml2js and then turns every text that looks like a
 * number into one (`linerase`), so a firmware "1.10" would read 1.1 and a serial
 * "000123" 123: text fields the user sees are read from the raw XML instead.
 */
import { createHash } from 'node:crypto';
import onvif, { type Cam } from 'onvif';
import { CamtapError, type ProfileCamera } from '../../core/contracts/index.js';

/** Default deadline of one camera API call. */
export const DEFAULT_TIMEOUT_MS = 10_000;

/** The device service URL of a camera: its `apiUrl`, else ONVIF's well-known path on port 80 (ONVIF Core §5.1.1). */
export function deviceServiceUrl(camera: ProfileCamera): URL {
  if (camera.apiUrl) return new URL(camera.apiUrl);
  const host = camera.address.includes(':') ? `[${camera.address}]` : camera.address;
  return new URL(`http://${host}/onvif/device_service`);
}

/** Why a call failed, as camtap reports it: refused credentials, or anything else. */
export function cameraError(camera: ProfileCamera, operation: string, e: unknown): CamtapError {
  if (e instanceof CamtapError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  // ONVIF Core §5.9.1: WS-Security rejected -> SOAP fault ter:NotAuthorized ("Sender not
  // Authorized"); HTTP Digest rejected -> 401 (the package says "Digest authentication failed").
  if (/not ?authori[sz]ed|authentication failed|\b401\b/i.test(msg)) {
    return new CamtapError('CAMTAP_ERR_CAMERA_AUTH', { camera: camera.name, operation, user: camera.user ?? '(none)' }, { cause: e });
  }
  const code = (e as NodeJS.ErrnoException | null)?.code;
  return new CamtapError('CAMTAP_ERR_CAMERA_API', { camera: camera.name, operation, reason: code ? `${code} (${deviceServiceUrl(camera).host})` : msg }, { cause: e });
}

/** Calls `fn(callback)` of the package and settles with its result, the deadline or the signal, whichever comes first. */
export function call<T>(camera: ProfileCamera, operation: string, opts: { signal?: AbortSignal; timeoutMs?: number }, fn: (cb: (err: Error | null, data?: T, xml?: string) => void) => void): Promise<{ data: T; xml: string }> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (err: CamtapError | null, value?: { data: T; xml: string }) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve(value!);
    };
    const timer = setTimeout(() => finish(new CamtapError('CAMTAP_ERR_CAMERA_API', { camera: camera.name, operation, reason: `no answer within ${timeoutMs / 1000} s` })), timeoutMs);
    const onAbort = () => finish(new CamtapError('CAMTAP_ERR_CAMERA_API', { camera: camera.name, operation, reason: 'aborted' }));
    if (opts.signal?.aborted) return onAbort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      fn((err, data, xml) => (err ? finish(cameraError(camera, operation, err)) : finish(null, { data: data as T, xml: xml ?? '' })));
    } catch (e) {
      finish(cameraError(camera, operation, e));
    }
  });
}

/** A `Cam` for one camera, not connected (no request sent yet). */
export function newCam(camera: ProfileCamera, timeoutMs: number): Cam {
  const url = deviceServiceUrl(camera);
  return new onvif.Cam({
    hostname: url.hostname.replace(/^\[|\]$/g, ''),
    port: url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80,
    path: url.pathname + url.search,
    useSecure: url.protocol === 'https:',
    username: camera.user,
    password: camera.password,
    timeout: timeoutMs,
    autoconnect: false,
    // The address in the camera record is the one that works from camtap; the service
    // addresses a camera announces often name its own LAN address behind NAT.
    preserveAddress: true,
  });
}

/** Connected devices by camera, user and a hash of the password (a changed password connects anew). */
export class CamCache {
  readonly #cams = new Map<string, Promise<Cam>>();

  #key(camera: ProfileCamera): string {
    const pw = createHash('sha256').update(camera.password ?? '').digest('hex');
    return `${deviceServiceUrl(camera).href}\n${camera.user ?? ''}\n${pw}`;
  }

  /** The connected device (GetServices/GetCapabilities and GetProfiles done). */
  get(camera: ProfileCamera, opts: { signal?: AbortSignal; timeoutMs?: number }): Promise<Cam> {
    const key = this.#key(camera);
    let p = this.#cams.get(key);
    if (!p) {
      const cam = newCam(camera, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
      p = call<unknown>(camera, 'connect', opts, (cb) => cam.connect(cb)).then(() => cam);
      this.#cams.set(key, p);
      p.catch(() => this.#cams.delete(key));
    }
    return p;
  }

  /** Is a connection to this camera cached (maybe still connecting)? */
  has(camera: ProfileCamera): boolean {
    return this.#cams.has(this.#key(camera));
  }

  /** Forgets a device after a failed call: it may have rebooted, changed tokens or address. */
  drop(camera: ProfileCamera): void {
    this.#cams.delete(this.#key(camera));
  }

  clear(): void {
    this.#cams.clear();
  }
}

/** Text of the first element named `local` (any namespace prefix) in a SOAP answer, entities decoded; null when absent. */
export function xmlText(xml: string, local: string): string | null {
  const m = new RegExp(`<(?:[A-Za-z_][\\w.-]*:)?${local}(?:\\s[^>]*)?>([^<]*)</`).exec(xml);
  return m ? decodeEntities(m[1]!.trim()) : null;
}

function decodeEntities(s: string): string {
  return s.replace(/&(lt|gt|amp|quot|apos|#\d+|#x[0-9a-fA-F]+);/g, (all, e: string) => {
    if (e === 'lt') return '<';
    if (e === 'gt') return '>';
    if (e === 'amp') return '&';
    if (e === 'quot') return '"';
    if (e === 'apos') return "'";
    const n = e.startsWith('#x') ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
    return Number.isFinite(n) && n <= 0x10ffff ? String.fromCodePoint(n) : all;
  });
}
