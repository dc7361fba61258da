/**
 * Test helper: a scripted camera, a node:net server on loopback whose `onRequest`
 * answers each request the client sends (parsed with the project's hardened
 * MessageStreamParser), keeping every byte received and sent per connection.
 */
import type { Test } from 'tap';
import { createServer, type Server, type Socket } from 'node:net';
import { MessageStreamParser, type WireMessage } from '../../../core/wire/rtsp-message.js';

export interface Conn {
  sock: Socket;
  /** The client's port as the camera saw it. */
  peerPort: number;
  /** Every byte the server received and sent on this connection. */
  received: Buffer[];
  sent: Buffer[];
  requests: WireMessage[];
  closed: Promise<void>;
  send(b: Buffer | string): void;
}

/** A scripted camera: `onRequest` answers each parsed request (or not). */
export async function fakeCamera(t: Test, onRequest: (req: WireMessage, c: Conn) => void): Promise<{ port: number; conns: Conn[]; server: Server }> {
  const conns: Conn[] = [];
  const server = createServer((sock) => {
    let closedResolve: () => void = () => {};
    const c: Conn = {
      sock,
      peerPort: sock.remotePort ?? 0,
      received: [],
      sent: [],
      requests: [],
      closed: new Promise((r) => (closedResolve = r)),
      send(b) {
        const buf = typeof b === 'string' ? Buffer.from(b, 'latin1') : b;
        c.sent.push(buf);
        if (!sock.destroyed) sock.write(buf);
      },
    };
    conns.push(c);
    const parser = new MessageStreamParser({
      onMessage: (m) => {
        c.requests.push(m);
        onRequest(m, c);
      },
      onInterleaved: () => {},
      onError: () => {},
    });
    sock.on('data', (d: Buffer) => {
      c.received.push(Buffer.from(d));
      parser.push(d, null);
    });
    sock.on('error', () => {});
    sock.on('close', () => closedResolve());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const c of conns) c.sock.destroy();
    server.close();
  });
  const addr = server.address();
  return { port: typeof addr === 'object' && addr ? addr.port : 0, conns, server };
}

export const SDP = ['v=0', 'o=- 1 1 IN IP4 127.0.0.1', 's=fake', 't=0 0', 'a=control:*', 'm=video 0 RTP/AVP 96', 'a=rtpmap:96 H264/90000', 'a=control:trackID=0', ''].join('\r\n');

export function answer(req: WireMessage, status: number, headers: string[] = [], body = ''): string {
  const reason = status === 200 ? 'OK' : status === 401 ? 'Unauthorized' : 'Error';
  const lines = [`RTSP/1.0 ${status} ${reason}`, ...(req.cseq !== null ? [`CSeq: ${req.cseq}`] : []), ...headers];
  if (body) lines.push(`Content-Length: ${Buffer.byteLength(body)}`);
  return `${lines.join('\r\n')}\r\n\r\n${body}`;
}


/**
 * RTP over the connection's interleaved channel 0 every `everyMs`: single-NAL H.264
 * packets (RFC 6184 §5.6), an IDR slice (type 5, a keyframe) every 10th, else a non-IDR
 * slice (type 1), one per timestamp, marker set. Stops when the connection closes.
 */
export function pumpRtp(c: Conn, everyMs = 20): () => void {
  let seq = 1000;
  let ts = 90_000;
  let n = 0;
  const timer = setInterval(() => {
    if (c.sock.destroyed) return clearInterval(timer);
    const nal = n++ % 10 === 0 ? 0x65 : 0x41;
    const rtp = Buffer.from([0x80, 0x80 | 96, (seq >> 8) & 0xff, seq & 0xff, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78, nal, 0xaa, 0xbb, 0xcc]);
    rtp.writeUInt32BE(ts >>> 0, 4);
    seq = (seq + 1) & 0xffff;
    ts += 3600;
    const frame = Buffer.concat([Buffer.from([0x24, 0, 0, rtp.length]), rtp]);
    c.send(frame);
  }, everyMs);
  return () => clearInterval(timer);
}
