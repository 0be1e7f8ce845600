"""All-default jobs on tiny-chat: time from create to servable, and what the tuned model learned.

    .venv/bin/python tests/benchmarks/bench_default_jobs.py [--sizes 10 24 50]

Starts `ftserve up` (SQLite, local storage, one trainer worker, the vLLM server for tiny-chat) in
a temporary directory. For each size, a fresh file of invented question/answer pairs is trained
twice, one job after the other: once with every hyperparameter `"auto"` (tiny-chat's catalogue
defaults), and once with the numbers OpenAI's rule gives, the baseline. Each job is timed from
`jobs.create` to the first answer of its `fine_tuned_model` (servable), and its greedy answers
are compared, whitespace stripped, with the trained ones.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import openai

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from service.catalog import BaseModel  # noqa: E402
from service.training_defaults import resolve_hyperparameters  # noqa: E402
from tests.benchmarks.bench_inference import start_stack  # noqa: E402
from tests.support import qa_jsonl  # noqa: E402
from tests.test_default_training import support_pairs  # noqa: E402

OPENAI_RULE = BaseModel(name="openai-rule", source="-")


def ask(client: openai.OpenAI, model: str, question: str) -> str:
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}], temperature=0, max_tokens=64
    )
    return (reply.choices[0].message.content or "").strip()


def one_job(client: openai.OpenAI, pairs: list[tuple[str, str]], hyperparameters: dict | None) -> dict:
    training = client.files.create(file=("qa.jsonl", qa_jsonl(pairs)), purpose="fine-tune")
    client.files.wait_for_processing(training.id)
    method = {"type": "supervised", "supervised": {"hyperparameters": hyperparameters or {}}}
    started = time.monotonic()
    job = client.fine_tuning.jobs.create(model="tiny-chat", training_file=training.id, method=method)  # type: ignore[arg-type]
    while (job := client.fine_tuning.jobs.retrieve(job.id)).status not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.1)
    if job.status != "succeeded" or not job.fine_tuned_model:
        raise RuntimeError(f"{job.id} ended {job.status}: {job.error}")
    ask(client, job.fine_tuned_model, pairs[0][0])
    servable = time.monotonic() - started
    exact = sum(ask(client, job.fine_tuned_model, q) == a.strip() for q, a in pairs)
    hp = job.method.supervised.hyperparameters  # type: ignore[union-attr]
    return {"servable_s": servable, "exact": exact / len(pairs), "epochs": hp.n_epochs, "batch": hp.batch_size}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 24, 50])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ftserve-bench-") as tmp:
        proc, base_url, key, _ = start_stack(Path(tmp))
        try:
            client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0)
            print("examples | job | epochs x batch | create -> servable | exact answers")
            for n in args.sizes:
                pairs = support_pairs(n, seed=1000 + n)
                rule = resolve_hyperparameters({}, n, OPENAI_RULE)
                default = one_job(client, pairs, None)
                baseline = one_job(client, pairs, rule)
                for label, r in (("all auto (tiny-chat defaults)", default), ("OpenAI's rule", baseline)):
                    print(f"{n:>8} | {label} | {r['epochs']} x {r['batch']} | {r['servable_s']:.1f} s | "
                          f"{r['exact']:.0%}")  # fmt: skip
                ratio = default["servable_s"] / baseline["servable_s"]
                print(f"{n:>8} | time ratio, defaults / OpenAI's rule: {ratio:.2f}x")
        finally:
            proc.send_signal(2)  # Ctrl-C: `ftserve up` stops its children
            proc.wait(timeout=90)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
