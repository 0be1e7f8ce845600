// Models: the catalogue's base models, the organisation's tuned models and their checkpoints.

import { del, enc, get } from "./api.js";
import { clear, errorBox, h, table, time } from "./dom.js";

export function kind(model) {
  if (model.owned_by === "system") return "base";
  return /:ckpt-step-\d+$/.test(model.id) ? "checkpoint" : "tuned";
}

export async function list(main) {
  const body = h("div");
  const message = h("div", { id: "models-message" });
  main.append(h("h1", {}, "Models"), message, body);
  const draw = async () => {
    const models = (await get("/models")).data;
    clear(body);
    for (const [title, k] of [["Base models", "base"], ["Fine-tuned models", "tuned"], ["Checkpoints", "checkpoint"]]) {
      const rows = models.filter((m) => kind(m) === k);
      body.append(h("h2", {}, title), rows.length ? table([
        { title: "Model", cell: (m) => h("code", {}, m.id) },
        { title: "Owner", cell: (m) => m.owned_by },
        { title: "Created", cell: (m) => time(m.created) },
        { title: "", cell: (m) => (k === "tuned" ? deleteButton(m) : "") },
      ], rows, (m) => ({ dataset: { model: m.id } })) : h("p", { class: "muted" }, "None."));
    }
  };
  const deleteButton = (m) => {
    const button = h("button", { type: "button", class: "danger" }, "Delete");
    button.addEventListener("click", async () => {
      clear(message);
      if (!window.confirm(`Delete ${m.id}? It stops being served at once.`)) return;
      try {
        await del(`/models/${enc(m.id)}`);
        await draw(); // the list first: "Deleted" is said once the row is gone
        message.append(h("p", { class: "ok" }, "Deleted ", h("code", {}, m.id), "."));
      } catch (err) {
        message.append(errorBox(err));
      }
    });
    return button;
  };
  await draw();
}
