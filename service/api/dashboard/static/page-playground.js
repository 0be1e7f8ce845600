// Playground: one prompt sent to two models side by side, both answers streamed as they come.

import { get, sse } from "./api.js";
import { clear, errorBox, h } from "./dom.js";
import { kind } from "./page-models.js";

async function ask(model, prompt, maxTokens, out, signal) {
  clear(out);
  const answer = h("div", { class: "answer" });
  out.append(answer);
  out.dataset.state = "streaming";
  try {
    await sse("/chat/completions", {
      method: "POST", signal,
      body: { model, messages: [{ role: "user", content: prompt }], stream: true, max_tokens: maxTokens, temperature: 0 },
      onEvent: (m) => {
        if (m.data === "[DONE]") return;
        const chunk = JSON.parse(m.data);
        if (chunk.error) throw new Error(chunk.error.message);
        const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
        if (delta && delta.content) answer.append(delta.content);
      },
    });
    out.dataset.state = "done";
  } catch (err) {
    out.dataset.state = "error";
    out.append(errorBox(err));
  }
}

export async function show(main, { signal }) {
  const models = (await get("/models")).data.map((m) => m.id);
  const ordered = [...models].sort((a, b) => (kind({ id: a }) === "base") - (kind({ id: b }) === "base"));
  const pick = (id, preferred) => h("select", { id }, models.map((m) => h("option", { value: m, selected: m === preferred }, m)));
  const left = pick("model-a", models[0]);
  const right = pick("model-b", ordered.find((m) => m !== models[0]) || models[0]);
  const prompt = h("textarea", { id: "prompt", placeholder: "Ask both models…" });
  const maxTokens = h("input", { type: "text", id: "max-tokens", value: "64", size: 5 });
  const outA = h("div", { class: "panel", id: "answer-a" });
  const outB = h("div", { class: "panel", id: "answer-b" });
  const form = h("form", { id: "playground-form" }, prompt,
    h("div", { class: "filters" }, h("label", {}, "max tokens ", maxTokens), h("button", { type: "submit" }, "Send to both")));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const n = Number.parseInt(maxTokens.value, 10) || 64;
    ask(left.value, prompt.value, n, outA, signal);
    ask(right.value, prompt.value, n, outB, signal);
  });
  main.append(h("h1", {}, "Playground"), form, h("div", { class: "grid2" }, h("div", {}, left, outA), h("div", {}, right, outB)));
}
