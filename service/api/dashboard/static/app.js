// The dashboard's entry: sign-in, navigation and the router (pages are named by the URL fragment).

import { get, key } from "./api.js";
import { clear, errorBox, h } from "./dom.js";
import * as jobs from "./page-jobs.js";
import * as job from "./page-job.js";
import * as files from "./page-files.js";
import * as models from "./page-models.js";
import * as evals from "./page-evals.js";
import * as playground from "./page-playground.js";
import * as usage from "./page-usage.js";
import * as webhooks from "./page-webhooks.js";

const ROUTES = [
  [/^jobs$/, jobs.list],
  [/^jobs\/([^/]+)$/, job.show],
  [/^files$/, files.list],
  [/^files\/([^/]+)$/, files.show],
  [/^models$/, models.list],
  [/^evals$/, evals.list],
  [/^evals\/([^/]+)$/, evals.show],
  [/^evals\/([^/]+)\/runs\/([^/]+)$/, evals.run],
  [/^playground$/, playground.show],
  [/^usage$/, usage.show],
  [/^webhooks$/, webhooks.show],
];

const main = document.getElementById("main");
const nav = document.getElementById("nav");
let current = null; // the AbortController of the page shown: aborted when leaving it

function parseHash() {
  const [path, query] = location.hash.replace(/^#\/?/, "").split("?");
  return { path: path || "jobs", query: new URLSearchParams(query || "") };
}

function signIn(message) {
  nav.hidden = true;
  clear(main);
  const input = h("input", { type: "password", id: "api-key", name: "api-key", placeholder: "sk-ft-…", size: 48, autocomplete: "off" });
  const error = h("div");
  const form = h("form", { class: "inline", id: "sign-in" }, h("label", { for: "api-key" }, "API key"), input,
    h("button", { type: "submit" }, "Sign in"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    key.set(input.value.trim());
    try {
      await get("/models?limit=1");
      route();
    } catch (err) {
      key.clear();
      clear(error).append(errorBox(err));
    }
  });
  main.append(h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "The dashboard calls the API with this key; it is kept in this tab's session storage only."),
    form, error);
  if (message) error.append(errorBox(message));
  input.focus();
}

async function route() {
  if (current) current.abort();
  current = new AbortController();
  if (!key.get()) return signIn();
  nav.hidden = false;
  const { path, query } = parseHash();
  for (const a of nav.querySelectorAll("a")) a.classList.toggle("active", path.startsWith(a.getAttribute("href").slice(2)));
  clear(main);
  for (const [pattern, page] of ROUTES) {
    const m = path.match(pattern);
    if (!m) continue;
    try {
      await page(main, { params: m.slice(1).map(decodeURIComponent), query, signal: current.signal });
    } catch (err) {
      if (err.status === 401) { key.clear(); return signIn(err); }
      if (err.name !== "AbortError") main.append(errorBox(err));
    }
    return;
  }
  main.append(h("h1", {}, "Not found"), h("p", {}, "No such page."));
}

document.getElementById("sign-out").addEventListener("click", () => { key.clear(); location.hash = ""; route(); });
window.addEventListener("hashchange", route);
route();
