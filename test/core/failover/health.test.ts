/**
 * The VMS health state machine: healthy -> suspect -> failing-over -> failed-over ->
 * restoring -> healthy, with hysteresis. Driven by a manual clock and scripted probe
 * results, so nothing waits and nothing depends on timing.
 */
import t from 'tap';
import { VmsHealthMonitor, type Clock, type HealthSettings, type VmsDetection, type VmsTransition } from '../../../core/failover/health.js';
import { RHYTHM_LEARN_MS, TrafficWatch } from '../../../core/failover/traffic-watch.js';
import { validateConfig } from '../../../core/config.js';
import { isCamtapError } from '../../../core/errors.js';
import type { VmsHealth, VmsPlugin } from '../../../core/contracts/plugin.js';

class ManualClock implements Clock {
  t = Date.parse('2026-11-23T21:20:00Z');
  #id = 0;
  readonly timers = new Map<number, { at: number; fn: () => void }>();
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.#id;
    this.timers.set(id, { at: this.t + ms, fn });
    return id;
  }
  clearTimeout(h: unknown): void {
    this.timers.delete(h as number);
  }
  /** Moves time on, firing due timers in order. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | null = null;
      for (const e of this.timers) if (e[1].at <= end && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
    }
    this.t = end;
  }
}

/** The error `fn` throws (null if none). */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return null;
}

const OK: VmsHealth = { ok: true, detail: '1 check ok', latencyMs: 1, checks: [{ name: 'tcp 10.0.0.5:443', ok: true, detail: 'connected' }] };
const DOWN: VmsHealth = { ok: false, detail: 'tcp 10.0.0.5:443: ECONNREFUSED', latencyMs: null, checks: [{ name: 'tcp 10.0.0.5:443', ok: false, detail: 'ECONNREFUSED' }] };
const NOTHING: VmsHealth = { ok: true, detail: 'nothing to probe', latencyMs: null, checks: [] };

function settings(over: Partial<HealthSettings> = {}): HealthSettings {
  return {
    probeIntervalMs: 1000, probeTimeoutMs: 1000, failAfter: 3, recoverAfterMs: 10_000, trafficTimeoutMs: 2000, auto: true,
    vms: [{ name: 'vms1', address: '10.0.0.5', ports: [443] }],
    ...over,
  };
}

function setup(over: Partial<HealthSettings> = {}, extra: { traffic?: TrafficWatch } = {}) {
  const clock = new ManualClock();
  const transitions: VmsTransition[] = [];
  const detections: VmsDetection[] = [];
  const mon = new VmsHealthMonitor({
    settings: settings(over),
    clock,
    trafficWatch: extra.traffic ?? null,
    onTransition: (x) => transitions.push(x),
    onDetection: (d) => detections.push(d),
  });
  /** One probe result, one interval later. */
  const probe = (h: VmsHealth) => {
    clock.advance(1000);
    mon.report('vms1', h);
  };
  const path = () => transitions.map((x) => x.to);
  return { clock, mon, transitions, detections, probe, path };
}

t.test('one failed probe makes a VMS suspect; failAfter consecutive ones fail it over', async (t) => {
  const { mon, probe, path, transitions } = setup();
  probe(OK);
  t.equal(mon.state('vms1'), 'healthy');
  probe(DOWN);
  t.equal(mon.state('vms1'), 'suspect', 'first failure: suspect');
  probe(DOWN);
  probe(OK);
  t.equal(mon.state('vms1'), 'healthy', 'an answer in between resets the count');
  probe(DOWN);
  probe(DOWN);
  t.equal(mon.state('vms1'), 'suspect', 'two in a row: still suspect');
  probe(DOWN);
  t.equal(mon.state('vms1'), 'failing-over', 'the third in a row: failing over');
  t.same(path(), ['suspect', 'healthy', 'suspect', 'failing-over']);
  const last = transitions[transitions.length - 1]!;
  t.same([last.from, last.cause], ['suspect', 'probe']);
  t.match(last.reason, /3 failed probes in a row: tcp 10\.0\.0\.5:443: ECONNREFUSED/);
  t.match(last.at, /^\d{4}-\d\d-\d\dT/, 'ISO time');
  probe(DOWN);
  t.equal(transitions.length, 4, 'while failing over, probes change nothing');
});

