/**
 * mp4 / mkv export of one recorded stream: the video as a file a person plays, seeks in
 * and sees the right duration of, instead of packets (core/serve/export.ts).
 *
 * How: a private {@link RtspServer} on 127.0.0.1 (port 0) serves the stream from the
 * given {@link ReplaySource}, and ffmpeg pulls it over RTSP/TCP at `speed=max` and copies
 * the video into the container (`-c copy`, no re-encoding):
 *
 *   ffmpeg -nostdin -v error -rtsp_transport tcp -i rtsp://127.0.0.1:P/replay/<id>?start=&end=&speed=max
 *          -map 0:v:0 -c copy -copyts -f mp4|matroska OUT
 *
 * Why this way and not a depacketizer of our own feeding a muxer:
 * - ffmpeg's RTP depacketizers (H.264 RFC 6184, H.265 RFC 7798, JPEG RFC 2435) are the
 *   ones VMSs and players use; frame boundaries, parameter sets and JPEG headers come
 *   out as a player expects them.
 * - Frame times come from the RTP timestamps the replay rewrites to be continuous (a
 *   camera whose clock jumps when a second client joins still gives an even timeline),
 *   not from packet arrival, so durations are exact; the PLAY answer's `Range` (npt 0-)
 *   puts the first frame at 0 and the server's RTCP SRs tie RTP time to capture time.
 * - The replay path (plan, keyframe lead-in, rewriting, pacing by TCP back-pressure) is
 *   the one already tested against the lab manifests: exports decode to the same frames.
 * - Over TCP at `speed=max` nothing is lost and it runs as fast as ffmpeg reads.
 *
 * `-copyts`: ffmpeg's RTP demuxer hands the first H.264/H.265 access unit over with no
 * timestamp; without `-copyts` ffmpeg shifts the second frame to 0 and the first two
 * frames share one timestamp, one frame of duration short. The RTP-derived timestamps
 * already start at 0, so they are kept as they are.
 *
 * Outputs:
 * - a file: mp4 with `+faststart` (index at the front: seekable over HTTP too), or mkv
 *   with its Cues and duration;
 * - a stream (stdout, an HTTP response): fragmented mp4 (`frag_keyframe+empty_moov+
 *   default_base_moof`: playable while it arrives, one fragment per GOP). Matroska
 *   written to a pipe has no duration and no Cues (ffmpeg writes them by seeking back),
 *   so mkv for a stream is written to a temporary file first and then copied.
 *
 * A range starts at the keyframe that precedes it (a replay's lead-in), so an export of
 * a window is up to one GOP longer at the front.
 */
import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdtemp, rename, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from '../contracts/logger.js';
import { CamtapError } from '../errors.js';
import { silentLogger } from '../logger.js';
import type { ReplayPlan } from '../query/types.js';
import { RtspServer, type ReplaySource } from './rtsp-server.js';

export type MediaFormat = 'mp4' | 'mkv';

export interface ExportMediaOptions {
  /** Where the stream comes from (a CatalogReplaySource in camtap). */
  source: ReplaySource;
  /** The replay path, e.g. `/replay/<stream-id>`. */
  path: string;
  /** `start`, `end` (and any further selector the source reads); `speed` is set to `max`. */
  query: URLSearchParams;
  format: MediaFormat;
  /** A file path (written whole, faststart mp4 / indexed mkv), or a stream (fragmented mp4 / mkv); a stream is not ended. */
  out: string | NodeJS.WritableStream;
  log?: Logger;
  /** Aborting kills ffmpeg and rejects with CAMTAP_ERR_INTERRUPTED (no partial file is left). */
  signal?: AbortSignal;
  /** The ffmpeg program (default `$CAMTAP_FFMPEG` or `ffmpeg` on PATH). */
  ffmpeg?: string;
}

export interface ExportMediaResult {
  /** Bytes written to the file or the stream. */
  bytes: number;
  /** The plan the export was made from (stream, range). */
  plan: ReplayPlan;
}

/**
 * Codecs ffmpeg depacketizes from RTP and both containers take as they are. Anything
 * else (audio, an unknown dynamic payload type) is refused before ffmpeg starts.
 */
const EXPORTABLE: ReadonlySet<string> = new Set(['H264', 'H265', 'JPEG']);

