// ftm's dashboard: the runs page and a run's page.
// Every text from the ledger goes through el() (textContent), never parsed as markup.
"use strict";

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
    el("td", {}, run.base_model),
    el("td", {}, el("a", {href: "dataset/" + encodeURIComponent(run.dataset_id)}, run.dataset_name || String(run.dataset_id || "").slice(0, 12))),
    el("td", {}, run.method || "–"), el("td", {class: "status-cell"}, statusCell(run)),
    el("td", {class: "num cost"}, money(run.actual_cost ?? run.estimated_cost)),
    el("td", {class: "num duration"}, duration(run.duration_s)), el("td", {class: "muted"}, run.created_at));
}

function statusCell(run) {
  // A failed run says why beside its status (the provider's words: text, cut short).
  const why = run.error_message ? el("div", {class: "error small"}, String(run.error_message).slice(0, 120)) : null;
  return el("span", {}, statusBadge(run.status), why);
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
    row.querySelector(".status-cell").replaceChildren(statusCell(run));
    row.querySelector(".cost").textContent = money(live.actual_cost ?? live.estimated_cost);
    row.querySelector(".duration").textContent = duration(live.duration_s);
  }
}

// --- a run ---------------------------------------------------------------------------------

async function runPage(id, params) {
  const by = params.get("by") || "step";
  const [detail, curves] = await Promise.all([api("runs/" + encodeURIComponent(id)), api("runs/" + encodeURIComponent(id) + "/curves")]);
  const run = detail.run;
  const charts = el("div", {id: "curves"},
    byToggle(by, (value) => { location.hash = "#/run/" + encodeURIComponent(run.id) + "?by=" + value; }, !!curves.epochs_per_step),
    chartSpecs(curves).map(([title, names]) => chart(title, curveLines(curves, names, "", by), by)));
  main.replaceChildren(el("div", {},
    el("h1", {}, "Run ", el("span", {id: "run-id"}, run.id), " ", el("span", {id: "run-status"}, statusBadge(run.status))),
    actionButtons(run, detail.actions),
    el("div", {class: "grid"},
      el("div", {class: "card"}, el("h2", {}, "Run"), kv([["name", run.suffix], ["backend", run.backend], ["base model", run.base_model],
        ["method", [detail.training, detail.method].filter(Boolean).join(" · ")], ["dataset", el("a", {href: "dataset/" + encodeURIComponent(run.dataset_id)}, run.dataset_name || run.dataset_id)],
        ["provider job", run.provider_job_id], ["model", run.result_model], ["created", run.created_at], ["finished", run.finished_at],
        ["cost", money(run.actual_cost ?? run.estimated_cost)], ["trained tokens", run.trained_tokens],
        ["error", run.error_message ? el("span", {class: "error", id: "run-error"}, run.error_message) : null]])),
      el("div", {class: "card"}, el("h2", {}, "Settings"), settingsTable(detail.settings)),
      el("div", {class: "card"}, el("h2", {}, "Family"), kv([["parent", detail.parent ? runLink(detail.parent.id) : null],
        ["re-runs", detail.children.length ? el("span", {}, detail.children.map((c) => [runLink(c.id), " "])) : null],
        ["on top of", detail.on_top_of ? el("span", {id: "on-top-of"}, upstreamLink(detail.on_top_of)) : null],
        ["waiting", detail.waiting_for ? el("span", {id: "waiting-for"}, `waiting for ${detail.waiting_for} to succeed`) : null],
        ["trained on it", detail.built_on.length ? el("span", {id: "built-on"}, detail.built_on.map((c) => [upstreamLink(c), " "])) : null],
        ["served names", detail.served_names.length ? el("span", {}, detail.served_names.map((m) => [el("code", {}, m.model_id), " "])) : null]]))),
    el("h2", {}, "Curves"), charts,
    el("h2", {}, "Checkpoints"), table(["step", "model", "metrics"], detail.checkpoints.map((c) =>
      el("tr", {}, el("td", {class: "num"}, c.step), el("td", {}, c.model_id || "–"), el("td", {}, fmt(c.metrics))))),
    evaluationsView(detail.evaluations),
    el("h2", {}, "Events"), table(["time", "level", "message"], detail.events.map((e) =>
      el("tr", {}, el("td", {class: "muted"}, e.created_at), el("td", {}, e.level), el("td", {}, el("span", {class: "text"}, e.message)))))));
  if (!TERMINAL.has(run.status)) follow(run, by);
}

function upstreamLink(link) {
  // "run-x (SFT)": the id a link (while the run is in the ledger), its method plain text.
  return link.exists === false ? link.label : [runLink(link.id), link.label.slice(link.id.length)];
}

function follow(run, by) {
  // While the run moves: a new status redraws the page; new points extend the curves in place.
  let updated = run.updated_at;
  every(LIVE_MS, async () => {
    const [live] = (await api("status?ids=" + encodeURIComponent(run.id))).runs;
    if (!live || live.status !== run.status) return route();
    if (live.updated_at === updated) return;
    updated = live.updated_at;
    const curves = await api("runs/" + encodeURIComponent(run.id) + "/curves");
    const boxes = chartSpecs(curves).map(([title, names]) => {
      const box = main.querySelector(`.chart[data-title="${title}"]`);
      return box && box.update ? box.update(curveLines(curves, names, "", by)) : false;
    });
    if (!boxes.every(Boolean)) route();
  });
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

