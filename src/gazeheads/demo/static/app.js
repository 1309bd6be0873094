// gazeheads demo page: aim a spotlight (or a box), stream a steered answer, re-steer live.
"use strict";

const $ = (id) => document.getElementById(id);
const ui = {
  select: $("image-select"), upload: $("upload"), imageInfo: $("image-info"), stage: $("stage"),
  image: $("image"), overlay: $("overlay"), legend: $("legend"), k: $("k"), kInfo: $("k-info"),
  phase: $("phase"), question: $("question"), presets: $("presets"), maxTokens: $("max-tokens"),
  delay: $("delay"), delayOut: $("delay-out"), showHeat: $("show-heat"), radiusOut: $("radius-out"),
  generate: $("generate"), baseline: $("baseline"), stop: $("stop"), answer: $("answer"),
  status: $("status"), model: $("model"),
};

const state = {
  info: null,
  meta: null,           // the current image: size, cells, regions, captions
  scale: 1,             // display px per image px
  tool: "spot",
  radius: 40,           // image px
  cursor: null,         // {x, y} in image px, the spotlight centre (stays where the cursor left)
  box: null,            // {x0, y0, x1, y1} in image px
  drag: null,
  tokens: [],           // per step: {step, text, focus, heat, target_seq}
  hoverStep: null,
  generation: null,     // {id, steer, abort, seq}
  targetSeq: 0,         // sequence number of the target last sent
  retarget: {busy: false, pending: false},
};

function setState(name, message) {
  document.body.dataset.state = name;
  if (message !== undefined) ui.status.textContent = message;
  const running = name === "running" || name === "queued";
  ui.generate.disabled = running || !state.meta;
  ui.baseline.disabled = running || !state.meta;
  ui.stop.disabled = !running;
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (!response.ok) {
    const detail = body && body.detail;
    const text = Array.isArray(detail) ? detail.map((d) => `${d.loc.join(".")}: ${d.msg}`).join("; ") : detail;
    throw new Error(`${response.status}: ${text || response.statusText}${body && body.fix ? " — " + body.fix : ""}`);
  }
  return body;
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
  ui.generate.disabled = ui.baseline.disabled = false;
  ui.stop.disabled = true;
  setState("loading", "loading the image…");
  const meta = await api(`/api/images/${encodeURIComponent(id)}`);
  await new Promise((resolve, reject) => {
    ui.image.onload = resolve;
    ui.image.onerror = () => reject(new Error("the image did not load"));
    ui.image.src = `/api/images/${encodeURIComponent(id)}/pixels`;
  });
  state.meta = meta;
  const maxWidth = Math.min(960, document.querySelector("main").clientWidth - 4);
  state.scale = Math.min(maxWidth / meta.width, 520 / meta.height, 4);
  const w = Math.round(meta.width * state.scale), h = Math.round(meta.height * state.scale);
  ui.image.style.width = `${w}px`;
  ui.image.style.height = `${h}px`;
  const ratio = window.devicePixelRatio || 1;
  ui.overlay.width = Math.round(w * ratio);
  ui.overlay.height = Math.round(h * ratio);
  ui.overlay.style.width = `${w}px`;
  ui.overlay.style.height = `${h}px`;
  const cell = meta.cells.length ? meta.cells[0] : [0, 0, meta.width, meta.height];
  state.radius = Math.max(cell[2] - cell[0], cell[3] - cell[1]) * 0.75;
  state.cursor = null;
  state.box = null;
  ui.imageInfo.textContent = `${meta.width}×${meta.height} px, ${meta.cells.length} image tokens` +
    (meta.panels ? `, ${meta.panels} panels` : "");
  renderLegend();
  clearAnswer();
  draw();
  setState("idle", "Aim at the image, then Generate.");
}

