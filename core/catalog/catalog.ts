/**
 * The catalog: streams, RTSP sessions, HTTP/ONVIF transactions, camera and VMS inventory,
 * segment manifests, tap ids and small metadata, kept as JSON in keyv over SQLite (a file
 * in the data dir, the default), Redis or PostgreSQL (several nodes, one namespace each).
 *
 * Why keyv is wrapped instead of handed out: keyv is get/set/delete by key and nothing
 * more. It has no range queries, and listing is not the same on the three adapters
 * (`iterator()` pages SQLite with LIMIT/OFFSET over a case-insensitive LIKE, scans Redis
 * with SCAN, and walks the whole namespace including every other record type). So:
 *
 * - Listing: each record type keeps an id list key (`streams:ids`) beside its records
 *   (`streams:rec:<id>`). A list is one read of the ids and one `getMany` of the
 *   records, identical on every backend. Writes go through one queue per Catalog, so two
 *   overlapping batches cannot lose each other's ids in the read-modify-write of the list;
 *   the records and the list land in one `setMany` (one statement on SQLite and
 *   PostgreSQL, one MULTI on Redis), so readers never see a listed id without its record.
 *   One writer per namespace is assumed (a data dir has one camtap daemon).
 * - Time: a segment's id is added to one bucket key per minute its [startNs, endNs]
 *   touches (`segments:minute:<n>`, n = floor(ns / 60 s)). A range query reads the
 *   buckets of its own minutes plus one before, then the records, then filters by exact
 *   overlap. Because a segment sits in every bucket it touches, the bucket before is
 *   only slack for the open segment, whose manifest (and buckets) lag the packets
 *   written to it by up to a flush: an unsealed segment counts as reaching one bucket
 *   past its recorded end. Segments spanning more than a day go on one `segments:wide`
 *   list instead (see time-buckets.ts).
 *
 * Keys are `<namespace>:<kind>...`; `clear()` removes everything under the namespace.
 * Values are the records as JSON: ns times are decimal strings (BigInt is not JSON).
 */

import { createHash } from 'node:crypto';
import { CamtapError, isCamtapError } from '../errors.js';
import type {
  CameraRecord,
  HttpTransaction,
  SegmentRecord,
  SessionRecord,
  StreamRecord,
  VmsRecord,
} from '../contracts/records.js';
import { openStore, parseCatalogUrl, redactUrl, type CatalogStore } from './stores.js';
import {
  MAX_RANGE_BUCKETS,
  NS_PER_BUCKET,
  bucketOf,
  bucketsNotIn,
  parseNs,
  segmentSpan,
  type BucketSpan,
} from './time-buckets.js';

export interface CatalogOptions {
  /** 'sqlite:///abs/path/catalog.sqlite' (default, file in the data dir), 'redis://127.0.0.1:6379/0', 'postgresql://user@127.0.0.1:5432/db'. */
  url: string;
  /** Key prefix, default 'camtap'; lets several data dirs share one Redis/PostgreSQL. Letters, digits, `.`, `_`, `-`. */
  namespace?: string;
}

/** A registered tap: its config name and the numeric id frames carry. */
export interface TapEntry {
  id: number;
  name: string;
}

/** ms open() waits for the backend's first answer before giving up. */
const OPEN_TIMEOUT_MS = 10_000;
/** Keys per getMany call: keeps one SQL statement / MGET to a sane size. */
const READ_CHUNK = 1000;
/** Id parts longer than this are hashed: keyv's SQL tables hold keys of at most 255 characters. */
const MAX_ID_CHARS = 150;

const NAMESPACE_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** A record type with its own id list. */
interface Kind<R> {
  /** Key segment: `<ns>:<name>:ids`, `<ns>:<name>:rec:<id>`. */
  name: string;
  idOf(r: R): string | number;
  compare(a: R, b: R): number;
}

function cmpStr(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function cmpBig(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** ISO 8601 time to ns (keeps sub-ms digits Date.parse drops); null when it is not one. */
function isoNs(s: string): bigint | null {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9})\d*)?(Z|[+-]\d\d:?\d\d)$/.exec(s);
  if (m === null) return null;
  const ms = Date.parse(`${m[1]}${m[3]}`);
  if (Number.isNaN(ms)) return null;
  return BigInt(ms) * 1_000_000n + BigInt((m[2] ?? '').padEnd(9, '0'));
}

