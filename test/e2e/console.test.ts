/**
 * The web console in Debian's chromium (playwright-core), against a real `camtap serve`:
 * a recording (the lab capture lo_udp_h264.pcap, imported) and a live camera (the lab's
 * GStreamer RTSP camera, proxied by the inline gateway with `--camera labcam=rtsp://...`
 * and pulled through camtap by ffmpeg as a VMS, so camtap records and relays it).
 *
 * In the browser: the console loads, the inventory lists both cameras, the timeline
 * shows the recorded coverage; the recording plays (the video element's currentTime
 * advances, a decoded frame has the size the manifest gives and is not one colour); a
 * click on the timeline plays from that moment (the request's start is the clicked time
 * and the frame shown is from at or after it); the live camera plays likewise. Saves
 * docs/console-overview.png, docs/console-recorded.png and docs/console-live.png. The
 * failover controls send nothing until confirmed (a confirmed dry run is sent). With
 * tokens in the config the page asks for one, refuses a wrong one, and a viewer plays
 * video but gets disabled failover controls.
 *
 * Every wait is for a condition, with generous limits; nothing is timed.
 */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Page } from 'playwright-core';
import { CAPTURES, ROOT, camtap, tempDir } from '../helpers/camtap.js';
import { startServe } from '../helpers/serve.js';
import { cameraMissing, freePort, have, startCamera, startVms } from '../helpers/peers.js';
import { chromiumMissing, frameStats, launchChromium } from '../helpers/browser.js';
import { manifest, mediaStreams } from '../core/query/fixture.js';

const FIXTURE = 'lo_udp_h264.pcap';
const REC = mediaStreams(manifest(FIXTURE))[0]! as unknown as { decode: { width: number; height: number } };
const RECORDED_CAMERA = '127.0.1.11'; // the camera of the fixture's RTSP dialog
const LIVE_CAMERA = 'labcam';
const DOCS = path.join(ROOT, 'docs');
const WAIT = 90_000;

const missingTools = ['ffmpeg', 'gst-launch-1.0'].filter((c) => !have(c));
const skip = chromiumMissing() || (missingTools.length ? `needs ${missingTools.join(', ')} (scripts/install-deps.sh installs them)` : false);
/** The lab camera (GStreamer RTSP server bindings) for the live part. */
const camSkip = skip || ((await cameraMissing()) ?? false);

/** Waits until the video's currentTime has moved on by `by` seconds from now. */
async function advances(page: Page, by: number): Promise<{ from: number; to: number }> {
  const from = await page.$eval('#player', (v) => (v as HTMLVideoElement).currentTime);
  await page.waitForFunction(([f, b]) => (document.getElementById('player') as HTMLVideoElement).currentTime >= f! + b!, [from, by], { timeout: WAIT });
  const to = await page.$eval('#player', (v) => (v as HTMLVideoElement).currentTime);
  return { from, to };
}

async function playing(page: Page): Promise<void> {
  await page.waitForFunction(() => {
    const v = document.getElementById('player') as HTMLVideoElement;
    if (v.dataset.state === 'error') throw new Error(`player error: ${document.getElementById('player-overlay')?.textContent}`);
    return v.dataset.state === 'playing' && v.videoWidth > 0 && !v.paused;
  }, undefined, { timeout: WAIT });
}

