// Webhooks: the organisation's endpoints and their recent deliveries (admin keys).

import { get } from "./api.js";
import { h, status, table, time } from "./dom.js";

export async function show(main) {
  main.append(h("h1", {}, "Webhooks"));
  let endpoints;
  try {
    endpoints = await get("/organization/webhooks");
  } catch (err) {
    if (err.status === 404 || err.status === 403) {
      main.append(h("p", { class: "muted" }, err.status === 403 ? err.message
        : "This server does not list webhook endpoints over the API. Use `ftserve webhooks list`."));
      return;
    }
    throw err;
  }
  main.append(table([
    { title: "Endpoint", cell: (e) => h("code", {}, e.id) },
    { title: "URL", cell: (e) => e.url },
    { title: "Events", cell: (e) => (e.events || ["all"]).join(", ") },
    { title: "Created", cell: (e) => time(e.created_at) },
  ], endpoints.data || []));
  const deliveries = await get("/organization/webhooks/deliveries?limit=50").catch(() => ({ data: [] }));
  main.append(h("h2", {}, "Recent deliveries"), table([
    { title: "Delivery", cell: (d) => h("code", {}, d.id) },
    { title: "Event", cell: (d) => d.event_type || d.type },
    { title: "Status", cell: (d) => status(d.status) },
    { title: "Attempts", num: true, cell: (d) => d.attempts },
    { title: "Last answer", cell: (d) => d.last_status_code || d.last_error || "" },
    { title: "Created", cell: (d) => time(d.created_at) },
  ], deliveries.data || []));
}