/** Orders ISO times by the instant they name (string order breaks on `...00Z` vs `...00.5Z`). */
function cmpIso(a: string, b: string): number {
  const x = isoNs(a);
  const y = isoNs(b);
  return x !== null && y !== null ? cmpBig(x, y) : cmpStr(a, b);
}

function nsOrNull(s: string): bigint | null {
  return typeof s === 'string' && /^-?\d{1,30}$/.test(s) ? BigInt(s) : null;
}

const STREAMS: Kind<StreamRecord> = {
  name: 'streams',
  idOf: (r) => r.id,
  compare: (a, b) => {
    const x = nsOrNull(a.startNs);
    const y = nsOrNull(b.startNs);
    return (x !== null && y !== null ? cmpBig(x, y) : cmpIso(a.start, b.start)) || cmpStr(a.id, b.id);
  },
};
const SESSIONS: Kind<SessionRecord> = {
  name: 'sessions',
  idOf: (r) => r.id,
  compare: (a, b) => cmpIso(a.start, b.start) || cmpStr(a.id, b.id),
};
const TRANSACTIONS: Kind<HttpTransaction> = {
  name: 'transactions',
  idOf: (r) => r.id,
  compare: (a, b) => cmpIso(a.time, b.time) || cmpStr(a.id, b.id),
};
const CAMERAS: Kind<CameraRecord> = { name: 'cameras', idOf: (r) => r.name, compare: (a, b) => cmpStr(a.name, b.name) };
const VMSES: Kind<VmsRecord> = { name: 'vms', idOf: (r) => r.name, compare: (a, b) => cmpStr(a.name, b.name) };
const SEGMENTS: Kind<SegmentRecord> = { name: 'segments', idOf: (r) => r.id, compare: (a, b) => a.id - b.id };

export class Catalog {
  /** The URL the catalog was opened with, any password replaced by `***`. */
  readonly url: string;
  readonly #store: CatalogStore;
  readonly #ns: string;
  /** Tail of the write queue: every write runs after the previous one settled. */
  #tail: Promise<unknown> = Promise.resolve();
  #closing: Promise<void> | undefined;
  /** Tap ids never change once given (until clear()), so a name costs one read per process. */
  readonly #tapIds = new Map<string, number>();

  private constructor(url: string, store: CatalogStore, ns: string) {
    this.url = url;
    this.#store = store;
    this.#ns = ns;
  }

