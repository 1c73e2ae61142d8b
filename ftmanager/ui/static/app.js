// ftm's dashboard: one page, routed by the address's #fragment, drawn from the JSON API.
// Every text that comes from the ledger (run names, dataset text, model answers, errors) is
// untrusted: it reaches the page through textContent only (el() below), never as HTML.
"use strict";

const main = document.getElementById("main");
const banner = document.getElementById("banner");
const LIVE_MS = 1500;
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
let timers = [];
let plots = [];

// --- building the page ---------------------------------------------------------------------

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "href") node.setAttribute("href", "#/" + value);  // our own routes only
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function fmt(value, digits = 4) {
  if (value === null || value === undefined || value === "") return "–";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toPrecision(digits);
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function money(value) { return value === null || value === undefined ? "–" : "$" + Number(value).toFixed(2); }

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 120) return seconds.toFixed(0) + " s";
  if (seconds < 7200) return (seconds / 60).toFixed(1) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

function statusBadge(status) { return el("span", {class: "status " + String(status)}, status); }
function runLink(id) { return el("a", {href: "run/" + encodeURIComponent(id)}, id); }
function kv(pairs) { return el("dl", {class: "kv"}, pairs.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v instanceof Node ? v : fmt(v))])); }

function table(headers, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows));
}

function showError(err) {
  main.replaceChildren(el("p", {class: "error", id: "page-error"}, "Error: " + err.message));
}

// --- the API -------------------------------------------------------------------------------

async function api(path, body) {
  const options = body === undefined ? {} : {method: "POST", headers: {"content-type": "application/json"}, body: JSON.stringify(body)};
  const response = await fetch("/api/" + path, options);
  if (response.status === 401) { window.location.assign("/login"); throw new Error("sign in first"); }
  let data;
  try { data = await response.json(); } catch (e) { throw new Error("the server answered " + response.status); }
  if (!response.ok) throw new Error(data.error ? data.error.message : "the server answered " + response.status);
  return data;
}

// --- routing -------------------------------------------------------------------------------

const ROUTES = {runs: runsPage, run: runPage, compare: comparePage, datasets: datasetsPage, dataset: datasetPage, models: modelsPage};

function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, query] = hash.split("?");
  const [name, ...rest] = path.split("/");
  const page = ROUTES[name] || runsPage;
  timers.forEach(clearInterval); timers = [];
  plots.forEach((p) => p.destroy()); plots = [];
  document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === (ROUTES[name] ? name : "runs").replace(/^run$/, "runs").replace(/^dataset$/, "datasets")));
  main.replaceChildren(el("p", {class: "muted"}, "Loading…"));
  Promise.resolve(page(rest.map(decodeURIComponent).join("/"), new URLSearchParams(query || ""))).catch(showError);
}

function every(ms, fn) { timers.push(setInterval(() => fn().catch(() => {}), ms)); }

// --- runs ----------------------------------------------------------------------------------

const FILTERS = ["backend", "status", "base_model", "dataset", "method"];
const COLUMNS = [["", null], ["run", "id"], ["name", null], ["backend", "backend"], ["base model", "base_model"],
  ["dataset", "dataset"], ["method", "method"], ["status", "status"], ["cost", "cost"], ["duration", "duration"], ["created", "created"]];

