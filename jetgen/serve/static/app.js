/* jetgen serve: the page. Plain JavaScript, no framework, no build step; talks to the JSON API in
   docs/serve.md. Images arrive as base64 PNG and are decoded with createImageBitmap onto canvases, so the
   Content-Security-Policy can stay at 'self' (no data: or blob: image URLs). */
'use strict';

const $ = (id) => document.getElementById(id);
const state = {
  token: null, info: null, models: [], model: null, labels: [], chips: new Set(),
  kept: [], active: -1, directions: null, offsets: [], resultItem: null, job: null, nextKeep: 1,
};

// ---------------------------------------------------------------- API -----------------------------------------
function readToken() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash || '');
  if (m) {
    sessionStorage.setItem('jetgen-token', decodeURIComponent(m[1]));
    history.replaceState(null, '', location.pathname + location.search);  // keep the token out of the address bar
  }
  state.token = sessionStorage.getItem('jetgen-token');
}

function authHeaders(extra) {
  const h = Object.assign({}, extra || {});
  if (state.token) h.Authorization = 'Bearer ' + state.token;
  return h;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const t0 = performance.now();
  const opts = {method, headers: authHeaders(body === undefined ? {} : {'Content-Type': 'application/json'})};
  if (body !== undefined) opts.body = JSON.stringify(body);
  let res;
  try {
    res = await fetch(path, opts);
  } catch (err) {
    throw new ApiError(0, 'The server did not answer (' + err.message + ').');
  }
  const ms = performance.now() - t0;
  let data = null;
  try { data = await res.json(); } catch (err) { data = null; }
  const timing = /dur=([0-9.]+)/.exec(res.headers.get('Server-Timing') || '');
  showLatency(method, path, res.status, ms, timing ? parseFloat(timing[1]) : null);
  if (res.status === 401) {
    $('token-box').hidden = false;
  }
  if (!res.ok) throw new ApiError(res.status, (data && data.error) || ('HTTP ' + res.status));
  return data;
}

function modelPath(what) {
  return '/api/models/' + encodeURIComponent(state.model.name) + (what ? '/' + what : '');
}

// ---------------------------------------------------------------- status and alerts --------------------------
function showAlert(text) {
  const box = $('alert');
  box.textContent = text || '';
  box.hidden = !text;
}

function fail(err) {
  showAlert(err && err.message ? err.message : String(err));
}

function showLatency(method, path, status, ms, serverMs) {
  state.last = {method, path: path.replace(/^\/api\//, ''), status, ms, serverMs};
  renderStatus();
}

function renderStatus() {
  const parts = [];
  const dev = state.info && state.info.device;
  const m = state.model;
  if (m) {
    parts.push('<b>' + esc(m.name) + '</b>');
    parts.push(esc(m.backend) + ' · ' + esc(m.precision) + (m.providers ? ' · ' + esc(m.providers.join(', ')) : ''));
  }
  if (dev) parts.push(esc(dev.board || (dev.cpu + ' (' + dev.machine + ')')));
  const l = state.last;
  if (l) {
    parts.push(esc(l.method + ' ' + l.path) + ' ' + l.status + ' in <b>' + l.ms.toFixed(0) + ' ms</b>' +
      (l.serverMs != null ? ' (server ' + l.serverMs.toFixed(0) + ' ms)' : ''));
  }
  $('status').innerHTML = parts.join(' · ') || 'connecting…';
}

function esc(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c]));
}

// ---------------------------------------------------------------- images -------------------------------------
async function drawPng(canvas, b64) {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const bitmap = await createImageBitmap(new Blob([bytes], {type: 'image/png'}));
  if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
  }
  canvas.getContext('2d').drawImage(bitmap, 0, 0);
  if (bitmap.close) bitmap.close();
  return canvas;
}

function newCanvas(cls) {
  const c = document.createElement('canvas');
  const [, h, w] = state.model ? state.model.output.shape : [1, 28, 28];
  c.width = w;
  c.height = h;
  if (cls) c.className = cls;
  return c;
}

