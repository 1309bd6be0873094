// gazeheads demo page: aim a spotlight (or a box), pin it, stream a steered answer, re-steer live.
//
// The target is what a click pinned, else what the mouse hovers; a pinned target stays put while
// the cursor travels (to Generate, say). Keyboard: on the image, arrows move the spotlight cell by
// cell, + and - change its radius, Enter or Space generates, Esc unpins. Touch: tap pins, drag
// draws a box, the slider sets the radius.
"use strict";

const $ = (id) => document.getElementById(id);
const ui = {
  select: $("image-select"), upload: $("upload"), uploadButton: $("upload-button"), imageInfo: $("image-info"),
  stage: $("stage"), image: $("image"), overlay: $("overlay"), legend: $("legend"), readout: $("readout"),
  hint: $("hint"), k: $("k"), kInfo: $("k-info"), phase: $("phase"), question: $("question"),
  presets: $("presets"), maxTokens: $("max-tokens"), delay: $("delay"), delayOut: $("delay-out"),
  showHeat: $("show-heat"), radius: $("radius"), radiusOut: $("radius-out"), unpin: $("unpin"),
  generate: $("generate"), baseline: $("baseline"), stop: $("stop"), answer: $("answer"),
  status: $("status"), model: $("model"),
};

const DRAG_PX = 6;  // a press that moves less than this (screen px) is a click or tap, not a drag

const state = {
  info: null,
  token: null,          // access token (servers beyond loopback), sent as a Bearer header
  session: null,        // random id of this page load, for the server's audit log
  meta: null,           // the current image: size, cells, regions, captions
  pixelsUrl: null,      // object URL of the current image
  scale: 1,             // display px per image px
  tool: "spot",
  radius: 40,           // image px
  hover: null,          // {x, y}: where the mouse is over the image, else null
  pin: null,            // the pinned target: {kind: "circle", x, y} or {kind: "box", x0, y0, x1, y1}
  press: null,          // a pointer pressed on the image: {id, type, start, startScreen, moved}
  drawn: null,          // the box being dragged out
  tokens: [],           // per step: {step, text, focus, heat, target_seq}
  hoverStep: null,
  generation: null,     // {id, steer, abort, finished, clickedAt, live}
  targetSeq: 0,
  retarget: {busy: false, pending: false},
};

// ---------------------------------------------------------------------------- errors in words

const FIELD_NAMES = {k: "top-K gaze heads", max_new_tokens: "tokens", question: "question", token_delay_ms: "pace",
                     phase: "bias at", target: "target", image_id: "image", r: "spotlight radius"};

class ApiError extends Error {
  constructor(status, body) {
    super(explain(status, body));
    this.status = status;
  }
}

function explain(status, body) {
  const detail = body && body.detail;
  const fix = body && body.fix ? ` ${body.fix}` : "";
  if (status === 401) return "This page lacks the demo's access token. Open the full link the server printed (it ends in ?token=…).";
  if (status === 429) return `The demo is busy: ${typeof detail === "string" ? detail : "too many requests"}${fix || " Try again in a moment."}`;
  if (Array.isArray(detail)) {
    const parts = detail.map((d) => {
      const field = (d.loc || []).filter((p) => p !== "body").map((p) => FIELD_NAMES[p] || p).pop() || "request";
      return `${field}: ${String(d.msg || "not valid").replace(/^Value error, /, "")}`;
    });
    return `Some settings were not accepted (${parts.join("; ")}).`;
  }
  if (typeof detail === "string" && detail) return `${detail}${fix}`;
  if (status >= 500) return `The server failed (HTTP ${status}); its console says why.`;
  return `The server refused the request (HTTP ${status}).`;
}

function headers(extra = {}) {
  const h = {...extra};
  if (state.token) h.Authorization = `Bearer ${state.token}`;
  if (state.session) h["X-Gazeheads-Session"] = state.session;
  return h;
}

async function request(path, options = {}) {
  let response;
  try {
    response = await fetch(path, {...options, headers: headers(options.headers)});
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new Error("The demo server cannot be reached. Is `gazeheads demo` still running?");
  }
  if (!response.ok) {
    let body = null;
    try { body = await response.json(); } catch (_) { body = null; }
    throw new ApiError(response.status, body);
  }
  return response;
}

async function api(path, options = {}) {
  return (await request(path, options)).json();
}

// ---------------------------------------------------------------------------- state and status