async function runsPage(_, params) {
  const facets = await api("facets");
  const state = Object.fromEntries(params);
  const body = el("div", {});
  const chosen = new Set((state.chosen || "").split(",").filter(Boolean));
  const go = (changes) => { location.hash = "#/runs?" + new URLSearchParams({...state, ...changes}); };
  const selects = FILTERS.map((name) => {
    const options = (facets[name] || []).map((v) => typeof v === "object" ? [v.id, v.name + " (" + v.id.slice(0, 8) + ")"] : [v, v]);
    const select = el("select", {name, onchange: (e) => go({[name]: e.target.value, offset: 0})},
      el("option", {value: ""}, "any"), options.map(([value, label]) => el("option", {value}, label)));
    select.value = state[name] || "";
    return el("label", {}, name.replace("_", " "), select);
  });
  const dates = ["since", "until"].map((name) => el("label", {}, name === "since" ? "from" : "before",
    el("input", {type: "date", name, value: state[name] || "", onchange: (e) => go({[name]: e.target.value, offset: 0})})));
  const compare = el("button", {id: "compare-chosen", disabled: chosen.size < 2, onclick: () => { location.hash = "#/compare?ids=" + [...chosen].join(","); }}, "Compare chosen");
  const page = await api("runs?" + new URLSearchParams({...state, limit: 100}));
  const rows = page.runs.map((run) => runRow(run, chosen, compare));
  const offset = page.offset;
  const headers = COLUMNS.map(([label, key]) => {
    const sorted = (state.sort || "created") === key;
    return el("th", {class: key ? "sortable" + (sorted ? " sorted" + (state.desc === "0" ? " asc" : "") : "") : "", dataset: key ? {sort: key} : {},
      onclick: key ? () => go({sort: key, desc: sorted && state.desc !== "0" ? "0" : "1"}) : null}, label);
  });
  body.append(el("h1", {}, "Runs"), el("div", {class: "filters"}, selects, dates, compare),
    el("table", {id: "runs"}, el("thead", {}, el("tr", {}, headers)), el("tbody", {}, rows)),
    el("div", {class: "pager"}, el("span", {id: "total", class: "muted"}, `${page.total} runs, showing ${offset + 1 > page.total ? 0 : offset + 1}–${offset + page.runs.length}`),
      el("button", {class: "plain", disabled: offset === 0, onclick: () => go({offset: Math.max(0, offset - 100)})}, "Newer"),
      el("button", {class: "plain", disabled: offset + page.runs.length >= page.total, onclick: () => go({offset: offset + 100})}, "Older")));
  main.replaceChildren(body);
  every(LIVE_MS, () => refreshStatuses(page.runs));
}

function runRow(run, chosen, compare) {
  const box = el("input", {type: "checkbox", checked: chosen.has(run.id), dataset: {choose: run.id}, onchange: (e) => {
    e.target.checked ? chosen.add(run.id) : chosen.delete(run.id);
    compare.disabled = chosen.size < 2;
  }});
  return el("tr", {dataset: {run: run.id}},
    el("td", {}, box), el("td", {}, runLink(run.id)), el("td", {}, run.suffix || ""), el("td", {}, run.backend),
    el("td", {}, run.base_model), el("td", {}, run.dataset_name || String(run.dataset_id || "").slice(0, 12)),
    el("td", {}, run.method || "–"), el("td", {class: "status-cell"}, statusBadge(run.status)),
    el("td", {class: "num cost"}, money(run.actual_cost ?? run.estimated_cost)),
    el("td", {class: "num duration"}, duration(run.duration_s)), el("td", {class: "muted"}, run.created_at));
}

async function refreshStatuses(runs) {
  const open = runs.filter((r) => !TERMINAL.has(r.status));
  if (!open.length) return;
  const fresh = await api("status?ids=" + open.map((r) => encodeURIComponent(r.id)).join(","));
  for (const live of fresh.runs) {
    const row = main.querySelector(`tr[data-run="${CSS.escape(live.id)}"]`);
    const run = runs.find((r) => r.id === live.id);
    if (!row || !run) continue;
    Object.assign(run, live);
    row.querySelector(".status-cell").replaceChildren(statusBadge(live.status));
    row.querySelector(".cost").textContent = money(live.actual_cost ?? live.estimated_cost);
    row.querySelector(".duration").textContent = duration(live.duration_s);
  }
}

// --- charts --------------------------------------------------------------------------------

const COLORS = ["#3056d3", "#e67e22", "#27ae60", "#8e44ad", "#c0392b", "#16a085", "#d35400", "#2c3e50"];