t.test('the console: inventory, timeline, recorded and live video in chromium, a click on the timeline seeks', { skip: camSkip }, async (t) => {
  const dir = tempDir(t, 'camtap-console-');
  const data = path.join(dir, 'data');
  const imp = await camtap(['import', path.join(CAPTURES, FIXTURE)], { data });
  t.equal(imp.code, 0, `the recording is imported ${imp.stderr}`);

  const camPort = await freePort('tcp');
  const cam = await startCamera({ port: camPort, codec: 'h264', fps: 25, extra: ['--pattern', 'smpte', '--label', LIVE_CAMERA, '--bitrate', '2000', '--speed', '1'] });
  t.teardown(() => cam.stop('SIGKILL'));
  const serve = await startServe(t, ['--data', data, '--camera', `${LIVE_CAMERA}=${cam.url}`]);
  t.ok(serve.http, 'the HTTP API listens');
  const base = `http://127.0.0.1:${serve.http}`;
  const vms = startVms({ url: `rtsp://127.0.0.1:${serve.rtsp}/${LIVE_CAMERA}`, transport: 'tcp', seconds: 900 });
  t.teardown(() => vms.stop('SIGKILL'));

  // Live once camtap relays the camera to the VMS and the pipeline sees its packets.
  let live = 0;
  for (let i = 0; i < WAIT / 250 && live !== 200; i++) {
    live = (await fetch(`${base}/api/live/${LIVE_CAMERA}/media-info`)).status;
    if (live !== 200) await sleep(250);
  }
  t.equal(live, 200, `/api/live/${LIVE_CAMERA} is live (serve log: ${live === 200 ? 'ok' : serve.log().slice(-1500)})`);

  const browser = await launchChromium(t);
  const page = await browser.newPage({ viewport: { width: 1440, height: 960 } });
  const pageErrors: string[] = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.goto(`${base}/`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: WAIT });
  t.equal(await page.title(), 'camtap console');

  // Inventory: both cameras (the live one once the streams list names it: refreshed every 10 s).
  await page.waitForSelector(`#camera-list [data-camera="${RECORDED_CAMERA}"]`, { timeout: WAIT });
  await page.waitForSelector(`#camera-list [data-camera="${LIVE_CAMERA}"]`, { timeout: WAIT });
  const listed = await page.$$eval('#camera-list [data-camera]', (els) => els.map((e) => (e as HTMLElement).dataset.camera));
  t.ok(listed.includes(RECORDED_CAMERA) && listed.includes(LIVE_CAMERA), `the inventory lists the recorded and the live camera (${listed.join(', ')})`);
  t.ok((await page.$$('#vms-list [data-vms]')).length >= 1, 'and the VMS of the recording');

  // ---- recorded
  await page.click(`#camera-list [data-camera="${RECORDED_CAMERA}"]`);
  await page.waitForSelector('#timeline .tl-coverage', { timeout: WAIT });
  const coverage = await page.$$eval('#timeline .tl-coverage', (els) => els.map((e) => ({ start: e.getAttribute('data-start')!, end: e.getAttribute('data-end')! })));
  t.equal(coverage.length, 1, 'the timeline shows the recording as one covered interval');
  const api = (await (await fetch(`${base}/api/timeline?camera=${RECORDED_CAMERA}`)).json()) as { cameras: Array<{ coverage: Array<{ start: string; end: string }> }> };
  t.equal(Date.parse(coverage[0]!.start), Date.parse(api.cameras[0]!.coverage[0]!.start), 'drawn from the API’s coverage');
  await page.click('#mode-recorded');
  await playing(page);
  t.equal(await page.$eval('#player', (v) => (v as HTMLVideoElement).dataset.mode), 'recorded');
  const adv = await advances(page, 1.5);
  t.ok(adv.to > adv.from, `recorded: currentTime advances (${adv.from.toFixed(2)} -> ${adv.to.toFixed(2)} s)`);
  const rf = await frameStats(page, '#player');
  t.ok(rf, 'a frame is decoded');
  t.equal(rf?.width, REC.decode.width, `recorded: ${REC.decode.width} px wide (manifest)`);
  t.equal(rf?.height, REC.decode.height, `recorded: ${REC.decode.height} px high (manifest)`);
  t.ok(rf && rf.variance > 50 && rf.distinct > 8, `recorded: the frame is not blank (luma variance ${rf?.variance.toFixed(1)}, ${rf?.distinct} colours)`);

  // A click at 70% of the covered interval plays from there.
  const before = await page.$eval('#player', (v) => (v as HTMLElement).dataset.start ?? '');
  const box = (await (await page.$('#timeline .tl-coverage'))!.boundingBox())!;
  const a = Date.parse(coverage[0]!.start);
  const b = Date.parse(coverage[0]!.end);
  const clickedMs = a + 0.7 * (b - a);
  await page.mouse.click(box.x + 0.7 * box.width, box.y + box.height / 2);
  await page.waitForFunction((prev) => (document.getElementById('player') as HTMLElement).dataset.start !== prev, before, { timeout: WAIT });
  const startIso = await page.$eval('#player', (v) => (v as HTMLElement).dataset.start!);
  const msPerPx = (b - a) / box.width;
  t.ok(Math.abs(Date.parse(startIso) - clickedMs) <= 2 * msPerPx + 5, `the request starts at the clicked time (${startIso}; clicked ${new Date(clickedMs).toISOString()}, ${msPerPx.toFixed(1)} ms per px)`);
  await playing(page);
  await advances(page, 0.5);
  const mediaStart = await page.$eval('#player', (v) => (v as HTMLElement).dataset.mediaStart!);
  t.ok(Date.parse(mediaStart) <= Date.parse(startIso) + 1, `the video starts at the keyframe before it (${mediaStart})`);
  const wall = await page.$eval('#player', (v) => (v as HTMLElement).dataset.wall!);
  t.ok(Date.parse(wall) >= Date.parse(startIso) - 100, `and shows the clicked moment on: the frame on screen was captured at ${wall}`);
  const rf2 = await frameStats(page, '#player');
  t.ok(rf2 && rf2.variance > 50, 'after the seek the frame is not blank');
  await page.screenshot({ path: path.join(DOCS, 'console-recorded.png') });

  // ---- live
  await page.click(`#camera-list [data-camera="${LIVE_CAMERA}"]`);
  await page.waitForFunction((c) => (document.getElementById('player') as HTMLElement).dataset.camera === c, LIVE_CAMERA, { timeout: WAIT });
  if ((await page.$eval('#player', (v) => (v as HTMLElement).dataset.mode)) !== 'live') await page.click('#mode-live');
  await playing(page);
  t.equal(await page.$eval('#player', (v) => (v as HTMLElement).dataset.mode), 'live');
  const ladv = await advances(page, 1.5);
  t.ok(ladv.to > ladv.from, `live: currentTime advances (${ladv.from.toFixed(2)} -> ${ladv.to.toFixed(2)} s)`);
  const lf = await frameStats(page, '#player');
  t.equal(lf?.width, 640, 'live: the camera’s 640 px width');
  t.equal(lf?.height, 360, 'live: the camera’s 360 px height');
  t.ok(lf && lf.variance > 50 && lf.distinct > 8, `live: the frame is not blank (luma variance ${lf?.variance.toFixed(1)}, ${lf?.distinct} colours)`);
  await page.waitForSelector('#timeline .tl-coverage', { timeout: WAIT });
  t.ok((await page.$$('#timeline .tl-coverage')).length >= 1, 'the live camera’s recording shows on its timeline');
  await page.screenshot({ path: path.join(DOCS, 'console-live.png') });
  await page.screenshot({ path: path.join(DOCS, 'console-overview.png'), fullPage: true });

  // ---- failover controls: nothing is sent without confirmation; a confirmed dry run is sent as one
  const posts: string[] = [];
  page.on('request', (r) => {
    if (r.method() === 'POST') posts.push(r.url());
  });
  const foApi = (await fetch(`${base}/api/failover`)).status;
  await page.waitForSelector('#failover-body [data-vms]', { timeout: WAIT });
  const startButton = '#failover-body [data-vms] button:has-text("Fail over")';
  if (foApi === 404) {
    t.ok(await page.$eval(startButton, (b) => (b as HTMLButtonElement).disabled), 'no failover API: the controls are disabled');
  } else {
    await page.click(startButton);
    await page.waitForSelector('#confirm-dialog[open]', { timeout: WAIT });
    t.match(await page.$eval('#confirm-text', (e) => e.textContent ?? ''), /point .* at itself/, 'the dialog says what a failover does');
    await page.click('#confirm-dialog button[value="cancel"]');
    await page.waitForSelector('#confirm-dialog:not([open])', { state: 'attached', timeout: WAIT });
    t.same(posts, [], 'cancelled: nothing was sent');
    await page.click(startButton);
    await page.waitForSelector('#confirm-dialog[open]', { timeout: WAIT });
    await page.check('#confirm-dry');
    const sent = page.waitForRequest((r) => r.method() === 'POST' && /\/api\/failover\/[^/]+\/start\?dryRun=true$/.test(r.url()), { timeout: WAIT });
    await page.click('#confirm-ok');
    t.ok(await sent, 'confirmed: POST /api/failover/<vms>/start?dryRun=true');
    await page.waitForSelector('.toast', { timeout: WAIT });
  }

  t.same(pageErrors, [], 'no script errors in the page');
});

