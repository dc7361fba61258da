/**
 * Alert webhooks: each event is POSTed as JSON to every configured receiver, signed with
 * HMAC-SHA256 when the receiver has a secret (the GitHub/Stripe scheme: the receiver
 * recomputes the HMAC of the raw body and compares in constant time).
 *
 * Sending never blocks the caller: `send()` only queues. Each receiver has its own
 * bounded queue and one request in flight (so events arrive in order and a dead receiver
 * delays no other); a full queue drops its oldest event and counts it. A failed delivery
 * (network error, timeout, 408, 429, 5xx) is retried with exponential backoff; other 4xx
 * answers are final, since the same request would be refused again.
 */
import { createHmac, randomUUID } from 'node:crypto';
import type { Logger } from '../contracts/logger.js';

export interface WebhookTarget {
  url: string;
  secret?: string;
}

export interface WebhookOptions {
  log: Logger;
  /** Events waiting per receiver; beyond it the oldest is dropped. */
  queue: number;
  /** Tries per event, the first included. */
  attempts: number;
  /** Per request. */
  timeoutMs: number;
  /** Wait before try `n + 1` after `n` failed (default 1 s * 2^(n-1), at most 60 s). */
  backoffMs?: (failedTries: number) => number;
  /** The HTTP client (tests may wrap it); default the global fetch. */
  fetch?: typeof fetch;
}

/** Header carrying `sha256=<hex HMAC-SHA256(secret, raw body)>`. */
export const SIGNATURE_HEADER = 'x-camtap-signature';
/** Header carrying the event name (`alert.fired`, `alert.resolved`, `alert.acked`). */
export const EVENT_HEADER = 'x-camtap-event';
/** Header carrying a unique id per event (the same on every retry: receivers dedupe on it). */
export const DELIVERY_HEADER = 'x-camtap-delivery';

/** `sha256=<hex>` of a body, as sent in {@link SIGNATURE_HEADER}. */
export function signBody(secret: string, body: string): string {
  return 'sha256=' + createHmac('sha256', secret).update(body).digest('hex');
}

export interface WebhookStats {
  url: string;
  queued: number;
  delivered: number;
  /** Events given up on after every try, or refused with a final 4xx. */
  failed: number;
  /** Events dropped from a full queue. */
  dropped: number;
}

interface Delivery {
  id: string;
  event: string;
  body: string;
  tries: number;
}

const defaultBackoff = (n: number) => Math.min(60_000, 1000 * 2 ** (n - 1));

class Receiver {
  readonly stats: WebhookStats;
  readonly #target: WebhookTarget;
  readonly #o: WebhookOptions;
  readonly #q: Delivery[] = [];
  #running = false;
  #closed = false;
  #wait: { timer: NodeJS.Timeout; wake: () => void } | null = null;
  #inflight: AbortController | null = null;
  #idle: Array<() => void> = [];

  constructor(target: WebhookTarget, o: WebhookOptions) {
    this.#target = target;
    this.#o = o;
    this.stats = { url: redact(target.url), queued: 0, delivered: 0, failed: 0, dropped: 0 };
  }

  push(d: Delivery): void {
    if (this.#closed) return;
    if (this.#q.length >= this.#o.queue) {
      this.#q.shift();
      this.stats.dropped++;
      this.#o.log.warn({ webhook: this.stats.url, queue: this.#o.queue }, 'alert webhook queue full: oldest event dropped');
    }
    this.#q.push(d);
    this.stats.queued = this.#q.length;
    if (!this.#running) void this.#pump();
  }

  idle(): Promise<void> {
    if (!this.#running && this.#q.length === 0) return Promise.resolve();
    return new Promise((r) => this.#idle.push(r));
  }

  close(): void {
    this.#closed = true;
    this.#q.length = 0;
    this.stats.queued = 0;
    this.#inflight?.abort();
    if (this.#wait) {
      clearTimeout(this.#wait.timer);
      this.#wait.wake();
    }
  }

  async #pump(): Promise<void> {
    this.#running = true;
    try {
      while (!this.#closed && this.#q.length > 0) {
        const d = this.#q[0]!;
        const outcome = await this.#try(d);
        if (this.#closed) break;
        if (outcome === 'retry' && d.tries < this.#o.attempts) {
          await this.#sleep((this.#o.backoffMs ?? defaultBackoff)(d.tries));
          continue;
        }
        if (this.#q[0] === d) this.#q.shift();
        this.stats.queued = this.#q.length;
        if (outcome === 'ok') this.stats.delivered++;
        else {
          this.stats.failed++;
          this.#o.log.error({ webhook: this.stats.url, event: d.event, delivery: d.id, tries: d.tries }, 'alert webhook: delivery given up');
        }
      }
    } finally {
      this.#running = false;
      for (const r of this.#idle.splice(0)) r();
    }
  }

  async #try(d: Delivery): Promise<'ok' | 'retry' | 'final'> {
    d.tries++;
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'user-agent': 'camtap-alerts/1',
      [EVENT_HEADER]: d.event,
      [DELIVERY_HEADER]: d.id,
    };
    if (this.#target.secret) headers[SIGNATURE_HEADER] = signBody(this.#target.secret, d.body);
    const ac = new AbortController();
    this.#inflight = ac;
    const timer = setTimeout(() => ac.abort(), this.#o.timeoutMs);
    try {
      const res = await (this.#o.fetch ?? fetch)(this.#target.url, { method: 'POST', headers, body: d.body, signal: ac.signal });
      // The answer's body is not needed; reading it frees the connection.
      await res.arrayBuffer().catch(() => undefined);
      if (res.ok) return 'ok';
      this.#o.log.warn({ webhook: this.stats.url, status: res.status, delivery: d.id, try: d.tries }, 'alert webhook refused the event');
      return res.status === 408 || res.status === 429 || res.status >= 500 ? 'retry' : 'final';
    } catch (e) {
      if (!this.#closed) this.#o.log.warn({ webhook: this.stats.url, err: (e as Error).message, delivery: d.id, try: d.tries }, 'alert webhook unreachable');
      return 'retry';
    } finally {
      clearTimeout(timer);
      this.#inflight = null;
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((wake) => {
      const timer = setTimeout(() => {
        this.#wait = null;
        wake();
      }, ms);
      // Not unref'd: a retry is work to finish; close() clears it at shutdown.
      this.#wait = { timer, wake };
    });
  }
}

/** Userinfo and query may hold secrets: logs and stats show scheme, host and path only. */
function redact(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '(invalid url)';
  }
}

export class WebhookSender {
  readonly #receivers: Receiver[];

  constructor(targets: readonly WebhookTarget[], opts: WebhookOptions) {
    this.#receivers = targets.map((t) => new Receiver(t, opts));
  }

  /** Queues one event for every receiver. Never throws, never waits. */
  send(event: string, payload: unknown): void {
    if (this.#receivers.length === 0) return;
    const id = randomUUID();
    const body = JSON.stringify(payload);
    for (const r of this.#receivers) r.push({ id, event, body, tries: 0 });
  }

  stats(): WebhookStats[] {
    return this.#receivers.map((r) => ({ ...r.stats }));
  }

  /** Resolves once every queue is empty (delivered or given up). */
  async idle(): Promise<void> {
    await Promise.all(this.#receivers.map((r) => r.idle()));
  }

  /** Drops what is queued and aborts what is in flight. Safe to call twice. */
  close(): void {
    for (const r of this.#receivers) r.close();
  }
}
