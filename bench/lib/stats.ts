/** Sample collection and percentiles for benchmark figures (latency, lateness). */

/** A growable Float64Array: no per-sample allocation. */
export class Samples {
  a: Float64Array;
  n = 0;
  constructor(initial = 1 << 12) {
    this.a = new Float64Array(initial);
  }
  push(x: number): void {
    if (this.n === this.a.length) {
      const b = new Float64Array(this.a.length * 2);
      b.set(this.a);
      this.a = b;
    }
    this.a[this.n++] = x;
  }
  view(): Float64Array {
    return this.a.subarray(0, this.n);
  }
}

/** A growable Uint32Array. */
export class U32Samples {
  a: Uint32Array;
  n = 0;
  constructor(initial = 1 << 12) {
    this.a = new Uint32Array(initial);
  }
  push(x: number): void {
    if (this.n === this.a.length) {
      const b = new Uint32Array(this.a.length * 2);
      b.set(this.a);
      this.a = b;
    }
    this.a[this.n++] = x;
  }
  view(): Uint32Array {
    return this.a.subarray(0, this.n);
  }
}

export interface Percentiles {
  count: number;
  p50: number | null;
  p90: number | null;
  p99: number | null;
  p999: number | null;
  max: number | null;
  min: number | null;
  mean: number | null;
}

/** Nearest-rank percentiles of `v` (copied, then sorted). */
export function percentiles(v: Float64Array): Percentiles {
  if (v.length === 0) return { count: 0, p50: null, p90: null, p99: null, p999: null, max: null, min: null, mean: null };
  const s = Float64Array.from(v).sort();
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
  let sum = 0;
  for (let i = 0; i < s.length; i++) sum += s[i]!;
  return { count: s.length, p50: q(0.5), p90: q(0.9), p99: q(0.99), p999: q(0.999), max: s[s.length - 1]!, min: s[0]!, mean: sum / s.length };
}