// ---------------------------------------------------------------- models and card ----------------------------
async function loadModels() {
  state.info = await api('GET', '/api/info');
  const data = await api('GET', '/api/models');
  state.models = data.models;
  const sel = $('model');
  sel.innerHTML = '';
  for (const m of state.models) {
    const opt = document.createElement('option');
    opt.value = m.name;
    opt.textContent = m.name + ' (' + m.kind + ')';
    sel.appendChild(opt);
  }
  $('token-box').hidden = true;
  showAlert('');
  await selectModel(state.models[0].name);
}

async function selectModel(name) {
  state.model = state.models.find((m) => m.name === name);
  state.labels = state.model.labels || [];
  state.chips = new Set();
  state.kept = [];
  state.active = -1;
  state.directions = null;
  state.resultItem = null;
  renderCard();
  renderChips();
  renderKept();
  renderCompleteLabels();
  $('grid').innerHTML = '';
  $('strip').innerHTML = '';
  resetDraw();
  const points = state.model.output.type === 'points';
  for (const t of ['sample', 'explore', 'draw']) document.querySelector('[data-tab="' + t + '"]').hidden = points;
  document.querySelector('[data-tab="shapes"]').hidden = !points;
  document.querySelector('.kept').hidden = points;
  selectTab(points ? 'shapes' : 'sample');
  if (window.shapesSelect) window.shapesSelect(state.model);
  renderStatus();
}

function renderCard() {
  const m = state.model;
  const fmt = (v) => (v === null || v === undefined ? '–' : v);
  const maxAbs = (g) => (m.graphs[g].parity && m.graphs[g].parity.max_abs != null ?
    Number(m.graphs[g].parity.max_abs).toExponential(1) : '–');
  const parity = Object.keys(m.graphs).map((g) => g + ' ' + maxAbs(g)).join(', ');
  const rows = [
    ['kind', m.kind + (m.arch ? ' (' + m.arch + ')' : '')],
    ['output', m.output.type + ' ' + m.output.shape.join('×') + (m.output.range ? ' in [' + m.output.range.join(', ') + ']' :
      ' (' + m.output.patches + ' patches of ' + m.output.grid + '×' + m.output.grid + ')')],
    ['latent', m.latent_dim + ' numbers, ' + m.prior + ' prior'],
    ['labels', m.conditional ? m.labels.join(' ') : 'none (unconditional)'],
    ['precision', m.precision],
    ['backend', m.backend + (m.providers ? ' (' + m.providers.join(', ') + ')' : '')],
    ['target', fmt(m.target)],
    ['parity', parity + ' (max abs vs export)'],
    ['latency', m.latency_ms.decode_batch1_median.toFixed(2) + ' ms per decode (batch 1, measured at start)'],
    ['can', ['sample', 'decode', m.can.encode ? 'encode' : null, m.can.complete ? 'complete' : null].filter(Boolean).join(', ')],
    ['bundle', fmt(m.bundle_name) + (m.created ? ', ' + m.created : '')],
  ];
  if (m.metrics && Object.keys(m.metrics).length) {
    const nums = Object.keys(m.metrics).filter((k) => typeof m.metrics[k] === 'number')
      .map((k) => k + ' ' + Number(m.metrics[k]).toPrecision(4));
    rows.push(['trained', (m.data ? m.data + ': ' : '') + nums.join(', ')]);
  }
  $('card-list').innerHTML = rows.map(([k, v]) => '<dt>' + esc(k) + '</dt><dd>' + esc(v) + '</dd>').join('');
}

// ---------------------------------------------------------------- sample -------------------------------------
function renderChips() {
  const box = $('chips');
  box.innerHTML = '';
  box.hidden = !state.model.conditional;
  state.labels.forEach((name, i) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = name;
    b.dataset.label = String(i);
    b.setAttribute('aria-pressed', 'false');
    b.addEventListener('click', () => {
      if (state.chips.has(i)) state.chips.delete(i); else state.chips.add(i);
      b.setAttribute('aria-pressed', String(state.chips.has(i)));
    });
    box.appendChild(b);
  });
}

