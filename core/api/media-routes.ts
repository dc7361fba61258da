/**
 * Video for the browser: fragmented MP4 over plain HTTP, which the web console appends
 * to a Media Source Extensions `SourceBuffer` as it arrives (no plugin, no HLS playlist):
 *
 *   GET /api/streams/:id/media-info                  codec, MSE type, whether it is transcoded
 *   GET /api/streams/:id/fmp4?start=&end=&speed=&codec=   a recording, from `start` (a click on the timeline)
 *   GET /api/live/:name/media-info                   the same for a live feed
 *   GET /api/live/:name/fmp4?codec=                  a live feed (camera name or address, or stream id)
 *
 * How: per response a private {@link RtspServer} on 127.0.0.1 (port 0) serves the
 * recording (CatalogReplaySource) or the live feed (camtap serve's LiveSource, the one
 * `/live/...` uses), and ffmpeg pulls it over RTSP/TCP and writes fragmented MP4 to a
 * pipe (`frag_keyframe+empty_moov+default_base_moof`, fragments of at most 0.5 s):
 * ffmpeg's depacketizers are the ones already tested by the exports
 * (core/serve/export-media.ts), and a private server needs none of the public server's
 * users (RTSP Digest) nor records the browser as a VMS. ffmpeg is killed (by PID) as soon
 * as the HTTP client goes away, and at most {@link MAX_MEDIA_SESSIONS} run at once.
 *
 * Codecs: Debian's chromium plays H.264 in MSE (`avc1.*`: checked with
 * `MediaSource.isTypeSupported` and by decoding in test/e2e/console.test.ts) but not H.265,
 * and MJPEG is no MSE codec at all. H.264 is copied as it is; anything else is re-encoded
 * to H.264 by the same ffmpeg (`?codec=h264` forces it, `?codec=copy` refuses it).
 *
 * The MSE type needs the exact codec string (`video/mp4; codecs="avc1.42c01e"`): the
 * answer's `Content-Type` carries it, read from the `avcC` box of the init segment ffmpeg
 * wrote (ISO/IEC 14496-15 §5.3.3.1), so it is right for a copy and for a transcode alike;
 * the status line waits for that init segment. `media-info` gives the same string ahead,
 * from the stream's SDP (the SPS in `sprop-parameter-sets`, else `profile-level-id`,
 * RFC 6184 §8.1). A recording's answer also says, in `X-Camtap-Start`, the capture time
 * of its first frame (the keyframe at or before `start`): media time 0 is that instant.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { PassThrough } from 'node:stream';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import type { Catalog } from '../catalog/catalog.js';
import type { Logger } from '../contracts/logger.js';
import { CamtapError } from '../errors.js';
import type { LiveSource } from '../live/live-source.js';
import { isoFromNs } from '../query/time.js';
import type { ReplayPacket, ReplayPlan } from '../query/types.js';
import { CatalogReplaySource } from '../serve/replay-source.js';
import { RtspServer, type ReplaySource } from '../serve/rtsp-server.js';
import { h264ParameterSets, parseSdp } from '../wire/sdp.js';
import { parseRange, rangeProperties, type RangeQuery } from './query-params.js';
import { streamIdParams } from './stream-routes.js';

/** Media responses running at once (each is one ffmpeg and one private RTSP server). */
export const MAX_MEDIA_SESSIONS = 16;
/** How long ffmpeg may take to write the init segment before the request fails. */
export const INIT_TIMEOUT_MS = 30_000;
/** The init segment (ftyp + moov) is small; more than this without a complete moov is not an fMP4 we can describe. */
const INIT_MAX_BYTES = 1024 * 1024;
const STDERR_KEEP = 4096;

export interface MediaRoutesOptions {
  catalog: Catalog;
  indexDir: string;
  log: Logger;
  /** Live feeds (camtap serve's PipelineLiveSource); without it the live routes answer 404. */
  live?: LiveSource | null;
  /** The ffmpeg program (default `$CAMTAP_FFMPEG` or `ffmpeg` on PATH). */
  ffmpeg?: string;
  /** Concurrent media responses (default {@link MAX_MEDIA_SESSIONS}); more get 503. */
  maxSessions?: number;
}

/** `?codec=`: `auto` copies H.264 and re-encodes anything else; `copy` never re-encodes; `h264` always does. */
export type BrowserCodec = 'auto' | 'copy' | 'h264';

