"""The interactive report's page: markup, style and script (plain canvas; see ``interactive`` for why).

``render_page`` fills one template with the title, the track's data URI, the model card's HTML and
the JSON the script reads (``interactive.page_data``). The script has no dependencies and makes no
request: everything it draws comes from that JSON and the two grey PNGs in it (maps, spectrogram),
which it decodes once through a canvas and checks against their embedded checksums.

For tests and scripting, ``window.midlevelReport`` exposes ``state`` (selected target, concept,
map), ``data``, ``seek(t, play)``, ``select(...)`` and ``ready`` (a promise: maps decoded and drawn).
"""

from __future__ import annotations

import html
import json
from typing import Any

CSS = """
*{box-sizing:border-box}body{font-family:system-ui,sans-serif;margin:0;color:#222;line-height:1.35;font-size:14px}
header{position:sticky;top:0;z-index:5;background:#fff;border-bottom:1px solid #ddd;padding:6px 16px 4px;
box-shadow:0 1px 4px rgba(0,0,0,.08)}
h1{font-size:16px;margin:0 0 4px}h2{font-size:14px;margin:14px 0 4px}
main{max-width:1100px;margin:0 auto;padding:0 16px 40px}
.row{display:flex;align-items:center;gap:10px;flex-wrap:wrap}
audio{height:32px}#track{flex:1;min-width:280px;max-width:640px}
.chips{display:flex;gap:4px;flex-wrap:wrap;margin:4px 0}
button{font:inherit;cursor:pointer;border:1px solid #bbb;background:#f7f7f7;border-radius:4px;padding:1px 6px}
button:hover{background:#eee}button.sel{background:#222;color:#fff;border-color:#222}
.chip b{font-variant-numeric:tabular-nums}
.sum{font-size:13px;margin:2px 0}.sum .line{margin:2px 0;display:flex;flex-wrap:wrap;gap:3px;align-items:center}
.sum .lhs,.term,.icpt,#now{white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.sum .lab{width:9.5em;white-space:nowrap}.sum .lhs{width:10.5em}.icpt{width:8.5em;border-left:4px solid #999;padding:0 5px;background:#f3f3f3}
.term{width:11.5em;font-size:12px;text-align:left;border-width:0 0 0 4px;border-style:solid;padding:0 5px;background:#f3f3f3;
font-variant-numeric:tabular-nums}.term.sel{background:#222;color:#fff}.term small{opacity:.8}
#now{flex:1;min-width:0}
.note{color:#665;font-size:12px}.flag{color:#a40}
.view{position:relative;width:100%;cursor:pointer;user-select:none}
.view canvas{display:block;width:100%}
.cursor{position:absolute;top:0;bottom:0;width:2px;margin-left:-1px;background:#000;pointer-events:none;left:0}
.mark{position:absolute;top:0;bottom:0;background:rgba(255,200,0,.18);border:1px solid rgba(200,150,0,.5);
pointer-events:none}
#axis{display:block;width:100%}
table{border-collapse:collapse;font-size:13px}td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:right}
th{font-weight:600;text-align:right}td:first-child,th:first-child{text-align:left}
tr.sel{background:#fff4c2}.sw{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
.bar{display:inline-block;height:9px;vertical-align:middle}
.legend{font-size:12px;display:flex;gap:10px;flex-wrap:wrap}
"""

