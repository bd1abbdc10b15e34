// smartbin operator page: five tabs over the JSON API (see edge/web/app.py); the visible tab refreshes itself.
"use strict";

const OUTCOMES = ["sorted", "rejected", "late", "too_close", "error"];
const REFRESH_MS = { live: 1000, today: 5000, health: 5000 };  // Teach loads when shown and after each label
const CLASS_KEYS = [..."1234567890abcdefghijklmopqrtvwxyz"];  // n, s and u are not an item, skip and undo
const teach = { labels: [], notItem: "not-an-item", left: 0, frames: [], current: null, skipped: new Set(),
  done: [], busy: false };
let uploadCapMb = null;
let timer = null;
let generation = 0;
let shownFrame = null;
let frameBroken = false;

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

const pct = (p) => `${(100 * p).toFixed(1)} %`;
const clock = (t) => new Date(t * 1000).toLocaleTimeString([], { hour12: false });
const stamp = (t) => new Date(t * 1000).toLocaleString([], { hour12: false });
const ms = (v) => (v === undefined || v === null ? "–" : v.toFixed(1));

function duration(s) {
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return d ? `${d} d ${h} h` : h ? `${h} h ${m} min` : `${m} min ${Math.floor(s % 60)} s`;
}

async function getJSON(url, options = {}) {
  const response = await fetch(url, { cache: "no-store", credentials: "same-origin", ...options });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

function tag(text, kind) {
  return el("span", { class: `tag ${kind || ""}` }, text);
}

function bars(container, topK) {
  container.replaceChildren(...topK.map(([label, p]) =>
    el("div", { class: "bar", "data-label": label, "data-p": String(p) },
      el("span", { class: "name" }, label),
      el("span", { class: "track" }, el("span", { class: "fill", style: `width: ${(100 * p).toFixed(1)}%` })),
      el("span", { class: "value" }, pct(p)))));
}

function facts(dl, pairs) {
  dl.replaceChildren(...pairs.flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, value ?? "–")]));
}

