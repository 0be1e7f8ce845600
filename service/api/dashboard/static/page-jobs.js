// Jobs: the organisation's fine-tuning jobs, newest first, filtered by status and model.

import { get, qs } from "./api.js";
import { h, num, status, table, time } from "./dom.js";

export const STATUSES = ["validating_files", "queued", "running", "paused", "succeeded", "failed", "cancelled"];

function suffixOf(job) {
  // ft:{base}:{org}:{suffix}:{job}: the suffix is the fourth field (empty when none was given).
  return job.user_provided_suffix ?? (job.fine_tuned_model ? job.fine_tuned_model.split(":")[3] || "" : "");
}

export async function list(main, { query }) {
  const statusSel = h("select", { id: "filter-status", name: "status" }, h("option", { value: "" }, "any status"),
    STATUSES.map((s) => h("option", { value: s, selected: query.get("status") === s }, s)));
  const model = h("input", { type: "text", id: "filter-model", name: "model", placeholder: "model", value: query.get("model") || "" });
  const form = h("form", { class: "filters" }, statusSel, model, h("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    location.hash = `#/jobs${qs({ status: statusSel.value, model: model.value.trim() })}`;
  });
  main.append(h("h1", {}, "Fine-tuning jobs"), form);
  const page = await get(`/fine_tuning/jobs${qs({ limit: 100, status: query.get("status"), model: query.get("model") })}`);
  main.append(table([
    { title: "Job", cell: (j) => h("a", { href: `#/jobs/${encodeURIComponent(j.id)}` }, j.id) },
    { title: "Status", cell: (j) => status(j.status) },
    { title: "Base model", cell: (j) => j.model },
    { title: "Suffix", cell: suffixOf },
    { title: "Created", cell: (j) => time(j.created_at) },
    { title: "Finished", cell: (j) => time(j.finished_at) },
    { title: "Trained tokens", num: true, cell: (j) => num(j.trained_tokens) },
  ], page.data, (j) => ({ dataset: { job: j.id } })));
  if (!page.data.length) main.append(h("p", { class: "muted" }, "No jobs."));
  if (page.has_more) main.append(h("p", { class: "muted" }, "Showing the newest 100."));
}
