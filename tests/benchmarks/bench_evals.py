"""Eval runner throughput: 500 items against a served adapter, next to the same items one by one.

    .venv/bin/python tests/benchmarks/bench_evals.py [--items 500]

Starts `ftserve up` (SQLite, local storage, one trainer worker, the vLLM server for tiny-chat) in
a temporary directory and tunes tiny-chat on a few answers, so that the run samples an adapter.
Then the same items are measured twice: an eval run with a `completions` data source (the
runner samples `FTSERVE_EVAL_CONCURRENCY` items at a time and grades them), and the baseline, a
client that sends each item's chat completion one after the other and grades it with
`/v1/fine_tuning/alpha/graders/run`. Prints items per second of each and their ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import openai

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.benchmarks.bench_inference import start_stack  # noqa: E402
from tests.support import qa_jsonl  # noqa: E402
from tests.test_default_training import support_pairs  # noqa: E402

GRADER = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}", "reference": "{{item.answer}}",
          "operation": "eq"}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, base_url, key, _ = start_stack(Path(tmp))
        try:
            client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=600)
            pairs = support_pairs(10, seed=7)
            training = client.files.create(file=("qa.jsonl", qa_jsonl(pairs)), purpose="fine-tune")
            job = client.fine_tuning.jobs.create(model="tiny-chat", training_file=training.id)
            while (job := client.fine_tuning.jobs.retrieve(job.id)).status not in ("succeeded", "failed", "cancelled"):
                time.sleep(0.5)
            model = job.fine_tuned_model
            assert model, job.error
            items = [{"question": q, "answer": a} for q, a in (pairs * (args.items // len(pairs) + 1))[: args.items]]

            started = time.monotonic()
            for item in items:
                messages = [{"role": "user", "content": item["question"]}]
                reply = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=32)
                client.fine_tuning.alpha.graders.run(grader=GRADER, model_sample=reply.choices[0].message.content or "",
                                                     item=item)  # fmt: skip
            one_by_one = len(items) / (time.monotonic() - started)

            config = {"type": "custom", "item_schema": {"type": "object"}}
            evaluation = client.evals.create(name="bench", testing_criteria=[GRADER], data_source_config=config)
            content = [{"item": item} for item in items]
            started = time.monotonic()
            run = client.evals.runs.create(evaluation.id, data_source={
                "type": "completions", "model": model, "source": {"type": "file_content", "content": content},
                "input_messages": {"type": "template", "template": [{"role": "user", "content": "{{item.question}}"}]},
                "sampling_params": {"temperature": 0, "max_completion_tokens": 32},
            })  # fmt: skip
            while (run := client.evals.runs.retrieve(run.id, eval_id=evaluation.id)).status in (
                "queued",
                "in_progress",
            ):
                time.sleep(0.2)
            runner = len(items) / (time.monotonic() - started)
            print(json.dumps({"items": len(items), "status": run.status, "passed": run.result_counts.passed,
                              "one_by_one_items_per_s": round(one_by_one, 2), "runner_items_per_s": round(runner, 2),
                              "ratio": round(runner / one_by_one, 2)}))  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
