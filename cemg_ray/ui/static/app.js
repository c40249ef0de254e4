// The recommendations page: plain DOM calls over the JSON endpoints of cemg_ray/ui/app.py, no build step.
// Every value from the run goes into the page as text (textContent / attributes), never as HTML.
"use strict";

const PAGE = 20;
const state = { run: null, userOffset: 0, userQuery: "", selected: null, last: null, report: null };
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

async function api(path, options = {}) {
  const res = await fetch(path, options);
  const body = await res.json().catch(() => ({ error: `${res.status} ${res.statusText}` }));
  if (!res.ok) throw new Error(body.error || `${res.status} ${res.statusText}`);
  return body;
}

function setStatus(node, text, isError = false) {
  node.textContent = text;
  node.classList.toggle("error", isError);
}

const fmt = (x, digits = 3) => (x === null || x === undefined || Number.isNaN(x) ? "—" : Number(x).toFixed(digits));

// -- items ---------------------------------------------------------------------------------------------------------
function picture(item) {
  return item.image_url
    ? el("img", { src: item.image_url, alt: item.title || item.item_id, loading: "lazy" })
    : el("div", { class: "noimg", title: "no picture in the catalog" });
}

function semanticId(codes) {
  if (!codes) return el("span", { class: "sid muted", text: "—" });
  return el("span", { class: "sid", "data-codes": codes.join(","), title: "one code per level; the last disambiguates",
    text: codes.join(" · ") });
}

function coldBadge(item) {
  const hint = `${item.train_interactions} training interactions (cold-start: ≤ ${state.run.cold_start_max})`;
  return item.cold_start ? el("span", { class: "badge cold", title: hint, text: "cold-start" })
    : el("span", { class: "muted", title: hint, text: `no (${item.train_interactions})` });
}

function historyCard(item) {
  return el("li", { class: item.seen_by_model ? "hist" : "hist unseen", "data-item-id": item.item_id,
      title: item.seen_by_model ? item.item_id : `${item.item_id}: older than the last ${state.run.max_len}, not an input` },
    picture(item), el("span", { class: "t", text: item.title || item.item_id }),
    el("span", { class: "muted", text: item.item_id }), " ", item.cold_start ? coldBadge(item) : null);
}

function recRow(item) {
  return el("tr", { class: "rec", "data-item-id": item.item_id },
    el("td", { class: "num rank", text: item.rank }),
    el("td", {}, picture(item)),
    el("td", { class: "title", text: item.title || "" }),
    el("td", { class: "item-id", text: item.item_id }),
    el("td", { class: "num score", text: fmt(item.score) }),
    el("td", { class: "semantic-id" }, semanticId(item.semantic_id)),
    el("td", { class: "cold" }, coldBadge(item)));
}

function showAnswer(answer, title) {
  state.last = answer;
  $("answer-title").textContent = title;
  const used = answer.history.filter((h) => h.seen_by_model).length;
  $("history-note").textContent = `(${answer.history.length} items, oldest first; the model reads the last ${used})`;
  $("history").replaceChildren(...answer.history.map(historyCard));
  $("k-shown").textContent = String(answer.k);
  $("model-note").textContent = `from ${answer.model} (${answer.model_version})` +
    (answer.exclude_seen ? ", history items left out" : "");
  $("recs").tBodies[0].replaceChildren(...answer.recommendations.map(recRow));
  $("answer").hidden = false;
  setStatus($("status"), "");
}

function options() {
  return { k: Number($("k").value) || 10, exclude_seen: $("exclude-seen").checked };
}

async function recommendForUser(userId) {
  state.selected = { user: userId };
  for (const b of document.querySelectorAll("#user-list button")) b.classList.toggle("selected", b.dataset.userId === userId);
  setStatus($("status"), `asking for ${userId}…`);
  const { k, exclude_seen } = options();
  const query = new URLSearchParams({ user_id: userId, k, exclude_seen });
  try {
    showAnswer(await api(`api/recommendations?${query}`), `User ${userId}`);
  } catch (err) {
    setStatus($("status"), err.message, true);
  }
}

function typedHistory() {
  return $("history-input").value.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
}