/** What `media-info` answers. */
export interface MediaInfo {
  /** Stream id (recordings) or the live name asked for. */
  id: string;
  camera: string;
  /** The codec as stored (SDP encoding name), or null when unknown. */
  codec: string | null;
  /** Is it re-encoded to H.264 for the browser (`?codec=auto`)? */
  transcoded: boolean;
  /** The MSE type the fmp4 route will answer, from the SDP (the route's Content-Type is exact). */
  mime: string;
  /** The fmp4 URL (relative to the API's origin). */
  url: string;
  /** Recordings: the stream's first and last capture time (ISO 8601). */
  start?: string;
  end?: string;
}

/** Codecs the browser is sent as they are (MSE `avc1`); the rest are re-encoded to H.264. */
const BROWSER_NATIVE: ReadonlySet<string> = new Set(['H264']);
/** What the re-encode produces: main profile, level from the size (x264 picks it); the init segment tells the exact string. */
const TRANSCODED_MIME = 'video/mp4; codecs="avc1.4d401f"';
/** Codecs ffmpeg can depacketize from RTP and decode (anything else: 422). */
const DECODABLE: ReadonlySet<string> = new Set(['H264', 'H265', 'JPEG']);

const hex2 = (n: number) => n.toString(16).padStart(2, '0');

/**
 * `avc1.PPCCLL` (RFC 6381 §3.3) from an H.264 SPS NAL unit: profile_idc,
 * constraint flags and level_idc are its bytes 1-3 (ITU-T H.264 §7.3.2.1.1). Null when
 * it is not an SPS (nal_unit_type 7).
 */
export function avcCodecFromSps(sps: Uint8Array): string | null {
  if (sps.length < 4 || (sps[0]! & 0x1f) !== 7) return null;
  return `avc1.${hex2(sps[1]!)}${hex2(sps[2]!)}${hex2(sps[3]!)}`;
}

/**
 * The MSE codec string of the first H.264 media in an SDP: from the SPS in
 * `sprop-parameter-sets` (what the decoder will really get), else `profile-level-id`
 * (RFC 6184 §8.1: the same three bytes as hex). Null when the SDP has neither.
 */
export function avcCodecFromSdp(sdp: string): string | null {
  const parsed = parseSdp(sdp);
  for (const m of parsed?.media ?? []) {
    for (const [pt, map] of m.rtpmap) {
      if (map.codec.toUpperCase() !== 'H264') continue;
      const fmtp = m.fmtp.get(pt) ?? '';
      for (const nal of h264ParameterSets(fmtp)) {
        const c = avcCodecFromSps(nal);
        if (c) return c;
      }
      const pli = /(?:^|[;\s])profile-level-id\s*=\s*([0-9a-fA-F]{6})(?:[;\s]|$)/.exec(fmtp);
      if (pli) return `avc1.${pli[1]!.toLowerCase()}`;
    }
  }
  return null;
}

/** Where the init segment of an fMP4 ends, and its codec string, once it is all there. */
export interface InitSegment {
  /** Bytes of ftyp + moov (and anything before moov). */
  end: number;
  /** `avc1.PPCCLL` / `avc3.PPCCLL` from the avcC box, or null when the track is not H.264. */
  codecs: string | null;
}

/**
 * Finds the init segment at the head of a fragmented MP4 (ISO/IEC 14496-12 §4.2 box
 * headers: 32-bit size, or 1 and a 64-bit size, or 0 for "to the end"): null while the
 * `moov` box is not complete in `buf`; `{ end: -1 }` when the bytes cannot be an MP4 or
 * a fragment comes before any moov. The codec string comes from the sample entry's
 * `avcC` (ISO/IEC 14496-15 §5.3.3.1: configurationVersion, AVCProfileIndication,
 * profile_compatibility, AVCLevelIndication).
 */
export function findInitSegment(buf: Buffer): InitSegment | null {
  let off = 0;
  while (off + 8 <= buf.length) {
    let size = buf.readUInt32BE(off);
    const type = buf.toString('latin1', off + 4, off + 8);
    let header = 8;
    if (size === 1) {
      if (off + 16 > buf.length) return null;
      const big = buf.readBigUInt64BE(off + 8);
      if (big > BigInt(Number.MAX_SAFE_INTEGER)) return { end: -1, codecs: null };
      size = Number(big);
      header = 16;
    } else if (size === 0) {
      return { end: -1, codecs: null }; // a box to the end of the stream: not a fragmented MP4's head
    }
    if (size < header || !/^[\x20-\x7e]{4}$/.test(type)) return { end: -1, codecs: null };
    if (type === 'moof' || type === 'mdat') return { end: -1, codecs: null };
    // ffmpeg's mp4 muxer starts with ftyp (ISO/IEC 14496-12 §4.3: as early as possible).
    if (off === 0 && type !== 'ftyp') return { end: -1, codecs: null };
    if (off + size > buf.length) return null;
    if (type === 'moov') {
      const moov = buf.subarray(off, off + size);
      return { end: off + size, codecs: avcCodecFromMoov(moov) };
    }
    off += size;
  }
  return null;
}