async function sample() {
  const n = parseInt($('n').value, 10);
  const body = {n, temperature: parseFloat($('temperature').value)};
  const seedText = $('seed').value.trim();
  if (seedText !== '') body.seed = Number(seedText);
  if (state.model.conditional) {
    const chosen = state.chips.size ? Array.from(state.chips).sort((a, b) => a - b) : state.labels.map((_, i) => i);
    const per = Math.max(1, Math.ceil(n / chosen.length));
    body.labels = [];
    for (const label of chosen) for (let k = 0; k < per && body.labels.length < n; k++) body.labels.push(label);
    while (body.labels.length < n) body.labels.push(chosen[body.labels.length % chosen.length]);
  }
  const btn = $('sample-btn');
  btn.disabled = true;
  try {
    const data = await api('POST', modelPath('sample'), body);
    showAlert('');
    $('sample-info').textContent = data.n + ' samples, seed ' + data.seed + ', temperature ' + data.temperature +
      '. Click a sample to keep it.';
    const grid = $('grid');
    grid.innerHTML = '';
    const draws = data.images.map(async (b64, i) => {
      const tile = document.createElement('button');
      tile.type = 'button';
      tile.className = 'tile';
      tile.title = 'keep';
      const c = newCanvas();
      tile.appendChild(c);
      if (data.labels) {
        const tag = document.createElement('span');
        tag.className = 'tag';
        tag.textContent = state.labels[data.labels[i]];
        tile.appendChild(tag);
      }
      tile.addEventListener('click', () => {
        tile.classList.add('is-kept');
        keep({z: data.latents[i], label: data.labels ? data.labels[i] : null, png: b64});
      });
      grid.appendChild(tile);
      await drawPng(c, b64);
    });
    await Promise.all(draws);
    grid.dataset.ready = String(Date.now());
  } catch (err) {
    fail(err);
  } finally {
    btn.disabled = false;
  }
}

// ---------------------------------------------------------------- kept samples -------------------------------
function keep(item) {
  item.num = state.nextKeep++;
  state.kept.push(item);
  state.active = state.kept.length - 1;
  renderKept();
  loadExplore();
}

function renderKept() {
  const box = $('kept');
  box.innerHTML = '';
  state.kept.forEach((item, i) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'kept-item' + (i === state.active ? ' active' : '');
    b.title = 'explore #' + item.num;
    const c = newCanvas();
    b.appendChild(c);
    const num = document.createElement('span');
    num.className = 'num';
    num.textContent = '#' + item.num + (item.label != null ? ' ' + state.labels[item.label] : '');
    b.appendChild(num);
    const x = document.createElement('span');
    x.className = 'drop-x';
    x.textContent = '×';
    x.title = 'drop';
    x.addEventListener('click', (ev) => {
      ev.stopPropagation();
      state.kept.splice(i, 1);
      if (state.active >= state.kept.length) state.active = state.kept.length - 1;
      renderKept();
      loadExplore();
    });
    b.appendChild(x);
    b.addEventListener('click', () => {
      state.active = i;
      renderKept();
      loadExplore();
      selectTab('explore');
    });
    box.appendChild(b);
    drawPng(c, item.png).catch(fail);
  });
  for (const id of ['interp-a', 'interp-b']) {
    const sel = $(id);
    const old = sel.value;
    sel.innerHTML = '';
    state.kept.forEach((item) => {
      const opt = document.createElement('option');
      opt.value = String(item.num);
      opt.textContent = '#' + item.num + (item.label != null ? ' (' + state.labels[item.label] + ')' : '');
      sel.appendChild(opt);
    });
    if (old && state.kept.some((k) => String(k.num) === old)) sel.value = old;
  }
  if (state.kept.length >= 2 && $('interp-a').value === $('interp-b').value) {
    $('interp-a').value = String(state.kept[state.kept.length - 2].num);
    $('interp-b').value = String(state.kept[state.kept.length - 1].num);
  }
  $('explore-hint').hidden = state.kept.length > 0;
}

