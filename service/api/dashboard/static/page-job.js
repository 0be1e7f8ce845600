// Job: status, hyperparameters, live curves and events, checkpoints, result file and controls.

import { all, enc, get, post, raw, sse } from "./api.js";
import { lineChart } from "./chart.js";
import { append, clear, errorBox, h, num, status, table, time } from "./dom.js";

const FINAL = new Set(["succeeded", "failed", "cancelled"]);
const STEPS = ["validating_files", "queued", "running", "succeeded"];
const POLL_MS = 1000;

function hyperparameters(job) {
  const method = job.method || {};
  return (method[method.type] || {}).hyperparameters || job.hyperparameters || {};
}

function timeline(job) {
  const end = FINAL.has(job.status) ? job.status : "succeeded";
  const steps = [...STEPS.slice(0, 3), ...(job.status === "paused" ? ["paused"] : []), end];
  const at = steps.indexOf(job.status);
  return h("ol", { class: "timeline", id: "timeline" }, steps.map((s, i) =>
    h("li", { class: i === at ? "current" : i < at ? "reached" : null }, s)));
}

// Series of a metric (`data[name]` of each metrics event, against its step).
function series(events, name, label) {
  const points = [];
  for (const e of events) {
    const v = e.data && e.data[name];
    if (e.type === "metrics" && typeof v === "number" && typeof e.data.step === "number") points.push([e.data.step, v]);
  }
  return { name, label, points };
}

function charts(events) {
  const keys = new Set(events.flatMap((e) => (e.type === "metrics" && e.data ? Object.keys(e.data) : [])));
  const accuracy = keys.has("train_preference_accuracy") ? "train_preference_accuracy" : "train_mean_token_accuracy";
  const out = [
    lineChart("loss", [series(events, "train_loss", "training"), series(events, "valid_loss", "validation")]),
    lineChart("accuracy", [series(events, accuracy, "training"), series(events, "valid_mean_token_accuracy", "validation")]),
  ];
  const rewards = [...keys].filter((k) => k.includes("reward")).slice(0, 2);
  if (rewards.length) out.push(lineChart("reward", rewards.map((k) => series(events, k))));
  return out;
}