function chart(title, lines, xLabel) {
  // lines: [{label, x, y, dash}]; uPlot wants one x axis: the union, with gaps where a line has none.
  const box = el("div", {class: "chart", dataset: {title}}, el("div", {class: "title"}, title));
  const drawn = lines.filter((l) => l.x.length);
  if (!drawn.length) { box.append(el("p", {class: "muted"}, "No points recorded.")); return box; }
  const xs = [...new Set(drawn.flatMap((l) => l.x))].sort((a, b) => a - b);
  const at = new Map(xs.map((x, i) => [x, i]));
  const data = [xs, ...drawn.map((l) => { const ys = new Array(xs.length).fill(null); l.x.forEach((x, i) => { ys[at.get(x)] = l.y[i]; }); return ys; })];
  box.dataset.points = drawn.map((l) => l.label + "=" + l.x.length).join(";");
  const width = Math.max(320, Math.min(main.clientWidth - 40, 1300));
  const options = {width, height: 260, scales: {x: {time: false}},
    cursor: {drag: {x: true, y: false}}, axes: [{label: xLabel}, {}],
    series: [{label: xLabel}, ...drawn.map((l) => ({label: l.label, stroke: l.color, width: 1.5,
      dash: l.dash ? [6, 4] : undefined, spanGaps: true, points: {show: l.x.length < 60}}))]};
  plots.push(new uPlot(options, data, box));
  return box;
}

function curveLines(curves, names, prefix, by, color) {
  // One colour per run where runs are overlaid; validation dashed beside its training line.
  const scale = by === "epoch" ? curves.epochs_per_step : 1;
  return names.filter((n) => curves.series[n]).map((n, i) => ({
    label: (prefix ? prefix + " " : "") + n, dash: n.startsWith("valid") || n.startsWith("full_valid"),
    color: color || COLORS[i % COLORS.length],
    x: curves.series[n].x.map((s) => s * (scale || 1)), y: curves.series[n].y}));
}

function byToggle(by, onChange, canEpoch) {
  const select = el("select", {name: "by", onchange: (e) => onChange(e.target.value)},
    el("option", {value: "step"}, "by step"), canEpoch ? el("option", {value: "epoch"}, "by epoch") : null);
  select.value = by;
  return el("label", {}, "x axis ", select);
}

const LOSSES = ["train_loss", "valid_loss", "full_valid_loss"];
const ACCURACIES = ["train_accuracy", "train_mean_token_accuracy", "valid_mean_token_accuracy", "full_valid_mean_token_accuracy"];

// --- a run ---------------------------------------------------------------------------------

async function runPage(id, params) {
  const by = params.get("by") || "step";
  const [detail, curves] = await Promise.all([api("runs/" + encodeURIComponent(id)), api("runs/" + encodeURIComponent(id) + "/curves")]);
  const run = detail.run;
  const charts = el("div", {id: "curves"},
    byToggle(by, (value) => { location.hash = "#/run/" + encodeURIComponent(run.id) + "?by=" + value; }, !!curves.epochs_per_step),
    chart("Loss", curveLines(curves, LOSSES, "", by), by), chart("Accuracy", curveLines(curves, ACCURACIES, "", by), by));
  main.replaceChildren(el("div", {},
    el("h1", {}, "Run ", el("span", {id: "run-id"}, run.id), " ", el("span", {id: "run-status"}, statusBadge(run.status))),
    actionButtons(run, detail.actions),
    el("div", {class: "grid"},
      el("div", {class: "card"}, el("h2", {}, "Run"), kv([["name", run.suffix], ["backend", run.backend], ["base model", run.base_model],
        ["method", detail.method], ["dataset", el("a", {href: "dataset/" + encodeURIComponent(run.dataset_id)}, run.dataset_name || run.dataset_id)],
        ["provider job", run.provider_job_id], ["model", run.result_model], ["created", run.created_at], ["finished", run.finished_at],
        ["cost", money(run.actual_cost ?? run.estimated_cost)], ["trained tokens", run.trained_tokens],
        ["error", run.error_message ? el("span", {class: "error", id: "run-error"}, run.error_message) : null]])),
      el("div", {class: "card"}, el("h2", {}, "Settings"), settingsTable(detail.settings)),
      el("div", {class: "card"}, el("h2", {}, "Family"), kv([["parent", detail.parent ? runLink(detail.parent.id) : null],
        ["re-runs", detail.children.length ? el("span", {}, detail.children.map((c) => [runLink(c.id), " "])) : null],
        ["served names", detail.served_names.length ? el("span", {}, detail.served_names.map((m) => [el("code", {}, m.model_id), " "])) : null]]))),
    el("h2", {}, "Curves"), charts,
    el("h2", {}, "Checkpoints"), table(["step", "model", "metrics"], detail.checkpoints.map((c) =>
      el("tr", {}, el("td", {class: "num"}, c.step), el("td", {}, c.model_id || "–"), el("td", {}, fmt(c.metrics))))),
    evaluationsView(detail.evaluations),
    el("h2", {}, "Events"), table(["time", "level", "message"], detail.events.map((e) =>
      el("tr", {}, el("td", {class: "muted"}, e.created_at), el("td", {}, e.level), el("td", {}, el("span", {class: "text"}, e.message)))))));
  if (!TERMINAL.has(run.status)) {
    every(LIVE_MS, async () => {
      const [live] = (await api("status?ids=" + encodeURIComponent(run.id))).runs;
      if (live && live.status !== run.status) route();
    });
  }
}

