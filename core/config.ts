/**
 * The configuration: a YAML file validated against one schema, with embedded defaults so
 * that camtap runs with no file at all. Errors name the file, the key path and the reason.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { CamtapError } from './errors.js';

const port = z.number().int().min(1).max(65535);

const filterSchema = z
  .object({
    hosts: z.array(z.string()).optional(),
    ports: z.array(z.union([port, z.string()])).optional(),
    protocols: z.array(z.enum(['rtp', 'rtcp', 'rtsp', 'http', 'onvif'])).optional(),
    direction: z.enum(['src', 'dst', 'both']).optional(),
    cameras: z.array(z.string()).optional(),
    vms: z.array(z.string()).optional(),
    rtspPorts: z.array(port).optional(),
    httpPorts: z.array(port).optional(),
    raw: z.string().optional(),
  })
  .strict();

const tapSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, _ . - only'),
    driver: z.string().min(1),
    filter: filterSchema.default({}),
    options: z.record(z.string(), z.unknown()).default({}),
    enabled: z.boolean().default(true),
  })
  .strict();

const cameraSchema = z
  .object({
    name: z.string().min(1),
    address: z.string().min(1),
    /** The camera's RTSP URL (may carry user:password@): `rtsp://camtap/<name>` proxies it (inline gateway). */
    url: z.string().optional(),
    /** Lower transport camtap uses toward the camera when it proxies it (the VMS leg negotiates its own). */
    transport: z.enum(['udp', 'tcp']).default('tcp'),
    /** Base URL of the camera's HTTP/ONVIF API for the HTTP proxy (`/cam/<name>/...`); default http://<address>. */
    http: z.string().optional(),
    /** Also serve this camera's HTTP/ONVIF API at the root of its own camtap port (VMSs that take only host:port for ONVIF, HTTP Digest). */
    onvifPort: z.number().int().min(1).max(65535).optional(),
    profile: z.string().optional(),
  })
  .strict();

const vmsSchema = z
  .object({
    name: z.string().min(1),
    address: z.string().min(1),
    plugin: z.string().optional(),
  })
  .strict();