t.test('with tokens: the console asks for one, refuses a wrong one, and a viewer watches but may not fail over', { skip }, async (t) => {
  const dir = tempDir(t, 'camtap-console-auth-');
  const data = path.join(dir, 'data');
  t.equal((await camtap(['import', path.join(CAPTURES, FIXTURE)], { data })).code, 0);
  const VIEWER = 'viewer-token-for-the-console-test';
  const cfg = path.join(dir, 'camtap.yaml');
  writeFileSync(cfg, ['serve:', '  host: 127.0.0.1', 'auth:', '  tokens:', `    - { name: vera, token: "${VIEWER}", role: viewer }`, ''].join('\n'));
  const serve = await startServe(t, ['--config', cfg, '--data', data]);
  const base = `http://127.0.0.1:${serve.http}`;
  const anon = await fetch(`${base}/api/inventory`);
  t.equal(anon.status, 401, 'the API wants a token');
  t.notMatch(await anon.text(), new RegExp(RECORDED_CAMERA.replace(/\./g, '\\.')), 'and shows no data without one');
  t.equal((await fetch(`${base}/`)).status, 200, 'the console page itself loads without one');

  const browser = await launchChromium(t);
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const pageErrors: string[] = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.goto(`${base}/`);
  await page.waitForSelector('#token-dialog[open]', { timeout: WAIT });
  t.pass('asked for a token');
  await page.fill('#token-input', 'not-the-right-token-at-all');
  await page.click('#token-form button[type="submit"]');
  await page.waitForFunction(() => {
    const d = document.getElementById('token-dialog') as HTMLDialogElement;
    const e = document.getElementById('token-error')!;
    return d.open && !e.hidden && /not accepted/.test(e.textContent ?? '');
  }, undefined, { timeout: WAIT });
  t.pass('a wrong token: asked again, saying it was not accepted');
  await page.fill('#token-input', VIEWER);
  await page.click('#token-form button[type="submit"]');
  await page.waitForSelector('body[data-ready="true"]', { timeout: WAIT });
  t.equal(await page.evaluate(() => sessionStorage.getItem('camtap.token')), VIEWER, 'kept for the tab (sessionStorage)');
  t.match(await page.$eval('#whoami', (e) => e.textContent ?? ''), /vera · viewer/, 'shows who is signed in');
  await page.waitForSelector(`#camera-list [data-camera="${RECORDED_CAMERA}"]`, { timeout: WAIT });
  await page.click(`#camera-list [data-camera="${RECORDED_CAMERA}"]`);
  await playing(page);
  const adv = await advances(page, 1);
  t.ok(adv.to > adv.from, 'the recording plays with the token (Bearer on the fMP4 fetch)');
  t.match(await page.$eval('#download-mp4', (a) => (a as HTMLAnchorElement).href), new RegExp(`access_token=${VIEWER}`), 'download links carry ?access_token=');
  const mp4 = await fetch(await page.$eval('#download-mp4', (a) => (a as HTMLAnchorElement).href));
  t.equal(mp4.status, 200, 'and the server takes it');
  await mp4.body?.cancel();
  const foApi = (await fetch(`${base}/api/failover`, { headers: { authorization: `Bearer ${VIEWER}` } })).status;
  if (foApi !== 404) {
    await page.waitForSelector('#failover-body [data-vms]', { timeout: WAIT });
    const disabled = await page.$$eval('#failover-body [data-vms] button', (bs) => bs.every((b) => (b as HTMLButtonElement).disabled));
    t.ok(disabled, 'a viewer’s failover buttons are disabled');
    t.match(await page.$eval('#failover-body', (e) => e.textContent ?? ''), /viewer/, 'with a note saying why');
  }
  t.same(pageErrors, [], 'no script errors in the page');
});