const CONTAINER: Record<MediaFormat, string> = { mp4: 'mp4', mkv: 'matroska' };
/** stderr kept for the error message (ffmpeg at `-v error` writes little). */
const STDERR_KEEP = 8192;
const STDERR_LINES = 8;

/**
 * The private server's info lines (listening, session set up, ended) are routine for an
 * export: they go to debug, so `camtap export` prints only what matters.
 */
function demoted(log: Logger): Logger {
  return {
    debug: (o, m) => log.debug(o, m),
    info: (o, m) => log.debug(o, m),
    warn: (o, m) => log.warn(o, m),
    error: (o, m) => log.error(o, m),
    child: (b) => demoted(log.child(b)),
  };
}

/** The ffmpeg arguments for one export (pure; exported for the tests and the docs). */
export function ffmpegArgs(url: string, format: MediaFormat, target: 'file' | 'pipe', file?: string): string[] {
  const args = ['-nostdin', '-hide_banner', '-v', 'error', '-rtsp_transport', 'tcp', '-i', url, '-map', '0:v:0', '-c', 'copy', '-copyts'];
  if (format === 'mp4') args.push('-movflags', target === 'file' ? '+faststart' : 'frag_keyframe+empty_moov+default_base_moof');
  args.push('-f', CONTAINER[format]);
  // `file:` so a name like `http:x` or `pipe:1` is a file, not a protocol.
  if (target === 'file') args.push('-y', `file:${path.resolve(file!)}`);
  else args.push('pipe:1');
  return args;
}

function interrupted(): CamtapError {
  return new CamtapError('CAMTAP_ERR_INTERRUPTED', { reason: 'export aborted' });
}

function lastLines(text: string): string {
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  return lines.slice(-STDERR_LINES).join(' | ') || '(no output on stderr)';
}

/** Runs ffmpeg to its end; stdout goes to `out` (without ending it) when given. */
function runFfmpeg(bin: string, args: string[], out: NodeJS.WritableStream | null, signal: AbortSignal | undefined, purpose: string): Promise<{ bytes: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(interrupted());
    const child = spawn(bin, args, { stdio: ['ignore', out ? 'pipe' : 'ignore', 'pipe'] });
    let stderr = '';
    let bytes = 0;
    let failure: Error | null = null;
    const fail = (e: Error) => {
      failure ??= e;
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    };
    const onAbort = () => fail(interrupted());
    signal?.addEventListener('abort', onAbort, { once: true });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => {
      stderr += d;
      if (stderr.length > STDERR_KEEP) stderr = stderr.slice(-STDERR_KEEP);
    });
    const onOutError = (e: Error) => fail(e);
    if (out) {
      child.stdout!.on('data', (d: Buffer) => (bytes += d.length));
      child.stdout!.pipe(out as NodeJS.WritableStream, { end: false });
      out.on('error', onOutError);
    }
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') fail(new CamtapError('CAMTAP_ERR_TOOL_MISSING', { tool: bin, purpose, fix: 'install it (Debian/Ubuntu: apt install ffmpeg) or set CAMTAP_FFMPEG to its path' }));
      else fail(new CamtapError('CAMTAP_ERR_TOOL_FAILED', { tool: bin, status: e.code ?? 'spawn error', purpose, stderr: e.message }));
    });
    child.on('close', (code, sig) => {
      signal?.removeEventListener('abort', onAbort);
      if (out) {
        child.stdout!.unpipe(out as NodeJS.WritableStream);
        out.off('error', onOutError);
      }
      if (failure) return reject(failure);
      if (code !== 0) return reject(new CamtapError('CAMTAP_ERR_TOOL_FAILED', { tool: bin, status: sig ? `signal ${sig}` : `exit ${code}`, purpose, stderr: lastLines(stderr) }));
      resolve({ bytes, stderr });
    });
  });
}

/** Copies a file into `out` (not ending it), honouring back-pressure. */
function copyFile(file: string, out: NodeJS.WritableStream, signal: AbortSignal | undefined): Promise<number> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(interrupted());
    const rs = createReadStream(file);
    let bytes = 0;
    const done = (e: Error | null) => {
      signal?.removeEventListener('abort', onAbort);
      out.off('error', onErr);
      rs.unpipe(out as NodeJS.WritableStream);
      if (e) {
        rs.destroy();
        reject(e);
      } else resolve(bytes);
    };
    const onAbort = () => done(interrupted());
    const onErr = (e: Error) => done(e);
    signal?.addEventListener('abort', onAbort, { once: true });
    out.on('error', onErr);
    rs.on('data', (d) => (bytes += d.length));
    rs.on('error', onErr);
    rs.on('end', () => done(null));
    rs.pipe(out as NodeJS.WritableStream, { end: false });
  });
}

