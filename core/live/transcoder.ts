/**
 * Codec conversion as a live feed: one ffmpeg child pulls a stream from camtap's own RTSP
 * server (a replay or a live path), re-encodes its video, and sends RTP to a UDP socket
 * camtap binds on loopback; every RTP packet that arrives is one `publish()` on the
 * transcoder's LiveChannel, so the RTSP server's live sessions serve it like any camera.
 *
 * Why ffmpeg over RTP rather than a pipe: RTP is what the channel carries, so ffmpeg's
 * own packetizer (RFC 6184 / 7798 / 2435) does the work, and its `-sdp_file` gives the
 * codec lines (sprop-parameter-sets, packetization-mode) a client needs.
 *
 * Lifecycle: start() resolves once ffmpeg wrote its SDP (it writes it just before the
 * first packet); the channel ends when ffmpeg exits (input ended, error: the reason has
 * ffmpeg's last stderr lines) or stop() is called. No child process outlives the
 * Transcoder: a failed start kills it before rejecting.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from '../contracts/logger.js';
import { CamtapError } from '../errors.js';
import { silentLogger } from '../logger.js';
import { FrameFlags, inspectPayload } from '../wire/codecs.js';
import { RtpHeader, parseRtp } from '../wire/rtp.js';
import { RtcpType, walkRtcp } from '../wire/rtcp.js';
import { codecFor, parseSdp } from '../wire/sdp.js';
import { LiveChannel, type LivePacket } from './channel.js';

/** Codecs a transcode can produce. */
export type TargetCodec = 'h264' | 'h265' | 'mjpeg';

/** `h264`/`H264`/`avc`, `h265`/`hevc`, `mjpeg`/`jpeg` (SDP and ffmpeg spellings alike); null for anything else. */
export function parseTargetCodec(s: string): TargetCodec | null {
  switch (s.trim().toLowerCase()) {
    case 'h264':
    case 'avc':
      return 'h264';
    case 'h265':
    case 'hevc':
      return 'h265';
    case 'jpeg':
    case 'mjpeg':
      return 'mjpeg';
    default:
      return null;
  }
}

export interface TranscoderOptions {
  /** What ffmpeg reads, e.g. `rtsp://127.0.0.1:8554/replay/<id>?start=...&speed=1` (pulled over TCP). */
  inputUrl: string;
  codec: TargetCodec;
  /** The channel's key (the pool's key: source + codec). */
  key: string;
  /** Camera name, for the channel and the logs. */
  camera: string;
  log?: Logger;
  /** The ffmpeg binary (default `ffmpeg` on PATH). */
  ffmpeg?: string;
  /** Called once when the transcoder ends, whatever the cause (ffmpeg exited, stop()). */
  onEnd?: (reason: string) => void;
  /** Called when the channel's last subscriber leaves (the owner decides whether to stop). */
  onIdle?: (ch: LiveChannel) => void;
  /**
   * Called with the channel as soon as it exists, before any packet is published: a
   * subscriber added here sees the transcode from its first packet (the first keyframe).
   * Subscribers added after start() resolves join live, at whatever packet is next.
   */
  onChannel?: (ch: LiveChannel) => void;
  /** How long ffmpeg may take to produce its first output (default 15 s). */
  startTimeoutMs?: number;
  /** ffmpeg gives up when the input sends nothing for this long (`-timeout`, default 30 s; 0 = wait forever). */
  inputTimeoutMs?: number;
}

/** The ffmpeg encoder each target uses (named in the error when ffmpeg lacks it). */
const ENCODER: Record<TargetCodec, string> = { h264: 'libx264', h265: 'libx265', mjpeg: 'mjpeg' };

/** Keyframe spacing: one per second of media time whatever the frame rate (a joining client waits at most that). */
const FORCE_KEY = 'expr:gte(t,n_forced*1)';