function setState(name, message) {
  document.body.dataset.state = name;
  if (message !== undefined) ui.status.textContent = message;
  const running = name === "running" || name === "queued";
  ui.generate.disabled = running || !state.meta;
  ui.baseline.disabled = running || !state.meta;
  ui.stop.disabled = !running;
}

function fail(error) {
  // An error leaves nothing stale behind: no heat map or answer of an earlier generation.
  clearAnswer();
  draw();
  setState("error", error.message);
}

// ---------------------------------------------------------------------------- images

async function loadImages(selectId) {
  const {images} = await api("/api/images");
  ui.select.replaceChildren();
  for (const image of images) {
    const option = document.createElement("option");
    option.value = image.id;
    option.textContent = `${image.name} (${image.source})`;
    ui.select.append(option);
  }
  if (selectId) ui.select.value = selectId;
  if (ui.select.value) await showImage(ui.select.value);
}

async function showImage(id) {
  // A generation of the previous image must not steer, colour or write into this one.
  stop();
  state.generation = null;
  state.meta = null;
  state.pin = state.hover = state.drawn = null;
  clearAnswer();
  draw();
  setState("loading", "Loading the image…");
  const meta = await api(`/api/images/${encodeURIComponent(id)}`);
  const blob = await (await request(`/api/images/${encodeURIComponent(id)}/pixels`)).blob();
  const url = URL.createObjectURL(blob);
  await new Promise((resolve, reject) => {
    ui.image.onload = resolve;
    ui.image.onerror = () => reject(new Error("The image could not be shown."));
    ui.image.src = url;
  });
  if (state.pixelsUrl) URL.revokeObjectURL(state.pixelsUrl);
  state.pixelsUrl = url;
  ui.image.alt = `${meta.name}: ${meta.panels ? `${meta.panels}-panel strip` : "uploaded image"}`;
  state.meta = meta;
  const cell = cellSize();
  state.radius = Math.max(cell.w, cell.h) * 0.75;
  ui.radius.max = String(Math.ceil(Math.max(meta.width, meta.height) / 2));
  ui.radius.min = String(Math.max(1, Math.floor(Math.min(cell.w, cell.h) / 4)));
  layoutStage();
  ui.imageInfo.textContent = `${meta.width}×${meta.height} px, ${meta.cells.length} image tokens` +
    (meta.panels ? `, ${meta.panels} panels` : "");
  renderLegend();
  targetChanged();
  setState("idle", "Pin a target on the image (click, tap, or Tab to it and use the arrow keys), then Generate.");
  if (!document.body.dataset.readyMs) document.body.dataset.readyMs = performance.now().toFixed(0);
}

function layoutStage() {
  const meta = state.meta;
  if (!meta) return;
  const wrap = $("stage-wrap");
  const maxWidth = Math.max(120, Math.min(960, wrap.clientWidth - 4));
  state.scale = Math.min(maxWidth / meta.width, 520 / meta.height, 4);
  const w = Math.round(meta.width * state.scale), h = Math.round(meta.height * state.scale);
  ui.image.style.width = `${w}px`;
  ui.image.style.height = `${h}px`;
  const ratio = window.devicePixelRatio || 1;
  ui.overlay.width = Math.round(w * ratio);
  ui.overlay.height = Math.round(h * ratio);
  ui.overlay.style.width = `${w}px`;
  ui.overlay.style.height = `${h}px`;
  draw();
}

function renderLegend() {
  ui.legend.replaceChildren();
  state.meta.regions.forEach((region, i) => {
    const item = document.createElement("span");
    item.className = "region";
    item.setAttribute("role", "listitem");
    item.dataset.region = String(i);
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = region.colour;
    item.append(swatch, region.name);
    const caption = state.meta.captions && state.meta.captions[i];
    if (caption && state.meta.panels) {
      const c = document.createElement("span");
      c.className = "caption";
      c.textContent = `: ${caption}`;
      item.append(c);
    }
    ui.legend.append(item);
  });
}

async function uploadFile(file) {
  setState("loading", `Uploading ${file.name}…`);
  const meta = await api("/api/uploads", {
    method: "POST", body: file,
    headers: {"Content-Type": file.type || "application/octet-stream", "X-Filename": file.name.replace(/[^\x20-\x7e]/g, "_")},
  });
  await loadImages(meta.id);
}

// ---------------------------------------------------------------------------- the target

function cellSize() {
  const c = state.meta && state.meta.cells.length ? state.meta.cells[0] : [0, 0, 32, 32];
  return {w: c[2] - c[0], h: c[3] - c[1]};
}

