/**
 * The inventory: which VMSs exist and which cameras each uses, derived from what was
 * learned (RTSP dialogs: the client is the VMS, the server the camera; push streams
 * without a dialog: the receiver is the VMS) and merged with what earlier runs stored,
 * so first/last seen span every capture ever ingested.
 */
import type { CameraRecord, SessionRecord, StreamRecord, VmsRecord } from '../contracts/records.js';

/** The address part of an `ip:port` / `[v6]:port` endpoint. */
export function hostOf(endpoint: string): string {
  return endpoint.startsWith('[') ? endpoint.slice(1, endpoint.indexOf(']')) : endpoint.slice(0, endpoint.lastIndexOf(':'));
}

const add = <T>(list: T[], x: T | null | undefined) => {
  if (x !== null && x !== undefined && !list.includes(x)) list.push(x);
};

export class Inventory {
  readonly #cams = new Map<string, CameraRecord>();
  readonly #vms = new Map<string, VmsRecord>();

  /** Starts from the records earlier runs stored. */
  constructor(cameras: CameraRecord[] = [], vms: VmsRecord[] = []) {
    for (const c of cameras) this.#cams.set(c.name, structuredClone(c));
    for (const v of vms) this.#vms.set(v.name, structuredClone(v));
  }

  camera(name: string, address: string, t0: string, t1: string): CameraRecord {
    let c = this.#cams.get(name);
    if (!c) this.#cams.set(name, (c = { name, address, urls: [], codecs: [], vms: [], firstSeen: t0, lastSeen: t1 }));
    if (t0 < c.firstSeen) c.firstSeen = t0;
    if (t1 > c.lastSeen) c.lastSeen = t1;
    return c;
  }

  vms(name: string, address: string, t0: string, t1: string): VmsRecord {
    let v = this.#vms.get(name);
    if (!v) this.#vms.set(name, (v = { name, address, userAgents: [], cameras: [], firstSeen: t0, lastSeen: t1 }));
    if (t0 < v.firstSeen) v.firstSeen = t0;
    if (t1 > v.lastSeen) v.lastSeen = t1;
    return v;
  }

  addSession(r: SessionRecord): void {
    const c = this.camera(r.camera, hostOf(r.server), r.start, r.end);
    const v = this.vms(r.vms, hostOf(r.client), r.start, r.end);
    // The stream URLs the camera was asked for (a dialog seen only from its middle has none).
    add(c.urls, r.sdp ? r.url : null);
    add(c.vms, v.name);
    add(v.cameras, c.name);
    add(v.userAgents, r.userAgent);
  }

  addStream(s: StreamRecord, vmsName: (ip: string) => string): void {
    if (s.direction === 'client->server') return;
    const c = this.camera(s.camera, this.#cams.get(s.camera)?.address ?? hostOf(s.src), s.start, s.end);
    add(c.codecs, s.codec);
    if (!s.session) {
      // A push stream: its receiver is the VMS.
      const ip = hostOf(s.dst);
      const v = this.vms(vmsName(ip), ip, s.start, s.end);
      add(c.vms, v.name);
      add(v.cameras, c.name);
    }
  }

  records(): { cameras: CameraRecord[]; vms: VmsRecord[] } {
    return { cameras: [...this.#cams.values()], vms: [...this.#vms.values()] };
  }
}