function encoderArgs(codec: TargetCodec): string[] {
  switch (codec) {
    case 'h264':
      // ultrafast + zerolatency: no lookahead, no B-frames, sliced threads (the lowest
      // latency and CPU x264 has). global_header puts SPS/PPS in the SDP
      // (sprop-parameter-sets, RFC 6184 §8.1); repeat-headers keeps them in-band at
      // every IDR too, for clients that ignore the SDP's.
      return [
        '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-pix_fmt', 'yuv420p', '-bf', '0',
        '-g', '50', '-force_key_frames', FORCE_KEY, '-flags:v', '+global_header', '-x264-params', 'repeat-headers=1',
      ];
    case 'h265':
      // forced-idr: x265 makes forced keyframes CRA by default, which a joining client cannot start from.
      return [
        '-c:v', 'libx265', '-preset', 'ultrafast', '-tune', 'zerolatency', '-pix_fmt', 'yuv420p', '-forced-idr', '1',
        '-force_key_frames', FORCE_KEY, '-flags:v', '+global_header',
        '-x265-params', 'bframes=0:keyint=50:repeat-headers=1:log-level=error',
      ];
    case 'mjpeg':
      // RFC 2435 carries 4:2:0 JPEG with the standard Huffman tables only (ffmpeg's
      // encoder optimizes them by default, and its packetizer then sends nothing), and
      // both quantization tables in every frame (ffmpeg's flag for RTP: the packetizer
      // sends the tables in-band, §3.1.8). Every frame is a keyframe. RFC 2435 sizes
      // stop at 2040x2040.
      return ['-c:v', 'mjpeg', '-q:v', '5', '-pix_fmt', 'yuvj420p', '-huffman', 'default', '-force_duplicated_matrix', '1'];
  }
}

/**
 * The ffmpeg command line. `-fps_mode passthrough` sends every decoded frame once, with
 * its source timestamp (no frame is dropped or duplicated to fit a frame rate), and
 * `-enc_time_base -1` keeps the source's 90 kHz time base, so cameras with a variable
 * frame rate do not get two frames rounded onto one timestamp.
 */
export function ffmpegArgs(opts: { inputUrl: string; codec: TargetCodec; port: number; ssrc: number; sdpFile: string; inputTimeoutMs: number }): string[] {
  // No frame-rate probing: it waits for 20 frames (2 s of a 10 fps camera) before the
  // first output, and passthrough timing does not use the rate.
  const input = ['-fpsprobesize', '0'];
  if (/^rtsps?:/i.test(opts.inputUrl)) {
    input.push('-rtsp_transport', 'tcp');
    // Socket I/O timeout in µs: a source that goes silent ends the feed instead of hanging it.
    if (opts.inputTimeoutMs > 0) input.push('-timeout', String(Math.round(opts.inputTimeoutMs * 1000)));
  }
  const pt = opts.codec === 'mjpeg' ? [] : ['-payload_type', '96']; // JPEG keeps its static type 26 (RFC 3551)
  return [
    '-nostdin', '-hide_banner', '-loglevel', 'error',
    ...input, '-i', opts.inputUrl,
    '-map', '0:v:0', '-an', '-sn', '-dn',
    ...encoderArgs(opts.codec),
    '-fps_mode', 'passthrough', '-enc_time_base:v', '-1',
    // RTCP goes to the RTP port (RFC 5761 multiplexing): one socket; send_bye marks the end.
    '-f', 'rtp', ...pt, '-ssrc', String(opts.ssrc), '-rtpflags', 'send_bye', '-sdp_file', opts.sdpFile,
    `rtp://127.0.0.1:${opts.port}?rtcpport=${opts.port}&pkt_size=1200`,
  ];
}

export interface ChannelSdp {
  sdp: string;
  payloadType: number;
  codec: string | null;
  clockRate: number | null;
}

/** A line's text must not break the description (a camera name with CR/LF). */
const clean = (s: string) => s.replace(/[\r\n]+/g, ' ').trim();