function avcCodecFromMoov(moov: Buffer): string | null {
  const at = moov.indexOf('avcC', 0, 'latin1');
  if (at < 4 || at + 8 > moov.length || moov[at + 4] !== 1) return null;
  const entry = moov.lastIndexOf('avc3', at, 'latin1') > moov.lastIndexOf('avc1', at, 'latin1') ? 'avc3' : 'avc1';
  return `${entry}.${hex2(moov[at + 5]!)}${hex2(moov[at + 6]!)}${hex2(moov[at + 7]!)}`;
}

/** Does `?codec=` with this stored codec re-encode? Throws CAMTAP_ERR_EXPORT_CODEC when the browser cannot get it. */
export function needsTranscode(stored: string | null, want: BrowserCodec, id: string): boolean {
  const codec = stored?.toUpperCase() ?? null;
  if (codec === null || !DECODABLE.has(codec)) {
    throw new CamtapError('CAMTAP_ERR_EXPORT_CODEC', { stream: id, codec: stored ?? 'unknown', format: 'fmp4', reason: 'the browser player takes H264, H265 and JPEG video (H265 and JPEG are re-encoded to H264)' });
  }
  if (want === 'h264') return true;
  const native = BROWSER_NATIVE.has(codec);
  if (want === 'copy' && !native) {
    throw new CamtapError('CAMTAP_ERR_EXPORT_CODEC', { stream: id, codec, format: 'fmp4', reason: 'browsers decode only H264 from MSE here; ask for codec=auto or codec=h264 to re-encode' });
  }
  return !native;
}

/**
 * ffmpeg's arguments for one browser response (pure; exported for tests and docs).
 * `-copyts` on recordings: the replay's RTP times start at 0 (PLAY's npt) and ffmpeg
 * would otherwise give the first two frames one timestamp (see core/serve/export-media.ts).
 * Live input keeps ffmpeg's own zero-based times. `-flush_packets 1`: a fragment is
 * written to the pipe when it is complete, not when ffmpeg's 32 KiB buffer fills.
 */
export function browserFfmpegArgs(url: string, opts: { transcode: boolean; live: boolean }): string[] {
  const args = ['-nostdin', '-hide_banner', '-v', 'error', '-rtsp_transport', 'tcp', '-i', url, '-map', '0:v:0', '-an'];
  if (opts.transcode) {
    // Re-encoding for a player: fast, no B-frames (MSE plays them, but they add a frame of delay), a keyframe every 2 s at 25 fps.
    args.push('-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-profile:v', 'main', '-pix_fmt', 'yuv420p', '-g', '50', '-bf', '0');
  } else {
    args.push('-c', 'copy');
  }
  if (!opts.live) args.push('-copyts');
  args.push('-f', 'mp4', '-movflags', 'frag_keyframe+empty_moov+default_base_moof', '-frag_duration', '500000', '-flush_packets', '1', 'pipe:1');
  return args;
}

/** Keeps the capture time of a replay's first packet (media time 0 of the response). */
class FirstPacketTime implements ReplaySource {
  firstTsNs: bigint | null = null;
  constructor(readonly inner: ReplaySource) {}

  plan(path: string, query: URLSearchParams, range: { startNs?: bigint; endNs?: bigint } | null): Promise<ReplayPlan> {
    return this.inner.plan(path, query, range);
  }

  packets(plan: ReplayPlan, opts: { ssrc: number; signal: AbortSignal }): AsyncIterable<ReplayPacket> {
    const inner = this.inner.packets(plan, opts);
    const self = this;
    return {
      async *[Symbol.asyncIterator]() {
        const it = inner[Symbol.asyncIterator]();
        const first = await it.next();
        if (first.done) return;
        self.firstTsNs ??= first.value.tsNs;
        yield first.value;
        // The rest straight from the inner iterator: no extra work per packet.
        yield* { [Symbol.asyncIterator]: () => it };
      },
    };
  }
}