function settingsTable(settings) {
  const keys = [...new Set([...Object.keys(settings.asked), ...Object.keys(settings.resolved)])].sort();
  const rows = keys.map((k) => el("tr", {}, el("td", {}, k), el("td", {}, fmt(settings.asked[k])), el("td", {}, fmt(settings.resolved[k]))));
  const options = Object.entries(settings.options).map(([k, v]) => el("tr", {}, el("td", {}, "option " + k), el("td", {}, fmt(v)), el("td", {}, "")));
  const extra = [["seed", settings.seed], ["split", settings.split]].filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, fmt(v)), el("td", {}, "")));
  return table(["setting", "asked", "resolved"], [...rows, ...options, ...extra]);
}

function actionButtons(run, actions) {
  const box = el("div", {class: "actions"});
  for (const action of actions) {
    box.append(el("button", {dataset: {action}, onclick: async (e) => {
      e.target.disabled = true;
      try { await api("runs/" + encodeURIComponent(run.id) + "/" + action, {}); route(); }
      catch (err) { box.append(el("span", {class: "error"}, "Error: " + err.message)); e.target.disabled = false; }
    }}, action[0].toUpperCase() + action.slice(1)));
  }
  return box;
}

function promptText(prompt) {
  try {
    const messages = typeof prompt === "string" ? JSON.parse(prompt) : prompt;
    const users = messages.filter((m) => m.role === "user");
    return users.length ? fmt(users[users.length - 1].content) : fmt(prompt);
  } catch (e) { return fmt(prompt); }
}

function evaluationsView(evaluations) {
  if (!evaluations.length) return el("div", {}, el("h2", {}, "Evaluations"), el("p", {class: "muted"}, "No evaluation yet: ftm eval RUN --data held-out.jsonl"));
  return el("div", {}, el("h2", {}, "Evaluations"), evaluations.map((ev) => el("div", {class: "card"},
    kv([["model", ev.model_id], ["examples", ev.n_examples], ["exact match", ev.exact_match], ["token F1", ev.token_f1],
      ["ROUGE-L", ev.rouge_l], ["chrF", ev.chrf], ["perplexity", ev.perplexity], ["when", ev.created_at]]),
    ev.grade_summary.length ? table(["grader", "type", "mean", "pass rate", "errors"], ev.grade_summary.map((g) =>
      el("tr", {}, el("td", {}, g.grader), el("td", {}, g.type), el("td", {class: "num"}, fmt(g.mean)), el("td", {class: "num"}, fmt(g.pass_rate)), el("td", {class: "num"}, g.errors)))) : null,
    table(["#", "prompt", "reference", "answer", "F1", "grades"], ev.generations.map((g) => el("tr", {},
      el("td", {class: "num"}, g.example), el("td", {}, el("span", {class: "text"}, promptText(g.prompt))),
      el("td", {}, el("span", {class: "text"}, g.reference)), el("td", {class: "answer"}, el("span", {class: "text"}, g.output)),
      el("td", {class: "num"}, fmt(g.token_f1, 3)),
      el("td", {}, ev.grades.filter((x) => x.example === g.example).map((x) => el("div", {}, `${x.grader}: ${fmt(x.score, 3)}` + (x.error ? " (" + x.error + ")" : "")))))))))); 
}

