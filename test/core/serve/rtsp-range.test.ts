/**
 * Range (RFC 2326 §3.6 npt, §3.7 clock, §12.29), Scale (§12.34), ONVIF Rate-Control and
 * the speed= URL parameter. Expected values are worked out by hand from the grammar.
 */
import t from 'tap';
import { formatClock, formatNpt, parseRange, parseScale, parseSpeedParam, rateControlOff } from '../../../core/serve/rtsp-range.js';

t.test('npt ranges: seconds, h:mm:ss, open end, suffix form, now', async (t) => {
  t.same(parseRange('npt=0-'), { kind: 'npt', start: 0, end: null });
  t.same(parseRange('npt=3-5'), { kind: 'npt', start: 3, end: 5 });
  t.same(parseRange('npt=2.5-7.25'), { kind: 'npt', start: 2.5, end: 7.25 });
  t.same(parseRange('npt = 0.000-'), { kind: 'npt', start: 0, end: null }, 'spaces around = tolerated');
  t.same(parseRange('npt=0:01:02.5-1:00:00'), { kind: 'npt', start: 62.5, end: 3600 }, '0:01:02.5 = 62.5 s');
  t.same(parseRange('npt=-10'), { kind: 'npt', start: 0, end: 10 });
  t.same(parseRange('npt=now-'), { kind: 'npt-now' });
  t.same(parseRange('npt=3-5;time=19970123T143720Z'), { kind: 'npt', start: 3, end: 5 }, 'time= parameter ignored');
  for (const bad of ['npt=5-2', 'npt=abc-', 'npt=-', 'npt=1:99:00-', 'npt=now-5', 'npt', 'smpte=10:07:00-10:07:33:05.01', '']) t.equal(parseRange(bad), null, bad);
});

t.test('clock ranges: UTC times to ns since the epoch', async (t) => {
  // 2026-11-23T21:05:19Z = 1795467919 s (date -u -d @1795467919).
  t.same(parseRange('clock=20261123T210519Z-'), { kind: 'clock', startNs: 1795467919_000_000_000n, endNs: null });
  t.same(parseRange('clock=20261123T210519.675101Z-20261123T210529.9Z'), { kind: 'clock', startNs: 1795467919_675_101_000n, endNs: 1795467929_900_000_000n });
  for (const bad of ['clock=20261323T000000Z-', 'clock=20261123T210519-', 'clock=2026-11-23T21:05:19Z-', 'clock=20261123T210529Z-20261123T210519Z']) t.equal(parseRange(bad), null, bad);
});

t.test('formatting: npt with ms, clock as utc-time with ms', async (t) => {
  t.equal(formatNpt(2.0491), '2.049');
  t.equal(formatNpt(-0.001), '0.000');
  t.equal(formatClock(1795467919_675_101_000n), '20261123T210519.675Z');
});

t.test('speed=, Scale and Rate-Control', async (t) => {
  t.equal(parseSpeedParam(null), null);
  t.equal(parseSpeedParam('max'), Infinity);
  t.equal(parseSpeedParam('MAX'), Infinity);
  t.equal(parseSpeedParam('4'), 4);
  t.equal(parseSpeedParam('0.5'), 0.5);
  for (const bad of ['0', '-1', 'fast', '1e3', '1001']) t.ok(Number.isNaN(parseSpeedParam(bad)), bad);
  t.equal(parseScale('1.0'), 1);
  t.equal(parseScale('4'), 4);
  t.ok(Number.isNaN(parseScale('-1')), 'reverse is not supported');
  t.ok(Number.isNaN(parseScale('0')));
  t.ok(Number.isNaN(parseScale('x')));
  t.equal(rateControlOff('no'), true);
  t.equal(rateControlOff(' No '), true);
  t.equal(rateControlOff('yes'), false);
  t.equal(rateControlOff(null), false);
});
