// A user's flow with the official `openai` Node package: upload, fine-tune, wait, chat (plain and
// streamed), list models, isolation from another organisation, delete. Exits non-zero on any mismatch.
import OpenAI, { toFile } from "openai";
import assert from "node:assert/strict";

const client = new OpenAI({ baseURL: process.env.BASE_URL, apiKey: process.env.API_KEY, maxRetries: 0 });
const other = new OpenAI({ baseURL: process.env.BASE_URL, apiKey: process.env.OTHER_KEY, maxRetries: 0 });
const qa = JSON.parse(process.env.QA);

const file = await client.files.create({
  file: await toFile(Buffer.from(process.env.TRAINING), "qa.jsonl"),
  purpose: "fine-tune",
});
let job = await client.fineTuning.jobs.create({
  model: "tiny-chat",
  training_file: file.id,
  suffix: "node",
  seed: 5,
  method: { type: "supervised", supervised: { hyperparameters: { n_epochs: 30, batch_size: 2 } } },
});
const deadline = Date.now() + 300_000;
while (!["succeeded", "failed", "cancelled"].includes(job.status)) {
  assert.ok(Date.now() < deadline, `job still ${job.status}`);
  await new Promise((resolve) => setTimeout(resolve, 500));
  job = await client.fineTuning.jobs.retrieve(job.id);
}
assert.equal(job.status, "succeeded", JSON.stringify(job.error));
const model = job.fine_tuned_model;
assert.equal(model, `ft:tiny-chat:acme:node:${job.id}`);

const events = [];
for await (const event of client.fineTuning.jobs.listEvents(job.id, { limit: 25 })) events.push(event);
assert.ok(events.some((e) => e.type === "metrics"), "metrics events");

for (const [question, expected] of qa.slice(0, 5)) {
  const reply = await client.chat.completions.create({
    model, messages: [{ role: "user", content: question }], temperature: 0, max_tokens: 20,
  });
  assert.equal(reply.model, model);
  assert.equal(reply.choices[0].message.content.trim(), expected);
}
const stream = await client.chat.completions.create({
  model, messages: [{ role: "user", content: qa[0][0] }], temperature: 0, max_tokens: 20, stream: true,
});
let text = "";
for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
assert.equal(text.trim(), qa[0][1]);

const models = [];
for await (const m of client.models.list()) models.push(m.id);
assert.ok(models.includes(model), "models.list shows the tuned model");
await assert.rejects(other.models.retrieve(model), (err) => err.status === 404);
await assert.rejects(
  other.chat.completions.create({ model, messages: [{ role: "user", content: "x" }] }),
  (err) => err.status === 404,
);

const deleted = await client.models.delete(model);
assert.equal(deleted.deleted, true);
await assert.rejects(
  client.chat.completions.create({ model, messages: [{ role: "user", content: "x" }] }),
  (err) => err.status === 404,
);
console.log("node flow ok");