async function recommendForHistory() {
  const history = typedHistory();
  state.selected = { history };
  for (const b of document.querySelectorAll("#user-list button")) b.classList.remove("selected");
  setStatus($("status"), "asking…");
  try {
    const answer = await api("api/recommendations", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ history, ...options() }),
    });
    showAnswer(answer, history.length ? `A typed history of ${history.length} items` : "An empty history");
  } catch (err) {
    setStatus($("status"), err.message, true);
  }
}

// -- users and the item search -------------------------------------------------------------------------------------
async function loadUsers() {
  const query = new URLSearchParams({ q: state.userQuery, offset: state.userOffset, limit: PAGE });
  try {
    const page = await api(`api/users?${query}`);
    $("user-list").replaceChildren(...page.users.map((u) => el("li", {},
      el("button", { type: "button", class: "user", "data-user-id": u.user_id, onclick: () => recommendForUser(u.user_id) },
        el("span", { text: u.user_id }), el("span", { class: "muted", text: `${u.history_length} items` })))));
    const last = Math.min(page.offset + page.users.length, page.total);
    $("users-page").textContent = page.total ? `${page.offset + 1}–${last} of ${page.total}` : "no user matches";
    $("users-prev").disabled = page.offset === 0;
    $("users-next").disabled = last >= page.total;
  } catch (err) {
    setStatus($("status"), err.message, true);
  }
}

let itemTimer = null;
function searchItems() {
  clearTimeout(itemTimer);
  itemTimer = setTimeout(async () => {
    const q = $("item-search").value.trim();
    if (!q) return;
    try {
      const page = await api(`api/items?${new URLSearchParams({ q, limit: 20 })}`);
      $("item-options").replaceChildren(...page.items.map((it) => el("option", { value: it.item_id, text: it.title || "" })));
    } catch (err) {
      setStatus($("status"), err.message, true);
    }
  }, 150);
}

function addItem() {
  const id = $("item-search").value.trim();
  if (!id) return;
  const box = $("history-input");
  box.value = (box.value.trim() ? `${box.value.trim()} ` : "") + id;
  $("item-search").value = "";
}

// -- the report ----------------------------------------------------------------------------------------------------
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== null) node.textContent = text;
  return node;
}

// One small line chart: x = epochs, one line per series, its own y range; labels at the ends.
function lineChart(xs, series, title) {
  const W = 460, H = 170, L = 44, R = 12, T = 32, B = 26;
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": title });
  chart.append(svg("text", { x: L, y: 13 }, title));
  const values = series.flatMap((s) => s.values).filter((v) => v !== null && Number.isFinite(v));
  if (!values.length || xs.length < 1) return chart;
  let lo = Math.min(...values), hi = Math.max(...values);
  if (hi === lo) { hi += 1; lo -= 1; }
  const x0 = Math.min(...xs), x1 = Math.max(...xs) === x0 ? x0 + 1 : Math.max(...xs);
  const px = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const py = (y) => T + (1 - (y - lo) / (hi - lo)) * (H - T - B);
  chart.append(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }),
    svg("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }),
    svg("text", { x: 2, y: T + 4 }, fmt(hi)), svg("text", { x: 2, y: H - B }, fmt(lo)),
    svg("text", { x: L, y: H - 8 }, `epoch ${x0}`), svg("text", { x: W - R - 50, y: H - 8 }, `epoch ${x1}`));
  series.forEach((s, n) => {
    const pts = xs.map((x, i) => [x, s.values[i]]).filter(([, y]) => y !== null && Number.isFinite(y));
    chart.append(svg("polyline", { points: pts.map(([x, y]) => `${px(x)},${py(y)}`).join(" "), class: `line s${n % 3}` }),
      svg("text", { x: W - R - (series.length - n) * 110, y: 13, class: `s${n % 3}` }, `— ${s.name}`));
  });
  return chart;
}

function barChart(counts, title, labels = null) {
  const W = 460, H = 110, L = 38, B = 20, T = 18;
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": title });
  chart.append(svg("text", { x: L, y: 12 }, title));
  const top = Math.max(1, ...counts), w = (W - L - 4) / Math.max(1, counts.length);
  counts.forEach((c, i) => {
    const h = (c / top) * (H - T - B);
    chart.append(svg("rect", { x: L + i * w + 1, y: H - B - h, width: Math.max(1, w - 2), height: h, class: "bar" }));
  });
  chart.append(svg("text", { x: 2, y: T + 8 }, String(top)), svg("text", { x: 2, y: H - B }, "0"),
    svg("text", { x: L, y: H - 5 }, labels ? labels[0] : "0"),
    svg("text", { x: W - 40, y: H - 5 }, labels ? labels[1] : String(counts.length - 1)));
  return chart;
}