// ---------------------------------------------------------------- explore ------------------------------------
async function loadExplore() {
  const item = state.kept[state.active];
  const canvas = $('explore-canvas');
  if (!item) {
    canvas.getContext('2d').clearRect(0, 0, canvas.width, canvas.height);
    $('sliders').innerHTML = '';
    return;
  }
  await drawPng(canvas, item.png);
  try {
    if (!state.directions) state.directions = (await api('GET', modelPath('directions') + '?k=6')).directions;
  } catch (err) {
    fail(err);
    return;
  }
  state.offsets = state.directions.map(() => 0);
  const box = $('sliders');
  box.innerHTML = '';
  state.directions.forEach((_, i) => {
    const row = document.createElement('label');
    row.className = 'slider';
    row.innerHTML = '<span>direction ' + (i + 1) + '</span><input type="range" min="-3" max="3" step="0.1" value="0">' +
      '<output>0.0</output>';
    const input = row.querySelector('input');
    input.addEventListener('input', () => {
      state.offsets[i] = parseFloat(input.value);
      row.querySelector('output').textContent = state.offsets[i].toFixed(1);
      exploreDecode();
    });
    box.appendChild(row);
  });
}

let exploreBusy = false, exploreAgain = false;
async function exploreDecode() {
  // one request in flight; a slider moved meanwhile asks again with its latest position
  if (exploreBusy) { exploreAgain = true; return; }
  const item = state.kept[state.active];
  if (!item) return;
  exploreBusy = true;
  try {
    const z = item.z.map((v, d) => v + state.offsets.reduce((s, t, i) => s + t * state.directions[i][d], 0));
    const body = {z: [z], project: true};
    if (item.label != null) body.labels = [item.label];
    const data = await api('POST', modelPath('decode'), body);
    state.explored = {z: data.latents[0], label: item.label, png: data.images[0]};
    await drawPng($('explore-canvas'), data.images[0]);
  } catch (err) {
    fail(err);
  } finally {
    exploreBusy = false;
    if (exploreAgain) { exploreAgain = false; exploreDecode(); }
  }
}

function oneHotPath(a, b, steps) {
  const k = state.labels.length;
  const rows = [];
  for (let i = 0; i < steps; i++) {
    const t = i / (steps - 1);
    const row = new Array(k).fill(0);
    row[a] += 1 - t;
    row[b] += t;
    rows.push(row);
  }
  return rows;
}

async function interpolate() {
  const find = (id) => state.kept.find((k) => String(k.num) === $(id).value);
  const a = find('interp-a'), b = find('interp-b');
  if (!a || !b) { showAlert('Keep two samples first (click them in the Sample grid).'); return; }
  const steps = parseInt($('interp-steps').value, 10);
  const body = {a: a.z, b: b.z, steps, mode: $('interp-mode').value};
  // between two labels the label moves too, as a blend of the two one-hot rows
  if (state.model.conditional) body.labels = a.label === b.label ? a.label : oneHotPath(a.label, b.label, steps);
  try {
    const data = await api('POST', modelPath('interpolate'), body);
    showAlert('');
    const strip = $('strip');
    strip.innerHTML = '';
    await Promise.all(data.images.map((b64) => { const c = newCanvas(); strip.appendChild(c); return drawPng(c, b64); }));
  } catch (err) {
    fail(err);
  }
}

// ---------------------------------------------------------------- draw and complete -------------------------
const draw = {tool: 'pen', down: false, last: null};
const HIDE_COLOUR = 'rgb(255, 90, 90)';

function resetDraw() {
  const c = $('draw-canvas');
  const ctx = c.getContext('2d');
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, c.width, c.height);
  applyRegion();
  const r = $('result-canvas');
  r.getContext('2d').clearRect(0, 0, r.width, r.height);
  drawLoss([]);
  $('result-keep').disabled = true;
}

function modelSize() {
  const s = state.model ? state.model.output.shape : [1, 28, 28];
  return {c: s[0], h: s[1], w: s[2]};
}