export async function show(main, { params: [id], signal }) {
  const state = { job: await get(`/fine_tuning/jobs/${enc(id)}`), events: new Map(), checkpointsFor: null };
  const head = h("div");
  const notice = h("div", { id: "job-notice" });
  const buttons = {
    cancel: h("button", { type: "button", id: "job-cancel", class: "danger" }, "Cancel"),
    pause: h("button", { type: "button", id: "job-pause" }, "Pause"),
    resume: h("button", { type: "button", id: "job-resume" }, "Resume"),
  };
  const details = h("div");
  const chartBox = h("div", { class: "grid2", id: "charts" });
  const log = h("div", { class: "log", id: "event-log" });
  const checkpoints = h("div", { id: "checkpoints" });
  const result = h("div", { id: "result-file" });
  main.append(head, h("div", { class: "filters" }, Object.values(buttons)), notice, details,
    h("h2", {}, "Curves"), chartBox, h("h2", {}, "Events"), log, h("h2", {}, "Checkpoints"), checkpoints,
    h("h2", {}, "Result file"), result);

  for (const [action, button] of Object.entries(buttons)) {
    button.addEventListener("click", async () => {
      clear(notice);
      try {
        state.job = await post(`/fine_tuning/jobs/${enc(id)}/${action}`);
        drawJob();
      } catch (err) {
        notice.append(errorBox(err));
      }
    });
  }

  function drawJob() {
    const job = state.job;
    clear(head).append(h("h1", {}, "Job ", h("code", {}, job.id), " ", status(job.status)), timeline(job));
    buttons.cancel.disabled = FINAL.has(job.status);
    buttons.pause.disabled = !["queued", "running"].includes(job.status);
    buttons.resume.disabled = job.status !== "paused";
    const hp = hyperparameters(job);
    const rows = [
      ["Base model", job.model], ["Fine-tuned model", job.fine_tuned_model], ["Method", job.method && job.method.type],
      ["Training file", job.training_file && h("a", { href: `#/files/${enc(job.training_file)}` }, job.training_file)],
      ["Validation file", job.validation_file && h("a", { href: `#/files/${enc(job.validation_file)}` }, job.validation_file)],
      ["Created", time(job.created_at)], ["Finished", time(job.finished_at)], ["Trained tokens", num(job.trained_tokens)],
      ...Object.entries(hp).map(([k, v]) => [k, typeof v === "object" ? JSON.stringify(v) : String(v)]),
    ];
    clear(details).append(table([{ title: "Field", cell: (r) => r[0] }, { title: "Value", cell: (r) => r[1] }],
      rows.filter((r) => r[1] !== null && r[1] !== undefined && r[1] !== "")));
    if (job.error && job.error.message) details.append(errorBox(`${job.error.code || "error"}: ${job.error.message}`));
  }

  function drawEvents() {
    const events = [...state.events.values()];
    clear(chartBox).append(...charts(events));
    // Newest first, as the API lists them.
    const ordered = events.map((e, i) => [e, i]).sort((a, b) => b[0].created_at - a[0].created_at || b[1] - a[1]);
    clear(log).append(...ordered.map(([e]) => h("div", { class: e.level }, `${time(e.created_at)}  ${e.message}`)));
  }

  async function drawCheckpoints() {
    if (state.checkpointsFor === state.job.status && !["running"].includes(state.job.status)) return;
    state.checkpointsFor = state.job.status;
    const page = await get(`/fine_tuning/jobs/${enc(id)}/checkpoints?limit=100`);
    const keys = [...new Set(page.data.flatMap((c) => Object.keys(c.metrics || {})))];
    clear(checkpoints).append(page.data.length ? table([
      { title: "Checkpoint", cell: (c) => h("code", {}, c.fine_tuned_model_checkpoint) },
      { title: "Step", num: true, cell: (c) => c.step_number },
      ...keys.map((k) => ({ title: k, num: true, cell: (c) => num(c.metrics[k], 4) })),
    ], page.data) : h("p", { class: "muted" }, "None yet."));
    const files = state.job.result_files || [];
    clear(result).append(files.length ? files.map((f) => resultFile(f)) : h("p", { class: "muted" }, "None yet."));
  }

  function resultFile(fileId) {
    const out = h("pre", { hidden: true });
    const button = h("button", { type: "button" }, "Show");
    button.addEventListener("click", async () => {
      const text = await (await raw(`/files/${enc(fileId)}/content`)).text();
      let csv = text;
      try { csv = atob(text.trim()); } catch { /* not base64 */ }
      out.textContent = csv;
      out.hidden = false;
    });
    return h("div", {}, h("a", { href: `#/files/${enc(fileId)}` }, fileId), " ", button, out);
  }

  function add(events) {
    let changed = false;
    for (const e of events) if (e && e.id && !state.events.has(e.id)) { state.events.set(e.id, e); changed = true; }
    if (changed) drawEvents();
    return changed;
  }

  drawJob();
  add((await all(`/fine_tuning/jobs/${enc(id)}/events`, { limit: 1000 })).reverse());
  await drawCheckpoints();
  follow().catch((err) => { if (err.name !== "AbortError" && !signal.aborted) notice.append(errorBox(err)); });

  async function refresh() {
    state.job = await get(`/fine_tuning/jobs/${enc(id)}`);
    drawJob();
    await drawCheckpoints();
  }

  async function poll() {
    // Newest first: read pages until one holds an event already seen.
    let after;
    for (let i = 0; i < 20; i++) {
      const page = await get(`/fine_tuning/jobs/${enc(id)}/events?limit=100${after ? `&after=${enc(after)}` : ""}`);
      const known = page.data.some((e) => state.events.has(e.id));
      add([...page.data].reverse());
      if (known || !page.has_more || !page.data.length) return;
      after = page.data[page.data.length - 1].id;
    }
  }

  async function follow() {
    let lastEventId = null;
    let streaming = true;
    while (!signal.aborted && !FINAL.has(state.job.status)) {
      if (streaming) {
        const outcome = await sse(`/fine_tuning/jobs/${enc(id)}/events?stream=true`, {
          signal, lastEventId,
          onEvent: (m) => {
            if (m.id) lastEventId = m.id;
            let e = null;
            try { e = JSON.parse(m.data); } catch { return; /* not an event */ }
            if (e && e.object === "fine_tuning.job.event" && add([e]) && e.type === "message") refresh().catch(() => {});
          },
        }).catch((err) => { if (signal.aborted) throw err; return { streamed: true }; });
        if (!outcome.streamed) streaming = false; // no event stream here yet: poll the paged list
      }
      if (!streaming) await poll();
      await refresh();
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    if (!signal.aborted) { await poll(); await refresh(); }
  }
}
