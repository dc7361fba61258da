/**
 * The few `pg` (node-postgres) calls camtap makes, typed here because the package ships
 * no declarations and @types/pg is not a dependency. `pg` is loaded on first use so a
 * SQLite or Redis catalog never pays for it.
 */

import { createRequire } from 'node:module';

export interface PgQueryResult {
  rows: Array<Record<string, unknown>>;
}

export interface PgConnectionConfig {
  connectionString: string;
  /** ms to wait for a connection before failing (0, pg's default, waits forever). */
  connectionTimeoutMillis?: number;
}

export interface PgPoolConfig extends PgConnectionConfig {
  max?: number;
  idleTimeoutMillis?: number;
}

export interface PgPool {
  query(sql: string, values?: unknown[]): Promise<PgQueryResult>;
  end(): Promise<void>;
  /** Errors of idle clients (server restarted); without a listener they crash the process. */
  on(event: 'error', listener: (e: Error) => void): unknown;
}

export interface PgClient {
  connect(): Promise<void>;
  query(sql: string, values?: unknown[]): Promise<PgQueryResult>;
  end(): Promise<void>;
  on(event: 'error', listener: (e: Error) => void): unknown;
}

export interface PgModule {
  Pool: new (config: PgPoolConfig) => PgPool;
  Client: new (config: PgConnectionConfig) => PgClient;
}

let loaded: PgModule | undefined;

/** The `pg` module (a dependency of @keyv/postgres). */
export function loadPg(): PgModule {
  loaded ??= createRequire(import.meta.url)('pg') as PgModule;
  return loaded;
}