function applyRegion() {
  const m = $('mask-canvas');
  const ctx = m.getContext('2d');
  const region = $('region').value;
  if (!region) return;
  ctx.clearRect(0, 0, m.width, m.height);
  ctx.fillStyle = HIDE_COLOUR;
  // the same regions as jetgen.runtime.images.region_mask, in model pixels scaled to the pad
  const {h, w} = modelSize();
  const sx = m.width / w, sy = m.height / h;
  const rect = {
    'bottom-half': [0, Math.floor(h / 2), w, h - Math.floor(h / 2)],
    'top-half': [0, 0, w, h - Math.floor(h / 2)],
    'left-half': [0, 0, w - Math.floor(w / 2), h],
    'right-half': [Math.floor(w / 2), 0, w - Math.floor(w / 2), h],
    'center': [Math.floor(w / 4), Math.floor(h / 4), w - 2 * Math.floor(w / 4), h - 2 * Math.floor(h / 4)],
  }[region];
  ctx.fillRect(rect[0] * sx, rect[1] * sy, rect[2] * sx, rect[3] * sy);
}

function padPoint(ev) {
  const c = $('draw-canvas');
  const r = c.getBoundingClientRect();
  return {x: (ev.clientX - r.left) * c.width / r.width, y: (ev.clientY - r.top) * c.height / r.height};
}

function stroke(from, to) {
  const {w} = modelSize();
  const scale = $('draw-canvas').width / w;
  const size = parseFloat($('brush').value) * scale;
  const hide = draw.tool === 'hide';
  const ctx = (hide ? $('mask-canvas') : $('draw-canvas')).getContext('2d');
  ctx.lineCap = 'round';
  ctx.lineJoin = 'round';
  ctx.lineWidth = size;
  // the mask layer is painted opaque and shown translucent by CSS, so overlapping strokes stay one shade
  ctx.strokeStyle = hide ? HIDE_COLOUR : (draw.tool === 'eraser' ? '#000' : '#fff');
  ctx.beginPath();
  ctx.moveTo(from.x, from.y);
  ctx.lineTo(to.x + 0.01, to.y);
  ctx.stroke();
}

function setupPad() {
  const c = $('draw-canvas');
  c.addEventListener('pointerdown', (ev) => {
    ev.preventDefault();
    c.setPointerCapture(ev.pointerId);
    draw.down = true;
    draw.last = padPoint(ev);
    if (draw.tool === 'hide' && $('region').value) {
      $('region').value = '';  // brushing replaces the picked region
      const m = $('mask-canvas');
      m.getContext('2d').clearRect(0, 0, m.width, m.height);
    }
    stroke(draw.last, draw.last);
  });
  c.addEventListener('pointermove', (ev) => {
    if (!draw.down) return;
    const p = padPoint(ev);
    stroke(draw.last, p);
    draw.last = p;
  });
  const up = () => { draw.down = false; };
  c.addEventListener('pointerup', up);
  c.addEventListener('pointercancel', up);
  document.querySelectorAll('[data-tool]').forEach((b) => b.addEventListener('click', () => {
    draw.tool = b.dataset.tool;
    document.querySelectorAll('[data-tool]').forEach((o) => o.setAttribute('aria-pressed', String(o === b)));
  }));
  $('region').addEventListener('change', () => {
    const m = $('mask-canvas');
    m.getContext('2d').clearRect(0, 0, m.width, m.height);
    applyRegion();
  });
  $('clear-draw').addEventListener('click', resetDraw);
  $('clear-mask').addEventListener('click', () => {
    $('region').value = '';
    const m = $('mask-canvas');
    m.getContext('2d').clearRect(0, 0, m.width, m.height);
  });
  $('file').addEventListener('change', (ev) => { if (ev.target.files[0]) loadFile(ev.target.files[0]); });
  const drop = $('drop');
  drop.addEventListener('dragover', (ev) => { ev.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (ev) => {
    ev.preventDefault();
    drop.classList.remove('over');
    if (ev.dataTransfer.files[0]) loadFile(ev.dataTransfer.files[0]);
  });
}

async function loadFile(file) {
  try {
    const bitmap = await createImageBitmap(file);
    const c = $('draw-canvas');
    const ctx = c.getContext('2d');
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, c.width, c.height);
    const s = Math.min(c.width / bitmap.width, c.height / bitmap.height);
    const w = bitmap.width * s, h = bitmap.height * s;
    ctx.drawImage(bitmap, (c.width - w) / 2, (c.height - h) / 2, w, h);
    showAlert('');
  } catch (err) {
    showAlert('That file is not an image this browser can read.');
  }
}

