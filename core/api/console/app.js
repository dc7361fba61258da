// camtap web console: one page over the HTTP API (core/api/*). Plain ES module, no
// framework, nothing loaded from elsewhere.
//
// - Auth: when the API answers 401 the page asks for a token, keeps it in sessionStorage
//   (this tab only) and sends it as `Authorization: Bearer` on every fetch (the fMP4
//   video too: it is read with fetch), and as `?access_token=` on URLs the browser loads
//   by itself (the alert event stream, download links).
// - Video: fragmented MP4 read with fetch and appended to a Media Source Extensions
//   SourceBuffer (core/api/media-routes.ts); the answer's Content-Type carries the codec
//   string, X-Camtap-Start the capture time of media time 0 (recordings).
// - Everything from the network is put in the page as text (textContent), never as HTML:
//   camera and VMS names come from captured traffic.
// - Optional parts of the API (taps, failover, alerts) may be absent: a 404 shows a note.
//
// State the e2e test reads: #player[data-state|data-mode|data-camera|data-stream|
// data-start|data-media-start|data-wall], and .tl-coverage / .tl-gap / .tl-failover in #timeline.

const TOKEN_KEY = 'camtap.token';
const LIVE_WINDOW_S = 15; // a stream whose last packet is newer than this is live
const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------------ helpers

/** Element builder: h('li', {class: 'x', onclick}, 'text', child). Strings become text nodes. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

const pad = (n, w = 2) => String(n).padStart(w, '0');
function fmtTime(ms, withDate = true) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '--';
  const d = new Date(ms);
  const t = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return withDate ? `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${t}` : t;
}
function fmtAgo(ms) {
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}
function fmtDuration(sec) {
  if (sec < 60) return `${sec.toFixed(sec < 10 ? 1 : 0)} s`;
  if (sec < 3600) return `${Math.floor(sec / 60)} min ${Math.round(sec % 60)} s`;
  return `${Math.floor(sec / 3600)} h ${Math.round((sec % 3600) / 60)} min`;
}
function fmtCount(n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '–';
  return n.toLocaleString('en-US');
}
function fmtBytes(n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${u[i]}`;
}
const parseMs = (iso) => (iso ? Date.parse(iso) : NaN);

function toast(text, kind = '') {
  const el = h('div', { class: `toast ${kind}` }, text);
  $('toasts').append(el);
  setTimeout(() => el.remove(), 6000);
}

// ------------------------------------------------------------------ API and auth

let tokenPrompt = null;

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function authHeaders() {
  const t = token();
  // X-Requested-With: the API then answers 401 without a Basic challenge (no browser password prompt).
  return { 'X-Requested-With': 'camtap-console', ...(t ? { Authorization: `Bearer ${t}` } : {}) };
}

/** A URL the browser loads by itself (EventSource, a download link): the token rides in the query. */
function withToken(url) {
  const t = token();
  if (!t) return url;
  return `${url}${url.includes('?') ? '&' : '?'}access_token=${encodeURIComponent(t)}`;
}

/** Asks for a token (once for all requests waiting on it). */
function askToken(message) {
  tokenPrompt ??= new Promise((resolve) => {
    const dlg = $('token-dialog');
    const err = $('token-error');
    err.hidden = !message;
    err.textContent = message ?? '';
    $('token-input').value = '';
    const onClose = () => {
      const v = $('token-input').value.trim();
      if (!v) {
        // Closed with Escape: ask again; nothing works without it.
        setTimeout(() => dlg.showModal(), 0);
        return;
      }
      dlg.removeEventListener('close', onClose);
      sessionStorage.setItem(TOKEN_KEY, v);
      tokenPrompt = null;
      resolve();
    };
    dlg.addEventListener('close', onClose);
    dlg.showModal();
  });
  return tokenPrompt;
}

/**
 * fetch with the token; on 401 asks for one and tries again. Answers {status, data}:
 * data is the parsed JSON (or null). 404 and other errors are answers, not exceptions.
 */
async function api(path, opts = {}) {
  for (let attempt = 0; attempt < 5; attempt++) {
    let res;
    try {
      res = await fetch(path, { ...opts, headers: { Accept: 'application/json', ...authHeaders(), ...(opts.headers ?? {}) } });
    } catch (e) {
      return { status: 0, data: null, error: String(e) };
    }
    if (res.status === 401) {
      await askToken(token() ? 'That token was not accepted.' : null);
      continue;
    }
    const data = await res.json().catch(() => null);
    return { status: res.status, data };
  }
  return { status: 401, data: null };
}

// ------------------------------------------------------------------ state

const state = {
  me: null,
  inventory: { vms: [], cameras: [] },
  streams: [],
  failover: undefined, // undefined: not loaded; null: API absent (404)
  camera: null, // selected camera name
  mode: null, // 'live' | 'recorded'
  timeline: null,
  range: 'fit',
};

/** Cameras: the inventory's and any a stream names, with their media streams and state. */
function cameraViews() {
  const byName = new Map();
  for (const c of state.inventory.cameras ?? []) byName.set(c.name, { name: c.name, address: c.address, codecs: c.codecs ?? [], vms: c.vms ?? [], streams: [] });
  for (const st of state.streams) {
    if (st.direction === 'client->server') continue;
    let v = byName.get(st.camera);
    if (!v) {
      v = { name: st.camera, address: st.camera, codecs: [], vms: [], streams: [] };
      byName.set(st.camera, v);
    }
    v.streams.push(st);
    if (st.codec && !v.codecs.includes(st.codec)) v.codecs.push(st.codec);
  }
  for (const v of byName.values()) {
    const last = Math.max(-Infinity, ...v.streams.map((x) => parseMs(x.end)));
    v.lastMs = Number.isFinite(last) ? last : null;
    v.live = v.lastMs !== null && Date.now() - v.lastMs < LIVE_WINDOW_S * 1000;
  }
  return [...byName.values()].sort((a, b) => Number(b.live) - Number(a.live) || a.name.localeCompare(b.name));
}

