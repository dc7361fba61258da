/**
 * Child process of the retrieve benchmark: time to first and last packet of a stream
 * request in-process, with the query engine exactly as `camtap serve` uses it (catalog
 * opened once like a running server; then per request `planReplay` from the selector
 * and `CatalogReplaySource.packets`, which lists the segments and runs `replayPackets`).
 *
 *   node dist/bench/retrieve/first-packet.js '{"data":DIR,"stream":ID,"start":ISO,"end":ISO,"reps":5}'
 *
 * Prints one JSON object on stdout: the catalog open time and, per repetition, the
 * milliseconds from the request (before planReplay) to the plan, the first packet and
 * the last packet, the packets (and those inside [start, end]) and the bytes the process
 * read meanwhile (/proc/self/io rchar).
 */
import { loadConfig } from '../../core/config.js';
import { createCamtap } from '../../core/container.js';
import { silentLogger } from '../../core/logger.js';
import { planReplay } from '../../core/query/plan.js';
import { parseIsoNs } from '../../core/query/time.js';
import { CatalogReplaySource } from '../../core/serve/replay-source.js';
import { procReadBytes } from '../lib/proc.js';

interface Args {
  data: string;
  stream: string;
  start: string;
  end: string;
  reps: number;
}

export interface FirstPacketRep {
  planMs: number;
  firstMs: number;
  lastMs: number;
  packets: number;
  packetsInRange: number;
  rtpBytes: number;
  readBytes: number | null;
  firstTsNs: string;
  lastTsNs: string;
}

export interface FirstPacketResult {
  openMs: number;
  reps: FirstPacketRep[];
}

async function main(): Promise<void> {
  const a = JSON.parse(process.argv[2] ?? '{}') as Args;
  const t0 = performance.now();
  const { config } = loadConfig({ file: null, dataDir: a.data, env: {} });
  const c = await createCamtap(config, silentLogger, { mode: 'read', loadPlugins: false });
  const openMs = performance.now() - t0;
  const { catalog, indexDir } = c.cradle;
  const source = new CatalogReplaySource({ catalog, indexDir });
  const startNs = parseIsoNs(a.start);
  const reps: FirstPacketRep[] = [];
  try {
    for (let i = 0; i < a.reps; i++) {
      const r0 = procReadBytes();
      const ac = new AbortController();
      const t = performance.now();
      const plan = await planReplay(catalog, { id: a.stream, start: a.start, end: a.end });
      const planMs = performance.now() - t;
      let firstMs = -1;
      let packets = 0;
      let inRange = 0;
      let rtpBytes = 0;
      let firstTs = 0n;
      let lastTs = 0n;
      for await (const p of source.packets(plan, { ssrc: 0x12345678, signal: ac.signal })) {
        if (packets === 0) {
          firstMs = performance.now() - t;
          firstTs = p.tsNs;
        }
        packets++;
        rtpBytes += p.rtp.length;
        if (startNs === null || p.tsNs >= startNs) inRange++;
        lastTs = p.tsNs;
      }
      const lastMs = performance.now() - t;
      const r1 = procReadBytes();
      reps.push({ planMs, firstMs, lastMs, packets, packetsInRange: inRange, rtpBytes, readBytes: r0 !== null && r1 !== null ? r1 - r0 : null, firstTsNs: String(firstTs), lastTsNs: String(lastTs) });
    }
  } finally {
    await c.close();
  }
  const out: FirstPacketResult = { openMs, reps };
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e: unknown) => {
  process.stderr.write(`first-packet: ${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
});
