/* jetgen serve: the Shapes tab for 3D (point-cloud) models. Samples arrive as coordinates plus a server
   render; the picked shape is drawn here on a canvas (orthographic, depth-sorted points coloured by patch,
   optional mesh edges from the card's faces) and turned by dragging. Uses app.js's helpers. */
'use strict';

const shapes = {items: [], picked: -1, yaw: -0.8, pitch: 0.35, partial: null, job: null};

function patchColour(i, patches) {
  const h = i / Math.max(patches, 1);
  const c = [0, 1 / 3, 2 / 3].map((s) => Math.round(255 * (0.15 + 0.7 * (0.5 + 0.5 * Math.cos(2 * Math.PI * (h + s))))));
  return 'rgb(' + c.join(',') + ')';
}

function project(p) {
  const cy = Math.cos(shapes.yaw), sy = Math.sin(shapes.yaw), cp = Math.cos(shapes.pitch), sp = Math.sin(shapes.pitch);
  const x = cy * p[0] + sy * p[2], z0 = -sy * p[0] + cy * p[2];
  const y = cp * p[1] - sp * z0, z = sp * p[1] + cp * z0;
  return [x, y, z];
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
  if ($('shape-mesh').checked && out.faces) {
    ctx.strokeStyle = 'rgba(60, 70, 90, 0.18)';
    ctx.lineWidth = 0.6;
    ctx.beginPath();
    for (const f of out.faces) {
      const a = toPx(proj[f[0]]), b = toPx(proj[f[1]]), d = toPx(proj[f[2]]);
      ctx.moveTo(a[0], a[1]); ctx.lineTo(b[0], b[1]); ctx.lineTo(d[0], d[1]); ctx.closePath();
    }
    ctx.stroke();
  }
  const dots = proj.map((q, i) => ({q, colour: patchColour(Math.floor(i / per), out.patches)}));
  if (shapes.partial) shapes.partial.forEach((p) => dots.push({q: project(p), colour: 'rgb(120,120,120)'}));
  dots.sort((a, b) => a.q[2] - b.q[2]);  // far to near
  for (const d of dots) {
    const [px, py] = toPx(d.q);
    ctx.fillStyle = d.colour;
    ctx.fillRect(px - 1.5, py - 1.5, 3, 3);
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
          ' (from ' + Number(r.loss_start[0]).toExponential(2) + '); grey: the kept half.';
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
