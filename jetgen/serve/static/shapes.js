/* jetgen serve: the Shapes tab for 3D (point-cloud) models. Samples arrive as coordinates plus a server
   render; the picked shape is drawn here on a canvas (orthographic: the card's mesh faces filled, sorted
   far to near and lit, tinted by patch; or depth-sorted points), the partial of a completion as dots over
   it, and turned by dragging (mouse, pen or finger). Uses app.js's helpers. */
'use strict';

const shapes = {items: [], picked: -1, yaw: -0.8, pitch: 0.35, partial: null, job: null};

function patchColour(i, patches) {
  const h = i / Math.max(patches, 1);
  return [0, 1 / 3, 2 / 3].map((s) => Math.round(255 * (0.15 + 0.7 * (0.5 + 0.5 * Math.cos(2 * Math.PI * (h + s))))));
}

function rgb(c) { return 'rgb(' + c.join(',') + ')'; }

function project(p) {
  const cy = Math.cos(shapes.yaw), sy = Math.sin(shapes.yaw), cp = Math.cos(shapes.pitch), sp = Math.sin(shapes.pitch);
  const x = cy * p[0] + sy * p[2], z0 = -sy * p[0] + cy * p[2];
  const y = cp * p[1] - sp * z0, z = sp * p[1] + cp * z0;
  return [x, y, z];
}

const LIGHT = (() => { const l = [-0.35, 0.55, 0.76], n = Math.hypot(l[0], l[1], l[2]); return l.map((v) => v / n); })();

/* The shaded mesh: the card's triangles in the turned view, sorted far to near (painter's algorithm)
   and filled with their patch's tint times two-sided Lambert lighting (AtlasNet patches have no
   outside), each edged in its own colour so no seams show between neighbours. */
function drawMesh(ctx, proj, faces, per, patches, toPx) {
  const tris = faces.map((f) => ({f, z: proj[f[0]][2] + proj[f[1]][2] + proj[f[2]][2]}));
  tris.sort((a, b) => a.z - b.z);
  ctx.lineWidth = 0.8;
  ctx.lineJoin = 'round';
  for (const {f} of tris) {
    const a = proj[f[0]], b = proj[f[1]], c = proj[f[2]];
    const u = [b[0] - a[0], b[1] - a[1], b[2] - a[2]], v = [c[0] - a[0], c[1] - a[1], c[2] - a[2]];
    const n = [u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0]];
    const len = Math.hypot(n[0], n[1], n[2]);
    if (!(len > 0)) continue;
    const lambert = Math.abs(n[0] * LIGHT[0] + n[1] * LIGHT[1] + n[2] * LIGHT[2]) / len;
    const colour = rgb(patchColour(Math.floor(f[0] / per), patches).map((t) => Math.round(t * (0.3 + 0.7 * lambert))));
    const pa = toPx(a), pb = toPx(b), pc = toPx(c);
    ctx.beginPath();
    ctx.moveTo(pa[0], pa[1]); ctx.lineTo(pb[0], pb[1]); ctx.lineTo(pc[0], pc[1]); ctx.closePath();
    ctx.fillStyle = colour;
    ctx.strokeStyle = colour;
    ctx.fill();
    ctx.stroke();
  }
}

function drawShape() {
  const c = $('shape-view'), ctx = c.getContext('2d');
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, c.width, c.height);
  const item = shapes.items[shapes.picked];
  if (!item) return;
  const out = state.model.output, per = out.points_per_patch, s = (c.width - 20) / 2.2, cx = c.width / 2, cy = c.height / 2;
  const toPx = (q) => [cx + q[0] * s, cy - q[1] * s];
  const proj = item.points.map(project);
  const dots = [];
  if ($('shape-mesh').checked && out.faces && out.faces.length) {
    drawMesh(ctx, proj, out.faces, per, out.patches, toPx);
  } else {
    proj.forEach((q, i) => dots.push({q, colour: rgb(patchColour(Math.floor(i / per), out.patches)), r: 1.5}));
  }
  // the partial the model was given, as dots over the shape
  if (shapes.partial) shapes.partial.forEach((p) => dots.push({q: project(p), colour: 'rgb(60,60,60)', r: 1.2}));
  dots.sort((a, b) => a.q[2] - b.q[2]);  // far to near
  for (const d of dots) {
    const [px, py] = toPx(d.q);
    ctx.fillStyle = d.colour;
    ctx.fillRect(px - d.r, py - d.r, 2 * d.r, 2 * d.r);
  }
}