// ------------------------------------------------------------------ inventory

async function loadInventory() {
  const [inv, streams] = await Promise.all([api('/api/inventory'), api('/api/streams')]);
  if (inv.status === 200) state.inventory = inv.data;
  if (streams.status === 200) state.streams = streams.data;
  renderInventory();
}

function vmsState(v) {
  const fo = state.failover;
  if (fo) {
    const running = (fo.failover ?? []).find((f) => f.vms === v.name || f.vms === v.address);
    if (running?.active) return { cls: 'warn', text: 'failed over' };
    const hs = (fo.health ?? []).find((x) => x.vms === v.name || x.vms === v.address);
    if (hs) {
      const bad = /fail|down|suspect|restor/i.test(hs.state);
      return { cls: bad ? (/suspect|restor/i.test(hs.state) ? 'warn' : 'bad') : 'live', text: hs.state };
    }
  }
  const seen = parseMs(v.lastSeen);
  return { cls: Date.now() - seen < 60_000 ? 'live' : '', text: Number.isNaN(seen) ? 'seen' : `seen ${fmtAgo(seen)}` };
}

function renderInventory() {
  const vmsList = $('vms-list');
  const vms = state.inventory.vms ?? [];
  vmsList.replaceChildren(
    ...(vms.length
      ? vms.map((v) => {
          const st = vmsState(v);
          return h(
            'li',
            { class: 'item', dataset: { vms: v.name } },
            h('span', { class: `dot ${st.cls}` }),
            h('div', { class: 'main' }, h('div', { class: 'title' }, v.name), h('div', { class: 'detail' }, `${v.address} · ${v.cameras?.length ?? 0} camera${v.cameras?.length === 1 ? '' : 's'} · ${st.text}`)),
          );
        })
      : [h('li', { class: 'empty' }, 'No VMS seen yet.')]),
  );
  const cams = cameraViews();
  const list = $('camera-list');
  list.replaceChildren(
    ...(cams.length
      ? cams.map((c) =>
          h(
            'li',
            { class: `item${c.name === state.camera ? ' selected' : ''}`, dataset: { camera: c.name }, onclick: () => selectCamera(c.name), title: `Watch ${c.name}` },
            h('span', { class: `dot ${c.live ? 'live' : c.streams.length ? 'recorded' : ''}` }),
            h(
              'div',
              { class: 'main' },
              h('div', { class: 'title' }, c.name),
              h('div', { class: 'detail' }, [c.address !== c.name ? c.address : null, c.codecs.join(', ') || null, c.live ? 'live' : c.lastMs ? `last ${fmtAgo(c.lastMs)}` : 'no video'].filter(Boolean).join(' · ')),
            ),
            c.live ? h('span', { class: 'pill pill-ok' }, 'live') : null,
          ),
        )
      : [h('li', { class: 'empty' }, 'No camera seen yet.')]),
  );
  $('inventory-count').textContent = `${vms.length} VMS · ${cams.length} camera${cams.length === 1 ? '' : 's'}`;
}

function selectCamera(name) {
  if (state.camera !== name) {
    state.camera = name;
    state.range = 'fit';
    for (const b of document.querySelectorAll('[data-range]')) b.setAttribute('aria-pressed', String(b.dataset.range === 'fit'));
  }
  renderInventory();
  const cam = cameraViews().find((c) => c.name === name);
  $('player-title').textContent = name;
  $('timeline-camera').textContent = `· ${name}`;
  void loadTimeline();
  if (cam?.live) void playLive();
  else void playRecorded(null);
}

// ------------------------------------------------------------------ player (MSE)

class MsePlayer {
  constructor(video) {
    this.video = video;
    this.gen = 0;
    this.ac = null;
    this.mediaStartMs = null; // capture time of media time `base` (recordings)
    this.base = null; // media time of the first buffered frame
    this.pendingSeekMs = null;
    this.live = false;
  }

  setState(st, message) {
    this.video.dataset.state = st;
    const o = $('player-overlay');
    o.hidden = st === 'playing';
    o.classList.toggle('error', st === 'error');
    if (message !== undefined) o.textContent = message;
    $('player-status').textContent = st === 'playing' ? '' : st === 'error' ? 'error' : st;
  }

  stop() {
    this.gen++;
    this.ac?.abort();
    this.ac = null;
    if (this.video.src) {
      this.video.removeAttribute('src');
      this.video.load();
    }
  }

  /** Wall-clock time (ms) of what is on screen, for recordings. */
  wallMs() {
    if (this.live) return Date.now();
    if (this.mediaStartMs === null || this.base === null) return null;
    return this.mediaStartMs + (this.video.currentTime - this.base) * 1000;
  }

