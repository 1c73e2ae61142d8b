// ftm's dashboard: routing by the address's #fragment, and start-up (loaded last).
// Every text from the ledger goes through el() (textContent), never parsed as markup.
"use strict";

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