export const configSchema = z
  .object({
    /** Where segments, index and the SQLite catalog live. */
    dataDir: z.string().default('./data'),
    catalog: z
      .object({
        /** sqlite:///path, redis://host:port/db, postgresql://user@host/db. Default: SQLite file in dataDir. */
        url: z.string().optional(),
        namespace: z.string().default('camtap'),
      })
      .strict()
      .default({ namespace: 'camtap' }),
    store: z
      .object({
        maxSegmentBytes: z.number().int().min(1 << 16).default(256 * 1024 * 1024),
        maxSegmentSeconds: z.number().min(1).default(300),
        retentionBytes: z.number().int().positive().nullable().default(null),
        retentionSeconds: z.number().positive().nullable().default(null),
      })
      .strict()
      .default({ maxSegmentBytes: 256 * 1024 * 1024, maxSegmentSeconds: 300, retentionBytes: null, retentionSeconds: null }),
    index: z
      .object({ every: z.number().int().min(1).max(65536).default(64) })
      .strict()
      .default({ every: 64 }),
    classify: z
      .object({
        rtspPorts: z.array(port).default([554, 8554]),
        httpPorts: z.array(port).default([80, 8080, 8000, 8899]),
        /** Ports to decode as RTP/RTCP even without a SETUP (plain RTP push cameras). */
        rtpPorts: z.array(port).default([]),
        /** Guess RTP/RTCP on UDP flows no RTSP dialog announced (like tshark's heuristics). */
        rtpHeuristics: z.boolean().default(true),
      })
      .strict()
      .default({ rtspPorts: [554, 8554], httpPorts: [80, 8080, 8000, 8899], rtpPorts: [], rtpHeuristics: true }),
    log: z
      .object({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') })
      .strict()
      .default({ level: 'info' }),
    serve: z
      .object({
        /** RTSP server port (`camtap serve`, `--rtsp-port`). */
        rtspPort: z.number().int().min(0).max(65535).default(8554),
        /** HTTP API port (`camtap serve`, `--http-port`); null turns the API off. */
        httpPort: z.number().int().min(0).max(65535).nullable().default(8080),
        /** Listen address. */
        host: z.string().default('0.0.0.0'),
        /** How clients reach the RTSP server (for `replayUrl`), e.g. rtsp://camtap.example:8554. Default rtsp://127.0.0.1:<rtspPort>. */
        publicUrl: z.string().nullable().default(null),
        /** How VMSs reach camtap's HTTP port (rewritten ONVIF XAddrs, snapshot URIs); default http://<host>:<httpPort>. */
        httpPublicUrl: z.string().nullable().default(null),
        /** RTSP connections served at once (more get 503); sessions are capped at twice this. */
        maxClients: z.number().int().min(1).max(100_000).default(500),
        /** Inline gateway: also proxy the cameras the inventory learned (by name, at the URL their VMS used; credentials are not known). */
        proxyInventory: z.boolean().default(false),
        /** Inline gateway: also proxy requests whose URL names a camera's own address (traffic redirected to camtap). */
        transparent: z.boolean().default(false),
        /** Inline gateway: camera reconnects before the VMS sessions of a lost camera end (null: retry forever). */
        maxReconnects: z.number().int().min(0).nullable().default(null),
      })
      .strict()
      .default({ rtspPort: 8554, httpPort: 8080, host: '0.0.0.0', publicUrl: null, httpPublicUrl: null, maxClients: 500, proxyInventory: false, transparent: false, maxReconnects: null }),
    taps: z.array(tapSchema).default([]),
    cameras: z.array(cameraSchema).default([]),
    vms: z.array(vmsSchema).default([]),
    /** Extra plugins: npm package names or folders (relative to the config file). */
    plugins: z.array(z.string()).default([]),
  })
  .strict();

export type Config = z.infer<typeof configSchema>;
export type TapConfigEntry = z.infer<typeof tapSchema>;

export interface LoadedConfig {
  config: Config;
  /** The file it came from, or null for the embedded defaults. */
  file: string | null;
}

/** Validates an already-parsed object; `file` is for messages. */
export function validateConfig(raw: unknown, file: string): Config {
  const r = configSchema.safeParse(raw ?? {});
  if (r.success) {
    const names = new Set<string>();
    r.data.taps.forEach((t, i) => {
      if (names.has(t.name)) throw new CamtapError('CAMTAP_ERR_CONFIG', { file, key: `taps[${i}].name`, reason: `duplicate tap name "${t.name}"` });
      names.add(t.name);
    });
    return r.data;
  }
  const issue = r.error.issues[0]!;
  const key = issue.path.reduce<string>((acc, p) => (typeof p === 'number' ? `${acc}[${p}]` : acc ? `${acc}.${String(p)}` : String(p)), '');
  throw new CamtapError('CAMTAP_ERR_CONFIG', { file, key: key || '(top level)', reason: issue.message });
}

/**
 * Loads the config: an explicit file, else `CAMTAP_CONFIG`, else embedded defaults.
 * `dataDir` overrides (CLI `--data`, `CAMTAP_DATA`) win over the file. Relative paths in the
 * file are taken relative to the file's folder.
 */
export function loadConfig(opts: { file?: string | null; dataDir?: string | null; env?: NodeJS.ProcessEnv } = {}): LoadedConfig {
  const env = opts.env ?? process.env;
  const file = opts.file ?? env.CAMTAP_CONFIG ?? null;
  let raw: unknown = {};
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new CamtapError('CAMTAP_ERR_CONFIG_READ', { file, reason: (e as Error).message });
    }
    const doc = parseDocument(text, { prettyErrors: true });
    if (doc.errors.length) {
      const err = doc.errors[0]!;
      const line = err.linePos?.[0];
      throw new CamtapError('CAMTAP_ERR_CONFIG_READ', { file, reason: `YAML error${line ? ` at line ${line.line}, column ${line.col}` : ''}: ${err.message.split('\n')[0]}` });
    }
    raw = doc.toJS() ?? {};
  }
  const config = validateConfig(raw, file ?? '(defaults)');
  const base = file ? path.dirname(path.resolve(file)) : process.cwd();
  const dataDir = opts.dataDir ?? env.CAMTAP_DATA ?? null;
  config.dataDir = path.resolve(dataDir ? process.cwd() : base, dataDir ?? config.dataDir);
  config.plugins = config.plugins.map((p) => (p.startsWith('.') || p.startsWith('/') ? path.resolve(base, p) : p));
  return { config, file };
}

/** Base of the RTSP URLs camtap serves. */
export function rtspBase(config: Config): string {
  return config.serve.publicUrl ?? `rtsp://127.0.0.1:${config.serve.rtspPort}`;
}

/** The catalog URL in force: the configured one or the SQLite file in the data dir. */
export function catalogUrl(config: Config): string {
  return config.catalog.url ?? `sqlite://${path.join(config.dataDir, 'catalog.sqlite')}`;
}
