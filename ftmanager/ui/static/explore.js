// ftm's dashboard: compare, datasets, models and the playground.
// Every text from the ledger goes through el() (textContent), never parsed as markup.
"use strict";

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
    chartSpecs({series: Object.assign({}, ...runIds.map((id) => data.curves[id].series))})
      .map(([title, names]) => chart(title, lines(names), by)),
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
    el("h2", {}, "First examples"),
    el("div", {class: "grid", id: "examples"}, (d.examples || []).map((messages) => el("div", {class: "card"},
      messages.map((m) => el("div", {class: "turn " + (m.role === "user" ? "user" : "")}, el("div", {class: "who"}, m.role), el("span", {class: "text"}, m.content)))))),
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

