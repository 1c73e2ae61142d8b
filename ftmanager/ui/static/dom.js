// ftm's dashboard: what every page builds with (el, tables, the API, charts). The page loads
// dom.js, runs.js, explore.js, then app.js, which routes. Every text that comes from the ledger (run names, dataset text, model answers, errors) is
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

// --- charts --------------------------------------------------------------------------------

const COLORS = ["#3056d3", "#e67e22", "#27ae60", "#8e44ad", "#c0392b", "#16a085", "#d35400", "#2c3e50"];

function aligned(lines) {
  // uPlot wants one x axis: the union of every line's, with gaps where a line has no point.
  const xs = [...new Set(lines.flatMap((l) => l.x))].sort((a, b) => a - b);
  const at = new Map(xs.map((x, i) => [x, i]));
  return [xs, ...lines.map((l) => { const ys = new Array(xs.length).fill(null); l.x.forEach((x, i) => { ys[at.get(x)] = l.y[i]; }); return ys; })];
}

function pointCounts(lines) { return lines.map((l) => l.label + "=" + l.x.length).join(";"); }

function chart(title, lines, xLabel) {
  // lines: [{label, x, y, dash, color}]; box.update(lines) redraws the same lines with new points.
  const box = el("div", {class: "chart", dataset: {title}}, el("div", {class: "title"}, title));
  const drawn = lines.filter((l) => l.x.length);
  if (!drawn.length) { box.append(el("p", {class: "muted"}, "No points recorded.")); return box; }
  box.dataset.points = pointCounts(drawn);
  const width = Math.max(320, Math.min(main.clientWidth - 40, 1300));
  const options = {width, height: 260, scales: {x: {time: false}},
    cursor: {drag: {x: true, y: false}}, axes: [{label: xLabel}, {}],
    series: [{label: xLabel}, ...drawn.map((l) => ({label: l.label, stroke: l.color, width: 1.5,
      dash: l.dash ? [6, 4] : undefined, spanGaps: true, points: {show: l.x.length < 60}}))]};
  const plot = new uPlot(options, aligned(drawn), box);
  plots.push(plot);
  box.update = (fresh) => {
    const now = fresh.filter((l) => l.x.length);
    if (now.map((l) => l.label).join() !== drawn.map((l) => l.label).join()) return false;
    plot.setData(aligned(now));
    box.dataset.points = pointCounts(now);
    return true;
  };
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
// A DPO run's reward figures, by what their names say: the local trainer's are TRL's (rewards/margins,
// valid_rewards/accuracies), a provider's its own (train_reward_margin, ...).
const REWARD_CHARTS = [["Reward margins", /margin/], ["Reward accuracy", /reward.*accurac/]];

function chartSpecs(curves) {
  // [title, series names]: loss and accuracy always; a reward chart where the run has such figures.
  const names = Object.keys(curves.series);
  const rewards = REWARD_CHARTS.map(([title, pattern]) => [title, names.filter((n) => pattern.test(n)).sort()]);
  return [["Loss", LOSSES], ["Accuracy", ACCURACIES], ...rewards.filter(([, found]) => found.length)];
}