function table(head, rows, rowClass = () => null) {
  return el("table", {}, el("thead", {}, el("tr", {}, head.map((h) => el("th", { text: h })))),
    el("tbody", {}, rows.map((r, i) => el("tr", { class: rowClass(i) }, r.map((c) => el("td", {}, c))))));
}

function metricsSection(m) {
  const names = Object.keys(m.models);
  const first = m.models[names[0]] || {};
  const keys = Object.keys(first.overall || {}).sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  const cell = (model, part, key) => {
    const v = (model[part] || {})[key], se = (model[`${part}_se`] || {})[key];
    return v === undefined ? "—" : `${fmt(v)} ± ${fmt(se)}`;
  };
  const rows = (part) => names.map((n) => [
    el("span", {}, n, " ", n === m.default ? el("span", { class: "badge default", text: "default" }) : null),
    ...keys.map((k) => cell(m.models[n], part, k)),
    String((part === "overall" ? m.models[n].users : m.models[n].cold_start_users) ?? "—")]);
  const isDefault = (i) => (names[i] === m.default ? "is-default" : null);
  const chosen = m.default ? ` The default list (${m.default}) was chosen on the ${m.selected_on} split by ${m.selection_metric}.` : "";
  return el("section", { class: "wide", id: "report-metrics" }, el("h2", { text: "Test metrics (mean ± standard error over users)" }),
    el("p", { class: "muted", text: `Leave-one-out, full ranking of the catalog.${chosen}` }),
    el("h3", { text: "All users" }), table(["model", ...keys, "users"], rows("overall"), isDefault),
    el("h3", { text: `Cold-start targets (≤ ${state.run.cold_start_max} training interactions)` }),
    table(["model", ...keys, "users"], rows("cold_start"), isDefault));
}

function curveSection(c) {
  const s = c.series, note = c.best_epoch !== null && c.best_epoch !== undefined ? ` (best epoch ${c.best_epoch})` : "";
  const valid = ["valid_ndcg10", "valid_hr10"].filter((k) => s[k]).map((k) => ({ name: k, values: s[k] }));
  return el("section", { id: "report-curve" }, el("h2", { text: `Generator training${note}` }),
    s.loss ? lineChart(c.epochs, [{ name: "training loss", values: s.loss }], "training loss per epoch") : null,
    valid.length ? lineChart(c.epochs, valid, "validation (early stopping)") : null);
}

function codesSection(u) {
  const levels = u.levels || [];
  const sizes = u.level_sizes || [];
  const rows = levels.map((l) => [String(l.level + 1), `${l.used} / ${sizes[l.level] ?? "?"}`, fmt(l.utilisation, 2),
    fmt(l.perplexity, 1), String(l.unique_prefixes)]);
  const before = u.before_disambiguation, after = u.after_disambiguation;
  return el("section", { id: "report-codes" }, el("h2", { text: "Semantic ID code usage" }),
    rows.length ? table(["level", "codes used", "utilisation", "perplexity", "unique prefixes"], rows) : null,
    before ? el("p", { class: "muted", text: `Items sharing their code before the disambiguation level: ` +
      `${before.colliding_items} of ${before.items} (at most ${before.max_items_per_code} per code); after: ` +
      `${after ? after.colliding_items : "?"}.` }) : null,
    (u.counts || []).map((lvl) => barChart(lvl.counts, lvl.disambiguation
      ? "disambiguation level: items per value" : `level ${lvl.level + 1}: items per code`)));
}