t.test('with auto off, detection raises the event once and waits for an operator', async (t) => {
  const { mon, probe, path, detections } = setup({ auto: false });
  for (let i = 0; i < 6; i++) probe(DOWN);
  t.equal(mon.state('vms1'), 'suspect', 'no failover on its own');
  t.same(path(), ['suspect']);
  t.equal(detections.length, 1, 'one down event, not one per probe');
  t.same([detections[0]!.kind, detections[0]!.vms, detections[0]!.state], ['down', 'vms1', 'suspect']);
  t.match(detections[0]!.reason, /camtap failover start vms1/);
  const tr = mon.start('vms1');
  t.same([tr.from, tr.to, tr.cause], ['suspect', 'failing-over', 'manual']);
  t.ok(mon.failoverDone('vms1', true));
  // Healthy again for recoverAfterMs: an "up" event, no restore.
  for (let i = 0; i < 12; i++) probe(OK);
  t.equal(mon.state('vms1'), 'failed-over');
  t.same(detections.map((d) => d.kind), ['down', 'up']);
  t.match(detections[1]!.reason, /camtap failover end vms1/);
  mon.end('vms1');
  t.equal(mon.state('vms1'), 'restoring');
  t.ok(mon.restoreDone('vms1', true));
  t.same(path(), ['suspect', 'failing-over', 'failed-over', 'restoring', 'healthy']);
});

t.test('the manager moves failing-over -> failed-over, and restoring -> healthy after recoverAfterMs of health', async (t) => {
  const { mon, probe, path, clock, transitions } = setup();
  for (let i = 0; i < 3; i++) probe(DOWN);
  t.equal(mon.failoverDone('vms1', true, '2 cameras taken over'), true);
  t.equal(mon.state('vms1'), 'failed-over');
  t.equal(transitions[transitions.length - 1]!.reason, '2 cameras taken over');
  t.equal(mon.failoverDone('vms1', true), false, 'a second outcome changes nothing');
  probe(OK); // healthy since now
  const since = clock.now();
  while (clock.now() - since < 9000) probe(OK);
  t.equal(mon.state('vms1'), 'failed-over', '9 s healthy: still failed over');
  probe(OK); // 10 s
  t.equal(mon.state('vms1'), 'restoring', '10 s healthy: restoring');
  t.match(transitions[transitions.length - 1]!.reason, /^healthy for 10000 ms/);
  t.equal(mon.restoreDone('vms1', false, 'cam2: TEARDOWN 454'), true);
  t.equal(mon.state('vms1'), 'failed-over', 'a failed restore goes back to failed-over');
  for (let i = 0; i < 10; i++) probe(OK);
  t.equal(mon.state('vms1'), 'failed-over', 'and waits a whole recoverAfterMs again');
  probe(OK);
  t.equal(mon.state('vms1'), 'restoring');
  mon.restoreDone('vms1', true);
  t.same(path(), ['suspect', 'failing-over', 'failed-over', 'restoring', 'failed-over', 'restoring', 'healthy']);
});

t.test('a flapping VMS stays failed-over: no restore until it is healthy recoverAfterMs without a break', async (t) => {
  const { mon, probe, path, transitions } = setup();
  for (let i = 0; i < 3; i++) probe(DOWN);
  mon.failoverDone('vms1', true);
  const before = transitions.length;
  // Up for 8 s, down once, up 8 s, down once, ... five times.
  for (let round = 0; round < 5; round++) {
    for (let i = 0; i < 8; i++) probe(OK);
    probe(DOWN);
  }
  t.equal(mon.state('vms1'), 'failed-over', 'still failed over');
  t.equal(transitions.length, before, 'not a single transition while it flapped (no restore/redirect churn)');
  t.equal(mon.states()[0]!.flaps, 5, 'five interrupted recoveries counted');
  for (let i = 0; i < 11; i++) probe(OK);
  t.equal(mon.state('vms1'), 'restoring', 'restored once it held 10 s');
  t.same(path(), ['suspect', 'failing-over', 'failed-over', 'restoring']);
});

t.test('a failed failover goes back to suspect and the next attempt waits twice as long', async (t) => {
  const { mon, probe, path } = setup();
  for (let i = 0; i < 3; i++) probe(DOWN);
  mon.failoverDone('vms1', false, 'cam1: SETUP 401');
  t.equal(mon.state('vms1'), 'suspect');
  for (let i = 0; i < 5; i++) probe(DOWN);
  t.equal(mon.state('vms1'), 'suspect', '5 more failures: not yet (needs 6)');
  probe(DOWN);
  t.equal(mon.state('vms1'), 'failing-over', 'the 6th: second attempt');
  t.same(path(), ['suspect', 'failing-over', 'suspect', 'failing-over']);
});