/** The private server's routine lines go to debug: one per browser request would flood info. */
function demoted(log: Logger): Logger {
  return {
    debug: (o, m) => log.debug(o, m),
    info: (o, m) => log.debug(o, m),
    warn: (o, m) => log.warn(o, m),
    error: (o, m) => log.error(o, m),
    child: (b) => demoted(log.child(b)),
  };
}

const CODEC_PARAM = { type: 'string', enum: ['auto', 'copy', 'h264'], default: 'auto', description: 'auto: copy H.264, re-encode H.265/JPEG to H.264; copy: never re-encode; h264: always re-encode' } as const;
const SPEED_PARAM = { type: 'string', pattern: '^(max|[0-9]{1,2}(\\.[0-9]{1,3})?)$', default: '1', description: 'replay pace: 1 (real time, default), 2, 4, ... or max' } as const;
const LIVE_PARAMS = {
  type: 'object',
  required: ['name'],
  properties: { name: { type: 'string', minLength: 1, maxLength: 256, description: 'camera name or address, or a stream id (as rtsp://camtap/live/<name>)' } },
} as const;
const MEDIA_INFO_RESPONSE = {
  200: {
    type: 'object',
    properties: {
      id: { type: 'string' },
      camera: { type: 'string' },
      codec: { type: ['string', 'null'] },
      transcoded: { type: 'boolean' },
      mime: { type: 'string' },
      url: { type: 'string' },
      start: { type: 'string' },
      end: { type: 'string' },
    },
  },
} as const;

interface PlayQuery extends RangeQuery {
  speed?: string;
  codec?: BrowserCodec;
}