function currentTarget() {
  if (state.pin && state.pin.kind === "box") {
    const b = state.pin;
    return {kind: "box", x0: b.x0, y0: b.y0, x1: b.x1, y1: b.y1};
  }
  const at = state.pin || (state.tool === "spot" ? state.hover : null);
  if (!at) return null;
  return {kind: "circle", x: round2(at.x), y: round2(at.y), r: round2(state.radius)};
}

function round2(v) { return Math.round(v * 100) / 100; }

function cellsOf(target) {
  // The token cells the server steers to: centres inside the circle or box, else the nearest one.
  if (!target || !state.meta) return [];
  const centres = state.meta.cells.map((c) => [(c[0] + c[2]) / 2, (c[1] + c[3]) / 2]);
  let inside;
  if (target.kind === "circle") {
    inside = centres.map(([x, y]) => (x - target.x) ** 2 + (y - target.y) ** 2 <= target.r ** 2);
  } else {
    inside = centres.map(([x, y]) => x >= target.x0 && x < target.x1 && y >= target.y0 && y < target.y1);
  }
  if (!inside.some(Boolean) && centres.length) {
    const cx = target.kind === "circle" ? target.x : (target.x0 + target.x1) / 2;
    const cy = target.kind === "circle" ? target.y : (target.y0 + target.y1) / 2;
    let best = 0, bestD = Infinity;
    centres.forEach(([x, y], i) => { const d = (x - cx) ** 2 + (y - cy) ** 2; if (d < bestD) { bestD = d; best = i; } });
    inside[best] = true;
  }
  return inside;
}

function regionsOf(target) {
  // Indices of the named regions (panels, or parts of an upload) that own the target's cells.
  const cells = cellsOf(target), found = new Set();
  cells.forEach((on, i) => {
    if (!on) return;
    const [x0, y0, x1, y1] = state.meta.cells[i];
    const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
    state.meta.regions.forEach((region, j) => {
      const [a, b, c, d] = region.box;
      if (cx >= a && cx < c && cy >= b && cy < d) found.add(j);
    });
  });
  return [...found].sort((a, b) => a - b);
}

function listWords(words) {
  if (words.length <= 1) return words.join("");
  return `${words.slice(0, -1).join(", ")} and ${words[words.length - 1]}`;
}

function describeTarget(target) {
  const regions = regionsOf(target);
  let where;
  if (state.meta.panels) {
    const numbers = regions.map((i) => state.meta.regions[i].name.replace(/^panel /, ""));
    where = numbers.length === 1 ? `panel ${numbers[0]}` : `panels ${listWords(numbers)}`;
  } else {
    where = listWords(regions.map((i) => state.meta.regions[i].name)) || "the image";
  }
  const n = cellsOf(target).filter(Boolean).length;
  const shape = target.kind === "circle" ? `spotlight, radius ${Math.round(target.r)} px`
    : `box ${Math.round(target.x0)},${Math.round(target.y0)} to ${Math.round(target.x1)},${Math.round(target.y1)} px`;
  return {where, regions, text: `${where} (${shape}, ${n} image token${n === 1 ? "" : "s"})`};
}

function updateReadout() {
  const body = document.body.dataset;
  body.pinned = state.pin ? "true" : "false";
  ui.unpin.disabled = !state.pin;
  if (!state.meta) { ui.readout.textContent = "Target: none"; return; }
  let target = currentTarget(), how;
  const g = state.generation;
  if (target) {
    how = state.pin ? "pinned" : (g && g.steer && g.id ? "following the cursor" : "hovered; click to pin");
  } else if (g && g.steer && g.live) {
    target = g.live;
    how = "the cursor left the image; steering stays here";
  }
  if (!target) {
    ui.readout.textContent = "Target: none. Click or tap the image to pin one, or Tab to it and use the arrow keys.";
    body.targetRegions = "";
    return;
  }
  const d = describeTarget(target);
  ui.readout.textContent = `Target: ${d.text}, ${how}.`;
  body.targetRegions = d.regions.join(",");
}

function syncRadius() {
  ui.radius.value = String(Math.round(state.radius));
  ui.radiusOut.textContent = String(Math.round(state.radius));
}

function setTool(tool) {
  state.tool = tool;
  const radio = document.querySelector(`input[name="tool"][value="${tool}"]`);
  if (radio) radio.checked = true;
}

function targetChanged() {
  syncRadius();
  draw();
  updateReadout();
  const g = state.generation;
  if (!g || !g.steer || !g.id || !currentTarget()) return;
  if (JSON.stringify(currentTarget()) === JSON.stringify(g.live)) return;
  if (state.retarget.busy) { state.retarget.pending = true; return; }
  sendRetarget();
}

