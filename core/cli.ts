#!/usr/bin/env node
/**
 * The `camtap` command. Output for people on stdout (tables), `--json` for programs,
 * logs and progress on stderr. Every command takes `--data DIR` (or CAMTAP_DATA,
 * default ./data) and `--config FILE` (or CAMTAP_CONFIG).
 */
import { createWriteStream, existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadConfig, rtspBase, type Config } from './config.js';
import { createLogger } from './logger.js';
import { createCamtap, type Camtap } from './container.js';
import { CamtapError, isCamtapError } from './errors.js';
import { expandCapturePaths, type FileResult } from './capture/ingest.js';
import type { TapConfig } from './contracts/plugin.js';
import { TapRunner, inventoryResolver } from './capture/tap-runner.js';
import { planReplay } from './query/plan.js';
import { exportPcap } from './serve/export.js';
import { exportMedia } from './serve/export-media.js';
import { isoFromNs } from './query/time.js';
import { CatalogReplaySource, replayUrl } from './serve/replay-source.js';
import { RtspServer } from './serve/rtsp-server.js';
import { PipelineLiveSource } from './live/live-source.js';
import { TranscodePool } from './live/transcode-pool.js';
import { startHttpApi } from './api/http-server.js';
import { apiAnswers, cmdFailover } from './failover/cli.js';
import { FailoverService } from './failover/service.js';
import { coverageReport, renderCoverage } from './reports/coverage.js';
import { countLiveSessions, createMetrics, tapInfos } from './metrics/metrics.js';
import { AlertManager } from './alerts/alerts.js';
import { Credentials, apiListenHost, authCommand, isLoopbackHost } from './api/auth.js';
import { RtspDigestAuth } from './serve/rtsp-auth.js';
import { RtspProxySource, redactUrl } from './inline/rtsp-proxy.js';
import { HttpCameraProxy } from './inline/http-proxy.js';
import { UpstreamSession } from './rtsp-client/upstream.js';
import { InlineTap } from '../tap-drivers/inline/index.js';
import type { InlineRecorder } from './contracts/inline.js';
import type { StreamSelector } from './query/types.js';
import type { CameraRecord, SessionRecord, StreamRecord, VmsRecord } from './contracts/records.js';

const HELP = `camtap — capture, archive and index IP camera <-> VMS traffic

Usage: camtap <command> [options]

Commands:
  import <files|folders>...   ingest PCAP/PCAPNG captures (--in-place: index them where they lie;
                              files imported before are skipped unless --force)
  capture                     run the configured live taps until Ctrl-C (--tap NAME, --duration SECS)
  streams                     RTP streams learned (camera, destination, codec, span, packets, loss)
  sessions                    RTSP dialogs learned (URL, transport, ports, session id, auth)
  transactions                camera HTTP/ONVIF exchanges (configuration transactions)
  inventory                   VMSs and the cameras they use
  segments                    stored segments
  taps [explain <tap>]        configured taps; explain prints a tap's native filter
  token NAME [ROLE]           a new API token and its config entry (auth.tokens; role viewer|operator|admin)
  passwd NAME [ROLE]          a user entry (auth.users) for the password on standard input (docs/API.md)
  reindex                     rebuild index and catalog from the stored segments
  export --out FILE|-         a stream's packets as captured, with its RTSP dialog (--format pcap|pcapng),
                              or its video (--format mp4|mkv, through ffmpeg; a range starts at the keyframe
                              before it); pick the stream with --stream ID, --camera, --dst, --codec, --url,
                              --ssrc, and the range with --start/--end (ISO 8601 or -10m, -30s, -2h);
                              --out - writes to standard output (mp4 there is fragmented)
  serve                       serve streams over RTSP (--rtsp-port, default 8554) and the HTTP API
                              (--http-port, default 8080, off): rtsp://HOST:8554/replay/<camera or stream id>
                              ?start=&end=&speed=1|4|max&codec=h264|h265|mjpeg, and /live/<camera> for what
                              the configured taps see now; with no config, serves the demo capture
  failover status|plan|start|end|history <vms>
                              VMS failover: plan shows, per camera, every request camtap would send to
                              take it over (from the captured set-up; nothing sent); start/end act through
                              the running serve (--api URL); --dry-run lists the requests and sends nothing
  demo                        import the bundled demo capture and list its streams
  report coverage             recording coverage per camera over one UTC day (--date YYYY-MM-DD, default
                              today; --format csv|html|json, default csv; --camera NAME; --out FILE)

Options:
  --data DIR       data directory (env CAMTAP_DATA, default ./data)
  --config FILE    YAML config (env CAMTAP_CONFIG; embedded defaults without one)
  --json           machine-readable output
  -h, --help       this help
`;

interface Globals {
  config: Config;
  json: boolean;
}

function out(s: string): void {
  process.stdout.write(s.endsWith('\n') ? s : s + '\n');
}

function table(rows: Array<Record<string, string | number | null>>, cols: string[]): string {
  if (rows.length === 0) return '(none)';
  const w = cols.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c] ?? '').length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(w[i]!)).join('  ').trimEnd();
  return [line(cols), ...rows.map((r) => line(cols.map((c) => String(r[c] ?? ''))))].join('\n');
}

function human(n: number): string {
  if (n >= 1e9) return (n / 1e9).toFixed(2) + ' G';
  if (n >= 1e6) return (n / 1e6).toFixed(2) + ' M';
  if (n >= 1e3) return (n / 1e3).toFixed(1) + ' k';
  return String(Math.round(n));
}