/**
 * The channel's SDP from the one ffmpeg wrote: session lines (`s=` the camera, `c=`
 * unspecified, `a=control:*`), then the media section with the codec lines exactly as
 * ffmpeg wrote them, port 0 (the RTSP session negotiates transport, RFC 2326 §C.1) and
 * `a=control:trackID=0` (RFC 2326 §C.1.1). Null when the text has no media section.
 */
export function channelSdp(ffmpegSdp: string, camera: string): ChannelSdp | null {
  const parsed = parseSdp(ffmpegSdp);
  const media = parsed?.media[0];
  if (!parsed || !media || media.formats.length === 0) return null;
  const pt = media.formats[0]!;
  const known = codecFor(media, pt);
  const lines = ['v=0', `o=- ${Math.floor(Date.now() / 1000)} 1 IN IP4 127.0.0.1`, `s=${clean(camera) || 'camtap'}`, 'c=IN IP4 0.0.0.0', 't=0 0', 'a=control:*'];
  lines.push(`m=${media.type || 'video'} 0 ${media.proto || 'RTP/AVP'} ${pt}`);
  for (const a of media.attributes) if (!/^(control|rtcp-mux|rtcp)(:|$)/i.test(a)) lines.push(`a=${a}`);
  lines.push('a=control:trackID=0');
  return { sdp: `${lines.join('\r\n')}\r\n`, payloadType: pt, codec: known?.codec ?? null, clockRate: known?.clockRate ?? null };
}

const STDERR_KEEP = 4096;

/**
 * ffmpeg children still running. ffmpeg does not notice its parent dying (stdin is
 * closed to it, and UDP sends to a closed port do not fail), so they are killed when
 * this process exits, however it exits short of SIGKILL.
 */
const LIVE_CHILDREN = new Set<ChildProcess>();
let exitHook = false;
function track(child: ChildProcess): void {
  LIVE_CHILDREN.add(child);
  child.once('close', () => LIVE_CHILDREN.delete(child));
  if (exitHook) return;
  exitHook = true;
  process.once('exit', () => {
    for (const c of LIVE_CHILDREN) killHard(c);
  });
}
/** Packets that arrive before the SDP is read (ffmpeg writes it just before the first one): kept to publish in order. */
const EARLY_MAX = 2048;

/** One ffmpeg re-encoding one stream into a LiveChannel. */
export class Transcoder {
  readonly channel: LiveChannel;
  readonly pid: number;
  readonly codec: TargetCodec;
  /** RTCP packets ffmpeg sent (sender reports, BYE): recognized, not published. */
  rtcpPackets = 0;
  /** Datagrams dropped: not RTP, or not ffmpeg's SSRC (something else sent to the port). */
  dropped = 0;
  /** When start() was called, and when the first packet arrived (performance.now() ms; -1 before). */
  readonly startedAt: number;
  get firstPacketAt(): number {
    return this.#firstAt();
  }

  readonly #child: ChildProcess;
  readonly #sock: Socket;
  readonly #tmp: string;
  readonly #log: Logger;
  readonly #onEnd: ((reason: string) => void) | undefined;
  readonly #stderr: () => string;
  readonly #firstAt: () => number;
  readonly #exited: Promise<void>;
  #ended = false;
  #stopping = false;

  private constructor(init: {
    channel: LiveChannel;
    child: ChildProcess;
    sock: Socket;
    tmp: string;
    log: Logger;
    codec: TargetCodec;
    onEnd: ((reason: string) => void) | undefined;
    stderr: () => string;
    firstAt: () => number;
    exited: Promise<void>;
    startedAt: number;
  }) {
    this.channel = init.channel;
    this.#child = init.child;
    this.pid = init.child.pid!;
    this.#sock = init.sock;
    this.#tmp = init.tmp;
    this.#log = init.log;
    this.codec = init.codec;
    this.#onEnd = init.onEnd;
    this.#stderr = init.stderr;
    this.#firstAt = init.firstAt;
    this.#exited = init.exited;
    this.startedAt = init.startedAt;
  }

