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

export const tapSchema = z
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
    /** Credentials for failover (answering the camera's new Digest/Basic challenge when camtap replays its set-up) and for its profile's API; default: the userinfo of `url`. */
    user: z.string().optional(),
    password: z.string().optional(),
    /** Where the camera's management API answers when not at the profile's default (ONVIF device service URL, http://host:port of a CGI API). */
    apiUrl: z.string().optional(),
    /** Profile-specific options. */
    options: z.record(z.string(), z.unknown()).optional(),
  })
  .strict();

const vmsSchema = z
  .object({
    name: z.string().min(1),
    address: z.string().min(1),
    plugin: z.string().optional(),
  })
  .strict();

const webhookSchema = z
  .object({
    /** Receiver URL: each alert is POSTed there as JSON. */
    url: z.string().url(),
    /** When set, the body is signed: header `X-Camtap-Signature: sha256=<hex HMAC-SHA256(secret, body)>`. */
    secret: z.string().min(1).optional(),
  })
  .strict();

const METRICS_DEFAULTS = { public: false, bitrateWindowMs: 5000 };
const metricsSchema = z
  .object({
    /** Let anyone scrape GET /metrics without a token (a Prometheus on a trusted network). */
    public: z.boolean().default(METRICS_DEFAULTS.public),
    /** The window `camtap_stream_bitrate_bits` is measured over. */
    bitrateWindowMs: z.number().int().min(100).max(3_600_000).default(METRICS_DEFAULTS.bitrateWindowMs),
  })
  .strict()
  .default(METRICS_DEFAULTS);

const ALERTS_DEFAULTS = {
  intervalMs: 10_000,
  storageFreeMinPercent: 10,
  tapSilentMs: 60_000,
  cameraSilentMs: 30_000,
  lossPercent: 5,
  lossMinPackets: 100,
  recent: 500,
  webhooks: [] as Array<{ url: string; secret?: string }>,
  webhookQueue: 1000,
  webhookAttempts: 6,
  webhookTimeoutMs: 5000,
};
const alertsSchema = z
  .object({
    /** How often the rules are evaluated. */
    intervalMs: z.number().int().min(100).max(3_600_000).default(ALERTS_DEFAULTS.intervalMs),
    /** Storage near full: the data dir's file system has less than this share free. */
    storageFreeMinPercent: z.number().min(0).max(100).default(ALERTS_DEFAULTS.storageFreeMinPercent),
    /** Tap down: a live tap's packet count has not grown for this long. */
    tapSilentMs: z.number().int().min(100).default(ALERTS_DEFAULTS.tapSilentMs),
    /** Camera stopped sending: none of a camera's streams received a packet for this long. */
    cameraSilentMs: z.number().int().min(100).default(ALERTS_DEFAULTS.cameraSilentMs),
    /** Loss: a stream lost more than this share of the packets it should have received in one interval. */
    lossPercent: z.number().min(0).max(100).default(ALERTS_DEFAULTS.lossPercent),
    /** ... counted only over intervals where it should have received at least this many (no alarm on 1 of 3). */
    lossMinPackets: z.number().int().min(1).default(ALERTS_DEFAULTS.lossMinPackets),
    /** Resolved alerts kept for GET /api/alerts. */
    recent: z.number().int().min(1).max(100_000).default(ALERTS_DEFAULTS.recent),
    webhooks: z.array(webhookSchema).default([]),
    /** Deliveries waiting per webhook; beyond it the oldest is dropped (and counted). */
    webhookQueue: z.number().int().min(1).max(1_000_000).default(ALERTS_DEFAULTS.webhookQueue),
    /** Tries per delivery (backoff 1 s, 2 s, 4 s, ... up to 60 s between them). */
    webhookAttempts: z.number().int().min(1).max(100).default(ALERTS_DEFAULTS.webhookAttempts),
    webhookTimeoutMs: z.number().int().min(100).max(300_000).default(ALERTS_DEFAULTS.webhookTimeoutMs),
  })
  .strict()
  .default(ALERTS_DEFAULTS);

