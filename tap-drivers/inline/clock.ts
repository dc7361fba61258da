/**
 * The inline tap's timestamps: the wall clock when the relaying code made its call, in
 * nanoseconds. `Date.now()` alone has millisecond resolution and can step backwards
 * (NTP); the monotonic `process.hrtime` counter is anchored to it once, so the
 * timestamps of one process never go backwards and keep nanosecond resolution.
 */

const NS_PER_S = 1_000_000_000;
/**
 * The elapsed nanoseconds are converted to a Number, which is exact below 2^53 ns
 * (104 days); the anchor is moved forward well before that, by the exact elapsed count.
 */
const REBASE_NS = 2 ** 50;

/** A time as a TapFrame carries it. */
export interface WallTime {
  /** Whole seconds since the Unix epoch. */
  sec: number;
  /** Nanoseconds within `sec` (0..999_999_999). */
  nsec: number;
}

export class WallClock {
  #hr0: bigint;
  #sec0: number;
  #nsec0: number;
  readonly #rebaseNs: number;

  /** `rebaseNs` is for tests that exercise the anchor move without waiting 13 days. */
  constructor(rebaseNs = REBASE_NS) {
    this.#rebaseNs = rebaseNs;
    const ms = Date.now();
    this.#hr0 = process.hrtime.bigint();
    this.#sec0 = Math.floor(ms / 1000);
    this.#nsec0 = (ms - this.#sec0 * 1000) * 1_000_000;
  }

  /** Writes the current time into `out` (no allocation beyond the hrtime BigInt). */
  now(out: WallTime): void {
    let d = Number(process.hrtime.bigint() - this.#hr0);
    if (d >= this.#rebaseNs) {
      this.#hr0 += BigInt(d);
      const t = this.#nsec0 + d;
      const s = Math.floor(t / NS_PER_S);
      this.#sec0 += s;
      this.#nsec0 = t - s * NS_PER_S;
      d = 0;
    }
    const total = this.#nsec0 + d;
    let s = Math.floor(total / NS_PER_S);
    let ns = total - s * NS_PER_S;
    // Guard the float division's rounding at an exact second boundary.
    if (ns < 0) {
      s -= 1;
      ns += NS_PER_S;
    } else if (ns >= NS_PER_S) {
      s += 1;
      ns -= NS_PER_S;
    }
    out.sec = this.#sec0 + s;
    out.nsec = ns;
  }
}

/** One clock for every inline tap of the process, so their frames order consistently. */
export const wallClock = new WallClock();