function fusionSection(f) {
  const rows = ((f.breakdown || {}).by_popularity || []).map((b) => [b.train_interactions,
    String((b.alpha_visual || {}).items ?? 0), fmt((b.alpha_visual || {}).mean), fmt(b.entropy_bits_mean, 2)]);
  return el("section", { id: "report-fusion" }, el("h2", { text: "Fusion weights (collaborative-guided attention)" }),
    f.alpha_visual_mean !== undefined && f.alpha_visual_mean !== null
      ? el("p", { text: `Visual weight α over ${f.items} items with both modalities: ${fmt(f.alpha_visual_mean)} ± ` +
        `${fmt(f.alpha_visual_std)} (std); text weight = 1 − α.` }) : null,
    f.histogram ? barChart(f.histogram.counts, "items per visual weight α", ["α = 0", "α = 1"]) : null,
    rows.length ? table(["training interactions", "items", "mean α (visual)", "entropy (bits)"], rows) : null);
}

function stagesSection(stages) {
  const rows = Object.entries(stages).map(([name, s]) => [name, s.status || "", fmt(s.wall_s, 1)]);
  return el("section", { id: "report-stages" }, el("h2", { text: "Stages" }), table(["stage", "status", "seconds"], rows));
}

function figuresSection(names) {
  return el("section", { class: "wide", id: "report-figures" }, el("h2", { text: "The run's figures" }),
    el("div", { id: "figures" }, names.map((n) => el("figure", {},
      el("img", { src: `api/report/figure?${new URLSearchParams({ name: n })}`, alt: n, loading: "lazy" }),
      el("figcaption", { text: n })))));
}

async function loadReport() {
  if (state.report) return;
  try {
    const r = await api("api/report");
    state.report = r;
    const missing = (what) => el("section", {}, el("h2", { text: what }), el("p", { class: "muted", text: "not in this run" }));
    $("report").replaceChildren(
      r.metrics ? metricsSection(r.metrics) : missing("Test metrics"),
      r.training_curve ? curveSection(r.training_curve) : missing("Generator training"),
      r.code_usage ? codesSection(r.code_usage) : missing("Semantic ID code usage"),
      r.fusion ? fusionSection(r.fusion) : missing("Fusion weights"),
      stagesSection(r.stages || {}),
      r.figures && r.figures.length ? figuresSection(r.figures) : null);
    setStatus($("report-status"), `Report of run ${state.run.name}`);
    $("report-status").title = state.run.run;
  } catch (err) {
    setStatus($("report-status"), err.message, true);
  }
}

// -- wiring --------------------------------------------------------------------------------------------------------
function showView(name) {
  const report = name === "report";
  $("view-recs").hidden = report;
  $("view-report").hidden = !report;
  $("tab-recs").classList.toggle("active", !report);
  $("tab-report").classList.toggle("active", report);
  if (report) loadReport();
  if (location.hash !== (report ? "#report" : "")) history.replaceState(null, "", report ? "#report" : location.pathname + location.search);
}

async function init() {
  try {
    state.run = await api("api/run");
  } catch (err) {
    setStatus($("run-info"), err.message, true);
    return;
  }
  const r = state.run;
  $("run-info").textContent = `run ${r.name} · ${r.model} (${r.model_version}) · ${r.users} users · ${r.items} items`;
  $("run-info").title = r.run;
  $("k").max = r.max_k;
  $("tab-recs").addEventListener("click", () => showView("recs"));
  $("tab-report").addEventListener("click", () => showView("report"));
  let userTimer = null;
  $("user-search").addEventListener("input", () => {
    clearTimeout(userTimer);
    userTimer = setTimeout(() => { state.userQuery = $("user-search").value.trim(); state.userOffset = 0; loadUsers(); }, 150);
  });
  $("users-prev").addEventListener("click", () => { state.userOffset = Math.max(0, state.userOffset - PAGE); loadUsers(); });
  $("users-next").addEventListener("click", () => { state.userOffset += PAGE; loadUsers(); });
  $("item-search").addEventListener("input", searchItems);
  $("item-add").addEventListener("click", addItem);
  $("history-go").addEventListener("click", recommendForHistory);
  const again = () => {
    if (state.selected && state.selected.user) recommendForUser(state.selected.user);
    else if (state.selected) recommendForHistory();
  };
  $("k").addEventListener("change", again);
  $("exclude-seen").addEventListener("change", again);
  await loadUsers();
  showView(location.hash === "#report" ? "report" : "recs");
  document.body.dataset.ready = "1";  // for the browser test: the run and the first page of users are in
}

document.addEventListener("DOMContentLoaded", init);
