/**
 * WS-Discovery (OASIS WS-Discovery 2005/04, ONVIF Core §7.3) through the `onvif`
 * package's `Discovery.probe`: one Probe for `dn:NetworkVideoTransmitter` multicast to
 * 239.255.255.250:3702, ProbeMatches collected until the timeout.
 *
 * The package is asked for raw matches (`resolve: false`): resolving builds a `Cam` per
 * answer and reads fields without checking them, so one malformed answer on the LAN
 * could throw outside any callback. Answers are untrusted and mapped defensively here;
 * one with no XAddrs is left out (it would need a Resolve round trip, and camtap needs
 * an address to talk to). The package reads one ProbeMatch per message (it loses a
 * message that carries several, which devices do not send for themselves).
 */
import onvif from 'onvif';
import type { DiscoveredCamera, DiscoverOptions } from '../../core/contracts/index.js';

// A CommonJS package: Node's named-export detection misses `Discovery`, so it is read off the default export.
const { Discovery } = onvif;

/** How long a probe collects answers by default: devices wait a random time up to WS-Discovery's APP_MAX_DELAY (500 ms) before answering. */
export const DEFAULT_DISCOVERY_MS = 3000;

interface RawMatch {
  probeMatches?: { probeMatch?: unknown };
}

const asText = (v: unknown): string | null => (typeof v === 'string' ? v : typeof v === 'number' ? String(v) : null);

/** A WS-Discovery ProbeMatch (as the package's xml2js parse gives it) as a DiscoveredCamera; null when unusable. */
export function toDiscovered(raw: unknown, profile: string): DiscoveredCamera | null {
  const pm = (raw as RawMatch | null)?.probeMatches?.probeMatch as Record<string, unknown> | undefined;
  if (!pm || typeof pm !== 'object' || Array.isArray(pm)) return null;
  const xaddrs = (asText(pm.XAddrs) ?? '').split(/\s+/).filter((u) => /^https?:\/\//i.test(u));
  if (xaddrs.length === 0) return null;
  let address: string;
  try {
    address = new URL(xaddrs[0]!).hostname.replace(/^\[|\]$/g, '');
  } catch {
    return null;
  }
  const id = asText((pm.endpointReference as Record<string, unknown> | undefined)?.address) ?? undefined;
  const scopes = (asText(pm.scopes) ?? '').split(/\s+/).filter(Boolean);
  return { address, apiUrls: xaddrs, ...(id ? { id } : {}), scopes, profile };
}

/** Probes for ONVIF devices; resolves with those that answered (deduplicated by id or first XAddr). */
export function probe(opts: DiscoverOptions, profile: string): Promise<DiscoveredCamera[]> {
  const timeout = opts.timeoutMs ?? DEFAULT_DISCOVERY_MS;
  return new Promise((resolve, reject) => {
    // The package emits 'error' for every unparsable answer: without a listener an
    // EventEmitter throws it. Such answers are simply not cameras.
    const ignore = () => {};
    Discovery.on('error', ignore);
    let settled = false;
    const settle = (err: Error | null, found: DiscoveredCamera[]) => {
      if (settled) return;
      settled = true;
      Discovery.removeListener('error', ignore);
      opts.signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve(found);
    };
    const onAbort = () => settle(null, []);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    Discovery.probe({ timeout, resolve: false, ...(opts.device ? { device: opts.device } : {}) }, (err, devices) => {
      // `err` is an array of per-answer errors (bad answers) or a socket error.
      if (err && !Array.isArray(err)) return settle(err, []);
      const byKey = new Map<string, DiscoveredCamera>();
      for (const d of devices ?? []) {
        const c = toDiscovered(d, profile);
        if (c) byKey.set(c.id ?? c.apiUrls[0]!, c);
      }
      settle(null, [...byKey.values()]);
    });
  });
}
