/**
 * The three keyv backends the catalog runs on, each tuned where its stock adapter falls
 * short for camtap:
 *
 * - SQLite: @keyv/sqlite has no `setMany`, so keyv would write a batch as one autocommit
 *   statement (one fsync) per key; here a batch is one `INSERT ... SELECT FROM json_each`
 *   statement. WAL journal and a busy timeout let `camtap` commands read while the daemon
 *   writes.
 * - PostgreSQL: @keyv/postgres keeps one module-global pool and replaces it whenever
 *   another URI is opened (and `disconnect()` ends whichever pool is current), so two
 *   catalogs in one process would break each other. Each adapter here owns its pool, with
 *   a connect timeout and an idle-error listener (pg crashes the process without one).
 * - Redis: the client is created here so a first connection that fails rejects at once
 *   (the stock strategy retries forever and commands queue behind it: a hang), while a
 *   connection lost later is retried and commands fail fast meanwhile (no offline queue).
 *
 * `clearPrefix` replaces keyv's `clear()`, which matches the namespace with SQL `LIKE`
 * (case-insensitive in SQLite, `_` a wildcard) and on Redis swallows errors.
 */

import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Keyv, { type KeyvEntry } from 'keyv';
import { loadPg, type PgPool } from './pg.js';

/** A keyv instance over one backend plus what keyv does not offer uniformly. */
export interface CatalogStore {
  /** No namespace of its own (the catalog prefixes keys itself), JSON values, errors thrown. */
  readonly keyv: Keyv;
  /** Deletes every key that starts with `prefix` (exact, case-sensitive). */
  clearPrefix(prefix: string): Promise<void>;
  /** Disconnects; waits for nothing else. */
  close(): Promise<void>;
}

/** Table both SQL backends keep the catalog in (keyv's schema: `key VARCHAR(255) PRIMARY KEY, value TEXT`). */
const TABLE = 'camtap_catalog';
/** ms to wait for a TCP connection to Redis or PostgreSQL. */
const CONNECT_TIMEOUT_MS = 5000;
/** ms SQLite waits on a lock held by another process before failing. */
const SQLITE_BUSY_MS = 5000;

export type CatalogBackend =
  | { kind: 'sqlite'; path: string }
  | { kind: 'redis'; url: string }
  | { kind: 'postgres'; url: string };

/**
 * Which backend a catalog URL names. `sqlite://` is followed by the file path as is
 * (`sqlite:///abs/catalog.sqlite`, or `sqlite://:memory:`). Null for other schemes.
 */