function renderLegend() {
  ui.legend.replaceChildren();
  state.meta.regions.forEach((region, i) => {
    const item = document.createElement("span");
    item.className = "region";
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
  setState("loading", `uploading ${file.name}…`);
  const meta = await api("/api/uploads", {
    method: "POST", body: file,
    headers: {"Content-Type": file.type || "application/octet-stream", "X-Filename": file.name.replace(/[^\x20-\x7e]/g, "_")},
  });
  await loadImages(meta.id);
}

// ---------------------------------------------------------------------------- target

function currentTarget() {
  if (state.tool === "box") {
    if (!state.box) return null;
    const b = state.box;
    return {kind: "box", x0: b.x0, y0: b.y0, x1: b.x1, y1: b.y1};
  }
  if (!state.cursor) return null;
  return {kind: "circle", x: state.cursor.x, y: state.cursor.y, r: state.radius};
}

function targetCells() {
  const target = currentTarget();
  if (!target || !state.meta) return [];
  const centres = state.meta.cells.map((c) => [(c[0] + c[2]) / 2, (c[1] + c[3]) / 2]);
  let inside;
  if (target.kind === "circle") {
    inside = centres.map(([x, y]) => (x - target.x) ** 2 + (y - target.y) ** 2 <= target.r ** 2);
  } else {
    inside = centres.map(([x, y]) => x >= target.x0 && x < target.x1 && y >= target.y0 && y < target.y1);
  }
  if (!inside.some(Boolean) && centres.length) {  // the server steers to the nearest cell then
    const cx = target.kind === "circle" ? target.x : (target.x0 + target.x1) / 2;
    const cy = target.kind === "circle" ? target.y : (target.y0 + target.y1) / 2;
    let best = 0, bestD = Infinity;
    centres.forEach(([x, y], i) => { const d = (x - cx) ** 2 + (y - cy) ** 2; if (d < bestD) { bestD = d; best = i; } });
    inside[best] = true;
  }
  return inside;
}

function imagePoint(event) {
  const rect = ui.overlay.getBoundingClientRect();
  const x = (event.clientX - rect.left) / state.scale, y = (event.clientY - rect.top) / state.scale;
  return {x: Math.min(Math.max(x, 0), state.meta.width), y: Math.min(Math.max(y, 0), state.meta.height)};
}

function targetChanged() {
  draw();
  const g = state.generation;
  if (!g || !g.steer || !g.id) return;
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
    document.body.dataset.ackSeq = String(seq);
    document.body.dataset.ackStep = String(ack.from_step);
    ui.status.textContent = `re-steered from token ${ack.from_step}`;
  } catch (error) {
    if (!String(error.message).startsWith("404")) ui.status.textContent = `re-steering failed: ${error.message}`;
  } finally {
    state.retarget.busy = false;
    if (state.retarget.pending) sendRetarget();
  }
}

// ---------------------------------------------------------------------------- drawing

function draw() {
  const ctx = ui.overlay.getContext("2d");
  const ratio = ui.overlay.width / Math.max(1, parseFloat(ui.overlay.style.width) || 1);
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, ui.overlay.width, ui.overlay.height);
  if (!state.meta) return;
  const s = state.scale * ratio;
  ctx.setTransform(s, 0, 0, s, 0, 0);
  const meta = state.meta;

  // heat map of the hovered or latest token
  const shown = state.hoverStep !== null ? state.tokens[state.hoverStep] : state.tokens[state.tokens.length - 1];
  if (ui.showHeat.checked && shown && shown.heat && shown.heat.length === meta.cells.length) {
    shown.heat.forEach((v, i) => {
      if (v <= 0.02) return;
      const [x0, y0, x1, y1] = meta.cells[i];
      ctx.fillStyle = `rgba(255, 60, 0, ${0.62 * v})`;
      ctx.fillRect(x0, y0, x1 - x0, y1 - y0);
    });
  }

  // region outlines
  ctx.lineWidth = 1.5 / state.scale;
  meta.regions.forEach((region) => {
    const [x0, y0, x1, y1] = region.box;
    ctx.strokeStyle = region.colour;
    ctx.strokeRect(x0 + 1 / state.scale, y0 + 1 / state.scale, x1 - x0 - 2 / state.scale, y1 - y0 - 2 / state.scale);
  });

  // boosted cells: a dot on each
  const cells = targetCells();
  ctx.fillStyle = "rgba(255, 255, 255, 0.95)";
  ctx.strokeStyle = "rgba(0, 0, 0, 0.85)";
  ctx.lineWidth = 1 / state.scale;
  cells.forEach((on, i) => {
    if (!on) return;
    const [x0, y0, x1, y1] = meta.cells[i];
    ctx.beginPath();
    ctx.arc((x0 + x1) / 2, (y0 + y1) / 2, 3 / state.scale, 0, 2 * Math.PI);
    ctx.fill();
    ctx.stroke();
  });

  // the spotlight or the box
  const target = currentTarget();
  if (target && target.kind === "circle") {
    ctx.save();
    ctx.beginPath();
    ctx.rect(0, 0, meta.width, meta.height);
    ctx.arc(target.x, target.y, target.r, 0, 2 * Math.PI, true);
    ctx.fillStyle = "rgba(10, 14, 30, 0.28)";
    ctx.fill("evenodd");
    ctx.restore();
    ctx.beginPath();
    ctx.arc(target.x, target.y, target.r, 0, 2 * Math.PI);
    ctx.lineWidth = 2 / state.scale;
    ctx.strokeStyle = "#ffd400";
    ctx.stroke();
  } else if (target && target.kind === "box") {
    ctx.lineWidth = 2 / state.scale;
    ctx.strokeStyle = "#ffd400";
    ctx.setLineDash([6 / state.scale, 4 / state.scale]);
    ctx.strokeRect(target.x0, target.y0, target.x1 - target.x0, target.y1 - target.y0);
    ctx.setLineDash([]);
  }
  ui.radiusOut.textContent = Math.round(state.radius);
}