  /** Whether ffmpeg is still running and the channel open. */
  get running(): boolean {
    return !this.#ended;
  }

  /**
   * Binds the receiving socket, spawns ffmpeg, and resolves once its SDP is read and the
   * channel exists. Rejects (with no child left) when ffmpeg is missing
   * (CAMTAP_ERR_TOOL_MISSING), lacks the encoder, or exits or stays silent before its
   * first output (CAMTAP_ERR_TOOL_FAILED carrying ffmpeg's own message).
   */
  static start(opts: TranscoderOptions): Promise<Transcoder> {
    const log = (opts.log ?? silentLogger).child({ component: 'transcoder', key: opts.key });
    const startedAt = performance.now();
    const tool = opts.ffmpeg ?? 'ffmpeg';
    const purpose = `transcoding ${opts.camera} to ${opts.codec}`;
    /** ffmpeg failed before its first output: `status` says how, `stderr` is its own message. */
    const fail = (status: string, stderr: string) => new CamtapError('CAMTAP_ERR_TOOL_FAILED', { tool, status, purpose, stderr: stderr || '(no message)', key: opts.key, input: opts.inputUrl });
    return new Promise<Transcoder>((resolve, reject) => {
      const sock = createSocket({ type: 'udp4', recvBufferSize: 4 * 1024 * 1024 });
      let tmp: string | null = null;
      let child: ChildProcess | null = null;
      let settled = false;
      let channel: LiveChannel | null = null;
      let transcoder: Transcoder | null = null;
      let stderr = '';
      let sawBye = false;
      let exitInfo: { code: number | null; signal: NodeJS.Signals | null } | null = null;
      let pollTimer: NodeJS.Timeout | null = null;
      let startTimer: NodeJS.Timeout | null = null;
      let firstAt = -1;
      const early: LivePacket[] = [];
      const pkt: LivePacket = { rtp: Buffer.alloc(0), tsNs: 0n, keyframe: false };
      const hdr = new RtpHeader();
      const sdpCodec = targetSdpCodec(opts.codec);
      const ssrc = 1 + Math.floor(Math.random() * 0x7ffffffe);
      const epochNs = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
      let resolveExit: () => void = () => {};
      const exited = new Promise<void>((r) => (resolveExit = r));

      const finish = (reason: string) => {
        if (transcoder !== null) transcoder.#finish(reason);
      };
      const tail = () => stderr.trim().split('\n').slice(-8).join(' | ');
      const cleanupFiles = () => {
        if (tmp !== null) rmSync(tmp, { recursive: true, force: true });
        tmp = null;
      };
      const closeSock = () => {
        try {
          sock.close();
        } catch {
          /* already closed */
        }
      };
      const clearTimers = () => {
        if (pollTimer) clearInterval(pollTimer);
        if (startTimer) clearTimeout(startTimer);
        pollTimer = startTimer = null;
      };
      /** Failure before the channel exists: kill ffmpeg, free everything, reject. */
      const abort = (err: Error) => {
        if (settled) return;
        settled = true;
        clearTimers();
        if (child && exitInfo === null) killHard(child);
        closeSock();
        // The SDP file may be written while ffmpeg dies: remove the dir once it is gone.
        if (child && exitInfo === null) void exited.then(cleanupFiles);
        else cleanupFiles();
        reject(err);
      };

      const onMessage = (msg: Buffer) => {
        if (msg.length >= 2 && msg[1]! >= RtcpType.SR && msg[1]! <= RtcpType.APP) {
          // RTCP SR/SDES/BYE from ffmpeg's muxer (RFC 5761 §4: second byte 200..204).
          walkRtcp(msg, 0, msg.length, (pt) => {
            if (pt === RtcpType.BYE) sawBye = true;
          });
          if (transcoder) transcoder.rtcpPackets++;
          return;
        }
        if (!parseRtp(msg, 0, msg.length, hdr) || hdr.ssrc !== ssrc) {
          if (transcoder) transcoder.dropped++;
          return;
        }
        if (firstAt < 0) firstAt = performance.now();
        const tsNs = epochNs + process.hrtime.bigint();
        const keyframe = (inspectPayload(sdpCodec, msg, hdr.payloadOff, hdr.payloadLen) & FrameFlags.KEYFRAME) !== 0;
        if (channel === null) {
          // Before the SDP is read: kept (dgram gives every datagram its own Buffer, so no
          // copy), published in order once the channel exists.
          if (early.length < EARLY_MAX) early.push({ rtp: msg, tsNs, keyframe });
          trySdp();
          return;
        }
        // One packet object for the feed: subscribers copy what they keep (channel.ts).
        pkt.rtp = msg;
        pkt.tsNs = tsNs;
        pkt.keyframe = keyframe;
        channel.publish(pkt);
      };

      /** Reads the SDP file; once complete, creates the channel, publishes what came early, and resolves. */
      const trySdp = () => {
        if (settled || tmp === null) return;
        let text: string;
        try {
          text = readFileSync(path.join(tmp, 'out.sdp'), 'utf8');
        } catch {
          return; // not written yet
        }
        if (!text.endsWith('\n')) return;
        const built = channelSdp(text, opts.camera);
        if (built === null) return abort(fail('SDP with no media section', clean(text).slice(0, 300)));
        settled = true;
        clearTimers();
        channel = new LiveChannel({ key: opts.key, sdp: built.sdp, camera: opts.camera, payloadType: built.payloadType, codec: built.codec, clockRate: built.clockRate, onIdle: opts.onIdle });
        transcoder = new Transcoder({ channel, child: child!, sock, tmp: tmp!, log, codec: opts.codec, onEnd: opts.onEnd, stderr: tail, firstAt: () => firstAt, exited, startedAt });
        log.info({ pid: child!.pid, port: sock.address().port, codec: opts.codec, sdp: built.sdp }, 'transcoder started');
        try {
          opts.onChannel?.(channel);
        } catch (e) {
          log.warn({ err: String(e) }, 'onChannel threw');
        }
        for (const p of early.splice(0)) channel.publish(p);
        if (exitInfo !== null) transcoder.#finish(exitReason(exitInfo, tail()));
        resolve(transcoder);
      };

      sock.on('message', onMessage);
      sock.on('error', (e) => {
        if (!settled) abort(fail('UDP socket error', e.message));
        else finish(`UDP socket error: ${e.message}`);
      });
      sock.bind({ address: '127.0.0.1', port: 0, exclusive: true }, () => {
        if (settled) return;
        try {
          tmp = mkdtempSync(path.join(os.tmpdir(), 'camtap-transcode-'));
          const port = sock.address().port;
          const args = ffmpegArgs({ inputUrl: opts.inputUrl, codec: opts.codec, port, ssrc, sdpFile: path.join(tmp, 'out.sdp'), inputTimeoutMs: opts.inputTimeoutMs ?? 30_000 });
          log.debug({ args }, 'spawning ffmpeg');
          child = spawn(opts.ffmpeg ?? 'ffmpeg', args, { stdio: ['ignore', 'ignore', 'pipe'] });
        } catch (e) {
          return abort(fail('cannot start', e instanceof Error ? e.message : String(e)));
        }
        const c = child;
        track(c);
        c.stderr!.setEncoding('utf8');
        c.stderr!.on('data', (d: string) => {
          stderr += d;
          if (stderr.length > STDERR_KEEP) stderr = stderr.slice(-STDERR_KEEP);
        });
        c.on('error', (e: NodeJS.ErrnoException) => {
          // spawn failed (ENOENT: not installed); 'exit' never comes, so settle the exit promise here.
          exitInfo ??= { code: null, signal: null };
          resolveExit();
          if (e.code === 'ENOENT') abort(new CamtapError('CAMTAP_ERR_TOOL_MISSING', { tool, purpose: `transcode ${opts.camera} to ${opts.codec}`, fix: 'apt install ffmpeg' }));
          else if (!settled) abort(fail('cannot run', e.message));
          else finish(`ffmpeg failed: ${e.message}`);
        });
        c.on('close', (code, signal) => {
          exitInfo = { code, signal };
          resolveExit();
          if (!settled) {
            // It may have written its SDP and packets just before exiting (a very short input).
            trySdp();
            if (settled) return;
            const t = tail();
            const m = /Unknown encoder '([^']+)'|Encoder \(codec \w+\) not found|encoder '?([\w-]+)'? not found/i.exec(t);
            if (m) abort(fail(`this ffmpeg has no ${m[1] ?? m[2] ?? ENCODER[opts.codec]} encoder, needed for ${opts.codec}`, t));
            else abort(fail(`${signal ?? `exit code ${code}`} before any output`, t));
            return;
          }
          // Datagrams still queued in the socket are published before the channel ends: at
          // once if ffmpeg's BYE (sent after its last RTP packet) has been read, else after
          // a short drain (killed, crashed).
          const reason = transcoder !== null && transcoder.#stopping ? 'transcoder stopped' : exitReason({ code, signal }, tail());
          if (sawBye) finish(reason);
          else setTimeout(() => finish(reason), 50);
        });
        pollTimer = setInterval(trySdp, 100);
        startTimer = setTimeout(() => {
          trySdp();
          if (!settled) abort(fail(`no output within ${(opts.startTimeoutMs ?? 15_000) / 1000} s`, tail()));
        }, opts.startTimeoutMs ?? 15_000);
      });
    });
  }

  /** Kills ffmpeg (SIGTERM, SIGKILL after 2 s), closes the socket, ends the channel. Safe to call twice. */
  async stop(): Promise<void> {
    if (!this.#ended && !this.#stopping) {
      this.#stopping = true;
      const child = this.#child;
      if (child.exitCode === null && child.signalCode === null) {
        try {
          child.kill('SIGTERM');
        } catch {
          /* gone */
        }
        const timer = setTimeout(() => killHard(child), 2000);
        await this.#exited;
        clearTimeout(timer);
      }
      this.#finish('transcoder stopped');
    }
    await this.#exited;
  }

  #finish(reason: string): void {
    if (this.#ended) return;
    this.#ended = true;
    try {
      this.#sock.close();
    } catch {
      /* closed */
    }
    rmSync(this.#tmp, { recursive: true, force: true });
    this.#log.info({ reason, published: this.channel.published }, 'transcoder ended');
    this.channel.end(reason);
    try {
      this.#onEnd?.(reason);
    } catch (e) {
      this.#log.warn({ err: String(e) }, 'onEnd threw');
    }
  }

  /** ffmpeg's recent stderr (for logs and errors). */
  stderrTail(): string {
    return this.#stderr();
  }
}

/** The SDP encoding name a target produces (RFC 6184, RFC 7798, RFC 2435). */
function targetSdpCodec(codec: TargetCodec): string {
  return codec === 'h264' ? 'H264' : codec === 'h265' ? 'H265' : 'JPEG';
}

function exitReason(exit: { code: number | null; signal: NodeJS.Signals | null }, tail: string): string {
  const how = exit.signal ? `ffmpeg killed by ${exit.signal}` : exit.code === 0 ? 'ffmpeg finished (input ended)' : `ffmpeg exited with code ${exit.code}`;
  return `${how}${tail ? `: ${tail}` : ''}`;
}

function killHard(child: ChildProcess): void {
  try {
    child.kill('SIGKILL');
  } catch {
    /* gone */
  }
}