async function sendRetarget() {
  const g = state.generation, target = currentTarget();
  if (!g || !g.id || !target) return;
  state.retarget.busy = true;
  state.retarget.pending = false;
  const seq = ++state.targetSeq;
  try {
    const ack = await api(`/api/generations/${g.id}/target`, {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify({target}),
    });
    if (state.generation === g) {
      g.live = target;
      document.body.dataset.ackSeq = String(seq);
      document.body.dataset.ackStep = String(ack.from_step);
      ui.status.textContent = `Re-steered to ${describeTarget(target).where} from token ${ack.from_step}.`;
    }
  } catch (error) {
    // 404: the generation just ended; nothing to move any more.
    if (error.status !== 404 && state.generation === g) ui.status.textContent = `Re-steering failed: ${error.message}`;
  } finally {
    state.retarget.busy = false;
    if (state.retarget.pending) sendRetarget();
  }
}

function pinSpot(p) {
  state.pin = {kind: "circle", x: p.x, y: p.y};
  setTool("spot");
  targetChanged();
}

function unpin() {
  if (!state.pin) return;
  state.pin = null;
  targetChanged();
}

function clamp(v, lo, hi) { return Math.min(Math.max(v, lo), hi); }

function imagePoint(event) {
  const rect = ui.overlay.getBoundingClientRect();
  const x = (event.clientX - rect.left) / state.scale, y = (event.clientY - rect.top) / state.scale;
  return {x: clamp(x, 0, state.meta.width), y: clamp(y, 0, state.meta.height)};
}

function insidePin(p) {
  const pin = state.pin;
  if (!pin) return false;
  if (pin.kind === "circle") return (p.x - pin.x) ** 2 + (p.y - pin.y) ** 2 <= state.radius ** 2;
  return p.x >= pin.x0 && p.x <= pin.x1 && p.y >= pin.y0 && p.y <= pin.y1;
}

function tap(p) {
  // Click or tap: on the pinned target it unpins, elsewhere it pins a spotlight there.
  if (state.pin && (insidePin(p) || state.tool === "box")) unpin();
  else pinSpot(p);
}

// ---------------------------------------------------------------------------- keyboard

function moveByKeys(key, shift) {
  const cell = cellSize(), meta = state.meta;
  const dx = {ArrowLeft: -1, ArrowRight: 1}[key] || 0, dy = {ArrowUp: -1, ArrowDown: 1}[key] || 0;
  if (state.tool === "box" && state.pin && state.pin.kind === "box") {
    const b = {...state.pin};
    if (shift) {  // Shift+arrows: resize from the right and bottom edges
      b.x1 = clamp(b.x1 + dx * cell.w, b.x0 + cell.w, meta.width);
      b.y1 = clamp(b.y1 + dy * cell.h, b.y0 + cell.h, meta.height);
    } else {
      const w = b.x1 - b.x0, h = b.y1 - b.y0;
      b.x0 = clamp(b.x0 + dx * cell.w, 0, meta.width - w); b.x1 = b.x0 + w;
      b.y0 = clamp(b.y0 + dy * cell.h, 0, meta.height - h); b.y1 = b.y0 + h;
    }
    state.pin = b;
  } else if (state.tool === "box") {
    const cx = state.hover ? state.hover.x : meta.width / 2, cy = state.hover ? state.hover.y : meta.height / 2;
    const x0 = clamp(cx - cell.w, 0, meta.width - 2 * cell.w), y0 = clamp(cy - cell.h, 0, meta.height - 2 * cell.h);
    state.pin = {kind: "box", x0, y0, x1: x0 + 2 * cell.w, y1: y0 + 2 * cell.h};
  } else {
    const from = state.pin && state.pin.kind === "circle" ? state.pin
      : (state.hover || {x: meta.width / 2, y: meta.height / 2});
    state.pin = {kind: "circle", x: clamp(from.x + dx * cell.w, 0, meta.width), y: clamp(from.y + dy * cell.h, 0, meta.height)};
  }
  targetChanged();
}

function resizeByKeys(grow) {
  const meta = state.meta, cell = cellSize();
  if (state.tool === "box" && state.pin && state.pin.kind === "box") {
    const b = {...state.pin}, s = grow ? 1 : -1;
    if (!grow && (b.x1 - b.x0 <= cell.w || b.y1 - b.y0 <= cell.h)) return;
    state.pin = {kind: "box", x0: clamp(b.x0 - s * cell.w / 2, 0, meta.width), y0: clamp(b.y0 - s * cell.h / 2, 0, meta.height),
                 x1: clamp(b.x1 + s * cell.w / 2, 0, meta.width), y1: clamp(b.y1 + s * cell.h / 2, 0, meta.height)};
  } else {
    state.radius = clamp(state.radius * (grow ? 1.25 : 0.8), Number(ui.radius.min), Number(ui.radius.max));
  }
  targetChanged();
}