  /** Plays the fMP4 at `url`; `seekToMs` (recordings) is the capture time to show first. */
  async play({ url, live, seekToMs = null, fallbackMime = null }) {
    this.stop();
    const gen = this.gen;
    const ac = new AbortController();
    this.ac = ac;
    this.live = live;
    this.mediaStartMs = null;
    this.base = null;
    this.pendingSeekMs = seekToMs;
    const v = this.video;
    this.setState('loading', live ? 'Connecting to the live feed…' : 'Loading the recording…');
    const ms = new MediaSource();
    const objectUrl = URL.createObjectURL(ms);
    v.src = objectUrl;
    await new Promise((r) => ms.addEventListener('sourceopen', r, { once: true }));
    URL.revokeObjectURL(objectUrl);
    if (gen !== this.gen) return;
    let res;
    for (;;) {
      try {
        res = await fetch(url, { signal: ac.signal, headers: authHeaders() });
      } catch (e) {
        if (gen === this.gen) this.setState('error', `The video could not be loaded: ${e.message ?? e}`);
        return;
      }
      if (res.status !== 401) break;
      await askToken(token() ? 'That token was not accepted.' : null);
      if (gen !== this.gen) return;
    }
    if (gen !== this.gen) return;
    if (!res.ok) {
      const j = await res.json().catch(() => null);
      this.setState('error', j?.message ?? `The server answered ${res.status}.`);
      return;
    }
    const type = res.headers.get('content-type') ?? '';
    const mime = /codecs=/.test(type) ? type : (fallbackMime ?? 'video/mp4; codecs="avc1.42e01e"');
    if (!window.MediaSource || !MediaSource.isTypeSupported(mime)) {
      this.setState('error', `This browser cannot play ${mime}.`);
      ac.abort();
      return;
    }
    $('player-codec').textContent = `${mime.replace(/^video\/mp4;\s*codecs=/, '').replace(/"/g, '')}${res.headers.get('x-camtap-transcoded') === 'true' ? ' (re-encoded for the browser)' : ''}`;
    const startHeader = res.headers.get('x-camtap-start');
    this.mediaStartMs = startHeader ? Date.parse(startHeader) : null;
    v.dataset.mediaStart = startHeader ?? '';
    const sb = ms.addSourceBuffer(mime);
    const reader = res.body.getReader();
    let lastTrim = performance.now();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (gen !== this.gen) return;
        if (done) break;
        await this.append(sb, value, gen);
        if (gen !== this.gen) return;
        if (this.base === null && sb.buffered.length > 0) {
          this.base = sb.buffered.start(0);
          v.currentTime = this.base;
          v.play().catch(() => undefined);
        }
        this.applyPendingSeek(sb);
        if (live) {
          // Stay near the live edge; keep at most 30 s behind it in memory.
          const end = sb.buffered.length ? sb.buffered.end(sb.buffered.length - 1) : 0;
          if (end - v.currentTime > 4) v.currentTime = end - 0.5;
          if (performance.now() - lastTrim > 10_000 && v.currentTime - 30 > (sb.buffered.length ? sb.buffered.start(0) : 0)) {
            lastTrim = performance.now();
            await this.remove(sb, 0, v.currentTime - 30, gen);
          }
        } else {
          // Recordings come at real time; should one come faster, hold the reader (TCP holds the server).
          while (gen === this.gen && sb.buffered.length && sb.buffered.end(sb.buffered.length - 1) - v.currentTime > 90) await new Promise((r) => setTimeout(r, 500));
        }
      }
      await this.idle(sb);
      if (gen === this.gen && ms.readyState === 'open') ms.endOfStream();
      if (live) this.retryLive(gen, url, 'The live feed ended; reconnecting…');
    } catch (e) {
      if (gen !== this.gen || e.name === 'AbortError') return;
      if (live) this.retryLive(gen, url, `The live feed stopped (${e.message ?? e}); reconnecting…`);
      else this.setState('error', `Playback stopped: ${e.message ?? e}`);
    }
  }

  /** A live feed that ends (camera reconnecting, camtap restarting) is asked for again after a pause. */
  retryLive(gen, url, message) {
    this.setState('loading', message);
    setTimeout(() => {
      if (gen === this.gen) void this.play({ url, live: true });
    }, 3000);
  }

  applyPendingSeek(sb) {
    if (this.pendingSeekMs === null || this.mediaStartMs === null || this.base === null || !sb.buffered.length) return;
    const target = this.base + (this.pendingSeekMs - this.mediaStartMs) / 1000;
    const end = sb.buffered.end(sb.buffered.length - 1);
    if (target <= this.base) {
      this.pendingSeekMs = null;
    } else if (target <= end) {
      this.video.currentTime = target;
      this.pendingSeekMs = null;
    }
  }

  idle(sb) {
    return sb.updating ? new Promise((r) => sb.addEventListener('updateend', r, { once: true })) : Promise.resolve();
  }

  async append(sb, chunk, gen) {
    await this.idle(sb);
    for (let tries = 0; tries < 3; tries++) {
      try {
        sb.appendBuffer(chunk);
        await new Promise((resolve, reject) => {
          sb.addEventListener('updateend', resolve, { once: true });
          sb.addEventListener('error', () => reject(new Error('the browser could not decode the video')), { once: true });
        });
        return;
      } catch (e) {
        if (e.name !== 'QuotaExceededError' || gen !== this.gen) throw e;
        // Full: drop what was played already and try again.
        await this.remove(sb, 0, Math.max(0, this.video.currentTime - 5), gen);
      }
    }
  }

  async remove(sb, from, to, gen) {
    if (to <= from || gen !== this.gen) return;
    await this.idle(sb);
    sb.remove(from, to);
    await this.idle(sb);
  }
}

const player = new MsePlayer($('player'));

function setMode(mode) {
  state.mode = mode;
  $('mode-live').setAttribute('aria-pressed', String(mode === 'live'));
  $('mode-recorded').setAttribute('aria-pressed', String(mode === 'recorded'));
  $('player').dataset.mode = mode;
  $('live-badge').hidden = mode !== 'live';
}

async function playLive() {
  if (!state.camera) return;
  setMode('live');
  const v = $('player');
  v.dataset.camera = state.camera;
  v.dataset.stream = '';
  v.dataset.start = '';
  $('download-mp4').hidden = true;
  $('download-pcap').hidden = true;
  await player.play({ url: `/api/live/${encodeURIComponent(state.camera)}/fmp4`, live: true });
}