function table(node, head, rows) {
  node.replaceChildren(
    el("thead", {}, el("tr", {}, ...head.map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows.map((cells) => el("tr", {}, ...cells.map((c) => el("td", {}, c))))));
}

async function showLive() {
  const { item, mode } = await getJSON("/api/live");
  $("live-empty").hidden = item !== null;
  if (item === null) return;
  $("live-label").textContent = item.label === null ? "not classified" : `${item.label} ${pct(item.confidence)}`;
  $("live-tags").replaceChildren(tag(`bin ${item.bin}`, "bin"), " ", tag(item.outcome, item.outcome));
  facts($("live-facts"), [
    ["item", `${item.id} (frame ${item.frame})`], ["time", stamp(item.time)], ["gate", item.gate_action],
    ["latency", `${ms(item.latency_ms.total)} ms (since the camera line ${ms(item.latency_ms.since_line)} ms)`],
    ["truth", item.truth], ["error", item.error],
  ].filter(([, v]) => v !== null && v !== undefined));
  bars($("live-bars"), item.top_k);
  const frame = $("live-frame");
  if (item.frame_url !== shownFrame) {
    shownFrame = item.frame_url;
    frameBroken = false;
    if (item.frame_url) frame.src = item.frame_url;
  }
  frame.onerror = () => { frameBroken = true; frame.hidden = true; $("live-noframe").hidden = false; };
  const showFrame = Boolean(item.frame_url) && !frameBroken;  // no broken-image icon when the frame is gone
  frame.hidden = !showFrame;
  $("live-noframe").hidden = showFrame;
  $("live-caption").textContent = mode === "sorter"
    ? `item ${item.id}: its best-centred frame; the amber box is what the model sees (the item crop or the region of interest)`
    : `item ${item.id}: smartbin web without the sorter shows kept frames only`;
}

async function showToday() {
  const [today, items] = await Promise.all([getJSON("/api/today"), getJSON("/api/items?limit=50")]);
  $("today-outcomes").replaceChildren(
    el("div", { class: "card", "data-outcome": "total" }, el("b", {}, String(today.total)), "items today"),
    ...OUTCOMES.map((o) => el("div", { class: `card ${o}`, "data-outcome": o },
      el("b", {}, String(today.outcomes[o])), o.replace("_", " "))));
  const truths = Object.keys(today.purity).length > 0;  // replay of labelled photos, the simulator
  table($("today-bins"), ["bin", "items", ...OUTCOMES.map((o) => o.replace("_", " ")),
    ...(truths ? ["purity (known truths)"] : [])],
    Object.entries(today.by_bin).map(([bin, counts]) =>
      [bin, String(today.bins[bin]), ...OUTCOMES.map((o) => String(counts[o])),
        ...(truths ? [today.purity[bin] ? `${pct(today.purity[bin].purity)} of ${today.purity[bin].known}` : "–"]
          : [])]));
  $("today-bins").querySelectorAll("tbody tr").forEach((row, i) => {
    row.dataset.bin = Object.keys(today.by_bin)[i];
  });
  const buckets = today.throughput.buckets;
  const most = Math.max(1, ...buckets.map(([, n]) => n));
  $("today-throughput").replaceChildren(...(buckets.length ? buckets.map(([t, n]) =>
    el("div", { class: "column", title: `${clock(t)}: ${n} items`, "data-n": String(n) },
      el("span", { class: "count" }, n ? String(n) : ""),
      el("span", { class: "stick", style: `height: ${(100 * n) / most}%` }),
      el("span", { class: "when" }, clock(t).slice(0, 5)))) : [el("p", { class: "muted" }, "no items today")]));
  table($("today-items"), ["time", "item", "label", "confidence", "bin", "outcome", "why", "frame"],
    items.map((item) => [
      clock(item.time), String(item.id), item.label ?? "–",
      item.confidence === null ? "–" : pct(item.confidence), item.bin, tag(item.outcome, item.outcome),
      item.reason ?? "–",
      item.frame_url ? el("a", { href: item.frame_url, target: "_blank" }, "frame") : "",
    ]));
}

async function showHealth() {
  const h = await getJSON("/api/health");
  uploadCapMb = h.upload_cap_mb;
  const m = h.model, v = m.validation || {};
  facts($("health-facts"), [
    ["mode", h.mode === "sorter" ? "sorter (this process sorts)" : "standalone (records only, no camera)"],
    ["uptime", `${duration(h.uptime_s)} (since ${stamp(h.started)})`],
    ["camera", h.camera ? `${h.camera.source}: ${h.camera.fps.toFixed(1)} fps, ${h.camera.frames} frames` : "–"],
    ["model", m.error ? `${m.file}: ${m.error}` : `${m.file} (${m.labels} classes, ${m.input} px, ${m.runtime})`],
    ["card", m.error ? "–" : `${m.quantization ?? "?"}; validation on ${v.images ?? "?"} images: ` +
      `int8 top-1 ${v.int8_top1_pct ?? "?"} %, agreement with float ${v.top1_agreement_pct ?? "?"} %, ` +
      `drop ${v.drop_pp ?? "?"} pp`],
    ["model rollback", h.model_rollback ?? "none in the last day"],
    ["shadow model", h.shadow ? `${h.shadow.model}: ${h.shadow.items} items, agreement ` +
      `${(100 * h.shadow.agreement).toFixed(1)} %` + (h.shadow.known ? `, top-1 ${(100 * h.shadow.top1).toFixed(1)} ` +
      `% vs live ${(100 * h.shadow.live_top1).toFixed(1)} % on ${h.shadow.known} known` : "") : "none"],
    ["records", `${h.records.items} items in ${h.records.database}`],
    ["last error", h.last_error
      ? `${stamp(h.last_error.time)} item ${h.last_error.id}: ${h.last_error.error}` : "none"],
    ["version", `smartbin ${h.version}`],
  ]);
  table($("health-latency"), ["stage", "median", "95th percentile", "max", "items"],
    Object.entries(h.latency_ms).map(([stage, s]) => [stage, ms(s.p50), ms(s.p95), ms(s.max), String(s.items)]));
}

async function classify(event) {
  event.preventDefault();
  const file = $("classify-file").files[0];
  const error = $("classify-error");
  error.hidden = true;
  $("classify-result").hidden = true;
  if (!file) return;
  if (uploadCapMb !== null && file.size > uploadCapMb * 1024 * 1024) {
    error.textContent = `upload too large: at most ${uploadCapMb} MB`;
    error.hidden = false;
    return;
  }
  try {
    const result = await getJSON("/api/classify", { method: "POST", body: new FormData($("classify-form")) });
    $("classify-preview").src = URL.createObjectURL(file);
    $("classify-label").textContent = `${result.label} ${pct(result.confidence)}`;
    $("classify-tags").replaceChildren(
      tag(`would go to bin ${result.bin}`, "bin"), " ",
      tag(result.rejected ? `rejected (${result.reason})` : `sorted (${result.reason})`,
        result.rejected ? "rejected" : "sorted"),
      " ", el("span", { class: "muted" }, `${result.model}, ${result.crop}, ${result.rule}, ${result.ms} ms`));
    bars($("classify-bars"), result.top_k);
    $("classify-result").hidden = false;
  } catch (e) {
    error.textContent = e.message;
    error.hidden = false;
  }
}

async function showTeach(first = null) {
  const t = await getJSON(`/api/teach?limit=${Math.min(500, 40 + teach.skipped.size)}`);
  if (t.labels.join("\n") !== teach.labels.join("\n")) classButtons(t.labels);
  teach.notItem = t.not_item;
  teach.left = t.counts.left;
  teach.frames = t.frames.filter((f) => !teach.skipped.has(f.id) && f.id !== first?.id);
  if (first) teach.frames.unshift(first);  // an undone label: its frame again
  const names = [...Object.keys(t.counts.labelled), t.not_item, "left"];
  table($("teach-counts"), ["label", "frames"], [...Object.entries(t.counts.labelled),
    ["not an item", t.counts.not_item], ["left to label", t.counts.left]].map(([name, n]) => [name, String(n)]));
  $("teach-counts").querySelectorAll("tbody tr").forEach((row, i) => { row.dataset.label = names[i]; });
  nextFrame();
  showModel().catch((e) => { $("model-message").textContent = `cannot read the model: ${e.message}`; });  // not awaited: keys stay live
}

const share = (v) => (v === null || v === undefined ? "–" : v.toFixed(3));

async function showModel() {
  const m = model.facts = await getJSON("/api/model");
  const s = m.staged;
  const c = s?.compared;
  const rows = [["running", `${m.current.file}${m.current.version ? ` (version ${m.current.version})` : ""}`]];
  if (s) {
    const learnt = s.learn?.site_held_out;
    rows.push(["candidate", `${s.file} (${(s.sha256 || "?").slice(0, 12)})`]);
    if (learnt) rows.push(["when learnt", `held-out site items ${learnt.items}: ${share(learnt.before.top1)} → ` +
      `${share(learnt.after.top1)}; test split ${share(s.learn.test?.before?.top1)} → ${share(s.learn.test?.after?.top1)}`]);
    rows.push(["labelled frames it did not learn", c === null || c === undefined ? "comparing…"
      : c.error ? c.error : c.frames ? `${c.frames}: candidate ${share(c.candidate)}, running ${share(c.current)}`
        : "none yet: label more frames"]);
    rows.push(["in the shadow", s.shadow ? `${s.shadow.items} items, agreement ${pct(s.shadow.agreement ?? 0)}`
      : "no item yet"]);
  }
  const last = m.history.at(-1);
  if (last) rows.push(["last change", `${last.action}${last.auto ? " (automatic)" : ""} ${stamp(last.time)}`]);
  facts($("model-facts"), rows);
  $("model-install").hidden = $("model-discard").hidden = !s;
  $("model-rollback").hidden = !m.current.version;
}

const model = { facts: null };

async function modelAct(path, question, body = {}) {
  if (!window.confirm(question)) return;
  try {
    const done = await getJSON(path, { method: path.endsWith("staged") ? "DELETE" : "POST",
      headers: { "Content-Type": "application/json" }, body: path.endsWith("staged") ? undefined : JSON.stringify(body) });
    $("model-message").textContent = `${done.message}${model.facts.restarts ? "; the sorter restarts on it" : ""}`;
  } catch (e) {
    $("model-message").textContent = e.message;
  }
  setTimeout(() => refresh("teach"), model.facts.restarts ? 3000 : 0);  // the page comes back with the sorter
}

function modelClick(event) {
  const s = model.facts?.staged;
  const c = s?.compared;
  const figures = c?.frames ? ` On ${c.frames} labelled frames it did not learn: candidate ${share(c.candidate)}, ` +
    `running ${share(c.current)}.` : " It has not been compared on labelled frames yet.";
  const actions = {
    "model-install": () => modelAct("/api/model/install", `Install ${s.file} in place of ${model.facts.current.file}?` +
      `${figures} Its first items are a trial: it is rolled back by itself if it rejects or fails more.`,
    { sha256: s.sha256 }),
    "model-discard": () => modelAct("/api/model/staged", `Discard the candidate ${s.file}?`),
    "model-rollback": () => modelAct("/api/model/rollback", `Roll back from version ${model.facts.current.version} ` +
      "to the model that ran before it?"),
  };
  const button = event.target.closest("button");
  if (button && actions[button.id]) actions[button.id]();
}

function classButtons(labels) {
  teach.labels = labels;
  $("teach-classes").replaceChildren(...labels.map((label, i) => el("button", { type: "button", "data-label": label },
    label, CLASS_KEYS[i] ? " " : null, CLASS_KEYS[i] ? el("kbd", {}, CLASS_KEYS[i]) : null)));
}

function nextFrame() {
  const frame = teach.current = teach.frames.shift() ?? null;
  $("teach").dataset.item = frame ? String(frame.id) : "";
  $("teach-undo").disabled = teach.done.length === 0;
  $("teach-frame").hidden = frame === null;
  $("teach-empty").hidden = frame !== null;
  if (frame === null) {
    $("teach-empty").textContent = teach.left
      ? `the ${teach.left} frames left were all skipped: open the tab again to see them`
      : "nothing left to label: frames of uncertain items (and a sample of the confident) come as the bin keeps them";
    $("teach-guess").textContent = $("teach-caption").textContent = "";
    $("teach-tags").replaceChildren();
    $("teach-bars").replaceChildren();
    return;
  }
  $("teach-frame").src = frame.frame_url;
  if (teach.frames.length) new Image().src = teach.frames[0].frame_url;  // the next one, ready when it is shown
  $("teach-guess").textContent = frame.guess === null ? "not classified" : `${frame.guess}? ${pct(frame.confidence)}`;
  $("teach-tags").replaceChildren(tag(frame.kept === "sample" ? "sample of the confident" : "uncertain", frame.kept),
    " ", tag(`bin ${frame.bin}`, "bin"), " ", tag(frame.outcome, frame.outcome));
  bars($("teach-bars"), frame.top_k.slice(0, 3));
  $("teach-caption").textContent = `item ${frame.id}, ${stamp(frame.time)}: the model's guess and top-3 beside it`;
}

async function teachAct(action) {
  if (teach.busy) return;  // one request at a time: a key held down labels one frame
  teach.busy = true;
  $("teach-error").hidden = true;
  try {
    await action();
  } catch (e) {
    $("teach-error").textContent = e.message;
    $("teach-error").hidden = false;
  } finally {
    teach.busy = false;
  }
}

const labelAs = (label) => teachAct(async () => {
  const frame = teach.current;
  if (!frame) return;
  const who = $("teach-who").value.trim();
  await getJSON(`/api/teach/${frame.id}`, { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(who ? { label, who } : { label }) });
  teach.done.push(frame);
  await showTeach();
});

const skip = () => teachAct(async () => {
  if (!teach.current) return;
  teach.skipped.add(teach.current.id);
  if (teach.frames.length) nextFrame();
  else await showTeach();
});

const undo = () => teachAct(async () => {
  const frame = teach.done.pop();
  if (!frame) return;
  await getJSON(`/api/teach/${frame.id}`, { method: "DELETE" });
  await showTeach(frame);
});

function teachKey(event) {
  if ($("teach").hidden || event.ctrlKey || event.metaKey || event.altKey || event.target.closest("input")) return;
  const key = event.key.toLowerCase();
  const i = CLASS_KEYS.indexOf(key);
  const action = i >= 0 && i < teach.labels.length ? () => labelAs(teach.labels[i])
    : key === "n" ? () => labelAs(teach.notItem)
      : key === "s" || key === " " ? skip
        : key === "u" || key === "backspace" ? undo : null;
  if (action === null) return;
  event.preventDefault();
  action();
}

function teachClick(event) {
  const button = event.target.closest("button");
  if (!button || button.closest("#model-panel")) return;
  button.blur();  // so that Space skips rather than pressing the button again
  if (button.dataset.label) labelAs(button.dataset.label);
  else ({ "teach-skip": skip, "teach-not": () => labelAs(teach.notItem), "teach-undo": undo })[button.id]();
}

const VIEWS = { live: showLive, today: showToday, health: showHealth, teach: showTeach };

async function refresh(name) {
  try {
    await VIEWS[name]();
    $("status").textContent = `updated ${clock(Date.now() / 1000)}`;
    $("status").className = "";
  } catch (e) {
    $("status").textContent = `cannot update: ${e.message}`;
    $("status").className = "error";
  }
}

function show() {
  const wanted = location.hash.slice(1);
  const name = wanted in VIEWS || wanted === "classify" ? wanted : "live";
  for (const section of document.querySelectorAll("main > section")) section.hidden = section.id !== name;
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.hash === `#${name}`);
  const mine = ++generation; // a refresh loop ends when another tab is shown
  clearTimeout(timer);
  if (!(name in VIEWS)) return;
  const loop = async () => {
    await refresh(name);
    if (mine === generation && name in REFRESH_MS) timer = setTimeout(loop, REFRESH_MS[name]);
  };
  loop();
}

$("classify-form").addEventListener("submit", classify);
$("teach").addEventListener("click", teachClick);
$("model-panel").addEventListener("click", modelClick);
document.addEventListener("keydown", teachKey);
window.addEventListener("hashchange", show);
getJSON("/api/health").then((h) => { uploadCapMb = h.upload_cap_mb; }).catch(() => {});
show();