function onStageKey(event) {
  if (!state.meta || event.altKey || event.ctrlKey || event.metaKey) return;
  const key = event.key;
  if (key.startsWith("Arrow")) moveByKeys(key, event.shiftKey);
  else if (key === "+" || key === "=" || key === "Add") resizeByKeys(true);
  else if (key === "-" || key === "_" || key === "Subtract") resizeByKeys(false);
  else if (key === "Enter" || key === " ") { if (!event.repeat) generate(true); }
  else if (key === "Escape") unpin();
  else return;
  event.preventDefault();
}

// ---------------------------------------------------------------------------- drawing

function ring(ctx, path, width, dashed) {
  // A black-under-yellow stroke: visible on any image colour.
  const s = state.scale;
  ctx.setLineDash(dashed ? [6 / s, 4 / s] : []);
  ctx.lineWidth = (width + 2.5) / s; ctx.strokeStyle = "rgba(0, 0, 0, 0.9)"; path(); ctx.stroke();
  ctx.lineWidth = width / s; ctx.strokeStyle = "#ffd400"; path(); ctx.stroke();
  ctx.setLineDash([]);
}

function draw() {
  const ctx = ui.overlay.getContext("2d");
  const ratio = ui.overlay.width / Math.max(1, parseFloat(ui.overlay.style.width) || 1);
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, ui.overlay.width, ui.overlay.height);
  if (!state.meta) return;
  const s = state.scale, meta = state.meta;
  ctx.setTransform(s * ratio, 0, 0, s * ratio, 0, 0);

  // heat map of the hovered or latest token: the image dims where the heads do not look, and
  // the most attended cells get a black-and-white outline (no hue that an image could share)
  const shown = state.hoverStep !== null ? state.tokens[state.hoverStep] : state.tokens[state.tokens.length - 1];
  if (ui.showHeat.checked && shown && shown.heat && shown.heat.length === meta.cells.length) {
    shown.heat.forEach((v, i) => {
      const [x0, y0, x1, y1] = meta.cells[i];
      const veil = 0.62 * (1 - Math.min(1, v));
      if (veil > 0.01) { ctx.fillStyle = `rgba(18, 20, 28, ${veil})`; ctx.fillRect(x0, y0, x1 - x0, y1 - y0); }
    });
    shown.heat.forEach((v, i) => {
      if (v < 0.5) return;
      const [x0, y0, x1, y1] = meta.cells[i];
      ctx.lineWidth = 3 / s; ctx.strokeStyle = "#000"; ctx.strokeRect(x0 + 1.5 / s, y0 + 1.5 / s, x1 - x0 - 3 / s, y1 - y0 - 3 / s);
      ctx.lineWidth = 1.2 / s; ctx.strokeStyle = "#fff"; ctx.strokeRect(x0 + 1.5 / s, y0 + 1.5 / s, x1 - x0 - 3 / s, y1 - y0 - 3 / s);
    });
  }

  // region outlines
  ctx.lineWidth = 1.5 / s;
  meta.regions.forEach((region) => {
    const [x0, y0, x1, y1] = region.box;
    ctx.strokeStyle = region.colour;
    ctx.strokeRect(x0 + 1 / s, y0 + 1 / s, x1 - x0 - 2 / s, y1 - y0 - 2 / s);
  });

  const target = currentTarget() || (state.generation && state.generation.live) || null;
  // the steered cells: a white dot with a black rim on each
  if (target) {
    ctx.fillStyle = "#fff"; ctx.strokeStyle = "#000"; ctx.lineWidth = 1.2 / s;
    cellsOf(target).forEach((on, i) => {
      if (!on) return;
      const [x0, y0, x1, y1] = meta.cells[i];
      ctx.beginPath(); ctx.arc((x0 + x1) / 2, (y0 + y1) / 2, 3 / s, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
    });
  }
  // the target: solid when pinned, dashed while only hovered
  const pinned = Boolean(state.pin);
  if (target && target.kind === "circle") {
    ring(ctx, () => { ctx.beginPath(); ctx.arc(target.x, target.y, target.r, 0, 2 * Math.PI); }, pinned ? 2.5 : 1.8, !pinned);
    if (pinned) {
      ctx.beginPath(); ctx.arc(target.x, target.y, 3.5 / s, 0, 2 * Math.PI);
      ctx.fillStyle = "#ffd400"; ctx.fill(); ctx.lineWidth = 1.5 / s; ctx.strokeStyle = "#000"; ctx.stroke();
    }
  } else if (target && target.kind === "box") {
    ring(ctx, () => { ctx.beginPath(); ctx.rect(target.x0, target.y0, target.x1 - target.x0, target.y1 - target.y0); }, 2.5, false);
  }
  // a box being dragged out, and where a click would move the pin
  if (state.drawn) {
    const b = state.drawn;
    ring(ctx, () => { ctx.beginPath(); ctx.rect(b.x0, b.y0, b.x1 - b.x0, b.y1 - b.y0); }, 1.8, true);
  } else if (pinned && state.hover && state.tool === "spot" && !insidePin(state.hover)) {
    ctx.setLineDash([3 / s, 3 / s]); ctx.lineWidth = 1 / s; ctx.strokeStyle = "rgba(255, 255, 255, 0.9)";
    ctx.beginPath(); ctx.arc(state.hover.x, state.hover.y, state.radius, 0, 2 * Math.PI); ctx.stroke();
    ctx.setLineDash([]);
  }
}

