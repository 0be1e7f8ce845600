"""Large training file benchmark: a worker's peak memory while it tokenises a file and trains on it.

    .venv/bin/python tests/benchmarks/bench_large_file.py [--size-mb 2048] [--steps 200] [--baseline-mb 16]

Generates a chat JSONL file of `--size-mb` MiB in a temporary directory (stored in a local object
store, as uploads are), then, each in a fresh child process so that each peak is its own:

1. **streamed**: `trainer.job.run_training`, what the worker runs: the file is streamed into the
   job's token cache (`trainer.token_cache`), then `--steps` steps train on
   `tiny-chat` and the job is cancelled;
2. **streamed, small**: the same on a `--baseline-mb` file;
3. **in memory, small**: the former path on the `--baseline-mb` file: the whole file joined in
   memory, every line parsed into a list, every example tokenised into a list, then the same steps.

Each prints its peak RSS (`getrusage`: the process's high-water mark, model and torch included),
the file's size and the time to tokenise (until the first step: the base model's load is
included); then the ratios. The in-memory path is not run on the
large file: it needs memory in proportion to the file (that is the point).

The default 2 GiB file takes about 22 minutes to tokenise on a 2-core machine (about 1.6 MiB/s:
the chat template is rendered several times per example), and its cache needs about 5 GiB of
disk; pass a smaller `--size-mb` for a quicker run.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

WORDS = ["alpha", "beta", "gamma", "delta", "model", "token", "answer", "question", "river", "stone", "light",
         "paper", "code", "item", "blue", "seven"]  # fmt: skip
KEY = "files/org-bench/file-bench"


def generate(path: Path, size_bytes: int, seed: int = 0) -> int:
    """A chat JSONL file of at least `size_bytes`; returns its size."""
    rng = random.Random(seed)
    written = 0
    with path.open("wb", buffering=1 << 22) as out:
        while written < size_bytes:
            n = max(1, int(rng.lognormvariate(3.0, 0.8)))
            messages = [{"role": "user", "content": "Tell me about " + " ".join(rng.choices(WORDS, k=6)) + "."},
                        {"role": "assistant", "content": " ".join(rng.choices(WORDS, k=n))}]  # fmt: skip
            line = json.dumps({"messages": messages}).encode() + b"\n"
            out.write(line)
            written += len(line)
    return written


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class CancelAt:
    """A `Reporter` that cancels the job once `steps` steps have run (the loop asks before each
    step), and notes when training began: after the file was tokenised and the model loaded."""

    def __init__(self, steps: int) -> None:
        self.steps, self.asked = steps, 0
        self.training_from: float | None = None

    def event(self, message: str, *, level: str = "info", type: str = "message", data: Any = None) -> None:
        pass

    def progress(self, step: int, total_steps: int, metrics: dict[str, float], estimated_finish: int) -> None:
        pass

    def checkpoint(self, step: int, metrics: dict[str, float], adapter_prefix: str, resume_prefix: str) -> None:
        pass

    def control(self) -> str | None:
        self.training_from = self.training_from or time.perf_counter()
        self.asked += 1
        return "cancel" if self.asked > self.steps else None


def child(mode: str, work: Path, steps: int) -> dict[str, Any]:
    """One measurement, in this (fresh) process."""
    import torch
    from transformers import AutoTokenizer

    from service.catalog import BaseModel
    from service.settings import Settings
    from service.storage import open_storage
    from trainer.job import JobSpec, run_training, tokenize_all
    from trainer.loop import run
    from trainer.sft import SFTConfig, SFTObjective, load_lora_model
    from trainer.tiny_model import ensure_tiny_chat

    torch.set_num_threads(2)
    storage = open_storage((work / "objects").as_uri())
    size = storage.size(KEY) or 0
    base = BaseModel(name="tiny-chat", source="builtin:tiny-chat", max_seq_len=512)
    hp = {"n_epochs": 1, "batch_size": 8, "learning_rate_multiplier": 1.0}
    started = time.perf_counter()
    if mode == "streamed":
        spec = JobSpec(job_id="ftjob-bench", base=base, fine_tuned_model="ft:bench", seed=0, hyperparameters=hp,
                       training_key=KEY, validation_key=None, storage_prefix="jobs/bench")  # fmt: skip
        reporter = CancelAt(steps)
        settings = Settings(data_dir=work / "data")
        outcome = run_training(spec, storage, settings, reporter)
        trained = outcome.step
        prepared = (reporter.training_from or started) - started
        cache = work / "data" / "token-cache" / spec.job_id / "current"
        tokens = json.loads((cache / "manifest.json").read_text())["tokens"]
    else:  # the former path: the whole file, its parsed lines and its token lists in memory
        path = ensure_tiny_chat(work / "data" / "models")
        tokenizer = AutoTokenizer.from_pretrained(path)
        data = b"".join(storage.read_chunks(KEY))
        raw = [json.loads(line) for line in data.split(b"\n") if line.strip()]
        examples, _ = tokenize_all(tokenizer, raw, base.max_seq_len)
        prepared = time.perf_counter() - started
        tokens = sum(len(e.input_ids) for e in examples)
        config = SFTConfig(n_epochs=1, batch_size=8, learning_rate=base.learning_rate, seed=0)
        model = load_lora_model(path, config.lora, seed=0)
        result = run(model, config, examples, _StopAt(steps), SFTObjective(tokenizer.pad_token_id))
        trained = result.steps
    return {"mode": mode, "file_mib": size / 2**20, "tokens": tokens, "steps": trained,
            "prepare_s": prepared,
            "seconds": time.perf_counter() - started, "peak_rss_mib": peak_rss_mib()}  # fmt: skip


class _StopAt:
    def __init__(self, steps: int) -> None:
        self.steps = steps

    def on_metrics(self, step: int, total_steps: int, metrics: dict[str, float]) -> None:
        pass

    def on_epoch_end(self, epoch: int, step: int, total_steps: int, save: Any, metrics: dict[str, float]) -> None:
        pass

    def should_stop(self, step: int) -> Any:
        return "cancel" if step >= self.steps else None

    def on_stop(self, request: Any, step: int, save_state: Any) -> None:
        pass


def measure(mode: str, work: Path, steps: int) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--child", mode, "--work", str(work), "--steps", str(steps)],
                          check=True, capture_output=True, text=True)  # fmt: skip
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{result['mode']:<9} file {result['file_mib']:9.1f} MiB  {result['tokens']:>12,} tokens  "
          f"{result['steps']:>4} steps  tokenised in {result['prepare_s']:7.1f} s, {result['seconds']:7.1f} s in all  "
          f"peak RSS {result['peak_rss_mib']:7.1f} MiB",
          flush=True)  # fmt: skip
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=2048, help="large file size in MiB (default 2048)")
    parser.add_argument("--baseline-mb", type=float, default=16, help="small file for the ratios (default 16)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--child", choices=["streamed", "in-memory"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.work, args.steps)))
        return
    from service.storage import open_storage

    with tempfile.TemporaryDirectory(prefix="ftserve-bench-large-") as tmp:
        results = {}
        for label, mib in (("small", args.baseline_mb), ("large", args.size_mb)):
            work = Path(tmp) / label
            (work / "objects").mkdir(parents=True)
            generate(work / "source.jsonl", int(mib * 2**20))
            storage = open_storage((work / "objects").as_uri())
            with (work / "source.jsonl").open("rb") as source:
                storage.put_stream(KEY, iter(lambda: source.read(1 << 20), b""))
            (work / "source.jsonl").unlink()
        print(f"{args.steps} steps of tiny-chat, batch 8; each line a fresh process", flush=True)
        results["in-memory small"] = measure("in-memory", Path(tmp) / "small", args.steps)
        results["streamed small"] = measure("streamed", Path(tmp) / "small", args.steps)
        results["streamed large"] = measure("streamed", Path(tmp) / "large", args.steps)
        small_old, small_new, large = (results[k] for k in ("in-memory small", "streamed small", "streamed large"))
        ratio = large["file_mib"] / small_old["file_mib"]
        print(f"large file / small file: {ratio:.1f}x the bytes")
        print(f"peak RSS, streamed large / streamed small: {large['peak_rss_mib'] / small_new['peak_rss_mib']:.2f}x")
        print(f"peak RSS, streamed large / in-memory small: {large['peak_rss_mib'] / small_old['peak_rss_mib']:.2f}x")
        print(f"tokenising (streamed large, model load included): {large['file_mib'] / large['prepare_s']:.2f} MiB/s")


if __name__ == "__main__":
    main()
