// avatar-flow review page: plain JavaScript, no build step, nothing loaded from the network.
// The server is the judge of every edit (the planner's own validator); this page only keeps
// the editor state, draws it, and shows what the server says.
"use strict";

const COLOURS = ["#2563eb", "#d9622b", "#2e7d32", "#8e24aa", "#00838f", "#c62828", "#6d4c41", "#5c6bc0"];
const BASE_FIELDS = ["identity", "scene", "mood", "style", "motion"];
const S = {
  job: null, words: [], duration: 1, segments: [], cues: [],
  version: null, saved: null, plan: null, errors: [], affected: [],
  selected: null, run: null, proposal: null, pps: 100, checkSeq: 0,
};
const $ = (sel) => document.querySelector(sel);
const video = $("#video");

function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k);
  return e;
}

// ---------------------------------------------------------------- idle signal
// <body data-idle> says the page has settled: no request in flight, no debounced check or run
// poll waiting, no video load or seek under way, and two animation frames drawn since the last
// redraw (so the DOM is laid out and no pending answer is about to replace it). Every redraw and
// every new request removes it at once, in the same task as the click or key that caused them.
// Tests (and any automation) wait for `body[data-idle]` instead of for time or stable elements.
const pending = new Set();
let idleFrame = 0;
function settle() {
  document.body.removeAttribute("data-idle");
  cancelAnimationFrame(idleFrame);
  idleFrame = requestAnimationFrame(() => {
    idleFrame = requestAnimationFrame(() => { if (!pending.size) document.body.dataset.idle = ""; });
  });
}
function busy(what) { pending.add(what); settle(); }
function done(what) { pending.delete(what); settle(); }
// A timer that counts as pending work until it has fired (or been cancelled).
const timers = {};
function later(name, fn, ms) {
  clearTimeout(timers[name]); busy(name);
  timers[name] = setTimeout(() => { delete timers[name]; done(name); fn(); }, ms);
}
function cancel(name) { clearTimeout(timers[name]); delete timers[name]; done(name); }