SCRIPT = r"""
(function () {
"use strict";
const D = JSON.parse(document.getElementById("report-data").textContent);
const $ = (id) => document.getElementById(id);
const track = $("track"), partPlayer = $("part");
const TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf"];
const RDBU = ["#053061", "#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7", "#fddbc7", "#f4a582",
              "#d6604d", "#b2182b", "#67001f"];  // RdBu reversed: blue (down) to red (up)
const MAGMA = ["#000004", "#1c1044", "#4f127b", "#812581", "#b5367a", "#e55064", "#fb8761", "#fec287", "#fcfdbf"];
const color = (k) => TAB10[k % 10];
const twoStage = D.concepts.length > 0;
const Wn = D.windows, nW = Wn.starts.length, xmax = D.xmax;
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
                                                         "'": "&#39;"})[c]);
const signed = (v) => (v < 0 ? "\u2212" : "+") + Math.abs(v).toFixed(3);
const clock = (t) => {
  const m = Math.floor(t / 60), s = t - 60 * m;
  return m + ":" + (s < 10 ? "0" : "") + s.toFixed(1);
};
const centre = (w) => Wn.starts[w] + Wn.length / 2;

const S = {target: Math.max(0, D.targets.indexOf(D.target)), concept: 0, mapOf: "target", method: 0,
           specOnly: false, window: -1, spans: null, spanIndex: 0, ownSeek: false};
if (twoStage) {
  const c = D.trackContributions[S.target];
  S.concept = c.reduce((best, v, k) => (Math.abs(v) > Math.abs(c[best]) ? k : best), 0);
  if (D.concepts.indexOf(D.listen) >= 0) { S.concept = D.concepts.indexOf(D.listen); S.mapOf = "concept"; }
}
if (D.targets.indexOf(D.listen) >= 0) S.target = D.targets.indexOf(D.listen);

function windowAt(t) {  // the window whose centre is nearest: where t is most central
  let best = 0, dist = Infinity;
  for (let w = 0; w < nW; w++) {
    const d = Math.abs(centre(w) - t);
    if (d < dist) { dist = d; best = w; }
  }
  return best;
}

// ---- sizing ------------------------------------------------------------------------------------
function prep(canvas, height) {
  const dpr = window.devicePixelRatio || 1, width = Math.max(100, canvas.clientWidth);
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(height * dpr);
  canvas.style.height = height + "px";
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  return {ctx, w: width, h: height};
}
const X = (t, w) => (t / xmax) * w;
function yLabels(ctx, h, lo, hi, Y, unit) {
  ctx.font = "10px sans-serif";
  ctx.fillStyle = "#555";
  for (const v of [hi, (lo + hi) / 2, lo]) {
    const y = Math.min(h - 3, Math.max(10, Y(v) + 3));
    ctx.fillText(v.toFixed(2) + (unit || ""), 3, y);
  }
}

// ---- the sticky header: predictions and the sum that explains them -------------------------------
function renderTargets() {
  $("targets").innerHTML = D.targets.map((name, t) =>
    `<button class="chip${t === S.target ? " sel" : ""}" data-t="${t}">${esc(name)} <b>${D.trackTargets[t].toFixed(3)}</b></button>`
  ).join("");
}
// Every box of the sum has a fixed width, so the header keeps its height while the window changes
// (a sticky header that grew would shift the page under the reader's pointer).
function equation(label, prediction, intercept, terms) {
  const order = terms.map((v, k) => k).sort((a, b) => Math.abs(terms[b]) - Math.abs(terms[a]));
  let h = `<span class="lab">${label}</span><span class="lhs"><b>${esc(D.targets[S.target])} = ` +
          `${prediction.toFixed(3)}</b> =</span>` +
          `<span class="icpt">${intercept.toFixed(3)} <small>intercept</small></span>`;
  for (const k of order) {
    h += `<button class="term${k === S.concept ? " sel" : ""}" data-k="${k}" style="border-color:${color(k)}" ` +
         `title="${esc(D.concepts[k])}: ${signed(terms[k])} (click: its map)">` +
         `${signed(terms[k])} <small>${esc(D.concepts[k])}</small></button>`;
  }
  return `<div class="line">${h}</div>`;
}
function renderSum() {
  const t = S.target, w = S.window < 0 ? 0 : S.window;
  const span = `${clock(Wn.starts[w]).replace(/\.0$/, "")}\u2013${clock(Wn.starts[w] + Wn.length).replace(/\.0$/, "")}`;
  let h;
  if (twoStage) {
    h = equation("whole track", D.trackTargets[t], D.intercept[t], D.trackContributions[t]) +
        equation(`window ${span}`, Wn.outputs[w][t], D.intercept[t], Wn.contributions[w][t]) +
        `<div class="note">prediction = intercept + the concepts' contributions, exactly (every sum here ` +
        `holds to ${D.sumError}); the track's values are the head applied to the mean of its windows' concepts.</div>`;
  } else {
    h = `<div class="line"><span class="lab">whole track</span><span class="lhs"><b>${esc(D.targets[t])} = ` +
        `${D.trackTargets[t].toFixed(3)}</b></span><span class="note">a black box: no decomposition into concepts` +
        `</span></div><div class="line"><span class="lab">window ${span}</span><span class="lhs"><b>` +
        `${esc(D.targets[t])} = ${Wn.outputs[w][t].toFixed(3)}</b></span></div>`;
  }
  $("sum").innerHTML = h;
}

// ---- per concept (or black-box target): values, contributions, listening -------------------------
function listenButtons(name) {
  const p = D.parts[name];
  if (!p) return "";
  const spans = p.spans.map((s) => `${s[0].toFixed(1)}\u2013${s[1].toFixed(1)} s`).join(", ");
  return `<button class="when" data-name="${esc(name)}" title="play ${spans} of the track, where ${esc(name)} is highest ` +
         `(${p.window.toFixed(3)} there)">\u25b6 when</button> ` +
         (p.audio ? `<button class="what" data-name="${esc(name)}" title="the top ${Math.round(100 * D.listening.fraction)}% ` +
         `time-frequency cells of that window by attribution, resynthesised (${esc(name)} ${p.part.toFixed(3)} on them alone)"` +
         `>\u25b6 what</button>` : "");
}
function renderTable() {
  const t = S.target;
  if (twoStage) {
    const c = D.trackContributions[t], big = Math.max(1e-9, ...c.map(Math.abs));
    let h = `<tr><th>concept</th><th>value</th><th>contribution to ${esc(D.targets[t])}</th><th></th><th>listen</th></tr>`;
    D.concepts.forEach((name, k) => {
      const v = c[k], width = Math.round(60 * Math.abs(v) / big);
      const bar = `<span class="bar" style="width:${width}px;background:${v >= 0 ? "#d6604d" : "#4393c3"}"></span>`;
      h += `<tr class="${k === S.concept ? "sel" : ""}" data-k="${k}"><td><span class="sw" style="background:${color(k)}">` +
           `</span><button class="pick" data-k="${k}">${esc(name)}</button></td><td>${D.trackConcepts[k].toFixed(3)}</td>` +
           `<td>${signed(v)}</td><td style="text-align:left">${bar}</td><td>${listenButtons(name)}</td></tr>`;
    });
    $("table").innerHTML = h;
  } else {
    $("table").innerHTML = `<tr><th>target</th><th>value</th><th>listen</th></tr>` + D.targets.map((name, k) =>
      `<tr class="${k === t ? "sel" : ""}"><td><button class="pick-target" data-t="${k}">${esc(name)}</button></td>` +
      `<td>${D.trackTargets[k].toFixed(3)}</td><td>${listenButtons(name)}</td></tr>`).join("");
  }
  $("target-listen").innerHTML = twoStage ? `listen for ${esc(D.targets[t])}: ${listenButtons(D.targets[t])}` : "";
}

// ---- over time ---------------------------------------------------------------------------------
function drawContributions() {
  const {ctx, w, h} = prep($("contrib"), 200), t = S.target;
  const bw = Math.max(1.5, X(0.9 * Math.min(Wn.hop, Wn.length), w));
  if (!twoStage) return drawLines(ctx, w, h, D.targets.map((_, k) => Wn.outputs.map((o) => o[k])), S.target, "");
  const C = Wn.contributions, icpt = D.intercept[t];
  let lo = 0, hi = 0;
  for (let i = 0; i < nW; i++) {
    let up = 0, down = 0;
    for (const v of C[i][t]) { if (v >= 0) up += v; else down += v; }
    const line = Wn.outputs[i][t] - icpt;
    lo = Math.min(lo, down, line); hi = Math.max(hi, up, line);
  }
  const pad = (hi - lo) * 0.08 || 1; lo -= pad; hi += pad;
  const Y = (v) => h - ((v - lo) / (hi - lo)) * h;
  for (let i = 0; i < nW; i++) {
    const x = X(centre(i), w) - bw / 2;
    let up = 0, down = 0;
    C[i][t].forEach((v, k) => {
      ctx.globalAlpha = k === S.concept ? 1 : 0.5;
      ctx.fillStyle = color(k);
      if (v >= 0) { ctx.fillRect(x, Y(up + v), bw, Y(up) - Y(up + v)); up += v; }
      else { ctx.fillRect(x, Y(down), bw, Y(down + v) - Y(down)); down += v; }
    });
  }
  ctx.globalAlpha = 1;
  ctx.strokeStyle = "#000"; ctx.lineWidth = 0.7;
  ctx.beginPath(); ctx.moveTo(0, Y(0)); ctx.lineTo(w, Y(0)); ctx.stroke();
  ctx.lineWidth = 1.5; ctx.beginPath();
  for (let i = 0; i < nW; i++) ctx[i ? "lineTo" : "moveTo"](X(centre(i), w), Y(Wn.outputs[i][t] - icpt));
  ctx.stroke();
  ctx.fillStyle = "#000";
  for (let i = 0; i < nW; i++) { ctx.beginPath(); ctx.arc(X(centre(i), w), Y(Wn.outputs[i][t] - icpt), 2.2, 0, 7); ctx.fill(); }
  yLabels(ctx, h, lo, hi, Y);
}
function drawLines(ctx, w, h, series, selected, unit) {
  let lo = Infinity, hi = -Infinity;
  for (const s of series) for (const v of s) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  const pad = (hi - lo) * 0.08 || 0.5; lo -= pad; hi += pad;
  const Y = (v) => h - ((v - lo) / (hi - lo)) * h;
  series.forEach((s, k) => {
    if (k === selected) return;
    drawSeries(ctx, s, k, w, Y, 1, 0.35);
  });
  drawSeries(ctx, series[selected], selected, w, Y, 2.5, 1);
  yLabels(ctx, h, lo, hi, Y, unit);
}
function drawSeries(ctx, s, k, w, Y, width, alpha) {
  ctx.globalAlpha = alpha; ctx.strokeStyle = color(k); ctx.fillStyle = color(k); ctx.lineWidth = width;
  ctx.beginPath();
  s.forEach((v, i) => ctx[i ? "lineTo" : "moveTo"](X(centre(i), w), Y(v)));
  ctx.stroke();
  if (s.length < 300) s.forEach((v, i) => { ctx.beginPath(); ctx.arc(X(centre(i), w), Y(v), width, 0, 7); ctx.fill(); });
  ctx.globalAlpha = 1;
}
function drawConcepts() {
  if (!twoStage) return;
  const {ctx, w, h} = prep($("concept-plot"), 150);
  drawLines(ctx, w, h, D.concepts.map((_, k) => Wn.concepts.map((c) => c[k])), S.concept, "");
}
function drawAxis() {
  const {ctx, w, h} = prep($("axis"), 18);
  const steps = [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600];
  const step = steps.find((s) => xmax / s <= 12) || 1200;
  ctx.font = "10px sans-serif"; ctx.fillStyle = "#444"; ctx.strokeStyle = "#444";
  for (let t = 0; t <= xmax + 1e-9; t += step) {
    const x = X(t, w);
    ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, 4); ctx.stroke();
    const label = xmax >= 60 ? clock(t).replace(/\.0$/, "") : t.toFixed(step < 1 ? 1 : 0) + " s";
    ctx.fillText(label, Math.min(Math.max(0, x - 12), w - 34), 15);
  }
  if (D.duration < xmax - 1e-6) {  // zero padding past the end of the audio
    ctx.fillStyle = "rgba(0,0,0,.1)"; ctx.fillRect(X(D.duration, w), 0, w, h);
  }
}

// ---- over the spectrogram ------------------------------------------------------------------------
const decoded = {layers: [], spectrogram: null};
async function pixels(layer, rows) {
  const img = new Image();
  img.src = layer.png;
  await img.decode();
  const c = document.createElement("canvas");
  c.width = layer.columns; c.height = rows;
  const ctx = c.getContext("2d", {willReadFrequently: true});
  ctx.drawImage(img, 0, 0);
  const rgba = ctx.getImageData(0, 0, layer.columns, rows).data, grey = new Uint8Array(rows * layer.columns);
  let sum = 0;
  for (let i = 0; i < grey.length; i++) { grey[i] = rgba[4 * i]; sum += grey[i]; }
  if (sum !== layer.checksum) console.error(`an embedded map decoded wrongly (checksum ${sum}, expected ${layer.checksum})`);
  return grey;
}
async function decodeAll() {
  const sp = D.spectrogram;
  decoded.spectrogram = await pixels(sp, sp.bands);
  for (const layer of D.maps) {
    const grey = await pixels(layer, layer.names.length * layer.bands), n = layer.bands * layer.columns;
    const maps = layer.names.map((name, d) => {
      const out = new Float32Array(n), scale = layer.scales[d];
      for (let i = 0; i < n; i++) { const q = (grey[d * n + i] - 128) / 127; out[i] = Math.sign(q) * q * q * scale; }
      return out;
    });
    decoded.layers.push(maps);
  }
}
function currentMap() {  // {values, label}: the selected concept's map, or the target's (its concepts' weighted)
  const layer = D.maps[S.method], maps = decoded.layers[S.method];
  if (!twoStage) return {values: maps[layer.names.indexOf(D.targets[S.target])], name: D.targets[S.target], how: ""};
  if (S.mapOf === "concept") return {values: maps[S.concept], name: D.concepts[S.concept], how: ""};
  const n = maps[0].length, out = new Float32Array(n), slopes = D.slopes[S.target];
  maps.forEach((m, k) => { const s = slopes[k]; if (s) for (let i = 0; i < n; i++) out[i] += s * m[i]; });
  return {values: out, name: D.targets[S.target], how: ", its concepts' maps weighted by the head"};
}
function mix(table, u) {  // u in [0, 1] -> [r, g, b]
  const x = Math.min(1, Math.max(0, u)) * (table.length - 1), i = Math.min(table.length - 2, Math.floor(x)), f = x - i;
  const a = parseInt(table[i].slice(1), 16), b = parseInt(table[i + 1].slice(1), 16);
  return [16, 8, 0].map((sh) => ((a >> sh) & 255) * (1 - f) + ((b >> sh) & 255) * f);
}
const LUT_RDBU = Array.from({length: 257}, (_, i) => mix(RDBU, i / 256));
const LUT_MAGMA = Array.from({length: 256}, (_, i) => mix(MAGMA, i / 255));
function drawMap() {
  if (!decoded.layers.length) return;
  const sp = D.spectrogram, cols = sp.columns, rows = sp.bands, spec = decoded.spectrogram;
  const {ctx, w, h} = prep($("map"), 190);
  const img = new ImageData(cols, rows), px = img.data;
  const m = currentMap();
  const abs = Float32Array.from(m.values, Math.abs).sort();
  const vmax = abs[Math.floor(0.995 * (abs.length - 1))] || abs[abs.length - 1] || 1;
  for (let i = 0; i < cols * rows; i++) {
    let rgb;
    if (S.specOnly) rgb = LUT_MAGMA[spec[i]];
    else {
      const v = m.values[i] / vmax, a = Math.min(1, Math.abs(v)), base = 255 - 0.45 * spec[i];
      const c = LUT_RDBU[Math.round((Math.max(-1, Math.min(1, v)) + 1) * 128)];
      rgb = [base * (1 - a) + c[0] * a, base * (1 - a) + c[1] * a, base * (1 - a) + c[2] * a];
    }
    px[4 * i] = rgb[0]; px[4 * i + 1] = rgb[1]; px[4 * i + 2] = rgb[2]; px[4 * i + 3] = 255;
  }
  const off = document.createElement("canvas");
  off.width = cols; off.height = rows;
  off.getContext("2d").putImageData(img, 0, 0);
  const x0 = X(sp.t0, w), x1 = X(sp.t0 + cols * sp.dt, w);
  ctx.drawImage(off, x0, 0, x1 - x0, h);
  ctx.font = "10px sans-serif";
  for (const f of [100, 1000, 10000]) {  // frequency ticks (rows are log-spaced, highest first)
    const r = sp.frequencies.findIndex((g) => g <= f);
    if (r <= 0) continue;
    const y = (r / rows) * h;
    if (y < 12) continue;
    ctx.fillStyle = "rgba(255,255,255,.75)"; ctx.fillRect(0, y - 9, 34, 11);
    ctx.fillStyle = "#000"; ctx.fillText(f >= 1000 ? f / 1000 + " kHz" : f + " Hz", 2, y);
  }
  const layer = D.maps[S.method];
  $("map-title").textContent = S.specOnly ? "Spectrogram (log frequency)" :
    `Where ${m.name} comes from: ${layer.label}${m.how}; red pushes it up, blue down`;
  drawOverTime(m.values, cols, rows);
}
function drawOverTime(values, cols, rows) {
  const sp = D.spectrogram, {ctx, w, h} = prep($("over-time"), 50), sums = new Float32Array(cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) sums[c] += values[r * cols + c];
  const big = Math.max(1e-12, ...sums.map(Math.abs)), Y = (v) => h / 2 - (v / big) * (h / 2 - 2);
  for (let c = 0; c < cols; c++) {
    const x = X(sp.t0 + c * sp.dt, w), bw = Math.max(1, X(sp.dt, w));
    ctx.fillStyle = sums[c] >= 0 ? "#b2182b" : "#2166ac";
    ctx.fillRect(x, Math.min(Y(sums[c]), h / 2), bw, Math.abs(Y(sums[c]) - h / 2));
  }
  ctx.fillStyle = "#555"; ctx.font = "10px sans-serif"; ctx.fillText("sum over frequency", 3, 10);
}

// ---- playing, seeking, the cursor ------------------------------------------------------------------
function play(player) {
  const p = player.play();
  if (p) p.catch((e) => { $("now").textContent = "the browser did not start playback: " + e.message; });
}
function seek(t, andPlay) {
  S.spans = null;
  S.ownSeek = true;
  track.currentTime = Math.max(0, Math.min(t, D.duration));
  $("now").textContent = "";
  update();
  if (andPlay) play(track);
}
function playSpans(name) {
  const spans = D.parts[name].spans.map((s) => [s[0], Math.min(s[1], D.duration)]);
  S.ownSeek = true;
  track.currentTime = spans[0][0];
  S.spans = spans; S.spanIndex = 0;
  $("now").textContent = `playing where ${name} is highest: ` + spans.map((s) => s.map((v) => v.toFixed(1)).join("\u2013")).join(", ") + " s";
  play(track);
}
function playPart(name) {
  track.pause();
  partPlayer.src = D.parts[name].audio;
  $("part-label").textContent = `${name}: its top ${Math.round(100 * D.listening.fraction)}% time-frequency cells ` +
    `in ${D.parts[name].spans.map((s) => s.map((v) => v.toFixed(1)).join("\u2013")).join(", ")} s ` +
    `(${name} on them alone: ${D.parts[name].part.toFixed(3)}; on the window: ${D.parts[name].window.toFixed(3)})`;
  play(partPlayer);
}
function update() {
  const t = track.currentTime;
  for (const c of document.querySelectorAll(".cursor")) c.style.left = ((100 * t) / xmax).toFixed(3) + "%";
  $("clock").textContent = `${clock(t)} / ${clock(D.duration)}`;
  const w = windowAt(t);
  if (w !== S.window) {
    S.window = w;
    for (const m of document.querySelectorAll(".mark")) {
      m.style.left = ((100 * Wn.starts[w]) / xmax).toFixed(3) + "%";
      m.style.width = ((100 * Wn.length) / xmax).toFixed(3) + "%";
    }
    renderSum();
  }
  if (S.spans && t >= S.spans[S.spanIndex][1] - 0.02) {
    S.spanIndex += 1;
    if (S.spanIndex < S.spans.length) { S.ownSeek = true; track.currentTime = S.spans[S.spanIndex][0]; }
    else { S.spans = null; track.pause(); $("now").textContent = ""; }
  }
}
function frame() { update(); if (!track.paused) requestAnimationFrame(frame); }

// ---- selection -------------------------------------------------------------------------------------
function select(what) {  // {target: index} or {concept: index} or {method: index} or {specOnly: bool}
  if ("target" in what) { S.target = what.target; S.mapOf = "target"; }
  if ("concept" in what) { S.concept = what.concept; S.mapOf = "concept"; }
  if ("method" in what) S.method = what.method;
  if ("specOnly" in what) S.specOnly = what.specOnly;
  renderTargets(); renderSum(); renderTable();
  drawContributions(); drawConcepts(); drawMap();
}
function redraw() { drawContributions(); drawConcepts(); drawAxis(); drawMap(); }

document.addEventListener("click", (e) => {
  const b = e.target.closest("button");
  if (b) {
    if (b.dataset.t !== undefined) select({target: +b.dataset.t});
    else if (b.dataset.k !== undefined) select({concept: +b.dataset.k});
    else if (b.classList.contains("when")) playSpans(b.dataset.name);
    else if (b.classList.contains("what")) playPart(b.dataset.name);
    return;
  }
  const view = e.target.closest(".view");
  if (!view) return;
  const r = view.getBoundingClientRect(), t = ((e.clientX - r.left) / r.width) * xmax;
  if (view.dataset.windows) seek(Wn.starts[windowAt(t)], true);  // a window: from its start
  else seek(t, true);
});
// one player at a time; a "play" event arrives after the fact, when the other may have started since
track.addEventListener("play", () => { if (!track.paused) { partPlayer.pause(); requestAnimationFrame(frame); } });
partPlayer.addEventListener("play", () => { if (!partPlayer.paused) track.pause(); });
track.addEventListener("seeking", () => { if (!S.ownSeek) { S.spans = null; $("now").textContent = ""; } S.ownSeek = false; });
for (const ev of ["timeupdate", "seeked", "pause", "loadedmetadata"]) track.addEventListener(ev, update);
$("method").innerHTML = D.maps.map((l, i) => `<option value="${i}">${esc(l.label)}</option>`).join("");
$("method").addEventListener("change", (e) => select({method: +e.target.value}));
$("spec-only").addEventListener("change", (e) => select({specOnly: e.target.checked}));
let resizeTimer = 0;
window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(redraw, 100); });

$("notes").innerHTML = [...D.flags.map((f) => `<span class="flag">flag: ${esc(f)}</span>`),
                        ...D.notes.map((n) => "note: " + esc(n))].join("<br>");
if (!twoStage) {
  $("concepts-section").hidden = true;
  $("contrib-title").textContent = "Targets over time (per window)";
} else {
  $("legend").innerHTML = D.concepts.map((c, k) => `<span><span class="sw" style="background:${color(k)}"></span>${esc(c)}</span>`).join("") +
    `<span>\u2014\u25cf sum of contributions (prediction \u2212 intercept)</span>`;
}
renderTargets(); update(); renderSum(); renderTable();
drawContributions(); drawConcepts(); drawAxis();
const ready = decodeAll().then(() => { drawMap(); return true; })
                         .catch((e) => { console.error("the maps could not be drawn: " + e); throw e; });
window.midlevelReport = {state: S, data: D, seek, select, ready, windowAt};
})();
"""