// --- compare -------------------------------------------------------------------------------

async function comparePage(_, params) {
  const ids = (params.get("ids") || "").split(",").filter(Boolean);
  if (ids.length < 2) {
    main.replaceChildren(el("h1", {}, "Compare"), el("p", {}, "Tick two or more runs on the ", el("a", {href: "runs"}, "runs page"), " and press Compare chosen."));
    return;
  }
  const by = params.get("by") || "step";
  const data = await api("compare?ids=" + ids.map(encodeURIComponent).join(","));
  const runIds = data.runs.map((r) => r.id);
  const differ = new Set(data.differing_hyperparameters);
  const rows = data.fields.filter((f) => f !== "id").map((field) => el("tr", {class: differ.has(field) ? "differ" : null, dataset: {field}},
    el("td", {}, field.startsWith("hp.") ? field.slice(3) : field), data.runs.map((r) => el("td", {}, fmt(r[field])))));
  const canEpoch = runIds.every((id) => data.curves[id].epochs_per_step);
  const lines = (names) => runIds.flatMap((id, i) => curveLines(data.curves[id], names, id, by, COLORS[i % COLORS.length]));
  const answers = data.prompts.map((p) => el("tr", {}, el("td", {}, el("span", {class: "text"}, promptText(p.prompt))),
    el("td", {}, el("span", {class: "text"}, p.reference)),
    runIds.map((id) => el("td", {class: "answer"}, p.answers[id] ? el("span", {class: "text"}, p.answers[id].output) : "–"))));
  main.replaceChildren(el("div", {},
    el("h1", {}, "Compare ", runIds.length, " runs"),
    el("p", {class: "muted"}, differ.size ? "Highlighted: the settings that differ." : "Every setting is the same."),
    el("table", {id: "compare"}, el("thead", {}, el("tr", {}, el("th", {}, "field"), runIds.map((id) => el("th", {}, runLink(id))))), el("tbody", {}, rows)),
    el("h2", {}, "Curves"), byToggle(by, (v) => { location.hash = "#/compare?ids=" + runIds.join(",") + "&by=" + v; }, canEpoch),
    chart("Loss", lines(LOSSES), by), chart("Accuracy", lines(ACCURACIES), by),
    el("h2", {}, "Answers side by side"),
    answers.length ? el("table", {id: "answers"}, el("thead", {}, el("tr", {}, el("th", {}, "prompt"), el("th", {}, "reference"), runIds.map((id) => el("th", {}, id)))), el("tbody", {}, answers))
      : el("p", {class: "muted"}, "None of these runs has been evaluated: ftm eval RUN... --data held-out.jsonl")));
}

// --- datasets ------------------------------------------------------------------------------

async function datasetsPage() {
  const {datasets} = await api("datasets");
  main.replaceChildren(el("h1", {}, "Datasets"), table(["name", "id", "format", "examples", "bytes", "derived from", "added"],
    datasets.map((d) => el("tr", {}, el("td", {}, el("a", {href: "dataset/" + encodeURIComponent(d.id)}, d.name || d.id.slice(0, 12))),
      el("td", {}, el("code", {}, d.id.slice(0, 12))), el("td", {}, d.format), el("td", {class: "num"}, d.n_examples),
      el("td", {class: "num"}, d.bytes), el("td", {}, d.parent_id ? d.parent_id.slice(0, 12) : "–"), el("td", {class: "muted"}, d.created_at)))));
}

