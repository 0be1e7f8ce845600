// Webhooks: the organisation's endpoints and their recent deliveries (admin keys only: other
// keys are told so by the API's 403, shown as it comes).

import { get, qs } from "./api.js";
import { errorBox, h, status, table, time } from "./dom.js";

export async function show(main, { query }) {
  main.append(h("h1", {}, "Webhooks"));
  let endpoints;
  try {
    endpoints = await get("/organization/webhooks");
  } catch (err) {
    if (err.status !== 403) throw err;
    main.append(errorBox(err));
    return;
  }
  const only = query.get("endpoint");
  main.append(h("p", { class: "muted" }, "Endpoints are added with `ftserve webhooks add`, which prints the signing secret."),
    endpoints.data.length ? table([
      { title: "Endpoint", cell: (e) => h("a", { href: `#/webhooks${qs({ endpoint: e.id })}` }, e.id) },
      { title: "URL", cell: (e) => h("code", {}, e.url) },
      { title: "Events", cell: (e) => (e.event_types || ["all"]).join(", ") },
      { title: "Created", cell: (e) => time(e.created_at) },
    ], endpoints.data, (e) => ({ dataset: { endpoint: e.id } })) : h("p", { class: "muted" }, "No endpoints."));
  const deliveries = await get(`/organization/webhooks/deliveries${qs({ limit: 50, endpoint_id: only })}`);
  main.append(h("h2", {}, only ? `Recent deliveries to ${only}` : "Recent deliveries"),
    deliveries.data.length ? table([
      { title: "Delivery (webhook-id)", cell: (d) => h("code", {}, d.id) },
      { title: "Event", cell: (d) => d.event_type },
      { title: "Endpoint", cell: (d) => h("a", { href: `#/webhooks${qs({ endpoint: d.endpoint_id })}` }, d.endpoint_id) },
      { title: "Status", cell: (d) => status(d.status) },
      { title: "Attempts", num: true, cell: (d) => d.attempts },
      { title: "Last answer", cell: (d) => (d.last_status_code ? `HTTP ${d.last_status_code}` : d.last_error || "") },
      { title: "Next attempt", cell: (d) => time(d.next_attempt_at) },
      { title: "Created", cell: (d) => time(d.created_at) },
      { title: "Delivered", cell: (d) => time(d.delivered_at) },
    ], deliveries.data) : h("p", { class: "muted" }, "No deliveries."));
}
