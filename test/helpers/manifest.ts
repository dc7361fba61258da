/**
 * The lab's tshark-made manifests (fixtures/captures/*.manifest.json): the fields the
 * tests compare with. Format: the lab README, section 4.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { CAPTURES } from './camtap.js';

export interface ManifestStream {
  transport: 'udp' | 'tcp';
  src: string;
  dst: string;
  ssrc: string;
  packets: number;
  unique_packets: number;
  duplicates: number;
  out_of_order: number;
  first_seq: number;
  last_seq: number;
  lost: number;
  min_ext_seq: number;
  max_ext_seq: number;
  first_time: number;
  last_time: number;
  direction?: string;
  rtsp_session: string | null;
  interleaved_channel?: number;
  payload_types: number[];
  decode: { codec: string; frames_decoded: number } | null;
}

export interface ManifestSession {
  client: string;
  server: string;
  url: string;
  session_id: string;
  timeout: number | null;
  auth: unknown;
  tracks: Array<{ control_url: string; transport: { raw: string; client_port?: number[]; server_port?: number[]; interleaved?: number[] } | null; status: number | null }>;
  requests: Array<{ method: string; cseq: number; status: number | null }>;
}

export interface Manifest {
  file: string;
  capinfos: Record<string, string>;
  rtp_streams: ManifestStream[];
  rtsp_sessions: ManifestSession[];
}

/** The manifest beside a capture in fixtures/captures (`x.pcap` or `x.manifest.json`). */
export function readManifest(name: string): Manifest {
  const file = name.endsWith('.manifest.json') ? name : name.replace(/\.pcap(ng)?$/, '.manifest.json');
  return JSON.parse(readFileSync(path.join(CAPTURES, file), 'utf8')) as Manifest;
}
