// Usage: tokens served per model (the gateway's counts) and tokens trained per base model.

import { all, get, qs } from "./api.js";
import { h, num, table } from "./dom.js";

const DAYS = 30;

export async function show(main) {
  const start = Math.floor(Date.now() / 1000 / 86400 - DAYS + 1) * 86400;
  const served = new Map();
  const page = await get(`/organization/usage/completions${qs({ start_time: start, bucket_width: "1d", limit: DAYS, group_by: "model" })}`);
  for (const bucket of page.data) {
    for (const r of bucket.results) {
      const s = served.get(r.model) || { requests: 0, input: 0, output: 0 };
      s.requests += r.num_model_requests;
      s.input += r.input_tokens;
      s.output += r.output_tokens;
      served.set(r.model, s);
    }
  }
  const trained = new Map();
  for (const job of await all("/fine_tuning/jobs", { limit: 100 })) {
    if (!job.trained_tokens) continue;
    const t = trained.get(job.model) || { jobs: 0, tokens: 0 };
    t.jobs += 1;
    t.tokens += job.trained_tokens;
    trained.set(job.model, t);
  }
  main.append(h("h1", {}, "Usage"),
    h("h2", {}, `Tokens served, last ${DAYS} days`),
    served.size ? table([
      { title: "Model", cell: ([m]) => h("code", {}, m) },
      { title: "Requests", num: true, cell: ([, s]) => num(s.requests) },
      { title: "Input tokens", num: true, cell: ([, s]) => num(s.input) },
      { title: "Output tokens", num: true, cell: ([, s]) => num(s.output) },
    ], [...served.entries()], ([m]) => ({ dataset: { model: m } })) : h("p", { class: "muted" }, "Nothing served yet."),
    h("h2", {}, "Tokens trained, all jobs"),
    trained.size ? table([
      { title: "Base model", cell: ([m]) => h("code", {}, m) },
      { title: "Jobs", num: true, cell: ([, t]) => num(t.jobs) },
      { title: "Trained tokens", num: true, cell: ([, t]) => num(t.tokens) },
    ], [...trained.entries()]) : h("p", { class: "muted" }, "No trained tokens yet."));
}
