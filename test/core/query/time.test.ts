import t from 'tap';
import { isoFromNs, parseIsoNs, parseTimeSpec } from '../../../core/query/time.js';

// 2026-11-23T21:06:43Z: Date.UTC(2026, 10, 23, 21, 6, 43) = 1795468003000 ms (hand-checked: 20415 days * 86400 + 76003 s).
const T = 1795468003n * 1_000_000_000n;
const NOW = new Date(1795468003000);

t.test('ISO 8601 extended times keep every fraction digit', async (t) => {
  t.equal(parseTimeSpec('2026-11-23T21:06:43Z', NOW), T);
  t.equal(parseTimeSpec('2026-11-23T21:06:43.016946123Z', NOW), T + 16_946_123n);
  t.equal(parseTimeSpec('2026-11-23T21:06:43.5Z', NOW), T + 500_000_000n);
  t.equal(parseTimeSpec('2026-11-23T22:06:43+01:00', NOW), T, 'offset east of UTC');
  t.equal(parseTimeSpec('2026-11-23T16:06:43-0500', NOW), T, 'offset without colon');
  t.equal(parseTimeSpec('2026-11-23 21:06:43z', NOW), T, 'space separator, lower-case z');
});

t.test('ISO 8601 basic times (RTSP clock= form, RFC 2326 §3.7) parse too', async (t) => {
  t.equal(parseTimeSpec('20261123T210643Z', NOW), T);
  t.equal(parseTimeSpec('20261123T210643.25Z', NOW), T + 250_000_000n);
});

t.test('a time without a zone is local time, as Date reads it', async (t) => {
  t.equal(parseIsoNs('2026-11-23T21:06:43'), BigInt(new Date(2026, 10, 23, 21, 6, 43).getTime()) * 1_000_000n);
});

t.test('relative times count back from now', async (t) => {
  t.equal(parseTimeSpec('-10m', NOW), T - 600_000_000_000n);
  t.equal(parseTimeSpec('-30s', NOW), T - 30_000_000_000n);
  t.equal(parseTimeSpec('-2h', NOW), T - 7_200_000_000_000n);
  t.equal(parseTimeSpec('-1d', NOW), T - 86_400_000_000_000n);
  t.equal(parseTimeSpec('-1.5h', NOW), T - 5_400_000_000_000n);
  t.equal(parseTimeSpec('-250ms', NOW), T - 250_000_000n);
  t.equal(parseTimeSpec('now', NOW), T);
});

t.test('anything else is CAMTAP_ERR_RANGE naming the text', async (t) => {
  for (const bad of ['yesterday', '10m', '-10x', '2026-13-01T00:00:00Z', '2026-11-23T21', '']) {
    t.throws(() => parseTimeSpec(bad, NOW), { code: 'CAMTAP_ERR_RANGE', http: 457, exit: 64 }, JSON.stringify(bad));
  }
  try {
    parseTimeSpec('yesterday', NOW);
  } catch (e) {
    t.match((e as Error).message, /"yesterday"/, 'the message quotes the text');
  }
});

t.test('isoFromNs writes nine fraction digits in UTC', async (t) => {
  t.equal(isoFromNs(T + 16_946_123n), '2026-11-23T21:06:43.016946123Z');
});
