// Graders and an eval with the official `openai` Node package: validate and run graders, create an
// eval, run it on inline items, page through its output items, and stay invisible to another
// organisation. Exits non-zero on any mismatch.
import OpenAI from "openai";
import assert from "node:assert/strict";

const client = new OpenAI({ baseURL: process.env.BASE_URL, apiKey: process.env.API_KEY, maxRetries: 0 });
const other = new OpenAI({ baseURL: process.env.BASE_URL, apiKey: process.env.OTHER_KEY, maxRetries: 0 });

const exact = { type: "string_check", name: "exact", input: "{{sample.output_text}}", reference: "{{item.answer}}", operation: "eq" };
const close = {
  type: "text_similarity", name: "close", input: "{{sample.output_text}}", reference: "{{item.answer}}",
  evaluation_metric: "fuzzy_match", pass_threshold: 0.8,
};
const python = { type: "python", name: "py", source: "def grade(sample, item):\n    return 0.25\n" };

for (const grader of [exact, python]) {
  const validated = await client.fineTuning.alpha.graders.validate({ grader });
  assert.equal(validated.grader.type, grader.type);
}
const ran = await client.fineTuning.alpha.graders.run({ grader: exact, model_sample: "Paris", item: { answer: "Paris" } });
assert.equal(ran.reward, 1);
assert.equal(ran.metadata.errors.invalid_variable_error, false);
assert.equal((await client.fineTuning.alpha.graders.run({ grader: python, model_sample: "x" })).reward, 0.25);
await assert.rejects(
  client.fineTuning.alpha.graders.run({ grader: { ...exact, operation: "regex" }, model_sample: "x" }),
  (err) => err.status === 400,
);

const evaluation = await client.evals.create({
  name: "node",
  data_source_config: { type: "custom", item_schema: { type: "object" } },
  testing_criteria: [exact, close],
});
const content = [
  { item: { answer: "Paris" }, sample: { output_text: "Paris" } },
  { item: { answer: "Rome" }, sample: { output_text: "Rome." } },
  { item: { answer: "Madrid" }, sample: { output_text: "Lisbon" } },
];
let run = await client.evals.runs.create(evaluation.id, { data_source: { type: "jsonl", source: { type: "file_content", content } } });
const deadline = Date.now() + 60_000;
while (["queued", "in_progress"].includes(run.status)) {
  assert.ok(Date.now() < deadline, `run still ${run.status}`);
  await new Promise((resolve) => setTimeout(resolve, 200));
  run = await client.evals.runs.retrieve(run.id, { eval_id: evaluation.id });
}
assert.equal(run.status, "completed");
assert.deepEqual(run.result_counts, { total: 3, passed: 1, failed: 2, errored: 0 });

const seen = [];
for await (const item of client.evals.runs.outputItems.list(run.id, { eval_id: evaluation.id, limit: 1 })) {
  seen.push(item.datasource_item_id);
  assert.equal(item.results.length, 2);
}
assert.deepEqual(seen.sort(), [0, 1, 2]);

await assert.rejects(other.evals.retrieve(evaluation.id), (err) => err.status === 404);
await assert.rejects(other.evals.runs.retrieve(run.id, { eval_id: evaluation.id }), (err) => err.status === 404);
assert.equal((await client.evals.delete(evaluation.id)).deleted, true);
console.log("node evals ok");
