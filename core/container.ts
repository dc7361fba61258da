/**
 * The composition root (awilix, strict mode). Resources that open asynchronously (catalog,
 * store, plugins) are opened here and registered as values; services get one `Deps`
 * object with only what they need. The container is never touched on the packet path.
 * Shutdown order: taps, capture, store flush, index, catalog.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { asFunction, asValue, createContainer, InjectionMode, type AwilixContainer } from 'awilix';
import type { Config } from './config.js';
import { catalogUrl } from './config.js';
import type { Logger } from './contracts/logger.js';
import { Catalog } from './catalog/catalog.js';
import { SegmentStore } from './store/segment-store.js';
import { PluginHost } from './plugin-host.js';
import { CapturePipeline } from './capture/pipeline.js';
import { Ingest } from './capture/ingest.js';
import { lockDataDir } from './store/data-lock.js';
import { TrafficWatch } from './failover/traffic-watch.js';

export interface Cradle {
  config: Config;
  log: Logger;
  plugins: PluginHost;
  catalog: Catalog;
  store: SegmentStore;
  pipeline: CapturePipeline;
  /** VMS signs of life seen by the taps (failover's traffic-cessation detection); watches nothing until told. */
  trafficWatch: TrafficWatch;
  ingest: Ingest;
  indexDir: string;
}

export interface Camtap {
  container: AwilixContainer<Cradle>;
  cradle: Cradle;
  /** Store recovery report from opening the data dir. */
  recovered: Array<{ segment: number; path: string; cutBytes: number; packets: number }>;
  close(): Promise<void>;
}

/**
 * `write` (import, capture, reindex) takes the data dir lock and opens the store, running
 * crash recovery; `read` (listing commands) touches neither, so it is safe beside a writer.
 */
export async function createCamtap(config: Config, log: Logger, opts: { loadPlugins?: boolean; mode?: 'read' | 'write'; command?: string } = {}): Promise<Camtap> {
  mkdirSync(config.dataDir, { recursive: true });
  const write = (opts.mode ?? 'write') === 'write';
  const unlock = write ? lockDataDir(config.dataDir, opts.command ?? 'camtap') : () => {};
  const indexDir = path.join(config.dataDir, 'index');
  mkdirSync(indexDir, { recursive: true });
  const container = createContainer<Cradle>({ injectionMode: InjectionMode.PROXY, strict: true });
  const plugins = new PluginHost({ log, dataDir: config.dataDir });
  if (opts.loadPlugins !== false) {
    await plugins.loadBuiltins();
    for (const p of config.plugins) await plugins.load(p);
  }
  const catalog = await Catalog.open({ url: catalogUrl(config), namespace: config.catalog.namespace });
  let ingestRef: Ingest | null = null;
  const store = new SegmentStore({
    dataDir: config.dataDir,
    maxSegmentBytes: config.store.maxSegmentBytes,
    maxSegmentSeconds: config.store.maxSegmentSeconds,
    retentionBytes: config.store.retentionBytes,
    retentionSeconds: config.store.retentionSeconds,
    log,
    onSeal: (seg) => ingestRef?.onSeal(seg),
    onDelete: (seg) => void catalog.deleteSegment(seg.id).catch((e) => log.error({ err: (e as Error).message }, 'catalog delete failed')),
    onAlert: (a) => log.error({ alert: a.kind, ...a.details }, a.message),
  });
  let recovered: Camtap['recovered'] = [];
  try {
    if (write) recovered = (await store.open()).recovered;
  } catch (e) {
    await catalog.close();
    unlock();
    throw e;
  }
  container.register({
    config: asValue(config),
    log: asValue(log),
    plugins: asValue(plugins),
    catalog: asValue(catalog),
    store: asValue(store),
    indexDir: asValue(indexDir),
    trafficWatch: asValue(new TrafficWatch()),
    pipeline: asFunction(({ config, log, plugins, indexDir, trafficWatch }: Cradle) => new CapturePipeline({ config, log, plugins, indexDir, trafficWatch })).singleton(),
    ingest: asFunction(({ log, store, catalog, pipeline }: Cradle) => new Ingest({ log, store, catalog, pipeline })).singleton(),
  });
  ingestRef = container.cradle.ingest;
  let closed = false;
  return {
    container,
    cradle: container.cradle,
    recovered,
    async close() {
      if (closed) return;
      closed = true;
      try {
        if (write) {
          const { pipeline, ingest } = container.cradle;
          pipeline.finish();
          await store.close(); // seals the open segment -> onSeal writes its index
          for (const seg of pipeline.openSegments()) pipeline.sealSegment(seg);
          ingest.checkpoint();
          await ingest.drain();
        }
      } finally {
        await catalog.close();
        await container.dispose();
        unlock();
      }
    },
  };
}