// ---------------------------------------------------------------------------- answer

function clearAnswer() {
  state.tokens = [];
  state.hoverStep = null;
  ui.answer.replaceChildren();
  ui.answer.dataset.text = "";
  delete document.body.dataset.ackSeq;
  delete document.body.dataset.ackStep;
}

function tint(colour, alpha) {
  const n = parseInt(colour.slice(1), 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}

function addToken(event) {
  state.tokens[event.step] = event;
  ui.answer.dataset.text = event.full;
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
    span.addEventListener("mouseenter", () => { state.hoverStep = event.step; span.classList.add("hovered"); draw(); });
    span.addEventListener("mouseleave", () => { state.hoverStep = null; span.classList.remove("hovered"); draw(); });
    ui.answer.append(span);
  }
  draw();
}

function handleEvent(event, generation) {
  if (state.generation !== generation) return;  // a generation left behind by an image switch
  switch (event.type) {
    case "queued":
      generation.id = event.generation_id;
      ui.answer.dataset.generation = event.generation_id;
      setState("queued", event.ahead ? `waiting behind ${event.ahead} generation(s)…` : "starting…");
      break;
    case "start":
      setState("running", `${event.steer ? "steering" : "tracking"} the top-${event.k} gaze heads ` +
        `(${event.steer ? (event.phase === "decode" ? "decode only" : "prefill and decode") : "no steering"})…`);
      if (generation.steer && generation.targetAtStart !== JSON.stringify(currentTarget())) targetChanged();
      break;
    case "token":
      addToken(event);
      break;
    case "done":
      generation.finished = true;
      setState("done", `done: ${event.steps} tokens (${event.reason})`);
      break;
    case "error":
      generation.finished = true;
      setState("error", `error: ${event.message}${event.fix ? " — " + event.fix : ""}`);
      break;
  }
}