async function sampleShapes() {
  const seedText = $('shape-seed').value.trim();
  const body = {n: parseInt($('shape-n').value, 10), temperature: parseFloat($('shape-temperature').value)};
  if (seedText) body.seed = parseInt(seedText, 10);
  try {
    const data = await api('POST', modelPath('sample'), body);
    shapes.items = data.points.map((p, i) => ({points: p, z: data.latents[i], render: data.renders[i]}));
    shapes.partial = null;
    const grid = $('shape-grid');
    grid.innerHTML = '';
    for (let i = 0; i < shapes.items.length; i++) {
      const cv = document.createElement('canvas');
      cv.title = 'shape ' + (i + 1);
      await drawPng(cv, shapes.items[i].render);
      cv.addEventListener('click', () => pickShape(i));
      grid.appendChild(cv);
    }
    $('shape-info').textContent = shapes.items.length + ' shapes, seed ' + data.seed + '. Pick one.';
    pickShape(0);
  } catch (err) { fail(err); }
}

function pickShape(i) {
  shapes.picked = i;
  shapes.partial = null;
  Array.from($('shape-grid').children).forEach((c, k) => c.classList.toggle('picked', k === i));
  $('shape-obj').disabled = !shapes.items[i];
  $('shape-cut').disabled = !shapes.items[i] || !state.model.can.complete;
  drawShape();
}

function saveObj() {
  const item = shapes.items[shapes.picked];
  if (!item) return;
  const lines = ['# jetgen ' + state.model.name + ' sample'];
  item.points.forEach((p) => lines.push('v ' + p.join(' ')));
  (state.model.output.faces || []).forEach((f) => lines.push('f ' + (f[0] + 1) + ' ' + (f[1] + 1) + ' ' + (f[2] + 1)));
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([lines.join('\n') + '\n'], {type: 'text/plain'}));
  a.download = state.model.name + '-shape.obj';
  document.body.appendChild(a);
  a.click();
  a.remove();
}

async function cutAndComplete() {
  const item = shapes.items[shapes.picked];
  if (!item) return;
  $('shape-cut').disabled = true;
  $('shape-cancel').disabled = false;
  const info = $('shape-complete-info');
  try {
    const job = await api('POST', modelPath('complete'), {cut: {z: item.z, seed: shapes.picked}, steps: 150});
    shapes.job = job.job;
    await followJob(job, (event, snap) => {
      const last = snap.losses && snap.losses.length ? snap.losses[snap.losses.length - 1] : null;
      if (event === 'progress') {
        info.textContent = 'step ' + snap.step + ' / ' + snap.steps + (last !== null ? ', loss ' + last.toFixed(3) : '');
      } else if (event === 'done') {
        const r = snap.result;
        const done = {points: r.points, z: r.latents[0], render: r.render};
        shapes.items.push(done);
        shapes.picked = shapes.items.length - 1;
        shapes.partial = r.partial;
        info.textContent = 'completed in ' + r.steps + ' steps: objective (scaled one-sided Chamfer + prior) ' + Number(r.loss[0]).toExponential(2) +
          ' (from ' + Number(r.loss_start[0]).toExponential(2) + '); dark dots: the kept half.';
        drawShape();
      } else {
        info.textContent = 'completion ' + event + ': ' + (snap.error || '');
      }
    });
  } catch (err) { fail(err); }
  shapes.job = null;
  $('shape-cut').disabled = false;
  $('shape-cancel').disabled = true;
}

function setupShapes() {
  const view = $('shape-view');
  let drag = null;
  view.addEventListener('pointerdown', (ev) => { drag = [ev.clientX, ev.clientY]; view.setPointerCapture(ev.pointerId); });
  view.addEventListener('pointermove', (ev) => {
    if (!drag) return;
    shapes.yaw += (ev.clientX - drag[0]) * 0.01;
    shapes.pitch = Math.max(-1.5, Math.min(1.5, shapes.pitch + (ev.clientY - drag[1]) * 0.01));
    drag = [ev.clientX, ev.clientY];
    drawShape();
  });
  view.addEventListener('pointerup', () => { drag = null; });
  view.addEventListener('pointercancel', () => { drag = null; });
  $('shape-temperature').addEventListener('input', () => {
    $('shape-temperature-out').textContent = parseFloat($('shape-temperature').value).toFixed(2);
  });
  $('shape-sample-btn').addEventListener('click', sampleShapes);
  $('shape-mesh').addEventListener('change', drawShape);
  $('shape-obj').addEventListener('click', saveObj);
  $('shape-cut').addEventListener('click', cutAndComplete);
  $('shape-cancel').addEventListener('click', () => {
    if (shapes.job) api('POST', '/api/jobs/' + shapes.job + '/cancel', {}).catch(fail);
  });
}

window.shapesSelect = function (model) {
  shapes.items = [];
  shapes.picked = -1;
  shapes.partial = null;
  $('shape-grid').innerHTML = '';
  drawShape();
  if (model.output.type === 'points') sampleShapes();
};

document.addEventListener('DOMContentLoaded', setupShapes);