t.test('a manual failover is given back only by end, and manual calls refuse the wrong state', async (t) => {
  const { mon, probe, detections } = setup();
  const tr = mon.start('vms1', 'maintenance');
  t.same([tr.from, tr.to, tr.reason], ['healthy', 'failing-over', 'maintenance']);
  const e1 = thrown(() => mon.start('vms1'));
  t.ok(isCamtapError(e1, 'CAMTAP_ERR_CONFLICT'), 'start twice: conflict');
  t.match((e1 as Error).message, /VMS vms1: cannot start a failover while it is failing-over/);
  t.ok(isCamtapError(thrown(() => mon.end('vms1')), 'CAMTAP_ERR_CONFLICT'), 'end while failing over: conflict');
  mon.failoverDone('vms1', true);
  for (let i = 0; i < 20; i++) probe(OK);
  t.equal(mon.state('vms1'), 'failed-over', 'healthy all along, auto on, still not restored');
  t.same(detections.map((d) => d.kind), ['up']);
  mon.end('vms1');
  t.equal(mon.state('vms1'), 'restoring');
  t.ok(isCamtapError(thrown(() => mon.state('nope')), 'CAMTAP_ERR_NOT_FOUND'), 'unknown VMS: not found');
});

t.test('traffic silence toward the cameras makes a probed VMS suspect, never failed over', async (t) => {
  const traffic = new TrafficWatch();
  const { mon, probe, path, clock, transitions } = setup({}, { traffic });
  t.same(traffic.watched(), ['vms1'], 'the monitor watches each VMS address');
  // Silence is judged once the VMS's rhythm is known (RHYTHM_LEARN_MS of watching): it talks every second.
  for (let i = 0; i <= RHYTHM_LEARN_MS / 1000; i++) {
    traffic.observe('10.0.0.5', 'rtsp', clock.now());
    probe(OK);
  }
  t.equal(transitions.length, 0, 'learning its rhythm moves nothing');
  traffic.observe('10.0.0.5', 'rtsp', clock.now());
  probe(OK);
  t.equal(mon.state('vms1'), 'healthy', '1 s of silence is fine');
  probe(OK);
  probe(OK);
  t.equal(mon.state('vms1'), 'suspect', '3 s of silence: suspect');
  t.same([transitions[0]!.cause], ['traffic']);
  t.match(transitions[0]!.reason, /no traffic toward its cameras for 3000 ms/);
  for (let i = 0; i < 10; i++) probe(OK);
  t.equal(mon.state('vms1'), 'suspect', 'probes answer: silence alone does not fail over');
  traffic.observe('10.0.0.5', 'tcp', clock.now());
  probe(OK);
  t.equal(mon.state('vms1'), 'healthy', 'traffic again: healthy');
  t.same(path(), ['suspect', 'healthy']);
});

t.test('a VMS with nothing to probe is judged by its traffic alone', async (t) => {
  const traffic = new TrafficWatch();
  const { mon, probe, path, clock } = setup({ vms: [{ name: 'vms1', address: '10.0.0.5' }] }, { traffic });
  probe(NOTHING);
  t.equal(mon.state('vms1'), 'healthy', 'never seen: no verdict');
  traffic.observe('10.0.0.5', 'rtcp-rr', clock.now());
  probe(NOTHING);
  t.equal(mon.state('vms1'), 'healthy', 'silence right after it appeared: no verdict yet (its rhythm is not known)');
  for (let i = 0; i <= RHYTHM_LEARN_MS / 1000; i++) {
    traffic.observe('10.0.0.5', 'rtcp-rr', clock.now());
    probe(NOTHING);
  }
  traffic.observe('10.0.0.5', 'rtcp-rr', clock.now());
  probe(NOTHING);
  probe(NOTHING);
  t.equal(mon.state('vms1'), 'healthy', '2 s of silence: at the timeout, not past it');
  probe(NOTHING);
  probe(NOTHING);
  t.equal(mon.state('vms1'), 'suspect');
  probe(NOTHING);
  t.equal(mon.state('vms1'), 'failing-over', 'three silent checks in a row: failing over');
  mon.failoverDone('vms1', true);
  probe(NOTHING);
  traffic.observe('10.0.0.5', 'rtsp', clock.now()); // the VMS is back, and from now on talks every second
  for (let i = 0; i < 10; i++) {
    probe(NOTHING);
    traffic.observe('10.0.0.5', 'rtsp', clock.now());
  }
  t.equal(mon.state('vms1'), 'failed-over', 'its traffic resumed 9 s ago (the first check counts from its return)');
  probe(NOTHING);
  t.equal(mon.state('vms1'), 'restoring', 'its traffic resumed for 10 s');
  t.same(path(), ['suspect', 'failing-over', 'failed-over', 'restoring']);
});

