"""Inference benchmark: throughput with 0, 1, 2 and 4 adapters, gateway latency, adapter cold start.

    .venv/bin/python tests/benchmarks/bench_inference.py [--requests 60] [--tokens 64]

Starts `ftserve up` (SQLite, local storage, one trainer worker, the vLLM server for tiny-chat) in
a temporary directory, trains four small adapters, then measures in one run:

1. cold start: from a job's `succeeded` to the first streamed token of its model (the adapter is
   fetched from storage and loaded on that first request);
2. decode throughput of the vLLM server with the base model alone and with 1, 2 and 4 adapters
   mixed in the same batches (16 concurrent streams, every completion `--tokens` long);
3. latency through the gateway and straight to the vLLM server, p50 and p99, of sequential
   requests for 4-token answers (where a fixed overhead weighs most) and 64-token answers, with
   the gateway's share at p50.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support import QA, free_port, qa_jsonl, wait_for_job  # noqa: E402

BIN = Path(sys.executable).parent
CONCURRENCY = 16
INFERENCE_KEY = "bench-" + os.urandom(8).hex()


def start_stack(data_dir: Path) -> tuple[subprocess.Popen[bytes], str, str, str]:
    # The inference servers require a key only the gateway holds; the benchmark also calls vLLM
    # directly, so it chooses that key itself.
    env = {**os.environ, "FTSERVE_DATA_DIR": str(data_dir), "FTSERVE_PORT": str(free_port()),
           "FTSERVE_INFERENCE_API_KEY": INFERENCE_KEY}  # fmt: skip
    for name in ("DATABASE_URL", "STORAGE_URL", "REDIS_URL"):
        env.pop(name, None)
    keys = subprocess.run([BIN / "ftserve", "keys", "create", "--org", "bench"], env=env, check=True,
                          capture_output=True, text=True)  # fmt: skip
    key = keys.stdout.strip().splitlines()[-1]
    log = data_dir / "up.log"
    proc = subprocess.Popen([BIN / "ftserve", "up"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{env['FTSERVE_PORT']}/v1"
    deadline = time.monotonic() + 300
    while not (match := re.search(r"inference server for tiny-chat starting on (\S+)", log.read_text())):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"ftserve up did not start; see {log}")
        time.sleep(0.5)
    client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0)
    while True:
        try:
            client.models.list()
            client.chat.completions.create(model="tiny-chat", messages=[{"role": "user", "content": "hi"}],
                                           max_tokens=1)  # fmt: skip
            break
        except (openai.APIConnectionError, openai.InternalServerError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    return proc, base_url, key, match.group(1) + "/v1"


def train(client: openai.OpenAI, index: int) -> openai.types.fine_tuning.FineTuningJob:
    pairs = [(q, f"{a} ({index})") for q, a in QA]
    training = client.files.create(file=("qa.jsonl", qa_jsonl(pairs)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="tiny-chat", training_file=training.id, suffix=f"bench{index}",
                                         hyperparameters={"n_epochs": 1})  # fmt: skip
    return job


def cold_start(client: openai.OpenAI, job_id: str) -> float:
    job = wait_for_job(client, job_id, timeout_s=600)
    assert job.status == "succeeded" and job.fine_tuned_model, job.error
    succeeded = time.monotonic()  # within one poll interval (0.2 s) of the status change
    stream = client.chat.completions.create(model=job.fine_tuned_model, stream=True, max_tokens=8,
                                            messages=[{"role": "user", "content": QA[0][0]}])  # fmt: skip
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            first = time.monotonic() - succeeded
            stream.close()
            return first
    raise RuntimeError("no token came back")


def throughput(direct: openai.OpenAI, models: list[str], requests: int, tokens: int) -> float:
    """Completion tokens per second over `requests` requests, `CONCURRENCY` at a time, round-robin over models."""

    def one(i: int) -> int:
        reply = direct.chat.completions.create(
            model=models[i % len(models)], messages=[{"role": "user", "content": QA[i % len(QA)][0]}],
            max_tokens=tokens, temperature=0.8, extra_body={"ignore_eos": True},
        )  # fmt: skip
        return reply.usage.completion_tokens if reply.usage else 0

    start = time.monotonic()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        total = sum(pool.map(one, range(requests)))
    return total / (time.monotonic() - start)


def latencies(client: openai.OpenAI, model: str, n: int, tokens: int) -> list[float]:
    out = []
    for i in range(n):
        start = time.perf_counter()
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": QA[i % len(QA)][0]}],
                                       max_tokens=tokens, temperature=0, extra_body={"ignore_eos": True})  # fmt: skip
        out.append(time.perf_counter() - start)
    return out


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=64, help="requests per throughput run")
    parser.add_argument("--tokens", type=int, default=64, help="completion tokens per throughput request")
    parser.add_argument("--latency-requests", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5, help="throughput rounds per mix (median and spread)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ftserve-bench-") as tmp:
        proc, base_url, key, vllm_url = start_stack(Path(tmp))
        try:
            client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0)
            direct = openai.OpenAI(base_url=vllm_url, api_key=INFERENCE_KEY, max_retries=0)
            jobs = [train(client, i) for i in range(4)]
            colds = [cold_start(client, job.id) for job in jobs]
            done = [client.fine_tuning.jobs.retrieve(job.id) for job in jobs]
            # What the gateway sends to vLLM for each tuned model: its adapter's storage prefix.
            adapters = [f"jobs/{j.organization_id}/{j.id}/adapter/" for j in done]
            print(f"adapter cold start, succeeded -> first token: median {statistics.median(colds):.3f} s "
                  f"(each: {', '.join(f'{c:.3f}' for c in colds)})")  # fmt: skip
            configs = {"base model only": ["tiny-chat"]} | {f"{n} adapter(s) mixed": adapters[:n] for n in (1, 2, 4)}
            for models in configs.values():  # warm each mix (adapter loads, batch shapes)
                throughput(direct, models, CONCURRENCY, 8)
            rounds: dict[str, list[float]] = {label: [] for label in configs}
            for _ in range(args.rounds):  # interleaved, so drift on a shared machine hits every mix alike
                for label, models in configs.items():
                    rounds[label].append(throughput(direct, models, args.requests, args.tokens))
            print(f"decode throughput, {CONCURRENCY} concurrent streams of {args.tokens} tokens, "
                  f"{args.rounds} rounds (median, and min-max over rounds):")  # fmt: skip
            for label, values in rounds.items():
                # Each round's ratio to the base model measured in the same round: drift cancels out.
                ratios = [v / b for v, b in zip(values, rounds["base model only"], strict=True)]
                spread = f"({min(ratios):.2f}-{max(ratios):.2f}x)"
                print(f"  {label:20s} {statistics.median(values):8.1f} tokens/s ({min(values):.1f}-{max(values):.1f})"
                      f"  {statistics.median(ratios):.2f}x the base {spread}")  # fmt: skip
            tuned = done[0].fine_tuned_model or ""
            for tokens in (4, 64):
                latencies(client, "tiny-chat", 10, tokens)
                measured = {
                    "direct to vLLM, base": latencies(direct, "tiny-chat", args.latency_requests, tokens),
                    "through gateway, base": latencies(client, "tiny-chat", args.latency_requests, tokens),
                    "direct to vLLM, adapter": latencies(direct, adapters[0], args.latency_requests, tokens),
                    "through gateway, adapter": latencies(client, tuned, args.latency_requests, tokens),
                }
                print(f"latency of {tokens}-token answers, {args.latency_requests} sequential requests (p50 / p99):")
                for label, values in measured.items():
                    print(f"  {label:26s} {pct(values, 50) * 1000:7.1f} ms / {pct(values, 99) * 1000:7.1f} ms")
                for kind in ("base", "adapter"):
                    gateway, vllm = measured[f"through gateway, {kind}"], measured[f"direct to vLLM, {kind}"]
                    added = pct(gateway, 50) - pct(vllm, 50)
                    print(f"  gateway adds {added * 1000:.1f} ms at p50 with the {kind} model "
                          f"({added / pct(vllm, 50) * 100:.1f}% of the direct p50)")  # fmt: skip
        except Exception:
            for log in sorted(Path(tmp).rglob("*.log")):
                print(f"--- {log.name}", *log.read_text(errors="replace").splitlines()[-15:], sep="\n")
            raise
        finally:
            proc.send_signal(2)
            proc.wait(timeout=90)
    return 0


if __name__ == "__main__":
    sys.exit(main())
