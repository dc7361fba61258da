/**
 * vms-generic: a VMS known only by its address and the RTSP client it uses. Recognises the
 * common RTSP client strings of VMS products and test tools in the User-Agent header, so
 * the inventory can tell a VMS from a viewer.
 */
import type { PluginMeta, VmsPlugin } from '../../core/contracts/index.js';

export const meta: PluginMeta = {
  name: 'vms-generic',
  kind: 'vms',
  version: '0.1.0',
  core: '^0.1.0',
  description: 'Any VMS: RTSP clients identified by User-Agent',
};

const KNOWN = /Lavf|LIBVLC|GStreamer|Milestone|Genetec|Nx Witness|Network Optix|Avigilon|Exacq|Hanwha|Blue Iris|Synology|Frigate|go2rtc|MediaMTX/i;

const plugin: VmsPlugin = {
  meta,
  classify(userAgent: string) {
    return KNOWN.test(userAgent);
  },
};

export default plugin;