function padImage() {
  // the pad shrunk to the model's size: the input as a PNG data URL and the mask as 0/1 rows (1 = observed)
  const {h, w} = modelSize();
  const small = document.createElement('canvas');
  small.width = w;
  small.height = h;
  const ctx = small.getContext('2d');
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage($('draw-canvas'), 0, 0, w, h);
  const png = small.toDataURL('image/png');
  ctx.clearRect(0, 0, w, h);
  ctx.drawImage($('mask-canvas'), 0, 0, w, h);
  const alpha = ctx.getImageData(0, 0, w, h).data;
  const mask = [];
  for (let y = 0; y < h; y++) {
    const row = [];
    for (let x = 0; x < w; x++) row.push(alpha[(y * w + x) * 4 + 3] >= 128 ? 0 : 1);
    mask.push(row);
  }
  return {png, mask};
}

function renderCompleteLabels() {
  const sel = $('complete-label');
  sel.innerHTML = '<option value="">infer</option>' +
    state.labels.map((name, i) => '<option value="' + i + '">' + esc(name) + '</option>').join('');
  $('complete-label-box').hidden = !state.model.conditional;
  $('complete-btn').disabled = !state.model.can.complete;
}

function drawLoss(losses) {
  const c = $('loss-canvas');
  const ctx = c.getContext('2d');
  ctx.clearRect(0, 0, c.width, c.height);
  ctx.fillStyle = '#9aa3ad';
  ctx.font = '11px system-ui, sans-serif';
  if (!losses.length) { ctx.fillText('loss (nats) appears here', 8, 16); return; }
  const lo = Math.min(...losses), hi = Math.max(...losses);
  const pad = 18, span = hi - lo || 1;
  ctx.strokeStyle = '#7fd1ae';
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  losses.forEach((v, i) => {
    const x = pad + (c.width - 2 * pad) * (losses.length > 1 ? i / (losses.length - 1) : 0);
    const y = 8 + (c.height - 26) * (1 - (v - lo) / span);
    if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
  });
  ctx.stroke();
  ctx.fillText('loss ' + losses[losses.length - 1].toFixed(2) + ' nats (from ' + losses[0].toFixed(1) + ')', pad, c.height - 5);
}

async function complete() {
  const {png, mask} = padImage();
  const body = {image: {png}, mask: {array: mask}, steps: parseInt($('steps').value, 10), lr: parseFloat($('lr').value)};
  const label = $('complete-label').value;
  if (state.model.conditional && label !== '') body.labels = parseInt(label, 10);
  const btn = $('complete-btn');
  btn.disabled = true;
  $('result-keep').disabled = true;
  const info = $('complete-info');
  info.textContent = 'starting…';
  const losses = [];
  drawLoss(losses);
  try {
    const job = await api('POST', modelPath('complete'), body);
    state.job = job.job;
    $('cancel-btn').disabled = false;
    showAlert('');
    await followJob(job, (ev, snap) => {
      for (const v of snap.losses || []) losses.push(v);
      drawLoss(losses);
      if (snap.images) drawPng($('result-canvas'), snap.images[0]).catch(fail);
      const lab = snap.labels && state.model.conditional ? ' · label ' + state.labels[snap.labels[0]] +
        (body.labels === undefined ? ' (inferred)' : '') : '';
      if (ev === 'progress') info.textContent = 'step ' + snap.step + ' of ' + snap.steps + lab;
      if (ev === 'done') {
        const r = snap.result;
        info.textContent = 'done in ' + r.steps + ' steps · loss ' + r.loss[0].toFixed(2) + ' nats' + lab;
        state.resultItem = {z: r.latents[0], label: r.labels ? r.labels[0] : null, png: r.decoded[0]};
        $('result-keep').disabled = false;
        $('result-canvas').dataset.done = String(Date.now());
      }
      if (ev === 'error' || ev === 'cancelled') info.textContent = snap.error || ev;
    });
  } catch (err) {
    info.textContent = '';
    fail(err);
  } finally {
    btn.disabled = false;
    $('cancel-btn').disabled = true;
    state.job = null;
  }
}

