// Evals: evals, their runs with per-criterion pass rates, and a run's failed output items.

import { enc, get, qs } from "./api.js";
import { h, num, status, table, time } from "./dom.js";

const rate = (passed, total) => (total ? `${((100 * passed) / total).toFixed(1)}%` : "");

export async function list(main) {
  const page = await get("/evals?limit=100");
  main.append(h("h1", {}, "Evals"), page.data.length ? table([
    { title: "Eval", cell: (e) => h("a", { href: `#/evals/${enc(e.id)}` }, e.id) },
    { title: "Name", cell: (e) => e.name },
    { title: "Criteria", cell: (e) => (e.testing_criteria || []).map((c) => c.name).join(", ") },
    { title: "Created", cell: (e) => time(e.created_at) },
  ], page.data) : h("p", { class: "muted" }, "No evals."));
}

export async function show(main, { params: [id] }) {
  const [ev, runs] = await Promise.all([get(`/evals/${enc(id)}`), get(`/evals/${enc(id)}/runs?limit=100`)]);
  main.append(h("h1", {}, "Eval ", h("code", {}, ev.id), " ", ev.name), h("h2", {}, "Runs"));
  main.append(runs.data.length ? table([
    { title: "Run", cell: (r) => h("a", { href: `#/evals/${enc(id)}/runs/${enc(r.id)}` }, r.id) },
    { title: "Name", cell: (r) => r.name },
    { title: "Model", cell: (r) => r.model },
    { title: "Status", cell: (r) => status(r.status) },
    { title: "Passed", num: true, cell: (r) => `${num(r.result_counts.passed)} / ${num(r.result_counts.total)}` },
    { title: "Pass rate per criterion", cell: (r) => (r.per_testing_criteria_results || [])
      .map((c) => `${c.testing_criteria}: ${rate(c.passed, c.passed + c.failed)}`).join("; ") },
    { title: "Created", cell: (r) => time(r.created_at) },
  ], runs.data) : h("p", { class: "muted" }, "No runs."));
}

function text(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

export async function run(main, { params: [evalId, runId], query }) {
  const only = query.get("status") ?? "fail";
  const r = await get(`/evals/${enc(evalId)}/runs/${enc(runId)}`);
  const items = await get(`/evals/${enc(evalId)}/runs/${enc(runId)}/output_items${qs({ limit: 100, status: only })}`);
  const base = `#/evals/${enc(evalId)}/runs/${enc(runId)}`;
  main.append(h("h1", {}, "Run ", h("code", {}, r.id), " ", status(r.status)),
    h("p", {}, `${r.result_counts.passed} of ${r.result_counts.total} passed; `,
      h("a", { href: `${base}?status=fail` }, "failures"), " · ", h("a", { href: `${base}?status=pass` }, "passes"), " · ",
      h("a", { href: `${base}?status=` }, "all")),
    table([
      { title: "Criterion", cell: (c) => c.testing_criteria },
      { title: "Passed", num: true, cell: (c) => c.passed },
      { title: "Failed", num: true, cell: (c) => c.failed },
      { title: "Pass rate", num: true, cell: (c) => rate(c.passed, c.passed + c.failed) },
    ], r.per_testing_criteria_results || []),
    h("h2", {}, only ? `Output items: ${only}` : "Output items"),
    items.data.length ? table([
      { title: "Item", cell: (i) => h("pre", {}, text(i.datasource_item)) },
      { title: "Output", cell: (i) => h("pre", {}, ((i.sample && i.sample.output) || []).map((o) => text(o.content)).join("\n")) },
      { title: "Results", cell: (i) => (i.results || []).map((x) => `${x.name}: ${x.passed ? "pass" : "fail"} (${num(x.score, 3)})`).join("; ") },
    ], items.data) : h("p", { class: "muted" }, "No items."));
}