// ---------------------------------------------------------------------------- answer

function clearAnswer() {
  state.tokens = [];
  state.hoverStep = null;
  ui.answer.replaceChildren();
  ui.answer.dataset.text = "";
  delete document.body.dataset.ackSeq;
  delete document.body.dataset.ackStep;
  delete document.body.dataset.firstTokenMs;
}

function tint(colour, alpha) {
  const n = parseInt(colour.slice(1), 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}

function showStep(step) {
  ui.answer.querySelectorAll(".tok.hovered").forEach((el) => el.classList.remove("hovered"));
  state.hoverStep = step;
  if (step !== null) {
    const span = ui.answer.querySelector(`.tok[data-step="${step}"]`);
    if (span) span.classList.add("hovered");
  }
  draw();
}

function addToken(event, generation) {
  state.tokens[event.step] = event;
  ui.answer.dataset.text = event.full;
  if (generation.clickedAt !== undefined && document.body.dataset.firstTokenMs === undefined) {
    document.body.dataset.firstTokenMs = (performance.now() - generation.clickedAt).toFixed(1);
  }
  if (event.text && !event.special) {
    const span = document.createElement("span");
    span.className = "tok";
    span.textContent = event.text;
    span.dataset.step = String(event.step);
    span.dataset.targetSeq = String(event.target_seq);
    const previous = state.tokens.slice(0, event.step).reverse().find((t) => t && t.text && !t.special);
    if (previous && previous.target_seq !== event.target_seq) {
      span.classList.add("switch");  // the first token after a re-steer
      span.title = "re-steered here";
    }
    const regions = state.meta.regions;
    if (event.focus !== null && regions[event.focus]) {
      const region = regions[event.focus];
      span.dataset.region = String(event.focus);
      span.style.background = tint(region.colour, 0.22);
      span.style.borderBottomColor = region.colour;
      span.title = (span.title ? span.title + "; " : "") + `token ${event.step}: gaze heads on ${region.name} (${Math.round(100 * event.shares[event.focus])}% ` +
        `of their image attention; ${Math.round(100 * event.image_share)}% of all attention on the image)`;
    }
    span.addEventListener("mouseenter", () => showStep(event.step));
    span.addEventListener("mouseleave", () => showStep(null));
    ui.answer.append(span);
  }
  draw();
}

function onAnswerKey(event) {
  const steps = [...ui.answer.querySelectorAll(".tok")].map((s) => Number(s.dataset.step));
  if (!steps.length || (event.key !== "ArrowLeft" && event.key !== "ArrowRight" && event.key !== "Escape")) return;
  event.preventDefault();
  if (event.key === "Escape") { showStep(null); return; }
  const at = steps.indexOf(state.hoverStep);
  const next = at < 0 ? (event.key === "ArrowLeft" ? steps.length - 1 : 0)
    : clamp(at + (event.key === "ArrowLeft" ? -1 : 1), 0, steps.length - 1);
  showStep(steps[next]);
  const span = ui.answer.querySelector(`.tok[data-step="${steps[next]}"]`);
  ui.status.textContent = span && span.title ? span.title : "";
}

function handleEvent(event, generation) {
  if (state.generation !== generation) return;  // a generation left behind by an image switch
  switch (event.type) {
    case "queued":
      generation.id = event.generation_id;
      ui.answer.dataset.generation = event.generation_id;
      setState("queued", event.ahead ? `Waiting behind ${event.ahead} generation(s)…` : "Starting…");
      break;
    case "start":
      setState("running", `${event.steer ? "Steering" : "Tracking"} the top-${event.k} gaze heads ` +
        `(${event.steer ? (event.phase === "decode" ? "decode only: the first token is not steered" : "prefill and decode") : "no steering"})…`);
      updateReadout();
      if (generation.steer) targetChanged();  // the target moved while the request was on its way
      break;
    case "token":
      addToken(event, generation);
      break;
    case "done": {
      generation.finished = true;
      const first = document.body.dataset.firstTokenMs;
      setState("done", `Done: ${event.steps} tokens (${event.reason})` + (first ? `, first token after ${Math.round(first)} ms.` : "."));
      break;
    }
    case "error":
      generation.finished = true;
      fail(new Error(`The generation failed: ${event.message}${event.fix ? " " + event.fix : ""}`));
      break;
  }
}

async function generate(steer) {
  if (!state.meta || state.generation) return;
  const target = currentTarget();
  if (steer && !target) {
    setState("idle", "No target yet: click or tap the image to pin one, or Tab to the image and use the arrow keys.");
    return;
  }
  const clickedAt = performance.now();
  clearAnswer();
  draw();
  if (!steer) {
    const label = document.createElement("span");
    label.className = "baseline-label";
    label.textContent = "without steering:";
    ui.answer.append(label);
  }
  const body = {
    image_id: state.meta.id, steer, k: Number(ui.k.value) || undefined, phase: ui.phase.value,
    question: ui.question.value.trim() || undefined, max_new_tokens: Number(ui.maxTokens.value) || undefined,
    token_delay_ms: Number(ui.delay.value),
  };
  if (steer) body.target = target;
  const generation = {id: null, steer, abort: new AbortController(), finished: false, clickedAt,
                      live: steer ? target : null};
  state.generation = generation;
  state.targetSeq = 0;
  setState("queued", "Starting…");
  try {
    const response = await request("/api/generate", {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
      signal: generation.abort.signal,
    });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        for (const line of block.split("\n")) {
          if (line.startsWith("data: ")) handleEvent(JSON.parse(line.slice(6)), generation);
        }
      }
    }
    if (!generation.finished && state.generation === generation) setState("done", "Stopped.");
  } catch (error) {
    if (state.generation !== generation) return;  // abandoned by an image switch: the page has moved on
    if (error.name === "AbortError") setState("done", "Stopped.");
    else fail(error);
  } finally {
    if (state.generation === generation) {
      state.generation = null;
      setState(document.body.dataset.state);
      updateReadout();
      draw();
    }
  }
}