async function followJob(job, onEvent) {
  // server-sent events read through fetch (so the token travels in a header); polling where streams are missing
  const res = await fetch(job.events, {headers: authHeaders()});
  if (!res.ok || !res.body || !window.TextDecoder) return pollJob(job, onEvent, 0);
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '', received = 0;
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return pollJob(job, onEvent, received);  // the stream broke off before the end: ask instead
    buf += dec.decode(value, {stream: true});
    let cut;
    while ((cut = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      let event = 'message', data = '';
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) event = line.slice(7);
        else if (line.startsWith('data: ')) data += line.slice(6);
      }
      if (!data) continue;
      const snap = JSON.parse(data);
      received += (snap.losses || []).length;
      onEvent(event, snap);
      if (event !== 'progress') { reader.cancel().catch(() => {}); return; }
    }
  }
}

async function pollJob(job, onEvent, since) {
  for (;;) {
    const snap = await api('GET', job.poll + '?since=' + since);
    since += snap.losses.length;
    const over = ['done', 'error', 'cancelled'].includes(snap.state);
    onEvent(over ? snap.state : 'progress', snap);
    if (over) return;
    await new Promise((r) => setTimeout(r, 250));
  }
}

// ---------------------------------------------------------------- tabs and start ------------------------------
function selectTab(name) {
  document.querySelectorAll('[data-tab]').forEach((b) => b.setAttribute('aria-selected', String(b.dataset.tab === name)));
  for (const t of ['sample', 'explore', 'draw', 'shapes']) $('tab-' + t).hidden = t !== name;
}

function setup() {
  readToken();
  document.querySelectorAll('[data-tab]').forEach((b) => b.addEventListener('click', () => selectTab(b.dataset.tab)));
  $('model').addEventListener('change', (ev) => selectModel(ev.target.value).catch(fail));
  $('card-toggle').addEventListener('click', () => {
    const card = $('card');
    card.hidden = !card.hidden;
    $('card-toggle').setAttribute('aria-expanded', String(!card.hidden));
  });
  $('temperature').addEventListener('input', () => { $('temperature-out').textContent = parseFloat($('temperature').value).toFixed(2); });
  $('sample-btn').addEventListener('click', sample);
  $('explore-reset').addEventListener('click', () => loadExplore());
  $('explore-keep').addEventListener('click', () => { if (state.explored) keep(Object.assign({}, state.explored)); });
  $('interp-btn').addEventListener('click', interpolate);
  $('complete-btn').addEventListener('click', complete);
  $('cancel-btn').addEventListener('click', () => {
    if (state.job) api('POST', '/api/jobs/' + state.job + '/cancel', {}).catch(fail);
  });
  $('result-keep').addEventListener('click', () => { if (state.resultItem) keep(Object.assign({}, state.resultItem)); });
  $('token-box').addEventListener('submit', (ev) => {
    ev.preventDefault();
    sessionStorage.setItem('jetgen-token', $('token-input').value.trim());
    state.token = $('token-input').value.trim();
    loadModels().catch(fail);
  });
  setupPad();
  resetDraw();
  loadModels().then(() => { document.body.dataset.ready = '1'; }).catch(fail);
}

document.addEventListener('DOMContentLoaded', setup);