const roleSchema = z.enum(['viewer', 'operator', 'admin']);
const authUserSchema = z
  .object({
    /** No `:` (HTTP Basic splits user and password at the first one, RFC 7617 §2). */
    name: z.string().regex(/^[^:\s"\\]+$/, 'no spaces, quotes, backslashes or colons'),
    /** Plain password (prefer `passwordHash`: `camtap passwd NAME`). */
    password: z.string().min(1).optional(),
    /** `scrypt$N$salt$hash` (salt and hash base64, r=8 p=1), as `camtap passwd` prints it. */
    passwordHash: z.string().regex(/^scrypt\$\d{4,8}\$[A-Za-z0-9+/=]{8,}\$[A-Za-z0-9+/=]{16,}$/, 'scrypt$N$salt$hash (camtap passwd prints one)').optional(),
    /** RTSP Digest for a user with only a `passwordHash`: hex MD5(name:realm:password) (RFC 2617 §3.2.2.2), as `camtap passwd` prints it. */
    rtspHa1: z.string().regex(/^[0-9a-fA-F]{32}$/, '32 hex digits').optional(),
    role: roleSchema.default('viewer'),
  })
  .strict()
  .refine((u) => u.password !== undefined || u.passwordHash !== undefined, 'give password or passwordHash');
const authTokenSchema = z
  .object({
    /** Who holds it (logs, GET /api/auth/me). */
    name: z.string().min(1),
    token: z.string().min(16, 'at least 16 characters (camtap token prints a random one)').optional(),
    /** `sha256:<hex>` of the token, as `camtap token` prints it. */
    tokenHash: z.string().regex(/^sha256:[0-9a-fA-F]{64}$/, 'sha256:<64 hex digits>').optional(),
    role: roleSchema.default('viewer'),
  })
  .strict()
  .refine((k) => (k.token === undefined) !== (k.tokenHash === undefined), 'give token or tokenHash (one of them)');
/** Who may use the HTTP API and the RTSP server (core/api/auth.ts, core/serve/rtsp-auth.ts, docs/API.md). Absent: an open API on loopback only. */
const authSchema = z
  .object({
    users: z.array(authUserSchema).default([]),
    tokens: z.array(authTokenSchema).default([]),
    /** Realm of the HTTP and RTSP challenges (part of `rtspHa1`). */
    realm: z.string().regex(/^[^"\\]+$/, 'no quotes or backslashes').default('camtap'),
    /** Also take RTSP Basic (the password in clear on the wire); Digest only by default. */
    rtspBasic: z.boolean().default(false),
    /** An RTSP Digest nonce unused for this long is stale (the client is challenged again). */
    nonceTtlSec: z.number().int().min(10).max(86_400).default(300),
  })
  .strict();

/** One VMS failover watches (core/failover/health.ts): where it listens, how to probe it, which plugin knows it. */
const failoverVmsSchema = z
  .object({
    name: z.string().min(1),
    address: z.string().min(1),
    /** TCP ports the VMS listens on (API, web console), probed by connecting; not its RTSP client side, which listens nowhere. */
    ports: z.array(port).default([]),
    /** HTTP(S) URL that answers `expectStatus` while the VMS is up. */
    healthUrl: z.string().url().optional(),
    expectStatus: z.number().int().min(100).max(599).optional(),
    /** The VMS plugin that probes it and may backfill it (plugins/vms-<name>); default vms-generic. */
    plugin: z.string().min(1).default('vms-generic'),
    /** Plugin options (API port, credentials, `insecureTls`). */
    options: z.record(z.string(), z.unknown()).default({}),
  })
  .strict();

const FAILOVER_DEFAULTS = {
  probeIntervalMs: 1000,
  probeTimeoutMs: 1000,
  failAfter: 3,
  recoverAfterMs: 10_000,
  trafficTimeoutMs: 2000,
  auto: false,
  host: null as string | null,
  rtpPortBase: 50_000,
  confirmMs: 10_000,
  backfill: true,
  vms: [] as Array<z.infer<typeof failoverVmsSchema>>,
};
/** VMS health and failover (core/failover, docs/PLUGINS.md "Writing a VMS plugin"). */
const failoverSchema = z
  .object({
    /** How often each VMS is probed. */
    probeIntervalMs: z.number().int().min(50).max(3_600_000).default(FAILOVER_DEFAULTS.probeIntervalMs),
    /** A probe not answered within this counts as failed. */
    probeTimeoutMs: z.number().int().min(10).max(600_000).default(FAILOVER_DEFAULTS.probeTimeoutMs),
    /** Consecutive failed probes before a VMS is failed over (or, with `auto` off, reported down). */
    failAfter: z.number().int().min(1).max(1000).default(FAILOVER_DEFAULTS.failAfter),
    /** A failed-over VMS must probe healthy without a break this long before its cameras are given back. */
    recoverAfterMs: z.number().int().min(0).max(86_400_000).default(FAILOVER_DEFAULTS.recoverAfterMs),
    /** A VMS silent toward its cameras this long (or twice its usual gap, if longer) is suspect. */
    trafficTimeoutMs: z.number().int().min(100).max(3_600_000).default(FAILOVER_DEFAULTS.trafficTimeoutMs),
    /** Fail over and restore on detection; off: detection only raises the event and `camtap failover start/end` acts. */
    auto: z.boolean().default(FAILOVER_DEFAULTS.auto),
    /** camtap's address as the cameras reach it; null: the local address on the route to the cameras. */
    host: z.string().min(1).nullable().default(FAILOVER_DEFAULTS.host),
    /** First even UDP port redirected RTP is received on. */
    rtpPortBase: z.number().int().min(1024).max(65534).refine((n) => n % 2 === 0, 'an even port (RTP even, RTCP odd: RFC 3550 §11)').default(FAILOVER_DEFAULTS.rtpPortBase),
    /** How long a restore waits to see the VMS's traffic toward its cameras again. */
    confirmMs: z.number().int().min(0).max(3_600_000).default(FAILOVER_DEFAULTS.confirmMs),
    /** After a restore, call the VMS plugin's backfill (when it has one) with each camera's gap. */
    backfill: z.boolean().default(FAILOVER_DEFAULTS.backfill),
    vms: z.array(failoverVmsSchema).default([]),
  })
  .strict()
  .default(FAILOVER_DEFAULTS);

export type FailoverConfig = z.infer<typeof failoverSchema>;
export type FailoverVmsConfig = z.infer<typeof failoverVmsSchema>;

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
        /** Listen address of the HTTP API; default `host` with `auth`, 127.0.0.1 without (an open API never leaves the machine; docs/API.md). */
        httpHost: z.string().optional(),
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
        /**
         * Inline gateway: when a VMS's RTSP connection to camtap closes without TEARDOWN (the
         * VMS died), keep that camera's session and its recording until a VMS client of the
         * camera returns or an operator releases it, instead of closing it after the grace period.
         */
        holdOnVmsLoss: z.boolean().default(true),
      })
      .strict()
      .default({ rtspPort: 8554, httpPort: 8080, host: '0.0.0.0', publicUrl: null, httpPublicUrl: null, maxClients: 500, proxyInventory: false, transparent: false, maxReconnects: null, holdOnVmsLoss: true }),
    /** Prometheus metrics at GET /metrics (core/metrics/metrics.ts, docs/OPERATIONS.md). */
    metrics: metricsSchema,
    /** Alert rules and where alerts go (core/alerts/alerts.ts, docs/OPERATIONS.md). */
    alerts: alertsSchema,
    /** Users and API tokens with roles (viewer < operator < admin); absent: open API on loopback, open RTSP. */
    auth: authSchema.optional(),
    taps: z.array(tapSchema).default([]),
    cameras: z.array(cameraSchema).default([]),
    vms: z.array(vmsSchema).default([]),
    /** VMS health detection and failover. */
    failover: failoverSchema,
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