function stop() {
  const g = state.generation;
  if (!g) return;
  if (g.id) request(`/api/generations/${g.id}/cancel`, {method: "POST", headers: {"Content-Type": "application/json"},
                                                       body: "{}"}).catch(() => {});
  g.abort.abort();
}

// ---------------------------------------------------------------------------- wiring

function wirePointer() {
  const o = ui.overlay;
  o.addEventListener("pointerdown", (event) => {
    if (!state.meta || (event.pointerType === "mouse" && event.button !== 0)) return;
    state.press = {id: event.pointerId, type: event.pointerType, start: imagePoint(event),
                   startScreen: {x: event.clientX, y: event.clientY}, moved: false};
    o.setPointerCapture(event.pointerId);
  });
  o.addEventListener("pointermove", (event) => {
    if (!state.meta) return;
    const p = imagePoint(event), press = state.press;
    if (press && press.id === event.pointerId) {
      const far = Math.hypot(event.clientX - press.startScreen.x, event.clientY - press.startScreen.y) >= DRAG_PX;
      if (far) press.moved = true;
      if (press.moved) {
        const a = press.start;
        state.drawn = {x0: Math.min(a.x, p.x), y0: Math.min(a.y, p.y), x1: Math.max(a.x, p.x), y1: Math.max(a.y, p.y)};
        draw();
      }
      return;
    }
    if (event.pointerType !== "mouse") return;
    state.hover = p;
    if (state.pin) { draw(); updateReadout(); } else targetChanged();
  });
  o.addEventListener("pointerup", (event) => {
    const press = state.press;
    if (!press || press.id !== event.pointerId) return;
    state.press = null;
    const box = state.drawn;
    state.drawn = null;
    if (press.moved) {
      if (box && box.x1 - box.x0 >= 1 && box.y1 - box.y0 >= 1) {
        state.pin = {kind: "box", ...box};
        setTool("box");
      }
      targetChanged();
    } else {
      tap(imagePoint(event));
    }
  });
  o.addEventListener("pointercancel", () => { state.press = null; state.drawn = null; draw(); });
  o.addEventListener("pointerleave", (event) => {
    if (event.pointerType !== "mouse" || state.press) return;
    state.hover = null;
    draw();
    updateReadout();
  });
  ui.stage.addEventListener("wheel", (event) => {
    if (!state.meta || state.tool !== "spot") return;
    event.preventDefault();
    const most = Math.max(state.meta.width, state.meta.height);
    state.radius = clamp(state.radius * Math.exp(-event.deltaY / 500), Number(ui.radius.min) || 1, most / 2);
    targetChanged();
  }, {passive: false});
}

