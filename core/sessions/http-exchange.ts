/**
 * Records camera HTTP and ONVIF exchanges of one TCP connection as configuration
 * transactions: request and response paired in order (HTTP/1.1 answers in request
 * order, RFC 9112 §9.3.2), the SOAP operation named for ONVIF, store locations of the
 * packets kept instead of copies, credentials redacted.
 */
import { createHash } from 'node:crypto';
import type { HttpTransaction } from '../contracts/records.js';
import type { WireMessage } from '../wire/rtsp-message.js';
import { redactHeaders } from '../wire/rtsp-message.js';
import { isoFromParts } from '../capture/rtp-stream.js';

/** The first element inside a SOAP Body: the ONVIF operation (`GetStreamUri`, ...). */
export function soapOperation(body: Buffer): string | null {
  const text = body.toString('utf8', 0, Math.min(body.length, 65536));
  const m = /<(?:[\w-]+:)?Body[^>]*>\s*<(?:[\w-]+:)?([A-Za-z][\w.-]*)/.exec(text);
  return m ? m[1]! : null;
}

export class HttpConnectionLearner {
  readonly transactions: HttpTransaction[] = [];
  readonly #pending: Array<{ msg: WireMessage; sec: number; nsec: number }> = [];
  readonly #client: string;
  readonly #server: string;
  readonly #camera: string;
  readonly #vms: string;
  dirty = false;

  constructor(client: string, server: string, camera: string, vms: string) {
    this.#client = client;
    this.#server = server;
    this.#camera = camera;
    this.#vms = vms;
  }

  onMessage(msg: WireMessage, sec: number, nsec: number): void {
    if (msg.protocol !== 'HTTP') return;
    if (msg.kind === 'request') {
      if (this.#pending.length >= 64) this.#record(this.#pending.shift()!, null);
      this.#pending.push({ msg, sec, nsec });
      return;
    }
    // 1xx answers are interim (RFC 9110 §15.2): 100 Continue, 102 Processing, 103 Early Hints
    // come before the final answer and may arrive unasked, after the whole request. Pairing
    // one would give the exchange a 1xx status and leave the final answer to the next request.
    // 101 Switching Protocols is the final answer to an Upgrade (RFC 9110 §15.2.2).
    const status = msg.status ?? 0;
    if (status >= 100 && status < 200 && status !== 101) return;
    const req = this.#pending.shift();
    if (req) this.#record(req, msg);
  }

  finish(): void {
    for (const p of this.#pending.splice(0)) this.#record(p, null);
  }

  #record(req: { msg: WireMessage; sec: number; nsec: number }, res: WireMessage | null): void {
    const rq = req.msg;
    const ctype = (rq.header('Content-Type') ?? '') + (res?.header('Content-Type') ?? '');
    const onvif = /soap/i.test(ctype) || /\/onvif\//i.test(rq.url ?? '');
    const op = onvif ? soapOperation(rq.body) ?? (rq.header('SOAPAction')?.replace(/.*[/#]|"/g, '') || null) : null;
    this.dirty = true;
    this.transactions.push({
      id: 'h' + createHash('sha1').update(`${this.#client}|${this.#server}|${req.sec}.${req.nsec}|${this.transactions.length}`).digest('hex').slice(0, 12),
      kind: onvif ? 'onvif' : 'http',
      client: this.#client,
      server: this.#server,
      method: rq.method ?? '',
      url: rq.url ?? '',
      status: res?.status ?? null,
      operation: op,
      time: isoFromParts(req.sec, req.nsec),
      requestAt: rq.locations.map((l) => ({ segment: l.segment, offset: l.offset })),
      responseAt: res ? res.locations.map((l) => ({ segment: l.segment, offset: l.offset })) : [],
      headers: redactHeaders(rq.headers),
      camera: this.#camera,
      vms: this.#vms,
    });
  }
}
