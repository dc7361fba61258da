/**
 * generic-rtsp: any camera that speaks RTSP (RFC 2326 / 7826) on any port. Recognises an
 * RTSP connection by its first bytes, so cameras on unusual ports are classified without
 * configuration; codec hints come from the SDP alone.
 */
import type { CameraProfile, FlowInfo, PluginMeta } from '../../core/contracts/index.js';

export const meta: PluginMeta = {
  name: 'generic-rtsp',
  kind: 'camera-profile',
  version: '0.1.0',
  core: '^0.1.0',
  description: 'Any RTSP camera: recognises RTSP on any TCP port by its first request or response line',
};

const RTSP_START = /^(?:OPTIONS|DESCRIBE|SETUP|PLAY|PAUSE|TEARDOWN|GET_PARAMETER|SET_PARAMETER|ANNOUNCE|RECORD|REDIRECT) \S+ RTSP\/[12]\.0\r?\n|^RTSP\/[12]\.0 \d{3} /;

export function looksLikeRtsp(payload: Buffer): boolean {
  return payload.length >= 12 && RTSP_START.test(payload.toString('latin1', 0, Math.min(payload.length, 256)));
}

const profile: CameraProfile = {
  meta,
  match(flow: FlowInfo, firstPayload: Buffer) {
    if (flow.transport === 'tcp' && looksLikeRtsp(firstPayload)) return 'rtsp';
    return null;
  },
};

export default profile;