/** Progress on stderr: a redrawn line on a terminal, a line every 2 s otherwise. */
class ProgressBar {
  readonly #t0 = Date.now();
  #last = 0;
  readonly #tty = process.stderr.isTTY === true;
  update(file: string, bytes: number, total: number, packets: number, force = false): void {
    const now = Date.now();
    if (!force && now - this.#last < (this.#tty ? 200 : 2000)) return;
    this.#last = now;
    const secs = Math.max((now - this.#t0) / 1000, 0.001);
    const frac = total > 0 ? Math.min(bytes / total, 1) : 0;
    const eta = frac > 0 ? secs / frac - secs : 0;
    const width = 24;
    const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
    const msg = `[${bar}] ${(frac * 100).toFixed(1).padStart(5)}%  ${human(packets)} pkts  ${human(packets / secs)} pkt/s  ${human(bytes / secs)}B/s  ETA ${eta.toFixed(0)}s  ${path.basename(file)}`;
    process.stderr.write(this.#tty ? `\r${msg}\x1b[K` : msg + '\n');
  }
  done(): void {
    if (this.#tty) process.stderr.write('\n');
  }
}

async function withCamtap<T>(g: Globals, fn: (c: Camtap) => Promise<T>, mode: 'read' | 'write' = 'read'): Promise<T> {
  const log = createLogger(g.config.log.level);
  const c = await createCamtap(g.config, log, { mode, command: process.argv.slice(2).join(' ') });
  if (c.recovered.length && process.argv[2] !== 'reindex') {
    log.warn({ segments: c.recovered.map((r) => r.segment) }, 'segments recovered after a crash are kept but not indexed: run `camtap reindex`');
  }
  let stopping = false;
  const onSig = () => {
    if (stopping) process.exit(130);
    stopping = true;
  };
  process.once('SIGINT', onSig);
  process.once('SIGTERM', onSig);
  try {
    return await fn(c);
  } finally {
    await c.close();
    process.off('SIGINT', onSig);
    process.off('SIGTERM', onSig);
  }
}

/** Catalog meta key: the capture files imported so far (kept across reindex). */
const IMPORTS_KEY = 'imports';
interface ImportMark {
  size: number;
  mtimeMs: number;
  inPlace: boolean;
  at: string;
}

async function cmdImport(g: Globals, args: string[], inPlace: boolean, force = false): Promise<number> {
  if (args.length === 0) throw new CamtapError('CAMTAP_ERR_USAGE', { reason: 'import needs at least one capture file or folder' });
  const files = expandCapturePaths(args);
  if (files.length === 0) throw new CamtapError('CAMTAP_ERR_USAGE', { reason: `no capture files (.pcap, .pcapng, .cap) under ${args.join(', ')}` });
  const results: FileResult[] = [];
  const skipped: string[] = [];
  let counters: Record<string, number> = {};
  const ac = new AbortController();
  const stop = () => ac.abort();
  process.once('SIGINT', stop);
  try {
    await withCamtap(g, async (c) => {
      const { ingest, catalog, pipeline } = c.cradle;
      const tapId = await catalog.tapId('import');
      pipeline.restoreStreams(await catalog.listStreams());
      pipeline.restoreInventory(await catalog.listCameras(), await catalog.listVms());
      const bar = new ProgressBar();
      let doneBytes = 0;
      const sizes = await Promise.all(files.map((f) => stat(f).then((s) => s.size, () => 0)));
      const totalBytes = sizes.reduce((a, b) => a + b, 0);
      // Files already imported (same path, size and modification time) are skipped: their
      // packets would be counted twice. --force imports them again.
      const imported = (await catalog.getMeta<Record<string, ImportMark>>(IMPORTS_KEY)) ?? {};
      for (const [i, file] of files.entries()) {
        const st = await stat(file).catch(() => null);
        const mark = imported[file];
        if (st && mark && !force && mark.size === st.size && mark.mtimeMs === st.mtimeMs) {
          skipped.push(file);
          doneBytes += sizes[i]!;
          continue;
        }
        try {
          const r = await ingest.ingestFile(file, {
            tapId,
            tapName: 'import',
            inPlace,
            signal: ac.signal,
            onChunk: (b) => bar.update(file, doneBytes + b, totalBytes, pipeline.counters.packets),
          });
          results.push(r);
          if (st && r.records > 0) {
            imported[file] = { size: st.size, mtimeMs: st.mtimeMs, inPlace, at: new Date().toISOString() };
            await catalog.setMeta(IMPORTS_KEY, imported);
          }
        } catch (e) {
          if (isCamtapError(e, 'CAMTAP_ERR_INTERRUPTED')) throw e;
          if (!isCamtapError(e)) throw e;
          results.push({ file, format: null, records: 0, bytes: 0, segment: null, errors: [e] });
        }
        doneBytes += sizes[i]!;
        bar.update(file, doneBytes, totalBytes, pipeline.counters.packets, true);
      }
      bar.done();
      pipeline.finish();
      ingest.checkpoint();
      await ingest.drain();
      counters = { ...pipeline.counters };
    }, 'write');
  } finally {
    process.off('SIGINT', stop);
  }
  const errors = results.flatMap((r) => r.errors);
  if (g.json) {
    out(JSON.stringify({ files: results.map((r) => ({ file: r.file, format: r.format, packets: r.records, bytes: r.bytes, segment: r.segment, errors: r.errors.map((e) => e.toJSON()) })), skipped, counters }, null, 2));
  } else {
    for (const r of results) out(`${r.file}: ${r.format ?? 'unreadable'}, ${r.records} packets${r.segment !== null && inPlace ? `, indexed in place as segment ${r.segment}` : ''}`);
    const bad = (['rtpMalformed', 'rtcpMalformed', 'messageErrors', 'truncated', 'badHeader', 'unsupportedLink', 'tcpGaps'] as const).filter((k) => counters[k]);
    if (bad.length) out(`malformed or incomplete (counted, skipped): ${bad.map((k) => `${k} ${counters[k]}`).join(', ')}`);
  }
  for (const f of skipped) process.stderr.write(`camtap: ${f}: already imported, skipped (--force imports it again)\n`);
  for (const e of errors) process.stderr.write(`camtap: error ${e.code}: ${e.message}\n`);
  return errors.length ? 65 : 0;
}

async function cmdReindex(g: Globals): Promise<number> {
  const indexDir = path.join(g.config.dataDir, 'index');
  let summary = { segments: 0, packets: 0 };
  await withCamtap(g, async (c) => {
    const { catalog, store, ingest } = c.cradle;
    const taps = await catalog.listTaps();
    const imports = await catalog.getMeta(IMPORTS_KEY);
    await catalog.clear();
    if (imports) await catalog.setMeta(IMPORTS_KEY, imports);
    for (const t of taps.sort((a, b) => a.id - b.id)) await catalog.tapId(t.name);
    for (const f of existsSync(indexDir) ? readdirSync(indexDir) : []) rmSync(path.join(indexDir, f), { force: true });
    const tapIds = new Map<string, number>();
    for (const t of await catalog.listTaps()) tapIds.set(t.name, t.id);
    const errors: CamtapError[] = [];
    for (const seg of store.segments()) {
      const pending: string[] = [];
      const r = await ingest.ingestFile(seg.path, {
        tapId: 0,
        tapName: '',
        inPlace: true,
        segment: seg,
        tapIdOf: (name) => {
          const n = name ?? 'import';
          if (!tapIds.has(n)) pending.push(n);
          return tapIds.get(n) ?? 0;
        },
      });
      for (const n of pending) tapIds.set(n, await catalog.tapId(n));
      summary.segments++;
      summary.packets += r.records;
      errors.push(...r.errors);
    }
    for (const e of errors) process.stderr.write(`camtap: error ${e.code}: ${e.message}\n`);
  }, 'write');
  if (g.json) out(JSON.stringify(summary));
  else out(`reindexed ${summary.segments} segments, ${summary.packets} packets`);
  return 0;
}

function streamRows(list: StreamRecord[]) {
  return list.map((s) => ({
    id: s.id,
    camera: s.camera,
    src: s.src,
    dst: s.dst,
    tr: s.transport + (s.channel !== undefined ? `/${s.channel}` : ''),
    ssrc: '0x' + s.ssrc.toString(16).toUpperCase().padStart(8, '0'),
    codec: s.codec ?? `pt${s.payloadType}`,
    packets: s.packets,
    lost: s.lost,
    dup: s.duplicates,
    start: s.start.replace('T', ' ').slice(0, 23),
    secs: ((Number(BigInt(s.endNs) - BigInt(s.startNs)) / 1e9) || 0).toFixed(1),
  }));
}

async function cmdList(g: Globals, what: 'streams' | 'sessions' | 'inventory' | 'segments' | 'transactions'): Promise<number> {
  return withCamtap(g, async (c) => {
    const cat = c.cradle.catalog;
    if (what === 'streams') {
      const base = rtspBase(g.config);
      const list = (await cat.listStreams()).map((s) => (s.direction === 'client->server' ? s : { ...s, replayUrl: replayUrl(base, s.id) }));
      out(g.json ? JSON.stringify(list, null, 2) : table(streamRows(list), ['id', 'camera', 'src', 'dst', 'tr', 'ssrc', 'codec', 'packets', 'lost', 'dup', 'start', 'secs']));
    } else if (what === 'sessions') {
      const list: SessionRecord[] = await cat.listSessions();
      if (g.json) out(JSON.stringify(list, null, 2));
      else
        out(
          table(
            list.map((s) => ({
              session: s.sessionId,
              client: s.client,
              server: s.server,
              url: s.url,
              transport: s.tracks.map((t) => (t.interleaved ? `tcp interleaved=${t.interleaved.join('-')}` : t.clientPorts ? `udp client=${t.clientPorts.join('-')} server=${t.serverPorts?.join('-') ?? '?'}` : t.lower ?? '?')).join(', '),
              auth: s.auth ?? '',
              methods: s.requests.map((r) => `${r.method}${r.status ? '/' + r.status : ''}`).join(' '),
            })),
            ['session', 'client', 'server', 'url', 'transport', 'auth', 'methods'],
          ),
        );
    } else if (what === 'transactions') {
      const list = await cat.listTransactions();
      if (g.json) out(JSON.stringify(list, null, 2));
      else out(table(list.map((x) => ({ time: x.time.replace('T', ' ').slice(0, 23), kind: x.kind, client: x.client, server: x.server, method: x.method, url: x.url, operation: x.operation ?? '', status: x.status ?? '' })), ['time', 'kind', 'client', 'server', 'method', 'url', 'operation', 'status']));
    } else if (what === 'inventory') {
      const vms: VmsRecord[] = await cat.listVms();
      const cams: CameraRecord[] = await cat.listCameras();
      if (g.json) out(JSON.stringify({ vms, cameras: cams }, null, 2));
      else {
        out('VMS');
        out(table(vms.map((v) => ({ name: v.name, address: v.address, cameras: v.cameras.join(', '), client: v.userAgents.join('; '), lastSeen: v.lastSeen })), ['name', 'address', 'cameras', 'client', 'lastSeen']));
        out('\nCameras');
        out(table(cams.map((k) => ({ name: k.name, address: k.address, codecs: k.codecs.join(','), vms: k.vms.join(', '), urls: k.urls.join(' '), lastSeen: k.lastSeen })), ['name', 'address', 'codecs', 'vms', 'urls', 'lastSeen']));
      }
    } else {
      const segs = await cat.listSegments();
      if (g.json) out(JSON.stringify(segs, null, 2));
      else out(table(segs.map((s) => ({ id: s.id, path: s.path, format: s.format, external: s.external ? 'yes' : '', sealed: s.sealed ? 'yes' : 'no', bytes: s.bytes, packets: s.packets, streams: s.streams.length })), ['id', 'path', 'format', 'external', 'sealed', 'bytes', 'packets', 'streams']));
    }
    return 0;
  });
}

async function tapConfigs(c: Camtap, names: string[] | null): Promise<TapConfig[]> {
  const cfg = c.cradle.config.taps.filter((t) => t.enabled && (!names || names.includes(t.name)));
  if (names) for (const n of names) if (!cfg.find((t) => t.name === n)) throw new CamtapError('CAMTAP_ERR_NOT_FOUND', { what: 'tap', id: n });
  const out: TapConfig[] = [];
  for (const t of cfg) out.push({ id: await c.cradle.catalog.tapId(t.name), name: t.name, driver: t.driver, filter: t.filter, options: { ...t.options, dataDir: c.cradle.config.dataDir } });
  return out;
}

async function cmdTaps(g: Globals, args: string[]): Promise<number> {
  return withCamtap(g, async (c) => {
    const host = c.cradle.plugins;
    const resolve = inventoryResolver(c.cradle.config, { cameras: await c.cradle.catalog.listCameras(), vms: await c.cradle.catalog.listVms() });
    if (args[0] === 'explain') {
      const name = args[1];
      if (!name) throw new CamtapError('CAMTAP_ERR_USAGE', { reason: 'taps explain needs a tap name' });
      const [t] = await tapConfigs(c, [name]);
      const d = host.tapDriver(t!.driver, t!.name);
      const native = d.translate(t!.filter, resolve);
      if (g.json) out(JSON.stringify({ tap: t!.name, driver: t!.driver, filter: t!.filter, native }));
      else out(`tap ${t!.name} (driver ${t!.driver})\n  filter spec: ${JSON.stringify(t!.filter)}\n  native:      ${native || '(everything)'}`);
      return 0;
    }
    const list = await tapConfigs(c, null);
    if (g.json) out(JSON.stringify(list, null, 2));
    else out(table(list.map((t) => ({ id: t.id, name: t.name, driver: t.driver, filter: host.tapDrivers.get(t.driver)?.translate(t.filter, resolve) ?? '(driver not installed)' })), ['id', 'name', 'driver', 'filter']));
    return 0;
  });
}

async function cmdCapture(g: Globals, tapNames: string[] | null, duration: number | null): Promise<number> {
  return withCamtap(g, async (c) => {
    const { ingest, log, pipeline, catalog, store } = c.cradle;
    const cfgs = await tapConfigs(c, tapNames);
    if (cfgs.length === 0) throw new CamtapError('CAMTAP_ERR_USAGE', { reason: 'no taps configured: add a `taps:` list to the config (see README)' });
    pipeline.restoreStreams(await catalog.listStreams());
    pipeline.restoreInventory(await catalog.listCameras(), await catalog.listVms());
    const ac = new AbortController();
    const { config, plugins } = c.cradle;
    const resolve = inventoryResolver(config, { cameras: await catalog.listCameras(), vms: await catalog.listVms() });
    const runner = new TapRunner({ config, log, plugins, store, pipeline, ingest, resolve, onHalt: () => ac.abort() });
    const stop = () => ac.abort();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    const timer = duration ? setTimeout(stop, duration * 1000) : null;
    // Live data becomes visible in `camtap streams` within a second.
    const tick = setInterval(() => {
      store.flush();
      ingest.checkpoint();
    }, 1000);
    runner.start(cfgs, ac.signal);
    log.info({ taps: cfgs.map((t) => t.name) }, 'capturing');
    // Until stopped, or until every tap ended by itself (file taps with no folder to watch).
    await Promise.race([runner.settled(), new Promise((r) => ac.signal.addEventListener('abort', r))]);
    clearInterval(tick);
    if (timer) clearTimeout(timer);
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    await runner.stop();
    for (const s of runner.status()) log.info(s, 'tap stopped');
    if (g.json) out(JSON.stringify(runner.status()));
    for (const e of runner.fileErrors) process.stderr.write(`camtap: error ${e.code}: ${e.message}\n`);
    if (runner.halted) {
      process.stderr.write(`camtap: error ${runner.halted.code}: ${runner.halted.message}\n`);
      return runner.halted.exit;
    }
    return runner.failed().length || runner.fileErrors.length ? 69 : 0;
  }, 'write');
}

function selectorFrom(values: Record<string, unknown>): StreamSelector {
  const sel: StreamSelector = {};
  const str = (k: string) => {
    const v = values[k];
    return typeof v === 'string' ? v : Array.isArray(v) && typeof v.at(-1) === 'string' ? (v.at(-1) as string) : undefined;
  };
  if (str('stream')) sel.id = str('stream');
  if (str('camera')) sel.camera = str('camera');
  if (str('dst')) sel.dst = str('dst');
  if (str('codec')) sel.codec = str('codec');
  if (str('url')) sel.url = str('url');
  if (str('ssrc')) {
    const v = Number(str('ssrc'));
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new CamtapError('CAMTAP_ERR_USAGE', { reason: `--ssrc ${str('ssrc')}: not a 32-bit number (decimal or 0x hex)` });
    sel.ssrc = v;
  }
  if (str('start')) sel.start = str('start');
  if (str('end')) sel.end = str('end');
  return sel;
}

async function cmdExport(g: Globals, values: Record<string, unknown>): Promise<number> {
  const format = (values.format as string | undefined) ?? 'pcap';
  if (format !== 'pcap' && format !== 'pcapng' && format !== 'mp4' && format !== 'mkv') throw new CamtapError('CAMTAP_ERR_USAGE', { reason: `--format ${format}: pcap, pcapng, mp4 or mkv` });
  const file = values.out as string | undefined;
  if (!file) throw new CamtapError('CAMTAP_ERR_USAGE', { reason: 'export needs --out FILE (- for standard output)' });
  const sel = selectorFrom(values);
  return withCamtap(g, async (c) => {
    const { catalog, indexDir, log } = c.cradle;
    const plan = await planReplay(catalog, sel);
    const what = `stream ${plan.stream.id} (${plan.stream.camera} -> ${plan.stream.dst})`;
    const dest = file === '-' ? '' : ` to ${file}`;
    if (format === 'mp4' || format === 'mkv') {
      // The stream and range are fixed by the plan above (same answer, same errors as the
      // pcap export); the replay then asks for exactly that stream and range.
      const ac = new AbortController();
      const stop = () => ac.abort();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      try {
        const query = new URLSearchParams({ start: isoFromNs(plan.startNs), end: isoFromNs(plan.endNs) });
        const r = await exportMedia({
          source: new CatalogReplaySource({ catalog, indexDir }),
          path: `/replay/${plan.stream.id}`,
          query,
          format,
          out: file === '-' ? process.stdout : file,
          log,
          signal: ac.signal,
        });
        process.stderr.write(`camtap: exported ${what} as ${format}, ${r.bytes} bytes${dest}\n`);
      } finally {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      }
      return 0;
    }
    const segs = new Map((await catalog.listSegments()).map((x) => [x.id, x]));
    const out = file === '-' ? process.stdout : createWriteStream(file);
    const r = await exportPcap({ indexDir, segments: (id) => segs.get(id) }, plan, out, { format });
    if (out !== process.stdout) await new Promise<void>((res, rej) => (out as ReturnType<typeof createWriteStream>).end((e?: Error | null) => (e ? rej(e) : res())));
    process.stderr.write(`camtap: exported ${r.packets} packets of ${what} and ${r.dialogPackets} of its RTSP dialog${dest}\n`);
    return 0;
  });
}

async function cmdServe(g: Globals, rtspPort: number | null, httpPort: number | null | 'off', configFile: string | null, cameraFlags: string[]): Promise<number> {
  const config = g.config;
  if (rtspPort !== null) config.serve.rtspPort = rtspPort;
  if (httpPort === 'off') config.serve.httpPort = null;
  else if (httpPort !== null) config.serve.httpPort = httpPort;
  for (const f of cameraFlags) config.cameras.push(cameraFlag(f));
  // Users and tokens for the API and RTSP (docs/API.md); an open API never listens beyond loopback.
  const credentials = Credentials.fromConfig(config);
  const apiHost = apiListenHost(config.serve, credentials.enabled);
  if (config.serve.httpPort !== null && !credentials.enabled && !isLoopbackHost(apiHost)) throw new CamtapError('CAMTAP_ERR_AUTH_REQUIRED', { host: apiHost });
  // Cameras the inventory learned, when serve.proxyInventory is on (refreshed from the catalog while serving).
  let learned: Array<{ name: string; address: string; url: string; transport: 'udp' | 'tcp' }> = [];
  const proxied = () => {
    const own = config.cameras.filter((k) => k.url).map((k) => ({ name: k.name, address: k.address, url: k.url!, transport: k.transport }));
    return [...own, ...learned.filter((l) => !own.some((o) => o.name === l.name))];
  };
  const gateway = proxied().length > 0 || config.serve.proxyInventory;
  // No config at all and nothing recorded yet: serve the bundled demo capture.
  if (!configFile && config.taps.length === 0 && !gateway) {
    const probe = await withCamtap(g, async (c) => (await c.cradle.catalog.listStreams()).length);
    if (probe === 0) await cmdImport({ ...g, json: false }, [demoCapture()], true);
  }
  const capturing = config.taps.some((t) => t.enabled);
  // Failover records the cameras it takes over through the inline tap.
  const failing = config.failover.vms.length > 0;
  const recording = capturing || gateway || failing;
  return withCamtap(
    g,
    async (c) => {
      const { catalog, indexDir, log, pipeline, ingest, store, plugins } = c.cradle;
      const ac = new AbortController();
      const stop = () => ac.abort();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      // Taps first: the inline gateway records through the inline tap.
      let runner: TapRunner | null = null;
      let tick: NodeJS.Timeout | null = null;
      let recorder: InlineRecorder | null = null;
      if (recording) {
        pipeline.restoreStreams(await catalog.listStreams());
        pipeline.restoreInventory(await catalog.listCameras(), await catalog.listVms());
        const resolve = inventoryResolver(config, { cameras: await catalog.listCameras(), vms: await catalog.listVms() });
        runner = new TapRunner({ config, log, plugins, store, pipeline, ingest, resolve, onHalt: () => ac.abort(), tapId: (n) => catalog.tapId(n) });
        tick = setInterval(() => {
          store.flush();
          ingest.checkpoint();
        }, 1000);
        const taps = await tapConfigs(c, null);
        const inlineName = taps.find((t) => t.driver === 'inline')?.name ?? 'inline';
        if ((gateway || failing) && !taps.some((t) => t.driver === 'inline')) taps.push({ id: await catalog.tapId(inlineName), name: inlineName, driver: 'inline', filter: {}, options: { dataDir: config.dataDir } });
        runner.start(taps, ac.signal);
        const inline = runner.tap(inlineName);
        recorder = inline instanceof InlineTap ? inline.recorder : null;
      }
      const learn = async () => {
        if (!config.serve.proxyInventory) return;
        learned = (await catalog.listCameras()).filter((k) => k.urls.length > 0 && /^rtsps?:\/\//i.test(k.urls[0]!)).map((k) => ({ name: k.name, address: k.address, url: k.urls[0]!, transport: 'tcp' as const }));
      };
      await learn();
      const relearn = config.serve.proxyInventory ? setInterval(() => void learn().catch(() => {}), 10_000) : null;
      relearn?.unref();
      let port = config.serve.rtspPort;
      const proxy = gateway
        ? new RtspProxySource({
            cameras: proxied,
            transparent: config.serve.transparent,
            log,
            start: (o) => new UpstreamSession({ ...o, log, recorder, ...(config.serve.maxReconnects === null ? {} : { maxReconnects: config.serve.maxReconnects }) }),
          })
        : null;
      const transcoding = new TranscodePool({ log });
      const live = new PipelineLiveSource({ pipeline: recording ? pipeline : null, catalog, transcoding, proxy, internalBase: () => `rtsp://${internalHost(config.serve.host)}:${port}`, log });
      // Who watches live, over RTSP and in the browser (metrics; the RTSP server counts replays and live together).
      const rtspLive = countLiveSessions(live);
      const httpLive = countLiveSessions(live);
      const server = new RtspServer({
        source: new CatalogReplaySource({ catalog, indexDir }),
        live: rtspLive.source,
        recordFor: (p) => (recorder && proxy?.proxies(p) ? recorder : null),
        // A VMS lost without TEARDOWN: its camera stays open and recorded (serve.holdOnVmsLoss).
        onClientLost: proxy && config.serve.holdOnVmsLoss ? (l) => void proxy.clientLost(l) : null,
        port: config.serve.rtspPort,
        host: config.serve.host,
        maxClients: config.serve.maxClients,
        log: log.child({ component: 'rtsp' }),
        auth: credentials.hasUsers ? new RtspDigestAuth({ credentials }) : null,
      });
      if (!credentials.hasUsers && !isLoopbackHost(config.serve.host)) log.warn({ host: config.serve.host }, 'rtsp: no users in the config (`auth.users`): anyone who reaches the RTSP port can watch every stream');
      ({ port } = await server.listen());
      config.serve.rtspPort = port;
      const base = rtspBase(config);
      // The camera HTTP/ONVIF proxy: /cam/<name>/... on the API port, and a port of its own per camera with onvifPort.
      let httpPortNow = config.serve.httpPort ?? 0;
      const httpProxy =
        config.cameras.length && config.serve.httpPort !== null
          ? new HttpCameraProxy({
              cameras: () => config.cameras.map((k) => ({ alias: k.name, http: k.http ?? `http://${k.address.includes(':') ? `[${k.address}]` : k.address}` })),
              rtspBase: () => base,
              httpBase: () => config.serve.httpPublicUrl ?? `http://${internalHost(apiHost)}:${httpPortNow}`,
              recorder,
              log,
            })
          : null;
      // VMS failover (core/failover): detection, take-over, give-back; only where something records what the cameras then send.
      const failover = recording
        ? new FailoverService({
            config,
            catalog,
            log,
            plugins,
            trafficWatch: c.cradle.trafficWatch,
            recorder: () => recorder,
            rtspBase: () => base,
            httpBase: () => (config.serve.httpPort === null ? null : (config.serve.httpPublicUrl ?? `http://${internalHost(apiHost)}:${httpPortNow}`)),
            onEvent: (e) => {
              if (e.kind === 'failover-started') alerts.event('vms-failed', { vms: e.vms, reason: e.detail, ok: e.ok });
              else if (e.kind === 'failover-ended') alerts.event('vms-restored', { vms: e.vms, reason: e.detail, ok: e.ok });
            },
          })
        : null;
      // Alerts and Prometheus metrics (docs/OPERATIONS.md): read from the services, nothing on the packet path.
      const alerts = new AlertManager({ settings: config.alerts, log, taps: () => tapInfos(runner), streams: () => pipeline.activeStreams(), dataDir: config.dataDir });
      alerts.start();
      const metrics = createMetrics({
        taps: () => tapInfos(runner),
        streams: () => pipeline.activeStreams(),
        pipeline: () => pipeline.counters,
        replaySessions: () => Math.max(0, server.sessions - rtspLive.sessions()),
        liveSessions: () => rtspLive.sessions() + httpLive.sessions(),
        dataDir: config.dataDir,
        ...(recording ? { segmentBytes: () => store.totalBytes(), newestPacketNs: () => store.current()?.lastTsNs ?? null } : {}),
        alerts: () => alerts.active(),
        bitrateWindowMs: config.metrics.bitrateWindowMs,
        failover: () => failover?.health() ?? [],
      });
      const http = config.serve.httpPort === null ? null : await startHttpApi({ catalog, indexDir, log, rtspBase: () => base, port: config.serve.httpPort, host: apiHost, auth: credentials, taps: () => runner, config: () => config, front: httpProxy ? (q, r) => httpProxy.handle(q, r) : null, live: httpLive.source, metrics, metricsPublic: config.metrics.public, alerts, failover, ...(failover ? { failoverPeriods: () => failover.periods() } : {}) });
      if (http) httpPortNow = http.port;
      failover?.run();
      for (const k of config.cameras) if (httpProxy && k.onvifPort) await httpProxy.listen(k.onvifPort, config.serve.host, { alias: k.name });
      const streams = (await catalog.listStreams()).filter((s) => s.direction !== 'client->server');
      out(`camtap serving RTSP on port ${port}${http ? `, HTTP API on port ${http.port}` : ''}${capturing ? `, capturing with ${config.taps.length} tap(s)` : ''}`);
      for (const k of proxied()) out(`  ${base}/${encodeURIComponent(k.name)}   proxies ${redactUrl(k.url)} (${k.transport} to the camera)`);
      if (httpProxy && http) for (const k of config.cameras) out(`  http://${internalHost(config.serve.host)}:${http.port}/cam/${encodeURIComponent(k.name)}/   proxies ${k.http ?? `http://${k.address}`}${k.onvifPort ? ` (and port ${k.onvifPort})` : ''}`);
      for (const s of streams) out(`  ${replayUrl(base, s.id)}   ${s.camera} -> ${s.dst} ${s.codec ?? ''}`);
      const cams = [...new Set(streams.map((s) => s.camera))];
      if (cams.length) out(`  by camera: ${cams.map((k) => `${base}/replay/${encodeURIComponent(k)}`).join('  ')}`);
      await new Promise((r) => ac.signal.addEventListener('abort', r));
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      if (relearn) clearInterval(relearn);
      await failover?.close();
      await http?.close();
      metrics.close();
      await alerts.close();
      await httpProxy?.close();
      await server.close();
      await live.close();
      if (tick) clearInterval(tick);
      await runner?.stop();
      return 0;
    },
    recording ? 'write' : 'read',
  );
}

/** `camtap report coverage`: the daily coverage report of core/reports/coverage.ts. */
async function cmdReport(g: Globals, args: string[], values: Record<string, unknown>): Promise<number> {
  if (args[0] !== 'coverage') throw new CamtapError('CAMTAP_ERR_USAGE', { reason: 'report: the report is `coverage` (camtap report coverage --date YYYY-MM-DD --format csv|html|json [--out FILE])' });
  const format = (values.format as string | undefined) ?? (g.json ? 'json' : 'csv');
  if (format !== 'csv' && format !== 'html' && format !== 'json') throw new CamtapError('CAMTAP_ERR_USAGE', { reason: `--format ${format}: csv, html or json` });
  const camera = (values.camera as string[] | undefined)?.at(-1);
  const date = (values.date as string | undefined) ?? new Date().toISOString().slice(0, 10);
  const text = await withCamtap(g, async (c) => renderCoverage(await coverageReport({ catalog: c.cradle.catalog, indexDir: c.cradle.indexDir, log: c.cradle.log }, { date, ...(camera ? { camera } : {}) }), format));
  const file = values.out as string | undefined;
  if (file && file !== '-') writeFileSync(file, text);
  else process.stdout.write(text);
  return 0;
}

/** `--camera NAME=rtsp://[user:pass@]host[:port]/path`: a camera to proxy without a config file. */
function cameraFlag(v: string): Config['cameras'][number] {
  const m = /^([^=\s]+)=(rtsps?:\/\/.+)$/i.exec(v);
  let host = '';
  try {
    host = m ? new URL(m[2]!).hostname.replace(/^\[|\]$/g, '') : '';
  } catch {
    host = '';
  }
  if (!m || !host) throw new CamtapError('CAMTAP_ERR_USAGE', { reason: `--camera ${redactUrl(v)}: expected NAME=rtsp://host[:port]/path` });
  return { name: m[1]!, address: host, url: m[2]!, transport: 'tcp' };
}

/** A `--*-port` value: 0..65535 (0 picks a free port), or a usage error naming the flag. */
function portFlag(flag: string, v: string | undefined): number | null {
  if (v === undefined) return null;
  const n = Number(v);
  if (!/^\d+$/.test(v) || n > 65535) throw new CamtapError('CAMTAP_ERR_USAGE', { reason: `--${flag} ${v}: a port number 0-65535 (0 picks a free one)` });
  return n;
}

/** Where camtap reaches its own RTSP server (a transcoder's input): loopback unless it listens on one address only. */
function internalHost(host: string): string {
  if (host === '' || host === '0.0.0.0' || host === '::') return '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
}

function demoCapture(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (const p of [path.resolve(here, '../../fixtures/captures/netns_multi.pcap'), path.resolve(here, '../fixtures/captures/netns_multi.pcap')]) if (existsSync(p)) return p;
  throw new CamtapError('CAMTAP_ERR_NOT_FOUND', { what: 'demo capture', id: 'fixtures/captures/netns_multi.pcap' });
}

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      data: { type: 'string' },
      config: { type: 'string' },
      json: { type: 'boolean', default: false },
      'in-place': { type: 'boolean', default: false },
      force: { type: 'boolean', default: false },
      format: { type: 'string' },
      out: { type: 'string', short: 'o' },
      stream: { type: 'string' },
      // A selector for export (the last one counts); NAME=URL cameras to proxy for serve.
      camera: { type: 'string', multiple: true },
      dst: { type: 'string' },
      codec: { type: 'string' },
      url: { type: 'string' },
      ssrc: { type: 'string' },
      start: { type: 'string' },
      end: { type: 'string' },
      'rtsp-port': { type: 'string' },
      'http-port': { type: 'string' },
      tap: { type: 'string', multiple: true },
      duration: { type: 'string' },
      date: { type: 'string' },
      'dry-run': { type: 'boolean', default: false },
      api: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const cmd = positionals[0];
  if (values.help || !cmd || cmd === 'help') {
    out(HELP);
    return cmd || values.help ? 0 : 64;
  }
  const { config } = loadConfig({ file: values.config ?? null, dataDir: values.data ?? null });
  const g: Globals = { config, json: values.json === true };
  const args = positionals.slice(1);
  switch (cmd) {
    case 'import':
      return cmdImport(g, args, values['in-place'] === true, values.force === true);
    case 'reindex':
      return cmdReindex(g);
    case 'streams':
    case 'sessions':
    case 'inventory':
    case 'segments':
    case 'transactions':
      return cmdList(g, cmd);
    case 'taps':
      return cmdTaps(g, args);
    case 'token':
    case 'passwd':
      out(await authCommand(cmd, args, { realm: config.auth?.realm ?? 'camtap', input: process.stdin }));
      return 0;
    case 'export':
      return cmdExport(g, values);
    case 'serve':
      return cmdServe(g, portFlag('rtsp-port', values['rtsp-port']), values['http-port'] === 'off' ? 'off' : portFlag('http-port', values['http-port']), values.config ?? process.env.CAMTAP_CONFIG ?? null, (values.camera as string[] | undefined) ?? []);
    case 'capture':
      return cmdCapture(g, values.tap ?? null, values.duration ? Number(values.duration) : null);
    case 'report':
      return cmdReport(g, args, values);
    case 'failover':
      return cmdFailoverCli(g, args, values['dry-run'] === true, (values.camera as string[] | undefined) ?? [], values.api ?? null);
    case 'demo': {
      const code = await cmdImport({ ...g, json: false }, [demoCapture()], true);
      if (code !== 0) return code;
      return cmdList(g, 'streams');
    }
    default:
      throw new CamtapError('CAMTAP_ERR_USAGE', { reason: `unknown command "${cmd}" (camtap --help lists them)` });
  }
}

const isMain = process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1]);
if (isMain || process.argv[1]?.endsWith('/camtap')) {
  main(process.argv.slice(2)).then(
    (code) => {
      // Exit explicitly: node_pcap keeps its native handle (and the process) alive until
      // one more packet arrives after close().
      process.stdout.write('', () => process.exit(code));
    },
    (e: unknown) => {
      if (isCamtapError(e)) {
        process.stderr.write(`camtap: error ${e.code}: ${e.message}\n`);
        process.exitCode = e.exit;
      } else if (e instanceof TypeError && (e as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) {
        process.stderr.write(`camtap: ${e.message}\n`);
        process.exitCode = 64;
      } else {
        process.stderr.write(`camtap: unexpected error: ${(e as Error).stack ?? String(e)}\n`);
        process.exitCode = 70;
      }
    },
  );
}

/** `camtap failover ...` (core/failover/cli.ts): offline for plans and dry runs, through the running serve's API otherwise. */
async function cmdFailoverCli(g: Globals, args: string[], dryRun: boolean, cameras: string[], api: string | null): Promise<number> {
  const port = g.config.serve.httpPort;
  const candidate = api ?? (port ? `http://${internalHost(g.config.serve.host)}:${port}` : null);
  const live = candidate && (api !== null || !dryRun) ? ((await apiAnswers(candidate)) ? candidate : null) : null;
  if (api && !live && !dryRun && args[0] !== 'plan') throw new CamtapError('CAMTAP_ERR_USAGE', { reason: `--api ${api}: no camtap API answers there` });
  return cmdFailover(args, {
    json: g.json,
    dryRun,
    cameras,
    api: live,
    out,
    offline: (fn) =>
      withCamtap(g, async (c) => {
        const svc = new FailoverService({ config: g.config, catalog: c.cradle.catalog, log: c.cradle.log, plugins: c.cradle.plugins, trafficWatch: null, recorder: () => null, rtspBase: () => rtspBase(g.config), httpBase: () => null });
        try {
          return await fn(svc.manager);
        } finally {
          await svc.close();
        }
      }),
  });
}