t.test('a VMS that closes its camera connections without TEARDOWN is gone: failed over at the next check', async (t) => {
  const traffic = new TrafficWatch();
  const { mon, probe, path, clock } = setup({ vms: [{ name: 'vms1', address: '10.0.0.5' }] }, { traffic });
  traffic.observe('10.0.0.5', 'rtsp', clock.now());
  traffic.observe('10.0.0.5', 'close', clock.now() + 10);
  probe(NOTHING);
  t.equal(mon.state('vms1'), 'failing-over', 'one check after the close, without waiting for failAfter rounds or its rhythm');
  t.same(path(), ['suspect', 'failing-over']);

  const orderly = new TrafficWatch();
  const b = setup({ vms: [{ name: 'vms1', address: '10.0.0.5' }] }, { traffic: orderly });
  orderly.observe('10.0.0.5', 'teardown', b.clock.now());
  orderly.observe('10.0.0.5', 'close', b.clock.now() + 10);
  b.probe(NOTHING);
  t.equal(b.mon.state('vms1'), 'healthy', 'a close right after its TEARDOWN is orderly');

  const probed = new TrafficWatch();
  const c = setup({}, { traffic: probed });
  probed.observe('10.0.0.5', 'tcp', c.clock.now());
  probed.observe('10.0.0.5', 'close', c.clock.now() + 10);
  c.probe(OK);
  t.equal(c.mon.state('vms1'), 'failing-over', 'even when its API port still answers: its camera sessions are gone');
  probed.observe('10.0.0.5', 'rtsp', c.clock.now());
  t.equal(probed.closedFor('vms1', c.clock.now() + 1), null, 'it speaks again: no longer gone');
});

t.test('the probe loop: every interval, a plugin probe with its timeout; a hung or throwing probe is a failure', async (t) => {
  const clock = new ManualClock();
  const script: Array<'ok' | 'hang' | 'throw' | 'down'> = ['ok', 'hang', 'throw', 'down'];
  const calls: Array<{ name: string; timeoutMs: number; aborted: () => boolean }> = [];
  const plugin: VmsPlugin = {
    meta: { name: 'vms-test', kind: 'vms', version: '1.0.0', core: '^0.1.0' },
    probe(endpoint, opts) {
      calls.push({ name: endpoint.name, timeoutMs: opts.timeoutMs, aborted: () => opts.signal.aborted });
      const step = script.shift() ?? 'ok';
      if (step === 'ok') return Promise.resolve(OK);
      if (step === 'down') return Promise.resolve(DOWN);
      if (step === 'throw') throw new Error('bad JSON from the VMS');
      return new Promise(() => {}); // ignores its signal
    },
  };
  const transitions: VmsTransition[] = [];
  const mon = new VmsHealthMonitor({
    settings: settings({ probeTimeoutMs: 800, vms: [{ name: 'vms1', address: '10.0.0.5', plugin: 'vms-test', options: { apiPort: 9997 } }] }),
    clock,
    plugin: (n) => (n === 'vms-test' ? plugin : null),
    onTransition: (x) => transitions.push(x),
  });
  const flush = () => new Promise((r) => setImmediate(r));
  mon.run();
  await flush();
  t.same([calls.length, calls[0]!.name, calls[0]!.timeoutMs], [1, 'vms1', 800], 'first round at once, with the timeout');
  t.same(mon.states()[0]!.lastProbe, OK);
  clock.advance(1000);
  await flush();
  t.equal(calls.length, 2, 'second round');
  clock.advance(800); // the hung probe's timeout
  await flush();
  t.ok(calls[1]!.aborted(), 'the hung probe was aborted');
  t.equal(mon.state('vms1'), 'suspect');
  t.match(mon.states()[0]!.lastProbe!.detail, /no answer within 800 ms/);
  clock.advance(200);
  await flush();
  t.equal(calls.length, 3, 'third round');
  t.match(mon.states()[0]!.lastProbe!.detail, /plugin vms-test: probe failed: bad JSON from the VMS/);
  clock.advance(1000);
  await flush();
  t.equal(mon.state('vms1'), 'failing-over', 'hung, threw, refused: three failures');
  mon.close();
  mon.close();
  clock.advance(5000);
  await flush();
  t.equal(calls.length, 4, 'no probe after close');
  t.equal(clock.timers.size, 0, 'no timer left behind');
});