async function datasetPage(id) {
  const d = await api("datasets/" + encodeURIComponent(id));
  const stats = d.stats || {};
  const tokens = stats.tokens || {};
  const report = d.report;
  const problems = report ? [...report.errors.map((p) => ["error", p]), ...report.warnings.map((p) => ["warning", p])] : [];
  main.replaceChildren(el("div", {},
    el("h1", {}, "Dataset ", el("span", {id: "dataset-name"}, d.name)),
    el("div", {class: "grid"},
      el("div", {class: "card"}, el("h2", {}, "Statistics"), kv([["id", d.id], ["format", d.format], ["examples", d.n_examples], ["bytes", d.bytes],
        ["tokens p5 / p50 / p95", tokens.p50 === undefined ? null : `${tokens.p5} / ${tokens.p50} / ${tokens.p95}`], ["tokens max", tokens.max],
        ["tokens total", tokens.total], ["tokenizer model", stats.model], ["estimated cost", stats.cost_usd === undefined ? null : money(stats.cost_usd)]])),
      el("div", {class: "card", id: "histogram"}, el("h2", {}, "Length of each example"), histogram(d.histogram))),
    el("h2", {}, "Validation report"),
    report ? (problems.length ? table(["line", "kind", "code", "message"], problems.map(([kind, p]) => el("tr", {},
      el("td", {class: "num"}, p.line ?? "file"), el("td", {class: kind === "error" ? "error" : ""}, kind), el("td", {}, p.code), el("td", {}, el("span", {class: "text"}, p.message)))))
      : el("p", {}, "No problems found.")) : el("p", {class: "muted"}, "The stored file is missing."),
    el("h2", {}, "Lineage"), lineageView(d)));
}

function histogram(h) {
  if (!h || !h.counts.length) return el("p", {class: "muted"}, "No examples.");
  const top = Math.max(...h.counts);
  return el("div", {}, el("div", {class: "bars"}, h.counts.map((n, i) => el("div", {title: `${h.edges[i]}–${h.edges[i + 1] - 1} ${h.unit}: ${n}`, style: `height:${(100 * n / top).toFixed(1)}%`}))),
    el("div", {class: "muted"}, `${h.edges[0]} to ${h.edges[h.edges.length - 1]} ${h.unit} per example`));
}

function lineageView(d) {
  const tree = d.lineage;
  const runNode = (node) => el("li", {}, runLink(node.run.id), " ", node.run.backend, " ", node.run.base_model, " ", statusBadge(node.run.status),
    node.models.length ? el("ul", {}, node.models.map((m) => el("li", {}, el("code", {}, m.model_id), " (", m.kind, ")"))) : null,
    node.reruns.length ? el("ul", {}, node.reruns.map(runNode)) : null);
  return el("div", {class: "card"},
    el("h2", {}, "Uploads"), tree.uploads.length ? el("ul", {}, tree.uploads.map((u) => el("li", {}, `${u.backend} ${u.file_id} (${u.account})`))) : el("p", {class: "muted"}, "none"),
    el("h2", {}, "Exports"), tree.exports.length ? el("ul", {}, tree.exports.map((e) => el("li", {}, `${e.target}: ${e.kept} kept, ${e.dropped} dropped, sha256 ${e.sha256}`))) : el("p", {class: "muted"}, "none"),
    el("h2", {}, "Derived datasets"), tree.derived.length ? el("ul", {}, tree.derived.map((c) => el("li", {}, el("a", {href: "dataset/" + encodeURIComponent(c.dataset.id)}, c.dataset.name)))) : el("p", {class: "muted"}, "none"),
    el("h2", {}, "Runs"), tree.runs.length ? el("ul", {}, tree.runs.map(runNode)) : el("p", {class: "muted"}, "none"));
}

// --- models and the playground -------------------------------------------------------------