export const mediaRoutes: FastifyPluginAsync<MediaRoutesOptions> = async (app, opts) => {
  const { catalog, indexDir } = opts;
  const log = opts.log.child({ component: 'browser-media' });
  const bin = opts.ffmpeg ?? process.env.CAMTAP_FFMPEG ?? 'ffmpeg';
  const max = opts.maxSessions ?? MAX_MEDIA_SESSIONS;
  const running = new Set<() => void>();
  app.addHook('onClose', async () => {
    for (const stop of [...running]) stop();
  });
  const tags = ['media'];

  function liveSource(): LiveSource {
    if (!opts.live) throw new CamtapError('CAMTAP_ERR_NOT_FOUND', { what: 'live feed', id: '(live access needs camtap serve with taps or proxied cameras)' });
    return opts.live;
  }

  /**
   * Runs ffmpeg on `path` of a private RTSP server and answers with its fMP4 once the init
   * segment is there (see the file comment). Everything it started stops when the client
   * goes away, when ffmpeg ends, or when the API closes.
   */
  async function play(reply: FastifyReply, p: { path: string; query: URLSearchParams; source: ReplaySource; live: boolean; transcode: boolean; what: string; first?: FirstPacketTime }): Promise<FastifyReply> {
    if (running.size >= max) throw new CamtapError('CAMTAP_ERR_BUSY', { what: 'browser video', limit: max, reason: 'close a player or try again later' });
    const server = new RtspServer({ source: p.source, live: opts.live ?? null, port: 0, host: '127.0.0.1', log: demoted(log.child({ media: p.what })), sessionTimeoutSec: 60 });
    const { port } = await server.listen();
    const q = p.query.toString();
    const url = `rtsp://127.0.0.1:${port}${p.path}${q ? `?${q}` : ''}`;
    const args = browserFfmpegArgs(url, { transcode: p.transcode, live: p.live });
    let child: ChildProcess;
    try {
      child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      await server.close();
      throw e;
    }
    let stderr = '';
    let stopped = false;
    const body = new PassThrough({ highWaterMark: 256 * 1024 });
    /** Kills ffmpeg by its PID and closes the private server; safe to call twice. */
    const stop = () => {
      if (stopped) return;
      stopped = true;
      running.delete(stop);
      if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
      void server.close();
    };
    running.add(stop);
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => {
      stderr = (stderr + d).slice(-STDERR_KEEP);
    });
    const purpose = `streaming ${p.what} to a browser`;
    const lastLines = () => stderr.split('\n').map((l) => l.trim()).filter(Boolean).slice(-6).join(' | ') || '(no output on stderr)';
    log.debug({ url, transcode: p.transcode }, 'browser media');

    // Collect the head of the output until the init segment is complete.
    const init = await new Promise<{ head: Buffer; seg: InitSegment }>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let bytes = 0;
      const done = (e: Error | null, v?: { head: Buffer; seg: InitSegment }) => {
        clearTimeout(timer);
        child.stdout!.off('data', onData);
        child.off('close', onClose);
        child.off('error', onError);
        reply.raw.off('close', onGone);
        if (e) {
          stop();
          reject(e);
        } else resolve(v!);
      };
      const onData = (d: Buffer) => {
        chunks.push(d);
        bytes += d.length;
        const head = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
        chunks.length = 0;
        chunks.push(head);
        const seg = findInitSegment(head);
        if (seg && seg.end > 0) {
          child.stdout!.pause();
          done(null, { head, seg });
        } else if ((seg && seg.end < 0) || bytes > INIT_MAX_BYTES) {
          child.stdout!.pause();
          done(null, { head, seg: { end: 0, codecs: null } });
        }
      };
      const onClose = (code: number | null, sig: NodeJS.Signals | null) =>
        done(new CamtapError('CAMTAP_ERR_TOOL_FAILED', { tool: bin, status: sig ? `signal ${sig}` : `exit ${code}`, purpose, stderr: `${lastLines()} (before any video)` }));
      const onError = (e: NodeJS.ErrnoException) =>
        done(
          e.code === 'ENOENT'
            ? new CamtapError('CAMTAP_ERR_TOOL_MISSING', { tool: bin, purpose, fix: 'install it (Debian/Ubuntu: apt install ffmpeg) or set CAMTAP_FFMPEG to its path' })
            : new CamtapError('CAMTAP_ERR_TOOL_FAILED', { tool: bin, status: e.code ?? 'spawn error', purpose, stderr: e.message }),
        );
      const onGone = () => done(new CamtapError('CAMTAP_ERR_INTERRUPTED', { reason: 'the browser went away before the video started' }));
      const timer = setTimeout(
        () => done(p.live ? new CamtapError('CAMTAP_ERR_UPSTREAM_TIMEOUT', { url: p.path, ms: INIT_TIMEOUT_MS }) : new CamtapError('CAMTAP_ERR_TOOL_FAILED', { tool: bin, status: `no video within ${INIT_TIMEOUT_MS} ms`, purpose, stderr: lastLines() })),
        INIT_TIMEOUT_MS,
      );
      child.stdout!.on('data', onData);
      child.once('close', onClose);
      child.once('error', onError);
      reply.raw.once('close', onGone);
    });

    // From here on the answer is 200: ffmpeg's end ends the body; the client's going away stops ffmpeg.
    child.once('close', (code, sig) => {
      if (code !== 0 && !stopped) log.warn({ media: p.what, status: sig ?? code, ffmpeg: lastLines() }, 'browser media: ffmpeg ended with an error; transfer cut');
      stop();
      if (code === 0) body.end();
      else body.destroy(new Error('ffmpeg ended'));
    });
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) stop();
    });
    body.write(init.head);
    child.stdout!.pipe(body);
    child.stdout!.resume();
    const codecs = init.seg.codecs;
    reply
      .code(200)
      .type(codecs ? `video/mp4; codecs="${codecs}"` : 'video/mp4')
      .header('cache-control', 'no-store')
      .header('x-content-type-options', 'nosniff')
      .header('access-control-expose-headers', 'x-camtap-codecs, x-camtap-start, x-camtap-transcoded');
    if (codecs) reply.header('x-camtap-codecs', codecs);
    reply.header('x-camtap-transcoded', String(p.transcode));
    if (p.first?.firstTsNs != null) reply.header('x-camtap-start', isoFromNs(p.first.firstTsNs));
    return reply.send(body);
  }

  app.get<{ Params: { id: string } }>(
    '/streams/:id/media-info',
    {
      config: { role: 'viewer' },
      schema: { tags, description: 'What the browser player needs to know of a recorded stream: its codec, the MSE type of its fMP4, whether it is re-encoded.', params: streamIdParams, response: MEDIA_INFO_RESPONSE },
    },
    async (req): Promise<MediaInfo> => {
      const s = await catalog.getStream(req.params.id);
      if (s === undefined) throw new CamtapError('CAMTAP_ERR_NOT_FOUND', { what: 'stream', id: req.params.id });
      const source = new CatalogReplaySource({ catalog, indexDir });
      const plan = await source.plan(`/replay/${s.id}`, new URLSearchParams(), null);
      const transcoded = needsTranscode(s.codec, 'auto', s.id);
      const avc = transcoded ? null : avcCodecFromSdp(plan.sdp);
      return {
        id: s.id,
        camera: s.camera,
        codec: s.codec,
        transcoded,
        mime: avc ? `video/mp4; codecs="${avc}"` : TRANSCODED_MIME,
        url: `/api/streams/${encodeURIComponent(s.id)}/fmp4`,
        start: s.start,
        end: s.end,
      };
    },
  );

  app.get<{ Params: { id: string }; Querystring: PlayQuery }>(
    '/streams/:id/fmp4',
    {
      config: { role: 'viewer' },
      // HEAD would run ffmpeg for nothing.
      exposeHeadRoute: false,
      schema: {
        tags,
        description:
          'A recording as fragmented MP4 for Media Source Extensions, paced at `speed` from the keyframe at or before `start`. Content-Type carries the codec string; X-Camtap-Start the capture time of media time 0.',
        params: streamIdParams,
        querystring: { type: 'object', additionalProperties: false, properties: { ...rangeProperties, speed: SPEED_PARAM, codec: CODEC_PARAM } },
      },
    },
    async (req, reply) => {
      parseRange(req.query); // 400 for a malformed range, before the planner's 416
      const source = new FirstPacketTime(new CatalogReplaySource({ catalog, indexDir }));
      const sel = new URLSearchParams();
      if (req.query.start) sel.set('start', req.query.start);
      if (req.query.end) sel.set('end', req.query.end);
      // Planned first: an unknown stream (404) or a range outside the recording (416) is a JSON error.
      const plan = await source.plan(`/replay/${req.params.id}`, sel, null);
      const transcode = needsTranscode(plan.stream.codec, req.query.codec ?? 'auto', plan.stream.id);
      // The planned start, so a relative time (-10m) means the same to the private server; no
      // end unless asked: a stream still being recorded plays on past its end at planning.
      const query = new URLSearchParams({ start: isoFromNs(plan.startNs), speed: req.query.speed ?? '1' });
      if (req.query.end) query.set('end', isoFromNs(plan.endNs));
      return play(reply, { path: `/replay/${plan.stream.id}`, query, source, live: false, transcode, what: `stream ${plan.stream.id}`, first: source });
    },
  );

  app.get<{ Params: { name: string } }>(
    '/live/:name/media-info',
    {
      config: { role: 'viewer' },
      schema: { tags, description: 'What the browser player needs to know of a live feed (camera name or address, or stream id): its codec and the MSE type of its fMP4.', params: LIVE_PARAMS, response: MEDIA_INFO_RESPONSE },
    },
    async (req): Promise<MediaInfo> => {
      const feed = await liveSource().resolve(`/live/${encodeURIComponent(req.params.name)}`, new URLSearchParams());
      if (!feed) throw new CamtapError('CAMTAP_ERR_NOT_FOUND', { what: 'live feed', id: req.params.name });
      const transcoded = needsTranscode(feed.codec, 'auto', req.params.name);
      const avc = transcoded ? null : avcCodecFromSdp(feed.sdp);
      return { id: req.params.name, camera: feed.camera, codec: feed.codec, transcoded, mime: avc ? `video/mp4; codecs="${avc}"` : TRANSCODED_MIME, url: `/api/live/${encodeURIComponent(req.params.name)}/fmp4` };
    },
  );

  app.get<{ Params: { name: string }; Querystring: { codec?: BrowserCodec } }>(
    '/live/:name/fmp4',
    {
      config: { role: 'viewer' },
      exposeHeadRoute: false,
      schema: {
        tags,
        description: 'A live feed as fragmented MP4 for Media Source Extensions, from its next keyframe on, for as long as the client reads. Content-Type carries the codec string.',
        params: LIVE_PARAMS,
        querystring: { type: 'object', additionalProperties: false, properties: { codec: CODEC_PARAM } },
      },
    },
    async (req, reply) => {
      const path = `/live/${encodeURIComponent(req.params.name)}`;
      // Resolved first: nothing live by that name is a 404 JSON error, not an ffmpeg failure.
      const feed = await liveSource().resolve(path, new URLSearchParams());
      if (!feed) throw new CamtapError('CAMTAP_ERR_NOT_FOUND', { what: 'live feed', id: req.params.name });
      const transcode = needsTranscode(feed.codec, req.query.codec ?? 'auto', req.params.name);
      return play(reply, { path, query: new URLSearchParams(), source: new CatalogReplaySource({ catalog, indexDir }), live: true, transcode, what: `live ${req.params.name}` });
    },
  );
};