function wire() {
  ui.select.addEventListener("change", () => showImage(ui.select.value).catch(fail));
  ui.uploadButton.addEventListener("click", () => ui.upload.click());
  ui.upload.addEventListener("change", () => {
    const file = ui.upload.files[0];
    if (file) uploadFile(file).catch(fail);
    ui.upload.value = "";
  });
  document.querySelectorAll('input[name="tool"]').forEach((radio) => radio.addEventListener("change", () => {
    state.tool = radio.value;
    if (state.pin && (state.pin.kind === "box") !== (state.tool === "box")) state.pin = null;
    targetChanged();
  }));
  ui.radius.addEventListener("input", () => { state.radius = Number(ui.radius.value); targetChanged(); });
  ui.unpin.addEventListener("click", unpin);
  ui.stage.addEventListener("keydown", onStageKey);
  ui.answer.addEventListener("keydown", onAnswerKey);
  ui.answer.addEventListener("blur", () => showStep(null));
  document.addEventListener("keydown", (event) => {
    // Enter or Space with nothing focused generates at the pinned or hovered target; Esc unpins.
    if (event.target !== document.body || event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); if (!event.repeat) generate(true); }
    else if (event.key === "Escape") unpin();
  });
  wirePointer();
  ui.delay.addEventListener("input", () => { ui.delayOut.textContent = ui.delay.value; });
  ui.showHeat.addEventListener("change", draw);
  ui.generate.addEventListener("click", () => generate(true));
  ui.baseline.addEventListener("click", () => generate(false));
  ui.stop.addEventListener("click", stop);
  new ResizeObserver(() => layoutStage()).observe($("stage-wrap"));
  if (window.matchMedia("(pointer: coarse)").matches) {
    ui.hint.textContent = "Tap the image to pin a spotlight (tap it again to unpin), drag to draw a box, and set " +
      "the radius with the slider. Moving the target while the answer streams re-steers the next tokens.";
  }
}

function readAccess() {
  const params = new URLSearchParams(location.search);
  let token = params.get("token");
  try {
    if (token) sessionStorage.setItem("gazeheads-token", token);
    else token = sessionStorage.getItem("gazeheads-token");
  } catch (_) { /* storage may be off; the token then lives in this page only */ }
  if (params.has("token")) history.replaceState(null, "", location.pathname);  // keep it off the address bar
  state.token = token || null;
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  state.session = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function main() {
  readAccess();
  wire();
  const info = await api("/api/info");
  state.info = info;
  const modelName = String(info.model).split(/[\\/]/).filter(Boolean).pop() || info.model;
  const origin = info.ranking.file ? ` (${info.ranking.file})` : "";
  ui.model.textContent = `${modelName} · ${info.n_layers} layers × ${info.n_heads} heads · ranking from ` +
    `${info.ranking.n_strips} strips${origin}`;
  ui.k.max = String(info.total_heads);
  ui.k.value = String(info.default_k);
  ui.kInfo.textContent = `of ${info.total_heads} (default ${info.default_k})`;
  ui.phase.value = info.default_phase;
  ui.question.value = info.question;
  for (const preset of info.presets) {
    const option = document.createElement("option");
    option.value = preset;
    ui.presets.append(option);
  }
  ui.maxTokens.max = String(info.max_new_tokens);
  ui.maxTokens.value = String(info.default_new_tokens);
  ui.delay.max = String(info.max_token_delay_ms);
  ui.delay.value = String(info.token_delay_ms);
  ui.delayOut.textContent = ui.delay.value;
  await loadImages();
}

main().catch(fail);