async function modelsPage() {
  const data = await api("models");
  const panels = el("div", {class: "playground", id: "panels"});
  const system = el("textarea", {id: "system", rows: 1, cols: 50, placeholder: "system message (optional)"});
  const tokens = el("input", {id: "max-tokens", type: "number", min: 1, max: 4096, value: 64});
  const prompt = el("textarea", {id: "prompt", rows: 2, cols: 70, placeholder: "Ask every model side by side (Enter sends, Shift+Enter: a new line)",
    onkeydown: (e) => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); send.click(); } }});
  const addPanel = (choice) => panels.append(playPanel(data.chat, choice));
  const send = el("button", {id: "send", onclick: () => {
    const text = prompt.value.trim();
    if (!text) return;
    prompt.value = "";
    panels.querySelectorAll(".panel").forEach((p) => p.ask(text, system.value.trim(), Number(tokens.value)));
  }}, "Send to all");
  main.replaceChildren(el("div", {},
    el("h1", {}, "Playground"),
    data.chat.length ? el("div", {},
      el("div", {class: "filters"}, el("label", {}, "system", system), el("label", {}, "max new tokens", tokens),
        el("button", {class: "plain", id: "add-panel", onclick: () => addPanel(0)}, "Add a model")),
      panels, el("div", {class: "filters"}, prompt, send))
      : el("p", {class: "muted"}, "No succeeded run has a model to talk to yet."),
    el("h2", {}, "Every model and alias"), table(["model", "kind", "run", "backend", "base model", "step", "when"],
      data.models.map((m) => el("tr", {}, el("td", {}, el("code", {}, m.model_id)), el("td", {}, m.kind), el("td", {}, runLink(m.run_id)),
        el("td", {}, m.backend), el("td", {}, m.base_model), el("td", {class: "num"}, fmt(m.step)), el("td", {class: "muted"}, m.created_at))))));
  if (data.chat.length) { addPanel(0); addPanel(Math.min(1, data.chat.length - 1)); }
}

function playPanel(choices, index) {
  const select = el("select", {class: "model"}, choices.map((c) => el("option", {value: c.id}, `${c.result_model} (${c.backend}, ${c.base_model})`)));
  select.selectedIndex = index;
  const log = el("div", {class: "log"});
  const panel = el("div", {class: "card panel"}, select, log);
  let messages = [];
  select.onchange = () => { messages = []; log.replaceChildren(); };
  panel.ask = async (text, system, maxTokens) => {
    if (!messages.length && system) messages.push({role: "system", content: system});
    messages.push({role: "user", content: text});
    log.append(el("div", {class: "turn user"}, el("div", {class: "who"}, "you"), el("span", {class: "text"}, text)));
    const waiting = el("div", {class: "turn"}, el("div", {class: "who"}, "…"));
    log.append(waiting);
    try {
      const result = await api("chat", {run: select.value, messages, max_new_tokens: maxTokens});
      messages.push({role: "assistant", content: result.answer});
      waiting.replaceChildren(el("div", {class: "who"}, `${select.value} · ${result.max_new_tokens} max tokens · ${result.seconds} s`),
        el("span", {class: "text answer"}, result.answer));
    } catch (err) {
      messages.pop();
      waiting.replaceChildren(el("span", {class: "error"}, "Error: " + err.message));
    }
  };
  return panel;
}

// --- start ---------------------------------------------------------------------------------

async function start() {
  let health;
  try { health = await api("health"); } catch (err) {
    banner.hidden = false;
    banner.id = "banner";
    banner.textContent = "Error: " + err.message;
    main.replaceChildren();
    return;
  }
  if (health.read_only) {
    banner.hidden = false;
    banner.className = "note";
    banner.textContent = "This ledger can only be read: browsing works; cancel, pause and resume are off.";
  }
  document.getElementById("live").textContent = `${health.runs} runs, ${health.unfinished} unfinished`;
  window.addEventListener("hashchange", route);
  route();
}

start();
