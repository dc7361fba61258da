/**
 * Failover plans: pure data (ARCHITECTURE.md "Data flow" 6). A plan says, per camera of a
 * failed VMS, how camtap takes the camera over and how it gives it back, step by step,
 * exactly as it would go on the wire, before anything is sent: `camtap failover plan`
 * prints it, `--dry-run` stops there, and the executor (./rtsp-replay.ts,
 * ./http-replay.ts, the camera profile's API) carries it out and records every step's
 * answer beside it (./manager.ts).
 *
 * Credentials are never part of a plan: a captured `Authorization` is dropped (a Digest
 * answer is bound to its old nonce and cannot be replayed, RFC 2617 §3.2.2; a Basic one
 * is the password in clear) and the executor answers the camera's new challenge with
 * the camera's credentials from the config.
 */

/** The address camtap takes the cameras over at, as the cameras must see it. */
export interface FailoverTarget {
  /** camtap's IP address on the camera network (one camtap owns: checked before a plan is built). */
  host: string;
  /**
   * First even UDP port of the range camtap receives redirected RTP on; track k of the
   * j-th RTSP replay of a plan gets `rtpPortBase + 2 * (index)`, RTCP the port after
   * (RFC 3550 §11), index counting tracks across the whole plan.
   */
  rtpPortBase: number;
}

/** One RTSP request to replay. The executor adds CSeq (renumbered from 1), Session (adopted from the camera's SETUP answer) and Authorization (answered afresh). */
export interface RtspStep {
  kind: 'rtsp';
  method: string;
  url: string;
  /** Headers as captured, with CSeq, Session and Authorization removed and addresses/ports substituted. */
  headers: Record<string, string>;
  body?: string;
  /** For SETUP: the track (0-based, in the plan's order) and the ports camtap receives it on (UDP), or the interleaved channels (TCP). */
  track?: { index: number; lower: 'udp' | 'tcp'; rtpPort?: number; rtcpPort?: number; interleaved?: [number, number] };
  /** Why this step is there, and what was substituted, in words (`client_port 40000-40001 -> 50000-50001`). */
  note: string;
}

/** One HTTP request to (re)send to the camera. */
export interface HttpStep {
  kind: 'http';
  method: string;
  /** Absolute URL (http://camera[:port]/path?query) with the substitution done. */
  url: string;
  /** Headers as captured, Authorization and hop-by-hop headers removed, Content-Length recomputed by the sender. */
  headers: Record<string, string>;
  /** The body, with the substitution done (utf8 text; binary bodies are base64 with `bodyEncoding`). */
  body: string;
  bodyEncoding?: 'utf8' | 'base64';
  note: string;
}

/** A camera API call through the camera's profile (core/contracts/camera-profile.ts). */
export interface ApiStep {
  kind: 'api';
  call: 'redirect' | 'restore' | 'stream-uri';
  profile: string;
  /** For `redirect`: where to. */
  target?: { host: string; port: number; stream?: string };
  note: string;
}

export type FailoverStep = RtspStep | HttpStep | ApiStep;

/** How one camera is taken over, in the order the issue prefers them. */
export type RedirectStrategy = 'rtsp-replay' | 'http-replay' | 'camera-api' | 'none';

/** The plan for one camera. */
export interface CameraPlan {
  camera: string;
  address: string;
  strategy: RedirectStrategy;
  /** With strategy `none`, or when a preferred strategy was passed over: why (`no captured dialog`, `profile has no redirect`). */
  reason?: string;
  /** What the plan was built from: catalog session ids and HTTP transaction ids. */
  from: { sessions: string[]; transactions: string[] };
  /** Take-over steps, in order. For rtsp-replay, one group per captured session (`group` = the session id). */
  steps: Array<FailoverStep & { group?: string }>;
  /** Give-back steps (TEARDOWN of camtap's sessions; the original HTTP requests; profile restore). */
  restore: Array<FailoverStep & { group?: string }>;
  /**
   * UDP ports camtap must receive on before the steps run, for cameras that push (an
   * http-replay or camera-api redirect sends RTP to `target.host:rtpPort`, RTCP +1).
   * RTSP replays bind their own (the SETUP step's ports).
   */
  receive?: Array<{ rtpPort: number; rtcpPort: number }>;
}

/** The whole plan for one VMS. */
export interface FailoverPlan {
  vms: string;
  vmsAddress: string;
  target: FailoverTarget;
  /** ISO 8601. */
  createdAt: string;
  cameras: CameraPlan[];
}

/** What happened to one step when it ran. */
export interface StepOutcome {
  step: number;
  group?: string;
  kind: FailoverStep['kind'];
  /** `DESCRIBE rtsp://…` / `POST http://…` / `redirect`. */
  request: string;
  /** RTSP/HTTP status, when there was an answer. */
  status: number | null;
  ok: boolean;
  /** The answer's first line and the headers that matter (Session, Transport), or the error message. */
  answer: string;
  at: string;
}

/** The outcome of one camera's redirect or restore. */
export interface CameraOutcome {
  camera: string;
  strategy: RedirectStrategy;
  ok: boolean;
  /** Why it failed, naming the step and peer (`SETUP rtsp://10.77.0.11:8554/stream1: 401 Unauthorized (no credentials for camera cam1)`). */
  reason?: string;
  steps: StepOutcome[];
}