export function parseCatalogUrl(url: string): CatalogBackend | null {
  if (url.startsWith('sqlite://')) {
    const path = url.slice('sqlite://'.length);
    return path === '' ? null : { kind: 'sqlite', path };
  }
  if (/^rediss?:\/\//i.test(url)) return { kind: 'redis', url };
  if (/^postgres(ql)?:\/\//i.test(url)) return { kind: 'postgres', url };
  return null;
}

/** The URL with any password replaced by `***`, for messages and `Catalog.url`. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    let changed = false;
    if (u.password !== '') {
      u.password = '***';
      changed = true;
    }
    for (const k of ['password', 'sslpassword']) {
      if (u.searchParams.has(k)) {
        u.searchParams.set(k, '***');
        changed = true;
      }
    }
    return changed ? u.toString() : url;
  } catch {
    return url.replace(/(\/\/[^/:@]*:)[^@/]*@/, '$1***@');
  }
}

function newKeyv(adapter: unknown): Keyv {
  return new Keyv(adapter as never, {
    // No keyv namespace: keyv prefixes `set()` and `getMany()` differently when a key
    // already starts with the namespace; the catalog builds full keys itself.
    namespace: undefined,
    useKeyPrefix: false,
    // Records are plain JSON; keyv's default serializer is a slower recursive one.
    serialize: (d) => JSON.stringify(d),
    deserialize: (s) => JSON.parse(s),
    throwOnErrors: true,
  });
}

/** Opens the backend a URL names. Connection errors surface on the first operation. */
export async function openStore(backend: CatalogBackend): Promise<CatalogStore> {
  switch (backend.kind) {
    case 'sqlite':
      return openSqlite(backend.path);
    case 'redis':
      return openRedis(backend.url);
    case 'postgres':
      return openPostgres(backend.url);
  }
}

async function openSqlite(path: string): Promise<CatalogStore> {
  const { KeyvSqlite } = await import('@keyv/sqlite');

  class SqliteAdapter extends KeyvSqlite {
    /** One statement per batch: one transaction, one fsync. Later duplicates win. */
    async setMany(entries: KeyvEntry[]): Promise<void> {
      if (entries.length === 0) return;
      // `WHERE true` resolves SQLite's parsing ambiguity between a SELECT's join clause
      // and the upsert's ON CONFLICT (sqlite.org/lang_upsert.html, "Parsing Ambiguity").
      const sql = `INSERT INTO ${this.opts.table} (key, value)
        SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?) WHERE true
        ON CONFLICT(key) DO UPDATE SET value = excluded.value`;
      await this.query(sql, JSON.stringify(entries.map((e) => [e.key, e.value])));
    }

    /** Same as the stock one without its quadratic `rows.find` per key. */
    override async getMany<Value>(keys: string[]): Promise<Array<Value | undefined>> {
      if (keys.length === 0) return [];
      const rows = (await this.query(
        `SELECT key, value FROM ${this.opts.table} WHERE key IN (SELECT value FROM json_each(?))`,
        JSON.stringify(keys),
      )) as Array<{ key: string; value: Value }>;
      const byKey = new Map(rows.map((r) => [r.key, r.value]));
      return keys.map((k) => byKey.get(k));
    }

    async clearPrefix(prefix: string): Promise<void> {
      await this.query(`DELETE FROM ${this.opts.table} WHERE substr(key, 1, ?) = ?`, prefix.length, prefix);
    }
  }

  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const adapter = new SqliteAdapter({ uri: `sqlite://${path}`, table: TABLE, busyTimeout: SQLITE_BUSY_MS });
  adapter.on('error', () => undefined); // surfaced by the failing operation instead
  const keyv = newKeyv(adapter);
  if (path !== ':memory:') {
    // WAL lets readers (a `camtap list` beside the daemon) run during writes; NORMAL
    // sync is durable across process crashes, which is what the catalog needs (it is
    // rebuilt from the segments after a power loss anyway).
    await adapter.query('PRAGMA journal_mode=WAL').catch(() => undefined);
    await adapter.query('PRAGMA synchronous=NORMAL').catch(() => undefined);
  }
  return {
    keyv,
    clearPrefix: (p) => adapter.clearPrefix(p),
    close: () => adapter.disconnect(),
  };
}

async function openPostgres(url: string): Promise<CatalogStore> {
  const { KeyvPostgres } = await import('@keyv/postgres');
  const pg = loadPg();

  class PostgresAdapter extends KeyvPostgres {
    // `declare`: the base constructor calls connect() before subclass fields would be set.
    declare pool: PgPool | undefined;

    /** Called once by the base constructor: a pool of our own (see the file comment). */
    override async connect(): Promise<(sql: string, values?: unknown[]) => Promise<Array<Record<string, unknown>>>> {
      const pool = new pg.Pool({ connectionString: url, connectionTimeoutMillis: CONNECT_TIMEOUT_MS, max: 4, idleTimeoutMillis: 10_000 });
      pool.on('error', (e) => this.emit('error', e));
      this.pool = pool;
      return async (sql, values) => (await pool.query(sql, values)).rows;
    }

    override async disconnect(): Promise<void> {
      const pool = this.pool;
      this.pool = undefined;
      await pool?.end();
    }

    async clearPrefix(prefix: string): Promise<void> {
      await this.query(`DELETE FROM ${this.opts.schema}.${this.opts.table} WHERE left(key, $1) = $2`, [prefix.length, prefix]);
    }
  }

  const adapter = new PostgresAdapter({ uri: url, table: TABLE });
  adapter.on('error', () => undefined); // surfaced by the failing operation instead
  return {
    keyv: newKeyv(adapter),
    clearPrefix: (p) => adapter.clearPrefix(p),
    close: () => adapter.disconnect(),
  };
}

async function openRedis(url: string): Promise<CatalogStore> {
  const { default: KeyvRedis, createClient } = await import('@keyv/redis');
  let connectedOnce = false;
  const client = createClient({
    url,
    disableOfflineQueue: true,
    socket: {
      connectTimeout: CONNECT_TIMEOUT_MS,
      // Before the first connection: give up at once (open() reports it). After: the
      // server restarted or the network blipped, keep trying with capped backoff.
      reconnectStrategy: (retries: number, cause: Error) =>
        connectedOnce ? Math.min(100 * 2 ** retries, 2000) : new Error(cause.message),
    },
  });
  client.on('error', () => undefined); // surfaced by the failing command instead
  const store = {
    keyv: undefined as unknown as Keyv,
    async clearPrefix(prefix: string): Promise<void> {
      const match = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`;
      let cursor = '0';
      do {
        const r = await client.scan(cursor, { MATCH: match, COUNT: 1000 });
        cursor = String(r.cursor);
        if (r.keys.length > 0) await client.unlink(r.keys);
      } while (cursor !== '0');
    },
    async close(): Promise<void> {
      if (!client.isOpen) return;
      if (client.isReady) await client.close();
      else client.destroy();
    },
  };
  await client.connect();
  connectedOnce = true;
  const adapter = new KeyvRedis(client as never, { throwOnErrors: true, throwOnConnectError: true });
  adapter.on('error', () => undefined);
  store.keyv = newKeyv(adapter);
  return store;
}