  /**
   * Opens the catalog and checks the backend answers (a SQLite file that cannot be created,
   * a Redis or PostgreSQL that refuses or does not answer within 10 s) with one read.
   * @throws CamtapError CAMTAP_ERR_CATALOG naming the url (password redacted).
   */
  static async open(opts: CatalogOptions): Promise<Catalog> {
    const url = redactUrl(opts.url);
    const ns = opts.namespace ?? 'camtap';
    if (!NAMESPACE_RE.test(ns)) {
      throw new CamtapError('CAMTAP_ERR_CATALOG', { url, reason: `bad namespace ${JSON.stringify(ns)} (letters, digits, . _ -; at most 64)` });
    }
    const backend = parseCatalogUrl(opts.url);
    if (backend === null) {
      throw new CamtapError('CAMTAP_ERR_CATALOG', { url, reason: 'unsupported URL (use sqlite:///path, redis://host:port/db or postgresql://user@host:port/db)' });
    }
    let store: CatalogStore | undefined;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${OPEN_TIMEOUT_MS / 1000} s`)), OPEN_TIMEOUT_MS);
    });
    const opening = (async () => {
      store = await openStore(backend);
      await store.keyv.get(`${ns}:taps`);
    })();
    try {
      await Promise.race([opening, timeout]);
    } catch (e) {
      // The store may still be connecting when the timeout fires: close it once it exists.
      void opening.then(
        () => store?.close(),
        () => store?.close(),
      ).catch(() => undefined);
      throw new CamtapError('CAMTAP_ERR_CATALOG', { url, reason: errorReason(e) }, { cause: e });
    } finally {
      clearTimeout(timer);
    }
    return new Catalog(url, store!, ns);
  }

  // --- streams ---------------------------------------------------------------------

  /** Adds or replaces streams by id (the pipeline's stats flush: once a second, or at the end of an import). */
  putStreams(recs: StreamRecord[]): Promise<void> {
    return this.#putRecords(STREAMS, recs);
  }

  getStream(id: string): Promise<StreamRecord | undefined> {
    return this.#getRecord(STREAMS, id);
  }

  /** All streams, by first packet time then id. */
  listStreams(): Promise<StreamRecord[]> {
    return this.#listRecords(STREAMS);
  }

  // --- sessions and transactions ----------------------------------------------------

  /** Adds or replaces RTSP dialogs by id. */
  putSessions(recs: SessionRecord[]): Promise<void> {
    return this.#putRecords(SESSIONS, recs);
  }

  /** All RTSP dialogs, by start then id. */
  listSessions(): Promise<SessionRecord[]> {
    return this.#listRecords(SESSIONS);
  }

  getSession(id: string): Promise<SessionRecord | undefined> {
    return this.#getRecord(SESSIONS, id);
  }

  /** Adds or replaces HTTP/ONVIF transactions by id. */
  putTransactions(recs: HttpTransaction[]): Promise<void> {
    return this.#putRecords(TRANSACTIONS, recs);
  }

  /** All transactions, by time then id. */
  listTransactions(): Promise<HttpTransaction[]> {
    return this.#listRecords(TRANSACTIONS);
  }

  // --- inventory ---------------------------------------------------------------------

  /** Adds or replaces cameras by name. */
  putCameras(recs: CameraRecord[]): Promise<void> {
    return this.#putRecords(CAMERAS, recs);
  }

  /** All cameras, by name. */
  listCameras(): Promise<CameraRecord[]> {
    return this.#listRecords(CAMERAS);
  }

  /** Adds or replaces VMSs by name. */
  putVms(recs: VmsRecord[]): Promise<void> {
    return this.#putRecords(VMSES, recs);
  }

  /** All VMSs, by name. */
  listVms(): Promise<VmsRecord[]> {
    return this.#listRecords(VMSES);
  }

  // --- segments ----------------------------------------------------------------------

  /**
   * Adds or replaces segment manifests by id and files each under the minute buckets its
   * [startNs, endNs] touches. A replaced record (the open segment growing, then sealed)
   * moves only the buckets that changed.
   * @throws TypeError when startNs/endNs are not decimal ns strings.
   */
  async putSegments(recs: SegmentRecord[]): Promise<void> {
    const byId = new Map<number, SegmentRecord>();
    const spans = new Map<number, BucketSpan>();
    for (const r of recs) {
      byId.set(r.id, r);
      spans.set(r.id, segmentSpan(parseNs(r.startNs, `segment ${r.id} startNs`), parseNs(r.endNs, `segment ${r.id} endNs`)));
    }
    if (byId.size === 0) return this.#write(async () => undefined);
    return this.#write(async () => {
      const ids = [...byId.keys()];
      const [idList, wideList, ...olds] = await this.#getMany<unknown>([
        this.#idsKey(SEGMENTS),
        this.#wideKey(),
        ...ids.map((id) => this.#recKey(SEGMENTS, id)),
      ]);
      const known = new Set((idList as number[] | undefined) ?? []);
      const wide = new Set((wideList as number[] | undefined) ?? []);
      const listLen = known.size;
      const wideBefore = [...wide].join();
      const adds = new Map<bigint, number[]>();
      const removes = new Map<bigint, number[]>();
      ids.forEach((id, i) => {
        known.add(id);
        const oldRec = olds[i] as SegmentRecord | undefined;
        const before = oldRec === undefined ? null : oldSpan(oldRec);
        const after = spans.get(id)!;
        if (after === 'wide') wide.add(id);
        else wide.delete(id);
        for (const m of bucketsNotIn(after, before)) push(adds, m, id);
        for (const m of bucketsNotIn(before, after)) push(removes, m, id);
      });
      const bucketUpdates = await this.#updateBuckets(adds, removes);
      const entries: Array<{ key: string; value: unknown }> = ids.map((id) => ({ key: this.#recKey(SEGMENTS, id), value: byId.get(id) }));
      if (known.size !== listLen) entries.push({ key: this.#idsKey(SEGMENTS), value: [...known] });
      if ([...wide].join() !== wideBefore) entries.push({ key: this.#wideKey(), value: [...wide] });
      entries.push(...bucketUpdates.set);
      await this.#io(() => this.#store.keyv.setMany(entries));
      if (bucketUpdates.empty.length > 0) await this.#io(() => this.#store.keyv.deleteMany(bucketUpdates.empty));
    });
  }

  /** All segment manifests, by id. */
  listSegments(): Promise<SegmentRecord[]> {
    return this.#listRecords(SEGMENTS);
  }

  /** Removes a segment's manifest and takes it out of its buckets. No-op for an unknown id. */
  deleteSegment(id: number): Promise<void> {
    return this.#write(async () => {
      const [idList, wideList, old] = await this.#getMany<unknown>([this.#idsKey(SEGMENTS), this.#wideKey(), this.#recKey(SEGMENTS, id)]);
      const known = (idList as number[] | undefined) ?? [];
      const wide = (wideList as number[] | undefined) ?? [];
      const oldRec = old as SegmentRecord | undefined;
      if (oldRec === undefined && !known.includes(id)) return;
      const removes = new Map<bigint, number[]>();
      if (oldRec !== undefined) for (const m of bucketsNotIn(oldSpan(oldRec), null)) push(removes, m, id);
      const bucketUpdates = await this.#updateBuckets(new Map(), removes);
      const entries = [...bucketUpdates.set, { key: this.#idsKey(SEGMENTS), value: known.filter((x) => x !== id) }];
      if (wide.includes(id)) entries.push({ key: this.#wideKey(), value: wide.filter((x) => x !== id) });
      // Lists first, then the record: a crash between leaves an unlisted record, never a listed hole.
      await this.#io(() => this.#store.keyv.setMany(entries));
      await this.#io(() => this.#store.keyv.deleteMany([this.#recKey(SEGMENTS, id), ...bucketUpdates.empty]));
    });
  }

  /**
   * Segments with packets in [startNs, endNs] (inclusive), by start then id. Reads the
   * buckets of the range plus one before (see the file comment), not the whole manifest,
   * unless the range spans more than a week of buckets.
   */
  async segmentsInRange(startNs: bigint, endNs: bigint): Promise<SegmentRecord[]> {
    this.#checkOpen();
    if (endNs < startNs) return [];
    const first = bucketOf(startNs) - 1n;
    const last = bucketOf(endNs);
    let candidates: SegmentRecord[];
    if (last - first + 1n > MAX_RANGE_BUCKETS) {
      candidates = await this.listSegments();
    } else {
      const keys = [this.#wideKey()];
      for (let m = first; m <= last; m++) keys.push(this.#bucketKey(m));
      const lists = await this.#getMany<number[]>(keys);
      const ids = new Set<number>();
      for (const l of lists) if (l !== undefined) for (const id of l) ids.add(id);
      const recs = await this.#getMany<SegmentRecord>([...ids].map((id) => this.#recKey(SEGMENTS, id)));
      candidates = recs.filter((r): r is SegmentRecord => r !== undefined);
    }
    const out: Array<{ rec: SegmentRecord; start: bigint }> = [];
    for (const rec of candidates) {
      const a = nsOrNull(rec.startNs);
      const b = nsOrNull(rec.endNs);
      if (a === null || b === null) continue;
      const lo = a <= b ? a : b;
      const hi = (a <= b ? b : a) + (rec.sealed ? 0n : NS_PER_BUCKET);
      if (lo <= endNs && hi >= startNs) out.push({ rec, start: lo });
    }
    out.sort((x, y) => cmpBig(x.start, y.start) || x.rec.id - y.rec.id);
    return out.map((x) => x.rec);
  }

  // --- taps --------------------------------------------------------------------------

  /** The numeric id of a tap name, assigned (0, 1, 2, ...) the first time the name is seen; stable across restarts. */
  async tapId(name: string): Promise<number> {
    this.#checkOpen();
    const cached = this.#tapIds.get(name);
    if (cached !== undefined) return cached;
    return this.#write(async () => {
      const taps = (await this.#io(() => this.#store.keyv.get<TapEntry[]>(this.#tapsKey()))) ?? [];
      for (const t of taps) this.#tapIds.set(t.name, t.id);
      const found = this.#tapIds.get(name);
      if (found !== undefined) return found;
      const id = taps.reduce((max, t) => Math.max(max, t.id), -1) + 1;
      await this.#io(() => this.#store.keyv.set(this.#tapsKey(), [...taps, { id, name }]));
      this.#tapIds.set(name, id);
      return id;
    });
  }

  /** All taps, by id. */
  async listTaps(): Promise<TapEntry[]> {
    this.#checkOpen();
    const taps = (await this.#io(() => this.#store.keyv.get<TapEntry[]>(this.#tapsKey()))) ?? [];
    return [...taps].sort((a, b) => a.id - b.id);
  }

  // --- metadata ----------------------------------------------------------------------

  /** A small value stored with setMeta (import progress markers, config transactions). */
  async getMeta<T>(key: string): Promise<T | undefined> {
    this.#checkOpen();
    return this.#io(() => this.#store.keyv.get<T>(this.#metaKey(key)));
  }

  /** Stores a JSON-able value under `key`; `undefined` deletes it. */
  setMeta(key: string, v: unknown): Promise<void> {
    return this.#write(async () => {
      if (v === undefined) await this.#io(() => this.#store.keyv.delete(this.#metaKey(key)));
      else await this.#io(() => this.#store.keyv.set(this.#metaKey(key), v));
    });
  }

  // --- lifecycle ---------------------------------------------------------------------

  /** Removes everything under this namespace, tap ids included (used by reindex). Other namespaces are untouched. */
  clear(): Promise<void> {
    return this.#write(async () => {
      await this.#io(() => this.#store.clearPrefix(`${this.#ns}:`));
      this.#tapIds.clear();
    });
  }

  /** Waits for queued writes, then disconnects. Safe to call twice; later calls fail with CAMTAP_ERR_CATALOG. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#tail.catch(() => undefined);
      await this.#store.close().catch(() => undefined);
    })();
    return this.#closing;
  }

  // --- internals ---------------------------------------------------------------------

  #checkOpen(): void {
    if (this.#closing !== undefined) throw new CamtapError('CAMTAP_ERR_CATALOG', { url: this.url, reason: 'catalog is closed' });
  }

  /** Runs `fn` after every earlier write (see the file comment: id lists are read-modify-write). */
  #write<T>(fn: () => Promise<T>): Promise<T> {
    try {
      this.#checkOpen();
    } catch (e) {
      return Promise.reject(e);
    }
    const run = this.#tail.then(fn, fn);
    this.#tail = run.catch(() => undefined);
    return run;
  }

  /** Backend calls: any failure becomes CAMTAP_ERR_CATALOG naming the url. */
  async #io<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (isCamtapError(e)) throw e;
      throw new CamtapError('CAMTAP_ERR_CATALOG', { url: this.url, reason: errorReason(e) }, { cause: e });
    }
  }

  async #getMany<T>(keys: string[]): Promise<Array<T | undefined>> {
    if (keys.length === 0) return [];
    const chunks: string[][] = [];
    for (let i = 0; i < keys.length; i += READ_CHUNK) chunks.push(keys.slice(i, i + READ_CHUNK));
    const parts = await Promise.all(chunks.map((c) => this.#io(() => this.#store.keyv.getMany<T>(c))));
    return parts.flat() as Array<T | undefined>;
  }

  async #putRecords<R>(kind: Kind<R>, recs: R[]): Promise<void> {
    const byId = new Map<string | number, R>();
    for (const r of recs) byId.set(kind.idOf(r), r); // a later duplicate wins, as it would in two calls
    return this.#write(async () => {
      if (byId.size === 0) return;
      const idsKey = this.#idsKey(kind);
      const ids = (await this.#io(() => this.#store.keyv.get<Array<string | number>>(idsKey))) ?? [];
      const known = new Set(ids);
      const listed = ids.length;
      const entries: Array<{ key: string; value: unknown }> = [];
      for (const [id, r] of byId) {
        entries.push({ key: this.#recKey(kind, id), value: r });
        if (!known.has(id)) {
          known.add(id);
          ids.push(id);
        }
      }
      // Same setMany as the records: readers never see a listed id without its record.
      if (ids.length !== listed) entries.push({ key: idsKey, value: ids });
      await this.#io(() => this.#store.keyv.setMany(entries));
    });
  }

  async #getRecord<R>(kind: Kind<R>, id: string | number): Promise<R | undefined> {
    this.#checkOpen();
    return this.#io(() => this.#store.keyv.get<R>(this.#recKey(kind, id)));
  }

  async #listRecords<R>(kind: Kind<R>): Promise<R[]> {
    this.#checkOpen();
    const ids = (await this.#io(() => this.#store.keyv.get<Array<string | number>>(this.#idsKey(kind)))) ?? [];
    const recs = await this.#getMany<R>(ids.map((id) => this.#recKey(kind, id)));
    return recs.filter((r): r is R => r !== undefined).sort(kind.compare);
  }

  /** Reads the affected buckets and applies adds/removes: what to set and which now-empty keys to delete. */
  async #updateBuckets(
    adds: Map<bigint, number[]>,
    removes: Map<bigint, number[]>,
  ): Promise<{ set: Array<{ key: string; value: number[] }>; empty: string[] }> {
    const minutes = [...new Set([...adds.keys(), ...removes.keys()])];
    const current = await this.#getMany<number[]>(minutes.map((m) => this.#bucketKey(m)));
    const set: Array<{ key: string; value: number[] }> = [];
    const empty: string[] = [];
    minutes.forEach((m, i) => {
      const ids = new Set(current[i] ?? []);
      for (const id of removes.get(m) ?? []) ids.delete(id);
      for (const id of adds.get(m) ?? []) ids.add(id);
      if (ids.size === 0) empty.push(this.#bucketKey(m));
      else set.push({ key: this.#bucketKey(m), value: [...ids] });
    });
    return { set, empty };
  }

  #idsKey(kind: Kind<unknown>): string {
    return `${this.#ns}:${kind.name}:ids`;
  }

  #recKey(kind: Kind<never>, id: string | number): string {
    return `${this.#ns}:${kind.name}:rec:${keyPart(String(id))}`;
  }

  #bucketKey(minute: bigint): string {
    return `${this.#ns}:segments:minute:${minute}`;
  }

  #wideKey(): string {
    return `${this.#ns}:segments:wide`;
  }

  #tapsKey(): string {
    return `${this.#ns}:taps`;
  }

  #metaKey(key: string): string {
    return `${this.#ns}:meta:${keyPart(key)}`;
  }
}

/** Bucket span of a stored record; a record with unparsable times has none. */
function oldSpan(r: SegmentRecord): BucketSpan | null {
  const a = nsOrNull(r.startNs);
  const b = nsOrNull(r.endNs);
  return a === null || b === null ? null : segmentSpan(a, b);
}

function push(map: Map<bigint, number[]>, m: bigint, id: number): void {
  const l = map.get(m);
  if (l === undefined) map.set(m, [id]);
  else l.push(id);
}

/** An id or meta key as a key part: long ones (file paths in import markers) become a hash. */
function keyPart(s: string): string {
  return s.length <= MAX_ID_CHARS && !s.startsWith('#') ? s : `#${createHash('sha256').update(s).digest('hex')}`;
}

function errorReason(e: unknown): string {
  if (e instanceof AggregateError && e.errors.length > 0) {
    return [...new Set(e.errors.map((x) => errorReason(x)))].join('; ');
  }
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    const msg = e.message !== '' ? e.message : e.name;
    return typeof code === 'string' && !msg.includes(code) ? `${code}: ${msg}` : msg;
  }
  return String(e);
}
