/**
 * vms-generic: a VMS known only by its address and the RTSP client it uses. Recognises the
 * common RTSP client strings of VMS products and test tools in the User-Agent header, so
 * the inventory can tell a VMS from a viewer; probes the VMS by connecting to the ports it
 * listens on and by its health URL (core/failover/probe.ts).
 */
import type { PluginMeta, SessionRecord, VmsEndpoint, VmsHealth, VmsPlugin, VmsProbeOptions, VmsRecord } from '../../core/contracts/index.js';
import { probeEndpoint } from '../../core/failover/probe.js';

export const meta: PluginMeta = {
  name: 'vms-generic',
  kind: 'vms',
  version: '0.2.0',
  core: '^0.1.0',
  description: 'Any VMS: RTSP clients identified by User-Agent; probed by TCP connect and an HTTP health URL',
};

const KNOWN = /Lavf|LIBVLC|GStreamer|Milestone|Genetec|Nx Witness|Network Optix|Avigilon|Exacq|Hanwha|Blue Iris|Synology|Frigate|go2rtc|MediaMTX|gortsplib/i;

/** RFC 2326 §10.1/§10.8: the methods an RTSP client sends to keep a session alive. */
const KEEPALIVE = new Set(['GET_PARAMETER', 'OPTIONS', 'SET_PARAMETER']);

/** `RTSP over TCP (interleaved) to 2 cameras (cam1, cam2), keepalive GET_PARAMETER, User-Agent Lavf58.76.100`. */
export function describeRtspUse(vms: VmsRecord, sessions: SessionRecord[]): string {
  const mine = sessions.filter((s) => s.vms === vms.name || s.client.startsWith(`${vms.address}:`) || s.client.startsWith(`[${vms.address}]:`));
  if (mine.length === 0) return `no RTSP session of ${vms.name} captured`;
  const lowers = new Set<string>();
  const keepalive = new Set<string>();
  const cameras = new Set<string>();
  const agents = new Set<string>(vms.userAgents);
  for (const s of mine) {
    cameras.add(s.camera);
    if (s.userAgent) agents.add(s.userAgent);
    for (const t of s.tracks) if (t.lower) lowers.add(t.lower === 'tcp' ? 'TCP (interleaved)' : t.lower === 'udp-mcast' ? 'UDP multicast' : 'UDP');
    let played = false;
    for (const r of s.requests) {
      if (r.method === 'PLAY') played = true;
      else if (played && KEEPALIVE.has(r.method)) keepalive.add(r.method);
    }
  }
  const cams = [...cameras].sort();
  const parts = [`RTSP over ${lowers.size ? [...lowers].sort().join(' and ') : 'an unknown transport'} to ${cams.length} camera${cams.length === 1 ? '' : 's'} (${cams.join(', ')})`];
  parts.push(keepalive.size ? `keepalive ${[...keepalive].sort().join('/')}` : 'no keepalive captured');
  if (agents.size) parts.push(`User-Agent ${[...agents].sort().join(', ')}`);
  return parts.join(', ');
}

const plugin: VmsPlugin = {
  meta,
  classify(userAgent: string) {
    return KNOWN.test(userAgent);
  },
  /** Every listening port by TCP connect, plus the health URL: ok only if all answer. */
  probe(endpoint: VmsEndpoint, opts: VmsProbeOptions): Promise<VmsHealth> {
    return probeEndpoint(endpoint, opts);
  },
  describeCameraUse: describeRtspUse,
  async planRestore(ctx) {
    // An RTSP client retries a camera that stopped answering; a generic VMS needs nothing.
    return ctx.cameras.map((camera) => ({
      camera,
      note: `${ctx.vms} reconnects to ${camera} by itself once camtap gives it back; ${ctx.gap.start} .. ${ctx.gap.end} is not in its archive (camtap has it)`,
    }));
  },
};

export default plugin;
