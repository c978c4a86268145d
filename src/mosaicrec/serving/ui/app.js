// The mosaicrec page: every value is written with textContent (never as HTML), and every call, media
// included, carries the key from this tab's sessionStorage as X-API-Key (media become blob: URLs).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { key: sessionStorage.getItem("mosaicrec.key") || "", meta: null, user: null, request: null };
const blobs = new Map();

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "on") for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
    else node[k] = v;
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  return node;
}

function say(text, bad = false) {
  $("status").textContent = text;
  $("status").className = bad ? "bad" : "";
}

// Calls in flight, on <body data-pending>: the busy cursor, and what a test waits on.
function pending(delta) {
  const n = Number(document.body.dataset.pending || 0) + delta;
  document.body.dataset.pending = String(n);
  document.body.classList.toggle("busy", n > 0);
}

async function api(path, opts = {}) {
  pending(1);
  try { return await call(path, opts); } finally { pending(-1); }
}

async function call(path, opts) {
  const headers = { "X-API-Key": state.key, ...(opts.headers || {}) };
  let body = opts.body;
  if (body && !(body instanceof FormData)) { headers["Content-Type"] = "application/json"; body = JSON.stringify(body); }
  const r = await fetch(path, { method: opts.method || "GET", headers, body });
  if (!r.ok) {
    let detail = r.statusText;
    try { detail = (await r.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Error(`${r.status}: ${detail}`);
  }
  return opts.raw ? r : r.json();
}

async function media(id, kind) {
  const k = `${kind}:${id}`;
  if (!blobs.has(k)) {
    const r = await api(`/items/${encodeURIComponent(id)}/media/${kind}`, { raw: true });
    blobs.set(k, URL.createObjectURL(await r.blob()));
  }
  return blobs.get(k);
}

const can = (kind) => ({ read: 0, write: 1, admin: 2 })[state.meta?.key] >= ({ read: 0, write: 1, admin: 2 })[kind];

// -- cards --------------------------------------------------------------------------------------------
function attrText(attrs) {
  return Object.entries(attrs || {}).filter(([, v]) => v !== null && v !== "")
    .map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(", ") : v}`).join(" · ");
}

function card(info, extra = {}) {
  const c = el("article", { className: "card", dataset: { item: info.item_id } });
  const poster = el("div", { className: "poster" }, el("span", {}, (info.title || info.item_id).slice(0, 1)));
  c.append(poster);
  // a video without a picture of its own shows its first frame
  const picture = info.image ? "image" : info.video ? "frame" : null;
  if (picture) media(info.item_id, picture).then((url) => {
    poster.replaceChildren(el("img", { src: url, alt: info.title || info.item_id }));
  }).catch(() => {});
  const body = el("div", { className: "body" },
    el("h3", {}, info.title || info.item_id),
    el("p", { className: "id" }, info.item_id),
    el("p", { className: "attrs" }, attrText(info.attributes)));
  if (extra.score !== undefined) body.append(el("p", { className: "score" }, `score ${Number(extra.score).toFixed(3)}`));
  if (extra.explanation) body.append(el("p", { className: "why" }, extra.explanation));
  if (extra.kg_path) body.append(el("p", { className: "kg" }, extra.kg_path));
  if (extra.modality) body.append(el("p", { className: "modality" }, `modality: ${extra.modality}`));
  if (extra.liked !== undefined) body.append(el("p", { className: extra.liked ? "liked" : "disliked" }, extra.liked ? "liked" : "disliked"));
  if (info.video) {
    const player = el("video", { controls: true, preload: "none", className: "clip" });
    body.append(player);
    media(info.item_id, "video").then((url) => { player.src = url; }).catch(() => {});
  }
  if (info.audio) {
    const player = el("audio", { controls: true, preload: "none" });
    body.append(player);
    media(info.item_id, "audio").then((url) => { player.src = url; }).catch(() => {});
  }
  if (extra.feedback && state.user && can("write")) {
    body.append(el("div", { className: "actions" },
      el("button", { className: "like", on: { click: () => feedback(info.item_id, true) } }, "like"),
      el("button", { className: "dislike", on: { click: () => feedback(info.item_id, false) } }, "dislike")));
  }
  c.append(body);
  return c;
}

async function cardsOf(ids) {
  if (!ids.length) return {};
  const q = ids.map((i) => `id=${encodeURIComponent(i)}`).join("&");
  const { cards } = await api(`/ui/api/cards?${q}`);
  return Object.fromEntries(cards.map((c) => [c.item_id, c]));
}

// -- flows --------------------------------------------------------------------------------------------
async function start() {
  try {
    state.meta = await api("/ui/api/meta");
  } catch (e) { say(`the key was refused (${e.message})`, true); $("app").hidden = true; return; }
  const m = state.meta;
  say(`${m.key} key · ${m.model} · ${m.items} items, ${m.users} users · content: ${m.content.join(", ") || "none"}`);
  $("app").hidden = false;
  $("add-box").hidden = !can("write");
  const models = m.models.includes(m.model_dir) || !m.model_dir ? m.models : [m.model_dir, ...m.models];
  $("model").replaceChildren(...(models.length ? models : [m.model]).map((d) => el("option", { value: d, selected: d === m.model_dir }, d)));
  $("model").disabled = !can("admin") || !m.models.length;
  $("model").title = can("admin") ? "reloads the service's model (for every client)" : "switching models needs an admin key";
  $("model-box").hidden = false;
  $("scenario-box").hidden = !m.scenarios.length;
  $("scenario").replaceChildren(el("option", { value: "" }, "(none)"), ...m.scenarios.map((s) => el("option", { value: s }, s)));
  $("filter-key").replaceChildren(el("option", { value: "" }, "(none)"), ...Object.keys(m.filters).map((f) => el("option", { value: f }, f)));
  $("filter-value").replaceChildren();
  await findUsers();
  if (m.report) loadReport().catch((e) => say(e.message, true));
}

async function findUsers() {
  const q = $("user-q").value.trim();
  const { users } = await api(`/ui/api/users?limit=20&q=${encodeURIComponent(q)}`);
  $("users").replaceChildren(...users.map((u) => el("li", {},
    el("button", { className: "user", dataset: { user: u.user_id }, on: { click: () => pick(u.user_id) } },
      `${u.user_id} (${u.likes} likes)`))));
}

async function pick(user) {
  state.user = user;
  for (const b of document.querySelectorAll("button.user")) b.classList.toggle("on", b.dataset.user === user);
  await Promise.all([loadRecs(), loadHistory()]);
}

function listParams() {
  const p = new URLSearchParams({ k: $("k").value || "10", reasons: $("reasons").value });
  const d = Number($("diversity").value);
  if (d > 0) p.set("diversity", String(d));
  if ($("scenario").value) p.set("scenario", $("scenario").value);
  if ($("filter-key").value && $("filter-value").value) p.append("filter", `${$("filter-key").value}:${$("filter-value").value}`);
  return p;
}

// Each list load takes a ticket: a reply that arrives after a newer request's is dropped, so quick
// changes of the controls never leave an older list on screen.
const tickets = { recs: 0, history: 0, results: 0 };
const current = (box, t) => tickets[box] === t;

async function loadRecs() {
  if (!state.user) return;
  const t = ++tickets.recs;
  try {
    const r = await api(`/users/${encodeURIComponent(state.user)}/recommendations?${listParams()}`);
    const info = await cardsOf(r.items.map((i) => i.item_id));
    if (!current("recs", t)) return;
    state.request = r.request_id;
    $("recs-title").textContent = `Recommendations for ${state.user}`;
    $("recs-note").textContent = `${r.model}${r.cold_start ? " · cold start: the popular items" : ""}` +
      `${r.scenario ? ` · scenario ${r.scenario}${r.scenario_known === false ? " (unseen: shared scores)" : ""}` : ""}` +
      ` · policy ${r.policy}`;
    $("recs").replaceChildren(...r.items.map((i) => card({ ...i, ...(info[i.item_id] || {}) }, { ...i, feedback: true })));
    if (!r.items.length) $("recs").append(el("p", { className: "note" }, "no items pass these filters"));
  } catch (e) { say(e.message, true); }
}

async function loadHistory() {
  const t = ++tickets.history;
  try {
    const h = await api(`/ui/api/users/${encodeURIComponent(state.user)}/history?k=20`);
    if (!current("history", t)) return;
    $("history").replaceChildren(...h.events.map((e) => card(e.item, { liked: e.liked })));
  } catch (e) { $("history").replaceChildren(el("p", { className: "note" }, e.message)); }
}

async function feedback(item, liked) {
  const m = state.meta;
  const context = { source: "ui" };
  if (state.request) context.request_id = state.request;
  if ($("scenario").value) context.scenario = $("scenario").value;
  try {
    await api("/events", { method: "POST", body: { events: [{ user_id: state.user, item_id: item,
      event_type: liked ? "like" : "dislike", weight: liked ? m.like_weight : m.dislike_weight, context }] } });
    say(`${liked ? "liked" : "disliked"} ${item}; the list is updated`);
    await Promise.all([loadRecs(), loadHistory(), findUsers()]);
  } catch (e) { say(e.message, true); }
}

async function search(ev) {
  ev.preventDefault();
  const query = $("search-q").value.trim();
  if (!query) return;
  try {
    const body = { query, k: 10 };
    if (state.user) body.user_id = state.user;
    const t = ++tickets.results;
    const r = await api("/search", { method: "POST", body });
    const info = await cardsOf(r.items.map((i) => i.item_id));
    if (!current("results", t)) return;
    $("search-box").hidden = false;
    $("results").replaceChildren(...r.items.map((i) => card({ ...i, ...(info[i.item_id] || {}) }, { ...i, feedback: true })));
  } catch (e) { say(e.message, true); }
}

function parseAttrs(text) {
  const attrs = {};
  for (const part of text.split(";")) {
    const [k, ...rest] = part.split("=");
    if (k.trim() && rest.length) attrs[k.trim()] = rest.join("=").trim();
  }
  return attrs;
}

async function addItem(ev) {
  ev.preventDefault();
  const id = $("add-id").value.trim();
  const item = { item_id: id, title: $("add-title").value.trim() || null, attributes: parseAttrs($("add-attrs").value) };
  if ($("add-text").value.trim()) item.texts = { description: $("add-text").value.trim() };
  const form = new FormData();
  form.append("item", JSON.stringify(item));
  if ($("add-image").files[0]) form.append("image", $("add-image").files[0]);
  if ($("add-audio").files[0]) form.append("audio", $("add-audio").files[0]);
  if ($("add-video").files[0]) form.append("video", $("add-video").files[0]);
  try {
    say(`adding ${id} (its content is encoded first)…`);
    await api("/items/upload", { method: "POST", body: form });
    const t = ++tickets.results;
    const sims = await api(`/items/${encodeURIComponent(id)}/similar?k=6`);
    const info = await cardsOf([id, ...sims.items.map((i) => i.item_id)]);
    if (!current("results", t)) return;
    $("search-box").hidden = false;
    $("results").replaceChildren(card(info[id] || { item_id: id, title: id }, { explanation: "just added" }),
      ...sims.items.map((i) => card({ ...i, ...(info[i.item_id] || {}) }, { ...i, explanation: `similar to ${id}` })));
    say(`added ${id}: shown with its nearest items`);
    $("add-form").reset();
  } catch (e) { say(e.message, true); }
}

async function switchModel() {
  const dir = $("model").value;
  try {
    say(`loading ${dir}…`);
    await api("/admin/reload", { method: "POST", body: { model_dir: dir } });
    await start();
    await loadRecs();
  } catch (e) { say(e.message, true); }
}

async function loadReport() {
  const r = await api("/ui/api/report");
  const all = [...new Set(r.rows.flatMap((row) => Object.keys(row.metrics)))];
  const at10 = all.filter((n) => n.endsWith("@10"));
  const names = (at10.length ? at10 : all).slice(0, 8);
  $("report-table").replaceChildren(
    el("tr", {}, el("th", {}, "model"), ...names.map((n) => el("th", {}, n))),
    ...r.rows.map((row) => el("tr", {}, el("td", {}, row.model),
      ...names.map((n) => el("td", {}, row.metrics[n] === undefined ? "" : row.metrics[n].toFixed(4))))));
  // what each modality is worth (an evaluation with [ablation]): contribution and its paired 95% interval
  const f = (x) => (x >= 0 ? "+" : "−") + Math.abs(x).toFixed(4);
  $("worth-table").replaceChildren(...(r.modalities.length ? [
    el("tr", {}, ...["model", "scenario", "modality", `${r.modalities[0].metric} contribution`, "95% CI"].map((h) => el("th", {}, h))),
    ...r.modalities.map((w) => el("tr", { className: w.ci_low > 0 || w.ci_high < 0 ? "sure" : "" },
      el("td", {}, w.model), el("td", {}, w.scenario), el("td", {}, w.modality), el("td", {}, f(w.diff)),
      el("td", {}, `[${f(w.ci_low)}, ${f(w.ci_high)}]`)))] : []));
  $("plots").replaceChildren();
  for (const name of r.plots) {
    const res = await api(`/ui/api/report/${encodeURIComponent(name)}`, { raw: true });
    $("plots").append(el("img", { src: URL.createObjectURL(await res.blob()), alt: name, className: "plot" }));
  }
  $("report-box").hidden = false;
}

// -- wiring -------------------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  $("key").value = state.key;
  $("key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.key = $("key").value.trim();
    sessionStorage.setItem("mosaicrec.key", state.key);
    start();
  });
  let timer = null;
  $("user-q").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => findUsers().catch((e) => say(e.message, true)), 200); });
  for (const id of ["scenario", "reasons", "k", "filter-value"]) $(id).addEventListener("change", loadRecs);
  $("diversity").addEventListener("change", () => { $("diversity-v").textContent = $("diversity").value; loadRecs(); });
  $("filter-key").addEventListener("change", () => {
    const values = state.meta.filters[$("filter-key").value] || [];
    $("filter-value").replaceChildren(...values.map((v) => el("option", { value: v }, v)));
    loadRecs();
  });
  $("search-form").addEventListener("submit", search);
  $("add-form").addEventListener("submit", addItem);
  $("model").addEventListener("change", switchModel);
  if (state.key) start();
});