/**
 * Exports the stream that `path` + `query` name as mp4 or mkv (see the file comment).
 * The plan is made first, so an unknown stream or a bad range fails before ffmpeg runs.
 * @throws CamtapError CAMTAP_ERR_NOT_FOUND / CAMTAP_ERR_RANGE from the source,
 *   CAMTAP_ERR_EXPORT_CODEC for a codec the containers cannot take,
 *   CAMTAP_ERR_TOOL_MISSING when ffmpeg is not installed, CAMTAP_ERR_TOOL_FAILED with the
 *   end of ffmpeg's stderr when it fails, CAMTAP_ERR_INTERRUPTED when `signal` aborts.
 */
export async function exportMedia(opts: ExportMediaOptions): Promise<ExportMediaResult> {
  const log = opts.log ?? silentLogger;
  const bin = opts.ffmpeg ?? process.env.CAMTAP_FFMPEG ?? 'ffmpeg';
  if (opts.format !== 'mp4' && opts.format !== 'mkv') throw new CamtapError('CAMTAP_ERR_USAGE', { reason: `format ${String(opts.format)}: mp4 or mkv` });
  if (opts.signal?.aborted) throw interrupted();

  const plan = await opts.source.plan(opts.path, opts.query, null);
  const codec = plan.stream.codec?.toUpperCase() ?? null;
  if (codec === null || !EXPORTABLE.has(codec)) {
    throw new CamtapError('CAMTAP_ERR_EXPORT_CODEC', {
      stream: plan.stream.id,
      codec: plan.stream.codec ?? `unknown (payload type ${plan.stream.payloadType})`,
      format: opts.format,
      reason: 'mp4 and mkv exports take H264, H265 and JPEG video; export the packets with --format pcap or pcapng',
    });
  }

  const server = new RtspServer({ source: opts.source, port: 0, host: '127.0.0.1', log: demoted(log.child({ export: plan.stream.id })) });
  const { port } = await server.listen();
  const q = new URLSearchParams(opts.query);
  q.set('speed', 'max');
  const url = `rtsp://127.0.0.1:${port}${opts.path}?${q.toString()}`;
  const purpose = `exporting stream ${plan.stream.id} as ${opts.format}`;
  let tmpDir: string | null = null;
  const file = typeof opts.out === 'string' ? opts.out : null;
  // ffmpeg at `-v error` that still exits 0 wrote something worth a look (a damaged frame).
  const warnings = (r: { stderr: string }) => {
    if (r.stderr.trim() !== '') log.warn({ stream: plan.stream.id, ffmpeg: lastLines(r.stderr) }, 'ffmpeg reported errors but finished the export');
  };
  try {
    log.debug({ url, format: opts.format, out: file ?? 'stream' }, 'media export');
    if (file !== null) {
      // Written beside the target and renamed when complete: a failed or aborted export
      // leaves neither a half file a player would take for one nor a clobbered old file.
      const part = path.join(path.dirname(path.resolve(file)), `.${path.basename(file)}.${process.pid}.part`);
      try {
        warnings(await runFfmpeg(bin, ffmpegArgs(url, opts.format, 'file', part), null, opts.signal, purpose));
        await rename(part, file);
      } finally {
        await rm(part, { force: true });
      }
      return { bytes: (await stat(file)).size, plan };
    }
    const out = opts.out as NodeJS.WritableStream;
    if (opts.format === 'mp4') {
      const r = await runFfmpeg(bin, ffmpegArgs(url, 'mp4', 'pipe'), out, opts.signal, purpose);
      warnings(r);
      return { bytes: r.bytes, plan };
    }
    tmpDir = await mkdtemp(path.join(os.tmpdir(), 'camtap-export-'));
    const tmp = path.join(tmpDir, `${plan.stream.id}.mkv`);
    warnings(await runFfmpeg(bin, ffmpegArgs(url, 'mkv', 'file', tmp), null, opts.signal, purpose));
    return { bytes: await copyFile(tmp, out, opts.signal), plan };
  } finally {
    await server.close();
    if (tmpDir !== null) await rm(tmpDir, { recursive: true, force: true });
  }
}