t.test('a probe round skips a VMS whose probe is still out', async (t) => {
  const clock = new ManualClock();
  let calls = 0;
  const mon = new VmsHealthMonitor({
    settings: settings({ probeTimeoutMs: 5000 }),
    clock,
    fallbackProbe: () => {
      calls++;
      return new Promise(() => {});
    },
    onTransition: () => {},
  });
  const flush = () => new Promise((r) => setImmediate(r));
  mon.run();
  for (let i = 0; i < 3; i++) {
    await flush();
    clock.advance(1000);
  }
  await flush();
  t.equal(calls, 1, 'one probe out, rounds at 1 s, 2 s, 3 s skipped it');
  mon.close();
});

t.test('configuration errors name the key; a throwing handler does not stop the machine', async (t) => {
  const dup = thrown(() => new VmsHealthMonitor({ settings: settings({ vms: [{ name: 'a', address: '1.1.1.1' }, { name: 'a', address: '1.1.1.2' }] }), onTransition: () => {} }));
  t.ok(isCamtapError(dup, 'CAMTAP_ERR_CONFIG'));
  t.match((dup as Error).message, /failover\.vms\[1\]\.name: duplicate VMS name "a"/);
  const unknown = thrown(() => new VmsHealthMonitor({ settings: settings({ vms: [{ name: 'a', address: '1.1.1.1', plugin: 'vms-nope' }] }), plugin: () => null, onTransition: () => {} }));
  t.ok(isCamtapError(unknown, 'CAMTAP_ERR_CONFIG'));
  t.match((unknown as Error).message, /failover\.vms\[0\]\.plugin: no VMS plugin "vms-nope"/);
  const clock = new ManualClock();
  const mon = new VmsHealthMonitor({ settings: settings({ failAfter: 1 }), clock, onTransition: () => { throw new Error('handler bug'); } });
  mon.report('vms1', DOWN);
  t.equal(mon.state('vms1'), 'failing-over', 'healthy -> suspect -> failing-over despite the handler');
});

t.test('the failover config block: defaults, and the monitor takes it as it is', async (t) => {
  const c = validateConfig({}, 'test.yaml').failover;
  t.same(
    [c.probeIntervalMs, c.probeTimeoutMs, c.failAfter, c.recoverAfterMs, c.trafficTimeoutMs, c.auto, c.vms],
    [1000, 1000, 3, 10_000, 2000, false, []],
  );
  const f = validateConfig({ failover: { auto: true, vms: [{ name: 'nvr', address: '10.0.0.7', ports: [443], healthUrl: 'http://10.0.0.7/health' }] } }, 'test.yaml').failover;
  t.same(f.vms[0], { name: 'nvr', address: '10.0.0.7', ports: [443], healthUrl: 'http://10.0.0.7/health', plugin: 'vms-generic', options: {} });
  t.throws(() => validateConfig({ failover: { vms: [{ name: 'x', address: 'y', port: 1 }] } }, 'test.yaml'), /failover\.vms\[0\]/);
  t.throws(() => validateConfig({ failover: { failAfter: 0 } }, 'test.yaml'), /failover\.failAfter/);
  const mon = new VmsHealthMonitor({ settings: f, clock: new ManualClock(), onTransition: () => {} });
  t.same(mon.endpoint('nvr'), { name: 'nvr', address: '10.0.0.7', ports: [443], options: {}, healthUrl: 'http://10.0.0.7/health' });
  t.same(mon.states().map((s) => [s.vms, s.state, s.plugin]), [['nvr', 'healthy', 'vms-generic']]);
});