/** The camera's stream to replay at `atMs` (H.264 and the most data first), or its latest. */
function streamAt(atMs) {
  const cam = cameraViews().find((c) => c.name === state.camera);
  const streams = (cam?.streams ?? []).filter((x) => x.codec);
  if (!streams.length) return null;
  const score = (x) => (x.codec === 'H264' ? 1e12 : 0) + (x.packets ?? 0);
  if (atMs !== null) {
    const covering = streams.filter((x) => parseMs(x.start) <= atMs + 1000 && parseMs(x.end) >= atMs);
    if (covering.length) return covering.sort((a, b) => score(b) - score(a))[0];
    // In a gap: the next stream after it, else the last before it.
    const after = streams.filter((x) => parseMs(x.start) > atMs).sort((a, b) => parseMs(a.start) - parseMs(b.start));
    if (after.length) return after[0];
  }
  return [...streams].sort((a, b) => parseMs(b.end) - parseMs(a.end) || score(b) - score(a))[0];
}

/** Plays the selected camera's recording from `atMs` (null: its latest recording from its start). */
async function playRecorded(atMs) {
  if (!state.camera) return;
  setMode('recorded');
  const st = streamAt(atMs);
  const v = $('player');
  v.dataset.camera = state.camera;
  if (!st) {
    player.stop();
    player.setState('error', 'Nothing of this camera is recorded.');
    return;
  }
  const startMs = atMs !== null && atMs > parseMs(st.start) ? Math.min(atMs, parseMs(st.end)) : null;
  const startIso = startMs !== null ? new Date(startMs).toISOString() : st.start;
  v.dataset.stream = st.id;
  v.dataset.start = startIso;
  const q = startMs !== null ? `?start=${encodeURIComponent(startIso)}` : '';
  const dl = (fmt) => withToken(`/api/streams/${encodeURIComponent(st.id)}/${fmt}${q}`);
  $('download-mp4').href = dl('mp4');
  $('download-pcap').href = dl('pcap');
  $('download-mp4').hidden = false;
  $('download-pcap').hidden = false;
  drawPlayhead();
  await player.play({ url: `/api/streams/${encodeURIComponent(st.id)}/fmp4${q}`, live: false, seekToMs: startMs });
}

$('mode-live').addEventListener('click', () => void playLive());
$('mode-recorded').addEventListener('click', () => void playRecorded(null));
$('player').addEventListener('playing', () => player.setState('playing'));
$('player').addEventListener('waiting', () => {
  if ($('player').dataset.state === 'playing') $('player-status').textContent = 'buffering…';
});
$('player').addEventListener('timeupdate', () => {
  const w = player.wallMs();
  $('player').dataset.wall = w === null ? '' : new Date(w).toISOString();
  $('player-clock').textContent = state.mode === 'live' ? `LIVE · ${fmtTime(Date.now())}` : fmtTime(w);
  if ($('player').dataset.state === 'playing') $('player-status').textContent = '';
  drawPlayhead();
});

// ------------------------------------------------------------------ timeline

const TL = { height: 112, left: 70, right: 12, covY: 10, covH: 34, foY: 52, foH: 14, axisY: 78 };
let tlView = null; // {startMs, endMs, width}
let hoverPx = -10; // where the pointer is over the timeline (kept across redraws)

function rangeFor(mode) {
  const now = Date.now();
  if (mode === '1h') return { start: now - 3600_000, end: now };
  if (mode === '24h') return { start: now - 86400_000, end: now };
  if (mode === '7d') return { start: now - 7 * 86400_000, end: now };
  return null;
}

async function loadTimeline() {
  const cam = state.camera;
  if (!cam) return;
  const r = rangeFor(state.range);
  const q = new URLSearchParams({ camera: cam });
  if (r) {
    q.set('start', new Date(r.start).toISOString());
    q.set('end', new Date(r.end).toISOString());
  }
  const res = await api(`/api/timeline?${q}`);
  if (cam !== state.camera) return;
  if (res.status !== 200) {
    state.timeline = null;
    $('timeline-summary').textContent = res.data?.message ?? 'No timeline.';
    drawTimeline();
    return;
  }
  state.timeline = { ...res.data, camera: res.data.cameras[0] ?? null, range: r };
  drawTimeline();
}

function niceStep(spanMs, px) {
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800].map((x) => x * 1000);
  const want = spanMs / Math.max(2, px / 110);
  return steps.find((x) => x >= want) ?? steps[steps.length - 1];
}

