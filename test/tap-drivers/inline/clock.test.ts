/**
 * The inline tap's clock: wall-clock nanoseconds that never go backwards.
 */
import t from 'tap';
import { WallClock, type WallTime } from '../../../tap-drivers/inline/clock.js';

for (const [name, clock] of [
  ['', new WallClock()],
  [' (anchor moved forward at every reading)', new WallClock(1)],
] as const) {
  t.test(`readings lie within Date.now() before and after, in nanoseconds, and never go backwards${name}`, async (t) => {
    const out: WallTime = { sec: 0, nsec: 0 };
    const before = BigInt(Date.now()) * 1_000_000n;
    const seen: bigint[] = [];
    for (let i = 0; i < 1000; i++) {
      clock.now(out);
      if (!(Number.isInteger(out.nsec) && out.nsec >= 0 && out.nsec < 1e9)) t.fail(`nsec ${out.nsec} outside the second`);
      seen.push(BigInt(out.sec) * 1_000_000_000n + BigInt(out.nsec));
    }
    const after = BigInt(Date.now() + 1) * 1_000_000n;
    t.ok(seen.every((x, i) => i === 0 || x >= seen[i - 1]!), 'monotonic');
    t.ok(seen[0]! >= before - 1_000_000n && seen.at(-1)! <= after, 'the wall clock (Date.now() has ms resolution)');
    t.ok(seen.some((x) => x % 1_000_000n !== 0n), 'finer than milliseconds');
  });
}