async function generate(steer) {
  if (!state.meta) return;
  const target = currentTarget();
  if (steer && !target) {
    setState("idle", state.tool === "box" ? "Drag a box over the image first." : "Point at the image first.");
    return;
  }
  clearAnswer();
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
  const generation = {id: null, steer, abort: new AbortController(), finished: false,
                      targetAtStart: JSON.stringify(target)};
  state.generation = generation;
  state.targetSeq = 0;
  setState("queued", "starting…");
  try {
    const response = await fetch("/api/generate", {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
      signal: generation.abort.signal,
    });
    if (!response.ok) {
      let detail = response.statusText;
      try {
        const b = await response.json();
        detail = Array.isArray(b.detail) ? b.detail.map((d) => `${d.loc.join(".")}: ${d.msg}`).join("; ") : b.detail;
      } catch (_) { /* keep statusText */ }
      throw new Error(`${response.status}: ${detail}`);
    }
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
    if (!generation.finished && state.generation === generation) setState("done", "stopped");
  } catch (error) {
    if (state.generation !== generation) return;  // abandoned by an image switch: the page has moved on
    if (error.name === "AbortError") setState("done", "stopped");
    else setState("error", `error: ${error.message}`);
  } finally {
    if (state.generation === generation) {
      state.generation = null;
      ui.generate.disabled = ui.baseline.disabled = false;
      ui.stop.disabled = true;
    }
  }
}

function stop() {
  const g = state.generation;
  if (!g) return;
  if (g.id) fetch(`/api/generations/${g.id}/cancel`, {method: "POST", headers: {"Content-Type": "application/json"},
                                                        body: "{}"}).catch(() => {});
  g.abort.abort();
}

// ---------------------------------------------------------------------------- wiring

function wire() {
  ui.select.addEventListener("change", () => showImage(ui.select.value).catch(fail));
  ui.upload.addEventListener("change", () => {
    const file = ui.upload.files[0];
    if (file) uploadFile(file).catch(fail);
    ui.upload.value = "";
  });
  document.querySelectorAll('input[name="tool"]').forEach((radio) => radio.addEventListener("change", () => {
    state.tool = radio.value;
    ui.stage.classList.toggle("box-tool", state.tool === "box");
    targetChanged();
  }));
  ui.overlay.addEventListener("mousemove", (event) => {
    if (!state.meta) return;
    const p = imagePoint(event);
    if (state.tool === "spot") {
      state.cursor = p;
      targetChanged();
    } else if (state.drag) {
      const a = state.drag;
      state.box = {x0: Math.min(a.x, p.x), y0: Math.min(a.y, p.y), x1: Math.max(a.x, p.x), y1: Math.max(a.y, p.y)};
      draw();
    }
  });
  ui.overlay.addEventListener("mousedown", (event) => {
    if (!state.meta || state.tool !== "box") return;
    event.preventDefault();
    state.drag = imagePoint(event);
  });
  window.addEventListener("mouseup", () => {
    if (!state.drag) return;
    state.drag = null;
    if (state.box && (state.box.x1 - state.box.x0 < 1 || state.box.y1 - state.box.y0 < 1)) state.box = null;
    targetChanged();
  });
  ui.overlay.addEventListener("wheel", (event) => {
    if (!state.meta || state.tool !== "spot") return;
    event.preventDefault();
    const factor = Math.exp(-event.deltaY / 500);
    const most = Math.max(state.meta.width, state.meta.height);
    state.radius = Math.min(Math.max(state.radius * factor, 2), most);
    targetChanged();
  }, {passive: false});
  ui.delay.addEventListener("input", () => { ui.delayOut.textContent = ui.delay.value; });
  ui.showHeat.addEventListener("change", draw);
  ui.generate.addEventListener("click", () => generate(true));
  ui.baseline.addEventListener("click", () => generate(false));
  ui.stop.addEventListener("click", stop);
}

function fail(error) {
  setState("error", `error: ${error.message}`);
}

async function main() {
  wire();
  const info = await api("/api/info");
  state.info = info;
  const modelName = String(info.model).split(/[\\/]/).filter(Boolean).pop() || info.model;
  ui.model.textContent = `${modelName} · ${info.n_layers} layers × ${info.n_heads} heads · ranking from ` +
    `${info.ranking.n_strips} strips`;
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
