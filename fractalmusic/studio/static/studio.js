// fractalmusic studio: plain JavaScript, no build step, no network beyond this studio's own /api.
"use strict";

const TOKEN = new URLSearchParams(location.hash.slice(1)).get("token") || "";
const state = { models: [], selected: null, job: null, cards: [], curveTimer: null };
const $ = (sel, root = document) => root.querySelector(sel);

function withToken(url) {
  if (!TOKEN) return url;
  return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(TOKEN);
}

async function api(method, url, body, headers = {}) {
  const opts = { method, headers: { ...headers } };
  if (TOKEN) opts.headers["X-Studio-Token"] = TOKEN;
  if (body instanceof Blob || body instanceof ArrayBuffer) {
    opts.body = body;
  } else if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const res = await fetch(url, opts);
  let data = null;
  try { data = await res.json(); } catch (e) { data = { error: `answer ${res.status} was not JSON` }; }
  if (!res.ok) throw new Error(data && data.error ? data.error : `request failed (${res.status})`);
  return data;
}

function say(text, isError = false) {
  const m = $("#message");
  m.textContent = text;
  m.className = isError ? "error" : "";
}

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  if (text !== undefined) node.textContent = text;
  return node;
}

const fmt = (v, digits = 3) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));

// ------------------------------------------------------------------------------------------- models
async function loadModels() {
  const data = await api("GET", "/api/checkpoints");
  state.models = data.checkpoints;
  const box = $("#models");
  box.textContent = "";
  const select = $("#checkpoint");
  const before = select.value;
  select.textContent = "";
  if (!state.models.length) box.append(el("p", { class: "muted" }, "No checkpoints found."));
  for (const m of state.models) {
    const card = el("div", { class: "model", "data-testid": "model-card", "data-checkpoint-id": m.id });
    const head = el("div", {});
    head.append(el("span", { class: "name" }, m.label + " "));
    if (m.training) head.append(el("span", { class: "badge live", "data-testid": "training-badge" }, "training"));
    card.append(head);
    if (m.error) {
      card.append(el("p", { class: "problems" }, m.error));
    } else {
      const dl = el("dl", {});
      const rows = [
        ["model", `${m.representation} + ${m.generator} (${m.kind})`],
        ["step", m.step ?? "–"],
        ["val loss", m.val_bits === null || m.val_bits === undefined ? "–" : `${fmt(m.val_bits)} bits`],
        ["corpus", m.corpus ?? "–"],
        ["date", m.date],
        ["parameters", m.parameters ? m.parameters.toLocaleString() : "–"],
        ["plugins", m.provided_by && m.provided_by.generator ?
          `${m.provided_by.representation}, ${m.provided_by.generator}`.replace(/'/g, "") : "–"],
        ["generator", summarise(m.generator_config)],
        ["representation", summarise(m.representation_config)],
      ];
      for (const [k, v] of rows) { dl.append(el("dt", {}, k), el("dd", {}, String(v))); }
      card.append(dl);
      if (m.has_curve) {
        const c = el("canvas", { "data-testid": "loss-curve", width: 300, height: 90 });
        card.append(c);
        drawCurve(m.id, c);
      }
      const opt = el("option", { value: m.id }, m.label);
      select.append(opt);
    }
    card.addEventListener("click", () => { if (!m.error) { select.value = m.id; pickModel(m.id); } });
    box.append(card);
  }
  if (before && state.models.some((m) => m.id === before)) select.value = before;
  if (select.value) pickModel(select.value);
  if (state.curveTimer) clearInterval(state.curveTimer);
  if (state.listTimer) clearTimeout(state.listTimer);
  if (state.models.some((m) => m.training)) {
    state.curveTimer = setInterval(refreshCurves, 5000);                  // live loss curves
    state.listTimer = setTimeout(() => loadModels().catch(() => {}), 30000);  // new checkpoints, step, loss
  }
}

function summarise(obj) {
  if (!obj || typeof obj !== "object") return "–";
  return Object.entries(obj).slice(0, 8).map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`)
    .join(", ") || "–";
}

async function drawCurve(id, canvas) {
  let data;
  try { data = await api("GET", `/api/checkpoints/${id}/curve`); } catch (e) { return; }
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, pad = 18;
  ctx.clearRect(0, 0, W, H);
  const all = data.train.concat(data.val);
  if (!all.length) { ctx.fillStyle = "#888"; ctx.fillText("no loss logged yet", 8, H / 2); return; }
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1), y0 = Math.min(...ys), y1 = Math.max(...ys, y0 + 1e-6);
  const X = (x) => pad + ((x - x0) / (x1 - x0)) * (W - pad - 4);
  const Y = (y) => 4 + (1 - (y - y0) / (y1 - y0)) * (H - pad - 4);
  ctx.strokeStyle = "#ccc"; ctx.beginPath(); ctx.moveTo(pad, 4); ctx.lineTo(pad, H - pad); ctx.lineTo(W, H - pad);
  ctx.stroke();
  ctx.fillStyle = "#888"; ctx.font = "10px sans-serif";
  ctx.fillText(`${y1.toFixed(2)} bits`, pad + 2, 12); ctx.fillText(`${y0.toFixed(2)}`, pad + 2, H - pad - 2);
  ctx.fillText(`step ${x1}`, W - 60, H - 4);
  for (const [points, color] of [[data.train, "#9bb7ee"], [data.val, "#d9822b"]]) {
    if (!points.length) continue;
    ctx.strokeStyle = color; ctx.lineWidth = 1.5; ctx.beginPath();
    points.forEach((p, i) => (i ? ctx.lineTo(X(p[0]), Y(p[1])) : ctx.moveTo(X(p[0]), Y(p[1]))));
    ctx.stroke();
  }
}

function refreshCurves() {
  for (const c of document.querySelectorAll("[data-testid=loss-curve]")) {
    drawCurve(c.closest(".model").dataset.checkpointId, c);
  }
}

function pickModel(id) {
  const m = state.models.find((x) => x.id === id);
  const same = state.selected && m && state.selected.id === m.id && state.formFor === m.id;
  state.selected = m || null;
  for (const card of document.querySelectorAll(".model")) {
    card.classList.toggle("selected", card.dataset.checkpointId === id);
  }
  if (!m || same) return;                        // a refreshed list keeps what was typed in the form
  state.formFor = m.id;
  $("#length-label").textContent = m.kind === "grid" ? "target width (steps)" : "length (tokens)";
  $("#length").placeholder = String(m.default_length);
  $("#length").step = m.kind === "grid" ? "4" : "1";
  $("#primer-text-label").hidden = !m.text_primer;
  $("#mask-box").hidden = m.kind !== "grid";
  const opts = $("#options");
  opts.textContent = "";
  for (const o of m.options) {
    const id = "option-" + o.name;
    if (o.is_flag) {
      const lab = el("label", { class: "check" });
      const box = el("input", { type: "checkbox", id, "data-testid": id, "data-option": o.name });
      if (o.default) box.checked = true;
      lab.append(box, document.createTextNode(` ${o.flag}`));
      opts.append(lab);
      continue;
    }
    const lab = el("label", { title: o.help || "" }, `${o.flag} (${o.type})`);
    let input;
    if (o.choices) {
      input = el("select", { id, "data-testid": id, "data-option": o.name });
      input.append(el("option", { value: "" }, "default"));
      for (const c of o.choices) input.append(el("option", { value: String(c) }, String(c)));
    } else {
      input = el("input", { id, "data-testid": id, "data-option": o.name,
        placeholder: o.default === null || o.default === undefined ? "default" : String(o.default) });
    }
    lab.append(input);
    if (o.help) lab.append(el("small", { class: "muted" }, o.help));
    opts.append(lab);
  }
  $("#options-box").hidden = !m.options.length;
  const formats = $("#formats");
  formats.textContent = "";
  for (const f of m.formats.concat(m.extra_formats || [])) {
    const lab = el("label", { class: "check" });
    const box = el("input", { type: "checkbox", value: f, "data-testid": "format-" + f });
    box.checked = m.formats.includes(f);
    if (f === "mid") { box.checked = true; box.disabled = true; }
    lab.append(box, document.createTextNode(" " + f));
    formats.append(lab);
  }
}

// ------------------------------------------------------------------------------------------- sampling
function numberOrNull(input) {
  const v = input.value.trim();
  return v === "" ? null : Number(v);
}

async function onSample(ev) {
  ev.preventDefault();
  const m = state.selected;
  if (!m) { say("pick a checkpoint first", true); return; }
  const body = {
    checkpoint: m.id,
    num_samples: numberOrNull($("#num-samples")) ?? 1,
    temperature: numberOrNull($("#temperature")) ?? 1,
    greedy: $("#greedy").checked,
    strip_primer: $("#strip-primer").checked,
    wait: false,
  };
  const length = numberOrNull($("#length"));
  if (length !== null) body.length = length;
  const fields = [["seed", "#seed"], ["top_k", "#top-k"], ["top_p", "#top-p"]];
  if (m.kind === "grid") {
    fields.push(["mask_start", "#mask-start"], ["mask_end", "#mask-end"], ["mask_pitch_low", "#mask-pitch-low"],
      ["mask_pitch_high", "#mask-pitch-high"]);
  }
  for (const [key, sel] of fields) {
    const v = numberOrNull($(sel));
    if (v !== null) body[key] = v;
  }
  const options = {};
  for (const input of document.querySelectorAll("[data-option]")) {
    if (input.type === "checkbox") options[input.dataset.option] = input.checked;
    else if (input.value.trim() !== "") options[input.dataset.option] = input.value.trim();
  }
  if (Object.keys(options).length) body.options = options;
  body.formats = [...document.querySelectorAll("#formats input:checked")].map((b) => b.value);
  try {
    const file = $("#primer-file").files[0];
    if (file) {
      const up = await api("POST", "/api/primers", file, { "X-Filename": file.name, "Content-Type":
        "application/octet-stream" });
      body.primer_upload = up.primer_upload;
    } else if (m.text_primer && $("#primer-text").value.trim()) {
      body.primer_text = $("#primer-text").value.replace(/\\n/g, "\n");
    }
    const out = await api("POST", "/api/sample", body);
    const samples = await followJob(out.job);
    samples.forEach((s) => addCard(s));
  } catch (e) {
    say(e.message, true);
  }
}

async function followJob(job) {
  state.job = job;
  $("#job").hidden = false;
  $("#cancel-button").disabled = false;
  $("#sample-button").disabled = true;
  try {
    for (;;) {
      showJob(job);
      if (["done", "error", "cancelled"].includes(job.status)) break;
      await new Promise((r) => setTimeout(r, 250));
      job = await api("GET", `/api/jobs/${job.id}`);
    }
  } finally {
    $("#cancel-button").disabled = true;
    $("#sample-button").disabled = false;
    state.job = null;
  }
  if (job.status === "error") throw new Error(job.error);
  if (job.status === "cancelled") { say("cancelled"); return []; }
  say(`done: ${job.samples.length} sample(s)`);
  const out = [];
  for (const id of job.samples) out.push(await api("GET", `/api/samples/${id}`));
  return out;
}

function showJob(job) {
  const bar = $("#job-progress");
  if (job.progress === null || job.progress === undefined) bar.removeAttribute("value");
  else bar.value = job.progress;
  let text = job.status === job.phase ? job.status : `${job.status}: ${job.phase}`;
  if (job.queue_position) text += ` (${job.queue_position} ahead)`;
  if (job.passes) text += ` · ${job.passes} network passes`;
  $("#job-text").textContent = text;
  $("#queue-status").textContent = job.status === "queued" || job.status === "running" ? "working…" : "";
}

async function onCancel() {
  if (!state.job) return;
  try { await api("POST", `/api/jobs/${state.job.id}/cancel`, {}); say("cancelling…"); } catch (e) { say(e.message, true); }
}

// ------------------------------------------------------------------------------------------- result cards
function addCard(sample) {
  $("#results-empty").hidden = true;
  const node = $("#card-template").content.firstElementChild.cloneNode(true);
  const card = { node, history: [], zoom: 1, selection: null, roll: null, sample: null, raf: null };
  state.cards.push(card);
  $("#results").prepend(node);
  const canvas = $("canvas", node);
  $("[data-testid=zoom-in]", node).addEventListener("click", () => { card.zoom = Math.min(8, card.zoom * 1.5); drawRoll(card); });
  $("[data-testid=zoom-out]", node).addEventListener("click", () => { card.zoom = Math.max(0.25, card.zoom / 1.5); drawRoll(card); });
  $("[data-testid=play-button]", node).addEventListener("click", () => {
    const audio = $("audio", node);
    if (audio.paused) audio.play().catch((e) => say("cannot play: " + e.message, true)); else audio.pause();
  });
  const audio = $("audio", node);
  audio.addEventListener("play", () => { $(".play", node).textContent = "❚❚ Pause"; tick(card); });
  audio.addEventListener("pause", () => { $(".play", node).textContent = "▶ Play"; drawRoll(card); });
  audio.addEventListener("ended", () => { $(".play", node).textContent = "▶ Play"; drawRoll(card); });
  attachSelection(card, canvas);
  $("[data-testid=regenerate-button]", node).addEventListener("click", () => regenerate(card));
  $("[data-testid=variations-button]", node).addEventListener("click", () => variations(card));
  $("[data-testid=undo-button]", node).addEventListener("click", () => undo(card));
  showSample(card, sample, true);
  return card;
}

async function showSample(card, sample, push) {
  const node = card.node;
  if (push) card.history.push(sample);
  card.sample = sample;
  card.selection = null;
  node.dataset.sampleId = sample.id;
  $("[data-testid=undo-button]", node).disabled = card.history.length < 2;
  $("[data-testid=regenerate-button]", node).disabled = true;
  $("[data-testid=region-label]", node).textContent = "no region selected";
  const s = sample.settings;
  $(".title", node).textContent = `${sample.id} · ${sample.checkpoint_label}`;
  let meta = `seed ${s.seed} · temperature ${s.temperature}`;
  if (sample.parent) meta += ` · from ${sample.parent}`;
  if (sample.region) meta += ` · ${describeRegion(sample.region)}`;
  $(".meta", node).textContent = meta;
  $("[data-testid=command]", node).textContent = sample.command;
  $("[data-testid=problems]", node).textContent = (sample.problems || []).join("; ");
  const audio = $("audio", node);
  audio.pause();
  if (sample.files.wav) { audio.src = withToken(sample.files.wav); audio.hidden = false; } else { audio.removeAttribute("src"); audio.hidden = true; }
  $(".play", node).disabled = !sample.files.wav;
  const dl = $("[data-testid=downloads]", node);
  dl.textContent = "";
  for (const [f, url] of Object.entries(sample.files)) {
    if (f === "svg") continue;
    dl.append(el("a", { href: withToken(url + "?download=1"), "data-testid": "download-" + f, download: "" }, f));
  }
  $(".roll-scroll", node).hidden = !sample.files.mid;   // no MIDI (plain text): no roll to show or reshape
  $(".toolbar", node).hidden = !sample.files.mid && !sample.files.wav;
  card.roll = await api("GET", sample.roll_url);
  if (push && card.history.length === 1) {       // first view: fill the card's width
    const g = rollGeometry(card), room = $(".roll-scroll", node).clientWidth - 2;
    if (room > g.width) card.zoom = Math.min(4, room / (g.width - 1));
  }
  drawRoll(card);
  const notation = $("[data-testid=notation]", node);
  notation.textContent = "";
  if (sample.files.txt) {                       // a text representation: show the text itself
    const pre = el("pre", { class: "text", "data-testid": "text" });
    fetch(withToken(sample.files.txt)).then((r) => r.text()).then((t) => { pre.textContent = t; });
    notation.append(pre);
  }
  const engrave = () => {
    notation.textContent = "";
    const img = el("img", { alt: "notation", "data-testid": "notation-img" });
    img.addEventListener("error", async () => {
      try { await api("GET", sample.notation_url); } catch (e) { notation.textContent = "notation: " + e.message; }
    });
    img.src = withToken(sample.notation_url);
    notation.append(img);
  };
  if (sample.files.abc || sample.files.musicxml) engrave();   // the piece has notation of its own
  else if (sample.has_notation) {                              // piano rolls: engraving many notes takes a while
    const b = el("button", { type: "button", "data-testid": "notation-button" }, "Engrave notation");
    b.addEventListener("click", engrave);
    notation.append(b);
  }
}

const ROW = 5;          // pixels per semitone
const BEAT = 48;        // pixels per beat at zoom 1
function rollGeometry(card) {
  const roll = card.roll;
  let lo = 127, hi = 0;
  for (const n of roll.notes) { lo = Math.min(lo, n[2]); hi = Math.max(hi, n[2]); }
  if (lo > hi) { lo = 48; hi = 72; }
  lo = Math.max(0, lo - 3); hi = Math.min(127, hi + 3);
  if (hi - lo < 24) { const mid = (hi + lo) / 2; lo = Math.max(0, Math.floor(mid - 12)); hi = Math.min(127, lo + 24); }
  const beats = Math.max(roll.end_beat, roll.width && roll.steps_per_beat ? roll.width / roll.steps_per_beat : 0, 4);
  const pxBeat = BEAT * card.zoom;
  return { lo, hi, beats, pxBeat, width: Math.ceil(beats * pxBeat) + 1, height: (hi - lo + 1) * ROW };
}

function drawRoll(card, playBeat) {
  const canvas = $("canvas", card.node);
  const g = rollGeometry(card);
  card.geom = g;
  if (canvas.width !== g.width) canvas.width = g.width;
  if (canvas.height !== g.height) canvas.height = g.height;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fbfbfa"; ctx.fillRect(0, 0, g.width, g.height);
  for (let p = g.lo; p <= g.hi; p++) {          // black keys shaded
    if ([1, 3, 6, 8, 10].includes(p % 12)) { ctx.fillStyle = "#f0efeb"; ctx.fillRect(0, (g.hi - p) * ROW, g.width, ROW); }
  }
  ctx.strokeStyle = "#e7e5df"; ctx.lineWidth = 1;
  for (let b = 0; b <= g.beats; b++) { const x = Math.round(b * g.pxBeat) + 0.5; ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, g.height); ctx.stroke(); }
  ctx.strokeStyle = "#9a978f";
  for (const b of card.roll.bar_lines) { const x = Math.round(b * g.pxBeat) + 0.5; ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, g.height); ctx.stroke(); }
  ctx.fillStyle = "#8a877f"; ctx.font = "9px sans-serif";
  for (let p = g.lo; p <= g.hi; p++) {          // octave labels on every C
    if (p % 12 === 0 && ROW * 2 < g.height) ctx.fillText(`C${p / 12 - 1}`, 2, (g.hi - p + 1) * ROW - 1);
  }
  ctx.fillStyle = "#2d6cdf"; ctx.strokeStyle = "#1b4a9e";
  for (const [on, dur, pitch, vel] of card.roll.notes) {
    const x = on * g.pxBeat, w = Math.max(2, dur * g.pxBeat - 1), y = (g.hi - pitch) * ROW;
    ctx.globalAlpha = 0.45 + 0.55 * (vel / 127);
    ctx.fillRect(x, y, w, ROW - 1);
  }
  ctx.globalAlpha = 1;
  const reg = card.sample && card.sample.region;
  if (reg && "mask_start" in reg) {              // the region this version regenerated
    const spb = card.roll.steps_per_beat || 4;
    const x0 = (reg.mask_start ?? 0) / spb * g.pxBeat;
    const x1 = (reg.mask_end ?? (card.roll.width || 0)) / spb * g.pxBeat;
    const y0 = "mask_pitch_high" in reg ? (g.hi - reg.mask_pitch_high) * ROW : 0;
    const y1 = "mask_pitch_low" in reg ? (g.hi - reg.mask_pitch_low + 1) * ROW : g.height;
    ctx.setLineDash([4, 3]); ctx.strokeStyle = "#3b9a57"; ctx.lineWidth = 1.5;
    ctx.strokeRect(x0 + 0.5, y0 + 0.5, x1 - x0 - 1, y1 - y0 - 1); ctx.setLineDash([]); ctx.lineWidth = 1;
  }
  const sel = card.selection;
  if (sel) {
    ctx.fillStyle = "rgba(240, 160, 40, 0.28)"; ctx.strokeStyle = "#d9822b";
    const x0 = sel.b0 * g.pxBeat, x1 = sel.b1 * g.pxBeat;
    const y0 = sel.band ? (g.hi - sel.p1) * ROW : 0, y1 = sel.band ? (g.hi - sel.p0 + 1) * ROW : g.height;
    ctx.fillRect(x0, y0, x1 - x0, y1 - y0); ctx.strokeRect(x0 + 0.5, y0 + 0.5, x1 - x0, y1 - y0);
  }
  if (playBeat !== undefined) {
    const x = playBeat * g.pxBeat;
    ctx.strokeStyle = "#d33"; ctx.lineWidth = 2; ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, g.height); ctx.stroke();
    const scroll = $(".roll-scroll", card.node);
    if (x < scroll.scrollLeft || x > scroll.scrollLeft + scroll.clientWidth - 20) scroll.scrollLeft = Math.max(0, x - 40);
  }
}

function secondsToBeat(tempos, t) {
  // tempos: [[beat, qpm], ...] sorted; walk the map
  let beat = 0, time = 0;
  const map = tempos.length ? tempos : [[0, 120]];
  for (let i = 0; i < map.length; i++) {
    const [b, qpm] = map[i];
    const next = i + 1 < map.length ? map[i + 1][0] : Infinity;
    const span = (next - b) * 60 / qpm;
    if (t <= time + span) return b + (t - time) * qpm / 60;
    time += span; beat = next;
  }
  return beat;
}

function tick(card) {
  const audio = $("audio", card.node);
  if (audio.paused) return;
  drawRoll(card, secondsToBeat(card.roll.tempos, audio.currentTime));
  card.raf = requestAnimationFrame(() => tick(card));
}

function attachSelection(card, canvas) {
  let start = null;
  const at = (ev) => {
    const r = canvas.getBoundingClientRect();
    const g = card.geom;
    const x = Math.min(Math.max(ev.clientX - r.left, 0), g.width), y = Math.min(Math.max(ev.clientY - r.top, 0), g.height - 1);
    return { beat: x / g.pxBeat, pitch: g.hi - Math.floor(y / ROW) };
  };
  canvas.addEventListener("mousedown", (ev) => { start = at(ev); ev.preventDefault(); });
  canvas.addEventListener("mousemove", (ev) => { if (start) { setSelection(card, start, at(ev)); } });
  window.addEventListener("mouseup", (ev) => {
    if (!start) return;
    const end = at(ev);
    if (Math.abs(end.beat - start.beat) * card.geom.pxBeat < 3) { card.selection = null; drawRoll(card); updateRegion(card); }
    else setSelection(card, start, end);
    start = null;
  });
}

function setSelection(card, a, b) {
  const band = $("[data-testid=pitch-band]", card.node).checked;
  let b0 = Math.min(a.beat, b.beat), b1 = Math.max(a.beat, b.beat);
  const roll = card.roll;
  if (card.sample.kind === "grid") {           // snap to whole steps inside the roll
    const spb = roll.steps_per_beat || 4, width = roll.width || Math.ceil(roll.end_beat * spb);
    const s0 = Math.max(0, Math.floor(b0 * spb)), s1 = Math.min(width, Math.max(s0 + 1, Math.ceil(b1 * spb)));
    b0 = s0 / spb; b1 = s1 / spb;
  }
  card.selection = { b0, b1, band, p0: Math.min(a.pitch, b.pitch), p1: Math.max(a.pitch, b.pitch) };
  drawRoll(card);
  updateRegion(card);
}

function regionRequest(card) {
  const sel = card.selection;
  if (!sel) return null;
  if (card.sample.kind === "grid") {
    const spb = card.roll.steps_per_beat || 4;
    const req = { mask_start: Math.round(sel.b0 * spb), mask_end: Math.round(sel.b1 * spb) };
    if (sel.band) { req.mask_pitch_low = sel.p0; req.mask_pitch_high = sel.p1; }
    return req;
  }
  const keep = card.roll.bar_lines.filter((b) => b > 1e-6 && b <= sel.b0 + 1e-6).length;
  return { keep_bars: keep };
}

function describeRegion(req) {
  if ("keep_bars" in req) return `kept ${req.keep_bars} bar(s), continued`;
  let text = `steps ${req.mask_start ?? 0}–${req.mask_end ?? "end"}`;
  if ("mask_pitch_low" in req || "mask_pitch_high" in req) text += `, pitches ${req.mask_pitch_low ?? 0}–${req.mask_pitch_high ?? 127}`;
  return text;
}

function updateRegion(card) {
  const req = regionRequest(card);
  const label = $("[data-testid=region-label]", card.node);
  $("[data-testid=regenerate-button]", card.node).disabled = !req;
  if (!req) { label.textContent = "no region selected"; return; }
  label.textContent = "keep_bars" in req ? `keep ${req.keep_bars} bar(s), continue from there` : describeRegion(req);
  label.dataset.region = JSON.stringify(req);
}

async function regenerate(card) {
  const req = regionRequest(card);
  if (!req) return;
  const seed = numberOrNull($("[data-testid=regen-seed]", card.node));
  const body = { sample_id: card.sample.id, wait: false, ...req };
  if (seed !== null) body.seed = seed;
  try {
    const out = await api("POST", "/api/regenerate", body);
    const samples = await followJob(out.job);
    if (samples.length) await showSample(card, samples[0], true);
  } catch (e) { say(e.message, true); }
}

async function variations(card) {
  try {
    const out = await api("POST", "/api/variations", { sample_id: card.sample.id, num_samples: 2, wait: false });
    const samples = await followJob(out.job);
    samples.forEach((s) => addCard(s));
  } catch (e) { say(e.message, true); }
}

function undo(card) {
  if (card.history.length < 2) return;
  card.history.pop();
  showSample(card, card.history[card.history.length - 1], false);
}

window.addEventListener("DOMContentLoaded", () => {
  $("#sample-form").addEventListener("submit", onSample);
  $("#cancel-button").addEventListener("click", onCancel);
  $("#refresh-models").addEventListener("click", () => loadModels().catch((e) => say(e.message, true)));
  $("#checkpoint").addEventListener("change", (ev) => pickModel(ev.target.value));
  loadModels().catch((e) => say(e.message, true));
  document.body.dataset.ready = "1";
});