async function api(method, url, body) {
  const request = Symbol(`${method} ${url}`);
  busy(request);
  try {
    const res = await fetch(url, {
      method, headers: body ? { "Content-Type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
    let data = null;
    try { data = await res.json(); } catch (e) { data = { detail: res.statusText }; }
    return { ok: res.ok, status: res.status, data };
  } finally {
    done(request);  // the caller's redraw runs before the next frame, so before idle
  }
}

function say(text, isError = false) {
  const m = $("#message");
  m.textContent = text || "";
  m.className = isError ? "error" : "";
}

const fmt = (t) => `${t.toFixed(2)} s`;
const colour = (i) => COLOURS[i % COLOURS.length];
const editRows = () => S.plan.phases.map((p) => ({ action: p.action, first_word: p.first_word, last_word: p.last_word }));
const editBody = () => ({ base: { ...S.plan.base }, phases: editRows() });
const sameEdit = (a, b) => JSON.stringify({ base: a.base, phases: a.phases.map((p) => [p.action, p.first_word, p.last_word]) })
  === JSON.stringify({ base: b.base, phases: b.phases.map((p) => [p.action, p.first_word, p.last_word]) });
const isDirty = () => S.saved && !sameEdit(S.plan, S.saved);
const hasErrors = () => S.errors.length > 0;

// ---------------------------------------------------------------- loading
async function load() {
  const { ok, data } = await api("GET", "/api/job");
  if (!ok) { say(data.detail, true); return; }
  S.job = data; S.words = data.words; S.duration = data.duration; S.segments = data.segments; S.cues = data.cues;
  S.version = data.version; S.saved = structuredClone(data.plan); S.plan = structuredClone(data.plan);
  S.errors = []; S.affected = [];
  $("#title").textContent = data.title || "avatar-flow review";
  $("#job-id").textContent = `job ${data.job.id} · ${data.renderer} · ${data.words.length} words · ${fmt(data.duration)}`;
  $("#author").value = localStorage.getItem("avatar-flow-author") || data.author;
  if (data.checkpoint) $("#checkpoint").value = data.checkpoint;
  if (data.renderers) {  // the registered renderers (plugins included) are the choices
    const sel = $("#renderer"), keep = sel.value;
    sel.replaceChildren(...data.renderers.map((n) => new Option(n, n)));
    sel.value = data.renderers.includes(keep) ? keep : data.renderers[0];
  }
  $("#ask-all").disabled = !data.llm_configured;
  $("#ask-all").title = data.llm_configured ? "Ask the MLLM planner for a new plan (a proposal)"
    : "No MLLM planner configured (AVATAR_FLOW_LLM_BASE_URL)";
  $("#render").title = data.prefect_server ? "Final render through the Prefect deployment produce-video"
    : "Final render in this process (no Prefect server configured)";
  const dl = $("#vocabulary"); dl.replaceChildren(...data.vocabulary.map((v) => el("option", { value: v })));
  S.segStatus = S.segStatus || {};  // filled by a preview or render of this session
  if (video.getAttribute("src") !== data.video && !S.finishShown) video.src = data.video;
  if (!S.finishLoaded) { fillFinishing(data.finishing); S.finishLoaded = true; }
  renderAll();
  await check();
  await loadVersions();
}

// ---------------------------------------------------------------- drawing
function renderAll() {
  renderHeader(); renderTimeline(); renderRows(); renderBase();
}
// Each render* marks the page busy until it has been laid out (see settle()).

function renderHeader() {
  settle();
  const v = S.version;
  $("#version-label").textContent = `v${v.number}`;
  $("#version-label").title = `${v.source} · ${v.author} · ${new Date(v.created_at).toLocaleString()}`;
  $("#dirty").hidden = !isDirty();
  $("#save").disabled = !isDirty() || hasErrors() || running();
  $("#preview").disabled = isDirty() || running();
  $("#finish-preview").disabled = isDirty() || running();
  $("#preview").title = isDirty() ? "Save the edit first: a preview renders a saved version" : "Re-render the saved version with the animatic";
  $("#render").disabled = isDirty() || running();
  $("#ask-all").disabled = !S.job.llm_configured || running();
  $("#add").disabled = running();
}

function running() { return S.run && S.run.state === "running"; }

function renderTimeline() {
  settle();
  const tl = $("#timeline");
  const width = Math.max($("#timeline-wrap").clientWidth - 2, 200);
  S.pps = Math.max(width / S.duration, 70);
  tl.style.width = `${Math.ceil(S.duration * S.pps)}px`;
  const x = (t) => `${t * S.pps}px`;
  const kids = [];
  for (let t = 0; t <= S.duration; t += 1) kids.push(el("div", { class: "tick", style: `left:${x(t)}`, text: `${t}s` }));
  const cueWords = new Set(S.cues.map((c) => c.word_index));
  S.words.forEach((w, i) => kids.push(el("div", {
    class: "word" + (i % 2 ? " odd" : "") + (cueWords.has(i) ? " cue" : ""), "data-word": i, title: `${i}: ${w.word} (${fmt(w.start)})`,
    style: `left:${x(w.start)};width:${x(Math.max(w.end - w.start, 0.05))}`, text: w.word,
    onclick: () => seek(w.start),
  })));
  const badRows = new Set(S.errors.flatMap((e) => e.phases));
  S.plan.phases.forEach((p, i) => {
    if (!validRange(p)) return;
    const s = S.words[p.first_word].start, e = S.words[p.last_word].end;
    const div = el("div", {
      class: "phase" + (i === S.selected ? " selected" : "") + (badRows.has(i) ? " invalid" : ""),
      "data-phase": i, title: `${i + 1}: ${p.action} (${fmt(s)}–${fmt(e)})`,
      style: `left:${x(s)};width:${x(e - s)};background:${colour(i)}`,
    }, el("span", { class: "edge l", "data-edge": "l" }), `${i + 1} ${p.action}`, el("span", { class: "edge r", "data-edge": "r" }));
    div.addEventListener("pointerdown", (ev) => startDrag(ev, i));
    kids.push(div);
  });
  S.segments.forEach((g) => {
    const st = S.segStatus && S.segStatus[g.index];
    const cls = S.affected.includes(g.index) ? "affected" : (st === "rendered" || st === "cached" ? st : "");
    kids.push(el("div", {
      class: `seg ${cls}`, "data-segment": g.index, "data-status": cls,
      style: `left:${x(g.start)};width:${x(g.end - g.start)}`,
      text: `segment ${g.index + 1}` + (cls === "affected" ? " · changes" : cls === "rendered" ? " · re-rendered" : cls === "cached" ? " · reused" : ""),
      onclick: () => seek(g.start),
    }));
    if (g.index > 0) kids.push(el("div", { class: "cut", style: `left:${x(g.start)}` }));
  });
  kids.push(el("div", { class: "playhead", id: "playhead" }));
  tl.replaceChildren(...kids);
  movePlayhead();
}

function validRange(p) {
  return Number.isInteger(p.first_word) && Number.isInteger(p.last_word)
    && p.first_word >= 0 && p.last_word < S.words.length && p.first_word <= p.last_word;
}

function wordOptions(selected) {
  return S.words.map((w, i) => el("option", { value: i, selected: i === selected, text: `${i} ${w.word}` }));
}

function renderRows() {
  settle();
  const body = $("#phases tbody");
  const rows = [];
  const errs = (i) => S.errors.filter((e) => e.phases.includes(i));
  S.plan.phases.forEach((p, i) => {
    const s = validRange(p) ? S.words[p.first_word].start : null, e = validRange(p) ? S.words[p.last_word].end : null;
    const tr = el("tr", { class: "phase-row" + (i === S.selected ? " selected" : ""), "data-index": i },
      el("td", {}, el("span", { class: "swatch", style: `background:${colour(i)}` }), `${i + 1}`),
      el("td", {}, el("button", { class: "seek", title: "Play from this phase", text: "▶", onclick: () => { select(i); if (s !== null) seek(s, true); } })),
      el("td", {}, el("select", { class: "first", "aria-label": `phase ${i + 1} first word`, onchange: (ev) => setWords(i, +ev.target.value, null) }, ...wordOptions(p.first_word))),
      el("td", {}, el("select", { class: "last", "aria-label": `phase ${i + 1} last word`, onchange: (ev) => setWords(i, null, +ev.target.value) }, ...wordOptions(p.last_word))),
      el("td", {}, el("input", { class: "action", list: "vocabulary", value: p.action, "aria-label": `phase ${i + 1} action`,
        oninput: (ev) => { S.plan.phases[i].action = ev.target.value; changed(false); } })),
      el("td", { class: "time", text: s === null ? "–" : `${s.toFixed(2)}–${e.toFixed(2)}` }),
      el("td", { class: "tools" },
        el("button", { class: "split", title: "Split into two phases", text: "split", disabled: p.last_word <= p.first_word, onclick: () => split(i) }),
        el("button", { class: "delete", title: "Delete this phase", text: "✕", onclick: () => remove(i) }),
        el("button", { class: "ask", title: "Ask the planner to re-plan this phase", text: "ask", disabled: !S.job.llm_configured, onclick: () => ask(i) })),
    );
    tr.addEventListener("focusin", () => select(i, false));
    rows.push(tr);
    const mine = errs(i);
    if (mine.length) rows.push(el("tr", { class: "row-errors", "data-index": i }, el("td", { colspan: 7 },
      el("ul", { class: "errors" }, ...mine.map((m) => el("li", { text: m.message }))))));
  });
  body.replaceChildren(...rows);
  const general = S.errors.filter((e) => !e.phases.length && !e.field);
  $("#plan-errors").replaceChildren(...general.map((m) => el("li", { text: m.message })));
}

function renderBase() {
  settle();
  const box = $("#base");
  if (box.childElementCount && box.dataset.version === String(S.version.number) && !box.dataset.reset) {
    for (const f of BASE_FIELDS) {
      const ul = box.querySelector(`ul[data-field="${f}"]`);
      ul.replaceChildren(...S.errors.filter((e) => e.field === f).map((m) => el("li", { text: m.message })));
    }
    return;
  }
  delete box.dataset.reset;
  box.dataset.version = String(S.version.number);
  box.replaceChildren(...BASE_FIELDS.flatMap((f) => [
    el("label", {}, f, el("input", { "data-field": f, value: S.plan.base[f] || "",
      oninput: (ev) => { S.plan.base[f] = ev.target.value; changed(false); } })),
    el("ul", { class: "errors", "data-field": f }, ...S.errors.filter((e) => e.field === f).map((m) => el("li", { text: m.message }))),
  ]));
}

// ---------------------------------------------------------------- editing
function select(i, redraw = true) {
  S.selected = i;
  document.querySelectorAll("tr.phase-row").forEach((tr) => tr.classList.toggle("selected", +tr.dataset.index === i));
  document.querySelectorAll(".phase").forEach((d) => d.classList.toggle("selected", +d.dataset.phase === i));
  if (redraw) renderHeader();
}

function setWords(i, first, last) {
  const p = S.plan.phases[i];
  if (first !== null) p.first_word = first;
  if (last !== null) p.last_word = last;
  if (p.last_word < p.first_word) { if (first !== null) p.last_word = p.first_word; else p.first_word = p.last_word; }
  changed(true);
}

function sortPhases() {
  const sel = S.plan.phases[S.selected];
  S.plan.phases.sort((a, b) => a.first_word - b.first_word || a.last_word - b.last_word);
  if (sel) S.selected = S.plan.phases.indexOf(sel);
}

function changed(structural) {
  if (structural) { sortPhases(); renderRows(); }
  renderTimeline(); renderHeader();
  later("check", check, 200);
}

function split(i) {
  const p = S.plan.phases[i];
  if (p.last_word <= p.first_word) return;
  const mid = Math.floor((p.first_word + p.last_word) / 2);
  S.plan.phases.splice(i + 1, 0, { action: p.action, first_word: mid + 1, last_word: p.last_word, source: "edit" });
  p.last_word = mid;
  changed(true);
}

function remove(i) {
  S.plan.phases.splice(i, 1);
  if (S.selected === i) S.selected = null;
  changed(true);
}

function addPhase() {
  const t = video.currentTime || 0;
  const taken = new Set(S.plan.phases.flatMap((p) => range(p.first_word, p.last_word)));
  let first = S.words.findIndex((w, i) => w.end > t && !taken.has(i));
  if (first < 0) first = S.words.findIndex((w, i) => !taken.has(i));
  if (first < 0) { say("every word already belongs to a phase; shorten one first", true); return; }
  let last = first;
  while (last + 1 < S.words.length && !taken.has(last + 1) && S.words[last].end - S.words[first].start < S.job.constraints.min_phase_seconds) last++;
  const phase = { action: "nods gently", first_word: first, last_word: last, source: "edit" };
  S.plan.phases.push(phase);
  S.selected = S.plan.phases.length - 1;
  changed(true);
  S.selected = S.plan.phases.indexOf(phase);
  renderRows(); renderTimeline();
}

function range(a, b) { const r = []; for (let i = a; i <= b; i++) r.push(i); return r; }

// Dragging on the timeline: an edge resizes, the body moves the phase; both snap to words.
function startDrag(ev, i) {
  ev.preventDefault();
  const edge = ev.target.dataset.edge || "body";
  const p = S.plan.phases[i];
  const x0 = ev.clientX, f0 = p.first_word, l0 = p.last_word;
  const t0 = S.words[f0].start;
  let moved = false;
  const onMove = (e) => {
    const dt = (e.clientX - x0) / S.pps;
    if (Math.abs(e.clientX - x0) > 3) moved = true;
    if (!moved) return;
    const n = S.words.length;
    if (edge === "l") {
      p.first_word = nearestWord(S.words[f0].start + dt, "start", 0, l0);
    } else if (edge === "r") {
      p.last_word = nearestWord(S.words[l0].end + dt, "end", f0, n - 1);
    } else {
      const span = l0 - f0;
      const f = nearestWord(t0 + dt, "start", 0, n - 1 - span);
      p.first_word = f; p.last_word = f + span;
    }
    renderTimeline();
  };
  // On the window: the timeline is redrawn while dragging, so the pressed element goes away.
  const onUp = () => {
    window.removeEventListener("pointermove", onMove);
    window.removeEventListener("pointerup", onUp);
    if (!moved) { select(i); seek(S.words[p.first_word].start); return; }
    S.selected = i;
    changed(true);
  };
  window.addEventListener("pointermove", onMove);
  window.addEventListener("pointerup", onUp);
}

function nearestWord(t, key, lo, hi) {
  let best = lo;
  for (let k = lo; k <= hi; k++) if (Math.abs(S.words[k][key] - t) < Math.abs(S.words[best][key] - t)) best = k;
  return best;
}

// ---------------------------------------------------------------- server round trips
async function check() {
  const seq = ++S.checkSeq;
  const { ok, data } = await api("POST", `/api/validate?parent=${S.version.number}`, editBody());
  if (seq !== S.checkSeq) return;  // a newer edit is being checked
  if (!ok) { say(data.detail, true); return; }
  S.errors = data.errors;
  S.affected = isDirty() ? data.affected : [];
  if (data.plan) S.plan.phases.forEach((p, i) => { if (data.plan.phases[i]) p.source = data.plan.phases[i].source; });
  renderRows(); renderBase(); renderTimeline(); renderHeader();
}

async function save() {
  cancel("check");
  await check();
  if (hasErrors()) { say("the plan has errors; fix the rows marked in red before saving", true); return; }
  const author = $("#author").value.trim();
  localStorage.setItem("avatar-flow-author", author);
  const { ok, status, data } = await api("POST", "/api/save", { ...editBody(), parent: S.version.number, author });
  if (status === 409) {
    say(`Not saved: ${data.detail}`, true);
    const b = el("button", { text: "Reload the latest version (drops this edit)", onclick: () => { say(""); load(); } });
    $("#message").append(" ", b);
    return;
  }
  if (!ok) { say(data.detail, true); if (data.errors) { S.errors = data.errors; renderAll(); } return; }
  S.version = data.version; S.saved = structuredClone(S.plan); S.affected = [];
  say(data.created ? `Saved as version ${data.version.number}; the edit touches segment(s) ${data.affected.map((i) => i + 1).join(", ") || "none"}. Preview re-renders only those.`
    : "Nothing changed since the last version.");
  renderAll(); await loadVersions();
}

async function startRun(url, body, label) {
  $("#run").hidden = false; $("#run-title").textContent = label;
  $("#run-status").textContent = "starting"; $("#segment-results").replaceChildren();
  const { ok, data } = await api("POST", url, body);
  if (!ok) { say(data.detail, true); $("#run-status").textContent = "not started"; return; }
  S.run = data; say("");
  renderHeader(); poll();
}

async function poll() {
  const { ok, data } = await api("GET", `/api/runs/${S.run.id}`);
  if (!ok) { say(data.detail, true); return; }
  S.run = data;
  const r = data;
  $("#run-progress").max = Math.max(r.total, 1); $("#run-progress").value = r.done;
  $("#run-status").textContent = r.state === "running" ? `running · ${r.stage} ${r.done}/${r.total} ${r.message}${r.via === "deployment" ? " (Prefect deployment)" : ""}`
    : r.state === "failed" ? `failed: ${r.error}` : "done";
  if (r.state === "running") { later("poll", poll, 400); return; }
  renderHeader();
  if (r.state === "failed") { say(`${r.kind} failed: ${r.error}`, true); return; }
  if (r.kind === "propose") { showProposal(r.result); return; }
  const seg = r.segments || [];
  const rendered = seg.filter((s) => s.status === "rendered").map((s) => s.index);
  $("#run-status").textContent = `done: ${rendered.length} of ${seg.length} segments re-rendered, ${seg.length - rendered.length} reused`;
  $("#segment-results").replaceChildren(...seg.map((s) => el("span", {
    class: `chip ${s.status}`, "data-segment": s.index, "data-status": s.status,
    text: `segment ${s.index + 1}: ${s.status === "rendered" ? "re-rendered" : "reused"}`,
  })));
  if (r.kind === "finish") {
    S.finishShown = true;
    video.src = `/media/finish-preview/video.mp4?v=${Date.now()}`;
    const f = r.result.finishing, l = f.loudness, p = f.parts;
    const music = f.music ? `, music ${f.music.file} ducked ${f.music.duck_db} dB` : "";
    $("#finish-result").textContent = `measured ${l.integrated_lufs} LUFS, true peak ${l.true_peak_dbtp} dBTP`
      + ` · intro ${p.intro.toFixed(2)} s + body ${p.body.toFixed(2)} s + outro ${p.outro.toFixed(2)} s${music} · ${f.chapters} chapter(s)`;
    say(`Finishing preview of version ${r.version}: ${rendered.length} segment(s) re-rendered, ${seg.length - rendered.length} reused.`);
    $("#message").append(" ", el("a", { href: "/media/finish-preview/poster.png", target: "_blank", text: "poster" }));
  } else if (r.kind === "preview") {
    const t = video.currentTime;
    await load();
    // A job rendered with another renderer keeps its video; its animatic preview is beside it.
    const own = r.out_dir === S.job.job.out_dir;
    video.src = own ? S.job.video : `/media/preview/video.mp4?v=${Date.now()}`;
    video.currentTime = t;
    S.segStatus = Object.fromEntries(seg.map((s) => [s.index, s.status]));
    renderTimeline();
    say(`Preview of version ${r.version}: segment(s) ${rendered.map((i) => i + 1).join(", ") || "none"} re-rendered, the rest reused.`);
  } else {
    say(`Final render of version ${r.version} finished: ${r.result.outputs.video} `);
    $("#message").append(el("a", { href: "/media/final/video.mp4", target: "_blank", text: "open the video" }));
  }
}

function fillFinishing(f) {
  if (!f) return;
  $("#fin-brand").value = f.brand || ""; $("#fin-music").value = f.music || "";
  $("#fin-volume").value = f.music_volume; $("#fin-loudness").value = f.loudness;
  $("#fin-captions").value = f.burn_captions; $("#fin-chapters").checked = f.chapters;
}
function finishingBody() {
  return {
    brand: $("#fin-brand").value.trim() || null, music: $("#fin-music").value.trim() || null,
    music_volume: Number($("#fin-volume").value), loudness: $("#fin-loudness").value,
    burn_captions: $("#fin-captions").value, chapters: $("#fin-chapters").checked,
  };
}
function finishPreview() {
  startRun("/api/finish", { version: S.version.number, ...finishingBody() }, `Finishing preview of v${S.version.number}`);
}
function preview() { startRun("/api/preview", { version: S.version.number }, `Preview of v${S.version.number}`); }
function render() {
  startRun("/api/render", { version: S.version.number, renderer: $("#renderer").value, checkpoint: $("#checkpoint").value.trim() || null, finishing: finishingBody() },
    `Render of v${S.version.number} (${$("#renderer").value})`);
}
function ask(phase) {
  startRun(`/api/propose?parent=${S.version.number}`, { ...editBody(), phase }, phase === null ? "Asking the planner (whole job)" : `Asking the planner (phase ${phase + 1})`);
}

function showProposal(p) {
  S.proposal = p;
  $("#proposal").hidden = false;
  $("#proposal-scope").textContent = `(${p.scope}${p.model ? ", " + p.model : ""})`;
  $("#proposal-diff").replaceChildren(...(p.diff.length ? p.diff : ["no change"]).map((d) => el("li", { text: d })));
  $("#proposal-errors").replaceChildren(...p.errors.map((e) => el("li", { text: e.message })));
  $("#run-status").textContent = "proposal ready";
}

function acceptProposal() {
  const p = S.proposal.plan;
  S.plan.base = { ...p.base };
  S.plan.phases = p.phases.map((q) => ({ action: q.action, first_word: q.first_word, last_word: q.last_word, source: q.source }));
  $("#base").dataset.reset = "1";
  closeProposal(); renderAll(); changed(true);
  say("Proposal accepted into the editor: review it, then Save.");
}
function closeProposal() { S.proposal = null; $("#proposal").hidden = true; }

async function loadVersions() {
  const { ok, data } = await api("GET", "/api/versions");
  if (!ok) return;
  $("#versions").replaceChildren(...data.map((v) => el("li", { class: v.number === S.version.number ? "current" : "", "data-version": v.number },
    `v${v.number} · ${v.source} · ${v.author || "?"} · ${new Date(v.created_at).toLocaleString()} `,
    el("button", { class: "view", text: "view", onclick: () => viewVersion(v.number) }), " ",
    el("button", { class: "restore", text: "edit from here", title: "Load this version into the editor (saving makes it the newest version)", onclick: () => restore(v.number) }),
    el("ul", { class: "diff" }, ...v.diff.map((d) => el("li", { text: d }))))));
}

async function viewVersion(n) {
  const { ok, data } = await api("GET", `/api/versions/${n}`);
  if (!ok) { say(data.detail, true); return; }
  const pre = $("#version-view");
  pre.hidden = false;
  pre.textContent = `version ${n} (${data.source}, ${data.author}, ${new Date(data.created_at).toLocaleString()})\n`
    + data.plan.phases.map((p, i) => `${i + 1}. words ${p.first_word}..${p.last_word} (${p.start.toFixed(2)}–${p.end.toFixed(2)} s): ${p.action}`).join("\n");
}

async function restore(n) {
  const { ok, data } = await api("GET", `/api/versions/${n}`);
  if (!ok) { say(data.detail, true); return; }
  S.plan = { ...structuredClone(S.plan), base: { ...data.plan.base }, phases: structuredClone(data.plan.phases) };
  $("#base").dataset.reset = "1";
  renderAll(); changed(true);
  say(`Version ${n} loaded into the editor; Save makes it the newest version.`);
}

// ---------------------------------------------------------------- video <-> timeline
function seek(t, play = false) {
  if (video.readyState > 0) busy("video-seek");  // now: its "seeking" event comes a task later
  video.currentTime = Math.min(Math.max(t + 0.001, 0), S.duration);
  if (play) video.play().catch(() => {});
  movePlayhead();
}

function movePlayhead() {
  const ph = $("#playhead");
  if (!ph) return;
  const t = video.currentTime || 0;
  ph.style.left = `${t * S.pps}px`;
  document.querySelectorAll(".word.now").forEach((w) => w.classList.remove("now"));
  const wi = S.words.findIndex((w) => w.start <= t && t < w.end);
  if (wi >= 0) { const w = document.querySelector(`.word[data-word="${wi}"]`); if (w) w.classList.add("now"); }
  const pi = S.plan.phases.findIndex((p) => validRange(p) && S.words[p.first_word].start <= t && t < S.words[p.last_word].end);
  document.querySelectorAll("tr.phase-row").forEach((tr) => tr.classList.toggle("active", +tr.dataset.index === pi));
  const wrap = $("#timeline-wrap"), px = t * S.pps;
  if (!video.paused && (px < wrap.scrollLeft || px > wrap.scrollLeft + wrap.clientWidth - 20)) wrap.scrollLeft = px - 40;
  $("#playhead").dataset.time = t.toFixed(3);
}

function tick() { movePlayhead(); if (!video.paused) requestAnimationFrame(tick); }
video.addEventListener("play", () => requestAnimationFrame(tick));
video.addEventListener("timeupdate", movePlayhead);
video.addEventListener("seeked", movePlayhead);
// A video load or seek under way is pending work (the frame shown is about to change).
video.addEventListener("loadstart", () => busy("video-load"));
for (const ev of ["loadeddata", "error", "abort", "emptied"]) video.addEventListener(ev, () => done("video-load"));
video.addEventListener("seeking", () => busy("video-seek"));
for (const ev of ["seeked", "error", "abort", "emptied"]) video.addEventListener(ev, () => done("video-seek"));
window.addEventListener("resize", () => S.plan && renderTimeline());

$("#save").addEventListener("click", save);
$("#preview").addEventListener("click", preview);
$("#finish-preview").addEventListener("click", finishPreview);
$("#render").addEventListener("click", render);
$("#ask-all").addEventListener("click", () => ask(null));
$("#add").addEventListener("click", addPhase);
$("#accept").addEventListener("click", acceptProposal);
$("#reject").addEventListener("click", () => { closeProposal(); say("Proposal rejected; the plan is unchanged."); });
window.addEventListener("beforeunload", (e) => { if (isDirty()) { e.preventDefault(); e.returnValue = ""; } });
load();