BODY = """<header>
<h1>{title}</h1>
<div class="row"><audio id="track" controls preload="auto" src="{track}"></audio>
<span id="clock" class="note"></span><span id="now" class="note"></span></div>
<div id="targets" class="chips" title="the model's predictions for the whole track; click one to explain it"></div>
<div id="sum" class="sum"></div>
</header>
<main>
<p id="notes" class="note"></p>
<h2 id="contrib-title">Contributions over time (per window; click a window to play it)</h2>
<div id="legend" class="legend"></div>
<div class="view" data-windows="1"><canvas id="contrib"></canvas><div class="mark"></div><div class="cursor"></div></div>
<div id="concepts-section"><h2>Concepts over time</h2>
<div class="view" data-windows="1"><canvas id="concept-plot"></canvas><div class="mark"></div><div class="cursor"></div></div>
</div>
<h2 id="map-title">Over the spectrogram</h2>
<div class="row note"><label>method <select id="method"></select></label>
<label><input type="checkbox" id="spec-only"> spectrogram only</label><span>click to play from there</span></div>
<div class="view"><canvas id="map"></canvas><div class="cursor"></div></div>
<div class="view"><canvas id="over-time"></canvas><div class="cursor"></div></div>
<canvas id="axis"></canvas>
<h2>To listen to</h2>
<p class="note">\u25b6 when: the window of the timeline where it is highest, played from the track; \u25b6 what: within
that window, the time-frequency cells its attribution scores highest, resynthesised.</p>
<p id="target-listen"></p>
<table id="table"></table>
<p><audio id="part" controls></audio> <span id="part-label" class="note"></span></p>
<details><summary>Model card</summary>{card}</details>
</main>"""


def escape_json(data: dict[str, Any]) -> str:
    """Compact JSON that is safe inside a ``<script>`` element."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def render_page(*, title: str, data: dict[str, Any], track_uri: str, card_html: str) -> str:
    """The whole page: one file, nothing fetched."""
    body = BODY.format(title=html.escape(title), track=track_uri, card=card_html)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{body}"
            f"<script type='application/json' id='report-data'>{escape_json(data)}</script>"
            f"<script>{SCRIPT}</script></body></html>")