function drawTimeline() {
  const svg = $('timeline');
  const width = Math.max(200, svg.getBoundingClientRect().width || 800);
  svg.setAttribute('viewBox', `0 0 ${width} ${TL.height}`);
  const tl = state.timeline;
  const cam = tl?.camera;
  const defs = s('defs', {}, s('pattern', { id: 'tl-hatch', width: 6, height: 6, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' }, s('rect', { width: 6, height: 6, fill: '#fee2e2' }), s('rect', { width: 2, height: 6, fill: '#f87171' })));
  const kids = [defs];
  if (!tl || !cam || !tl.start || !tl.end) {
    kids.push(s('text', { x: width / 2, y: TL.height / 2, 'text-anchor': 'middle', class: 'tl-label' }, state.camera ? 'No recording in this range.' : 'Select a camera.'));
    svg.replaceChildren(...kids);
    tlView = null;
    $('timeline-summary').textContent = '';
    return;
  }
  let startMs = parseMs(tl.start);
  let endMs = parseMs(tl.end);
  if (!tl.range) {
    // The whole recording, with a margin so its ends are visible; a live camera's reaches now.
    if (cameraViews().find((c) => c.name === state.camera)?.live) endMs = Math.max(endMs, Date.now() + 1000);
    const pad = Math.max((endMs - startMs) * 0.04, 2000);
    startMs -= pad;
    endMs += pad;
  }
  if (endMs <= startMs) endMs = startMs + 1000;
  const plotW = width - TL.left - TL.right;
  const x = (ms) => TL.left + ((ms - startMs) / (endMs - startMs)) * plotW;
  tlView = { startMs, endMs, width, x };

  kids.push(s('text', { x: 8, y: TL.covY + TL.covH / 2 + 4, class: 'tl-lane-label' }, 'Recorded'));
  kids.push(s('text', { x: 8, y: TL.foY + TL.foH / 2 + 4, class: 'tl-lane-label' }, 'Failover'));
  kids.push(s('rect', { x: TL.left, y: TL.covY, width: plotW, height: TL.covH, rx: 4, class: 'tl-track' }));
  kids.push(s('rect', { x: TL.left, y: TL.foY, width: plotW, height: TL.foH, rx: 3, class: 'tl-failover-lane' }));
  const rect = (a, b, y, hgt, cls, title) => {
    const x0 = Math.max(TL.left, x(a));
    const x1 = Math.min(TL.left + plotW, x(b));
    if (x1 < TL.left || x0 > TL.left + plotW) return null;
    const el = s('rect', { x: x0, y, width: Math.max(1.5, x1 - x0), height: hgt, class: cls, 'data-start': new Date(a).toISOString(), 'data-end': new Date(b).toISOString() });
    el.append(s('title', {}, title));
    return el;
  };
  for (const g of cam.gaps) {
    const a = parseMs(g.start);
    const b = parseMs(g.end);
    const el = rect(a, b, TL.covY, TL.covH, 'tl-gap', `Gap ${fmtTime(a)} – ${fmtTime(b)} (${fmtDuration((b - a) / 1000)})`);
    if (el) kids.push(el);
  }
  let recorded = 0;
  const isLive = cameraViews().find((c) => c.name === state.camera)?.live === true;
  const lastEnd = cam.coverage.length ? parseMs(cam.coverage[cam.coverage.length - 1].end) : null;
  for (const c of cam.coverage) {
    const a = parseMs(c.start);
    // A live camera is being recorded now: its last interval runs on between refreshes.
    const b = isLive && !tl.range && parseMs(c.end) === lastEnd ? Math.max(lastEnd, Date.now()) : parseMs(c.end);
    recorded += b - a;
    const el = rect(a, b, TL.covY, TL.covH, 'tl-coverage', `Recorded ${fmtTime(a)} – ${fmtTime(b)} (${fmtDuration((b - a) / 1000)})`);
    if (el) kids.push(el);
  }
  for (const f of cam.failover) {
    const a = parseMs(f.start);
    const b = f.end ? parseMs(f.end) : Date.now();
    const el = rect(a, b, TL.foY, TL.foH, 'tl-failover', `Failover of ${f.vms}: ${fmtTime(a)} – ${f.end ? fmtTime(b) : 'running'}`);
    if (el) kids.push(el);
  }
  // Axis
  kids.push(s('line', { x1: TL.left, x2: TL.left + plotW, y1: TL.axisY, y2: TL.axisY, class: 'tl-axis' }));
  const step = niceStep(endMs - startMs, plotW);
  const tz = new Date().getTimezoneOffset() * 60_000;
  const showDate = endMs - startMs > 86400_000 || new Date(startMs).getDate() !== new Date(endMs).getDate();
  for (let t = Math.ceil((startMs - tz) / step) * step + tz; t <= endMs; t += step) {
    const xt = x(t);
    kids.push(s('line', { x1: xt, x2: xt, y1: TL.axisY, y2: TL.axisY + 5, class: 'tl-tick' }));
    const d = new Date(t);
    const label = step >= 86400_000 ? `${d.getMonth() + 1}/${d.getDate()}` : step >= 60_000 ? `${showDate && d.getHours() === 0 && d.getMinutes() === 0 ? `${d.getMonth() + 1}/${d.getDate()} ` : ''}${pad(d.getHours())}:${pad(d.getMinutes())}` : `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    kids.push(s('text', { x: xt, y: TL.axisY + 18, 'text-anchor': 'middle', class: 'tl-label' }, label));
  }
  const now = Date.now();
  if (now >= startMs && now <= endMs) kids.push(s('line', { x1: x(now), x2: x(now), y1: TL.covY - 4, y2: TL.axisY, class: 'tl-now' }));
  kids.push(s('g', { id: 'tl-playhead-g' }));
  kids.push(s('line', { id: 'tl-hover', x1: hoverPx, x2: hoverPx, y1: TL.covY - 4, y2: TL.axisY, class: 'tl-hover' }));
  svg.replaceChildren(...kids);
  const span = ((isLive && !tl.range ? Math.max(parseMs(tl.end), Date.now()) : parseMs(tl.end)) - parseMs(tl.start)) / 1000;
  $('timeline-summary').textContent = `${cam.coverage.length} recorded interval${cam.coverage.length === 1 ? '' : 's'} · ${fmtDuration(recorded / 1000)} recorded of ${fmtDuration(Math.max(0, span))} · ${cam.gaps.length} gap${cam.gaps.length === 1 ? '' : 's'}${tl.failoverKnown ? ` · ${cam.failover.length} failover period${cam.failover.length === 1 ? '' : 's'}` : ''}`;
  drawPlayhead();
}

function drawPlayhead() {
  const g = document.getElementById('tl-playhead-g');
  if (!g || !tlView) return;
  const w = state.mode === 'live' ? Date.now() : player.wallMs() ?? parseMs($('player').dataset.start);
  if (w === null || Number.isNaN(w) || w < tlView.startMs || w > tlView.endMs) {
    g.replaceChildren();
    return;
  }
  const xp = tlView.x(w);
  g.replaceChildren(s('line', { x1: xp, x2: xp, y1: TL.covY - 6, y2: TL.foY + TL.foH + 2, class: 'tl-playhead' }), s('circle', { cx: xp, cy: TL.covY - 6, r: 4, class: 'tl-playhead-knob' }));
}

function timeAtEvent(ev) {
  if (!tlView) return null;
  const svg = $('timeline');
  const box = svg.getBoundingClientRect();
  const px = ((ev.clientX - box.left) / box.width) * tlView.width;
  const plotW = tlView.width - TL.left - TL.right;
  if (px < TL.left || px > TL.left + plotW) return null;
  return { ms: tlView.startMs + ((px - TL.left) / plotW) * (tlView.endMs - tlView.startMs), px, box };
}

$('timeline').addEventListener('click', (ev) => {
  const at = timeAtEvent(ev);
  if (!at || !state.camera) return;
  let ms = at.ms;
  // A click in a gap plays from the next recorded moment.
  const cov = state.timeline?.camera?.coverage ?? [];
  if (!cov.some((c) => parseMs(c.start) <= ms && parseMs(c.end) >= ms)) {
    const next = cov.map((c) => parseMs(c.start)).filter((a) => a > ms).sort((a, b) => a - b)[0];
    if (next === undefined) return toast('Nothing is recorded after that moment.');
    ms = next;
  }
  void playRecorded(ms);
});
$('timeline').addEventListener('mousemove', (ev) => {
  const at = timeAtEvent(ev);
  const tip = $('timeline-tip');
  const hover = document.getElementById('tl-hover');
  hoverPx = at ? at.px : -10;
  if (!at) {
    tip.hidden = true;
    hover?.setAttribute('x1', '-10');
    hover?.setAttribute('x2', '-10');
    return;
  }
  hover?.setAttribute('x1', String(at.px));
  hover?.setAttribute('x2', String(at.px));
  tip.hidden = false;
  tip.textContent = fmtTime(at.ms);
  tip.style.left = `${(at.px / tlView.width) * at.box.width}px`;
});
$('timeline').addEventListener('mouseleave', () => {
  $('timeline-tip').hidden = true;
  hoverPx = -10;
  document.getElementById('tl-hover')?.setAttribute('x1', '-10');
  document.getElementById('tl-hover')?.setAttribute('x2', '-10');
});
for (const b of document.querySelectorAll('[data-range]')) {
  b.addEventListener('click', () => {
    state.range = b.dataset.range;
    for (const o of document.querySelectorAll('[data-range]')) o.setAttribute('aria-pressed', String(o === b));
    void loadTimeline();
  });
}
window.addEventListener('resize', () => drawTimeline());

// ------------------------------------------------------------------ taps

function num(o, ...keys) {
  for (const k of keys) {
    const v = k.split('.').reduce((a, p) => (a === null || a === undefined ? undefined : a[p]), o);
    if (typeof v === 'number') return v;
    if (typeof v === 'string' && /^\d+$/.test(v)) return Number(v);
  }
  return undefined;
}

async function loadTaps() {
  const r = await api('/api/taps');
  const body = $('taps-body');
  if (r.status === 404) {
    body.replaceChildren(h('p', { class: 'note' }, 'Tap status is not available from this camtap.'));
    $('taps-count').textContent = '';
    return;
  }
  if (r.status !== 200) {
    body.replaceChildren(h('p', { class: 'note' }, r.data?.message ?? `Tap status could not be loaded (${r.status}).`));
    return;
  }
  const taps = Array.isArray(r.data) ? r.data : (r.data?.taps ?? []);
  $('taps-count').textContent = `${taps.length} tap${taps.length === 1 ? '' : 's'}`;
  if (!taps.length) {
    body.replaceChildren(h('p', { class: 'note' }, 'No taps are configured.'));
    return;
  }
  const rows = taps.map((tp) => {
    const st = tp.status ?? tp;
    const running = tp.running ?? st.running ?? (typeof st.state === 'string' ? /run|open|up|captur/i.test(st.state) : undefined);
    const stateText = typeof st.state === 'string' ? st.state : running === true ? 'running' : running === false ? 'stopped' : (tp.enabled === false ? 'disabled' : '–');
    const drops = num(tp, 'status.drops', 'status.dropped', 'drops', 'dropped', 'status.kernelDrops');
    const error = st.error ?? tp.error;
    return h(
      'tr',
      { dataset: { tap: tp.name ?? '' } },
      h('td', {}, h('div', { class: 'title' }, tp.name ?? tp.id ?? '–'), h('div', { class: 'meta' }, tp.driver ?? '')),
      h('td', { title: error ?? '' }, h('span', { class: `pill ${running === false || /err|down|fail|stop/i.test(stateText) ? 'pill-bad' : running ? 'pill-ok' : 'pill-muted'}` }, stateText), error ? h('div', { class: 'meta' }, error) : null),
      h('td', { class: 'num' }, fmtCount(num(tp, 'status.packets', 'packets', 'status.frames'))),
      h('td', { class: `num${drops ? ' drops-bad' : ''}` }, fmtCount(drops)),
      h('td', { class: 'num' }, fmtBytes(num(tp, 'status.bytes', 'bytes'))),
    );
  });
  body.replaceChildren(
    h(
      'table',
      { class: 'data' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Tap'), h('th', {}, 'State'), h('th', { class: 'num' }, 'Packets'), h('th', { class: 'num' }, 'Drops'), h('th', { class: 'num' }, 'Bytes'))),
      h('tbody', {}, rows),
    ),
  );
}

// ------------------------------------------------------------------ failover

const canOperate = () => !state.me || state.me.role === 'operator' || state.me.role === 'admin';

async function loadFailover() {
  const r = await api('/api/failover');
  const body = $('failover-body');
  if (r.status === 404) {
    state.failover = null;
    const vms = state.inventory.vms ?? [];
    body.replaceChildren(
      h('p', { class: 'note' }, 'Failover is not available from this camtap: the controls are disabled.'),
      ...vms.map((v) => foRow(v, null, true)),
    );
    return;
  }
  if (r.status !== 200) {
    body.replaceChildren(h('p', { class: 'note' }, r.data?.message ?? `Failover status could not be loaded (${r.status}).`));
    return;
  }
  state.failover = r.data;
  renderInventory();
  const vms = [...(state.inventory.vms ?? [])];
  for (const f of r.data.failover ?? []) if (!vms.some((v) => v.name === f.vms)) vms.push({ name: f.vms, address: '', cameras: [] });
  if (!vms.length) {
    body.replaceChildren(h('p', { class: 'note' }, 'No VMS is known yet: nothing to fail over.'));
    return;
  }
  const note = canOperate() ? null : h('p', { class: 'note' }, `Your role (${state.me.role}) may watch but not start or end a failover.`);
  body.replaceChildren(...[note, ...vms.map((v) => foRow(v, (r.data.failover ?? []).find((f) => f.vms === v.name) ?? null, !canOperate()))].filter(Boolean));
}

function foRow(v, status, disabled) {
  const active = status?.active === true;
  const health = state.failover?.health?.find((x) => x.vms === v.name);
  const cams = v.cameras ?? [];
  const detail = active
    ? `camtap holds ${status.cameras?.length ?? cams.length} camera${(status.cameras?.length ?? cams.length) === 1 ? '' : 's'} since ${fmtTime(parseMs(status.current?.start))}`
    : `${cams.length} camera${cams.length === 1 ? '' : 's'}${health ? ` · ${health.state}` : ''}${status?.current?.end ? ` · last failover ended ${fmtAgo(parseMs(status.current.end))}` : ''}`;
  return h(
    'div',
    { class: 'fo-row', dataset: { vms: v.name } },
    h('div', { class: 'main' }, h('div', { class: 'title' }, v.name, ' ', h('span', { class: `pill ${active ? 'pill-warn' : 'pill-muted'}` }, active ? 'failed over' : 'normal')), h('div', { class: 'detail' }, detail)),
    h(
      'div',
      { class: 'fo-actions' },
      h('button', { class: 'btn btn-small', type: 'button', disabled: disabled || active, title: disabled ? 'Not available' : 'Take this VMS’s cameras over', onclick: () => confirmFailover(v, 'start') }, 'Fail over'),
      h('button', { class: 'btn btn-small', type: 'button', disabled: disabled || !active, title: disabled ? 'Not available' : 'Give the cameras back to the VMS', onclick: () => confirmFailover(v, 'end') }, 'Hand back'),
    ),
  );
}

/** The confirmation dialog: resolves {ok, dryRun} (dryRun only when `offerDryRun`). */
function confirmDialog(title, text, okLabel, offerDryRun = false) {
  return new Promise((resolve) => {
    const dlg = $('confirm-dialog');
    $('confirm-title').textContent = title;
    $('confirm-text').textContent = text;
    $('confirm-ok').textContent = okLabel;
    $('confirm-dry-row').hidden = !offerDryRun;
    $('confirm-dry').checked = false;
    dlg.returnValue = '';
    dlg.addEventListener('close', () => resolve({ ok: dlg.returnValue === 'confirm', dryRun: offerDryRun && $('confirm-dry').checked }), { once: true });
    dlg.showModal();
  });
}

async function confirmFailover(v, action) {
  const cams = (v.cameras ?? []).join(', ') || 'its cameras';
  const { ok, dryRun } = await confirmDialog(
    action === 'start' ? `Fail over ${v.name}?` : `Hand ${v.name}'s cameras back?`,
    action === 'start'
      ? `camtap will point ${cams} at itself and record them while ${v.name} is down. ${v.name} stops receiving their video until it is handed back.`
      : `camtap will give ${cams} back to ${v.name}, check that its traffic resumes, and offer the recorded gap.`,
    action === 'start' ? 'Fail over' : 'Hand back',
    true,
  );
  if (!ok) return;
  const r = await api(`/api/failover/${encodeURIComponent(v.name)}/${action}${dryRun ? '?dryRun=true' : ''}`, { method: 'POST' });
  if (r.status >= 200 && r.status < 300) {
    if (dryRun) toast(`Dry run for ${v.name}: nothing was sent (the plan is in the API answer and camtap failover plan).`, 'ok');
    else toast(action === 'start' ? `Failover of ${v.name} started.` : `${v.name}'s cameras handed back.`, 'ok');
  } else toast(r.data?.message ?? `The request failed (${r.status}).`, 'bad');
  await loadFailover();
  void loadTimeline();
}

// ------------------------------------------------------------------ alerts

// GET /api/alerts: {active, recent}; /api/alerts/stream: `snapshot` {active}, then
// `fired` / `resolved` / `acked` with the alert (core/api/alert-routes.ts).
let alertSource = null;
const alerts = new Map(); // id -> alert
const freshIds = new Set();

function alertRow(a) {
  const sev = String(a.severity ?? 'info').toLowerCase();
  const resolved = Boolean(a.resolvedAt);
  const cls = resolved ? 'pill-ok' : sev === 'critical' ? 'pill-bad' : sev === 'warning' ? 'pill-warn' : 'pill-info';
  const at = parseMs(resolved ? a.resolvedAt : a.firedAt);
  const ack = !resolved && !a.ackedAt && canOperate() ? h('button', { class: 'btn btn-small', type: 'button', onclick: () => void ackAlert(a) }, 'Acknowledge') : a.ackedAt && !resolved ? h('span', { class: 'meta' }, `seen by ${a.ackedBy ?? 'someone'}`) : h('span');
  return h(
    'li',
    { class: `alert${resolved ? ' resolved' : ''}${freshIds.has(a.id) ? ' fresh' : ''}`, dataset: { alert: a.id ?? '', kind: a.kind ?? '' } },
    h('span', { class: 'when', title: Number.isNaN(at) ? '' : fmtTime(at) }, Number.isNaN(at) ? '' : fmtTime(at, false)),
    h('span', {}, h('span', { class: `pill ${cls}` }, resolved ? `${a.kind} · resolved` : (a.kind ?? sev))),
    h('span', { class: 'what' }, a.subject ? h('span', { class: 'subject' }, a.subject) : null, a.message ?? ''),
    ack,
  );
}

function renderAlerts() {
  const list = $('alerts-list');
  const all = [...alerts.values()];
  const active = all.filter((a) => !a.resolvedAt).sort((x, y) => parseMs(y.firedAt) - parseMs(x.firedAt));
  const recent = all.filter((a) => a.resolvedAt).sort((x, y) => parseMs(y.resolvedAt) - parseMs(x.resolvedAt)).slice(0, 50);
  if (!active.length && !recent.length) {
    list.replaceChildren(h('li', { class: 'empty' }, 'No alerts.'));
    return;
  }
  list.replaceChildren(...active.map(alertRow), ...recent.map(alertRow));
  freshIds.clear();
}

async function ackAlert(a) {
  const r = await api(`/api/alerts/${encodeURIComponent(a.id)}/ack`, { method: 'POST' });
  if (r.status === 200 && r.data) alerts.set(r.data.id, r.data);
  else toast(r.data?.message ?? `Could not acknowledge (${r.status}).`, 'bad');
  renderAlerts();
}

async function loadAlerts() {
  const r = await api('/api/alerts');
  if (r.status === 404) {
    $('alerts-list').replaceChildren(h('li', { class: 'empty note' }, 'Alerts are not available from this camtap.'));
    return false;
  }
  if (r.status !== 200) {
    $('alerts-list').replaceChildren(h('li', { class: 'empty' }, r.data?.message ?? `Alerts could not be loaded (${r.status}).`));
    return true;
  }
  const list = Array.isArray(r.data) ? r.data : [...(r.data?.active ?? []), ...(r.data?.recent ?? [])];
  alerts.clear();
  for (const a of list) if (a?.id) alerts.set(a.id, a);
  renderAlerts();
  return true;
}

function streamAlerts() {
  if (alertSource || !window.EventSource) return;
  const es = new EventSource(withToken('/api/alerts/stream'));
  alertSource = es;
  const onEvent = (ev) => {
    let d;
    try {
      d = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (ev.type === 'snapshot') {
      for (const [id, a] of alerts) if (!a.resolvedAt) alerts.delete(id);
      for (const a of d.active ?? []) alerts.set(a.id, a);
    } else if (d?.id) {
      if (ev.type === 'fired') freshIds.add(d.id);
      alerts.set(d.id, d);
      if (ev.type === 'fired') toast(`${d.severity === 'critical' ? 'Critical: ' : ''}${d.message}`, d.severity === 'critical' ? 'bad' : '');
    }
    renderAlerts();
  };
  for (const type of ['snapshot', 'fired', 'resolved', 'acked', 'message']) es.addEventListener(type, onEvent);
  es.addEventListener('open', () => ($('alerts-live').hidden = false));
  es.addEventListener('error', () => {
    // No stream (404, 401) or the connection dropped: poll instead, and try the stream again later.
    $('alerts-live').hidden = true;
    es.close();
    alertSource = null;
    setTimeout(() => void loadAlerts().then((ok) => ok && streamAlerts()), 15_000);
  });
}

// ------------------------------------------------------------------ start

async function loadHealth() {
  const r = await api('/api/health');
  const el = $('health');
  el.className = `pill ${r.status === 200 ? 'pill-ok' : 'pill-bad'}`;
  el.textContent = r.status === 200 ? 'API ok' : r.status === 0 ? 'API unreachable' : `API ${r.status}`;
}

async function loadMe() {
  const r = await api('/api/auth/me');
  if (r.status !== 200) return;
  state.me = r.data;
  $('whoami').textContent = r.data.auth ? `${r.data.name} · ${r.data.role}` : 'open API (no auth)';
  $('signout').hidden = !r.data.auth || !token();
}

$('signout').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  location.reload();
});

async function main() {
  await loadHealth();
  await loadMe();
  await loadInventory();
  await Promise.all([loadTaps(), loadFailover(), loadAlerts().then((ok) => ok && streamAlerts())]);
  drawTimeline();
  document.body.dataset.ready = 'true';
  setInterval(() => void loadHealth(), 15_000);
  setInterval(() => void loadInventory(), 10_000);
  setInterval(() => void loadTaps(), 5_000);
  setInterval(() => void loadFailover(), 10_000);
  setInterval(() => {
    if (state.camera && !document.hidden) void loadTimeline();
  }, 15_000);
  // Live: the timeline's right end (now) moves on between refreshes.
  setInterval(() => {
    if (state.mode === 'live' && state.timeline && !document.hidden) drawTimeline();
  }, 1_000);
}

void main();
